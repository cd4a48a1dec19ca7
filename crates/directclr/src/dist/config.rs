//! The `[dist]` table of a training config: how a run of several processes communicates. A
//! run of one process ignores it.

use serde::{Deserialize, Serialize};

use super::Backend;

/// Settings of data-parallel training.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DistConfig {
    /// The c10d backend: `gloo` (CPU or CUDA tensors) or `nccl` (CUDA tensors, one GPU per
    /// process; needs `libdirectclr_cuda.so`, built by `scripts/cuda_shim.sh`).
    pub backend: Backend,
    /// Batch-norm statistics over the global batch (the authors' SyncBN); otherwise each rank
    /// normalises with its own rows.
    pub sync_bn: bool,
    /// Gradient bucket size in megabytes (PyTorch DDP's default: 25).
    pub bucket_mb: f64,
    /// Start each bucket's all-reduce from autograd hooks as soon as its gradients are ready,
    /// overlapping the rest of the backward pass (c10d's Reducer, as DistributedDataParallel);
    /// otherwise all buckets are reduced after the backward pass. Both give the same averaged
    /// gradients (to rounding); the overlap hides communication behind computation.
    pub overlap: bool,
    /// Seconds every rank waits for the others: to join at the start, and in any collective
    /// (a rank that died is usually noticed at once through its closed connection).
    pub timeout_s: u64,
}

impl Default for DistConfig {
    fn default() -> Self {
        DistConfig {
            backend: Backend::Gloo,
            sync_bn: true,
            bucket_mb: 25.0,
            overlap: true,
            timeout_s: 300,
        }
    }
}

impl DistConfig {
    /// Checks the values; errors name the field (without the `dist.` prefix).
    pub fn validate(&self) -> crate::Result<()> {
        if !(self.bucket_mb.is_finite() && self.bucket_mb > 0.0) {
            return Err(crate::Error::config(
                "bucket_mb",
                format!("{} must be a positive number", self.bucket_mb),
            ));
        }
        if self.timeout_s == 0 {
            return Err(crate::Error::config(
                "timeout_s",
                "must be at least 1 second",
            ));
        }
        Ok(())
    }
}

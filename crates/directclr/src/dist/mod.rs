//! Data-parallel training over several processes through PyTorch's c10d engine (the C++ shim
//! compiled against libtorch's headers): the launch environment ([`DistEnv`]), the TCPStore
//! rendezvous and the Gloo or NCCL process group ([`ProcessGroup`]; NCCL through a library
//! loaded at run time, [`nccl`]), bucketed gradient averaging overlapping the backward pass or
//! after it ([`GradientSync`]), synchronised batch norm ([`sync_bn`]) and a local launcher
//! ([`launch`]).
//!
//! # Exact gradients with gathered negatives
//!
//! The paper's InfoNCE over a global batch of N = W·n pairs uses all N embeddings as
//! negatives. Each rank gathers z1 and z2 of every rank with gradient (`[n, d]` → `[N, d]`) and
//! computes the loss of the whole global batch, L(Z1, Z2), as the authors' code does. Take
//! every rank's objective to be J_r (= L for the InfoNCE, this rank's mean for the online
//! probe) and the run's objective (1/W)·Σ_r J_r. The gather's backward sums the incoming
//! gradient over the ranks and keeps this rank's rows, and SyncBN's statistics are gathered the
//! same way, so rank r's backward yields ∂(Σ_r' J_r')/∂θ through its own rows; the gradient
//! all-reduce then averages over ranks: (1/W)·Σ_r ∂(Σ_r' J_r')/∂θ|_r = ∂L/∂θ + ∂(mean probe
//! loss)/∂θ, the one-process gradient over the global batch. The test
//! `crates/directclr-cli/tests/dist.rs` checks it: 2 processes hold the weights of 1.

mod config;
mod env;
pub mod grad_sync;
mod group;
pub mod launch;
pub mod nccl;
pub mod sync_bn;

use std::sync::Arc;
use std::time::Duration;

use tch::{Kind, Tensor};

pub use config::DistConfig;
pub use env::DistEnv;
pub use grad_sync::{broadcast_tensors, GradientBuckets, GradientSync, OverlappedReducer};
pub use group::{Backend, PendingReduce, ProcessGroup};
pub use sync_bn::{sync_batch_norm, SyncBatchNormScope};

use crate::data::Shard;
use crate::{Error, Result};

/// One rank's view of a data-parallel run: its process group and the run's settings.
#[derive(Debug)]
pub struct Distributed {
    group: Arc<ProcessGroup>,
    config: DistConfig,
    local_rank: usize,
}

impl Distributed {
    /// Joins the run of `env` with the settings of `config`.
    pub fn init(env: &DistEnv, config: &DistConfig) -> Result<Self> {
        let group = ProcessGroup::init(
            env,
            config.backend,
            Duration::from_secs(config.timeout_s.max(1)),
        )?;
        Ok(Distributed {
            group: Arc::new(group),
            config: *config,
            local_rank: env.local_rank,
        })
    }

    /// The process group.
    pub fn group(&self) -> &Arc<ProcessGroup> {
        &self.group
    }

    /// The settings.
    pub fn config(&self) -> &DistConfig {
        &self.config
    }

    /// This process's rank.
    pub fn rank(&self) -> usize {
        self.group.rank()
    }

    /// Rank among the processes of this machine.
    pub fn local_rank(&self) -> usize {
        self.local_rank
    }

    /// Number of processes.
    pub fn world_size(&self) -> usize {
        self.group.world_size()
    }

    /// Whether this is rank 0, the one that writes logs and checkpoints.
    pub fn is_main(&self) -> bool {
        self.rank() == 0
    }

    /// This rank's share of every epoch.
    pub fn shard(&self) -> Shard {
        Shard {
            rank: self.rank(),
            world_size: self.world_size(),
        }
    }

    /// The per-rank batch of a global batch (the config's `batch_size`, the N of the InfoNCE):
    /// `global / world`, which must divide exactly.
    pub fn local_batch(&self, global: usize) -> Result<usize> {
        let w = self.world_size();
        if global / w * w != global || global / w == 0 {
            return Err(Error::config(
                "batch_size",
                format!(
                    "the global batch {global} must be a positive multiple of the {w} processes \
                     (each takes batch_size / {w})"
                ),
            ));
        }
        Ok(global / w)
    }

    /// Every rank's rows, differentiably ([`ProcessGroup::all_gather_with_grad`]).
    ///
    /// # Shapes
    /// `[n, d]` → `[world · n, d]`.
    pub fn gather(&self, z: &Tensor) -> Result<Tensor> {
        self.group.all_gather_with_grad(z)
    }

    /// The synchronised-BN mode for the forward pass, when the config asks for it.
    pub fn sync_bn_scope(&self) -> Option<SyncBatchNormScope> {
        self.config
            .sync_bn
            .then(|| SyncBatchNormScope::enter(self.group.clone()))
    }

    /// The gradient buckets of `params`.
    pub fn buckets(&self, params: &[(String, Tensor)]) -> GradientBuckets {
        GradientBuckets::new(params, self.bucket_bytes())
    }

    fn bucket_bytes(&self) -> usize {
        (self.config.bucket_mb * 1024.0 * 1024.0).max(1.0) as usize
    }

    /// How the gradients of `params` (the trainable parameters, in the same order on every
    /// rank) are averaged: overlapping the backward pass (`overlap = true`, c10d's Reducer;
    /// every rank must call this, it checks the parameters' shapes across the ranks) or after
    /// it.
    pub fn gradient_sync(&self, params: &[(String, Tensor)]) -> Result<GradientSync> {
        Ok(if self.config.overlap {
            GradientSync::Overlapped(OverlappedReducer::new(
                &self.group,
                params,
                self.bucket_bytes(),
            )?)
        } else {
            GradientSync::AfterBackward(self.buckets(params), self.group.clone())
        })
    }

    /// Replaces each of `sums` (scalars on the device) by its mean over the ranks, in one
    /// all-reduce (for the metrics: every rank then logs the same numbers).
    pub fn mean_over_ranks(&self, sums: &[&Tensor]) -> Result<Vec<Tensor>> {
        let _g = tch::no_grad_guard();
        let flat: Vec<Tensor> = sums
            .iter()
            .map(|t| t.f_to_kind(Kind::Double)?.f_reshape([1]))
            .collect::<Result<_, _>>()?;
        let flat = Tensor::f_cat(&flat, 0)?;
        self.group
            .all_reduce_sum_(&flat, "all-reduce of the metrics")?;
        let flat = flat.f_div_scalar(self.world_size() as f64)?;
        (0..sums.len() as i64).map(|i| Ok(flat.f_get(i)?)).collect()
    }
}

impl Distributed {
    /// This rank's device: the CPU, or for `cuda[:n]` the GPU `LOCAL_RANK` (modulo the
    /// visible GPUs, so that several ranks may share one GPU, as the GPU check does).
    pub fn device(&self, spec: crate::runtime::DeviceSpec) -> Result<tch::Device> {
        match spec {
            crate::runtime::DeviceSpec::Cpu => Ok(tch::Device::Cpu),
            crate::runtime::DeviceSpec::Cuda(_) => {
                // Loads the CUDA backend and checks that device 0 exists.
                crate::runtime::DeviceSpec::Cuda(0).resolve()?;
                let count = tch::Cuda::device_count().max(1) as usize;
                Ok(tch::Device::Cuda(self.local_rank % count))
            }
        }
    }
}

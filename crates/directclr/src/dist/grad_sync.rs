//! Gradient averaging over the ranks, in buckets (as PyTorch's DistributedDataParallel): the
//! gradients of consecutive parameters are flattened into buckets of about `bucket_mb`
//! megabytes, every bucket's all-reduce is started at once (c10d runs them on its own threads,
//! so later buckets are flattened while earlier ones travel), then each is waited for, divided
//! by the world size and copied back.
//!
//! Buckets follow the reverse order of the parameters, the order in which backward produces
//! their gradients. The all-reduces start after the backward has finished: they do not yet
//! overlap the backward itself (that needs gradient hooks in the shim).
//!
//! With every rank's loss defined as in [`super::Distributed`] (the global InfoNCE through
//! gathered embeddings, per-rank means elsewhere), the averaged gradient is the gradient of the
//! one-process loss over the global batch.

use tch::{Kind, Tensor};

use super::ProcessGroup;
use crate::Result;

/// The parameters grouped into buckets.
#[derive(Debug)]
pub struct GradientBuckets {
    buckets: Vec<Vec<Tensor>>,
}

impl GradientBuckets {
    /// Groups `params` (in their registration order) into buckets of at most `cap_bytes`
    /// (a parameter larger than the cap gets a bucket of its own), last parameters first.
    pub fn new(params: &[(String, Tensor)], cap_bytes: usize) -> Self {
        let mut buckets: Vec<Vec<Tensor>> = Vec::new();
        let mut size = 0usize;
        for (_, p) in params.iter().rev() {
            let bytes = p.numel() * p.kind().elt_size_in_bytes();
            if buckets.is_empty() || size + bytes > cap_bytes {
                buckets.push(Vec::new());
                size = 0;
            }
            buckets
                .last_mut()
                .expect("a bucket exists")
                .push(p.shallow_clone());
            size += bytes;
        }
        buckets.retain(|b| !b.is_empty());
        GradientBuckets { buckets }
    }

    /// Number of buckets.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether there is no bucket.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// Replaces every gradient by its mean over the ranks. A parameter without a gradient on
    /// this rank contributes zeros and stays without one (the graphs are the same on every
    /// rank, so it has none anywhere).
    pub fn average(&self, group: &ProcessGroup) -> Result<()> {
        let _g = tch::no_grad_guard();
        let world = group.world_size() as f64;
        let mut pending = Vec::with_capacity(self.buckets.len());
        for (i, bucket) in self.buckets.iter().enumerate() {
            let grads: Vec<Tensor> = bucket.iter().map(|p| p.grad()).collect();
            let flat: Vec<Tensor> = bucket
                .iter()
                .zip(&grads)
                .map(|(p, g)| {
                    if g.defined() {
                        g.f_reshape([-1])
                    } else {
                        Tensor::f_zeros([p.numel() as i64], (p.kind(), p.device()))
                    }
                })
                .collect::<Result<_, _>>()?;
            let flat = Tensor::f_cat(&flat, 0)?; // [Σ numel]
            let work =
                group.start_all_reduce_sum(&flat, &format!("all-reduce of gradient bucket {i}"))?;
            pending.push((flat, grads, work));
        }
        for (mut flat, grads, work) in pending {
            work.wait()?;
            let _ = flat.f_div_scalar_(world)?;
            let mut offset = 0i64;
            for g in grads {
                let n = g.numel() as i64;
                if g.defined() {
                    let mut g = g;
                    let src = flat.f_narrow(0, offset, n)?.f_view_as(&g)?;
                    g.f_copy_(&src.f_to_kind(g.kind())?)?;
                }
                offset += n;
            }
        }
        Ok(())
    }
}

/// Every tensor of `tensors` made equal to rank `root`'s (weights, buffers, optimiser state),
/// one flattened broadcast per dtype.
pub fn broadcast_tensors(group: &ProcessGroup, tensors: &[Tensor], root: usize) -> Result<()> {
    let _g = tch::no_grad_guard();
    let mut kinds: Vec<Kind> = Vec::new();
    for t in tensors {
        if !kinds.contains(&t.kind()) {
            kinds.push(t.kind());
        }
    }
    for kind in kinds {
        let same: Vec<&Tensor> = tensors.iter().filter(|t| t.kind() == kind).collect();
        let flat: Vec<Tensor> = same
            .iter()
            .map(|t| t.f_reshape([-1]))
            .collect::<Result<_, _>>()?;
        let flat = Tensor::f_cat(&flat, 0)?.f_contiguous()?;
        group.broadcast_(
            &flat,
            root,
            &format!("broadcast of the {kind:?} state from rank {root}"),
        )?;
        let mut offset = 0i64;
        for t in same {
            let n = t.numel() as i64;
            let mut t = t.shallow_clone();
            t.f_copy_(&flat.f_narrow(0, offset, n)?.f_view_as(&t)?)?;
            offset += n;
        }
    }
    Ok(())
}

//! Gradient averaging over the ranks, in buckets, two ways ([`GradientSync`]):
//!
//! - **overlapped** ([`OverlappedReducer`], `[dist] overlap = true`, the default): PyTorch's
//!   own `c10d::Reducer`, the engine of DistributedDataParallel, through the shim. It hooks
//!   every parameter's gradient accumulator; when the last gradient of a bucket has been
//!   accumulated, that bucket's all-reduce starts while the backward pass goes on through the
//!   earlier layers, and a callback at the end of the pass waits for every bucket and writes the
//!   averages into the gradients. After the first step the buckets are rebuilt once in the
//!   order the gradients arrived (rank 0's order, broadcast), as DDP does.
//! - **after the backward** ([`GradientBuckets`], `overlap = false`): the same buckets, all
//!   started at once when the backward pass has ended (c10d runs them on its own threads, so
//!   later buckets are flattened while earlier ones travel), then waited for, divided by the
//!   world size and copied back.
//!
//! Buckets hold about `bucket_mb` megabytes of consecutive parameters, last parameters first
//! (the order in which backward produces their gradients). The two ways give the same
//! averages: the reducer divides each gradient by the world size W before summing, the other
//! way divides the sum; both are exact for W a power of two, and differ by rounding otherwise.
//!
//! With every rank's loss defined as in [`super::Distributed`] (the global InfoNCE through
//! gathered embeddings, per-rank means elsewhere), the averaged gradient is the gradient of the
//! one-process loss over the global batch.

use std::ffi::c_char;
use std::ptr::NonNull;
use std::sync::Arc;

use tch::{Kind, Tensor};

use super::group::{check, ERR_LEN};
use super::ProcessGroup;
use crate::{Error, Result};

/// How a rank's gradients are averaged over the ranks during a step.
#[derive(Debug)]
pub enum GradientSync {
    /// All-reduces started by autograd hooks while the backward pass runs.
    Overlapped(OverlappedReducer),
    /// All-reduces started after the backward pass.
    AfterBackward(GradientBuckets, Arc<ProcessGroup>),
}

impl GradientSync {
    /// The backward pass of `loss` (a scalar, the same graph on every rank), after which every
    /// parameter's gradient is its mean over the ranks.
    pub fn backward(&self, loss: &Tensor) -> Result<()> {
        match self {
            GradientSync::Overlapped(r) => r.backward(loss),
            GradientSync::AfterBackward(buckets, group) => {
                loss.f_backward()?;
                buckets.average(group)
            }
        }
    }
}

/// The bucket assignment shared by both ways: indices into the parameters, last ones first,
/// at most `cap_bytes` per bucket (a parameter larger than the cap gets a bucket of its own).
fn bucket_indices(params: &[(String, Tensor)], cap_bytes: usize) -> Vec<Vec<usize>> {
    let mut buckets: Vec<Vec<usize>> = Vec::new();
    let mut size = 0usize;
    for (i, (_, p)) in params.iter().enumerate().rev() {
        let bytes = p.numel() * p.kind().elt_size_in_bytes();
        if buckets.is_empty() || size + bytes > cap_bytes {
            buckets.push(Vec::new());
            size = 0;
        }
        buckets.last_mut().expect("a bucket exists").push(i);
        size += bytes;
    }
    buckets.retain(|b| !b.is_empty());
    buckets
}

/// DDP's default cap of the first bucket after the rebuild (a small first bucket starts the
/// first all-reduce early): 1 MiB.
const FIRST_BUCKET_BYTES: usize = 1024 * 1024;

/// PyTorch's `c10d::Reducer` over a group and the model's parameters (see the module's
/// documentation). Dropping it removes its autograd hooks.
#[derive(Debug)]
pub struct OverlappedReducer {
    reducer: NonNull<directclr_sys::DirectclrReducer>,
    /// The parameters, by name (to name those without a gradient).
    params: Vec<(String, Tensor)>,
    /// Keeps the group alive as long as the reducer's hooks may run.
    group: Arc<ProcessGroup>,
}

impl Drop for OverlappedReducer {
    fn drop(&mut self) {
        // SAFETY: the handle came from the shim and is freed once.
        unsafe { directclr_sys::directclr_dist_reducer_free(self.reducer.as_ptr()) };
    }
}

impl OverlappedReducer {
    /// A reducer over `params` (every one a leaf that requires a gradient and receives one in
    /// every step; the same names, shapes and memory layouts on every rank, which this call
    /// checks across the ranks, so every rank must call it) in buckets of at most `cap_bytes`.
    pub fn new(
        group: &Arc<ProcessGroup>,
        params: &[(String, Tensor)],
        cap_bytes: usize,
    ) -> Result<Self> {
        let context = || {
            format!(
                "rank {} of {}, gradient reducer",
                group.rank(),
                group.world_size()
            )
        };
        if params.is_empty() {
            return Err(Error::Distributed {
                context: context(),
                reason: "no parameter to reduce".into(),
            });
        }
        let buckets = bucket_indices(params, cap_bytes);
        let flat: Vec<usize> = buckets.iter().flatten().copied().collect();
        let sizes: Vec<usize> = buckets.iter().map(Vec::len).collect();
        let ptrs: Vec<*const directclr_sys::C_tensor> =
            params.iter().map(|(_, t)| t.as_ptr() as *const _).collect();
        let mut err = [0 as c_char; ERR_LEN];
        let mut out = std::ptr::null_mut();
        // SAFETY: live group handle and tensors; the arrays outlive the call (the shim copies
        // what it keeps: tensor handles share storage and autograd metadata).
        let rc = unsafe {
            directclr_sys::directclr_dist_reducer_new(
                group.handle(),
                ptrs.as_ptr(),
                ptrs.len(),
                flat.as_ptr(),
                sizes.as_ptr(),
                sizes.len(),
                cap_bytes as i64,
                FIRST_BUCKET_BYTES.min(cap_bytes) as i64,
                &mut out,
                err.as_mut_ptr(),
                ERR_LEN,
            )
        };
        check(rc, &err, &context())?;
        Ok(OverlappedReducer {
            reducer: NonNull::new(out).expect("the shim sets the reducer on success"),
            params: params
                .iter()
                .map(|(n, t)| (n.clone(), t.shallow_clone()))
                .collect(),
            group: group.clone(),
        })
    }

    /// The backward pass of `loss` with the gradients averaged over the ranks, each bucket's
    /// all-reduce overlapping the rest of the pass; when it returns, every parameter's
    /// gradient is its mean over the ranks. A parameter that received no gradient is an
    /// [`Error::Distributed`] naming it (its bucket would never be reduced).
    pub fn backward(&self, loss: &Tensor) -> Result<()> {
        let mut err = [0 as c_char; ERR_LEN];
        // SAFETY: live reducer and tensor handles.
        let rc = unsafe {
            directclr_sys::directclr_dist_reducer_backward(
                self.reducer.as_ptr(),
                loss.as_ptr(),
                err.as_mut_ptr(),
                ERR_LEN,
            )
        };
        let context = format!(
            "rank {} of {}, backward pass with overlapped gradient all-reduce",
            self.group.rank(),
            self.group.world_size()
        );
        if rc == 2 {
            let missing: Vec<&str> = self
                .params
                .iter()
                .filter(|(_, t)| !t.grad().defined())
                .map(|(n, _)| n.as_str())
                .collect();
            return Err(Error::Distributed {
                context,
                reason: format!(
                    "parameter(s) {} received no gradient in this step, so their bucket was \
                     never reduced; the overlapped all-reduce needs every parameter in every \
                     step: set `dist.overlap = false`",
                    missing.join(", ")
                ),
            });
        }
        check(rc, &err, &context)
    }
}

/// The parameters grouped into buckets.
#[derive(Debug)]
pub struct GradientBuckets {
    buckets: Vec<Vec<Tensor>>,
}

impl GradientBuckets {
    /// Groups `params` (in their registration order) into buckets of at most `cap_bytes`
    /// (a parameter larger than the cap gets a bucket of its own), last parameters first.
    pub fn new(params: &[(String, Tensor)], cap_bytes: usize) -> Self {
        let buckets = bucket_indices(params, cap_bytes)
            .into_iter()
            .map(|b| b.into_iter().map(|i| params[i].1.shallow_clone()).collect())
            .collect();
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

//! Synchronised batch normalisation (the authors' recipe: `nn.SyncBatchNorm`): in training,
//! the batch statistics are those of the global batch, the union of every rank's rows.
//!
//! Each rank computes its count n_r, mean m_r and biased variance v_r per channel (two-pass,
//! as BatchNorm); the triples are gathered with gradient ([`ProcessGroup::all_gather_with_grad`])
//! and combined exactly (Chan et al.):
//!
//! N = Σ n_r,  μ = Σ n_r m_r / N,  σ² = Σ n_r (v_r + (m_r − μ)²) / N,
//!
//! then y = (x − μ) / √(σ² + ε) · γ + β. The running statistics follow PyTorch: mean and
//! unbiased variance σ²·N/(N − 1) with momentum. The backward of the gather sums the gradients
//! of the statistics over the ranks, so that the gradients equal those of BatchNorm over the
//! global batch on one process.
//!
//! A [`SyncBatchNormScope`] turns this on for every [`crate::model::BatchNorm`] forward of the
//! current thread while it lives (a thread-local mode, like autocast).

use std::cell::RefCell;
use std::sync::Arc;

use tch::{Kind, Tensor};

use super::ProcessGroup;
use crate::Result;

thread_local! {
    static CURRENT: RefCell<Option<Arc<ProcessGroup>>> = const { RefCell::new(None) };
}

/// While alive, batch norms of this thread synchronise their training statistics over `group`.
#[derive(Debug)]
pub struct SyncBatchNormScope {
    previous: Option<Arc<ProcessGroup>>,
}

impl SyncBatchNormScope {
    /// Enters the mode (scopes nest; dropping restores the previous one).
    pub fn enter(group: Arc<ProcessGroup>) -> Self {
        let previous = CURRENT.with(|c| c.borrow_mut().replace(group));
        SyncBatchNormScope { previous }
    }
}

impl Drop for SyncBatchNormScope {
    fn drop(&mut self) {
        let previous = self.previous.take();
        CURRENT.with(|c| *c.borrow_mut() = previous);
    }
}

/// The group batch norms synchronise over on this thread, if any.
pub fn current_group() -> Option<Arc<ProcessGroup>> {
    CURRENT.with(|c| c.borrow().clone())
}

/// Batch normalisation of `x` in training mode with the statistics of the global batch;
/// updates `running_mean` and `running_var` in place.
///
/// # Shapes
/// - `x`: `[n, C]` or `[n, C, H, W]` (n may differ between ranks); output: same.
/// - `weight`, `bias`, `running_mean`, `running_var`: `[C]`.
#[allow(clippy::too_many_arguments)]
pub fn sync_batch_norm(
    group: &ProcessGroup,
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    running_mean: &Tensor,
    running_var: &Tensor,
    momentum: f64,
    eps: f64,
) -> Result<Tensor> {
    let size = x.size();
    let c = size[1];
    // Reduce over every dimension but the channels; statistics in float32 at least.
    let dims: Vec<i64> = (0..size.len() as i64).filter(|&d| d != 1).collect();
    let input_kind = x.kind();
    let xf = match input_kind {
        Kind::Half | Kind::BFloat16 => x.f_to_kind(Kind::Float)?,
        _ => x.shallow_clone(),
    };
    let n_local = (x.numel() as i64 / c.max(1)) as f64;
    let mean = xf.f_mean_dim(dims.as_slice(), false, None::<Kind>)?; // [C]
    let var = xf.f_var_correction(dims.as_slice(), 0, false)?; // [C]
    let count = Tensor::f_full([1], n_local, (mean.kind(), mean.device()))?; // [1]
    let packed = Tensor::f_cat(&[&mean, &var, &count], 0)?.f_unsqueeze(0)?; // [1, 2C+1]
    let all = group.all_gather_with_grad(&packed)?; // [W, 2C+1]
    let means = all.f_narrow(1, 0, c)?; // [W, C]
    let vars = all.f_narrow(1, c, c)?; // [W, C]
    let counts = all.f_narrow(1, 2 * c, 1)?; // [W, 1]
    let total = counts.f_sum(None::<Kind>)?; // []
    let mu = (&means * &counts).f_sum_dim_intlist([0i64].as_slice(), false, None::<Kind>)? / &total; // [C]
    let dev = &means - &mu.f_unsqueeze(0)?; // [W, C]
    let sigma2 = ((&vars + &dev * &dev) * &counts).f_sum_dim_intlist(
        [0i64].as_slice(),
        false,
        None::<Kind>,
    )? / &total; // [C]
                 // Broadcast [C] over x's layout: [1, C] or [1, C, 1, 1].
    let mut shape = vec![1i64; size.len()];
    shape[1] = c;
    let inv_std = (&sigma2 + eps).f_rsqrt()?;
    let scale = (&inv_std * weight).f_reshape(shape.as_slice())?;
    let shift = (bias - &mu * &inv_std * weight).f_reshape(shape.as_slice())?;
    let y = &xf * &scale + &shift;
    {
        let _g = tch::no_grad_guard();
        // σ²·N/(N − 1) without reading N back to the host (no device synchronisation).
        let n = total.f_detach()?;
        let unbiased = sigma2.f_detach()? * &n / (&n - 1.0).f_clamp_min(1.0)?;
        let mut rm = running_mean.shallow_clone();
        let mut rv = running_var.shallow_clone();
        let _ = rm.f_mul_scalar_(1.0 - momentum)?;
        let _ = rm.f_add_(&(mu.f_detach()? * momentum).f_to_kind(rm.kind())?)?;
        let _ = rv.f_mul_scalar_(1.0 - momentum)?;
        let _ = rv.f_add_(&(unbiased * momentum).f_to_kind(rv.kind())?)?;
    }
    Ok(if y.kind() != input_kind {
        y.f_to_kind(input_kind)?
    } else {
        y
    })
}

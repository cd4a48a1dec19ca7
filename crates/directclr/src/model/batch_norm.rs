//! Batch normalisation with PyTorch's parameters and buffers, `num_batches_tracked` included.

use tch::nn::{self, Init};
use tch::{Kind, Tensor};

use super::state::StateRecorder;
use crate::Result;

/// PyTorch's `BatchNorm1d`/`BatchNorm2d` (affine, running statistics, momentum 0.1, eps 1e-5).
///
/// Holds `weight`, `bias` (trainable), `running_mean`, `running_var` (buffers) and
/// `num_batches_tracked` (an int64 scalar buffer, as in PyTorch). Like PyTorch, a training
/// forward adds 1 to `num_batches_tracked`; with a momentum set it does not enter the
/// computation, and it is kept only so that a `state_dict` written here equals one written by
/// PyTorch key for key.
#[derive(Debug)]
pub struct BatchNorm {
    /// Scale γ. `[C]`
    pub weight: Tensor,
    /// Shift β. `[C]`
    pub bias: Tensor,
    /// Running mean (buffer). `[C]`
    pub running_mean: Tensor,
    /// Running variance (buffer). `[C]`
    pub running_var: Tensor,
    /// Number of training forwards (int64 scalar buffer). `[]`
    pub num_batches_tracked: Tensor,
}

impl BatchNorm {
    /// PyTorch's momentum of the running statistics.
    pub const MOMENTUM: f64 = 0.1;
    /// PyTorch's ε.
    pub const EPS: f64 = 1e-5;

    /// Builds a batch norm over `channels` under `p`, γ initialised to `gamma` (1, or 0 for the
    /// last BN of a residual branch with `zero_init_residual`), β to 0.
    pub(crate) fn new(
        p: &nn::Path,
        rec: &mut StateRecorder,
        channels: i64,
        gamma: f64,
    ) -> Result<Self> {
        let weight = rec.param(p, "weight", &[channels], Init::Const(gamma))?;
        let bias = rec.param(p, "bias", &[channels], Init::Const(0.0))?;
        let running_mean = rec.buffer(
            p,
            "running_mean",
            Tensor::f_zeros([channels], (Kind::Float, p.device()))?,
        )?;
        let running_var = rec.buffer(
            p,
            "running_var",
            Tensor::f_ones([channels], (Kind::Float, p.device()))?,
        )?;
        let num_batches_tracked = rec.buffer(
            p,
            "num_batches_tracked",
            Tensor::f_zeros([] as [i64; 0], (Kind::Int64, p.device()))?,
        )?;
        Ok(BatchNorm {
            weight,
            bias,
            running_mean,
            running_var,
            num_batches_tracked,
        })
    }

    /// Normalises `x`: with batch statistics (and updates the running ones) when `train`, with
    /// the running statistics otherwise.
    ///
    /// # Shapes
    /// - `x`: `[batch, C]` or `[batch, C, H, W]`; output: same.
    ///
    /// In training, inside a [`crate::dist::SyncBatchNormScope`] of a run of several processes,
    /// the batch statistics are those of the global batch ([`crate::dist::sync_batch_norm`]).
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let sync = if train {
            crate::dist::sync_bn::current_group()
        } else {
            None
        };
        let y = if let Some(group) = sync {
            crate::dist::sync_batch_norm(
                &group,
                x,
                &self.weight,
                &self.bias,
                &self.running_mean,
                &self.running_var,
                Self::MOMENTUM,
                Self::EPS,
            )?
        } else {
            self.forward_local(x, train)?
        };
        if train {
            let mut n = self.num_batches_tracked.shallow_clone();
            tch::no_grad(|| n.f_add_scalar_(1).map(drop))?;
        }
        Ok(y)
    }

    /// libtorch's batch norm over this process's rows.
    fn forward_local(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        Ok(x.f_batch_norm(
            Some(&self.weight),
            Some(&self.bias),
            Some(&self.running_mean),
            Some(&self.running_var),
            train,
            Self::MOMENTUM,
            Self::EPS,
            true,
        )?)
    }
}

//! One optimisation step, as the paper's recipe and the authors' `main.py`: two augmented views
//! x1, x2 of the batch → r = f(x) (two forwards, so each view has its own batch-norm
//! statistics) → z = head(r) → InfoNCE(z1, z2) + the online probe's cross-entropy on the
//! detached r1 → backward → one update of the optimiser at the scheduled learning rate.

use tch::{Device, Tensor};

use super::models::Models;
use super::speed::ViewMaker;
use crate::data::Batch;
use crate::dist::{Distributed, GradientSync};
use crate::loss::CheckedInfoNce;
use crate::precision::{to_channels_last, Autocast, LowPrecision};
use crate::Result;

/// How a run takes its steps: the views, the loss, the device's precision settings and, with
/// several processes, the group the embeddings and gradients go through.
pub(super) struct StepRecipe<'a> {
    /// The two views of each batch, on the device.
    pub(super) views: ViewMaker,
    /// The run's InfoNCE (checked with the configuration).
    pub(super) loss: &'a CheckedInfoNce,
    /// The device of the models and of the views.
    pub(super) device: Device,
    /// Inputs channels-last (CUDA, `precision.channels_last`).
    pub(super) channels_last: bool,
    /// The forward pass under autocast (CUDA, `precision.autocast = "bf16"`).
    pub(super) autocast: Option<LowPrecision>,
    /// The data-parallel group (`None`: one process).
    pub(super) dist: Option<&'a Distributed>,
    /// Gradient averaging over the ranks (several processes).
    pub(super) gradient_sync: Option<GradientSync>,
}

/// The losses of a step, left on the device (nothing is read back).
pub(super) struct StepLosses {
    /// The InfoNCE of the (global) batch `[]`.
    pub(super) loss: Tensor,
    /// The probe's cross-entropy `[]` and accuracy `[]` on this rank's rows (`probe = true`).
    pub(super) probe: Option<(Tensor, Tensor)>,
}

impl StepRecipe<'_> {
    /// One step of `models` on `batch` (of epoch `epoch`) at learning rate `lr`.
    ///
    /// # Shapes
    /// x1, x2 `[n, 3, s, s]` → r1, r2 `[n, D]` → z1, z2 `[n, d]` (`[world · n, d]` gathered
    /// over the ranks) → InfoNCE `[]`; probe logits `[n, classes]` → cross-entropy `[]`.
    pub(super) fn step(
        &self,
        models: &mut Models,
        batch: &Batch,
        epoch: usize,
        lr: f64,
    ) -> Result<StepLosses> {
        let (x1, x2) = self.two_views(batch, epoch)?; // 2 × [n, 3, s, s]
        let m = &models.run;
        // The forward pass and the losses under autocast (CUDA, bf16); backward outside.
        let (loss, probe) = {
            let _autocast = self.autocast()?;
            let _sync_bn = self.dist.and_then(|d| d.sync_bn_scope());
            // r = f(x) [n, D], two forwards: each view has its own batch-norm statistics.
            let r1 = m.encoder.forward_t(&x1, true)?;
            let r2 = m.encoder.forward_t(&x2, true)?;
            // z = head(r) [n, d]; with several processes every rank's rows, [world · n, d].
            let (z1, z2) = self.global(m.head.embed(&r1, true)?, m.head.embed(&r2, true)?)?;
            let loss = self.loss.loss(&z1, &z2)?; // InfoNCE(z1, z2) []
                                                  // The online probe on the detached r1: cross-entropy [] and accuracy [].
            let probe = match &m.probe {
                Some(p) => Some(p.loss_and_accuracy(&r1, &self.views.upload(&batch.labels)?)?),
                None => None,
            };
            (loss, probe)
        };
        let total = match &probe {
            Some((probe_loss, _)) => loss.f_add(probe_loss)?,
            None => loss.shallow_clone(),
        };
        models.optimizer.zero_grad();
        self.backward(&total)?;
        models.optimizer.step(lr)?;
        Ok(StepLosses { loss, probe })
    }

    /// The two views of `batch` on the device, channels-last when asked: 2 × `[n, 3, s, s]`.
    fn two_views(&self, batch: &Batch, epoch: usize) -> Result<(Tensor, Tensor)> {
        let xs = self.views.views(batch, epoch as u64)?;
        let (x1, x2) = (xs[0].shallow_clone(), xs[1].shallow_clone());
        if self.channels_last {
            return Ok((to_channels_last(&x1)?, to_channels_last(&x2)?));
        }
        Ok((x1, x2))
    }

    /// Autocast to the run's low precision while the value lives (CUDA, bf16), or nothing.
    fn autocast(&self) -> Result<Option<Autocast>> {
        (self.autocast.map(|d| Autocast::enter(self.device, d))).transpose()
    }

    /// The embeddings `[n, d]` of this rank's rows as the loss sees them: with several
    /// processes, every rank's rows gathered, `[world · n, d]` (the loss of the global batch).
    fn global(&self, z1: Tensor, z2: Tensor) -> Result<(Tensor, Tensor)> {
        match self.dist {
            Some(d) => Ok((d.gather(&z1)?, d.gather(&z2)?)),
            None => Ok((z1, z2)),
        }
    }

    /// Gradients of `total` `[]`; with several processes averaged over the ranks, overlapping
    /// the backward pass or after it (`[dist] overlap`).
    fn backward(&self, total: &Tensor) -> Result<()> {
        match &self.gradient_sync {
            Some(sync) => sync.backward(total),
            None => Ok(total.f_backward()?),
        }
    }
}

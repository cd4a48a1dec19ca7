//! The learning-rate schedule of the authors: linear warm-up per step, then cosine decay to a
//! floor.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Configuration of the warm-up + cosine schedule (facebookresearch/directclr
/// `adjust_learning_rate`). Defaults are the authors': lr 4.8 (their `--learning-rate`, already
/// 0.3 × 4096/256, so not scaled again), 10 warm-up epochs, floor 0.001 × base.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScheduleConfig {
    /// The learning rate (before scaling).
    pub lr: f64,
    /// Base lr = lr × batch / 256 (the linear scaling rule) instead of lr.
    pub scale_with_batch: bool,
    /// Warm-up length in epochs (may be fractional, may be 0).
    pub warmup_epochs: f64,
    /// The final lr as a fraction of the base lr, in [0, 1] (authors: 0.001).
    pub final_lr_ratio: f64,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        ScheduleConfig {
            lr: 4.8,
            scale_with_batch: false,
            warmup_epochs: 10.0,
            final_lr_ratio: 0.001,
        }
    }
}

impl ScheduleConfig {
    /// Checks the schedule of a run of `epochs` epochs with (global) batch size `batch_size`,
    /// before its number of steps per epoch is known: the checks of [`Self::build`] at one
    /// step per epoch. A warm-up that leaves a step to decay at one step per epoch leaves one
    /// at any number, so `build` then fails only for zero steps per epoch.
    pub fn validate(&self, batch_size: usize, epochs: usize) -> Result<()> {
        self.steps(batch_size, 1, epochs).map(drop)
    }

    /// The schedule of a run of `epochs` epochs of `steps_per_epoch` steps with (global)
    /// batch size `batch_size`.
    pub fn build(
        &self,
        batch_size: usize,
        steps_per_epoch: usize,
        epochs: usize,
    ) -> Result<WarmupCosine> {
        let (warmup_steps, total_steps) = self.steps(batch_size, steps_per_epoch, epochs)?;
        let base_lr = if self.scale_with_batch {
            self.lr * batch_size as f64 / 256.0
        } else {
            self.lr
        };
        Ok(WarmupCosine {
            base_lr,
            warmup_steps,
            total_steps,
            final_lr: base_lr * self.final_lr_ratio,
        })
    }

    /// Checks the configuration and the run's size; the warm-up steps and total steps.
    fn steps(
        &self,
        batch_size: usize,
        steps_per_epoch: usize,
        epochs: usize,
    ) -> Result<(usize, usize)> {
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(Error::config(
                "lr",
                format!("{} is not a positive number", self.lr),
            ));
        }
        if !(0.0..=1.0).contains(&self.final_lr_ratio) {
            return Err(Error::config(
                "final_lr_ratio",
                format!("{} is not in [0, 1]", self.final_lr_ratio),
            ));
        }
        if !(self.warmup_epochs.is_finite() && self.warmup_epochs >= 0.0) {
            return Err(Error::config(
                "warmup_epochs",
                format!("{} is not a non-negative number", self.warmup_epochs),
            ));
        }
        for (field, v) in [
            ("batch_size", batch_size),
            ("steps_per_epoch", steps_per_epoch),
            ("epochs", epochs),
        ] {
            if v == 0 {
                return Err(Error::config(field, "must be at least 1"));
            }
        }
        let total_steps = steps_per_epoch * epochs;
        let warmup_steps = (self.warmup_epochs * steps_per_epoch as f64).round() as usize;
        if warmup_steps >= total_steps {
            return Err(Error::config(
                "warmup_epochs",
                format!(
                    "{} warm-up epochs do not leave any step of the {epochs} epochs to decay",
                    self.warmup_epochs
                ),
            ));
        }
        Ok((warmup_steps, total_steps))
    }
}

/// The learning rate at each step:
/// - step < W: base · step / W (starts at 0);
/// - W ≤ step ≤ T: q = ½ (1 + cos(π (step − W) / (T − W))), lr = base · q + final · (1 − q);
/// - after T: final.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WarmupCosine {
    /// The peak learning rate, reached at the end of warm-up.
    pub base_lr: f64,
    /// Warm-up steps W.
    pub warmup_steps: usize,
    /// Total steps T.
    pub total_steps: usize,
    /// The learning rate at step T.
    pub final_lr: f64,
}

impl WarmupCosine {
    /// The learning rate of step `step` (0-based, counted over the whole run).
    pub fn lr(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return self.base_lr * step as f64 / self.warmup_steps as f64;
        }
        let t = (step.min(self.total_steps) - self.warmup_steps) as f64;
        let span = (self.total_steps - self.warmup_steps) as f64;
        let q = 0.5 * (1.0 + (std::f64::consts::PI * t / span).cos());
        self.base_lr * q + self.final_lr * (1.0 - q)
    }
}

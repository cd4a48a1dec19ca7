//! The numerical guard of the training loop.
//!
//! Every step's loss ℓ, the quantity the step minimises (InfoNCE plus the online probe's
//! cross-entropy), goes through [`Guard::observe`], which updates, on the loss's device, a flag
//! that is set by the first non-finite loss or by a spike: a loss above `spike_factor` × the
//! exponential moving average of the previous losses (`m ← 0.95·m + 0.05·ℓ`, started at the
//! first loss, armed after `spike_warmup_steps` steps). The probe matters: the InfoNCE of
//! normalised embeddings is bounded (by about log(2N−1) + 2/τ), so an absurd learning rate
//! shows first as an exploding probe loss.
//! The flag is read back by [`Guard::check`]: after every step on the CPU (where reading a
//! scalar costs nothing), and on CUDA at every log point and always before a checkpoint is
//! written (so that no step waits for the host, yet no checkpoint can hold a failed state).
//!
//! What follows a trip is [`OnFailure`]: stop with a clear error, keeping the last good
//! checkpoint (the default), or roll back to it, multiply the learning rate by `lr_factor`,
//! log a [`GuardLine`] in `metrics.jsonl` and go on (at most `max_rollbacks` times). The
//! learning-rate scale, the rollback count and the moving average are saved in every checkpoint
//! ([`GuardState`]), so a resumed run takes the same decisions as an uninterrupted one.
//! [`Guard::recover`] carries out that decision in the training loop.

use std::path::Path;

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use super::run_dir::RunDir;
use crate::run::{read_checkpoint, Checkpoint, CHECKPOINT_FILE};
use crate::{Error, Result};

/// Decay of the moving average of the loss that a spike is measured against (a memory of
/// about 20 steps).
pub const LOSS_EMA_DECAY: f64 = 0.95;

/// What the run does when the guard trips.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum OnFailure {
    /// Stop with an error; the last good checkpoint stays in the run folder.
    #[default]
    Stop,
    /// Reload the last good checkpoint (the initial weights before the first one), lower the
    /// learning rate and continue.
    Rollback,
}

/// The `[guard]` table of a run's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GuardConfig {
    /// Stop or roll back when the loss becomes non-finite or spikes.
    pub on_failure: OnFailure,
    /// A step whose loss (InfoNCE plus probe) exceeds this multiple of the moving average of
    /// the previous losses is a spike (0 turns spike detection off; otherwise more than 1).
    pub spike_factor: f64,
    /// Steps observed before spikes are looked for (the moving average needs a history).
    pub spike_warmup_steps: usize,
    /// Each rollback multiplies the learning rate by this factor, in (0, 1).
    pub lr_factor: f64,
    /// Rollbacks allowed in a run; the next trip stops it.
    pub max_rollbacks: usize,
}

impl Default for GuardConfig {
    fn default() -> Self {
        GuardConfig {
            on_failure: OnFailure::Stop,
            spike_factor: 10.0,
            spike_warmup_steps: 20,
            lr_factor: 0.5,
            max_rollbacks: 3,
        }
    }
}

impl GuardConfig {
    /// Checks the values (the field names are relative to `[guard]`).
    pub fn validate(&self) -> Result<()> {
        let f = self.spike_factor;
        if !(f == 0.0 || (f.is_finite() && f > 1.0)) {
            return Err(Error::config(
                "spike_factor",
                format!("{f} must be 0 (off) or a finite number above 1"),
            ));
        }
        let l = self.lr_factor;
        if !(l > 0.0 && l < 1.0) {
            return Err(Error::config(
                "lr_factor",
                format!("{l} must lie strictly between 0 and 1"),
            ));
        }
        Ok(())
    }
}

/// The guard's state that a checkpoint carries (its `guard` metadata entry).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardState {
    /// Product of the `lr_factor`s of the rollbacks so far (multiplies the schedule's lr).
    pub lr_scale: f64,
    /// Rollbacks so far.
    pub rollbacks: usize,
    /// Moving average of the loss (InfoNCE plus probe).
    pub loss_ema: f64,
    /// Steps observed (the spike detection is armed after `spike_warmup_steps`).
    pub seen: usize,
}

impl Default for GuardState {
    fn default() -> Self {
        GuardState {
            lr_scale: 1.0,
            rollbacks: 0,
            loss_ema: 0.0,
            seen: 0,
        }
    }
}

/// Why the guard tripped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// The InfoNCE or the probe loss was NaN or infinite.
    NonFinite,
    /// The loss (InfoNCE plus probe) exceeded `spike_factor` × its moving average.
    Spike,
}

/// The first failed step since the guard was last cleared.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Trip {
    /// The step (1-based count of optimiser steps, as in the metrics) whose loss failed.
    pub step: usize,
    /// Why.
    pub cause: Cause,
    /// Its loss, InfoNCE plus probe (NaN or infinite for a non-finite trip).
    pub loss: f64,
    /// The moving average it was compared with.
    pub baseline: f64,
}

impl Trip {
    /// The failure in words.
    pub fn describe(&self) -> String {
        match self.cause {
            Cause::NonFinite => format!(
                "the loss became non-finite at step {} ({})",
                self.step, self.loss
            ),
            Cause::Spike => format!(
                "the loss spiked at step {} to {:.4}, {:.1}× its moving average {:.4}",
                self.step,
                self.loss,
                self.loss / self.baseline,
                self.baseline
            ),
        }
    }
}

/// What the run did about a trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// The run stopped.
    Stop,
    /// The run went back to its last good state with a lower learning rate.
    Rollback,
}

/// The tag of a guard line in `metrics.jsonl` (always `"guard"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GuardKind {
    /// A guard event.
    Guard,
}

/// One line of `metrics.jsonl` recording a trip and what was done (`kind = "guard"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuardLine {
    /// Always [`GuardKind::Guard`].
    pub kind: GuardKind,
    /// For a rollback, the epoch the run continues from; for a stop, the failed step's epoch.
    pub epoch: usize,
    /// For a rollback, the step the run continues from (its last good checkpoint, 0 for the
    /// initial weights); for a stop, the failed step.
    pub step: usize,
    /// The failed step.
    pub failed_step: usize,
    /// Why the guard tripped.
    pub cause: Cause,
    /// The failed step's loss, InfoNCE plus probe (`null` when not finite).
    pub loss: Option<f64>,
    /// The moving average it was compared with.
    pub baseline: f64,
    /// What the run did.
    pub action: Action,
    /// The learning-rate scale from now on.
    pub lr_scale: f64,
    /// Rollbacks so far, this one included.
    pub rollbacks: usize,
}

/// The last good state of a run, which a rollback returns to.
pub(crate) struct LastGood<'a> {
    /// The run folder (`None` on the ranks after rank 0 of a data-parallel run, which stop).
    pub run: Option<&'a RunDir>,
    /// The run folder as the caller named it (for messages).
    pub out: &'a Path,
    /// Epochs completed when the last checkpoint was written, if one was.
    pub checkpoint: Option<usize>,
    /// The state at step 0, kept with `on_failure = "rollback"` until the first checkpoint.
    pub initial: Option<&'a Checkpoint>,
}

/// The guard of one run (see the module's documentation).
pub struct Guard {
    config: GuardConfig,
    state: GuardState,
    /// Read the flag after every step (CPU) or only at log points and before checkpoints.
    every_step: bool,
    // Device scalars: the moving average (f64), whether tripped (bool), and the first trip's
    // step (i64), cause (i64: 1 non-finite, 2 spike), loss and baseline (f64).
    ema: Tensor,
    flag: Tensor,
    trip_step: Tensor,
    trip_cause: Tensor,
    trip_loss: Tensor,
    trip_base: Tensor,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("config", &self.config)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl Guard {
    /// A guard on `device` starting from `state` (a checkpoint's, or the default).
    pub fn new(config: GuardConfig, state: GuardState, device: Device) -> Result<Self> {
        let f64s = |v: f64| Tensor::f_full([], v, (Kind::Double, device));
        Ok(Guard {
            config,
            state,
            every_step: device == Device::Cpu,
            ema: f64s(state.loss_ema)?,
            flag: Tensor::f_zeros([], (Kind::Bool, device))?,
            trip_step: Tensor::f_zeros([], (Kind::Int64, device))?,
            trip_cause: Tensor::f_zeros([], (Kind::Int64, device))?,
            trip_loss: f64s(0.0)?,
            trip_base: f64s(0.0)?,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &GuardConfig {
        &self.config
    }

    /// The factor on the schedule's learning rate.
    pub fn lr_scale(&self) -> f64 {
        self.state.lr_scale
    }

    /// Records step `step`'s InfoNCE `loss` and probe loss (scalars, any float kind), on their
    /// device, without reading anything back.
    pub fn observe(
        &mut self,
        loss: &Tensor,
        probe_loss: Option<&Tensor>,
        step: usize,
    ) -> Result<()> {
        let _g = tch::no_grad_guard();
        let mut l = loss.f_detach()?.f_to_kind(Kind::Double)?; // []
        if let Some(p) = probe_loss {
            l = l.f_add(&p.f_detach()?.f_to_kind(Kind::Double)?)?;
        }
        // A sum is non-finite if a term is (inf − inf included).
        let non_finite = l.f_isfinite()?.f_logical_not()?;
        let armed =
            self.config.spike_factor > 0.0 && self.state.seen >= self.config.spike_warmup_steps;
        let spike = if armed {
            l.f_gt_tensor(&self.ema.f_mul_scalar(self.config.spike_factor)?)?
        } else {
            Tensor::f_zeros([], (Kind::Bool, l.device()))?
        };
        let bad = non_finite.f_logical_or(&spike)?;
        let first = bad.f_logical_and(&self.flag.f_logical_not()?)?;
        // Cause: 1 if non-finite, else 2.
        let device = l.device();
        let cause = Tensor::f_full([], 1i64, (Kind::Int64, device))?
            .f_where_scalarother(&non_finite, 2i64)?;
        let at = Tensor::f_full([], step as i64, (Kind::Int64, device))?;
        self.trip_step = at.f_where_self(&first, &self.trip_step)?;
        self.trip_cause = cause.f_where_self(&first, &self.trip_cause)?;
        self.trip_loss = l.f_where_self(&first, &self.trip_loss)?;
        self.trip_base = self.ema.f_where_self(&first, &self.trip_base)?;
        self.flag = self.flag.f_logical_or(&bad)?;
        self.ema = if self.state.seen == 0 {
            l
        } else {
            self.ema
                .f_mul_scalar(LOSS_EMA_DECAY)?
                .f_add(&l.f_mul_scalar(1.0 - LOSS_EMA_DECAY)?)?
        };
        self.state.seen += 1;
        Ok(())
    }

    /// Whether the flag is read after step `step` (every step on the CPU, at log points on
    /// CUDA; [`Guard::check`] is also called before every checkpoint).
    #[allow(clippy::manual_is_multiple_of)] // `is_multiple_of` needs Rust 1.87; the MSRV is 1.85
    pub fn due(&self, step: usize, log_every: usize) -> bool {
        self.every_step || step % log_every == 0
    }

    /// Reads the flag (synchronising the device): the first failed step since the guard was
    /// last cleared, if any.
    pub fn check(&self) -> Result<Option<Trip>> {
        if !bool::try_from(&self.flag)? {
            return Ok(None);
        }
        Ok(Some(Trip {
            step: i64::try_from(&self.trip_step)? as usize,
            cause: if i64::try_from(&self.trip_cause)? == 1 {
                Cause::NonFinite
            } else {
                Cause::Spike
            },
            loss: f64::try_from(&self.trip_loss)?,
            baseline: f64::try_from(&self.trip_base)?,
        }))
    }

    /// The state to save in a checkpoint (reads the moving average back).
    pub fn state(&self) -> Result<GuardState> {
        Ok(GuardState {
            loss_ema: f64::try_from(&self.ema)?,
            ..self.state
        })
    }

    /// What to do about a trip: [`Action::Rollback`] with [`OnFailure::Rollback`] and rollbacks
    /// left, otherwise [`Action::Stop`].
    pub fn decide(&self) -> Action {
        if self.config.on_failure == OnFailure::Rollback
            && self.state.rollbacks < self.config.max_rollbacks
        {
            Action::Rollback
        } else {
            Action::Stop
        }
    }

    /// After a rollback to a state saved with `saved`: multiplies the learning-rate scale by
    /// `lr_factor`, counts the rollback, takes the saved moving average and step count and
    /// clears the flag.
    pub fn rewind(&mut self, saved: &GuardState) -> Result<()> {
        self.state.rollbacks += 1;
        self.state.lr_scale *= self.config.lr_factor;
        let device = self.ema.device();
        self.state.loss_ema = saved.loss_ema;
        self.state.seen = saved.seen;
        self.ema = Tensor::f_full([], saved.loss_ema, (Kind::Double, device))?;
        self.flag = Tensor::f_zeros([], (Kind::Bool, device))?;
        Ok(())
    }

    /// The metrics line of `trip` handled by `action`, the run continuing from (`epoch`,
    /// `step`) after a rollback, or stopping at the failed step.
    pub fn line(&self, trip: &Trip, action: Action, epoch: usize, step: usize) -> GuardLine {
        GuardLine {
            kind: GuardKind::Guard,
            epoch,
            step,
            failed_step: trip.step,
            cause: trip.cause,
            loss: trip.loss.is_finite().then_some(trip.loss),
            baseline: trip.baseline,
            action,
            lr_scale: self.state.lr_scale,
            rollbacks: self.state.rollbacks,
        }
    }

    /// The error that stops the run after `trip`; `kept` says which checkpoint remains.
    pub fn stop_error(&self, trip: &Trip, epoch: usize, kept: &str) -> Error {
        let (why, advice) = if self.config.on_failure == OnFailure::Rollback {
            (
                format!(
                    "after {} rollback(s) (guard.max_rollbacks) the run stops",
                    self.state.rollbacks
                ),
                "lower the learning rate or check the data",
            )
        } else {
            (
                "the run stops (guard.on_failure = \"stop\")".to_string(),
                "lower the learning rate, check the data, or set guard.on_failure = \
                 \"rollback\" and run again to continue from it with a lower learning rate",
            )
        };
        Error::Numerical {
            context: format!("training epoch {epoch}, step {}", trip.step),
            reason: format!("{}; {why}, {kept}; {advice}", trip.describe()),
        }
    }

    /// Carries out [`Guard::decide`] for `trip`, found in epoch `epoch`. `report` receives each
    /// guard line (to append to the metrics log and show).
    ///
    /// A rollback reads the last good state of `good` (the run folder's checkpoint, or the
    /// initial state before the first one), hands it to `restore` (weights, batch-norm buffers,
    /// momentum), rewinds the guard, drops the metrics lines of the undone steps and logs the
    /// rollback; it returns the (epoch, step) the run continues from. The run stops instead,
    /// with the error of [`Guard::stop_error`] and a stop line, when rollbacks are off or used
    /// up, when there is no state to return to, or when the failed step is the first after the
    /// last good state: its loss is then fixed by the saved weights, whatever the learning rate.
    pub(crate) fn recover(
        &mut self,
        trip: &Trip,
        epoch: usize,
        good: LastGood<'_>,
        restore: impl FnOnce(&Checkpoint, &Path) -> Result<()>,
        report: &mut dyn FnMut(GuardLine) -> Result<()>,
    ) -> Result<(usize, usize)> {
        let kept = match good.checkpoint {
            Some(e) => format!(
                "the last good checkpoint (after epoch {e}) is kept in `{}`",
                good.out.display()
            ),
            None => "no checkpoint had been written yet".to_string(),
        };
        // Several processes always stop (checked at start); one process has its run folder.
        let run = match (good.run, self.decide()) {
            (Some(run), Action::Rollback) => run,
            _ => {
                report(self.line(trip, Action::Stop, epoch, trip.step))?;
                return Err(self.stop_error(trip, epoch, &kept));
            }
        };
        let file = run.path(CHECKPOINT_FILE);
        let ckpt = match (good.checkpoint, good.initial) {
            (Some(_), _) => read_checkpoint(&file)?,
            (None, Some(init)) => init.shallow_clone(),
            (None, None) => return Err(self.stop_error(trip, epoch, &kept)),
        };
        if trip.step == ckpt.progress.step + 1 {
            // The saved weights alone fix the next step's loss: no learning rate can change it.
            report(self.line(trip, Action::Stop, epoch, trip.step))?;
            return Err(self.stop_error(
                trip,
                epoch,
                &format!(
                    "as the failed step is the first after the last good state (step {}), \
                     whose weights alone determine its loss, a rollback cannot avoid it; {kept}",
                    ckpt.progress.step
                ),
            ));
        }
        restore(&ckpt, &file)?;
        self.rewind(&ckpt.guard)?;
        let (epoch, step) = (ckpt.progress.epoch, ckpt.progress.step);
        run.truncate_metrics(step)?;
        report(self.line(trip, Action::Rollback, epoch, step))?;
        Ok((epoch, step))
    }
}

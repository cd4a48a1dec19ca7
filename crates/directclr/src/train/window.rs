//! The metrics of a span of steps ([`Window`]: sums kept on the device, read back only when a
//! line is logged) and how a line is logged ([`log_window`]).

use std::path::Path;
use std::time::Instant;

use tch::{Device, Kind, Tensor};

use super::monitor::RankSnapshot;
use super::run_dir::{MetricsKind, MetricsLine, RunDir};
use super::trainer::Event;
use crate::dist::Distributed;
use crate::{Error, Result};

/// Sums over steps kept on the device, read back only when a line is logged.
pub(super) struct Window {
    pub(super) loss: Tensor,
    pub(super) probe_loss: Tensor,
    pub(super) probe_acc: Tensor,
    pub(super) steps: usize,
    pub(super) samples: usize,
    pub(super) since: Instant,
    pub(super) probe: bool,
}

impl Window {
    pub(super) fn new(device: Device, probe: bool) -> Result<Self> {
        let z = || Tensor::f_zeros([], (Kind::Double, device));
        Ok(Window {
            loss: z()?,
            probe_loss: z()?,
            probe_acc: z()?,
            steps: 0,
            samples: 0,
            since: Instant::now(),
            probe,
        })
    }

    pub(super) fn add(
        &mut self,
        loss: &Tensor,
        probe: Option<&(Tensor, Tensor)>,
        samples: usize,
    ) -> Result<()> {
        let _g = tch::no_grad_guard();
        let _ = self
            .loss
            .f_add_(&loss.f_detach()?.f_to_kind(Kind::Double)?)?;
        if let Some((l, a)) = probe {
            let _ = self
                .probe_loss
                .f_add_(&l.f_detach()?.f_to_kind(Kind::Double)?)?;
            let _ = self.probe_acc.f_add_(&a.f_to_kind(Kind::Double)?)?;
        }
        self.steps += 1;
        self.samples += samples;
        Ok(())
    }

    /// Reads the means back (synchronising the device) and checks that the loss is finite.
    fn line(
        &self,
        kind: MetricsKind,
        epoch: usize,
        step: usize,
        lr: f64,
        last_checkpoint: Option<usize>,
        out: &Path,
    ) -> Result<MetricsLine> {
        let n = self.steps.max(1) as f64;
        let loss = self.loss.f_double_value(&[])? / n;
        let probe_loss = self.probe_loss.f_double_value(&[])? / n;
        if !loss.is_finite() || !probe_loss.is_finite() {
            let kept = match last_checkpoint {
                Some(e) => format!(
                    "the last good checkpoint (after epoch {e}) is kept in `{}`",
                    out.display()
                ),
                None => "no checkpoint had been written yet".to_string(),
            };
            return Err(Error::Numerical {
                context: format!("training epoch {epoch}, up to step {step}"),
                reason: format!(
                    "the loss became non-finite (InfoNCE mean {loss}, probe mean {probe_loss}); \
                     the run stops, {kept}; lower the learning rate or check the data"
                ),
            });
        }
        let secs = self.since.elapsed().as_secs_f64();
        Ok(MetricsLine {
            kind,
            epoch,
            step,
            loss,
            probe_loss: self.probe.then_some(probe_loss),
            probe_acc: if self.probe {
                Some(self.probe_acc.f_double_value(&[])? / n)
            } else {
                None
            },
            lr,
            images_per_s: if secs > 0.0 {
                self.samples as f64 / secs
            } else {
                0.0
            },
            rank: None,
        })
    }
}

/// Summarises `window` as a metrics line of `kind` at (epoch, step, lr, last checkpoint),
/// appends it to the run's log and reports it.
pub(super) fn log_window(
    (run, out, dist): (Option<&RunDir>, &Path, Option<&Distributed>),
    on_event: &mut dyn FnMut(&Event),
    window: &Window,
    kind: MetricsKind,
    (epoch, step, lr, last_checkpoint): (usize, usize, f64, Option<usize>),
    rank: Option<RankSnapshot>,
) -> Result<MetricsLine> {
    let mut line = match dist {
        Some(d) => super::replicas::window_over_ranks(d, window)?.line(
            kind,
            epoch,
            step,
            lr,
            last_checkpoint,
            out,
        )?,
        None => window.line(kind, epoch, step, lr, last_checkpoint, out)?,
    };
    line.rank = rank;
    if let Some(run) = run {
        run.append_metrics(&line)?;
    }
    on_event(&Event::Metrics(line.clone()));
    Ok(line)
}

//! The one training loop of every method of Table 1.
//!
//! Per batch: two views (u8 from the loader, normalised on the device) → r1, r2 = f(x1), f(x2)
//! (two forwards, so each view has its own BN statistics, as the authors' code) → z = head(r)
//! → InfoNCE(z1, z2) + the online probe's cross-entropy on detached r1 → backward → one step
//! of the optimiser with the scheduled learning rate.
//!
//! Repeatability: `tch::manual_seed(seed)` precedes the construction of the models (their only
//! use of libtorch's generator); data order and augmentations are functions of (seed, epoch,
//! sample index) in the loader. A checkpoint therefore needs only the tensors and (epoch, step,
//! seed) for a resumed run to continue exactly as the uninterrupted one (on the CPU, bit for
//! bit, with the same number of threads).

use std::path::{Path, PathBuf};
use std::time::Instant;

use tch::{Device, Kind, Tensor};

use super::guard::{GuardLine, LastGood};
use super::monitor::{CollapseJump, RankSnapshot};
use super::prepare::prepare;
use super::run_dir::{MetricsKind, MetricsLine, RunDir};
use crate::dist::Distributed;
use crate::precision::{to_channels_last, Autocast};
use crate::run::{CheckedConfig, Checkpoint, Progress};
use crate::{Error, Result};

/// How to run (not part of the configuration: they do not change the weights).
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The run folder.
    pub out: PathBuf,
    /// Require a checkpoint in `out` to resume from (a folder with a checkpoint resumes even
    /// without it).
    pub resume: bool,
}

/// What the loop reports while it runs (for progress lines; the metrics file is written by
/// the loop itself).
#[derive(Debug, Clone)]
pub enum Event {
    /// The run starts or resumes.
    Start {
        /// First epoch to run (0 for a new run).
        epoch: usize,
        /// Steps already done.
        step: usize,
        /// Steps of the whole run.
        total_steps: usize,
        /// Steps per epoch.
        steps_per_epoch: usize,
        /// Samples in the dataset (after `data.limit`).
        samples: usize,
        /// The device.
        device: Device,
    },
    /// A step finished (no value is read back from the device for this event).
    Step {
        /// Epoch of the step.
        epoch: usize,
        /// Steps done over the run.
        step: usize,
        /// Steps of the whole run.
        total_steps: usize,
        /// Its learning rate.
        lr: f64,
    },
    /// A metrics line was written.
    Metrics(MetricsLine),
    /// The collapsed count of r or z jumped between two measurements of the monitor.
    Collapse(CollapseJump),
    /// A checkpoint was written after `epoch` epochs.
    Checkpoint {
        /// Epochs completed.
        epoch: usize,
    },
    /// The numerical guard tripped (also written to the metrics file); after a rollback the
    /// run goes on from the line's epoch and step.
    Guard(GuardLine),
}

/// The outcome of [`train`].
#[derive(Debug, Clone)]
pub struct Summary {
    /// The run folder.
    pub out: PathBuf,
    /// The epoch the run (re)started from (0 for a new run).
    pub started_at_epoch: usize,
    /// Epochs completed.
    pub epochs: usize,
    /// Optimiser steps completed.
    pub steps: usize,
    /// The last epoch's metrics, if an epoch ran in this call.
    pub last_epoch: Option<MetricsLine>,
}

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
    fn new(device: Device, probe: bool) -> Result<Self> {
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

    fn add(
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
fn log_window(
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

/// Trains (or resumes) the run of `config` in `opts.out`, calling `on_event` as it goes.
pub fn train(
    config: &CheckedConfig,
    opts: &RunOptions,
    on_event: &mut dyn FnMut(&Event),
) -> Result<Summary> {
    train_distributed(config, opts, None, on_event)
}

/// [`train`] as one rank of a data-parallel run (`dist`; `None`: one process). Every rank
/// reads its shard of each epoch (`batch_size / world` rows per step), the InfoNCE sees the
/// global batch through gathered embeddings, gradients are averaged over the ranks, and rank 0
/// alone writes the run folder; the others start from rank 0's state.
pub fn train_distributed(
    config: &CheckedConfig,
    opts: &RunOptions,
    dist: Option<&Distributed>,
    on_event: &mut dyn FnMut(&Event),
) -> Result<Summary> {
    let c = config.config();
    let mut p = prepare(config, opts, dist)?;
    let (mut epoch, mut step) = p.start;
    let started_at_epoch = epoch;
    let mut last_checkpoint = (epoch > 0).then_some(epoch);
    let device = p.device;
    on_event(&Event::Start {
        epoch,
        step,
        total_steps: p.total_steps,
        steps_per_epoch: p.steps_per_epoch,
        samples: p.samples,
        device,
    });

    let mut last_epoch = None;
    let mut lr = p.schedule.lr(step) * p.guard.lr_scale();
    'epochs: while epoch < c.epochs {
        let mut window = Window::new(device, c.probe)?;
        let mut epoch_window = Window::new(device, c.probe)?;
        let mut batches = p.loader.epoch(epoch as u64).peekable();
        while let Some(batch) = batches.next() {
            let batch = batch?;
            lr = p.schedule.lr(step) * p.guard.lr_scale();
            let n = batch.labels.size()[0] as usize;
            let xs = p.views.views(&batch, epoch as u64)?; // 2 × [n, 3, s, s]
            let (mut x1, mut x2) = (xs[0].shallow_clone(), xs[1].shallow_clone());
            if p.channels_last {
                x1 = to_channels_last(&x1)?;
                x2 = to_channels_last(&x2)?;
            }
            // The forward pass and the losses under autocast (CUDA, bf16); backward outside.
            let (loss, probe) = {
                let _autocast = p.autocast.map(|d| Autocast::enter(device, d)).transpose()?;
                let _sync_bn = dist.and_then(|d| d.sync_bn_scope());
                let r1 = p.models.run.encoder.forward_t(&x1, true)?; // [n, D]
                let r2 = p.models.run.encoder.forward_t(&x2, true)?; // [n, D]
                let z1 = p.models.run.head.embed(&r1, true)?; // [n, d]
                let z2 = p.models.run.head.embed(&r2, true)?; // [n, d]
                                                              // Several processes: the loss of the global batch, from every rank's rows.
                let (z1, z2) = match dist {
                    Some(d) => (d.gather(&z1)?, d.gather(&z2)?), // [world · n, d]
                    None => (z1, z2),
                };
                let loss = config.loss().loss(&z1, &z2)?; // []
                let probe = match &p.models.run.probe {
                    Some(probe) => {
                        Some(probe.loss_and_accuracy(&r1, &p.views.upload(&batch.labels)?)?)
                    }
                    None => None,
                };
                (loss, probe)
            };
            let total = match &probe {
                Some((pl, _)) => loss.f_add(pl)?,
                None => loss.shallow_clone(),
            };
            p.models.optimizer.zero_grad();
            // Several processes: gradients averaged over the ranks, overlapping the backward
            // pass or after it (`[dist] overlap`).
            match &p.gradient_sync {
                Some(sync) => sync.backward(&total)?,
                None => total.f_backward()?,
            }
            p.models.optimizer.step(lr)?;
            step += 1;
            p.guard
                .observe(&loss, probe.as_ref().map(|(l, _)| l), step)?;
            // Read at log points, before the epoch's checkpoint, and after every CPU step.
            let last_of_epoch = batches.peek().is_none();
            if p.guard.due(step, c.log.every_steps) || last_of_epoch {
                if let Some(trip) = p.guard.check()? {
                    let good = LastGood {
                        run: p.run.as_ref(),
                        out: &opts.out,
                        checkpoint: last_checkpoint,
                        initial: p.initial.as_ref(),
                    };
                    let restore = |ckpt: &Checkpoint, file: &Path| p.models.restore(ckpt, file);
                    let mut report = |line: GuardLine| {
                        if let Some(run) = &p.run {
                            run.append_metrics(&line)?;
                        }
                        on_event(&Event::Guard(line));
                        Ok(())
                    };
                    (epoch, step) = p.guard.recover(&trip, epoch, good, restore, &mut report)?;
                    continue 'epochs;
                }
            }
            window.add(&loss, probe.as_ref(), n * p.world)?;
            epoch_window.add(&loss, probe.as_ref(), n * p.world)?;
            on_event(&Event::Step {
                epoch,
                step,
                total_steps: p.total_steps,
                lr,
            });
            if step % c.log.every_steps == 0 {
                let at = (epoch, step, lr, last_checkpoint);
                let to = (p.run.as_ref(), opts.out.as_path(), dist);
                log_window(to, on_event, &window, MetricsKind::Step, at, None)?;
                window = Window::new(device, c.probe)?;
            }
        }
        let rank = match p.monitor.as_mut() {
            Some(m) if m.due(epoch + 1, c.epochs) => {
                let (snapshot, jumps) =
                    m.measure(&p.models.run.encoder, &p.models.run.head, device)?;
                for j in jumps {
                    on_event(&Event::Collapse(j));
                }
                Some(snapshot)
            }
            _ => None,
        };
        let at = (epoch, step, lr, last_checkpoint);
        last_epoch = Some(log_window(
            (p.run.as_ref(), opts.out.as_path(), dist),
            on_event,
            &epoch_window,
            MetricsKind::Epoch,
            at,
            rank,
        )?);
        epoch += 1;
        if epoch % c.checkpoint.every_epochs == 0 || epoch == c.epochs {
            p.models.check_finite(epoch)?;
            if let Some(run) = &p.run {
                run.write_checkpoint(
                    Progress {
                        epoch,
                        step,
                        seed: c.seed,
                    },
                    &p.guard.state()?,
                    &p.models.checkpoint_tensors(),
                    p.models.run.encoder.named_tensors(),
                )?;
                on_event(&Event::Checkpoint { epoch });
            }
            last_checkpoint = Some(epoch);
        }
    }
    Ok(Summary {
        out: p
            .run
            .as_ref()
            .map_or_else(|| opts.out.clone(), |r| r.root().to_path_buf()),
        started_at_epoch,
        epochs: epoch,
        steps: step,
        last_epoch,
    })
}

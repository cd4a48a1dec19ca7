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

use tch::{nn, Device, Kind, Tensor};

use super::guard::{Guard, GuardLine, GuardState, LastGood, OnFailure};
use super::monitor::{CollapseJump, CollapseMonitor, RankSnapshot};
use super::run_dir::{MetricsKind, MetricsLine, Opened, RunDir};
use super::speed::ViewMaker;
use crate::data::{BadImagePolicy, Loader, LoaderConfig, OutputKind, Shard};
use crate::dist::Distributed;
use crate::model::{Part, RunModels};
use crate::optim::{trainable_variables, Optimizer};
use crate::precision::{to_channels_last, Autocast, LowPrecision};
use crate::run::{AutocastDtype, CheckedConfig, Checkpoint, Progress, CHECKPOINT_FILE};
use crate::{Error, Result};

/// Held while a run seeds libtorch's process-wide generator and draws its initial weights, so
/// that runs in several threads of one process (data-parallel ranks, tests, a caller's own
/// threads) each get the initialisation of their own seed.
static INIT_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

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

/// The models of a run and its optimiser, built under one variable store.
struct Models {
    _vs: nn::VarStore,
    run: RunModels,
    optimizer: Optimizer,
}

impl Models {
    /// Every tensor of the run's state under the checkpoint's prefixes.
    fn checkpoint_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = self.run.checkpoint_tensors();
        out.extend(Part::Momentum.prefixed(&self.optimizer.momentum_state()));
        out
    }

    fn restore(&mut self, ckpt: &Checkpoint, file: &Path) -> Result<()> {
        self.run
            .load_checkpoint(&ckpt.tensors, &format!("checkpoint `{}`", file.display()))?;
        self.optimizer
            .load_momentum_state(&Part::Momentum.section(&ckpt.tensors))
    }

    /// A copy of the whole state as a checkpoint at step 0 (what a rollback before the first
    /// checkpoint returns to).
    fn snapshot(&self, seed: u64) -> Result<Checkpoint> {
        let _g = tch::no_grad_guard();
        let tensors = self
            .checkpoint_tensors()
            .into_iter()
            .map(|(n, t)| {
                let mut copy = t.f_detach()?.f_to_device(Device::Cpu)?.f_zeros_like()?;
                copy.f_copy_(&t)?;
                Ok((n, copy))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Checkpoint {
            progress: Progress {
                epoch: 0,
                step: 0,
                seed,
            },
            tensors,
            guard: GuardState::default(),
        })
    }

    /// Checks that every trainable parameter is finite (before a checkpoint is written).
    fn check_finite(&self, vs_params: &[(String, Tensor)], epoch: usize) -> Result<()> {
        let _g = tch::no_grad_guard();
        for (name, t) in vs_params {
            if !bool::try_from(t.f_isfinite()?.f_all()?)? {
                return Err(Error::Numerical {
                    context: format!("end of epoch {epoch}"),
                    reason: format!(
                        "parameter `{name}` holds non-finite values; the run stops without \
                         writing a checkpoint (the previous one is kept)"
                    ),
                });
            }
        }
        Ok(())
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
    let device = match dist {
        Some(d) => d.device(c.device)?,
        None => c.device.resolve()?,
    };
    let main = dist.is_none_or(|d| d.is_main());
    let opened = if main {
        Some(RunDir::open(&opts.out, c, opts.resume)?)
    } else {
        None
    };
    let dataset = config.read_dataset()?;
    let classes = dataset.class_names().len() as i64;
    let samples = dataset.len();
    let views = ViewMaker::new(&c.speed, config.recipe(), c.data.image_size, c.seed, device)?;
    let transform = views.transform();
    let loader = Loader::new(
        dataset,
        transform,
        LoaderConfig {
            batch_size: match dist {
                Some(d) => d.local_batch(c.batch_size)?,
                None => c.batch_size,
            },
            workers: c.workers,
            prefetch: 4,
            seed: c.seed,
            shuffle: true,
            drop_last: true,
            shard: dist.map_or(Shard::SINGLE, |d| d.shard()),
            output: OutputKind::U8,
            pin_memory: device.is_cuda(),
            bad_images: BadImagePolicy::Skip,
        },
    )?;
    let steps_per_epoch = loader.batches_per_epoch();
    // Rank 0 alone measures (every rank holds the same weights and running statistics).
    let mut monitor = match main {
        true => CollapseMonitor::new(config, &c.monitor)?,
        false => None,
    };
    let schedule = c
        .schedule
        .build(c.batch_size, steps_per_epoch, c.epochs)
        .map_err(|e| e.within("schedule"))?;
    let total_steps = steps_per_epoch * c.epochs;

    // Models: the seed fixes their initialisation (a resumed run overwrites it). libtorch has
    // one process-wide generator, so seeding and drawing happen under `INIT_LOCK`: a run in
    // another thread cannot draw in between.
    let init = INIT_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(c.seed as i64);
    let vs = nn::VarStore::new(device);
    let root = vs.root();
    let run_models = RunModels::build(&root, &c.model, &c.method, c.probe.then_some(classes))?;
    drop(init);
    // On CUDA: convolution weights channels-last (values unchanged), inputs likewise below.
    let cuda = matches!(device, tch::Device::Cuda(_));
    let channels_last = cuda && c.precision.channels_last;
    let autocast = match c.precision.autocast {
        AutocastDtype::Bf16 if cuda => Some(LowPrecision::Bf16),
        _ => None,
    };
    if channels_last {
        for (_, mut t) in vs.variables() {
            if t.dim() == 4 {
                let cl = to_channels_last(&t)?;
                tch::no_grad(|| t.set_data(&cl));
            }
        }
    }
    let params = trainable_variables(&vs);
    let mut optimizer = c.optimizer.build(
        params
            .iter()
            .map(|(n, t)| (n.clone(), t.shallow_clone()))
            .collect(),
    )?;
    if c.speed.fused_optimizer {
        optimizer.fuse()?;
    }
    let mut models = Models {
        _vs: vs,
        run: run_models,
        optimizer,
    };

    let mut resumed_guard = GuardState::default();
    let (run, mut epoch, mut step) = match opened {
        None => (None, 0, 0),
        Some(Opened::Fresh(run)) => (Some(run), 0, 0),
        Some(Opened::Resume(run, ckpt)) => {
            resumed_guard = ckpt.guard;
            let file = run.path(CHECKPOINT_FILE);
            models.restore(&ckpt, &file)?;
            let Progress { epoch, step, .. } = ckpt.progress;
            if step != epoch * steps_per_epoch {
                return Err(Error::StateMismatch {
                    what: format!("checkpoint `{}`", file.display()),
                    reason: format!(
                        "{step} steps after {epoch} epochs, but an epoch now has \
                         {steps_per_epoch} steps (did the dataset change?)"
                    ),
                });
            }
            (Some(run), epoch, step)
        }
    };
    // Every rank continues from rank 0's progress and tensors.
    if let Some(d) = dist {
        (epoch, step) =
            super::replicas::start_from_rank0(d, (epoch, step), &models.checkpoint_tensors())?;
    }
    let gradient_sync = dist.map(|d| d.gradient_sync(&params)).transpose()?;
    let world = dist.map_or(1, |d| d.world_size());
    let started_at_epoch = epoch;
    let mut last_checkpoint = (epoch > 0).then_some(epoch);
    if world > 1 {
        if c.guard.on_failure == OnFailure::Rollback {
            return Err(Error::config(
                "guard.on_failure",
                "`rollback` needs one process (each rank would have to reload the same \
                 checkpoint in step); use `stop` with several processes",
            ));
        }
        if resumed_guard.lr_scale != 1.0 {
            return Err(Error::config(
                "guard",
                format!(
                    "the checkpoint was rolled back to a learning rate × {}, which several \
                     processes cannot carry on; resume it with one process",
                    resumed_guard.lr_scale
                ),
            ));
        }
    }
    let mut guard = Guard::new(c.guard, resumed_guard, device)?;
    // What a rollback before the first checkpoint returns to.
    let initial = match (&c.guard.on_failure, last_checkpoint) {
        (super::guard::OnFailure::Rollback, None) => Some(models.snapshot(c.seed)?),
        _ => None,
    };
    on_event(&Event::Start {
        epoch,
        step,
        total_steps,
        steps_per_epoch,
        samples,
        device,
    });

    let mut last_epoch = None;
    let mut lr = schedule.lr(step) * guard.lr_scale();
    'epochs: while epoch < c.epochs {
        let mut window = Window::new(device, c.probe)?;
        let mut epoch_window = Window::new(device, c.probe)?;
        let mut batches = loader.epoch(epoch as u64).peekable();
        while let Some(batch) = batches.next() {
            let batch = batch?;
            lr = schedule.lr(step) * guard.lr_scale();
            let n = batch.labels.size()[0] as usize;
            let xs = views.views(&batch, epoch as u64)?; // 2 × [n, 3, s, s]
            let (mut x1, mut x2) = (xs[0].shallow_clone(), xs[1].shallow_clone());
            if channels_last {
                x1 = to_channels_last(&x1)?;
                x2 = to_channels_last(&x2)?;
            }
            // The forward pass and the losses under autocast (CUDA, bf16); backward outside.
            let (loss, probe) = {
                let _autocast = autocast.map(|d| Autocast::enter(device, d)).transpose()?;
                let _sync_bn = dist.and_then(|d| d.sync_bn_scope());
                let r1 = models.run.encoder.forward_t(&x1, true)?; // [n, D]
                let r2 = models.run.encoder.forward_t(&x2, true)?; // [n, D]
                let z1 = models.run.head.embed(&r1, true)?; // [n, d]
                let z2 = models.run.head.embed(&r2, true)?; // [n, d]
                                                            // Several processes: the loss of the global batch, from every rank's rows.
                let (z1, z2) = match dist {
                    Some(d) => (d.gather(&z1)?, d.gather(&z2)?), // [world · n, d]
                    None => (z1, z2),
                };
                let loss = config.loss().loss(&z1, &z2)?; // []
                let probe = match &models.run.probe {
                    Some(p) => Some(p.loss_and_accuracy(&r1, &views.upload(&batch.labels)?)?),
                    None => None,
                };
                (loss, probe)
            };
            let total = match &probe {
                Some((pl, _)) => loss.f_add(pl)?,
                None => loss.shallow_clone(),
            };
            models.optimizer.zero_grad();
            // Several processes: gradients averaged over the ranks, overlapping the backward
            // pass or after it (`[dist] overlap`).
            match &gradient_sync {
                Some(sync) => sync.backward(&total)?,
                None => total.f_backward()?,
            }
            models.optimizer.step(lr)?;
            step += 1;
            guard.observe(&loss, probe.as_ref().map(|(l, _)| l), step)?;
            // Read at log points, before the epoch's checkpoint, and after every CPU step.
            let last_of_epoch = batches.peek().is_none();
            if guard.due(step, c.log.every_steps) || last_of_epoch {
                if let Some(trip) = guard.check()? {
                    let good = LastGood {
                        run: run.as_ref(),
                        out: &opts.out,
                        checkpoint: last_checkpoint,
                        initial: initial.as_ref(),
                    };
                    let restore = |ckpt: &Checkpoint, file: &Path| models.restore(ckpt, file);
                    let mut report = |line: GuardLine| {
                        if let Some(run) = &run {
                            run.append_metrics(&line)?;
                        }
                        on_event(&Event::Guard(line));
                        Ok(())
                    };
                    (epoch, step) = guard.recover(&trip, epoch, good, restore, &mut report)?;
                    continue 'epochs;
                }
            }
            window.add(&loss, probe.as_ref(), n * world)?;
            epoch_window.add(&loss, probe.as_ref(), n * world)?;
            on_event(&Event::Step {
                epoch,
                step,
                total_steps,
                lr,
            });
            if step % c.log.every_steps == 0 {
                let at = (epoch, step, lr, last_checkpoint);
                let to = (run.as_ref(), opts.out.as_path(), dist);
                log_window(to, on_event, &window, MetricsKind::Step, at, None)?;
                window = Window::new(device, c.probe)?;
            }
        }
        let rank = match monitor.as_mut() {
            Some(m) if m.due(epoch + 1, c.epochs) => {
                let (snapshot, jumps) = m.measure(&models.run.encoder, &models.run.head, device)?;
                for j in jumps {
                    on_event(&Event::Collapse(j));
                }
                Some(snapshot)
            }
            _ => None,
        };
        let at = (epoch, step, lr, last_checkpoint);
        last_epoch = Some(log_window(
            (run.as_ref(), opts.out.as_path(), dist),
            on_event,
            &epoch_window,
            MetricsKind::Epoch,
            at,
            rank,
        )?);
        epoch += 1;
        if epoch % c.checkpoint.every_epochs == 0 || epoch == c.epochs {
            models.check_finite(&params, epoch)?;
            if let Some(run) = &run {
                run.write_checkpoint(
                    Progress {
                        epoch,
                        step,
                        seed: c.seed,
                    },
                    &guard.state()?,
                    &models.checkpoint_tensors(),
                    models.run.encoder.named_tensors(),
                )?;
                on_event(&Event::Checkpoint { epoch });
            }
            last_checkpoint = Some(epoch);
        }
    }
    Ok(Summary {
        out: run
            .as_ref()
            .map_or_else(|| opts.out.clone(), |r| r.root().to_path_buf()),
        started_at_epoch,
        epochs: epoch,
        steps: step,
        last_epoch,
    })
}

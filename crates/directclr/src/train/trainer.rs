//! The one training loop of every method of Table 1.
//!
//! Per batch: two views (u8 from the loader, normalised on the device) → r1, r2 = f(x1), f(x2)
//! (two forwards, so each view has its own BN statistics, as the authors' code) → z = head(r)
//! → InfoNCE(z1, z2) + the online probe's cross-entropy on detached r1 → backward → one step
//! of the optimiser with the scheduled learning rate.
//!
//! The loop reads in four parts: [`prepare`](super::prepare::prepare) (setup, resume, every
//! rank from rank 0's state), the step of that recipe
//! ([`StepRecipe::step`](super::step::StepRecipe::step)), the numerical guard's rollback or
//! stop ([`Guard::recover`](super::guard::Guard::recover)) and the end of each epoch
//! ([`save_epoch`](super::epoch::save_epoch): monitor, metrics line, checkpoint).
//!
//! Repeatability: `tch::manual_seed(seed)` precedes the construction of the models (their only
//! use of libtorch's generator); data order and augmentations are functions of (seed, epoch,
//! sample index) in the loader. A checkpoint therefore needs only the tensors and (epoch, step,
//! seed) for a resumed run to continue exactly as the uninterrupted one (on the CPU, bit for
//! bit, with the same number of threads).

use std::path::{Path, PathBuf};

use tch::Device;

use super::epoch::save_epoch;
use super::guard::{GuardLine, LastGood, Trip};
use super::monitor::CollapseJump;
use super::prepare::{prepare, Prepared};
use super::run_dir::{MetricsKind, MetricsLine};
use super::step::StepLosses;
use super::window::{log_window, Window};
use crate::dist::Distributed;
use crate::run::{CheckedConfig, Checkpoint};
use crate::Result;

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
// One event per log line or stage: its size does not matter, and boxing the metrics line would
// only add an allocation per line.
#[allow(clippy::large_enum_variant)]
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

/// Hands `trip`, found in epoch `epoch` after the checkpoint of `last_checkpoint` epochs (if
/// any), to [`Guard::recover`](super::guard::Guard::recover): returns the (epoch, step) to
/// continue from after a rollback, or the error that stops the run. Guard lines go to rank 0's
/// log and to `on_event`.
fn recover(
    p: &mut Prepared<'_>,
    trip: &Trip,
    (epoch, last_checkpoint): (usize, Option<usize>),
    out: &Path,
    on_event: &mut dyn FnMut(&Event),
) -> Result<(usize, usize)> {
    let good = LastGood {
        run: p.run.as_ref(),
        out,
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
    p.guard.recover(trip, epoch, good, restore, &mut report)
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
    on_event(&p.start_event());

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
            let StepLosses { loss, probe } = p.recipe.step(&mut p.models, &batch, epoch, lr)?;
            step += 1;
            p.guard
                .observe(&loss, probe.as_ref().map(|(l, _)| l), step)?;
            // Read at log points, before the epoch's checkpoint, and after every CPU step.
            let last_of_epoch = batches.peek().is_none();
            if p.guard.due(step, c.log.every_steps) || last_of_epoch {
                if let Some(trip) = p.guard.check()? {
                    let at = (epoch, last_checkpoint);
                    (epoch, step) = recover(&mut p, &trip, at, &opts.out, on_event)?;
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
        let at = (epoch, step, lr);
        let to = (opts.out.as_path(), dist);
        let line = save_epoch(
            &mut p,
            c,
            to,
            on_event,
            &epoch_window,
            at,
            &mut last_checkpoint,
        )?;
        last_epoch = Some(line);
        epoch += 1;
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

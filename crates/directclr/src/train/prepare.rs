//! What a run sets up before its first step ([`prepare`]): the device, the run folder (fresh
//! or resumed), the data, the schedule, the models and their optimiser, every rank's start from
//! rank 0's state, and the numerical guard.

use tch::Device;

use super::guard::{Guard, GuardState, OnFailure};
use super::models::Models;
use super::monitor::CollapseMonitor;
use super::run_dir::{Opened, RunDir};
use super::speed::ViewMaker;
use super::step::StepRecipe;
use super::trainer::{Event, RunOptions};
use crate::data::{BadImagePolicy, Loader, LoaderConfig, OutputKind, Shard};
use crate::dist::Distributed;
use crate::optim::WarmupCosine;
use crate::precision::LowPrecision;
use crate::run::{AutocastDtype, CheckedConfig, Checkpoint, Progress, CHECKPOINT_FILE};
use crate::{Error, Result};

/// A run ready for its first step.
pub(super) struct Prepared<'a> {
    /// The device of the models and of the views.
    pub(super) device: Device,
    /// Rank 0's run folder (`None` on the other ranks of a data-parallel run).
    pub(super) run: Option<RunDir>,
    /// Samples in the dataset (after `data.limit`).
    pub(super) samples: usize,
    /// This rank's batches of each epoch (`batch_size / world` rows each).
    pub(super) loader: Loader,
    /// Optimiser steps per epoch.
    pub(super) steps_per_epoch: usize,
    /// Steps of the whole run.
    pub(super) total_steps: usize,
    /// The collapse monitor (rank 0 alone measures: every rank holds the same weights).
    pub(super) monitor: Option<CollapseMonitor>,
    /// The learning rate of each step.
    pub(super) schedule: WarmupCosine,
    /// Models and optimiser, restored from the checkpoint of a resumed run.
    pub(super) models: Models,
    /// How each step runs: views, loss, precision, data-parallel group.
    pub(super) recipe: StepRecipe<'a>,
    /// Processes of the run (1 without `dist`).
    pub(super) world: usize,
    /// The (epoch, step) the run starts from: rank 0's, 0 for a new run.
    pub(super) start: (usize, usize),
    /// The numerical guard, with the resumed checkpoint's state.
    pub(super) guard: Guard,
    /// The state at step 0 (`on_failure = "rollback"` before the first checkpoint).
    pub(super) initial: Option<Checkpoint>,
}

impl Prepared<'_> {
    /// The event that starts (or resumes) the run.
    pub(super) fn start_event(&self) -> Event {
        let (epoch, step) = self.start;
        Event::Start {
            epoch,
            step,
            total_steps: self.total_steps,
            steps_per_epoch: self.steps_per_epoch,
            samples: self.samples,
            device: self.device,
        }
    }
}

/// Sets up the run of `config` in `opts.out` as one rank of `dist` (`None`: one process):
/// opens (or resumes) the run folder on rank 0, builds the loader, the schedule, the models and
/// their optimiser (restored from the checkpoint when resuming), makes every rank start from
/// rank 0's progress and tensors, and checks what several processes cannot do.
pub(super) fn prepare<'a>(
    config: &'a CheckedConfig,
    opts: &RunOptions,
    dist: Option<&'a Distributed>,
) -> Result<Prepared<'a>> {
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
    let monitor = match main {
        true => CollapseMonitor::new(config)?,
        false => None,
    };
    let schedule = c
        .schedule
        .build(c.batch_size, steps_per_epoch, c.epochs)
        .map_err(|e| e.within("schedule"))?;
    let total_steps = steps_per_epoch * c.epochs;

    // On CUDA: convolution weights channels-last (values unchanged), inputs likewise per step.
    let cuda = matches!(device, tch::Device::Cuda(_));
    let channels_last = cuda && c.precision.channels_last;
    let mut models = Models::build(config, classes, device, channels_last)?;
    let autocast = match c.precision.autocast {
        AutocastDtype::Bf16 if cuda => Some(LowPrecision::Bf16),
        _ => None,
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
    let gradient_sync = dist.map(|d| d.gradient_sync(&models.params)).transpose()?;
    let world = dist.map_or(1, |d| d.world_size());
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
    let guard = Guard::new(c.guard, resumed_guard, device)?;
    // What a rollback before the first checkpoint returns to.
    let initial = match (&c.guard.on_failure, epoch > 0) {
        (OnFailure::Rollback, false) => Some(models.snapshot(c.seed)?),
        _ => None,
    };
    Ok(Prepared {
        device,
        run,
        samples,
        loader,
        steps_per_epoch,
        total_steps,
        monitor,
        schedule,
        models,
        recipe: StepRecipe {
            views,
            loss: config.loss(),
            device,
            channels_last,
            autocast,
            dist,
            gradient_sync,
        },
        world,
        start: (epoch, step),
        guard,
        initial,
    })
}

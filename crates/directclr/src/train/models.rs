//! The trained state of a run: its models (encoder f, head, online probe) and the optimiser
//! over their trainable parameters, under one variable store, and how that state goes into a
//! checkpoint and comes back from one.

use std::path::Path;

use tch::{nn, Device, Tensor};

use super::guard::GuardState;
use crate::model::{Part, RunModels};
use crate::optim::{trainable_variables, Optimizer};
use crate::precision::to_channels_last;
use crate::run::{CheckedConfig, Checkpoint, Progress};
use crate::{Error, Result};

/// Held while a run seeds libtorch's process-wide generator and draws its initial weights, so
/// that runs in several threads of one process (data-parallel ranks, tests, a caller's own
/// threads) each get the initialisation of their own seed.
static INIT_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The models of a run and its optimiser, built under one variable store.
pub(super) struct Models {
    _vs: nn::VarStore,
    /// Encoder, head and online probe.
    pub(super) run: RunModels,
    /// The optimiser over `params`.
    pub(super) optimizer: Optimizer,
    /// The trainable parameters (shallow copies sharing the models' storage).
    pub(super) params: Vec<(String, Tensor)>,
}

impl Models {
    /// The models of `config` on `device` (`classes`: the online probe's outputs, when
    /// `probe = true`) and their optimiser. The seed fixes the initialisation (a resumed run
    /// overwrites it); libtorch has one process-wide generator, so seeding and drawing happen
    /// under `INIT_LOCK`: a run in another thread cannot draw in between. `channels_last` (on
    /// CUDA) stores the convolution weights `[out, in, k, k]` channels-last, values unchanged.
    pub(super) fn build(
        config: &CheckedConfig,
        classes: i64,
        device: Device,
        channels_last: bool,
    ) -> Result<Self> {
        let c = config.config();
        let init = INIT_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        tch::manual_seed(c.seed as i64);
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let run = RunModels::build(
            &root,
            &c.model,
            c.data.image_size,
            &c.method,
            c.probe.then_some(classes),
        )?;
        drop(init);
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
        Ok(Models {
            _vs: vs,
            run,
            optimizer,
            params,
        })
    }

    /// Every tensor of the run's state under the checkpoint's prefixes.
    pub(super) fn checkpoint_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = self.run.checkpoint_tensors();
        out.extend(Part::Momentum.prefixed(&self.optimizer.momentum_state()));
        out
    }

    /// Copies the models' tensors and the optimiser's momentum from `ckpt`, read from `file`.
    pub(super) fn restore(&mut self, ckpt: &Checkpoint, file: &Path) -> Result<()> {
        self.run
            .load_checkpoint(&ckpt.tensors, &format!("checkpoint `{}`", file.display()))?;
        self.optimizer
            .load_momentum_state(&Part::Momentum.section(&ckpt.tensors))
    }

    /// A copy of the whole state as a checkpoint at step 0 (what a rollback before the first
    /// checkpoint returns to).
    pub(super) fn snapshot(&self, seed: u64) -> Result<Checkpoint> {
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

    /// Checks that every trainable parameter is finite (before a checkpoint is written after
    /// `epoch` epochs).
    pub(super) fn check_finite(&self, epoch: usize) -> Result<()> {
        let _g = tch::no_grad_guard();
        for (name, t) in &self.params {
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

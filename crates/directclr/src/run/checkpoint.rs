//! The files of a run folder and the checkpoint format: `config.toml` (the resolved
//! configuration), `metrics.jsonl`, `checkpoint.safetensors` (everything needed to resume
//! exactly; its tensor names are [`crate::model::Part`]'s) and `encoder.safetensors`. Training
//! writes them ([`crate::train::RunDir`]); training and evaluation read them.

use std::path::Path;

use tch::Tensor;

use crate::model::read_safetensors;
use crate::train::GuardState;
use crate::{Error, Result};

/// The resolved configuration.
pub const CONFIG_FILE: &str = "config.toml";
/// The metrics log.
pub const METRICS_FILE: &str = "metrics.jsonl";
/// The resumable state.
pub const CHECKPOINT_FILE: &str = "checkpoint.safetensors";
/// The encoder with torchvision's `state_dict` names (loads with `strict=False`, only `fc.*`
/// missing).
pub const ENCODER_FILE: &str = "encoder.safetensors";
/// The format tag stored in a checkpoint's metadata: [`CHECKPOINT_FORMAT_PREFIX`] and the
/// format's version.
pub const CHECKPOINT_FORMAT: &str = "directclr-train-checkpoint-1";
/// The part of [`CHECKPOINT_FORMAT`] before the version number.
pub const CHECKPOINT_FORMAT_PREFIX: &str = "directclr-train-checkpoint-";
/// The key of a checkpoint's `__metadata__` entry: a JSON object with `format`, `epoch`,
/// `step`, `seed` (a decimal string, as JSON numbers cannot hold every u64) and `guard` (a
/// [`GuardState`]; absent in checkpoints written before the guard, read as its default).
pub const METADATA_KEY: &str = "directclr";

/// Where a checkpoint stands in the run: everything besides tensors that an exact resume needs.
/// Data order and augmentations are functions of (seed, epoch, index) alone, and no random
/// draw of libtorch happens after initialisation, so these three numbers fix the rest of
/// the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Epochs completed.
    pub epoch: usize,
    /// Optimiser steps completed.
    pub step: usize,
    /// The run's seed.
    pub seed: u64,
}

/// A checkpoint read back: its progress and its tensors by (prefixed) name.
#[derive(Debug)]
pub struct Checkpoint {
    /// Epoch, step, seed.
    pub progress: Progress,
    /// Tensors under `encoder.`, `head.`, `probe.` and `momentum.` prefixes.
    pub tensors: Vec<(String, Tensor)>,
    /// The numerical guard's state (learning-rate scale, rollbacks, loss average).
    pub guard: GuardState,
}

impl Checkpoint {
    /// A copy sharing the tensors' storage (what a rollback restores from).
    pub fn shallow_clone(&self) -> Checkpoint {
        Checkpoint {
            progress: self.progress,
            tensors: self
                .tensors
                .iter()
                .map(|(n, t)| (n.clone(), t.shallow_clone()))
                .collect(),
            guard: self.guard,
        }
    }
}

/// Reads a checkpoint written by [`crate::train::RunDir::write_checkpoint`].
pub fn read_checkpoint(file: &Path) -> Result<Checkpoint> {
    let what = || format!("checkpoint `{}`", file.display());
    let bytes = std::fs::read(file).map_err(|e| Error::io("cannot read", file, e))?;
    let (_, meta) =
        safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| Error::StateMismatch {
            what: what(),
            reason: format!("not a safetensors file: {e}"),
        })?;
    let meta = meta.metadata().clone().unwrap_or_default();
    let header: serde_json::Value = meta
        .get(METADATA_KEY)
        .and_then(|v| serde_json::from_str(v).ok())
        .unwrap_or_default();
    match header["format"].as_str() {
        Some(CHECKPOINT_FORMAT) => {}
        Some(other) => {
            let version = other
                .strip_prefix(CHECKPOINT_FORMAT_PREFIX)
                .and_then(|v| v.parse::<u64>().ok());
            let this = &CHECKPOINT_FORMAT[CHECKPOINT_FORMAT_PREFIX.len()..];
            let reason = match version {
                Some(v) if v > this.parse().unwrap_or(0) => format!(
                    "written by a newer version of directclr (checkpoint format {v}; this \
                     version reads format {this}): update directclr to resume it"
                ),
                _ => format!("its metadata names the format `{other}`, not `{CHECKPOINT_FORMAT}`"),
            };
            return Err(Error::StateMismatch {
                what: what(),
                reason,
            });
        }
        None => {
            return Err(Error::StateMismatch {
                what: what(),
                reason: format!("its metadata does not name the format `{CHECKPOINT_FORMAT}`"),
            })
        }
    }
    let bad = |key: &str| Error::StateMismatch {
        what: what(),
        reason: format!("metadata `{key}` is missing or not a number"),
    };
    let progress = Progress {
        epoch: header["epoch"].as_u64().ok_or_else(|| bad("epoch"))? as usize,
        step: header["step"].as_u64().ok_or_else(|| bad("step"))? as usize,
        seed: header["seed"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("seed"))?,
    };
    let guard = match header.get("guard") {
        None => GuardState::default(),
        Some(g) => serde_json::from_value(g.clone()).map_err(|e| Error::StateMismatch {
            what: what(),
            reason: format!("metadata `guard` is malformed: {e}"),
        })?,
    };
    drop(bytes);
    Ok(Checkpoint {
        progress,
        tensors: read_safetensors(file)?,
        guard,
    })
}

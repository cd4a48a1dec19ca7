//! The run folder: `config.toml` (the resolved configuration), `metrics.jsonl` (one JSON object
//! a line), `checkpoint.safetensors` (everything needed to resume exactly) and
//! `encoder.safetensors` (the backbone alone, with torchvision's names). Files are replaced
//! atomically: written to a temporary file in the folder, synced, renamed, and the folder synced.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::Tensor;

use super::config::{differing_fields, TrainConfig};
use super::guard::{GuardLine, GuardState};
use crate::model::{read_safetensors, serialize_safetensors};
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

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsLine {
    /// `step` (every `log.every_steps`) or `epoch` (after each epoch, averaged over it).
    pub kind: MetricsKind,
    /// Epoch of the step (0-based; for `epoch` lines the finished epoch).
    pub epoch: usize,
    /// Optimiser steps done so far over the whole run.
    pub step: usize,
    /// InfoNCE loss (mean over the steps since the previous line of the same kind).
    pub loss: f64,
    /// Online-probe cross-entropy (same averaging), absent without the probe.
    pub probe_loss: Option<f64>,
    /// Online-probe top-1 accuracy on view 1 of the training batches (same averaging).
    pub probe_acc: Option<f64>,
    /// Learning rate of the last step.
    pub lr: f64,
    /// Training throughput (samples per second) since the previous line of the same kind.
    pub images_per_s: f64,
    /// Rank metrics of r and z on the held-out images (epoch lines, when monitored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rank: Option<super::monitor::RankSnapshot>,
}

/// What a metrics line summarises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricsKind {
    /// The steps since the previous step line.
    Step,
    /// A whole epoch.
    Epoch,
}

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
    /// The tensors under `prefix` (e.g. `encoder.`), with the prefix removed.
    pub fn section(&self, prefix: &str) -> Vec<(String, Tensor)> {
        self.tensors
            .iter()
            .filter_map(|(n, t)| {
                n.strip_prefix(prefix)
                    .map(|s| (s.to_string(), t.shallow_clone()))
            })
            .collect()
    }
}

/// An open run folder.
#[derive(Debug)]
pub struct RunDir {
    root: PathBuf,
}

/// How a run folder was opened.
#[derive(Debug)]
pub enum Opened {
    /// A new run (the folder was empty or absent, or held only the same configuration).
    Fresh(RunDir),
    /// An existing run with a checkpoint to resume from.
    Resume(RunDir, Checkpoint),
}

impl RunDir {
    /// Opens `root` for `config`: creates it and writes `config.toml` for a new run; for a
    /// folder that already holds a run, checks that its configuration agrees with `config` in
    /// every field that changes the weights (an [`Error::InvalidConfig`] lists those that
    /// differ) and loads its checkpoint if there is one. With `require_checkpoint` (the
    /// `--resume` flag), a folder without checkpoint is an error.
    pub fn open(root: &Path, config: &TrainConfig, require_checkpoint: bool) -> Result<Opened> {
        if require_checkpoint && !root.join(CHECKPOINT_FILE).is_file() {
            return Err(Error::config(
                "resume",
                format!("`{}` holds no checkpoint to resume from", root.display()),
            ));
        }
        std::fs::create_dir_all(root).map_err(|e| Error::io("cannot create", root, e))?;
        let dir = RunDir {
            root: root.to_path_buf(),
        };
        let config_path = dir.path(CONFIG_FILE);
        let existing = if config_path.is_file() {
            Some(TrainConfig::from_file(&config_path)?)
        } else {
            None
        };
        if let Some(old) = &existing {
            let fields = differing_fields(old, config)?;
            if !fields.is_empty() {
                return Err(Error::config(
                    "config",
                    format!(
                        "the run folder `{}` holds a run whose configuration differs in {}; \
                         use another --out folder or the same settings",
                        root.display(),
                        fields.join(", ")
                    ),
                ));
            }
        }
        // The resolved config is (re)written: fields free to change (workers, device, log) take
        // their new values.
        dir.write_atomic(CONFIG_FILE, config.to_toml()?.as_bytes())?;
        let ckpt = dir.path(CHECKPOINT_FILE);
        if ckpt.is_file() {
            let checkpoint = read_checkpoint(&ckpt)?;
            if checkpoint.progress.seed != config.seed {
                return Err(Error::StateMismatch {
                    what: format!("checkpoint `{}`", ckpt.display()),
                    reason: format!(
                        "written with seed {}, the run has seed {}",
                        checkpoint.progress.seed, config.seed
                    ),
                });
            }
            dir.truncate_metrics(checkpoint.progress.step)?;
            Ok(Opened::Resume(dir, checkpoint))
        } else {
            // A run killed before its first checkpoint starts over.
            let metrics = dir.path(METRICS_FILE);
            if metrics.exists() {
                std::fs::remove_file(&metrics)
                    .map_err(|e| Error::io("cannot remove", &metrics, e))?;
            }
            Ok(Opened::Fresh(dir))
        }
    }

    /// The folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A file of the folder.
    pub fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Replaces `name` with `bytes` atomically (temporary file, fsync, rename, fsync of the
    /// folder): a reader sees the old or the new file, never a part of one, even after a
    /// crash.
    pub fn write_atomic(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let target = self.path(name);
        let tmp = self.path(&format!(".{name}.tmp"));
        let written = File::create(&tmp)
            .map_err(|e| Error::io("cannot create", &tmp, e))
            .and_then(|mut f| {
                f.write_all(bytes)
                    .map_err(|e| Error::io("cannot write", &tmp, e))?;
                f.sync_all().map_err(|e| Error::io("cannot sync", &tmp, e))
            })
            .and_then(|()| {
                std::fs::rename(&tmp, &target)
                    .map_err(|e| Error::io("cannot rename onto", &target, e))
            });
        if let Err(e) = written {
            // A full disk leaves no partial temporary file behind; the old file is untouched.
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        File::open(&self.root)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io("cannot sync", &self.root, e))
    }

    /// Writes the checkpoint (`tensors` already prefixed) and the encoder file, each
    /// atomically; the checkpoint last, so that a checkpoint never refers to a later state
    /// than the encoder file beside it.
    pub fn write_checkpoint(
        &self,
        progress: Progress,
        guard: &GuardState,
        tensors: &[(String, Tensor)],
        encoder: &[(String, Tensor)],
    ) -> Result<()> {
        let encoder_bytes = serialize_safetensors(encoder, None)?;
        self.write_atomic(ENCODER_FILE, &encoder_bytes)?;
        // One metadata key holding a JSON object with ordered keys: a map of several keys would
        // be written in hash order, and the file would not be the same bytes in every run.
        let header = serde_json::json!({
            "format": CHECKPOINT_FORMAT,
            "epoch": progress.epoch,
            "step": progress.step,
            "seed": progress.seed.to_string(),
            "guard": guard,
        });
        let metadata = HashMap::from([(METADATA_KEY.to_string(), header.to_string())]);
        let bytes = serialize_safetensors(tensors, Some(metadata))?;
        self.write_atomic(CHECKPOINT_FILE, &bytes)
    }

    /// Appends one line to `metrics.jsonl` (flushed, not synced: the log may lose its last
    /// lines in a crash, never the checkpoint).
    pub fn append_metrics(&self, line: &MetricsLine) -> Result<()> {
        let path = self.path(METRICS_FILE);
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::io("cannot open", &path, e))?;
        let text =
            serde_json::to_string(line).map_err(|e| Error::config("metrics", e.to_string()))?;
        writeln!(f, "{text}").map_err(|e| Error::io("cannot write", &path, e))
    }

    /// Appends a numerical guard's line to `metrics.jsonl` (as [`RunDir::append_metrics`]).
    pub fn append_guard(&self, line: &GuardLine) -> Result<()> {
        let path = self.path(METRICS_FILE);
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::io("cannot open", &path, e))?;
        let text =
            serde_json::to_string(line).map_err(|e| Error::config("metrics", e.to_string()))?;
        writeln!(f, "{text}").map_err(|e| Error::io("cannot write", &path, e))
    }

    /// Drops the metrics lines of steps after `step` (logged by a run killed after its last
    /// checkpoint, or by steps a rollback undid; the run logs them again) and torn lines.
    pub fn truncate_metrics(&self, step: usize) -> Result<()> {
        let path = self.path(METRICS_FILE);
        if !path.is_file() {
            return Ok(());
        }
        let f = File::open(&path).map_err(|e| Error::io("cannot read", &path, e))?;
        let mut kept = String::new();
        for line in BufReader::new(f).lines() {
            let line = line.map_err(|e| Error::io("cannot read", &path, e))?;
            // Every line (metrics or guard) is a JSON object with a `step`.
            let line_step = serde_json::from_str::<serde_json::Value>(&line)
                .ok()
                .and_then(|v| v.get("step").and_then(|s| s.as_u64()));
            match line_step {
                Some(s) if s <= step as u64 => {
                    kept.push_str(&line);
                    kept.push('\n');
                }
                _ => {} // later or torn lines
            }
        }
        self.write_atomic(METRICS_FILE, kept.as_bytes())
    }
}

/// Reads a checkpoint written by [`RunDir::write_checkpoint`].
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
                    "written by a newer version of directclr (checkpoint format {v}; this                      version reads format {this}): update directclr to resume it"
                ),
                _ => format!(
                    "its metadata names the format `{other}`, not `{CHECKPOINT_FORMAT}`"
                ),
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

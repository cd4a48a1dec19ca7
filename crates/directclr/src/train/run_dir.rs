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

use super::guard::GuardState;
use crate::model::serialize_safetensors;
use crate::run::{
    differing_fields, read_checkpoint, Checkpoint, Progress, TrainConfig, CHECKPOINT_FILE,
    CHECKPOINT_FORMAT, CONFIG_FILE, ENCODER_FILE, METADATA_KEY, METRICS_FILE,
};
use crate::{Error, Result};

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
    /// lines in a crash, never the checkpoint): a [`MetricsLine`] or a numerical guard's
    /// [`super::GuardLine`].
    pub fn append_metrics<L: Serialize>(&self, line: &L) -> Result<()> {
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

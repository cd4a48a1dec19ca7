//! The configuration of a pretraining run: a TOML file (`configs/*.toml`), overridden by
//! command-line flags, validated once into a [`CheckedConfig`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::data::{DataSource, Dataset};
use crate::loss::InfoNce;
use crate::method::Method;
use crate::model::EncoderConfig;
use crate::optim::{OptimizerConfig, ScheduleConfig};
use crate::runtime::DeviceSpec;
use crate::train::augment::{self, AugmentConfig};

use crate::train::GuardConfig;
use crate::{Error, Result};

/// The data of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// The dataset.
    pub source: DataSource,
    /// Side of the square crops (224 for ImageNet, 32 for CIFAR-sized images).
    pub image_size: usize,
    /// Use only the first `limit` samples (quick runs and tests); all when absent.
    #[serde(default)]
    pub limit: Option<usize>,
}

/// The lower precision of autocast on CUDA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AutocastDtype {
    /// No autocast: f32 throughout.
    Off,
    /// bfloat16 (the authors' mixed precision; needs no loss scaling).
    Bf16,
}

/// Mixed precision and memory order. They apply on CUDA devices only: CPU runs stay in f32 with
/// the default layout, so that they repeat bit for bit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PrecisionConfig {
    /// Autocast dtype for the forward pass and the loss (through the C++ shim).
    pub autocast: AutocastDtype,
    /// Keep images and convolution weights channels-last (NHWC), cuDNN's fastest layout.
    pub channels_last: bool,
}

impl Default for PrecisionConfig {
    fn default() -> Self {
        PrecisionConfig {
            autocast: AutocastDtype::Bf16,
            channels_last: true,
        }
    }
}

/// Checkpoint settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CheckpointConfig {
    /// Write a checkpoint every this many epochs (and always after the last one).
    pub every_epochs: usize,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig { every_epochs: 1 }
    }
}

/// Logging settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// Append a `step` line to `metrics.jsonl` every this many steps (an `epoch` line is
    /// written after every epoch regardless). Reading the loss back synchronises the device,
    /// so this is also how often a non-finite loss is noticed.
    pub every_steps: usize,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { every_steps: 50 }
    }
}

/// A pretraining run as written in a TOML file. Every table except `data` has the authors'
/// values as defaults (ResNet-50, DirectCLR d0 = 360, their InfoNCE, LARS, lr 4.8 with 10
/// warm-up epochs); unknown keys are refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Seed of initialisation, data order and augmentations.
    #[serde(default)]
    pub seed: u64,
    /// Number of epochs.
    pub epochs: usize,
    /// Batch size (the N of the N-way InfoNCE); the last incomplete batch is dropped.
    pub batch_size: usize,
    /// Loader worker threads (0: the training thread builds the batches).
    #[serde(default = "default_workers")]
    pub workers: usize,
    /// Where to train.
    #[serde(default = "default_device")]
    pub device: DeviceSpec,
    /// Train the online linear probe on detached r of view 1 (the authors' `online_head`).
    #[serde(default = "default_true")]
    pub probe: bool,
    /// The dataset and crop size.
    pub data: DataConfig,
    /// The augmentations of the two views (the authors' recipe unless changed).
    #[serde(default)]
    pub augment: AugmentConfig,
    /// The encoder.
    #[serde(default)]
    pub model: EncoderConfig,
    /// The Table 1 row.
    #[serde(default)]
    pub method: Method,
    /// The contrastive loss.
    #[serde(default)]
    pub loss: InfoNce,
    /// The optimiser.
    #[serde(default)]
    pub optimizer: OptimizerConfig,
    /// The learning-rate schedule.
    #[serde(default)]
    pub schedule: ScheduleConfig,
    /// Mixed precision and memory order on CUDA.
    #[serde(default)]
    pub precision: PrecisionConfig,
    /// Speed levers (where augmentations run, fused optimiser, cuDNN benchmark, copies).
    #[serde(default)]
    pub speed: crate::train::SpeedConfig,
    /// Checkpoints.
    #[serde(default)]
    pub checkpoint: CheckpointConfig,
    /// Metrics log.
    #[serde(default)]
    pub log: LogConfig,
    /// Collapse monitoring (rank metrics of r and z on held-out images).
    #[serde(default)]
    pub monitor: crate::train::MonitorConfig,
    /// Data-parallel settings (used when launched as several processes).
    #[serde(default)]
    pub dist: crate::dist::DistConfig,
    /// What a non-finite or spiking loss does (stop, or roll back with a lower lr).
    #[serde(default)]
    pub guard: GuardConfig,
}

fn default_workers() -> usize {
    2
}

fn default_device() -> DeviceSpec {
    DeviceSpec::Cpu
}

fn default_true() -> bool {
    true
}

/// The largest crop side accepted (`data.image_size`).
pub const MAX_IMAGE_SIZE: usize = 4096;
/// The largest `model.width_multiplier` accepted (1024 base channels).
pub const MAX_WIDTH_MULTIPLIER: f64 = 16.0;

/// Values that replace those of the file (the command-line flags); `None` keeps the file's.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    /// `epochs`.
    pub epochs: Option<usize>,
    /// `batch_size`.
    pub batch_size: Option<usize>,
    /// `workers`.
    pub workers: Option<usize>,
    /// `seed`.
    pub seed: Option<u64>,
    /// `device`.
    pub device: Option<DeviceSpec>,
    /// `data.source.path`.
    pub data_path: Option<PathBuf>,
    /// `data.limit`.
    pub limit: Option<usize>,
    /// `schedule.lr`.
    pub lr: Option<f64>,
    /// `log.every_steps`.
    pub log_every: Option<usize>,
}

/// The fields whose change does not alter the trained weights, so that a run folder may be
/// resumed with other values (dotted TOML paths; a prefix covers a whole table).
/// `guard` only acts on a failed run, so that a run stopped by it can be resumed with
/// `guard.on_failure = "rollback"`.
pub const RESUME_FREE_FIELDS: &[&str] = &[
    "workers",
    "device",
    "log",
    "monitor",
    "guard",
    "dist.backend",
    "dist.bucket_mb",
    "dist.overlap",
    "dist.timeout_s",
    // How the step runs, not what it computes: the same update to float rounding, and the
    // fused optimiser keeps the per-parameter momentum buffers (views of its flat one), so
    // its checkpoints are the unfused ones. `speed.augment` and `speed.source_size` change
    // the pixels the model sees and stay fixed.
    "speed.fused_optimizer",
    "speed.cudnn_benchmark",
    "speed.non_blocking",
];

impl TrainConfig {
    /// Parses TOML text; `origin` names the file in errors. Unknown keys and wrong types are
    /// [`Error::InvalidConfig`] naming the key.
    pub fn from_toml(text: &str, origin: &Path) -> Result<Self> {
        toml::from_str(text).map_err(|e| {
            if let Some((field, reason)) = augment::field_of_message(e.message()) {
                return Error::config(field, format!("{reason} (in `{}`)", origin.display()));
            }
            let field = e
                .span()
                .and_then(|s| text.get(s))
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty() && s.len() < 80)
                .unwrap_or_else(|| origin.display().to_string());
            Error::config(
                field,
                format!("{} (in `{}`)", e.message(), origin.display()),
            )
        })
    }

    /// Reads and parses a TOML file.
    pub fn from_file(file: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(file).map_err(|e| Error::io("cannot read", file, e))?;
        Self::from_toml(&text, file)
    }

    /// The configuration as TOML text (the run folder's `config.toml`).
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string_pretty(self).map_err(|e| Error::config("config", e.to_string()))
    }

    /// Replaces the fields that `o` sets.
    pub fn apply(&mut self, o: &Overrides) {
        if let Some(v) = o.epochs {
            self.epochs = v;
        }
        if let Some(v) = o.batch_size {
            self.batch_size = v;
        }
        if let Some(v) = o.workers {
            self.workers = v;
        }
        if let Some(v) = o.seed {
            self.seed = v;
        }
        if let Some(v) = o.device {
            self.device = v;
        }
        if let Some(v) = &o.data_path {
            self.data.source = self.data.source.with_path(v.clone());
        }
        if let Some(v) = o.limit {
            self.data.limit = Some(v);
        }
        if let Some(v) = o.lr {
            self.schedule.lr = v;
        }
        if let Some(v) = o.log_every {
            self.log.every_steps = v;
        }
    }

    /// Validates every field that can be checked without reading the data.
    pub fn check(self) -> Result<CheckedConfig> {
        let at_least = |field: &str, v: usize, min: usize| -> Result<()> {
            if v < min {
                return Err(Error::config(field, format!("{v} must be at least {min}")));
            }
            Ok(())
        };
        at_least("epochs", self.epochs, 1)?;
        // InfoNCE needs at least one negative per anchor.
        at_least("batch_size", self.batch_size, 2)?;
        at_least("checkpoint.every_epochs", self.checkpoint.every_epochs, 1)?;
        at_least("log.every_steps", self.log.every_steps, 1)?;
        if let Some(limit) = self.data.limit {
            at_least("data.limit", limit, self.batch_size)?;
        }
        self.model
            .validate(self.data.image_size)
            .map_err(|e| e.within("model"))?;
        at_least(
            "data.image_size",
            self.data.image_size,
            self.model.min_image_size(),
        )?;
        // Upper bounds: each of these numbers sets the size of an allocation (a batch of
        // crops, the convolution weights), which must not follow a typo into terabytes.
        if self.data.image_size > MAX_IMAGE_SIZE {
            return Err(Error::config(
                "data.image_size",
                format!(
                    "{} exceeds {MAX_IMAGE_SIZE} pixels (a batch of such crops would not fit \
                     in memory)",
                    self.data.image_size
                ),
            ));
        }
        if let Some(m) = self.model.resnet().map(|r| r.width_multiplier) {
            if m > MAX_WIDTH_MULTIPLIER {
                return Err(Error::config(
                    "model.width_multiplier",
                    format!("{m} exceeds {MAX_WIDTH_MULTIPLIER} (1 is torchvision's width)"),
                ));
            }
        }
        let feat_dim = self.model.feat_dim().map_err(|e| e.within("model"))?;
        let embed_dim = self
            .method
            .embed_dim(feat_dim)
            .map_err(|e| e.within("method"))?;
        let loss = self.loss.checked().map_err(|e| e.within("loss"))?;
        self.monitor.validate()?;
        self.dist.validate().map_err(|e| e.within("dist"))?;
        if self.dist.backend == crate::dist::Backend::Nccl && self.device == DeviceSpec::Cpu {
            return Err(Error::config(
                "dist.backend",
                "`nccl` carries CUDA tensors, but `device` is cpu: use `gloo` on the CPU",
            ));
        }
        self.optimizer
            .validate()
            .map_err(|e| e.within("optimizer"))?;
        self.speed.validate()?;
        self.guard.validate().map_err(|e| e.within("guard"))?;
        // Whole-run checks of the schedule (lr, ratio, warm-up shorter than the run); the
        // schedule is built once, by the trainer, when the number of steps per epoch is known.
        self.schedule
            .validate(self.batch_size, self.epochs)
            .map_err(|e| e.within("schedule"))?;
        let recipe = self.augment.recipe(self.data.image_size)?;
        Ok(CheckedConfig {
            feat_dim,
            embed_dim,
            recipe,
            loss,
            config: self,
        })
    }
}

/// A validated [`TrainConfig`] with what was derived from it.
#[derive(Debug, Clone)]
pub struct CheckedConfig {
    config: TrainConfig,
    feat_dim: i64,
    embed_dim: i64,
    recipe: crate::data::Recipe,
    loss: crate::loss::CheckedInfoNce,
}

impl CheckedConfig {
    /// The configuration.
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// Dimension D of the representation r.
    pub fn feat_dim(&self) -> i64 {
        self.feat_dim
    }

    /// Dimension of the embedding z that enters the loss.
    pub fn embed_dim(&self) -> i64 {
        self.embed_dim
    }

    /// The two-view augmentation recipe (`[augment]` at `data.image_size`).
    pub fn recipe(&self) -> &crate::data::Recipe {
        &self.recipe
    }

    /// The loss (`[loss]`), checked once here.
    pub fn loss(&self) -> &crate::loss::CheckedInfoNce {
        &self.loss
    }

    /// Reads the dataset, keeping the first `data.limit` samples, and checks that an epoch
    /// holds at least one full batch.
    pub fn read_dataset(&self) -> Result<Arc<Dataset>> {
        let c = &self.config;
        let full = c.data.source.read()?;
        let ds = match c.data.limit {
            Some(limit) if limit < full.len() => full.first(limit)?,
            _ => full,
        };
        if ds.len() < c.batch_size {
            return Err(Error::config(
                "batch_size",
                format!(
                    "{} exceeds the {} samples of the dataset: an epoch would hold no full batch",
                    c.batch_size,
                    ds.len()
                ),
            ));
        }
        Ok(Arc::new(ds))
    }
}

/// The dotted paths of the fields that differ between two configurations, leaving out
/// [`RESUME_FREE_FIELDS`]: the reasons a run folder cannot be resumed with `new`.
pub fn differing_fields(old: &TrainConfig, new: &TrainConfig) -> Result<Vec<String>> {
    let to_value = |c: &TrainConfig| {
        toml::Value::try_from(c).map_err(|e| Error::config("config", e.to_string()))
    };
    let (a, b) = (to_value(old)?, to_value(new)?);
    let mut out = Vec::new();
    diff("", &a, &b, &mut out);
    out.retain(|f| {
        !RESUME_FREE_FIELDS
            .iter()
            .any(|free| f == free || f.starts_with(&format!("{free}.")))
    });
    Ok(out)
}

fn diff(prefix: &str, a: &toml::Value, b: &toml::Value, out: &mut Vec<String>) {
    let join = |k: &str| {
        if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}.{k}")
        }
    };
    match (a, b) {
        (toml::Value::Table(ta), toml::Value::Table(tb)) => {
            let mut keys: Vec<&String> = ta.keys().chain(tb.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                match (ta.get(k), tb.get(k)) {
                    (Some(x), Some(y)) => diff(&join(k), x, y, out),
                    _ => out.push(join(k)),
                }
            }
        }
        _ if a != b => out.push(prefix.to_string()),
        _ => {}
    }
}

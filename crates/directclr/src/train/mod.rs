//! Pretraining: the configuration of a run ([`TrainConfig`], TOML presets in `configs/`), its
//! run folder (resolved config, metrics log, atomic checkpoints, automatic resume) and the one
//! training loop shared by every method of Table 1 ([`train`]).

mod augment;
mod config;
mod run_dir;
mod trainer;

pub use augment::{AugmentConfig, CropAugment, ViewAugment};
pub use config::{
    differing_fields, AutocastDtype, CheckedConfig, CheckpointConfig, DataConfig, DataSource,
    LogConfig, Overrides, PrecisionConfig, TrainConfig, RESUME_FREE_FIELDS,
};
pub use run_dir::{
    read_checkpoint, Checkpoint, MetricsKind, MetricsLine, Opened, Progress, RunDir,
    CHECKPOINT_FILE, CHECKPOINT_FORMAT, CONFIG_FILE, ENCODER_FILE, METADATA_KEY, METRICS_FILE,
};
pub use trainer::{train, Event, RunOptions, Summary};

//! Pretraining: the configuration of a run ([`TrainConfig`], TOML presets in `configs/`), its
//! run folder (resolved config, metrics log, atomic checkpoints, automatic resume) and the one
//! training loop shared by every method of Table 1 ([`train`]).

pub(crate) mod augment;
mod epoch;
mod guard;
mod models;
mod monitor;
mod prepare;
mod replicas;
mod run_dir;
mod speed;
mod step;
mod trainer;
mod window;

/// The dataset a run reads (declared in [`crate::data`]).
pub use crate::data::DataSource;
/// The run's configuration (declared in [`crate::run`], which evaluation reads too).
pub use crate::run::{
    differing_fields, AutocastDtype, CheckedConfig, CheckpointConfig, DataConfig, LogConfig,
    Overrides, PrecisionConfig, TrainConfig, MAX_IMAGE_SIZE, MAX_WIDTH_MULTIPLIER,
    RESUME_FREE_FIELDS,
};
/// The run folder's files and checkpoint format (declared in [`crate::run`]).
pub use crate::run::{
    read_checkpoint, Checkpoint, Progress, CHECKPOINT_FILE, CHECKPOINT_FORMAT, CONFIG_FILE,
    ENCODER_FILE, METADATA_KEY, METRICS_FILE,
};
pub use augment::{AugmentConfig, CropAugment, ViewAugment};
pub use guard::{
    Action, Cause, Guard, GuardConfig, GuardKind, GuardLine, GuardState, OnFailure, Trip,
    LOSS_EMA_DECAY,
};
pub use monitor::{collapse_jump, CollapseJump, CollapseMonitor, MonitorConfig, RankSnapshot};
pub use run_dir::{MetricsKind, MetricsLine, Opened, RunDir};
pub use speed::{AugmentOn, SpeedConfig};
pub use trainer::{train, train_distributed, Event, RunOptions, Summary};

//! What a run folder holds, read by training and evaluation alike: the run's configuration
//! ([`TrainConfig`], validated once into a [`CheckedConfig`]) and its checkpoint format
//! ([`read_checkpoint`], the file names). Training writes run folders ([`crate::train`]);
//! evaluation reads them ([`crate::eval`]); neither imports the other.
//!
//! The configuration assembles the tables of every component, each declared beside its
//! component (`[guard]`, `[monitor]`, `[speed]` and `[augment]` in [`crate::train`], `[model]`
//! in [`crate::model`], …).

mod checkpoint;
mod config;

pub use checkpoint::{
    read_checkpoint, Checkpoint, Progress, CHECKPOINT_FILE, CHECKPOINT_FORMAT,
    CHECKPOINT_FORMAT_PREFIX, CONFIG_FILE, ENCODER_FILE, METADATA_KEY, METRICS_FILE,
};
pub use config::{
    differing_fields, AutocastDtype, CheckedConfig, CheckpointConfig, DataConfig, LogConfig,
    Overrides, PrecisionConfig, TrainConfig, MAX_IMAGE_SIZE, MAX_WIDTH_MULTIPLIER,
    RESUME_FREE_FIELDS,
};

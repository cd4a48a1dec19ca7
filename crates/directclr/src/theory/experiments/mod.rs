//! The paper's theory experiments (Section 4, Section 5, Figures 4–6) and their output files:
//! numbers as CSV and JSON, figures as PNG.
//!
//! Every run folder holds `config.json`, `summary.json`, `spectrum.csv` (step, loss, the
//! embedding covariance eigenvalues), `singular_values_layer{l}.csv`, `alignment_layer{l}.csv`
//! (final A = V_{l+1}ᵀU_l), `x_eigenvalues.csv` when X is estimated, and its figures.
//!
//! One file an experiment, named after the paper's result: `theorem1.rs` (Section 4,
//! [`strong_augmentation`]), `figures4_5.rs` (Section 5, [`implicit_regularization`]) and
//! `figure6.rs` (Section 5.4, [`depth`]); `common.rs` holds [`Overrides`] and the writers they
//! share.

mod common;
mod figure6;
mod figures4_5;
mod theorem1;

pub use common::Overrides;
pub(super) use common::{
    create_dir, evolution, log10, numbered, spectrum_series, write_csv, write_json, write_run,
};
pub use figure6::{depth, DepthReport, DepthRun};
pub use figures4_5::{implicit_regularization, ImplicitReport};
pub use theorem1::{strong_augmentation, AugmentationReport, FixedXCheck, Theorem1Check};

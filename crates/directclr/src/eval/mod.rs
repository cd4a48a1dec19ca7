//! Evaluation of pretrained encoders and the diagnosis of their collapse.
//!
//! - [`TrainedModel`]: a run folder's encoder and projector, from its checkpoint (or encoder
//!   weights), with an error listing every tensor that does not fit.
//! - [`extract`]: features of a labelled split in the space r, z or the projector's hidden
//!   layer, any [`FeatureSlice`] of them (the paper's r[:d0] / r[d0:] ablation).
//! - [`linear_probe`]: the paper's protocol (frozen encoder, SGD, cosine, crops and flips) and
//!   a fast mode on features extracted once; best and last top-1/top-5.
//! - [`knn`]: weighted k-nearest-neighbour accuracy (cosine similarity, votes exp(s/T)).
//! - [`Spectrum`]: covariance spectra (Eqn 1) with rank metrics, CSV and log plots like
//!   Figures 2, 7b and 9, overlays of runs.

mod classifier;
mod features;
mod knn;
mod linear_probe;
mod spectrum;
mod trained;

pub use classifier::{accuracies, Classifier, ClassifierMeta};
// The labelled splits and the feature spaces are the data's and the model's; re-exported here
// where an evaluation's user looks for them.
pub use crate::data::{
    eval_transform, read_labelled, read_labelled_first, EvalSplit, ExtractOptions,
};
pub use crate::model::{FeatureSlice, Space};
pub use features::{extract, extract_observed, Extracted, Features};
pub use knn::{knn, knn_votes, KnnConfig, KnnReport};
pub use linear_probe::{
    linear_probe, probe_features, ProbeConfig, ProbeEpoch, ProbeMode, ProbeReport,
};
pub use spectrum::{plot_spectra, write_spectra_csv, Spectrum};
pub use trained::{TrainedModel, Weights};

//! Covariance spectra (Eqn 1) and collapse metrics.
//!
//! - [`covariance`], [`covariance_eigenvalues`]: small nalgebra matrices (the theory lab's toy
//!   models).
//! - [`embedding_spectrum()`]: the spectrum of the paper's figures for large embedding tensors,
//!   one-shot or accumulated over chunks ([`CovarianceAccumulator`]), in f64.
//! - [`file_moments`]: the same, streamed from an embeddings file (`.npy`, `.npz`,
//!   `.safetensors`) in chunks.
//! - [`RankMetrics`]: RankMe / effective rank, α-ReQ, stable rank, participation ratio and
//!   collapsed dimensions, each also a pure function of a spectrum.

mod embedding_spectrum;
mod embeddings_file;
mod rank;
mod spectrum;

pub use embedding_spectrum::{
    embedding_moments, embedding_spectrum, symmetric_eigenvalues, CovarianceAccumulator, Moments,
    RowNormalisation,
};
pub use embeddings_file::{embeddings_file_moments, file_moments};
pub use rank::{
    alpha_req, effective_rank, participation_ratio, stable_rank, RankMetrics, RankOptions,
    ALPHA_REQ_RANKS, DEFAULT_COLLAPSE_THRESHOLD, RANKME_EPSILON,
};
pub(crate) use spectrum::reshape;
pub use spectrum::{
    collapsed_dimensions, constant_coordinates, covariance, covariance_eigenvalues,
    covariance_eigenvalues_with, CovarianceScratch,
};

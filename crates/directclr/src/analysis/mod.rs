//! Covariance spectra (Eqn 1) and collapse metrics.

mod spectrum;

pub use spectrum::{collapsed_dimensions, covariance, covariance_eigenvalues};

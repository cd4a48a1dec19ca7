//! Covariance spectra and rank metrics.

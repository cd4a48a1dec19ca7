//! Spectra of feature spaces as the paper draws them (Figures 2, 7b, 9): features → optional
//! L2 normalisation → covariance (Eqn 1) in f64 → eigenvalues in descending order, with the
//! rank metrics, written as CSV and drawn in log scale, several runs overlaid.

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::analysis::{embedding_moments, Moments, RankMetrics, RowNormalisation};
use crate::model::Space;
use crate::plot::{line_chart, LineChart, Palette, Series};
use crate::{Error, Result};

/// The covariance spectrum of one set of features.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Spectrum {
    /// Legend and CSV column name (e.g. the method).
    pub label: String,
    /// The space the features come from.
    pub space: Space,
    /// Covariance eigenvalues, descending (D values).
    pub eigenvalues: Vec<f64>,
    /// Rank metrics of the same features.
    pub metrics: RankMetrics,
}

impl Spectrum {
    /// The spectrum of `features` (`[N, D]`, any float kind), rows processed by `rows`, with
    /// λ_k / λ₁ < `collapse_threshold` counted as collapsed.
    pub fn of(
        label: impl Into<String>,
        space: Space,
        features: &Tensor,
        rows: RowNormalisation,
        collapse_threshold: f64,
    ) -> Result<Self> {
        let moments = embedding_moments(features, rows)?;
        Self::of_moments(label, space, &moments, collapse_threshold)
    }

    /// The spectrum of features already reduced to their moments (e.g. streamed from an
    /// embeddings file by [`crate::analysis::file_moments`]).
    pub fn of_moments(
        label: impl Into<String>,
        space: Space,
        moments: &Moments,
        collapse_threshold: f64,
    ) -> Result<Self> {
        Ok(Spectrum {
            label: label.into(),
            space,
            eigenvalues: moments.covariance_eigenvalues()?,
            metrics: RankMetrics::from_moments(moments, collapse_threshold)?,
        })
    }

    /// log₁₀ λ_k per rank k, eigenvalues floored at 1e-18 · λ₁ (f64 round-off leaves collapsed
    /// directions at about 1e-17 λ₁, sometimes negative), as the figures' y values.
    pub fn log10_points(&self) -> Vec<(f64, f64)> {
        let top = self
            .eigenvalues
            .first()
            .copied()
            .unwrap_or(0.0)
            .max(f64::MIN_POSITIVE);
        self.eigenvalues
            .iter()
            .enumerate()
            .map(|(k, &l)| ((k + 1) as f64, l.max(top * 1e-18).log10()))
            .collect()
    }
}

/// Writes `spectra` as CSV: a `rank` column (1-based) and one column of eigenvalues per
/// spectrum (empty cells where a spectrum is shorter).
pub fn write_spectra_csv(path: &Path, spectra: &[Spectrum]) -> Result<()> {
    if spectra.is_empty() {
        return Err(Error::config("spectra", "nothing to write"));
    }
    let rows = spectra
        .iter()
        .map(|s| s.eigenvalues.len())
        .max()
        .unwrap_or(0);
    let mut text = String::from("rank");
    for s in spectra {
        let label = s.label.replace('"', "'");
        let _ = write!(text, ",\"{label} ({})\"", s.space.symbol());
    }
    text.push('\n');
    for k in 0..rows {
        let _ = write!(text, "{}", k + 1);
        for s in spectra {
            match s.eigenvalues.get(k) {
                Some(v) => {
                    let _ = write!(text, ",{v:e}");
                }
                None => text.push(','),
            }
        }
        text.push('\n');
    }
    std::fs::write(path, text).map_err(|e| Error::io("cannot write", path, e))
}

/// Draws `spectra` in one figure (.png or .svg): log₁₀ of the eigenvalues against their rank,
/// one curve per spectrum with a legend, as the paper's Figures 2, 7b and 9.
pub fn plot_spectra(path: &Path, title: &str, spectra: &[Spectrum]) -> Result<()> {
    let chart = LineChart {
        title: title.to_string(),
        x_label: "singular value rank index".into(),
        y_label: "log10 of singular value".into(),
        series: spectra
            .iter()
            .map(|s| Series {
                label: Some(s.label.clone()),
                points: s.log10_points(),
            })
            .collect(),
        palette: Palette::Categorical,
    };
    line_chart(path, &chart)
}

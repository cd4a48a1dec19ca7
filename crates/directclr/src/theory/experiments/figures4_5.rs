//! Section 5, Theorems 2–3, Figures 4 and 5 ([`implicit_regularization`]): two linear layers
//! align and their small singular values stay small.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::common::{create_dir, evolution, write_json, write_run, Overrides};
use crate::{
    analysis::collapsed_dimensions,
    plot::{heatmap, line_chart, LineChart, Palette},
    theory::{closed_form::row_dominance, config::ToyConfig, trainer::train},
    Error, Result,
};

/// The outcome of [`implicit_regularization`].
#[derive(Debug, Clone, Serialize)]
pub struct ImplicitReport {
    /// Number of layers.
    pub layers: usize,
    /// Final singular values of each layer, descending.
    pub singular_values: Vec<Vec<f64>>,
    /// Final embedding spectrum, descending.
    pub embedding_spectrum: Vec<f64>,
    /// Collapsed embedding dimensions at the start and at the end.
    pub collapsed: (usize, usize),
    /// Row dominance of A = V2ᵀU1 (1 = a signed permutation) at the end.
    pub alignment_row_dominance: f64,
    /// Diagonal dominance of A at the start and at the end.
    pub alignment_diagonal: (f64, f64),
    /// Misalignment ‖[W1W1ᵀ, W2ᵀW2]‖/(‖W1W1ᵀ‖‖W2ᵀW2‖) at the start and at the end.
    pub misalignment: (f64, f64),
    /// Theorem 2: ‖(W1W1ᵀ − W2ᵀW2)(T) − (W1W1ᵀ − W2ᵀW2)(0)‖_F / ‖(W1W1ᵀ − W2ᵀW2)(0)‖_F.
    pub invariant_relative_drift: f64,
    /// The relative eigenvalue threshold for "collapsed".
    pub collapse_threshold: f64,
    /// Final training loss.
    pub final_loss: Option<f64>,
    /// Wall-clock seconds of the training loop with its measurements (no file writing).
    pub train_seconds: f64,
    /// The folder written.
    pub out: PathBuf,
}

/// Section 5 (Figures 4 and 5): `layers` linear layers with decaying singular values at
/// init, isotropic noise. Writes the run folder plus `singular_values_w{l}.png` (Fig 5a–b),
/// `embedding_spectrum.png` (Fig 5c), `alignment.png` (Fig 4), `alignment_matched.png` (the
/// same with columns paired to rows, see [`crate::theory::closed_form::matched_alignment`]) and
/// `summary.json` into `out`.
pub fn implicit_regularization(
    layers: usize,
    collapse_threshold: f64,
    overrides: &Overrides,
    out: &Path,
) -> Result<ImplicitReport> {
    if layers < 2 {
        return Err(Error::config("layers", "alignment needs at least 2 layers"));
    }
    let config = overrides.apply(ToyConfig::implicit_regularization(layers));
    config.check()?;
    create_dir(out)?;
    let start = std::time::Instant::now();
    let run = train(&config)?;
    let train_seconds = start.elapsed().as_secs_f64();
    write_run(out, &run)?;
    for l in 0..layers {
        line_chart(
            &out.join(format!("singular_values_w{}.png", l + 1)),
            &LineChart {
                title: format!("Singular values of W{} during training", l + 1),
                x_label: "step".into(),
                y_label: "log10 singular value".into(),
                series: evolution(&run, |r| &r.layer_singular_values[l]),
                palette: Palette::Ramp,
            },
        )?;
    }
    line_chart(
        &out.join("embedding_spectrum.png"),
        &LineChart {
            title: "Embedding spectrum during training".into(),
            x_label: "step".into(),
            y_label: "log10 eigenvalue of cov(z)".into(),
            series: evolution(&run, |r| &r.embedding_spectrum),
            palette: Palette::Ramp,
        },
    )?;
    heatmap(
        &out.join("alignment.png"),
        "|A| = |V2ᵀ U1| after training",
        &run.alignment[0],
    )?;
    heatmap(
        &out.join("alignment_matched.png"),
        "|A| with columns paired to rows (greedy)",
        &crate::theory::closed_form::matched_alignment(&run.alignment[0]).0,
    )?;
    let c0 = crate::theory::closed_form::theorem2_invariant(
        &run.initial_weights[0],
        &run.initial_weights[1],
    );
    let ct = crate::theory::closed_form::theorem2_invariant(&run.weights[0], &run.weights[1]);
    let (first, last) = (&run.records[0], run.last());
    let report = ImplicitReport {
        layers,
        singular_values: last.layer_singular_values.clone(),
        embedding_spectrum: last.embedding_spectrum.clone(),
        collapsed: (
            collapsed_dimensions(&first.embedding_spectrum, collapse_threshold),
            collapsed_dimensions(&last.embedding_spectrum, collapse_threshold),
        ),
        alignment_row_dominance: row_dominance(&run.alignment[0]),
        alignment_diagonal: (first.alignment[0], last.alignment[0]),
        misalignment: (first.misalignment[0], last.misalignment[0]),
        invariant_relative_drift: (&ct - &c0).norm() / c0.norm(),
        collapse_threshold,
        final_loss: last.loss,
        train_seconds,
        out: out.into(),
    };
    write_json(&out.join("summary.json"), &report)?;
    Ok(report)
}

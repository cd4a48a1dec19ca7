//! Section 5.4, Figure 6 ([`depth`]): more layers collapse more dimensions; ReLU behaves alike.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::common::{create_dir, spectrum_series, train_all, write_json, write_run, Overrides};
use crate::{
    analysis::collapsed_dimensions,
    plot::{line_chart, LineChart, Palette},
    theory::{config::ToyConfig, toy_net::Activation, trainer::ToyRun},
    Error, Result,
};

/// One network of [`depth`].
#[derive(Debug, Clone, Serialize)]
pub struct DepthRun {
    /// Number of layers.
    pub layers: usize,
    /// Between layers.
    pub activation: Activation,
    /// Final embedding spectrum, descending.
    pub embedding_spectrum: Vec<f64>,
    /// Collapsed embedding dimensions at the end.
    pub collapsed: usize,
    /// Final training loss.
    pub final_loss: Option<f64>,
}

/// The outcome of [`depth`].
#[derive(Debug, Clone, Serialize)]
pub struct DepthReport {
    /// L = 1..=max_layers linear, then L = 2 with ReLU.
    pub runs: Vec<DepthRun>,
    /// The relative eigenvalue threshold for "collapsed".
    pub collapse_threshold: f64,
    /// The folder written.
    pub out: PathBuf,
}

/// Figure 6: linear networks of 1..=`max_layers` layers (6a) and L = 2 with ReLU (6b), the
/// Section 5 setting otherwise. Writes `L{l}-{activation}/` run folders, `spectra_depth.png`,
/// `spectra_relu.png` and `summary.json` into `out`.
pub fn depth(
    max_layers: usize,
    collapse_threshold: f64,
    overrides: &Overrides,
    out: &Path,
) -> Result<DepthReport> {
    if max_layers == 0 {
        return Err(Error::config("max_layers", "must be at least 1"));
    }
    let mut configs: Vec<ToyConfig> = (1..=max_layers)
        .map(|l| overrides.apply(ToyConfig::implicit_regularization(l)))
        .collect();
    let mut relu = overrides.apply(ToyConfig::implicit_regularization(2));
    relu.activation = Activation::Relu;
    relu.x_batches = 0;
    configs.push(relu);
    for c in &configs {
        c.check()?;
    }
    create_dir(out)?;
    let runs = train_all(&configs)?;
    let name = |r: &ToyRun| {
        format!(
            "L{}-{}",
            r.config.layers,
            if r.config.activation == Activation::Relu {
                "relu"
            } else {
                "linear"
            }
        )
    };
    for run in &runs {
        write_run(&out.join(name(run)), run)?;
    }
    line_chart(
        &out.join("spectra_depth.png"),
        &LineChart {
            title: "Embedding spectrum after training, linear networks".into(),
            x_label: "singular value rank".into(),
            y_label: "log10 eigenvalue of cov(z)".into(),
            series: runs
                .iter()
                .filter(|r| r.config.activation == Activation::Linear)
                .map(|r| {
                    spectrum_series(
                        format!("L = {}", r.config.layers),
                        &r.last().embedding_spectrum,
                    )
                })
                .collect(),
            palette: Palette::Ramp,
        },
    )?;
    line_chart(
        &out.join("spectra_relu.png"),
        &LineChart {
            title: "Embedding spectrum after training, L = 2".into(),
            x_label: "singular value rank".into(),
            y_label: "log10 eigenvalue of cov(z)".into(),
            series: runs
                .iter()
                .filter(|r| r.config.layers == 2)
                .map(|r| {
                    spectrum_series(
                        if r.config.activation == Activation::Relu {
                            "ReLU".into()
                        } else {
                            "linear".into()
                        },
                        &r.last().embedding_spectrum,
                    )
                })
                .collect(),
            palette: Palette::Ramp,
        },
    )?;
    let report = DepthReport {
        runs: runs
            .iter()
            .map(|r| DepthRun {
                layers: r.config.layers,
                activation: r.config.activation,
                embedding_spectrum: r.last().embedding_spectrum.clone(),
                collapsed: collapsed_dimensions(&r.last().embedding_spectrum, collapse_threshold),
                final_loss: r.last().loss,
            })
            .collect(),
        collapse_threshold,
        out: out.into(),
    };
    write_json(&out.join("summary.json"), &report)?;
    Ok(report)
}

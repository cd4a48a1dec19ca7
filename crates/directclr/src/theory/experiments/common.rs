//! What the experiments share: the user's [`Overrides`] of a preset and the writers of run
//! folders, CSV, JSON and the curves drawn from a run.

use std::{fs, path::Path};

use rayon::prelude::*;
use serde::Serialize;

use crate::{
    plot::Series,
    theory::{
        config::{Precision, ToyConfig},
        toy_loss::{ToyLoss, ZNorm},
        trainer::{train, ToyRun},
    },
    Error, Result,
};

/// Settings a user may change on top of an experiment's paper defaults (`None` keeps them).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Overrides {
    /// Width d.
    pub dim: Option<usize>,
    /// SGD steps.
    pub steps: Option<usize>,
    /// Batch size.
    pub batch: Option<usize>,
    /// Learning rate.
    pub lr: Option<f64>,
    /// Number of fixed samples.
    pub samples: Option<usize>,
    /// Fresh samples per spectrum.
    pub eval_samples: Option<usize>,
    /// Steps between measurements.
    pub log_every: Option<usize>,
    /// Temperature τ.
    pub temperature: Option<f64>,
    /// Loss form.
    pub loss: Option<ToyLoss>,
    /// Normalisation of z before the loss.
    pub z_norm: Option<ZNorm>,
    /// Seed.
    pub seed: Option<u64>,
    /// Precision.
    pub precision: Option<Precision>,
    /// Batches per X estimate.
    pub x_batches: Option<usize>,
}

impl Overrides {
    /// Applies the overrides to a preset.
    pub fn apply(&self, mut c: ToyConfig) -> ToyConfig {
        c.dim = self.dim.unwrap_or(c.dim);
        c.steps = self.steps.unwrap_or(c.steps);
        c.batch = self.batch.unwrap_or(c.batch);
        c.lr = self.lr.unwrap_or(c.lr);
        c.samples = self.samples.unwrap_or(c.samples);
        c.eval_samples = self.eval_samples.unwrap_or(c.eval_samples);
        c.log_every = self.log_every.unwrap_or(c.log_every);
        c.temperature = self.temperature.unwrap_or(c.temperature);
        c.loss = self.loss.unwrap_or(c.loss);
        c.z_norm = self.z_norm.unwrap_or(c.z_norm);
        c.seed = self.seed.unwrap_or(c.seed);
        c.precision = self.precision.unwrap_or(c.precision);
        c.x_batches = self.x_batches.unwrap_or(c.x_batches);
        c
    }
}

pub(in crate::theory) fn create_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).map_err(|e| Error::io("cannot create folder", dir, e))
}

pub(in crate::theory) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).expect("reports serialise");
    fs::write(path, text + "\n").map_err(|e| Error::io("cannot write", path, e))
}

pub(in crate::theory) fn write_csv(
    path: &Path,
    header: &[String],
    rows: impl IntoIterator<Item = Vec<String>>,
) -> Result<()> {
    let io = |e: csv::Error| Error::io("cannot write", path, e.into());
    let mut w = csv::Writer::from_path(path).map_err(io)?;
    w.write_record(header).map_err(io)?;
    for row in rows {
        w.write_record(&row).map_err(io)?;
    }
    w.flush().map_err(|e| Error::io("cannot write", path, e))
}

pub(in crate::theory) fn numbered(prefix: &str, n: usize) -> impl Iterator<Item = String> + '_ {
    (1..=n).map(move |k| format!("{prefix}{k}"))
}

/// log10 of a spectrum value, floored at 1e-30 (round-off can make eigenvalues ≤ 0).
pub(in crate::theory) fn log10(v: f64) -> f64 {
    v.max(1e-30).log10()
}

/// Writes the numbers of one run into `dir`.
pub(in crate::theory) fn write_run(dir: &Path, run: &ToyRun) -> Result<()> {
    create_dir(dir)?;
    let d = run.config.dim;
    write_json(&dir.join("config.json"), &run.config)?;
    let header: Vec<String> = ["step".into(), "loss".into()]
        .into_iter()
        .chain(numbered("eig", d))
        .collect();
    write_csv(
        &dir.join("spectrum.csv"),
        &header,
        run.records.iter().map(|r| {
            [
                r.step.to_string(),
                r.loss.map(|l| l.to_string()).unwrap_or_default(),
            ]
            .into_iter()
            .chain(r.embedding_spectrum.iter().map(|v| v.to_string()))
            .collect()
        }),
    )?;
    for l in 0..run.config.layers {
        let header: Vec<String> = std::iter::once("step".to_string())
            .chain(numbered("sigma", d))
            .collect();
        write_csv(
            &dir.join(format!("singular_values_layer{}.csv", l + 1)),
            &header,
            run.records.iter().map(|r| {
                std::iter::once(r.step.to_string())
                    .chain(r.layer_singular_values[l].iter().map(|v| v.to_string()))
                    .collect()
            }),
        )?;
    }
    for (l, a) in run.alignment.iter().enumerate() {
        let header: Vec<String> = numbered("col", d).collect();
        write_csv(
            &dir.join(format!("alignment_layer{}.csv", l + 1)),
            &header,
            a.row_iter()
                .map(|r| r.iter().map(|v| v.to_string()).collect()),
        )?;
    }
    if run.records[0].x_eigenvalues.is_some() {
        let header: Vec<String> = std::iter::once("step".to_string())
            .chain(numbered("x_eig", d))
            .collect();
        write_csv(
            &dir.join("x_eigenvalues.csv"),
            &header,
            run.records.iter().filter_map(|r| {
                r.x_eigenvalues.as_ref().map(|x| {
                    std::iter::once(r.step.to_string())
                        .chain(x.iter().map(|v| v.to_string()))
                        .collect()
                })
            }),
        )?;
    }
    Ok(())
}

/// One curve per rank k of a quantity measured over training, as log10.
pub(in crate::theory) fn evolution(
    run: &ToyRun,
    values: impl Fn(&crate::theory::ToyRecord) -> &[f64],
) -> Vec<Series> {
    let d = values(&run.records[0]).len();
    (0..d)
        .map(|k| Series {
            label: (k == 0 || k == d - 1).then(|| format!("k = {}", k + 1)),
            points: run
                .records
                .iter()
                .map(|r| (r.step as f64, log10(values(r)[k])))
                .collect(),
        })
        .collect()
}

pub(in crate::theory) fn spectrum_series(label: String, spectrum: &[f64]) -> Series {
    Series {
        label: Some(label),
        points: spectrum
            .iter()
            .enumerate()
            .map(|(k, &v)| ((k + 1) as f64, log10(v)))
            .collect(),
    }
}

pub(super) fn train_all(configs: &[ToyConfig]) -> Result<Vec<ToyRun>> {
    configs.par_iter().map(train).collect()
}

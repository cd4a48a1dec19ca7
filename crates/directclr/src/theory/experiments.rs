//! The paper's theory experiments (Section 4, Section 5, Figures 4–6) and their output files:
//! numbers as CSV and JSON, figures as PNG.
//!
//! Every run folder holds `config.json`, `summary.json`, `spectrum.csv` (step, loss, the
//! embedding covariance eigenvalues), `singular_values_layer{l}.csv`, `alignment_layer{l}.csv`
//! (final A = V_{l+1}ᵀU_l), `x_eigenvalues.csv` when X is estimated, and its figures.

use std::{
    fs,
    path::{Path, PathBuf},
};

use nalgebra::DMatrix;
use rayon::prelude::*;
use serde::Serialize;

use super::{
    closed_form::{fixed_x_solution, integrate_fixed_x, row_dominance, sorted_symmetric_eigen},
    config::{NoiseSupport, Precision, ToyConfig},
    toy_loss::ToyLoss,
    toy_net::Activation,
    trainer::{train, ToyRun},
};
use crate::{
    analysis::collapsed_dimensions,
    plot::{heatmap, line_chart, LineChart, Palette, Series},
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
        c.seed = self.seed.unwrap_or(c.seed);
        c.precision = self.precision.unwrap_or(c.precision);
        c.x_batches = self.x_batches.unwrap_or(c.x_batches);
        c
    }
}

pub(super) fn create_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).map_err(|e| Error::io("cannot create folder", dir, e))
}

pub(super) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).expect("reports serialise");
    fs::write(path, text + "\n").map_err(|e| Error::io("cannot write", path, e))
}

pub(super) fn write_csv(
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

pub(super) fn numbered(prefix: &str, n: usize) -> impl Iterator<Item = String> + '_ {
    (1..=n).map(move |k| format!("{prefix}{k}"))
}

/// log10 of a spectrum value, floored at 1e-30 (round-off can make eigenvalues ≤ 0).
pub(super) fn log10(v: f64) -> f64 {
    v.max(1e-30).log10()
}

/// Writes the numbers of one run into `dir`.
pub(super) fn write_run(dir: &Path, run: &ToyRun) -> Result<()> {
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
pub(super) fn evolution(run: &ToyRun, values: impl Fn(&super::ToyRecord) -> &[f64]) -> Vec<Series> {
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

pub(super) fn spectrum_series(label: String, spectrum: &[f64]) -> Series {
    Series {
        label: Some(label),
        points: spectrum
            .iter()
            .enumerate()
            .map(|(k, &v)| ((k + 1) as f64, log10(v)))
            .collect(),
    }
}

fn train_all(configs: &[ToyConfig]) -> Result<Vec<ToyRun>> {
    configs.par_iter().map(train).collect()
}

// ---------------------------------------------------------------------------------------------
// Section 4: strong augmentation.

/// Theorem 1 checked on one run of Section 4.
#[derive(Debug, Clone, Serialize)]
pub struct Theorem1Check {
    /// Noise std of the run.
    pub noise_std: f64,
    /// Negative eigenvalues of X at the initial weights.
    pub x_negative_initial: usize,
    /// Negative eigenvalues of X averaged over the run (the fixed X of Theorem 1).
    pub x_negative_mean: usize,
    /// Negative eigenvalues of X at the final weights.
    pub x_negative_final: usize,
    /// Eigenvalues of the run-averaged X, descending.
    pub x_mean_eigenvalues: Vec<f64>,
    /// For each eigenvector u_k of the run-averaged X: ‖W(T)u_k‖ / ‖W(0)u_k‖ (Theorem 1 predicts
    /// < 1 exactly where the eigenvalue is negative).
    pub growth: Vec<f64>,
    /// Directions that shrank (growth < 1).
    pub decayed_directions: usize,
    /// Directions along which X is negative and that shrank.
    pub negative_and_decayed: usize,
    /// Mean squared overlap of X's negative eigenvectors with the noisy coordinates (1 = inside).
    pub negative_eigenvectors_in_noisy_coordinates: f64,
    /// Embedding variance along the noisy input coordinates over that along the clean ones
    /// (mean squared column norm of W), at the start.
    pub noisy_to_clean_variance_initial: f64,
    /// The same at the end.
    pub noisy_to_clean_variance_final: f64,
    /// Collapsed embedding dimensions (λ_k/λ_1 below the threshold) at the start.
    pub collapsed_initial: usize,
    /// Collapsed embedding dimensions at the end.
    pub collapsed_final: usize,
    /// Final training loss.
    pub final_loss: Option<f64>,
}

fn noisy_to_clean(w: &DMatrix<f64>, first_noisy: usize) -> f64 {
    let norms: Vec<f64> = (0..w.ncols()).map(|j| w.column(j).norm_squared()).collect();
    let mean = |s: &[f64]| s.iter().sum::<f64>() / s.len().max(1) as f64;
    mean(&norms[first_noisy..]) / mean(&norms[..first_noisy])
}

fn negatives(x: &Option<DMatrix<f64>>) -> usize {
    x.as_ref()
        .map(|x| {
            sorted_symmetric_eigen(x)
                .0
                .iter()
                .filter(|&&v| v < 0.0)
                .count()
        })
        .unwrap_or(0)
}

fn theorem1_check(run: &ToyRun, threshold: f64) -> Theorem1Check {
    let d = run.config.dim;
    let first_noisy = match run.config.noise_support {
        NoiseSupport::All => 0,
        NoiseSupport::Last(k) => d - k,
    };
    let (w0, wt) = (&run.initial_weights[0], &run.weights[0]);
    let x_mean = run.x_mean.as_ref().expect("section 4 runs estimate X");
    let (values, vectors) = sorted_symmetric_eigen(x_mean);
    let growth: Vec<f64> = (0..d)
        .map(|k| (wt * vectors.column(k)).norm() / (w0 * vectors.column(k)).norm())
        .collect();
    let neg: Vec<usize> = (0..d).filter(|&k| values[k] < 0.0).collect();
    let overlap = if neg.is_empty() {
        0.0
    } else {
        neg.iter()
            .map(|&k| {
                vectors
                    .column(k)
                    .rows(first_noisy, d - first_noisy)
                    .norm_squared()
            })
            .sum::<f64>()
            / neg.len() as f64
    };
    Theorem1Check {
        noise_std: run.config.noise_std,
        x_negative_initial: negatives(&run.x_initial),
        x_negative_mean: neg.len(),
        x_negative_final: negatives(&run.x_final),
        x_mean_eigenvalues: values.clone(),
        decayed_directions: growth.iter().filter(|&&g| g < 1.0).count(),
        negative_and_decayed: neg.iter().filter(|&&k| growth[k] < 1.0).count(),
        growth,
        negative_eigenvectors_in_noisy_coordinates: overlap,
        noisy_to_clean_variance_initial: noisy_to_clean(w0, first_noisy),
        noisy_to_clean_variance_final: noisy_to_clean(wt, first_noisy),
        collapsed_initial: collapsed_dimensions(&run.records[0].embedding_spectrum, threshold),
        collapsed_final: collapsed_dimensions(&run.last().embedding_spectrum, threshold),
        final_loss: run.last().loss,
    }
}

/// The fixed-X closed form of Theorem 1, W(t) = W(0)·exp(Xt), against numerical integration of
/// Ẇ = W X and against plain gradient descent W ← W + η W X with X held fixed.
#[derive(Debug, Clone, Serialize)]
pub struct FixedXCheck {
    /// Flow time t = η · steps.
    pub time: f64,
    /// max |closed form − RK4| / max |closed form|.
    pub rk4_relative_error: f64,
    /// max |closed form − gradient descent| / max |closed form| (first order in η).
    pub gradient_descent_relative_error: f64,
    /// Learning rate of the gradient-descent comparison.
    pub lr: f64,
    /// Singular values of W(t), descending: those along X's negative directions vanish.
    pub singular_values: Vec<f64>,
}

fn fixed_x_check(w0: &DMatrix<f64>, x: &DMatrix<f64>, lr: f64, steps: usize) -> FixedXCheck {
    let time = lr * steps as f64;
    let closed = fixed_x_solution(w0, x, time);
    let rk4 = integrate_fixed_x(w0, x, time, steps.max(20_000));
    let mut gd = w0.clone();
    for _ in 0..steps {
        gd += &gd * x * lr;
    }
    let scale = closed.abs().max().max(f64::MIN_POSITIVE);
    FixedXCheck {
        time,
        rk4_relative_error: (&closed - rk4).abs().max() / scale,
        gradient_descent_relative_error: (&closed - gd).abs().max() / scale,
        lr,
        singular_values: super::closed_form::sorted_svd(&closed).values,
    }
}

/// The outcome of [`strong_augmentation`].
#[derive(Debug, Clone, Serialize)]
pub struct AugmentationReport {
    /// One Theorem 1 check per noise level.
    pub runs: Vec<Theorem1Check>,
    /// The fixed-X closed form checked on the strongest noise's initial X.
    pub fixed_x: FixedXCheck,
    /// The relative eigenvalue threshold for "collapsed".
    pub collapse_threshold: f64,
    /// The folder written.
    pub out: PathBuf,
}

/// Section 4 / Theorem 1: one linear layer, noise of each std in `noise_stds` on the last
/// `noisy_dims` coordinates. Writes `noise-{std}/` run folders, `summary.json`, `summary.csv`,
/// `final_spectra.png`, `x_eigenvalues.png` and `fixed_x.json` into `out`.
pub fn strong_augmentation(
    noise_stds: &[f64],
    noisy_dims: usize,
    collapse_threshold: f64,
    overrides: &Overrides,
    out: &Path,
) -> Result<AugmentationReport> {
    if noise_stds.is_empty() {
        return Err(Error::config("noise", "give at least one noise std"));
    }
    let configs: Vec<ToyConfig> = noise_stds
        .iter()
        .map(|&s| {
            let mut c = overrides.apply(ToyConfig::strong_augmentation(s));
            c.noise_support = NoiseSupport::Last(noisy_dims);
            if c.x_batches == 0 {
                c.x_batches = 1;
            }
            c
        })
        .collect();
    for c in &configs {
        c.check()?;
    }
    create_dir(out)?;
    let runs = train_all(&configs)?;
    let mut checks = Vec::new();
    for run in &runs {
        let dir = out.join(format!("noise-{}", run.config.noise_std));
        write_run(&dir, run)?;
        let check = theorem1_check(run, collapse_threshold);
        write_json(&dir.join("summary.json"), &check)?;
        line_chart(
            &dir.join("spectrum_evolution.png"),
            &LineChart {
                title: format!(
                    "Embedding spectrum during training, noise std {}",
                    run.config.noise_std
                ),
                x_label: "step".into(),
                y_label: "log10 eigenvalue of cov(z)".into(),
                series: evolution(run, |r| &r.embedding_spectrum),
                palette: Palette::Ramp,
            },
        )?;
        checks.push(check);
    }
    line_chart(
        &out.join("final_spectra.png"),
        &LineChart {
            title: "Embedding spectrum after training (one linear layer)".into(),
            x_label: "singular value rank".into(),
            y_label: "log10 eigenvalue of cov(z)".into(),
            series: runs
                .iter()
                .map(|r| {
                    spectrum_series(
                        format!("noise {}", r.config.noise_std),
                        &r.last().embedding_spectrum,
                    )
                })
                .collect(),
            palette: Palette::Ramp,
        },
    )?;
    line_chart(
        &out.join("x_eigenvalues.png"),
        &LineChart {
            title: "Eigenvalues of X (Eqn 6), averaged over training".into(),
            x_label: "rank".into(),
            y_label: "eigenvalue / max |eigenvalue|".into(),
            series: checks
                .iter()
                .map(|c| {
                    let max = c
                        .x_mean_eigenvalues
                        .iter()
                        .fold(f64::MIN_POSITIVE, |m, v| m.max(v.abs()));
                    Series {
                        label: Some(format!("noise {}", c.noise_std)),
                        points: c
                            .x_mean_eigenvalues
                            .iter()
                            .enumerate()
                            .map(|(k, v)| ((k + 1) as f64, v / max))
                            .collect(),
                    }
                })
                .collect(),
            palette: Palette::Ramp,
        },
    )?;
    let strongest = runs
        .iter()
        .max_by(|a, b| a.config.noise_std.total_cmp(&b.config.noise_std))
        .expect("at least one run");
    let x0 = strongest
        .x_initial
        .as_ref()
        .expect("section 4 runs estimate X");
    let fixed_x = fixed_x_check(&strongest.initial_weights[0], x0, strongest.config.lr, 1000);
    write_json(&out.join("fixed_x.json"), &fixed_x)?;
    write_csv(
        &out.join("summary.csv"),
        &[
            "noise_std",
            "x_negative_initial",
            "x_negative_mean",
            "x_negative_final",
            "decayed_directions",
            "negative_and_decayed",
            "noisy_to_clean_variance_initial",
            "noisy_to_clean_variance_final",
            "collapsed_initial",
            "collapsed_final",
        ]
        .map(String::from),
        checks.iter().map(|c| {
            vec![
                c.noise_std.to_string(),
                c.x_negative_initial.to_string(),
                c.x_negative_mean.to_string(),
                c.x_negative_final.to_string(),
                c.decayed_directions.to_string(),
                c.negative_and_decayed.to_string(),
                c.noisy_to_clean_variance_initial.to_string(),
                c.noisy_to_clean_variance_final.to_string(),
                c.collapsed_initial.to_string(),
                c.collapsed_final.to_string(),
            ]
        }),
    )?;
    let report = AugmentationReport {
        runs: checks,
        fixed_x,
        collapse_threshold,
        out: out.into(),
    };
    write_json(&out.join("summary.json"), &report)?;
    Ok(report)
}

// ---------------------------------------------------------------------------------------------
// Section 5: implicit regularisation.

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
/// same with columns paired to rows, see [`super::closed_form::matched_alignment`]) and
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
        &super::closed_form::matched_alignment(&run.alignment[0]).0,
    )?;
    let c0 =
        super::closed_form::theorem2_invariant(&run.initial_weights[0], &run.initial_weights[1]);
    let ct = super::closed_form::theorem2_invariant(&run.weights[0], &run.weights[1]);
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

// ---------------------------------------------------------------------------------------------
// Section 5.4: depth and nonlinearity.

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

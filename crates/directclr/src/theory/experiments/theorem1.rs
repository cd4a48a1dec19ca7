//! Section 4, Theorem 1 ([`strong_augmentation`]): strong augmentation collapses one linear
//! layer along the negative eigendirections of X.

use std::path::{Path, PathBuf};

use nalgebra::DMatrix;
use serde::Serialize;

use super::common::{
    create_dir, evolution, spectrum_series, train_all, write_csv, write_json, write_run, Overrides,
};
use crate::{
    analysis::collapsed_dimensions,
    plot::{line_chart, LineChart, Palette, Series},
    theory::{
        closed_form::{fixed_x_solution, integrate_fixed_x, sorted_symmetric_eigen},
        config::{NoiseSupport, ToyConfig},
        trainer::ToyRun,
    },
    Error, Result,
};

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
        singular_values: crate::theory::closed_form::sorted_svd(&closed).values,
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

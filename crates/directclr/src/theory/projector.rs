//! Section 6 in the theory lab: what each head of Table 1 does to the spectrum of the
//! representation r, under both collapse mechanisms of Sections 4–5.
//!
//! For every mechanism × head one toy encoder (a [`super::ToyNet`] of depth L, linear or with
//! ReLU between layers) is trained with the head between r and the loss; the encoder's data,
//! initial weights, batches and noise are the same for every head (separate random streams).
//! Measured over training and at the end: the covariance spectrum of r (Eqn 1), the number of
//! collapsed dimensions of r at λ_k/λ₁ < 1e-2, 1e-4 and 1e-6, the effective rank (RankMe) of r, the
//! spectrum of z, and the loss against chance.
//!
//! Chance: both toy losses ([`super::ToyLoss`]) are N-way softmaxes (the positive and the N − 1
//! negatives of one view; not SimCLR's 2N − 1 candidates), so an encoder that tells nothing
//! apart scores ln N with N the batch size. A run whose final loss is not below
//! [`CHANCE_FRACTION`] · ln N never left chance: its r is its initialisation and proves nothing
//! about the head. Since z is not normalised, the *initial* loss can already lie far below (or
//! above) ln N — under implicit regularisation the two views differ by noise 0.001 and the
//! untrained encoder scores about 3.3 < 0.9 · ln 128 — so a run must also have
//! [`HeadRun::trained`]: its final loss below [`CHANCE_FRACTION`] × its first step's loss.
//!
//! Writes into `out`: `{mechanism}/{head}/` run folders (the files of
//! [`super::experiments`], plus `r_metrics.csv` and `z_spectrum.csv`), per mechanism
//! `final_r_spectra.png` and `effective_rank.png`, and `summary.json`, `summary.csv` at the top.

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::{
    config::{NoiseSupport, ToyConfig},
    experiments::{
        create_dir, evolution, log10, numbered, spectrum_series, write_csv, write_json, Overrides,
    },
    head::{HeadConfig, HeadKind},
    toy_net::Activation,
    trainer::{train_with_head, ToyRecord, ToyRun},
};
use crate::{
    analysis::{collapsed_dimensions, effective_rank},
    plot::{line_chart, LineChart, Palette, Series},
    Error, Result,
};

/// The relative thresholds λ_k/λ₁ at which dimensions of r count as collapsed: 1e-2 is the
/// threshold of `theory augmentation` (the toy's Section 4 collapse after 10⁴ steps at lr 1e-3
/// reaches about 1e-2–1e-3 of λ₁, never 1e-4), 1e-4 that of Section 5, 1e-6 the float32 reading
/// of [`crate::analysis::DEFAULT_COLLAPSE_THRESHOLD`].
pub const COLLAPSE_THRESHOLDS: [f64; 3] = [1e-2, 1e-4, 1e-6];

/// A run left chance when its final loss is below this fraction of ln N (N the batch size).
pub const CHANCE_FRACTION: f64 = 0.9;

/// The final loss is the mean batch loss over this last fraction of the measurements (one
/// batch's loss is noisy).
pub const FINAL_LOSS_WINDOW: f64 = 0.1;

/// The collapse mechanism a run is set in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum Mechanism {
    /// Section 4 / Theorem 1: Gaussian noise on the last coordinates
    /// ([`ToyConfig::strong_augmentation`]).
    StrongAugmentation,
    /// Section 5 / Theorems 2–3: weak isotropic noise, decaying initial singular values
    /// ([`ToyConfig::implicit_regularization`]).
    ImplicitRegularization,
}

impl Mechanism {
    /// Both mechanisms.
    pub const ALL: [Mechanism; 2] = [
        Mechanism::StrongAugmentation,
        Mechanism::ImplicitRegularization,
    ];

    /// The kebab-case name used in folders and tables.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::StrongAugmentation => "strong-augmentation",
            Mechanism::ImplicitRegularization => "implicit-regularization",
        }
    }
}

/// The settings of [`projector`] beyond the toy presets.
#[derive(Debug, Clone, Serialize)]
pub struct ProjectorSettings {
    /// The mechanisms to run.
    pub mechanisms: Vec<Mechanism>,
    /// The heads to run.
    pub heads: Vec<HeadKind>,
    /// DirectCLR's d0.
    pub d0: usize,
    /// The fixed projector's rank k.
    pub rank: usize,
    /// Noise std of strong augmentation (Section 4: 1.5 collapses).
    pub noise_std: f64,
    /// How many of the last coordinates get strong-augmentation noise (8 of 16).
    pub noisy_dims: usize,
    /// Encoder depth L (`None`: 1 for strong augmentation, 2 for implicit regularisation, the
    /// presets).
    pub layers: Option<usize>,
    /// Between encoder layers (`None`: linear).
    pub activation: Option<Activation>,
}

impl Default for ProjectorSettings {
    fn default() -> Self {
        ProjectorSettings {
            mechanisms: Mechanism::ALL.to_vec(),
            heads: HeadKind::ALL.to_vec(),
            d0: 8,
            rank: 8,
            noise_std: 1.5,
            noisy_dims: 8,
            layers: None,
            activation: None,
        }
    }
}

impl ProjectorSettings {
    /// The toy config of one mechanism: its preset, the overrides, then depth and activation.
    /// X (Eqn 6) is not estimated (it is defined for z = W x only).
    pub fn toy_config(&self, mechanism: Mechanism, overrides: &Overrides) -> ToyConfig {
        let mut c = match mechanism {
            Mechanism::StrongAugmentation => {
                let mut c = overrides.apply(ToyConfig::strong_augmentation(self.noise_std));
                c.noise_support = NoiseSupport::Last(self.noisy_dims);
                c
            }
            Mechanism::ImplicitRegularization => {
                overrides.apply(ToyConfig::implicit_regularization(2))
            }
        };
        c.layers = self.layers.unwrap_or(c.layers);
        c.activation = self.activation.unwrap_or(c.activation);
        c.x_batches = 0;
        c
    }

    /// The head config of one head kind.
    pub fn head_config(&self, kind: HeadKind) -> HeadConfig {
        HeadConfig {
            kind,
            d0: self.d0,
            rank: self.rank,
        }
    }
}

/// One mechanism × head.
#[derive(Debug, Clone, Serialize)]
pub struct HeadRun {
    /// The collapse mechanism.
    pub mechanism: Mechanism,
    /// The head.
    pub head: HeadKind,
    /// Encoder depth L.
    pub layers: usize,
    /// Between encoder layers.
    pub activation: Activation,
    /// Covariance eigenvalues of r at the end, descending.
    pub r_spectrum: Vec<f64>,
    /// Collapsed dimensions of r at λ_k/λ₁ < 1e-2: (start, end).
    pub r_collapsed_1e2: (usize, usize),
    /// Collapsed dimensions of r at λ_k/λ₁ < 1e-4: (start, end).
    pub r_collapsed_1e4: (usize, usize),
    /// Collapsed dimensions of r at λ_k/λ₁ < 1e-6: (start, end).
    pub r_collapsed_1e6: (usize, usize),
    /// Effective rank (RankMe) of r: (start, end).
    pub r_effective_rank: (f64, f64),
    /// Width of z.
    pub z_dim: usize,
    /// Collapsed dimensions of z at the end at each of [`COLLAPSE_THRESHOLDS`] (`None`: z = r).
    /// Together with r's counts this shows where a head puts the collapse.
    pub z_collapsed: Option<[usize; 3]>,
    /// Loss of the first step's batch.
    pub initial_loss: f64,
    /// Mean batch loss over the last [`FINAL_LOSS_WINDOW`] of the measurements.
    pub final_loss: f64,
    /// ln N, N the batch size.
    pub chance_loss: f64,
    /// final_loss < [`CHANCE_FRACTION`] · chance_loss.
    pub left_chance: bool,
    /// final_loss < [`CHANCE_FRACTION`] · initial_loss: training moved the loss.
    pub trained: bool,
    /// Wall-clock seconds of training with its measurements (runs share the cores).
    pub train_seconds: f64,
}

/// The outcome of [`projector`].
#[derive(Debug, Clone, Serialize)]
pub struct ProjectorReport {
    /// The settings.
    pub settings: ProjectorSettings,
    /// One entry per mechanism × head, mechanism-major.
    pub runs: Vec<HeadRun>,
    /// The thresholds of the collapsed counts.
    pub collapse_thresholds: [f64; 3],
    /// What "left chance" means.
    pub chance_rule: String,
    /// The folder written.
    pub out: PathBuf,
}

/// The effective rank (RankMe) of r at a measurement. An r that is exactly zero — weight
/// decay can shrink a linear encoder to 0 in f32 once the loss stops pulling, a fixed point of
/// the dynamics — has every dimension collapsed: RankMe is undefined there and is reported as 0
/// (its collapsed counts are d), so a sweep records the run instead of failing on it.
pub(crate) fn rank_of(record: &ToyRecord) -> Result<f64> {
    let singular_values = record
        .representation_singular_values
        .as_deref()
        .ok_or_else(|| Error::Numerical {
            context: "theory projector".into(),
            reason: "a run without singular values of r (train it with train_with_head)".into(),
        })?;
    if singular_values.iter().all(|&s| s == 0.0) {
        return Ok(0.0);
    }
    effective_rank(singular_values)
}

/// The loss of the first step and the mean over the last window of measurements.
fn losses(run: &ToyRun) -> (f64, f64) {
    let measured: Vec<f64> = run.records.iter().filter_map(|r| r.loss).collect();
    let window = ((measured.len() as f64 * FINAL_LOSS_WINDOW).ceil() as usize).max(1);
    let tail = &measured[measured.len() - window..];
    (measured[0], tail.iter().sum::<f64>() / tail.len() as f64)
}

pub(crate) fn summarise(mechanism: Mechanism, run: &ToyRun, seconds: f64) -> Result<HeadRun> {
    let (first, last) = (&run.records[0], run.last());
    let collapsed = |r: &ToyRecord, t: f64| collapsed_dimensions(&r.embedding_spectrum, t);
    let (initial_loss, final_loss) = losses(run);
    let chance_loss = (run.config.batch as f64).ln();
    Ok(HeadRun {
        mechanism,
        head: run.head.kind,
        layers: run.config.layers,
        activation: run.config.activation,
        r_spectrum: last.embedding_spectrum.clone(),
        r_collapsed_1e2: (collapsed(first, 1e-2), collapsed(last, 1e-2)),
        r_collapsed_1e4: (collapsed(first, 1e-4), collapsed(last, 1e-4)),
        r_collapsed_1e6: (collapsed(first, 1e-6), collapsed(last, 1e-6)),
        r_effective_rank: (rank_of(first)?, rank_of(last)?),
        z_dim: last
            .head_spectrum
            .as_ref()
            .map_or(run.config.dim, |s| s.len()),
        z_collapsed: last
            .head_spectrum
            .as_ref()
            .map(|s| COLLAPSE_THRESHOLDS.map(|t| collapsed_dimensions(s, t))),
        initial_loss,
        final_loss,
        chance_loss,
        left_chance: final_loss < CHANCE_FRACTION * chance_loss,
        trained: final_loss < CHANCE_FRACTION * initial_loss,
        train_seconds: seconds,
    })
}

/// Writes one run's folder: the common files, `r_metrics.csv` (step, loss, effective rank of
/// r, collapsed counts at the three thresholds), `z_spectrum.csv` and `r_spectrum_evolution.png`.
pub(crate) fn write_head_run(dir: &Path, run: &ToyRun) -> Result<()> {
    super::experiments::write_run(dir, run)?;
    write_json(&dir.join("head.json"), &run.head)?;
    let mut rows = Vec::with_capacity(run.records.len());
    for r in &run.records {
        rows.push(vec![
            r.step.to_string(),
            r.loss.map(|l| l.to_string()).unwrap_or_default(),
            rank_of(r)?.to_string(),
            collapsed_dimensions(&r.embedding_spectrum, 1e-2).to_string(),
            collapsed_dimensions(&r.embedding_spectrum, 1e-4).to_string(),
            collapsed_dimensions(&r.embedding_spectrum, 1e-6).to_string(),
        ]);
    }
    write_csv(
        &dir.join("r_metrics.csv"),
        &[
            "step",
            "loss",
            "r_effective_rank",
            "r_collapsed_1e-2",
            "r_collapsed_1e-4",
            "r_collapsed_1e-6",
        ]
        .map(String::from),
        rows,
    )?;
    if let Some(z) = &run.records[0].head_spectrum {
        let header: Vec<String> = std::iter::once("step".to_string())
            .chain(numbered("eig", z.len()))
            .collect();
        write_csv(
            &dir.join("z_spectrum.csv"),
            &header,
            run.records.iter().map(|r| {
                std::iter::once(r.step.to_string())
                    .chain(r.head_spectrum.iter().flatten().map(|v| v.to_string()))
                    .collect()
            }),
        )?;
    }
    line_chart(
        &dir.join("r_spectrum_evolution.png"),
        &LineChart {
            title: format!(
                "Spectrum of r during training, head {}",
                run.head.kind.name()
            ),
            x_label: "step".into(),
            y_label: "log10 eigenvalue of cov(r)".into(),
            series: evolution(run, |r| &r.embedding_spectrum),
            palette: Palette::Ramp,
        },
    )
}

/// Section 6: trains every mechanism × head of `settings` (in parallel) and writes their files
/// into `out` (see the module doc).
pub fn projector(
    settings: &ProjectorSettings,
    overrides: &Overrides,
    out: &Path,
) -> Result<ProjectorReport> {
    if settings.mechanisms.is_empty() {
        return Err(Error::config("mechanisms", "give at least one mechanism"));
    }
    if settings.heads.is_empty() {
        return Err(Error::config("heads", "give at least one head"));
    }
    let mut jobs = Vec::new();
    for &m in &settings.mechanisms {
        let config = settings.toy_config(m, overrides);
        config.check()?;
        for &h in &settings.heads {
            let head = settings.head_config(h);
            head.check(config.dim)?;
            jobs.push((m, config.clone(), head));
        }
    }
    create_dir(out)?;
    let runs: Vec<(Mechanism, ToyRun, f64)> = jobs
        .par_iter()
        .map(|(m, c, h)| {
            let start = std::time::Instant::now();
            let run = train_with_head(c, h)?;
            Ok((*m, run, start.elapsed().as_secs_f64()))
        })
        .collect::<Result<_>>()?;
    let mut summaries = Vec::with_capacity(runs.len());
    for (m, run, seconds) in &runs {
        write_head_run(&out.join(m.name()).join(run.head.kind.name()), run)?;
        summaries.push(summarise(*m, run, *seconds)?);
    }
    for &m in &settings.mechanisms {
        let of_m: Vec<&ToyRun> = runs
            .iter()
            .filter(|(rm, ..)| *rm == m)
            .map(|(_, r, _)| r)
            .collect();
        let dir = out.join(m.name());
        line_chart(
            &dir.join("final_r_spectra.png"),
            &LineChart {
                title: format!("Spectrum of r after training, {}", m.name()),
                x_label: "singular value rank".into(),
                y_label: "log10 eigenvalue of cov(r)".into(),
                series: of_m
                    .iter()
                    .map(|r| {
                        spectrum_series(r.head.kind.name().into(), &r.last().embedding_spectrum)
                    })
                    .collect(),
                palette: Palette::Categorical,
            },
        )?;
        let mut series = Vec::new();
        for r in &of_m {
            let mut points = Vec::with_capacity(r.records.len());
            for rec in &r.records {
                points.push((rec.step as f64, rank_of(rec)?));
            }
            series.push(Series {
                label: Some(r.head.kind.name().into()),
                points,
            });
        }
        line_chart(
            &dir.join("effective_rank.png"),
            &LineChart {
                title: format!("Effective rank of r during training, {}", m.name()),
                x_label: "step".into(),
                y_label: "effective rank (RankMe) of r".into(),
                series,
                palette: Palette::Categorical,
            },
        )?;
    }
    write_csv(
        &out.join("summary.csv"),
        &[
            "mechanism",
            "head",
            "layers",
            "activation",
            "r_effective_rank_start",
            "r_effective_rank_end",
            "r_collapsed_1e-2_start",
            "r_collapsed_1e-2_end",
            "r_collapsed_1e-4_start",
            "r_collapsed_1e-4_end",
            "r_collapsed_1e-6_start",
            "r_collapsed_1e-6_end",
            "r_log10_smallest_over_largest_end",
            "z_dim",
            "z_collapsed_1e-2_end",
            "z_collapsed_1e-4_end",
            "z_collapsed_1e-6_end",
            "initial_loss",
            "final_loss",
            "chance_loss",
            "left_chance",
            "trained",
            "train_seconds",
        ]
        .map(String::from),
        summaries.iter().map(|s| {
            let ratio = s.r_spectrum.last().copied().unwrap_or(0.0)
                / s.r_spectrum.first().copied().unwrap_or(1.0);
            vec![
                s.mechanism.name().into(),
                s.head.name().into(),
                s.layers.to_string(),
                format!("{:?}", s.activation).to_lowercase(),
                s.r_effective_rank.0.to_string(),
                s.r_effective_rank.1.to_string(),
                s.r_collapsed_1e2.0.to_string(),
                s.r_collapsed_1e2.1.to_string(),
                s.r_collapsed_1e4.0.to_string(),
                s.r_collapsed_1e4.1.to_string(),
                s.r_collapsed_1e6.0.to_string(),
                s.r_collapsed_1e6.1.to_string(),
                log10(ratio).to_string(),
                s.z_dim.to_string(),
            ]
            .into_iter()
            .chain((0..3).map(|k| {
                s.z_collapsed.map(|z| z[k].to_string()).unwrap_or_default() // empty: no head, z = r
            }))
            .chain([
                s.initial_loss.to_string(),
                s.final_loss.to_string(),
                s.chance_loss.to_string(),
                s.left_chance.to_string(),
                s.trained.to_string(),
                s.train_seconds.to_string(),
            ])
            .collect()
        }),
    )?;
    let report = ProjectorReport {
        settings: settings.clone(),
        runs: summaries,
        collapse_thresholds: COLLAPSE_THRESHOLDS,
        chance_rule: format!(
            "chance = ln N (N-way InfoNCE, N = batch); final loss = mean of the last {}% of \
             measurements; left chance = final < {} × ln N; trained = final < {} × first step's loss",
            FINAL_LOSS_WINDOW * 100.0,
            CHANCE_FRACTION,
            CHANCE_FRACTION
        ),
        out: out.into(),
    };
    write_json(&out.join("summary.json"), &report)?;
    Ok(report)
}

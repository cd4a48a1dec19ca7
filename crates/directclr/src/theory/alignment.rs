//! Section 6, Proposition 1 in the theory lab: does a trainable linear projector W_p align with
//! the encoder's last layer W_L, and does a diagonal projector trained from the start do what
//! the full linear one does?
//!
//! Proposition 1 (the paper's Section 6, by the argument of Theorem 2 applied to the pair
//! (W_L, W_p)): under gradient flow W_L·W_Lᵀ − W_pᵀ·W_p is conserved, so from small, nearly
//! balanced weights the right singular vectors V_p of W_p align with the left singular vectors
//! U_L of W_L, A = V_pᵀ·U_L → I (up to signs and the order of near-equal singular values), and a
//! linear projector then acts like a diagonal one in U_L's basis. Measured here, for each
//! collapse mechanism of [`super::projector`]:
//!
//! - |A| at the start and at the end (heat maps, Figure 4's style), its *off-diagonal mass*
//!   1 − Σ_k A_kk² / ‖A‖²_F ([`diagonal_dominance`]; about 1 − 1/d for unrelated bases) and the
//!   order-free version 1 − mean_k max_l A_kl² ([`row_dominance`]), and the commutator
//!   [`misalignment`] of W_L·W_Lᵀ and W_pᵀ·W_p, every `log_every` steps;
//! - the singular values of W_p over training;
//! - a trainable diagonal projector z = w ⊙ r (w = 1 at the start) against the full linear one:
//!   the final loss and the spectrum of r (effective rank, collapsed counts).
//!
//! Proposition 2 (Section 6): the trained linear projector is itself low-rank, and only its
//! rank matters — a fixed projector of that rank gives r the same spectrum. Measured: the
//! singular values of the trained W_p, its numerical rank k_t = #{σ_k ≥ t·σ₁} at
//! t ∈ [`RANK_THRESHOLDS`], and for each distinct k a fixed rank-k projector
//! ([`HeadKind::FixedLowRank`], k singular values 1, Haar-random singular vectors) trained on
//! the same encoder, data and batches: its r-spectrum against the linear projector's.
//!
//! Writes into `out/{mechanism}/`: the run folders `linear/` (with `alignment.csv`,
//! `projector_singular_values.csv`, `alignment_initial.png`, `alignment_final.png`,
//! `alignment_final_matched.png`, `off_diagonal_mass.png`), `diagonal/` and
//! `fixed-rank-{k}/`, and at the top `summary.json`, `summary.csv` and
//! `projector_rank.csv` (one row per mechanism × fixed rank k).

use std::path::{Path, PathBuf};

use nalgebra::DMatrix;
use rayon::prelude::*;
use serde::Serialize;

use super::{
    closed_form::{
        alignment_matrix, diagonal_dominance, matched_alignment, misalignment, row_dominance,
        sorted_svd,
    },
    config::{Precision, ToyConfig},
    experiments::{create_dir, numbered, write_csv, write_json, Overrides},
    head::{Head, HeadConfig, HeadKind},
    projector::{summarise, write_head_run, HeadRun, Mechanism, ProjectorSettings},
    real::{to_f64, Real},
    trainer::{train_with_head, ToyRun, Trainer},
};
use crate::{
    plot::{heatmap, line_chart, LineChart, Palette, Series},
    Error, Result,
};

pub use super::conditions::Condition;

/// The relative thresholds t of the projector's numerical rank #{σ_k ≥ t·σ₁}: 1e-4 and 1e-6
/// as the issue asks, and 1e-2, the level the toy's Section 4 collapse reaches in 10⁴ steps.
pub const RANK_THRESHOLDS: [f64; 3] = [1e-2, 1e-4, 1e-6];

/// The numerical rank #{σ_k ≥ t·σ₁} of singular values in descending order.
pub fn numerical_rank(singular_values: &[f64], t: f64) -> usize {
    let top = singular_values.first().copied().unwrap_or(0.0);
    singular_values.iter().filter(|&&s| s >= t * top).count()
}

/// The alignment of W_p with W_L at one measurement.
#[derive(Debug, Clone, Serialize)]
pub struct AlignmentPoint {
    /// SGD steps taken.
    pub step: usize,
    /// The batch loss of that step (`None` at step 0).
    pub loss: Option<f64>,
    /// 1 − Σ_k A_kk² / ‖A‖²_F for A = V_pᵀ·U_L, singular vectors in descending order of
    /// singular value (0: aligned in order; about 1 − 1/d for unrelated bases).
    pub off_diagonal_mass: f64,
    /// 1 − mean_k max_l A_kl² (0: A is a signed permutation, whatever the order; about
    /// 1 − 2 ln d / d for unrelated bases).
    pub matched_off_diagonal_mass: f64,
    /// ‖[W_L·W_Lᵀ, W_pᵀ·W_p]‖_F / (‖W_L·W_Lᵀ‖_F·‖W_pᵀ·W_p‖_F): 0 exactly when aligned.
    pub misalignment: f64,
    /// Singular values of W_p, descending. [d]
    pub projector_singular_values: Vec<f64>,
}

impl AlignmentPoint {
    /// Measures the alignment of a linear projector `w_p` [d, d] with the encoder's last layer
    /// `w_l` [d, d].
    pub fn measure(step: usize, loss: Option<f64>, w_l: &DMatrix<f64>, w_p: &DMatrix<f64>) -> Self {
        let a = alignment_matrix(w_l, w_p);
        AlignmentPoint {
            step,
            loss,
            off_diagonal_mass: 1.0 - diagonal_dominance(&a),
            matched_off_diagonal_mass: 1.0 - row_dominance(&a),
            misalignment: misalignment(w_l, w_p),
            projector_singular_values: sorted_svd(w_p).values,
        }
    }
}

/// A run of [`super::train_with_head`]'s loop that also measures, for a linear head, the
/// alignment of W_p with the encoder's last layer at every measurement.
#[derive(Debug, Clone)]
pub struct TrackedRun {
    /// The run (same trajectory and records as [`super::train_with_head`]).
    pub run: ToyRun,
    /// One per record (empty unless the head is [`HeadKind::Linear`]).
    pub points: Vec<AlignmentPoint>,
}

impl TrackedRun {
    /// A = V_pᵀ·U_L at the start and at the end (`None` unless the head is linear). [d, d] each
    pub fn alignment_matrices(&self) -> Option<(DMatrix<f64>, DMatrix<f64>)> {
        let (p0, p1) = (
            self.run.head_initial_weights.first()?,
            self.run.head_weights.first()?,
        );
        (self.run.head.kind == HeadKind::Linear).then(|| {
            (
                alignment_matrix(self.run.initial_weights.last().expect("L ≥ 1"), p0),
                alignment_matrix(self.run.weights.last().expect("L ≥ 1"), p1),
            )
        })
    }
}

fn track_in<T: Real>(
    config: &ToyConfig,
    head: &HeadConfig,
    condition: &Condition,
) -> Result<TrackedRun> {
    let mut trainer = Trainer::<T>::with_head(config, head).measuring_rank();
    if condition.encoder_init_scale != 1.0 {
        let s = T::of(condition.encoder_init_scale);
        trainer
            .net
            .layers
            .iter_mut()
            .for_each(|w| w.apply(|v| *v *= s));
    }
    if condition.head_init_scale != 1.0 {
        let s = T::of(condition.head_init_scale);
        trainer
            .head
            .parameters_mut()
            .into_iter()
            .for_each(|w| w.apply(|v| *v *= s));
    }
    let decay = T::of(config.lr * condition.weight_decay);
    let linear = head.kind == HeadKind::Linear;
    let point = |t: &Trainer<T>, step: usize, loss: Option<f64>| match &t.head {
        Head::Linear { w } if linear => Some(AlignmentPoint::measure(
            step,
            loss,
            &to_f64(t.net.layers.last().expect("L ≥ 1")),
            &to_f64(w),
        )),
        _ => None,
    };
    let initial_weights: Vec<DMatrix<f64>> = trainer.net.layers.iter().map(to_f64).collect();
    let head_initial_weights = trainer.head.weights_f64();
    let mut points = Vec::new();
    points.extend(point(&trainer, 0, None));
    let mut records = vec![trainer.measure(0, None).0];
    for step in 1..=config.steps {
        // Weight decay from the weights before the step: w ← (w − lr·∇L(w)) − lr·λ·w.
        let before: Vec<DMatrix<T>> = if condition.weight_decay > 0.0 {
            trainer
                .net
                .layers
                .iter()
                .chain(trainer.head.parameters())
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        let loss = trainer.step().map_err(|e| match e {
            Error::Numerical { reason, .. } => Error::Numerical {
                context: format!("toy model step {step}"),
                reason,
            },
            other => other,
        })?;
        if !before.is_empty() {
            let params = trainer
                .net
                .layers
                .iter_mut()
                .chain(trainer.head.parameters_mut());
            for (w, w0) in params.zip(&before) {
                w.zip_apply(w0, |w, w0| *w -= decay * w0);
            }
        }
        if step % config.log_every == 0 || step == config.steps {
            records.push(trainer.measure(step, Some(loss)).0);
            points.extend(point(&trainer, step, Some(loss)));
        }
    }
    let weights: Vec<DMatrix<f64>> = trainer.net.layers.iter().map(to_f64).collect();
    let alignment = weights
        .windows(2)
        .map(|w| alignment_matrix(&w[0], &w[1]))
        .collect();
    Ok(TrackedRun {
        run: ToyRun {
            config: config.clone(),
            head: *head,
            head_initial_weights,
            head_weights: trainer.head.weights_f64(),
            records,
            weights,
            alignment,
            initial_weights,
            x_initial: None,
            x_mean: None,
            x_final: None,
        },
        points,
    })
}

/// Trains like [`super::train_with_head`] (the same trajectory, bit for bit) and, for a linear
/// head, measures its alignment with the last encoder layer at every measurement.
pub fn track(config: &ToyConfig, head: &HeadConfig) -> Result<TrackedRun> {
    let condition = Condition {
        z_norm: config.z_norm,
        ..Condition::default()
    };
    track_under(config, head, &condition)
}

/// [`track`] under a [`Condition`]: initial weights scaled, weight decay added, z normalised
/// as the condition says (its `z_norm`, and its `steps` where set, replace the config's; the
/// default condition on an un-normalised config gives [`track`]'s trajectory exactly).
pub fn track_under(
    config: &ToyConfig,
    head: &HeadConfig,
    condition: &Condition,
) -> Result<TrackedRun> {
    let config = &ToyConfig {
        z_norm: condition.z_norm,
        steps: condition.steps.unwrap_or(config.steps),
        ..config.clone()
    };
    config.check()?;
    head.check(config.dim)?;
    condition.check()?;
    match config.precision {
        Precision::F32 => track_in::<f32>(config, head, condition),
        Precision::F64 => track_in::<f64>(config, head, condition),
    }
}

/// Proposition 1 for one mechanism.
#[derive(Debug, Clone, Serialize)]
pub struct Proposition1 {
    /// The collapse mechanism.
    pub mechanism: Mechanism,
    /// The run with the trainable linear projector.
    pub linear: HeadRun,
    /// The run with the trainable diagonal projector (w = 1 at the start).
    pub diagonal: HeadRun,
    /// Off-diagonal mass of A = V_pᵀU_L: (start, end).
    pub off_diagonal_mass: (f64, f64),
    /// Order-free off-diagonal mass: (start, end).
    pub matched_off_diagonal_mass: (f64, f64),
    /// The commutator misalignment of W_L·W_Lᵀ and W_pᵀ·W_p: (start, end).
    pub misalignment: (f64, f64),
    /// The off-diagonal mass expected of unrelated bases, 1 − 1/d.
    pub random_off_diagonal_mass: f64,
    /// Singular values of the trained W_p, descending. [d]
    pub projector_singular_values: Vec<f64>,
}

/// Proposition 2 for one mechanism and one rank k.
#[derive(Debug, Clone, Serialize)]
pub struct Proposition2 {
    /// The collapse mechanism.
    pub mechanism: Mechanism,
    /// Singular values of the trained linear W_p, descending. [d]
    pub projector_singular_values: Vec<f64>,
    /// Its numerical rank at each of [`RANK_THRESHOLDS`].
    pub projector_rank: [usize; 3],
    /// The rank k of the fixed projector of this row.
    pub k: usize,
    /// Which of [`RANK_THRESHOLDS`] give k.
    pub k_from_thresholds: Vec<f64>,
    /// The run with the trainable linear projector (as in [`Proposition1::linear`]).
    pub linear: HeadRun,
    /// The run with the fixed rank-k projector.
    pub fixed: HeadRun,
}

/// The outcome of [`propositions`].
#[derive(Debug, Clone, Serialize)]
pub struct PropositionsReport {
    /// The settings (its `heads` are not used: the heads are the ones each proposition needs).
    pub settings: ProjectorSettings,
    /// Proposition 1 per mechanism.
    pub proposition1: Vec<Proposition1>,
    /// Proposition 2 per mechanism × distinct rank k.
    pub proposition2: Vec<Proposition2>,
    /// The folder written.
    pub out: PathBuf,
}

fn first_last(points: &[AlignmentPoint], f: impl Fn(&AlignmentPoint) -> f64) -> (f64, f64) {
    (
        points.first().map_or(f64::NAN, &f),
        points.last().map_or(f64::NAN, &f),
    )
}

/// Writes the alignment files of a linear run into its folder `dir`.
fn write_alignment(dir: &Path, tracked: &TrackedRun) -> Result<()> {
    let points = &tracked.points;
    write_csv(
        &dir.join("alignment.csv"),
        &[
            "step",
            "loss",
            "off_diagonal_mass",
            "matched_off_diagonal_mass",
            "misalignment",
        ]
        .map(String::from),
        points.iter().map(|p| {
            vec![
                p.step.to_string(),
                p.loss.map(|l| l.to_string()).unwrap_or_default(),
                p.off_diagonal_mass.to_string(),
                p.matched_off_diagonal_mass.to_string(),
                p.misalignment.to_string(),
            ]
        }),
    )?;
    let d = points
        .first()
        .map_or(0, |p| p.projector_singular_values.len());
    write_csv(
        &dir.join("projector_singular_values.csv"),
        &std::iter::once("step".to_string())
            .chain(numbered("sigma", d))
            .collect::<Vec<_>>(),
        points.iter().map(|p| {
            std::iter::once(p.step.to_string())
                .chain(p.projector_singular_values.iter().map(|v| v.to_string()))
                .collect()
        }),
    )?;
    if let Some((a0, a1)) = tracked.alignment_matrices() {
        heatmap(
            &dir.join("alignment_initial.png"),
            "|V_p^T U_L| at the start",
            &a0.abs(),
        )?;
        heatmap(
            &dir.join("alignment_final.png"),
            "|V_p^T U_L| after training",
            &a1.abs(),
        )?;
        heatmap(
            &dir.join("alignment_final_matched.png"),
            "|V_p^T U_L| after training, columns matched to rows",
            &matched_alignment(&a1).0.abs(),
        )?;
    }
    let series = |label: &str, f: fn(&AlignmentPoint) -> f64| Series {
        label: Some(label.into()),
        points: points.iter().map(|p| (p.step as f64, f(p))).collect(),
    };
    line_chart(
        &dir.join("off_diagonal_mass.png"),
        &LineChart {
            title: "Alignment of the linear projector with the last layer".into(),
            x_label: "step".into(),
            y_label: "off-diagonal mass of V_p^T U_L".into(),
            series: vec![
                series("in order of singular value", |p| p.off_diagonal_mass),
                series("matched (order-free)", |p| p.matched_off_diagonal_mass),
                series("misalignment (commutator)", |p| p.misalignment),
            ],
            palette: Palette::Categorical,
        },
    )
}

/// Propositions 1 and 2 for every mechanism of `settings` (see the module doc): trains the
/// linear and the diagonal projector on the same encoder, data and batches (in parallel), then
/// the fixed projectors of the trained linear projector's ranks, and writes the files into
/// `out`.
pub fn propositions(
    settings: &ProjectorSettings,
    overrides: &Overrides,
    out: &Path,
) -> Result<PropositionsReport> {
    if settings.mechanisms.is_empty() {
        return Err(Error::config("mechanisms", "give at least one mechanism"));
    }
    let mut jobs = Vec::new();
    for &m in &settings.mechanisms {
        let config = settings.toy_config(m, overrides);
        config.check()?;
        for kind in [HeadKind::Linear, HeadKind::Diagonal] {
            let head = settings.head_config(kind);
            head.check(config.dim)?;
            jobs.push((m, config.clone(), head));
        }
    }
    create_dir(out)?;
    let runs: Vec<(Mechanism, TrackedRun, f64)> = jobs
        .par_iter()
        .map(|(m, c, h)| {
            let start = std::time::Instant::now();
            let run = track(c, h)?;
            Ok((*m, run, start.elapsed().as_secs_f64()))
        })
        .collect::<Result<_>>()?;
    let mut proposition1 = Vec::new();
    for &m in &settings.mechanisms {
        let of = |kind: HeadKind| {
            runs.iter()
                .find(|(rm, r, _)| *rm == m && r.run.head.kind == kind)
                .expect("one run per mechanism × head")
        };
        let (lin, diag) = (of(HeadKind::Linear), of(HeadKind::Diagonal));
        for (_, t, _) in [lin, diag] {
            let dir = out.join(m.name()).join(t.run.head.kind.name());
            write_head_run(&dir, &t.run)?;
            if !t.points.is_empty() {
                write_alignment(&dir, t)?;
            }
        }
        let points = &lin.1.points;
        proposition1.push(Proposition1 {
            mechanism: m,
            linear: summarise(m, &lin.1.run, lin.2)?,
            diagonal: summarise(m, &diag.1.run, diag.2)?,
            off_diagonal_mass: first_last(points, |p| p.off_diagonal_mass),
            matched_off_diagonal_mass: first_last(points, |p| p.matched_off_diagonal_mass),
            misalignment: first_last(points, |p| p.misalignment),
            random_off_diagonal_mass: 1.0 - 1.0 / lin.1.run.config.dim as f64,
            projector_singular_values: points
                .last()
                .map(|p| p.projector_singular_values.clone())
                .unwrap_or_default(),
        });
    }
    // Proposition 2: fixed projectors of the trained projector's ranks, same encoder and data.
    let mut jobs2 = Vec::new();
    for p in &proposition1 {
        let ranks = RANK_THRESHOLDS.map(|t| numerical_rank(&p.projector_singular_values, t));
        let mut ks: Vec<usize> = ranks.to_vec();
        ks.sort_unstable();
        ks.dedup();
        let config = settings.toy_config(p.mechanism, overrides);
        for k in ks {
            let head = HeadConfig {
                rank: k,
                ..settings.head_config(HeadKind::FixedLowRank)
            };
            head.check(config.dim)?;
            jobs2.push((p.mechanism, ranks, k, config.clone(), head));
        }
    }
    let fixed: Vec<(ToyRun, f64)> = jobs2
        .par_iter()
        .map(|(.., c, h)| {
            let start = std::time::Instant::now();
            let run = train_with_head(c, h)?;
            Ok((run, start.elapsed().as_secs_f64()))
        })
        .collect::<Result<_>>()?;
    let mut proposition2 = Vec::new();
    for ((m, ranks, k, ..), (run, seconds)) in jobs2.iter().zip(&fixed) {
        write_head_run(&out.join(m.name()).join(format!("fixed-rank-{k}")), run)?;
        let p1 = proposition1
            .iter()
            .find(|p| p.mechanism == *m)
            .expect("one per mechanism");
        proposition2.push(Proposition2 {
            mechanism: *m,
            projector_singular_values: p1.projector_singular_values.clone(),
            projector_rank: *ranks,
            k: *k,
            k_from_thresholds: RANK_THRESHOLDS
                .iter()
                .zip(ranks)
                .filter(|(_, r)| *r == k)
                .map(|(t, _)| *t)
                .collect(),
            linear: p1.linear.clone(),
            fixed: summarise(*m, run, *seconds)?,
        });
    }
    write_csv(
        &out.join("projector_rank.csv"),
        &[
            "mechanism",
            "projector_rank_1e-2",
            "projector_rank_1e-4",
            "projector_rank_1e-6",
            "sigma_min_over_sigma_max",
            "k",
            "linear_r_effective_rank_end",
            "fixed_r_effective_rank_end",
            "linear_r_collapsed_1e-2_end",
            "fixed_r_collapsed_1e-2_end",
            "linear_r_collapsed_1e-4_end",
            "fixed_r_collapsed_1e-4_end",
            "linear_final_loss",
            "fixed_final_loss",
            "fixed_trained",
        ]
        .map(String::from),
        proposition2.iter().map(|p| {
            let sv = &p.projector_singular_values;
            vec![
                p.mechanism.name().to_string(),
                p.projector_rank[0].to_string(),
                p.projector_rank[1].to_string(),
                p.projector_rank[2].to_string(),
                (sv.last().copied().unwrap_or(0.0) / sv.first().copied().unwrap_or(1.0))
                    .to_string(),
                p.k.to_string(),
                p.linear.r_effective_rank.1.to_string(),
                p.fixed.r_effective_rank.1.to_string(),
                p.linear.r_collapsed_1e2.1.to_string(),
                p.fixed.r_collapsed_1e2.1.to_string(),
                p.linear.r_collapsed_1e4.1.to_string(),
                p.fixed.r_collapsed_1e4.1.to_string(),
                p.linear.final_loss.to_string(),
                p.fixed.final_loss.to_string(),
                (p.fixed.left_chance && p.fixed.trained).to_string(),
            ]
        }),
    )?;
    write_csv(
        &out.join("summary.csv"),
        &[
            "mechanism",
            "off_diagonal_mass_start",
            "off_diagonal_mass_end",
            "matched_off_diagonal_mass_start",
            "matched_off_diagonal_mass_end",
            "misalignment_start",
            "misalignment_end",
            "random_off_diagonal_mass",
            "linear_final_loss",
            "diagonal_final_loss",
            "linear_r_effective_rank_end",
            "diagonal_r_effective_rank_end",
            "linear_r_collapsed_1e-2_end",
            "diagonal_r_collapsed_1e-2_end",
            "linear_r_collapsed_1e-4_end",
            "diagonal_r_collapsed_1e-4_end",
            "linear_trained",
            "diagonal_trained",
        ]
        .map(String::from),
        proposition1.iter().map(|p| {
            vec![
                p.mechanism.name().to_string(),
                p.off_diagonal_mass.0.to_string(),
                p.off_diagonal_mass.1.to_string(),
                p.matched_off_diagonal_mass.0.to_string(),
                p.matched_off_diagonal_mass.1.to_string(),
                p.misalignment.0.to_string(),
                p.misalignment.1.to_string(),
                p.random_off_diagonal_mass.to_string(),
                p.linear.final_loss.to_string(),
                p.diagonal.final_loss.to_string(),
                p.linear.r_effective_rank.1.to_string(),
                p.diagonal.r_effective_rank.1.to_string(),
                p.linear.r_collapsed_1e2.1.to_string(),
                p.diagonal.r_collapsed_1e2.1.to_string(),
                p.linear.r_collapsed_1e4.1.to_string(),
                p.diagonal.r_collapsed_1e4.1.to_string(),
                (p.linear.left_chance && p.linear.trained).to_string(),
                (p.diagonal.left_chance && p.diagonal.trained).to_string(),
            ]
        }),
    )?;
    let report = PropositionsReport {
        settings: settings.clone(),
        proposition1,
        proposition2,
        out: out.into(),
    };
    write_json(&out.join("summary.json"), &report)?;
    Ok(report)
}

//! Issue 28, item 4: the conditions that separate the toy from real training. Sections 5–6
//! derive their results for small, nearly balanced initial weights and long training with an
//! un-normalised loss and no weight decay; this sweeps the initial scale of the encoder and of
//! the head, the weight decay and L2-normalised against un-normalised z (SimCLR normalises:
//! [`ZNorm::L2`], ẑ = z/‖z‖ before the same InfoNCE and τ), for the heads of Propositions 1–2
//! (none, linear, diagonal), under both collapse mechanisms, and gives every result per
//! condition, flagging runs that never left chance (their r is their initialisation and proves
//! nothing).
//!
//! The training length is a condition too ([`Condition::steps`], crossed with the rest by
//! [`over_lengths`]); without it every run trains for the config's `steps`.
//!
//! Proposition 2 under a condition: wherever the trained linear projector's numerical rank k at
//! 1e-4 of σ₁ is below d, a fixed rank-k projector ([`HeadKind::FixedLowRank`]) is trained under
//! the same condition (its frozen W_p is not scaled; decay applies to the encoder) and added as
//! a row with head `fixed-low-rank`.
//!
//! Writes `out/summary.csv` and `out/summary.json`: one row per mechanism × condition × head.

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::Serialize;

use super::{
    alignment::{numerical_rank, track_under},
    config::ToyConfig,
    experiments::{create_dir, write_csv, write_json, Overrides},
    head::{HeadConfig, HeadKind},
    projector::{summarise, HeadRun, Mechanism, ProjectorSettings},
    toy_loss::ZNorm,
};
use crate::{Error, Result};

/// Conditions of Section 6's derivations that the toy presets do not meet (issue 28, item 4):
/// the scale of the initial weights, weight decay, the normalisation of z and the training
/// length.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Condition {
    /// Factor on the encoder's initial weights (1: the preset's init).
    pub encoder_init_scale: f64,
    /// Factor on the head's initial trainable parameters (1: the preset's init; the diagonal's
    /// w starts at this value).
    pub head_init_scale: f64,
    /// L2 weight decay λ on every trained parameter: w ← w − lr·(∇L + λ·w), the gradient and
    /// the decay both taken at the current w.
    pub weight_decay: f64,
    /// Whether z is L2-normalised before the loss; replaces the config's
    /// [`ToyConfig::z_norm`](super::ToyConfig::z_norm) for the run.
    pub z_norm: ZNorm,
    /// SGD steps of the run; replaces the config's [`ToyConfig::steps`] when set (`None`: the
    /// config's length). [`sweep`] records the length each run trained for here.
    pub steps: Option<usize>,
}

impl Default for Condition {
    fn default() -> Self {
        Condition {
            encoder_init_scale: 1.0,
            head_init_scale: 1.0,
            weight_decay: 0.0,
            z_norm: ZNorm::None,
            steps: None,
        }
    }
}

impl Condition {
    /// Refuses a scale that is not finite and > 0, a decay that is not finite and ≥ 0 or a
    /// length of 0 steps, with the field's name.
    pub fn check(&self) -> Result<()> {
        for (field, v) in [
            ("encoder_init_scale", self.encoder_init_scale),
            ("head_init_scale", self.head_init_scale),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(Error::config(
                    field,
                    format!("must be a finite number > 0, got {v}"),
                ));
            }
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(Error::config(
                "weight_decay",
                format!("must be a finite number ≥ 0, got {}", self.weight_decay),
            ));
        }
        if self.steps == Some(0) {
            return Err(Error::config("steps", "must be at least 1"));
        }
        Ok(())
    }
}

/// The heads of the sweep: no projector, the full linear one, the diagonal one.
pub const SWEEP_HEADS: [HeadKind; 3] = [HeadKind::None, HeadKind::Linear, HeadKind::Diagonal];

/// One mechanism × condition × head.
#[derive(Debug, Clone, Serialize)]
pub struct ConditionRun {
    /// The condition.
    pub condition: Condition,
    /// The run's summary (r's spectrum, losses, chance flags, seconds).
    pub run: HeadRun,
    /// For the linear head: the off-diagonal mass of V_pᵀU_L (start, end).
    pub off_diagonal_mass: Option<(f64, f64)>,
    /// For the linear head: the commutator misalignment (start, end).
    pub misalignment: Option<(f64, f64)>,
    /// For the linear head: the numerical rank of the trained W_p at 1e-4 and 1e-6 of σ₁.
    pub projector_rank: Option<(usize, usize)>,
    /// For a fixed projector: its rank k (the trained linear projector's rank at 1e-4 under the
    /// same condition).
    pub fixed_rank: Option<usize>,
}

/// The outcome of [`sweep`].
#[derive(Debug, Clone, Serialize)]
pub struct SweepReport {
    /// Every run, mechanism-major, then condition, then head; then the fixed rank-k runs.
    pub runs: Vec<ConditionRun>,
    /// The folder written.
    pub out: PathBuf,
}

/// The conditions of the sweep: every (encoder scale = head scale) in `scales`, the encoder at
/// scale 1 with every smaller head scale (the "small head on a normal encoder" case), each with
/// every weight decay in `weight_decays` and every normalisation in `z_norms`.
pub fn grid(scales: &[f64], weight_decays: &[f64], z_norms: &[ZNorm]) -> Vec<Condition> {
    let mut pairs: Vec<(f64, f64)> = scales.iter().map(|&s| (s, s)).collect();
    pairs.extend(scales.iter().filter(|&&s| s != 1.0).map(|&s| (1.0, s)));
    let mut out = Vec::new();
    for &z_norm in z_norms {
        for &weight_decay in weight_decays {
            for &(encoder_init_scale, head_init_scale) in &pairs {
                out.push(Condition {
                    encoder_init_scale,
                    head_init_scale,
                    weight_decay,
                    z_norm,
                    steps: None,
                });
            }
        }
    }
    out
}

/// Every condition of `conditions` at every training length of `steps_list` (length-major), the
/// conditions' own `steps` replaced. Refuses an empty list, a length of 0 and a length given
/// twice, naming `steps_list`.
pub fn over_lengths(conditions: &[Condition], steps_list: &[usize]) -> Result<Vec<Condition>> {
    if steps_list.is_empty() {
        return Err(Error::config("steps_list", "give at least one length"));
    }
    for (i, &n) in steps_list.iter().enumerate() {
        if n == 0 {
            return Err(Error::config(
                "steps_list",
                "every length must be at least 1 step",
            ));
        }
        if steps_list[..i].contains(&n) {
            return Err(Error::config("steps_list", format!("{n} is given twice")));
        }
    }
    Ok(steps_list
        .iter()
        .flat_map(|&n| {
            conditions.iter().map(move |c| Condition {
                steps: Some(n),
                ..*c
            })
        })
        .collect())
}

/// Runs every mechanism of `settings` × condition × [`SWEEP_HEADS`] (in parallel) and writes
/// the summary into `out`. The no-projector head has no head parameters, so it runs once per
/// (encoder scale, weight decay, normalisation, length). Each row's condition records the
/// length it trained for (the config's `steps` where the condition sets none).
pub fn sweep(
    settings: &ProjectorSettings,
    conditions: &[Condition],
    overrides: &Overrides,
    out: &Path,
) -> Result<SweepReport> {
    if settings.mechanisms.is_empty() {
        return Err(Error::config("mechanisms", "give at least one mechanism"));
    }
    if conditions.is_empty() {
        return Err(Error::config("conditions", "give at least one condition"));
    }
    let mut jobs: Vec<(Mechanism, ToyConfig, Condition, HeadConfig)> = Vec::new();
    for &m in &settings.mechanisms {
        let config = settings.toy_config(m, overrides);
        config.check()?;
        for c in conditions {
            c.check()?;
            for kind in SWEEP_HEADS {
                let mut c = Condition {
                    steps: Some(c.steps.unwrap_or(config.steps)),
                    ..*c
                };
                if kind == HeadKind::None {
                    c.head_init_scale = 1.0;
                    if jobs
                        .iter()
                        .any(|(jm, _, jc, jk)| *jm == m && *jc == c && jk.kind == kind)
                    {
                        continue;
                    }
                }
                jobs.push((m, config.clone(), c, settings.head_config(kind)));
            }
        }
    }
    create_dir(out)?;
    let run_job = |(m, config, c, head): &(Mechanism, ToyConfig, Condition, HeadConfig)| {
        let start = std::time::Instant::now();
        let t = track_under(config, head, c)?;
        let run = summarise(*m, &t.run, start.elapsed().as_secs_f64())?;
        let first_last = |f: fn(&super::alignment::AlignmentPoint) -> f64| {
            Some((f(t.points.first()?), f(t.points.last()?)))
        };
        Ok(ConditionRun {
            condition: *c,
            run,
            off_diagonal_mass: first_last(|p| p.off_diagonal_mass),
            misalignment: first_last(|p| p.misalignment),
            projector_rank: t.points.last().map(|p| {
                (
                    numerical_rank(&p.projector_singular_values, 1e-4),
                    numerical_rank(&p.projector_singular_values, 1e-6),
                )
            }),
            fixed_rank: None,
        })
    };
    let mut runs: Vec<ConditionRun> = jobs.par_iter().map(run_job).collect::<Result<_>>()?;
    // Proposition 2: a fixed projector of the trained one's rank at 1e-4, where it is below d.
    let fixed_jobs: Vec<(Mechanism, ToyConfig, Condition, HeadConfig)> = jobs
        .iter()
        .zip(&runs)
        .filter_map(|((m, config, c, head), r)| {
            let (k, _) = r.projector_rank?;
            (k < config.dim).then(|| {
                (
                    *m,
                    config.clone(),
                    *c,
                    HeadConfig {
                        kind: HeadKind::FixedLowRank,
                        rank: k,
                        ..*head
                    },
                )
            })
        })
        .collect();
    let fixed: Vec<ConditionRun> = fixed_jobs.par_iter().map(run_job).collect::<Result<_>>()?;
    for (f, (_, _, _, head)) in fixed.into_iter().zip(&fixed_jobs) {
        runs.push(ConditionRun {
            fixed_rank: Some(head.rank),
            ..f
        });
    }
    let opt = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
    write_csv(
        &out.join("summary.csv"),
        &[
            "mechanism",
            "head",
            "encoder_init_scale",
            "head_init_scale",
            "weight_decay",
            "z_norm",
            "steps",
            "r_effective_rank_start",
            "r_effective_rank_end",
            "r_collapsed_1e-2_end",
            "r_collapsed_1e-4_end",
            "r_collapsed_1e-6_end",
            "initial_loss",
            "final_loss",
            "chance_loss",
            "left_chance",
            "trained",
            "off_diagonal_mass_start",
            "off_diagonal_mass_end",
            "misalignment_start",
            "misalignment_end",
            "projector_rank_1e-4",
            "projector_rank_1e-6",
            "fixed_rank",
            "train_seconds",
        ]
        .map(String::from),
        runs.iter().map(|r| {
            let s = &r.run;
            vec![
                s.mechanism.name().to_string(),
                s.head.name().to_string(),
                r.condition.encoder_init_scale.to_string(),
                r.condition.head_init_scale.to_string(),
                r.condition.weight_decay.to_string(),
                r.condition.z_norm.name().to_string(),
                r.condition.steps.map(|n| n.to_string()).unwrap_or_default(),
                s.r_effective_rank.0.to_string(),
                s.r_effective_rank.1.to_string(),
                s.r_collapsed_1e2.1.to_string(),
                s.r_collapsed_1e4.1.to_string(),
                s.r_collapsed_1e6.1.to_string(),
                s.initial_loss.to_string(),
                s.final_loss.to_string(),
                s.chance_loss.to_string(),
                s.left_chance.to_string(),
                s.trained.to_string(),
                opt(r.off_diagonal_mass.map(|v| v.0)),
                opt(r.off_diagonal_mass.map(|v| v.1)),
                opt(r.misalignment.map(|v| v.0)),
                opt(r.misalignment.map(|v| v.1)),
                r.projector_rank
                    .map(|v| v.0.to_string())
                    .unwrap_or_default(),
                r.projector_rank
                    .map(|v| v.1.to_string())
                    .unwrap_or_default(),
                r.fixed_rank.map(|k| k.to_string()).unwrap_or_default(),
                s.train_seconds.to_string(),
            ]
        }),
    )?;
    let report = SweepReport {
        runs,
        out: out.into(),
    };
    write_json(&out.join("summary.json"), &report)?;
    Ok(report)
}

//! `directclr theory …`: runs the toy experiments and prints their summaries.

use anyhow::Context;
use directclr::theory::{
    alignment::{self, PropositionsReport},
    conditions::{self, SweepReport},
    experiments::{self, AugmentationReport, DepthReport, ImplicitReport, Overrides},
    projector::{self, ProjectorReport, ProjectorSettings},
};

use crate::cli::{TheoryCommand, ToyArgs};

const SECTION4_THRESHOLD: f64 = 1e-2;
const SECTION5_THRESHOLD: f64 = 1e-4;

fn overrides(a: &ToyArgs) -> Overrides {
    Overrides {
        dim: a.dim,
        steps: a.steps,
        batch: a.batch,
        lr: a.lr,
        samples: a.samples,
        eval_samples: a.eval_samples,
        log_every: a.log_every,
        temperature: a.temperature,
        loss: a.loss,
        z_norm: a.z_norm,
        seed: a.seed,
        precision: a.precision,
        x_batches: a.x_batches,
    }
}

fn threshold(a: &ToyArgs, default: f64) -> anyhow::Result<f64> {
    let t = a.collapse_threshold.unwrap_or(default);
    anyhow::ensure!(
        t.is_finite() && t > 0.0 && t < 1.0,
        "invalid `collapse_threshold`: must be in (0, 1), got {t}"
    );
    Ok(t)
}

/// Runs one theory subcommand.
pub fn run(cmd: TheoryCommand) -> anyhow::Result<()> {
    match cmd {
        TheoryCommand::Augmentation(a) => {
            let r = experiments::strong_augmentation(
                &a.noise,
                a.noisy_dims,
                threshold(&a.toy, SECTION4_THRESHOLD)?,
                &overrides(&a.toy),
                &a.out,
            )
            .context("theory augmentation (Section 4)")?;
            print_augmentation(&r);
        }
        TheoryCommand::Implicit(a) => {
            let r = experiments::implicit_regularization(
                a.layers,
                threshold(&a.toy, SECTION5_THRESHOLD)?,
                &overrides(&a.toy),
                &a.out,
            )
            .context("theory implicit (Section 5)")?;
            print_implicit(&r);
        }
        TheoryCommand::Depth(a) => {
            let r = experiments::depth(
                a.max_layers,
                threshold(&a.toy, SECTION5_THRESHOLD)?,
                &overrides(&a.toy),
                &a.out,
            )
            .context("theory depth (Figure 6)")?;
            print_depth(&r);
        }
        TheoryCommand::Projector(a) => {
            anyhow::ensure!(
                a.toy.collapse_threshold.is_none(),
                "invalid `collapse_threshold`: theory projector always counts at {:?}",
                projector::COLLAPSE_THRESHOLDS
            );
            let settings = ProjectorSettings {
                mechanisms: a.mechanisms.clone(),
                heads: a.heads.clone(),
                d0: a.d0,
                rank: a.rank,
                noise_std: a.noise,
                noisy_dims: a.noisy_dims,
                layers: a.layers,
                activation: a.activation,
            };
            let r = projector::projector(&settings, &overrides(&a.toy), &a.out)
                .context("theory projector (Section 6)")?;
            print_projector(&r);
        }
        TheoryCommand::Propositions(a) => {
            anyhow::ensure!(
                a.toy.collapse_threshold.is_none(),
                "invalid `collapse_threshold`: theory propositions always counts at {:?}",
                projector::COLLAPSE_THRESHOLDS
            );
            let settings = ProjectorSettings {
                mechanisms: a.mechanisms.clone(),
                heads: vec![],
                noise_std: a.noise,
                noisy_dims: a.noisy_dims,
                layers: a.layers,
                activation: a.activation,
                ..ProjectorSettings::default()
            };
            let r = alignment::propositions(&settings, &overrides(&a.toy), &a.out)
                .context("theory propositions (Section 6, Propositions 1–2)")?;
            print_propositions(&r);
        }
        TheoryCommand::Conditions(a) => {
            anyhow::ensure!(
                a.toy.collapse_threshold.is_none(),
                "invalid `collapse_threshold`: theory conditions always counts at {:?}",
                projector::COLLAPSE_THRESHOLDS
            );
            anyhow::ensure!(
                a.toy.z_norm.is_none(),
                "invalid `z_norm`: theory conditions sweeps it; give --z-norms"
            );
            let settings = ProjectorSettings {
                mechanisms: a.mechanisms.clone(),
                ..ProjectorSettings::default()
            };
            let mut grid = conditions::grid(&a.scales, &a.weight_decays, &a.z_norms);
            if let Some(list) = &a.steps_list {
                anyhow::ensure!(
                    a.toy.steps.is_none(),
                    "invalid `steps_list`: give the training length with --steps or --steps-list, not both"
                );
                grid = conditions::over_lengths(&grid, list).context("invalid --steps-list")?;
            }
            let r = conditions::sweep(&settings, &grid, &overrides(&a.toy), &a.out)
                .context("theory conditions (issue 28, item 4)")?;
            print_conditions(&r);
        }
        TheoryCommand::All(a) => {
            let o = overrides(&a.toy);
            let start = std::time::Instant::now();
            let r = experiments::strong_augmentation(
                &[0.01, 0.1, 0.5, 1.0, 1.5, 2.0],
                8,
                threshold(&a.toy, SECTION4_THRESHOLD)?,
                &o,
                &a.out.join("augmentation"),
            )
            .context("theory augmentation (Section 4)")?;
            print_augmentation(&r);
            let r = experiments::implicit_regularization(
                2,
                threshold(&a.toy, SECTION5_THRESHOLD)?,
                &o,
                &a.out.join("implicit"),
            )
            .context("theory implicit (Section 5)")?;
            print_implicit(&r);
            let r = experiments::depth(
                4,
                threshold(&a.toy, SECTION5_THRESHOLD)?,
                &o,
                &a.out.join("depth"),
            )
            .context("theory depth (Figure 6)")?;
            print_depth(&r);
            println!(
                "\nall theory experiments done in {:.1} s; figures and numbers in {}",
                start.elapsed().as_secs_f64(),
                a.out.display()
            );
        }
    }
    Ok(())
}

fn print_augmentation(r: &AugmentationReport) {
    println!("Section 4 — strong augmentation (Theorem 1), one linear layer; collapsed = eigenvalue < {:e} × largest", r.collapse_threshold);
    println!("  noise   X<0 (init/mean/final)   decayed dirs (of X<0)   noisy/clean variance (init → final)   collapsed (init → final)");
    for c in &r.runs {
        println!(
            "  {:<6}  {:>2} / {:>2} / {:>2}            {:>2} ({:>2})                  {:>9.3e} → {:<9.3e}                 {:>2} → {:>2}",
            c.noise_std,
            c.x_negative_initial,
            c.x_negative_mean,
            c.x_negative_final,
            c.decayed_directions,
            c.negative_and_decayed,
            c.noisy_to_clean_variance_initial,
            c.noisy_to_clean_variance_final,
            c.collapsed_initial,
            c.collapsed_final
        );
    }
    println!(
        "  fixed X: W(0)·exp(Xt) vs RK4 relative error {:.1e}, vs gradient descent (lr {}) {:.1e}, t = {}",
        r.fixed_x.rk4_relative_error, r.fixed_x.lr, r.fixed_x.gradient_descent_relative_error, r.fixed_x.time
    );
    println!("  → {}", r.out.display());
}

fn print_implicit(r: &ImplicitReport) {
    println!("Section 5 — implicit regularisation, {} linear layers; collapsed = eigenvalue < {:e} × largest", r.layers, r.collapse_threshold);
    println!(
        "  collapsed embedding dimensions: {} at init → {} after training",
        r.collapsed.0, r.collapsed.1
    );
    println!(
        "  alignment A = V2ᵀU1: misalignment {:.3} → {:.3}; row dominance {:.3}; diagonal dominance {:.3} → {:.3}",
        r.misalignment.0, r.misalignment.1, r.alignment_row_dominance, r.alignment_diagonal.0, r.alignment_diagonal.1
    );
    println!(
        "  Theorem 2: W1W1ᵀ − W2ᵀW2 moved by {:.2e} of its norm (conserved by the gradient flow; SGD changes it at second order in lr)",
        r.invariant_relative_drift
    );
    println!("  → {}", r.out.display());
}

fn print_depth(r: &DepthReport) {
    println!(
        "Figure 6 — depth and nonlinearity; collapsed = eigenvalue < {:e} × largest",
        r.collapse_threshold
    );
    for run in &r.runs {
        println!(
            "  L = {} {:<7} collapsed dimensions: {:>2}   final loss {:.4}",
            run.layers,
            format!("{:?}", run.activation),
            run.collapsed,
            run.final_loss.unwrap_or(f64::NAN)
        );
    }
    println!("  → {}", r.out.display());
}

fn print_projector(r: &ProjectorReport) {
    println!("Section 6 — what the head does to the representation r (toy encoder); collapsed = eigenvalue of cov(r) < 1e-2 / 1e-4 / 1e-6 × largest");
    println!("  {}", r.chance_rule);
    println!("  mechanism                 head             L  act     eff. rank r (start → end)  collapsed 1e-2   collapsed 1e-4   collapsed 1e-6   final loss (chance)   left chance / trained");
    for s in &r.runs {
        println!(
            "  {:<24}  {:<15}  {}  {:<6}  {:>6.2} → {:<6.2}            {:>2} → {:>2}          {:>2} → {:>2}          {:>2} → {:>2}          {:>7.4} ({:.3})      {}",
            s.mechanism.name(),
            s.head.name(),
            s.layers,
            format!("{:?}", s.activation).to_lowercase(),
            s.r_effective_rank.0,
            s.r_effective_rank.1,
            s.r_collapsed_1e2.0,
            s.r_collapsed_1e2.1,
            s.r_collapsed_1e4.0,
            s.r_collapsed_1e4.1,
            s.r_collapsed_1e6.0,
            s.r_collapsed_1e6.1,
            s.final_loss,
            s.chance_loss,
            match (s.left_chance, s.trained) {
                (true, true) => "yes / yes",
                (false, _) => "NO: never left chance, r is its initialisation and proves nothing",
                (true, false) => "yes / NO: the loss did not fall, r is its initialisation and proves nothing",
            }
        );
    }
    println!("  → {}", r.out.display());
}

fn print_propositions(r: &PropositionsReport) {
    println!("Section 6, Proposition 1 — alignment of the linear projector W_p with the last encoder layer W_L (A = V_p^T U_L)");
    println!("  off-diagonal mass = 1 - sum_k A_kk^2 / |A|_F^2 (unrelated bases: about 1 - 1/d); matched = order-free (1 - mean_k max_l A_kl^2)");
    println!("  mechanism                 L  off-diag. mass (start → end)  matched (start → end)  misalignment (start → end)  | final loss linear / diagonal  eff. rank r linear / diagonal  collapsed r 1e-2 linear / diagonal");
    for p in &r.proposition1 {
        let flag = |h: &projector::HeadRun| {
            if h.left_chance && h.trained {
                ""
            } else {
                " (never trained: proves nothing)"
            }
        };
        println!(
            "  {:<24}  {}  {:.3} → {:.3} (random {:.3})     {:.3} → {:.3}          {:.2e} → {:.2e}          | {:.4}{} / {:.4}{}     {:.2} / {:.2}                   {} / {}",
            p.mechanism.name(),
            p.linear.layers,
            p.off_diagonal_mass.0,
            p.off_diagonal_mass.1,
            p.random_off_diagonal_mass,
            p.matched_off_diagonal_mass.0,
            p.matched_off_diagonal_mass.1,
            p.misalignment.0,
            p.misalignment.1,
            p.linear.final_loss,
            flag(&p.linear),
            p.diagonal.final_loss,
            flag(&p.diagonal),
            p.linear.r_effective_rank.1,
            p.diagonal.r_effective_rank.1,
            p.linear.r_collapsed_1e2.1,
            p.diagonal.r_collapsed_1e2.1,
        );
    }
    println!("Section 6, Proposition 2 — rank of the trained linear projector and a fixed projector of that rank (same encoder, data, batches)");
    println!("  mechanism                 rank W_p at 1e-2 / 1e-4 / 1e-6 of sigma_1  sigma_min/sigma_1  k   eff. rank r linear / fixed-k  collapsed r 1e-2 linear / fixed-k  collapsed r 1e-4 linear / fixed-k  final loss linear / fixed-k");
    for p in &r.proposition2 {
        let sv = &p.projector_singular_values;
        println!(
            "  {:<24}  {:>2} / {:>2} / {:>2}                             {:.2e}          {:>2}  {:.2} / {:.2}                 {:>2} / {:>2}                            {:>2} / {:>2}                            {:.4} / {:.4}{}",
            p.mechanism.name(),
            p.projector_rank[0],
            p.projector_rank[1],
            p.projector_rank[2],
            sv.last().copied().unwrap_or(0.0) / sv.first().copied().unwrap_or(1.0),
            p.k,
            p.linear.r_effective_rank.1,
            p.fixed.r_effective_rank.1,
            p.linear.r_collapsed_1e2.1,
            p.fixed.r_collapsed_1e2.1,
            p.linear.r_collapsed_1e4.1,
            p.fixed.r_collapsed_1e4.1,
            p.linear.final_loss,
            p.fixed.final_loss,
            if p.fixed.left_chance && p.fixed.trained { "" } else { " (fixed-k never trained: proves nothing)" },
        );
    }
    println!("  → {}", r.out.display());
}

fn print_conditions(r: &SweepReport) {
    println!("Conditions of Section 6 — initial scale of encoder / head, weight decay, normalisation of z, SGD steps; r = encoder output; collapsed = eigenvalue of cov(r) < 1e-2 / 1e-4 × largest");
    println!("  mechanism                 head        enc.  head  wd      z     steps   eff. rank r (start → end)  collapsed 1e-2 / 1e-4  final loss (first)     off-diag. mass end  misalign. end  rank W_p 1e-4/1e-6  seconds  left chance / trained");
    for c in &r.runs {
        let s = &c.run;
        println!(
            "  {:<24}  {:<10}  {:<4}  {:<4}  {:<6}  {:<4}  {:<6}  {:>6.2} → {:<6.2}            {:>2} / {:>2}                {:>8.4} ({:>8.4})   {:>8}            {:>8}       {:>7}             {:>5.1}    {}",
            s.mechanism.name(),
            s.head.name(),
            c.condition.encoder_init_scale,
            c.condition.head_init_scale,
            c.condition.weight_decay,
            c.condition.z_norm.name(),
            c.condition.steps.map(|n| n.to_string()).unwrap_or_else(|| "-".into()),
            s.r_effective_rank.0,
            s.r_effective_rank.1,
            s.r_collapsed_1e2.1,
            s.r_collapsed_1e4.1,
            s.final_loss,
            s.initial_loss,
            c.off_diagonal_mass.map(|v| format!("{:.3}", v.1)).unwrap_or_else(|| "-".into()),
            c.misalignment.map(|v| format!("{:.3}", v.1)).unwrap_or_else(|| "-".into()),
            c.projector_rank
                .map(|v| format!("{}/{}", v.0, v.1))
                .or_else(|| c.fixed_rank.map(|k| format!("k = {k}")))
                .unwrap_or_else(|| "-".into()),
            s.train_seconds,
            match (s.left_chance, s.trained) {
                (true, true) => "yes / yes",
                (false, _) => "NO: never left chance, r is its initialisation and proves nothing",
                (true, false) => "yes / NO: the loss did not fall, r is its initialisation and proves nothing",
            }
        );
    }
    println!("  → {}", r.out.display());
}

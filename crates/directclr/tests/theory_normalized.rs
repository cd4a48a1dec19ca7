//! The L2-normalised InfoNCE of the theory lab (issue 28, item 4: SimCLR's ẑ = z/‖z‖ against
//! the paper's un-normalised toy): its closed-form gradient against central differences, alone
//! and back-propagated through an encoder and a linear head; its closed forms (invariance to the
//! scale of each row, a gradient orthogonal to each row, the loss of orthonormal identical
//! views); bad input refused; and the conditions sweep running it as a condition.

use directclr::theory::{
    alignment::{track, track_under, Condition},
    conditions::{grid, sweep},
    experiments::Overrides,
    head::{head_grads_normed, Head, HeadConfig, HeadKind},
    projector::{Mechanism, ProjectorSettings},
    toy_loss::normalize_rows,
    toy_net::{random_orthogonal, Activation, Init, ToyNet},
    ToyConfig, ToyLoss, ZNorm,
};
use directclr::Error;
use nalgebra::DMatrix;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

const TAU: f64 = 0.1;

fn gaussian(rows: usize, cols: usize, rng: &mut ChaCha8Rng) -> DMatrix<f64> {
    DMatrix::from_fn(rows, cols, |_, _| {
        <f64 as directclr::theory::real::Real>::standard_normal(rng)
    })
}

/// The normalised loss at (z1, z2).
fn loss_at(loss: ToyLoss, z1: &DMatrix<f64>, z2: &DMatrix<f64>) -> f64 {
    let (a, _) = normalize_rows(z1).unwrap();
    let (b, _) = normalize_rows(z2).unwrap();
    loss.evaluate(&a, &b, TAU).loss
}

/// The closed-form gradient of the normalised loss with respect to (z1, z2).
/// # Shapes
/// z1, z2: [N, d] → ([N, d], [N, d])
fn closed_form(
    loss: ToyLoss,
    z1: &DMatrix<f64>,
    z2: &DMatrix<f64>,
) -> (DMatrix<f64>, DMatrix<f64>) {
    let (a, na) = normalize_rows(z1).unwrap();
    let (b, nb) = normalize_rows(z2).unwrap();
    let (ga, gb) = loss.evaluate(&a, &b, TAU).apply(&a, &b);
    (
        ZNorm::L2.backward(ga, &a, &na),
        ZNorm::L2.backward(gb, &b, &nb),
    )
}

/// The central difference [f(θ+h) − f(θ−h)]/(2h) differs from f'(θ) by at most h²·|f'''|/6
/// (Taylor to third order) plus δ/h from the rounding δ ≤ c·ε·max(|f|, 1) of each evaluation.
/// |f'''| is estimated on the spot by the third difference with step H = 1e-2 and doubled (a
/// value near θ, not a maximum over [θ − h, θ + h]); c = 1000 covers the few hundred roundings
/// of one evaluation at these sizes (N ≤ 8, d ≤ 6). The same bound as tests/theory_projector.rs.
const H_FD: f64 = 1e-5;
const H_THIRD: f64 = 1e-2;
const ROUNDING_OPS: f64 = 1e3;

fn bound(f0: f64, third: f64) -> f64 {
    H_FD * H_FD * 2.0 * third.abs() / 6.0 + ROUNDING_OPS * f64::EPSILON * f0.abs().max(1.0) / H_FD
}

/// Checks `analytic` against central differences of `f` (entry k shifted by s) for every
/// entry; returns the largest error/bound. Also asserts that the largest bound is below 1 % of
/// the largest entry of `analytic`, so that a gradient wrong by a few percent would fail.
fn check(analytic: &[f64], f0: f64, f: impl Fn(usize, f64) -> f64, what: &str) -> f64 {
    let mut worst: f64 = 0.0;
    let mut loosest: f64 = 0.0;
    for (k, &a) in analytic.iter().enumerate() {
        let fd = (f(k, H_FD) - f(k, -H_FD)) / (2.0 * H_FD);
        let third = (f(k, 2.0 * H_THIRD) - 2.0 * f(k, H_THIRD) + 2.0 * f(k, -H_THIRD)
            - f(k, -2.0 * H_THIRD))
            / (2.0 * H_THIRD.powi(3));
        let (err, b) = ((fd - a).abs(), bound(f0, third));
        assert!(
            err <= b,
            "{what} entry {k}: closed form {a} vs central difference {fd}, error {err:.3e} > bound {b:.3e}"
        );
        worst = worst.max(err / b);
        loosest = loosest.max(b);
    }
    let largest = analytic.iter().fold(0.0_f64, |m, v| m.max(v.abs()));
    assert!(
        loosest < 0.01 * largest,
        "{what}: bound {loosest:.3e} is not below 1 % of the largest entry {largest:.3e}"
    );
    worst
}

#[test]
fn normalised_loss_gradient_matches_central_differences() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let (n, d) = (7, 5);
    for loss in [ToyLoss::Dot, ToyLoss::Distance] {
        // Rows of different lengths (the normalisation must undo them) and correlated views.
        let z1 = gaussian(n, d, &mut rng) * 2.0;
        let z2 = &z1 + gaussian(n, d, &mut rng) * 0.5;
        let (g1, g2) = closed_form(loss, &z1, &z2);
        let f0 = loss_at(loss, &z1, &z2);
        for (view, g) in [(1, &g1), (2, &g2)] {
            let f = |k: usize, s: f64| {
                let (mut a, mut b) = (z1.clone(), z2.clone());
                if view == 1 {
                    a[k] += s;
                } else {
                    b[k] += s;
                }
                loss_at(loss, &a, &b)
            };
            let worst = check(g.as_slice(), f0, f, &format!("{loss:?} view {view}"));
            println!("{loss:?} view {view}: worst error / bound {worst:.3}");
        }
        // The gradient reaches view 2 (its rows are the positives): not trivially zero.
        assert!(g2.norm() > 1e-3, "{loss:?}: |g2| = {:.3e}", g2.norm());
    }
}

#[test]
fn a_gradient_without_the_projection_would_fail_the_bound() {
    // Dropping the projection (I − ẑẑᵀ) leaves g/‖z‖: its error against the true gradient is the
    // radial part ẑ(ẑ·g)/‖z‖, which exceeds the bound by far; so the check above can fail.
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    let z1 = gaussian(7, 5, &mut rng) * 2.0;
    let z2 = &z1 + gaussian(7, 5, &mut rng) * 0.5;
    let (a, na) = normalize_rows(&z1).unwrap();
    let (b, _) = normalize_rows(&z2).unwrap();
    let (ga, _) = ToyLoss::Dot.evaluate(&a, &b, TAU).apply(&a, &b);
    // The largest entry of the radial part ẑ_i(ẑ_i·g_i)/‖z_i‖ over all rows.
    let mut radial: f64 = 0.0;
    for (i, &norm) in na.iter().enumerate() {
        let along = ga.row(i).dot(&a.row(i)).abs() / norm;
        radial = radial.max(a.row(i).abs().max() * along);
    }
    let loose = bound(loss_at(ToyLoss::Dot, &z1, &z2), 1e4);
    assert!(
        radial > 100.0 * loose,
        "radial part {radial:.3e} vs bound {loose:.3e}"
    );
}

#[test]
fn normalised_gradient_through_encoder_and_linear_head_matches_central_differences() {
    let (b, d) = (8, 6);
    let mut rng = ChaCha8Rng::seed_from_u64(13);
    let net = ToyNet::<f64>::new(d, 2, Activation::Relu, Init::Uniform, &mut rng);
    let head_config = HeadConfig {
        kind: HeadKind::Linear,
        d0: 3,
        rank: 2,
    };
    let head = Head::new(&head_config, d, Init::Uniform, &mut rng);
    let x = gaussian(b, d, &mut rng);
    let x1 = &x + gaussian(b, d, &mut rng) * 0.3;
    let x2 = &x + gaussian(b, d, &mut rng) * 0.3;
    for loss in [ToyLoss::Dot, ToyLoss::Distance] {
        let value = |net: &ToyNet<f64>, head: &Head<f64>| {
            head_grads_normed(net, head, loss, ZNorm::L2, TAU, &x1, &x2, None)
                .unwrap()
                .loss
        };
        let g = head_grads_normed(&net, &head, loss, ZNorm::L2, TAU, &x1, &x2, None).unwrap();
        // The loss is that of the normalised embeddings (the views pass the encoder stacked
        // there, one by one here: rounding apart).
        let direct = loss_at(loss, &head_z(&net, &head, &x1), &head_z(&net, &head, &x2));
        assert!((g.loss - direct).abs() < 1e-12 * direct.abs().max(1.0));
        for p in 0..3 {
            let analytic = if p < 2 { &g.encoder[p] } else { &g.head[0] };
            let f = |k: usize, s: f64| {
                let (mut n, mut h) = (net.clone(), head.clone());
                if p < 2 {
                    n.layers[p][k] += s;
                } else {
                    h.parameters_mut()[0][k] += s;
                }
                value(&n, &h)
            };
            let worst = check(
                analytic.as_slice(),
                g.loss,
                f,
                &format!("{loss:?} parameter {p}"),
            );
            println!("{loss:?} parameter {p}: worst error / bound {worst:.3}");
        }
    }
}

/// z = head(net(x)) for a batch. [B, d] → [B, d]
fn head_z(net: &ToyNet<f64>, head: &Head<f64>, x: &DMatrix<f64>) -> DMatrix<f64> {
    head.forward(&net.apply(x)).z
}

#[test]
fn normalised_loss_closed_forms() {
    let mut rng = ChaCha8Rng::seed_from_u64(14);
    let (n, d) = (6, 6);
    let z1 = gaussian(n, d, &mut rng);
    let z2 = &z1 + gaussian(n, d, &mut rng) * 0.3;
    for loss in [ToyLoss::Dot, ToyLoss::Distance] {
        // Each row scaled by its own positive factor: the same ẑ, so the same loss up to the
        // rounding of the normalisation (a few ε of the logits |ẑ·ẑ'|/τ ≤ 10 each).
        let scaled = DMatrix::from_fn(n, d, |i, j| z1[(i, j)] * (0.1 + i as f64));
        let (a, b) = (loss_at(loss, &z1, &z2), loss_at(loss, &scaled, &z2));
        assert!(
            (a - b).abs() <= 1e-13 * a.abs().max(1.0),
            "{loss:?}: {a} vs {b}"
        );
        // The gradient of a scale-free function is orthogonal to each row: z_i·g_i = 0, up to
        // rounding of the projection (relative to |z_i||g_i|).
        let (g1, g2) = closed_form(loss, &z1, &z2);
        for (z, g) in [(&z1, &g1), (&z2, &g2)] {
            for i in 0..n {
                let dot = z.row(i).dot(&g.row(i)).abs();
                assert!(
                    dot <= 1e-13 * z.row(i).norm() * g.row(i).norm(),
                    "{loss:?} row {i}: z·g = {dot:.3e}"
                );
            }
        }
    }
    // Identical views with orthonormal rows at different lengths: the dot logits are 1/τ for the
    // positive and 0 for the N − 1 negatives, so L = −1/τ + ln(e^(1/τ) + N − 1), exactly up to
    // rounding; un-normalised, the short rows (lengths 0.1..0.6: positive logits 0.1..3.6)
    // give 0.91 instead (the mean of ln(e^x + 5) − x over those logits).
    let q = random_orthogonal(d, &mut rng);
    let z = DMatrix::from_fn(n, d, |i, j| q[(j, i)] * 0.1 * (1.0 + i as f64));
    let expected = -1.0 / TAU + ((1.0 / TAU).exp() + (n - 1) as f64).ln();
    let got = loss_at(ToyLoss::Dot, &z, &z);
    assert!((got - expected).abs() < 1e-12, "{got} vs {expected}");
    let raw = ToyLoss::Dot.evaluate(&z, &z, TAU).loss;
    assert!((raw - 0.91).abs() < 0.01, "un-normalised {raw}");
}

#[test]
fn a_row_without_direction_and_x_with_normalised_z_are_refused() {
    let mut z = DMatrix::from_element(3, 4, 1.0);
    z.row_mut(1).fill(0.0);
    match normalize_rows(&z) {
        Err(Error::Numerical { reason, .. }) => assert!(reason.contains("row 1"), "{reason}"),
        other => panic!("expected Numerical, got {:?}", other.map(|_| ())),
    }
    let config = ToyConfig {
        z_norm: ZNorm::L2,
        ..ToyConfig::strong_augmentation(1.5)
    };
    match config.check() {
        Err(Error::InvalidConfig { field, .. }) => assert_eq!(field, "x_batches"),
        other => panic!("expected InvalidConfig(x_batches), got {other:?}"),
    }
}

fn tiny(steps: usize) -> Overrides {
    Overrides {
        steps: Some(steps),
        samples: Some(512),
        eval_samples: Some(200),
        log_every: Some(10),
        ..Default::default()
    }
}

#[test]
fn the_conditions_sweep_runs_normalised_z_as_a_condition() {
    let settings = ProjectorSettings {
        mechanisms: vec![Mechanism::ImplicitRegularization],
        ..Default::default()
    };
    let config = settings.toy_config(Mechanism::ImplicitRegularization, &tiny(30));
    let head = settings.head_config(HeadKind::Linear);
    // The condition's normalisation is the run's: L2 by condition = L2 by config, bit for bit,
    // and a different trajectory from the un-normalised one.
    let l2 = Condition {
        z_norm: ZNorm::L2,
        ..Condition::default()
    };
    let by_condition = track_under(&config, &head, &l2).unwrap();
    let by_config = track(
        &ToyConfig {
            z_norm: ZNorm::L2,
            ..config.clone()
        },
        &head,
    )
    .unwrap();
    assert_eq!(by_condition.run.weights, by_config.run.weights);
    assert_eq!(by_condition.run.config.z_norm, ZNorm::L2);
    let plain = track(&config, &head).unwrap();
    assert_ne!(plain.run.weights, by_condition.run.weights);
    // The grid crosses every normalisation with the other conditions.
    assert_eq!(
        grid(&[1.0, 0.3], &[0.0, 0.1], &[ZNorm::None, ZNorm::L2]).len(),
        12
    );
    let dir = tempfile::tempdir().unwrap();
    let r = sweep(
        &settings,
        &grid(&[1.0], &[0.0], &[ZNorm::None, ZNorm::L2]),
        &tiny(20),
        dir.path(),
    )
    .unwrap();
    for z_norm in [ZNorm::None, ZNorm::L2] {
        let heads: Vec<HeadKind> = r
            .runs
            .iter()
            .filter(|c| c.condition.z_norm == z_norm && c.fixed_rank.is_none())
            .map(|c| c.run.head)
            .collect();
        assert_eq!(
            heads,
            vec![HeadKind::None, HeadKind::Linear, HeadKind::Diagonal],
            "{z_norm:?}"
        );
    }
    let csv = std::fs::read_to_string(dir.path().join("summary.csv")).unwrap();
    assert!(csv.lines().next().unwrap().contains(",z_norm,"));
    assert!(csv.lines().any(|l| l.contains(",l2,")));
}

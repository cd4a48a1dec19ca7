//! Section 6 in the theory lab: the heads' hand-written gradients against finite differences,
//! the no-projector head against the existing toy experiments, DirectCLR's zero gradient
//! outside z = r[:d0], the fixed projector frozen, and bad settings refused by name.

use directclr::theory::{
    experiments::{self, Overrides},
    head::{head_grads, Head, HeadConfig, HeadKind},
    projector::{projector, Mechanism, ProjectorSettings},
    toy_net::{Activation, Init, ToyNet},
    train_with_head, Precision, ToyConfig, ToyLoss, ZNorm,
};
use directclr::Error;
use nalgebra::DMatrix;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

const TAU: f64 = 0.1;

/// Small f64 problem: an encoder of `layers` [d, d] layers and two noisy views of B points.
fn problem(
    d: usize,
    b: usize,
    layers: usize,
    activation: Activation,
    seed: u64,
) -> (ToyNet<f64>, DMatrix<f64>, DMatrix<f64>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let net = ToyNet::new(d, layers, activation, Init::Uniform, &mut rng);
    let normal = |rng: &mut ChaCha8Rng| {
        DMatrix::from_fn(b, d, |_, _| {
            <f64 as directclr::theory::real::Real>::standard_normal(rng)
        })
    };
    let x = normal(&mut rng);
    let x1 = &x + normal(&mut rng) * 0.3;
    let x2 = &x + normal(&mut rng) * 0.3;
    (net, x1, x2)
}

fn head_of(kind: HeadKind, d: usize, seed: u64) -> Head<f64> {
    let cfg = HeadConfig {
        kind,
        d0: 3,
        rank: 2,
    };
    cfg.check(d).unwrap();
    let mut head = Head::new(&cfg, d, Init::Uniform, &mut ChaCha8Rng::seed_from_u64(seed));
    // Move the diagonal off its all-ones start so its gradient is checked at a generic point.
    if let Head::Diagonal { w } = &mut head {
        for (j, v) in w.iter_mut().enumerate() {
            *v = 0.5 + 0.2 * j as f64;
        }
    }
    head
}

/// The central difference [f(θ+h) − f(θ−h)]/(2h) differs from f'(θ) by at most
/// h²·max|f'''|/6 (Taylor to third order) plus 2·δ/(2h) = δ/h from the rounding δ of each
/// evaluation of f; with δ ≤ c·ε·max(|f|, 1): |FD − f'| ≤ h²|f'''|/6 + c·ε·max(|f|, 1)/h.
/// |f'''| is estimated on the spot by the third difference with step H = 1e-2 (doubled, since
/// it is a value near θ and not a maximum over [θ − h, θ + h]); c = 1000 covers the few hundred
/// roundings of one loss evaluation at these sizes.
const H_FD: f64 = 1e-5;
const H_THIRD: f64 = 1e-2;
const ROUNDING_OPS: f64 = 1e3;

fn bound(f0: f64, third: f64) -> f64 {
    H_FD * H_FD * 2.0 * third.abs() / 6.0 + ROUNDING_OPS * f64::EPSILON * f0.abs().max(1.0) / H_FD
}

/// Checks every entry of every encoder and head parameter; returns the largest error/bound.
fn check_gradients(
    net: &ToyNet<f64>,
    head: &Head<f64>,
    loss: ToyLoss,
    x1: &DMatrix<f64>,
    x2: &DMatrix<f64>,
) -> f64 {
    let g = head_grads(net, head, loss, TAU, x1, x2, None).unwrap();
    let f = |net: &ToyNet<f64>, head: &Head<f64>| {
        head_grads(net, head, loss, TAU, x1, x2, None).unwrap().loss
    };
    let mut worst: f64 = 0.0;
    let mut checked = 0;
    // Parameter p of (encoder layers, then head parameters), entry (i, j), shifted by s.
    let n_enc = net.layers.len();
    let n_head = head.parameters().len();
    let shifted = |p: usize, i: usize, j: usize, s: f64| {
        let (mut n, mut h) = (net.clone(), head.clone());
        if p < n_enc {
            n.layers[p][(i, j)] += s;
        } else {
            h.parameters_mut()[p - n_enc][(i, j)] += s;
        }
        f(&n, &h)
    };
    for p in 0..n_enc + n_head {
        let analytic = if p < n_enc {
            &g.encoder[p]
        } else {
            &g.head[p - n_enc]
        };
        for i in 0..analytic.nrows() {
            for j in 0..analytic.ncols() {
                let fd = (shifted(p, i, j, H_FD) - shifted(p, i, j, -H_FD)) / (2.0 * H_FD);
                let third = (shifted(p, i, j, 2.0 * H_THIRD) - 2.0 * shifted(p, i, j, H_THIRD)
                    + 2.0 * shifted(p, i, j, -H_THIRD)
                    - shifted(p, i, j, -2.0 * H_THIRD))
                    / (2.0 * H_THIRD.powi(3));
                let err = (fd - analytic[(i, j)]).abs();
                let b = bound(g.loss, third);
                assert!(
                    err <= b,
                    "{:?} parameter {p} entry ({i}, {j}): analytic {} vs central difference {fd}, \
                     error {err:.3e} > bound {b:.3e}",
                    head.kind(),
                    analytic[(i, j)]
                );
                worst = worst.max(err / b);
                checked += 1;
            }
        }
    }
    assert!(checked >= n_enc * 36, "every entry was checked");
    worst
}

#[test]
fn every_head_gradient_matches_central_differences() {
    let d = 6;
    for (activation, loss) in [
        (Activation::Linear, ToyLoss::Dot),
        (Activation::Relu, ToyLoss::Distance),
    ] {
        let (net, x1, x2) = problem(d, 8, 2, activation, 1);
        for kind in HeadKind::ALL {
            let head = head_of(kind, d, 2);
            let worst = check_gradients(&net, &head, loss, &x1, &x2);
            println!("{activation:?} {loss:?} {kind:?}: worst error / bound {worst:.3}");
        }
    }
}

#[test]
fn a_wrong_gradient_would_fail_the_bound() {
    // The bound is tight enough to see a 1 % error in the linear projector's gradient: the
    // gradient's entries exceed 100 × the bound.
    let d = 6;
    let (net, x1, x2) = problem(d, 8, 2, Activation::Linear, 1);
    let head = head_of(HeadKind::Linear, d, 2);
    let g = head_grads(&net, &head, ToyLoss::Dot, TAU, &x1, &x2, None).unwrap();
    let largest = g.head[0].abs().max();
    let loose = bound(g.loss, 1e4);
    assert!(
        0.01 * largest > 10.0 * loose,
        "1 % of the largest entry {largest:.3e} vs bound {loose:.3e}"
    );
}

#[test]
fn no_head_through_back_propagation_equals_the_product_form() {
    // The linear toy trains through P = W_L···W_1 (Lemma 1); the head path back-propagates.
    // Same gradient up to f64 rounding.
    let (net, x1, x2) = problem(6, 8, 3, Activation::Linear, 3);
    let g = head_grads(&net, &Head::None, ToyLoss::Dot, TAU, &x1, &x2, None).unwrap();
    let p = net.product_t();
    let grad = ToyLoss::Dot.evaluate(&(&x1 * p.transpose()), &(&x2 * p.transpose()), TAU);
    let m = grad.weight_coefficients(&x1, &x2);
    let product = net.grads_from_product(&(&p * m));
    for (a, b) in g.encoder.iter().zip(&product) {
        let rel = (a - b).norm() / b.norm();
        assert!(rel < 1e-12, "relative difference {rel:.3e}");
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

fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn no_projector_head_equals_the_existing_toy_experiments() {
    let dir = tempfile::tempdir().unwrap();
    let o = tiny(60);
    // Section 5: `theory implicit` (linear, L = 2) and `theory depth` (L = 2 with ReLU).
    experiments::implicit_regularization(2, 1e-4, &o, &dir.path().join("implicit")).unwrap();
    experiments::depth(2, 1e-4, &o, &dir.path().join("depth")).unwrap();
    for activation in [Activation::Linear, Activation::Relu] {
        let settings = ProjectorSettings {
            mechanisms: vec![Mechanism::ImplicitRegularization],
            heads: vec![HeadKind::None, HeadKind::Linear],
            activation: Some(activation),
            ..Default::default()
        };
        let out = dir.path().join(format!("projector-{activation:?}"));
        projector(&settings, &o, &out).unwrap();
        let ours = out.join("implicit-regularization/none");
        let theirs = match activation {
            Activation::Linear => dir.path().join("implicit"),
            Activation::Relu => dir.path().join("depth/L2-relu"),
        };
        for file in [
            "spectrum.csv",
            "singular_values_layer1.csv",
            "singular_values_layer2.csv",
        ] {
            assert_eq!(
                read(&ours.join(file)),
                read(&theirs.join(file)),
                "{activation:?} {file}"
            );
        }
        // The linear head changes the trajectory (so the comparison can fail).
        let linear = out.join("implicit-regularization/linear");
        assert_ne!(
            read(&linear.join("singular_values_layer1.csv")),
            read(&ours.join("singular_values_layer1.csv"))
        );
    }
    // Section 4: `theory augmentation` estimates X from the measurement stream, so its spectra
    // come from other fresh samples; the weights' trajectory is the same.
    experiments::strong_augmentation(&[1.5], 8, 1e-2, &o, &dir.path().join("aug")).unwrap();
    let settings = ProjectorSettings {
        mechanisms: vec![Mechanism::StrongAugmentation],
        heads: vec![HeadKind::None],
        ..Default::default()
    };
    projector(&settings, &o, &dir.path().join("projector-aug")).unwrap();
    assert_eq!(
        read(&dir.path().join("aug/noise-1.5/singular_values_layer1.csv")),
        read(
            &dir.path()
                .join("projector-aug/strong-augmentation/none/singular_values_layer1.csv")
        )
    );
}

#[test]
fn direct_clr_gradient_is_zero_outside_the_first_d0_coordinates() {
    let d = 6;
    let (net, x1, x2) = problem(d, 8, 2, Activation::Relu, 4);
    let head = head_of(HeadKind::DirectClr, d, 5);
    let g = head_grads(&net, &head, ToyLoss::Dot, TAU, &x1, &x2, None).unwrap();
    let dr = &g.representation;
    assert!(dr.columns(0, 3).abs().max() > 0.0);
    assert!(dr.columns(3, d - 3).iter().all(|&v| v == 0.0));
    // Hence the last layer's rows d0.. get no gradient; the first layer's do (shared weights).
    assert!(g.encoder[1].rows(3, d - 3).iter().all(|&v| v == 0.0));
    assert!(g.encoder[0].abs().max() > 0.0);

    // Over a whole run: W_L[d0:] stays at its initial value, bit for bit.
    let mut c = ToyConfig::implicit_regularization(2);
    c.steps = 50;
    c.samples = 256;
    c.eval_samples = 100;
    let head = HeadConfig {
        kind: HeadKind::DirectClr,
        d0: 5,
        rank: 1,
    };
    let run = train_with_head(&c, &head).unwrap();
    let (w0, wt) = (&run.initial_weights[1], &run.weights[1]);
    assert_eq!(w0.rows(5, 11), wt.rows(5, 11));
    assert_ne!(w0.rows(0, 5), wt.rows(0, 5));
    assert_eq!(run.last().head_spectrum.as_ref().unwrap().len(), 5);
}

#[test]
fn fixed_low_rank_projector_is_not_updated() {
    let mut c = ToyConfig::strong_augmentation(1.5);
    c.steps = 50;
    c.samples = 256;
    c.eval_samples = 100;
    c.x_batches = 0;
    c.precision = Precision::F64;
    let head = HeadConfig {
        kind: HeadKind::FixedLowRank,
        d0: 1,
        rank: 4,
    };
    let run = train_with_head(&c, &head).unwrap();
    assert_eq!(run.head_weights, run.head_initial_weights);
    assert_ne!(run.weights, run.initial_weights, "the encoder trained");
    // Rank 4: singular values 1 ×4, then 0.
    let s = run.head_weights[0]
        .clone()
        .svd(false, false)
        .singular_values;
    let mut s: Vec<f64> = s.iter().copied().collect();
    s.sort_by(|a, b| b.total_cmp(a));
    assert!(s[..4].iter().all(|v| (v - 1.0).abs() < 1e-12), "{s:?}");
    assert!(s[4..].iter().all(|v| v.abs() < 1e-12), "{s:?}");
    // The trainable heads do move.
    for kind in [HeadKind::Linear, HeadKind::Nonlinear, HeadKind::Diagonal] {
        let run = train_with_head(&c, &HeadConfig { kind, ..head }).unwrap();
        assert_ne!(run.head_weights, run.head_initial_weights, "{kind:?}");
    }
}

#[test]
fn bad_head_settings_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    for (settings, field) in [
        (
            ProjectorSettings {
                d0: 17,
                ..Default::default()
            },
            "d0",
        ),
        (
            ProjectorSettings {
                rank: 0,
                ..Default::default()
            },
            "rank",
        ),
        (
            ProjectorSettings {
                heads: vec![],
                ..Default::default()
            },
            "heads",
        ),
        (
            ProjectorSettings {
                noisy_dims: 20,
                ..Default::default()
            },
            "noisy_dims",
        ),
    ] {
        match projector(&settings, &tiny(10), dir.path()) {
            Err(Error::InvalidConfig { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{field}: expected a config error, got {other:?}"),
        }
    }
    // Nothing was trained or written for a refused setting.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn the_report_covers_every_mechanism_and_head() {
    let dir = tempfile::tempdir().unwrap();
    let r = projector(&ProjectorSettings::default(), &tiny(30), dir.path()).unwrap();
    assert_eq!(r.runs.len(), 12);
    for run in &r.runs {
        let expected_z = if run.head == HeadKind::DirectClr {
            8
        } else {
            16
        };
        assert_eq!(run.z_dim, expected_z, "{:?}", run.head);
        assert!(run.r_effective_rank.1 >= 1.0 && run.r_effective_rank.1 <= 16.0);
        assert_eq!(run.chance_loss, 128f64.ln());
        assert_eq!(run.left_chance, run.final_loss < 0.9 * run.chance_loss);
        assert_eq!(run.trained, run.final_loss < 0.9 * run.initial_loss);
        let folder = dir.path().join(run.mechanism.name()).join(run.head.name());
        for f in ["r_metrics.csv", "spectrum.csv", "r_spectrum_evolution.png"] {
            assert!(folder.join(f).is_file(), "{}", folder.join(f).display());
        }
        // r_metrics.csv has the step-0 row, one per 10 steps: 1 + 3 rows.
        assert_eq!(read(&folder.join("r_metrics.csv")).lines().count(), 1 + 4);
    }
    for f in ["summary.json", "summary.csv"] {
        assert!(dir.path().join(f).is_file());
    }
}

#[test]
fn a_run_that_did_not_train_is_flagged() {
    // lr 1e-9: the weights hardly move. Under implicit regularisation the untrained encoder's
    // loss (≈ 3.3, views 0.001 apart, z not normalised) is already below 0.9 · ln 128 ≈ 4.37, so
    // only `trained` tells that this r is its initialisation; at the normal lr both flags hold.
    let dir = tempfile::tempdir().unwrap();
    let settings = ProjectorSettings {
        mechanisms: vec![Mechanism::ImplicitRegularization],
        heads: vec![HeadKind::None],
        ..Default::default()
    };
    let still = Overrides {
        lr: Some(1e-9),
        ..tiny(200)
    };
    let r = projector(&settings, &still, &dir.path().join("still")).unwrap();
    let run = &r.runs[0];
    assert!(
        run.left_chance && !run.trained,
        "initial {} final {}",
        run.initial_loss,
        run.final_loss
    );
    let r = projector(&settings, &tiny(200), &dir.path().join("moving")).unwrap();
    assert!(r.runs[0].trained, "final {}", r.runs[0].final_loss);
}

// ---- Proposition 1: the linear projector against the gradient flow (issue 28, step 2) ----

type Params = Vec<DMatrix<f64>>;

/// θ = (W_1, W_p) of a one-layer linear encoder with a linear projector, z = W_p·W_1·x.
fn flow_grad(theta: &Params, loss: ToyLoss, x1: &DMatrix<f64>, x2: &DMatrix<f64>) -> Params {
    let net = ToyNet {
        layers: vec![theta[0].clone()],
        activation: Activation::Linear,
    };
    let head = Head::Linear {
        w: theta[1].clone(),
    };
    let g = head_grads(&net, &head, loss, TAU, x1, x2, None).unwrap();
    vec![g.encoder[0].clone(), g.head[0].clone()]
}

fn axpy(theta: &Params, a: f64, v: &Params) -> Params {
    theta.iter().zip(v).map(|(t, v)| t + v * a).collect()
}

fn norm(v: &Params) -> f64 {
    v.iter().map(|m| m.norm_squared()).sum::<f64>().sqrt()
}

/// ∇²L·v by a central difference of the gradient (error O(ε²·‖∇³L‖), far below the factor-2
/// margin the bound below takes).
fn hessian_times(
    theta: &Params,
    v: &Params,
    loss: ToyLoss,
    x1: &DMatrix<f64>,
    x2: &DMatrix<f64>,
) -> Params {
    let eps = 1e-5 / norm(v).max(1e-300);
    let plus = flow_grad(&axpy(theta, eps, v), loss, x1, x2);
    let minus = flow_grad(&axpy(theta, -eps, v), loss, x1, x2);
    axpy(&plus, -1.0, &minus)
        .into_iter()
        .map(|m| m / (2.0 * eps))
        .collect()
}

/// ‖∇²L‖₂ at θ by 30 power iterations on Hessian–vector products.
fn hessian_norm(theta: &Params, loss: ToyLoss, x1: &DMatrix<f64>, x2: &DMatrix<f64>) -> f64 {
    let mut v = flow_grad(theta, loss, x1, x2);
    let mut lambda = 0.0;
    for _ in 0..30 {
        let n = norm(&v);
        v = v.into_iter().map(|m| m / n).collect();
        v = hessian_times(theta, &v, loss, x1, x2);
        lambda = norm(&v);
    }
    lambda
}

struct FlowComparison {
    /// ‖θ_Euler(n) − θ_flow(n·lr)‖.
    error: f64,
    /// The bound (lr/2)·M·t·e^{K t} (see the test).
    bound: f64,
    /// Drift of the invariant W_1W_1ᵀ − W_pᵀW_p under the discrete steps, and its bound.
    invariant_drift: f64,
    invariant_bound: f64,
    /// Drift of the invariant along the RK4 flow.
    flow_invariant_drift: f64,
    /// The misalignment of (W_1, W_p) at the end: discrete, flow.
    misalignment: (f64, f64),
    /// 1/σ_max(W_1) + 1/σ_max(W_p) at the flow's end.
    inverse_scale: f64,
}

/// n plain SGD steps of size lr on one fixed batch against the gradient flow θ̇ = −∇L(θ)
/// integrated by RK4 to t = n·lr with steps of lr / 4.
fn compare_with_flow(loss: ToyLoss, lr: f64, t: f64, seed: u64) -> FlowComparison {
    use directclr::theory::closed_form::{misalignment, theorem2_invariant};
    let (net, x1, x2) = problem(6, 16, 1, Activation::Linear, seed);
    let head = head_of(HeadKind::Linear, 6, seed + 100);
    let theta0: Params = vec![net.layers[0].clone(), head.parameters()[0].clone()];
    // Keep K·t ≤ 1/2 (K = ‖∇²L‖ at the start) so that the bound's e^{K t} stays a constant
    // and the tolerance is first order, O(lr·t·M): the un-normalised dot-product loss at τ = 0.1
    // has ‖∇²L‖ in the hundreds.
    let k0 = hessian_norm(&theta0, loss, &x1, &x2);
    let t = t.min(0.5 / k0);
    let n = (t / lr).round() as usize;
    let t = n as f64 * lr;
    let invariant = |th: &Params| theorem2_invariant(&th[0], &th[1]);
    // Discrete SGD (the trainer's update) on the fixed batch.
    let mut euler = theta0.clone();
    let mut invariant_bound = 0.0;
    for _ in 0..n {
        let g = flow_grad(&euler, loss, &x1, &x2);
        // One step changes W_1W_1ᵀ − W_pᵀW_p by exactly lr²·(G_1G_1ᵀ − G_pᵀG_p) (the O(lr) terms
        // cancel as they do in the flow), of Frobenius norm ≤ lr²·(‖G_1‖²_F + ‖G_p‖²_F).
        invariant_bound += lr * lr * (g[0].norm_squared() + g[1].norm_squared());
        euler = axpy(&euler, -lr, &g);
    }
    // RK4 on the flow; M = max ‖θ̈‖ = max ‖∇²L·∇L‖ along it.
    let h = lr / 4.0;
    let mut flow = theta0.clone();
    let mut m_max: f64 = 0.0;
    let f = |th: &Params| -> Params {
        flow_grad(th, loss, &x1, &x2)
            .into_iter()
            .map(|m| -m)
            .collect()
    };
    for k in 0..4 * n {
        if k % 4 == 0 {
            let g = flow_grad(&flow, loss, &x1, &x2);
            m_max = m_max.max(norm(&hessian_times(&flow, &g, loss, &x1, &x2)));
        }
        let k1 = f(&flow);
        let k2 = f(&axpy(&flow, h / 2.0, &k1));
        let k3 = f(&axpy(&flow, h / 2.0, &k2));
        let k4 = f(&axpy(&flow, h, &k3));
        for i in 0..flow.len() {
            flow[i] += (&k1[i] + &k2[i] * 2.0 + &k3[i] * 2.0 + &k4[i]) * (h / 6.0);
        }
    }
    let k = k0.max(hessian_norm(&flow, loss, &x1, &x2));
    // Euler's global error for θ̇ = F(θ), F Lipschitz with constant K = ‖∇²L‖ and ‖θ̈‖ ≤ M:
    // ‖θ_n − θ(t)‖ ≤ (lr·M / 2K)·(e^{K t} − 1) ≤ (lr/2)·M·t·e^{K t} — first order in lr, i.e.
    // O(lr·t·‖∇²L‖·‖∇L‖). M and K are measured along the path rather than maximised over a
    // region, so each takes a factor 2 of margin; RK4's own error (O(h⁴)) is negligible.
    let bound = lr / 2.0 * (2.0 * m_max) * t * (2.0 * k * t).exp();
    FlowComparison {
        error: norm(&axpy(&euler, -1.0, &flow)),
        bound,
        invariant_drift: (invariant(&euler) - invariant(&theta0)).norm(),
        invariant_bound,
        flow_invariant_drift: (invariant(&flow) - invariant(&theta0)).norm(),
        misalignment: (
            misalignment(&euler[0], &euler[1]),
            misalignment(&flow[0], &flow[1]),
        ),
        inverse_scale: flow.iter().map(|w| 1.0 / w.singular_values().max()).sum(),
    }
}

#[test]
fn linear_projector_sgd_follows_the_gradient_flow() {
    for loss in [ToyLoss::Distance, ToyLoss::Dot] {
        let (lr, t) = (1e-4, 0.2);
        let c = compare_with_flow(loss, lr, t, 3);
        eprintln!(
            "{loss:?}: ‖SGD − flow‖ {:.3e} (bound {:.3e}); invariant drift SGD {:.3e} (bound {:.3e}), flow {:.3e}; misalignment SGD {:.6} flow {:.6}",
            c.error, c.bound, c.invariant_drift, c.invariant_bound, c.flow_invariant_drift,
            c.misalignment.0, c.misalignment.1
        );
        assert!(
            c.error <= c.bound,
            "{loss:?}: ‖Euler − flow‖ = {:.3e} > bound {:.3e}",
            c.error,
            c.bound
        );
        // First order in lr: halving lr halves the gap (so the comparison is with the flow,
        // not a coincidence of two wrong trajectories).
        let half = compare_with_flow(loss, lr / 2.0, t, 3);
        let ratio = c.error / half.error;
        assert!(
            (1.7..2.3).contains(&ratio),
            "{loss:?}: error ratio lr/(lr/2) = {ratio:.3} (errors {:.3e}, {:.3e})",
            c.error,
            half.error
        );
        // Proposition 1's mechanism: the flow conserves W_1W_1ᵀ − W_pᵀW_p (RK4 error only);
        // SGD drifts by at most Σ lr²(‖G_1‖² + ‖G_p‖²).
        assert!(
            c.flow_invariant_drift < 1e-9,
            "{loss:?}: flow drift {:.3e}",
            c.flow_invariant_drift
        );
        assert!(
            c.invariant_drift <= c.invariant_bound,
            "{loss:?}: SGD drift {:.3e} > {:.3e}",
            c.invariant_drift,
            c.invariant_bound
        );
        // The alignment measure of both trajectories agrees to the trajectories' gap:
        // m = ‖[A, B]‖/(‖A‖‖B‖) with A = W_1W_1ᵀ, B = W_pᵀW_p changes by at most 3‖dA‖/‖A‖ +
        // 3‖dB‖/‖B‖ ≤ 6‖dW_1‖/σ_max(W_1) + 6‖dW_p‖/σ_max(W_p) to first order (‖A‖_F ≥ σ_max²);
        // a factor 2 covers the second order at these gaps.
        assert!(
            (c.misalignment.0 - c.misalignment.1).abs() <= 12.0 * c.error * c.inverse_scale,
            "{loss:?}: misalignment {:.6} (SGD) vs {:.6} (flow), gap {:.3e}",
            c.misalignment.0,
            c.misalignment.1,
            c.error
        );
    }
}

#[test]
fn tracking_the_alignment_leaves_the_trajectory_unchanged() {
    use directclr::theory::alignment::track;
    let settings = ProjectorSettings::default();
    for m in Mechanism::ALL {
        let config = settings.toy_config(m, &tiny(30));
        let head = settings.head_config(HeadKind::Linear);
        let tracked = track(&config, &head).unwrap();
        let plain = train_with_head(&config, &head).unwrap();
        assert_eq!(tracked.run.weights, plain.weights, "{m:?}");
        assert_eq!(tracked.run.head_weights, plain.head_weights, "{m:?}");
        assert_eq!(tracked.points.len(), plain.records.len());
        let p = &tracked.points[0];
        assert!(p.off_diagonal_mass >= 0.0 && p.off_diagonal_mass <= 1.0);
        assert_eq!(p.projector_singular_values.len(), 16);
    }
}

#[test]
fn propositions_writes_its_files() {
    use directclr::theory::alignment::propositions;
    let dir = tempfile::tempdir().unwrap();
    let r = propositions(&ProjectorSettings::default(), &tiny(30), dir.path()).unwrap();
    assert_eq!(r.proposition1.len(), 2);
    for p in &r.proposition1 {
        let lin = dir.path().join(p.mechanism.name()).join("linear");
        for f in [
            "alignment.csv",
            "projector_singular_values.csv",
            "alignment_final.png",
            "off_diagonal_mass.png",
            "r_metrics.csv",
        ] {
            assert!(lin.join(f).is_file(), "{}", lin.join(f).display());
        }
        assert_eq!(read(&lin.join("alignment.csv")).lines().count(), 1 + 4);
        assert!(dir
            .path()
            .join(p.mechanism.name())
            .join("diagonal/r_metrics.csv")
            .is_file());
    }
    // Proposition 2: one fixed run per distinct numerical rank of the trained W_p, each k the
    // count of singular values ≥ t·σ₁ for the thresholds that gave it.
    use directclr::theory::alignment::{numerical_rank, RANK_THRESHOLDS};
    assert!(!r.proposition2.is_empty());
    for p in &r.proposition2 {
        assert!(!p.k_from_thresholds.is_empty());
        for t in &p.k_from_thresholds {
            assert_eq!(numerical_rank(&p.projector_singular_values, *t), p.k);
        }
        let i = RANK_THRESHOLDS
            .iter()
            .position(|t| t == &p.k_from_thresholds[0])
            .unwrap();
        assert_eq!(p.projector_rank[i], p.k);
        assert!(dir
            .path()
            .join(p.mechanism.name())
            .join(format!("fixed-rank-{}/r_metrics.csv", p.k))
            .is_file());
    }
    assert!(dir.path().join("projector_rank.csv").is_file());
    assert_eq!(numerical_rank(&[1.0, 1e-3, 1e-5, 1e-7], 1e-4), 2);
    assert_eq!(numerical_rank(&[1.0, 1e-3, 1e-5, 1e-7], 1e-6), 3);
    let bad = ProjectorSettings {
        mechanisms: vec![],
        ..Default::default()
    };
    match propositions(&bad, &tiny(30), dir.path()) {
        Err(Error::InvalidConfig { field, .. }) => assert_eq!(field, "mechanisms"),
        other => panic!("expected InvalidConfig(mechanisms), got {other:?}"),
    }
}

#[test]
fn conditions_default_is_the_plain_run_and_bad_conditions_are_refused() {
    use directclr::theory::alignment::{track, track_under, Condition};
    use directclr::theory::conditions::{grid, sweep};
    let settings = ProjectorSettings::default();
    let config = settings.toy_config(Mechanism::StrongAugmentation, &tiny(30));
    let head = settings.head_config(HeadKind::Linear);
    let plain = track(&config, &head).unwrap();
    let default = track_under(&config, &head, &Condition::default()).unwrap();
    assert_eq!(plain.run.weights, default.run.weights);
    // Scaled init: the recorded initial weights are the preset's times the factors.
    let scaled = track_under(
        &config,
        &head,
        &Condition {
            encoder_init_scale: 0.5,
            head_init_scale: 0.25,
            ..Condition::default()
        },
    )
    .unwrap();
    let close = |a: &DMatrix<f64>, b: &DMatrix<f64>| (a - b).norm() <= 1e-6 * b.norm();
    assert!(close(
        &scaled.run.initial_weights[0],
        &(&plain.run.initial_weights[0] * 0.5)
    ));
    assert!(close(
        &scaled.run.head_initial_weights[0],
        &(&plain.run.head_initial_weights[0] * 0.25)
    ));
    // Weight decay at lr·λ·steps = 1e-3·10·30 = 0.3 shrinks the weights against no decay.
    let decayed = track_under(
        &config,
        &head,
        &Condition {
            weight_decay: 10.0,
            ..Condition::default()
        },
    )
    .unwrap();
    assert!(decayed.run.weights[0].norm() < plain.run.weights[0].norm());
    for (c, field) in [
        (
            Condition {
                encoder_init_scale: 0.0,
                ..Condition::default()
            },
            "encoder_init_scale",
        ),
        (
            Condition {
                head_init_scale: f64::NAN,
                ..Condition::default()
            },
            "head_init_scale",
        ),
        (
            Condition {
                weight_decay: -1.0,
                ..Condition::default()
            },
            "weight_decay",
        ),
    ] {
        match track_under(&config, &head, &c) {
            Err(Error::InvalidConfig { field: f, .. }) => assert_eq!(f, field),
            other => panic!(
                "{field}: expected InvalidConfig, got {:?}",
                other.map(|_| ())
            ),
        }
    }
    // The grid: (s, s) for each scale, (1, s) for s ≠ 1, times each decay.
    let g = grid(&[1.0, 0.1], &[0.0, 0.1], &[ZNorm::None]);
    assert_eq!(g.len(), 6);
    let dir = tempfile::tempdir().unwrap();
    let r = sweep(
        &ProjectorSettings {
            mechanisms: vec![Mechanism::ImplicitRegularization],
            ..Default::default()
        },
        &grid(&[1.0, 0.1], &[0.0], &[ZNorm::None]),
        &tiny(20),
        dir.path(),
    )
    .unwrap();
    // none: 2 encoder scales; linear, diagonal: 3 conditions each.
    assert_eq!(r.runs.len(), 2 + 3 + 3);
    assert!(dir.path().join("summary.csv").is_file());
}

#[test]
fn an_encoder_decayed_to_zero_is_recorded_not_an_error() {
    use directclr::theory::conditions::{grid, sweep};
    // Weights of 1e-20 with lr·λ = 1e-2·100 = 1 (up to f32 rounding): each step leaves
    // w·(1 − lr·λ) plus a gradient of order |w|³ (L = 2, r ~ |w|²), so the f32 weights underflow
    // to exactly 0 within a few steps, a fixed point: r ≡ 0. Such a run (as weight decay over
    // 10⁵ steps produces) has every dimension collapsed and is recorded with effective rank 0;
    // it used to fail the whole sweep on RankMe of zero singular values.
    let dir = tempfile::tempdir().unwrap();
    let r = sweep(
        &ProjectorSettings {
            mechanisms: vec![Mechanism::ImplicitRegularization],
            heads: vec![HeadKind::None],
            ..Default::default()
        },
        &grid(&[1e-20], &[100.0], &[ZNorm::None]),
        &tiny(20),
        dir.path(),
    )
    .unwrap();
    let zero = r
        .runs
        .iter()
        .find(|c| c.condition.encoder_init_scale == 1e-20)
        .expect("the scaled encoder's run");
    assert_eq!(zero.run.r_effective_rank.1, 0.0);
    assert_eq!(zero.run.r_collapsed_1e6.1, 16);
    assert!(!zero.run.trained);
}

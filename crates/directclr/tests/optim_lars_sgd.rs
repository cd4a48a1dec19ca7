//! LARS and SGD against a slow reference loop in f64 over several steps (with and without the
//! 1-d exclusion), momentum state export/import, and the warm-up + cosine schedule.

use directclr::optim::{
    trainable_variables, LarsConfig, OptimizerConfig, ScheduleConfig, SgdConfig,
};
use directclr::Error;
use tch::{nn, Device, Kind, Tensor};

/// Shapes of the test parameters: a conv kernel, a matrix, a bias, a zero matrix (‖w‖ = 0,
/// trust ratio 1), and a parameter left out of the loss (no gradient: skipped).
const SHAPES: [&[i64]; 5] = [&[2, 3, 2, 2], &[3, 4], &[4], &[2, 2], &[3]];

/// Held by the tests that draw from libtorch's global generator (a model's initialisation), so
/// that a draw of one cannot fall between another's `manual_seed` and its initialisation.
static GLOBAL_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Seeded normal values from a local generator (the global libtorch generator is shared by
/// the tests running in parallel).
fn randn(seed: u64, shape: &[i64]) -> Tensor {
    use rand::SeedableRng;
    use rand_distr::Distribution;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let n: i64 = shape.iter().product();
    let v: Vec<f64> = (0..n)
        .map(|_| rand_distr::StandardNormal.sample(&mut rng))
        .collect();
    Tensor::from_slice(&v).reshape(shape)
}

fn params(seed: u64) -> Vec<(String, Tensor)> {
    SHAPES
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let t = if i == 3 {
                Tensor::zeros(*s, (Kind::Double, Device::Cpu))
            } else {
                randn(seed * 10 + i as u64, s)
            };
            (format!("p{i}"), t.set_requires_grad(true))
        })
        .collect()
}

/// Fixed coefficients of the loss L = Σ_i Σ (a_i ⊙ w_i + ½ c_i w_i²) over the first 4
/// parameters, whose gradient is a_i + c_i w_i.
fn coefficients() -> Vec<(Vec<f64>, f64)> {
    SHAPES
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let n: i64 = s.iter().product();
            (
                (0..n)
                    .map(|k| ((k * 7 + i as i64 * 3) as f64 * 0.37).sin())
                    .collect(),
                0.3 + 0.2 * i as f64,
            )
        })
        .collect()
}

fn loss(ps: &[(String, Tensor)]) -> Tensor {
    let coef = coefficients();
    let mut total = Tensor::zeros([], (Kind::Double, Device::Cpu));
    for (i, (_, w)) in ps.iter().enumerate().take(4) {
        let a = Tensor::from_slice(&coef[i].0).reshape(w.size());
        total =
            total + (a * w).sum(Kind::Double) + (w.square() * (0.5 * coef[i].1)).sum(Kind::Double);
    }
    total
}

fn values(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.detach().flatten(0, -1).to_kind(Kind::Double)).unwrap()
}

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

/// Machine epsilon of f64 (2⁻⁵²).
const EPS64: f64 = f64::EPSILON;

/// One step of the authors' LARS / PyTorch's SGD, written as plain f64 loops, from the state
/// (w, μ) of each parameter: the new (w, μ), and per parameter bounds on |Δw| and |Δμ| between
/// any two f64 implementations of that step from the same state (this loop and the optimiser,
/// or the per-tensor and the fused optimiser), whatever order their sums take.
struct Step {
    w: Vec<Vec<f64>>,
    mu: Vec<Vec<f64>>,
    w_bound: Vec<f64>,
    mu_bound: Vec<f64>,
}

/// Rounding of one implementation (u = ε64), with d = g + λw and D_k = |a_k| + (c + λ)|w_k|:
/// - g = a + c·w by autograd, then d: |δd_k| ≤ 5u·D_k;
/// - ‖w‖, ‖d‖: n squares summed in any order (Higham, Thm 3.5: γ_n) and a square root, so
///   q = η‖w‖/‖d‖ has a relative error ρ ≤ (n + 6 + 5‖D‖/‖d‖)·u (ρ = 0 where q ≡ 1);
/// - μ' = mμ + q·d: |δμ'_k| ≤ 10u·M_k + ρ·q|d_k| with M_k = m|μ_k| + q·D_k;
/// - the step (μ', or q·d + mμ' for Nesterov, |step| ≤ (1 + m)·M_k) and w' = w − lr·step:
///   |δw'_k| ≤ 2u|w_k| + lr·(1 + m)·(14u·M_k + ρ·q|d_k|).
///
/// Two implementations: twice each. No error propagates from earlier steps: every step starts
/// both from the same state.
fn reference_step(config: &OptimizerConfig, w: &[Vec<f64>], mu: &[Vec<f64>], lr: f64) -> Step {
    let coef = coefficients();
    let mut out = Step {
        w: w.to_vec(),
        mu: mu.to_vec(),
        w_bound: vec![0.0; w.len()],
        mu_bound: vec![0.0; w.len()],
    };
    for i in 0..4 {
        let one_d = SHAPES[i].len() == 1;
        let (m, wd, exclude, nesterov, eta) = match config {
            OptimizerConfig::Lars(c) => (
                c.momentum,
                c.weight_decay,
                c.exclude_1d && one_d,
                false,
                Some(c.eta),
            ),
            OptimizerConfig::Sgd(c) => (
                c.momentum,
                c.weight_decay,
                c.exclude_1d && one_d,
                c.nesterov,
                None,
            ),
        };
        let (a, c) = (&coef[i].0, coef[i].1);
        let lambda = if exclude { 0.0 } else { wd };
        let d: Vec<f64> = w[i]
            .iter()
            .zip(a)
            .map(|(w, a)| (a + c * w) + lambda * w)
            .collect();
        let big_d: Vec<f64> = w[i]
            .iter()
            .zip(a)
            .map(|(w, a)| a.abs() + (c + lambda) * w.abs())
            .collect();
        let (wn, dn) = (norm(&w[i]), norm(&d));
        let (q, rho) = match eta {
            Some(eta) if !exclude && wn > 0.0 && dn > 0.0 => (
                eta * wn / dn,
                (d.len() as f64 + 6.0 + 5.0 * norm(&big_d) / dn) * EPS64,
            ),
            _ => (1.0, 0.0),
        };
        for k in 0..d.len() {
            let mk = m * mu[i][k].abs() + q * big_d[k];
            out.mu[i][k] = m * mu[i][k] + q * d[k];
            let step = if nesterov {
                q * d[k] + m * out.mu[i][k]
            } else {
                out.mu[i][k]
            };
            out.w[i][k] = w[i][k] - lr * step;
            let mu_err = 10.0 * EPS64 * mk + rho * q * d[k].abs();
            let w_err = 2.0 * EPS64 * w[i][k].abs()
                + lr * (1.0 + m) * (14.0 * EPS64 * mk + rho * q * d[k].abs());
            out.mu_bound[i] = out.mu_bound[i].max(2.0 * mu_err);
            out.w_bound[i] = out.w_bound[i].max(2.0 * w_err);
        }
    }
    out
}

/// The parameters' values and the optimiser's momentum buffers, in the parameters' order.
fn state(
    ps: &[(String, Tensor)],
    opt: &directclr::optim::Optimizer,
) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
    let momenta = opt.momentum_state();
    let mu = ps
        .iter()
        .map(|(n, _)| values(&momenta.iter().find(|(m, _)| m == n).unwrap().1))
        .collect();
    (ps.iter().map(|(_, t)| values(t)).collect(), mu)
}

fn build(config: &OptimizerConfig, ps: &[(String, Tensor)]) -> directclr::optim::Optimizer {
    config
        .build(
            ps.iter()
                .map(|(n, t)| (n.clone(), t.shallow_clone()))
                .collect(),
        )
        .unwrap()
}

/// One step of `opt` at `lr`, checked against `reference_step` from the state before it;
/// returns that reference step.
fn checked_step(
    config: &OptimizerConfig,
    ps: &[(String, Tensor)],
    opt: &mut directclr::optim::Optimizer,
    lr: f64,
) -> Step {
    let (w, mu) = state(ps, opt);
    opt.zero_grad();
    loss(ps).backward();
    opt.step(lr).unwrap();
    let expected = reference_step(config, &w, &mu, lr);
    let (got_w, got_mu) = state(ps, opt);
    for (i, (name, _)) in ps.iter().enumerate() {
        // An untouched parameter (p4: no gradient) is left exactly as it was (bound 0); the
        // others move by far more than rounding.
        let moved = got_w[i] != w[i];
        assert_eq!(moved, i != 4, "{config:?}: {name} moved = {moved}");
        for (got, want, bound) in [
            (&got_w[i], &expected.w[i], expected.w_bound[i]),
            (&got_mu[i], &expected.mu[i], expected.mu_bound[i]),
        ] {
            for (a, b) in got.iter().zip(want) {
                assert!(
                    (a - b).abs() <= bound,
                    "{config:?} lr {lr} {name}: {a} vs {b} (bound {bound:.1e})"
                );
            }
        }
    }
    expected
}

fn run(
    config: &OptimizerConfig,
    ps: &[(String, Tensor)],
    lrs: &[f64],
) -> directclr::optim::Optimizer {
    let mut opt = config
        .build(
            ps.iter()
                .map(|(n, t)| (n.clone(), t.shallow_clone()))
                .collect(),
        )
        .unwrap();
    for &lr in lrs {
        opt.zero_grad();
        loss(ps).backward();
        opt.step(lr).unwrap();
    }
    opt
}

fn configs() -> Vec<OptimizerConfig> {
    vec![
        OptimizerConfig::Lars(LarsConfig::default()),
        OptimizerConfig::Lars(LarsConfig {
            exclude_1d: false,
            ..LarsConfig::default()
        }),
        // A large η and weight decay make every term visible.
        OptimizerConfig::Lars(LarsConfig {
            momentum: 0.8,
            weight_decay: 0.05,
            eta: 0.3,
            exclude_1d: true,
        }),
        OptimizerConfig::Lars(LarsConfig {
            momentum: 0.8,
            weight_decay: 0.05,
            eta: 0.3,
            exclude_1d: false,
        }),
        OptimizerConfig::Sgd(SgdConfig {
            momentum: 0.9,
            weight_decay: 0.01,
            nesterov: false,
            exclude_1d: false,
        }),
        OptimizerConfig::Sgd(SgdConfig {
            momentum: 0.9,
            weight_decay: 0.01,
            nesterov: true,
            exclude_1d: true,
        }),
        OptimizerConfig::Sgd(SgdConfig {
            momentum: 0.0,
            weight_decay: 0.0,
            nesterov: false,
            exclude_1d: false,
        }),
    ]
}

#[test]
fn updates_equal_the_reference_loop() {
    // Every step against the reference step from the same state, within the rounding bound of
    // `reference_step` (was: the whole trajectory within 1e-12 relative, a tolerance no bound
    // gave: rounding errors of earlier steps are amplified by the later ones).
    let lrs = [0.5, 0.2, 1.0, 0.7];
    for config in configs() {
        let ps = params(1);
        let mut opt = build(&config, &ps);
        for &lr in &lrs {
            checked_step(&config, &ps, &mut opt, lr);
        }
    }
}

#[test]
fn exclusion_changes_exactly_the_1d_parameters() {
    let lrs = [0.5, 0.5];
    let with = OptimizerConfig::Lars(LarsConfig {
        weight_decay: 0.05,
        eta: 0.3,
        ..LarsConfig::default()
    });
    let without = OptimizerConfig::Lars(LarsConfig {
        weight_decay: 0.05,
        eta: 0.3,
        exclude_1d: false,
        ..LarsConfig::default()
    });
    let (a, b) = (params(2), params(2));
    run(&with, &a, &lrs);
    run(&without, &b, &lrs);
    for (i, ((n, x), (_, y))) in a.iter().zip(&b).enumerate() {
        // Exact: the non-1-d parameters go through the same operations on the same values in
        // both runs on one machine (determinism); the 1-d ones differ by λ·w terms ≫ rounding.
        let same = x.equal(y);
        assert_eq!(same, SHAPES[i].len() != 1 || i == 4, "{n}");
    }
}

#[test]
fn momentum_state_round_trip_resumes_exactly() {
    let config = OptimizerConfig::Lars(LarsConfig {
        weight_decay: 0.05,
        eta: 0.3,
        ..LarsConfig::default()
    });
    // Uninterrupted: 5 steps.
    let a = params(3);
    run(&config, &a, &[0.3, 0.4, 0.5, 0.6, 0.7]);
    // Interrupted after 3 steps; the state goes to a new optimiser over copies.
    let b = params(3);
    let opt = run(&config, &b, &[0.3, 0.4, 0.5]);
    let saved: Vec<(String, Tensor)> = opt
        .momentum_state()
        .into_iter()
        .map(|(n, t)| (n, t.copy()))
        .collect();
    assert_eq!(
        saved.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        opt.param_names()
    );
    let c: Vec<(String, Tensor)> = b
        .iter()
        .map(|(n, t)| (n.clone(), t.detach().copy().set_requires_grad(true)))
        .collect();
    let mut resumed = config
        .build(
            c.iter()
                .map(|(n, t)| (n.clone(), t.shallow_clone()))
                .collect(),
        )
        .unwrap();
    resumed.load_momentum_state(&saved).unwrap();
    for lr in [0.6, 0.7] {
        resumed.zero_grad();
        loss(&c).backward();
        resumed.step(lr).unwrap();
    }
    for ((n, x), (_, y)) in a.iter().zip(&c) {
        // Exact: the same operations on bitwise the same state (the momentum is a pure copy),
        // one machine: determinism, not a numerical claim.
        assert!(x.equal(y), "{n}");
    }
    // Mismatched states are errors.
    let mut bad = saved
        .iter()
        .map(|(n, t)| (n.clone(), t.shallow_clone()))
        .collect::<Vec<_>>();
    bad.pop();
    assert!(matches!(
        resumed.load_momentum_state(&bad),
        Err(Error::StateMismatch { .. })
    ));
    bad.push(("p4".into(), Tensor::zeros([4], (Kind::Double, Device::Cpu))));
    assert!(matches!(
        resumed.load_momentum_state(&bad),
        Err(Error::StateMismatch { .. })
    ));
    bad.pop();
    bad.push(("p4".into(), Tensor::zeros([3], (Kind::Double, Device::Cpu))));
    bad.push((
        "extra".into(),
        Tensor::zeros([3], (Kind::Double, Device::Cpu)),
    ));
    assert!(matches!(
        resumed.load_momentum_state(&bad),
        Err(Error::StateMismatch { .. })
    ));
}

#[test]
fn builds_over_the_trainable_variables_of_a_store_only() {
    let _rng = GLOBAL_RNG.lock().unwrap_or_else(|e| e.into_inner());
    let vs = nn::VarStore::new(Device::Cpu);
    let model = directclr::model::ResNetConfig {
        arch: directclr::model::Arch::ResNet18,
        stem: directclr::model::Stem::Cifar,
        width_multiplier: 0.125,
        zero_init_residual: true,
    }
    .build(&vs.root().sub("backbone"))
    .unwrap();
    directclr::method::Method::FixedLowRank { rank: 4, seed: 0 }
        .build(&vs.root().sub("projector"), model.feat_dim())
        .unwrap();
    let opt = OptimizerConfig::default().build_for(&vs).unwrap();
    let names = opt.param_names();
    assert_eq!(names.len(), vs.trainable_variables().len());
    assert!(names.windows(2).all(|w| w[0] < w[1]));
    assert!(names.iter().all(|n| n.starts_with("backbone.")
        && !n.contains("running_")
        && !n.contains("num_batches")));
    // Bad configurations and learning rates are errors.
    let mut opt = OptimizerConfig::default().build_for(&vs).unwrap();
    assert!(opt.step(f64::NAN).is_err());
    for bad in [
        OptimizerConfig::Lars(LarsConfig {
            momentum: 1.0,
            ..LarsConfig::default()
        }),
        OptimizerConfig::Lars(LarsConfig {
            eta: 0.0,
            ..LarsConfig::default()
        }),
        OptimizerConfig::Sgd(SgdConfig {
            weight_decay: -1.0,
            ..SgdConfig::default()
        }),
    ] {
        assert!(matches!(
            bad.build_for(&vs),
            Err(Error::InvalidConfig { .. })
        ));
    }
    let frozen = vec![(
        "x".to_string(),
        Tensor::zeros([2], (Kind::Float, Device::Cpu)),
    )];
    assert!(OptimizerConfig::default().build(frozen).is_err());
}

#[test]
fn config_serde() {
    #[derive(serde::Deserialize, serde::Serialize, Debug, PartialEq)]
    struct Wrap {
        optimizer: OptimizerConfig,
        schedule: ScheduleConfig,
    }
    let w: Wrap = toml::from_str("[optimizer]\nkind = \"lars\"\n[schedule]\n").unwrap();
    assert_eq!(
        w,
        Wrap {
            optimizer: OptimizerConfig::Lars(LarsConfig::default()),
            schedule: ScheduleConfig::default()
        }
    );
    let w: Wrap =
        toml::from_str("[optimizer]\nkind = \"sgd\"\nmomentum = 0.0\n[schedule]\nlr = 0.3\nscale_with_batch = true\n").unwrap();
    assert_eq!(
        w.optimizer,
        OptimizerConfig::Sgd(SgdConfig {
            momentum: 0.0,
            ..SgdConfig::default()
        })
    );
    assert_eq!(
        toml::from_str::<Wrap>(&toml::to_string(&w).unwrap()).unwrap(),
        w
    );
    assert!(toml::from_str::<Wrap>("[optimizer]\nkind = \"adam\"\n[schedule]\n").is_err());
    assert!(
        toml::from_str::<Wrap>("[optimizer]\nkind = \"lars\"\n[schedule]\nwarmup = 3\n").is_err()
    );
}

#[test]
fn schedule_values_at_known_steps() {
    // The authors' ImageNet run: lr 4.8, 10 warm-up epochs of 100 epochs (here 100 steps each).
    let s = ScheduleConfig::default().build(4096, 100, 100).unwrap();
    assert_eq!((s.warmup_steps, s.total_steps), (1000, 10_000));
    // A handful of f64 operations and one libm cos (≤ 1 ulp) on values ≤ 4.8: |error| ≤
    // 10·ε64·4.8 ≈ 1e-14 < 1e-12 (also for 4.8 + 1e-12 below).
    let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
    assert!(close(s.lr(0), 0.0));
    assert!(close(s.lr(1), 4.8 / 1000.0));
    assert!(close(s.lr(500), 2.4));
    assert!(close(s.lr(1000), 4.8)); // end of warm-up: the base lr
    assert!(close(s.lr(5500), 0.5 * 4.8 + 0.5 * 0.0048)); // middle of the cosine
    assert!(close(
        s.lr(1000 + 9000 / 4),
        4.8 * (0.5 + 0.5 * 0.5f64.sqrt()) + 0.0048 * (0.5 - 0.5 * 0.5f64.sqrt())
    ));
    assert!(close(s.lr(10_000), 0.0048)); // end: 0.001 × base
    assert!(close(s.lr(20_000), 0.0048));
    assert!((1..10_000).all(|k| s.lr(k) <= 4.8 + 1e-12 && s.lr(k) > 0.0));
    // Linear scaling rule: 0.3 × 4096 / 256 = 4.8.
    let c = ScheduleConfig {
        lr: 0.3,
        scale_with_batch: true,
        ..ScheduleConfig::default()
    };
    assert!(close(c.build(4096, 100, 100).unwrap().base_lr, 4.8));
    // No warm-up: cosine from the base lr (the linear probe, floor 0).
    let p = ScheduleConfig {
        lr: 0.1,
        warmup_epochs: 0.0,
        final_lr_ratio: 0.0,
        ..ScheduleConfig::default()
    }
    .build(256, 1, 100)
    .unwrap();
    assert!(close(p.lr(0), 0.1) && close(p.lr(50), 0.05) && close(p.lr(100), 0.0));
    // Impossible schedules.
    let d = ScheduleConfig::default();
    for (c, steps, epochs, field) in [
        (d, 100, 10, "warmup_epochs"),
        (ScheduleConfig { lr: 0.0, ..d }, 100, 100, "lr"),
        (
            ScheduleConfig {
                final_lr_ratio: 1.5,
                ..d
            },
            100,
            100,
            "final_lr_ratio",
        ),
        (
            ScheduleConfig {
                warmup_epochs: -1.0,
                ..d
            },
            100,
            100,
            "warmup_epochs",
        ),
        (d, 0, 100, "steps_per_epoch"),
        (d, 100, 0, "epochs"),
    ] {
        let err = c.build(256, steps, epochs).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidConfig { field: f, .. } if f == field),
            "{err}"
        );
    }
}

/// `validate` (the check of `CheckedConfig`, before the steps per epoch are known) accepts
/// exactly what `build` accepts at one step per epoch, and whatever it accepts `build` accepts
/// at any number of steps per epoch.
#[test]
fn schedule_validate_is_build_at_one_step_and_implies_build() {
    for warmup in [
        0.0,
        0.4,
        0.5,
        0.6,
        1.0,
        1.4,
        1.5,
        1.6,
        1.96,
        2.0,
        2.5,
        -1.0,
        f64::NAN,
    ] {
        for epochs in [0, 1, 2, 3] {
            for lr in [0.3, 0.0] {
                let c = ScheduleConfig {
                    lr,
                    warmup_epochs: warmup,
                    ..ScheduleConfig::default()
                };
                let v = c.validate(256, epochs);
                let at_one = c.build(256, 1, epochs);
                assert_eq!(
                    v.as_ref().map_err(|e| e.to_string()).err(),
                    at_one.as_ref().map_err(|e| e.to_string()).err(),
                    "{c:?} epochs {epochs}"
                );
                if v.is_ok() {
                    for steps in 1..200 {
                        assert!(
                            c.build(256, steps, epochs).is_ok(),
                            "{c:?} {epochs} {steps}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn trainable_variables_are_sorted_and_exclude_buffers() {
    let vs = nn::VarStore::new(Device::Cpu);
    let root = vs.root();
    let _b = root.var("b", &[2], nn::Init::Const(0.0));
    let _a = root.var("a", &[2, 2], nn::Init::Const(0.0));
    let _m = root.zeros_no_train("m", &[2]);
    let names: Vec<String> = trainable_variables(&vs)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, vec!["a", "b"]);
}

#[test]
fn fused_update_equals_the_per_tensor_update_and_the_reference() {
    // Each optimiser, every step, against the reference step from its own state; and after
    // the first step (the same initial state for both) the two against each other, within the
    // bound between any two implementations of a step (was: 1e-12 after four steps, which no
    // bound gave: the two round differently and later steps amplify the difference).
    let lrs = [0.5, 0.2, 1.0, 0.7];
    for config in configs() {
        let (a, b) = (params(4), params(4));
        let mut per_tensor = build(&config, &a);
        let mut fused = build(&config, &b);
        fused.fuse().unwrap();
        assert!(fused.is_fused());
        for (t, &lr) in lrs.iter().enumerate() {
            let bound = checked_step(&config, &a, &mut per_tensor, lr);
            checked_step(&config, &b, &mut fused, lr);
            if t == 0 {
                let ((wa, ma), (wb, mb)) = (state(&a, &per_tensor), state(&b, &fused));
                for (i, (name, _)) in a.iter().enumerate() {
                    for (x, y, tol) in [
                        (&wa[i], &wb[i], bound.w_bound[i]),
                        (&ma[i], &mb[i], bound.mu_bound[i]),
                    ] {
                        for (p, q) in x.iter().zip(y) {
                            assert!(
                                (p - q).abs() <= tol,
                                "{config:?} {name}: {p} vs {q} (bound {tol:.1e})"
                            );
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn fused_lars_on_a_channels_last_resnet_matches_within_f32_rounding() {
    let _rng = GLOBAL_RNG.lock().unwrap_or_else(|e| e.into_inner());
    // ResNet-18 (width 1/8) with channels-last kernels, f32, real InfoNCE steps on random
    // views; the same weights trained by the per-tensor and the fused LARS. After one step the
    // two differ only by their f32 rounding (bound below). Over more steps this small,
    // batch-8 network amplifies any rounding difference chaotically (the two updates round
    // differently: addcmul per tensor, segment sums fused), so several steps with momentum are
    // checked step by step in f64 (`fused_update_equals_the_per_tensor_update_and_the_reference`);
    // here the point is the channels-last memory order of real ResNet weights.
    let build = || {
        tch::manual_seed(7);
        let vs = nn::VarStore::new(Device::Cpu);
        let model = directclr::model::ResNetConfig {
            arch: directclr::model::Arch::ResNet18,
            stem: directclr::model::Stem::Cifar,
            width_multiplier: 0.125,
            zero_init_residual: false,
        }
        .build(&vs.root().sub("encoder"))
        .unwrap();
        for (_, mut t) in vs.variables() {
            if t.dim() == 4 {
                let cl = directclr::precision::to_channels_last(&t).unwrap();
                tch::no_grad(|| t.set_data(&cl));
            }
        }
        (vs, model)
    };
    let x1 = randn(11, &[8, 3, 16, 16]).to_kind(Kind::Float);
    let x2 = randn(12, &[8, 3, 16, 16]).to_kind(Kind::Float);
    let loss_fn = directclr::loss::InfoNce::authors();
    let train = |fused: bool, lrs: &[f64]| {
        let (vs, model) = build();
        let mut opt = OptimizerConfig::Lars(LarsConfig {
            weight_decay: 1e-4,
            ..LarsConfig::default()
        })
        .build_for(&vs)
        .unwrap();
        if fused {
            opt.fuse().unwrap();
        }
        for &lr in lrs {
            let z1 = model.forward_t(&x1, true).unwrap();
            let z2 = model.forward_t(&x2, true).unwrap();
            let loss = loss_fn.loss(&z1, &z2).unwrap();
            opt.zero_grad();
            loss.backward();
            opt.step(lr).unwrap();
        }
        let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        (vars, opt)
    };
    let (init, _) = train(false, &[]);
    let (lr, weight_decay, eta) = (0.3, 1e-4, LarsConfig::default().eta);
    let (a, _) = train(false, &[lr]);
    let (b, opt) = train(true, &[lr]);
    assert!(opt.is_fused());
    let eps32 = f32::EPSILON as f64;
    let (mut worst, mut moved) = (0.0f64, 0.0f64);
    for (((n, x), (m, y)), (_, w0)) in a.iter().zip(&b).zip(&init) {
        assert_eq!(n, m);
        assert_eq!(x.stride(), y.stride(), "{n}: memory order kept");
        if !x.grad().defined() {
            // A buffer (BN's running statistics): the same forward pass on the same weights
            // on one machine in both runs, untouched by the optimiser: equal (determinism).
            assert!(x.equal(y), "{n}");
            continue;
        }
        // Both runs compute the same gradient (the same weights through the same code path on
        // one machine), so the two updates differ only by their own f32 rounding. From
        // μ = 0, one step is w' = w − lr·q·d with d = g + λw (g and λ = 0, q = 1 for the 1-d
        // tensors); with D_k = |g_k| + λ|w_k|, each implementation rounds d_k by ≤ 2ε32·D_k,
        // q = η‖w‖/‖d‖ by ≤ (n + 8 + 2‖D‖/‖d‖)·ε32 relative (two sums of n squares in any
        // order, γ_n, square roots, a product and a quotient), q·d and w − lr·(q·d) by ≤ 2ε32:
        // |Δw'_k| ≤ 2·[2ε32·|w_k| + lr·q·((n + 8 + 2‖D‖/‖d‖)·ε32·|d_k| + 2ε32·D_k)].
        // (was: < 1e-6 for all tensors, below this bound for the large kernels)
        let (w, g) = (values(w0), values(&x.grad()));
        let one_d = w0.dim() == 1;
        let lambda = if one_d { 0.0 } else { weight_decay };
        let d: Vec<f64> = g.iter().zip(&w).map(|(g, w)| g + lambda * w).collect();
        let big_d: Vec<f64> = g
            .iter()
            .zip(&w)
            .map(|(g, w)| g.abs() + lambda * w.abs())
            .collect();
        let (q, rho) = if one_d {
            (1.0, 0.0)
        } else {
            (
                eta * norm(&w) / norm(&d),
                (w.len() as f64 + 8.0 + 2.0 * norm(&big_d) / norm(&d)) * eps32,
            )
        };
        let (xs, ys) = (values(x), values(y));
        for k in 0..w.len() {
            let bound = 2.0
                * (2.0 * eps32 * w[k].abs() + lr * q * (rho * d[k].abs() + 2.0 * eps32 * big_d[k]));
            let diff = (xs[k] - ys[k]).abs();
            assert!(
                diff <= bound,
                "{n}[{k}]: {} vs {} (bound {bound:.1e})",
                xs[k],
                ys[k]
            );
            worst = worst.max(bound);
            moved = moved.max((xs[k] - w[k]).abs());
        }
    }
    // The check can see a wrong term: the largest allowed difference is a small fraction of
    // the largest step.
    assert!(
        moved > 20.0 * worst,
        "the weights moved by {moved}, bound {worst:.1e}"
    );
}

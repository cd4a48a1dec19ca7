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
    Vec::<f64>::try_from(t.detach().flatten(0, -1)).unwrap()
}

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

/// The authors' LARS / PyTorch's SGD written as plain loops.
fn reference(config: &OptimizerConfig, init: &[(String, Tensor)], lrs: &[f64]) -> Vec<Vec<f64>> {
    let coef = coefficients();
    let mut w: Vec<Vec<f64>> = init.iter().map(|(_, t)| values(t)).collect();
    let mut mu: Vec<Vec<f64>> = w.iter().map(|v| vec![0.0; v.len()]).collect();
    for &lr in lrs {
        for i in 0..4 {
            let one_d = SHAPES[i].len() == 1;
            let g: Vec<f64> = w[i]
                .iter()
                .zip(&coef[i].0)
                .map(|(w, a)| a + coef[i].1 * w)
                .collect();
            let (m, wd, exclude) = match config {
                OptimizerConfig::Lars(c) => (c.momentum, c.weight_decay, c.exclude_1d && one_d),
                OptimizerConfig::Sgd(c) => (c.momentum, c.weight_decay, c.exclude_1d && one_d),
            };
            let mut d: Vec<f64> = g
                .iter()
                .zip(&w[i])
                .map(|(g, w)| if exclude { *g } else { g + wd * w })
                .collect();
            if let OptimizerConfig::Lars(c) = config {
                if !exclude {
                    let (wn, dn) = (norm(&w[i]), norm(&d));
                    let q = if wn > 0.0 && dn > 0.0 {
                        c.eta * wn / dn
                    } else {
                        1.0
                    };
                    d.iter_mut().for_each(|x| *x *= q);
                }
            }
            for k in 0..d.len() {
                mu[i][k] = m * mu[i][k] + d[k];
                let step = match config {
                    OptimizerConfig::Sgd(c) if c.nesterov => d[k] + m * mu[i][k],
                    _ => mu[i][k],
                };
                w[i][k] -= lr * step;
            }
        }
    }
    w
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
    let lrs = [0.5, 0.2, 1.0, 0.7];
    for config in configs() {
        let ps = params(1);
        let init: Vec<(String, Tensor)> = ps
            .iter()
            .map(|(n, t)| (n.clone(), t.detach().copy()))
            .collect();
        run(&config, &ps, &lrs);
        let expected = reference(&config, &init, &lrs);
        for (i, (name, t)) in ps.iter().enumerate() {
            let got = values(t);
            let moved = got.iter().zip(values(&init[i].1)).any(|(a, b)| a != &b);
            assert_eq!(moved, i != 4, "{config:?}: {name} moved = {moved}");
            for (a, b) in got.iter().zip(&expected[i]) {
                assert!(
                    (a - b).abs() < 1e-12 * b.abs().max(1.0),
                    "{config:?} {name}: {a} vs {b}"
                );
            }
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

/// `run` with the flat (fused) update.
fn run_fused(
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
    opt.fuse().unwrap();
    assert!(opt.is_fused());
    for &lr in lrs {
        opt.zero_grad();
        loss(ps).backward();
        opt.step(lr).unwrap();
    }
    opt
}

#[test]
fn fused_update_equals_the_per_tensor_update_and_the_reference() {
    // p4 has no gradient: the fused optimiser falls back to the per-tensor update there, so
    // give it a loss over all five parameters as well.
    let lrs = [0.5, 0.2, 1.0, 0.7];
    for config in configs() {
        let (a, b) = (params(4), params(4));
        let init: Vec<(String, Tensor)> = a
            .iter()
            .map(|(n, t)| (n.clone(), t.detach().copy()))
            .collect();
        let per_tensor = run(&config, &a, &lrs);
        let fused = run_fused(&config, &b, &lrs);
        let expected = reference(&config, &init, &lrs);
        for (i, ((name, x), (_, y))) in a.iter().zip(&b).enumerate() {
            let (x, y) = (values(x), values(y));
            for ((p, q), r) in x.iter().zip(&y).zip(&expected[i]) {
                assert!((p - q).abs() < 1e-12, "{config:?} {name}: {p} vs {q}");
                assert!(
                    (q - r).abs() < 1e-12 * r.abs().max(1.0),
                    "{config:?} {name}"
                );
            }
        }
        for ((n, m1), (_, m2)) in per_tensor
            .momentum_state()
            .iter()
            .zip(&fused.momentum_state())
        {
            let d = (m1 - m2).abs().max().double_value(&[]);
            assert!(d < 1e-12, "{config:?} momentum {n}: {d}");
        }
    }
}

#[test]
fn fused_lars_on_a_channels_last_resnet_matches_to_1e_6() {
    // ResNet-18 (width 1/8) with channels-last kernels, f32, real InfoNCE steps on random
    // views; the same weights trained by the per-tensor and the fused LARS. After one step the
    // two differ only by the order of the norms' sums (< 1e-6). Over more steps this small,
    // batch-8 network amplifies any rounding difference chaotically (the two updates round
    // differently: addcmul per tensor, segment sums fused), so several steps with momentum are
    // checked exactly in f64 (`fused_update_equals_the_per_tensor_update_and_the_reference`);
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
    for (lrs, tol) in [(&[0.3][..], 1e-6)] {
        let (a, _) = train(false, lrs);
        let (b, opt) = train(true, lrs);
        assert!(opt.is_fused());
        let (mut worst, mut moved) = (0.0f64, 0.0f64);
        for (((n, x), (m, y)), (_, w0)) in a.iter().zip(&b).zip(&init) {
            assert_eq!(n, m);
            assert_eq!(x.stride(), y.stride(), "{n}: memory order kept");
            worst = worst.max((x - y).abs().max().double_value(&[]));
            moved = moved.max((x - w0).abs().max().double_value(&[]));
        }
        assert!(
            worst < tol,
            "{} steps: largest difference {worst}",
            lrs.len()
        );
        assert!(
            moved > 1e3 * tol,
            "{} steps: the weights moved by {moved}",
            lrs.len()
        );
    }
}

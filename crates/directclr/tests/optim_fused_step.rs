//! The optimiser's fused float32 update (one `addcmul` per pass) against the same update written
//! one operation at a time (d = g + λw, q, μ ← mμ + qd, w ← w − lr·μ), for LARS and SGD
//! (with Nesterov) over several steps, on parameters of the sizes of a real encoder: equal up
//! to float32 rounding.

use directclr::optim::{LarsConfig, OptimizerConfig, SgdConfig};
use tch::{Device, Kind, Tensor};

const SHAPES: [&[i64]; 4] = [&[64, 32, 3, 3], &[512, 512], &[128], &[7, 5]];

fn seeded(seed: i64, shape: &[i64]) -> Tensor {
    // A local generator: the global one is shared by tests running in parallel.
    let n: i64 = shape.iter().product();
    let v: Vec<f32> = (0..n)
        .map(|k| (((k + 1) * (seed * 2 + 13)) as f32 * 0.618).sin())
        .collect();
    Tensor::from_slice(&v).reshape(shape)
}

/// The gradient of L = Σ (a ⊙ w + ½ w²) is a + w.
fn backward(ps: &[Tensor], t: usize) {
    let mut loss = Tensor::zeros([], (Kind::Float, Device::Cpu));
    for (i, w) in ps.iter().enumerate() {
        let a = seeded((i + 10 * t) as i64, &w.size());
        loss = loss + (w * a).sum(Kind::Float) + (w * w).sum(Kind::Float) * 0.5;
    }
    loss.backward();
}

/// One step written operation by operation.
fn unfused(config: &OptimizerConfig, ps: &[Tensor], mus: &mut [Tensor], lr: f64) {
    let _g = tch::no_grad_guard();
    let (m, wd, nesterov, eta, ex) = match *config {
        OptimizerConfig::Lars(c) => (c.momentum, c.weight_decay, false, Some(c.eta), c.exclude_1d),
        OptimizerConfig::Sgd(c) => (c.momentum, c.weight_decay, c.nesterov, None, c.exclude_1d),
    };
    for (w, mu) in ps.iter().zip(mus.iter_mut()) {
        let g = w.grad();
        let excluded = ex && w.dim() == 1;
        let mut d = if wd != 0.0 && !excluded {
            &g + w * wd
        } else {
            g.copy()
        };
        if let (Some(eta), false) = (eta, excluded) {
            let (wn, dn) = (w.norm().double_value(&[]), d.norm().double_value(&[]));
            let q = if wn > 0.0 && dn > 0.0 {
                (wn as f32 * eta as f32) / dn as f32
            } else {
                1.0
            };
            d *= Tensor::from(q);
        }
        *mu = &*mu * m + &d;
        let update = if nesterov { &d + &*mu * m } else { mu.copy() };
        let mut w = w.shallow_clone();
        let _ = w.f_sub_(&(update * lr)).unwrap();
    }
}

/// max |a − b| over max |b|.
fn relative_gap(a: &Tensor, b: &Tensor) -> f64 {
    let gap = (a - b).abs().max().double_value(&[]);
    gap / b.abs().max().double_value(&[])
}

#[test]
fn fused_update_matches_the_operation_by_operation_update() {
    let configs = [
        OptimizerConfig::Lars(LarsConfig::default()),
        OptimizerConfig::Lars(LarsConfig {
            momentum: 0.8,
            weight_decay: 0.05,
            eta: 0.3,
            exclude_1d: false,
        }),
        OptimizerConfig::Sgd(SgdConfig {
            momentum: 0.9,
            weight_decay: 5e-4,
            nesterov: false,
            exclude_1d: true,
        }),
        OptimizerConfig::Sgd(SgdConfig {
            momentum: 0.9,
            weight_decay: 0.01,
            nesterov: true,
            exclude_1d: false,
        }),
    ];
    for config in configs {
        let make = || -> Vec<Tensor> {
            SHAPES
                .iter()
                .enumerate()
                .map(|(i, s)| seeded(i as i64 + 100, s).set_requires_grad(true))
                .collect()
        };
        let (fused, plain) = (make(), make());
        let mut opt = config
            .build(
                fused
                    .iter()
                    .enumerate()
                    .map(|(i, t)| (format!("p{i}"), t.shallow_clone()))
                    .collect(),
            )
            .unwrap();
        let mut mus: Vec<Tensor> = plain.iter().map(|t| t.zeros_like()).collect();
        for (t, lr) in [0.3, 1.0, 0.05].into_iter().enumerate() {
            opt.zero_grad();
            backward(&fused, t);
            opt.step(lr).unwrap();
            for w in &plain {
                w.shallow_clone().zero_grad();
            }
            backward(&plain, t);
            unfused(&config, &plain, &mut mus, lr);
        }
        for (i, (a, b)) in fused.iter().zip(&plain).enumerate() {
            let gap = relative_gap(a, b);
            println!("{config:?} p{i}: relative gap {gap:.2e}");
            // Float32 rounding only (fused multiply-adds round once where the plain form
            // rounds twice); a wrong term would show at 1e-3 or more.
            assert!(gap < 1e-6, "{config:?} p{i}: relative gap {gap:.2e}");
            assert!(a.isfinite().all().int64_value(&[]) == 1);
        }
    }
}

#[test]
fn zero_grad_drops_the_gradients_and_the_next_backward_writes_them_afresh() {
    let ps: Vec<Tensor> = SHAPES
        .iter()
        .enumerate()
        .map(|(i, s)| seeded(i as i64, s).set_requires_grad(true))
        .collect();
    let mut opt = OptimizerConfig::default()
        .build(
            ps.iter()
                .enumerate()
                .map(|(i, t)| (format!("p{i}"), t.shallow_clone()))
                .collect(),
        )
        .unwrap();
    backward(&ps, 0);
    assert!(ps.iter().all(|p| p.grad().defined()));
    opt.zero_grad();
    assert!(ps.iter().all(|p| !p.grad().defined()));
    // Fresh gradients equal a + w exactly (nothing left over from the first backward).
    backward(&ps, 1);
    for (i, p) in ps.iter().enumerate() {
        let expected = seeded((i + 10) as i64, &p.size()) + p.detach();
        assert!(p.grad().equal(&expected), "p{i}");
    }
}

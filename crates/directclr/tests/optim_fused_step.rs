//! The optimiser's fused float32 update (one `addcmul` per pass) against the same update written
//! one operation at a time (d = g + λw, q, μ ← mμ + qd, w ← w − lr·μ), for LARS and SGD
//! (with Nesterov) over several steps, on parameters of the sizes of a real encoder: each step
//! from the same state equal within a bound on float32 rounding.

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

const EPS32: f64 = f32::EPSILON as f64;

fn to_f64(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.detach().flatten(0, -1).to_kind(Kind::Double)).unwrap()
}

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

/// Per element, a bound on |Δw'| between two f32 implementations of one step from the same
/// state (w, μ), with gradient g = a + w, whatever order their sums take. With d = g + λw,
/// D_k = |a_k| + (1 + λ)|w_k| and u = ε32, each implementation rounds
/// - g and d by ≤ 5u·D_k;
/// - q = η‖w‖/‖d‖ (two sums of n squares in any order, γ_n; square roots; η in f32; a product
///   and a quotient) by a relative ρ ≤ (n + 6 + 5‖D‖/‖d‖)·u (ρ = 0 where q ≡ 1);
/// - μ' = mμ + q·d by ≤ 10u·M_k + ρ·q|d_k|, M_k = m|μ_k| + q·D_k;
/// - the step (μ', or q·d + mμ') and w' = w − lr·step: |δw'_k| ≤ 2u|w_k| + lr·(1 + m)·(14u·M_k
///   + ρ·q|d_k|).
///
/// Twice that for two implementations.
fn step_bound(config: &OptimizerConfig, w: &Tensor, mu: &Tensor, a: &Tensor, lr: f64) -> Vec<f64> {
    let (m, wd, eta, ex) = match *config {
        OptimizerConfig::Lars(c) => (c.momentum, c.weight_decay, Some(c.eta), c.exclude_1d),
        OptimizerConfig::Sgd(c) => (c.momentum, c.weight_decay, None, c.exclude_1d),
    };
    let excluded = ex && w.dim() == 1;
    let lambda = if excluded { 0.0 } else { wd };
    let (w, mu, a) = (to_f64(w), to_f64(mu), to_f64(a));
    let d: Vec<f64> = w.iter().zip(&a).map(|(w, a)| a + w + lambda * w).collect();
    let big_d: Vec<f64> = w
        .iter()
        .zip(&a)
        .map(|(w, a)| a.abs() + (1.0 + lambda) * w.abs())
        .collect();
    let (wn, dn) = (norm(&w), norm(&d));
    let (q, rho) = match eta {
        Some(eta) if !excluded && wn > 0.0 && dn > 0.0 => (
            eta * wn / dn,
            (w.len() as f64 + 6.0 + 5.0 * norm(&big_d) / dn) * EPS32,
        ),
        _ => (1.0, 0.0),
    };
    (0..w.len())
        .map(|k| {
            let mk = m * mu[k].abs() + q * big_d[k];
            2.0 * (2.0 * EPS32 * w[k].abs()
                + lr * (1.0 + m) * (14.0 * EPS32 * mk + rho * q * d[k].abs()))
        })
        .collect()
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
            // Every step starts both from the same state, the fused optimiser's (pure copies),
            // so that each step is compared within its own rounding bound (was: 1e-6 of max |w|
            // after three steps, a tolerance no bound gave: the norms of up to 262,144 terms
            // may round by up to n·ε32, and later steps amplify earlier differences).
            tch::no_grad(|| {
                for (p, f) in plain.iter().zip(&fused) {
                    p.shallow_clone().copy_(f);
                }
            });
            for (mu, (_, state)) in mus.iter_mut().zip(opt.momentum_state()) {
                *mu = state.copy();
            }
            let bounds: Vec<Vec<f64>> = fused
                .iter()
                .zip(&mus)
                .enumerate()
                .map(|(i, (w, mu))| {
                    step_bound(&config, w, mu, &seeded((i + 10 * t) as i64, &w.size()), lr)
                })
                .collect();
            opt.zero_grad();
            backward(&fused, t);
            opt.step(lr).unwrap();
            for w in &plain {
                w.shallow_clone().zero_grad();
            }
            backward(&plain, t);
            unfused(&config, &plain, &mut mus, lr);
            for (i, ((a, b), bound)) in fused.iter().zip(&plain).zip(&bounds).enumerate() {
                let (a, b) = (to_f64(a), to_f64(b));
                let mut worst = 0.0f64;
                for k in 0..a.len() {
                    let gap = (a[k] - b[k]).abs();
                    assert!(
                        gap <= bound[k],
                        "{config:?} step {t} p{i}[{k}]: {} vs {} (bound {:.1e})",
                        a[k],
                        b[k],
                        bound[k]
                    );
                    worst = worst.max(gap / bound[k]);
                }
                println!("{config:?} step {t} p{i}: largest gap / bound {worst:.2e}");
                assert!(a.iter().all(|v| v.is_finite()));
            }
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
    // Fresh gradients equal a + w exactly (nothing left over from the first backward): the
    // backward of ½·w·w gives ½w + ½w = w and that of a·w gives a, both exact; a + w is one
    // correctly rounded IEEE addition in both, so equality holds on every machine.
    backward(&ps, 1);
    for (i, p) in ps.iter().enumerate() {
        let expected = seeded((i + 10) as i64, &p.size()) + p.detach();
        assert!(p.grad().equal(&expected), "p{i}");
    }
}

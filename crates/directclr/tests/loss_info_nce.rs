//! InfoNCE against closed forms, a slow loop reference in f64, and finite differences.

use directclr::loss::{InfoNce, Negatives};
use tch::{Device, Kind, Tensor};

const ALL: [(bool, bool, Negatives); 8] = [
    (false, false, Negatives::CrossView),
    (false, true, Negatives::CrossView),
    (true, false, Negatives::CrossView),
    (true, true, Negatives::CrossView),
    (false, false, Negatives::NtXent),
    (false, true, Negatives::NtXent),
    (true, false, Negatives::NtXent),
    (true, true, Negatives::NtXent),
];

fn cfg(temperature: f64, (normalize, symmetric, negatives): (bool, bool, Negatives)) -> InfoNce {
    InfoNce {
        temperature,
        normalize,
        symmetric,
        negatives,
    }
}

fn rows(t: &Tensor) -> Vec<Vec<f64>> {
    let n = t.size()[0];
    (0..n)
        .map(|i| Vec::<f64>::try_from(t.get(i).to_kind(Kind::Double)).unwrap())
        .collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// −log( exp(s_pos) / Σ_c exp(s_c) ) over the candidates c.
fn nll(anchor: &[f64], positive: &[f64], candidates: &[&Vec<f64>], t: f64) -> f64 {
    let denom: f64 = candidates.iter().map(|c| (dot(anchor, c) / t).exp()).sum();
    -(dot(anchor, positive) / t - denom.ln())
}

/// A slow loop of the definitions: the authors' `cross_entropy(z1 @ z2.T / τ, arange(N))`,
/// symmetrised, and SimCLR's NT-Xent (2N − 1 candidates per anchor).
fn reference(c: &InfoNce, z1: &Tensor, z2: &Tensor) -> f64 {
    let norm = |v: Vec<f64>| {
        if c.normalize {
            let n = dot(&v, &v).sqrt().max(1e-12);
            v.iter().map(|x| x / n).collect()
        } else {
            v
        }
    };
    let a: Vec<Vec<f64>> = rows(z1).into_iter().map(norm).collect();
    let b: Vec<Vec<f64>> = rows(z2).into_iter().map(norm).collect();
    let n = a.len();
    let t = c.temperature;
    match c.negatives {
        Negatives::CrossView => {
            let l = |x: &Vec<Vec<f64>>, y: &Vec<Vec<f64>>| {
                (0..n)
                    .map(|i| nll(&x[i], &y[i], &y.iter().collect::<Vec<_>>(), t))
                    .sum::<f64>()
                    / n as f64
            };
            if c.symmetric {
                0.5 * l(&a, &b) + 0.5 * l(&b, &a)
            } else {
                l(&a, &b)
            }
        }
        Negatives::NtXent => {
            let all: Vec<&Vec<f64>> = a.iter().chain(b.iter()).collect();
            let anchors = if c.symmetric { 2 * n } else { n };
            let mut total = 0.0;
            for k in 0..anchors {
                let pos = (k + n) % (2 * n);
                let cands: Vec<&Vec<f64>> =
                    (0..2 * n).filter(|&j| j != k).map(|j| all[j]).collect();
                total += nll(all[k], all[pos], &cands, t);
            }
            total / anchors as f64
        }
    }
}

const EPS32: f64 = f32::EPSILON as f64;
const EPS64: f64 = f64::EPSILON;

/// Bound on |L̂ − L| for one implementation of the loss with unit roundoff ≤ `eps`, whatever
/// order its sums take, for rows of dimension d, n pairs, m ≤ 2n candidates and A ≤ 2n anchors:
/// - each logit s = ⟨x, y⟩/τ: a dot product of d terms (γ_d) and a quotient, and when
///   normalised, x/‖x‖ off by (d/2 + 2)ε per element: |δs| ≤ (2d + 7)·ε·S, S the largest
///   Σ_k |x_k||y_k|/τ over the pairs (1/τ for unit rows, Cauchy–Schwarz);
/// - each anchor's −s_pos + log Σ_c exp(s_c): 2·|δs|, the shift by the largest logit (2ε·S),
///   exponentials (2ε relative), a sum of m positive terms in any order (γ_m) and the log:
///   plus (m + 5)ε + 4ε·S;
/// - the mean of A non-negative terms (and the symmetric half-sum): plus (A + 2)ε·L.
///
/// So |δL| ≤ ε·[(4d + 18)·S + m + 5 + (A + 2)·L].
fn loss_bound(c: &InfoNce, z1: &Tensor, z2: &Tensor, eps: f64) -> f64 {
    let all: Vec<Vec<f64>> = rows(z1).into_iter().chain(rows(z2)).collect();
    let n = all.len() / 2;
    let d = all[0].len();
    let s = if c.normalize {
        1.0 / c.temperature
    } else {
        let mut s = 0.0f64;
        for x in &all {
            for y in &all {
                s = s.max(x.iter().zip(y).map(|(a, b)| (a * b).abs()).sum::<f64>());
            }
        }
        s / c.temperature
    };
    let loss = reference(c, z1, z2);
    eps * ((4 * d + 18) as f64 * s + (2 * n + 5) as f64 + (2 * n + 2) as f64 * loss.abs())
}

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

#[test]
fn identical_embeddings_give_log_n_and_log_2n_minus_1() {
    let n = 7;
    let z = Tensor::ones([n, 5], (Kind::Float, Device::Cpu)) * 0.3;
    for flags in ALL {
        let c = cfg(0.1, flags);
        let l = f64::try_from(c.loss(&z, &z).unwrap()).unwrap();
        let expected = match c.negatives {
            Negatives::CrossView => (n as f64).ln(),
            Negatives::NtXent => (2.0 * n as f64 - 1.0).ln(),
        };
        // f32: |δL| ≤ `loss_bound` (was 1e-5, below that bound).
        let bound = loss_bound(&c, &z, &z, EPS32);
        assert!(
            (l - expected).abs() <= bound,
            "{c:?}: {l} vs {expected} (bound {bound:.1e})"
        );
    }
}

#[test]
fn well_separated_pairs_give_zero_loss() {
    // Orthonormal embeddings, identical across views: at τ → 0 every anchor is certain. The
    // exact loss is log(1 + (m − 1)·e^(−1/τ)) < 1e-42; the computed one is within the f64
    // rounding bound of it (was: in [0, 1e-40), which needs exp(0) = 1 and a log of exactly 1
    // in every kernel: not guaranteed).
    let z = Tensor::eye(4, (Kind::Double, Device::Cpu));
    for flags in ALL {
        let c = cfg(0.01, flags);
        let l = f64::try_from(c.loss(&z, &z).unwrap()).unwrap();
        let bound = loss_bound(&c, &z, &z, EPS64);
        assert!(l.abs() <= bound, "{flags:?}: {l} (bound {bound:.1e})");
    }
}

#[test]
fn equals_slow_reference_in_f64() {
    for (k, flags) in ALL.iter().enumerate() {
        for (n, d, t) in [(1, 3, 0.5), (5, 3, 0.1), (8, 16, 0.2)] {
            let z1 = randn(10 + k as u64, &[n, d]);
            let z2 = randn(100 + k as u64, &[n, d]) * 0.5 + &z1;
            let c = cfg(t, *flags);
            let got = f64::try_from(c.loss(&z1, &z2).unwrap()).unwrap();
            let want = reference(&c, &z1, &z2);
            // Two f64 implementations (libtorch's and this loop), each within `loss_bound`
            // (was 1e-10 relative, looser than the bound).
            let bound = 2.0 * loss_bound(&c, &z1, &z2, EPS64);
            assert!(
                (got - want).abs() <= bound,
                "{c:?} n={n}: {got} vs {want} (bound {bound:.1e})"
            );
        }
    }
    // The authors' toy loss is exactly cross_entropy(z1 @ z2.T / τ, arange(N)).
    let (z1, z2) = (randn(1, &[6, 4]), randn(2, &[6, 4]));
    let toy = InfoNce {
        temperature: 0.1,
        normalize: false,
        symmetric: false,
        negatives: Negatives::CrossView,
    };
    let direct = (z1.mm(&z2.tr()) / 0.1)
        .log_softmax(-1, Kind::Double)
        .nll_loss(&Tensor::arange(6, (Kind::Int64, Device::Cpu)));
    let diff = f64::try_from(toy.loss(&z1, &z2).unwrap() - direct).unwrap();
    // Two f64 implementations, each within `loss_bound` (was 1e-12, a guess).
    let bound = 2.0 * loss_bound(&toy, &z1, &z2, EPS64);
    assert!(diff.abs() <= bound, "{diff} (bound {bound:.1e})");
}

#[test]
fn gradients_equal_finite_differences_in_f64() {
    let (n, d) = (4, 3);
    for (k, flags) in ALL.iter().enumerate() {
        let c = cfg(0.3, *flags);
        let z1 = randn(200 + k as u64, &[n, d]).set_requires_grad(true);
        let z2 = randn(300 + k as u64, &[n, d]).set_requires_grad(true);
        let loss = c.loss(&z1, &z2).unwrap();
        let grads = Tensor::run_backward(&[&loss], &[&z1, &z2], false, false);
        let h = 1e-6;
        // |fd − L'| ≤ rounding + truncation. Rounding: two f64 losses, each within
        // δL = `loss_bound`, so ≤ δL/h; autograd's own rounding ≤ 2a·δL (a below). Truncation
        // of the central difference: h²/6·|L'''|, with L = f(s) for logits s(t) along one
        // coordinate: |f'|₁ ≤ 2, |f''| ≤ 1, |f'''| ≤ 2 (softmax cumulants on unit range), so
        // |L'''| ≤ 2a³ + 3·a·b + 2c with a, b, c ≥ |s'|, |s''|, |s'''|: a = 2·max|z|/τ,
        // b = c = 0 unnormalised; a = 2/(rτ), b = 6/(r²τ), c = 30/(r³τ) for x/‖x‖, r the
        // smallest row norm. (was: 1e-7, below the rounding term for these inputs)
        let delta = loss_bound(&c, &z1.detach(), &z2.detach(), EPS64);
        let both = Tensor::cat(&[z1.detach(), z2.detach()], 0);
        let (a, b, cc) = if c.normalize {
            let r = f64::try_from(
                both.square()
                    .sum_dim_intlist(1, false, Kind::Double)
                    .sqrt()
                    .min(),
            )
            .unwrap();
            let t = c.temperature;
            (2.0 / (r * t), 6.0 / (r * r * t), 30.0 / (r * r * r * t))
        } else {
            (
                2.0 * f64::try_from(both.abs().max()).unwrap() / c.temperature,
                0.0,
                0.0,
            )
        };
        let tol =
            delta / h + 2.0 * a * delta + h * h / 6.0 * (2.0 * a.powi(3) + 3.0 * a * b + 2.0 * cc);
        for (which, g) in grads.iter().enumerate() {
            let g = Vec::<f64>::try_from(g.flatten(0, -1)).unwrap();
            for (e, &ge) in g.iter().enumerate() {
                let eval = |delta: f64| {
                    let mut a = z1.detach().copy();
                    let mut b = z2.detach().copy();
                    let target = if which == 0 { &mut a } else { &mut b };
                    let entry = target.view([-1]).get(e as i64);
                    let _ = entry
                        .shallow_clone()
                        .fill_(f64::try_from(&entry).unwrap() + delta);
                    f64::try_from(c.loss(&a, &b).unwrap()).unwrap()
                };
                let fd = (eval(h) - eval(-h)) / (2.0 * h);
                assert!(
                    (fd - ge).abs() <= tol,
                    "{c:?} z{} [{e}]: autograd {ge} vs fd {fd} (bound {tol:.1e})",
                    which + 1
                );
            }
        }
    }
}

#[test]
fn half_precision_is_upcast_and_bad_inputs_are_errors() {
    let z1 = randn(5, &[6, 8]);
    let z2 = randn(6, &[6, 8]);
    let c = InfoNce::authors();
    let (h1, h2) = (z1.to_kind(Kind::BFloat16), z2.to_kind(Kind::BFloat16));
    let l = c.loss(&h1, &h2).unwrap();
    assert_eq!(l.kind(), Kind::Float);
    // The loss of the bfloat16 values (exact in f64), computed in float32: within the f32
    // `loss_bound` of the f64 reference on those values (was: within 0.05 of the f64 loss
    // of the unrounded inputs, a tolerance no bound gave).
    let (h1, h2) = (h1.to_kind(Kind::Double), h2.to_kind(Kind::Double));
    let want = reference(&c, &h1, &h2);
    let bound = loss_bound(&c, &h1, &h2, EPS32) + loss_bound(&c, &h1, &h2, EPS64);
    let got = f64::try_from(l).unwrap();
    assert!(
        (got - want).abs() <= bound,
        "{got} vs {want} (bound {bound:.1e})"
    );

    assert!(c.loss(&z1, &randn(7, &[5, 8])).is_err());
    assert!(c.loss(&z1, &randn(7, &[6, 7])).is_err());
    assert!(c.loss(&z1.view([6, 2, 4]), &z2.view([6, 2, 4])).is_err());
    for t in [0.0, -0.1, f64::NAN, f64::INFINITY] {
        assert!(InfoNce {
            temperature: t,
            ..c
        }
        .loss(&z1, &z2)
        .is_err());
        // Checked once: the bad τ is refused by `checked` itself.
        assert!(InfoNce {
            temperature: t,
            ..c
        }
        .checked()
        .is_err());
    }
}

#[test]
fn checked_equals_the_checking_loss() {
    let (z1, z2) = (randn(11, &[6, 8]), randn(12, &[6, 8]));
    for (i, &form) in ALL.iter().enumerate() {
        let c = cfg(0.1 + 0.05 * i as f64, form);
        let checked = c.checked().unwrap();
        assert_eq!(checked.config(), &c);
        let (a, b) = (checked.loss(&z1, &z2).unwrap(), c.loss(&z1, &z2).unwrap());
        assert!(a.equal(&b), "{form:?}");
        // The shapes are still checked on every call.
        assert!(checked.loss(&z1, &randn(7, &[5, 8])).is_err());
    }
}

#[test]
fn config_serde() {
    let c: InfoNce = toml::from_str(
        "temperature = 0.5\nnormalize = true\nsymmetric = true\nnegatives = \"nt_xent\"",
    )
    .unwrap();
    assert_eq!(c, InfoNce::nt_xent(0.5));
    assert_eq!(InfoNce::default(), InfoNce::authors());
    assert_eq!(
        toml::from_str::<InfoNce>(&toml::to_string(&c).unwrap()).unwrap(),
        c
    );
}

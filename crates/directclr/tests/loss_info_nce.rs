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
        assert!((l - expected).abs() < 1e-5, "{c:?}: {l} vs {expected}");
    }
}

#[test]
fn well_separated_pairs_give_zero_loss() {
    // Orthonormal embeddings, identical across views: at τ → 0 every anchor is certain.
    let z = Tensor::eye(4, (Kind::Double, Device::Cpu));
    for flags in ALL {
        let l = f64::try_from(cfg(0.01, flags).loss(&z, &z).unwrap()).unwrap();
        assert!((0.0..1e-40).contains(&l), "{flags:?}: {l}");
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
            assert!(
                (got - want).abs() <= 1e-10 * want.abs().max(1.0),
                "{c:?} n={n}: {got} vs {want}"
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
    assert!(diff.abs() < 1e-12, "{diff}");
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
                    (fd - ge).abs() < 1e-7,
                    "{c:?} z{} [{e}]: autograd {ge} vs fd {fd}",
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
    let full = f64::try_from(c.loss(&z1, &z2).unwrap()).unwrap();
    let l = c
        .loss(&z1.to_kind(Kind::BFloat16), &z2.to_kind(Kind::BFloat16))
        .unwrap();
    assert_eq!(l.kind(), Kind::Float);
    assert!((f64::try_from(l).unwrap() - full).abs() < 0.05);

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

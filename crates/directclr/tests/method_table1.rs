//! The Table 1 methods: shapes, the exact maps r → z, parameters and their names, the frozen
//! low-rank projector, errors for impossible dimensions, configs; and the online probe.

use directclr::method::Method;
use directclr::model::{FixedLowRankProjector, OnlineProbe, Projector};
use directclr::Error;
use tch::{nn, Device, Kind, Tensor};

const D: i64 = 24;

/// A representation (non-negative, like ResNet's) from a local seeded generator (the global
/// libtorch generator is shared by the tests running in parallel).
fn r(seed: u64, batch: i64) -> Tensor {
    use rand::SeedableRng;
    use rand_distr::Distribution;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let v: Vec<f32> = (0..batch * D)
        .map(|_| rand_distr::StandardNormal.sample(&mut rng))
        .collect();
    Tensor::from_slice(&v).reshape([batch, D]).relu()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    f64::try_from(
        (a.to_kind(Kind::Double) - b.to_kind(Kind::Double))
            .abs()
            .max(),
    )
    .unwrap()
}

const EPS32: f64 = f32::EPSILON as f64;

fn f64_of(t: &Tensor) -> Tensor {
    t.detach().to_kind(Kind::Double)
}

/// |A|·|B|ᵀ in f64: what the rounding error of the f32 product A·Bᵀ is measured against.
fn abs_mm_t(a: &Tensor, b: &Tensor) -> Tensor {
    f64_of(a).abs().mm(&f64_of(b).abs().tr())
}

fn max_of(t: &Tensor) -> f64 {
    f64::try_from(t.abs().max()).unwrap()
}

/// Bound on the error of a float32 BN (batch statistics, biased variance, eps 1e-5, γ = 1,
/// β = 0) of h `[N, C]` whose input is off by ≤ `input_err` per element, against the exact BN
/// of `h` (f64): the BN map of a column has Jacobian (I − 11ᵀ/N − ĥĥᵀ/N)/σ, of norm ≤ 1/σ,
/// so ≤ √N·input_err/σ_j; its own rounding (means of N terms, γ_N, a square root, a
/// difference and a quotient) ≤ (2N + 8)·ε32·max|ĥ|. Returns (BN(h) in f64, bound).
fn bn_with_bound(h: &Tensor, input_err: f64) -> (Tensor, f64) {
    let n = h.size()[0] as f64;
    let mean = h.mean_dim(0, true, Kind::Double);
    let var = (h - &mean).square().mean_dim(0, true, Kind::Double);
    let sigma = (var + 1e-5).sqrt();
    let out = (h - mean) / &sigma;
    let sigma_min = f64::try_from(sigma.min()).unwrap();
    let bound = n.sqrt() * input_err / sigma_min + (2.0 * n + 8.0) * EPS32 * max_of(&out);
    (out, bound)
}

fn all_methods() -> Vec<(Method, i64)> {
    vec![
        (
            Method::SimclrMlp {
                hidden_dim: None,
                out_dim: 8,
            },
            8,
        ),
        (
            Method::SimclrMlp {
                hidden_dim: Some(16),
                out_dim: 8,
            },
            8,
        ),
        (Method::SimclrLinear { out_dim: 8 }, 8),
        (Method::SimclrNoProjector, D),
        (Method::DirectClr { d0: 10 }, 10),
        (Method::FixedLowRank { rank: 10, seed: 3 }, D),
        (Method::TrainableDiagonal, D),
    ]
}

#[test]
fn every_method_maps_r_to_z_of_the_documented_shape() {
    for (m, out) in all_methods() {
        let vs = nn::VarStore::new(Device::Cpu);
        let head = m.build(&vs.root().sub("projector"), D).unwrap();
        assert_eq!(m.embed_dim(D).unwrap(), out);
        assert_eq!((head.in_dim(), head.out_dim()), (D, out));
        for train in [true, false] {
            let z = head.embed(&r(1, 6), train).unwrap();
            assert_eq!(z.size(), vec![6, out], "{m:?}");
        }
        // Wrong input dimension: an error, not a panic.
        let bad = Tensor::zeros([6, D + 1], (Kind::Float, Device::Cpu));
        assert!(matches!(
            head.embed(&bad, false),
            Err(Error::InvalidConfig { .. })
        ));
        // The store holds the head's tensors under the build path.
        let vars = vs.variables();
        assert_eq!(vars.len(), head.named_tensors().len());
        for (name, t) in head.named_tensors() {
            assert_eq!(vars[&format!("projector.{name}")].size(), t.size());
        }
    }
}

#[test]
fn parameters_and_names_follow_the_authors_modules() {
    let names = |m: Method| {
        let vs = nn::VarStore::new(Device::Cpu);
        let head = m.build(&vs.root(), D).unwrap();
        let trainable = vs.trainable_variables().len();
        (
            head.named_tensors()
                .iter()
                .map(|(n, t)| (n.clone(), t.size()))
                .collect::<Vec<_>>(),
            trainable,
        )
    };
    // Sequential(Linear(D, h, bias=False), BatchNorm1d(h), ReLU, Linear(h, o, bias=False), BatchNorm1d(o))
    let (mlp, trainable) = names(Method::SimclrMlp {
        hidden_dim: Some(16),
        out_dim: 8,
    });
    let expected: Vec<(String, Vec<i64>)> = [
        ("0.weight", vec![16, D]),
        ("1.weight", vec![16]),
        ("1.bias", vec![16]),
        ("1.running_mean", vec![16]),
        ("1.running_var", vec![16]),
        ("1.num_batches_tracked", vec![]),
        ("3.weight", vec![8, 16]),
        ("4.weight", vec![8]),
        ("4.bias", vec![8]),
        ("4.running_mean", vec![8]),
        ("4.running_var", vec![8]),
        ("4.num_batches_tracked", vec![]),
    ]
    .into_iter()
    .map(|(n, s)| (n.to_string(), s))
    .collect();
    assert_eq!(mlp, expected);
    assert_eq!(trainable, 6);
    assert_eq!(
        names(Method::SimclrLinear { out_dim: 8 }),
        (vec![("weight".into(), vec![8, D])], 1)
    );
    assert_eq!(names(Method::SimclrNoProjector), (vec![], 0));
    assert_eq!(names(Method::DirectClr { d0: 5 }), (vec![], 0));
    // Frozen: a buffer, not trainable, not in any optimiser.
    assert_eq!(
        names(Method::FixedLowRank { rank: 5, seed: 0 }),
        (vec![("weight".into(), vec![D, D])], 0)
    );
    assert_eq!(
        names(Method::TrainableDiagonal),
        (vec![("weight".into(), vec![D])], 1)
    );
}

#[test]
fn maps_equal_their_definitions() {
    let x = r(2, 7);
    let z_of = |m: Method, train: bool| {
        let vs = nn::VarStore::new(Device::Cpu);
        let head = m.build(&vs.root(), D).unwrap();
        let z = head.embed(&x, train).unwrap();
        let weight = head.named_tensors().first().map(|(_, t)| t.copy());
        (z, weight, head)
    };
    // The next three are pure copies, slices or products by exactly 1: exact on every machine.
    // z = r
    assert!(z_of(Method::SimclrNoProjector, true).0.equal(&x));
    // z = r[:, :d0]
    assert!(z_of(Method::DirectClr { d0: 9 }, true)
        .0
        .equal(&x.narrow(1, 0, 9)));
    // z = r ⊙ 1 at initialisation
    assert!(z_of(Method::TrainableDiagonal, true).0.equal(&x));
    // z = r Wᵀ, W ~ U(−1/√D, 1/√D)
    let (z, w, _) = z_of(Method::SimclrLinear { out_dim: 5 }, true);
    let w = w.unwrap();
    // Two f32 products of D terms (γ_D each): ≤ 2·D·ε32·max(|x||W|ᵀ) (was 1e-6, below it).
    let bound = 2.0 * D as f64 * EPS32 * max_of(&abs_mm_t(&x, &w));
    assert!(max_diff(&z, &x.mm(&w.tr())) <= bound);
    // The f32 bound of the uniform draw is 1/√D rounded: ≤ (1 + ε32)/√D (was ≤ 1/√D exactly).
    assert!(f64::try_from(w.abs().max()).unwrap() <= (1.0 + EPS32) / (D as f64).sqrt());
    // The MLP in training mode: batch statistics (biased variance, eps 1e-5), γ = 1, β = 0.
    let (z, _, head) = z_of(
        Method::SimclrMlp {
            hidden_dim: Some(16),
            out_dim: 5,
        },
        true,
    );
    let t = head.named_tensors();
    // The definition in f64 (exact to ~1e-15), and a bound on the f32 forward's error: the
    // first product (D terms, γ_D), BN, ReLU (1-Lipschitz), the second product (16 terms:
    // the input error times max row Σ|W₁| plus γ_16), BN (see `bn_with_bound`). (was 1e-4, a
    // guess without a bound: BN amplifies errors by 1/σ)
    let (w0, w1) = (f64_of(&t[0].1), f64_of(&t[6].1));
    let h1 = f64_of(&x).mm(&w0.tr());
    let e_h1 = D as f64 * EPS32 * max_of(&abs_mm_t(&x, &t[0].1));
    let (a1, e_a1) = bn_with_bound(&h1, e_h1);
    let a1 = a1.relu();
    let h2 = a1.mm(&w1.tr());
    let row_sum = max_of(&w1.abs().sum_dim_intlist(1, false, Kind::Double));
    let e_h2 = e_a1 * row_sum + 16.0 * EPS32 * max_of(&abs_mm_t(&a1, &w1));
    let (expected, bound) = bn_with_bound(&h2, e_h2);
    assert!(
        max_diff(&z, &expected) <= bound,
        "{} (bound {bound:.1e})",
        max_diff(&z, &expected)
    );
    // ... and it updated the running statistics once.
    assert_eq!(i64::try_from(&t[5].1).unwrap(), 1);
    // The running mean moved off its exact zeros (by ~0.1 × a batch mean): not a rounding question.
    assert!(f64::try_from(t[3].1.abs().sum(Kind::Float)).unwrap() > 0.0);
}

#[test]
fn fixed_low_rank_projector_has_rank_d0_unit_singular_values_and_is_seeded() {
    let m = FixedLowRankProjector::matrix(D, 10, 7).unwrap();
    let (_, s, _) = m.svd(true, false);
    let s = Vec::<f64>::try_from(s).unwrap();
    for (k, v) in s.iter().enumerate() {
        let expected = if k < 10 { 1.0 } else { 0.0 };
        // M = U_r V_rᵀ from Householder QR factors (‖QᵀQ − I‖ ≤ D·ε64 each), a product of r
        // terms (γ_r) and an SVD (backward error D·ε64·‖M‖): |σ − σ_exact| ≤
        // 2ε64·(3D + r) < 4e-14 ≤ 1e-12 (comment only: the tolerance holds).
        assert!((v - expected).abs() < 1e-12, "σ_{k} = {v}");
    }
    // Reproducible from the seed; another seed gives other singular vectors.
    // Exact: the same seed, the same code path on one machine (determinism).
    assert!(m.equal(&FixedLowRankProjector::matrix(D, 10, 7).unwrap()));
    // Different random matrices differ by O(1), far above rounding.
    assert!(max_diff(&m, &FixedLowRankProjector::matrix(D, 10, 8).unwrap()) > 0.1);
    // The built head applies that matrix, z = M r, and the loss cannot move it.
    let vs = nn::VarStore::new(Device::Cpu);
    let head = Method::FixedLowRank { rank: 10, seed: 7 }
        .build(&vs.root(), D)
        .unwrap();
    let Projector::FixedLowRank(p) = head.projector() else {
        panic!()
    };
    assert!(!p.weight().requires_grad());
    let x = r(3, 5);
    let z = head.embed(&x, true).unwrap();
    // Two f32 products of D terms: ≤ 2·D·ε32·max(|x||M|ᵀ) (was 1e-5, below that bound).
    let bound = 2.0 * D as f64 * EPS32 * max_of(&abs_mm_t(&x, &m));
    assert!(max_diff(&z, &x.mm(&m.to_kind(Kind::Float).tr())) <= bound);
    // Inner products of z equal those of the rank-d0 coordinates Vᵀ r: ⟨Mr, Mr'⟩ = r MᵀM r'.
    // With P = |x|·|M|ᵀ·|M|·|x|ᵀ: z zᵀ (M to f32, two products of D terms) is off by
    // ≤ (3D + 2)·ε32·P, x·(MᵀM)·xᵀ (MᵀM in f64, to f32, two products of D terms) by
    // ≤ (2D + 2)·ε32·P: together ≤ (5D + 4)·ε32·P (was 1e-4, below that bound).
    let gram = z.mm(&z.tr());
    let mtm = m.tr().mm(&m).to_kind(Kind::Float);
    let xm = abs_mm_t(&x, &m);
    let bound = (5 * D + 4) as f64 * EPS32 * max_of(&xm.mm(&xm.tr()));
    assert!(max_diff(&gram, &x.mm(&mtm).mm(&x.tr())) <= bound);
}

#[test]
fn impossible_dimensions_are_config_errors() {
    let cases = [
        (Method::DirectClr { d0: D + 1 }, "d0"),
        (Method::DirectClr { d0: 0 }, "d0"),
        (
            Method::FixedLowRank {
                rank: D + 1,
                seed: 0,
            },
            "rank",
        ),
        (Method::SimclrLinear { out_dim: 0 }, "out_dim"),
        (
            Method::SimclrMlp {
                hidden_dim: Some(-3),
                out_dim: 8,
            },
            "hidden_dim",
        ),
        (
            Method::SimclrMlp {
                hidden_dim: None,
                out_dim: 0,
            },
            "out_dim",
        ),
    ];
    for (m, field) in cases {
        let vs = nn::VarStore::new(Device::Cpu);
        let err = m.build(&vs.root(), D).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidConfig { field: f, .. } if f == field),
            "{m:?}: {err}"
        );
        assert!(vs.variables().is_empty(), "nothing is built on error");
    }
    // The paper's d0 = 360 fits ResNet-50's 2048 but not a narrow ResNet-18.
    assert_eq!(Method::default().embed_dim(2048).unwrap(), 360);
    assert!(Method::default().embed_dim(256).is_err());
}

#[test]
fn method_configs_round_trip_through_toml() {
    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Wrap {
        method: Method,
    }
    for (m, _) in all_methods() {
        let w = Wrap { method: m };
        let text = toml::to_string(&w).unwrap();
        assert_eq!(toml::from_str::<Wrap>(&text).unwrap(), w, "{text}");
    }
    let parsed = |s: &str| toml::from_str::<Wrap>(s).map(|w| w.method);
    assert_eq!(
        parsed("[method]\nkind = \"direct_clr\"").unwrap(),
        Method::DirectClr { d0: 360 }
    );
    assert_eq!(
        parsed("[method]\nkind = \"simclr_mlp\"").unwrap(),
        Method::SimclrMlp {
            hidden_dim: None,
            out_dim: 128
        }
    );
    assert_eq!(
        parsed("[method]\nkind = \"simclr_linear\"").unwrap(),
        Method::SimclrLinear { out_dim: 128 }
    );
    assert_eq!(
        parsed("[method]\nkind = \"fixed_low_rank\"").unwrap(),
        Method::FixedLowRank { rank: 360, seed: 0 }
    );
    assert!(parsed("[method]\nkind = \"direct_clr\"\ndim = 3").is_err());
    assert!(parsed("[method]\nkind = \"group\"").is_err());
}

#[test]
fn online_probe_is_a_linear_head_on_detached_r() {
    tch::manual_seed(4);
    let vs = nn::VarStore::new(Device::Cpu);
    let probe = OnlineProbe::new(&vs.root().sub("online_head"), D, 5).unwrap();
    let names: Vec<_> = probe
        .named_tensors()
        .iter()
        .map(|(n, t)| (n.clone(), t.size()))
        .collect();
    assert_eq!(
        names,
        vec![
            ("weight".to_string(), vec![5, D]),
            ("bias".to_string(), vec![5])
        ]
    );
    let x = r(5, 8).set_requires_grad(true);
    let labels = Tensor::from_slice(&[0i64, 1, 2, 3, 4, 0, 1, 2]);
    let (loss, acc) = probe.loss_and_accuracy(&x, &labels).unwrap();
    let (w, b) = (&probe.named_tensors()[0].1, &probe.named_tensors()[1].1);
    let logits = x.detach().mm(&w.tr()) + b;
    let expected = logits.log_softmax(-1, Kind::Float).nll_loss(&labels);
    // Two f32 implementations. Logits (D products and a bias): each ≤ e = (D + 1)·ε32·
    // max(|x||W|ᵀ + |b|); the cross-entropy of a row, 2-Lipschitz in the logits, plus its own
    // rounding (shift by the largest logit S, 5 exponentials, their sum, a log): 2e + (10 +
    // 4S)·ε32; the mean of 8: + 10ε32·L. Twice for the two. (was 1e-6, below that bound)
    let e = (D + 1) as f64 * EPS32 * (max_of(&abs_mm_t(&x, w)) + max_of(b));
    let loss_bound = |l: &Tensor| {
        2.0 * (2.0 * e + (10.0 + 4.0 * max_of(&logits)) * EPS32 + 10.0 * EPS32 * max_of(l))
    };
    assert!(max_diff(&loss, &expected) <= loss_bound(&expected));
    // The accuracy compares argmaxes: machine-independent where no two leading logits are
    // closer than the two implementations' logit errors (2e).
    let top2 = logits.topk(2, -1, true, true).0;
    let gap = f64::try_from((top2.select(1, 0) - top2.select(1, 1)).min()).unwrap();
    assert!(gap > 2.0 * e, "near tie of logits: {gap} vs {e}");
    let argmax = Vec::<i64>::try_from(logits.argmax(-1, false)).unwrap();
    let correct = argmax
        .iter()
        .zip([0i64, 1, 2, 3, 4, 0, 1, 2])
        .filter(|(a, b)| **a == *b)
        .count();
    // k/8 is exact in f32 (a sum of 0/1 values, a division by a power of 2): the 1e-7 only
    // spells out "equal" (comment only).
    assert!((f64::try_from(&acc).unwrap() - correct as f64 / 8.0).abs() < 1e-7);
    // The gradient reaches the probe only, never r (the encoder).
    loss.backward();
    assert!(!x.grad().defined());
    assert!(w.grad().defined() && b.grad().defined());
    // Unlabelled samples (STL-10's unlabeled split) are left out of loss and accuracy.
    let partial = Tensor::from_slice(&[0i64, -1, 2, -1, 4, 0, -1, 2]);
    let (l2, a2) = probe.loss_and_accuracy(&x, &partial).unwrap();
    let keep = Tensor::from_slice(&[0i64, 2, 4, 5, 7]);
    let sub_logits = logits.index_select(0, &keep);
    let sub_labels = partial.index_select(0, &keep);
    let expected = sub_logits
        .log_softmax(-1, Kind::Float)
        .nll_loss(&sub_labels);
    assert!(max_diff(&l2, &expected) <= loss_bound(&expected)); // as above (was 1e-6)
    let hits = sub_logits
        .argmax(-1, false)
        .eq_tensor(&sub_labels)
        .to_kind(Kind::Float)
        .mean(Kind::Float);
    // k/5 in f32, each correctly rounded (≤ 2⁻²⁵ off for k/5 ≤ 1): |Δ| ≤ 2⁻²⁴ < 1e-7
    // (comment only).
    assert!(max_diff(&a2, &hits) < 1e-7);
    let none = Tensor::from_slice(&[-1i64; 8]);
    let (l3, a3) = probe.loss_and_accuracy(&x, &none).unwrap();
    // Exact: every term is multiplied by 0 and the sum divided by 1.
    assert_eq!(
        (f64::try_from(l3).unwrap(), f64::try_from(a3).unwrap()),
        (0.0, 0.0)
    );
    // Errors.
    assert!(probe
        .loss_and_accuracy(
            &Tensor::zeros([8, D + 1], (Kind::Float, Device::Cpu)),
            &labels
        )
        .is_err());
    assert!(probe
        .loss_and_accuracy(&x, &labels.narrow(0, 0, 4))
        .is_err());
    assert!(OnlineProbe::new(&vs.root().sub("p2"), D, 1).is_err());
}

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
    f64::try_from((a - b).abs().max()).unwrap()
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
    assert!(max_diff(&z, &x.mm(&w.tr())) < 1e-6);
    assert!(f64::try_from(w.abs().max()).unwrap() <= 1.0 / (D as f64).sqrt());
    // The MLP in training mode: batch statistics (biased variance, eps 1e-5), γ = 1, β = 0.
    let (z, _, head) = z_of(
        Method::SimclrMlp {
            hidden_dim: Some(16),
            out_dim: 5,
        },
        true,
    );
    let t = head.named_tensors();
    let bn = |h: Tensor| {
        let mean = h.mean_dim(0, true, Kind::Float);
        let var = (&h - &mean).square().mean_dim(0, true, Kind::Float);
        (h - mean) / (var + 1e-5).sqrt()
    };
    let expected = bn(bn(x.mm(&t[0].1.tr())).relu().mm(&t[6].1.tr()));
    assert!(
        max_diff(&z, &expected) < 1e-4,
        "{}",
        max_diff(&z, &expected)
    );
    // ... and it updated the running statistics once.
    assert_eq!(i64::try_from(&t[5].1).unwrap(), 1);
    assert!(f64::try_from(t[3].1.abs().sum(Kind::Float)).unwrap() > 0.0);
}

#[test]
fn fixed_low_rank_projector_has_rank_d0_unit_singular_values_and_is_seeded() {
    let m = FixedLowRankProjector::matrix(D, 10, 7).unwrap();
    let (_, s, _) = m.svd(true, false);
    let s = Vec::<f64>::try_from(s).unwrap();
    for (k, v) in s.iter().enumerate() {
        let expected = if k < 10 { 1.0 } else { 0.0 };
        assert!((v - expected).abs() < 1e-12, "σ_{k} = {v}");
    }
    // Reproducible from the seed; another seed gives other singular vectors.
    assert!(m.equal(&FixedLowRankProjector::matrix(D, 10, 7).unwrap()));
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
    assert!(max_diff(&z, &x.mm(&m.to_kind(Kind::Float).tr())) < 1e-5);
    // Inner products of z equal those of the rank-d0 coordinates Vᵀ r: ⟨Mr, Mr'⟩ = r MᵀM r'.
    let gram = z.mm(&z.tr());
    let mtm = m.tr().mm(&m).to_kind(Kind::Float);
    assert!(max_diff(&gram, &x.mm(&mtm).mm(&x.tr())) < 1e-4);
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
    assert!(max_diff(&loss, &expected) < 1e-6);
    let argmax = Vec::<i64>::try_from(logits.argmax(-1, false)).unwrap();
    let correct = argmax
        .iter()
        .zip([0i64, 1, 2, 3, 4, 0, 1, 2])
        .filter(|(a, b)| **a == *b)
        .count();
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
    assert!(max_diff(&l2, &expected) < 1e-6);
    let hits = sub_logits
        .argmax(-1, false)
        .eq_tensor(&sub_labels)
        .to_kind(Kind::Float)
        .mean(Kind::Float);
    assert!(max_diff(&a2, &hits) < 1e-7);
    let none = Tensor::from_slice(&[-1i64; 8]);
    let (l3, a3) = probe.loss_and_accuracy(&x, &none).unwrap();
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

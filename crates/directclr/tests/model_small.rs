//! The small encoders of the collapse ladder (`[model] arch = "linear" | "deep_linear" | "mlp" | "conv" |
//! "cnn" | "residual_cnn"`): the `[model]` table, the forwards against loop references, the
//! plain and residual networks' structure, and a run of each through the one training loop.

use std::path::Path;

use directclr::eval::{Space, TrainedModel, Weights};
use directclr::model::{EncoderConfig, ResNetConfig, SmallArch, SmallConfig, SmallEncoder, Stem};
use directclr::train::{self, MetricsKind, MetricsLine, RunOptions, TrainConfig};
use tch::{nn, Device, Kind, Tensor};

mod common;
mod config_util;
mod tolerance;
use common::Tiny;
use config_util::field_of;
use tolerance::EPS32;

/// Initial weights come from libtorch's one process-wide generator: the tests that draw from
/// it hold this lock.
static GENERATOR: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn generator() -> std::sync::MutexGuard<'static, ()> {
    GENERATOR.lock().unwrap_or_else(|e| e.into_inner())
}

fn parse(model: &str) -> directclr::Result<TrainConfig> {
    let text = Tiny {
        model: Some(model),
        ..Tiny::default()
    }
    .toml();
    TrainConfig::from_toml(&text, Path::new("small.toml"))
}

fn small(arch: SmallArch, dim: i64, hidden: i64, stages: usize) -> EncoderConfig {
    EncoderConfig::Small(SmallConfig {
        arch,
        dim,
        hidden,
        stages,
        zero_init_residual: true,
        final_relu: true,
    })
}

#[test]
fn the_model_table_reads_each_family_and_refuses_the_other_familys_keys() {
    assert_eq!(
        parse("arch = \"mlp\"\ndim = 32\nhidden = 100")
            .unwrap()
            .model,
        small(SmallArch::Mlp, 32, 100, 4)
    );
    assert_eq!(
        parse("arch = \"residual_cnn\"\nstages = 3").unwrap().model,
        small(SmallArch::ResidualCnn, 64, 512, 3)
    );
    assert_eq!(
        parse("arch = \"residual_cnn\"\nzero_init_residual = false")
            .unwrap()
            .model,
        EncoderConfig::Small(SmallConfig {
            zero_init_residual: false,
            ..SmallConfig::new(SmallArch::ResidualCnn)
        })
    );
    assert_eq!(
        parse("arch = \"cnn\"\nfinal_relu = false").unwrap().model,
        EncoderConfig::Small(SmallConfig {
            final_relu: false,
            ..SmallConfig::new(SmallArch::Cnn)
        })
    );
    assert_eq!(
        parse("arch = \"deep_linear\"\nhidden = 7").unwrap().model,
        small(SmallArch::DeepLinear, 64, 7, 4)
    );
    assert_eq!(
        parse("arch = \"linear\"").unwrap().model,
        small(SmallArch::Linear, 64, 512, 4)
    );
    // No arch: the paper's ResNet-50, as before the small encoders.
    assert_eq!(
        parse("stem = \"cifar\"").unwrap().model,
        EncoderConfig::ResNet(ResNetConfig {
            stem: Stem::Cifar,
            ..ResNetConfig::default()
        })
    );
    for (body, field) in [
        ("arch = \"mlp\"\nstem = \"cifar\"", "model.stem"),
        (
            "arch = \"conv\"\nwidth_multiplier = 0.5",
            "model.width_multiplier",
        ),
        ("arch = \"linear\"\nhidden = 10", "model.hidden"),
        ("arch = \"deep_linear\"\nstages = 2", "model.stages"),
        ("arch = \"mlp\"\nstages = 2", "model.stages"),
        (
            "arch = \"cnn\"\nzero_init_residual = true",
            "model.zero_init_residual",
        ),
        ("arch = \"resnet18\"\ndim = 10", "model.dim"),
        ("arch = \"mlp\"\nfinal_relu = false", "model.final_relu"),
        ("arch = \"conv\"\nfinal_relu = true", "model.final_relu"),
        (
            "arch = \"resnet18\"\nfinal_relu = false",
            "model.final_relu",
        ),
        ("arch = \"transformer\"", "model.arch"),
    ] {
        let e = parse(body).unwrap_err();
        let text = e.to_string();
        assert_eq!(field_of(e), field, "{body}: {text}");
    }
    let e = parse("arch = \"transformer\"").unwrap_err().to_string();
    assert!(e.contains("resnet18") && e.contains("residual_cnn"), "{e}");
}

#[test]
fn impossible_small_encoders_are_refused_naming_the_field() {
    for (body, field) in [
        // 3·32²·100,000 weights: over the bound of the dense layers.
        ("arch = \"mlp\"\nhidden = 100000", "model.hidden"),
        ("arch = \"linear\"\ndim = 0", "model.dim"),
        ("arch = \"cnn\"\ndim = 60", "model.dim"),
        ("arch = \"cnn\"\nstages = 0", "model.stages"),
        (
            "arch = \"residual_cnn\"\nstages = 7\ndim = 64",
            "model.stages",
        ),
    ] {
        let e = parse(body).unwrap().check().unwrap_err();
        let text = e.to_string();
        assert_eq!(field_of(e), field, "{body}: {text}");
    }
    // 6 stages halve 32 px five times: 1 pixel left, accepted; 64 px crops are not needed.
    parse("arch = \"cnn\"\nstages = 6")
        .unwrap()
        .check()
        .unwrap();
}

#[test]
fn a_resnet_model_table_is_written_back_as_before_and_a_small_one_round_trips() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/fashion-mnist-quickstart.toml"),
    )
    .unwrap();
    let c = TrainConfig::from_toml(&text, Path::new("quickstart.toml")).unwrap();
    let out = c.to_toml().unwrap();
    assert!(
        out.contains(
            "[model]\narch = \"resnet18\"\nstem = \"cifar\"\nwidth_multiplier = 0.125\n\
             zero_init_residual = true\n"
        ),
        "{out}"
    );
    for body in [
        "arch = \"mlp\"\ndim = 48\nhidden = 96",
        "arch = \"cnn\"\nstages = 2\ndim = 16",
        "arch = \"residual_cnn\"\nzero_init_residual = false",
        "arch = \"residual_cnn\"",
        "arch = \"residual_cnn\"\nfinal_relu = false",
        "arch = \"conv\"",
    ] {
        let c = parse(body).unwrap();
        let back = TrainConfig::from_toml(&c.to_toml().unwrap(), Path::new("back.toml")).unwrap();
        assert_eq!(back, c, "{body}");
    }
    // The default (a final ReLU) is not written, so run folders written before the key existed
    // read back as they were written.
    let out = parse("arch = \"cnn\"").unwrap().to_toml().unwrap();
    assert!(!out.contains("final_relu"), "{out}");
}

/// Uniform values in [−1, 1) from a seeded libtorch generator, f32.
fn uniform(shape: &[i64], seed: i64) -> Tensor {
    tch::manual_seed(seed);
    Tensor::rand(shape, (Kind::Float, Device::Cpu)) * 2.0 - 1.0
}

fn values(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.to_kind(Kind::Double).flatten(0, -1)).unwrap()
}

fn tensor<'a>(e: &'a SmallEncoder, name: &str) -> &'a Tensor {
    &e.named_tensors()
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no tensor {name}"))
        .1
}

/// y = W x + b by loops, with Σ|W||x| + |b| for the rounding bound. `w` is `[out, in]`.
fn dense_loop(w: &[f64], b: &[f64], x: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let n = x.len();
    b.iter()
        .enumerate()
        .map(|(o, bo)| {
            let row = &w[o * n..(o + 1) * n];
            let y: f64 = row.iter().zip(x).map(|(a, c)| a * c).sum::<f64>() + bo;
            let s: f64 = row.iter().zip(x).map(|(a, c)| (a * c).abs()).sum::<f64>() + bo.abs();
            (y, s)
        })
        .unzip()
}

#[test]
fn the_linear_and_mlp_encoders_equal_loop_references() {
    let _g = generator();
    let side = 4usize;
    let n_in = 3 * side * side;
    let x = uniform(&[2, 3, side as i64, side as i64], 11);
    for arch in [SmallArch::Linear, SmallArch::DeepLinear, SmallArch::Mlp] {
        tch::manual_seed(3);
        let vs = nn::VarStore::new(Device::Cpu);
        let config = SmallConfig {
            dim: 3,
            hidden: 5,
            stages: 1,
            ..SmallConfig::new(arch)
        };
        let enc = SmallEncoder::new(&vs.root(), config, side).unwrap();
        let r = enc.forward_t(&x, true).unwrap();
        assert_eq!(r.size(), [2, 3]);
        let r = values(&r);
        for i in 0..2usize {
            let xi = values(&x.get(i as i64).flatten(0, -1));
            assert_eq!(xi.len(), n_in);
            let (want, bound) = match arch {
                SmallArch::Linear => dense_loop(
                    &values(tensor(&enc, "fc.weight")),
                    &values(tensor(&enc, "fc.bias")),
                    &xi,
                ),
                _ => {
                    let (h, hs) = dense_loop(
                        &values(tensor(&enc, "fc1.weight")),
                        &values(tensor(&enc, "fc1.bias")),
                        &xi,
                    );
                    let relu = arch == SmallArch::Mlp;
                    let h: Vec<f64> = h
                        .iter()
                        .map(|v| if relu { v.max(0.0) } else { *v })
                        .collect();
                    let w2 = values(tensor(&enc, "fc2.weight"));
                    let (y, s) = dense_loop(&w2, &values(tensor(&enc, "fc2.bias")), &h);
                    // The hidden layer's rounding (≤ (n+1)·ε·Σ|·| each) passes through |W₂|.
                    let hmax = hs.iter().cloned().fold(0.0, f64::max);
                    let w2sum: Vec<f64> = (0..3)
                        .map(|o| w2[o * 5..(o + 1) * 5].iter().map(|a| a.abs()).sum())
                        .collect();
                    (y, s.iter().zip(&w2sum).map(|(a, w)| a + w * hmax).collect())
                }
            };
            for o in 0..3 {
                // A float32 dot product of n terms is within n·ε·Σ|terms| (standard bound);
                // n + 1 terms with the bias, and 49 bounds the longer (input) layer.
                let tol = (n_in as f64 + 1.0) * EPS32 * bound[o];
                let got = r[i * 3 + o];
                assert!(
                    (got - want[o]).abs() <= tol,
                    "{arch}: r[{i},{o}] = {got}, loop {} (tol {tol:e})",
                    want[o]
                );
            }
        }
    }
}

#[test]
fn the_conv_encoder_equals_a_loop_reference() {
    let _g = generator();
    tch::manual_seed(5);
    let vs = nn::VarStore::new(Device::Cpu);
    let side = 5usize;
    let enc = SmallEncoder::new(&vs.root(), SmallConfig::new(SmallArch::Conv), side).unwrap();
    assert_eq!(enc.feat_dim(), 64);
    let x = uniform(&[1, 3, side as i64, side as i64], 12);
    let r = values(&enc.forward_t(&x, true).unwrap());
    let w = values(tensor(&enc, "conv1.weight")); // [64, 3, 3, 3]
    let xv = values(&x); // [1, 3, 5, 5]
    let px = |c: usize, i: isize, j: isize| -> f64 {
        if i < 0 || j < 0 || i >= side as isize || j >= side as isize {
            0.0 // zero padding 1
        } else {
            xv[c * side * side + i as usize * side + j as usize]
        }
    };
    for o in 0..64 {
        let (mut sum, mut abs) = (0.0, 0.0);
        for i in 0..side as isize {
            for j in 0..side as isize {
                let (mut y, mut s) = (0.0, 0.0);
                for c in 0..3 {
                    for di in 0..3 {
                        for dj in 0..3 {
                            let t = w[((o * 3 + c) * 3 + di) * 3 + dj]
                                * px(c, i + di as isize - 1, j + dj as isize - 1);
                            y += t;
                            s += t.abs();
                        }
                    }
                }
                sum += y.max(0.0);
                abs += s;
            }
        }
        let want = sum / (side * side) as f64;
        // Each output pixel is a 27-term dot product (≤ 27·ε·Σ|terms|), then a mean of 25
        // (≤ 25·ε relative): 64·ε·Σ|terms| / 25 bounds both.
        let tol = 64.0 * EPS32 * abs / (side * side) as f64;
        assert!((r[o] - want).abs() <= tol, "r[{o}] = {}, loop {want}", r[o]);
    }
}

#[test]
fn the_plain_network_has_no_shortcut_and_the_residual_one_starts_as_the_identity() {
    let _g = generator();
    let build_with = |arch, stages, zero_init_residual| {
        tch::manual_seed(9);
        let vs = nn::VarStore::new(Device::Cpu);
        let config = SmallConfig {
            dim: 16,
            hidden: 1,
            stages,
            zero_init_residual,
            ..SmallConfig::new(arch)
        };
        let e = SmallEncoder::new(&vs.root(), config, 8).unwrap();
        (vs, e)
    };
    let build = |arch, stages| build_with(arch, stages, true);
    let names = |e: &SmallEncoder| -> Vec<String> {
        e.named_tensors()
            .iter()
            .map(|(n, _)| n.clone())
            .filter(|n| n.ends_with("weight"))
            .collect()
    };
    let (_v1, plain) = build(SmallArch::Cnn, 2);
    let (_v2, residual) = build(SmallArch::ResidualCnn, 2);
    assert_eq!(
        names(&plain),
        [
            "conv1.weight",
            "bn1.weight",
            "layer1.0.conv1.weight",
            "layer1.0.bn1.weight",
            "layer1.0.conv2.weight",
            "layer1.0.bn2.weight",
            "layer2.0.conv1.weight",
            "layer2.0.bn1.weight",
            "layer2.0.conv2.weight",
            "layer2.0.bn2.weight",
        ]
    );
    let mut with_shortcut = names(&plain);
    with_shortcut.extend([
        "layer2.0.downsample.0.weight".into(),
        "layer2.0.downsample.1.weight".into(),
    ]);
    assert_eq!(names(&residual), with_shortcut);
    // 8 channels in the first stage, 16 in the second: r is 16-d.
    assert_eq!(tensor(&plain, "conv1.weight").size(), [8, 3, 3, 3]);
    assert_eq!(
        tensor(&plain, "layer2.0.conv2.weight").size(),
        [16, 16, 3, 3]
    );
    // One residual stage with zero_init_residual is the identity on the stem's (non-negative)
    // output: r = avgpool(relu(bn1(conv1 x))), exactly; the plain stage is not, nor the
    // residual one without zero_init_residual (its last γ starts at 1, as the plain one's).
    let (_v3, res1) = build(SmallArch::ResidualCnn, 1);
    let (_v4, plain1) = build(SmallArch::Cnn, 1);
    let (_v5, res1_unit) = build_with(SmallArch::ResidualCnn, 1, false);
    assert_eq!(values(tensor(&res1, "layer1.0.bn2.weight")), [0.0; 16]);
    assert_eq!(values(tensor(&res1_unit, "layer1.0.bn2.weight")), [1.0; 16]);
    let x = uniform(&[4, 3, 8, 8], 13);
    for (enc, identity) in [(&res1, true), (&plain1, false), (&res1_unit, false)] {
        let stem = x
            .conv2d(
                tensor(enc, "conv1.weight"),
                None::<&Tensor>,
                [1, 1],
                [1, 1],
                [1, 1],
                1,
            )
            .batch_norm(
                Some(tensor(enc, "bn1.weight")),
                Some(tensor(enc, "bn1.bias")),
                None::<&Tensor>,
                None::<&Tensor>,
                true,
                0.1,
                1e-5,
                false,
            )
            .relu()
            .adaptive_avg_pool2d([1, 1])
            .flatten(1, -1);
        let r = enc.forward_t(&x, true).unwrap();
        assert_eq!(r.size(), [4, 16]);
        assert_eq!(r.equal(&stem), identity);
    }
}

/// Without the final ReLU, r of a plain network in training mode is the pooled output of a batch
/// norm with β = 0: every channel has zero mean over the batch, so r takes both signs. With it,
/// r ≥ 0. The weights are the same either way.
#[test]
fn without_the_final_relu_r_is_the_pooled_batch_norm_output_of_either_sign() {
    let _g = generator();
    let build = |final_relu| {
        tch::manual_seed(21);
        let vs = nn::VarStore::new(Device::Cpu);
        let config = SmallConfig {
            dim: 16,
            stages: 2,
            final_relu,
            ..SmallConfig::new(SmallArch::Cnn)
        };
        let e = SmallEncoder::new(&vs.root(), config, 8).unwrap();
        (vs, e)
    };
    let (_v1, rectified) = build(true);
    let (_v2, signed) = build(false);
    for ((n1, t1), (n2, t2)) in rectified.named_tensors().iter().zip(signed.named_tensors()) {
        assert_eq!(n1, n2);
        assert!(t1.equal(t2), "{n1}");
    }
    let x = uniform(&[4, 3, 8, 8], 17);
    let r_rect = values(&rectified.forward_t(&x, true).unwrap());
    let r = values(&signed.forward_t(&x, true).unwrap());
    assert!(r_rect.iter().all(|&v| v >= 0.0));
    assert!(r.iter().any(|&v| v < 0.0) && r.iter().any(|&v| v > 0.0));
    // The last BN normalises each channel over n = 4 · 4 · 4 values (batch × the second stage's
    // 4 × 4 map); the pooled means of its output average to the channel's mean, 0. Its outputs
    // satisfy Σy² ≤ n, so |y| ≤ √n, and n·ε·√n bounds the rounding of that mean.
    let n = 64.0f64;
    let tol = n * EPS32 * n.sqrt();
    for c in 0..16 {
        let mean = (0..4).map(|i| r[i * 16 + c]).sum::<f64>() / 4.0;
        assert!(
            mean.abs() <= tol,
            "channel {c}: batch mean {mean:e} (tol {tol:e})"
        );
        let mean_rect = (0..4).map(|i| r_rect[i * 16 + c]).sum::<f64>() / 4.0;
        assert!(
            mean_rect > tol,
            "channel {c}: rectified batch mean {mean_rect:e}"
        );
    }
}

#[test]
fn a_dense_encoder_refuses_images_of_another_size_without_panicking() {
    let _g = generator();
    let vs = nn::VarStore::new(Device::Cpu);
    let enc = SmallEncoder::new(&vs.root(), SmallConfig::new(SmallArch::Linear), 8).unwrap();
    let e = enc
        .forward_t(
            &Tensor::zeros([2, 3, 9, 9], (Kind::Float, Device::Cpu)),
            false,
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("[batch, 3, 8, 8]"), "{e}");
}

#[test]
fn each_small_encoder_trains_through_the_one_loop_and_its_run_reloads() {
    let _g = generator();
    tch::set_num_threads(1);
    let cases = [
        (
            "arch = \"linear\"\ndim = 16",
            "kind = \"simclr_no_projector\"",
        ),
        (
            "arch = \"mlp\"\ndim = 16\nhidden = 32",
            "kind = \"simclr_linear\"",
        ),
        (
            "arch = \"deep_linear\"\ndim = 16\nhidden = 32",
            "kind = \"trainable_diagonal\"",
        ),
        ("arch = \"conv\"\ndim = 16", common::DIRECT_CLR),
        (
            "arch = \"cnn\"\ndim = 16\nstages = 2",
            "kind = \"simclr_no_projector\"",
        ),
        (
            "arch = \"residual_cnn\"\ndim = 16\nstages = 2",
            common::DIRECT_CLR,
        ),
    ];
    for (model, method) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let text = Tiny {
            epochs: 1,
            limit: 32,
            workers: Some(1),
            model: Some(model),
            method: Some(method),
            optimizer: Some("sgd"),
            lr: Some(0.05),
            warmup_epochs: 0.0,
            monitor_samples: Some(40),
            log_every_steps: Some(1),
            ..Tiny::default()
        }
        .toml();
        let checked = TrainConfig::from_toml(&text, Path::new("small.toml"))
            .unwrap()
            .check()
            .unwrap();
        assert_eq!(checked.feat_dim(), 16);
        train::train(
            &checked,
            &RunOptions {
                out: tmp.path().to_path_buf(),
                resume: false,
            },
            &mut |_| {},
        )
        .unwrap_or_else(|e| panic!("{model}: {e}"));
        let lines: Vec<MetricsLine> = std::fs::read_to_string(tmp.path().join(train::METRICS_FILE))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let steps: Vec<&MetricsLine> = lines
            .iter()
            .filter(|m| m.kind == MetricsKind::Step)
            .collect();
        assert_eq!(steps.len(), 2, "{model}");
        // Chance for 2N − 1 = 31 candidates is ln 31 = 3.43; a finite loss of that order
        // shows the loop ran the encoder's forward and backward.
        assert!(steps.iter().all(|m| m.loss.is_finite()), "{model}");
        let epoch = lines.iter().find(|m| m.kind == MetricsKind::Epoch).unwrap();
        assert_eq!(epoch.rank.as_ref().unwrap().r.dim, 16, "{model}");
        // The run folder reloads with its checkpoint, and its r is the encoder's.
        let m = TrainedModel::load(tmp.path(), &Weights::RunCheckpoint, Device::Cpu).unwrap();
        assert_eq!(m.encoder().feat_dim(), 16);
        let x = uniform(&[3, 3, 32, 32], 1);
        let r = m.features(&x, Space::Representation).unwrap();
        assert_eq!(r.size(), [3, 16]);
        assert!(r.equal(&m.encoder().forward_t(&x, false).unwrap()));
        // torchvision encoder files load into ResNets only: refused, naming why.
        let Err(e) = TrainedModel::load(
            tmp.path(),
            &Weights::Encoder(tmp.path().join("encoder.safetensors")),
            Device::Cpu,
        ) else {
            panic!("a small run refuses an encoder file");
        };
        let e = e.to_string();
        assert!(e.contains("ResNet"), "{e}");
    }
}

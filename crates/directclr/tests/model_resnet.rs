//! The ResNet encoder against torchvision: parameter names, shapes and dtypes; pooled outputs
//! in eval mode with weights from a shared formula; safetensors round trips.
//!
//! The fixtures come from `fixtures/make_resnet_fixtures.py` (torch 2.11, torchvision 0.26).

mod tolerance;

use std::f64::consts::PI;
use std::path::PathBuf;

use directclr::model::{Arch, ResNet, ResNetConfig, Stem};
use directclr::Error;
use serde_json::Value;
use tch::{nn, Device, Kind, Tensor};

fn fixture(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn tmp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("directclr-model-{}-{name}", std::process::id()))
}

fn config(arch: Arch, stem: Stem, width: f64) -> ResNetConfig {
    ResNetConfig {
        arch,
        stem,
        width_multiplier: width,
        zero_init_residual: true,
    }
}

/// The formula of `make_resnet_fixtures.py`, `fill_value`.
fn fill_value(name: &str, shape: &[i64]) -> Tensor {
    let n: i64 = shape.iter().product();
    if name.ends_with("num_batches_tracked") {
        return Tensor::zeros(shape, (Kind::Int64, Device::Cpu));
    }
    let s: u64 = name
        .bytes()
        .enumerate()
        .map(|(k, b)| (k as u64 + 1) * b as u64)
        .sum();
    let phase = 2.0 * PI * (s % 1009) as f64 / 1009.0;
    let fan_in = if shape.len() >= 2 {
        (n / shape[0]) as f64
    } else {
        1.0
    };
    let v: Vec<f32> = (0..n)
        .map(|i| {
            let u = (0.731 * i as f64 + phase).sin();
            let x = if name.ends_with("weight") && shape.len() >= 2 {
                u * (2.0 / fan_in).sqrt()
            } else if name.ends_with("weight") {
                1.0 + 0.2 * u
            } else if name.ends_with("bias") || name.ends_with("running_mean") {
                0.1 * u
            } else if name.ends_with("running_var") {
                1.0 + 0.3 * u
            } else {
                panic!("no formula for {name}")
            };
            x as f32
        })
        .collect();
    Tensor::from_slice(&v).reshape(shape)
}

fn fill(model: &ResNet) {
    tch::no_grad(|| {
        for (name, t) in model.named_tensors() {
            let mut t = t.shallow_clone();
            t.copy_(&fill_value(name, &t.size()));
        }
    });
}

fn formula_input(shape: &[i64]) -> Tensor {
    let n: i64 = shape.iter().product();
    let v: Vec<f32> = (0..n)
        .map(|i| (0.0137 * i as f64 + 0.5).sin() as f32)
        .collect();
    Tensor::from_slice(&v).reshape(shape)
}

const EPS32: f64 = f32::EPSILON as f64;

/// Σ over the convolutions of their fan-in (in-channels × kernel area): the f32 forward's
/// error accumulates γ_fan-in per convolution along the network, so two f32 implementations
/// (ours and PyTorch's, whatever their kernels' summation order) differ by ≤ 2·ε32·Σ fan-in
/// times the activation scale (BN in eval mode, normalised weights and the residual sums keep
/// activations at the scale of the output).
fn fan_in_sum(model: &ResNet) -> f64 {
    model
        .named_tensors()
        .iter()
        .filter(|(_, t)| t.dim() == 4)
        .map(|(_, t)| (t.numel() as i64 / t.size()[0]) as f64)
        .sum()
}

fn arch_of(name: &str) -> Arch {
    name.parse().unwrap()
}

fn stem_of(name: &str) -> Stem {
    name.parse().unwrap()
}

#[test]
fn names_shapes_and_dtypes_equal_torchvision() {
    let fx = fixture("resnet_names.json");
    for (key, expected) in fx["models"].as_object().unwrap() {
        let (arch, stem) = key.split_once('_').unwrap();
        let vs = nn::VarStore::new(Device::Cpu);
        let model = config(arch_of(arch), stem_of(stem), 1.0)
            .build(&vs.root().sub("backbone"))
            .unwrap();
        let ours: Vec<(String, Vec<i64>, String)> = model
            .named_tensors()
            .iter()
            .map(|(n, t)| {
                let dtype = match t.kind() {
                    Kind::Float => "float32",
                    Kind::Int64 => "int64",
                    k => panic!("unexpected kind {k:?}"),
                };
                (n.clone(), t.size(), dtype.to_string())
            })
            .collect();
        let theirs: Vec<(String, Vec<i64>, String)> = expected
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let shape = e[1]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d.as_i64().unwrap())
                    .collect();
                (
                    e[0].as_str().unwrap().to_string(),
                    shape,
                    e[2].as_str().unwrap().to_string(),
                )
            })
            .collect();
        // Same names, shapes and dtypes, in torchvision's state_dict order.
        assert_eq!(ours, theirs, "{key}");
        // The variable store holds the same tensors under the build path, and only the
        // parameters (not the buffers) are trainable.
        let vars = vs.variables();
        assert_eq!(vars.len(), theirs.len());
        for (name, shape, _) in &theirs {
            assert_eq!(vars[&format!("backbone.{name}")].size(), *shape, "{name}");
        }
        let n_buffers = theirs
            .iter()
            .filter(|(n, _, _)| n.contains("running_") || n.ends_with("num_batches_tracked"))
            .count();
        assert_eq!(vs.trainable_variables().len(), theirs.len() - n_buffers);
        let expected_dim = if arch == "resnet50" { 2048 } else { 512 };
        assert_eq!(model.feat_dim(), expected_dim);
    }
}

#[test]
fn pooled_output_equals_torchvision_in_eval_mode() {
    let fx = fixture("resnet_outputs.json");
    for case in fx["cases"].as_array().unwrap() {
        let arch = arch_of(case["arch"].as_str().unwrap());
        let stem = stem_of(case["stem"].as_str().unwrap());
        let shape: Vec<i64> = case["input_shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_i64().unwrap())
            .collect();
        let expected: Vec<f32> = case["output"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        let vs = nn::VarStore::new(Device::Cpu);
        let model = config(arch, stem, 1.0).build(&vs.root()).unwrap();
        fill(&model);
        let r = tch::no_grad(|| model.forward_t(&formula_input(&shape), false)).unwrap();
        assert_eq!(r.size(), vec![shape[0], model.feat_dim()]);
        let got = Vec::<f32>::try_from(r.flatten(0, -1)).unwrap();
        let scale = expected.iter().fold(0f32, |m, v| m.max(v.abs()));
        let err = got
            .iter()
            .zip(&expected)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(scale > 0.1, "degenerate fixture for {arch} {stem}");
        // Two f32 forwards: ≤ 2·ε32·Σ fan-in·scale (see `fan_in_sum`; was 1e-4·scale, below
        // that bound for fan-ins up to 4,608 over 20–53 convolutions).
        let tol = 2.0 * EPS32 * fan_in_sum(&model) * scale as f64;
        assert!(
            err as f64 <= tol,
            "{arch} {stem}: max abs error {err} vs scale {scale} (bound {tol:.1e})"
        );
        // r is the pooled output after the last ReLU: non-negative.
        assert!(got.iter().all(|&v| v >= 0.0));
    }
}

#[test]
fn training_forward_and_running_statistics_equal_torchvision() {
    let case = &fixture("resnet_outputs.json")["train_case"];
    let floats = |v: &Value| -> Vec<f64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    let shape: Vec<i64> = case["input_shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_i64().unwrap())
        .collect();
    let vs = nn::VarStore::new(Device::Cpu);
    let arch = arch_of(case["arch"].as_str().unwrap());
    let stem = stem_of(case["stem"].as_str().unwrap());
    let model = config(arch, stem, 1.0).build(&vs.root()).unwrap();
    fill(&model);
    let r = tch::no_grad(|| model.forward_t(&formula_input(&shape), true)).unwrap();
    // Two f32 forwards in training mode: the convolutions (`fan_in_sum`) and the BN batch
    // statistics, sums of N·H·W values (γ_NHW each): ResNet-18's CIFAR stem on 16 × 16
    // inputs has 5 BNs at each of 16², 8², 4², 2² positions, so an activation error
    // ≤ 2·ε32·(Σ fan-in + N·5·(256 + 64 + 16 + 4))·S, S the output scale (was 1e-4 of each
    // tensor's scale, below that bound). A running statistic moves by 0.1 × a batch mean
    // (error ≤ that of the activations) or variance (≤ 2S× it, plus S² × its own rounding,
    // inside the same count): ≤ 0.1·(2S + 1)× the activation bound.
    let n = shape[0] as f64;
    let want_out = floats(&case["output"]);
    let scale = want_out.iter().fold(0f64, |m, v| m.max(v.abs()));
    let act_tol =
        2.0 * EPS32 * (fan_in_sum(&model) + n * 5.0 * (256.0 + 64.0 + 16.0 + 4.0)) * scale;
    let close = |got: Vec<f64>, want: Vec<f64>, tol: f64, what: &str| {
        assert_eq!(got.len(), want.len(), "{what}");
        let err = got
            .iter()
            .zip(&want)
            .fold(0f64, |m, (a, b)| m.max((a - b).abs()));
        assert!(err <= tol, "{what}: max abs error {err} (bound {tol:.1e})");
    };
    close(
        Vec::<f64>::try_from(r.flatten(0, -1).to_kind(Kind::Double)).unwrap(),
        want_out,
        act_tol,
        "output",
    );
    let vars = vs.variables();
    for (name, want) in case["buffers"].as_object().unwrap() {
        let got = Vec::<f64>::try_from(vars[name].flatten(0, -1).to_kind(Kind::Double)).unwrap();
        // num_batches_tracked: an integer count, exact (bound 0).
        let tol = if name.ends_with("num_batches_tracked") {
            0.0
        } else {
            0.1 * (2.0 * scale + 1.0) * act_tol
        };
        close(got, floats(want), tol, name);
    }
}

#[test]
fn width_multiplier_and_validation() {
    let vs = nn::VarStore::new(Device::Cpu);
    let m = config(Arch::ResNet50, Stem::Cifar, 0.125)
        .build(&vs.root())
        .unwrap();
    assert_eq!(m.feat_dim(), 256);
    assert_eq!(vs.variables()["conv1.weight"].size(), vec![8, 3, 3, 3]);
    assert_eq!(
        vs.variables()["layer4.2.conv3.weight"].size(),
        vec![256, 64, 1, 1]
    );
    for bad in [0.0, -1.0, 0.01, 0.3, f64::NAN] {
        let vs = nn::VarStore::new(Device::Cpu);
        let err = config(Arch::ResNet18, Stem::Cifar, bad)
            .build(&vs.root())
            .unwrap_err();
        assert!(
            matches!(err, Error::InvalidConfig { ref field, .. } if field == "width_multiplier"),
            "{bad}: {err}"
        );
    }
    // Building twice under one path is refused instead of silently renaming.
    let vs = nn::VarStore::new(Device::Cpu);
    config(Arch::ResNet18, Stem::Cifar, 0.125)
        .build(&vs.root())
        .unwrap();
    assert!(config(Arch::ResNet18, Stem::Cifar, 0.125)
        .build(&vs.root())
        .is_err());
    // Bad inputs are errors, not panics.
    let vs = nn::VarStore::new(Device::Cpu);
    let m = config(Arch::ResNet18, Stem::Cifar, 0.125)
        .build(&vs.root())
        .unwrap();
    assert!(m
        .forward_t(
            &Tensor::zeros([2, 1, 8, 8], (Kind::Float, Device::Cpu)),
            false
        )
        .is_err());
    assert!(m
        .forward_t(&Tensor::zeros([2, 3, 8], (Kind::Float, Device::Cpu)), false)
        .is_err());
}

#[test]
fn config_toml_round_trip() {
    let c: ResNetConfig =
        toml::from_str("arch = \"resnet18\"\nstem = \"cifar\"\nwidth_multiplier = 0.5\n").unwrap();
    assert_eq!(c, config(Arch::ResNet18, Stem::Cifar, 0.5));
    let back: ResNetConfig = toml::from_str(&toml::to_string(&c).unwrap()).unwrap();
    assert_eq!(back, c);
    assert_eq!(
        ResNetConfig::default(),
        config(Arch::ResNet50, Stem::ImageNet, 1.0)
    );
    assert!(toml::from_str::<ResNetConfig>("arch = \"resnet101\"").is_err());
    assert!(toml::from_str::<ResNetConfig>("widht_multiplier = 2.0").is_err());
}

#[test]
fn initialisation_is_torchvisions() {
    tch::manual_seed(0);
    for (arch, last) in [(Arch::ResNet18, "bn2"), (Arch::ResNet50, "bn3")] {
        let vs = nn::VarStore::new(Device::Cpu);
        let m = config(arch, Stem::ImageNet, 1.0).build(&vs.root()).unwrap();
        // Constant initialisations (0 and 1) are exact: compared with ==.
        for (name, t) in m.named_tensors() {
            let values = Vec::<f64>::try_from(t.to_kind(Kind::Double).flatten(0, -1)).unwrap();
            if name.ends_with(&format!("{last}.weight")) {
                assert!(
                    values.iter().all(|&v| v == 0.0),
                    "zero_init_residual: {name}"
                );
            } else if name.ends_with("bn1.weight") || name.ends_with("downsample.1.weight") {
                assert!(values.iter().all(|&v| v == 1.0), "{name}");
            } else if name.ends_with(".bias") || name.ends_with("running_mean") {
                assert!(values.iter().all(|&v| v == 0.0), "{name}");
            }
        }
        // kaiming_normal_(fan_out, relu): std = sqrt(2 / (out·k·k)); conv1: 64·7·7.
        let w = &vs.variables()["conv1.weight"];
        let std = f64::try_from(w.std(true)).unwrap();
        let expected = (2.0f64 / (64.0 * 49.0)).sqrt();
        // A sampling property, not rounding: the sample std of n = 9,408 normal draws has a
        // relative standard deviation 1/√(2n) ≈ 0.0073, so 0.05 is ~7σ (comment only).
        assert!((std / expected - 1.0).abs() < 0.05, "{std} vs {expected}");
    }
    // zero_init_residual = false leaves every γ at 1.
    let vs = nn::VarStore::new(Device::Cpu);
    let c = ResNetConfig {
        zero_init_residual: false,
        ..config(Arch::ResNet18, Stem::Cifar, 0.125)
    };
    c.build(&vs.root()).unwrap();
    assert_eq!(
        f64::try_from(vs.variables()["layer1.0.bn2.weight"].min()).unwrap(),
        1.0
    );
}

#[test]
fn training_forward_updates_running_statistics_like_pytorch() {
    tch::manual_seed(1);
    let vs = nn::VarStore::new(Device::Cpu);
    let m = config(Arch::ResNet18, Stem::Cifar, 0.125)
        .build(&vs.root())
        .unwrap();
    let x = Tensor::randn([4, 3, 16, 16], (Kind::Float, Device::Cpu));
    let r = m.forward_t(&x, true).unwrap();
    assert_eq!(r.size(), vec![4, 64]);
    let v = vs.variables();
    assert_eq!(i64::try_from(&v["bn1.num_batches_tracked"]).unwrap(), 1);
    assert_eq!(
        i64::try_from(&v["layer4.1.bn2.num_batches_tracked"]).unwrap(),
        1
    );
    // running_mean = 0.9·0 + 0.1·(batch mean of conv1's output per channel)
    let y = x.conv2d(
        &v["conv1.weight"],
        None::<&Tensor>,
        [1, 1],
        [1, 1],
        [1, 1],
        1,
    );
    let mean = y.mean_dim([0i64, 2, 3].as_slice(), false, Kind::Float) * 0.1;
    let diff = f64::try_from((&v["bn1.running_mean"] - &mean).abs().max()).unwrap();
    // Two f32 computations of 0.1 × a mean of 4·16·16 = 1,024 conv outputs of fan-in 27:
    // each ≤ 0.1·(27·ε32·mean(|W| ∗ |x|) + 1,024·ε32·mean|y|) + 2ε32·|result| per channel
    // (was 1e-6, below that bound).
    let dims = [0i64, 2, 3];
    let abs_conv = x.abs().conv2d(
        &v["conv1.weight"].abs(),
        None::<&Tensor>,
        [1, 1],
        [1, 1],
        [1, 1],
        1,
    );
    let per_channel = abs_conv.mean_dim(dims.as_slice(), false, Kind::Double) * (27.0 * EPS32)
        + y.abs().mean_dim(dims.as_slice(), false, Kind::Double) * (1024.0 * EPS32);
    let tol = 2.0
        * (0.1 * f64::try_from(per_channel.max()).unwrap()
            + 2.0 * EPS32 * f64::try_from(mean.abs().max()).unwrap());
    assert!(diff <= tol, "{diff} (bound {tol:.1e})");
    // The eval forward leaves the statistics alone.
    let before = v["bn1.running_mean"].copy();
    let _ = m.forward_t(&x, false).unwrap();
    assert_eq!(i64::try_from(&v["bn1.num_batches_tracked"]).unwrap(), 1);
    assert!(before.equal(&v["bn1.running_mean"])); // untouched: exact
}

#[test]
fn safetensors_round_trip_and_strict_loading() {
    tch::manual_seed(2);
    let c = config(Arch::ResNet50, Stem::Cifar, 0.125);
    let vs_a = nn::VarStore::new(Device::Cpu);
    let a = c.build(&vs_a.root().sub("encoder")).unwrap();
    fill(&a);
    let file = tmp("roundtrip.safetensors");
    a.save_safetensors(&file).unwrap();
    // The file holds exactly the torchvision keys, without the store's path.
    let saved = directclr::model::read_safetensors(&file).unwrap();
    let mut names: Vec<&str> = a.named_tensors().iter().map(|(n, _)| n.as_str()).collect();
    names.sort();
    assert_eq!(
        saved.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        names
    );

    tch::manual_seed(3);
    let vs_b = nn::VarStore::new(Device::Cpu);
    let b = c.build(&vs_b.root()).unwrap();
    let report = b.load_safetensors(&file).unwrap();
    assert!(report.ignored.is_empty() && report.defaulted.is_empty());
    for ((na, ta), (nb, tb)) in a.named_tensors().iter().zip(b.named_tensors()) {
        assert_eq!(na, nb);
        assert!(ta.equal(tb), "{na}"); // a file round trip: exact copies
    }
    let x = formula_input(&[2, 3, 16, 16]);
    let ra = tch::no_grad(|| a.forward_t(&x, false)).unwrap();
    let rb = tch::no_grad(|| b.forward_t(&x, false)).unwrap();
    assert!(ra.equal(&rb)); // bitwise the same weights, same code path, one machine

    // A torchvision state_dict: classifier `fc.*` is ignored; num_batches_tracked may be absent.
    let mut tv: Vec<(String, Tensor)> = saved
        .iter()
        .filter(|(n, _)| !n.ends_with("num_batches_tracked"))
        .map(|(n, t)| (n.clone(), t.shallow_clone()))
        .collect();
    tv.push((
        "fc.weight".into(),
        Tensor::zeros([10, 256], (Kind::Float, Device::Cpu)),
    ));
    tv.push((
        "fc.bias".into(),
        Tensor::zeros([10], (Kind::Float, Device::Cpu)),
    ));
    let tv_file = tmp("torchvision.safetensors");
    directclr::model::save_safetensors(&tv_file, &tv).unwrap();
    let report = b.load_safetensors(&tv_file).unwrap();
    assert_eq!(
        report.ignored,
        vec!["fc.bias".to_string(), "fc.weight".to_string()]
    );
    assert_eq!(report.defaulted.len(), 53);

    // Missing, unexpected and misshapen tensors are errors naming the tensor.
    let cases: Vec<(Vec<(String, Tensor)>, &str)> = vec![
        (
            saved
                .iter()
                .filter(|(n, _)| n != "conv1.weight")
                .map(|(n, t)| (n.clone(), t.shallow_clone()))
                .collect(),
            "conv1.weight",
        ),
        (
            saved
                .iter()
                .map(|(n, t)| (n.clone(), t.shallow_clone()))
                .chain([(
                    "projector.0.weight".to_string(),
                    Tensor::zeros([2], (Kind::Float, Device::Cpu)),
                )])
                .collect(),
            "projector.0.weight",
        ),
        (
            saved
                .iter()
                .map(|(n, t)| {
                    if n == "bn1.weight" {
                        (n.clone(), Tensor::zeros([9], (Kind::Float, Device::Cpu)))
                    } else {
                        (n.clone(), t.shallow_clone())
                    }
                })
                .collect(),
            "bn1.weight",
        ),
    ];
    for (i, (tensors, culprit)) in cases.into_iter().enumerate() {
        let f = tmp(&format!("bad{i}.safetensors"));
        directclr::model::save_safetensors(&f, &tensors).unwrap();
        let err = b.load_safetensors(&f).unwrap_err();
        assert!(
            matches!(err, Error::StateMismatch { .. }) && err.to_string().contains(culprit),
            "{err}"
        );
        std::fs::remove_file(f).unwrap();
    }
    // Half-precision weights (as a user might export them) are converted on load.
    let half: Vec<(String, Tensor)> = saved
        .iter()
        .map(|(n, t)| {
            let t = if t.is_floating_point() {
                t.to_kind(Kind::Half)
            } else {
                t.shallow_clone()
            };
            (n.clone(), t)
        })
        .collect();
    let half_file = tmp("half.safetensors");
    directclr::model::save_safetensors(&half_file, &half).unwrap();
    b.load_safetensors(&half_file).unwrap();
    std::fs::remove_file(&half_file).unwrap();
    for ((n, ta), (_, tb)) in a.named_tensors().iter().zip(b.named_tensors()) {
        assert_eq!(tb.kind(), ta.kind(), "{n}");
        let err = f64::try_from(
            (ta.to_kind(Kind::Double) - tb.to_kind(Kind::Double))
                .abs()
                .max(),
        )
        .unwrap();
        let scale = f64::try_from(ta.to_kind(Kind::Double).abs().max()).unwrap();
        // f16 rounding: ≤ 2⁻¹¹·|t| ≈ 4.9e-4·|t| for normal values, ≤ 2⁻²⁵ absolute below
        // them: within 1e-3·max(scale, 1e-3) (comment only).
        assert!(err <= 1e-3 * scale.max(1e-3), "{n}: {err}");
    }

    // Not a safetensors file; no file.
    std::fs::write(&tv_file, b"not safetensors").unwrap();
    assert!(matches!(
        b.load_safetensors(&tv_file).unwrap_err(),
        Error::StateMismatch { .. }
    ));
    std::fs::remove_file(&tv_file).unwrap();
    assert!(matches!(
        b.load_safetensors(&tv_file).unwrap_err(),
        Error::Io { .. }
    ));
    std::fs::remove_file(&file).unwrap();
}

/// Writes a formula-filled ResNet-18 (ImageNet stem, width 1) to `$DIRECTCLR_EXPORT_RESNET18`
/// when set, for `make_resnet_fixtures.py --check-export` (strict `load_state_dict` in
/// torchvision); a no-op otherwise.
#[test]
fn export_for_torchvision_check() {
    let Ok(path) = std::env::var("DIRECTCLR_EXPORT_RESNET18") else {
        return;
    };
    let vs = nn::VarStore::new(Device::Cpu);
    let m = config(Arch::ResNet18, Stem::ImageNet, 1.0)
        .build(&vs.root())
        .unwrap();
    fill(&m);
    m.save_safetensors(path).unwrap();
}

/// Σ over the reductions of a forward pass of the CIFAR-stem `model` on `shape` ([N, C, H, W])
/// (what [`tolerance::forward_rounding_bound`] needs): every convolution's fan-in; in training
/// mode every BN's batch, N·H·W at its stage's resolution (the stem and layer1 at H × W,
/// layer k at H/2^(k−1)); the final average pool over layer4's H·W/64 and the weighted sum of
/// the N·D outputs.
fn reduction_sum(model: &ResNet, shape: [i64; 4], train: bool) -> f64 {
    let [n, _, h, w] = shape;
    let at_stage = |k: u32| (n * (h >> (k - 1)) * (w >> (k - 1))) as f64;
    let bn: f64 = model
        .named_tensors()
        .iter()
        .filter(|(name, _)| name.ends_with("running_mean"))
        .map(|(name, _)| match name.strip_prefix("layer") {
            Some(rest) => at_stage(rest[..1].parse().unwrap()),
            None => at_stage(1),
        })
        .sum();
    let pool = (h * w / 64) as f64;
    fan_in_sum(model) + if train { bn } else { 0.0 } + pool + (n * model.feat_dim()) as f64
}

/// Autograd through the encoder (in-place ReLUs and residual sums, BN) equals a
/// central finite difference in f64 along a random direction of all parameters, within the
/// difference's error bound (tolerance/mod.rs): rounding
/// (E + ε·Σ|g||θ|/2)/h, E = ε·(Σ reduction lengths)·Σ|r·w| the forward's f64 rounding, and
/// truncation h²|f‴|/6 estimated from D(2h) − D(h).
#[test]
fn gradient_equals_finite_difference_in_f64() {
    // h balances the rounding bound, ∝ 1/h, against the network's ReLU kinks: the central
    // difference holds only while no pre-activation changes sign within ±2h along the
    // direction (before the first kink the truncation h²|f‴|/6 is < 1e-9 relative, so the
    // largest h short of it is best). Seen, |D(h) − g·v| / |g·v| (this machine, the
    // direction below): ResNet-18 in training mode 2.6e-8 at h = 1e-7, 2.3e-2 at 3e-7 (a kink
    // between); in eval mode 3.2e-9 at 3e-7, 1.8e-4 at 1e-6; the ResNet-50 below 1.5e-10 at
    // 1e-6, 1.4e-4 at 3e-6. ResNet-50 at width 1/8 on 4 × 32 × 32 met a kink at h = 3e-9 (a
    // random direction), where its rounding bound is 2·|g·v|: it runs on a 1 × 8 × 8 input at
    // width 1/16 (the same bottleneck wiring). ResNet-50 in training mode (BN over 4 × 2 × 2
    // values per channel in layer4) is too curved for a finite difference to resolve; its BN
    // gradient is libtorch's, checked here through ResNet-18. Was h = 1e-9 with a tolerance
    // of 1e-5·|g·v| that no bound gave (rounding alone can reach ~1 at that h).
    for (arch, train, width, shape, h) in [
        (Arch::ResNet18, true, 0.125, [4, 3, 32, 32], 3e-8),
        (Arch::ResNet18, false, 0.125, [4, 3, 32, 32], 1e-7),
        (Arch::ResNet50, false, 0.0625, [1, 3, 8, 8], 1e-7),
    ] {
        tch::manual_seed(5);
        let mut vs = nn::VarStore::new(Device::Cpu);
        let c = ResNetConfig {
            zero_init_residual: false,
            ..config(arch, Stem::Cifar, width)
        };
        let m = c.build(&vs.root()).unwrap();
        // Non-zero BN shifts and statistics: no pre-activation sits exactly on a ReLU's kink
        // (a dead channel with β = 0 would, where autograd's relu'(0) = 0 and a central
        // difference gives ½).
        fill(&m);
        vs.double();
        let x = formula_input(&shape).to_kind(Kind::Double);
        let weights = Tensor::arange(m.feat_dim() * shape[0], (Kind::Double, Device::Cpu))
            .sin()
            .reshape([shape[0], -1]);
        let loss = |m: &ResNet| (m.forward_t(&x, train).unwrap() * &weights).sum(Kind::Double);
        let params = vs.trainable_variables();
        // A direction from a formula, not libtorch's generator (which the other tests of this
        // binary draw from concurrently): the same on every run and machine.
        let directions: Vec<Tensor> = params
            .iter()
            .enumerate()
            .map(|(k, p)| {
                (Tensor::arange(p.numel() as i64, (Kind::Double, Device::Cpu)) * 0.9173
                    + 0.37 * k as f64)
                    .sin()
                    .reshape(p.size())
            })
            .collect();
        let l = loss(&m);
        let grads = Tensor::run_backward(&[&l], &params, false, false);
        let sum = |t: Tensor| f64::try_from(t.sum(Kind::Double)).unwrap();
        let analytic: f64 = grads.iter().zip(&directions).map(|(g, v)| sum(g * v)).sum();
        // The size of the terms of g·v, which a wrong gradient of any layer moves.
        let terms: f64 = grads
            .iter()
            .zip(&directions)
            .map(|(g, v)| sum((g * v).abs()))
            .sum();
        let grad_times_params: f64 = grads
            .iter()
            .zip(&params)
            .map(|(g, p)| sum(g.abs() * p.abs()))
            .sum();
        let absolute_loss =
            tch::no_grad(|| sum(m.forward_t(&x, train).unwrap().abs() * weights.abs()));
        let reductions = reduction_sum(&m, shape, train);
        let forward_error = tolerance::forward_rounding_bound(reductions, absolute_loss);
        let count: i64 = params.iter().map(|p| p.numel() as i64).sum();
        let analytic_error =
            tolerance::directional_derivative_rounding(reductions, count as f64, terms);
        let start: Vec<Tensor> = params.iter().map(|p| p.detach().copy()).collect();
        let at = |s: f64| {
            tch::no_grad(|| {
                for ((p, p0), v) in params.iter().zip(&start).zip(&directions) {
                    p.shallow_clone().copy_(&(p0 + v * s));
                }
                f64::try_from(loss(&m)).unwrap()
            })
        };
        let difference = |h: f64| (at(h) - at(-h)) / (2.0 * h);
        let (d_h, d_2h) = (difference(h), difference(2.0 * h));
        let rounding =
            |h: f64| tolerance::central_difference_rounding(h, forward_error, grad_times_params);
        let truncation =
            tolerance::richardson_truncation(d_h, d_2h, rounding(h), rounding(2.0 * h));
        let bound = rounding(h) + truncation + analytic_error;
        eprintln!(
            "{arch} train={train}: g·v {analytic:e} (Σ|g_i·v_i| {terms:e}), D(h) − g·v {:e}, \
             bound {bound:e} (rounding {:e}, truncation {truncation:e})",
            d_h - analytic,
            rounding(h)
        );
        // The check is void if the bound cannot tell a wrong gradient (off by O(1) relative
        // in one layer: a share of Σ|g_i·v_i|) from a right one: a kink within 2h, or h too
        // small. Seen: bound / Σ|g_i·v_i| ≤ 4.5e-7.
        assert!(
            bound <= 1e-3 * terms,
            "{arch} train={train}: the finite difference cannot resolve the gradient at h = \
             {h:e} (bound {bound:e} against Σ|g_i·v_i| = {terms:e}): a ReLU kink within 2h, \
             or h too small"
        );
        assert!(
            (d_h - analytic).abs() <= bound,
            "{arch} train={train}: autograd {analytic} vs finite difference {d_h} (bound {bound:e})"
        );
    }
}

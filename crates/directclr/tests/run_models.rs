//! `model::RunModels`: the one place a run's models are built and its checkpoint keys spelled.
//! A run folder written before it existed (`tests/fixtures/run-layout-v1`, commit 20a19da)
//! still loads bit for bit, the layout it builds is that folder's, and a checkpoint that does
//! not match the run is refused naming the part.

use std::path::{Path, PathBuf};

use directclr::eval::{TrainedModel, Weights};
use directclr::model::{read_safetensors, Part, RunModels};
use directclr::train::TrainConfig;
use directclr::Error;
use tch::{nn, Device, Tensor};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/run-layout-v1")
}

/// A copy of the fixture run folder whose config points at the shipped Fashion-MNIST subset.
fn fixture_run(tmp: &Path) -> PathBuf {
    let run = tmp.join("run");
    std::fs::create_dir_all(&run).unwrap();
    for f in [
        "checkpoint.safetensors",
        "encoder.safetensors",
        "metrics.jsonl",
    ] {
        std::fs::copy(fixture().join(f), run.join(f)).unwrap();
    }
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/fashion-mnist-subset");
    let config = std::fs::read_to_string(fixture().join("config.toml"))
        .unwrap()
        .replace("FASHION_MNIST_SUBSET", &data.display().to_string());
    std::fs::write(run.join("config.toml"), config).unwrap();
    run
}

fn checkpoint_tensors() -> Vec<(String, Tensor)> {
    read_safetensors(fixture().join("checkpoint.safetensors")).unwrap()
}

fn same(a: &Tensor, b: &Tensor) -> bool {
    a.size() == b.size() && a.kind() == b.kind() && a.equal(b)
}

#[test]
fn a_checkpoint_of_the_old_layout_loads_bit_for_bit() {
    let tmp = tempfile::tempdir().unwrap();
    let model = TrainedModel::load(
        &fixture_run(tmp.path()),
        &Weights::RunCheckpoint,
        Device::Cpu,
    )
    .unwrap();
    assert_eq!(model.epochs_done(), Some(2));
    let probe = model.online_probe().expect("the fixture trained a probe");
    assert_eq!(probe.classes(), 10);
    let file = checkpoint_tensors();
    let mut matched = 0;
    for (part, loaded) in [
        (Part::Encoder, model.encoder().named_tensors()),
        (Part::Head, model.head().named_tensors()),
        (Part::Probe, probe.named_tensors()),
    ] {
        let section = part.section(&file);
        assert_eq!(section.len(), loaded.len(), "{part:?}");
        for (name, t) in &section {
            let (_, l) = loaded
                .iter()
                .find(|(n, _)| n == name)
                .unwrap_or_else(|| panic!("{part:?} has no `{name}`"));
            assert!(same(t, l), "{part:?} `{name}` differs from the file");
            matched += 1;
        }
    }
    let momentum = Part::Momentum.section(&file).len();
    assert_eq!(matched + momentum, file.len());
    assert!(momentum > 0);
}

#[test]
fn encoder_weights_of_the_old_layout_load_bit_for_bit() {
    let tmp = tempfile::tempdir().unwrap();
    let run = fixture_run(tmp.path());
    let weights = Weights::Encoder(run.join("encoder.safetensors"));
    let model = TrainedModel::load(&run, &weights, Device::Cpu).unwrap();
    let file = read_safetensors(run.join("encoder.safetensors")).unwrap();
    let from_checkpoint = Part::Encoder.section(&checkpoint_tensors());
    assert_eq!(file.len(), model.encoder().named_tensors().len());
    for (name, t) in &file {
        let (_, l) = model
            .encoder()
            .named_tensors()
            .iter()
            .find(|(n, _)| n == name)
            .unwrap();
        assert!(same(t, l), "`{name}`");
        // encoder.safetensors is the checkpoint's encoder section.
        let (_, c) = from_checkpoint.iter().find(|(n, _)| n == name).unwrap();
        assert!(same(t, c), "`{name}` differs between the two files");
    }
}

#[test]
fn the_layout_built_now_is_the_fixtures() {
    let tmp = tempfile::tempdir().unwrap();
    let config = TrainConfig::from_file(&fixture_run(tmp.path()).join("config.toml"))
        .unwrap()
        .check()
        .unwrap();
    let vs = nn::VarStore::new(Device::Cpu);
    let c = config.config();
    let models =
        RunModels::build(&vs.root(), &c.model, c.data.image_size, &c.method, Some(10)).unwrap();
    assert_eq!(models.feat_dim(), config.feat_dim());
    let mut built: Vec<(String, Vec<i64>)> = models
        .checkpoint_tensors()
        .iter()
        .map(|(n, t)| (n.clone(), t.size()))
        .collect();
    let mut file: Vec<(String, Vec<i64>)> = checkpoint_tensors()
        .iter()
        .filter(|(n, _)| !n.starts_with(Part::Momentum.prefix()))
        .map(|(n, t)| (n.clone(), t.size()))
        .collect();
    built.sort();
    file.sort();
    assert_eq!(built, file);
    // Every variable of the store is saved: the momentum keys are the store's names.
    let mut momentum: Vec<String> = Part::Momentum
        .section(&checkpoint_tensors())
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    let mut trainable: Vec<String> = vs
        .variables()
        .into_iter()
        .filter(|(_, t)| t.requires_grad())
        .map(|(n, _)| n)
        .collect();
    momentum.sort();
    trainable.sort();
    assert_eq!(momentum, trainable);
}

#[test]
fn a_checkpoint_that_does_not_match_the_run_is_refused_naming_the_part() {
    let tmp = tempfile::tempdir().unwrap();
    let config = TrainConfig::from_file(&fixture_run(tmp.path()).join("config.toml"))
        .unwrap()
        .check()
        .unwrap();
    let c = config.config();
    let file = checkpoint_tensors();

    // A run without a probe and a checkpoint with one.
    let vs = nn::VarStore::new(Device::Cpu);
    let models =
        RunModels::build(&vs.root(), &c.model, c.data.image_size, &c.method, None).unwrap();
    let e = models.load_checkpoint(&file, "checkpoint `x`").unwrap_err();
    assert!(
        matches!(&e, Error::StateMismatch { what, .. } if what.contains("online probe")),
        "{e}"
    );

    // A checkpoint without the projector's tensors.
    let vs = nn::VarStore::new(Device::Cpu);
    let models =
        RunModels::build(&vs.root(), &c.model, c.data.image_size, &c.method, Some(10)).unwrap();
    let no_head: Vec<(String, Tensor)> = file
        .iter()
        .filter(|(n, _)| !n.starts_with(Part::Head.prefix()))
        .map(|(n, t)| (n.clone(), t.shallow_clone()))
        .collect();
    let e = models
        .load_checkpoint(&no_head, "checkpoint `x`")
        .unwrap_err();
    assert!(e.to_string().contains("projector"), "{e}");

    // A probe of another class count.
    let vs = nn::VarStore::new(Device::Cpu);
    let models =
        RunModels::build(&vs.root(), &c.model, c.data.image_size, &c.method, Some(7)).unwrap();
    let e = models.load_checkpoint(&file, "checkpoint `x`").unwrap_err();
    assert!(e.to_string().contains("online probe"), "{e}");
}

#[test]
fn each_head_reports_the_dimensions_its_output_has() {
    use directclr::method::Method;
    use directclr::model::{Arch, ResNetConfig, Stem};
    let model = ResNetConfig {
        arch: Arch::ResNet18,
        stem: Stem::Cifar,
        width_multiplier: 0.0625,
        zero_init_residual: true,
    };
    let methods = [
        (
            Method::SimclrMlp {
                hidden_dim: Some(24),
                out_dim: 12,
            },
            Some(24),
            None,
        ),
        (
            Method::SimclrMlp {
                hidden_dim: None,
                out_dim: 12,
            },
            Some(32),
            None,
        ),
        (Method::SimclrLinear { out_dim: 12 }, None, None),
        (Method::SimclrNoProjector, None, None),
        (Method::DirectClr { d0: 8 }, None, Some(8)),
        (Method::FixedLowRank { rank: 8, seed: 1 }, None, None),
        (Method::TrainableDiagonal, None, None),
    ];
    for (method, hidden, d0) in methods {
        let vs = nn::VarStore::new(Device::Cpu);
        let m = RunModels::build(&vs.root(), &model.clone().into(), 32, &method, None).unwrap();
        let d = m.feat_dim();
        assert_eq!(d, 32, "width 1/16: r is 512/16-d");
        assert_eq!(m.head.in_dim(), d);
        assert_eq!(m.head.out_dim(), method.embed_dim(d).unwrap(), "{method:?}");
        assert_eq!(m.head.hidden_dim(), hidden, "{method:?}");
        assert_eq!(m.head.d0(), d0, "{method:?}");
        let r = Tensor::ones([4, d], (tch::Kind::Float, Device::Cpu));
        let z = m.head.embed(&r, false).unwrap();
        assert_eq!(z.size(), [4, m.head.out_dim()]);
        match m.head.hidden(&r, false).unwrap() {
            Some(h) => assert_eq!(Some(h.size()[1]), hidden),
            None => assert_eq!(hidden, None),
        }
    }
}

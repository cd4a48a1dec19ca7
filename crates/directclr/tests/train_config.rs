//! The TOML configuration of `directclr train`: the shipped presets, validation naming the
//! field, flags over the file, and which differences forbid resuming a run folder.

use std::path::{Path, PathBuf};

use directclr::method::Method;
use directclr::runtime::DeviceSpec;
use directclr::train::{differing_fields, DataSource, Overrides, TrainConfig};

mod config_util;
use config_util::{field_of, MINIMAL};

fn configs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs")
}

fn minimal() -> TrainConfig {
    TrainConfig::from_toml(MINIMAL, Path::new("minimal.toml")).unwrap()
}

#[test]
fn every_shipped_preset_parses_checks_and_round_trips() {
    let mut methods = Vec::new();
    for entry in std::fs::read_dir(configs()).unwrap() {
        let path = entry.unwrap().path();
        // Reproduction configs (reproduce-*.toml) have their own test.
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("reproduce-")
        {
            continue;
        }
        let c = TrainConfig::from_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let back = TrainConfig::from_toml(&c.to_toml().unwrap(), &path).unwrap();
        assert_eq!(back, c, "{}", path.display());
        let checked = c
            .clone()
            .check()
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("imagenet-") {
            // The authors' recipe: ResNet-50, 2048-d r, batch 4096, lr 4.8, 100 epochs.
            assert_eq!(checked.feat_dim(), 2048, "{name}");
            assert_eq!(
                (c.batch_size, c.epochs, c.data.image_size),
                (4096, 100, 224)
            );
            assert_eq!(c.schedule.lr, 4.8); // parsed decimal, correctly rounded: exact
            assert_eq!(c.loss, directclr::loss::InfoNce::authors());
            methods.push(c.method.clone());
        }
    }
    // One preset per Table 1 row.
    for m in [
        Method::SimclrMlp {
            hidden_dim: Some(2048),
            out_dim: 128,
        },
        Method::SimclrLinear { out_dim: 128 },
        Method::SimclrNoProjector,
        Method::DirectClr { d0: 360 },
        Method::FixedLowRank { rank: 360, seed: 0 },
        Method::TrainableDiagonal,
    ] {
        assert!(methods.contains(&m), "no preset for {m:?}");
    }
    let quick = TrainConfig::from_file(&configs().join("fashion-mnist-quick.toml")).unwrap();
    assert!(matches!(quick.data.source, DataSource::FashionMnist { .. }));
    assert_eq!(quick.data.image_size, 32);
}

#[test]
fn impossible_values_name_their_field() {
    let cases: [(&str, &str, &str); 8] = [
        ("batch_size = 8", "batch_size = 1", "batch_size"),
        ("epochs = 3", "epochs = 0", "epochs"),
        ("d0 = 8", "d0 = 33", "method.d0"),
        (
            "width_multiplier = 0.0625",
            "width_multiplier = 0.01",
            "model.width_multiplier",
        ),
        ("image_size = 32", "image_size = 4", "data.image_size"),
        (
            "warmup_epochs = 1.0",
            "warmup_epochs = 3.0",
            "schedule.warmup_epochs",
        ),
        (
            "warmup_epochs = 1.0",
            "warmup_epochs = 1.0\nlr = -1.0",
            "schedule.lr",
        ),
        (
            "image_size = 32",
            "image_size = 32\nlimit = 4",
            "data.limit",
        ),
    ];
    for (from, to, field) in cases {
        let text = MINIMAL.replace(from, to);
        let c = TrainConfig::from_toml(&text, Path::new("t.toml")).unwrap();
        assert_eq!(field_of(c.check().unwrap_err()), field, "{to}");
    }
    // Unknown keys and wrong types are refused while parsing, naming the key.
    // (`speed` is a real table now: an unknown top-level key is `velocity`.)
    let e = TrainConfig::from_toml(&format!("velocity = 3\n{MINIMAL}"), Path::new("t.toml"));
    assert!(field_of(e.unwrap_err()).contains("velocity"));
    assert!(TrainConfig::from_toml(&format!("speed = 3\n{MINIMAL}"), Path::new("t.toml")).is_err());
    let e = TrainConfig::from_toml(
        &MINIMAL.replace("d0 = 8", "d0 = 8\nd1 = 2"),
        Path::new("t.toml"),
    );
    assert!(field_of(e.unwrap_err()).contains("d1"));
    let e = TrainConfig::from_toml(&format!("device = \"tpu\"\n{MINIMAL}"), Path::new("t.toml"));
    assert!(e.is_err());
}

#[test]
fn flags_override_the_file() {
    let mut c = minimal();
    c.apply(&Overrides {
        epochs: Some(7),
        device: Some(DeviceSpec::Cuda(1)),
        data_path: Some("elsewhere".into()),
        lr: Some(0.5),
        ..Default::default()
    });
    assert_eq!(c.epochs, 7);
    assert_eq!(c.device, DeviceSpec::Cuda(1));
    assert_eq!(c.data.source.path(), Path::new("elsewhere"));
    assert_eq!(c.schedule.lr, 0.5); // a copied value: exact
    assert_eq!(c.batch_size, 8);
}

#[test]
fn only_fields_that_change_the_weights_forbid_a_resume() {
    let a = minimal();
    let mut b = a.clone();
    b.workers = 9;
    b.device = DeviceSpec::Cuda(0);
    b.log.every_steps = 3;
    // How the processes communicate changes the weights by rounding at most.
    b.dist.backend = directclr::dist::Backend::Nccl;
    b.dist.overlap = !a.dist.overlap;
    b.dist.bucket_mb = 1.0;
    b.dist.timeout_s = 5;
    // Neither do the speed levers that change how the step runs, not what it computes.
    b.speed.fused_optimizer = !a.speed.fused_optimizer;
    b.speed.cudnn_benchmark = !a.speed.cudnn_benchmark;
    b.speed.non_blocking = !a.speed.non_blocking;
    assert!(differing_fields(&a, &b).unwrap().is_empty());
    // Where the views are made, and from which decoded size, changes the pixels.
    b.speed.source_size = Some(40);
    assert_eq!(differing_fields(&a, &b).unwrap(), vec!["speed.source_size"]);
    b.speed.source_size = a.speed.source_size;
    b.dist.sync_bn = !a.dist.sync_bn;
    assert_eq!(differing_fields(&a, &b).unwrap(), vec!["dist.sync_bn"]);
    b.dist.sync_bn = a.dist.sync_bn;
    b.seed = 4;
    b.method = Method::DirectClr { d0: 4 };
    b.schedule.lr = 1.0;
    assert_eq!(
        differing_fields(&a, &b).unwrap(),
        vec!["method.d0", "schedule.lr", "seed"]
    );
}

#[test]
fn precision_defaults_to_bf16_channels_last_and_can_be_switched_off() {
    use directclr::train::{AutocastDtype, PrecisionConfig};
    assert_eq!(
        minimal().precision,
        PrecisionConfig {
            autocast: AutocastDtype::Bf16,
            channels_last: true
        }
    );
    let text = format!("{MINIMAL}[precision]\nautocast = \"off\"\nchannels_last = false\n");
    let c = TrainConfig::from_toml(&text, Path::new("p.toml")).unwrap();
    assert_eq!(
        c.precision,
        PrecisionConfig {
            autocast: AutocastDtype::Off,
            channels_last: false
        }
    );
    let bad = format!("{MINIMAL}[precision]\nautocast = \"fp8\"\n");
    assert!(TrainConfig::from_toml(&bad, Path::new("p.toml")).is_err());
    // Precision changes the numbers on CUDA, so it is not a resume-free field.
    assert!(!differing_fields(&minimal(), &c).unwrap().is_empty());
}

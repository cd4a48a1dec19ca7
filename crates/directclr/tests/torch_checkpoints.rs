//! Checkpoints written by real PyTorch (`torch.save`, fixtures in
//! `tests/fixtures/torch_real/`, written by `make_real_torch_fixtures.py`): a width-1/16
//! CIFAR-stem ResNet-18 state dict in each layout people's checkpoints have (bare,
//! `{"state_dict": …}`, `{"model": …}` of Parameters, `{"backbone": …, "projector": …}`,
//! `module.`- and `backbone.`-prefixed keys, with a classifier `fc.*`) loads as an encoder and
//! gives, in eval mode, the same representation bit for bit as the safetensors file of the same
//! weights.

use std::path::{Path, PathBuf};

use directclr::model::{
    load_encoder_file, read_torch_tensors, read_weights_file, Arch, ResNet, ResNetConfig, Stem,
};
use tch::{nn, Device, Kind, Tensor};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/torch_real")
        .join(name)
}

fn encoder(arch: Arch, stem: Stem, width: f64) -> (nn::VarStore, ResNet) {
    let vs = nn::VarStore::new(Device::Cpu);
    let config = ResNetConfig {
        arch,
        stem,
        width_multiplier: width,
        zero_init_residual: true,
    };
    let r = config.build(&vs.root()).unwrap();
    (vs, r)
}

/// Four 16×16 images in [-1, 1) from a formula (the fractional parts of i·φ⁻¹), not from
/// libtorch's generator: the tests of this binary run in parallel and share that generator, so
/// a seeded draw here could interleave with another test's draws.
fn images() -> Tensor {
    let i = Tensor::arange(4 * 3 * 16 * 16, (Kind::Double, Device::Cpu));
    let v = &i * 0.6180339887498949;
    let frac = &v - v.floor();
    (frac * 2.0 - 1.0).to_kind(Kind::Float).view([4, 3, 16, 16])
}

fn representation(file: &str, prefix: Option<&str>) -> (Tensor, String) {
    let (_vs, r) = encoder(Arch::ResNet18, Stem::Cifar, 1.0 / 16.0);
    let report = load_encoder_file(&r, &fixture(file), prefix).unwrap();
    (r.forward_t(&images(), false).unwrap(), report.prefix)
}

const LAYOUTS: [(&str, &str); 7] = [
    ("bare.pt", ""),
    ("state_dict.pth.tar", "state_dict."),
    ("model_params.pth", "model."),
    ("backbone_projector.pt", "backbone."),
    ("ddp.pt", "module."),
    ("solo.ckpt.pt", "state_dict.backbone."),
    ("with_fc.bin", ""),
];

#[test]
fn every_layout_gives_the_representation_of_the_safetensors() {
    let (reference, prefix) = representation("encoder.safetensors", None);
    assert_eq!(prefix, "");
    assert!(reference.abs().sum(Kind::Double).double_value(&[]) > 0.0);
    for (file, expected_prefix) in LAYOUTS {
        let (r, prefix) = representation(file, None);
        assert_eq!(prefix, expected_prefix, "{file}");
        assert!(r.equal(&reference), "{file}: representation differs");
    }
    // An explicit prefix, with or without its dot, and matched at a `.` boundary.
    let (r, p) = representation("solo.ckpt.pt", Some("backbone"));
    assert_eq!(p, "state_dict.backbone.");
    assert!(r.equal(&reference));
    let (r, _) = representation("ddp.pt", Some("module."));
    assert!(r.equal(&reference));
}

#[test]
fn every_tensor_reads_as_torch_wrote_it() {
    let reference = read_weights_file(&fixture("encoder.safetensors")).unwrap();
    let bare = read_torch_tensors(&fixture("bare.pt")).unwrap();
    assert_eq!(bare.len(), reference.len());
    for (name, t) in &bare {
        let (_, r) = reference.iter().find(|(n, _)| n == name).unwrap();
        assert_eq!(t.kind(), r.kind(), "{name}");
        assert!(t.equal(r), "{name}");
    }
    // num_batches_tracked: an int64 scalar in a LongStorage.
    let (_, nbt) = bare
        .iter()
        .find(|(n, _)| n == "bn1.num_batches_tracked")
        .unwrap();
    assert_eq!(nbt.kind(), Kind::Int64);
    assert_eq!(nbt.size(), Vec::<i64>::new());
    assert_eq!(nbt.int64_value(&[]), 7);
}

fn mismatch(file: &str, arch: Arch, stem: Stem, width: f64, prefix: Option<&str>) -> String {
    let (_vs, r) = encoder(arch, stem, width);
    match load_encoder_file(&r, &fixture(file), prefix) {
        Err(e @ directclr::Error::StateMismatch { .. }) => e.to_string(),
        Err(e) => panic!("not a mismatch: {e}"),
        Ok(_) => panic!("{file} loaded into {arch:?}"),
    }
}

#[test]
fn a_wrong_architecture_lists_the_differences_and_says_what_fits() {
    let err = mismatch("ddp.pt", Arch::ResNet34, Stem::Cifar, 1.0 / 16.0, None);
    assert!(err.contains("missing from the source"), "{err}");
    assert!(err.contains("layer1.2.conv1.weight [4, 4, 3, 3]"), "{err}");
    assert!(err.contains("`module.`"), "{err}");
    assert!(
        err.contains("--arch resnet18 --stem cifar --width 0.0625"),
        "{err}"
    );
    let err = mismatch("bare.pt", Arch::ResNet18, Stem::ImageNet, 1.0 / 8.0, None);
    assert!(err.contains("of another shape"), "{err}");
    assert!(err.contains("conv1.weight: [4, 3, 3, 3]"), "{err}");
    // A prefix that is not in the file.
    let err = mismatch(
        "ddp.pt",
        Arch::ResNet18,
        Stem::Cifar,
        1.0 / 16.0,
        Some("backbone."),
    );
    assert!(err.contains("missing from the source"), "{err}");
}

#[test]
fn forbidden_globals_are_refused_by_name() {
    let err = read_torch_tensors(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/torch/evil.pt"),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("os.system"), "{err}");
}

#[test]
fn an_encoder_under_two_prefixes_asks_for_one() {
    let bare = read_torch_tensors(&fixture("bare.pt")).unwrap();
    let mut two = Vec::new();
    for p in ["encoder_q.", "encoder_k."] {
        two.extend(
            bare.iter()
                .map(|(n, t)| (format!("{p}{n}"), t.shallow_clone())),
        );
    }
    let (_vs, r) = encoder(Arch::ResNet18, Stem::Cifar, 1.0 / 16.0);
    let err = directclr::model::load_encoder_state(&r, &two, None, "moco")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("several prefixes") && err.contains("--prefix"),
        "{err}"
    );
    let report = directclr::model::load_encoder_state(&r, &two, Some("encoder_q"), "moco").unwrap();
    assert_eq!(report.prefix, "encoder_q.");
    assert_eq!(report.outside, bare.len());
}

#[test]
fn an_exported_torch_save_file_reads_back_bit_for_bit() {
    let (_vs, r) = encoder(Arch::ResNet18, Stem::Cifar, 1.0 / 16.0);
    load_encoder_file(&r, &fixture("encoder.safetensors"), None).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("exported.pt");
    directclr::model::save_torch(&file, r.named_tensors()).unwrap();
    let back = read_torch_tensors(&file).unwrap();
    assert_eq!(back.len(), r.named_tensors().len());
    for ((n, t), (m, s)) in back.iter().zip(r.named_tensors()) {
        assert_eq!(n, m);
        assert_eq!(t.kind(), s.kind(), "{n}");
        assert!(t.equal(s), "{n}");
    }
    let (_vs2, r2) = encoder(Arch::ResNet18, Stem::Cifar, 1.0 / 16.0);
    load_encoder_file(&r2, &file, None).unwrap();
    assert!(r2
        .forward_t(&images(), false)
        .unwrap()
        .equal(&r.forward_t(&images(), false).unwrap()));
}

/// The entries of a zip archive, in order.
fn entries(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    use std::io::Read;
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    (0..z.len())
        .map(|i| {
            let mut e = z.by_index(i).unwrap();
            let mut b = Vec::new();
            e.read_to_end(&mut b).unwrap();
            (e.name().to_string(), b)
        })
        .collect()
}

fn rezip(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    use std::io::Write;
    let mut out = std::io::Cursor::new(Vec::new());
    let mut z = zip::ZipWriter::new(&mut out);
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, b) in entries {
        z.start_file(name.as_str(), opts).unwrap();
        z.write_all(b).unwrap();
    }
    z.finish().unwrap();
    out.into_inner()
}

fn replace(hay: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let at = hay
        .windows(from.len())
        .position(|w| w == from)
        .expect("pattern present");
    [&hay[..at], to, &hay[at + from.len()..]].concat()
}

#[test]
fn hostile_checkpoints_are_refused_naming_the_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let good = std::fs::read(fixture("bare.pt")).unwrap();
    let parts = entries(&good);
    let pkl = parts
        .iter()
        .position(|(n, _)| n == "bare/data.pkl")
        .unwrap();
    let with_pickle = |p: Vec<u8>| {
        let mut e = parts.clone();
        e[pkl].1 = p;
        rezip(&e)
    };
    // conv1.weight [4, 3, 3, 3] has strides (27, 9, 3, 1), in the pickle as BININT1s.
    let strides = b"K\x1bK\tK\x03K\x01t";
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "truncated",
            good[..good.len() / 2].to_vec(),
            "not a zip-format torch.save file",
        ),
        (
            "legacy",
            b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.".to_vec(),
            "legacy format",
        ),
        (
            "missing_storage",
            rezip(
                &parts
                    .iter()
                    .filter(|(n, _)| n != "bare/data/0")
                    .cloned()
                    .collect::<Vec<_>>(),
            ),
            "storage `bare/data/0` is missing",
        ),
        (
            "short_storage",
            {
                let mut e = parts.clone();
                let s = e.iter_mut().find(|(n, _)| n == "bare/data/0").unwrap();
                s.1.truncate(40);
                rezip(&e)
            },
            "holds 40 bytes, fewer than its 108 elements",
        ),
        (
            "stride_past_storage",
            with_pickle(replace(&parts[pkl].1, strides, b"K\x1cK\tK\x03K\x01t")),
            "reaches element 110 of a storage of 108 elements",
        ),
        (
            "overflowing_stride",
            with_pickle(replace(
                &parts[pkl].1,
                strides,
                b"\x8a\x08\xff\xff\xff\xff\xff\xff\xff\x7fK\tK\x03K\x01t",
            )),
            "overflows",
        ),
        (
            "negative_stride",
            with_pickle(replace(
                &parts[pkl].1,
                strides,
                b"\x8a\x01\xffK\tK\x03K\x01t",
            )),
            "tensor stride is not a non-negative integer",
        ),
        (
            "unsupported_dtype",
            with_pickle(replace(
                &parts[pkl].1,
                b"torch\nFloatStorage\n",
                b"torch\nComplexFloatStorage\n",
            )),
            "torch.ComplexFloatStorage",
        ),
        (
            "forbidden_global",
            with_pickle(replace(
                &parts[pkl].1,
                b"collections\nOrderedDict\n",
                b"builtins\neval\n",
            )),
            "builtins.eval",
        ),
        (
            "main_class",
            with_pickle(replace(
                &parts[pkl].1,
                b"collections\nOrderedDict\n",
                b"__main__\nNet\n",
            )),
            "__main__.Net",
        ),
    ];
    for (name, bytes, expected) in cases {
        let file = tmp.path().join(format!("{name}.pt"));
        std::fs::write(&file, bytes).unwrap();
        let err = read_torch_tensors(&file).unwrap_err().to_string();
        assert!(err.contains(expected), "{name}: {err}");
        assert!(err.contains(&format!("{name}.pt")), "{name}: {err}");
    }
}

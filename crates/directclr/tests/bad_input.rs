//! The library's rows of the bad-input table (`docs/bad-input.md`): every class of bad input
//! a reader, a checkpoint loader or a configuration can meet, and the typed error that names
//! the file or field. The rows that need the command line (a full disk, a read-only folder,
//! `kill -9`, a diverging run) are in `crates/directclr-cli/tests/bad_input.rs`.

use std::io::Write;
use std::path::Path;

use directclr::data::cifar::{read_cifar10, read_cifar100, Cifar100Labels};
use directclr::data::dataset::{decode_file, Split};
use directclr::data::idx::{read_images, read_labels, read_pair, IdxDataset};
use directclr::data::image_folder::read_image_folder;
use directclr::data::stl10::{read_stl10, Stl10Split};
use directclr::data::{
    BadImagePolicy, DataError, Loader, LoaderConfig, OutputKind, RecipeConfig, Transform,
};
use directclr::model::{load_state, Arch, ResNetConfig, Stem};
use directclr::train::{
    read_checkpoint, GuardState, Opened, Progress, RunDir, TrainConfig, CHECKPOINT_FILE,
    CONFIG_FILE, METRICS_FILE,
};
use directclr::Error;
use tch::{nn, Device, Tensor};

fn idx_bytes(magic_type: u8, dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, magic_type, dims.len() as u8];
    for d in dims {
        b.extend_from_slice(&d.to_be_bytes());
    }
    b.extend_from_slice(data);
    b
}

fn gz(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// The message of a malformed-file error, checking that it names `file`.
fn malformed(r: Result<impl std::fmt::Debug, DataError>, file: &Path) -> String {
    match r {
        Err(e @ DataError::Malformed { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(&file.display().to_string()), "{msg}");
            msg
        }
        other => panic!(
            "expected a malformed-file error for {}, got {other:?}",
            file.display()
        ),
    }
}

fn images_28(n: usize) -> Vec<u8> {
    (0..n * 28 * 28).map(|i| (i % 251) as u8).collect()
}

#[test]
fn truncated_files_are_refused_naming_the_file() {
    let d = tempfile::tempdir().unwrap();
    let full = idx_bytes(8, &[3, 28, 28], &images_28(3));
    let p = d.path().join("train-images-idx3-ubyte");
    for cut in [3, 10, 16, full.len() - 1] {
        write(&p, &full[..cut]);
        let msg = malformed(read_images(&p), &p);
        assert!(
            ["truncated", "cannot read", "more than the file"]
                .iter()
                .any(|w| msg.contains(w)),
            "{msg}"
        );
    }
    // A gzip stream cut in its middle.
    let z = gz(&full);
    write(&p, &z[..z.len() / 2]);
    malformed(read_images(&p), &p);
    // CIFAR: a batch that is not a whole number of 3,073-byte records.
    let c = d.path().join("cifar");
    write(&c.join("batches.meta.txt"), b"a\nb\n");
    for i in 1..=5 {
        write(&c.join(format!("data_batch_{i}.bin")), &vec![0u8; 3073]);
    }
    write(&c.join("data_batch_3.bin"), &vec![0u8; 3073 * 2 - 5]);
    let msg = malformed(read_cifar10(&c, Split::Train), &c.join("data_batch_3.bin"));
    assert!(msg.contains("whole number"), "{msg}");
    // STL-10: an image file cut inside an image.
    let s = d.path().join("stl");
    write(&s.join("class_names.txt"), b"a\nb\n");
    write(&s.join("train_X.bin"), &vec![0u8; 27648 + 100]);
    write(&s.join("train_y.bin"), &[1]);
    malformed(read_stl10(&s, Stl10Split::Train), &s.join("train_X.bin"));
    // A PNG cut in half: a decode error naming the file.
    let png = d.path().join("cut.png");
    image::RgbImage::from_fn(16, 16, |x, y| image::Rgb([x as u8, y as u8, 0]))
        .save(&png)
        .unwrap();
    let bytes = std::fs::read(&png).unwrap();
    write(&png, &bytes[..bytes.len() / 2]);
    match decode_file(&png) {
        Err(e @ DataError::Decode { .. }) => assert!(e.to_string().contains("cut.png")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn wrong_magic_numbers_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("x-idx3-ubyte");
    let mut b = idx_bytes(8, &[1, 28, 28], &images_28(1));
    b[0] = 7;
    write(&p, &b);
    assert!(malformed(read_images(&p), &p).contains("magic"));
    // A JPEG or PNG extension on something else.
    let j = d.path().join("a.jpg");
    write(&j, b"GIF89a not what the name says");
    assert!(matches!(decode_file(&j), Err(DataError::Decode { .. })));
    // A checkpoint that is not safetensors.
    let c = d.path().join(CHECKPOINT_FILE);
    write(&c, b"PK\x03\x04 a zip file");
    match read_checkpoint(&c) {
        Err(e @ Error::StateMismatch { .. }) => {
            let m = e.to_string();
            assert!(
                m.contains("not a safetensors file") && m.contains(CHECKPOINT_FILE),
                "{m}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn wrong_dimensions_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("images");
    write(&p, &idx_bytes(8, &[28, 28], &images_28(1)));
    assert!(malformed(read_images(&p), &p).contains("3 (n, rows, cols)"));
    let l = d.path().join("labels");
    write(&l, &idx_bytes(8, &[2, 1], &[0, 1]));
    assert!(malformed(read_labels(&l), &l).contains("has 1"));
    // A dimension of size 0 after the first.
    write(&p, &idx_bytes(8, &[2, 0, 28], &[]));
    assert!(malformed(read_images(&p), &p).contains("size 0"));
    // Images and labels of different counts.
    write(&p, &idx_bytes(8, &[3, 28, 28], &images_28(3)));
    write(&l, &idx_bytes(8, &[2], &[0, 1]));
    match read_pair(&p, &l, IdxDataset::Mnist.class_names()) {
        Err(e @ DataError::LabelCountMismatch { .. }) => {
            assert!(e.to_string().contains("3 images") && e.to_string().contains("2 labels"))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn headers_claiming_more_than_the_file_holds_allocate_nothing() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("bomb-idx3-ubyte");
    // 4 × 10⁹ bytes claimed by a 16-byte file, plain and gzip.
    write(&p, &idx_bytes(8, &[65536, 256, 256], &[1, 2, 3]));
    assert!(malformed(read_images(&p), &p).contains("more than the file"));
    let mut claim = idx_bytes(8, &[65536, 256, 256], &[]);
    claim.extend(std::iter::repeat_n(0u8, 100_000));
    write(&p, &gz(&claim));
    assert!(malformed(read_images(&p), &p).contains("more than the file"));
}

#[test]
fn zero_byte_files_are_refused_naming_the_file() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("empty-idx3-ubyte");
    write(&p, b"");
    malformed(read_images(&p), &p);
    let c = d.path().join("c100");
    write(&c.join("fine_label_names.txt"), b"a\n");
    write(&c.join("train.bin"), b"");
    malformed(
        read_cifar100(&c, Split::Train, Cifar100Labels::Fine),
        &c.join("train.bin"),
    );
    let s = d.path().join("stl");
    write(&s.join("class_names.txt"), b"");
    malformed(
        read_stl10(&s, Stl10Split::Train),
        &s.join("class_names.txt"),
    );
    let j = d.path().join("zero.png");
    write(&j, b"");
    assert!(matches!(decode_file(&j), Err(DataError::Decode { .. })));
    let cfg = d.path().join("empty.toml");
    write(&cfg, b"");
    match TrainConfig::from_file(&cfg) {
        Err(e @ Error::InvalidConfig { .. }) => assert!(e.to_string().contains("missing field")),
        other => panic!("{other:?}"),
    }
    let ck = d.path().join(CHECKPOINT_FILE);
    write(&ck, b"");
    assert!(matches!(
        read_checkpoint(&ck),
        Err(Error::StateMismatch { .. })
    ));
}

#[test]
fn pixels_are_bytes_so_nan_pixels_cannot_enter() {
    // Every reader yields u8 pixels; an IDX file of another value type (0x0D, float32, the
    // only way to store a NaN pixel) is refused, not reinterpreted.
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("float-idx3-ubyte");
    let nan = f32::NAN.to_be_bytes();
    let data: Vec<u8> = std::iter::repeat_n(nan, 28 * 28).flatten().collect();
    write(&p, &idx_bytes(0x0d, &[1, 28, 28], &data));
    assert!(malformed(read_images(&p), &p).contains("value type 0x0d"));
}

#[test]
fn labels_out_of_range_and_duplicate_class_names_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let (p, l) = (d.path().join("i"), d.path().join("l"));
    write(&p, &idx_bytes(8, &[2, 28, 28], &images_28(2)));
    write(&l, &idx_bytes(8, &[2], &[3, 10]));
    assert!(
        malformed(read_pair(&p, &l, IdxDataset::Mnist.class_names()), &l)
            .contains("label 10 outside the 10 classes")
    );
    // STL-10 labels are 1..=10.
    let s = d.path().join("stl");
    write(&s.join("class_names.txt"), b"a\nb\n");
    write(&s.join("train_X.bin"), &vec![0u8; 27648]);
    write(&s.join("train_y.bin"), &[0]);
    malformed(read_stl10(&s, Stl10Split::Train), &s.join("train_y.bin"));
    // The same class name twice makes labels ambiguous.
    let c = d.path().join("cifar");
    write(&c.join("batches.meta.txt"), b"cat\ndog\ncat\n");
    let msg = malformed(read_cifar10(&c, Split::Train), &c.join("batches.meta.txt"));
    assert!(msg.contains("`cat` appears twice (lines 1 and 3)"), "{msg}");
}

#[test]
fn undecodable_images_in_a_folder_are_skipped_or_fatal_by_policy() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("train");
    for (i, cls) in ["a", "a", "b", "b"].iter().enumerate() {
        std::fs::create_dir_all(root.join(cls)).unwrap();
        image::RgbImage::from_fn(40, 40, |x, y| image::Rgb([x as u8, y as u8, i as u8]))
            .save(root.join(cls).join(format!("{i}.png")))
            .unwrap();
    }
    write(&root.join("a/broken.jpg"), b"\xff\xd8\xff truncated");
    write(&root.join("b/empty.png"), b"");
    let ds = std::sync::Arc::new(read_image_folder(&root).unwrap());
    assert_eq!(ds.len(), 6);
    let recipe = RecipeConfig::with_size(32).check().unwrap();
    let config = |bad_images| LoaderConfig {
        batch_size: 6,
        workers: 1,
        seed: 1,
        drop_last: false,
        output: OutputKind::U8,
        bad_images,
        ..Default::default()
    };
    let skip = Loader::new(
        ds.clone(),
        Transform::Views(recipe.clone()),
        config(BadImagePolicy::Skip),
    )
    .unwrap();
    let batches: Vec<_> = skip.epoch(0).collect::<Result<_, _>>().unwrap();
    let n: i64 = batches.iter().map(|b| b.labels.size()[0]).sum();
    assert_eq!(
        n, 4,
        "the two undecodable files are left out, the four images kept"
    );
    let fail = Loader::new(ds, Transform::Views(recipe), config(BadImagePolicy::Fail)).unwrap();
    match fail.epoch(0).collect::<Result<Vec<_>, _>>() {
        Err(e @ DataError::Decode { .. }) => {
            let m = e.to_string();
            assert!(m.contains("broken.jpg") || m.contains("empty.png"), "{m}")
        }
        other => panic!("{:?}", other.map(|v| v.len())),
    }
}

#[test]
fn link_cycles_in_an_image_folder_end() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("train");
    let cls = root.join("a");
    std::fs::create_dir_all(&cls).unwrap();
    image::RgbImage::new(4, 4).save(cls.join("x.png")).unwrap();
    std::os::unix::fs::symlink(&cls, cls.join("loop")).unwrap();
    let ds = read_image_folder(&root).unwrap();
    assert_eq!(ds.len(), 1, "the cycle is walked once");
}

fn state_of(arch: Arch, width: f64) -> Vec<(String, Tensor)> {
    let vs = nn::VarStore::new(Device::Cpu);
    let net = ResNetConfig {
        arch,
        stem: Stem::Cifar,
        width_multiplier: width,
        zero_init_residual: true,
    }
    .build(&vs.root())
    .unwrap();
    net.named_tensors()
        .iter()
        .map(|(n, t)| (n.clone(), t.shallow_clone()))
        .collect()
}

#[test]
fn a_checkpoint_of_another_architecture_is_refused_naming_the_tensors() {
    let r18 = state_of(Arch::ResNet18, 0.0625);
    let r34 = state_of(Arch::ResNet34, 0.0625);
    let wide = state_of(Arch::ResNet18, 0.125);
    match load_state(&r18, &r34, &[], "weights from `r34.safetensors`") {
        Err(e @ Error::StateMismatch { .. }) => {
            let m = e.to_string();
            assert!(
                m.contains("r34.safetensors") && m.contains("tensors not in the model"),
                "{m}"
            );
            assert!(m.contains("layer1.2."), "{m}");
        }
        other => panic!("{other:?}"),
    }
    match load_state(&r34, &r18, &[], "weights from `r18.safetensors`") {
        Err(e) => assert!(e.to_string().contains("missing from the source"), "{e}"),
        Ok(_) => panic!("a ResNet-18 cannot fill a ResNet-34"),
    }
    match load_state(&r18, &wide, &[], "weights from `wide.safetensors`") {
        Err(e) => {
            let m = e.to_string();
            assert!(
                m.contains("of another shape")
                    && m.contains(
                        "conv1.weight: [8, 3, 3, 3] in the source, [4, 3, 3, 3] in the model"
                    ),
                "{m}"
            )
        }
        Ok(_) => panic!("another width must not load"),
    }
}

const TINY: &str = r#"seed = 7
epochs = 3
batch_size = 16
[data]
source = { kind = "fashion_mnist", path = "data" }
image_size = 32
limit = 48
[model]
arch = "resnet18"
stem = "cifar"
width_multiplier = 0.0625
[method]
kind = "direct_clr"
d0 = 8
[schedule]
warmup_epochs = 1.0
"#;

/// The field a configuration error names.
fn config_error(text: &str) -> String {
    let r = TrainConfig::from_toml(text, Path::new("run.toml")).and_then(|c| c.check().map(|_| ()));
    match r {
        Err(Error::InvalidConfig { field, reason }) => format!("{field}: {reason}"),
        other => panic!("{text}\nmust be refused, got {other:?}"),
    }
}

#[test]
fn configs_with_unknown_or_contradictory_keys_are_refused_naming_the_key() {
    assert!(TrainConfig::from_toml(TINY, Path::new("t"))
        .unwrap()
        .check()
        .is_ok());
    let cases: [(&str, &str, &str); 11] = [
        // Unknown keys, at the top and in a table (a typo, or a newer version's field).
        ("epochs = 3", "epochs = 3\nepoch = 4", "epoch"),
        ("d0 = 8", "d0 = 8\nd1 = 3", "d1"),
        // The same key twice.
        ("seed = 7", "seed = 7\nseed = 8", "seed"),
        // Contradictions between fields.
        ("limit = 48", "limit = 8", "data.limit"),
        ("d0 = 8", "d0 = 33", "method.d0"),
        (
            "warmup_epochs = 1.0",
            "warmup_epochs = 5.0",
            "schedule.warmup_epochs",
        ),
        // Numbers that would size an allocation beyond any machine.
        ("image_size = 32", "image_size = 100000", "data.image_size"),
        (
            "width_multiplier = 0.0625",
            "width_multiplier = 1000.0",
            "model.width_multiplier",
        ),
        // Wrong types and impossible values.
        ("batch_size = 16", "batch_size = \"16\"", "16"),
        (
            "warmup_epochs = 1.0",
            "warmup_epochs = 1.0\n[guard]\nspike_factor = 0.5",
            "guard.spike_factor",
        ),
        (
            "warmup_epochs = 1.0",
            "warmup_epochs = 1.0\n[guard]\nlr_factor = 1.0",
            "guard.lr_factor",
        ),
    ];
    for (from, to, field) in cases {
        let msg = config_error(&TINY.replace(from, to));
        assert!(msg.contains(field), "{to}: `{field}` not named in {msg}");
    }
}

fn tiny() -> TrainConfig {
    TrainConfig::from_toml(TINY, Path::new("tiny.toml")).unwrap()
}

fn small_checkpoint(run: &RunDir) {
    let t = Tensor::ones([2], (tch::Kind::Float, Device::Cpu));
    run.write_checkpoint(
        Progress {
            epoch: 1,
            step: 3,
            seed: 7,
        },
        &GuardState::default(),
        &[("encoder.w".into(), t.shallow_clone())],
        &[("w".into(), t)],
    )
    .unwrap();
}

#[test]
fn a_run_folder_from_a_newer_version_is_refused_saying_so() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("run");
    let Opened::Fresh(run) = RunDir::open(&root, &tiny(), false).unwrap() else {
        panic!()
    };
    small_checkpoint(&run);
    // The checkpoint's format number raised, as a later version would write it: the header
    // is rewritten in place with the same length.
    let file = root.join(CHECKPOINT_FILE);
    let mut bytes = std::fs::read(&file).unwrap();
    let at = bytes
        .windows(12)
        .position(|w| w == b"checkpoint-1")
        .unwrap();
    bytes[at + 11] = b'2';
    std::fs::write(&file, bytes).unwrap();
    match RunDir::open(&root, &tiny(), false) {
        Err(e @ Error::StateMismatch { .. }) => {
            let m = e.to_string();
            assert!(m.contains("newer version") && m.contains("format 2"), "{m}");
        }
        other => panic!("{other:?}"),
    }
    // Its config.toml with a field this version does not know.
    std::fs::remove_file(&file).unwrap();
    let cfg = root.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&cfg).unwrap() + "\n[ema]\ndecay = 0.99\n";
    std::fs::write(&cfg, text).unwrap();
    match RunDir::open(&root, &tiny(), false) {
        Err(e @ Error::InvalidConfig { .. }) => {
            let m = e.to_string();
            assert!(m.contains("ema") && m.contains(CONFIG_FILE), "{m}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn torn_and_later_log_lines_are_dropped_on_resume() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("run");
    let Opened::Fresh(run) = RunDir::open(&root, &tiny(), false).unwrap() else {
        panic!()
    };
    small_checkpoint(&run);
    // A log killed mid-line, and lines after the checkpoint's step 3.
    let lines = [
        r#"{"kind":"step","epoch":0,"step":1,"loss":3.0,"probe_loss":null,"probe_acc":null,"lr":0.1,"images_per_s":1.0}"#,
        r#"{"kind":"guard","epoch":0,"step":0,"failed_step":2,"cause":"non_finite","loss":null,"baseline":3.0,"action":"rollback","lr_scale":0.5,"rollbacks":1}"#,
        r#"{"kind":"epoch","epoch":0,"step":3,"loss":3.0,"probe_loss":null,"probe_acc":null,"lr":0.1,"images_per_s":1.0}"#,
        r#"{"kind":"step","epoch":1,"step":4,"loss":3.0,"probe_loss":null,"probe_acc":null,"lr":0.1,"images_per_s":1.0}"#,
        r#"{"kind":"step","epoch":1,"st"#,
    ];
    std::fs::write(root.join(METRICS_FILE), lines.join("\n")).unwrap();
    let Opened::Resume(_, ck) = RunDir::open(&root, &tiny(), false).unwrap() else {
        panic!()
    };
    assert_eq!(ck.guard, GuardState::default());
    assert_eq!(ck.progress.step, 3);
    let kept = std::fs::read_to_string(root.join(METRICS_FILE)).unwrap();
    assert_eq!(kept, lines[..3].join("\n") + "\n");
}

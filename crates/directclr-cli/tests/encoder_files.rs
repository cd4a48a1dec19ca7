//! `--encoder FILE` without a run folder: a checkpoint written by real PyTorch (`torch.save`,
//! `module.`-prefixed keys; `crates/directclr/tests/fixtures/torch_real/`) evaluated with
//! `--arch`, and a wrong `--arch` refused with exit status 1, the differences listed and the
//! architecture the file fits named.

use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../directclr/tests/fixtures/torch_real")
        .join(name)
}

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/fashion-mnist-subset")
}

fn spectrum(file: &Path, arch: &str, out: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_directclr"))
        .args(["--threads", "1", "spectrum", "--encoder"])
        .arg(file)
        .args(["--arch", arch, "--stem", "cifar", "--width", "0.0625"])
        .args(["--dataset", "fashion_mnist", "--data"])
        .arg(data())
        .args([
            "--limit",
            "64",
            "--batch-size",
            "32",
            "--workers",
            "1",
            "--out",
        ])
        .arg(out)
        .output()
        .unwrap()
}

#[test]
fn spectrum_of_a_torch_checkpoint_with_its_architecture() {
    let tmp = tempfile::tempdir().unwrap();
    let out = spectrum(&fixture("ddp.pt"), "resnet18", tmp.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("ddp.pt (r, 64 samples, 32-d)"), "{stdout}");
    assert!(tmp.path().join("metrics.json").is_file());
}

#[test]
fn a_wrong_architecture_exits_1_with_the_mismatch() {
    let tmp = tempfile::tempdir().unwrap();
    let out = spectrum(&fixture("ddp.pt"), "resnet34", tmp.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("missing from the source"), "{stderr}");
    assert!(stderr.contains("`module.`"), "{stderr}");
    assert!(
        stderr.contains("--arch resnet18 --stem cifar --width 0.0625"),
        "{stderr}"
    );
}

#[test]
fn export_converts_a_checkpoint_to_torchvision_names() {
    let tmp = tempfile::tempdir().unwrap();
    let reference = directclr::model::read_weights_file(&fixture("encoder.safetensors")).unwrap();
    for out in ["encoder.pt", "encoder.safetensors"] {
        let file = tmp.path().join(out);
        let o = Command::new(env!("CARGO_BIN_EXE_directclr"))
            .args(["export", "--encoder"])
            .arg(fixture("solo.ckpt.pt"))
            .args([
                "--arch", "resnet18", "--stem", "cifar", "--width", "0.0625", "--out",
            ])
            .arg(&file)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let back = directclr::model::read_weights_file(&file).unwrap();
        assert_eq!(back.len(), reference.len(), "{out}");
        for (name, t) in &back {
            let (_, r) = reference.iter().find(|(n, _)| n == name).unwrap();
            assert!(t.equal(r), "{out}: {name}");
        }
    }
}

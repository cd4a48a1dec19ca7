//! `directclr spectrum --embeddings`: matrices written by numpy and safetensors, overlaid in
//! one report; keys, row normalisation and slices; clear errors with exit status 1.

use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../directclr/tests/fixtures/embeddings")
        .join(name)
}

fn spectrum(args: &[&str], files: &[PathBuf], out: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_directclr"))
        .arg("spectrum")
        .arg("--embeddings")
        .args(files)
        .args(args)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap()
}

#[test]
fn several_files_are_overlaid_in_one_report() {
    let tmp = tempfile::tempdir().unwrap();
    let files = [
        fixture("f32_c.npy"),
        fixture("compressed_fortran.npz"),
        fixture("bf16.safetensors"),
    ];
    let out = spectrum(&["--label", "a", "b", "c"], &files, tmp.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for label in ["a (r, 300 samples, 12-d)", "b (r", "c (r"] {
        assert!(stdout.contains(label), "{stdout}");
    }
    for file in [
        "spectrum.csv",
        "spectrum.png",
        "spectrum.svg",
        "metrics.json",
    ] {
        assert!(tmp.path().join(file).is_file(), "{file}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("metrics.json")).unwrap())
            .unwrap();
    let spectra = json.as_array().unwrap();
    assert_eq!(spectra.len(), 3);
    for s in spectra {
        assert_eq!(s["eigenvalues"].as_array().unwrap().len(), 12);
        assert_eq!(s["metrics"]["rows"], "l2");
    }
    // The f32 file and the f64 Fortran-ordered one hold the same matrix up to f32 rounding.
    let top = |i: usize| spectra[i]["eigenvalues"][0].as_f64().unwrap();
    assert!((top(0) - top(1)).abs() <= 1e-6 * top(1));
}

#[test]
fn keys_normalisation_and_slices_apply_to_files() {
    let tmp = tempfile::tempdir().unwrap();
    let out = spectrum(
        &["--key", "emb", "--normalise", "none", "--slice", "2:"],
        &[fixture("stored.npz")],
        tmp.path(),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("stored:emb (r[2:], 300 samples, 10-d)"),
        "{stdout}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("metrics.json")).unwrap())
            .unwrap();
    assert_eq!(json[0]["metrics"]["rows"], "none");
}

#[test]
fn bad_files_and_flags_exit_1_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    for (files, args, expect) in [
        (
            vec![fixture("two_floats.npz")],
            vec![],
            "choose one with --key: `a`, `b`",
        ),
        (vec![fixture("int_c.npy")], vec![], "int_c.npy"),
        (vec![fixture("absent.npy")], vec![], "absent.npy"),
        (
            vec![fixture("reference.json")],
            vec![],
            ".npy, .npz, .safetensors",
        ),
        (
            vec![fixture("f32_c.npy")],
            vec!["--label", "a", "b"],
            "--label is given 2 times for 1 files",
        ),
        (vec![fixture("f32_c.npy")], vec!["--slice", "5:40"], "slice"),
    ] {
        let out = spectrum(&args, &files, tmp.path());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{files:?}: {stderr}");
        assert!(stderr.contains(expect), "{files:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    // Neither --run nor --embeddings, or both: a usage error (exit 2).
    let out = Command::new(env!("CARGO_BIN_EXE_directclr"))
        .args(["spectrum", "--out"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--embeddings"));
}

#[test]
fn torch_save_files_are_read_and_code_is_refused() {
    let torch = |name: &str| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../directclr/tests/fixtures/torch")
            .join(name)
    };
    let tmp = tempfile::tempdir().unwrap();
    let out = spectrum(
        &["--key", "backbone.embeddings"],
        &[torch("nested.pth")],
        tmp.path(),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("nested:backbone.embeddings (r, 200 samples, 10-d)"),
        "{stdout}"
    );
    let out = spectrum(&[], &[torch("evil.pt")], tmp.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("evil.pt") && stderr.contains("`os.system`"),
        "{stderr}"
    );
}

/// A reader that closes the pipe early (`directclr spectrum … | head -1`) ends the command
/// quietly: no panic message, no exit status 101. The read end is closed before the child
/// prints, so its first write meets a closed pipe (if it wrote everything first, it exits 0,
/// which passes too).
#[test]
fn a_closed_pipe_ends_the_command_without_a_panic() {
    use std::os::unix::process::ExitStatusExt;
    use std::process::Stdio;
    let tmp = tempfile::tempdir().unwrap();
    for _ in 0..3 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_directclr"))
            .args(["spectrum", "--embeddings"])
            .arg(fixture("f32_c.npy"))
            .arg("--out")
            .arg(tmp.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(
            out.status.success() || out.status.signal() == Some(libc::SIGPIPE),
            "{:?}: {stderr}",
            out.status
        );
    }
}

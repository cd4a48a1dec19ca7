//! The command line as a user meets it: help, errors, and a small theory run.

use std::process::Command;

fn directclr() -> Command {
    Command::new(env!("CARGO_BIN_EXE_directclr"))
}

#[test]
fn help_explains_every_theory_command() {
    let out = directclr().args(["theory", "--help"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for sub in ["augmentation", "implicit", "depth", "projector", "all"] {
        assert!(text.contains(sub), "{sub} missing from:\n{text}");
    }
}

#[test]
fn impossible_values_exit_non_zero_naming_the_field() {
    for (args, field) in [
        (vec!["theory", "implicit", "--steps", "0"], "`steps`"),
        (
            vec!["theory", "augmentation", "--noisy-dims", "20"],
            "`noisy_dims`",
        ),
        (vec!["theory", "implicit", "--layers", "1"], "`layers`"),
        (vec!["theory", "implicit", "--lr", "-1"], "`lr`"),
        (
            vec!["theory", "augmentation", "--noise", "0.5,-1"],
            "`noise_std`",
        ),
        (
            vec!["theory", "depth", "--collapse-threshold", "2"],
            "`collapse_threshold`",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let out = directclr()
            .args(&args)
            .arg("--out")
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} must fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.starts_with("error: ") && err.contains(field),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn an_unwritable_output_folder_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let out = directclr()
        .args(["theory", "implicit", "--steps", "20", "--out"])
        .arg(file.join("sub"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot create folder") && err.contains("a-file"),
        "{err}"
    );
}

#[test]
fn a_small_theory_run_writes_numbers_and_figures() {
    let dir = tempfile::tempdir().unwrap();
    let out = directclr()
        .args([
            "--threads",
            "1",
            "theory",
            "all",
            "--steps",
            "200",
            "--log-every",
            "50",
            "--samples",
            "1000",
            "--out",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("Section 4") && stdout.contains("Section 5") && stdout.contains("Figure 6"),
        "{stdout}"
    );
    for f in [
        "augmentation/summary.json",
        "augmentation/final_spectra.png",
        "implicit/alignment.png",
        "implicit/singular_values_w1.png",
        "depth/spectra_depth.png",
        "depth/spectra_relu.png",
        "depth/L3-linear/spectrum.csv",
    ] {
        let p = dir.path().join(f);
        assert!(
            p.is_file() && std::fs::metadata(&p).unwrap().len() > 0,
            "{f}"
        );
    }
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("implicit/summary.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(summary["layers"], 2);
    // A PNG starts with its signature.
    assert_eq!(
        &std::fs::read(dir.path().join("implicit/alignment.png")).unwrap()[..4],
        b"\x89PNG"
    );
}

/// By default the binary keeps freed CPU memory for reuse (no per-block mmap), and `info`
/// reports what a 64 MiB tensor actually got from glibc; `--heap system` leaves glibc's defaults.
#[test]
fn info_reports_the_heap_policy_a_large_tensor_met() {
    let info = |args: &[&str]| {
        let out = directclr().args(args).arg("info").output().unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // Off glibc the policy does not apply and `info` says so; the assertions are for glibc.
    if cfg!(all(target_os = "linux", target_env = "gnu")) {
        let reuse = info(&[]);
        assert!(
            reuse.contains("freed CPU memory reused (heap reuse)"),
            "{reuse}"
        );
        let system = info(&["--heap", "system"]);
        assert!(
            system.contains("mapped and unmapped each time (heap system)"),
            "{system}"
        );
    }
    let out = directclr()
        .args(["--heap", "mmap", "info"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("`mmap` is not one of reuse, system"));
}

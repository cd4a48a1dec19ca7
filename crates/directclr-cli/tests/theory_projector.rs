//! `directclr theory projector` as a user meets it: a tiny run writes its files and table,
//! impossible head settings exit non-zero naming the field, never a panic.

use std::process::Command;

fn directclr() -> Command {
    Command::new(env!("CARGO_BIN_EXE_directclr"))
}

#[test]
fn a_tiny_projector_run_writes_its_files_and_table() {
    let dir = tempfile::tempdir().unwrap();
    let out = directclr()
        .args([
            "--threads",
            "1",
            "theory",
            "projector",
            "--steps",
            "40",
            "--log-every",
            "20",
            "--samples",
            "300",
            "--eval-samples",
            "100",
            "--d0",
            "4",
            "--rank",
            "3",
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
    assert!(stdout.contains("Section 6"), "{stdout}");
    for mechanism in ["strong-augmentation", "implicit-regularization"] {
        for head in [
            "none",
            "linear",
            "nonlinear",
            "direct-clr",
            "fixed-low-rank",
            "diagonal",
        ] {
            // One table row per mechanism × head.
            assert!(
                stdout
                    .lines()
                    .any(|l| l.contains(mechanism) && l.contains(&format!(" {head} "))),
                "{mechanism} {head} row missing:\n{stdout}"
            );
            let run = dir.path().join(mechanism).join(head);
            for f in ["r_metrics.csv", "spectrum.csv", "r_spectrum_evolution.png"] {
                let p = run.join(f);
                assert!(
                    p.is_file() && std::fs::metadata(&p).unwrap().len() > 0,
                    "{}",
                    p.display()
                );
            }
        }
        for f in ["final_r_spectra.png", "effective_rank.png"] {
            assert!(dir.path().join(mechanism).join(f).is_file(), "{f}");
        }
    }
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("summary.json")).unwrap())
            .unwrap();
    let runs = summary["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 12);
    let direct = runs
        .iter()
        .find(|r| r["head"] == "direct-clr")
        .expect("a DirectCLR run");
    assert_eq!(direct["z_dim"], 4);
    assert!(dir.path().join("summary.csv").is_file());
}

#[test]
fn impossible_head_settings_exit_non_zero_naming_the_field() {
    for (args, field) in [
        (vec!["--d0", "17"], "`d0`"),
        (vec!["--rank", "17"], "`rank`"),
        (vec!["--rank", "0"], "`rank`"),
        (vec!["--dim", "4", "--noisy-dims", "2", "--d0", "8"], "`d0`"),
        (vec!["--noisy-dims", "20"], "`noisy_dims`"),
        (vec!["--layers", "0"], "`layers`"),
        (vec!["--collapse-threshold", "1e-3"], "`collapse_threshold`"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let out = directclr()
            .args(["theory", "projector", "--steps", "10"])
            .args(&args)
            .arg("--out")
            .arg(dir.path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?} must fail with exit 1");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.starts_with("error: ") && err.contains(field) && !err.contains("panicked"),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn a_run_that_did_not_train_says_it_proves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = directclr()
        .args([
            "theory",
            "projector",
            "--mechanisms",
            "implicit-regularization",
            "--heads",
            "none",
            "--lr",
            "1e-9",
            "--steps",
            "100",
            "--samples",
            "300",
            "--eval-samples",
            "100",
            "--out",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("proves nothing"), "{stdout}");
}

#[test]
fn a_tiny_propositions_run_writes_its_files_and_tables() {
    let dir = tempfile::tempdir().unwrap();
    let out = directclr()
        .args([
            "--threads",
            "1",
            "theory",
            "propositions",
            "--steps",
            "40",
            "--log-every",
            "20",
            "--samples",
            "300",
            "--eval-samples",
            "100",
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
    assert!(stdout.contains("Proposition 1"), "{stdout}");
    assert!(stdout.contains("Proposition 2"), "{stdout}");
    for mechanism in ["strong-augmentation", "implicit-regularization"] {
        let lin = dir.path().join(mechanism).join("linear");
        for f in [
            "alignment.csv",
            "alignment_final.png",
            "off_diagonal_mass.png",
        ] {
            assert!(lin.join(f).is_file(), "{}", lin.join(f).display());
        }
    }
    for f in ["summary.json", "summary.csv", "projector_rank.csv"] {
        assert!(dir.path().join(f).is_file(), "{f}");
    }
    // A bad option names its field and exits non-zero without a panic.
    let out = directclr()
        .args([
            "theory",
            "propositions",
            "--mechanisms",
            "sideways",
            "--out",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("--mechanisms"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let out = directclr()
        .args([
            "theory",
            "propositions",
            "--noisy-dims",
            "20",
            "--steps",
            "5",
            "--out",
        ])
        .arg(dir.path().join("bad"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "--noisy-dims 20 was accepted");
    assert!(stderr.contains("`noisy_dims`"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn theory_conditions_runs_and_refuses_bad_conditions_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let out = directclr()
        .args([
            "--threads",
            "1",
            "theory",
            "conditions",
            "--mechanisms",
            "implicit-regularization",
            "--scales",
            "1,0.1",
            "--weight-decays",
            "0",
            "--z-norms",
            "none,l2",
            "--steps",
            "20",
            "--log-every",
            "10",
            "--samples",
            "300",
            "--eval-samples",
            "100",
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
    assert!(stdout.contains("Conditions of Section 6"), "{stdout}");
    // Both normalisations of z are rows of the table.
    assert!(
        stdout.contains(" none ") && stdout.contains(" l2 "),
        "{stdout}"
    );
    assert!(dir.path().join("summary.csv").is_file());
    for (args, field) in [
        (["--scales", "0"], "`encoder_init_scale`"),
        (["--weight-decays", "-1"], "`weight_decay`"),
        // The sweep sets the normalisation per condition; a global one is refused.
        (["--z-norm", "l2"], "`z_norm`"),
    ] {
        let out = directclr()
            .args(["theory", "conditions", "--steps", "5"])
            .args(args)
            .arg("--out")
            .arg(dir.path().join("bad"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(stderr.contains(field), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn theory_conditions_sweeps_the_training_length_and_refuses_bad_lists_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let out = directclr()
        .args([
            "--threads",
            "1",
            "theory",
            "conditions",
            "--mechanisms",
            "implicit-regularization",
            "--scales",
            "1",
            "--weight-decays",
            "0",
            "--z-norms",
            "none",
            "--steps-list",
            "20,30",
            "--log-every",
            "10",
            "--samples",
            "300",
            "--eval-samples",
            "100",
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
    assert!(stdout.contains(" steps "), "{stdout}");
    // Each length is a row value of the table: the three heads at 20 and at 30 steps.
    for steps in [" 20 ", " 30 "] {
        assert_eq!(
            stdout
                .lines()
                .filter(|l| l.contains("implicit-regularization") && l.contains(steps))
                .count(),
            3,
            "{steps}: {stdout}"
        );
    }
    let csv = std::fs::read_to_string(dir.path().join("summary.csv")).unwrap();
    assert!(csv.lines().next().unwrap().contains(",steps,"), "{csv}");
    for args in [
        &["--steps-list", "0"][..],
        &["--steps-list", ""][..],
        &["--steps-list", "10,10"][..],
        // One length flag at a time.
        &["--steps-list", "10", "--steps", "5"][..],
    ] {
        let out = directclr()
            .args(["theory", "conditions"])
            .args(args)
            .arg("--out")
            .arg(dir.path().join("bad"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(
            stderr.contains("steps_list") || stderr.contains("--steps-list"),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

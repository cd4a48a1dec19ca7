//! `directclr probe / knn / spectrum` end to end on a tiny run: outputs, exit codes and the
//! messages of bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;
use common::Tiny;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_directclr"));
    c.args(["--threads", "1"]);
    c
}

fn tiny_run(dir: &Path, width: f64) -> PathBuf {
    let config = Tiny {
        seed: Some(4),
        epochs: 1,
        batch_size: 32,
        workers: Some(1),
        limit: 64,
        width,
        optimizer: Some("sgd"),
        lr: Some(0.1),
        warmup_epochs: 0.0,
        monitor_samples: Some(64),
        ..Tiny::default()
    }
    .write(dir, &format!("tiny-{width}"));
    let out = dir.join(format!("run-{width}"));
    let o = bin()
        .args(["train", "--quiet", "--config"])
        .arg(&config)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    out
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn probe_knn_and_spectrum_run_and_refuse_bad_input() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tiny_run(tmp.path(), 0.0625);
    let limits = [
        "--limit-train",
        "128",
        "--limit-test",
        "64",
        "--workers",
        "1",
    ];

    let o = bin()
        .args(["probe", "--mode", "features", "--epochs", "2", "--run"])
        .arg(&run)
        .args(limits)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let out = run.join("probe/r-features");
    for f in ["probe.json", "probe.csv", "classifier.safetensors"] {
        assert!(out.join(f).is_file(), "{f}");
    }
    assert_eq!(
        std::fs::read_to_string(out.join("probe.csv"))
            .unwrap()
            .lines()
            .count(),
        3
    );
    // The saved classifier and the online probe evaluate without training.
    let o = bin()
        .args(["probe", "--run"])
        .arg(&run)
        .arg("--classifier")
        .arg(out.join("classifier.safetensors"))
        .args(limits)
        .output()
        .unwrap();
    assert!(
        o.status.success() && text(&o).contains("saved classifier"),
        "{}",
        text(&o)
    );
    let o = bin()
        .args(["probe", "--online", "--run"])
        .arg(&run)
        .args(limits)
        .output()
        .unwrap();
    assert!(
        o.status.success() && text(&o).contains("online probe"),
        "{}",
        text(&o)
    );

    // A slice beyond r (32-d), a space the method lacks: errors before any work.
    let o = bin()
        .args(["probe", "--slice", "20:40", "--run"])
        .arg(&run)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("slice") && text(&o).contains("32 coordinates"),
        "{}",
        text(&o)
    );
    let o = bin()
        .args(["probe", "--space", "projector-hidden", "--run"])
        .arg(&run)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("no projector hidden layer"),
        "{}",
        text(&o)
    );

    let o = bin()
        .args(["knn", "--k", "3,10", "--run"])
        .arg(&run)
        .args(limits)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("k=3") && text(&o).contains("k=10"),
        "{}",
        text(&o)
    );

    let spec = tmp.path().join("spectrum");
    let o = bin()
        .args(["spectrum", "--limit", "64", "--run"])
        .arg(&run)
        .arg("--run")
        .arg(&run)
        .args(["--label", "a", "--label", "b", "--out"])
        .arg(&spec)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    for f in [
        "spectrum.csv",
        "spectrum.png",
        "spectrum.svg",
        "metrics.json",
    ] {
        assert!(spec.join(f).is_file(), "{f}");
    }
    let csv = std::fs::read_to_string(spec.join("spectrum.csv")).unwrap();
    assert_eq!(csv.lines().count(), 33, "header + 32 eigenvalues");
    let o = bin()
        .args(["spectrum", "--run"])
        .arg(&run)
        .args(["--label", "a", "--label", "b"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("--label"), "{}", text(&o));

    // A checkpoint of another width, a missing run: errors that say what differs.
    let other = tiny_run(tmp.path(), 0.125);
    let o = bin()
        .args(["knn", "--run"])
        .arg(&run)
        .arg("--checkpoint")
        .arg(other.join("checkpoint.safetensors"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("of another shape") && text(&o).contains("conv1.weight"),
        "{}",
        text(&o)
    );
    let o = bin()
        .args(["probe", "--run"])
        .arg(tmp.path().join("nope"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("config.toml"), "{}", text(&o));
}

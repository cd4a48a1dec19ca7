//! Helpers of the command-line tests: a tiny run on the shipped Fashion-MNIST subset.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

// The tiny run's TOML, shared with the library's tests.
#[path = "../../../directclr/tests/common/mod.rs"]
mod tiny_run;
pub use tiny_run::Tiny;

/// Writes a tiny DirectCLR run (ResNet-18 of width 1/16, r 32-d, 32 px, batch 16, `limit`
/// images, `epochs` epochs, a checkpoint after each, the default optimiser LARS at lr 0.3) with `extra` TOML appended.
pub fn tiny_config(dir: &Path, name: &str, limit: usize, epochs: usize, extra: &str) -> PathBuf {
    tiny_config_lr(dir, name, limit, epochs, 0.3, extra)
}

/// [`tiny_config`] at learning rate `lr` (`schedule.lr`).
pub fn tiny_config_lr(
    dir: &Path,
    name: &str,
    limit: usize,
    epochs: usize,
    lr: f64,
    extra: &str,
) -> PathBuf {
    Tiny {
        seed: Some(7),
        epochs,
        workers: Some(2),
        probe: Some(true),
        limit,
        lr: Some(lr),
        log_every_steps: Some(1),
        extra,
        ..Tiny::default()
    }
    .write(dir, name)
}

/// `directclr train` on `config` into `out` (2 threads, quiet).
pub fn train(config: &Path, out: &Path, extra: &[&str]) -> Command {
    train_threads(config, out, 2, extra)
}

/// [`train`] with `threads` CPU threads.
pub fn train_threads(config: &Path, out: &Path, threads: usize, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_directclr"));
    c.args([
        "--threads",
        &threads.to_string(),
        "train",
        "--quiet",
        "--config",
    ])
    .arg(config)
    .arg("--out")
    .arg(out)
    .args(extra);
    c
}

/// Runs `cmd`, failing the test with its output if it fails.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "command failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs `cmd`, expecting a clean failure (non-zero exit, no panic); returns its stderr.
pub fn run_err(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "must fail:\n{err}");
    assert_eq!(
        out.status.code(),
        Some(1),
        "a clean exit with status 1:\n{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    err
}

/// A file's bytes.
pub fn bytes(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The lines of `metrics.jsonl`.
pub fn metrics(out: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The numbers of the metrics log without the wall-clock throughput.
pub fn losses(out: &Path) -> Vec<String> {
    metrics(out)
        .into_iter()
        .map(|mut m| {
            m.as_object_mut().unwrap().remove("images_per_s");
            m.to_string()
        })
        .collect()
}

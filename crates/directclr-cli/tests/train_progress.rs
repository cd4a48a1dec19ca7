//! What `directclr train` prints while it runs, when stderr is not a terminal (as under CI or
//! with `2> log`): a plain line per metrics window with the ETA and one per epoch; with
//! `--quiet`, only the epoch lines.

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::Tiny;

/// 48 images, batch 16 (3 steps an epoch), 2 epochs, a metrics line every step.
fn config(dir: &Path) -> PathBuf {
    Tiny {
        seed: Some(3),
        epochs: 2,
        workers: Some(1),
        lr: Some(0.3),
        log_every_steps: Some(1),
        ..Tiny::default()
    }
    .write(dir, "progress")
}

/// Runs the config into `out` with `extra` flags; returns stderr (stderr is a pipe here).
fn stderr_of(config: &Path, out: &Path, extra: &[&str]) -> String {
    let res = Command::new(env!("CARGO_BIN_EXE_directclr"))
        .args(["--threads", "2", "train", "--config"])
        .arg(config)
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&res.stderr).into_owned();
    assert!(res.status.success(), "train failed:\n{err}");
    err
}

fn count(text: &str, prefix: &str) -> usize {
    text.lines().filter(|l| l.starts_with(prefix)).count()
}

#[test]
fn without_a_terminal_each_window_is_a_plain_line_with_its_eta() {
    let tmp = tempfile::tempdir().unwrap();
    let err = stderr_of(&config(tmp.path()), &tmp.path().join("lines"), &[]);
    // No terminal control sequences (no bar) in a redirected log.
    assert!(!err.contains('\x1b') && !err.contains('\r'), "{err:?}");
    let steps: Vec<&str> = err.lines().filter(|l| l.starts_with("[step]")).collect();
    assert_eq!(steps.len(), 6, "{err}");
    for (i, l) in steps.iter().enumerate() {
        assert!(l.contains(&format!(" step {}:", i + 1)), "{l}");
        assert!(
            l.contains(" loss ") && l.contains(" lr ") && l.contains(" img/s"),
            "{l}"
        );
        assert!(l.contains(" ETA "), "{l}");
    }
    assert!(steps[5].ends_with("ETA 0:00:00"), "{}", steps[5]);
    assert_eq!(count(&err, "[epoch]"), 2, "{err}");
    assert_eq!(count(&err, "checkpoint after epoch"), 2, "{err}");
}

#[test]
fn quiet_keeps_one_line_per_epoch() {
    let tmp = tempfile::tempdir().unwrap();
    let err = stderr_of(&config(tmp.path()), &tmp.path().join("quiet"), &["--quiet"]);
    assert_eq!(count(&err, "[step]"), 0, "{err}");
    assert_eq!(count(&err, "[epoch]"), 2, "{err}");
    assert_eq!(count(&err, "checkpoint"), 0, "{err}");
    assert!(!err.contains('\x1b'), "{err:?}");
}

//! The collapse monitor: rank metrics of r and z in the epoch lines of `metrics.jsonl`, and a
//! warning when the collapsed count jumps.

use std::path::Path;

use directclr::eval::Space;
use directclr::train::{
    self, collapse_jump, CollapseMonitor, Event, MetricsKind, MetricsLine, MonitorConfig,
    RunOptions, TrainConfig,
};
use tch::{nn, Device};

mod common;
mod tolerance;
use common::Tiny;
use tolerance::EPS64;

/// Initial weights come from libtorch's one process-wide generator. The tests of this file that
/// build models take this lock, so that no other test draws from it between their seeding and
/// their draws (tests run in parallel threads).
static GENERATOR: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn generator() -> std::sync::MutexGuard<'static, ()> {
    GENERATOR.lock().unwrap_or_else(|e| e.into_inner())
}

fn config(extra: &str) -> TrainConfig {
    let text = Tiny {
        seed: Some(1),
        epochs: 2,
        batch_size: 32,
        workers: Some(1),
        probe: Some(false),
        limit: 64,
        method: Some("kind = \"trainable_diagonal\""),
        optimizer: Some("sgd"),
        lr: Some(0.05),
        warmup_epochs: 0.0,
        monitor_samples: Some(100),
        extra,
        ..Tiny::default()
    }
    .toml();
    TrainConfig::from_toml(&text, Path::new("monitor.toml")).unwrap()
}

#[test]
fn jumps_follow_the_configured_or_default_size() {
    let auto = MonitorConfig::default();
    assert_eq!(auto.jump_for(2048), 204);
    assert_eq!(auto.jump_for(16), 2);
    assert!(collapse_jump(&auto, 0, 2, 16));
    assert!(!collapse_jump(&auto, 3, 4, 16));
    assert!(!collapse_jump(&auto, 5, 0, 16), "recovering is no jump");
    let fixed = MonitorConfig { jump: 1, ..auto };
    assert!(collapse_jump(&fixed, 3, 4, 2048));
    let bad = MonitorConfig { samples: 1, ..auto };
    assert!(bad
        .validate()
        .unwrap_err()
        .to_string()
        .contains("monitor.samples"));
}

#[test]
fn epoch_lines_carry_rank_metrics_of_r_and_z() {
    let _generator = generator();
    tch::set_num_threads(1);
    let tmp = tempfile::tempdir().unwrap();
    let checked = config("").check().unwrap();
    let mut lines = Vec::new();
    train::train(
        &checked,
        &RunOptions {
            out: tmp.path().to_path_buf(),
            resume: false,
        },
        &mut |e| {
            if let Event::Metrics(m) = e {
                lines.push(m.clone());
            }
        },
    )
    .unwrap();
    let text = std::fs::read_to_string(tmp.path().join(train::METRICS_FILE)).unwrap();
    let logged: Vec<MetricsLine> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let epochs: Vec<&MetricsLine> = logged
        .iter()
        .filter(|m| m.kind == MetricsKind::Epoch)
        .collect();
    assert_eq!(epochs.len(), 2);
    for m in epochs {
        let rank = m.rank.as_ref().expect("monitored epoch line");
        assert_eq!(rank.r.samples, 100);
        assert_eq!(rank.r.dim, 32);
        assert_eq!(rank.z.dim, 32);
        // exp(entropy) of 32 normalised singular values lies in [1, 32] exactly; computed in
        // f64 from ≤ 32 terms, its relative error is ≤ 4·32·ε64 < 3e-14 (the upper end); the
        // lower end is no rounding question (r of 100 distinct images is far from rank 1).
        let e = rank.r.effective_rank;
        assert!(e > 1.0 && e <= 32.0 * (1.0 + 128.0 * EPS64), "{e}");
    }
    assert!(logged
        .iter()
        .filter(|m| m.kind == MetricsKind::Step)
        .all(|m| m.rank.is_none()));
    // Off: no rank field.
    let tmp2 = tempfile::tempdir().unwrap();
    let off = config("every_epochs = 0").check().unwrap();
    train::train(
        &off,
        &RunOptions {
            out: tmp2.path().to_path_buf(),
            resume: false,
        },
        &mut |_| {},
    )
    .unwrap();
    let text = std::fs::read_to_string(tmp2.path().join(train::METRICS_FILE)).unwrap();
    assert!(!text.contains("\"rank\""));
}

#[test]
fn a_collapsing_embedding_raises_a_warning() {
    let _generator = generator();
    tch::set_num_threads(1);
    let checked = config("").check().unwrap();
    let c = checked.config();
    let mut monitor = CollapseMonitor::new(&checked).unwrap().unwrap();
    // Seeded as a run is: the count of dead channels at initialisation is then fixed.
    tch::manual_seed(c.seed as i64);
    let vs = nn::VarStore::new(Device::Cpu);
    let encoder = c
        .model
        .build(&vs.root().sub("encoder"), c.data.image_size)
        .unwrap();
    let head = c
        .method
        .build(&vs.root().sub("head"), checked.feat_dim())
        .unwrap();
    let (first, jumps) = monitor.measure(&encoder, &head, Device::Cpu).unwrap();
    assert!(jumps.is_empty(), "no previous measurement");
    // z = r ⊙ 1 at initialisation: an exact copy of r, whose spectrum the same code computes
    // on the same machine, so the counts are equal (determinism, not a tolerance).
    let before = first.z.collapsed_dimensions;
    assert_eq!(before, first.r.collapsed_dimensions);
    // A freshly initialised narrow network already has dead channels (their number depends on
    // the initial draws and may move by one where an activation lies within rounding of the
    // ReLU's 0 or an eigenvalue within rounding of the threshold, so no count is fixed here).
    // What the test needs is room for a jump: zeroing 24 weights must add at least
    // `jump_for(32)` = 3 collapsed dimensions, i.e. before ≤ 21.
    let jump = c.monitor.jump_for(32);
    assert!(
        before + jump <= 24,
        "{before} dead channels at initialisation"
    );
    // Zero 24 of the 32 diagonal weights: z keeps 8 dimensions.
    tch::no_grad(|| {
        let w = head.named_tensors()[0].1.shallow_clone();
        let _ = w.narrow(0, 8, 24).fill_(0.0);
    });
    let (second, jumps) = monitor.measure(&encoder, &head, Device::Cpu).unwrap();
    // The 24 zeroed columns of z are exactly 0: their covariance eigenvalues are 0 up to the
    // f64 bound 2ε64·(N·tr C + (N + 2d)·λ₁) ≤ 2ε64·(100·32 + 164)·λ₁ < 2e-12·λ₁, far below
    // the threshold 1e-6·λ₁, whatever the kernels.
    let after = second.z.collapsed_dimensions;
    assert!(after >= 24, "{after}");
    eprintln!("collapsed dimensions of z: {before} at initialisation, {after} after zeroing");
    assert_eq!(jumps.len(), 1, "{jumps:?}");
    assert_eq!(jumps[0].space, Space::Embedding);
    assert_eq!(
        (jumps[0].before, jumps[0].after, jumps[0].dim),
        (before, after, 32)
    );
    let expected = format!("{after} of the 32 dimensions of z");
    assert!(
        second.warnings[0].contains(&expected),
        "{:?}",
        second.warnings
    );
    // The same state again: no new jump.
    let (_, jumps) = monitor.measure(&encoder, &head, Device::Cpu).unwrap();
    assert!(jumps.is_empty());
}

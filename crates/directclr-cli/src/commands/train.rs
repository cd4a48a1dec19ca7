//! `directclr train`: reads the config, applies the flags, runs the training loop and prints
//! its progress.

use std::path::PathBuf;

use anyhow::Context;
use directclr::train::{self, Overrides, RunOptions, TrainConfig};

use super::train_progress::{Mode, Progress};
use crate::cli::TrainArgs;

/// Runs `train`.
pub fn run(a: TrainArgs) -> anyhow::Result<()> {
    let mut config = TrainConfig::from_file(&a.config)?;
    config.apply(&Overrides {
        epochs: a.epochs,
        batch_size: a.batch_size,
        workers: a.workers,
        seed: a.seed,
        device: a.device,
        data_path: a.data.clone(),
        limit: a.limit,
        lr: a.lr,
        log_every: a.log_every,
    });
    let checked = config.check()?;
    let out = a.out.clone().unwrap_or_else(|| {
        let stem = a
            .config
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "run".into());
        PathBuf::from("runs").join(stem)
    });
    let c = checked.config();
    println!(
        "train: {} on {} ({} {} stem, width {}, r {}-d, z {}-d), batch {}, {} epochs, seed {} -> {}",
        c.method.name(),
        c.data.source.path().display(),
        c.model.arch,
        c.model.stem,
        c.model.width_multiplier,
        checked.feat_dim(),
        checked.embed_dim(),
        c.batch_size,
        c.epochs,
        c.seed,
        out.display()
    );
    let mut progress = Progress::new(Mode::detect(a.quiet));
    let summary = train::train(
        &checked,
        &RunOptions {
            out: out.clone(),
            resume: a.resume,
        },
        &mut |e| progress.event(e),
    )
    .with_context(|| format!("training run in `{}`", out.display()))?;
    progress.finish();
    if summary.started_at_epoch >= c.epochs {
        println!(
            "the run in `{}` is already complete ({} epochs, {} steps)",
            out.display(),
            summary.epochs,
            summary.steps
        );
    } else {
        println!(
            "done: {} epochs, {} steps; encoder weights (torchvision names) in `{}`",
            summary.epochs,
            summary.steps,
            out.join(train::ENCODER_FILE).display()
        );
    }
    Ok(())
}

//! `directclr train`: reads the config, applies the flags, runs the training loop and prints
//! its progress.

use std::path::PathBuf;

use anyhow::Context;
use directclr::dist::{launch, DistEnv, Distributed};
use directclr::train::{self, Overrides, RunOptions, TrainConfig};

use super::train_progress::{Mode, Progress};
use crate::cli::TrainArgs;

/// Runs `train`.
pub fn run(a: TrainArgs) -> anyhow::Result<()> {
    let env = DistEnv::from_env()?;
    if let Some(n) = a.nproc {
        if env.is_some() {
            anyhow::bail!(
                "--nproc starts the processes itself, but this process already has launch \
                 variables (RANK/WORLD_SIZE): drop one of the two"
            );
        }
        if n == 0 {
            anyhow::bail!("invalid `--nproc`: 0 must be at least 1");
        }
        if n > 1 {
            return launch_local(n);
        }
    }
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
    let dist = match &env {
        Some(env) => Some(
            Distributed::init(env, &c.dist)
                .with_context(|| format!("rank {} of {}", env.rank, env.world_size))?,
        ),
        None => None,
    };
    let main = dist.as_ref().is_none_or(|d| d.is_main());
    if let Some(d) = &dist {
        if d.is_main() {
            println!(
                "data-parallel: {} processes ({:?}), {} per rank, sync BN {}",
                d.world_size(),
                d.group().backend(),
                c.batch_size / d.world_size(),
                if c.dist.sync_bn { "on" } else { "off" }
            );
        }
    }
    if main {
        println!(
            "train: {} on {} ({}, r {}-d, z {}-d), batch {}, {} epochs, seed {} -> {}",
            c.method.name(),
            c.data.source.path().display(),
            c.model.describe(),
            checked.feat_dim(),
            checked.embed_dim(),
            c.batch_size,
            c.epochs,
            c.seed,
            out.display()
        );
    }
    let mut progress = Progress::new(Mode::detect(a.quiet));
    let summary = train::train_distributed(
        &checked,
        &RunOptions {
            out: out.clone(),
            resume: a.resume,
        },
        dist.as_ref(),
        // Rank 0 alone reports progress.
        &mut |e| {
            if main {
                progress.event(e)
            }
        },
    )
    .with_context(|| match &dist {
        Some(d) => format!(
            "rank {} of {}, training run in `{}`",
            d.rank(),
            d.world_size(),
            out.display()
        ),
        None => format!("training run in `{}`", out.display()),
    })?;
    progress.finish();
    if !main {
        return Ok(());
    }
    if summary.started_at_epoch >= c.epochs {
        println!(
            "the run in `{}` is already complete ({} epochs, {} steps)",
            out.display(),
            summary.epochs,
            summary.steps
        );
    } else {
        println!(
            "done: {} epochs, {} steps; encoder weights ({} names) in `{}`",
            summary.epochs,
            summary.steps,
            if c.model.resnet().is_some() {
                "torchvision"
            } else {
                "state_dict"
            },
            out.join(train::ENCODER_FILE).display()
        );
    }
    Ok(())
}

/// `--nproc N`: runs N ranks of this very command line (without `--nproc`) on this machine.
fn launch_local(n: usize) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("cannot find this program's path")?;
    let mut args: Vec<String> = Vec::new();
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        if arg == "--nproc" {
            it.next();
        } else if !arg.starts_with("--nproc=") {
            args.push(arg);
        }
    }
    eprintln!("starting {n} processes of `{}`", exe.display());
    // Once a rank fails, the others stop by themselves (closed connections); the grace
    // period only bounds a rank that does not.
    launch::run_local(&exe, &args, n, std::time::Duration::from_secs(60))?;
    Ok(())
}

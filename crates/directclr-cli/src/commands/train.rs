//! `directclr train`: reads the config, applies the flags, runs the training loop and prints
//! its progress.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use directclr::dist::{launch, DistEnv, Distributed};
use directclr::train::{self, Event, MetricsKind, MetricsLine, Overrides, RunOptions, TrainConfig};

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
    }
    let mut progress = ProgressLine::new(a.quiet);
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
            "done: {} epochs, {} steps; encoder weights (torchvision names) in `{}`",
            summary.epochs,
            summary.steps,
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

/// The progress display: a line redrawn in place on a terminal (loss, lr, images/s, ETA), one
/// line per metrics entry otherwise; with `--quiet`, one line per epoch.
struct ProgressLine {
    quiet: bool,
    tty: bool,
    started: Instant,
    first_step: usize,
    last: Option<MetricsLine>,
    drawn: bool,
}

impl ProgressLine {
    fn new(quiet: bool) -> Self {
        ProgressLine {
            quiet,
            tty: std::io::stderr().is_terminal(),
            started: Instant::now(),
            first_step: 0,
            last: None,
            drawn: false,
        }
    }

    fn eta(&self, step: usize, total: usize) -> String {
        let done = step.saturating_sub(self.first_step);
        if done == 0 {
            return "?".into();
        }
        let per_step = self.started.elapsed().as_secs_f64() / done as f64;
        let secs = (per_step * total.saturating_sub(step) as f64).round() as u64;
        format!("{}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
    }

    fn event(&mut self, e: &Event) {
        match e {
            Event::Start {
                epoch,
                step,
                total_steps,
                steps_per_epoch,
                samples,
                device,
            } => {
                self.first_step = *step;
                self.started = Instant::now();
                if *step > 0 {
                    eprintln!("resuming after epoch {epoch} (step {step} of {total_steps})");
                }
                eprintln!(
                    "{samples} samples, {steps_per_epoch} steps per epoch, {total_steps} steps, device {device:?}"
                );
            }
            Event::Step {
                epoch,
                step,
                total_steps,
                lr,
            } if self.tty && !self.quiet => {
                let (loss, acc, ips) = match &self.last {
                    Some(m) => (
                        format!("{:.4}", m.loss),
                        m.probe_acc
                            .map(|a| format!("{:.1}%", 100.0 * a))
                            .unwrap_or_else(|| "-".into()),
                        format!("{:.0}", m.images_per_s),
                    ),
                    None => ("-".into(), "-".into(), "-".into()),
                };
                eprint!(
                    "\r\x1b[2Kepoch {epoch} step {step}/{total_steps} loss {loss} probe {acc} lr {lr:.4} {ips} img/s ETA {}",
                    self.eta(*step, *total_steps)
                );
                let _ = std::io::stderr().flush();
                self.drawn = true;
            }
            Event::Step { .. } => {}
            Event::Metrics(m) => {
                self.last = Some(m.clone());
                let show = match m.kind {
                    MetricsKind::Epoch => true,
                    MetricsKind::Step => !self.quiet && !self.tty,
                };
                if show {
                    self.clear();
                    let probe = match (m.probe_loss, m.probe_acc) {
                        (Some(l), Some(a)) => format!(" probe loss {l:.4} acc {:.2}%", 100.0 * a),
                        _ => String::new(),
                    };
                    let what = match m.kind {
                        MetricsKind::Epoch => "[epoch]",
                        MetricsKind::Step => "[step] ",
                    };
                    let rank = match &m.rank {
                        Some(r) => format!(
                            " | rank r {:.1} ({} collapsed) z {:.1} ({} collapsed)",
                            r.r.effective_rank,
                            r.r.collapsed_dimensions,
                            r.z.effective_rank,
                            r.z.collapsed_dimensions
                        ),
                        None => String::new(),
                    };
                    eprintln!(
                        "{what} epoch {} step {}: loss {:.4}{probe} lr {:.5} {:.0} img/s{rank}",
                        m.epoch, m.step, m.loss, m.lr, m.images_per_s
                    );
                }
            }
            Event::Collapse(jump) => {
                self.clear();
                eprintln!("warning: {jump}");
            }
            Event::Guard(g) => {
                self.clear();
                let loss = g
                    .loss
                    .map(|l| format!("{l:.4}"))
                    .unwrap_or_else(|| "non-finite".into());
                let cause = match g.cause {
                    train::Cause::NonFinite => "non-finite loss",
                    train::Cause::Spike => "loss spike",
                };
                match g.action {
                    train::Action::Stop => eprintln!(
                        "[guard] {cause} at step {} (loss {loss}, moving average {:.4}): stopping",
                        g.failed_step, g.baseline
                    ),
                    train::Action::Rollback => eprintln!(
                        "[guard] {cause} at step {} (loss {loss}, moving average {:.4}): rolled \
                         back to step {} (epoch {}), learning rate × {} (rollback {})",
                        g.failed_step, g.baseline, g.step, g.epoch, g.lr_scale, g.rollbacks
                    ),
                }
            }
            Event::Checkpoint { epoch } => {
                if !self.quiet {
                    self.clear();
                    eprintln!("checkpoint after epoch {epoch}");
                }
            }
        }
    }

    fn clear(&mut self) {
        if self.drawn {
            eprint!("\r\x1b[2K");
            self.drawn = false;
        }
    }

    fn finish(&mut self) {
        self.clear();
    }
}

//! `directclr reproduce`: pretrain, probe and diagnose the runs of a reproduction config and
//! write its report.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use directclr::reproduce::{reproduce, ReproduceConfig, ReproduceEvent, ReproduceOptions};
use directclr::train::{Event, MetricsKind, Overrides};

use crate::cli::ReproduceArgs;

/// Runs `reproduce`.
pub fn run(a: ReproduceArgs) -> anyhow::Result<()> {
    let config = ReproduceConfig::from_file(&a.config)?;
    let out = a.out.clone().unwrap_or_else(|| {
        let stem = a
            .config
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "reproduce".into());
        PathBuf::from("out").join(stem)
    });
    let count = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    let runs = match &config.seeds {
        None => count(config.runs.len(), "run"),
        Some(seeds) => format!(
            "{} × {} = {}",
            count(config.runs.len(), "row"),
            count(seeds.len(), "seed"),
            count(config.jobs().len(), "run")
        ),
    };
    println!("reproduce: {} ({runs}) -> {}", config.title, out.display());
    let opts = ReproduceOptions {
        out: out.clone(),
        overrides: Overrides {
            device: a.device,
            data_path: a.data.clone(),
            epochs: a.epochs,
            workers: a.workers,
            ..Overrides::default()
        },
    };
    let quiet = a.quiet;
    let mut stage_started = Instant::now();
    let summary = reproduce(&config, &opts, &mut |e| match e {
        ReproduceEvent::Stage { run, stage } => {
            stage_started = Instant::now();
            println!("[{run}] {stage}");
        }
        ReproduceEvent::Train(Event::Metrics(m)) if m.kind == MetricsKind::Epoch && !quiet => {
            let probe = m
                .probe_acc
                .map(|a| format!(", online probe {:.1} %", 100.0 * a))
                .unwrap_or_default();
            let rank = m
                .rank
                .as_ref()
                .map(|r| {
                    format!(
                        ", effective rank r {:.1} z {:.1}, collapsed r {} z {}",
                        r.r.effective_rank,
                        r.z.effective_rank,
                        r.r.collapsed_dimensions,
                        r.z.collapsed_dimensions
                    )
                })
                .unwrap_or_default();
            println!(
                "    epoch {:>3}: loss {:.4}{probe}{rank}, {:.0} img/s",
                m.epoch + 1,
                m.loss,
                m.images_per_s
            );
        }
        ReproduceEvent::Train(Event::Collapse(j)) => println!("    warning: {j}"),
        ReproduceEvent::Train(_) => {}
        ReproduceEvent::Evaluated { result, reused } => {
            let sub: String = result
                .sub_vector
                .iter()
                .map(|s| format!(", r{} {:.2} %", s.slice, s.best_top1))
                .collect();
            println!(
                "    probe top-1 {:.2} %{sub}, kNN top-1 {:.2} %, effective rank r {:.1} / {}, \
                 collapsed r {} z {}{}",
                result.probe.best_top1,
                result.knn.top1,
                result.spectrum_r.metrics.effective_rank,
                result.spectrum_r.metrics.dim,
                result.spectrum_r.metrics.collapsed_dimensions,
                result.spectrum_z.metrics.collapsed_dimensions,
                if reused {
                    " (reused)".to_string()
                } else {
                    format!(" ({:.0} s)", stage_started.elapsed().as_secs_f64())
                }
            );
        }
    })
    .with_context(|| format!("reproduction into `{}`", out.display()))?;
    println!();
    let report = std::fs::read_to_string(&summary.report)
        .with_context(|| format!("reading `{}`", summary.report.display()))?;
    // The tables, as the report has them.
    for line in report.lines().filter(|l| l.starts_with('|')) {
        println!("{line}");
    }
    println!("\nreport: {}", summary.report.display());
    Ok(())
}

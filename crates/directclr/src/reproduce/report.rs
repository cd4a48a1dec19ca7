//! The report of a reproduction: a Markdown table of probe and kNN accuracies beside the
//! paper's Table 1, the rank metrics of r and z, the Fig 9 overlay of representation spectra
//! and the Fig 2 embedding spectra, and the raw numbers (CSV, JSON).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::config::ReproduceConfig;
use super::paper::{paper_top1, PAPER_DIRECTCLR_SUBVECTOR_TOP1};
use super::runner::{ProbeSummary, RunResult};
use crate::analysis::RankMetrics;
use crate::eval::{plot_spectra, write_spectra_csv, ProbeMode, Space, Spectrum};
use crate::train::CheckedConfig;
use crate::{Error, Result};

/// File names of the report's parts.
pub const REPORT_FILE: &str = "report.md";
/// The Fig 9 overlay (representation spectra of every run).
pub const FIG9_FILE: &str = "fig9-representation-spectra";
/// The Fig 2 figure (embedding spectra of every run).
pub const FIG2_FILE: &str = "fig2-embedding-spectra";

/// Writes the report, figures and raw numbers into `out`; returns the report's path.
pub fn write_report(
    config: &ReproduceConfig,
    runs: &[CheckedConfig],
    results: &[RunResult],
    out: &Path,
    elapsed: Duration,
) -> Result<PathBuf> {
    let r_spectra: Vec<Spectrum> = results.iter().map(|r| r.spectrum_r.clone()).collect();
    let z_spectra: Vec<Spectrum> = results.iter().map(|r| r.spectrum_z.clone()).collect();
    // The figures draw one curve per row (its first seed); the CSVs hold every run.
    let firsts: Vec<&RunResult> = rows(results).iter().map(|row| row.runs[0]).collect();
    let r_drawn: Vec<Spectrum> = firsts.iter().map(|r| r.spectrum_r.clone()).collect();
    let z_drawn: Vec<Spectrum> = firsts.iter().map(|r| r.spectrum_z.clone()).collect();
    for ext in ["png", "svg"] {
        plot_spectra(
            &out.join(format!("{FIG9_FILE}.{ext}")),
            "Representation spectra (r, cf. Figure 9)",
            &r_drawn,
        )?;
        plot_spectra(
            &out.join(format!("{FIG2_FILE}.{ext}")),
            "Embedding spectra (z, cf. Figure 2)",
            &z_drawn,
        )?;
    }
    write_spectra_csv(&out.join("spectra-r.csv"), &r_spectra)?;
    write_spectra_csv(&out.join("spectra-z.csv"), &z_spectra)?;
    let json = serde_json::to_string_pretty(results)
        .map_err(|e| Error::config("results", e.to_string()))?;
    let results_file = out.join("results.json");
    std::fs::write(&results_file, json).map_err(|e| Error::io("cannot write", &results_file, e))?;

    let text = markdown(config, runs, results, elapsed);
    let file = out.join(REPORT_FILE);
    std::fs::write(&file, text).map_err(|e| Error::io("cannot write", &file, e))?;
    Ok(file)
}

/// The Markdown text of the report.
pub fn markdown(
    config: &ReproduceConfig,
    runs: &[CheckedConfig],
    results: &[RunResult],
    elapsed: Duration,
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# {}\n", config.title);
    if let Some(first) = runs.first() {
        let c = first.config();
        let _ = writeln!(
            s,
            "Pretraining: {} ({} px), {} (r {}-d), batch {}, {} epochs, {} \
             optimiser, {}, device {}. Linear probe: {} mode, {} epochs, lr {}, batch {}. \
             kNN: k = {}, T = {}. Spectra: L2-normalised r and z of the test images, covariance \
             (Eqn 1) in f64; \"collapsed\" counts eigenvalues with λ/λ₁ < {:e}, \"dead \
             coordinates\" the coordinates whose variance is below that times λ₁ (units that \
             are constant, e.g. zero, on every image). Wall time of \
             this command: {:.0} s.\n",
            c.data.source.path().display(),
            c.data.image_size,
            c.model.describe(),
            first.feat_dim(),
            c.batch_size,
            c.epochs,
            optimiser_name(c),
            match &config.seeds {
                None => format!("seed {}", c.seed),
                Some(seeds) => format!(
                    "seeds {} (each row once per seed; tables give mean ± sample standard \
                     deviation over the {} seeds, per-seed numbers below)",
                    seeds
                        .iter()
                        .map(u64::to_string)
                        .collect::<Vec<_>>()
                        .join(", "),
                    seeds.len()
                ),
            },
            c.device,
            match config.probe.mode {
                ProbeMode::Augmented => "paper-protocol (augmented)",
                ProbeMode::Features => "fast (features extracted once)",
            },
            config.probe.epochs,
            config.probe.lr,
            config.probe.batch_size,
            config.knn.k,
            config.knn.temperature,
            config.spectrum.collapse_threshold,
            elapsed.as_secs_f64()
        );
    }
    let _ = writeln!(
        s,
        "The paper's column is its Table 1 (ImageNet, ResNet-50, 100 epochs, batch 4096); the \
         measured columns come from the setting above, so compare the ordering of the rows, \
         not the values.\n"
    );
    let grouped = rows(results);
    accuracy_table(&mut s, &grouped);
    let _ = writeln!(s, "\n## Rank metrics of the test images\n");
    rank_table(&mut s, &grouped);
    if grouped.iter().any(|row| row.runs.len() > 1) {
        let singles: Vec<Row<'_>> = results
            .iter()
            .map(|r| Row {
                label: &r.folder,
                runs: vec![r],
            })
            .collect();
        let _ = writeln!(s, "\n## Every seed\n");
        accuracy_table(&mut s, &singles);
        let _ = writeln!(s);
        rank_table(&mut s, &singles);
    }
    let which = if config.seeds.is_some() {
        " (the row's first seed)"
    } else {
        ""
    };
    let _ = writeln!(
        s,
        "\n## Spectra\n\n![Representation spectra]({FIG9_FILE}.png)\n\n\
         Figure 9 of the paper: log singular values of the representation space, sorted, one \
         curve per row{which}. A curve that drops to the floor on its right has collapsed \
         dimensions.\n\n\
         ![Embedding spectra]({FIG2_FILE}.png)\n\n\
         Figure 2 of the paper: the embedding space z that enters the loss (z = r without \
         projector, r[:d0] for DirectCLR).\n\n\
         Raw numbers: `spectra-r.csv`, `spectra-z.csv`, `results.json`; each run's folder is \
         under `runs/`.\n"
    );
    s
}

/// The runs of one row of a table: a Table 1 row's seeds, or one run alone.
struct Row<'a> {
    /// The first column.
    label: &'a str,
    /// At least one run, all of the same row.
    runs: Vec<&'a RunResult>,
}

/// `results` grouped by row name, rows and seeds in the order they ran.
fn rows(results: &[RunResult]) -> Vec<Row<'_>> {
    let mut rows: Vec<Row<'_>> = Vec::new();
    for r in results {
        match rows.iter_mut().find(|row| row.label == r.name) {
            Some(row) => row.runs.push(r),
            None => rows.push(Row {
                label: &r.name,
                runs: vec![r],
            }),
        }
    }
    rows
}

/// One number with `decimals` decimals, or mean ± sample standard deviation of several.
fn cell(values: &[f64], decimals: usize) -> String {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    if values.len() < 2 {
        return format!("{mean:.decimals$}");
    }
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    format!("{mean:.decimals$} ± {:.decimals$}", var.sqrt())
}

/// The accuracy table (probe and kNN on r; DirectCLR's sub-vector probes below their row).
fn accuracy_table(s: &mut String, rows: &[Row<'_>]) {
    let _ = writeln!(
        s,
        "| run | method | paper top-1 (ImageNet) | probe top-1 best | probe top-1 last | probe \
         top-5 best | kNN top-1 | kNN top-5 |"
    );
    let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|---:|");
    for row in rows {
        let first = row.runs[0];
        let of = |f: &dyn Fn(&RunResult) -> f64| {
            cell(&row.runs.iter().map(|r| f(r)).collect::<Vec<_>>(), 2)
        };
        let _ = writeln!(
            s,
            "| {} | {} | {:.1} | {} | {} | {} | {} | {} |",
            row.label,
            first.method.name(),
            paper_top1(&first.method),
            of(&|r| r.probe.best_top1),
            of(&|r| r.probe.last_top1),
            of(&|r| r.probe.best_top5),
            of(&|r| r.knn.top1),
            of(&|r| r.knn.top5)
        );
        for (j, sub) in first.sub_vector.iter().enumerate() {
            let paper = if sub.slice.start == 0 {
                format!("{PAPER_DIRECTCLR_SUBVECTOR_TOP1:.1}")
            } else {
                "–".into()
            };
            let of_sub = |f: &dyn Fn(&ProbeSummary) -> f64| {
                let values: Vec<f64> = row
                    .runs
                    .iter()
                    .filter_map(|r| r.sub_vector.get(j))
                    .map(f)
                    .collect();
                cell(&values, 2)
            };
            let _ = writeln!(
                s,
                "| {} probe on r{} | {} | {paper} | {} | {} | {} | | |",
                row.label,
                sub.slice,
                first.method.name(),
                of_sub(&|p| p.best_top1),
                of_sub(&|p| p.last_top1),
                of_sub(&|p| p.best_top5)
            );
        }
    }
}

/// The rank metrics of r and z, a line per row and space.
fn rank_table(s: &mut String, rows: &[Row<'_>]) {
    let _ = writeln!(
        s,
        "| run | space | dim | effective rank | stable rank | participation ratio | α-ReQ | \
         collapsed dims | dead coordinates |"
    );
    let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|---:|---:|");
    for row in rows {
        for space in [Space::Representation, Space::Embedding] {
            let ms: Vec<&RankMetrics> = row
                .runs
                .iter()
                .map(|r| match space {
                    Space::Embedding => &r.spectrum_z.metrics,
                    _ => &r.spectrum_r.metrics,
                })
                .collect();
            let _ = writeln!(
                s,
                "| {} | {} | {} |{}",
                row.label,
                space.symbol(),
                ms[0].dim,
                metric_cells(&ms)
            );
        }
    }
}

/// The metric cells of one line: mean ± sd where `ms` holds several seeds.
fn metric_cells(ms: &[&RankMetrics]) -> String {
    let of = |f: fn(&RankMetrics) -> f64, decimals| {
        cell(&ms.iter().map(|m| f(m)).collect::<Vec<_>>(), decimals)
    };
    let alphas: Option<Vec<f64>> = ms.iter().map(|m| m.alpha_req).collect();
    // Coordinates with variance below the collapse threshold (dead units), where every
    // evaluation recorded them.
    // Counts: whole numbers for one seed, one decimal for a mean over several.
    let count_decimals = if ms.len() > 1 { 1 } else { 0 };
    let dead: Option<Vec<f64>> = ms
        .iter()
        .map(|m| m.constant_coordinates.map(|c| c as f64))
        .collect();
    format!(
        " {} | {} | {} | {} | {} | {} |",
        of(|m| m.effective_rank, 2),
        of(|m| m.stable_rank, 2),
        of(|m| m.participation_ratio, 2),
        alphas.map_or("–".to_string(), |a| cell(&a, 2)),
        of(|m| m.collapsed_dimensions as f64, count_decimals),
        dead.map_or("–".to_string(), |d| cell(&d, count_decimals))
    )
}

fn optimiser_name(c: &crate::train::TrainConfig) -> &'static str {
    match c.optimizer {
        crate::optim::OptimizerConfig::Lars(_) => "LARS",
        crate::optim::OptimizerConfig::Sgd(_) => "SGD",
    }
}

//! The report of a reproduction: a Markdown table of probe and kNN accuracies beside the
//! paper's Table 1, the rank metrics of r and z, the Fig 9 overlay of representation spectra
//! and the Fig 2 embedding spectra, and the raw numbers (CSV, JSON).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::config::ReproduceConfig;
use super::paper::{paper_top1, PAPER_DIRECTCLR_SUBVECTOR_TOP1};
use super::runner::RunResult;
use crate::analysis::RankMetrics;
use crate::eval::{plot_spectra, write_spectra_csv, ProbeMode, Spectrum};
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
    for ext in ["png", "svg"] {
        plot_spectra(
            &out.join(format!("{FIG9_FILE}.{ext}")),
            "Representation spectra (r, cf. Figure 9)",
            &r_spectra,
        )?;
        plot_spectra(
            &out.join(format!("{FIG2_FILE}.{ext}")),
            "Embedding spectra (z, cf. Figure 2)",
            &z_spectra,
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
            "Pretraining: {} ({} px), {} {} stem, width ×{} (r {}-d), batch {}, {} epochs, {} \
             optimiser, seed {}, device {}. Linear probe: {} mode, {} epochs, lr {}, batch {}. \
             kNN: k = {}, T = {}. Spectra: L2-normalised r and z of the test images, covariance \
             (Eqn 1) in f64; \"collapsed\" counts eigenvalues with λ/λ₁ < {:e}. Wall time of \
             this command: {:.0} s.\n",
            c.data.source.path().display(),
            c.data.image_size,
            c.model.arch,
            c.model.stem,
            c.model.width_multiplier,
            first.feat_dim(),
            c.batch_size,
            c.epochs,
            optimiser_name(c),
            c.seed,
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
    let _ = writeln!(
        s,
        "| run | method | paper top-1 (ImageNet) | probe top-1 best | probe top-1 last | probe \
         top-5 best | kNN top-1 | kNN top-5 |"
    );
    let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|---:|");
    for r in results {
        let _ = writeln!(
            s,
            "| {} | {} | {:.1} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
            r.name,
            r.method.name(),
            paper_top1(&r.method),
            r.probe.best_top1,
            r.probe.last_top1,
            r.probe.best_top5,
            r.knn.top1,
            r.knn.top5
        );
        for sub in &r.sub_vector {
            let paper = if sub.slice.start == 0 {
                format!("{PAPER_DIRECTCLR_SUBVECTOR_TOP1:.1}")
            } else {
                "–".into()
            };
            let _ = writeln!(
                s,
                "| {} probe on r{} | {} | {paper} | {:.2} | {:.2} | {:.2} | | |",
                r.name,
                sub.slice,
                r.method.name(),
                sub.best_top1,
                sub.last_top1,
                sub.best_top5
            );
        }
    }
    let _ = writeln!(s, "\n## Rank metrics of the test images\n");
    let _ = writeln!(
        s,
        "| run | space | dim | effective rank | stable rank | participation ratio | α-ReQ | \
         collapsed dims |"
    );
    let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|---:|");
    for r in results {
        for (space, m) in [("r", &r.spectrum_r.metrics), ("z", &r.spectrum_z.metrics)] {
            let _ = writeln!(s, "| {} | {space} | {} |{}", r.name, m.dim, metric_cells(m));
        }
    }
    let _ = writeln!(
        s,
        "\n## Spectra\n\n![Representation spectra]({FIG9_FILE}.png)\n\n\
         Figure 9 of the paper: log singular values of the representation space, sorted. A \
         curve that drops to the floor on its right has collapsed dimensions.\n\n\
         ![Embedding spectra]({FIG2_FILE}.png)\n\n\
         Figure 2 of the paper: the embedding space z that enters the loss (z = r without \
         projector, r[:d0] for DirectCLR).\n\n\
         Raw numbers: `spectra-r.csv`, `spectra-z.csv`, `results.json`; each run's folder is \
         under `runs/`.\n"
    );
    s
}

fn metric_cells(m: &RankMetrics) -> String {
    format!(
        " {:.2} | {:.2} | {:.2} | {} | {} |",
        m.effective_rank,
        m.stable_rank,
        m.participation_ratio,
        m.alpha_req.map_or("–".to_string(), |a| format!("{a:.2}")),
        m.collapsed_dimensions
    )
}

fn optimiser_name(c: &crate::train::TrainConfig) -> &'static str {
    match c.optimizer {
        crate::optim::OptimizerConfig::Lars(_) => "LARS",
        crate::optim::OptimizerConfig::Sgd(_) => "SGD",
    }
}

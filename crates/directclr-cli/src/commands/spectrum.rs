//! `directclr spectrum`: covariance spectra and rank metrics of runs or of embedding files
//! written by other tools, as CSV and log-scale figures (Figures 2, 7b, 9).

use std::io::IsTerminal;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use directclr::analysis::file_moments;
use directclr::eval::{
    eval_transform, extract, plot_spectra, write_spectra_csv, ExtractOptions, Spectrum, Weights,
};
use directclr::formats::open_matrix;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::eval_input::{load_encoder, load_run, read_split, source};
use crate::cli_eval::SpectrumArgs;

/// Files of at least this many values get a progress bar (on a terminal).
const PROGRESS_VALUES: u64 = 1 << 24;

/// Runs `spectrum`.
pub fn run(a: SpectrumArgs) -> anyhow::Result<()> {
    let sources = a.runs.len() + a.embeddings.len() + usize::from(a.encoder.is_some());
    if !a.labels.is_empty() && a.labels.len() != sources {
        anyhow::bail!(
            "--label is given {} times for {} {}: give one per {} or none",
            a.labels.len(),
            sources,
            if a.runs.is_empty() { "files" } else { "runs" },
            if a.runs.is_empty() { "file" } else { "run" },
        );
    }
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating `{}`", a.out.display()))?;
    let mut spectra = Vec::new();
    for (i, path) in a.embeddings.iter().enumerate() {
        let s = file_spectrum(&a, path, a.labels.get(i).cloned())?;
        print_metrics(&a, &s);
        spectra.push(s);
    }
    let opts = ExtractOptions {
        batch_size: a.batch_size,
        workers: a.workers,
    };
    let mut models = Vec::new();
    for run in &a.runs {
        let model = load_run(run, &Weights::RunCheckpoint, a.device.as_ref())?;
        models.push((model, None));
    }
    if let Some(file) = &a.encoder {
        let model = load_encoder(file, &a.arch, a.data.as_deref(), a.device.as_ref())?;
        let name = file
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        models.push((model, Some(name)));
    }
    for (i, (model, name)) in models.into_iter().enumerate() {
        let ds = read_split(
            &source(&model, a.data.as_deref()),
            a.split,
            a.test_folder.as_deref(),
            a.limit,
        )?;
        let eval = eval_transform(model.config().config().data.image_size);
        let f = extract(&model, ds, eval, a.space, &opts)?;
        let x = a.slice.apply(&f.x, "slice")?;
        let label = a
            .labels
            .get(i)
            .cloned()
            .or(name)
            .unwrap_or_else(|| model.config().config().method.name().to_string());
        let s = Spectrum::of(label, a.space, &x, a.rows, a.collapse_threshold)?;
        print_metrics(&a, &s);
        spectra.push(s);
    }
    let title = a.title.clone().unwrap_or_else(|| {
        format!(
            "Covariance spectrum of {} ({} split)",
            match a.space {
                directclr::eval::Space::Representation => "the representation r",
                directclr::eval::Space::Embedding => "the embedding z",
                directclr::eval::Space::ProjectorHidden => "the projector's hidden layer",
            },
            match a.split {
                directclr::eval::EvalSplit::Train => "training",
                directclr::eval::EvalSplit::Test => "test",
            }
        )
    });
    write_spectra_csv(&a.out.join("spectrum.csv"), &spectra)?;
    plot_spectra(&a.out.join("spectrum.png"), &title, &spectra)?;
    plot_spectra(&a.out.join("spectrum.svg"), &title, &spectra)?;
    let metrics = a.out.join("metrics.json");
    std::fs::write(&metrics, serde_json::to_string_pretty(&spectra)?)
        .with_context(|| format!("writing `{}`", metrics.display()))?;
    println!(
        "spectra of {} {} -> {}/spectrum.{{csv,png,svg}}, metrics.json",
        spectra.len(),
        if a.runs.is_empty() {
            "file(s)"
        } else {
            "run(s)"
        },
        a.out.display()
    );
    Ok(())
}

/// One line of rank metrics for a spectrum.
fn print_metrics(a: &SpectrumArgs, s: &Spectrum) {
    let m = &s.metrics;
    println!(
        "{} ({}{}, {} samples, {}-d): effective rank {:.1}, stable rank {:.2}, participation \
         ratio {:.2}, α-ReQ {}, collapsed {} (λ/λ1 < {:e})",
        s.label,
        a.space.symbol(),
        a.slice,
        m.samples,
        m.dim,
        m.effective_rank,
        m.stable_rank,
        m.participation_ratio,
        m.alpha_req.map_or("n/a".to_string(), |v| format!("{v:.3}")),
        m.collapsed_dimensions,
        m.collapse_threshold
    );
}

/// The spectrum of an embeddings file, streamed in chunks (a progress bar for large files on
/// a terminal). `--limit` is refused here: a file is read whole.
fn file_spectrum(a: &SpectrumArgs, path: &Path, label: Option<String>) -> anyhow::Result<Spectrum> {
    if a.limit.is_some() {
        anyhow::bail!("--limit applies to runs; an embeddings file is read whole");
    }
    let mut file = open_matrix(path, a.key.as_deref())?;
    let layout = file.layout();
    let (start, end) = a.slice.resolve(layout.cols as i64, "slice")?;
    let columns = (start != 0 || end != layout.cols as i64).then_some(start..end);
    let bar = (layout.rows * layout.cols >= PROGRESS_VALUES && std::io::stderr().is_terminal())
        .then(|| {
            let bar =
                ProgressBar::with_draw_target(Some(layout.rows), ProgressDrawTarget::stderr())
                    .with_style(
                        ProgressStyle::with_template(
                            "{msg} [{bar:30}] {human_pos}/{human_len} rows, {per_sec}, ETA {eta}",
                        )
                        .expect("the bar template is valid")
                        .progress_chars("=> "),
                    );
            bar.set_message(path.display().to_string());
            bar.enable_steady_tick(Duration::from_millis(500));
            bar
        });
    let moments = file_moments(&mut file, a.rows, columns, &mut |done| {
        if let Some(bar) = &bar {
            bar.set_position(done);
        }
    })?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let label = label.unwrap_or_else(|| {
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        match file.name() {
            Some(name) if a.key.is_some() => format!("{stem}:{name}"),
            _ => stem,
        }
    });
    Ok(Spectrum::of_moments(
        label,
        a.space,
        &moments,
        a.collapse_threshold,
    )?)
}

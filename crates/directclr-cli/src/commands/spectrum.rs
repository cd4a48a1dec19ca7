//! `directclr spectrum`: covariance spectra and rank metrics of one or several runs, as CSV and
//! log-scale figures (Figures 2, 7b, 9).

use anyhow::Context;
use directclr::eval::{
    eval_transform, extract, plot_spectra, write_spectra_csv, ExtractOptions, Spectrum, Weights,
};

use super::eval_input::{load_run, read_split, source};
use crate::cli_eval::SpectrumArgs;

/// Runs `spectrum`.
pub fn run(a: SpectrumArgs) -> anyhow::Result<()> {
    if !a.labels.is_empty() && a.labels.len() != a.runs.len() {
        anyhow::bail!(
            "--label is given {} times for {} runs: give one per run or none",
            a.labels.len(),
            a.runs.len()
        );
    }
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating `{}`", a.out.display()))?;
    let opts = ExtractOptions {
        batch_size: a.batch_size,
        workers: a.workers,
    };
    let mut spectra = Vec::new();
    for (i, run) in a.runs.iter().enumerate() {
        let model = load_run(run, &Weights::RunCheckpoint, a.device.as_ref())?;
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
            .unwrap_or_else(|| model.config().config().method.name().to_string());
        let s = Spectrum::of(label, a.space, &x, a.rows, a.collapse_threshold)?;
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
        "spectra of {} run(s) -> {}/spectrum.{{csv,png,svg}}, metrics.json",
        spectra.len(),
        a.out.display()
    );
    Ok(())
}

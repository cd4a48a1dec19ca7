//! `directclr spectrum`: covariance spectra and rank metrics of runs or of embedding files
//! written by other tools, as CSV and log-scale figures (Figures 2, 7b, 9).

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use directclr::analysis::file_moments;
use directclr::data::image_folder::read_images;
use directclr::data::{BadImagePolicy, DataSource, Dataset, EvalTransform};
use directclr::eval::{
    eval_transform, extract_observed, plot_spectra, write_spectra_csv, ExtractOptions, Extracted,
    Spectrum, TrainedModel, Weights,
};
use directclr::formats::{open_matrix, write_npy};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::eval_input::{load_encoder, load_run, read_split, source};
use crate::cli_eval::{EvalTransformArgs, SpectrumArgs};

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
        bad_images: if a.skip_bad {
            BadImagePolicy::Skip
        } else {
            BadImagePolicy::Fail
        },
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
    if a.save_embeddings.is_some() && models.len() != 1 {
        anyhow::bail!(
            "--save-embeddings writes the features of one model: give one --run or --encoder \
             (here {} model(s))",
            models.len()
        );
    }
    for (i, (model, name)) in models.into_iter().enumerate() {
        let label = a
            .labels
            .get(a.embeddings.len() + i)
            .cloned()
            .or(name)
            .unwrap_or_else(|| model.config().config().method.name().to_string());
        let s = model_spectrum(&a, &model, label, &opts)?;
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

/// The images `spectrum` analyses with `model`: an image folder given with `--data` as is
/// (class layout or flat), else the labelled `--split` of the dataset; cut by `--limit` or
/// `--sample`.
fn images(a: &SpectrumArgs, model: &TrainedModel) -> anyhow::Result<Arc<Dataset>> {
    let src = source(model, a.data.as_deref());
    let ds = match (&src, &a.data) {
        (DataSource::ImageFolder { path }, Some(_)) => Arc::new(read_images(path)?),
        _ => read_split(&src, a.split, a.test_folder.as_deref(), None)?,
    };
    Ok(match (a.limit, a.sample) {
        (Some(n), _) if n < ds.len() => Arc::new(ds.first(n)?),
        (_, Some(n)) if n < ds.len() => Arc::new(ds.sample(n, a.seed)?),
        _ => ds,
    })
}

/// The evaluation transform: the model's default at its image size, with the overrides of
/// `--resize`, `--crop`, `--mean`, `--std`.
fn transform(a: &EvalTransformArgs, image_size: usize) -> anyhow::Result<EvalTransform> {
    let mut t = eval_transform(image_size);
    if let Some(crop) = a.crop {
        t.crop = crop;
        if a.resize.is_none() && t.resize < crop {
            t.resize = crop;
        }
    }
    if let Some(resize) = a.resize {
        t.resize = resize;
    }
    let three = |v: &Vec<f32>, flag: &str| -> anyhow::Result<[f32; 3]> {
        <[f32; 3]>::try_from(v.as_slice())
            .map_err(|_| anyhow::anyhow!("--{flag} takes three values R,G,B, not {}", v.len()))
    };
    if let Some(m) = &a.mean {
        t.normalize.mean = three(m, "mean")?;
    }
    if let Some(s) = &a.std {
        t.normalize.std = three(s, "std")?;
    }
    t.check().map_err(|e| {
        anyhow::anyhow!("the evaluation transform (--resize/--crop/--mean/--std): {e}")
    })?;
    Ok(t)
}

/// The spectrum of `model`'s features of the images of `a`, with a progress bar (images/s,
/// time left) on a terminal; writes `--save-embeddings` and lists skipped images.
fn model_spectrum(
    a: &SpectrumArgs,
    model: &TrainedModel,
    label: String,
    opts: &ExtractOptions,
) -> anyhow::Result<Spectrum> {
    let eval = transform(&a.transform, model.config().config().data.image_size)?;
    let ds = images(a, model)?;
    let bar = std::io::stderr()
        .is_terminal()
        .then(|| progress_bar(ds.len() as u64, "images", label.clone()));
    let started = Instant::now();
    let got = extract_observed(model, ds.clone(), eval, a.space, opts, &mut |done| {
        if let Some(bar) = &bar {
            bar.set_position(done as u64);
        }
    })?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{label}: {} images in {seconds:.1} s ({:.1} images/s), resize {} crop {}",
        got.indices.len(),
        got.indices.len() as f64 / seconds.max(1e-9),
        eval.resize,
        eval.crop
    );
    if !got.skipped.is_empty() {
        report_skipped(a, &ds, &got.skipped)?;
    }
    if let Some(file) = &a.save_embeddings {
        save_embeddings(file, &ds, &got)?;
    }
    let x = a.slice.apply(&got.features.x, "slice")?;
    Ok(Spectrum::of(
        label,
        a.space,
        &x,
        a.rows,
        a.collapse_threshold,
    )?)
}

/// Names the images left out by `--skip-bad` (the first few on standard output, all in
/// `skipped.txt` of the output folder).
fn report_skipped(a: &SpectrumArgs, ds: &Dataset, skipped: &[usize]) -> anyhow::Result<()> {
    let names: Vec<String> = skipped
        .iter()
        .map(|&i| {
            ds.file(i)
                .map_or(format!("sample {i}"), |p| p.display().to_string())
        })
        .collect();
    let list = a.out.join("skipped.txt");
    std::fs::write(&list, names.join("\n") + "\n")
        .with_context(|| format!("writing `{}`", list.display()))?;
    println!(
        "skipped {} unreadable image(s) (listed in {}):",
        names.len(),
        list.display()
    );
    for n in names.iter().take(10) {
        println!("  {n}");
    }
    if names.len() > 10 {
        println!("  … and {} more", names.len() - 10);
    }
    Ok(())
}

/// Writes the features `[N, dim]` to `file` (.npy) and, for file data, the image of each row
/// to `file` with the extension `.files.txt`.
fn save_embeddings(file: &Path, ds: &Dataset, got: &Extracted) -> anyhow::Result<()> {
    if file.extension().and_then(|e| e.to_str()) != Some("npy") {
        anyhow::bail!(
            "--save-embeddings `{}`: the features are written as .npy (name the file *.npy)",
            file.display()
        );
    }
    write_npy(file, &got.features.x)
        .with_context(|| format!("--save-embeddings `{}`", file.display()))?;
    let mut written = file.display().to_string();
    if ds.file(0).is_some() {
        let rows: Vec<String> = got
            .indices
            .iter()
            .filter_map(|&i| ds.file(i).map(|p| p.display().to_string()))
            .collect();
        let list = file.with_extension("files.txt");
        std::fs::write(&list, rows.join("\n") + "\n")
            .with_context(|| format!("writing `{}`", list.display()))?;
        written = format!("{written} (images: {})", list.display());
    }
    println!(
        "features [{}, {}] -> {written}",
        got.features.len(),
        got.features.dim()
    );
    Ok(())
}

/// A progress bar on standard error over `len` `unit`s, with its rate and time left.
fn progress_bar(len: u64, unit: &str, message: String) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr()).with_style(
        ProgressStyle::with_template(&format!(
            "{{msg}} [{{bar:30}}] {{human_pos}}/{{human_len}} {unit}, {{per_sec}}, ETA {{eta}}"
        ))
        .expect("the bar template is valid")
        .progress_chars("=> "),
    );
    bar.set_message(message);
    bar.enable_steady_tick(Duration::from_millis(500));
    bar
}

/// One line of rank metrics for a spectrum.
fn print_metrics(a: &SpectrumArgs, s: &Spectrum) {
    let m = &s.metrics;
    println!(
        "{} ({}{}, {} samples, {}-d): effective rank {:.1}, stable rank {:.2}, participation \
         ratio {:.2}, α-ReQ {}, collapsed {} (λ/λ1 < {:e}){}",
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
        m.collapse_threshold,
        m.constant_coordinates.map_or(String::new(), |c| format!(
            ", constant coordinates {c} (variance < {:e} λ1: dead units)",
            m.collapse_threshold
        ))
    );
}

/// The spectrum of an embeddings file, streamed in chunks (a progress bar for large files on
/// a terminal). `--limit` is refused here: a file is read whole.
fn file_spectrum(a: &SpectrumArgs, path: &Path, label: Option<String>) -> anyhow::Result<Spectrum> {
    if a.limit.is_some() || a.sample.is_some() {
        anyhow::bail!("--limit and --sample apply to models; an embeddings file is read whole");
    }
    let mut file = open_matrix(path, a.key.as_deref())?;
    let layout = file.layout();
    let (start, end) = a.slice.resolve(layout.cols as i64, "slice")?;
    let columns = (start != 0 || end != layout.cols as i64).then_some(start..end);
    let bar = (layout.rows * layout.cols >= PROGRESS_VALUES && std::io::stderr().is_terminal())
        .then(|| progress_bar(layout.rows, "rows", path.display().to_string()));
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

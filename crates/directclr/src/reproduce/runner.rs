//! Runs a reproduction: pretrains each run (resuming or reusing its folder), evaluates it
//! (reusing `eval.json` when the checkpoint and the protocol are unchanged) and writes the
//! report.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::config::{CheckedReproduce, ReproduceConfig, RunJob};
use super::report::write_report;
use crate::analysis::RowNormalisation;
use crate::eval::{
    eval_transform, extract, knn, linear_probe, probe_features, read_labelled_first, EvalSplit,
    ExtractOptions, FeatureSlice, KnnReport, ProbeConfig, ProbeReport, Space, Spectrum,
    TrainedModel, Weights,
};
use crate::method::Method;
use crate::train::{self, Overrides, RunOptions};
use crate::{Error, Result};

/// Where and how to run a reproduction.
#[derive(Debug, Clone, Default)]
pub struct ReproduceOptions {
    /// Output folder: `runs/<name>/` per run, the report and figures at the top.
    pub out: PathBuf,
    /// Replaces values of the pretraining preset (device, data path, epochs, workers).
    pub overrides: Overrides,
}

/// A linear probe's outcome on one slice of r.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ProbeSummary {
    /// The slice of r.
    pub slice: FeatureSlice,
    /// Its width.
    pub dim: i64,
    /// Best top-1 over the epochs (%).
    pub best_top1: f64,
    /// Best top-5 (%).
    pub best_top5: f64,
    /// Last epoch's top-1 (%).
    pub last_top1: f64,
    /// Last epoch's top-5 (%).
    pub last_top5: f64,
}

impl From<&ProbeReport> for ProbeSummary {
    fn from(r: &ProbeReport) -> Self {
        ProbeSummary {
            slice: r.config.slice,
            dim: r.dim,
            best_top1: r.best_top1,
            best_top5: r.best_top5,
            last_top1: r.last_top1,
            last_top5: r.last_top5,
        }
    }
}

/// Everything measured on one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    /// The run's name (its row's).
    pub name: String,
    /// The seed it was pretrained with (replicates of a row differ only in it).
    #[serde(default)]
    pub seed: u64,
    /// Its folder under `runs/` (the name, with `.seed<s>` for a replicate).
    #[serde(default)]
    pub folder: String,
    /// Its method.
    pub method: Method,
    /// Epochs of the evaluated checkpoint.
    pub epochs: usize,
    /// Probe on the whole r.
    pub probe: ProbeSummary,
    /// Probes on r[:d0] and r[d0:] (DirectCLR with `sub_vector_probe`).
    pub sub_vector: Vec<ProbeSummary>,
    /// kNN on r.
    pub knn: KnnReport,
    /// Spectrum and rank metrics of r (test images).
    pub spectrum_r: Spectrum,
    /// Spectrum and rank metrics of z (test images).
    pub spectrum_z: Spectrum,
    /// Seconds spent evaluating.
    pub eval_seconds: f64,
}

/// What a reproduction reports as it goes.
#[derive(Debug)]
pub enum ReproduceEvent<'a> {
    /// A stage of a run starts.
    Stage {
        /// The run.
        run: &'a str,
        /// What starts.
        stage: &'a str,
    },
    /// An event of a run's pretraining.
    Train(&'a train::Event),
    /// A run's evaluation is done (or was reused).
    Evaluated {
        /// Its results.
        result: &'a RunResult,
        /// Read back from `eval.json` rather than measured now.
        reused: bool,
    },
}

/// The outcome of [`reproduce`].
#[derive(Debug, Clone)]
pub struct ReproduceSummary {
    /// Every run's results, in the configuration's order.
    pub results: Vec<RunResult>,
    /// The Markdown report.
    pub report: PathBuf,
}

/// The file under a run folder caching its evaluation.
const EVAL_FILE: &str = "eval.json";

#[derive(Serialize, Deserialize)]
struct CachedEval {
    key: serde_json::Value,
    result: RunResult,
}

/// Runs `config` into `opts.out`: pretrain, evaluate, report. Reruns continue where they
/// stopped: a finished run is not trained again, an unchanged evaluation is read back.
pub fn reproduce(
    config: &CheckedReproduce,
    opts: &ReproduceOptions,
    on_event: &mut dyn FnMut(ReproduceEvent<'_>),
) -> Result<ReproduceSummary> {
    let started = Instant::now();
    std::fs::create_dir_all(opts.out.join("runs"))
        .map_err(|e| Error::io("cannot create", opts.out.join("runs"), e))?;
    // Every run's configuration is checked before any work starts.
    let jobs = config.jobs();
    let preset = config.preset()?;
    let mut checked = Vec::new();
    for job in &jobs {
        let mut c = config.train_config(&preset, job);
        c.apply(&opts.overrides);
        checked.push(c.check().map_err(|e| {
            e.map_field(|field| format!("runs[{}] ({}): {field}", job.row, job.folder))
        })?);
    }
    let mut results = Vec::new();
    for (job, c) in jobs.iter().zip(&checked) {
        let dir = opts.out.join("runs").join(&job.folder);
        on_event(ReproduceEvent::Stage {
            run: &job.folder,
            stage: "pretraining",
        });
        train::train(
            c,
            &RunOptions {
                out: dir.clone(),
                resume: false,
            },
            &mut |e| on_event(ReproduceEvent::Train(e)),
        )
        .map_err(|e| Error::Context {
            context: format!("run `{}` in `{}`", job.folder, dir.display()),
            source: Box::new(e),
        })?;
        on_event(ReproduceEvent::Stage {
            run: &job.folder,
            stage: "evaluation",
        });
        let (result, reused) = evaluate_cached(config, job, &dir, c.config().device.resolve()?)?;
        on_event(ReproduceEvent::Evaluated {
            result: &result,
            reused,
        });
        results.push(result);
    }
    let report = write_report(config, &checked, &results, &opts.out, started.elapsed())?;
    Ok(ReproduceSummary { results, report })
}

/// Evaluates the run in `dir`, or reads `eval.json` back when it was made from the same
/// checkpoint with the same protocol.
fn evaluate_cached(
    config: &ReproduceConfig,
    job: &RunJob<'_>,
    dir: &Path,
    device: tch::Device,
) -> Result<(RunResult, bool)> {
    let spec = job.spec;
    let ckpt_file = dir.join(train::CHECKPOINT_FILE);
    let ckpt = train::read_checkpoint(&ckpt_file)?;
    // The file's size and modification time as well as its progress: a checkpoint replaced by
    // another of the same epoch (retrained, copied in) is measured again.
    let meta =
        std::fs::metadata(&ckpt_file).map_err(|e| Error::io("cannot stat", &ckpt_file, e))?;
    let modified_ns = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as u64);
    let key = serde_json::json!({
        "checkpoint": {
            "epoch": ckpt.progress.epoch,
            "step": ckpt.progress.step,
            "bytes": meta.len(),
            "modified_ns": modified_ns,
        },
        "probe": config.probe,
        "knn": config.knn,
        "spectrum": config.spectrum,
        "eval": config.eval,
        "sub_vector_probe": spec.sub_vector_probe,
    });
    drop(ckpt);
    let file = dir.join(EVAL_FILE);
    if let Ok(text) = std::fs::read_to_string(&file) {
        if let Ok(cached) = serde_json::from_str::<CachedEval>(&text) {
            if cached.key == key
                && cached.result.name == spec.name
                && cached.result.folder == job.folder
            {
                return Ok((cached.result, true));
            }
        }
    }
    let result = evaluate(config, job, dir, device)?;
    let text = serde_json::to_string_pretty(&CachedEval {
        key,
        result: result.clone(),
    })
    .map_err(|e| Error::config("eval", e.to_string()))?;
    let tmp = dir.join(format!(".{EVAL_FILE}.tmp"));
    std::fs::write(&tmp, text).map_err(|e| Error::io("cannot write", &tmp, e))?;
    std::fs::rename(&tmp, &file).map_err(|e| Error::io("cannot rename onto", &file, e))?;
    Ok((result, false))
}

/// Probe(s), kNN and spectra of one run.
fn evaluate(
    config: &ReproduceConfig,
    job: &RunJob<'_>,
    dir: &Path,
    device: tch::Device,
) -> Result<RunResult> {
    let spec = job.spec;
    let started = Instant::now();
    let model = TrainedModel::load(dir, &Weights::RunCheckpoint, device)?;
    let c = model.config().config();
    let src = &c.data.source;
    let train_ds = read_labelled_first(src, EvalSplit::Train, None, config.eval.limit_train)?;
    let test_ds = read_labelled_first(src, EvalSplit::Test, None, config.eval.limit_test)?;
    let eval = eval_transform(c.data.image_size);
    let opts = ExtractOptions {
        batch_size: config.probe.batch_size.max(64),
        workers: config.probe.workers,
        ..Default::default()
    };
    let r_train = extract(&model, train_ds.clone(), eval, Space::Representation, &opts)?;
    let r_test = extract(&model, test_ds.clone(), eval, Space::Representation, &opts)?;
    let z_test = extract(&model, test_ds.clone(), eval, Space::Embedding, &opts)?;
    let classes = train_ds.class_names();

    let mut slices = vec![FeatureSlice::ALL];
    if let (true, Method::DirectClr { d0 }) = (spec.sub_vector_probe, &spec.method) {
        slices.push(FeatureSlice::head(*d0));
        slices.push(FeatureSlice::tail(*d0));
    }
    let mut probes = Vec::new();
    for slice in slices {
        let pc = ProbeConfig {
            space: Space::Representation,
            slice,
            ..config.probe
        };
        let (report, _) = if config.fast_probe() {
            probe_features(&r_train, &r_test, classes, &pc, &mut |_| {})?
        } else {
            linear_probe(&model, train_ds.clone(), test_ds.clone(), &pc, &mut |_| {})?
        };
        probes.push(ProbeSummary::from(&report));
    }
    let knn_report = knn(&r_train, &r_test, classes.len() as i64, &config.knn)?;
    let thr = config.spectrum.collapse_threshold;
    let spectrum_r = Spectrum::of(
        job.folder.clone(),
        Space::Representation,
        &r_test.x,
        RowNormalisation::L2,
        thr,
    )?;
    let spectrum_z = Spectrum::of(
        job.folder.clone(),
        Space::Embedding,
        &z_test.x,
        RowNormalisation::L2,
        thr,
    )?;
    let probe = probes.remove(0);
    Ok(RunResult {
        name: spec.name.clone(),
        seed: c.seed,
        folder: job.folder.clone(),
        method: spec.method.clone(),
        epochs: model.epochs_done().unwrap_or(0),
        probe,
        sub_vector: probes,
        knn: knn_report,
        spectrum_r,
        spectrum_z,
        eval_seconds: started.elapsed().as_secs_f64(),
    })
}

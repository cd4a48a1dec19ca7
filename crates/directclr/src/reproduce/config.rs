//! The configuration of a reproduction: a pretraining preset, the Table 1 rows to run on it,
//! and the evaluation protocol (TOML, `configs/reproduce-*.toml`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::analysis::DEFAULT_COLLAPSE_THRESHOLD;
use crate::eval::{KnnConfig, ProbeConfig, ProbeMode};
use crate::method::Method;
use crate::train::TrainConfig;
use crate::{Error, Result};

/// One pretraining run of the reproduction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSpec {
    /// Folder name under `runs/` and row label (letters, digits, `-`, `_`).
    pub name: String,
    /// The Table 1 row.
    pub method: Method,
    /// Also probe the sub-vectors r[:d0] and r[d0:] (DirectCLR only; the paper's ablation).
    #[serde(default)]
    pub sub_vector_probe: bool,
}

/// One pretraining run of a reproduction: a row, with one of the replicate seeds.
#[derive(Debug, Clone, PartialEq)]
pub struct RunJob<'a> {
    /// The row.
    pub spec: &'a RunSpec,
    /// Its index in `runs` (for error messages).
    pub row: usize,
    /// The replicate's seed; `None` keeps the preset's.
    pub seed: Option<u64>,
    /// Its folder under `runs/`: the row's name, with `.seed<s>` for a replicate (a name
    /// cannot contain `.`, so folders never clash).
    pub folder: String,
}

/// How the spectra are measured.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpectrumSettings {
    /// λ_k / λ₁ below this counts as a collapsed dimension.
    pub collapse_threshold: f64,
}

impl Default for SpectrumSettings {
    fn default() -> Self {
        SpectrumSettings {
            collapse_threshold: DEFAULT_COLLAPSE_THRESHOLD,
        }
    }
}

/// How much labelled data the evaluations read.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct EvalData {
    /// Use only the first N training images (probe training, kNN bank); all when absent.
    pub limit_train: Option<usize>,
    /// Use only the first N test images (accuracies, spectra); all when absent.
    pub limit_test: Option<usize>,
}

/// A reproduction as written in TOML.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReproduceConfig {
    /// Title of the report.
    pub title: String,
    /// The pretraining preset every run starts from (a `directclr train` config; relative
    /// paths are relative to this file's folder).
    pub pretrain: PathBuf,
    /// The runs (one per Table 1 row).
    pub runs: Vec<RunSpec>,
    /// Seeds of replicate runs: every row is pretrained and evaluated once per seed (in
    /// `runs/<name>.seed<s>/`), and the report gives mean ± standard deviation over them.
    /// Absent: each row once, with the preset's seed, in `runs/<name>/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seeds: Option<Vec<u64>>,
    /// The linear probe (on r; the paper's protocol by default).
    #[serde(default)]
    pub probe: ProbeConfig,
    /// The kNN classifier.
    #[serde(default)]
    pub knn: KnnConfig,
    /// Spectra.
    #[serde(default)]
    pub spectrum: SpectrumSettings,
    /// Labelled data of the evaluations.
    #[serde(default)]
    pub eval: EvalData,
}

/// A [`ReproduceConfig`] that passed [`ReproduceConfig::check`] (read with
/// [`ReproduceConfig::from_file`]): what [`reproduce`](super::reproduce) runs, without checking
/// it again. Read its fields through `Deref`; change them on [`CheckedReproduce::into_inner`]
/// and check again.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedReproduce(ReproduceConfig);

impl CheckedReproduce {
    /// The configuration, to change and check again.
    pub fn into_inner(self) -> ReproduceConfig {
        self.0
    }
}

impl std::ops::Deref for CheckedReproduce {
    type Target = ReproduceConfig;
    fn deref(&self) -> &ReproduceConfig {
        &self.0
    }
}

impl ReproduceConfig {
    /// Reads and checks `file`; the preset path is resolved against its folder.
    pub fn from_file(file: &Path) -> Result<CheckedReproduce> {
        let text = std::fs::read_to_string(file).map_err(|e| Error::io("cannot read", file, e))?;
        let mut c: ReproduceConfig = toml::from_str(&text).map_err(|e| Error::InvalidConfig {
            field: format!("{}", file.display()),
            reason: e.to_string(),
        })?;
        if c.pretrain.is_relative() {
            c.pretrain = file.parent().unwrap_or(Path::new(".")).join(&c.pretrain);
        }
        c.check()
    }

    /// Checks the runs and the evaluation settings: the one gate to [`CheckedReproduce`],
    /// the form [`reproduce`](super::reproduce) takes.
    pub fn check(self) -> Result<CheckedReproduce> {
        self.validate()?;
        Ok(CheckedReproduce(self))
    }

    fn validate(&self) -> Result<()> {
        if self.runs.is_empty() {
            return Err(Error::config("runs", "at least one run is needed"));
        }
        for (i, r) in self.runs.iter().enumerate() {
            let ok = !r.name.is_empty()
                && r.name
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_');
            if !ok {
                return Err(Error::config(
                    format!("runs[{i}].name"),
                    format!("`{}` must be letters, digits, `-` or `_`", r.name),
                ));
            }
            if self.runs[..i].iter().any(|o| o.name == r.name) {
                return Err(Error::config(
                    format!("runs[{i}].name"),
                    format!("`{}` is used twice", r.name),
                ));
            }
            if r.sub_vector_probe && !matches!(r.method, Method::DirectClr { .. }) {
                return Err(Error::config(
                    format!("runs[{i}].sub_vector_probe"),
                    "only DirectCLR has a sub-vector r[:d0]",
                ));
            }
        }
        if let Some(seeds) = &self.seeds {
            if seeds.is_empty() {
                return Err(Error::config(
                    "seeds",
                    "list at least one seed, or leave `seeds` out to use the preset's",
                ));
            }
            for (i, s) in seeds.iter().enumerate() {
                if seeds[..i].contains(s) {
                    return Err(Error::config(
                        format!("seeds[{i}]"),
                        format!("seed {s} is listed twice"),
                    ));
                }
            }
        }
        self.probe.validate()?;
        if self.knn.k == 0 {
            return Err(Error::config("knn.k", "must be at least 1"));
        }
        Ok(())
    }

    /// The pretraining runs, row by row and, within a row, seed by seed.
    pub fn jobs(&self) -> Vec<RunJob<'_>> {
        let mut jobs = Vec::new();
        for (row, spec) in self.runs.iter().enumerate() {
            match &self.seeds {
                None => jobs.push(RunJob {
                    spec,
                    row,
                    seed: None,
                    folder: spec.name.clone(),
                }),
                Some(seeds) => jobs.extend(seeds.iter().map(|&s| RunJob {
                    spec,
                    row,
                    seed: Some(s),
                    folder: format!("{}.seed{s}", spec.name),
                })),
            }
        }
        jobs
    }

    /// The pretraining preset, read from its file.
    pub fn preset(&self) -> Result<TrainConfig> {
        TrainConfig::from_file(&self.pretrain)
    }

    /// The pretraining configuration of `job`: `preset` (from [`Self::preset`]) with the
    /// job's method and, for a replicate, its seed.
    pub fn train_config(&self, preset: &TrainConfig, job: &RunJob<'_>) -> TrainConfig {
        let mut c = preset.clone();
        c.method = job.spec.method.clone();
        if let Some(seed) = job.seed {
            c.seed = seed;
        }
        c
    }

    /// Whether the probe reuses extracted features (fast) or runs the paper's protocol.
    pub fn fast_probe(&self) -> bool {
        self.probe.mode == ProbeMode::Features
    }
}

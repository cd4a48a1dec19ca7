//! Collapse monitoring during pretraining: every few epochs, the rank metrics of r and z on a
//! fixed held-out set of images (centre crops, eval mode), logged with the epoch's metrics, and
//! a warning when the number of collapsed dimensions jumps.

use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};

use crate::analysis::{RankMetrics, RankOptions, RowNormalisation, DEFAULT_COLLAPSE_THRESHOLD};
use crate::data::augment::Normalize;
use crate::data::Transform;
use crate::data::{eval_loader, eval_transform, read_labelled_first, EvalSplit, ExtractOptions};
use crate::model::{Encoder, Head, Space};
use crate::run::CheckedConfig;
use crate::{Error, Result};

/// The `[monitor]` table of a run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MonitorConfig {
    /// Measure after every this many epochs (0 turns monitoring off).
    pub every_epochs: usize,
    /// Held-out images: the first ones of the labelled test split (of the training split
    /// when the dataset has none).
    pub samples: usize,
    /// λ_k / λ₁ below this counts as a collapsed dimension.
    pub collapse_threshold: f64,
    /// Warn when the collapsed count of a space grows by at least this many dimensions since
    /// the previous measurement (0: a tenth of the space's dimension, at least 2).
    pub jump: usize,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            every_epochs: 1,
            samples: 512,
            collapse_threshold: DEFAULT_COLLAPSE_THRESHOLD,
            jump: 0,
        }
    }
}

impl MonitorConfig {
    /// Checks the ranges; `samples` must allow a covariance.
    pub fn validate(&self) -> Result<()> {
        if self.every_epochs > 0 && self.samples < 2 {
            return Err(Error::config(
                "monitor.samples",
                format!("{} must be at least 2", self.samples),
            ));
        }
        if !(self.collapse_threshold.is_finite() && self.collapse_threshold >= 0.0) {
            return Err(Error::config(
                "monitor.collapse_threshold",
                format!("{} is not a finite value ≥ 0", self.collapse_threshold),
            ));
        }
        Ok(())
    }

    /// The jump that triggers a warning for a space of `dim` dimensions.
    pub fn jump_for(&self, dim: usize) -> usize {
        if self.jump > 0 {
            self.jump
        } else {
            (dim / 10).max(2)
        }
    }
}

/// The rank metrics of one measurement, as logged in `metrics.jsonl` (field `rank`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RankSnapshot {
    /// Of the representation r.
    pub r: RankMetrics,
    /// Of the embedding z that enters the loss.
    pub z: RankMetrics,
    /// Warnings of this measurement (collapse jumps).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// A jump of the collapsed count of one space between two measurements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CollapseJump {
    /// The space.
    pub space: Space,
    /// Collapsed dimensions at the previous measurement.
    pub before: usize,
    /// Collapsed dimensions now.
    pub after: usize,
    /// The space's dimension.
    pub dim: usize,
}

impl std::fmt::Display for CollapseJump {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "collapse: {} of the {} dimensions of {} are collapsed, {} at the previous measurement",
            self.after,
            self.dim,
            self.space.symbol(),
            self.before
        )
    }
}

/// Whether `before → after` collapsed dimensions (of `dim`) is a jump under `config`.
pub fn collapse_jump(config: &MonitorConfig, before: usize, after: usize, dim: usize) -> bool {
    after >= before + config.jump_for(dim)
}

/// The held-out images and the previous measurement.
pub struct CollapseMonitor {
    config: MonitorConfig,
    images: Tensor,
    norm: Normalize,
    batch: i64,
    previous: Option<(usize, usize)>,
}

impl CollapseMonitor {
    /// Reads the held-out images of the run (`None` when its `[monitor]` is off); the
    /// settings were checked with the run's configuration.
    pub fn new(run: &CheckedConfig) -> Result<Option<Self>> {
        let c = run.config();
        let monitor = &c.monitor;
        if monitor.every_epochs == 0 {
            return Ok(None);
        }
        let held_out = Some(monitor.samples);
        let ds = match read_labelled_first(&c.data.source, EvalSplit::Test, None, held_out) {
            Ok(ds) => ds,
            Err(_) => read_labelled_first(&c.data.source, EvalSplit::Train, None, held_out)?,
        };
        let transform = Transform::Eval(eval_transform(c.data.image_size));
        let norm = transform.normalize(0);
        let opts = ExtractOptions {
            batch_size: 256,
            workers: c.workers.min(2),
            ..Default::default()
        };
        let loader = eval_loader(ds, transform, &opts, Device::Cpu, (0, false))?;
        let mut parts = Vec::new();
        for batch in loader.epoch(0) {
            parts.push(batch?.views.swap_remove(0));
        }
        Ok(Some(CollapseMonitor {
            config: *monitor,
            images: Tensor::f_cat(&parts, 0)?,
            norm,
            batch: c.batch_size.max(2) as i64,
            previous: None,
        }))
    }

    /// Whether a measurement is due after `epochs_done` epochs (always after the last).
    pub fn due(&self, epochs_done: usize, total: usize) -> bool {
        epochs_done.is_multiple_of(self.config.every_epochs) || epochs_done == total
    }

    /// Measures r = f(x) and z = g(r) of the held-out images in eval mode (no gradient, no BN
    /// statistic changes), compares with the previous measurement and returns the snapshot and
    /// the jumps.
    pub fn measure(
        &mut self,
        encoder: &Encoder,
        head: &Head,
        device: Device,
    ) -> Result<(RankSnapshot, Vec<CollapseJump>)> {
        let _g = tch::no_grad_guard();
        let n = self.images.size()[0];
        let mut rs = Vec::new();
        let mut zs = Vec::new();
        let mut start = 0;
        while start < n {
            let len = self.batch.min(n - start);
            let x = self
                .norm
                .apply_tensor(&self.images.f_narrow(0, start, len)?.f_to_device(device)?);
            let r = encoder.forward_t(&x, false)?; // [len, D]
            zs.push(head.embed(&r, false)?.f_to_kind(tch::Kind::Float)?); // [len, d]
            rs.push(r.f_to_kind(tch::Kind::Float)?);
            start += len;
        }
        let options = RankOptions {
            rows: RowNormalisation::L2,
            collapse_threshold: self.config.collapse_threshold,
        };
        let r = RankMetrics::from_embeddings(&Tensor::f_cat(&rs, 0)?, &options)?;
        let z = RankMetrics::from_embeddings(&Tensor::f_cat(&zs, 0)?, &options)?;
        let mut jumps = Vec::new();
        if let Some((pr, pz)) = self.previous {
            for (space, before, m) in [(Space::Representation, pr, &r), (Space::Embedding, pz, &z)]
            {
                if collapse_jump(&self.config, before, m.collapsed_dimensions, m.dim) {
                    jumps.push(CollapseJump {
                        space,
                        before,
                        after: m.collapsed_dimensions,
                        dim: m.dim,
                    });
                }
            }
        }
        self.previous = Some((r.collapsed_dimensions, z.collapsed_dimensions));
        let warnings = jumps.iter().map(|j| j.to_string()).collect();
        Ok((RankSnapshot { r, z, warnings }, jumps))
    }
}

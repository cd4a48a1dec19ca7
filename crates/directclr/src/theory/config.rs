//! Settings of one toy run, with the paper's values as presets (REFERENCE.md, "Toy
//! experiments"), checked once before a run starts.

use serde::{Deserialize, Serialize};

use super::{
    toy_loss::{ToyLoss, ZNorm},
    toy_net::{Activation, Init},
};
use crate::{Error, Result};

/// The precision a toy run computes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum Precision {
    /// 32-bit floats, as the authors' PyTorch scripts.
    #[default]
    F32,
    /// 64-bit floats.
    F64,
}

/// Where the additive Gaussian augmentation noise goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NoiseSupport {
    /// Every coordinate (Section 5).
    All,
    /// Only the last k coordinates (Section 4: the last 8 of 16).
    Last(usize),
}

/// One toy run: data x ~ N(0, I_dim), `samples` fixed points, two views x + ε, x + ε' with
/// Gaussian ε of std `noise_std` on `noise_support`, a [`super::ToyNet`] trained by plain SGD
/// (no momentum, no weight decay) on an InfoNCE, un-normalised unless `z_norm` says otherwise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToyConfig {
    /// Input and layer width d (16).
    pub dim: usize,
    /// Number of layers L.
    pub layers: usize,
    /// Between layers.
    pub activation: Activation,
    /// Weight initialisation.
    pub init: Init,
    /// The InfoNCE form.
    pub loss: ToyLoss,
    /// Whether z is L2-normalised (per row) before the loss (not in the presets; configs
    /// written without the field read as [`ZNorm::None`]).
    #[serde(default)]
    pub z_norm: ZNorm,
    /// Temperature τ (0.1).
    pub temperature: f64,
    /// Std of the augmentation noise.
    pub noise_std: f64,
    /// Which coordinates get noise.
    pub noise_support: NoiseSupport,
    /// SGD learning rate.
    pub lr: f64,
    /// Number of SGD steps (10,000).
    pub steps: usize,
    /// Batch size (128), drawn without replacement.
    pub batch: usize,
    /// Number of fixed training samples (10,000).
    pub samples: usize,
    /// Fresh samples for each spectrum measurement (1,000).
    pub eval_samples: usize,
    /// Measure every this many steps (10).
    pub log_every: usize,
    /// Batches averaged to estimate X (Eqn 6) at each measurement; 0 = do not estimate.
    pub x_batches: usize,
    /// The seed of every random draw of the run.
    pub seed: u64,
    /// Computation precision.
    pub precision: Precision,
}

impl ToyConfig {
    /// Section 4 (case 1, Theorem 1): one linear layer, PyTorch's default init, noise on the
    /// last 8 coordinates, lr 1e-3, and the paper's loss (Eqn 2, [`ToyLoss::Distance`]), the
    /// loss Theorem 1 and Lemma 2 are stated for. (With the authors' dot-product loss X carries
    /// an extra indefinite term, see [`super::closed_form::lemma2`].)
    pub fn strong_augmentation(noise_std: f64) -> Self {
        ToyConfig {
            dim: 16,
            layers: 1,
            activation: Activation::Linear,
            init: Init::Uniform,
            loss: ToyLoss::Distance,
            z_norm: ZNorm::None,
            temperature: 0.1,
            noise_std,
            noise_support: NoiseSupport::Last(8),
            lr: 1e-3,
            steps: 10_000,
            batch: 128,
            samples: 10_000,
            eval_samples: 1_000,
            log_every: 10,
            x_batches: 4,
            seed: 0,
            precision: Precision::F32,
        }
    }

    /// Section 5 (case 2, Theorems 2–3, Figures 4–6): L layers initialised with decaying
    /// singular values e^(−0.35k), isotropic noise 0.001, lr 1e-2, the authors' dot-product
    /// loss (their code produced Figures 4–6).
    pub fn implicit_regularization(layers: usize) -> Self {
        ToyConfig {
            layers,
            init: Init::SpectralDecay { rate: 0.35 },
            noise_std: 0.001,
            noise_support: NoiseSupport::All,
            lr: 1e-2,
            loss: ToyLoss::Dot,
            x_batches: 0,
            ..Self::strong_augmentation(0.0)
        }
    }

    /// Refuses impossible settings with the field's name.
    pub fn check(&self) -> Result<()> {
        let positive = |field: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(Error::config(
                    field,
                    format!("must be a finite number > 0, got {v}"),
                ))
            }
        };
        if self.dim == 0 || self.dim > 4096 {
            return Err(Error::config(
                "dim",
                format!("must be in 1..=4096, got {}", self.dim),
            ));
        }
        if self.layers == 0 || self.layers > 64 {
            return Err(Error::config(
                "layers",
                format!("must be in 1..=64, got {}", self.layers),
            ));
        }
        positive("temperature", self.temperature)?;
        positive("lr", self.lr)?;
        if !(self.noise_std.is_finite() && self.noise_std >= 0.0) {
            return Err(Error::config(
                "noise_std",
                format!("must be a finite number ≥ 0, got {}", self.noise_std),
            ));
        }
        if let NoiseSupport::Last(k) = self.noise_support {
            if k == 0 || k > self.dim {
                return Err(Error::config(
                    "noisy_dims",
                    format!("must be in 1..={} (dim), got {k}", self.dim),
                ));
            }
        }
        if let Init::SpectralDecay { rate } = self.init {
            if !(rate.is_finite() && rate >= 0.0) {
                return Err(Error::config(
                    "init.rate",
                    format!("must be a finite number ≥ 0, got {rate}"),
                ));
            }
        }
        if self.steps == 0 {
            return Err(Error::config("steps", "must be at least 1"));
        }
        if self.samples < 2 {
            return Err(Error::config(
                "samples",
                format!("must be at least 2, got {}", self.samples),
            ));
        }
        if self.batch < 2 || self.batch > self.samples {
            return Err(Error::config(
                "batch",
                format!(
                    "must be in 2..={} (samples; drawn without replacement), got {}",
                    self.samples, self.batch
                ),
            ));
        }
        if self.eval_samples < 2 {
            return Err(Error::config(
                "eval_samples",
                format!("must be at least 2, got {}", self.eval_samples),
            ));
        }
        if self.log_every == 0 {
            return Err(Error::config("log_every", "must be at least 1"));
        }
        if self.x_batches > 0 && self.z_norm != ZNorm::None {
            return Err(Error::config(
                "x_batches",
                "X (Eqn 6) is defined for the un-normalised loss only; use 0 with z_norm l2",
            ));
        }
        if self.x_batches > 0 && self.activation != Activation::Linear {
            return Err(Error::config(
                "x_batches",
                "X (Eqn 6) is defined for linear networks only; use 0 with ReLU",
            ));
        }
        Ok(())
    }
}

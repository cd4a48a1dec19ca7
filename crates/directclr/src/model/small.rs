//! The small encoders of the collapse ladder (`benches/reproduce/collapse-ladder/`): a linear
//! map of the pixels, the same map as a product of two matrices, a one-hidden-layer MLP, one convolution with pooling, and a small
//! convolutional network with or without residual connections. Each differs from the one
//! before by one step, between the theory lab's toy encoder and the ResNet.
//!
//! They take the same input as the ResNet (normalised crops `[batch, 3, S, S]`) and give r
//! `[batch, dim]`, so that every head, loss, probe and monitor of a run works on them unchanged.

use serde::{Deserialize, Serialize};
use tch::nn::{self, Init};
use tch::Tensor;

use super::batch_norm::BatchNorm;
use super::block::Block;
use super::conv::Conv2d;
use super::state::StateRecorder;
use crate::{Error, Result};

/// The rungs of the ladder below the ResNet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmallArch {
    /// r = W·vec(x) + b: one linear layer on the pixels (the toy model's L = 1 encoder, on
    /// images). Names `fc.weight` `[dim, 3·S·S]`, `fc.bias` `[dim]`.
    Linear,
    /// r = W₂·(W₁·vec(x) + b₁) + b₂: two linear layers, `hidden` units between them and no
    /// nonlinearity (the map stays linear; only its parametrisation is deeper). Between
    /// [`SmallArch::Linear`] and [`SmallArch::Mlp`], it tells depth from the ReLU. Names
    /// `fc1.*`, `fc2.*`.
    DeepLinear,
    /// r = W₂·relu(W₁·vec(x) + b₁) + b₂: one hidden layer of `hidden` units with ReLU. Names
    /// `fc1.*`, `fc2.*`.
    Mlp,
    /// r = avgpool(relu(conv₃ₓ₃(x))): one bias-free 3×3 convolution with `dim` channels,
    /// ReLU and global average pooling. Names `conv1.weight` `[dim, 3, 3, 3]`.
    Conv,
    /// A plain convolutional network: the ResNet's CIFAR stem (3×3 conv, BN, ReLU), then
    /// `stages` basic blocks (two 3×3 conv + BN, ReLU) *without* shortcut, the channels
    /// doubling and the side halving from the second, then global average pooling. Names as
    /// the ResNet's (`conv1`, `bn1`, `layer1.0.conv1`, …).
    Cnn,
    /// [`SmallArch::Cnn`] with the ResNet's shortcuts (identity, or a 1×1 conv + BN
    /// `downsample` where the shape changes) and, unless `zero_init_residual = false`,
    /// `zero_init_residual`: a ResNet with one basic block per stage.
    ResidualCnn,
}

impl SmallArch {
    /// The name in configuration files (`linear`, `mlp`, `conv`, `cnn`, `residual_cnn`).
    pub fn name(self) -> &'static str {
        match self {
            SmallArch::Linear => "linear",
            SmallArch::DeepLinear => "deep_linear",
            SmallArch::Mlp => "mlp",
            SmallArch::Conv => "conv",
            SmallArch::Cnn => "cnn",
            SmallArch::ResidualCnn => "residual_cnn",
        }
    }
}

impl SmallArch {
    /// Whether the encoder has a hidden layer of `hidden` units (deep_linear, mlp).
    pub fn has_hidden(self) -> bool {
        matches!(self, SmallArch::DeepLinear | SmallArch::Mlp)
    }
}

impl std::fmt::Display for SmallArch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The largest number of weights of the first layer of a linear or MLP encoder (3·S²·width):
/// 2²⁶ floats, 256 MiB, so that a typo in `data.image_size` or `dim` cannot allocate
/// gigabytes.
pub const MAX_DENSE_WEIGHTS: i64 = 1 << 26;
/// The largest `dim` and `hidden`.
pub const MAX_SMALL_WIDTH: i64 = 1 << 16;
/// The largest number of stages of the convolutional networks.
pub const MAX_STAGES: usize = 6;

/// Configuration of a small encoder (`[model] arch = "linear" | "mlp" | "conv" | "cnn" |
/// "residual_cnn"`).
#[derive(Debug, Clone, PartialEq)]
pub struct SmallConfig {
    /// The rung.
    pub arch: SmallArch,
    /// Dimension D of r: the output of the linear layer (linear, mlp), the channels of the
    /// convolution (conv), the channels of the last stage (cnn, residual_cnn: the first
    /// stage has dim / 2^(stages−1)).
    pub dim: i64,
    /// Hidden units between the two layers (deep_linear, mlp only).
    pub hidden: i64,
    /// Number of stages (cnn, residual_cnn only).
    pub stages: usize,
    /// Whether the last BN of each residual block starts at γ = 0, so that every block starts
    /// as its shortcut (residual_cnn only; `true` as the quick start's ResNet).
    pub zero_init_residual: bool,
    /// Whether the last block ends with its ReLU, as the ResNet's (cnn, residual_cnn only;
    /// `true`). With `false`, r = avgpool(branch + shortcut) of the last block takes either sign
    /// and is not sparse by construction: the collapse ladder's control for whether the
    /// no-projector r is flat because the loss sparsifies a non-negative r. The parameters and
    /// their names are the same either way.
    pub final_relu: bool,
}

impl SmallConfig {
    /// The defaults of `arch`: r 64-d (the quick start's ResNet-18 at width 0.125), 512 hidden
    /// units, 4 stages (8, 16, 32, 64 channels, as the quick start's ResNet).
    pub fn new(arch: SmallArch) -> Self {
        SmallConfig {
            arch,
            dim: 64,
            hidden: 512,
            stages: 4,
            zero_init_residual: true,
            final_relu: true,
        }
    }

    /// Channels of the first stage of the convolutional networks.
    fn base_channels(&self) -> i64 {
        self.dim >> (self.stages.saturating_sub(1))
    }

    /// Checks the configuration for crops of side `image_size`; errors name the field
    /// (`dim`, `hidden`, `stages`, relative to `[model]`).
    pub fn validate(&self, image_size: usize) -> Result<()> {
        for (field, v) in [("dim", self.dim), ("hidden", self.hidden)] {
            if !(1..=MAX_SMALL_WIDTH).contains(&v) {
                return Err(Error::config(
                    field,
                    format!("{v} is not between 1 and {MAX_SMALL_WIDTH}"),
                ));
            }
        }
        let pixels = 3 * (image_size as i64) * (image_size as i64);
        match self.arch {
            SmallArch::Linear | SmallArch::DeepLinear | SmallArch::Mlp => {
                let width = if self.arch.has_hidden() {
                    self.hidden
                } else {
                    self.dim
                };
                if pixels.saturating_mul(width) > MAX_DENSE_WEIGHTS {
                    return Err(Error::config(
                        if self.arch.has_hidden() {
                            "hidden"
                        } else {
                            "dim"
                        },
                        format!(
                            "the first layer would hold 3·{image_size}²·{width} weights, more \
                             than {MAX_DENSE_WEIGHTS}: use smaller crops or a narrower layer"
                        ),
                    ));
                }
            }
            SmallArch::Conv => {}
            SmallArch::Cnn | SmallArch::ResidualCnn => {
                if !(1..=MAX_STAGES).contains(&self.stages) {
                    return Err(Error::config(
                        "stages",
                        format!("{} is not between 1 and {MAX_STAGES}", self.stages),
                    ));
                }
                let div = 1i64 << (self.stages - 1);
                if self.dim % div != 0 {
                    return Err(Error::config(
                        "dim",
                        format!(
                            "{} is not a multiple of 2^(stages − 1) = {div}: the channels halve \
                             {} times from the last stage to the first",
                            self.dim,
                            self.stages - 1
                        ),
                    ));
                }
                if (image_size as i64) < div {
                    return Err(Error::config(
                        "stages",
                        format!(
                            "{} stages halve the side {} times, more than crops of {image_size} \
                             pixels allow",
                            self.stages,
                            self.stages - 1
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// A linear layer with bias and PyTorch's `nn.Linear` initialisation (weight and bias
/// U(−1/√in, 1/√in)).
#[derive(Debug)]
struct Dense {
    weight: Tensor,
    bias: Tensor,
}

impl Dense {
    fn new(p: &nn::Path, rec: &mut StateRecorder, c_in: i64, c_out: i64) -> Result<Self> {
        let bound = 1.0 / (c_in as f64).sqrt();
        let init = Init::Uniform {
            lo: -bound,
            up: bound,
        };
        let weight = rec.param(p, "weight", &[c_out, c_in], init)?;
        let bias = rec.param(p, "bias", &[c_out], init)?;
        Ok(Dense { weight, bias })
    }

    /// `[batch, in]` → `[batch, out]`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.f_linear(&self.weight, Some(&self.bias))?)
    }
}

#[derive(Debug)]
enum Layers {
    Linear(Dense),
    Mlp(Dense, Dense, bool),
    Conv(Conv2d),
    Cnn {
        conv1: Conv2d,
        bn1: BatchNorm,
        blocks: Vec<Block>,
    },
}

/// A built small encoder: images `[batch, 3, S, S]` → r `[batch, dim]`.
#[derive(Debug)]
pub struct SmallEncoder {
    config: SmallConfig,
    image_size: i64,
    layers: Layers,
    state: Vec<(String, Tensor)>,
}

impl SmallEncoder {
    /// Builds the encoder for crops of side `image_size` under `path`, with PyTorch's default
    /// initialisations (`nn.Linear`; the ResNet's convolutions and BNs) from libtorch's global
    /// generator.
    pub fn new(path: &nn::Path, config: SmallConfig, image_size: usize) -> Result<Self> {
        config.validate(image_size).map_err(|e| e.within("model"))?;
        let mut rec = StateRecorder::new(path);
        let pixels = 3 * (image_size as i64) * (image_size as i64);
        let layers = match config.arch {
            SmallArch::Linear => {
                Layers::Linear(Dense::new(&path.sub("fc"), &mut rec, pixels, config.dim)?)
            }
            SmallArch::DeepLinear | SmallArch::Mlp => Layers::Mlp(
                Dense::new(&path.sub("fc1"), &mut rec, pixels, config.hidden)?,
                Dense::new(&path.sub("fc2"), &mut rec, config.hidden, config.dim)?,
                config.arch == SmallArch::Mlp,
            ),
            SmallArch::Conv => Layers::Conv(Conv2d::new(
                &path.sub("conv1"),
                &mut rec,
                3,
                config.dim,
                3,
                1,
                1,
            )?),
            SmallArch::Cnn | SmallArch::ResidualCnn => {
                let residual = config.arch == SmallArch::ResidualCnn;
                let base = config.base_channels();
                let conv1 = Conv2d::new(&path.sub("conv1"), &mut rec, 3, base, 3, 1, 1)?;
                let bn1 = BatchNorm::new(&path.sub("bn1"), &mut rec, base, 1.0)?;
                let mut blocks = Vec::with_capacity(config.stages);
                let mut c_in = base;
                for i in 0..config.stages {
                    let planes = base << i;
                    let stride = if i == 0 { 1 } else { 2 };
                    // zero_init_residual only where a shortcut carries the signal: a plain
                    // block with a zero last γ would output zeros.
                    blocks.push(Block::new(
                        &path.sub(format!("layer{}", i + 1)).sub(0),
                        &mut rec,
                        false,
                        c_in,
                        planes,
                        stride,
                        residual && config.zero_init_residual,
                        residual,
                    )?);
                    c_in = planes;
                }
                if !config.final_relu {
                    let last = blocks.pop().map(Block::without_output_relu);
                    blocks.extend(last);
                }
                Layers::Cnn { conv1, bn1, blocks }
            }
        };
        Ok(SmallEncoder {
            config,
            image_size: image_size as i64,
            layers,
            state: rec.finish(),
        })
    }

    /// The configuration it was built from.
    pub fn config(&self) -> &SmallConfig {
        &self.config
    }

    /// Dimension D of r.
    pub fn feat_dim(&self) -> i64 {
        self.config.dim
    }

    /// Every parameter and buffer under PyTorch-style names (see [`SmallArch`]).
    pub fn named_tensors(&self) -> &[(String, Tensor)] {
        &self.state
    }

    /// The representation r.
    ///
    /// # Shapes
    /// - `x`: `[batch, 3, S, S]`, the side the encoder was built for (linear, mlp) or any side
    ///   its stages can halve (conv, cnn).
    /// - returns r: `[batch, dim]`.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let size = x.size();
        let dense = matches!(self.layers, Layers::Linear(_) | Layers::Mlp(..));
        if size.len() != 4
            || size[1] != 3
            || (dense && (size[2] != self.image_size || size[3] != self.image_size))
        {
            return Err(Error::config(
                "input",
                format!(
                    "expected images [batch, 3, {s}, {s}], got {size:?}",
                    s = self.image_size
                ),
            ));
        }
        match &self.layers {
            Layers::Linear(fc) => fc.forward(&x.f_flatten(1, -1)?),
            Layers::Mlp(fc1, fc2, relu) => {
                let h = fc1.forward(&x.f_flatten(1, -1)?)?; // [batch, hidden]
                fc2.forward(&if *relu { h.f_relu()? } else { h })
            }
            Layers::Conv(conv) => Ok(conv
                .forward(x)?
                .f_relu()?
                .f_adaptive_avg_pool2d([1, 1])?
                .f_flatten(1, -1)?),
            Layers::Cnn { conv1, bn1, blocks } => {
                let mut h = bn1.forward_t(&conv1.forward(x)?, train)?.f_relu()?;
                for b in blocks {
                    h = b.forward_t(&h, train)?;
                }
                Ok(h.f_adaptive_avg_pool2d([1, 1])?.f_flatten(1, -1)?)
            }
        }
    }
}

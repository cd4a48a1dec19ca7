//! The encoder f of a run: a ResNet (the paper's) or one of the small encoders of the
//! collapse ladder, chosen by `[model] arch`.
//!
//! # The `[model]` table
//!
//! One table for every architecture, `arch` choosing the family; the keys of the other family
//! are refused by name:
//!
//! ```toml
//! [model]                      # the ResNet (default: ResNet-50, ImageNet stem, width 1)
//! arch = "resnet18"
//! stem = "cifar"
//! width_multiplier = 0.125
//! zero_init_residual = true
//!
//! [model]                      # a small encoder
//! arch = "mlp"                 # linear | deep_linear | mlp | conv | cnn | residual_cnn
//! dim = 64                     # r's dimension
//! hidden = 512                 # deep_linear and mlp only
//! stages = 4                   # cnn and residual_cnn only
//! zero_init_residual = true    # residual_cnn only (as the ResNets')
//! final_relu = true            # cnn and residual_cnn only: false leaves r unrectified
//! ```
//!
//! A ResNet configuration is written back exactly as before the small encoders existed, so run
//! folders written then resume unchanged.

use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

use super::config::{Arch, ResNetConfig, Stem};
use super::resnet::ResNet;
use super::small::{SmallArch, SmallConfig, SmallEncoder};
use crate::{Error, Result};

/// Which encoder a run trains.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "ModelTable", into = "ModelTable")]
pub enum EncoderConfig {
    /// torchvision's ResNet-18/34/50 (the paper's encoder).
    ResNet(ResNetConfig),
    /// A small encoder of the collapse ladder.
    Small(SmallConfig),
}

impl Default for EncoderConfig {
    fn default() -> Self {
        EncoderConfig::ResNet(ResNetConfig::default())
    }
}

impl From<ResNetConfig> for EncoderConfig {
    fn from(c: ResNetConfig) -> Self {
        EncoderConfig::ResNet(c)
    }
}

impl From<SmallConfig> for EncoderConfig {
    fn from(c: SmallConfig) -> Self {
        EncoderConfig::Small(c)
    }
}

impl EncoderConfig {
    /// The ResNet configuration, when the encoder is one.
    pub fn resnet(&self) -> Option<&ResNetConfig> {
        match self {
            EncoderConfig::ResNet(c) => Some(c),
            EncoderConfig::Small(_) => None,
        }
    }

    /// The architecture's name (`resnet18`, …, `linear`, `mlp`, …).
    pub fn arch_name(&self) -> &'static str {
        match self {
            EncoderConfig::ResNet(c) => c.arch.name(),
            EncoderConfig::Small(c) => c.arch.name(),
        }
    }

    /// A one-line description for logs, without r's dimension (`resnet18, cifar stem, width
    /// 0.125`; `mlp, 512 hidden`).
    pub fn describe(&self) -> String {
        match self {
            EncoderConfig::ResNet(c) => {
                format!("{}, {} stem, width {}", c.arch, c.stem, c.width_multiplier)
            }
            EncoderConfig::Small(c) => match c.arch {
                SmallArch::Mlp | SmallArch::DeepLinear => {
                    format!("{}, {} hidden", c.arch, c.hidden)
                }
                SmallArch::Cnn | SmallArch::ResidualCnn => {
                    let mut text = format!("{}, {} stages", c.arch, c.stages);
                    if c.arch == SmallArch::ResidualCnn && !c.zero_init_residual {
                        text.push_str(", no zero-init residual");
                    }
                    if !c.final_relu {
                        text.push_str(", no final ReLU");
                    }
                    text
                }
                _ => c.arch.to_string(),
            },
        }
    }

    /// Dimension D of r.
    pub fn feat_dim(&self) -> Result<i64> {
        match self {
            EncoderConfig::ResNet(c) => c.feat_dim(),
            EncoderConfig::Small(c) => Ok(c.dim),
        }
    }

    /// The smallest crop side the encoder reduces to at least one pixel.
    pub fn min_image_size(&self) -> usize {
        match self {
            // The stem divides the side by 8 (CIFAR) or 32 (ImageNet) before pooling.
            EncoderConfig::ResNet(c) => match c.stem {
                Stem::Cifar => 8,
                Stem::ImageNet => 32,
            },
            // The convolutional networks' bound depends on `stages`, which
            // [`SmallConfig::validate`] checks first, naming `model.stages`.
            EncoderConfig::Small(_) => 1,
        }
    }

    /// Checks the configuration for crops of side `image_size` (field names relative to
    /// `[model]`).
    pub fn validate(&self, image_size: usize) -> Result<()> {
        match self {
            EncoderConfig::ResNet(c) => c.feat_dim().map(|_| ()),
            EncoderConfig::Small(c) => c.validate(image_size),
        }
    }

    /// Builds the encoder for crops of side `image_size` under `path` (initialised from
    /// libtorch's global generator: seed it first).
    pub fn build(&self, path: &nn::Path, image_size: usize) -> Result<Encoder> {
        Ok(match self {
            EncoderConfig::ResNet(c) => Encoder::ResNet(c.build(path)?),
            EncoderConfig::Small(c) => {
                Encoder::Small(SmallEncoder::new(path, c.clone(), image_size)?)
            }
        })
    }
}

/// A built encoder f: images `[batch, 3, S, S]` → r `[batch, D]`.
#[derive(Debug)]
pub enum Encoder {
    /// A ResNet.
    ResNet(ResNet),
    /// A small encoder of the collapse ladder.
    Small(SmallEncoder),
}

impl Encoder {
    /// The ResNet, when the encoder is one (import and export of torchvision weights).
    pub fn resnet(&self) -> Option<&ResNet> {
        match self {
            Encoder::ResNet(r) => Some(r),
            Encoder::Small(_) => None,
        }
    }

    /// The ResNet, or an error naming `what` needs one.
    pub fn require_resnet(&self, what: &str) -> Result<&ResNet> {
        self.resnet().ok_or_else(|| {
            Error::config(
                "model.arch",
                format!("{what} needs a ResNet encoder, and this one is a small encoder"),
            )
        })
    }

    /// Dimension D of r.
    pub fn feat_dim(&self) -> i64 {
        match self {
            Encoder::ResNet(e) => e.feat_dim(),
            Encoder::Small(e) => e.feat_dim(),
        }
    }

    /// Every parameter and buffer under PyTorch's `state_dict` names.
    pub fn named_tensors(&self) -> &[(String, Tensor)] {
        match self {
            Encoder::ResNet(e) => e.named_tensors(),
            Encoder::Small(e) => e.named_tensors(),
        }
    }

    /// The representation r (BNs in training or eval mode as `train` says).
    ///
    /// # Shapes
    /// - `x`: `[batch, 3, S, S]` → r `[batch, D]`.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        match self {
            Encoder::ResNet(e) => e.forward_t(x, train),
            Encoder::Small(e) => e.forward_t(x, train),
        }
    }
}

/// The name of `[model] arch`: a ResNet depth or a small encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ArchName {
    ResNet(Arch),
    Small(SmallArch),
}

const ARCH_NAMES: &str =
    "resnet18, resnet34, resnet50, linear, deep_linear, mlp, conv, cnn, residual_cnn";

impl Serialize for ArchName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(match self {
            ArchName::ResNet(a) => a.name(),
            ArchName::Small(a) => a.name(),
        })
    }
}

impl<'de> Deserialize<'de> for ArchName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        if let Ok(a) = name.parse::<Arch>() {
            return Ok(ArchName::ResNet(a));
        }
        [
            SmallArch::Linear,
            SmallArch::DeepLinear,
            SmallArch::Mlp,
            SmallArch::Conv,
            SmallArch::Cnn,
            SmallArch::ResidualCnn,
        ]
        .into_iter()
        .find(|a| a.name() == name)
        .map(ArchName::Small)
        .ok_or_else(|| {
            serde::de::Error::custom(format!("model.arch: `{name}` is not one of {ARCH_NAMES}"))
        })
    }
}

/// `[model]` as written: every key of both families, sorted out by [`EncoderConfig`]'s
/// `TryFrom`.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelTable {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    arch: Option<ArchName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stem: Option<Stem>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    width_multiplier: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    zero_init_residual: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dim: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hidden: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stages: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    final_relu: Option<bool>,
}

impl TryFrom<ModelTable> for EncoderConfig {
    type Error = String;

    fn try_from(t: ModelTable) -> std::result::Result<Self, String> {
        let refuse = |key: &str, arch: &str, family: &str| {
            // "model.<key>: reason": `TrainConfig::from_toml` names the field from this.
            Err(format!(
                "model.{key}: `{key}` applies to {family}, not to arch `{arch}`"
            ))
        };
        match t.arch {
            None | Some(ArchName::ResNet(_)) => {
                let d = ResNetConfig::default();
                let arch = match t.arch {
                    Some(ArchName::ResNet(a)) => a,
                    _ => d.arch,
                };
                for (key, set) in [
                    ("dim", t.dim.is_some()),
                    ("hidden", t.hidden.is_some()),
                    ("stages", t.stages.is_some()),
                    ("final_relu", t.final_relu.is_some()),
                ] {
                    if set {
                        return refuse(
                            key,
                            arch.name(),
                            "the small encoders (linear, deep_linear, mlp, conv, cnn, residual_cnn)",
                        );
                    }
                }
                Ok(EncoderConfig::ResNet(ResNetConfig {
                    arch,
                    stem: t.stem.unwrap_or(d.stem),
                    width_multiplier: t.width_multiplier.unwrap_or(d.width_multiplier),
                    zero_init_residual: t.zero_init_residual.unwrap_or(d.zero_init_residual),
                }))
            }
            Some(ArchName::Small(arch)) => {
                for (key, set) in [
                    ("stem", t.stem.is_some()),
                    ("width_multiplier", t.width_multiplier.is_some()),
                ] {
                    if set {
                        return refuse(key, arch.name(), "the ResNets");
                    }
                }
                if t.zero_init_residual.is_some() && arch != SmallArch::ResidualCnn {
                    return refuse(
                        "zero_init_residual",
                        arch.name(),
                        "the ResNets and arch `residual_cnn`",
                    );
                }
                if t.hidden.is_some() && !arch.has_hidden() {
                    return refuse("hidden", arch.name(), "arch `deep_linear` and `mlp`");
                }
                let convnet = matches!(arch, SmallArch::Cnn | SmallArch::ResidualCnn);
                if t.stages.is_some() && !convnet {
                    return refuse("stages", arch.name(), "arch `cnn` and `residual_cnn`");
                }
                if t.final_relu.is_some() && !convnet {
                    return refuse("final_relu", arch.name(), "arch `cnn` and `residual_cnn`");
                }
                let d = SmallConfig::new(arch);
                Ok(EncoderConfig::Small(SmallConfig {
                    arch,
                    dim: t.dim.unwrap_or(d.dim),
                    hidden: t.hidden.unwrap_or(d.hidden),
                    stages: t.stages.unwrap_or(d.stages),
                    zero_init_residual: t.zero_init_residual.unwrap_or(d.zero_init_residual),
                    final_relu: t.final_relu.unwrap_or(d.final_relu),
                }))
            }
        }
    }
}

impl From<EncoderConfig> for ModelTable {
    fn from(c: EncoderConfig) -> Self {
        match c {
            EncoderConfig::ResNet(c) => ModelTable {
                arch: Some(ArchName::ResNet(c.arch)),
                stem: Some(c.stem),
                width_multiplier: Some(c.width_multiplier),
                zero_init_residual: Some(c.zero_init_residual),
                ..Default::default()
            },
            EncoderConfig::Small(c) => ModelTable {
                arch: Some(ArchName::Small(c.arch)),
                dim: Some(c.dim),
                hidden: c.arch.has_hidden().then_some(c.hidden),
                stages: matches!(c.arch, SmallArch::Cnn | SmallArch::ResidualCnn)
                    .then_some(c.stages),
                zero_init_residual: (c.arch == SmallArch::ResidualCnn)
                    .then_some(c.zero_init_residual),
                // Written only when off, so that run folders written before it resume unchanged.
                final_relu: (!c.final_relu).then_some(false),
                ..Default::default()
            },
        }
    }
}

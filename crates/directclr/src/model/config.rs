//! The encoder's configuration: architecture, stem, width and initialisation.

use serde::{Deserialize, Serialize};
use tch::nn;

use super::resnet::ResNet;
use crate::{Error, Result};

/// The ResNet depth, with torchvision's block types and counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Arch {
    /// ResNet-18: basic blocks [2, 2, 2, 2]; r has 512 × width dimensions.
    #[serde(rename = "resnet18")]
    ResNet18,
    /// ResNet-34: basic blocks [3, 4, 6, 3]; r has 512 × width dimensions.
    #[serde(rename = "resnet34")]
    ResNet34,
    /// ResNet-50: bottleneck blocks [3, 4, 6, 3], expansion 4; r has 2048 × width dimensions
    /// (the paper's encoder).
    #[serde(rename = "resnet50")]
    ResNet50,
}

impl Arch {
    /// Number of blocks in `layer1` … `layer4`.
    pub fn blocks(self) -> [usize; 4] {
        match self {
            Arch::ResNet18 => [2, 2, 2, 2],
            Arch::ResNet34 | Arch::ResNet50 => [3, 4, 6, 3],
        }
    }

    /// Whether the blocks are bottlenecks (1×1, 3×3, 1×1 convs) rather than basic blocks.
    pub fn bottleneck(self) -> bool {
        matches!(self, Arch::ResNet50)
    }

    /// Output channels of a block relative to its `planes` (torchvision's `expansion`).
    pub fn expansion(self) -> i64 {
        if self.bottleneck() {
            4
        } else {
            1
        }
    }

    /// torchvision's name of the architecture (`resnet18`, …).
    pub fn name(self) -> &'static str {
        match self {
            Arch::ResNet18 => "resnet18",
            Arch::ResNet34 => "resnet34",
            Arch::ResNet50 => "resnet50",
        }
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Arch {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "resnet18" => Ok(Arch::ResNet18),
            "resnet34" => Ok(Arch::ResNet34),
            "resnet50" => Ok(Arch::ResNet50),
            _ => Err(Error::config(
                "arch",
                format!("`{s}` is not one of resnet18, resnet34, resnet50"),
            )),
        }
    }
}

/// The first layers of the encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stem {
    /// torchvision's: 7×7 conv stride 2 padding 3, BN, ReLU, 3×3 max-pool stride 2 padding 1
    /// (for 224×224 inputs; divides the resolution by 4).
    #[serde(rename = "imagenet")]
    ImageNet,
    /// The usual CIFAR variant (SimCLR's CIFAR appendix, solo-learn): 3×3 conv stride 1
    /// padding 1, BN, ReLU, no max-pool (for 32×32 inputs). Same parameter names as ImageNet's.
    Cifar,
}

impl std::fmt::Display for Stem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stem::ImageNet => "imagenet",
            Stem::Cifar => "cifar",
        })
    }
}

impl std::str::FromStr for Stem {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "imagenet" => Ok(Stem::ImageNet),
            "cifar" => Ok(Stem::Cifar),
            _ => Err(Error::config(
                "stem",
                format!("`{s}` is not one of imagenet, cifar"),
            )),
        }
    }
}

/// Configuration of the ResNet encoder (torchvision's ResNet with the classifier `fc` removed).
///
/// The defaults are the paper's encoder: ResNet-50, ImageNet stem, width 1,
/// `zero_init_residual = true`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResNetConfig {
    /// Depth and block type.
    pub arch: Arch,
    /// ImageNet or CIFAR stem.
    pub stem: Stem,
    /// Width multiplier m: the stages have 64m, 128m, 256m and 512m planes. 64·m must be a
    /// positive integer (e.g. 0.125 gives 8 base channels for quick CPU runs); 1 is torchvision.
    pub width_multiplier: f64,
    /// torchvision's `zero_init_residual`: the last BN γ of every residual branch starts at 0,
    /// so each block starts as the identity (the authors set it).
    pub zero_init_residual: bool,
}

impl Default for ResNetConfig {
    fn default() -> Self {
        ResNetConfig {
            arch: Arch::ResNet50,
            stem: Stem::ImageNet,
            width_multiplier: 1.0,
            zero_init_residual: true,
        }
    }
}

impl ResNetConfig {
    /// The number of channels of the stem and `layer1` (64 × width multiplier), checking that
    /// it is a positive integer.
    pub fn base_width(&self) -> Result<i64> {
        let m = self.width_multiplier;
        let w = 64.0 * m;
        if !m.is_finite() || m <= 0.0 || w.round() < 1.0 || (w - w.round()).abs() > 1e-9 {
            return Err(Error::config(
                "width_multiplier",
                format!("64 × {m} = {w} is not a positive whole number of channels"),
            ));
        }
        Ok(w.round() as i64)
    }

    /// The dimension of the representation r: 512·m (ResNet-18/34) or 2048·m (ResNet-50).
    pub fn feat_dim(&self) -> Result<i64> {
        Ok(8 * self.base_width()? * self.arch.expansion())
    }

    /// Checks the configuration and builds the encoder under `path` (which must not already
    /// hold its variables). Initialisation uses libtorch's global generator: seed it
    /// (`tch::manual_seed`) first for a repeatable model.
    pub fn build(&self, path: &nn::Path) -> Result<ResNet> {
        ResNet::new(path, self.clone())
    }
}

//! torchvision's ResNet-18/34/50 without its classifier: the encoder f that maps an image to
//! the representation r (the paper's Figure 1 "representation", 2048-d for ResNet-50).

use std::path::Path;

use tch::{nn, Tensor};

use super::batch_norm::BatchNorm;
use super::block::Block;
use super::config::{ResNetConfig, Stem};
use super::conv::Conv2d;
use super::state::{load_state, read_safetensors, save_safetensors, LoadReport, StateRecorder};
use crate::{Error, Result};

/// A ResNet encoder with torchvision's structure and `state_dict` names (`conv1.weight`,
/// `bn1.running_mean`, `layer1.0.conv1.weight`, `layer2.0.downsample.0.weight`, …), built with
/// the authors' options (`torchvision.models.resnet50(zero_init_residual=True)`, `fc =
/// nn.Identity()`).
///
/// Its variables live in the [`nn::VarStore`] under the path it was built with, so that
/// `VarStore::variables()` yields `<path>.conv1.weight`, …; [`ResNet::named_tensors`] gives the
/// same tensors under torchvision's bare names.
///
/// `num_batches_tracked`: kept, as an int64 scalar buffer of each BN (not trainable), counted
/// like PyTorch, so that the safetensors files written by [`ResNet::save_safetensors`] hold
/// exactly torchvision's `state_dict` keys and load into it with `strict=True`; loading a file
/// without them (e.g. written by a tool that drops them) is accepted and reported, as
/// PyTorch accepts it.
#[derive(Debug)]
pub struct ResNet {
    config: ResNetConfig,
    conv1: Conv2d,
    bn1: BatchNorm,
    layers: Vec<Vec<Block>>,
    feat_dim: i64,
    state: Vec<(String, Tensor)>,
}

impl ResNet {
    /// Builds the encoder under `path` (see [`ResNetConfig::build`]).
    pub fn new(path: &nn::Path, config: ResNetConfig) -> Result<Self> {
        let base = config.base_width()?;
        let feat_dim = config.feat_dim()?;
        let mut rec = StateRecorder::new(path);
        let (k, s, pad) = match config.stem {
            Stem::ImageNet => (7, 2, 3),
            Stem::Cifar => (3, 1, 1),
        };
        let conv1 = Conv2d::new(&path.sub("conv1"), &mut rec, 3, base, k, s, pad)?;
        let bn1 = BatchNorm::new(&path.sub("bn1"), &mut rec, base, 1.0)?;
        let bottleneck = config.arch.bottleneck();
        let expansion = config.arch.expansion();
        let mut c_in = base;
        let mut layers = Vec::with_capacity(4);
        for (i, &n) in config.arch.blocks().iter().enumerate() {
            let planes = base << i;
            let stride = if i == 0 { 1 } else { 2 };
            let lp = path.sub(format!("layer{}", i + 1));
            let mut blocks = Vec::with_capacity(n);
            for j in 0..n {
                let st = if j == 0 { stride } else { 1 };
                blocks.push(Block::new(
                    &lp.sub(j),
                    &mut rec,
                    bottleneck,
                    c_in,
                    planes,
                    st,
                    config.zero_init_residual,
                    true,
                )?);
                c_in = planes * expansion;
            }
            layers.push(blocks);
        }
        debug_assert_eq!(c_in, feat_dim);
        Ok(ResNet {
            config,
            conv1,
            bn1,
            layers,
            feat_dim,
            state: rec.finish(),
        })
    }

    /// The configuration it was built from.
    pub fn config(&self) -> &ResNetConfig {
        &self.config
    }

    /// Dimension of the representation r (2048 for ResNet-50, 512 for ResNet-18/34, times the
    /// width multiplier).
    pub fn feat_dim(&self) -> i64 {
        self.feat_dim
    }

    /// The representation r: the globally average-pooled output of `layer4`, after its last
    /// ReLU (so r ≥ 0), as torchvision's `resnet(x)` with `fc = Identity`. In training mode the
    /// BNs use batch statistics and update their running statistics; in eval mode they use the
    /// running statistics.
    ///
    /// # Shapes
    /// - `x`: `[batch, 3, H, W]`, float, normalised images (any H, W the stem can reduce; the
    ///   ImageNet stem needs at least 1 pixel after its stride-32 path, the CIFAR stem stride 8).
    /// - returns r: `[batch, feat_dim]`.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let size = x.size();
        if size.len() != 4 || size[1] != 3 {
            return Err(Error::config(
                "input",
                format!("expected images [batch, 3, H, W], got {size:?}"),
            ));
        }
        let mut h = self.bn1.forward_t(&self.conv1.forward(x)?, train)?;
        let _ = h.f_relu_()?; // in place, as torchvision
        if self.config.stem == Stem::ImageNet {
            h = h.f_max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false)?;
        }
        for layer in &self.layers {
            for block in layer {
                h = block.forward_t(&h, train)?;
            }
        }
        // [batch, feat_dim, h, w] -> [batch, feat_dim]
        Ok(h.f_adaptive_avg_pool2d([1, 1])?.f_flatten(1, -1)?)
    }

    /// Every parameter and buffer under torchvision's `state_dict` names, in its order
    /// (shallow handles on the store's tensors).
    pub fn named_tensors(&self) -> &[(String, Tensor)] {
        &self.state
    }

    /// Writes the encoder as a safetensors file with torchvision's keys: a PyTorch user loads
    /// it with `resnet.load_state_dict(safetensors.torch.load_file(f), strict=False)` (only
    /// `fc.*`, absent here, is missing).
    pub fn save_safetensors(&self, file: impl AsRef<Path>) -> Result<()> {
        save_safetensors(file, &self.state)
    }

    /// Loads a safetensors file with torchvision's keys into the encoder in place (dtype and
    /// device converted). Strict: a missing, unexpected or misshapen tensor is an
    /// [`Error::StateMismatch`], except torchvision's classifier `fc.*`, which is ignored, and
    /// `num_batches_tracked`, which may be absent; both are listed in the report.
    pub fn load_safetensors(&self, file: impl AsRef<Path>) -> Result<LoadReport> {
        let file = file.as_ref();
        let source = read_safetensors(file)?;
        load_state(
            &self.state,
            &source,
            &["fc."],
            &format!("weights from `{}`", file.display()),
        )
    }
}

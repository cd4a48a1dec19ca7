//! torchvision's residual blocks: `BasicBlock` (ResNet-18/34) and `Bottleneck` (ResNet-50,
//! "v1.5": the stride is on the 3×3 conv).

use tch::{nn, Tensor};

use super::batch_norm::BatchNorm;
use super::conv::Conv2d;
use super::state::StateRecorder;
use crate::Result;

/// (in, out, kernel, stride, padding) of one conv of a block.
type ConvSpec = (i64, i64, i64, i64, i64);

/// torchvision's `downsample` branch: `Sequential(conv1x1(stride), BatchNorm2d)`, names
/// `downsample.0.weight`, `downsample.1.*`.
#[derive(Debug)]
pub struct Downsample {
    conv: Conv2d,
    bn: BatchNorm,
}

impl Downsample {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.bn.forward_t(&self.conv.forward(x)?, train)
    }
}

/// One residual block, with torchvision's parameter names: `conv1`, `bn1`, `conv2`, `bn2`,
/// then `conv3`, `bn3` for a bottleneck, and `downsample` when the shape changes.
#[derive(Debug)]
pub struct Block {
    convs: Vec<(Conv2d, BatchNorm)>,
    downsample: Option<Downsample>,
    residual: bool,
    output_relu: bool,
}

impl Block {
    /// Builds a block taking `c_in` channels to `planes × expansion`, its first 3×3 conv (basic)
    /// or its 3×3 conv (bottleneck) with `stride`. With `zero_init_residual` the last BN γ is 0.
    /// Without `residual` the block is the branch alone (`relu(branch(x))`, no shortcut and
    /// no `downsample`): the plain network of the collapse ladder.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        p: &nn::Path,
        rec: &mut StateRecorder,
        bottleneck: bool,
        c_in: i64,
        planes: i64,
        stride: i64,
        zero_init_residual: bool,
        residual: bool,
    ) -> Result<Self> {
        let last_gamma = if zero_init_residual { 0.0 } else { 1.0 };
        let (specs, c_out): (Vec<ConvSpec>, i64) = if bottleneck {
            let c_out = planes * 4;
            (
                vec![
                    (c_in, planes, 1, 1, 0),
                    (planes, planes, 3, stride, 1),
                    (planes, c_out, 1, 1, 0),
                ],
                c_out,
            )
        } else {
            (
                vec![(c_in, planes, 3, stride, 1), (planes, planes, 3, 1, 1)],
                planes,
            )
        };
        let n = specs.len();
        let mut convs = Vec::with_capacity(n);
        for (i, &(ci, co, k, s, pad)) in specs.iter().enumerate() {
            let conv = Conv2d::new(&p.sub(format!("conv{}", i + 1)), rec, ci, co, k, s, pad)?;
            let gamma = if i + 1 == n { last_gamma } else { 1.0 };
            let bn = BatchNorm::new(&p.sub(format!("bn{}", i + 1)), rec, co, gamma)?;
            convs.push((conv, bn));
        }
        let downsample = if residual && (stride != 1 || c_in != c_out) {
            let d = p.sub("downsample");
            let conv = Conv2d::new(&d.sub("0"), rec, c_in, c_out, 1, stride, 0)?;
            let bn = BatchNorm::new(&d.sub("1"), rec, c_out, 1.0)?;
            Some(Downsample { conv, bn })
        } else {
            None
        };
        Ok(Block {
            convs,
            downsample,
            residual,
            output_relu: true,
        })
    }

    /// The same block without its output ReLU: `branch(x) + shortcut(x)` (or `branch(x)`), of
    /// either sign. Only for the last block of an encoder whose r must not be rectified (the
    /// collapse ladder's `final_relu = false`); the parameters are unchanged.
    pub(crate) fn without_output_relu(mut self) -> Self {
        self.output_relu = false;
        self
    }

    /// `relu(branch(x) + shortcut(x))`, or `relu(branch(x))` for a block built without
    /// `residual`; without the final `relu` after [`Block::without_output_relu`].
    ///
    /// # Shapes
    /// - `x`: `[batch, c_in, H, W]` → `[batch, planes·expansion, H/stride, W/stride]`.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let n = self.convs.len();
        let mut out = x.shallow_clone();
        for (i, (conv, bn)) in self.convs.iter().enumerate() {
            out = bn.forward_t(&conv.forward(&out)?, train)?;
            if i + 1 < n {
                let _ = out.f_relu_()?; // in place, as torchvision's ReLU(inplace=True)
            }
        }
        if self.residual {
            let identity = match &self.downsample {
                Some(d) => d.forward_t(x, train)?,
                None => x.shallow_clone(),
            };
            let _ = out.f_add_(&identity)?;
        }
        if self.output_relu {
            let _ = out.f_relu_()?;
        }
        Ok(out)
    }
}

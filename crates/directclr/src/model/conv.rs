//! A bias-free 2-d convolution with torchvision's ResNet initialisation.

use tch::nn::{self, Init};
use tch::Tensor;

use super::state::StateRecorder;
use crate::Result;

/// `nn.Conv2d(in, out, k, stride, padding, bias=False)`, weight `[out, in, k, k]` initialised
/// as torchvision's ResNet does: `kaiming_normal_(mode="fan_out", nonlinearity="relu")`,
/// i.e. N(0, 2 / (out·k·k)).
#[derive(Debug)]
pub struct Conv2d {
    /// The kernel. `[out, in, k, k]`
    pub weight: Tensor,
    stride: i64,
    padding: i64,
}

impl Conv2d {
    pub(crate) fn new(
        p: &nn::Path,
        rec: &mut StateRecorder,
        c_in: i64,
        c_out: i64,
        kernel: i64,
        stride: i64,
        padding: i64,
    ) -> Result<Self> {
        let stdev = (2.0 / (c_out * kernel * kernel) as f64).sqrt();
        let weight = rec.param(
            p,
            "weight",
            &[c_out, c_in, kernel, kernel],
            Init::Randn { mean: 0.0, stdev },
        )?;
        Ok(Conv2d {
            weight,
            stride,
            padding,
        })
    }

    /// # Shapes
    /// - `x`: `[batch, in, H, W]` → `[batch, out, H', W']`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.f_conv2d(
            &self.weight,
            None::<&Tensor>,
            [self.stride, self.stride],
            [self.padding, self.padding],
            [1, 1],
            1,
        )?)
    }
}

//! The paper's Table 1 (ImageNet, ResNet-50, 100 epochs, linear probe top-1 %), printed beside
//! the measured numbers.

use crate::method::Method;

/// The paper's linear-probe top-1 (%) of `method` on ImageNet.
pub fn paper_top1(method: &Method) -> f64 {
    match method {
        Method::SimclrMlp { .. } => 66.5,
        Method::SimclrLinear { .. } => 61.1,
        Method::SimclrNoProjector => 51.5,
        Method::DirectClr { .. } => 62.7,
        Method::FixedLowRank { .. } => 62.3,
        Method::TrainableDiagonal => 60.2,
    }
}

/// The paper's DirectCLR probe on the sub-vector z = r[:d0] alone (%).
pub const PAPER_DIRECTCLR_SUBVECTOR_TOP1: f64 = 47.9;

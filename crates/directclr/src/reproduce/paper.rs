//! The paper's Table 1 (ImageNet, ResNet-50, 100 epochs, linear probe top-1 %), printed beside
//! the measured numbers. The numbers live with the rows they belong to ([`Method::paper_top1`]).

use crate::method::Method;
pub use crate::method::PAPER_DIRECTCLR_SUBVECTOR_TOP1;

/// The paper's linear-probe top-1 (%) of `method` on ImageNet: [`Method::paper_top1`].
pub fn paper_top1(method: &Method) -> f64 {
    method.paper_top1()
}

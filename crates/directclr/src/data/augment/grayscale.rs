//! Grayscale conversion (torchvision's `RandomGrayscale`, 3 output channels).

use serde::{Deserialize, Serialize};

/// ITU-R 601-2 luma weights of R, G, B (PIL's `L` mode, torchvision's `rgb_to_grayscale`).
pub const GRAY_WEIGHTS: [f32; 3] = [0.299, 0.587, 0.114];

/// Luma of one pixel.
#[inline(always)]
pub fn gray(r: f32, g: f32, b: f32) -> f32 {
    GRAY_WEIGHTS[0] * r + GRAY_WEIGHTS[1] * g + GRAY_WEIGHTS[2] * b
}

/// `RandomGrayscale(p)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomGrayscale {
    /// Probability of converting.
    pub p: f64,
}

multiversion! {
/// Replaces every channel by the luma, in place.
///
/// # Shapes
/// `img`: `[3, h, w]` f32, planar.
pub fn to_grayscale(img: &mut [f32]) {
    let n = img.len() / 3;
    let (r, rest) = img.split_at_mut(n);
    let (g, b) = rest.split_at_mut(n);
    for ((r, g), b) in r.iter_mut().zip(g.iter_mut()).zip(b.iter_mut()) {
        let l = gray(*r, *g, *b);
        *r = l;
        *g = l;
        *b = l;
    }
}
}

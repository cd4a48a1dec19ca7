//! Solarisation (torchvision's `RandomSolarize`, PIL's `ImageOps.solarize`).

use serde::{Deserialize, Serialize};

/// `RandomSolarize(threshold, p)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomSolarize {
    /// Values at or above it are inverted; in `[0, 1]` (PIL's 128 is 128/255).
    #[serde(serialize_with = "super::short_f32::serialize")]
    pub threshold: f32,
    /// Probability of applying.
    pub p: f64,
}

multiversion! {
/// `x ≥ t ? 1 − x : x`, in place.
///
/// # Shapes
/// `img`: any f32 values in `[0, 1]`.
pub fn solarize(img: &mut [f32], threshold: f32) {
    for v in img.iter_mut() {
        *v = if *v >= threshold { 1.0 - *v } else { *v };
    }
}
}

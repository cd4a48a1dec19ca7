//! Per-channel normalisation (torchvision's `Normalize`).

use serde::{Deserialize, Serialize};

use crate::data::DataError;

/// `(x − mean[c]) / std[c]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Normalize {
    /// Per-channel mean (RGB).
    #[serde(serialize_with = "super::short_f32::serialize_array")]
    pub mean: [f32; 3],
    /// Per-channel standard deviation (RGB).
    #[serde(serialize_with = "super::short_f32::serialize_array")]
    pub std: [f32; 3],
}

impl Normalize {
    /// ImageNet statistics, mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225).
    pub const IMAGENET: Normalize = Normalize {
        mean: [0.485, 0.456, 0.406],
        std: [0.229, 0.224, 0.225],
    };

    /// Checks that every std is positive and finite.
    pub fn check(&self, field: &str) -> Result<(), DataError> {
        if self.std.iter().any(|&s| !(s > 0.0 && s.is_finite()))
            || self.mean.iter().any(|m| !m.is_finite())
        {
            return Err(DataError::param(
                format!("{field}.std"),
                "every std must be positive and finite",
            ));
        }
        Ok(())
    }

    /// Normalises in place.
    ///
    /// # Shapes
    /// `img`: `[3, h, w]` f32, planar.
    pub fn apply(&self, img: &mut [f32]) {
        normalize_planes(img, self.mean, self.std);
    }

    /// Normalises a batch of u8 images (e.g. on the GPU after a u8 loader).
    ///
    /// # Shapes
    /// `x`: `[b, 3, h, w]` u8 (or float in `0..=255`) → `[b, 3, h, w]` f32.
    pub fn apply_tensor(&self, x: &tch::Tensor) -> tch::Tensor {
        let dev = x.device();
        let mean = tch::Tensor::from_slice(&self.mean)
            .to_device(dev)
            .view([1, 3, 1, 1]);
        let std = tch::Tensor::from_slice(&self.std)
            .to_device(dev)
            .view([1, 3, 1, 1]);
        (x.to_kind(tch::Kind::Float) / 255.0 - mean) / std
    }
}

multiversion! {
    fn normalize_planes(img: &mut [f32], mean: [f32; 3], std: [f32; 3]) {
        let n = img.len() / 3;
        for (c, plane) in img.chunks_exact_mut(n.max(1)).enumerate().take(3) {
            let (m, inv) = (mean[c], 1.0 / std[c]);
            for v in plane.iter_mut() {
                *v = (*v - m) * inv;
            }
        }
    }
}

//! Evaluation transform: `Resize(resize)` (shorter side) then `CenterCrop(crop)`, computed in
//! one resampling pass restricted to the crop window.

use serde::{Deserialize, Serialize};

use super::normalize::Normalize;
use super::resized_crop::{resample, AxisCoeffs, AxisMap, Interpolation};
use super::Scratch;
use crate::data::dataset::ImageRef;
use crate::data::DataError;

/// `Resize(resize)` + `CenterCrop(crop)` + `Normalize` (ImageNet: 256, 224, bilinear).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalTransform {
    /// Target of the shorter side.
    pub resize: usize,
    /// Side of the square centre crop (≤ `resize`).
    pub crop: usize,
    /// Resampling filter.
    pub interpolation: Interpolation,
    /// Normalisation (applied when the loader outputs f32).
    pub normalize: Normalize,
}

impl Default for EvalTransform {
    fn default() -> Self {
        Self {
            resize: 256,
            crop: 224,
            interpolation: Interpolation::Bilinear,
            normalize: Normalize::IMAGENET,
        }
    }
}

impl EvalTransform {
    /// Checks the parameters.
    pub fn check(&self) -> Result<(), DataError> {
        if self.crop == 0 || self.resize < self.crop {
            return Err(DataError::param(
                "eval.crop",
                format!(
                    "crop {} must be positive and at most resize {}",
                    self.crop, self.resize
                ),
            ));
        }
        self.normalize.check("eval.normalize")
    }

    /// torchvision's resized size `(h, w)` for a `height × width` image: the shorter side
    /// becomes `resize`, the longer `int(resize · long / short)`.
    pub fn resized_size(&self, height: usize, width: usize) -> (usize, usize) {
        let s = self.resize;
        if width <= height {
            (s * height / width.max(1), s)
        } else {
            (s, s * width / height.max(1))
        }
    }

    /// Writes the transformed image (values in `[0, 1]`, not normalised).
    ///
    /// # Shapes
    /// `out`: `[3, crop, crop]` f32.
    pub fn apply(&self, src: ImageRef<'_>, scratch: &mut Scratch, out: &mut [f32]) {
        let (nh, nw) = self.resized_size(src.height, src.width);
        let top = ((nh - self.crop) as f64 / 2.0).round_ties_even() as usize;
        let left = ((nw - self.crop) as f64 / 2.0).round_ties_even() as usize;
        let map = |in_size: usize, out_full: usize, offset: usize| AxisMap {
            in_size,
            in0: 0.0,
            in1: in_size as f64,
            out_full,
            offset,
            out_len: self.crop,
        };
        let xs = AxisCoeffs::new(map(src.width, nw, left), self.interpolation, 1.0, false);
        let ys = AxisCoeffs::new(
            map(src.height, nh, top),
            self.interpolation,
            1.0 / 255.0,
            false,
        );
        resample(src, &xs, &ys, scratch, out);
    }
}

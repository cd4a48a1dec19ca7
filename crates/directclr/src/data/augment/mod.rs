//! Augmentations after torchvision's definitions, on planar RGB f32 images in `[0, 1]`
//! (`[3, h, w]`), and the authors' two-view recipe. One transform per file.

pub mod blur;
pub mod color_jitter;
pub mod eval;
pub mod flip;
pub mod grayscale;
pub mod normalize;
pub mod recipe;
pub mod resized_crop;
pub mod solarize;

pub use blur::{GaussianBlur, KernelSize};
pub use color_jitter::{ColorJitter, ColorOp};
pub use eval::EvalTransform;
pub use grayscale::RandomGrayscale;
pub use normalize::Normalize;
pub use recipe::{Recipe, RecipeConfig, Transform, ViewConfig};
pub use resized_crop::{CropBox, Interpolation, RandomResizedCrop};
pub use solarize::RandomSolarize;

use super::DataError;

/// Reusable working memory of one worker (no allocation per image once warm).
#[derive(Debug, Default)]
pub struct Scratch {
    /// Intermediate rows of the resampling and the blur.
    pub a: Vec<f32>,
}

pub(crate) fn check_probability(p: f64, field: &str) -> Result<(), DataError> {
    if (0.0..=1.0).contains(&p) {
        Ok(())
    } else {
        Err(DataError::param(
            field,
            format!("probability {p} outside [0, 1]"),
        ))
    }
}

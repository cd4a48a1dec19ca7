//! Augmentations after torchvision's definitions, on planar RGB f32 images in `[0, 1]`
//! (`[3, h, w]`), and the authors' two-view recipe. One transform per file.

/// Defines `fn $name` that runs its body compiled for AVX2 + FMA when the CPU has them
/// (checked once, cached by std) and for the baseline target otherwise. Only element-wise
/// vectorisation changes: sums keep their order and fused multiply-adds are written as
/// `f32::mul_add` (one rounding on every path, in hardware or in libm), so both paths give the
/// same bits.
macro_rules! multiversion {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($a:ident : $t:ty),* $(,)?) $body:block) => {
        $(#[$m])* $vis fn $name($($a: $t),*) {
            #[inline(always)]
            fn imp($($a: $t),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($a: $t),*) {
                    imp($($a),*)
                }
                if !$crate::data::augment::portable_forced()
                    && std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the CPU supports AVX2 and FMA, checked just above.
                    return unsafe { avx2($($a),*) };
                }
            }
            imp($($a),*)
        }
    };
}

pub mod blur;
pub mod color_jitter;
pub mod eval;
pub mod flip;
pub mod grayscale;
pub mod normalize;
pub mod recipe;
pub mod resized_crop;
mod rows;
pub mod short_f32;
pub mod solarize;

pub use blur::{GaussianBlur, KernelSize};
pub use color_jitter::{ColorJitter, ColorOp};
pub use eval::EvalTransform;
pub use grayscale::RandomGrayscale;
pub use normalize::Normalize;
pub use recipe::{Recipe, RecipeConfig, Transform, ViewConfig, ViewDraw};
pub use resized_crop::{CropBox, Interpolation, RandomResizedCrop};
pub use solarize::RandomSolarize;

use super::DataError;

static FORCE_PORTABLE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Makes every kernel take its baseline (non-AVX2) path, process-wide; for the test that both
/// paths give the same bits, and for checking results on a CPU without AVX2.
#[doc(hidden)]
pub fn force_portable_kernels(on: bool) {
    FORCE_PORTABLE.store(on, std::sync::atomic::Ordering::Relaxed);
}

#[doc(hidden)]
#[inline(always)]
pub fn portable_forced() -> bool {
    FORCE_PORTABLE.load(std::sync::atomic::Ordering::Relaxed)
}

/// Reusable working memory of one worker (no allocation per image once warm).
#[derive(Debug, Default)]
pub struct Scratch {
    /// Intermediate values of the resampling and the blur.
    pub a: Vec<f32>,
    /// A second intermediate buffer.
    pub b: Vec<f32>,
    /// Row offsets of the current taps.
    pub offsets: Vec<usize>,
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

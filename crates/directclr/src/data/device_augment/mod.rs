//! The authors' two-view augmentations as batched tensor operations on the training device
//! (GPU), for when the CPU cannot decode and augment fast enough.
//!
//! The loader then only decodes: each sample once, its shorter side resized to `source` pixels
//! and centre-cropped to a square (u8, the [`DeviceAugment::source_transform`]); the random
//! decisions of every view are drawn on the host from the same per-sample stream
//! (`loader::sample_rng(seed, epoch, index)`) and in the same order as the CPU path
//! ([`ViewConfig::draw`]), so the two paths apply the same crops, flips, colour factors, blur σ
//! and coin flips. They differ in two ways, both stated in `benches/gpu/RESULTS.md`:
//! crops are drawn inside the centred square of the decoded image (the CPU path draws them in
//! the whole image; identical for square datasets such as CIFAR, STL-10, Fashion-MNIST), and
//! the crop is resampled by `grid_sample` (bilinear or bicubic without PIL's antialiasing).
//! Colour jitter, grayscale, blur and solarisation compute what the CPU kernels compute
//! (tests: `tests/data_device_augment.rs`).

mod blur;
mod color;
mod crop;

pub use blur::blur;
pub use color::{adjust_hue, color_jitter, gray, grayscale, solarize};
pub use crop::{crop_flip, theta};

use tch::{Kind, Tensor};

use super::augment::{EvalTransform, Interpolation, Recipe, Transform, ViewConfig, ViewDraw};
use super::loader::sample_rng;
use super::DataError;
use crate::Result;

/// The recipe's views, drawn on the host and applied to a batch on its device.
#[derive(Debug, Clone)]
pub struct DeviceAugment {
    recipe: Recipe,
    source: usize,
    seed: u64,
}

impl DeviceAugment {
    /// Views of `recipe` from `source × source` decoded images; `seed` is the run's seed.
    pub fn new(recipe: Recipe, source: usize, seed: u64) -> std::result::Result<Self, DataError> {
        if source == 0 {
            return Err(DataError::param("augment.source_size", "must be positive"));
        }
        Ok(DeviceAugment {
            recipe,
            source,
            seed,
        })
    }

    /// The loader's transform: shorter side resized to `source` (PIL's antialiased bilinear),
    /// centre crop `source × source`; an image already that size passes unchanged.
    pub fn source_transform(&self) -> Transform {
        Transform::Eval(EvalTransform {
            resize: self.source,
            crop: self.source,
            interpolation: Interpolation::Bilinear,
            normalize: self.recipe.views()[0].normalize,
        })
    }

    /// The views.
    pub fn views(&self) -> &[ViewConfig] {
        self.recipe.views()
    }

    /// The random decisions of every view for the samples `indices` of `epoch`, `[view][sample]`.
    pub fn draws(&self, epoch: u64, indices: &[usize]) -> Vec<Vec<ViewDraw>> {
        let views = self.recipe.views();
        let mut out = vec![Vec::with_capacity(indices.len()); views.len()];
        for &i in indices {
            let mut rng = sample_rng(self.seed, epoch, i);
            for (v, view) in views.iter().enumerate() {
                out[v].push(view.draw(&mut rng, self.source, self.source));
            }
        }
        out
    }

    /// Applies view `v` with `draws` to a batch, values in `[0, 1]` (not normalised).
    ///
    /// # Shapes
    /// `src`: `[N, 3, S, S]` u8 (or f32 in `[0, 1]`); returns `[N, 3, size, size]` f32.
    pub fn apply_view(&self, v: usize, src: &Tensor, draws: &[ViewDraw]) -> Result<Tensor> {
        let view = &self.recipe.views()[v];
        let x = if src.kind() == Kind::Uint8 {
            src.f_to_kind(Kind::Float)?.f_div_scalar(255.0)?
        } else {
            src.shallow_clone()
        };
        let size = view.crop.size;
        let x = crop_flip(&x, draws, size, view.crop.interpolation)?;
        let x = color_jitter(x, draws)?;
        let x = grayscale(x, draws)?;
        let x = blur(x, draws, view.blur.kernel.resolve(size))?;
        solarize(x, draws, view.solarize.threshold)
    }

    /// Every view of a batch of decoded samples `indices` of `epoch`, normalised.
    ///
    /// # Shapes
    /// `src`: `[N, 3, S, S]` u8 on the device; returns one `[N, 3, size, size]` f32 per view.
    pub fn apply(&self, src: &Tensor, epoch: u64, indices: &[usize]) -> Result<Vec<Tensor>> {
        let draws = self.draws(epoch, indices);
        let device = src.device();
        let mut out = Vec::with_capacity(draws.len());
        for (v, d) in draws.iter().enumerate() {
            let x = self.apply_view(v, src, d)?;
            let nm = self.recipe.views()[v].normalize;
            let mean = Tensor::f_from_slice(&nm.mean)?
                .f_to_device_(device, Kind::Float, true, false)?
                .f_view([1, 3, 1, 1])?;
            let std = Tensor::f_from_slice(&nm.std)?
                .f_to_device_(device, Kind::Float, true, false)?
                .f_view([1, 3, 1, 1])?;
            out.push(x.f_sub(&mean)?.f_div(&std)?);
        }
        Ok(out)
    }
}

//! The authors' asymmetric two-view recipe (BYOL-style) and the [`Transform`] the loader runs.
//!
//! Per view, in torchvision's order: `RandomResizedCrop` → `RandomHorizontalFlip` →
//! `RandomApply(ColorJitter, p)` → `RandomGrayscale` → Gaussian blur (p) → solarize (p) →
//! `Normalize`. All arithmetic is in f32 on `[0, 1]` values, as torchvision's tensor functions
//! compute (PIL rounds to u8 after each step; the difference is below one grey level).

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::blur::{blur, kernel1d, GaussianBlur, KernelSize};
use super::color_jitter::{self, ColorJitter, ColorOp};
use super::eval::EvalTransform;
use super::grayscale::{to_grayscale, RandomGrayscale};
use super::normalize::Normalize;
use super::resized_crop::{resample, uniform, CropBox, RandomResizedCrop};
use super::solarize::{solarize, RandomSolarize};
use super::{check_probability, Scratch};
use crate::data::dataset::ImageRef;
use crate::data::DataError;

/// The transforms of one view, each with its own probability, in the order they run: crop →
/// flip → colour jitter → grayscale → blur → solarize → normalise.
///
/// `C` is the crop: the data pipeline's [`RandomResizedCrop`] (with its side), or the run
/// configuration's crop without a side (`train::ViewAugment`, whose side is
/// `data.image_size`); [`ViewConfig::with_crop`] turns one into the other.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ViewConfig<C = RandomResizedCrop> {
    /// Random resized crop.
    pub crop: C,
    /// Probability of a horizontal flip.
    pub flip_p: f64,
    /// Colour jitter and its probability.
    pub color_jitter: ColorJitter,
    /// Random grayscale.
    pub grayscale: RandomGrayscale,
    /// Gaussian blur and its probability.
    pub blur: GaussianBlur,
    /// Solarisation and its probability.
    pub solarize: RandomSolarize,
    /// Normalisation (applied when the loader outputs f32).
    pub normalize: Normalize,
}

impl<C> ViewConfig<C> {
    /// The same view with its crop mapped by `f` (every other transform unchanged).
    pub fn with_crop<D>(self, f: impl FnOnce(C) -> D) -> ViewConfig<D> {
        ViewConfig {
            crop: f(self.crop),
            flip_p: self.flip_p,
            color_jitter: self.color_jitter,
            grayscale: self.grayscale,
            blur: self.blur,
            solarize: self.solarize,
            normalize: self.normalize,
        }
    }
}

impl ViewConfig {
    /// The authors' view with the given blur and solarisation probabilities.
    pub fn byol(blur_p: f64, solarize_p: f64) -> Self {
        Self {
            crop: RandomResizedCrop::default(),
            flip_p: 0.5,
            color_jitter: ColorJitter::default(),
            grayscale: RandomGrayscale { p: 0.2 },
            blur: GaussianBlur {
                kernel: KernelSize::Fraction { fraction: 0.1 },
                sigma: (0.1, 2.0),
                p: blur_p,
            },
            solarize: RandomSolarize {
                threshold: 128.0 / 255.0,
                p: solarize_p,
            },
            normalize: Normalize::IMAGENET,
        }
    }

    /// The linear probe's training view (paper protocol): random resized crop and flip only.
    pub fn probe_train(size: usize) -> Self {
        let mut v = Self::byol(0.0, 0.0);
        v.crop.size = size;
        v.color_jitter.p = 0.0;
        v.grayscale.p = 0.0;
        v
    }

    /// Checks every parameter; `field` prefixes the names in errors.
    pub fn check(&self, field: &str) -> Result<(), DataError> {
        self.crop.check(&format!("{field}.crop"))?;
        check_probability(self.flip_p, &format!("{field}.flip_p"))?;
        self.color_jitter.check(&format!("{field}.color_jitter"))?;
        check_probability(self.grayscale.p, &format!("{field}.grayscale.p"))?;
        self.blur.check(&format!("{field}.blur"))?;
        if !(0.0..=1.0).contains(&self.solarize.threshold) {
            return Err(DataError::param(
                format!("{field}.solarize.threshold"),
                "must be in [0, 1]",
            ));
        }
        check_probability(self.solarize.p, &format!("{field}.solarize.p"))?;
        self.normalize.check(&format!("{field}.normalize"))
    }

    /// Draws this view's random decisions for a `height × width` source, in the order
    /// [`ViewConfig::apply`] consumes the stream (crop, flip, colour jitter, grayscale, blur
    /// with its σ, solarisation): the batched device augmentation draws the same decisions
    /// from the same per-sample stream.
    pub fn draw<R: Rng + ?Sized>(&self, rng: &mut R, height: usize, width: usize) -> ViewDraw {
        let crop = self.crop.sample(rng, height, width);
        let flip = rng.gen::<f64>() < self.flip_p;
        let color = self.color_jitter.sample(rng);
        let grayscale = rng.gen::<f64>() < self.grayscale.p;
        let blur_sigma = (rng.gen::<f64>() < self.blur.p)
            .then(|| uniform(rng, self.blur.sigma.0, self.blur.sigma.1) as f32);
        let solarize = rng.gen::<f64>() < self.solarize.p;
        ViewDraw {
            crop,
            flip,
            color,
            grayscale,
            blur_sigma,
            solarize,
        }
    }

    /// Draws this view's augmentation of `src` and writes it (values in `[0, 1]`).
    ///
    /// # Shapes
    /// `src`: `[c, h, w]` or `[h, w, c]` u8; `out`: `[3, size, size]` f32.
    pub fn apply<R: Rng + ?Sized>(
        &self,
        src: ImageRef<'_>,
        rng: &mut R,
        scratch: &mut Scratch,
        out: &mut [f32],
    ) {
        let size = self.crop.size;
        let d = self.draw(rng, src.height, src.width);
        let (xs, ys) = self.crop.coeffs(src.height, src.width, d.crop, d.flip);
        resample(src, &xs, &ys, scratch, out);
        for op in d.color {
            color_jitter::apply(op, out);
        }
        if d.grayscale {
            to_grayscale(out);
        }
        if let Some(sigma) = d.blur_sigma {
            let k = kernel1d(self.blur.kernel.resolve(size), sigma);
            blur(out, size, size, &k, scratch);
        }
        if d.solarize {
            solarize(out, self.solarize.threshold);
        }
    }
}

/// The random decisions of one view of one sample (see [`ViewConfig::draw`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ViewDraw {
    /// The crop box in source pixels.
    pub crop: CropBox,
    /// Horizontal flip.
    pub flip: bool,
    /// Colour operations in the order they apply (empty: no jitter).
    pub color: Vec<ColorOp>,
    /// Grayscale conversion.
    pub grayscale: bool,
    /// Blur σ, if blurred.
    pub blur_sigma: Option<f32>,
    /// Solarisation.
    pub solarize: bool,
}

/// The multi-view recipe as configured (serde, with the authors' values as defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecipeConfig {
    /// One entry per view (the authors use two).
    pub views: Vec<ViewConfig>,
}

impl Default for RecipeConfig {
    /// The authors' ImageNet recipe: blur p 1.0 / 0.1, solarize p 0.0 / 0.2, 224 px.
    fn default() -> Self {
        Self {
            views: vec![ViewConfig::byol(1.0, 0.0), ViewConfig::byol(0.1, 0.2)],
        }
    }
}

impl RecipeConfig {
    /// The authors' recipe with crops of `size` px (e.g. 32 for CIFAR); the blur kernel stays
    /// 10 % of the side.
    pub fn with_size(size: usize) -> Self {
        let mut c = Self::default();
        for v in &mut c.views {
            v.crop.size = size;
        }
        c
    }

    /// Validates into a [`Recipe`].
    pub fn check(self) -> Result<Recipe, DataError> {
        if self.views.is_empty() {
            return Err(DataError::param("views", "at least one view is needed"));
        }
        for (i, v) in self.views.iter().enumerate() {
            v.check(&format!("views[{i}]"))?;
        }
        Ok(Recipe { views: self.views })
    }
}

/// A validated recipe.
#[derive(Debug, Clone, PartialEq)]
pub struct Recipe {
    views: Vec<ViewConfig>,
}

impl Recipe {
    /// The views.
    pub fn views(&self) -> &[ViewConfig] {
        &self.views
    }
}

/// What the loader does to each sample.
#[derive(Debug, Clone, PartialEq)]
pub enum Transform {
    /// Random views of a recipe (pretraining, or linear-probe training with one view).
    Views(Recipe),
    /// The deterministic evaluation transform (one view).
    Eval(EvalTransform),
}

impl Transform {
    /// Number of views per sample.
    pub fn num_views(&self) -> usize {
        match self {
            Transform::Views(r) => r.views.len(),
            Transform::Eval(_) => 1,
        }
    }

    /// Square side of view `v`.
    pub fn side(&self, v: usize) -> usize {
        match self {
            Transform::Views(r) => r.views[v].crop.size,
            Transform::Eval(e) => e.crop,
        }
    }

    /// Normalisation of view `v`.
    pub fn normalize(&self, v: usize) -> Normalize {
        match self {
            Transform::Views(r) => r.views[v].normalize,
            Transform::Eval(e) => e.normalize,
        }
    }

    /// Writes view `v` of `src` (values in `[0, 1]`), drawing from `rng`.
    ///
    /// # Shapes
    /// `out`: `[3, side, side]` f32.
    pub fn apply_view<R: Rng + ?Sized>(
        &self,
        v: usize,
        src: ImageRef<'_>,
        rng: &mut R,
        scratch: &mut Scratch,
        out: &mut [f32],
    ) {
        match self {
            Transform::Views(r) => r.views[v].apply(src, rng, scratch, out),
            Transform::Eval(e) => e.apply(src, scratch, out),
        }
    }
}

//! Colour jitter (torchvision's `ColorJitter`): brightness, contrast, saturation and hue factors
//! applied in a random order, on planar RGB f32 images in `[0, 1]`.
//!
//! Definitions (torchvision's tensor functions, grayscale weights 0.299/0.587/0.114):
//! brightness `x·f`; contrast `f·x + (1−f)·mean(gray(x))`; saturation `f·x + (1−f)·gray(x)`;
//! each clamped to `[0, 1]`; hue: RGB → HSV, `h ← (h + f) mod 1`, HSV → RGB.

use rand::seq::SliceRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::grayscale::{gray, GRAY_WEIGHTS};
use super::resized_crop::uniform;
use crate::data::DataError;

/// `ColorJitter(brightness, contrast, saturation, hue)` applied with probability `p`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColorJitter {
    /// Brightness factor drawn from `[max(0, 1 − b), 1 + b]` (0 disables).
    pub brightness: f64,
    /// Contrast factor drawn from `[max(0, 1 − c), 1 + c]` (0 disables).
    pub contrast: f64,
    /// Saturation factor drawn from `[max(0, 1 − s), 1 + s]` (0 disables).
    pub saturation: f64,
    /// Hue shift drawn from `[−h, h]`, h ≤ 0.5 (0 disables).
    pub hue: f64,
    /// Probability of applying the jitter at all (`RandomApply`).
    pub p: f64,
}

impl Default for ColorJitter {
    fn default() -> Self {
        Self {
            brightness: 0.4,
            contrast: 0.4,
            saturation: 0.2,
            hue: 0.1,
            p: 0.8,
        }
    }
}

/// One colour operation with its drawn factor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ColorOp {
    /// Multiply by the factor.
    Brightness(f32),
    /// Blend with the mean gray level.
    Contrast(f32),
    /// Blend with the per-pixel gray level.
    Saturation(f32),
    /// Rotate the hue by the shift (in turns).
    Hue(f32),
}

impl ColorJitter {
    /// Checks the parameters; `field` prefixes the names in errors.
    pub fn check(&self, field: &str) -> Result<(), DataError> {
        for (name, v) in [
            ("brightness", self.brightness),
            ("contrast", self.contrast),
            ("saturation", self.saturation),
        ] {
            if !(v >= 0.0 && v.is_finite()) {
                return Err(DataError::param(
                    format!("{field}.{name}"),
                    format!("{v} must be ≥ 0"),
                ));
            }
        }
        if !(0.0..=0.5).contains(&self.hue) {
            return Err(DataError::param(
                format!("{field}.hue"),
                format!("{} must be in [0, 0.5]", self.hue),
            ));
        }
        super::check_probability(self.p, &format!("{field}.p"))
    }

    /// Draws the operations in torchvision's way: a random permutation of the four, each factor
    /// drawn uniformly; disabled ones are left out. Empty when the jitter is not applied.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> Vec<ColorOp> {
        if rng.gen::<f64>() >= self.p {
            return Vec::new();
        }
        let mut order = [0usize, 1, 2, 3];
        order.shuffle(rng);
        let factor = |rng: &mut R, v: f64| {
            (v > 0.0).then(|| uniform(rng, (1.0 - v).max(0.0), 1.0 + v) as f32)
        };
        let b = factor(rng, self.brightness);
        let c = factor(rng, self.contrast);
        let s = factor(rng, self.saturation);
        let h = (self.hue > 0.0).then(|| uniform(rng, -self.hue, self.hue) as f32);
        order
            .iter()
            .filter_map(|&i| match i {
                0 => b.map(ColorOp::Brightness),
                1 => c.map(ColorOp::Contrast),
                2 => s.map(ColorOp::Saturation),
                _ => h.map(ColorOp::Hue),
            })
            .collect()
    }
}

/// Applies one operation in place.
///
/// # Shapes
/// `img`: `[3, h, w]` f32 in `[0, 1]`, planar.
pub fn apply(op: ColorOp, img: &mut [f32]) {
    match op {
        ColorOp::Brightness(f) => adjust_brightness(img, f),
        ColorOp::Contrast(f) => adjust_contrast(img, f),
        ColorOp::Saturation(f) => adjust_saturation(img, f),
        ColorOp::Hue(f) => adjust_hue(img, f),
    }
}

multiversion! {
/// `clamp(x·f, 0, 1)`.
pub fn adjust_brightness(img: &mut [f32], f: f32) {
    for v in img.iter_mut() {
        *v = (*v * f).clamp(0.0, 1.0);
    }
}
}

multiversion! {
/// `clamp(f·x + (1 − f)·m, 0, 1)` with m the mean gray level of the image.
pub fn adjust_contrast(img: &mut [f32], f: f32) {
    let n = img.len() / 3;
    let (r, rest) = img.split_at(n);
    let (g, b) = rest.split_at(n);
    let [wr, wg, wb] = GRAY_WEIGHTS;
    // Sums in 16 f32 lanes over blocks of 1024 pixels, each block's lanes added in f64: a fixed
    // order (so the same bits on every path) that vectorises and does not drift on large images.
    let mut total = 0.0f64;
    for ((rc, gc), bc) in r.chunks(1024).zip(g.chunks(1024)).zip(b.chunks(1024)) {
        let mut lanes = [0.0f32; 16];
        let full = rc.len() / 16 * 16;
        let blocks = rc[..full].chunks_exact(16).zip(gc[..full].chunks_exact(16)).zip(bc[..full].chunks_exact(16));
        for ((r16, g16), b16) in blocks {
            let r16: &[f32; 16] = r16.try_into().expect("16 values");
            let g16: &[f32; 16] = g16.try_into().expect("16 values");
            let b16: &[f32; 16] = b16.try_into().expect("16 values");
            for j in 0..16 {
                lanes[j] += wr * r16[j] + wg * g16[j] + wb * b16[j];
            }
        }
        for i in full..rc.len() {
            lanes[i % 16] += wr * rc[i] + wg * gc[i] + wb * bc[i];
        }
        total += lanes.iter().map(|&v| f64::from(v)).sum::<f64>();
    }
    let m = (total / n.max(1) as f64) as f32;
    let off = (1.0 - f) * m;
    for v in img.iter_mut() {
        *v = (f * *v + off).clamp(0.0, 1.0);
    }
}
}

multiversion! {
/// `clamp(f·x + (1 − f)·gray(x), 0, 1)` per pixel.
pub fn adjust_saturation(img: &mut [f32], f: f32) {
    let n = img.len() / 3;
    let (r, rest) = img.split_at_mut(n);
    let (g, b) = rest.split_at_mut(n);
    let k = 1.0 - f;
    for ((r, g), b) in r.iter_mut().zip(g.iter_mut()).zip(b.iter_mut()) {
        let l = k * gray(*r, *g, *b);
        *r = (f * *r + l).clamp(0.0, 1.0);
        *g = (f * *g + l).clamp(0.0, 1.0);
        *b = (f * *b + l).clamp(0.0, 1.0);
    }
}
}

/// Hue of an RGB pixel in turns `[0, 1)`, torchvision's `_rgb2hsv` (0 for grays), written
/// without branches so that it vectorises.
#[inline(always)]
pub fn hue_of(r: f32, g: f32, b: f32) -> f32 {
    let maxc = fmax(fmax(r, g), b);
    let minc = fmin(fmin(r, g), b);
    let cr = maxc - minc;
    let inv = 1.0 / if cr == 0.0 { 1.0 } else { cr };
    let rc = (maxc - r) * inv;
    let gc = (maxc - g) * inv;
    let bc = (maxc - b) * inv;
    let hr = bc - gc;
    let hg = 2.0 + rc - bc;
    let hb = 4.0 + gc - rc;
    let h = if maxc == r {
        hr
    } else if maxc == g {
        hg
    } else {
        hb
    };
    let h = h * (1.0 / 6.0) + 1.0;
    h - h.floor()
}

/// `max` for values that are never NaN (one instruction, unlike `f32::max`).
#[inline(always)]
fn fmax(a: f32, b: f32) -> f32 {
    if a > b {
        a
    } else {
        b
    }
}

/// `min` for values that are never NaN.
#[inline(always)]
fn fmin(a: f32, b: f32) -> f32 {
    if a < b {
        a
    } else {
        b
    }
}

multiversion! {
/// Rotates the hue by `shift` turns keeping HSV value and saturation; the HSV → RGB step is
/// the closed form `v − v·s·clamp(min(k, 4 − k), 0, 1)`, `k = (n + 6h) mod 6`, n = 5, 3, 1,
/// equal to torchvision's `_hsv2rgb` sector table.
pub fn adjust_hue(img: &mut [f32], shift: f32) {
    let n = img.len() / 3;
    let (r, rest) = img.split_at_mut(n);
    let (g, b) = rest.split_at_mut(n);
    for ((r, g), b) in r.iter_mut().zip(g.iter_mut()).zip(b.iter_mut()) {
        let (vr, vg, vb) = (*r, *g, *b);
        let v = fmax(fmax(vr, vg), vb);
        let c = v - fmin(fmin(vr, vg), vb);
        let h = hue_of(vr, vg, vb) + shift;
        let h6 = (h - h.floor()) * 6.0;
        let chan = |nn: f32| {
            let k = nn + h6;
            let k = if k >= 6.0 { k - 6.0 } else { k };
            v - c * fmax(fmin(fmin(k, 4.0 - k), 1.0), 0.0)
        };
        *r = chan(5.0);
        *g = chan(3.0);
        *b = chan(1.0);
    }
}
}

/// torchvision's `_rgb2hsv` / `_hsv2rgb` for one pixel, written as in torchvision (sector
/// table); the slow reference the tests compare [`adjust_hue`] with.
pub fn hsv_round_trip_reference(rgb: [f32; 3], shift: f32) -> [f32; 3] {
    let [r, g, b] = rgb;
    let maxc = r.max(g).max(b);
    let minc = r.min(g).min(b);
    let eqc = maxc == minc;
    let cr = maxc - minc;
    let s = cr / if eqc { 1.0 } else { maxc };
    let hh = hue_of(r, g, b) + shift;
    let h = hh - hh.floor();
    let v = maxc;
    let i = (h * 6.0).floor();
    let f = h * 6.0 - i;
    let i = (i as i64).rem_euclid(6);
    let p = (v * (1.0 - s)).clamp(0.0, 1.0);
    let q = (v * (1.0 - s * f)).clamp(0.0, 1.0);
    let t = (v * (1.0 - s * (1.0 - f))).clamp(0.0, 1.0);
    match i {
        0 => [v, t, p],
        1 => [q, v, p],
        2 => [p, v, t],
        3 => [p, q, v],
        4 => [t, p, v],
        _ => [v, p, q],
    }
}

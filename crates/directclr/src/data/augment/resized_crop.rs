//! Random resized crop (torchvision's `RandomResizedCrop`) and the separable antialiased
//! resampling (PIL's `resize` with a box, bicubic a = −0.5 or bilinear) it uses.

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::rows::weighted_rows;
use super::Scratch;
use crate::data::dataset::{ImageRef, Layout};
use crate::data::DataError;

/// Resampling filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Interpolation {
    /// Triangle filter, support 1 (PIL `BILINEAR`).
    Bilinear,
    /// Keys cubic with a = −0.5, support 2 (PIL `BICUBIC`).
    Bicubic,
}

impl Interpolation {
    fn support(self) -> f64 {
        match self {
            Interpolation::Bilinear => 1.0,
            Interpolation::Bicubic => 2.0,
        }
    }

    /// The filter's value at `x` (PIL's definitions).
    pub fn weight(self, x: f64) -> f64 {
        let x = x.abs();
        match self {
            Interpolation::Bilinear => (1.0 - x).max(0.0),
            Interpolation::Bicubic => {
                const A: f64 = -0.5;
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
        }
    }
}

/// A crop box in source pixels: rows `top..top + height`, columns `left..left + width`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CropBox {
    /// First row.
    pub top: usize,
    /// First column.
    pub left: usize,
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
}

/// Resampling weights of one axis: for output `i`, taps `start[i] .. start[i] + len[i]` with
/// weights `weights[i * ksize ..][.. len[i]]`.
#[derive(Debug, Clone, Default)]
pub struct AxisCoeffs {
    /// First source index of each output.
    pub start: Vec<usize>,
    /// Number of taps of each output.
    pub len: Vec<usize>,
    /// Row stride of `weights`.
    pub ksize: usize,
    /// Normalised weights, `[out, ksize]`.
    pub weights: Vec<f32>,
}

impl AxisCoeffs {
    /// PIL's `precompute_coeffs`: resampling the source interval `[in0, in1)` of an axis of
    /// `in_size` pixels onto `out_full` outputs, kept for outputs `offset .. offset + out_len`
    /// (a centre crop of the resized image), scaled by `gain`, reversed when `flip`.
    pub fn new(
        in_size: usize,
        in0: f64,
        in1: f64,
        out_full: usize,
        offset: usize,
        out_len: usize,
        filter: Interpolation,
        gain: f64,
        flip: bool,
    ) -> Self {
        let scale = (in1 - in0) / out_full as f64;
        let filterscale = scale.max(1.0);
        let support = filter.support() * filterscale;
        let ksize = (support.ceil() as usize) * 2 + 1;
        let mut c = AxisCoeffs {
            start: Vec::with_capacity(out_len),
            len: Vec::with_capacity(out_len),
            ksize,
            weights: vec![0.0; out_len * ksize],
        };
        let mut k = vec![0.0f64; ksize];
        for o in 0..out_len {
            let xx = offset + if flip { out_len - 1 - o } else { o };
            let center = in0 + (xx as f64 + 0.5) * scale;
            let ss = 1.0 / filterscale;
            let xmin = ((center - support + 0.5).floor().max(0.0) as usize).min(in_size);
            let xmax = ((center + support + 0.5).floor().max(0.0) as usize).min(in_size);
            let n = xmax.saturating_sub(xmin).min(ksize);
            let mut ww = 0.0;
            for (x, kx) in k.iter_mut().enumerate().take(n) {
                let w = filter.weight((x as f64 + xmin as f64 - center + 0.5) * ss);
                *kx = w;
                ww += w;
            }
            let row = &mut c.weights[o * ksize..o * ksize + n];
            for (dst, &w) in row.iter_mut().zip(&k[..n]) {
                *dst = if ww != 0.0 {
                    (w / ww * gain) as f32
                } else {
                    0.0
                };
            }
            c.start.push(xmin);
            c.len.push(n);
        }
        c
    }

    /// The range of source indices any output reads.
    fn span(&self) -> (usize, usize) {
        let lo = self.start.iter().copied().min().unwrap_or(0);
        let hi = self
            .start
            .iter()
            .zip(&self.len)
            .map(|(s, l)| s + l)
            .max()
            .unwrap_or(0);
        (lo, hi.max(lo))
    }
}

multiversion! {
/// Resamples `src` into three planar f32 planes in `[0, 1]` (grayscale is repeated on the three
/// planes): vertical pass on the u8 rows, then horizontal pass, each a vectorised weighted sum
/// of contiguous rows (the intermediate is stored transposed, `[c, x, y]`, so that the
/// horizontal pass also runs along contiguous memory); the result is clamped to `[0, 1]` as PIL
/// clamps to `0..=255`.
///
/// # Shapes
/// `src`: `[c, h, w]` or `[h, w, c]` u8 (c = 1 or 3); `out`: `[3, ys.len(), xs.len()]` f32.
pub fn resample(
    src: ImageRef<'_>,
    xs: &AxisCoeffs,
    ys: &AxisCoeffs,
    scratch: &mut Scratch,
    out: &mut [f32],
) {
    let (ow, oh) = (xs.start.len(), ys.start.len());
    let plane = ow * oh;
    debug_assert_eq!(out.len(), 3 * plane);
    let (x0, x1) = xs.span();
    let rw = x1 - x0;
    // Source treated as `passes` interleaved images of `ch` channels.
    let (passes, ch) = match (src.layout, src.channels) {
        (Layout::Interleaved, c) => (1, c),
        (Layout::Planar, c) => (c, 1),
    };
    let row_stride = src.width * ch;
    let plane_stride = src.width * src.height;
    let seg = rw * ch; // values per vertical-pass row
    // Rows and columns are computed in blocks of B, so that the transposed stores are runs of
    // B contiguous values.
    const B: usize = 8;
    let Scratch { a: block, b: tmp_t, offsets } = scratch;
    block.clear();
    block.resize(B * seg.max(oh), 0.0);
    tmp_t.clear();
    tmp_t.resize(ch * rw * oh, 0.0);
    for p in 0..passes {
        let base = if src.layout == Layout::Planar { p * plane_stride } else { 0 };
        // Vertical pass: row[(x - x0) * ch + c] = Σ_k w_k src[start_y + k][x * ch + c], stored
        // transposed as tmp_t[c][x - x0][y].
        for yb in (0..oh).step_by(B) {
            let nb = B.min(oh - yb);
            for j in 0..nb {
                let y = yb + j;
                let s = ys.start[y];
                let w = &ys.weights[y * ys.ksize..y * ys.ksize + ys.len[y]];
                offsets.clear();
                offsets.extend((0..w.len()).map(|k| base + (s + k) * row_stride + x0 * ch));
                weighted_rows(&mut block[j * seg..(j + 1) * seg], w, src.data, offsets);
            }
            for c in 0..ch {
                let t = &mut tmp_t[c * rw * oh..(c + 1) * rw * oh];
                for xi in 0..rw {
                    let dst = &mut t[xi * oh + yb..xi * oh + yb + nb];
                    for (j, d) in dst.iter_mut().enumerate() {
                        *d = block[j * seg + xi * ch + c];
                    }
                }
            }
        }
        // Horizontal pass: column x of the output is a weighted sum of columns of tmp_t.
        for c in 0..ch {
            let t = &tmp_t[c * rw * oh..(c + 1) * rw * oh];
            let dst = &mut out[(p + c) * plane..(p + c + 1) * plane];
            for xb in (0..ow).step_by(B) {
                let nb = B.min(ow - xb);
                for j in 0..nb {
                    let x = xb + j;
                    let s = xs.start[x] - x0;
                    let w = &xs.weights[x * xs.ksize..x * xs.ksize + xs.len[x]];
                    offsets.clear();
                    offsets.extend((0..w.len()).map(|k| (s + k) * oh));
                    weighted_rows(&mut block[j * oh..(j + 1) * oh], w, t, offsets);
                }
                for y in 0..oh {
                    let d = &mut dst[y * ow + xb..y * ow + xb + nb];
                    for (j, v) in d.iter_mut().enumerate() {
                        *v = block[j * oh + y].clamp(0.0, 1.0);
                    }
                }
            }
        }
    }
    if src.channels == 1 {
        let (g, rest) = out.split_at_mut(plane);
        rest[..plane].copy_from_slice(g);
        rest[plane..2 * plane].copy_from_slice(g);
    }
}
}

/// Validated `RandomResizedCrop` parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomResizedCrop {
    /// Output side (square output).
    pub size: usize,
    /// Range of the crop's area as a fraction of the image's.
    pub scale: (f64, f64),
    /// Range of the crop's aspect ratio (width / height), sampled log-uniformly.
    pub ratio: (f64, f64),
    /// Resampling filter.
    pub interpolation: Interpolation,
}

impl Default for RandomResizedCrop {
    fn default() -> Self {
        Self {
            size: 224,
            scale: (0.08, 1.0),
            ratio: (3.0 / 4.0, 4.0 / 3.0),
            interpolation: Interpolation::Bicubic,
        }
    }
}

impl RandomResizedCrop {
    /// Checks the parameters; `field` prefixes the names in errors.
    pub fn check(&self, field: &str) -> Result<(), DataError> {
        if self.size == 0 {
            return Err(DataError::param(
                format!("{field}.size"),
                "must be positive",
            ));
        }
        let (s0, s1) = self.scale;
        if !(s0 > 0.0 && s0 <= s1 && s1.is_finite()) {
            return Err(DataError::param(
                format!("{field}.scale"),
                format!("({s0}, {s1}) must satisfy 0 < min ≤ max"),
            ));
        }
        let (r0, r1) = self.ratio;
        if !(r0 > 0.0 && r0 <= r1 && r1.is_finite()) {
            return Err(DataError::param(
                format!("{field}.ratio"),
                format!("({r0}, {r1}) must satisfy 0 < min ≤ max"),
            ));
        }
        Ok(())
    }

    /// torchvision's `RandomResizedCrop.get_params`: up to 10 attempts at a crop of random area
    /// and log-uniform aspect ratio that fits, else a centre crop at the nearest allowed ratio.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R, height: usize, width: usize) -> CropBox {
        let area = (height * width) as f64;
        let (l0, l1) = (self.ratio.0.ln(), self.ratio.1.ln());
        for _ in 0..10 {
            let target = area * uniform(rng, self.scale.0, self.scale.1);
            let aspect = uniform(rng, l0, l1).exp();
            let w = (target * aspect).sqrt().round_ties_even();
            let h = (target / aspect).sqrt().round_ties_even();
            if w > 0.0 && h > 0.0 && w <= width as f64 && h <= height as f64 {
                let (w, h) = (w as usize, h as usize);
                let top = rng.gen_range(0..=height - h);
                let left = rng.gen_range(0..=width - w);
                return CropBox {
                    top,
                    left,
                    height: h,
                    width: w,
                };
            }
        }
        let in_ratio = width as f64 / height as f64;
        let (w, h) = if in_ratio < self.ratio.0 {
            (
                width,
                ((width as f64 / self.ratio.0).round_ties_even() as usize).clamp(1, height),
            )
        } else if in_ratio > self.ratio.1 {
            (
                ((height as f64 * self.ratio.1).round_ties_even() as usize).clamp(1, width),
                height,
            )
        } else {
            (width, height)
        };
        CropBox {
            top: (height - h) / 2,
            left: (width - w) / 2,
            height: h,
            width: w,
        }
    }

    /// Axis coefficients that map `crop` to the output (`flip` mirrors the columns), with
    /// values scaled from `0..=255` to `[0, 1]`.
    pub fn coeffs(
        &self,
        src_h: usize,
        src_w: usize,
        crop: CropBox,
        flip: bool,
    ) -> (AxisCoeffs, AxisCoeffs) {
        let g = 1.0 / 255.0;
        let xs = AxisCoeffs::new(
            src_w,
            crop.left as f64,
            (crop.left + crop.width) as f64,
            self.size,
            0,
            self.size,
            self.interpolation,
            1.0,
            flip,
        );
        let ys = AxisCoeffs::new(
            src_h,
            crop.top as f64,
            (crop.top + crop.height) as f64,
            self.size,
            0,
            self.size,
            self.interpolation,
            g,
            false,
        );
        (xs, ys)
    }
}

/// A uniform draw in `[lo, hi)` (or `lo` when the range is empty).
pub(crate) fn uniform<R: Rng + ?Sized>(rng: &mut R, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * rng.gen::<f64>()
}

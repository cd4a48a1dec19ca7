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

/// Outputs per block of [`AxisCoeffs::blocks`].
pub const BW: usize = 8;

/// Resampling weights by blocks of [`BW`] outputs (see [`AxisCoeffs::blocks`]).
#[derive(Debug, Clone, Default)]
pub struct Blocks {
    /// First source index of each block.
    pub base: Vec<usize>,
    /// Source values each block reads.
    pub span: Vec<usize>,
    /// Offset of each block's `[span, BW]` matrix in `w`.
    pub off: Vec<usize>,
    /// The matrices.
    pub w: Vec<f32>,
}

/// How one axis maps source pixels to output pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AxisMap {
    /// Source pixels on the axis.
    pub in_size: usize,
    /// Start of the source interval (a crop's first pixel).
    pub in0: f64,
    /// End of the source interval.
    pub in1: f64,
    /// Outputs the whole interval maps onto (the resized size).
    pub out_full: usize,
    /// First output kept (a centre crop of the resized image; 0 for all).
    pub offset: usize,
    /// Outputs kept.
    pub out_len: usize,
}

impl AxisCoeffs {
    /// PIL's `precompute_coeffs` for `map`, with `filter`, weights scaled by `gain`, outputs
    /// reversed when `flip`.
    pub fn new(map: AxisMap, filter: Interpolation, gain: f64, flip: bool) -> Self {
        let AxisMap {
            in_size,
            in0,
            in1,
            out_full,
            offset,
            out_len,
        } = map;
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

    /// The weights regrouped by blocks of [`BW`] consecutive outputs: for block `b`, a dense
    /// `[span, BW]` matrix over the source indices `base .. base + span` it reads (zero where
    /// an output has no tap), so that a block is computed with one broadcast and one vector
    /// multiply-add per source value. Summing a block's rows in order adds each output's taps in
    /// source order, as [`AxisCoeffs::weights`] lists them, plus exact zeros.
    pub fn blocks(&self) -> Blocks {
        let n = self.start.len();
        let mut bl = Blocks::default();
        for xb in (0..n).step_by(BW) {
            let outs = xb..(xb + BW).min(n);
            let base = outs.clone().map(|x| self.start[x]).min().unwrap_or(0);
            let end = outs
                .clone()
                .map(|x| self.start[x] + self.len[x])
                .max()
                .unwrap_or(base);
            let span = end - base;
            let off = bl.w.len();
            bl.w.resize(off + span * BW, 0.0);
            for x in outs {
                let j = x - xb;
                for k in 0..self.len[x] {
                    bl.w[off + (self.start[x] + k - base) * BW + j] =
                        self.weights[x * self.ksize + k];
                }
            }
            bl.base.push(base);
            bl.span.push(span);
            bl.off.push(off);
        }
        bl
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
/// planes), one output row at a time: a vertical pass on the u8 rows (a vectorised weighted
/// sum of contiguous rows), then a horizontal pass by blocks of [`BW`] outputs
/// ([`AxisCoeffs::blocks`]); the result is clamped to `[0, 1]` as PIL clamps to `0..=255`.
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
    let blocks = xs.blocks();
    let Scratch { a: row, offsets, .. } = scratch;
    row.clear();
    row.resize(seg, 0.0);
    for p in 0..passes {
        let base = if src.layout == Layout::Planar { p * plane_stride } else { 0 };
        for y in 0..oh {
            // Vertical pass: row[(x - x0) * ch + c] = Σ_k w_k src[start_y + k][x * ch + c].
            let s = ys.start[y];
            let w = &ys.weights[y * ys.ksize..y * ys.ksize + ys.len[y]];
            offsets.clear();
            offsets.extend((0..w.len()).map(|k| base + (s + k) * row_stride + x0 * ch));
            weighted_rows(&mut row[..seg], w, src.data, offsets);
            // Horizontal pass, straight into the output row(s).
            let at = y * ow;
            if ch == 3 {
                let (r, rest) = out.split_at_mut(plane);
                let (g, b) = rest.split_at_mut(plane);
                let mut dst = [&mut r[at..at + ow], &mut g[at..at + ow], &mut b[at..at + ow]];
                horizontal::<3>(row, x0, &blocks, &mut dst);
            } else {
                let mut dst = [&mut out[p * plane + at..p * plane + at + ow]];
                horizontal::<1>(row, x0, &blocks, &mut dst);
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

/// The horizontal pass of one row: `row` holds `CH` interleaved channels from source column
/// `x0`; each output is clamped to `[0, 1]`.
#[inline(always)]
fn horizontal<const CH: usize>(
    row: &[f32],
    x0: usize,
    blocks: &Blocks,
    dst: &mut [&mut [f32]; CH],
) {
    let ow = dst[0].len();
    for (b, xb) in (0..ow).step_by(BW).enumerate() {
        let (base, span, off) = (blocks.base[b] - x0, blocks.span[b], blocks.off[b]);
        let w = &blocks.w[off..off + span * BW];
        let t = &row[base * CH..(base + span) * CH];
        let nb = BW.min(ow - xb);
        if CH == 3 {
            // Three channels at once: three independent multiply-add chains.
            let (mut a0, mut a1, mut a2) = ([0.0f32; BW], [0.0f32; BW], [0.0f32; BW]);
            for (wi, ti) in w.chunks_exact(BW).zip(t.chunks_exact(3)) {
                let wi: &[f32; BW] = wi.try_into().expect("chunk of BW weights");
                let (v0, v1, v2) = (ti[0], ti[1], ti[2]);
                for j in 0..BW {
                    a0[j] = wi[j].mul_add(v0, a0[j]);
                    a1[j] = wi[j].mul_add(v1, a1[j]);
                    a2[j] = wi[j].mul_add(v2, a2[j]);
                }
            }
            for (c, acc) in [a0, a1, a2].iter().enumerate() {
                for (d, a) in dst[c][xb..xb + nb].iter_mut().zip(acc) {
                    *d = a.clamp(0.0, 1.0);
                }
            }
        } else {
            for (c, d) in dst.iter_mut().enumerate() {
                let mut acc = [0.0f32; BW];
                for (i, wi) in w.chunks_exact(BW).enumerate() {
                    let wi: &[f32; BW] = wi.try_into().expect("chunk of BW weights");
                    let v = t[i * CH + c];
                    for j in 0..BW {
                        acc[j] = wi[j].mul_add(v, acc[j]);
                    }
                }
                for (d, a) in d[xb..xb + nb].iter_mut().zip(&acc) {
                    *d = a.clamp(0.0, 1.0);
                }
            }
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
        let map = |in_size: usize, start: usize, len: usize| AxisMap {
            in_size,
            in0: start as f64,
            in1: (start + len) as f64,
            out_full: self.size,
            offset: 0,
            out_len: self.size,
        };
        let xs = AxisCoeffs::new(
            map(src_w, crop.left, crop.width),
            self.interpolation,
            1.0,
            flip,
        );
        let ys = AxisCoeffs::new(
            map(src_h, crop.top, crop.height),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The block matrices hold exactly each output's taps, at their source positions.
    #[test]
    fn blocks_hold_the_same_weights() {
        for (in0, in1, out, flip) in [
            (3.0, 250.0, 224, false),
            (10.0, 60.0, 224, true),
            (0.0, 32.0, 32, false),
        ] {
            let map = AxisMap {
                in_size: 260,
                in0,
                in1,
                out_full: out,
                offset: 0,
                out_len: out,
            };
            let c = AxisCoeffs::new(map, Interpolation::Bicubic, 1.0, flip);
            let b = c.blocks();
            for x in 0..out {
                let (blk, j) = (x / BW, x % BW);
                let (base, span, off) = (b.base[blk], b.span[blk], b.off[blk]);
                for i in 0..span {
                    let src = base + i;
                    let expect = if src >= c.start[x] && src < c.start[x] + c.len[x] {
                        c.weights[x * c.ksize + src - c.start[x]]
                    } else {
                        0.0
                    };
                    // Exact: the block matrices are copies of the weights (or zeros).
                    assert_eq!(b.w[off + i * BW + j], expect);
                }
                let sum: f32 = (0..c.len[x]).map(|k| c.weights[x * c.ksize + k]).sum();
                // Each weight is w/Σw rounded to f32 (≤ u·|w|, the f64 steps ~1e-16), and this
                // f32 sum of ≤ 7 taps adds ≤ 6u·Σ|w|; Σ|w| ≤ 1.27 for the bicubic filter:
                // ≤ 7·1.27u ≈ 5.3e-7 < 1e-5.
                assert!((sum - 1.0).abs() < 1e-5);
            }
        }
    }
}

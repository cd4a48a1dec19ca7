//! Random resized crop and horizontal flip of a batch in one resampling pass: each sample's
//! crop box (and flip) becomes an affine map from output to source coordinates, sampled with
//! `grid_sample` (bilinear or bicubic, border padding, `align_corners = false`).
//!
//! Output pixel j of `s` has its centre at `left + (j + ½)·cw/s` in source pixels, so in
//! `grid_sample`'s normalised coordinates (−1 and 1 are the outer edges of the first and last
//! pixels) `x_src = (2·left + cw)/W − 1 ± (cw/W)·x_out` (− when flipped), likewise for rows.
//! Unlike the CPU path (PIL's antialiased filters), the filter does not widen when the crop is
//! shrunk: a crop shrunk by a large factor aliases a little (see `benches/gpu/RESULTS.md`).

use tch::{Kind, Tensor};

use crate::data::augment::{CropBox, Interpolation};
use crate::data::ViewDraw;
use crate::Result;

/// The affine map of one crop for `grid_sample`, row-major `[2, 3]`.
pub fn theta(crop: CropBox, flip: bool, src_h: usize, src_w: usize) -> [f32; 6] {
    let (h, w) = (src_h as f64, src_w as f64);
    let sx = crop.width as f64 / w;
    let sy = crop.height as f64 / h;
    let cx = (2.0 * crop.left as f64 + crop.width as f64) / w - 1.0;
    let cy = (2.0 * crop.top as f64 + crop.height as f64) / h - 1.0;
    let sx = if flip { -sx } else { sx };
    [sx as f32, 0.0, cx as f32, 0.0, sy as f32, cy as f32]
}

/// Crops, flips and resizes every sample to `size × size`, values clamped to `[0, 1]` (as
/// PIL clamps the overshoot of the bicubic filter).
///
/// # Shapes
/// `x`: `[N, 3, H, W]` f32 in `[0, 1]`; `draws`: N; returns `[N, 3, size, size]`.
pub fn crop_flip(
    x: &Tensor,
    draws: &[ViewDraw],
    size: usize,
    interpolation: Interpolation,
) -> Result<Tensor> {
    let dims = x.size();
    let (n, h, w) = (dims[0], dims[2] as usize, dims[3] as usize);
    let theta: Vec<f32> = draws
        .iter()
        .flat_map(|d| theta(d.crop, d.flip, h, w))
        .collect();
    let theta = Tensor::f_from_slice(&theta)?
        .f_view([n, 2, 3])?
        .f_to_device_(x.device(), Kind::Float, true, false)?; // [N, 2, 3]
    let s = size as i64;
    let grid = Tensor::f_affine_grid_generator(&theta, [n, 3, s, s], false)?; // [N, s, s, 2]
    let mode = match interpolation {
        Interpolation::Bilinear => 0,
        Interpolation::Bicubic => 2,
    };
    // padding mode 1: border
    Ok(x.f_grid_sampler(&grid, mode, 1, false)?.f_clamp(0.0, 1.0)?)
}

//! Colour jitter, grayscale and solarisation of a batch, each sample with its own factors,
//! order and coin flips, with the arithmetic of the CPU kernels (`data/augment/`):
//! brightness `clamp(x·f)`, contrast `clamp(f·x + (1−f)·mean(gray))`, saturation
//! `clamp(f·x + (1−f)·gray)`, hue through the branch-free HSV round trip, gray
//! `0.299 r + 0.587 g + 0.114 b`, solarise `x ≥ t ? 1 − x : x`.
//!
//! The jitter runs as four rounds (the four positions of torchvision's random order). In round
//! k every sample gets its k-th operation and the identity for the other three (factor 1 is an
//! exact identity for brightness, contrast and saturation; hue is selected with a mask), so a
//! batch needs at most 16 element-wise passes whatever its size; passes no sample needs in a
//! round are skipped.

use tch::{Device, Kind, Tensor};

use crate::data::augment::grayscale::GRAY_WEIGHTS;
use crate::data::augment::ColorOp;
use crate::data::ViewDraw;
use crate::Result;

/// A per-sample value `[N]` as `[N, 1, 1, 1]` on `device`.
fn per_sample(v: &[f32], device: Device) -> Result<Tensor> {
    Ok(Tensor::f_from_slice(v)?
        .f_to_device_(device, Kind::Float, true, false)?
        .f_view([-1, 1, 1, 1])?)
}

/// A per-sample flag `[N]` as `[N, 1, 1, 1]` bool on `device`.
fn per_sample_mask(v: &[bool], device: Device) -> Result<Tensor> {
    Ok(Tensor::f_from_slice(v)?
        .f_to_device_(device, Kind::Bool, true, false)?
        .f_view([-1, 1, 1, 1])?)
}

/// The luma of every pixel.
///
/// # Shapes
/// `x`: `[N, 3, H, W]` → `[N, 1, H, W]`.
pub fn gray(x: &Tensor) -> Result<Tensor> {
    let [wr, wg, wb] = GRAY_WEIGHTS;
    let c = |i: i64| x.f_narrow(1, i, 1);
    Ok(c(0)?
        .f_mul_scalar(f64::from(wr))?
        .f_add(&c(1)?.f_mul_scalar(f64::from(wg))?)?
        .f_add(&c(2)?.f_mul_scalar(f64::from(wb))?)?)
}

/// Rotates the hue of every pixel of sample n by `shift[n]` turns.
///
/// # Shapes
/// `x`: `[N, 3, H, W]` in `[0, 1]`; `shift`: `[N, 1, 1, 1]`; returns `[N, 3, H, W]`.
pub fn adjust_hue(x: &Tensor, shift: &Tensor) -> Result<Tensor> {
    let r = x.f_narrow(1, 0, 1)?; // [N, 1, H, W]
    let g = x.f_narrow(1, 1, 1)?;
    let b = x.f_narrow(1, 2, 1)?;
    let maxc = r.f_maximum(&g)?.f_maximum(&b)?;
    let minc = r.f_minimum(&g)?.f_minimum(&b)?;
    let cr = maxc.f_sub(&minc)?;
    let one = cr.f_ones_like()?;
    let inv = one.f_div(&one.f_where_self(&cr.f_eq(0.0)?, &cr)?)?;
    let rc = maxc.f_sub(&r)?.f_mul(&inv)?;
    let gc = maxc.f_sub(&g)?.f_mul(&inv)?;
    let bc = maxc.f_sub(&b)?.f_mul(&inv)?;
    let hr = bc.f_sub(&gc)?;
    let hg = rc.f_sub(&bc)?.f_add_scalar(2.0)?;
    let hb = gc.f_sub(&rc)?.f_add_scalar(4.0)?;
    let h = hr.f_where_self(
        &maxc.f_eq_tensor(&r)?,
        &hg.f_where_self(&maxc.f_eq_tensor(&g)?, &hb)?,
    )?;
    let h = h.f_mul_scalar(f64::from(1.0f32 / 6.0))?.f_add_scalar(1.0)?;
    let h = h.f_sub(&h.f_floor()?)?.f_add(shift)?;
    let h6 = h.f_sub(&h.f_floor()?)?.f_mul_scalar(6.0)?;
    let chan = |n: f64| -> Result<Tensor> {
        let k = h6.f_add_scalar(n)?;
        let k = k.f_sub_scalar(6.0)?.f_where_self(&k.f_ge(6.0)?, &k)?;
        let t = k
            .f_minimum(&k.f_neg()?.f_add_scalar(4.0)?)?
            .f_clamp(0.0, 1.0)?;
        Ok(maxc.f_sub(&cr.f_mul(&t)?)?)
    };
    Ok(Tensor::f_cat(&[chan(5.0)?, chan(3.0)?, chan(1.0)?], 1)?)
}

/// Applies every sample's colour-jitter operations in its drawn order.
///
/// # Shapes
/// `x`: `[N, 3, H, W]` in `[0, 1]` → same.
pub fn color_jitter(x: Tensor, draws: &[ViewDraw]) -> Result<Tensor> {
    let device = x.device();
    let n = draws.len();
    let mut x = x;
    for k in 0..4 {
        let mut f = [vec![1.0f32; n], vec![1.0f32; n], vec![1.0f32; n]];
        let (mut shift, mut hue) = (vec![0.0f32; n], vec![false; n]);
        let mut used = [false; 4];
        for (i, d) in draws.iter().enumerate() {
            match d.color.get(k) {
                Some(ColorOp::Brightness(v)) => (f[0][i], used[0]) = (*v, true),
                Some(ColorOp::Contrast(v)) => (f[1][i], used[1]) = (*v, true),
                Some(ColorOp::Saturation(v)) => (f[2][i], used[2]) = (*v, true),
                Some(ColorOp::Hue(v)) => (shift[i], hue[i], used[3]) = (*v, true, true),
                None => {}
            }
        }
        if used[0] {
            x = x.f_mul(&per_sample(&f[0], device)?)?.f_clamp(0.0, 1.0)?;
        }
        if used[1] {
            let fc = per_sample(&f[1], device)?;
            let mean = gray(&x)?.f_mean_dim(&[1i64, 2, 3][..], true, Kind::Float)?; // [N,1,1,1]
            let off = fc.f_neg()?.f_add_scalar(1.0)?.f_mul(&mean)?;
            x = x.f_mul(&fc)?.f_add(&off)?.f_clamp(0.0, 1.0)?;
        }
        if used[2] {
            let fs = per_sample(&f[2], device)?;
            let l = fs.f_neg()?.f_add_scalar(1.0)?.f_mul(&gray(&x)?)?;
            x = x.f_mul(&fs)?.f_add(&l)?.f_clamp(0.0, 1.0)?;
        }
        if used[3] {
            let rotated = adjust_hue(&x, &per_sample(&shift, device)?)?;
            x = rotated.f_where_self(&per_sample_mask(&hue, device)?, &x)?;
        }
    }
    Ok(x)
}

/// Replaces the channels of the drawn samples by their luma.
///
/// # Shapes
/// `x`: `[N, 3, H, W]` → same.
pub fn grayscale(x: Tensor, draws: &[ViewDraw]) -> Result<Tensor> {
    let mask: Vec<bool> = draws.iter().map(|d| d.grayscale).collect();
    if !mask.contains(&true) {
        return Ok(x);
    }
    let g = gray(&x)?.f_expand_as(&x)?;
    Ok(g.f_where_self(&per_sample_mask(&mask, x.device())?, &x)?)
}

/// Solarises the drawn samples at `threshold`.
///
/// # Shapes
/// `x`: `[N, 3, H, W]` in `[0, 1]` → same.
pub fn solarize(x: Tensor, draws: &[ViewDraw], threshold: f32) -> Result<Tensor> {
    let mask: Vec<bool> = draws.iter().map(|d| d.solarize).collect();
    if !mask.contains(&true) {
        return Ok(x);
    }
    let hit = x
        .f_ge(f64::from(threshold))?
        .f_logical_and(&per_sample_mask(&mask, x.device())?)?;
    Ok(x.f_neg()?.f_add_scalar(1.0)?.f_where_self(&hit, &x)?)
}

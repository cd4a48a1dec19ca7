//! Gaussian blur (torchvision's `GaussianBlur`): a separable kernel of odd size
//! `k`, `w_i ∝ exp(−x_i² / 2σ²)` at `x_i = i − (k − 1)/2`, normalised to sum 1, with reflect
//! padding (`…, 2, 1 | 0, 1, 2, …`), σ drawn uniformly from a range.

use serde::{Deserialize, Serialize};

use super::rows::weighted_rows;
use super::Scratch;
use crate::data::DataError;

/// How the kernel size is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum KernelSize {
    /// A fixed odd size.
    Fixed {
        /// The size (odd).
        size: usize,
    },
    /// `int(fraction · side) // 2 · 2 + 1`: BYOL's 10 % of the image side (23 at 224 px).
    Fraction {
        /// Fraction of the output side.
        fraction: f64,
    },
}

impl KernelSize {
    /// The odd kernel size for an image of side `side`.
    pub fn resolve(self, side: usize) -> usize {
        match self {
            KernelSize::Fixed { size } => size,
            KernelSize::Fraction { fraction } => ((fraction * side as f64) as usize) / 2 * 2 + 1,
        }
    }
}

/// `GaussianBlur(kernel_size, sigma)` applied with probability `p`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GaussianBlur {
    /// Kernel size.
    pub kernel: KernelSize,
    /// Range of σ, drawn uniformly.
    pub sigma: (f64, f64),
    /// Probability of applying.
    pub p: f64,
}

impl GaussianBlur {
    /// Checks the parameters; `field` prefixes the names in errors.
    pub fn check(&self, field: &str) -> Result<(), DataError> {
        match self.kernel {
            KernelSize::Fixed { size } if size % 2 == 0 => {
                return Err(DataError::param(
                    format!("{field}.kernel.size"),
                    format!("{size} must be odd"),
                ))
            }
            KernelSize::Fraction { fraction } if !(fraction >= 0.0 && fraction.is_finite()) => {
                return Err(DataError::param(
                    format!("{field}.kernel.fraction"),
                    "must be ≥ 0",
                ))
            }
            _ => {}
        }
        let (a, b) = self.sigma;
        if !(a > 0.0 && a <= b && b.is_finite()) {
            return Err(DataError::param(
                format!("{field}.sigma"),
                format!("({a}, {b}) must satisfy 0 < min ≤ max"),
            ));
        }
        super::check_probability(self.p, &format!("{field}.p"))
    }
}

/// The normalised 1-d kernel (torchvision's `_get_gaussian_kernel1d`).
///
/// # Shapes
/// Returns `[size]`.
pub fn kernel1d(size: usize, sigma: f32) -> Vec<f32> {
    let half = (size as f32 - 1.0) * 0.5;
    let pdf: Vec<f32> = (0..size)
        .map(|i| {
            let x = (i as f32 - half) / sigma;
            (-0.5 * x * x).exp()
        })
        .collect();
    let s: f32 = pdf.iter().sum();
    pdf.into_iter().map(|v| v / s).collect()
}

/// Reflect an index into `0..n` (`-1 → 1`, `n → n − 2`), folding as often as needed.
#[inline]
pub fn reflect(i: isize, n: usize) -> usize {
    if i >= 0 && (i as usize) < n {
        return i as usize;
    }
    if n == 1 {
        return 0;
    }
    let period = 2 * (n as isize - 1);
    let m = i.rem_euclid(period);
    (if m >= n as isize { period - m } else { m }) as usize
}

multiversion! {
/// Blurs each plane in place with the separable kernel (vertical then horizontal pass). The
/// kernel must be symmetric (as [`kernel1d`]'s is).
///
/// # Shapes
/// `img`: `[c, h, w]` f32, planar; `kernel`: `[k]`, k odd.
pub fn blur(img: &mut [f32], height: usize, width: usize, kernel: &[f32], scratch: &mut Scratch) {
    let plane = height * width;
    // Taps below 1e-9 (the tails of a small σ) change no value by more than 1e-8: skip them.
    let cut = kernel.iter().position(|&w| w >= 1e-9).unwrap_or(0).min(kernel.len() / 2);
    let kernel = &kernel[cut..kernel.len() - cut];
    if plane == 0 || kernel.len() <= 1 {
        return;
    }
    let r = kernel.len() / 2;
    let padded = width + 2 * r;
    let Scratch { a: vert, b: row, offsets } = scratch;
    vert.clear();
    vert.resize(plane, 0.0);
    row.clear();
    row.resize(padded, 0.0);
    for p in img.chunks_exact_mut(plane) {
        // Vertical: vert[y] = Σ_k w_k p[reflect(y + k − r)], contiguous rows.
        for y in 0..height {
            offsets.clear();
            offsets.extend(
                (0..kernel.len()).map(|k| reflect(y as isize + k as isize - r as isize, height) * width),
            );
            weighted_rows(&mut vert[y * width..(y + 1) * width], kernel, p, offsets);
        }
        // Horizontal: pad a row by reflection, then out[x] = Σ_k w_k row[x + k].
        offsets.clear();
        offsets.extend(0..kernel.len());
        for y in 0..height {
            let src = &vert[y * width..(y + 1) * width];
            row[r..r + width].copy_from_slice(src);
            for j in (0..r).chain(r + width..padded) {
                row[j] = src[reflect(j as isize - r as isize, width)];
            }
            weighted_rows(&mut p[y * width..(y + 1) * width], kernel, row, offsets);
        }
    }
}
}

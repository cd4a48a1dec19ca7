//! The spectrum of the paper's figures: the covariance of embeddings (Eqn 1) and its
//! eigenvalues, which equal its singular values since it is symmetric positive semi-definite.

use nalgebra::DMatrix;

/// The covariance of Eqn 1, C = 1/N · Σ_i (z_i − z̄)(z_i − z̄)ᵀ (divided by N, not N − 1).
/// # Shapes
/// z: [N, d] → [d, d]
pub fn covariance(z: &DMatrix<f64>) -> DMatrix<f64> {
    let mut scratch = CovarianceScratch::default();
    covariance_into(z, &mut scratch);
    scratch.covariance
}

/// Buffers for [`covariance_eigenvalues_with`], kept between calls so that repeated
/// measurements of same-shaped embeddings allocate nothing.
#[derive(Debug, Clone)]
pub struct CovarianceScratch {
    /// The centred copy of z. [N, d]
    centred: DMatrix<f64>,
    /// The covariance. [d, d]
    covariance: DMatrix<f64>,
}

impl Default for CovarianceScratch {
    fn default() -> Self {
        CovarianceScratch {
            centred: DMatrix::zeros(0, 0),
            covariance: DMatrix::zeros(0, 0),
        }
    }
}

/// Resizes `m` to `rows × cols` only if its shape differs (its values are overwritten next):
/// the reuse of measurement buffers here and in the theory lab's trainer.
pub(crate) fn reshape<T: nalgebra::RealField + Copy>(m: &mut DMatrix<T>, rows: usize, cols: usize) {
    if m.shape() != (rows, cols) {
        *m = DMatrix::zeros(rows, cols);
    }
}

/// [`covariance`] into `scratch.covariance`: centred column by column into the reused buffer,
/// then one product CᵀC with C read transposed in place (no transposed copy). The values are
/// those of `centred.transpose() * &centred / n` bit for bit: the same column means, and the
/// same matrixmultiply kernel on the same packed panels (nalgebra hands products with every
/// side above 5 to matrixmultiply; smaller ones go through nalgebra itself, as before).
fn covariance_into(z: &DMatrix<f64>, scratch: &mut CovarianceScratch) {
    let (n, d) = z.shape();
    reshape(&mut scratch.centred, n, d);
    // The column means as nalgebra's `mean` sums them (0 + z_0j + z_1j + … in row order, then
    // / N), but all columns at once, row by row: d independent chains of additions instead of
    // one column's chain waiting on each addition in turn.
    let (zs, cs) = (z.as_slice(), scratch.centred.as_mut_slice());
    let mut means = vec![0.0; d];
    for i in 0..n {
        for (j, m) in means.iter_mut().enumerate() {
            *m += zs[i + j * n];
        }
    }
    for ((out, col), mean) in cs.chunks_exact_mut(n).zip(zs.chunks_exact(n)).zip(&means) {
        let mean = mean / n as f64;
        out.iter_mut().zip(col).for_each(|(o, &v)| *o = v + -mean);
    }
    const NALGEBRA_SMALL_DIM: usize = 5;
    if d > NALGEBRA_SMALL_DIM && n > NALGEBRA_SMALL_DIM {
        reshape(&mut scratch.covariance, d, d);
        let c = &scratch.centred;
        // SAFETY: A = Cᵀ is C's own storage read with swapped strides ([d, n]: row stride n,
        // column stride 1), B = C ([n, d], strides 1 and n), the output is the separate
        // [d, d] buffer (strides 1 and d); beta = 0, so its old values are never read.
        unsafe {
            matrixmultiply::dgemm(
                d,
                n,
                d,
                1.0,
                c.as_ptr(),
                n as isize,
                1,
                c.as_ptr(),
                1,
                n as isize,
                0.0,
                scratch.covariance.as_mut_ptr(),
                1,
                d as isize,
            );
        }
    } else {
        scratch.covariance = scratch.centred.transpose() * &scratch.centred;
    }
    scratch.covariance /= n as f64;
}

/// The eigenvalues of the covariance (Eqn 1) of `z`, in descending order (Figure 2's spectrum
/// before its log). Values below zero by round-off are kept as computed.
/// # Shapes
/// z: [N, d] → d values
pub fn covariance_eigenvalues(z: &DMatrix<f64>) -> Vec<f64> {
    covariance_eigenvalues_with(z, &mut CovarianceScratch::default())
}

/// [`covariance_eigenvalues`] with reused buffers. Only the eigenvalues are computed (nalgebra's
/// `symmetric_eigenvalues`: the same tridiagonalisation and implicit QR sweeps as
/// `SymmetricEigen::new`, without accumulating the eigenvectors, so the same values bit for
/// bit).
/// # Shapes
/// z: [N, d] → d values
pub fn covariance_eigenvalues_with(z: &DMatrix<f64>, scratch: &mut CovarianceScratch) -> Vec<f64> {
    covariance_into(z, scratch);
    let mut values: Vec<f64> = scratch
        .covariance
        .symmetric_eigenvalues()
        .iter()
        .copied()
        .collect();
    values.sort_by(|a, b| b.total_cmp(a));
    values
}

/// The number of collapsed dimensions: eigenvalues λ_k with λ_k / λ_1 below `relative`
/// (all of them if λ_1 ≤ 0). `spectrum` is in descending order.
pub fn collapsed_dimensions(spectrum: &[f64], relative: f64) -> usize {
    count_below(spectrum, spectrum, relative)
}

/// How many of `values` lie below `relative`·λ₁, λ₁ = `spectrum[0]` (all of them if λ₁ ≤ 0,
/// none for an empty spectrum).
fn count_below(values: &[f64], spectrum: &[f64], relative: f64) -> usize {
    match spectrum.first() {
        Some(&top) if top > 0.0 => values.iter().filter(|&&v| v / top < relative).count(),
        Some(_) => values.len(),
        None => 0,
    }
}

/// The number of coordinates whose variance is below `relative`·λ₁ (all of them if λ₁ ≤ 0):
/// collapse along the coordinate axes, such as dead ReLU channels
/// ([`RankMetrics::constant_coordinates`](super::RankMetrics::constant_coordinates)).
/// `variances` are the covariance's diagonal; `spectrum` its eigenvalues in descending order.
pub fn constant_coordinates(variances: &[f64], spectrum: &[f64], relative: f64) -> usize {
    count_below(variances, spectrum, relative)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covariance_of_known_points() {
        // Points (±1, 0) and (0, ±2): mean 0, C = diag(2/4, 8/4).
        let z = DMatrix::from_row_slice(4, 2, &[1.0, 0.0, -1.0, 0.0, 0.0, 2.0, 0.0, -2.0]);
        let c = covariance(&z);
        // Small integers, their mean 0, and the division by N = 4: exact arithmetic.
        assert!(
            (c[(0, 0)] - 0.5).abs() < 1e-15
                && (c[(1, 1)] - 2.0).abs() < 1e-15
                && c[(0, 1)].abs() < 1e-15
        );
        // Exact: a diagonal matrix needs no rotation, and nalgebra is pure Rust (no BLAS).
        assert_eq!(covariance_eigenvalues(&z), vec![2.0, 0.5]);
    }

    /// The buffered covariance and its eigenvalues-only spectrum equal the plain computation
    /// (a transposed copy, nalgebra's product, the full eigen-decomposition) bit for bit, above
    /// and below nalgebra's small-matrix threshold, and with buffers reused across shapes.
    #[test]
    fn buffered_spectrum_equals_the_plain_one() {
        let mut scratch = CovarianceScratch::default();
        for (n, d) in [(1000, 16), (1000, 8), (50, 3), (7, 6), (1000, 16)] {
            let z = DMatrix::from_fn(n, d, |i, j| {
                ((i * 31 + j * 17) % 97) as f64 / 97.0 - 0.3 + 0.01 * (i as f64).sin() * j as f64
            });
            let mut centred = z.clone();
            for mut col in centred.column_iter_mut() {
                let mean = col.mean();
                col.add_scalar_mut(-mean);
            }
            let plain = centred.transpose() * &centred / n as f64;
            assert_eq!(covariance(&z), plain, "{n}×{d}");
            let mut values: Vec<f64> = nalgebra::SymmetricEigen::new(plain)
                .eigenvalues
                .iter()
                .copied()
                .collect();
            values.sort_by(|a, b| b.total_cmp(a));
            assert_eq!(
                covariance_eigenvalues_with(&z, &mut scratch),
                values,
                "{n}×{d}"
            );
        }
    }

    #[test]
    fn rank_deficient_points_have_collapsed_dimensions() {
        // Points on a line in 3-D: one non-zero eigenvalue.
        let z = DMatrix::from_fn(50, 3, |i, j| (i as f64 - 20.0) * [1.0, -2.0, 0.5][j]);
        let eig = covariance_eigenvalues(&z);
        assert_eq!(collapsed_dimensions(&eig, 1e-10), 2);
        assert_eq!(collapsed_dimensions(&[0.0, 0.0], 1e-6), 2);
    }
}

//! The spectrum of the paper's figures: the covariance of embeddings (Eqn 1) and its
//! eigenvalues, which equal its singular values since it is symmetric positive semi-definite.

use nalgebra::{DMatrix, SymmetricEigen};

/// The covariance of Eqn 1, C = 1/N · Σ_i (z_i − z̄)(z_i − z̄)ᵀ (divided by N, not N − 1).
/// # Shapes
/// z: [N, d] → [d, d]
pub fn covariance(z: &DMatrix<f64>) -> DMatrix<f64> {
    let n = z.nrows() as f64;
    let mut centred = z.clone();
    // Column by column: contiguous in nalgebra's column-major storage.
    for mut col in centred.column_iter_mut() {
        let mean = col.mean();
        col.add_scalar_mut(-mean);
    }
    centred.transpose() * &centred / n
}

/// The eigenvalues of the covariance (Eqn 1) of `z`, in descending order (Figure 2's spectrum
/// before its log). Values below zero by round-off are kept as computed.
/// # Shapes
/// z: [N, d] → d values
pub fn covariance_eigenvalues(z: &DMatrix<f64>) -> Vec<f64> {
    let c = covariance(z);
    let mut values: Vec<f64> = SymmetricEigen::new(c).eigenvalues.iter().copied().collect();
    values.sort_by(|a, b| b.total_cmp(a));
    values
}

/// The number of collapsed dimensions: eigenvalues λ_k with λ_k / λ_1 below `relative`
/// (all of them if λ_1 ≤ 0). `spectrum` is in descending order.
pub fn collapsed_dimensions(spectrum: &[f64], relative: f64) -> usize {
    match spectrum.first() {
        Some(&top) if top > 0.0 => spectrum.iter().filter(|&&l| l / top < relative).count(),
        Some(_) => spectrum.len(),
        None => 0,
    }
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

    #[test]
    fn rank_deficient_points_have_collapsed_dimensions() {
        // Points on a line in 3-D: one non-zero eigenvalue.
        let z = DMatrix::from_fn(50, 3, |i, j| (i as f64 - 20.0) * [1.0, -2.0, 0.5][j]);
        let eig = covariance_eigenvalues(&z);
        assert_eq!(collapsed_dimensions(&eig, 1e-10), 2);
        assert_eq!(collapsed_dimensions(&[0.0, 0.0], 1e-6), 2);
    }
}

//! Seeded matrices with known spectra for the analysis tests.
#![allow(dead_code)]

use nalgebra::DMatrix;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use tch::{Device, Kind, Tensor};

/// Independent standard normal entries, f64 on the CPU, from a seeded ChaCha8 stream.
/// # Shapes
/// → [rows, cols]
pub fn gaussian(rows: i64, cols: i64, seed: u64) -> Tensor {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let values: Vec<f64> = (0..rows * cols)
        .map(|_| StandardNormal.sample(&mut rng))
        .collect();
    Tensor::from_slice(&values).reshape([rows, cols])
}

/// `cols` orthonormal columns; with `centred`, each column also sums to zero (orthogonal to
/// the all-ones vector), so a matrix U·S·Vᵀ built on them has zero mean rows.
/// # Shapes
/// → [rows, cols], cols < rows when centred
pub fn orthonormal_columns(rows: i64, cols: i64, seed: u64, centred: bool) -> Tensor {
    let mut g = gaussian(rows, cols, seed);
    if centred {
        g = &g - g.mean_dim(0, true, Kind::Double);
    }
    let (q, _) = Tensor::linalg_qr(&g, "reduced");
    q
}

/// Z = U · diag(s) · Vᵀ with U [n, r] centred orthonormal and V [d, r] orthonormal: its
/// singular values are s, its rows have mean zero, and its covariance (Eqn 1) has eigenvalues
/// s²/n and d − r zeros.
/// # Shapes
/// s: r values → [n, d]
pub fn with_singular_values(n: i64, d: i64, s: &[f64], seed: u64) -> Tensor {
    let r = s.len() as i64;
    let u = orthonormal_columns(n, r, seed, true);
    let v = orthonormal_columns(d, r, seed + 1, false);
    (u * Tensor::from_slice(s)).matmul(&v.tr())
}

/// The tensor as an nalgebra matrix (f64).
/// # Shapes
/// t: [rows, cols]
pub fn to_dmatrix(t: &Tensor) -> DMatrix<f64> {
    let (rows, cols) = (t.size()[0] as usize, t.size()[1] as usize);
    let flat = Vec::<f64>::try_from(&t.to_kind(Kind::Double).to(Device::Cpu).reshape([-1]))
        .expect("f64 values");
    DMatrix::from_row_slice(rows, cols, &flat)
}

/// max_k |a_k − b_k| / scale.
pub fn max_diff(a: &[f64], b: &[f64], scale: f64) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() / scale)
        .fold(0.0, f64::max)
}

//! The embedding spectrum (Eqn 1 in f64 over tensors) against slow references: nalgebra with
//! explicit centring, an explicit f64 libtorch product and the SVD; chunked against one-shot.
mod analysis_util;
mod tolerance;

use analysis_util::{gaussian, max_diff, to_dmatrix, with_singular_values};
use directclr::analysis::{
    covariance, covariance_eigenvalues, embedding_moments, embedding_spectrum,
    symmetric_eigenvalues, CovarianceAccumulator, RowNormalisation,
};
use directclr::Error;
use tch::{Device, Kind, Tensor};
use tolerance::{covariance_eigenvalue_bound, EPS64};

/// Rows divided by their norms, as the reference for `RowNormalisation::L2`.
fn l2_rows(z: &Tensor) -> Tensor {
    z / z.norm_scalaropt_dim(2, [1i64], true)
}

/// The bound on |λ̂_k − λ_k| for two computations of the covariance spectrum of `z` (ours and
/// a reference), each within [`covariance_eigenvalue_bound`]: the Gram products' rounding
/// scales with the *uncentred* second moment tr(ZᵀZ)/N, as the rows are shifted or centred in
/// rounded arithmetic; `top` is λ₁ of the reference.
fn two_spectra_bound(z: &Tensor, top: f64) -> f64 {
    let (n, d) = (z.size()[0] as usize, z.size()[1] as usize);
    let second_moment = z
        .to_kind(Kind::Double)
        .square()
        .sum(Kind::Double)
        .double_value(&[])
        / n as f64;
    2.0 * covariance_eigenvalue_bound(n, d, second_moment, top)
}

/// The largest diagonal entry of the uncentred second moment ZᵀZ/N: by Cauchy–Schwarz it
/// bounds every |z_i|ᵀ|z_j|/N, so N·ε times it bounds each covariance entry's rounding.
fn max_second_moment(z: &Tensor) -> f64 {
    let z = z.to_kind(Kind::Double);
    (z.square()
        .sum_dim_intlist(Some(&[0i64][..]), false, Kind::Double)
        / z.size()[0] as f64)
        .max()
        .double_value(&[])
}

/// The covariance (Eqn 1) by the textbook formula in f64: centre, then XᵀX / N.
fn explicit_covariance(z: &Tensor) -> Tensor {
    let z = z.to_kind(Kind::Double);
    let c = &z - z.mean_dim(0, true, Kind::Double);
    c.tr().matmul(&c) / z.size()[0] as f64
}

#[test]
fn matches_nalgebra_with_explicit_centring() {
    // Offset columns of different scales, as rows (None) and L2-normalised.
    let z =
        gaussian(500, 40, 1) * Tensor::linspace(0.1, 3.0, 40, (Kind::Double, Device::Cpu)) + 2.5;
    for rows in [RowNormalisation::None, RowNormalisation::L2] {
        let reference_input = match rows {
            RowNormalisation::None => z.shallow_clone(),
            RowNormalisation::L2 => l2_rows(&z),
        };
        let reference = covariance_eigenvalues(&to_dmatrix(&reference_input));
        let ours = embedding_spectrum(&z, rows).unwrap();
        // Two f64 covariance spectra of the same rows: tolerance module's bound, twice.
        let bound = two_spectra_bound(&reference_input, reference[0]);
        assert!(
            max_diff(&ours, &reference, 1.0) <= bound,
            "{rows:?}: {:e} > {bound:e}",
            max_diff(&ours, &reference, 1.0)
        );
        // The covariance itself, entry by entry, and its symmetry.
        let moments = embedding_moments(&z, rows).unwrap();
        let c = to_dmatrix(moments.covariance());
        let c_ref = covariance(&to_dmatrix(&reference_input));
        // Entrywise: two Gram sums of N products, each within N·ε·max_j (ZᵀZ/N)_jj (plus the
        // shift's and the mean's rounding, inside the factor 4).
        let entry_bound = 4.0 * 500.0 * EPS64 * max_second_moment(&reference_input);
        assert!((&c - &c_ref).amax() <= entry_bound, "{rows:?}");
        // Exactly symmetric by construction: the upper triangle is a copy of the lower.
        assert_eq!(c, c.transpose());
        assert_eq!(moments.count(), 500);
    }
}

#[test]
fn chunked_equals_one_shot() {
    let z = (gaussian(1000, 24, 2) + 0.7).to_kind(Kind::Float);
    let one_shot = embedding_spectrum(&z, RowNormalisation::L2).unwrap();
    for chunk in [1, 7, 100, 333, 1000] {
        let mut acc = CovarianceAccumulator::new(RowNormalisation::L2);
        for (i, part) in z.split(chunk, 0).iter().enumerate() {
            acc.update(part).unwrap();
            if i == 0 {
                acc.update(&z.narrow(0, 0, 0)).unwrap(); // empty chunks change nothing
            }
        }
        assert_eq!(acc.count(), 1000);
        assert_eq!(acc.dim(), Some(24));
        let chunked = acc.finish().unwrap().covariance_eigenvalues().unwrap();
        // Other chunks sum in another order: two spectra within the bound (L2 rows: unit
        // second moment).
        let bound = two_spectra_bound(&l2_rows(&z), one_shot[0]);
        assert!(
            max_diff(&chunked, &one_shot, 1.0) <= bound,
            "chunks of {chunk}"
        );
    }
}

#[test]
fn chunked_equals_one_shot_across_internal_blocks() {
    // D = 1024: the accumulator converts 4096 rows at a time, so 4500 rows in one shot take
    // two internal blocks, and chunks of 1000 rows five.
    let z = (gaussian(4500, 1024, 3) * 0.3 + 0.1).to_kind(Kind::Float);
    let one_shot = embedding_spectrum(&z, RowNormalisation::None).unwrap();
    let mut acc = CovarianceAccumulator::new(RowNormalisation::None);
    for part in z.split(1000, 0) {
        acc.update(&part).unwrap();
    }
    let chunked = acc.finish().unwrap().covariance_eigenvalues().unwrap();
    let reference = symmetric_eigenvalues(&explicit_covariance(&z)).unwrap();
    // Worst-case rounding of Gram sums over 4,500 rows: ~1e-9·λ₁ (tolerance module); any
    // mistake in the block or chunk bookkeeping moves eigenvalues by O(λ₁).
    let bound = two_spectra_bound(&z, reference[0]);
    assert!(max_diff(&chunked, &one_shot, 1.0) <= bound);
    assert!(max_diff(&one_shot, &reference, 1.0) <= bound);
}

#[test]
fn a_large_common_mean_costs_no_accuracy() {
    // Unit-variance data around a mean of 1e6: the plain Gram formula G/N − μμᵀ would lose
    // about 12 of f64's 16 digits here; the shifted accumulation loses none that matter.
    let z = gaussian(2000, 16, 4) + 1e6;
    let reference = covariance_eigenvalues(&to_dmatrix(&z));
    for chunk in [2000, 64] {
        let mut acc = CovarianceAccumulator::new(RowNormalisation::None);
        for part in z.split(chunk, 0) {
            acc.update(&part).unwrap();
        }
        let ours = acc.finish().unwrap().covariance_eigenvalues().unwrap();
        // Both sides centre before the products (the reference by its mean, computed with an
        // error |δμ| ≤ N·ε·1e6 = 4e-7, which enters C only as δμ δμᵀ ≤ 3e-12), so each is within
        // 2ε·(N·tr C + d·λ₁) + |δμ|² ≈ 2e-11 of C's eigenvalues, all ≥ 0.8: relative ≤ 3e-11.
        // 1e-9 leaves a margin and still fails the naive G/N − μμᵀ by five decades (1e-4).
        for (o, r) in ours.iter().zip(&reference) {
            assert!((o - r).abs() < 1e-9 * r, "chunks of {chunk}: {o} vs {r}");
        }
    }
}

#[test]
fn low_precision_inputs_are_read_exactly() {
    // bf16 and f16 values are exact in f32, so the spectrum is the same to the last bit.
    let z = gaussian(300, 12, 5);
    for kind in [Kind::BFloat16, Kind::Half] {
        let low = z.to_kind(kind);
        let a = embedding_spectrum(&low, RowNormalisation::L2).unwrap();
        let b = embedding_spectrum(&low.to_kind(Kind::Float), RowNormalisation::L2).unwrap();
        assert_eq!(a, b, "{kind:?}");
    }
}

#[test]
fn embeddings_that_require_grad_leave_no_graph() {
    let z = gaussian(64, 8, 7).set_requires_grad(true);
    let moments = embedding_moments(&(&z * 2.0), RowNormalisation::L2).unwrap();
    assert!(!moments.covariance().requires_grad() && !moments.mean().requires_grad());
    assert_eq!(moments.rows(), RowNormalisation::L2);
    let plain = embedding_spectrum(&z.detach(), RowNormalisation::L2).unwrap();
    // Bit for bit: 2z/‖2z‖ = z/‖z‖ exactly (scaling by 2 is exact), then the same code path.
    assert_eq!(moments.covariance_eigenvalues().unwrap(), plain);
}

#[test]
fn known_small_cases() {
    // One embedding: zero covariance, exactly.
    let one = Tensor::from_slice(&[3.0f32, -1.0, 2.0]).reshape([1, 3]);
    assert_eq!(
        embedding_spectrum(&one, RowNormalisation::None).unwrap(),
        vec![0.0; 3]
    );
    // (±1, 0), (0, ±2) as in the nalgebra test: C = diag(0.5, 2); L2-normalised rows (±1, 0),
    // (0, ±1): C = diag(0.5, 0.5). A zero row stays zero under L2 (norm floored, as
    // F.normalize): rows (1, 0), (−1, 0), (0, 0) have C = diag(2/3, 0).
    let points = Tensor::from_slice(&[1.0f32, 0.0, -1.0, 0.0, 0.0, 2.0, 0.0, -2.0]).reshape([4, 2]);
    // Sums of small integers and division by N (one rounding) give C to ε·λ₁; two-by-two
    // eigenvalues then move by at most 2·d·ε·λ₁ (λ₁ ≤ 2): (2d + 1)·ε·2 = 2.2e-15.
    let close = |a: Vec<f64>, b: [f64; 2]| {
        let bound = 5.0 * EPS64 * 2.0;
        (a[0] - b[0]).abs() <= bound && (a[1] - b[1]).abs() <= bound
    };
    assert!(close(
        embedding_spectrum(&points, RowNormalisation::None).unwrap(),
        [2.0, 0.5]
    ));
    assert!(close(
        embedding_spectrum(&points, RowNormalisation::L2).unwrap(),
        [0.5, 0.5]
    ));
    let with_zero = Tensor::from_slice(&[1.0f32, 0.0, -1.0, 0.0, 0.0, 0.0]).reshape([3, 2]);
    assert!(close(
        embedding_spectrum(&with_zero, RowNormalisation::L2).unwrap(),
        [2.0 / 3.0, 0.0]
    ));
}

#[test]
fn singular_values_match_the_svd() {
    // Known singular values spanning six decades, plus an offset so the matrix is not centred.
    let s: Vec<f64> = (0..20).map(|k| 10f64.powf(-0.3 * k as f64)).collect();
    let z = with_singular_values(200, 30, &s, 6) + 0.05;
    let moments = embedding_moments(&z, RowNormalisation::None).unwrap();
    let ours = moments.singular_values().unwrap();
    let mut svd: Vec<f64> = to_dmatrix(&z).singular_values().iter().copied().collect();
    svd.sort_by(|a, b| b.total_cmp(a));
    // From the Gram matrix ZᵀZ, whose eigenvalues μ = σ² are within E = 2ε·(N·‖Z‖_F² +
    // d·σ₁²) (tolerance module, in ZᵀZ's units): |σ̂ − σ| = |μ̂ − μ|/(σ̂ + σ) ≤ min(√E, E/σ),
    // about √ε·σ₁ for the smallest and a relative E/σ² for the largest. The SVD adds d·ε·σ₁.
    let (n, d) = (200.0, 30.0);
    let frobenius = z.square().sum(Kind::Double).double_value(&[]);
    let e = 2.0 * EPS64 * (n * frobenius + d * svd[0] * svd[0]);
    for (o, r) in ours.iter().zip(&svd) {
        let bound = e.sqrt().min(e / r) + 2.0 * d * EPS64 * svd[0];
        assert!((o - r).abs() <= bound, "{o} vs {r} (bound {bound:e})");
    }
    // The mean is that of the rows.
    let mean = Vec::<f64>::try_from(moments.mean()).unwrap();
    let mean_ref = Vec::<f64>::try_from(&z.mean_dim(0, false, Kind::Double)).unwrap();
    // Two sums of N = 200 values: each within N·ε·max|z|.
    let max_abs = z.abs().max().double_value(&[]);
    assert!(max_diff(&mean, &mean_ref, 1.0) <= 2.0 * 200.0 * EPS64 * max_abs);
}

#[test]
fn bad_shapes_and_values_are_errors() {
    let cpu = (Kind::Float, Device::Cpu);
    let config = |r: directclr::Result<()>| matches!(r, Err(Error::InvalidConfig { .. }));
    let mut acc = CovarianceAccumulator::new(RowNormalisation::L2);
    assert!(config(acc.update(&Tensor::zeros([5], cpu))));
    assert!(config(acc.update(&Tensor::zeros([2, 3, 4], cpu))));
    assert!(config(acc.update(&Tensor::zeros([5, 0], cpu))));
    assert!(config(
        acc.update(&Tensor::zeros([5, 3], (Kind::Int64, Device::Cpu)))
    ));
    acc.update(&Tensor::ones([5, 3], cpu)).unwrap();
    let mismatch = acc
        .update(&Tensor::ones([5, 4], cpu))
        .unwrap_err()
        .to_string();
    assert!(
        mismatch.contains("[5, 4]") && mismatch.contains("dimension 3"),
        "{mismatch}"
    );
    assert!(matches!(
        CovarianceAccumulator::new(RowNormalisation::None).finish(),
        Err(Error::InvalidConfig { .. })
    ));
    let nan = Tensor::ones([4, 3], cpu);
    let _ = nan.get(2).get(1).fill_(f64::NAN);
    assert!(matches!(
        embedding_spectrum(&nan, RowNormalisation::None),
        Err(Error::Numerical { .. })
    ));
    assert!(matches!(
        symmetric_eigenvalues(&Tensor::zeros([3, 4], cpu)),
        Err(Error::InvalidConfig { .. })
    ));
}

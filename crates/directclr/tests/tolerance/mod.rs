//! Error bounds for the numerical tests: every tolerance in a test is one of these, or a
//! short comment next to it derives it. `docs/testing.md` states the rules.
//!
//! The principle: a tolerance follows from a bound on the rounding error of the computation
//! that holds for any summation order, blocking or SIMD width a BLAS/LAPACK code path may
//! choose, so a test holds on every CPU. Eigenvalues get absolute bounds in units of ε·λ₁
//! (relative bounds hold only for well-separated, well-conditioned quantities).
#![allow(dead_code)]

/// f64's machine epsilon (2⁻⁵², twice the unit roundoff).
pub const EPS64: f64 = f64::EPSILON;
/// f32's machine epsilon (2⁻²³).
pub const EPS32: f64 = f32::EPSILON as f64;

/// Bound on |λ̂_k − λ_k| for the eigenvalues of the covariance (Eqn 1) of an N × d matrix Z
/// computed in f64 (a Gram product, then a backward-stable symmetric eigensolver), whatever
/// the kernels' order of summation:
/// - the Gram product ZᵀZ has entrywise error ≤ γ_N·(|Z|ᵀ|Z|) (Higham, Thm 3.5), whose
///   2-norm is ≤ N·ε·‖Z‖_F² = N·ε·N·tr C for centred rows: after dividing by N, ≤ N·ε·tr C;
/// - the eigensolver's backward error is ≤ d·ε·‖C‖ = d·ε·λ₁ (LAPACK's dsyevd/dsyev), and by
///   Weyl's theorem each eigenvalue moves by at most the 2-norm of the perturbation;
/// - a test matrix built as U·S·Vᵀ from computed orthonormal factors has covariance
///   eigenvalues off by a relative (N + d)·ε (‖QᵀQ − I‖ of a Householder QR, Ostrowski),
///   at most (N + d)·ε·λ₁ absolute.
///
/// A factor 2 covers the γ_N = Nε/(1 − Nε) denominators and the rounding of the final
/// scaling. `trace` is tr C (the sum of the exact eigenvalues), `top` is λ₁.
pub fn covariance_eigenvalue_bound(n: usize, d: usize, trace: f64, top: f64) -> f64 {
    2.0 * EPS64 * (n as f64 * trace + (n + d) as f64 * top + d as f64 * top)
}

/// Bound on |λ̂_k − λ_k| for the eigenvalues of a symmetric d × d matrix with spectral norm
/// `norm` computed by two backward-stable eigensolvers (nalgebra's and LAPACK's, say):
/// d·ε·‖A‖ each, by Weyl's theorem.
pub fn eigensolver_bound(d: usize, norm: f64) -> f64 {
    2.0 * d as f64 * EPS64 * norm
}

/// The first-order change of α-ReQ's weighted least-squares slope (weights 1/k over ranks
/// `ranks`, x = ln k, y = ln λ_k) when each λ_k may move by `abs_error`:
/// |δα| ≤ Σ_k w_k·|x_k − x̄|·(abs_error / λ_k) / Σ_k w_k·(x_k − x̄)².
/// `spectrum` is in descending order; `ranks` are 1-based.
pub fn alpha_req_bound(spectrum: &[f64], ranks: std::ops::Range<usize>, abs_error: f64) -> f64 {
    let end = ranks.end.min(spectrum.len() + 1);
    let points: Vec<(f64, f64, f64)> = (ranks.start..end)
        .map(|k| {
            let lambda = spectrum[k - 1];
            // ln(λ ± δ) − ln λ ≤ δ / (λ − δ): the bound of the log, not its linearisation.
            (
                (k as f64).ln(),
                abs_error / (lambda - abs_error),
                1.0 / k as f64,
            )
        })
        .collect();
    let weight: f64 = points.iter().map(|p| p.2).sum();
    let mean_x = points.iter().map(|p| p.2 * p.0).sum::<f64>() / weight;
    let sxx: f64 = points.iter().map(|p| p.2 * (p.0 - mean_x).powi(2)).sum();
    let numerator: f64 = points
        .iter()
        .map(|p| p.2 * (p.0 - mean_x).abs() * p.1)
        .sum();
    numerator / sxx
}

/// Bound on the relative change of the participation ratio (Σλ)² / Σλ² when each of the d
/// eigenvalues may move by `abs_error`: |δPR| / PR ≤ 2·d·δ / Σλ + 2·δ·Σλ / Σλ² (first
/// order, doubled for the second-order terms).
pub fn participation_ratio_bound(spectrum: &[f64], abs_error: f64) -> f64 {
    let s1: f64 = spectrum.iter().sum();
    let s2: f64 = spectrum.iter().map(|v| v * v).sum();
    2.0 * (2.0 * spectrum.len() as f64 * abs_error / s1 + 2.0 * abs_error * s1 / s2)
}

/// Bound on the relative error of RankMe (effective rank) computed from singular values
/// σ_k = √(N·μ_k), where μ are the eigenvalues of ZᵀZ/N (descending, any scale) and each is
/// off by at most `abs_error` in the same units:
/// - |σ̂ − σ| = |μ̂ − μ|/(σ̂ + σ) ≤ min(√δ, δ/√μ) (in units of √N), so a zero singular value
///   may come out as large as √δ: this term dominates for rank-deficient matrices;
/// - Σ_k |δp_k| ≤ 2·Σ_k |δσ_k| / Σ σ (p_k = σ_k/Σσ + ε, first order, plus a quarter for the
///   second order);
/// - |δH| ≤ (|ln ε| + 1)·Σ|δp_k|, the largest slope of −p ln p on [ε, 1];
/// - RankMe = e^H: relative error e^|δH| − 1.
pub fn rankme_bound(mu: &[f64], abs_error: f64, rankme_epsilon: f64) -> f64 {
    let total: f64 = mu.iter().map(|m| m.max(0.0).sqrt()).sum();
    let moved: f64 = mu
        .iter()
        .map(|&m| {
            let root = m.max(0.0).sqrt();
            if root > 0.0 {
                abs_error.sqrt().min(abs_error / root)
            } else {
                abs_error.sqrt()
            }
        })
        .sum();
    let dh = (rankme_epsilon.ln().abs() + 1.0) * 2.5 * moved / total;
    dh.exp() - 1.0
}

/// Bound on the relative error of the stable rank Σμ/μ₁ when each of the d eigenvalues μ
/// (descending) may move by `abs_error`: d·δ/Σμ + δ/μ₁, doubled for second order.
pub fn stable_rank_bound(mu: &[f64], abs_error: f64) -> f64 {
    let total: f64 = mu.iter().sum();
    2.0 * (mu.len() as f64 * abs_error / total + abs_error / mu[0])
}

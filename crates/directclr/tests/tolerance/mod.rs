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

/// Bound on the absolute rounding error of a network's loss computed in f64, as a first-order
/// model: each reduction of length n (a convolution's fan-in, a BN statistic over its batch,
/// the final pooling and weighted sum) gives its outputs a relative error ≤ γ_n ≈ n·ε/2
/// (Higham, Thm 3.5; ε rather than ε/2 per term also covers BN's second pass, the variance);
/// these add up along the network, carried to the loss with gain ≤ 1 (BN renormalises; ReLU
/// and residual sums do not amplify a relative error; a channel whose batch mean is far larger
/// than its spread would, which the test inputs avoid), at the scale of the loss computed in
/// absolute values, Σ|r_i·w_i| for a loss Σ r_i·w_i. `reductions` is Σ n over the reductions,
/// `absolute_loss` is Σ|r_i·w_i|. Seen 1e3–1e5 times larger than the errors of the ResNets of
/// `model_resnet.rs` (a worst case; rounding errors partly cancel).
pub fn forward_rounding_bound(reductions: f64, absolute_loss: f64) -> f64 {
    EPS64 * reductions * absolute_loss
}

/// Bound on the rounding part of the error of a central difference in f64,
/// D(h) = (f̂(θ̂₊) − f̂(θ̂₋))/(2h), θ̂₊ = fl(θ + h·v), θ̂₋ = fl(θ − h·v), against the directional
/// derivative g·v (g = ∇f at θ):
/// - each f̂ is off by ≤ `forward_error` ([`forward_rounding_bound`]): ≤ 2E/(2h) = E/h;
/// - θ̂₊ − θ̂₋ = 2h·v + δ with |δ_i| ≤ u(|θ₊,i| + |θ₋,i|) ≈ ε|θ_i| (u = ε/2, one rounding
///   each), which moves f̂(θ̂₊) − f̂(θ̂₋) by g·δ ≤ ε·Σ|g_i||θ_i| = ε·`grad_times_params`:
///   ≤ ε·Σ|g||θ|/(2h).
///
/// The truncation error, h²·|f‴|/6, is added separately ([`richardson_truncation`]).
pub fn central_difference_rounding(h: f64, forward_error: f64, grad_times_params: f64) -> f64 {
    (forward_error + EPS64 * grad_times_params / 2.0) / h
}

/// The truncation error h²·|f‴|/6 of the central difference D(h), from D at h and 2h:
/// D(h) = f′ + c·h² + O(h⁴) with c = f‴/6, so D(2h) − D(h) = 3c·h² + O(h⁴), each D
/// carrying its rounding error ([`central_difference_rounding`]: `rounding_h` at h,
/// `rounding_2h` at 2h): |c|·h² ≤ (|D(2h) − D(h)| + rounding_h + rounding_2h)/3.
/// Valid while f is smooth on [−2h, 2h] along v with f‴ about constant there; a ReLU kink
/// within 2h makes the estimate large, which the caller must refuse (a void check), not accept.
pub fn richardson_truncation(d_h: f64, d_2h: f64, rounding_h: f64, rounding_2h: f64) -> f64 {
    ((d_2h - d_h).abs() + rounding_h + rounding_2h) / 3.0
}

/// Bound on the rounding error of the analytic directional derivative g·v from autograd in
/// f64: the backward pass runs the forward's reductions transposed (each gradient entry off by
/// ≤ ε·`reductions` relative, first order as in [`forward_rounding_bound`]), and the dot
/// product over `count` parameters adds γ_count: ≤ ε·(reductions + count)·Σ|g_i·v_i|
/// (`terms`).
pub fn directional_derivative_rounding(reductions: f64, count: f64, terms: f64) -> f64 {
    EPS64 * (reductions + count) * terms
}

//! Rank metrics of embeddings used to monitor dimensional collapse, each a pure function of a
//! spectrum, and [`RankMetrics`], all of them from an embedding matrix in one call.
//!
//! | metric | spectrum it reads |
//! |---|---|
//! | [`effective_rank`] (RankMe) | singular values σ of the N×D embedding matrix (not centred) |
//! | [`stable_rank`] | the same singular values |
//! | [`alpha_req`] | eigenvalues λ of the covariance (Eqn 1) |
//! | [`participation_ratio`] | the same eigenvalues |
//! | [`collapsed_dimensions`] | the same eigenvalues |

use serde::{Deserialize, Serialize};
use tch::Tensor;

use super::embedding_spectrum::{embedding_moments, Moments, RowNormalisation};
use super::spectrum::{collapsed_dimensions, constant_coordinates};
use crate::{Error, Result};

/// The ε added to every normalised singular value by RankMe (Garrido et al. 2023).
pub const RANKME_EPSILON: f64 = 1e-7;

/// The ranks k (1-based, k-th largest eigenvalue) whose eigenvalues α-ReQ fits
/// (Agrawal et al. 2022): k ∈ [5, 100), clipped to the spectrum's length.
pub const ALPHA_REQ_RANKS: std::ops::Range<usize> = 5..100;

/// The relative threshold of [`RankOptions::default`]: eigenvalues λ_k/λ₁ < 1e-6 count as
/// collapsed (the usual float32 reading; bf16 embeddings have a noise floor near it).
pub const DEFAULT_COLLAPSE_THRESHOLD: f64 = 1e-6;

/// RankMe (Garrido et al., ICML 2023), the effective rank of Roy & Vetterli (2007):
/// p_k = σ_k / Σ_j σ_j + ε with ε = [`RANKME_EPSILON`], RankMe = exp(−Σ_k p_k log p_k).
/// Between 1 and D (up to ε): D for equal singular values, r for r equal non-zero ones.
/// # Shapes
/// singular_values: D values σ ≥ 0 of the [N, D] embedding matrix (not squared, not centred),
/// in any order
pub fn effective_rank(singular_values: &[f64]) -> Result<f64> {
    check_spectrum("singular_values", singular_values, true)?;
    let total: f64 = singular_values.iter().sum();
    if total <= 0.0 {
        return Err(Error::config(
            "singular_values",
            "all singular values are zero; the effective rank is undefined",
        ));
    }
    let entropy: f64 = singular_values
        .iter()
        .map(|&s| {
            let p = s / total + RANKME_EPSILON;
            -p * p.ln()
        })
        .sum();
    Ok(entropy.exp())
}

/// α-ReQ (Agrawal et al., NeurIPS 2022): the decay exponent α of a power law λ_k ∝ k^(−α)
/// fitted to the covariance eigenvalues by weighted least squares of log λ_k on log k, with
/// weights 1/k, over the ranks [`ALPHA_REQ_RANKS`] (k ∈ [5, 100), clipped to the spectrum's
/// length). Larger α: faster decay, fewer effective dimensions.
///
/// Errors if fewer than two ranks are available (fewer than 6 eigenvalues) or if an eigenvalue
/// in the fitted range is not positive (a collapsed spectrum has no logarithm there). A
/// spectrum collapsed inside the fitted range but left with tiny positive round-off values
/// (λ_k/λ₁ ~ 1e-16) does get a slope, dominated by that round-off: read α-ReQ together with
/// [`collapsed_dimensions`].
/// # Shapes
/// eigenvalues: D covariance eigenvalues (Eqn 1), in any order (sorted descending here)
pub fn alpha_req(eigenvalues: &[f64]) -> Result<f64> {
    check_spectrum("eigenvalues", eigenvalues, false)?;
    let end = ALPHA_REQ_RANKS.end.min(eigenvalues.len() + 1);
    if end < ALPHA_REQ_RANKS.start + 2 {
        return Err(Error::config(
            "eigenvalues",
            format!(
                "α-ReQ fits ranks {}..{} and needs at least two of them; the spectrum has {} \
                 eigenvalues (at least {} needed)",
                ALPHA_REQ_RANKS.start,
                ALPHA_REQ_RANKS.end - 1,
                eigenvalues.len(),
                ALPHA_REQ_RANKS.start + 1
            ),
        ));
    }
    let mut sorted = eigenvalues.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let mut points = Vec::with_capacity(end - ALPHA_REQ_RANKS.start);
    for k in ALPHA_REQ_RANKS.start..end {
        let lambda = sorted[k - 1];
        if lambda <= 0.0 {
            return Err(Error::config(
                "eigenvalues",
                format!(
                    "λ_{k} = {lambda:e} is not positive; α-ReQ fits log λ over ranks {}..{}",
                    ALPHA_REQ_RANKS.start,
                    end - 1
                ),
            ));
        }
        points.push(((k as f64).ln(), lambda.ln(), 1.0 / k as f64));
    }
    let weight: f64 = points.iter().map(|p| p.2).sum();
    let mean_x = points.iter().map(|p| p.2 * p.0).sum::<f64>() / weight;
    let mean_y = points.iter().map(|p| p.2 * p.1).sum::<f64>() / weight;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for &(x, y, w) in &points {
        sxy += w * (x - mean_x) * (y - mean_y);
        sxx += w * (x - mean_x) * (x - mean_x);
    }
    Ok(-sxy / sxx)
}

/// The stable rank ‖Z‖²_F / ‖Z‖²₂ = Σ σ_k² / σ₁²: between 1 and rank(Z), D for equal
/// singular values, insensitive to tiny ones.
/// # Shapes
/// singular_values: D values σ ≥ 0 of the [N, D] embedding matrix, in any order
pub fn stable_rank(singular_values: &[f64]) -> Result<f64> {
    check_spectrum("singular_values", singular_values, true)?;
    let top = singular_values.iter().copied().fold(0.0, f64::max);
    if top <= 0.0 {
        return Err(Error::config(
            "singular_values",
            "all singular values are zero; the stable rank is undefined",
        ));
    }
    Ok(singular_values.iter().map(|s| (s / top) * (s / top)).sum())
}

/// The participation ratio (Σ λ_k)² / Σ λ_k² of covariance eigenvalues (Eqn 1): D for an
/// isotropic covariance, r for r equal non-zero eigenvalues. Round-off negatives are used as
/// given (they change the result by their square).
/// # Shapes
/// eigenvalues: D covariance eigenvalues, in any order
pub fn participation_ratio(eigenvalues: &[f64]) -> Result<f64> {
    check_spectrum("eigenvalues", eigenvalues, false)?;
    let top = eigenvalues.iter().fold(0.0, |m: f64, l| m.max(l.abs()));
    if top == 0.0 {
        return Err(Error::config(
            "eigenvalues",
            "all eigenvalues are zero; the participation ratio is undefined",
        ));
    }
    // Scaled by the largest magnitude, so squares neither overflow nor underflow.
    let sum: f64 = eigenvalues.iter().map(|l| l / top).sum();
    let squares: f64 = eigenvalues.iter().map(|l| (l / top) * (l / top)).sum();
    Ok(sum * sum / squares)
}

/// Non-empty, finite and, where asked, non-negative.
fn check_spectrum(field: &str, values: &[f64], non_negative: bool) -> Result<()> {
    if values.is_empty() {
        return Err(Error::config(field, "the spectrum is empty"));
    }
    if let Some((k, v)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(Error::config(field, format!("value {k} is {v}")));
    }
    if non_negative {
        if let Some((k, v)) = values.iter().enumerate().find(|(_, &v)| v < 0.0) {
            return Err(Error::config(
                field,
                format!("value {k} is {v:e}; singular values are ≥ 0"),
            ));
        }
    }
    Ok(())
}

/// How [`RankMetrics`] reads embeddings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RankOptions {
    /// Preprocessing of each embedding; L2 by default, as the paper's spectra.
    pub rows: RowNormalisation,
    /// λ_k / λ₁ below this counts as a collapsed dimension.
    pub collapse_threshold: f64,
}

impl Default for RankOptions {
    fn default() -> Self {
        Self {
            rows: RowNormalisation::L2,
            collapse_threshold: DEFAULT_COLLAPSE_THRESHOLD,
        }
    }
}

/// All rank metrics of one set of embeddings, for a metrics log (serde).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RankMetrics {
    /// The number of embeddings N.
    pub samples: i64,
    /// The embedding dimension D.
    pub dim: usize,
    /// Whether rows were L2-normalised first.
    pub rows: RowNormalisation,
    /// RankMe / effective rank of the singular values of the embedding matrix
    /// ([`effective_rank`]). The singular values come from the f64 Gram matrix
    /// ([`Moments::singular_values`]), so zero ones read as about 1e-8 σ₁: for a
    /// rank-deficient matrix this is within about 1e-6 (relative) of the exact-SVD value (a
    /// float32 SVD reads zero singular values as about 1e-7 σ₁).
    pub effective_rank: f64,
    /// ‖Z‖²_F / ‖Z‖²₂ ([`stable_rank`]).
    pub stable_rank: f64,
    /// (Σλ)²/Σλ² of the covariance eigenvalues ([`participation_ratio`]).
    pub participation_ratio: f64,
    /// α-ReQ of the covariance eigenvalues ([`alpha_req`]); `None` when the spectrum has
    /// fewer than 6 eigenvalues or a non-positive one among the fitted ranks (a collapsed
    /// spectrum), where [`alpha_req`] says which.
    pub alpha_req: Option<f64>,
    /// Covariance eigenvalues with λ_k / λ₁ < `collapse_threshold`.
    pub collapsed_dimensions: usize,
    /// The relative threshold used for `collapsed_dimensions`.
    pub collapse_threshold: f64,
    /// Coordinates k whose variance C_kk is below `collapse_threshold`·λ₁: collapse along the
    /// coordinate axes, such as ReLU channels that are zero (dead) for every sample, as opposed
    /// to a collapsed direction that mixes coordinates. m such coordinates imply m collapsed
    /// eigenvalues at m·`collapse_threshold` (their principal submatrix has trace below
    /// m·threshold·λ₁, and by interlacing the m smallest eigenvalues of C are below its
    /// largest). Known only with the covariance itself ([`RankMetrics::from_moments`]); `None`
    /// from spectra alone and in logs written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constant_coordinates: Option<usize>,
}

impl RankMetrics {
    /// All metrics from embeddings in one tensor (one pass; f64 throughout).
    /// # Shapes
    /// z: [N, D] (any floating kind, any device), N ≥ 1
    pub fn from_embeddings(z: &Tensor, options: &RankOptions) -> Result<Self> {
        Self::from_moments(
            &embedding_moments(z, options.rows)?,
            options.collapse_threshold,
        )
    }

    /// All metrics from accumulated moments (see
    /// [`CovarianceAccumulator`](super::CovarianceAccumulator)), with their row
    /// normalisation, counting λ_k / λ₁ < `collapse_threshold` as collapsed.
    pub fn from_moments(moments: &Moments, collapse_threshold: f64) -> Result<Self> {
        let eigenvalues = moments.covariance_eigenvalues()?;
        let singular_values = moments.singular_values()?;
        let options = RankOptions {
            rows: moments.rows(),
            collapse_threshold,
        };
        let mut metrics = Self::from_spectra(&eigenvalues, &singular_values, &options)?;
        metrics.samples = moments.count();
        let variances = Vec::<f64>::try_from(
            &moments
                .covariance()
                .f_diagonal(0, 0, 1)?
                .f_to_kind(tch::Kind::Double)?
                .f_to(tch::Device::Cpu)?
                .f_contiguous()?,
        )?;
        metrics.constant_coordinates = Some(constant_coordinates(
            &variances,
            &eigenvalues,
            collapse_threshold,
        ));
        Ok(metrics)
    }

    /// All metrics from the two spectra: covariance eigenvalues (Eqn 1) and singular values
    /// of the (uncentred) embedding matrix, both after `options.rows`, which is recorded.
    /// `samples` is left at 0.
    /// # Shapes
    /// eigenvalues: D values in descending order; singular_values: D values
    pub fn from_spectra(
        eigenvalues: &[f64],
        singular_values: &[f64],
        options: &RankOptions,
    ) -> Result<Self> {
        if !(options.collapse_threshold.is_finite() && options.collapse_threshold >= 0.0) {
            return Err(Error::config(
                "collapse_threshold",
                format!("{} is not a finite value ≥ 0", options.collapse_threshold),
            ));
        }
        if eigenvalues.len() != singular_values.len() {
            return Err(Error::config(
                "singular_values",
                format!(
                    "{} singular values for {} eigenvalues; both spectra have D values",
                    singular_values.len(),
                    eigenvalues.len()
                ),
            ));
        }
        let alpha = match alpha_req(eigenvalues) {
            Ok(alpha) => Some(alpha),
            // Too few or non-positive eigenvalues: α-ReQ is undefined, not an error here.
            Err(Error::InvalidConfig { .. }) => None,
            Err(e) => return Err(e),
        };
        Ok(Self {
            samples: 0,
            dim: eigenvalues.len(),
            rows: options.rows,
            effective_rank: effective_rank(singular_values)?,
            stable_rank: stable_rank(singular_values)?,
            participation_ratio: participation_ratio(eigenvalues)?,
            alpha_req: alpha,
            collapsed_dimensions: collapsed_dimensions(eigenvalues, options.collapse_threshold),
            collapse_threshold: options.collapse_threshold,
            constant_coordinates: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_values_give_full_rank() {
        let d = 64;
        let ones = vec![1.0; d];
        // RankMe with ε: p = 1/D + ε for every value.
        let p = 1.0 / d as f64 + RANKME_EPSILON;
        let expected = (-(d as f64) * p * p.ln()).exp();
        // A sum of d terms |p ln p| ≤ 0.4: |δH| ≤ d·ε, RankMe ≤ d: error ≤ d²·ε ≈ 1e-12.
        assert!((effective_rank(&ones).unwrap() - expected).abs() < 1e-9);
        // ε = 1e-7 moves RankMe by d·ε·(ln d − 1)·d ≈ 1.3e-3 relative at most: 1e-3·d margin
        // is the formula's, not rounding's (p = 1/64 + ε: d·ε·|ln p + 1| = 2e-5 relative).
        assert!((effective_rank(&ones).unwrap() - d as f64).abs() < 1e-3 * d as f64);
        // Sums of ones and 1/1 are exact in floating point: only the final division rounds.
        assert!((stable_rank(&ones).unwrap() - d as f64).abs() < 1e-12);
        assert!((participation_ratio(&ones).unwrap() - d as f64).abs() < 1e-12);
    }

    #[test]
    fn power_law_gives_back_its_exponent() {
        for alpha in [0.5, 1.0, 2.3] {
            let spectrum: Vec<f64> = (1..=512).map(|k| (k as f64).powf(-alpha)).collect();
            let fitted = alpha_req(&spectrum).unwrap();
            // powf and ln round to ≤ 1 ulp: |δ ln λ_k| ≤ 2ε + ε·|ln λ_k| ≤ 13ε; the fit's sums of
            // 95 terms add a relative 2·95ε to the slope: |δα| ≤ 2e-14·α + 2e-15 < 1e-13.
            assert!((fitted - alpha).abs() < 1e-12, "{fitted} vs {alpha}");
            // Order does not matter, nor the scale (it only moves the intercept).
            let mut shuffled: Vec<f64> = spectrum.iter().rev().map(|l| 3.7 * l).collect();
            shuffled.swap(0, 100);
            assert!((alpha_req(&shuffled).unwrap() - alpha).abs() < 1e-12);
        }
    }

    #[test]
    fn alpha_req_uses_only_ranks_5_to_99() {
        // A power law on ranks 5..99 with anything outside them.
        let mut spectrum: Vec<f64> = (1..=300).map(|k| (k as f64).powf(-1.7)).collect();
        for (i, l) in spectrum.iter_mut().enumerate() {
            if i < 4 {
                *l *= 10.0; // ranks 1..4, still descending
            } else if i >= 99 {
                *l *= 1e-3; // ranks 100.., still descending
            }
        }
        // As above: |δα| ≤ 2e-14·α + 2e-15 < 1e-13.
        assert!((alpha_req(&spectrum).unwrap() - 1.7).abs() < 1e-12);
    }

    #[test]
    fn alpha_req_matches_a_slow_weighted_fit_on_a_clipped_range() {
        // 20 eigenvalues: ranks 5..20. Reference: the normal equations of the weighted fit
        // y = b − α x solved by Cramer's rule.
        let spectrum: Vec<f64> = (1..=20)
            .map(|k| (k as f64).powf(-0.8) * (1.0 + 0.1 * ((k * 7) % 5) as f64))
            .collect();
        let mut sorted = spectrum.clone();
        sorted.sort_by(|a, b| b.total_cmp(a));
        let (mut s, mut sx, mut sy, mut sxx, mut sxy) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for k in 5..=20 {
            let (x, y, w) = ((k as f64).ln(), sorted[k - 1].ln(), 1.0 / k as f64);
            s += w;
            sx += w * x;
            sy += w * y;
            sxx += w * x * x;
            sxy += w * x * y;
        }
        let slope = (s * sxy - sx * sy) / (s * sxx - sx * sx);
        // Two slopes from sums of 16 terms |w·x·y| ≤ 1.5: each within 16·ε·(1.5·16)/(s·sxx −
        // sx²) ≈ 1e-13 (the determinant is 0.1 here).
        assert!((alpha_req(&spectrum).unwrap() + slope).abs() < 1e-12);
    }

    #[test]
    fn alpha_req_refuses_short_or_collapsed_spectra() {
        let five = [5.0, 4.0, 3.0, 2.0, 1.0];
        let err = alpha_req(&five).unwrap_err().to_string();
        assert!(
            err.contains("5 eigenvalues") && err.contains("at least 6"),
            "{err}"
        );
        assert!(alpha_req(&[6.0, 5.0, 4.0, 3.0, 2.0, 1.0]).is_ok());
        let collapsed = [6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 0.0];
        let err = alpha_req(&collapsed).unwrap_err().to_string();
        assert!(err.contains("λ_7"), "{err}");
    }

    #[test]
    fn known_small_spectra() {
        // σ = (3, 4): ‖Z‖²_F = 25, ‖Z‖²₂ = 16. Small integers are exact; the divisions round
        // once (≤ ε/2 relative, < 4e-16 here).
        assert!((stable_rank(&[3.0, 4.0]).unwrap() - 25.0 / 16.0).abs() < 1e-15);
        // λ = (1, 1, 0, 0): PR 2; λ = (2, 1): 9/5.
        assert!((participation_ratio(&[1.0, 1.0, 0.0, 0.0]).unwrap() - 2.0).abs() < 1e-15);
        assert!((participation_ratio(&[2.0, 1.0]).unwrap() - 1.8).abs() < 1e-15);
        // One non-zero singular value out of 10: p = (1 + ε, ε × 9).
        let mut one = vec![0.0; 10];
        one[3] = 2.5;
        let e = RANKME_EPSILON;
        let h = -(1.0 + e) * (1.0 + e).ln() - 9.0 * e * e.ln();
        // Ten terms of size ≤ 2e-6 and one of 1e-7: |δH| ≤ 10·ε; RankMe ≈ 1: error ≲ 1e-14.
        assert!((effective_rank(&one).unwrap() - h.exp()).abs() < 1e-12);
        // Scale-free: scaling by 1e-30 rounds each value once (relative ε/2), so the metrics
        // (sums of ≤ 4 terms, RankMe ≤ 4) move by ≲ 4·4·ε ≈ 4e-15.
        let s = [5.0, 3.0, 1.0, 0.1];
        let scaled: Vec<f64> = s.iter().map(|v| 1e-30 * v).collect();
        assert!((effective_rank(&s).unwrap() - effective_rank(&scaled).unwrap()).abs() < 1e-12);
        assert!(
            (participation_ratio(&s).unwrap() - participation_ratio(&scaled).unwrap()).abs()
                < 1e-12
        );
    }

    #[test]
    fn bad_spectra_are_errors() {
        for err in [
            effective_rank(&[]),
            effective_rank(&[0.0, 0.0]),
            effective_rank(&[1.0, -0.5]),
            stable_rank(&[1.0, f64::NAN]),
            stable_rank(&[0.0]),
            participation_ratio(&[0.0, 0.0]),
            participation_ratio(&[1.0, f64::INFINITY]),
        ] {
            assert!(matches!(err, Err(Error::InvalidConfig { .. })), "{err:?}");
        }
    }
}

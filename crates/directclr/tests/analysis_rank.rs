//! Rank metrics of embedding matrices with known answers: orthogonal and identity matrices,
//! rank-r matrices with chosen singular values, a power-law covariance, Gaussian matrices
//! against the Marchenko–Pastur law, and embeddings with collapsed dimensions.
mod analysis_util;
mod tolerance;

use analysis_util::{gaussian, orthonormal_columns, with_singular_values};
use directclr::analysis::{
    alpha_req, effective_rank, embedding_spectrum, RankMetrics, RankOptions, RowNormalisation,
    ALPHA_REQ_RANKS, RANKME_EPSILON,
};
use directclr::Error;
use tch::{Device, Kind, Tensor};
use tolerance::{
    alpha_req_bound, covariance_eigenvalue_bound, participation_ratio_bound, rankme_bound,
    stable_rank_bound, EPS64,
};

fn options(rows: RowNormalisation, collapse_threshold: f64) -> RankOptions {
    RankOptions {
        rows,
        collapse_threshold,
    }
}

/// RankMe of singular values `s` followed by `zeros` zeros, in closed form.
fn rankme(s: &[f64], zeros: usize) -> f64 {
    let total: f64 = s.iter().sum();
    let e = RANKME_EPSILON;
    let h: f64 = s
        .iter()
        .map(|v| {
            let p = v / total + e;
            -p * p.ln()
        })
        .sum::<f64>()
        - zeros as f64 * e * e.ln();
    h.exp()
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * b.abs()
}

/// The four bounds of one spectrum: each eigenvalue's absolute error `b` (covariance units;
/// tolerance module), and the relative errors of RankMe, stable rank and participation ratio
/// that follow from it.
struct Bounds {
    eigenvalue: f64,
    rankme: f64,
    stable_rank: f64,
    participation_ratio: f64,
}

/// Bounds for an N × d matrix whose exact covariance eigenvalues are `exact` (descending) and
/// whose rows have mean zero (so ZᵀZ/N = C).
fn bounds(n: usize, exact: &[f64]) -> Bounds {
    let b = covariance_eigenvalue_bound(n, exact.len(), exact.iter().sum(), exact[0]);
    Bounds {
        eigenvalue: b,
        rankme: rankme_bound(exact, b, RANKME_EPSILON),
        stable_rank: stable_rank_bound(exact, b),
        participation_ratio: participation_ratio_bound(exact, b),
    }
}

#[test]
fn rankme_formula_counts_epsilon_for_zero_singular_values() {
    // The formula on exact singular values, no eigensolver: sums of d terms −p ln p with
    // |ln p| ≤ |ln ε| = 16.2, so |δH| ≤ d·ε·(|ln ε| + 1)·2 and RankMe's relative error is the
    // same. Zero singular values count ε log ε each: r = 1 of 64 gives 1.0001, not 1.
    let bound = |d: usize| 2.0 * d as f64 * EPS64 * (RANKME_EPSILON.ln().abs() + 1.0);
    let s: Vec<f64> = (1..=10).rev().map(f64::from).collect();
    let mut with_zeros = s.clone();
    with_zeros.extend([0.0; 54]);
    assert!(close(
        effective_rank(&with_zeros).unwrap(),
        rankme(&s, 54),
        bound(64)
    ));
    for r in [1, 5, 20] {
        let mut sigma = vec![3.0; r];
        sigma.extend(vec![0.0; 64 - r]);
        let value = effective_rank(&sigma).unwrap();
        assert!(close(value, rankme(&vec![3.0; r], 64 - r), bound(64)));
        // The ε terms are resolved: 63·ε·|ln ε| ≈ 1e-4 above r for r = 1.
        assert!(value - r as f64 > 0.5 * (64 - r) as f64 * RANKME_EPSILON * 16.0);
    }
}

#[test]
fn orthogonal_rows_have_full_rank() {
    // Z = [Q; −Q]: mean zero, ZᵀZ = 2I, covariance I/D. Every metric is D.
    let d = 48;
    let q = orthonormal_columns(d, d, 10, false);
    let z = Tensor::cat(&[&q, &(-&q)], 0);
    let exact = vec![1.0 / d as f64; d as usize];
    let b = bounds(2 * d as usize, &exact);
    let m = RankMetrics::from_embeddings(&z, &options(RowNormalisation::None, 1e-6)).unwrap();
    assert_eq!((m.samples, m.dim), (2 * d, d as usize));
    assert!(close(m.effective_rank, rankme(&exact, 0), b.rankme));
    assert!(
        close(m.stable_rank, d as f64, b.stable_rank),
        "{}",
        m.stable_rank
    );
    assert!(close(
        m.participation_ratio,
        d as f64,
        b.participation_ratio
    ));
    assert_eq!(m.collapsed_dimensions, 0);
    // A flat spectrum decays with exponent 0, up to the eigenvalues' bound.
    assert!(m.alpha_req.unwrap().abs() <= alpha_req_bound(&exact, ALPHA_REQ_RANKS, b.eigenvalue));
    // Its rows are unit vectors: L2 normalisation changes nothing (but the division's
    // rounding, ε per entry: a relative 2ε on the eigenvalues, far inside the bound).
    let l2 = RankMetrics::from_embeddings(&z, &options(RowNormalisation::L2, 1e-6)).unwrap();
    assert!(close(
        l2.participation_ratio,
        d as f64,
        b.participation_ratio
    ));
    assert!(close(l2.stable_rank, d as f64, b.stable_rank));
}

#[test]
fn identity_rows_have_one_centred_dimension_less() {
    // Rows e_i: σ all 1 (RankMe and stable rank D); centring removes the mean (1/D)·1,
    // leaving covariance eigenvalues 1/D (D − 1 times) and 0: participation ratio D − 1 and
    // exactly one collapsed dimension.
    let d = 32;
    let z = Tensor::eye(d, (Kind::Float, Device::Cpu));
    let mut exact = vec![1.0 / 32.0; 31];
    exact.push(0.0);
    // RankMe and stable rank read the uncentred ZᵀZ/N = I/D: all eigenvalues 1/D.
    let uncentred = bounds(32, &[1.0 / 32.0; 32]);
    let b = bounds(32, &exact);
    let m = RankMetrics::from_embeddings(&z, &options(RowNormalisation::L2, 1e-6)).unwrap();
    assert!(close(
        m.effective_rank,
        rankme(&vec![1.0; d as usize], 0),
        uncentred.rankme
    ));
    assert!(close(m.stable_rank, d as f64, uncentred.stable_rank));
    assert!(close(
        m.participation_ratio,
        (d - 1) as f64,
        b.participation_ratio
    ));
    // The zero eigenvalue is at most b.eigenvalue = 1.5e-14 ≪ 1e-6·λ₁ = 3e-8.
    assert_eq!(m.collapsed_dimensions, 1);
    let spectrum = embedding_spectrum(&z, RowNormalisation::L2).unwrap();
    assert!(spectrum[..31]
        .iter()
        .all(|l| (l - 1.0 / 32.0).abs() <= b.eigenvalue));
    assert!(spectrum[31].abs() <= b.eigenvalue, "{}", spectrum[31]);
}

#[test]
fn rank_r_matrices_with_known_singular_values() {
    // σ = (10, 9, …, 1) in D = 64 dimensions of N = 300 centred rows: rank 10.
    let (n, d) = (300, 64);
    let s: Vec<f64> = (1..=10).rev().map(f64::from).collect();
    let z = with_singular_values(n, d, &s, 11);
    let m = RankMetrics::from_embeddings(&z, &options(RowNormalisation::None, 1e-10)).unwrap();
    let squares: f64 = s.iter().map(|v| v * v).sum();
    let fourth: f64 = s.iter().map(|v| v.powi(4)).sum();
    let mut exact: Vec<f64> = s.iter().map(|v| v * v / n as f64).collect();
    exact.extend([0.0; 54]);
    let b = bounds(n as usize, &exact);
    // The 54 zero singular values come out of the eigensolver as up to √(N·b) (~1e-5 σ₁ at
    // worst, ~1e-8 σ₁ in practice), which moves their p_k = ε: the RankMe bound covers it,
    // and `rankme_formula_counts_epsilon_for_zero_singular_values` checks the ε terms exactly.
    assert!(
        close(m.effective_rank, rankme(&s, 54), b.rankme),
        "{} vs {} (bound {:e})",
        m.effective_rank,
        rankme(&s, 54),
        b.rankme
    );
    assert!(close(m.stable_rank, squares / 100.0, b.stable_rank));
    assert!(close(
        m.participation_ratio,
        squares * squares / fourth,
        b.participation_ratio
    ));
    // Zeros are at most b.eigenvalue ≈ 2e-13 < 1e-10·λ₁ = 3e-11; λ₁₀/λ₁ = 0.01.
    assert_eq!(m.collapsed_dimensions, 54);
    // Equal singular values: stable rank and participation ratio are r, and RankMe is r but
    // for ε (r = 1: 1.0001 from the 63 zeros' ε log ε).
    for r in [1, 5, 20] {
        let z = with_singular_values(n, d, &vec![3.0; r], 12 + r as u64);
        let mut exact = vec![9.0 / n as f64; r];
        exact.extend(vec![0.0; d as usize - r]);
        let b = bounds(n as usize, &exact);
        let m = RankMetrics::from_embeddings(&z, &options(RowNormalisation::None, 1e-10)).unwrap();
        assert!(
            close(
                m.effective_rank,
                rankme(&vec![3.0; r], d as usize - r),
                b.rankme
            ),
            "r = {r}: {}",
            m.effective_rank
        );
        assert!(close(m.stable_rank, r as f64, b.stable_rank));
        assert!(close(
            m.participation_ratio,
            r as f64,
            b.participation_ratio
        ));
        assert_eq!(m.collapsed_dimensions, d as usize - r);
    }
}

#[test]
fn power_law_covariance_gives_back_alpha() {
    // Covariance eigenvalues exactly k^(−α), k = 1..128: Z = U·diag(√(N k^−α))·Vᵀ.
    let (n, d) = (600, 128);
    for (alpha, seed) in [(0.8, 20), (1.5, 21), (3.3, 22)] {
        let s: Vec<f64> = (1..=d)
            .map(|k| (n as f64 * (k as f64).powf(-alpha)).sqrt())
            .collect();
        let z = with_singular_values(n, d, &s, seed);
        let spectrum = embedding_spectrum(&z, RowNormalisation::None).unwrap();
        let exact: Vec<f64> = (1..=d).map(|k| (k as f64).powf(-alpha)).collect();
        // Absolute, in units of ε·λ₁: λ_120 = 1.4e-7·λ₁ for α = 3.3, so a relative bound on
        // every eigenvalue would ask for digits no f64 eigensolver keeps (tolerance module).
        let bound =
            covariance_eigenvalue_bound(n as usize, d as usize, exact.iter().sum(), exact[0]);
        for (k, (l, e)) in spectrum.iter().zip(&exact).enumerate() {
            assert!(
                (l - e).abs() <= bound,
                "α {alpha}, k {k}: {l:e} vs {e:e}, bound {bound:e}"
            );
        }
        // α-ReQ's slope moves by at most the bound's effect on each ln λ_k it fits.
        let alpha_bound = alpha_req_bound(&exact, ALPHA_REQ_RANKS, bound);
        let fitted = alpha_req(&spectrum).unwrap();
        assert!(
            (fitted - alpha).abs() <= alpha_bound,
            "α {alpha}: fitted {fitted}, bound {alpha_bound:e}"
        );
        let m = RankMetrics::from_embeddings(&z, &options(RowNormalisation::None, 1e-6)).unwrap();
        assert!((m.alpha_req.unwrap() - alpha).abs() <= alpha_bound);
        let pr = exact.iter().sum::<f64>().powi(2) / exact.iter().map(|v| v * v).sum::<f64>();
        assert!(close(
            m.participation_ratio,
            pr,
            participation_ratio_bound(&exact, bound)
        ));
        // λ_k / λ_1 = k^−α < 1e-6 for k > 10^(6/α): none for α ≤ 1.5, k ≥ 66 for α = 3.3
        // (65^−3.3 = 1.04e-6, 66^−3.3 = 0.99e-6: 1 % from the threshold, while the bound moves
        // λ_k by ≤ 2e-12, a relative 2e-6 there).
        let collapsed = (1..=d).filter(|&k| (k as f64).powf(-alpha) < 1e-6).count();
        assert_eq!(m.collapsed_dimensions, collapsed);
    }
}

#[test]
fn gaussian_covariance_follows_marchenko_pastur() {
    // N × D standard normal, γ = D/N = 0.1: the covariance eigenvalues fill
    // [(1 − √γ)², (1 + √γ)²] = [0.468, 1.732]; E λ = 1 and E λ² = 1 + γ, so the participation
    // ratio tends to D / (1 + γ). Edges get finite-size fluctuations of order N^(−2/3).
    // The margins below are statistical, not numerical: the data are the same bits on every
    // machine (ChaCha8 draws rounded to f32), and the spectrum's rounding (tolerance module:
    // ≤ 2ε·(N·D + N + 2D)·λ₁ ≈ 1e-9) is far inside every margin.
    let (n, d) = (4000, 400);
    let gamma = d as f64 / n as f64;
    let (lower, upper) = ((1.0 - gamma.sqrt()).powi(2), (1.0 + gamma.sqrt()).powi(2));
    for seed in [30, 31, 32] {
        let z = gaussian(n, d, seed).to_kind(Kind::Float);
        let spectrum = embedding_spectrum(&z, RowNormalisation::None).unwrap();
        let (top, bottom) = (spectrum[0], spectrum[d as usize - 1]);
        // Tracy–Widom: the edge moves by ~(1 + √γ)^(4/3)·N^(−2/3) ≈ 0.4 % of it; 3 % is 7σ.
        assert!(
            top < upper * 1.03 && top > upper * 0.97,
            "seed {seed}: λ₁ {top}"
        );
        assert!(
            bottom > lower * 0.97 && bottom < lower * 1.03,
            "seed {seed}: λ_D {bottom}"
        );
        let mean = spectrum.iter().sum::<f64>() / d as f64;
        // tr C / D is a mean of N·D squares: sd √(2/(N·D)) = 0.11 %; 1 % is 9σ.
        assert!(close(mean, 1.0, 0.01), "seed {seed}: mean {mean}");
        let m = RankMetrics::from_embeddings(&z, &options(RowNormalisation::None, 1e-6)).unwrap();
        // The finite-N correction to E λ² is O(1/N) and its spread ~0.3 %: 2 % is a wide margin.
        assert!(close(m.participation_ratio, d as f64 / (1.0 + gamma), 0.02));
        // λ_D/λ₁ ≈ 0.27 ≫ 1e-6.
        assert_eq!(m.collapsed_dimensions, 0);
        // Singular values √N·(1 ± √γ) at most: nearly flat, RankMe close to D (the entropy of
        // σ ∝ √λ over [0.68, 1.32] loses < 1 % of ln D; 2 % is the margin).
        assert!(
            m.effective_rank > 0.98 * d as f64 && m.effective_rank < d as f64,
            "{}",
            m.effective_rank
        );
        // Nearly flat too: a small decay exponent (ln λ spans ±0.25 over ln k ∈ [1.6, 4.6]).
        assert!(m.alpha_req.unwrap().abs() < 0.2);
    }
}

#[test]
fn collapsed_dimensions_of_embeddings_like_the_paper() {
    // 128-d embeddings whose last 40 dimensions carry 1e-6 of the scale (λ ratio ~1e-12):
    // after L2 normalisation they are collapsed at the 1e-6 threshold, the rest are not. The
    // common mean lies in the live dimensions: a mean component along collapsed ones would
    // be scaled by each row's 1/‖z‖ under normalisation and give them variance.
    let (n, d, collapsed) = (2000, 128, 40);
    let live = d - collapsed;
    let cpu = (Kind::Double, Device::Cpu);
    let scale = Tensor::cat(
        &[
            Tensor::linspace(1.0, 0.3, live, cpu),
            Tensor::full([collapsed], 1e-6, cpu),
        ],
        0,
    );
    let mean = Tensor::cat(
        &[
            Tensor::full([live], 0.3, cpu),
            Tensor::zeros([collapsed], cpu),
        ],
        0,
    );
    let rotation = orthonormal_columns(d, d, 41, false);
    let z = (gaussian(n, d, 40) * scale + mean)
        .matmul(&rotation)
        .to_kind(Kind::Float);
    let m = RankMetrics::from_embeddings(&z, &RankOptions::default()).unwrap();
    assert_eq!(m.rows, RowNormalisation::L2);
    // Collapsed: their own variance (1e-6)² plus the f32 rounding of z (≤ ε32·|z| per entry,
    // variance ≲ 1e-15) is ≲ 1e-12 of λ₁; live: λ/λ₁ ≥ 0.3² = 0.09. Both six decades or more
    // from the 1e-6 threshold, whatever the kernels' rounding.
    assert_eq!(m.collapsed_dimensions, collapsed as usize);
    // The rotation spreads the collapsed directions over every coordinate: each coordinate's
    // variance is a weighted mean of the λ's, ~(88/128)·0.4 of λ₁ on average, none near 1e-6.
    assert_eq!(m.constant_coordinates, Some(0));
    // Structural bounds: 88 live dimensions with variances 0.09..1 (RankMe of σ ∝ 0.3..1).
    assert!(m.effective_rank < (d - collapsed) as f64 && m.effective_rank > 40.0);
}

#[test]
fn dead_coordinates_are_told_apart_from_collapsed_directions() {
    // 16-d non-negative embeddings (as pooled ReLU features): coordinates 0 and 1 are zero for
    // every sample (dead channels), coordinate 3 copies coordinate 2 (a collapsed direction,
    // (e₂ − e₃)/√2, that mixes two live coordinates). Zero columns stay zero and equal columns
    // stay equal under the row normalisation, so the three eigenvalues are zero up to the
    // eigensolver's rounding (≲ d·ε64·λ₁ ≈ 4e-15 λ₁, nine decades below 1e-6) and the
    // variances of the 14 live coordinates are of the order of λ₁/16.
    let (n, d) = (500, 16);
    let live = gaussian(n, d, 60).abs();
    let dead = Tensor::zeros([n, 2], (Kind::Double, Device::Cpu));
    let z = Tensor::cat(
        &[
            dead,
            live.narrow(1, 2, 1),
            live.narrow(1, 2, 1),
            live.narrow(1, 4, 12),
        ],
        1,
    );
    assert_eq!(z.size(), [n, d]);
    let m = RankMetrics::from_embeddings(&z, &RankOptions::default()).unwrap();
    assert_eq!(m.collapsed_dimensions, 3);
    assert_eq!(m.constant_coordinates, Some(2));
    // From spectra alone the coordinates are unknown.
    let ev = embedding_spectrum(&z, RowNormalisation::L2).unwrap();
    let sv: Vec<f64> = ev.iter().map(|v| v.max(0.0).sqrt()).collect();
    let m = RankMetrics::from_spectra(&ev, &sv, &RankOptions::default()).unwrap();
    assert_eq!(m.constant_coordinates, None);
}

#[test]
fn metrics_serialise_for_the_log() {
    let z = gaussian(200, 8, 50);
    let m = RankMetrics::from_embeddings(&z, &RankOptions::default()).unwrap();
    // Eight dimensions: α-ReQ fits ranks 5..8, four points.
    assert!(m.alpha_req.is_some());
    let json = serde_json::to_string(&m).unwrap();
    assert!(
        json.contains("\"effective_rank\"") && json.contains("\"rows\":\"l2\""),
        "{json}"
    );
    assert_eq!(serde_json::from_str::<RankMetrics>(&json).unwrap(), m);
    assert!(json.contains("\"constant_coordinates\":0"), "{json}");
    // A log written before `constant_coordinates` existed reads back with it unknown.
    let mut old: serde_json::Value = serde_json::from_str(&json).unwrap();
    old.as_object_mut().unwrap().remove("constant_coordinates");
    let back: RankMetrics = serde_json::from_value(old).unwrap();
    assert_eq!(back.constant_coordinates, None);
    // Five dimensions: α-ReQ is undefined and logged as null.
    let m = RankMetrics::from_embeddings(&gaussian(200, 5, 51), &RankOptions::default()).unwrap();
    assert_eq!(m.alpha_req, None);
    assert!(serde_json::to_string(&m)
        .unwrap()
        .contains("\"alpha_req\":null"));
    // Options read from a config with defaults.
    let o: RankOptions = serde_json::from_str("{\"collapse_threshold\": 1e-4}").unwrap();
    assert_eq!(o, options(RowNormalisation::L2, 1e-4));
}

#[test]
fn bad_options_and_spectra_are_errors() {
    let z = gaussian(50, 6, 60);
    for threshold in [-1.0, f64::NAN] {
        assert!(matches!(
            RankMetrics::from_embeddings(&z, &options(RowNormalisation::L2, threshold)),
            Err(Error::InvalidConfig { .. })
        ));
    }
    assert!(matches!(
        RankMetrics::from_spectra(&[1.0, 0.5], &[1.0], &RankOptions::default()),
        Err(Error::InvalidConfig { .. })
    ));
    // All-zero embeddings: no rank to speak of.
    let zeros = Tensor::zeros([10, 4], (Kind::Float, Device::Cpu));
    assert!(matches!(
        RankMetrics::from_embeddings(&zeros, &RankOptions::default()),
        Err(Error::InvalidConfig { .. })
    ));
}

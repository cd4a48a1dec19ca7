//! Rank metrics of embedding matrices with known answers: orthogonal and identity matrices,
//! rank-r matrices with chosen singular values, a power-law covariance, Gaussian matrices
//! against the Marchenko–Pastur law, and embeddings with collapsed dimensions.
mod analysis_util;

use analysis_util::{gaussian, orthonormal_columns, with_singular_values};
use directclr::analysis::{
    alpha_req, embedding_spectrum, RankMetrics, RankOptions, RowNormalisation, RANKME_EPSILON,
};
use directclr::Error;
use tch::{Device, Kind, Tensor};

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

#[test]
fn orthogonal_rows_have_full_rank() {
    // Z = [Q; −Q]: mean zero, ZᵀZ = 2I, covariance I/D. Every metric is D.
    let d = 48;
    let q = orthonormal_columns(d, d, 10, false);
    let z = Tensor::cat(&[&q, &(-&q)], 0);
    let m = RankMetrics::from_embeddings(&z, &options(RowNormalisation::None, 1e-6)).unwrap();
    assert_eq!((m.samples, m.dim), (2 * d, d as usize));
    assert!(close(
        m.effective_rank,
        rankme(&vec![1.0; d as usize], 0),
        1e-12
    ));
    assert!(close(m.stable_rank, d as f64, 1e-12), "{}", m.stable_rank);
    assert!(close(m.participation_ratio, d as f64, 1e-12));
    assert_eq!(m.collapsed_dimensions, 0);
    // A flat spectrum decays with exponent 0.
    assert!(m.alpha_req.unwrap().abs() < 1e-10);
    // Its rows are unit vectors: L2 normalisation changes nothing.
    let l2 = RankMetrics::from_embeddings(&z, &options(RowNormalisation::L2, 1e-6)).unwrap();
    assert!(close(l2.participation_ratio, d as f64, 1e-12));
    assert!(close(l2.stable_rank, d as f64, 1e-12));
}

#[test]
fn identity_rows_have_one_centred_dimension_less() {
    // Rows e_i: σ all 1 (RankMe and stable rank D); centring removes the mean (1/D)·1,
    // leaving covariance eigenvalues 1/D (D − 1 times) and 0: participation ratio D − 1 and
    // exactly one collapsed dimension.
    let d = 32;
    let z = Tensor::eye(d, (Kind::Float, Device::Cpu));
    let m = RankMetrics::from_embeddings(&z, &options(RowNormalisation::L2, 1e-6)).unwrap();
    assert!(close(
        m.effective_rank,
        rankme(&vec![1.0; d as usize], 0),
        1e-12
    ));
    assert!(close(m.stable_rank, d as f64, 1e-12));
    assert!(close(m.participation_ratio, (d - 1) as f64, 1e-12));
    assert_eq!(m.collapsed_dimensions, 1);
    let spectrum = embedding_spectrum(&z, RowNormalisation::L2).unwrap();
    assert!(spectrum[..31].iter().all(|l| close(*l, 1.0 / 32.0, 1e-13)));
    assert!(spectrum[31].abs() < 1e-16);
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
    // The 54 zero singular values come from the Gram matrix's round-off eigenvalues as
    // σ ≈ 1e-8 σ₁ rather than 0, which moves RankMe's p_k = ε by about 1e-9: 1e-6 relative.
    assert!(
        close(m.effective_rank, rankme(&s, 54), 1e-5),
        "{} vs {}",
        m.effective_rank,
        rankme(&s, 54)
    );
    assert!(close(m.stable_rank, squares / 100.0, 1e-12));
    assert!(close(
        m.participation_ratio,
        squares * squares / fourth,
        1e-12
    ));
    assert_eq!(m.collapsed_dimensions, 54);
    // Equal singular values: stable rank and participation ratio are r, and RankMe is r but
    // for ε (r = 1: 1.0001 from the 63 zeros' ε log ε).
    for r in [1, 5, 20] {
        let z = with_singular_values(n, d, &vec![3.0; r], 12 + r as u64);
        let m = RankMetrics::from_embeddings(&z, &options(RowNormalisation::None, 1e-10)).unwrap();
        assert!(
            close(
                m.effective_rank,
                rankme(&vec![3.0; r], d as usize - r),
                1e-5
            ),
            "r = {r}: {}",
            m.effective_rank
        );
        assert!(close(m.stable_rank, r as f64, 1e-12));
        assert!(close(m.participation_ratio, r as f64, 1e-12));
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
        for (k, l) in spectrum.iter().enumerate() {
            assert!(
                close(*l, ((k + 1) as f64).powf(-alpha), 1e-10),
                "α {alpha}, k {k}"
            );
        }
        assert!((alpha_req(&spectrum).unwrap() - alpha).abs() < 1e-9);
        let m = RankMetrics::from_embeddings(&z, &options(RowNormalisation::None, 1e-6)).unwrap();
        assert!((m.alpha_req.unwrap() - alpha).abs() < 1e-9);
        let l: Vec<f64> = (1..=d).map(|k| (k as f64).powf(-alpha)).collect();
        let pr = l.iter().sum::<f64>().powi(2) / l.iter().map(|v| v * v).sum::<f64>();
        assert!(close(m.participation_ratio, pr, 1e-10));
        // λ_k / λ_1 = k^−α < 1e-6 for k > 10^(6/α): none for α ≤ 1.5, k ≥ 66 for α = 3.3
        // (65^−3.3 = 1.04e-6, 66^−3.3 = 0.99e-6).
        let collapsed = (1..=d).filter(|&k| (k as f64).powf(-alpha) < 1e-6).count();
        assert_eq!(m.collapsed_dimensions, collapsed);
    }
}

#[test]
fn gaussian_covariance_follows_marchenko_pastur() {
    // N × D standard normal, γ = D/N = 0.1: the covariance eigenvalues fill
    // [(1 − √γ)², (1 + √γ)²] = [0.468, 1.732]; E λ = 1 and E λ² = 1 + γ, so the participation
    // ratio tends to D / (1 + γ). Edges get finite-size fluctuations of order N^(−2/3).
    let (n, d) = (4000, 400);
    let gamma = d as f64 / n as f64;
    let (lower, upper) = ((1.0 - gamma.sqrt()).powi(2), (1.0 + gamma.sqrt()).powi(2));
    for seed in [30, 31, 32] {
        let z = gaussian(n, d, seed).to_kind(Kind::Float);
        let spectrum = embedding_spectrum(&z, RowNormalisation::None).unwrap();
        let (top, bottom) = (spectrum[0], spectrum[d as usize - 1]);
        assert!(
            top < upper * 1.03 && top > upper * 0.97,
            "seed {seed}: λ₁ {top}"
        );
        assert!(
            bottom > lower * 0.97 && bottom < lower * 1.03,
            "seed {seed}: λ_D {bottom}"
        );
        let mean = spectrum.iter().sum::<f64>() / d as f64;
        assert!(close(mean, 1.0, 0.01), "seed {seed}: mean {mean}");
        let m = RankMetrics::from_embeddings(&z, &options(RowNormalisation::None, 1e-6)).unwrap();
        assert!(close(m.participation_ratio, d as f64 / (1.0 + gamma), 0.02));
        assert_eq!(m.collapsed_dimensions, 0);
        // Singular values √N·(1 ± √γ) at most: nearly flat, RankMe close to D.
        assert!(
            m.effective_rank > 0.98 * d as f64 && m.effective_rank < d as f64,
            "{}",
            m.effective_rank
        );
        // Nearly flat too: a small decay exponent.
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
    assert_eq!(m.collapsed_dimensions, collapsed as usize);
    assert!(m.effective_rank < (d - collapsed) as f64 && m.effective_rank > 40.0);
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

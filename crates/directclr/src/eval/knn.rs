//! k-nearest-neighbour classification of features (the weighted kNN of instance
//! discrimination, used by peers as a probe-free accuracy).
//!
//! Each test feature and every training feature are L2-normalised; the k training samples of
//! highest cosine similarity s vote for their labels with weight exp(s / T); classes are
//! ranked by their summed votes.

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use super::classifier::accuracies;
use super::features::Features;
use crate::{Error, Result};

/// kNN settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KnnConfig {
    /// Neighbours per query (peers use 20 or 200).
    pub k: usize,
    /// Temperature T of the votes exp(s / T).
    pub temperature: f64,
    /// Queries per similarity block (bounds memory: block × N floats).
    pub block: usize,
}

impl Default for KnnConfig {
    fn default() -> Self {
        KnnConfig {
            k: 200,
            temperature: 0.07,
            block: 512,
        }
    }
}

/// The outcome of [`knn`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct KnnReport {
    /// The settings (k capped at the memory bank's size).
    pub config: KnnConfig,
    /// Top-1 accuracy (%).
    pub top1: f64,
    /// Top-5 accuracy (%).
    pub top5: f64,
}

/// The class votes of every query.
///
/// # Shapes
/// `bank.x`: `[N, D]`, `bank.labels`: `[N]` in `0..classes`; `queries`: `[M, D]` →
/// `[M, classes]` f32.
pub fn knn_votes(
    bank: &Features,
    queries: &Tensor,
    classes: i64,
    config: &KnnConfig,
) -> Result<Tensor> {
    if config.k == 0 || config.block == 0 {
        return Err(Error::config("knn.k", "k and block must be at least 1"));
    }
    if !(config.temperature.is_finite() && config.temperature > 0.0) {
        return Err(Error::config(
            "knn.temperature",
            format!("{} is not positive", config.temperature),
        ));
    }
    if queries.dim() != 2 || queries.size()[1] != bank.dim() {
        return Err(Error::config(
            "features",
            format!(
                "queries of shape {:?} do not match the memory bank's {} features",
                queries.size(),
                bank.dim()
            ),
        ));
    }
    let _g = tch::no_grad_guard();
    let k = (config.k as i64).min(bank.x.size()[0]);
    let normalise = |x: &Tensor| -> Result<Tensor> {
        let x = x.f_to_kind(Kind::Float)?;
        let norm = x
            .f_norm_scalaropt_dim(2, [1i64].as_slice(), true)?
            .f_clamp_min(1e-12)?;
        Ok(x.f_div(&norm)?)
    };
    let bank_x = normalise(&bank.x)?; // [N, D]
    let bank_y = bank.labels.f_to_kind(Kind::Int64)?; // [N]
    let q = normalise(queries)?; // [M, D]
    let m = q.size()[0];
    let mut out = Vec::new();
    let mut start = 0;
    while start < m {
        let len = (config.block as i64).min(m - start);
        let sim = q.f_narrow(0, start, len)?.f_matmul(&bank_x.f_tr()?)?; // [len, N]
        let (vals, idx) = sim.f_topk(k, 1, true, true)?; // [len, k]
        let labels = bank_y
            .f_index_select(0, &idx.f_flatten(0, -1)?)?
            .f_view([len, k])?;
        let weights = vals.f_div_scalar(config.temperature)?.f_exp()?; // [len, k]
        let votes = Tensor::f_zeros([len, classes], (Kind::Float, q.device()))?
            .f_scatter_add(1, &labels, &weights)?;
        out.push(votes);
        start += len;
    }
    Ok(Tensor::f_cat(&out, 0)?)
}

/// kNN top-1 / top-5 accuracy of `test` against the memory bank `train`.
pub fn knn(
    train: &Features,
    test: &Features,
    classes: i64,
    config: &KnnConfig,
) -> Result<KnnReport> {
    let votes = knn_votes(train, &test.x, classes, config)?;
    let (top1, top5) = accuracies(&votes, &test.labels.f_to_kind(Kind::Int64)?, 5)?;
    Ok(KnnReport {
        config: KnnConfig {
            k: config.k.min(train.len()),
            ..*config
        },
        top1,
        top5,
    })
}

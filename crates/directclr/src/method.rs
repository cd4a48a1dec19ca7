//! The methods of the paper's Table 1 as one enum: each differs from the others only in how it
//! maps the representation r to the embedding z that enters the loss.

use serde::{Deserialize, Serialize};
use tch::nn;

use crate::model::Head;
use crate::{Error, Result};

/// One row of the paper's Table 1 (ImageNet linear probe after 100 epochs in brackets).
///
/// Every method trains the same encoder with the same loss (the authors' InfoNCE,
/// [`crate::loss::InfoNce::authors`]); only the projector g in z = g(r) differs. Serialised
/// with a `kind` tag, e.g. `{ kind = "direct_clr", d0 = 360 }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Method {
    /// SimCLR with the 2-layer nonlinear projector (66.5 %): Linear(D→h, no bias), BN, ReLU,
    /// Linear(h→out, no bias), BN (authors: D = h = 2048, out = 128).
    SimclrMlp {
        /// Hidden width h; `None` means D, the dimension of r (the authors' 2048).
        #[serde(default)]
        hidden_dim: Option<i64>,
        /// Embedding dimension (authors: 128).
        #[serde(default = "default_out_dim")]
        out_dim: i64,
    },
    /// SimCLR with a 1-layer linear projector (61.1 %): Linear(D→out, no bias).
    SimclrLinear {
        /// Embedding dimension (authors: 128).
        #[serde(default = "default_out_dim")]
        out_dim: i64,
    },
    /// SimCLR without projector (51.5 %): z = r.
    SimclrNoProjector,
    /// DirectCLR (62.7 %): z = r[:, :d0], the loss acts on a fixed sub-vector of r.
    DirectClr {
        /// Number of leading coordinates of r (authors: 360); at most D.
        #[serde(default = "default_d0")]
        d0: i64,
    },
    /// Ablation (62.3 %): a frozen projector of rank `rank` with singular values 1, random
    /// orthogonal singular vectors drawn from `seed`.
    FixedLowRank {
        /// Rank of the projector (the paper: d0 = 360); at most D.
        #[serde(default = "default_d0")]
        rank: i64,
        /// Seed of the singular vectors (independent of the run's seed, so that the projector
        /// is a property of the method).
        #[serde(default)]
        seed: u64,
    },
    /// Ablation (60.2 %): a trainable diagonal projector z = r ⊙ w, w initialised to ones.
    TrainableDiagonal,
}

fn default_out_dim() -> i64 {
    128
}

fn default_d0() -> i64 {
    360
}

fn positive(field: &str, v: i64) -> Result<()> {
    if v < 1 {
        return Err(Error::config(field, format!("{v} must be at least 1")));
    }
    Ok(())
}

fn at_most(field: &str, v: i64, feat_dim: i64) -> Result<()> {
    positive(field, v)?;
    if v > feat_dim {
        return Err(Error::config(
            field,
            format!("{v} exceeds the dimension of the representation r ({feat_dim})"),
        ));
    }
    Ok(())
}

impl Default for Method {
    /// DirectCLR with d0 = 360.
    fn default() -> Self {
        Method::DirectClr { d0: default_d0() }
    }
}

/// The paper's DirectCLR linear probe on the sub-vector z = r[:d0] alone (ImageNet top-1, %).
pub const PAPER_DIRECTCLR_SUBVECTOR_TOP1: f64 = 47.9;

impl Method {
    /// The paper's Table 1 linear-probe top-1 (%) of this row on ImageNet (ResNet-50, 100
    /// epochs), printed beside measured numbers.
    pub fn paper_top1(&self) -> f64 {
        match self {
            Method::SimclrMlp { .. } => 66.5,
            Method::SimclrLinear { .. } => 61.1,
            Method::SimclrNoProjector => 51.5,
            Method::DirectClr { .. } => 62.7,
            Method::FixedLowRank { .. } => 62.3,
            Method::TrainableDiagonal => 60.2,
        }
    }

    /// A short name for logs and run folders (`simclr_mlp`, `direct_clr`, …).
    pub fn name(&self) -> &'static str {
        match self {
            Method::SimclrMlp { .. } => "simclr_mlp",
            Method::SimclrLinear { .. } => "simclr_linear",
            Method::SimclrNoProjector => "simclr_no_projector",
            Method::DirectClr { .. } => "direct_clr",
            Method::FixedLowRank { .. } => "fixed_low_rank",
            Method::TrainableDiagonal => "trainable_diagonal",
        }
    }

    /// Checks the method against the dimension D of r and returns the dimension of z.
    pub fn embed_dim(&self, feat_dim: i64) -> Result<i64> {
        positive("feat_dim", feat_dim)?;
        Ok(match *self {
            Method::SimclrMlp {
                hidden_dim,
                out_dim,
            } => {
                positive("hidden_dim", hidden_dim.unwrap_or(feat_dim))?;
                positive("out_dim", out_dim)?;
                out_dim
            }
            Method::SimclrLinear { out_dim } => {
                positive("out_dim", out_dim)?;
                out_dim
            }
            Method::SimclrNoProjector | Method::TrainableDiagonal => feat_dim,
            Method::DirectClr { d0 } => {
                at_most("d0", d0, feat_dim)?;
                d0
            }
            Method::FixedLowRank { rank, .. } => {
                at_most("rank", rank, feat_dim)?;
                feat_dim
            }
        })
    }

    /// Checks the method against D = `feat_dim` and builds its projector under `path`
    /// (trainable parameters for the MLP, linear and diagonal projectors; a frozen buffer for
    /// the fixed low-rank one; nothing for DirectCLR and no projector). Trainable weights use
    /// libtorch's global generator: seed it first.
    ///
    /// # Shapes
    /// The head maps r `[batch, D]` to z `[batch, embed_dim(D)]` with [`Head::embed`].
    pub fn build(&self, path: &nn::Path, feat_dim: i64) -> Result<Head> {
        let out = self.embed_dim(feat_dim)?;
        match *self {
            Method::SimclrMlp { hidden_dim, .. } => {
                Head::mlp(path, feat_dim, hidden_dim.unwrap_or(feat_dim), out)
            }
            Method::SimclrLinear { .. } => Head::linear(path, feat_dim, out),
            Method::SimclrNoProjector => Ok(Head::identity(feat_dim)),
            Method::DirectClr { d0 } => Ok(Head::truncate(feat_dim, d0)),
            Method::FixedLowRank { rank, seed } => Head::fixed_low_rank(path, feat_dim, rank, seed),
            Method::TrainableDiagonal => Head::diagonal(path, feat_dim),
        }
    }
}

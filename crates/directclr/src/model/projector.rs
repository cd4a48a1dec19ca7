//! The projectors g of the paper's Table 1: z = g(r), from the representation r to the
//! embedding z that enters the loss.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use tch::nn::{self, Init};
use tch::{Kind, Tensor};

use super::batch_norm::BatchNorm;
use super::state::StateRecorder;
use crate::{Error, Result};

/// PyTorch's default initialisation of `nn.Linear` weights (`kaiming_uniform_(a=√5)`):
/// U(−1/√in, 1/√in).
fn linear_init(c_in: i64) -> Init {
    let bound = 1.0 / (c_in as f64).sqrt();
    Init::Uniform {
        lo: -bound,
        up: bound,
    }
}

fn check_input(r: &Tensor, in_dim: i64) -> Result<()> {
    let s = r.size();
    if s.len() != 2 || s[1] != in_dim {
        return Err(Error::config(
            "representation",
            format!("expected r of shape [batch, {in_dim}], got {s:?}"),
        ));
    }
    Ok(())
}

/// SimCLR's 2-layer nonlinear projector as the authors built it (`mode simclr`):
/// `Sequential(Linear(D→h, bias=False), BatchNorm1d(h), ReLU, Linear(h→o, bias=False),
/// BatchNorm1d(o))`, state names `0.weight`, `1.*`, `3.weight`, `4.*`.
#[derive(Debug)]
pub struct MlpProjector {
    fc1: Tensor,
    bn1: BatchNorm,
    fc2: Tensor,
    bn2: BatchNorm,
}

impl MlpProjector {
    pub(crate) fn new(
        p: &nn::Path,
        rec: &mut StateRecorder,
        d: i64,
        hidden: i64,
        out: i64,
    ) -> Result<Self> {
        let fc1 = rec.param(&p.sub("0"), "weight", &[hidden, d], linear_init(d))?;
        let bn1 = BatchNorm::new(&p.sub("1"), rec, hidden, 1.0)?;
        let fc2 = rec.param(&p.sub("3"), "weight", &[out, hidden], linear_init(hidden))?;
        let bn2 = BatchNorm::new(&p.sub("4"), rec, out, 1.0)?;
        Ok(MlpProjector { fc1, bn1, fc2, bn2 })
    }

    fn hidden_t(&self, r: &Tensor, train: bool) -> Result<Tensor> {
        Ok(self
            .bn1
            .forward_t(&r.f_matmul(&self.fc1.f_tr()?)?, train)?
            .f_relu()?) // [batch, h]
    }

    fn forward_t(&self, r: &Tensor, train: bool) -> Result<Tensor> {
        let h = self.hidden_t(r, train)?; // [batch, h]
        self.bn2.forward_t(&h.f_matmul(&self.fc2.f_tr()?)?, train) // [batch, o]
    }
}

/// A trainable matrix without bias, z = r Wᵀ (`weight` `[out, D]`), initialised as PyTorch's
/// `nn.Linear`: the authors' 1-layer linear projector (`mode single`).
#[derive(Debug)]
pub struct LinearProjector {
    weight: Tensor,
}

/// The fixed low-rank projector of the paper's ablation (Section 6.3): z = M r with
/// M = U diag(1, …, 1, 0, …, 0) Vᵀ (`rank` ones), U and V Haar-random orthogonal D×D matrices
/// drawn from a seed, M frozen (a buffer `weight` `[D, D]`, not trainable, not in the
/// optimiser). z keeps D coordinates, of which only a rank-d0 subspace varies; the loss on
/// normalised z equals the loss on V[:, :d0]ᵀ r, DirectCLR up to a fixed rotation.
#[derive(Debug)]
pub struct FixedLowRankProjector {
    weight: Tensor,
}

impl FixedLowRankProjector {
    /// The matrix M (`[d, d]`, float64, CPU) of rank `rank` for `seed`: the same on every
    /// machine (ChaCha8 normals, then libtorch's QR with signs fixed so that the factors are
    /// Haar-distributed).
    pub fn matrix(d: i64, rank: i64, seed: u64) -> Result<Tensor> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut orthogonal = || -> Result<Tensor> {
            let g: Vec<f64> = (0..d * d)
                .map(|_| StandardNormal.sample(&mut rng))
                .collect();
            let g = Tensor::from_slice(&g).f_reshape([d, d])?;
            let (q, r) = Tensor::f_linalg_qr(&g, "reduced")?;
            let signs = r.f_diagonal(0, 0, 1)?.f_sign()?; // [d]
            Ok(q.f_mul(&signs.f_unsqueeze(0)?)?)
        };
        let u = orthogonal()?.f_narrow(1, 0, rank)?; // [d, rank]
        let v = orthogonal()?.f_narrow(1, 0, rank)?; // [d, rank]
        Ok(u.f_mm(&v.f_tr()?)?)
    }
}

/// The trainable diagonal projector of the paper's ablation (Section 6.3): z = r ⊙ w with
/// w ∈ ℝᴰ (`weight` `[D]`) initialised to ones. Being 1-d, w is excluded from weight decay and
/// the LARS trust ratio like the other 1-d parameters.
#[derive(Debug)]
pub struct DiagonalProjector {
    weight: Tensor,
}

/// A built projector, one per row of the paper's Table 1 (see [`crate::method::Method`]).
#[derive(Debug)]
pub enum Projector {
    /// SimCLR, 2-layer nonlinear projector.
    Mlp(MlpProjector),
    /// SimCLR, 1-layer linear projector.
    Linear(LinearProjector),
    /// SimCLR without projector: z = r.
    Identity,
    /// DirectCLR: z = r[:, :d0], no parameters.
    Truncate {
        /// The number of leading coordinates of r kept.
        d0: i64,
    },
    /// Fixed low-rank projector.
    FixedLowRank(FixedLowRankProjector),
    /// Trainable diagonal projector.
    Diagonal(DiagonalProjector),
}

/// A [`Projector`] with its input and output dimensions and its named state.
#[derive(Debug)]
pub struct Head {
    projector: Projector,
    in_dim: i64,
    out_dim: i64,
    state: Vec<(String, Tensor)>,
}

impl Head {
    pub(crate) fn mlp(p: &nn::Path, d: i64, hidden: i64, out: i64) -> Result<Self> {
        let mut rec = StateRecorder::new(p);
        let mlp = MlpProjector::new(p, &mut rec, d, hidden, out)?;
        Ok(Head {
            projector: Projector::Mlp(mlp),
            in_dim: d,
            out_dim: out,
            state: rec.finish(),
        })
    }

    pub(crate) fn linear(p: &nn::Path, d: i64, out: i64) -> Result<Self> {
        let mut rec = StateRecorder::new(p);
        let weight = rec.param(p, "weight", &[out, d], linear_init(d))?;
        Ok(Head {
            projector: Projector::Linear(LinearProjector { weight }),
            in_dim: d,
            out_dim: out,
            state: rec.finish(),
        })
    }

    pub(crate) fn identity(d: i64) -> Self {
        Head {
            projector: Projector::Identity,
            in_dim: d,
            out_dim: d,
            state: Vec::new(),
        }
    }

    pub(crate) fn truncate(d: i64, d0: i64) -> Self {
        Head {
            projector: Projector::Truncate { d0 },
            in_dim: d,
            out_dim: d0,
            state: Vec::new(),
        }
    }

    pub(crate) fn fixed_low_rank(p: &nn::Path, d: i64, rank: i64, seed: u64) -> Result<Self> {
        let mut rec = StateRecorder::new(p);
        let m = FixedLowRankProjector::matrix(d, rank, seed)?.f_to_kind(Kind::Float)?;
        let weight = rec.buffer(p, "weight", m)?;
        Ok(Head {
            projector: Projector::FixedLowRank(FixedLowRankProjector { weight }),
            in_dim: d,
            out_dim: d,
            state: rec.finish(),
        })
    }

    pub(crate) fn diagonal(p: &nn::Path, d: i64) -> Result<Self> {
        let mut rec = StateRecorder::new(p);
        let weight = rec.param(p, "weight", &[d], Init::Const(1.0))?;
        Ok(Head {
            projector: Projector::Diagonal(DiagonalProjector { weight }),
            in_dim: d,
            out_dim: d,
            state: rec.finish(),
        })
    }

    /// The projector.
    pub fn projector(&self) -> &Projector {
        &self.projector
    }

    /// Dimension D of the representation r it takes.
    pub fn in_dim(&self) -> i64 {
        self.in_dim
    }

    /// Dimension of the embedding z it gives.
    pub fn out_dim(&self) -> i64 {
        self.out_dim
    }

    /// Width h of the hidden layer of SimCLR's 2-layer projector; `None` for the projectors
    /// without one.
    pub fn hidden_dim(&self) -> Option<i64> {
        match &self.projector {
            Projector::Mlp(m) => Some(m.fc1.size()[0]),
            _ => None,
        }
    }

    /// DirectCLR's d0, the leading coordinates of r the loss acts on (z = r[:d0]); `None`
    /// for the other projectors.
    pub fn d0(&self) -> Option<i64> {
        match self.projector {
            Projector::Truncate { d0 } => Some(d0),
            _ => None,
        }
    }

    /// Its parameters and buffers under PyTorch-style names relative to its build path
    /// (`0.weight`, `1.running_mean`, … for the MLP; `weight` for the others; none for the
    /// identity and DirectCLR).
    pub fn named_tensors(&self) -> &[(String, Tensor)] {
        &self.state
    }

    /// The embedding z = g(r). `train` selects batch statistics for the MLP's BNs (and
    /// updates their running statistics); the other projectors ignore it.
    ///
    /// # Shapes
    /// - `r`: `[batch, in_dim]` → z: `[batch, out_dim]`.
    pub fn embed(&self, r: &Tensor, train: bool) -> Result<Tensor> {
        check_input(r, self.in_dim)?;
        Ok(match &self.projector {
            Projector::Mlp(m) => m.forward_t(r, train)?,
            Projector::Linear(l) => r.f_matmul(&l.weight.f_tr()?)?,
            Projector::Identity => r.shallow_clone(),
            Projector::Truncate { d0 } => r.f_narrow(1, 0, *d0)?,
            Projector::FixedLowRank(f) => r.f_matmul(&f.weight.f_tr()?.f_to_kind(r.kind())?)?,
            Projector::Diagonal(g) => r.f_mul(&g.weight)?,
        })
    }

    /// The hidden layer of SimCLR's 2-layer projector, Linear → BN → ReLU of r; `None` for the
    /// projectors without one.
    ///
    /// # Shapes
    /// - `r`: `[batch, in_dim]` → `[batch, h]`.
    pub fn hidden(&self, r: &Tensor, train: bool) -> Result<Option<Tensor>> {
        check_input(r, self.in_dim)?;
        match &self.projector {
            Projector::Mlp(m) => Ok(Some(m.hidden_t(r, train)?)),
            _ => Ok(None),
        }
    }
}

impl FixedLowRankProjector {
    /// The frozen matrix M. `[D, D]`
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }
}

impl LinearProjector {
    /// The matrix W. `[out, D]`
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }
}

impl DiagonalProjector {
    /// The diagonal w. `[D]`
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }
}

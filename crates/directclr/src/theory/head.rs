//! The heads of Section 6 and Table 1 in the theory lab: maps from the representation r (the
//! output of the toy encoder, a [`super::ToyNet`]) to the embedding z the loss sees, each with
//! its gradient written out by hand.
//!
//! | head | z | trained parameters |
//! |---|---|---|
//! | [`HeadKind::None`] | z = r | — |
//! | [`HeadKind::Linear`] | z = W_p r | W_p [d, d] |
//! | [`HeadKind::Nonlinear`] | z = W_2 relu(W_1 r) | W_1, W_2 [d, d] |
//! | [`HeadKind::DirectClr`] | z = r[:d0] | — |
//! | [`HeadKind::FixedLowRank`] | z = W_p r, W_p = U diag(1 ×k, 0 ×(d−k)) Vᵀ | — (frozen) |
//! | [`HeadKind::Diagonal`] | z = w ⊙ r | w [d] |
//!
//! DirectCLR in the toy: the paper's ResNet adds a residual path around its last block, so every
//! coordinate of r, r[d0:] included, depends on weights that z = r[:d0] trains. The toy encoder
//! has no residual block. The rows d0.. of the last layer W_L receive no gradient at all (they
//! stay at their initial values), and r[d0:] = W_L[d0:]·h_{L−1} changes only through the shared
//! lower layers that shape h_{L−1}. With one layer (L = 1), r[d0:] is the initialisation and
//! nothing else.

use nalgebra::DMatrix;
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::{
    real::{gemm, Op, Real},
    toy_loss::{normalize_rows, EmbeddingGrad, ToyLoss, ZNorm},
    toy_net::{random_orthogonal, Init, ToyNet},
};
use crate::{Error, Result};

/// Which head maps r to z (the rows of paper Table 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum HeadKind {
    /// No projector: z = r (SimCLR without projector, Figure 7b).
    #[default]
    None,
    /// A trainable linear projector z = W_p r, W_p [d, d] (Section 6, Proposition 1).
    Linear,
    /// A two-layer projector Linear–ReLU–Linear, both [d, d] (SimCLR's default).
    Nonlinear,
    /// DirectCLR: z = r[:d0], no trainable parameter (Section 7).
    DirectClr,
    /// A fixed projector of rank k: k singular values 1, the rest 0, Haar-random singular
    /// vectors, never trained (Table 1 ablation, Proposition 2).
    FixedLowRank,
    /// A trainable diagonal projector z = w ⊙ r, w starting at 1 (Table 1 ablation).
    Diagonal,
}

impl HeadKind {
    /// Every head, in Table 1's order.
    pub const ALL: [HeadKind; 6] = [
        HeadKind::None,
        HeadKind::Linear,
        HeadKind::Nonlinear,
        HeadKind::DirectClr,
        HeadKind::FixedLowRank,
        HeadKind::Diagonal,
    ];

    /// The kebab-case name used in folders and tables.
    pub fn name(self) -> &'static str {
        match self {
            HeadKind::None => "none",
            HeadKind::Linear => "linear",
            HeadKind::Nonlinear => "nonlinear",
            HeadKind::DirectClr => "direct-clr",
            HeadKind::FixedLowRank => "fixed-low-rank",
            HeadKind::Diagonal => "diagonal",
        }
    }
}

/// The settings of a head, checked against the representation width by [`HeadConfig::check`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadConfig {
    /// Which head.
    pub kind: HeadKind,
    /// DirectCLR's sub-vector length d0 (used by [`HeadKind::DirectClr`] only).
    pub d0: usize,
    /// The fixed projector's rank k (used by [`HeadKind::FixedLowRank`] only).
    pub rank: usize,
}

impl HeadConfig {
    /// No head (z = r); `d0` and `rank` are unused.
    pub fn none() -> Self {
        HeadConfig {
            kind: HeadKind::None,
            d0: 1,
            rank: 1,
        }
    }

    /// Refuses a d0 or rank outside 1..=`dim` with the field's name.
    pub fn check(&self, dim: usize) -> Result<()> {
        for (field, v) in [("d0", self.d0), ("rank", self.rank)] {
            if v == 0 || v > dim {
                return Err(Error::config(
                    field,
                    format!("must be in 1..={dim} (dim, the width of r), got {v}"),
                ));
            }
        }
        Ok(())
    }
}

/// A head with its parameters in precision `T`.
#[derive(Debug, Clone)]
pub enum Head<T: Real> {
    /// z = r.
    None,
    /// z = W_p r.
    Linear {
        /// W_p. [d, d]
        w: DMatrix<T>,
    },
    /// z = W_2 relu(W_1 r).
    Nonlinear {
        /// W_1. [d, d]
        w1: DMatrix<T>,
        /// W_2. [d, d]
        w2: DMatrix<T>,
    },
    /// z = r[:d0].
    DirectClr {
        /// d0.
        d0: usize,
    },
    /// z = W_p r with W_p frozen.
    FixedLowRank {
        /// W_p = U diag(1 ×k, 0 ×(d−k)) Vᵀ. [d, d]
        w: DMatrix<T>,
    },
    /// z = w ⊙ r.
    Diagonal {
        /// w as a column. [d, 1]
        w: DMatrix<T>,
    },
}

/// What the head's forward pass keeps for its backward pass.
#[derive(Debug, Clone)]
pub struct HeadForward<T: Real> {
    /// The embedding z. [B, d_z]
    pub z: DMatrix<T>,
    /// The nonlinear head's hidden activation relu(W_1 r). [B, d]
    hidden: Option<DMatrix<T>>,
}

/// z = a·Wᵀ for a batch of rows a. [B, d_in] → [B, d_out]
fn rows_times_transpose<T: Real>(a: &DMatrix<T>, w: &DMatrix<T>) -> DMatrix<T> {
    let mut out = DMatrix::zeros(a.nrows(), w.nrows());
    gemm(T::one(), a, Op::N, w, Op::T, T::zero(), &mut out);
    out
}

/// a·W. [B, d_out] → [B, d_in]
fn rows_times<T: Real>(a: &DMatrix<T>, w: &DMatrix<T>) -> DMatrix<T> {
    let mut out = DMatrix::zeros(a.nrows(), w.ncols());
    gemm(T::one(), a, Op::N, w, Op::N, T::zero(), &mut out);
    out
}

/// dzᵀ·a, the gradient of a weight W in z = a·Wᵀ. [B, d_out], [B, d_in] → [d_out, d_in]
fn weight_grad<T: Real>(dz: &DMatrix<T>, a: &DMatrix<T>) -> DMatrix<T> {
    let mut g = DMatrix::zeros(dz.ncols(), a.ncols());
    gemm(T::one(), dz, Op::T, a, Op::N, T::zero(), &mut g);
    g
}

impl<T: Real> Head<T> {
    /// Draws the head's parameters for representations of width `dim`: the trainable matrices
    /// from `init` (the encoder's initialisation), the diagonal at 1, the fixed projector from
    /// two Haar-random orthogonal matrices. The config must have passed [`HeadConfig::check`].
    pub fn new<R: Rng + ?Sized>(config: &HeadConfig, dim: usize, init: Init, rng: &mut R) -> Self {
        match config.kind {
            HeadKind::None => Head::None,
            HeadKind::Linear => Head::Linear {
                w: init.draw(dim, dim, rng),
            },
            HeadKind::Nonlinear => Head::Nonlinear {
                w1: init.draw(dim, dim, rng),
                w2: init.draw(dim, dim, rng),
            },
            HeadKind::DirectClr => Head::DirectClr { d0: config.d0 },
            HeadKind::FixedLowRank => {
                let u = random_orthogonal(dim, rng);
                let v = random_orthogonal(dim, rng);
                let k = config.rank;
                // U_k V_kᵀ: the first k columns of each.
                let w = u.columns(0, k) * v.columns(0, k).transpose();
                Head::FixedLowRank { w: w.map(T::of) }
            }
            HeadKind::Diagonal => Head::Diagonal {
                w: DMatrix::from_element(dim, 1, T::one()),
            },
        }
    }

    /// Which head this is.
    pub fn kind(&self) -> HeadKind {
        match self {
            Head::None => HeadKind::None,
            Head::Linear { .. } => HeadKind::Linear,
            Head::Nonlinear { .. } => HeadKind::Nonlinear,
            Head::DirectClr { .. } => HeadKind::DirectClr,
            Head::FixedLowRank { .. } => HeadKind::FixedLowRank,
            Head::Diagonal { .. } => HeadKind::Diagonal,
        }
    }

    /// The trained parameters, in the order of [`Head::backward`]'s gradients.
    pub fn parameters(&self) -> Vec<&DMatrix<T>> {
        match self {
            Head::Linear { w } | Head::Diagonal { w } => vec![w],
            Head::Nonlinear { w1, w2 } => vec![w1, w2],
            Head::None | Head::DirectClr { .. } | Head::FixedLowRank { .. } => vec![],
        }
    }

    /// The trained parameters, mutably (same order as [`Head::parameters`]).
    pub fn parameters_mut(&mut self) -> Vec<&mut DMatrix<T>> {
        match self {
            Head::Linear { w } | Head::Diagonal { w } => vec![w],
            Head::Nonlinear { w1, w2 } => vec![w1, w2],
            Head::None | Head::DirectClr { .. } | Head::FixedLowRank { .. } => vec![],
        }
    }

    /// Every parameter, frozen ones included, in f64 (for reports). [d, d] or [d, 1] each
    pub fn weights_f64(&self) -> Vec<DMatrix<f64>> {
        match self {
            Head::FixedLowRank { w } => vec![super::real::to_f64(w)],
            _ => self
                .parameters()
                .into_iter()
                .map(super::real::to_f64)
                .collect(),
        }
    }

    /// The forward pass on a batch of representations.
    /// # Shapes
    /// r: [B, d] → z: [B, d] ([B, d0] for DirectCLR)
    pub fn forward(&self, r: &DMatrix<T>) -> HeadForward<T> {
        let (z, hidden) = match self {
            Head::None => (r.clone(), None),
            Head::Linear { w } | Head::FixedLowRank { w } => (rows_times_transpose(r, w), None),
            Head::Nonlinear { w1, w2 } => {
                let mut h = rows_times_transpose(r, w1); // [B, d]
                h.apply(|v| *v = v.max(T::zero()));
                (rows_times_transpose(&h, w2), Some(h))
            }
            Head::DirectClr { d0 } => (r.columns(0, *d0).into_owned(), None),
            Head::Diagonal { w } => {
                let mut z = r.clone();
                for (j, mut col) in z.column_iter_mut().enumerate() {
                    col *= w[(j, 0)];
                }
                (z, None)
            }
        };
        HeadForward { z, hidden }
    }

    /// Back-propagates dL/dz through the head: returns dL/dr and dL/d(each trained parameter),
    /// in the order of [`Head::parameters`].
    ///
    /// - linear / fixed: dW_p = dzᵀ r, dr = dz W_p (the fixed head's dW_p is not formed);
    /// - nonlinear: dW_2 = dzᵀ h, dh = (dz W_2) ⊙ [h > 0], dW_1 = dhᵀ r, dr = dh W_1;
    /// - DirectCLR: dr = [dz, 0] — exactly zero on the columns d0..;
    /// - diagonal: dw_j = Σ_i dz_ij r_ij, dr = dz ⊙ w.
    /// # Shapes
    /// r: [B, d], fwd: from [`Head::forward`] on r, dz: [B, d_z] → ([B, d], params' shapes)
    pub fn backward(
        &self,
        r: &DMatrix<T>,
        fwd: &HeadForward<T>,
        dz: DMatrix<T>,
    ) -> (DMatrix<T>, Vec<DMatrix<T>>) {
        match self {
            Head::None => (dz, vec![]),
            Head::Linear { w } => {
                let g = weight_grad(&dz, r);
                (rows_times(&dz, w), vec![g])
            }
            Head::FixedLowRank { w } => (rows_times(&dz, w), vec![]),
            Head::Nonlinear { w1, w2 } => {
                let h = fwd
                    .hidden
                    .as_ref()
                    .expect("the nonlinear head keeps its hidden");
                let g2 = weight_grad(&dz, h);
                let mut dh = rows_times(&dz, w2); // [B, d]
                dh.zip_apply(h, |g, h| {
                    if h <= T::zero() {
                        *g = T::zero()
                    }
                });
                let g1 = weight_grad(&dh, r);
                (rows_times(&dh, w1), vec![g1, g2])
            }
            Head::DirectClr { d0 } => {
                let mut dr = DMatrix::zeros(r.nrows(), r.ncols());
                dr.columns_mut(0, *d0).copy_from(&dz);
                (dr, vec![])
            }
            Head::Diagonal { w } => {
                let g = DMatrix::from_fn(w.nrows(), 1, |j, _| dz.column(j).dot(&r.column(j)));
                let mut dr = dz;
                for (j, mut col) in dr.column_iter_mut().enumerate() {
                    col *= w[(j, 0)];
                }
                (dr, vec![g])
            }
        }
    }
}

/// The loss of encoder + head on two views, and its gradients with respect to every encoder
/// layer and every trained head parameter, by back-propagation through the closed-form
/// embedding gradient of the loss (Eqn 4): x → r = net(x) → z = head(r) → InfoNCE(z1, z2).
#[derive(Debug, Clone)]
pub struct HeadGrads<T: Real> {
    /// The loss (mean over anchors).
    pub loss: f64,
    /// dL/dW_l, first layer first. L × [d, d]
    pub encoder: Vec<DMatrix<T>>,
    /// dL/d(head parameter), in the order of [`Head::parameters`].
    pub head: Vec<DMatrix<T>>,
    /// dL/dr of both views stacked (view 1 first). [2B, d]
    pub representation: DMatrix<T>,
    /// The loss's [N, N] buffer, for reuse.
    pub scratch: DMatrix<T>,
}

/// Computes [`HeadGrads`] for the un-normalised loss; a non-finite loss is an error.
/// # Shapes
/// x1, x2: [B, d] (row i of x2 is the positive of row i of x1)
#[allow(clippy::too_many_arguments)]
pub fn head_grads<T: Real>(
    net: &ToyNet<T>,
    head: &Head<T>,
    loss: ToyLoss,
    temperature: f64,
    x1: &DMatrix<T>,
    x2: &DMatrix<T>,
    scratch: Option<DMatrix<T>>,
) -> Result<HeadGrads<T>> {
    head_grads_normed(net, head, loss, ZNorm::None, temperature, x1, x2, scratch)
}

/// [top; bottom]: the rows of `bottom` under those of `top`, a column at a time (column-major
/// storage makes each a contiguous copy).
/// # Shapes
/// top: [n1, c], bottom: [n2, c] → [n1 + n2, c]
fn stack_rows<T: Real>(top: &DMatrix<T>, bottom: &DMatrix<T>) -> DMatrix<T> {
    let (n1, n2, c) = (top.nrows(), bottom.nrows(), top.ncols());
    assert_eq!(bottom.ncols(), c, "stack_rows: column counts differ");
    let mut out = Vec::with_capacity((n1 + n2) * c);
    let (t, u) = (top.as_slice(), bottom.as_slice());
    for j in 0..c {
        out.extend_from_slice(&t[j * n1..(j + 1) * n1]);
        out.extend_from_slice(&u[j * n2..(j + 1) * n2]);
    }
    DMatrix::from_vec(n1 + n2, c, out)
}

/// The first `b` rows and the rest, as two matrices (the inverse of [`stack_rows`]).
/// # Shapes
/// m: [n, c] → ([b, c], [n − b, c])
fn split_rows<T: Real>(m: &DMatrix<T>, b: usize) -> (DMatrix<T>, DMatrix<T>) {
    let (n, c) = m.shape();
    let (mut top, mut bottom) = (Vec::with_capacity(b * c), Vec::with_capacity((n - b) * c));
    for col in (0..c).map(|j| &m.as_slice()[j * n..(j + 1) * n]) {
        top.extend_from_slice(&col[..b]);
        bottom.extend_from_slice(&col[b..]);
    }
    (
        DMatrix::from_vec(b, c, top),
        DMatrix::from_vec(n - b, c, bottom),
    )
}

/// [`head_grads`] with `z_norm` between the head and the loss: x → r → z → ẑ → InfoNCE(ẑ1, ẑ2)
/// (ẑ = z with [`ZNorm::None`]). A non-finite loss or a row of z with norm 0 is an error.
/// # Shapes
/// x1, x2: [B, d] (row i of x2 is the positive of row i of x1)
#[allow(clippy::too_many_arguments)]
pub fn head_grads_normed<T: Real>(
    net: &ToyNet<T>,
    head: &Head<T>,
    loss: ToyLoss,
    z_norm: ZNorm,
    temperature: f64,
    x1: &DMatrix<T>,
    x2: &DMatrix<T>,
    scratch: Option<DMatrix<T>>,
) -> Result<HeadGrads<T>> {
    let b = x1.nrows();
    let views = stack_rows(x1, x2);
    let fwd = net.forward(&views);
    let r = fwd.output(); // [2B, d]
    let hf = head.forward(r);
    let (z1, z2) = split_rows(&hf.z, b);
    // [B, d_z] each, and the row norms when normalised.
    let ((z1, n1), (z2, n2)) = match z_norm {
        ZNorm::None => ((z1, Vec::new()), (z2, Vec::new())),
        ZNorm::L2 => (normalize_rows(&z1)?, normalize_rows(&z2)?),
    };
    let grad: EmbeddingGrad<T> = loss.evaluate_reusing(&z1, &z2, temperature, scratch);
    if !grad.loss.is_finite() {
        return Err(Error::Numerical {
            context: "toy model step".into(),
            reason: format!("loss is {}", grad.loss),
        });
    }
    let (g1, g2) = grad.apply(&z1, &z2);
    let dz = stack_rows(
        &z_norm.backward(g1, &z1, &n1),
        &z_norm.backward(g2, &z2, &n2),
    );
    let (dr, head_grads) = head.backward(r, &hf, dz);
    let encoder = net.backward(&fwd, dr.clone());
    Ok(HeadGrads {
        loss: grad.loss,
        encoder,
        head: head_grads,
        representation: dr,
        scratch: grad.into_scratch(),
    })
}

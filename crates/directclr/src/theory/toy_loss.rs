//! The InfoNCE losses of the toy models, with their gradients in closed form.
//!
//! Both forms are written so that the gradient with respect to the embeddings is a linear map
//! of the embeddings themselves, with softmax weights as coefficients (the paper's Eqn 4):
//!
//! ```text
//! g_Z1 = C11·Z1 + C12·Z2      g_Z2 = C21·Z1 + C22·Z2        (Cab: [N, N])
//! ```
//!
//! With z = W x this gives Lemma 1, G = Σ_i g_zi x_iᵀ + g_z'i x'_iᵀ = −W X, and the matrix X of
//! Eqn 6 (see [`crate::theory::closed_form`]). The losses are means over the N anchors.
//!
//! For speed the blocks are kept in factored form (a softmax matrix and diagonals) and applied
//! with matrixmultiply; [`EmbeddingGrad::block`] gives them densely for the closed forms.
//!
//! [`ZNorm::L2`] puts SimCLR's normalisation ẑ = z/‖z‖ (per row) in front of either loss
//! ([`normalize_rows`], and [`ZNorm::backward`] for the gradient); the loss is then not a
//! quadratic form of z and the closed forms (Lemma 1, X of Eqn 6) do not apply to it.

use nalgebra::DMatrix;
use serde::{Deserialize, Serialize};

use super::real::{gemm, Op, Real};
use crate::{Error, Result};

/// Whether the rows of z are scaled to unit length before the loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum ZNorm {
    /// z as it is (the paper's toy setting and the authors' toy code).
    #[default]
    None,
    /// ẑ_i = z_i/‖z_i‖ (SimCLR: with the dot-product loss the logits are cosine similarities / τ).
    L2,
}

impl ZNorm {
    /// The kebab-case name used in tables.
    pub fn name(self) -> &'static str {
        match self {
            ZNorm::None => "none",
            ZNorm::L2 => "l2",
        }
    }

    /// Back-propagates dL/dẑ through ẑ = z/‖z‖ (per row, `norms` from [`normalize_rows`]):
    /// dL/dz_i = (g_i − ẑ_i·(ẑ_i·g_i))/‖z_i‖, the part of g_i orthogonal to z_i, over ‖z_i‖
    /// (the Jacobian of z ↦ z/‖z‖ is (I − ẑẑᵀ)/‖z‖). With [`ZNorm::None`], g itself.
    /// # Shapes
    /// g: [N, d] (dL/dẑ), z_hat: [N, d], norms: N → [N, d]
    pub fn backward<T: Real>(
        self,
        mut g: DMatrix<T>,
        z_hat: &DMatrix<T>,
        norms: &[T],
    ) -> DMatrix<T> {
        if self == ZNorm::None {
            return g;
        }
        for (i, &norm) in norms.iter().enumerate() {
            let along = g.row(i).dot(&z_hat.row(i));
            let mut row = g.row_mut(i);
            row -= z_hat.row(i) * along;
            row /= norm;
        }
        g
    }
}

/// ẑ_i = z_i/‖z_i‖ for every row, and the norms ‖z_i‖. A row whose norm is 0 or not finite has
/// no direction: an error naming the row.
/// # Shapes
/// z: [N, d] → ([N, d], N)
pub fn normalize_rows<T: Real>(z: &DMatrix<T>) -> Result<(DMatrix<T>, Vec<T>)> {
    let mut z_hat = z.clone();
    let mut norms = Vec::with_capacity(z.nrows());
    for i in 0..z.nrows() {
        let norm = z.row(i).norm();
        if !(norm.f64().is_finite() && norm > T::zero()) {
            return Err(Error::Numerical {
                context: "L2 normalisation of z".into(),
                reason: format!("row {i} has norm {}: no direction to normalise", norm.f64()),
            });
        }
        let mut row = z_hat.row_mut(i);
        row /= norm;
        norms.push(norm);
    }
    Ok((z_hat, norms))
}

/// Which InfoNCE the toy model optimises. Neither normalises z by itself (the paper's toy
/// setting); [`ZNorm::L2`] adds SimCLR's normalisation in front.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum ToyLoss {
    /// The authors' toy code: logits z_i·z'_jᵀ/τ over the other view (N-way, one direction),
    /// i.e. `cross_entropy(z1 @ z2.T / τ, arange(N))`.
    #[default]
    Dot,
    /// The paper's Eqn 2: similarity −|z_i − z_j|²/(2τ), negatives z_j (j ≠ i) from the same
    /// view, the positive z'_i; τ = 1 is Eqn 2 exactly.
    Distance,
}

/// The coefficient blocks in factored form. `pt` is the softmax transposed: column i holds the
/// weights of anchor i (contiguous in nalgebra's column-major storage).
#[derive(Debug, Clone)]
enum Coefficients<T: Real> {
    /// Dot: with D = P − I, C12 = D/(Nτ), C21 = Dᵀ/(Nτ), C11 = C22 = 0.
    Dot { pt: DMatrix<T> },
    /// Distance: with A = α off its diagonal (`at` = Aᵀ), a_i = α_ii and c_i = Σ_j α_ji,
    /// C11 = (A + Aᵀ − diag(c))/(Nτ), C12 = C21 = −diag(1 − a)/(Nτ), C22 = diag(1 − a)/(Nτ).
    Distance {
        at: DMatrix<T>,
        positive: Vec<T>,
        col_sum: Vec<T>,
    },
}

/// A loss value and the coefficient blocks of its embedding gradient (see the module doc).
#[derive(Debug, Clone)]
pub struct EmbeddingGrad<T: Real> {
    /// The loss (mean over anchors).
    pub loss: f64,
    /// 1/(Nτ).
    scale: T,
    coefficients: Coefficients<T>,
}

impl<T: Real> EmbeddingGrad<T> {
    /// The gradients (g_Z1, g_Z2) of the loss with respect to the embeddings (Eqn 4).
    /// # Shapes
    /// z1, z2: [N, d] → ([N, d], [N, d])
    pub fn apply(&self, z1: &DMatrix<T>, z2: &DMatrix<T>) -> (DMatrix<T>, DMatrix<T>) {
        let s = self.scale;
        match &self.coefficients {
            Coefficients::Dot { pt } => {
                // g1 = s (Pᵀ)ᵀ Z2 − s Z2 ;  g2 = s Pᵀ Z1 − s Z1
                let mut g1 = z2 * (-s);
                gemm(s, pt, Op::T, z2, Op::N, T::one(), &mut g1);
                let mut g2 = z1 * (-s);
                gemm(s, pt, Op::N, z1, Op::N, T::one(), &mut g2);
                (g1, g2)
            }
            Coefficients::Distance {
                at,
                positive,
                col_sum,
            } => {
                // g1 = s[(A + Aᵀ) Z1 − diag(c) Z1 − diag(1 − a) Z2] ;  g2 = s diag(1 − a)(Z2 − Z1)
                let mut g1 = DMatrix::zeros(z1.nrows(), z1.ncols());
                gemm(s, at, Op::T, z1, Op::N, T::zero(), &mut g1);
                gemm(s, at, Op::N, z1, Op::N, T::one(), &mut g1);
                let mut g2 = z2 - z1;
                // Row i: w_i = s(1 − a_i), g2_i *= w_i, g1_i −= s·c_i·z1_i + w_i·z2_i; element by
                // element over contiguous columns, without temporary rows.
                let w: Vec<T> = positive.iter().map(|&a| s * (T::one() - a)).collect();
                let sc: Vec<T> = col_sum.iter().map(|&c| s * c).collect();
                let n = z1.nrows();
                for (k, g2_col) in g2.as_mut_slice().chunks_exact_mut(n).enumerate() {
                    let g1_col = &mut g1.as_mut_slice()[k * n..(k + 1) * n];
                    let (z1_col, z2_col) = (z1.column(k), z2.column(k));
                    for i in 0..n {
                        g2_col[i] *= w[i];
                        g1_col[i] -= z1_col[i] * sc[i] + z2_col[i] * w[i];
                    }
                }
                (g1, g2)
            }
        }
    }

    /// M = Σ_ab X_bᵀ·C_abᵀ·X_a, so that the weight gradient of a linear map z = P x is
    /// G = P·M (Lemma 1 with Eqn 4) and X = −M (Eqn 5). Computed from the factored blocks: one
    /// [N, N]·[N, d] product instead of the two that the embedding gradients need.
    /// # Shapes
    /// x1, x2: [N, d] → [d, d]
    pub fn weight_coefficients(&self, x1: &DMatrix<T>, x2: &DMatrix<T>) -> DMatrix<T> {
        let (n, d) = x1.shape();
        let s = self.scale;
        let mut m = DMatrix::zeros(d, d);
        match &self.coefficients {
            Coefficients::Dot { pt } => {
                // K = X2ᵀ·Dᵀ·X1 with Dᵀ = Pᵀ − I; M = s(K + Kᵀ).
                let mut dt_x1 = x1.clone();
                gemm(T::one(), pt, Op::N, x1, Op::N, -T::one(), &mut dt_x1);
                gemm(s, x2, Op::T, &dt_x1, Op::N, T::zero(), &mut m);
            }
            Coefficients::Distance {
                at,
                positive,
                col_sum,
            } => {
                // (1,1): s·X1ᵀ(A + Aᵀ − diag c)X1 = s(K + Kᵀ) − s·X1ᵀdiag(c)X1 with K = X1ᵀ·Aᵀ·X1.
                let mut at_x1 = DMatrix::zeros(n, d);
                gemm(T::one(), at, Op::N, x1, Op::N, T::zero(), &mut at_x1);
                gemm(s, x1, Op::T, &at_x1, Op::N, T::zero(), &mut m);
                // The rest, with w_i = s(1 − a_i), as halves of symmetric terms (M = m + mᵀ):
                // −½·s·X1ᵀdiag(c)X1, −X2ᵀdiag(w)X1 (its transpose is the (2,1) block) and
                // ½·X2ᵀdiag(w)X2.
                let mut scaled = x1.clone();
                for (i, &c) in col_sum.iter().enumerate() {
                    let mut row = scaled.row_mut(i);
                    row *= s * c * T::of(0.5);
                }
                gemm(-T::one(), &scaled, Op::T, x1, Op::N, T::one(), &mut m);
                let mut w_x2 = x2.clone();
                for (i, &a) in positive.iter().enumerate() {
                    let mut row = w_x2.row_mut(i);
                    row *= s * (T::one() - a);
                }
                // + ½ X2ᵀdiag(w)X2 − X2ᵀdiag(w)X1 (before symmetrisation: the full terms after it)
                let half_x2_minus_x1 = x2 * T::of(0.5) - x1;
                gemm(
                    T::one(),
                    &w_x2,
                    Op::T,
                    &half_x2_minus_x1,
                    Op::N,
                    T::one(),
                    &mut m,
                );
            }
        }
        &m + m.transpose()
    }

    /// Gives back the [N, N] buffer for [`ToyLoss::evaluate_reusing`].
    pub fn into_scratch(self) -> DMatrix<T> {
        match self.coefficients {
            Coefficients::Dot { pt } => pt,
            Coefficients::Distance { at, .. } => at,
        }
    }

    /// The softmax weights: row i is anchor i; entry (i, i) is the positive's weight.
    /// # Shapes
    /// → [N, N]
    pub fn weights(&self) -> DMatrix<T> {
        match &self.coefficients {
            Coefficients::Dot { pt } => pt.transpose(),
            Coefficients::Distance { at, positive, .. } => {
                let mut w = at.transpose();
                for (i, &a) in positive.iter().enumerate() {
                    w[(i, i)] = a;
                }
                w
            }
        }
    }

    /// The dense block C_ab (a, b ∈ {1, 2}); `None` when it is zero.
    /// # Shapes
    /// → [N, N]
    pub fn block(&self, a: usize, b: usize) -> Option<DMatrix<T>> {
        let s = self.scale;
        match (&self.coefficients, a, b) {
            (Coefficients::Dot { .. }, 1, 1) | (Coefficients::Dot { .. }, 2, 2) => None,
            (Coefficients::Dot { pt }, 1, 2) => {
                Some((pt.transpose() - DMatrix::identity(pt.nrows(), pt.nrows())) * s)
            }
            (Coefficients::Dot { pt }, 2, 1) => {
                Some((pt - DMatrix::identity(pt.nrows(), pt.nrows())) * s)
            }
            (Coefficients::Distance { at, col_sum, .. }, 1, 1) => {
                let mut c = at + at.transpose();
                for (i, &v) in col_sum.iter().enumerate() {
                    c[(i, i)] = -v;
                }
                Some(c * s)
            }
            (Coefficients::Distance { positive, .. }, a, b) => {
                let sign = if a == 2 && b == 2 {
                    T::one()
                } else {
                    -T::one()
                };
                let diag = nalgebra::DVector::from_iterator(
                    positive.len(),
                    positive.iter().map(|&p| sign * s * (T::one() - p)),
                );
                Some(DMatrix::from_diagonal(&diag))
            }
            _ => None,
        }
    }
}

/// Softmax of every column in place; returns Σ_columns logsumexp (in f64).
fn softmax_columns<T: Real>(m: &mut DMatrix<T>) -> f64 {
    let n = m.nrows();
    // Σ ln(sum) as ln of products of 32 sums at a time: each sum lies in [1, N], so a product
    // stays finite for N < 2^32, and 32 times fewer logarithms are taken.
    let mut total = 0.0;
    for group in m.as_mut_slice().chunks_mut(32 * n) {
        let mut product = 1.0;
        for col in group.chunks_exact_mut(n) {
            let (max, sum) = T::softmax_in_place(col);
            total += max;
            product *= sum;
        }
        total += product.ln();
    }
    total
}

impl ToyLoss {
    /// The loss and its embedding-gradient coefficients at (z1, z2) with temperature `tau`.
    /// # Shapes
    /// z1, z2: [N, d] (row i of z2 is the positive of row i of z1)
    pub fn evaluate<T: Real>(self, z1: &DMatrix<T>, z2: &DMatrix<T>, tau: f64) -> EmbeddingGrad<T> {
        self.evaluate_reusing(z1, z2, tau, None)
    }

    /// [`ToyLoss::evaluate`] writing its [N, N] softmax into `scratch` (from
    /// [`EmbeddingGrad::into_scratch`] of an earlier call) instead of a fresh allocation.
    pub fn evaluate_reusing<T: Real>(
        self,
        z1: &DMatrix<T>,
        z2: &DMatrix<T>,
        tau: f64,
        scratch: Option<DMatrix<T>>,
    ) -> EmbeddingGrad<T> {
        let n = z1.nrows();
        // Every entry is overwritten below (gemm with β = 0 does not read its output).
        let buffer = || match scratch {
            Some(m) if m.shape() == (n, n) => m,
            _ => DMatrix::zeros(n, n),
        };
        let inv_tau = T::of(1.0 / tau);
        let scale = T::of(1.0 / (n as f64 * tau));
        match self {
            ToyLoss::Dot => {
                // Logits transposed: pt[j, i] = z2_j · z1_i / τ, column i = anchor i.   [N, N]
                let mut pt = buffer();
                gemm(inv_tau, z2, Op::N, z1, Op::T, T::zero(), &mut pt);
                let positives: f64 = (0..n).map(|i| pt[(i, i)].f64()).sum();
                let lse = softmax_columns(&mut pt);
                EmbeddingGrad {
                    loss: (lse - positives) / n as f64,
                    scale,
                    coefficients: Coefficients::Dot { pt },
                }
            }
            ToyLoss::Distance => {
                // Column i: −|z_i − z_j|²/(2τ) over j ≠ i (the Gram matrix is symmetric), then the
                // positive −|z_i − z'_i|²/(2τ) on the diagonal.   [N, N]
                let half = T::of(0.5) * inv_tau;
                let sq: Vec<T> = z1.row_iter().map(|r| r.norm_squared()).collect();
                let mut at = buffer();
                gemm(T::one(), z1, Op::N, z1, Op::T, T::zero(), &mut at);
                let mut positives = 0.0;
                for (i, col) in at.as_mut_slice().chunks_exact_mut(n).enumerate() {
                    for (j, v) in col.iter_mut().enumerate() {
                        *v = -(sq[i] + sq[j] - *v - *v) * half;
                    }
                    // |z1_i − z2_i|², summed in column order as nalgebra's norm_squared (no
                    // temporary row).
                    let mut d2 = T::zero();
                    for k in 0..z1.ncols() {
                        let dk = z1[(i, k)] - z2[(i, k)];
                        d2 += dk * dk;
                    }
                    col[i] = -d2 * half;
                    positives += col[i].f64();
                }
                let lse = softmax_columns(&mut at);
                let positive: Vec<T> = (0..n).map(|i| at[(i, i)]).collect();
                for i in 0..n {
                    at[(i, i)] = T::zero();
                }
                // c_i = Σ_j α_ji = row i of Aᵀ, accumulated column by column (contiguous) in the
                // order j = 0, 1, … of a row sum.
                let mut col_sum = vec![T::zero(); n];
                for col in at.as_slice().chunks_exact(n) {
                    for (c, &v) in col_sum.iter_mut().zip(col) {
                        *c += v;
                    }
                }
                EmbeddingGrad {
                    loss: (lse - positives) / n as f64,
                    scale,
                    coefficients: Coefficients::Distance {
                        at,
                        positive,
                        col_sum,
                    },
                }
            }
        }
    }
}

//! The closed forms of Sections 4–5: Lemma 1 (G = Σ g xᵀ = −W X), the matrix X of Eqn 6 and its
//! decomposition of Lemma 2 (X = Σ0 − Σ1), the fixed-X solution of Theorem 1
//! (W(t) = W(0)·exp(Xt)), the conserved quantity of Theorem 2 (W1W1ᵀ − W2ᵀW2) and the
//! singular-value dynamics of Theorem 3.
//!
//! All formulas are for the loss as a mean over N anchors with temperature τ, so they equal the
//! paper's sums (τ = 1) divided by N·τ.

use nalgebra::{DMatrix, SymmetricEigen};

use super::{
    real::Real,
    toy_loss::{EmbeddingGrad, ToyLoss},
};

/// Lemma 1: the gradient of the loss with respect to a linear map z = W x,
/// G = Σ_i (g_zi x_iᵀ + g_z'i x'_iᵀ).
/// # Shapes
/// g1, g2: [N, d_out]; x1, x2: [N, d_in] → [d_out, d_in]
pub fn lemma1_weight_grad<T: Real>(
    g1: &DMatrix<T>,
    g2: &DMatrix<T>,
    x1: &DMatrix<T>,
    x2: &DMatrix<T>,
) -> DMatrix<T> {
    g1.transpose() * x1 + g2.transpose() * x2
}

/// The matrix X of Eqn 5/6 for any toy loss, read off its gradient coefficients: with
/// g_Za = Σ_b Cab·Zb and Zb = Xb·Wᵀ, G = W·Σ_ab Xbᵀ·Cabᵀ·Xa, so X = −Σ_ab Xbᵀ·Cabᵀ·Xa.
/// X does not depend on W except through the softmax weights inside the C blocks.
/// # Shapes
/// x1, x2: [N, d_in] → [d_in, d_in]
pub fn x_matrix<T: Real>(grad: &EmbeddingGrad<T>, x1: &DMatrix<T>, x2: &DMatrix<T>) -> DMatrix<T> {
    -grad.weight_coefficients(x1, x2)
}

/// Eqn 6 written out for the paper's loss ([`ToyLoss::Distance`]), from the softmax weights α
/// (row i: anchor i; α_ii the positive):
///
/// X = 1/(Nτ) · [ Σ_i ( Σ_{j≠i} α_ij (x'_i − x_j) + Σ_{j≠i} α_ji (x_i − x_j) ) x_iᵀ
///                − Σ_i (1 − α_ii)(x'_i − x_i) x'_iᵀ ].
/// # Shapes
/// alpha: [N, N]; x1, x2: [N, d] → [d, d]
pub fn eqn6_distance(
    alpha: &DMatrix<f64>,
    x1: &DMatrix<f64>,
    x2: &DMatrix<f64>,
    tau: f64,
) -> DMatrix<f64> {
    let (n, d) = x1.shape();
    let mut x = DMatrix::zeros(d, d);
    for i in 0..n {
        let xi = x1.row(i).transpose();
        let xpi = x2.row(i).transpose();
        let mut v = nalgebra::DVector::zeros(d);
        for j in (0..n).filter(|&j| j != i) {
            let xj = x1.row(j).transpose();
            v += (&xpi - &xj) * alpha[(i, j)] + (&xi - &xj) * alpha[(j, i)];
        }
        x += &v * xi.transpose();
        x -= (&xpi - &xi) * xpi.transpose() * (1.0 - alpha[(i, i)]);
    }
    x / (n as f64 * tau)
}

/// Lemma 2: the two weighted covariances with X = Σ0 − Σ1.
#[derive(Debug, Clone)]
pub struct Lemma2 {
    /// Σ0, the weighted covariance of the data (pairs of different samples). [d, d]
    pub sigma0: DMatrix<f64>,
    /// Σ1, the weighted covariance of the augmentation (pairs of views of one sample). [d, d]
    pub sigma1: DMatrix<f64>,
    /// A remainder that only the un-normalised dot-product loss has (zero for the paper's
    /// loss): R = 1/(Nτ)·Σ_j (1 − Σ_i P_ij) x'_j x'_jᵀ, so X = Σ0 − Σ1 + R. [d, d]
    pub remainder: DMatrix<f64>,
}

/// Lemma 2 for either loss, from its softmax weights. For [`ToyLoss::Distance`]:
/// Σ0 = 1/(Nτ)·Σ_i Σ_{j≠i} α_ij (x_i − x_j)(x_i − x_j)ᵀ and
/// Σ1 = 1/(Nτ)·Σ_i (1 − α_ii)(x'_i − x_i)(x'_i − x_i)ᵀ (the paper's form). For
/// [`ToyLoss::Dot`] the pairs are across views: Σ0 = 1/(Nτ)·Σ_{i≠j} P_ij (x_i − x'_j)(x_i − x'_j)ᵀ,
/// Σ1 = 1/(Nτ)·Σ_i (1 − P_ii)(x_i − x'_i)(x_i − x'_i)ᵀ, plus the remainder R.
/// # Shapes
/// weights: [N, N]; x1, x2: [N, d]
pub fn lemma2(
    loss: ToyLoss,
    weights: &DMatrix<f64>,
    x1: &DMatrix<f64>,
    x2: &DMatrix<f64>,
    tau: f64,
) -> Lemma2 {
    let (n, d) = x1.shape();
    let scale = 1.0 / (n as f64 * tau);
    let mut sigma0 = DMatrix::zeros(d, d);
    let mut sigma1 = DMatrix::zeros(d, d);
    let mut remainder = DMatrix::zeros(d, d);
    let other = match loss {
        ToyLoss::Distance => x1,
        ToyLoss::Dot => x2,
    };
    for i in 0..n {
        for j in (0..n).filter(|&j| j != i) {
            let diff = (x1.row(i) - other.row(j)).transpose();
            sigma0 += &diff * diff.transpose() * weights[(i, j)];
        }
        let aug = (x2.row(i) - x1.row(i)).transpose();
        sigma1 += &aug * aug.transpose() * (1.0 - weights[(i, i)]);
    }
    if loss == ToyLoss::Dot {
        for j in 0..n {
            let col: f64 = (0..n).map(|i| weights[(i, j)]).sum();
            let xj = x2.row(j).transpose();
            remainder += &xj * xj.transpose() * (1.0 - col);
        }
    }
    Lemma2 {
        sigma0: sigma0 * scale,
        sigma1: sigma1 * scale,
        remainder: remainder * scale,
    }
}

/// Eigen-decomposition of a symmetric matrix with eigenvalues sorted in descending order.
/// Returns (eigenvalues [d], eigenvectors as columns [d, d]).
pub fn sorted_symmetric_eigen(m: &DMatrix<f64>) -> (Vec<f64>, DMatrix<f64>) {
    let sym = (m + m.transpose()) * 0.5;
    let eig = SymmetricEigen::new(sym);
    let mut order: Vec<usize> = (0..eig.eigenvalues.len()).collect();
    order.sort_by(|&a, &b| eig.eigenvalues[b].total_cmp(&eig.eigenvalues[a]));
    let values = order.iter().map(|&k| eig.eigenvalues[k]).collect();
    let vectors = DMatrix::from_fn(m.nrows(), order.len(), |r, c| {
        eig.eigenvectors[(r, order[c])]
    });
    (values, vectors)
}

/// The eigenvalues of [`sorted_symmetric_eigen`] alone, descending: bit for bit the same values
/// (nalgebra's eigenvalue-only path runs the same tridiagonalisation and QR sweeps without
/// accumulating the eigenvectors).
/// # Shapes
/// m: [d, d] → d values
pub fn sorted_symmetric_eigenvalues(m: &DMatrix<f64>) -> Vec<f64> {
    let sym = (m + m.transpose()) * 0.5;
    let mut values: Vec<f64> = sym.symmetric_eigenvalues().iter().copied().collect();
    values.sort_by(|a, b| b.total_cmp(a));
    values
}

/// Theorem 1's solution for a fixed X: W(t) = W(0)·exp(X t), with exp(X t) = U·exp(Λt)·Uᵀ from
/// the eigen-decomposition of the symmetric X.
/// # Shapes
/// w0: [d_out, d]; x: [d, d] → [d_out, d]
pub fn fixed_x_solution(w0: &DMatrix<f64>, x: &DMatrix<f64>, t: f64) -> DMatrix<f64> {
    let (values, u) = sorted_symmetric_eigen(x);
    let exp = DMatrix::from_diagonal(&nalgebra::DVector::from_iterator(
        values.len(),
        values.iter().map(|l| (l * t).exp()),
    ));
    w0 * (&u * exp * u.transpose())
}

/// Integrates the gradient flow Ẇ = −G = W·X (Lemma 1 with G = −W X) for a fixed X with the
/// classical fourth-order Runge–Kutta method, `steps` steps up to time t.
/// # Shapes
/// w0: [d_out, d]; x: [d, d] → [d_out, d]
pub fn integrate_fixed_x(
    w0: &DMatrix<f64>,
    x: &DMatrix<f64>,
    t: f64,
    steps: usize,
) -> DMatrix<f64> {
    let h = t / steps as f64;
    let mut w = w0.clone();
    for _ in 0..steps {
        let k1 = &w * x;
        let k2 = (&w + &k1 * (h / 2.0)) * x;
        let k3 = (&w + &k2 * (h / 2.0)) * x;
        let k4 = (&w + &k3 * h) * x;
        w += (k1 + k2 * 2.0 + k3 * 2.0 + k4) * (h / 6.0);
    }
    w
}

/// Theorem 2's conserved quantity for a two-layer linear net: W1·W1ᵀ − W2ᵀ·W2.
/// # Shapes
/// w1: [h, d]; w2: [d_out, h] → [h, h]
pub fn theorem2_invariant<T: Real>(w1: &DMatrix<T>, w2: &DMatrix<T>) -> DMatrix<f64> {
    let w1 = super::real::to_f64(w1);
    let w2 = super::real::to_f64(w2);
    &w1 * w1.transpose() - w2.transpose() * &w2
}

/// Theorem 3: for aligned layers (V2 = U1), the velocities of the k-th singular values
/// σ̇1 = σ1·σ2²·(v1ᵀ X v1) and σ̇2 = σ2·σ1²·(v1ᵀ X v1), where v1 is the k-th right singular
/// vector of W1. Returns (σ̇1, σ̇2) per k, singular values in descending order.
/// # Shapes
/// w1, w2, x: [d, d]
pub fn theorem3_velocities(
    w1: &DMatrix<f64>,
    w2: &DMatrix<f64>,
    x: &DMatrix<f64>,
) -> Vec<(f64, f64)> {
    let svd1 = sorted_svd(w1);
    let svd2 = sorted_svd(w2);
    (0..svd1.values.len())
        .map(|k| {
            let v = svd1.v.column(k);
            let q = (v.transpose() * x * v)[(0, 0)];
            let (s1, s2) = (svd1.values[k], svd2.values[k]);
            (s1 * s2 * s2 * q, s2 * s1 * s1 * q)
        })
        .collect()
}

/// A singular value decomposition W = U·diag(σ)·Vᵀ with σ in descending order.
#[derive(Debug, Clone)]
pub struct SortedSvd {
    /// Left singular vectors as columns. [d_out, k]
    pub u: DMatrix<f64>,
    /// Singular values, descending. [k]
    pub values: Vec<f64>,
    /// Right singular vectors as columns. [d_in, k]
    pub v: DMatrix<f64>,
}

/// The SVD of `w` with singular values sorted in descending order.
pub fn sorted_svd(w: &DMatrix<f64>) -> SortedSvd {
    let (values, u, v) = sorted_svd_parts(w, true, true);
    SortedSvd {
        u: u.expect("requested U"),
        values,
        v: v.expect("requested V"),
    }
}

/// [`sorted_svd`] computing U and V only when asked: the singular values, then U and V (as
/// columns, in the same order) where requested. Accumulating U or Vᵀ only rotates them
/// alongside the bidiagonal, so with at least one of them the singular values are those of
/// [`sorted_svd`] bit for bit. With neither, U is computed all the same: nalgebra's
/// values-only path solves its 2×2 blocks differently (without the sign fixing) and its values
/// differ from the full SVD's by far more than rounding (up to 2% relative on the toy layers).
/// # Shapes
/// w: [d_out, d_in] → (k values, [d_out, k], [d_in, k])
pub fn sorted_svd_parts(
    w: &DMatrix<f64>,
    want_u: bool,
    want_v: bool,
) -> (Vec<f64>, Option<DMatrix<f64>>, Option<DMatrix<f64>>) {
    let svd = w.clone().svd(want_u || !want_v, want_v);
    let mut order: Vec<usize> = (0..svd.singular_values.len()).collect();
    order.sort_by(|&a, &b| svd.singular_values[b].total_cmp(&svd.singular_values[a]));
    let values = order.iter().map(|&k| svd.singular_values[k]).collect();
    let u = svd
        .u
        .filter(|_| want_u)
        .map(|u| DMatrix::from_fn(u.nrows(), order.len(), |r, c| u[(r, order[c])]));
    let v = svd
        .v_t
        .map(|vt| DMatrix::from_fn(vt.ncols(), order.len(), |r, c| vt[(order[c], r)]));
    (values, u, v)
}

/// The alignment matrix of Section 5.3, A = V2ᵀ·U1, between the right singular vectors of the
/// upper layer W2 and the left singular vectors of the lower layer W1 (Figure 4).
/// # Shapes
/// w1: [h, d]; w2: [d_out, h] → [h, h]
pub fn alignment_matrix(w1: &DMatrix<f64>, w2: &DMatrix<f64>) -> DMatrix<f64> {
    sorted_svd(w2).v.transpose() * sorted_svd(w1).u
}

/// How diagonal an alignment matrix is: Σ_k A_kk² / Σ_kl A_kl² (1 for a signed permutation on
/// the diagonal, 1/h on average for a random orthogonal matrix).
pub fn diagonal_dominance(a: &DMatrix<f64>) -> f64 {
    let diag: f64 = (0..a.nrows().min(a.ncols()))
        .map(|k| a[(k, k)].powi(2))
        .sum();
    diag / a.norm_squared()
}

/// How close an alignment matrix is to a signed permutation: mean_k max_l A_kl² (1 for a signed
/// permutation; about 2·ln(h)/h for a random orthogonal h×h matrix). Unlike
/// [`diagonal_dominance`] it does not depend on how near-equal singular values are ordered.
pub fn row_dominance(a: &DMatrix<f64>) -> f64 {
    a.row_iter()
        .map(|r| r.iter().map(|v| v * v).fold(0.0, f64::max))
        .sum::<f64>()
        / a.nrows() as f64
}

/// Misalignment of two adjacent layers, ‖[W1W1ᵀ, W2ᵀW2]‖_F / (‖W1W1ᵀ‖_F·‖W2ᵀW2‖_F): zero
/// exactly when W1W1ᵀ and W2ᵀW2 share eigenvectors, i.e. V2 = U1 up to rotations inside groups
/// of equal singular values (Theorem 2's limit W1W1ᵀ = W2ᵀW2 makes it zero).
/// # Shapes
/// w1: [h, d]; w2: [d_out, h]
pub fn misalignment(w1: &DMatrix<f64>, w2: &DMatrix<f64>) -> f64 {
    let a = w1 * w1.transpose();
    let b = w2.transpose() * w2;
    (&a * &b - &b * &a).norm() / (a.norm() * b.norm()).max(f64::MIN_POSITIVE)
}

/// Reorders the columns of an alignment matrix so that each row meets its best-aligned column
/// on the diagonal (greedy assignment on |A|, largest entries first). When the two layers pair
/// their singular vectors in a different order of singular values (σ1² − σ2² is conserved by
/// Theorem 2, so the orders can differ while ‖W‖ stays finite), this shows the pairing as a
/// diagonal. Returns the reordered matrix and, for each row, the column it took.
pub fn matched_alignment(a: &DMatrix<f64>) -> (DMatrix<f64>, Vec<usize>) {
    let n = a.nrows().min(a.ncols());
    let mut entries: Vec<(usize, usize)> = (0..a.nrows())
        .flat_map(|r| (0..a.ncols()).map(move |c| (r, c)))
        .collect();
    entries.sort_by(|&(r1, c1), &(r2, c2)| a[(r2, c2)].abs().total_cmp(&a[(r1, c1)].abs()));
    let (mut row_done, mut col_done) = (vec![false; a.nrows()], vec![false; a.ncols()]);
    let mut pick = vec![usize::MAX; a.nrows()];
    for (r, c) in entries {
        if !row_done[r] && !col_done[c] {
            (row_done[r], col_done[c], pick[r]) = (true, true, c);
        }
    }
    let reordered = DMatrix::from_fn(a.nrows(), n, |r, k| a[(r, pick[k])]);
    (reordered, pick)
}

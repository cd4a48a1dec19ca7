//! The closed forms of Sections 4–5 against libtorch's autograd and against each other, in f64.
//!
//! Every tolerance is a bound on the rounding error (or, against an integration, the
//! integrator's error) that holds for any order of summation, blocking, SIMD width, FMA use
//! or thread count the kernels (matrixmultiply, nalgebra, MKL) choose: Higham's
//! |fl(Σ_{k≤n} a_k) − Σ a_k| ≤ γ_n·Σ|a_k| (Thm 3.5), so each bound is γ_(roundings along the
//! longest chain) times the quantity computed in absolute values (|A|·|B| for a product A·B).

mod tolerance;

use directclr::loss::{InfoNce, Negatives};
use directclr::theory::{
    closed_form::{
        eqn6_distance, fixed_x_solution, integrate_fixed_x, lemma1_weight_grad, lemma2, sorted_svd,
        sorted_svd_parts, sorted_symmetric_eigen, sorted_symmetric_eigenvalues, theorem2_invariant,
        theorem3_velocities, x_matrix,
    },
    toy_loss::EmbeddingGrad,
    toy_net::random_orthogonal,
    Activation, Init, ToyLoss, ToyNet,
};
use nalgebra::DMatrix;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use tch::{Kind, Tensor};
use tolerance::{eigensolver_bound, EPS64};

const TAU: f64 = 0.1;

/// γ_n = nε/(1 − nε) (Higham's γ with ε = 2u in place of u: a factor 2 to spare): the relative
/// bound on n roundings in a chain, or on any order of summing n + 1 terms.
fn gamma(n: usize) -> f64 {
    let u = n as f64 * EPS64;
    assert!(u < 0.5, "γ_{n} is meaningless");
    u / (1.0 - u)
}

/// err ≤ bound; with THEORY_MARGINS set, prints err/bound (how much of the bound is used).
fn within(err: f64, bound: f64) -> bool {
    if std::env::var_os("THEORY_MARGINS").is_some() {
        eprintln!("error/bound {:.1e} (bound {bound:.1e})", err / bound);
    }
    err <= bound
}

/// Entrywise |m|.
fn abs(m: &DMatrix<f64>) -> DMatrix<f64> {
    m.abs()
}

/// Rounding bounds of the toy InfoNCE in f64 for one implementation (ours or libtorch's; a
/// comparison of the two allows the sum of both, i.e. twice these). `zbar1`, `zbar2` bound
/// |z| entrywise (the forward pass in absolute values) and `z_chain` is the number of
/// roundings along the forward pass (d per linear layer), so |δz| ≤ γ_{z_chain}·z̄.
/// - Each logit (d products of two z's, or the 3 terms of −|z_i − z_j|²/(2τ), times a rounded
///   1/τ): |δℓ| ≤ γ_{2·z_chain + d + 6}·L̄, L̄ the largest logit computed in absolute values.
/// - log-softmax: the shift by the max (ε·2L̄), exp to 2 ulp, the N-term sum, the ln and the
///   add-back: |δ lse| ≤ |δℓ| + γ_{N+8}·(1 + 3L̄ + 2 ln N); each softmax weight P then has
///   relative error `rel` ≤ 2·|δℓ| + γ_{N+8}·(2 + 5L̄ + 2 ln N).
/// - The loss, a mean of the N terms lse_i − ℓ_ii of size ≤ L̄ + ln N: |δ| ≤ rel + γ_{2N+2}·(L̄ + ln N).
struct SoftmaxBound {
    /// Relative error of each softmax weight.
    rel: f64,
    /// Absolute error of the loss.
    loss: f64,
}

fn softmax_bound(
    loss: ToyLoss,
    zbar1: &DMatrix<f64>,
    zbar2: &DMatrix<f64>,
    z_chain: usize,
) -> SoftmaxBound {
    let (n, d) = zbar1.shape();
    let lbar = match loss {
        ToyLoss::Dot => (zbar1 * zbar2.transpose()).max() / TAU,
        // Σ_k (z̄_ik + z̄_jk)²/(2τ) ≤ (|z̄_i|² + |z̄_j|²)/τ ≤ 2·max row |z̄|²/τ.
        ToyLoss::Distance => {
            let r = zbar1
                .row_iter()
                .chain(zbar2.row_iter())
                .map(|r| r.norm_squared())
                .fold(0.0, f64::max);
            2.0 * r / TAU
        }
    };
    let ln_n = (n as f64).ln();
    let logit = gamma(2 * z_chain + d + 6) * lbar;
    let rel = 2.0 * logit + gamma(n + 8) * (2.0 + 5.0 * lbar + 2.0 * ln_n);
    SoftmaxBound {
        rel,
        loss: rel + gamma(2 * n + 2) * (lbar + ln_n),
    }
}

/// |C_ab| as dense blocks (zero where the loss has none).
fn abs_blocks(eg: &EmbeddingGrad<f64>, n: usize) -> [[DMatrix<f64>; 2]; 2] {
    let b = |a, b| {
        eg.block(a, b)
            .map(|m| abs(&m))
            .unwrap_or_else(|| DMatrix::zeros(n, n))
    };
    [[b(1, 1), b(1, 2)], [b(2, 1), b(2, 2)]]
}

/// The embedding gradients g_Za = Σ_b C_ab·Z_b in absolute values: Σ_b |C_ab|·z̄_b.
fn grad_magnitudes(
    c: &[[DMatrix<f64>; 2]; 2],
    zbar1: &DMatrix<f64>,
    zbar2: &DMatrix<f64>,
) -> (DMatrix<f64>, DMatrix<f64>) {
    (
        &c[0][0] * zbar1 + &c[0][1] * zbar2,
        &c[1][0] * zbar1 + &c[1][1] * zbar2,
    )
}

fn gaussian(rows: usize, cols: usize, std: f64, rng: &mut ChaCha8Rng) -> DMatrix<f64> {
    DMatrix::from_fn(rows, cols, |_, _| {
        std * <StandardNormal as Distribution<f64>>::sample(&StandardNormal, rng)
    })
}

fn to_tensor(m: &DMatrix<f64>) -> Tensor {
    let rows: Vec<f64> = m.transpose().iter().copied().collect(); // row-major
    Tensor::from_slice(&rows).reshape([m.nrows() as i64, m.ncols() as i64])
}

fn to_matrix(t: &Tensor) -> DMatrix<f64> {
    let (r, c) = t.size2().unwrap();
    let v: Vec<f64> =
        Vec::<f64>::try_from(t.to_kind(Kind::Double).contiguous().view([-1])).unwrap();
    DMatrix::from_row_slice(r as usize, c as usize, &v)
}

fn max_abs_diff(a: &DMatrix<f64>, b: &DMatrix<f64>) -> f64 {
    assert_eq!(a.shape(), b.shape());
    (a - b).abs().max()
}

/// The toy losses in libtorch (mean over anchors). Dot is the library's own InfoNCE in the
/// authors' toy configuration (τ 0.1, no normalisation, one direction, cross-view negatives),
/// so the toy engine and the training loss cannot drift apart. Distance (Eqn 2) is written out:
/// logits[i, j] = −|z_i − z_j|²/(2τ) (j ≠ i), logits[i, i] = −|z_i − z'_i|²/(2τ),
/// then cross-entropy with targets arange(N).
fn torch_loss(loss: ToyLoss, z1: &Tensor, z2: &Tensor) -> Tensor {
    let n = z1.size()[0];
    match loss {
        ToyLoss::Dot => InfoNce {
            temperature: TAU,
            normalize: false,
            symmetric: false,
            negatives: Negatives::CrossView,
        }
        .loss(z1, z2)
        .unwrap(),
        ToyLoss::Distance => {
            let labels = Tensor::arange(n, (Kind::Int64, tch::Device::Cpu));
            let d_same = (z1.unsqueeze(1) - z1.unsqueeze(0))
                .square()
                .sum_dim_intlist(-1, false, Kind::Double);
            let d_pos = (z1 - z2).square().sum_dim_intlist(-1, false, Kind::Double);
            let eye = Tensor::eye(n, (Kind::Double, tch::Device::Cpu));
            let d: Tensor = &d_same * (1.0 - &eye) + d_pos.diag_embed(0, -2, -1);
            // (tch's cross_entropy_for_logits computes in f32; stay in f64.)
            (-d / (2.0 * TAU))
                .log_softmax(-1, Kind::Double)
                .nll_loss(&labels)
        }
    }
}

fn setup(seed: u64, n: usize, d: usize) -> (DMatrix<f64>, DMatrix<f64>, DMatrix<f64>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x1 = gaussian(n, d, 1.0, &mut rng);
    let x2 = &x1 + gaussian(n, d, 0.3, &mut rng);
    let w = gaussian(d, d, 0.4, &mut rng);
    (x1, x2, w)
}

#[test]
fn lemma1_and_eqn4_equal_autograd() {
    for loss in [ToyLoss::Dot, ToyLoss::Distance] {
        let (x1, x2, w) = setup(1, 12, 5);
        let (n, d) = x1.shape();
        let wt = to_tensor(&w).set_requires_grad(true);
        let z1t = to_tensor(&x1).matmul(&wt.tr());
        let z2t = to_tensor(&x2).matmul(&wt.tr());
        let lt = torch_loss(loss, &z1t, &z2t);
        let grads = Tensor::run_backward(&[&lt], &[&z1t, &z2t, &wt], false, false);

        let z1 = &x1 * w.transpose();
        let z2 = &x2 * w.transpose();
        let eg = loss.evaluate(&z1, &z2, TAU);
        // Magnitudes: z̄ = |x|·|W|ᵀ (d roundings), ḡ_a = Σ_b |C_ab|·z̄_b, and the weight
        // gradient (= −W X) Ḡ = ḡ1ᵀ|x1| + ḡ2ᵀ|x2| = |W|·Σ_ab |X_b|ᵀ|C_ab|ᵀ|X_a|.
        let (zbar1, zbar2) = (
            abs(&x1) * abs(&w).transpose(),
            abs(&x2) * abs(&w).transpose(),
        );
        let sb = softmax_bound(loss, &zbar1, &zbar2, d);
        let c = abs_blocks(&eg, n);
        let (gbar1, gbar2) = grad_magnitudes(&c, &zbar1, &zbar2);
        let gbar_w = gbar1.transpose() * abs(&x1) + gbar2.transpose() * abs(&x2);
        // ḡ: weights with relative error `rel`, then N-term products (2N with the Distance
        // loss's differences), z's own d roundings and the scale 1/(Nτ).
        let rel_g = sb.rel + gamma(2 * n + d + 6);
        // Ḡ: the same plus the 2N-term sum over both views (Lemma 1) or, for Eqn 5, the two
        // N-term products of X and the d-term product with W.
        let rel_w = rel_g + gamma(2 * n + d + 2);

        // Two implementations: twice the softmax_bound loss bound (about 1.4e-11 here).
        let tol_loss = 2.0 * sb.loss;
        assert!(
            within((eg.loss - lt.double_value(&[])).abs(), tol_loss),
            "{loss:?} loss {} vs {} (bound {tol_loss:e})",
            eg.loss,
            lt.double_value(&[])
        );
        let (g1, g2) = eg.apply(&z1, &z2);
        // Eqn 4, each side: |δg| ≤ rel_g·ḡ.
        let tol = 2.0 * rel_g * gbar1.max();
        let err = max_abs_diff(&g1, &to_matrix(&grads[0]));
        assert!(within(err, tol), "{loss:?} Eqn 4 g_z: {err:e} > {tol:e}");
        let tol = 2.0 * rel_g * gbar2.max();
        let err = max_abs_diff(&g2, &to_matrix(&grads[1]));
        assert!(within(err, tol), "{loss:?} Eqn 4 g_z': {err:e} > {tol:e}");
        // Lemma 1, each side: |δG| ≤ rel_w·Ḡ.
        let g_w = lemma1_weight_grad(&g1, &g2, &x1, &x2);
        let tol = 2.0 * rel_w * gbar_w.max();
        let err = max_abs_diff(&g_w, &to_matrix(&grads[2]));
        assert!(within(err, tol), "{loss:?} Lemma 1: {err:e} > {tol:e}");
        // Eqn 5: G = −W X, each side |δ| ≤ rel_w·Ḡ.
        let x = x_matrix(&eg, &x1, &x2);
        let err = max_abs_diff(&(-&w * &x), &to_matrix(&grads[2]));
        assert!(within(err, tol), "{loss:?} Eqn 5: {err:e} > {tol:e}");
        // Exact: X = −(m + mᵀ) and IEEE addition commutes, so X is symmetric bit for bit.
        assert_eq!(x, x.transpose(), "{loss:?} X is symmetric");
    }
}

#[test]
fn eqn6_and_lemma2_agree() {
    let (x1, x2, w) = setup(2, 10, 4);
    let (n, d) = x1.shape();
    let (z1, z2) = (&x1 * w.transpose(), &x2 * w.transpose());
    // All three forms (gemm on the factored blocks, Eqn 6's loop, Lemma 2's covariances) are
    // sums of products weight·x·x from the same computed weights: the weights sum to ≤ 5N (α
    // appears in A, Aᵀ and the column sums c, 1 − α_ii twice; for Dot P + I and its transpose,
    // and |1 − Σ_i P_ij| ≤ 1 + Σ_i P_ij), each x-product is ≤ 4·x̄² (x̄ = max |x|, differences
    // of two x's), times s = 1/(Nτ). Each form rounds ≤ 3N + 8 times along a chain (two N-term
    // sums, or Eqn 6's 2(N − 1)-term inner and N-term outer sums): |δ| ≤ γ_{3N+8}·T̄.
    let xbar = abs(&x1).max().max(abs(&x2).max());
    let t_bar = 20.0 * n as f64 * xbar * xbar / (n as f64 * TAU);
    // Two forms compared.
    let tol = 2.0 * gamma(3 * n + 8) * t_bar;
    // The paper's loss: Eqn 6 written out = the generic X = Σ0 − Σ1.
    let eg = ToyLoss::Distance.evaluate(&z1, &z2, TAU);
    let generic = x_matrix(&eg, &x1, &x2);
    let eqn6 = eqn6_distance(&eg.weights(), &x1, &x2, TAU);
    let l2 = lemma2(ToyLoss::Distance, &eg.weights(), &x1, &x2, TAU);
    let err = max_abs_diff(&generic, &eqn6);
    assert!(within(err, tol), "{err:e} > {tol:e}");
    let err = max_abs_diff(&eqn6, &(&l2.sigma0 - &l2.sigma1));
    assert!(within(err, tol), "{err:e} > {tol:e}");
    // Exact: the paper's loss has no remainder (zeros times the scale).
    assert!(l2.remainder.abs().max() == 0.0);
    // Σ0 and Σ1 are positive semi-definite: each is within γ_{N+4}·T̄ entrywise (d·γ_{N+4}·T̄
    // in 2-norm) of a sum of PSD rank-one terms, and the eigensolver adds ≤ d·ε·‖Σ‖ (Weyl).
    for s in [&l2.sigma0, &l2.sigma1] {
        let floor = d as f64 * gamma(n + 4) * t_bar + eigensolver_bound(d, s.norm());
        let min = s.clone().symmetric_eigen().eigenvalues.min();
        assert!(within(-min, floor), "{min:e} < −{floor:e}");
    }
    // The authors' dot-product loss: X = Σ0 − Σ1 + R (same bound, see above).
    let eg = ToyLoss::Dot.evaluate(&z1, &z2, TAU);
    let l2 = lemma2(ToyLoss::Dot, &eg.weights(), &x1, &x2, TAU);
    let generic = x_matrix(&eg, &x1, &x2);
    let err = max_abs_diff(&generic, &(&l2.sigma0 - &l2.sigma1 + &l2.remainder));
    assert!(within(err, tol), "{err:e} > {tol:e}");
}

#[test]
fn backward_of_deep_and_relu_networks_equals_autograd() {
    for (layers, activation) in [
        (3, Activation::Linear),
        (3, Activation::Relu),
        (1, Activation::Linear),
    ] {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let net: ToyNet<f64> = ToyNet::new(
            6,
            layers,
            activation,
            Init::SpectralDecay { rate: 0.2 },
            &mut rng,
        );
        let x = gaussian(16, 6, 1.0, &mut rng);
        let d = 6;
        let fwd = net.forward(&x);
        let (z1, z2) = (
            fwd.output().rows(0, 8).into_owned(),
            fwd.output().rows(8, 8).into_owned(),
        );
        let eg = ToyLoss::Dot.evaluate(&z1, &z2, TAU);
        let (g1, g2) = eg.apply(&z1, &z2);
        let mut dz = DMatrix::zeros(16, 6);
        dz.rows_mut(0, 8).copy_from(&g1);
        dz.rows_mut(8, 8).copy_from(&g2);
        let grads = net.backward(&fwd, dz);

        // Magnitudes in absolute values (|relu(h)| ≤ |h|): h̄_l = h̄_{l−1}·|W_l|ᵀ, with
        // |δh_l| ≤ γ_{l·d}·h̄_l.
        let mut hbar = vec![abs(&x)];
        for w in &net.layers {
            let next = hbar.last().unwrap() * abs(w).transpose();
            hbar.push(next);
        }
        // The ReLU masks agree on every machine: no pre-activation lies within twice its
        // rounding bound of 0 (else the two implementations could mask it differently).
        if activation == Activation::Relu {
            #[allow(clippy::needless_range_loop)] // l indexes three arrays of different lengths
            for l in 1..layers {
                let pre = &fwd.hidden[l - 1] * net.layers[l - 1].transpose();
                let margin = 2.0 * gamma(l * d) * &hbar[l];
                assert!(
                    pre.zip_map(&margin, |p, m| p.abs() - m).min() > 0.0,
                    "a pre-activation of layer {l} is within rounding of 0"
                );
            }
        }
        let zbar = &hbar[layers];
        let (zbar1, zbar2) = (zbar.rows(0, 8).into_owned(), zbar.rows(8, 8).into_owned());
        let sb = softmax_bound(ToyLoss::Dot, &zbar1, &zbar2, layers * d);
        let (gbar1, gbar2) = grad_magnitudes(&abs_blocks(&eg, 8), &zbar1, &zbar2);
        let mut delta_bar = DMatrix::zeros(16, 6);
        delta_bar.rows_mut(0, 8).copy_from(&gbar1);
        delta_bar.rows_mut(8, 8).copy_from(&gbar2);
        // dL/dz: rel + γ(2·8 + L·d + 6) as in Eqn 4; back-propagation adds a d-term product
        // per layer and the 16-term product δᵀh: ≤ γ_{L·d + 16} more.
        let rel = sb.rel + gamma(2 * 8 + layers * d + 6) + gamma(layers * d + 16);

        let ws: Vec<Tensor> = net
            .layers
            .iter()
            .map(|w| to_tensor(w).set_requires_grad(true))
            .collect();
        let mut h = to_tensor(&x);
        for (l, w) in ws.iter().enumerate() {
            h = h.matmul(&w.tr());
            if activation == Activation::Relu && l + 1 < layers {
                h = h.relu();
            }
        }
        let lt = torch_loss(ToyLoss::Dot, &h.narrow(0, 0, 8), &h.narrow(0, 8, 8));
        let refs: Vec<&Tensor> = ws.iter().collect();
        let tg = Tensor::run_backward(&[&lt], &refs, false, false);
        for l in (0..layers).rev() {
            // dL/dW_l = δ_lᵀ·h_{l−1}, δ̄ in absolute values; two implementations.
            let tol = 2.0 * rel * (delta_bar.transpose() * &hbar[l]).max();
            let err = max_abs_diff(&grads[l], &to_matrix(&tg[l]));
            assert!(
                within(err, tol),
                "L={layers} {activation:?} layer {l}: {err:e} > {tol:e}"
            );
            delta_bar = &delta_bar * abs(&net.layers[l]);
        }
    }
}

/// Theorem 2: for W1, W2 under gradient descent with step η, the first-order change of
/// W1W1ᵀ − W2ᵀW2 vanishes exactly, so one step changes it by η²(D1D1ᵀ − D2ᵀD2) with Dl the
/// gradients; the drift over K steps is bounded by the sum of these second-order terms.
#[test]
fn theorem2_invariant_drifts_only_at_second_order() {
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let mut net: ToyNet<f64> = ToyNet::new(
        5,
        2,
        Activation::Linear,
        Init::SpectralDecay { rate: 0.35 },
        &mut rng,
    );
    let x1 = gaussian(20, 5, 1.0, &mut rng);
    let x2 = &x1 + gaussian(20, 5, 0.1, &mut rng);
    let mut x = DMatrix::zeros(40, 5);
    x.rows_mut(0, 20).copy_from(&x1);
    x.rows_mut(20, 20).copy_from(&x2);
    let (n, d) = x.shape();
    let c0 = theorem2_invariant(&net.layers[0], &net.layers[1]);
    let lr = 1e-3;
    let mut bound = 0.0;
    let mut rounding = 0.0;
    for step in 0..200 {
        let before = theorem2_invariant(&net.layers[0], &net.layers[1]);
        let fwd = net.forward(&x);
        let z = fwd.output();
        let eg = ToyLoss::Dot.evaluate(
            &z.rows(0, 20).into_owned(),
            &z.rows(20, 20).into_owned(),
            TAU,
        );
        let (g1, g2) = eg.apply(&z.rows(0, 20).into_owned(), &z.rows(20, 20).into_owned());
        let mut dz = DMatrix::zeros(40, 5);
        dz.rows_mut(0, 20).copy_from(&g1);
        dz.rows_mut(20, 20).copy_from(&g2);
        // The rounding of one step. The computed dz is shared by both layers' gradients, so
        // the first-order terms cancel up to back-propagation's own rounding:
        // |D̂1 − W2ᵀdzᵀx|, |D̂2 − dzᵀxW1ᵀ| ≤ γ_{N+d}·(the products in absolute values), which
        // leaves η·γ_{N+d+2}·2(S̄ + S̄ᵀ) with S̄ = |W2|ᵀ|dz|ᵀ|x||W1|ᵀ. Evaluating the invariant
        // twice and rounding the update W − ηD cost ≤ 2·γ_{d+3}·Ī, Ī = |W1||W1|ᵀ + |W2|ᵀ|W2|,
        // and the second-order term itself γ_{d+3}·η²(D̄1D̄1ᵀ + D̄2ᵀD̄2).
        let (w1a, w2a, dza, xa) = (abs(&net.layers[0]), abs(&net.layers[1]), abs(&dz), abs(&x));
        let s_bar = w2a.transpose() * dza.transpose() * &xa * w1a.transpose();
        let (d1_bar, d2_bar) = (
            w2a.transpose() * dza.transpose() * &xa,
            dza.transpose() * &xa * w1a.transpose(),
        );
        let g = net.backward(&fwd, dz);
        let second = (&g[0] * g[0].transpose() - g[1].transpose() * &g[1]) * (lr * lr);
        net.layers[0] -= &g[0] * lr;
        net.layers[1] -= &g[1] * lr;
        let after = theorem2_invariant(&net.layers[0], &net.layers[1]);
        let (w1a, w2a) = (abs(&net.layers[0]).sup(&w1a), abs(&net.layers[1]).sup(&w2a));
        let i_bar = &w1a * w1a.transpose() + w2a.transpose() * &w2a;
        let tol = 2.0 * gamma(d + 3) * i_bar.max()
            + 2.0 * lr * gamma(n + d + 2) * (&s_bar + s_bar.transpose()).max()
            + gamma(d + 3)
                * lr
                * lr
                * (&d1_bar * d1_bar.transpose() + d2_bar.transpose() * &d2_bar).max();
        let err = max_abs_diff(&(after - before), &second);
        assert!(within(err, tol), "step {step}: {err:e} > {tol:e}");
        bound += second.norm();
        // ‖·‖_F of a d × d matrix ≤ d·max entry.
        rounding += d as f64 * tol;
    }
    // The computed invariants telescope (each `after` is the next `before`, bit for bit), so
    // the drift is the sum of the per-step changes: ≤ Σ‖second‖ + Σ d·tol.
    let drift = (theorem2_invariant(&net.layers[0], &net.layers[1]) - &c0).norm();
    assert!(
        drift <= bound + rounding,
        "drift {drift}, bound {bound} + {rounding:e}"
    );
    // Mathematical (not rounding): 200 steps of η² = 1e-6 second-order terms stay far below
    // ‖C(0)‖ (Theorem 2); the margin is orders of magnitude.
    assert!(
        drift < 1e-3 * c0.norm(),
        "drift {drift}, ‖C0‖ {}",
        c0.norm()
    );
}

#[test]
fn fixed_x_closed_form_equals_integration() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let a = gaussian(6, 6, 1.0, &mut rng);
    let x = (&a + a.transpose()) * 0.5; // symmetric, indefinite
    let w0 = gaussian(6, 6, 1.0, &mut rng);
    let d = 6;
    let (values, vectors) = directclr::theory::closed_form::sorted_symmetric_eigen(&x);
    let rho = values.iter().fold(0.0f64, |m, v| m.max(v.abs())); // ‖X‖₂
    let top = values[0].max(0.0);
    let steps = 4000;
    for t in [0.1, 1.0, 2.5] {
        let closed = fixed_x_solution(&w0, &x, t);
        let numeric = integrate_fixed_x(&w0, &x, t, steps);
        // In X's eigenbasis each direction is y' = λy; RK4 multiplies by R(hλ) = Σ_{k≤4}
        // (hλ)^k/k! with |R(z) − e^z| ≤ |z|⁵/120·e^|z|, so after n steps the error is
        // ≤ ‖W0‖_F·e^{λ⁺t}·t·ρ⁵h⁴/120 (×1.1 for e^|z| and (1 + O(z⁵))^n, hρ < 2e-3).
        // Rounding: each step rounds ≤ γ_{d+8}·‖W‖_F·(1 + 2h‖X‖_F), carried to t by the flow:
        // n·γ_{d+8}·(1 + 2h‖X‖_F)·‖W0‖_F·e^{λ⁺t}. The closed form (backward-stable eigensolver:
        // ‖E‖, ‖UᵀU − I‖ ≤ c·d·ε; two d-term products): ≤ γ_{4d}·(ρt + 2d + 2)·√d·‖W0‖_F·e^{λ⁺t}.
        let h = t / steps as f64;
        let scale = w0.norm() * (top * t).exp();
        let truncation = 1.1 * t * rho.powi(5) * h.powi(4) / 120.0;
        let rounding = steps as f64 * gamma(d + 8) * (1.0 + 2.0 * h * x.norm());
        let closed_error = gamma(4 * d) * (rho * t + 2.0 * d as f64 + 2.0) * (d as f64).sqrt();
        let tol = scale * (truncation + rounding + closed_error);
        let err = max_abs_diff(&closed, &numeric);
        assert!(within(err, tol), "t = {t}: {err:e} > {tol:e}");
    }
    // Along X's negative eigenvectors W(t) decays as e^(λt) (Theorem 1). W(t)·v_k =
    // e^{λ_k t}·W0·v_k up to: UᵀU − I ≤ c·d·ε mixing in the other directions (≤ e^{λ⁺t}) and
    // three d-term products: ‖δ‖ ≤ γ_{4d}·(2d + 2)·‖W0‖_F·e^{λ⁺t}, over ‖W0·v_k‖; plus the
    // relative rounding of exp(λt) (ε·(1 + |λt|)) and of the two norms (γ_{2d+4}).
    let t = 3.0;
    let wt = fixed_x_solution(&w0, &x, t);
    for (k, &l) in values.iter().enumerate() {
        let v = vectors.column(k);
        let ratio = (&wt * v).norm() / (&w0 * v).norm();
        let tol = gamma(4 * d) * (2.0 * d as f64 + 2.0) * w0.norm() * (top * t).exp()
            / (&w0 * v).norm()
            + ratio * gamma(2 * d + 4) * (1.0 + (l * t).abs());
        let err = (ratio - (l * t).exp()).abs();
        assert!(within(err, tol), "k = {k}: {err:e} > {tol:e}");
    }
}

/// Theorem 3 against Lemma 4 (σ̇ = uᵀẆv) for aligned layers under the flow Ẇ1 = W2ᵀ(W2W1)X,
/// Ẇ2 = (W2W1)X W1ᵀ.
#[test]
fn theorem3_matches_singular_value_flow_of_aligned_layers() {
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    let d = 5;
    let (u1, v1, u2) = (
        random_orthogonal(d, &mut rng),
        random_orthogonal(d, &mut rng),
        random_orthogonal(d, &mut rng),
    );
    let sv1 = [2.0, 1.5, 1.0, 0.6, 0.3];
    let sv2 = [1.8, 1.1, 0.9, 0.5, 0.2];
    let s1 = DMatrix::from_diagonal(&nalgebra::DVector::from_vec(sv1.to_vec()));
    let s2 = DMatrix::from_diagonal(&nalgebra::DVector::from_vec(sv2.to_vec()));
    let w1 = &u1 * &s1 * v1.transpose();
    let w2 = &u2 * &s2 * u1.transpose(); // V2 = U1: aligned
    let a = gaussian(d, d, 1.0, &mut rng);
    let x = &a * a.transpose(); // positive definite
    let p = &w2 * &w1;
    let w1_dot = w2.transpose() * &p * &x;
    let w2_dot = &p * &x * w1.transpose();
    let (svd1, svd2) = (sorted_svd(&w1), sorted_svd(&w2));
    // Both sides use the same computed SVDs; they differ because W1, W2 are aligned only up
    // to rounding (orthogonal factors from QR: ‖QᵀQ − I‖ ≤ c·d·ε; two d-term products) and
    // the SVDs are backward stable (‖E‖ ≤ c·d·ε·‖W‖): the singular vectors move by
    // ≤ ‖E‖/gap (Wedin; smallest gap 0.2), the singular values by ≤ ‖E‖ (Weyl). With
    // P = ‖W1‖‖W2‖²‖X‖ the size of both sides: |δ| ≤ γ_{8d}·(4 + 8·σ_max/gap)·P, four
    // vectors and three factors accounted for.
    let gap = 0.2;
    let sigma_max = 2.0;
    let (x_norm, w1_norm, w2_norm) = (x.norm(), w1.norm(), w2.norm()); // ‖·‖_F ≥ ‖·‖₂
    let tol1 = gamma(8 * d) * (4.0 + 8.0 * sigma_max / gap) * w1_norm * w2_norm.powi(2) * x_norm;
    let tol2 = gamma(8 * d) * (4.0 + 8.0 * sigma_max / gap) * w1_norm.powi(2) * w2_norm * x_norm;
    for (k, (v1_dot, v2_dot)) in theorem3_velocities(&w1, &w2, &x).into_iter().enumerate() {
        let lemma4_1 = (svd1.u.column(k).transpose() * &w1_dot * svd1.v.column(k))[(0, 0)];
        let lemma4_2 = (svd2.u.column(k).transpose() * &w2_dot * svd2.v.column(k))[(0, 0)];
        let err = (v1_dot - lemma4_1).abs();
        assert!(within(err, tol1), "k = {k}: {err:e} > {tol1:e}");
        let err = (v2_dot - lemma4_2).abs();
        assert!(within(err, tol2), "k = {k}: {err:e} > {tol2:e}");
        // σ̇1 = σ1σ2²·vᵀXv ≥ σ1σ2²·λ_min(X) mathematically; the rounding (tol1) is far smaller.
        assert!(v1_dot > tol1, "X positive definite: singular values grow");
    }
}

#[test]
fn matched_alignment_undoes_a_signed_permutation() {
    let perm = [2usize, 0, 3, 1];
    let a = DMatrix::from_fn(4, 4, |r, c| {
        if perm[r] == c {
            if r % 2 == 0 {
                1.0
            } else {
                -1.0
            }
        } else {
            1e-3 * (r + c) as f64
        }
    });
    let (m, pick) = directclr::theory::closed_form::matched_alignment(&a);
    assert_eq!(pick, perm.to_vec());
    // Against the value computed independently: 4 / (4 + Σ_off (1e-3·(r + c))²), a ratio of
    // 16-term sums of squares of values ≤ 1: |δ| ≤ 2·γ_{20}.
    let off: f64 = (0..4)
        .flat_map(|r| (0..4).map(move |c| (r, c)))
        .filter(|&(r, c)| perm[r] != c)
        .map(|(r, c)| (1e-3 * (r + c) as f64).powi(2))
        .sum();
    let expected = 4.0 / (4.0 + off);
    let dominance = directclr::theory::closed_form::diagonal_dominance(&m);
    assert!(
        within((dominance - expected).abs(), 2.0 * gamma(20)),
        "{dominance} vs {expected}"
    );
    // The matrix is near a permutation (a property of its exact entries).
    assert!(expected < 1.0 && expected > 1.0 - 1e-3);
    // Exact: each row's largest square is (±1)² = 1, and the mean of four 1.0s is 1.0.
    assert_eq!(directclr::theory::closed_form::row_dominance(&a), 1.0);
}

/// The product shortcut of linear networks (dL/dW_l from dL/dP) equals back-propagation.
#[test]
fn gradients_from_the_product_equal_backpropagation() {
    for layers in [1, 2, 3, 4] {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let net: ToyNet<f64> = ToyNet::new(5, layers, Activation::Linear, Init::Uniform, &mut rng);
        let x = gaussian(12, 5, 1.0, &mut rng);
        let dz = gaussian(12, 5, 1.0, &mut rng);
        let (n, d) = x.shape();
        let fwd = net.forward(&x);
        let reference = net.backward(&fwd, dz.clone());
        let fast = net.grads_from_product(&(dz.transpose() * &x));
        // Both compute (dz·W_L···W_{l+1})ᵀ·(x·W_1ᵀ···W_{l−1}ᵀ) in different orders: each is a
        // chain of an N-term and ≤ L − 1 d-term sums, |δ| ≤ γ_{N+L·d}·M̄_l with M̄_l the same
        // product in absolute values; two orders compared.
        let mut above = abs(&dz); // |dz|·|W_L|···|W_{l+1}|
        let mut below = vec![abs(&x)]; // |x|·|W_1|ᵀ···|W_{l−1}|ᵀ
        for w in &net.layers {
            let next = below.last().unwrap() * abs(w).transpose();
            below.push(next);
        }
        for l in (0..layers).rev() {
            let tol = 2.0 * gamma(n + layers * d) * (above.transpose() * &below[l]).max();
            let err = max_abs_diff(&reference[l], &fast[l]);
            assert!(
                within(err, tol),
                "L = {layers}, layer {l}: {err:e} > {tol:e}"
            );
            above = &above * abs(&net.layers[l]);
        }
        // W_L···W_1 by matrixmultiply and by nalgebra (to_f64 is a copy for f64): two
        // orders of L − 1 d-term products, |δ| ≤ γ_{L·d}·(|W_L|···|W_1|) each.
        let pbar = net
            .layers
            .iter()
            .fold(DMatrix::identity(d, d), |p, w| abs(w) * p);
        let tol = 2.0 * gamma(layers * d) * pbar.max();
        let err = max_abs_diff(
            &directclr::theory::real::to_f64(&net.product_t()),
            &net.product(),
        );
        assert!(within(err, tol), "L = {layers} product: {err:e} > {tol:e}");
    }
}

/// The measurements' shortcuts give the full decompositions' values bit for bit: an SVD with
/// only U, only V or neither requested (the last computes U all the same), and the eigenvalues
/// without the eigenvectors.
#[test]
fn partial_decompositions_give_the_same_values() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for (rows, cols) in [(16, 16), (16, 16), (8, 16), (16, 8), (3, 3), (2, 2), (1, 4)] {
        let w = gaussian(rows, cols, 1.0, &mut rng);
        let full = sorted_svd(&w);
        for (want_u, want_v) in [(true, true), (true, false), (false, true), (false, false)] {
            let (values, u, v) = sorted_svd_parts(&w, want_u, want_v);
            assert_eq!(values, full.values, "{rows}×{cols}, U {want_u}, V {want_v}");
            assert_eq!(u.as_ref(), want_u.then_some(&full.u));
            assert_eq!(v.as_ref(), want_v.then_some(&full.v));
        }
        if rows == cols {
            let m = &w * w.transpose() + &w;
            assert_eq!(
                sorted_symmetric_eigenvalues(&m),
                sorted_symmetric_eigen(&m).0
            );
        }
    }
}

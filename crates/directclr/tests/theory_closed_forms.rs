//! The closed forms of Sections 4–5 against libtorch's autograd and against each other, in f64.

use directclr::loss::{InfoNce, Negatives};
use directclr::theory::{
    closed_form::{
        eqn6_distance, fixed_x_solution, integrate_fixed_x, lemma1_weight_grad, lemma2, sorted_svd,
        theorem2_invariant, theorem3_velocities, x_matrix,
    },
    toy_net::random_orthogonal,
    Activation, Init, ToyLoss, ToyNet,
};
use nalgebra::DMatrix;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use tch::{Kind, Tensor};

const TAU: f64 = 0.1;

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
        let wt = to_tensor(&w).set_requires_grad(true);
        let z1t = to_tensor(&x1).matmul(&wt.tr());
        let z2t = to_tensor(&x2).matmul(&wt.tr());
        let lt = torch_loss(loss, &z1t, &z2t);
        let grads = Tensor::run_backward(&[&lt], &[&z1t, &z2t, &wt], false, false);

        let z1 = &x1 * w.transpose();
        let z2 = &x2 * w.transpose();
        let eg = loss.evaluate(&z1, &z2, TAU);
        assert!(
            (eg.loss - lt.double_value(&[])).abs() < 1e-12,
            "{loss:?} loss {} vs {}",
            eg.loss,
            lt.double_value(&[])
        );
        let (g1, g2) = eg.apply(&z1, &z2);
        assert!(
            max_abs_diff(&g1, &to_matrix(&grads[0])) < 1e-10,
            "{loss:?} Eqn 4 g_z"
        );
        assert!(
            max_abs_diff(&g2, &to_matrix(&grads[1])) < 1e-10,
            "{loss:?} Eqn 4 g_z'"
        );
        let g_w = lemma1_weight_grad(&g1, &g2, &x1, &x2);
        assert!(
            max_abs_diff(&g_w, &to_matrix(&grads[2])) < 1e-10,
            "{loss:?} Lemma 1"
        );
        // Eqn 5: G = −W X.
        let x = x_matrix(&eg, &x1, &x2);
        assert!(
            max_abs_diff(&(-&w * &x), &to_matrix(&grads[2])) < 1e-10,
            "{loss:?} Eqn 5"
        );
        assert!(
            max_abs_diff(&x, &x.transpose()) < 1e-12,
            "{loss:?} X is symmetric"
        );
    }
}

#[test]
fn eqn6_and_lemma2_agree() {
    let (x1, x2, w) = setup(2, 10, 4);
    let (z1, z2) = (&x1 * w.transpose(), &x2 * w.transpose());
    // The paper's loss: Eqn 6 written out = the generic X = Σ0 − Σ1.
    let eg = ToyLoss::Distance.evaluate(&z1, &z2, TAU);
    let generic = x_matrix(&eg, &x1, &x2);
    let eqn6 = eqn6_distance(&eg.weights(), &x1, &x2, TAU);
    let l2 = lemma2(ToyLoss::Distance, &eg.weights(), &x1, &x2, TAU);
    assert!(max_abs_diff(&generic, &eqn6) < 1e-10);
    assert!(max_abs_diff(&eqn6, &(&l2.sigma0 - &l2.sigma1)) < 1e-10);
    assert!(l2.remainder.abs().max() == 0.0);
    // Σ0 and Σ1 are positive semi-definite.
    for s in [&l2.sigma0, &l2.sigma1] {
        assert!(s.clone().symmetric_eigen().eigenvalues.min() > -1e-12);
    }
    // The authors' dot-product loss: X = Σ0 − Σ1 + R.
    let eg = ToyLoss::Dot.evaluate(&z1, &z2, TAU);
    let l2 = lemma2(ToyLoss::Dot, &eg.weights(), &x1, &x2, TAU);
    let generic = x_matrix(&eg, &x1, &x2);
    assert!(max_abs_diff(&generic, &(&l2.sigma0 - &l2.sigma1 + &l2.remainder)) < 1e-10);
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
        for l in 0..layers {
            assert!(
                max_abs_diff(&grads[l], &to_matrix(&tg[l])) < 1e-10,
                "L={layers} {activation:?} layer {l}"
            );
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
    let c0 = theorem2_invariant(&net.layers[0], &net.layers[1]);
    let lr = 1e-3;
    let mut bound = 0.0;
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
        let g = net.backward(&fwd, dz);
        let second = (&g[0] * g[0].transpose() - g[1].transpose() * &g[1]) * (lr * lr);
        net.layers[0] -= &g[0] * lr;
        net.layers[1] -= &g[1] * lr;
        let after = theorem2_invariant(&net.layers[0], &net.layers[1]);
        assert!(
            max_abs_diff(&(after - before), &second) < 1e-14,
            "step {step}"
        );
        bound += second.norm();
    }
    let drift = (theorem2_invariant(&net.layers[0], &net.layers[1]) - &c0).norm();
    assert!(
        drift <= bound + 1e-15 && drift < 1e-3 * c0.norm(),
        "drift {drift}, bound {bound}"
    );
}

#[test]
fn fixed_x_closed_form_equals_integration() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let a = gaussian(6, 6, 1.0, &mut rng);
    let x = (&a + a.transpose()) * 0.5; // symmetric, indefinite
    let w0 = gaussian(6, 6, 1.0, &mut rng);
    for t in [0.1, 1.0, 2.5] {
        let closed = fixed_x_solution(&w0, &x, t);
        let numeric = integrate_fixed_x(&w0, &x, t, 4000);
        assert!(
            max_abs_diff(&closed, &numeric) / closed.abs().max() < 1e-10,
            "t = {t}"
        );
    }
    // Along X's negative eigenvectors W(t) decays as e^(λt) (Theorem 1).
    let (values, vectors) = directclr::theory::closed_form::sorted_symmetric_eigen(&x);
    let t = 3.0;
    let wt = fixed_x_solution(&w0, &x, t);
    for (k, &l) in values.iter().enumerate() {
        let v = vectors.column(k);
        let ratio = (&wt * v).norm() / (&w0 * v).norm();
        assert!((ratio - (l * t).exp()).abs() < 1e-9 * ratio.max(1.0));
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
    let s1 = DMatrix::from_diagonal(&nalgebra::DVector::from_vec(vec![2.0, 1.5, 1.0, 0.6, 0.3]));
    let s2 = DMatrix::from_diagonal(&nalgebra::DVector::from_vec(vec![1.8, 1.1, 0.9, 0.5, 0.2]));
    let w1 = &u1 * &s1 * v1.transpose();
    let w2 = &u2 * &s2 * u1.transpose(); // V2 = U1: aligned
    let a = gaussian(d, d, 1.0, &mut rng);
    let x = &a * a.transpose(); // positive definite
    let p = &w2 * &w1;
    let w1_dot = w2.transpose() * &p * &x;
    let w2_dot = &p * &x * w1.transpose();
    let (svd1, svd2) = (sorted_svd(&w1), sorted_svd(&w2));
    for (k, (v1_dot, v2_dot)) in theorem3_velocities(&w1, &w2, &x).into_iter().enumerate() {
        let lemma4_1 = (svd1.u.column(k).transpose() * &w1_dot * svd1.v.column(k))[(0, 0)];
        let lemma4_2 = (svd2.u.column(k).transpose() * &w2_dot * svd2.v.column(k))[(0, 0)];
        assert!(
            (v1_dot - lemma4_1).abs() < 1e-10 * lemma4_1.abs().max(1.0),
            "k = {k}"
        );
        assert!(
            (v2_dot - lemma4_2).abs() < 1e-10 * lemma4_2.abs().max(1.0),
            "k = {k}"
        );
        assert!(v1_dot > 0.0, "X positive definite: singular values grow");
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
    assert!((directclr::theory::closed_form::diagonal_dominance(&m) - 1.0).abs() < 1e-3);
    assert!((directclr::theory::closed_form::row_dominance(&a) - 1.0).abs() < 1e-3);
}

/// The product shortcut of linear networks (dL/dW_l from dL/dP) equals back-propagation.
#[test]
fn gradients_from_the_product_equal_backpropagation() {
    for layers in [1, 2, 3, 4] {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let net: ToyNet<f64> = ToyNet::new(5, layers, Activation::Linear, Init::Uniform, &mut rng);
        let x = gaussian(12, 5, 1.0, &mut rng);
        let dz = gaussian(12, 5, 1.0, &mut rng);
        let fwd = net.forward(&x);
        let reference = net.backward(&fwd, dz.clone());
        let fast = net.grads_from_product(&(dz.transpose() * &x));
        for l in 0..layers {
            assert!(
                max_abs_diff(&reference[l], &fast[l]) < 1e-12,
                "L = {layers}, layer {l}"
            );
        }
        assert!(
            max_abs_diff(
                &directclr::theory::real::to_f64(&net.product_t()),
                &net.product()
            ) < 1e-15
        );
    }
}

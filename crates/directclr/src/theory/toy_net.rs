//! The toy networks of Sections 4–5: L square layers without bias, linear or with ReLU
//! between them (Figure 6b), and their initialisations.

use nalgebra::DMatrix;
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::real::{gemm, Op, Real};

/// What sits between two layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum Activation {
    /// Nothing: a deep linear network (Sections 4–5).
    #[default]
    Linear,
    /// ReLU between layers, none after the last (Figure 6b).
    Relu,
}

/// How the weights start.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Init {
    /// PyTorch's default for `nn.Linear`: U(−1/√d_in, 1/√d_in) (the authors' case 1).
    Uniform,
    /// W = U·diag(e^(−rate·k), k = 0..d−1)·Vᵀ with U, V Haar-random orthogonal: non-degenerate
    /// singular values, as Section 5.3 requires (the authors' case 2, rate 0.35).
    SpectralDecay {
        /// The decay rate of the singular values.
        rate: f64,
    },
}

/// A Haar-random orthogonal matrix: QR of a Gaussian matrix with the signs of R's diagonal
/// moved into Q.
pub fn random_orthogonal<R: Rng + ?Sized>(d: usize, rng: &mut R) -> DMatrix<f64> {
    let g = DMatrix::from_fn(d, d, |_, _| f64::standard_normal(rng));
    let qr = g.qr();
    let (mut q, r) = (qr.q(), qr.r());
    for k in 0..d {
        if r[(k, k)] < 0.0 {
            q.column_mut(k).neg_mut();
        }
    }
    q
}

impl Init {
    /// Draws one [d_out, d_in] weight matrix.
    pub fn draw<T: Real, R: Rng + ?Sized>(
        &self,
        d_out: usize,
        d_in: usize,
        rng: &mut R,
    ) -> DMatrix<T> {
        match *self {
            Init::Uniform => {
                let bound = 1.0 / (d_in as f64).sqrt();
                DMatrix::from_fn(d_out, d_in, |_, _| T::of(rng.gen_range(-bound..bound)))
            }
            Init::SpectralDecay { rate } => {
                let k = d_out.min(d_in);
                let u = random_orthogonal(d_out, rng);
                let v = random_orthogonal(d_in, rng);
                let mut s = DMatrix::zeros(d_out, d_in);
                for i in 0..k {
                    s[(i, i)] = (-rate * i as f64).exp();
                }
                (u * s * v.transpose()).map(T::of)
            }
        }
    }
}

/// L square layers without bias: h_l = act(W_l h_{l−1}), z = W_L h_{L−1}.
#[derive(Debug, Clone)]
pub struct ToyNet<T: Real> {
    /// The weights, first layer first, each [d, d].
    pub layers: Vec<DMatrix<T>>,
    /// What sits between layers.
    pub activation: Activation,
}

/// The activations of a forward pass, kept for the backward pass.
#[derive(Debug, Clone)]
pub struct Forward<T: Real> {
    /// The input of each layer, then the output. [L + 1] × [B, d]
    pub hidden: Vec<DMatrix<T>>,
}

impl<T: Real> Forward<T> {
    /// The output of the network. [B, d]
    pub fn output(&self) -> &DMatrix<T> {
        self.hidden.last().expect("a forward pass has an output")
    }
}

impl<T: Real> ToyNet<T> {
    /// Draws `layers` matrices of size [d, d].
    pub fn new<R: Rng + ?Sized>(
        d: usize,
        layers: usize,
        activation: Activation,
        init: Init,
        rng: &mut R,
    ) -> Self {
        ToyNet {
            layers: (0..layers).map(|_| init.draw(d, d, rng)).collect(),
            activation,
        }
    }

    /// The forward pass on a batch of rows.
    /// # Shapes
    /// x: [B, d] → hidden states, output [B, d]
    pub fn forward(&self, x: &DMatrix<T>) -> Forward<T> {
        let mut hidden = Vec::with_capacity(self.layers.len() + 1);
        hidden.push(x.clone());
        for (l, w) in self.layers.iter().enumerate() {
            let mut h = DMatrix::zeros(x.nrows(), w.nrows());
            gemm(T::one(), &hidden[l], Op::N, w, Op::T, T::zero(), &mut h);
            if self.activation == Activation::Relu && l + 1 < self.layers.len() {
                h.apply(|v| *v = v.max(T::zero()));
            }
            hidden.push(h);
        }
        Forward { hidden }
    }

    /// The output alone. [B, d] → [B, d]
    pub fn apply(&self, x: &DMatrix<T>) -> DMatrix<T> {
        let mut h = x.clone();
        for (l, w) in self.layers.iter().enumerate() {
            let mut next = DMatrix::zeros(h.nrows(), w.nrows());
            gemm(T::one(), &h, Op::N, w, Op::T, T::zero(), &mut next);
            h = next;
            if self.activation == Activation::Relu && l + 1 < self.layers.len() {
                h.apply(|v| *v = v.max(T::zero()));
            }
        }
        h
    }

    /// Back-propagates dL/dz through the layers: returns dL/dW_l for every layer.
    /// # Shapes
    /// fwd: from [`ToyNet::forward`] on [B, d]; dz: [B, d] → L × [d, d]
    pub fn backward(&self, fwd: &Forward<T>, dz: DMatrix<T>) -> Vec<DMatrix<T>> {
        let nl = self.layers.len();
        let mut grads = vec![DMatrix::zeros(0, 0); nl];
        let mut delta = dz;
        for l in (0..nl).rev() {
            // delta: dL/d(pre-activation output of layer l)   [B, d]
            let w = &self.layers[l];
            let mut g = DMatrix::zeros(w.nrows(), w.ncols());
            gemm(
                T::one(),
                &delta,
                Op::T,
                &fwd.hidden[l],
                Op::N,
                T::zero(),
                &mut g,
            );
            grads[l] = g;
            if l > 0 {
                let mut below = DMatrix::zeros(delta.nrows(), w.ncols());
                gemm(T::one(), &delta, Op::N, w, Op::N, T::zero(), &mut below);
                if self.activation == Activation::Relu {
                    below.zip_apply(&fwd.hidden[l], |g, h| {
                        if h <= T::zero() {
                            *g = T::zero()
                        }
                    });
                }
                delta = below;
            }
        }
        grads
    }

    /// The end-to-end map P = W_L···W_1 in the network's precision (for a linear network,
    /// z = P x). [d_out, d_in]
    pub fn product_t(&self) -> DMatrix<T> {
        let mut p = self.layers[0].clone();
        for w in &self.layers[1..] {
            let mut next = DMatrix::zeros(w.nrows(), p.ncols());
            gemm(T::one(), w, Op::N, &p, Op::N, T::zero(), &mut next);
            p = next;
        }
        p
    }

    /// For a linear network, the gradients of every layer from the gradient with respect to
    /// the product P = W_L···W_1: dL/dW_l = (W_L···W_{l+1})ᵀ · dL/dP · (W_{l−1}···W_1)ᵀ.
    /// Equal to [`ToyNet::backward`] (up to rounding) at a fraction of its cost, since the batch
    /// enters only through dL/dP = Σ g xᵀ (Lemma 1).
    /// # Shapes
    /// dp: [d_out, d_in] → L × [d, d]
    pub fn grads_from_product(&self, dp: &DMatrix<T>) -> Vec<DMatrix<T>> {
        let nl = self.layers.len();
        // below[l] = W_{l−1}···W_1 (identity for l = 0); above = W_L···W_{l+1}, built downwards.
        let mut below = Vec::with_capacity(nl);
        below.push(DMatrix::identity(
            self.layers[0].ncols(),
            self.layers[0].ncols(),
        ));
        for l in 1..nl {
            let mut next = DMatrix::zeros(self.layers[l - 1].nrows(), below[l - 1].ncols());
            gemm(
                T::one(),
                &self.layers[l - 1],
                Op::N,
                &below[l - 1],
                Op::N,
                T::zero(),
                &mut next,
            );
            below.push(next);
        }
        let mut grads = vec![DMatrix::zeros(0, 0); nl];
        let mut upper_grad = dp.clone(); // (W_L···W_{l+1})ᵀ · dP
        for l in (0..nl).rev() {
            let mut g = DMatrix::zeros(upper_grad.nrows(), below[l].nrows());
            gemm(
                T::one(),
                &upper_grad,
                Op::N,
                &below[l],
                Op::T,
                T::zero(),
                &mut g,
            );
            grads[l] = g;
            if l > 0 {
                let w = &self.layers[l];
                let mut next = DMatrix::zeros(w.ncols(), upper_grad.ncols());
                gemm(T::one(), w, Op::T, &upper_grad, Op::N, T::zero(), &mut next);
                upper_grad = next;
            }
        }
        grads
    }

    /// The end-to-end linear map W_L···W_1 (meaningful for linear networks). [d, d]
    pub fn product(&self) -> DMatrix<f64> {
        let mut p = DMatrix::identity(self.layers[0].ncols(), self.layers[0].ncols());
        for w in &self.layers {
            p = super::real::to_f64(w) * p;
        }
        p
    }
}

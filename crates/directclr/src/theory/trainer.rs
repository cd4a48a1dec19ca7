//! The one training loop of the toy models, for every case of Sections 4–5, with the
//! measurements of Figures 4–6 taken every `log_every` steps.
//!
//! Randomness comes from independent ChaCha8 streams of the run's seed (data, init, batch
//! order, augmentation noise, measurements), so a run is repeatable bit for bit and measuring
//! more or less often never changes the trajectory.

use nalgebra::DMatrix;
use rand::{seq::index, Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::Serialize;

use super::{
    closed_form::{
        alignment_matrix, diagonal_dominance, misalignment, sorted_svd_parts,
        sorted_symmetric_eigenvalues, x_matrix,
    },
    config::{NoiseSupport, Precision, ToyConfig},
    head::{head_grads_normed, Head, HeadConfig},
    real::{gemm, to_f64, Op, Real},
    toy_loss::ZNorm,
    toy_net::{Activation, ToyNet},
};
use crate::{
    analysis::{covariance_eigenvalues_with, reshape, CovarianceScratch},
    Error, Result,
};

/// The random streams of a run.
#[derive(Clone, Copy)]
enum Stream {
    Data = 0,
    Init = 1,
    Batches = 2,
    Noise = 3,
    Measure = 4,
    Head = 5,
}

fn stream(seed: u64, s: Stream) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(s as u64);
    rng
}

/// A fast generator for the hot streams (batch order, noise), seeded from a ChaCha8 stream.
fn fast_stream(seed: u64, s: Stream) -> Xoshiro256PlusPlus {
    Xoshiro256PlusPlus::from_seed(stream(seed, s).gen())
}

/// Draws batches without replacement: a partial Fisher–Yates shuffle of a persistent index
/// array, O(batch) per draw. Any starting order gives a uniformly random batch.
struct BatchSampler {
    order: Vec<u32>,
}

impl BatchSampler {
    fn new(samples: usize) -> Self {
        BatchSampler {
            order: (0..samples as u32).collect(),
        }
    }

    /// `b` distinct indices, uniformly at random.
    fn draw<R: Rng>(&mut self, rng: &mut R, b: usize) -> &[u32] {
        let n = self.order.len();
        for i in 0..b {
            let j = rng.gen_range(i..n);
            self.order.swap(i, j);
        }
        &self.order[..b]
    }
}

/// One measurement of a run.
#[derive(Debug, Clone, Serialize)]
pub struct ToyRecord {
    /// SGD steps done.
    pub step: usize,
    /// Loss of the last batch (`None` before the first step).
    pub loss: Option<f64>,
    /// Eigenvalues (descending) of the covariance (Eqn 1) of the encoder's output r on fresh
    /// samples (the embedding when there is no head).
    pub embedding_spectrum: Vec<f64>,
    /// Singular values (descending) of the [eval_samples, d] matrix of r, not centred: what
    /// RankMe / effective rank reads (measured by [`train_with_head`] only: one more
    /// eigen-decomposition per measurement, which [`train`] spares Sections 4–5).
    pub representation_singular_values: Option<Vec<f64>>,
    /// Eigenvalues (descending) of the covariance of the head's output z on the same samples
    /// (`None` without a head).
    pub head_spectrum: Option<Vec<f64>>,
    /// Singular values (descending) of each layer, first layer first.
    pub layer_singular_values: Vec<Vec<f64>>,
    /// Diagonal dominance of A = V_{l+1}ᵀ U_l for each pair of adjacent layers.
    pub alignment: Vec<f64>,
    /// [`misalignment`] of each pair of adjacent layers (0 = aligned).
    pub misalignment: Vec<f64>,
    /// Eigenvalues (descending) of X (Eqn 6) averaged over `x_batches` batches.
    pub x_eigenvalues: Option<Vec<f64>>,
}

/// A finished run: the measurements and the final state.
#[derive(Debug, Clone)]
pub struct ToyRun {
    /// The settings.
    pub config: ToyConfig,
    /// The head on top of the encoder.
    pub head: HeadConfig,
    /// The head's parameters (frozen ones included) at the start, in f64.
    pub head_initial_weights: Vec<DMatrix<f64>>,
    /// The head's parameters at the end, in f64.
    pub head_weights: Vec<DMatrix<f64>>,
    /// Measurements at step 0, every `log_every` steps and at the end.
    pub records: Vec<ToyRecord>,
    /// The final weights in f64, first layer first. L × [d, d]
    pub weights: Vec<DMatrix<f64>>,
    /// The final alignment matrices A = V_{l+1}ᵀ U_l. (L − 1) × [d, d]
    pub alignment: Vec<DMatrix<f64>>,
    /// The initial weights in f64. L × [d, d]
    pub initial_weights: Vec<DMatrix<f64>>,
    /// X (Eqn 6) at the initial weights. [d, d]
    pub x_initial: Option<DMatrix<f64>>,
    /// X averaged over all measurements of the run: the fixed X that Theorem 1 assumes is best
    /// approximated by this time average. [d, d]
    pub x_mean: Option<DMatrix<f64>>,
    /// X at the final weights. [d, d]
    pub x_final: Option<DMatrix<f64>>,
}

impl ToyRun {
    /// The last measurement.
    pub fn last(&self) -> &ToyRecord {
        self.records
            .last()
            .expect("a run has at least the step-0 record")
    }
}

/// Trains the toy model the config describes, in its precision.
pub fn train(config: &ToyConfig) -> Result<ToyRun> {
    train_with_head(config, &HeadConfig::none())
}

/// Trains the toy encoder the config describes with `head` between its output r and the loss
/// (Section 6), measuring also the singular values of r and the spectrum of z. With
/// [`HeadKind::None`](super::HeadKind::None) the trajectory is that of [`train`].
pub fn train_with_head(config: &ToyConfig, head: &HeadConfig) -> Result<ToyRun> {
    config.check()?;
    head.check(config.dim)?;
    match config.precision {
        Precision::F32 => Trainer::<f32>::with_head(config, head)
            .measuring_rank()
            .run(),
        Precision::F64 => Trainer::<f64>::with_head(config, head)
            .measuring_rank()
            .run(),
    }
}

/// The state of a toy run in precision `T`.
pub struct Trainer<T: Real> {
    config: ToyConfig,
    /// The fixed training samples, row-major. [samples, d]
    data: Vec<T>,
    /// The network (the encoder when there is a head).
    pub net: ToyNet<T>,
    /// The head between the encoder's output r and the loss.
    pub head: Head<T>,
    head_config: HeadConfig,
    measure_rank: bool,
    batches: Xoshiro256PlusPlus,
    sampler: BatchSampler,
    noise: Xoshiro256PlusPlus,
    /// The loss's [N, N] buffer, reused from step to step.
    scratch: Option<DMatrix<T>>,
    measure: ChaCha8Rng,
    /// The buffers of [`Trainer::measure`], reused from measurement to measurement.
    buffers: MeasureBuffers<T>,
}

/// The buffers of [`Trainer::measure`].
struct MeasureBuffers<T: Real> {
    /// The fresh samples. [eval_samples, d]
    fresh: DMatrix<T>,
    /// r in f64. [eval_samples, d]
    r64: DMatrix<f64>,
    /// The head's output z in f64. [eval_samples, d_z]
    z64: DMatrix<f64>,
    /// The covariance's buffers.
    covariance: CovarianceScratch,
}

impl<T: Real> Default for MeasureBuffers<T> {
    fn default() -> Self {
        MeasureBuffers {
            fresh: DMatrix::zeros(0, 0),
            r64: DMatrix::zeros(0, 0),
            z64: DMatrix::zeros(0, 0),
            covariance: CovarianceScratch::default(),
        }
    }
}

/// `m` converted to f64 into `out` (reallocated only if its shape differs).
fn copy_to_f64<T: Real>(m: &DMatrix<T>, out: &mut DMatrix<f64>) {
    reshape(out, m.nrows(), m.ncols());
    for (o, v) in out.as_mut_slice().iter_mut().zip(m.as_slice()) {
        *o = v.f64();
    }
}

impl<T: Real> Trainer<T> {
    /// Draws the data and the initial weights. The config must have passed [`ToyConfig::check`].
    pub fn new(config: &ToyConfig) -> Self {
        Self::with_head(config, &HeadConfig::none())
    }

    /// [`Trainer::new`] with a head, drawn from its own random stream (so the data, the
    /// encoder's initial weights and the batches are the same whatever the head). Both configs
    /// must have passed their checks.
    pub fn with_head(config: &ToyConfig, head_config: &HeadConfig) -> Self {
        let d = config.dim;
        let mut data_rng = stream(config.seed, Stream::Data);
        let data = (0..config.samples * d)
            .map(|_| T::standard_normal(&mut data_rng))
            .collect();
        let net = ToyNet::new(
            d,
            config.layers,
            config.activation,
            config.init,
            &mut stream(config.seed, Stream::Init),
        );
        let head = Head::new(
            head_config,
            d,
            config.init,
            &mut stream(config.seed, Stream::Head),
        );
        Trainer {
            config: config.clone(),
            data,
            net,
            head,
            head_config: *head_config,
            measure_rank: false,
            batches: fast_stream(config.seed, Stream::Batches),
            sampler: BatchSampler::new(config.samples),
            scratch: None,
            noise: fast_stream(config.seed, Stream::Noise),
            measure: stream(config.seed, Stream::Measure),
            buffers: MeasureBuffers::default(),
        }
    }

    /// Also measure the singular values of r ([`ToyRecord::representation_singular_values`]).
    pub fn measuring_rank(mut self) -> Self {
        self.measure_rank = true;
        self
    }

    /// The two views x + ε, x + ε' of the samples `idx`.
    /// # Shapes
    /// → ([B, d], [B, d])
    fn draw_views<S: Rng>(
        data: &[T],
        config: &ToyConfig,
        idx: &[u32],
        noise: &mut S,
    ) -> (DMatrix<T>, DMatrix<T>) {
        let (b, d) = (idx.len(), config.dim);
        let first_noisy = match config.noise_support {
            NoiseSupport::All => 0,
            NoiseSupport::Last(k) => d - k,
        };
        let std = T::of(config.noise_std);
        let noisy = d - first_noisy;
        let mut noise_buf = vec![T::zero(); 2 * b * noisy];
        T::fill_standard_normal(noise, &mut noise_buf);
        let mut noise_iter = noise_buf.chunks_exact((b * noisy).max(1));
        let mut view = || {
            // Whole rows first (each sample is one contiguous row of `data`), noise added in
            // place, then one transposition into nalgebra's column-major layout.
            let mut rows = Vec::with_capacity(b * d);
            for &s in idx {
                rows.extend_from_slice(&data[s as usize * d..(s as usize + 1) * d]);
            }
            if noisy > 0 {
                let eps = noise_iter.next().expect("one noise block per view");
                for (row, e) in rows.chunks_exact_mut(d).zip(eps.chunks_exact(noisy)) {
                    row[first_noisy..]
                        .iter_mut()
                        .zip(e)
                        .for_each(|(v, &e)| *v += std * e);
                }
            }
            DMatrix::from_row_slice(b, d, &rows)
        };
        let x1 = view();
        let x2 = view();
        (x1, x2)
    }

    /// One SGD step on a fresh batch; returns its loss.
    pub fn step(&mut self) -> Result<f64> {
        let b = self.config.batch;
        let idx = self.sampler.draw(&mut self.batches, b);
        let (x1, x2) = Self::draw_views(&self.data, &self.config, idx, &mut self.noise);
        let loss;
        // A linear network is its product P = W_L···W_1: the step is Lemma 1 with Eqn 5,
        // G = ∂L/∂P = P·M (= −P·X), then ∂L/∂W_l from G; with ReLU or a normalised z,
        // back-propagation.
        let mut head_updates = Vec::new();
        let grads = if self.net.activation == Activation::Linear
            && matches!(self.head, Head::None)
            && self.config.z_norm == ZNorm::None
        {
            let p = self.net.product_t();
            let embed = |x: &DMatrix<T>| {
                let mut z = DMatrix::zeros(x.nrows(), p.nrows());
                gemm(T::one(), x, Op::N, &p, Op::T, T::zero(), &mut z);
                z
            };
            let grad = self.checked_loss(&embed(&x1), &embed(&x2))?;
            let m = grad.weight_coefficients(&x1, &x2);
            let mut g = DMatrix::zeros(p.nrows(), p.ncols());
            gemm(T::one(), &p, Op::N, &m, Op::N, T::zero(), &mut g);
            loss = grad.loss;
            self.scratch = Some(grad.into_scratch());
            self.net.grads_from_product(&g)
        } else {
            // Back-propagation x → r → z → ẑ (Section 6 heads; with no head, z = r).
            let g = head_grads_normed(
                &self.net,
                &self.head,
                self.config.loss,
                self.config.z_norm,
                self.config.temperature,
                &x1,
                &x2,
                self.scratch.take(),
            )?;
            loss = g.loss;
            self.scratch = Some(g.scratch);
            head_updates = g.head;
            g.encoder
        };
        let lr = T::of(self.config.lr);
        for (w, g) in self.net.layers.iter_mut().zip(grads) {
            w.zip_apply(&g, |w, g| *w -= lr * g);
        }
        for (w, g) in self.head.parameters_mut().into_iter().zip(head_updates) {
            w.zip_apply(&g, |w, g| *w -= lr * g);
        }
        Ok(loss)
    }

    /// The loss and its gradient coefficients; a non-finite loss is an error.
    fn checked_loss(
        &mut self,
        z1: &DMatrix<T>,
        z2: &DMatrix<T>,
    ) -> Result<super::toy_loss::EmbeddingGrad<T>> {
        let grad =
            self.config
                .loss
                .evaluate_reusing(z1, z2, self.config.temperature, self.scratch.take());
        if grad.loss.is_finite() {
            Ok(grad)
        } else {
            Err(Error::Numerical {
                context: "toy model step".into(),
                reason: format!("loss is {}", grad.loss),
            })
        }
    }

    /// X of Eqn 6 at the current weights, averaged over `x_batches` batches drawn from the
    /// measurement stream; `None` if not requested.
    fn estimate_x(&mut self) -> Option<DMatrix<f64>> {
        let cfg = &self.config;
        if cfg.x_batches == 0 {
            return None;
        }
        let b = cfg.batch;
        let mut sum = DMatrix::zeros(cfg.dim, cfg.dim);
        let mut noise = Xoshiro256PlusPlus::from_seed(self.measure.gen());
        for _ in 0..cfg.x_batches {
            let idx: Vec<u32> = index::sample(&mut self.measure, cfg.samples, b)
                .iter()
                .map(|i| i as u32)
                .collect();
            let (x1, x2) = Self::draw_views(&self.data, cfg, &idx, &mut noise);
            let grad =
                cfg.loss
                    .evaluate(&self.net.apply(&x1), &self.net.apply(&x2), cfg.temperature);
            sum += to_f64(&x_matrix(&grad, &x1, &x2));
        }
        Some(sum / cfg.x_batches as f64)
    }

    /// Takes the measurements of Figures 4–6 at the current weights; also returns the X
    /// estimate when the config asks for one.
    ///
    /// The fresh samples, their f64 copies and the covariance's buffers are reused from one
    /// measurement to the next; eigen-decompositions whose vectors are not used compute the
    /// eigenvalues only, and each layer's SVD accumulates only the singular vectors an alignment
    /// reads. The values are those of computing everything afresh, bit for bit.
    pub fn measure(&mut self, step: usize, loss: Option<f64>) -> (ToyRecord, Option<DMatrix<f64>>) {
        let d = self.config.dim;
        let buf = &mut self.buffers;
        reshape(&mut buf.fresh, self.config.eval_samples, d);
        // The same draws, in the same (column-major) order, as a freshly allocated matrix.
        T::fill_standard_normal(&mut self.measure, buf.fresh.as_mut_slice());
        let r_t = self.net.apply(&buf.fresh);
        let head_spectrum = match self.head {
            Head::None => None,
            _ => {
                let z_t = self.head.forward(&r_t).z;
                copy_to_f64(&z_t, &mut buf.z64);
                Some(covariance_eigenvalues_with(&buf.z64, &mut buf.covariance))
            }
        };
        copy_to_f64(&r_t, &mut buf.r64);
        let z = &buf.r64;
        // Singular values of r from the eigenvalues of the (uncentred) Gram matrix rᵀr.
        let representation_singular_values = self.measure_rank.then(|| {
            let mut gram = DMatrix::zeros(d, d);
            gemm(1.0, z, Op::T, z, Op::N, 0.0, &mut gram);
            sorted_symmetric_eigenvalues(&gram)
                .iter()
                .map(|v| v.max(0.0).sqrt())
                .collect()
        });
        let weights: Vec<DMatrix<f64>> = self.net.layers.iter().map(to_f64).collect();
        // A = V_{l+1}ᵀ U_l (Section 5.3) needs U of every layer but the last and V of every
        // layer but the first (none with one layer).
        let nl = weights.len();
        let svds: Vec<_> = weights
            .iter()
            .enumerate()
            .map(|(l, w)| sorted_svd_parts(w, l + 1 < nl, l > 0))
            .collect();
        let layer_singular_values = svds.iter().map(|s| s.0.clone()).collect();
        let alignment = svds
            .windows(2)
            .map(|s| {
                let (v_upper, u_lower) = (
                    s[1].2.as_ref().expect("V of an upper layer"),
                    s[0].1.as_ref().expect("U of a lower layer"),
                );
                diagonal_dominance(&(v_upper.transpose() * u_lower))
            })
            .collect();
        let misalignment = weights
            .windows(2)
            .map(|w| misalignment(&w[0], &w[1]))
            .collect();
        let embedding_spectrum = covariance_eigenvalues_with(z, &mut buf.covariance);
        let x = self.estimate_x();
        let x_eigenvalues = x.as_ref().map(sorted_symmetric_eigenvalues);
        let record = ToyRecord {
            step,
            loss,
            embedding_spectrum,
            representation_singular_values,
            head_spectrum,
            layer_singular_values,
            alignment,
            misalignment,
            x_eigenvalues,
        };
        (record, x)
    }

    /// Runs every step with measurements.
    pub fn run(mut self) -> Result<ToyRun> {
        let cfg = self.config.clone();
        let initial_weights: Vec<DMatrix<f64>> = self.net.layers.iter().map(to_f64).collect();
        let head_initial_weights = self.head.weights_f64();
        let (first, x_initial) = self.measure(0, None);
        let mut records = vec![first];
        let mut x_sum = x_initial.clone();
        for step in 1..=cfg.steps {
            let loss = self.step().map_err(|e| match e {
                Error::Numerical { reason, .. } => Error::Numerical {
                    context: format!("toy model step {step}"),
                    reason,
                },
                other => other,
            })?;
            if step % cfg.log_every == 0 || step == cfg.steps {
                let (record, x) = self.measure(step, Some(loss));
                records.push(record);
                if let (Some(sum), Some(x)) = (x_sum.as_mut(), x) {
                    *sum += x;
                }
            }
        }
        let weights: Vec<DMatrix<f64>> = self.net.layers.iter().map(to_f64).collect();
        let alignment = weights
            .windows(2)
            .map(|w| alignment_matrix(&w[0], &w[1]))
            .collect();
        let x_final = self.estimate_x();
        let x_mean = x_sum.map(|s| s / records.len() as f64);
        Ok(ToyRun {
            config: cfg,
            head: self.head_config,
            head_initial_weights,
            head_weights: self.head.weights_f64(),
            records,
            weights,
            alignment,
            initial_weights,
            x_initial,
            x_mean,
            x_final,
        })
    }
}

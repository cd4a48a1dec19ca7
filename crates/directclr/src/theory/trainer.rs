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
        alignment_matrix, diagonal_dominance, misalignment, sorted_svd, sorted_symmetric_eigen,
        x_matrix,
    },
    config::{NoiseSupport, Precision, ToyConfig},
    real::{to_f64, Real},
    toy_net::ToyNet,
};
use crate::{analysis::covariance_eigenvalues, Error, Result};

/// The random streams of a run.
#[derive(Clone, Copy)]
enum Stream {
    Data = 0,
    Init = 1,
    Batches = 2,
    Noise = 3,
    Measure = 4,
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

/// One measurement of a run.
#[derive(Debug, Clone, Serialize)]
pub struct ToyRecord {
    /// SGD steps done.
    pub step: usize,
    /// Loss of the last batch (`None` before the first step).
    pub loss: Option<f64>,
    /// Eigenvalues (descending) of the covariance (Eqn 1) of the embeddings of fresh samples.
    pub embedding_spectrum: Vec<f64>,
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
    config.check()?;
    match config.precision {
        Precision::F32 => Trainer::<f32>::new(config).run(),
        Precision::F64 => Trainer::<f64>::new(config).run(),
    }
}

/// The state of a toy run in precision `T`.
pub struct Trainer<T: Real> {
    config: ToyConfig,
    /// The fixed training samples, row-major. [samples, d]
    data: Vec<T>,
    /// The network.
    pub net: ToyNet<T>,
    batches: Xoshiro256PlusPlus,
    noise: Xoshiro256PlusPlus,
    measure: ChaCha8Rng,
}

impl<T: Real> Trainer<T> {
    /// Draws the data and the initial weights. The config must have passed [`ToyConfig::check`].
    pub fn new(config: &ToyConfig) -> Self {
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
        Trainer {
            config: config.clone(),
            data,
            net,
            batches: fast_stream(config.seed, Stream::Batches),
            noise: fast_stream(config.seed, Stream::Noise),
            measure: stream(config.seed, Stream::Measure),
        }
    }

    /// Draws a batch and its two views, stacked: rows 0..B are view 1, rows B..2B view 2.
    /// # Shapes
    /// → [2B, d]
    fn draw_views<R: Rng, S: Rng>(
        data: &[T],
        config: &ToyConfig,
        batches: &mut R,
        noise: &mut S,
    ) -> DMatrix<T> {
        let (b, d) = (config.batch, config.dim);
        let idx = index::sample(batches, config.samples, b);
        let first_noisy = match config.noise_support {
            NoiseSupport::All => 0,
            NoiseSupport::Last(k) => d - k,
        };
        let std = T::of(config.noise_std);
        // Row-major [2B, d], then one conversion to nalgebra's column-major layout.
        let mut rows = Vec::with_capacity(2 * b * d);
        for _view in 0..2 {
            for i in idx.iter() {
                let x = &data[i * d..(i + 1) * d];
                rows.extend_from_slice(&x[..first_noisy]);
                rows.extend(
                    x[first_noisy..]
                        .iter()
                        .map(|&v| v + std * T::standard_normal(noise)),
                );
            }
        }
        DMatrix::from_row_slice(2 * b, d, &rows)
    }

    /// One SGD step on a fresh batch; returns its loss.
    pub fn step(&mut self) -> Result<f64> {
        let b = self.config.batch;
        let views = Self::draw_views(&self.data, &self.config, &mut self.batches, &mut self.noise);
        let fwd = self.net.forward(&views);
        let z = fwd.output();
        let (z1, z2) = (z.rows(0, b).into_owned(), z.rows(b, b).into_owned());
        let grad = self.config.loss.evaluate(&z1, &z2, self.config.temperature);
        if !grad.loss.is_finite() {
            return Err(Error::Numerical {
                context: "toy model step".into(),
                reason: format!("loss is {}", grad.loss),
            });
        }
        let (g1, g2) = grad.apply(&z1, &z2);
        let mut dz = DMatrix::zeros(2 * b, self.config.dim);
        dz.rows_mut(0, b).copy_from(&g1);
        dz.rows_mut(b, b).copy_from(&g2);
        let grads = self.net.backward(&fwd, dz);
        let lr = T::of(self.config.lr);
        for (w, g) in self.net.layers.iter_mut().zip(grads) {
            w.zip_apply(&g, |w, g| *w -= lr * g);
        }
        Ok(grad.loss)
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
            let views = Self::draw_views(&self.data, cfg, &mut self.measure, &mut noise);
            let (x1, x2) = (views.rows(0, b).into_owned(), views.rows(b, b).into_owned());
            let z = self.net.apply(&views);
            let grad = cfg.loss.evaluate(
                &z.rows(0, b).into_owned(),
                &z.rows(b, b).into_owned(),
                cfg.temperature,
            );
            sum += to_f64(&x_matrix(&grad, &x1, &x2));
        }
        Some(sum / cfg.x_batches as f64)
    }

    /// Takes the measurements of Figures 4–6 at the current weights; also returns the X
    /// estimate when the config asks for one.
    pub fn measure(&mut self, step: usize, loss: Option<f64>) -> (ToyRecord, Option<DMatrix<f64>>) {
        let d = self.config.dim;
        let fresh = DMatrix::from_fn(self.config.eval_samples, d, |_, _| {
            T::standard_normal(&mut self.measure)
        });
        let z = to_f64(&self.net.apply(&fresh));
        let weights: Vec<DMatrix<f64>> = self.net.layers.iter().map(to_f64).collect();
        let layer_singular_values = weights.iter().map(|w| sorted_svd(w).values).collect();
        let alignment = weights
            .windows(2)
            .map(|w| diagonal_dominance(&alignment_matrix(&w[0], &w[1])))
            .collect();
        let misalignment = weights
            .windows(2)
            .map(|w| misalignment(&w[0], &w[1]))
            .collect();
        let x = self.estimate_x();
        let x_eigenvalues = x.as_ref().map(|x| sorted_symmetric_eigen(x).0);
        let record = ToyRecord {
            step,
            loss,
            embedding_spectrum: covariance_eigenvalues(&z),
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

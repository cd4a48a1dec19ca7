//! The linear probe: a linear classifier trained on a frozen encoder's features.
//!
//! The paper's protocol ([`ProbeMode::Augmented`]): encoder frozen in eval mode, Linear(D→C)
//! with weights N(0, 0.01²) and bias 0, SGD (lr 0.1, momentum 0.9, weight decay 1e-6), batch
//! 256, 100 epochs, cosine schedule per epoch, training views RandomResizedCrop + flip, test
//! views Resize + CenterCrop; best and last top-1/top-5 are reported. The fast mode
//! ([`ProbeMode::Features`]) extracts the centre-crop features once and trains on them.

use std::f64::consts::PI;
use std::sync::Arc;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use super::classifier::{accuracies, Classifier, ClassifierMeta};
use super::features::{extract, Features};
use super::trained::TrainedModel;
use crate::data::eval_transform;
use crate::data::{eval_loader, ExtractOptions};
use crate::data::{Dataset, Recipe, RecipeConfig, Transform, ViewConfig};
use crate::model::{FeatureSlice, Space};
use crate::optim::{OptimizerConfig, SgdConfig};
use crate::{Error, Result};

/// How the probe's training features are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum ProbeMode {
    /// The paper's protocol: new random crops and flips every epoch through the frozen encoder.
    Augmented,
    /// Centre-crop features extracted once; each epoch reshuffles them (much faster).
    Features,
}

/// The probe's hyperparameters (defaults: the paper's protocol).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProbeConfig {
    /// Augmented (paper) or fast features mode.
    pub mode: ProbeMode,
    /// Feature space (the paper: the representation r).
    pub space: Space,
    /// Coordinates of that space (`r[:d0]`, `r[d0:]` for the sub-vector ablation).
    pub slice: FeatureSlice,
    /// Epochs (the paper: 100).
    pub epochs: usize,
    /// Batch size (256).
    pub batch_size: usize,
    /// Learning rate at epoch 0 (0.1), cosine to 0 over the epochs.
    pub lr: f64,
    /// SGD momentum (0.9).
    pub momentum: f64,
    /// Weight decay (1e-6).
    pub weight_decay: f64,
    /// Seed of the classifier's initialisation, the order and the augmentations.
    pub seed: u64,
    /// Loader worker threads.
    pub workers: usize,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig {
            mode: ProbeMode::Augmented,
            space: Space::Representation,
            slice: FeatureSlice::ALL,
            epochs: 100,
            batch_size: 256,
            lr: 0.1,
            momentum: 0.9,
            weight_decay: 1e-6,
            seed: 0,
            workers: 2,
        }
    }
}

impl ProbeConfig {
    /// Checks the ranges.
    pub fn validate(&self) -> Result<()> {
        if self.epochs == 0 {
            return Err(Error::config("probe.epochs", "must be at least 1"));
        }
        if self.batch_size == 0 {
            return Err(Error::config("probe.batch_size", "must be at least 1"));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(Error::config(
                "probe.lr",
                format!("{} is not positive", self.lr),
            ));
        }
        SgdConfig {
            momentum: self.momentum,
            weight_decay: self.weight_decay,
            nesterov: false,
            exclude_1d: false,
        }
        .validate()
    }

    /// The cosine learning rate of `epoch` (per epoch, as the paper's probe).
    pub fn lr_at(&self, epoch: usize) -> f64 {
        self.lr * 0.5 * (1.0 + (PI * epoch as f64 / self.epochs as f64).cos())
    }
}

/// One epoch of the probe.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ProbeEpoch {
    /// Epoch index.
    pub epoch: usize,
    /// Its learning rate.
    pub lr: f64,
    /// Mean training cross-entropy.
    pub loss: f64,
    /// Test top-1 accuracy (%).
    pub top1: f64,
    /// Test top-5 accuracy (%).
    pub top5: f64,
}

/// The outcome of [`linear_probe`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeReport {
    /// The configuration.
    pub config: ProbeConfig,
    /// Input dimension of the classifier.
    pub dim: i64,
    /// Training / test samples.
    pub samples: (usize, usize),
    /// Every epoch.
    pub epochs: Vec<ProbeEpoch>,
    /// Best test top-1 over the epochs (the paper's figure) and its epoch's top-5.
    pub best_top1: f64,
    /// Best test top-5 over the epochs.
    pub best_top5: f64,
    /// Last epoch's test top-1.
    pub last_top1: f64,
    /// Last epoch's test top-5.
    pub last_top5: f64,
}

/// Trains a linear classifier on the frozen `model`'s features of `train` and tests it on
/// `test` after every epoch; `on_epoch` sees each epoch's result. The encoder and projector
/// are only run in eval mode under `no_grad`, so their weights and BN statistics do not change.
pub fn linear_probe(
    model: &TrainedModel,
    train: Arc<Dataset>,
    test: Arc<Dataset>,
    config: &ProbeConfig,
    on_epoch: &mut dyn FnMut(&ProbeEpoch),
) -> Result<(ProbeReport, Classifier)> {
    config.validate()?;
    if train.class_names() != test.class_names() {
        return Err(Error::config(
            "data",
            format!(
                "the training split has classes {:?}, the test split {:?}",
                train.class_names(),
                test.class_names()
            ),
        ));
    }
    let device = model.device();
    let (s, e) = config
        .slice
        .resolve(model.dim(config.space)?, "probe.slice")?;
    let size = model.config().config().data.image_size;
    let eval = eval_transform(size);
    let opts = ExtractOptions {
        batch_size: config.batch_size,
        workers: config.workers,
        ..Default::default()
    };
    let test_f = extract(model, test.clone(), eval, config.space, &opts)?;
    let classes = train.class_names();
    match config.mode {
        ProbeMode::Features => {
            let train_f = extract(model, train.clone(), eval, config.space, &opts)?;
            probe_features(&train_f, &test_f, classes, config, on_epoch)
        }
        ProbeMode::Augmented => {
            let recipe: Recipe = RecipeConfig {
                views: vec![ViewConfig::probe_train(size)],
            }
            .check()?;
            let transform = Transform::Views(recipe);
            let norm = transform.normalize(0);
            let loader = eval_loader(train.clone(), transform, &opts, device, (config.seed, true))?;
            let test_f = sliced(test_f, s, e)?;
            fit(
                TrainData::Augmented {
                    model,
                    loader,
                    norm,
                    columns: (s, e),
                },
                &test_f,
                classes,
                config,
                (train.len(), device),
                on_epoch,
            )
        }
    }
}

/// The fast probe on features already extracted (full space; `config.slice` selects the
/// columns, `config.mode` is not read). Runs on the device of `train.x`.
///
/// # Shapes
/// `train.x`: `[N, D]`, `test.x`: `[M, D]`; labels in `0..classes.len()`.
pub fn probe_features(
    train: &Features,
    test: &Features,
    classes: &[String],
    config: &ProbeConfig,
    on_epoch: &mut dyn FnMut(&ProbeEpoch),
) -> Result<(ProbeReport, Classifier)> {
    config.validate()?;
    if test.dim() != train.dim() {
        return Err(Error::config(
            "features",
            format!(
                "{} training features but {} test features",
                train.dim(),
                test.dim()
            ),
        ));
    }
    let (s, e) = config.slice.resolve(train.dim(), "probe.slice")?;
    let device = train.x.device();
    let train_f = sliced(
        Features {
            x: train.x.shallow_clone(),
            labels: train.labels.shallow_clone(),
        },
        s,
        e,
    )?;
    let test_f = sliced(
        Features {
            x: test.x.shallow_clone(),
            labels: test.labels.shallow_clone(),
        },
        s,
        e,
    )?;
    let n = train_f.len();
    fit(
        TrainData::Features(train_f),
        &test_f,
        classes,
        config,
        (n, device),
        on_epoch,
    )
}

/// Where the probe's training batches come from.
enum TrainData<'a> {
    /// Features in memory (already sliced).
    Features(Features),
    /// Fresh augmented views through the frozen model, columns `[s, e)` of its features.
    Augmented {
        model: &'a TrainedModel,
        loader: crate::data::Loader,
        norm: crate::data::augment::Normalize,
        columns: (i64, i64),
    },
}

/// The probe's training loop: SGD on the classifier, cosine per epoch, test after each epoch.
fn fit(
    data: TrainData<'_>,
    test: &Features,
    classes: &[String],
    config: &ProbeConfig,
    (train_samples, device): (usize, tch::Device),
    on_epoch: &mut dyn FnMut(&ProbeEpoch),
) -> Result<(ProbeReport, Classifier)> {
    let dim = test.dim();
    let test_x = test.x.f_to_device(device)?;
    let test_y = test.labels.f_to_device(device)?;
    tch::manual_seed(config.seed as i64);
    let classifier = Classifier::new(
        ClassifierMeta {
            space: config.space,
            slice: config.slice,
            dim,
            classes: classes.to_vec(),
        },
        device,
    )?;
    let mut optimizer = OptimizerConfig::Sgd(SgdConfig {
        momentum: config.momentum,
        weight_decay: config.weight_decay,
        nesterov: false,
        exclude_1d: false,
    })
    .build(vec![
        ("weight".into(), classifier.weight.shallow_clone()),
        ("bias".into(), classifier.bias.shallow_clone()),
    ])?;
    let train_features = match &data {
        TrainData::Features(f) => Some((f.x.f_to_device(device)?, f.labels.f_to_device(device)?)),
        TrainData::Augmented { .. } => None,
    };

    let mut rng = ChaCha8Rng::seed_from_u64(config.seed ^ 0x9e37_79b9_7f4a_7c15);
    let mut epochs = Vec::with_capacity(config.epochs);
    for epoch in 0..config.epochs {
        let lr = config.lr_at(epoch);
        let mut loss_sum = Tensor::f_zeros([], (Kind::Double, device))?;
        let mut batches = 0usize;
        let mut step = |x: &Tensor, y: &Tensor, loss_sum: &mut Tensor| -> Result<()> {
            let loss = classifier.logits(x)?.f_cross_entropy_loss(
                y,
                None::<&Tensor>,
                tch::Reduction::Mean,
                -100,
                0.0,
            )?;
            optimizer.zero_grad();
            loss.f_backward()?;
            optimizer.step(lr)?;
            *loss_sum = loss_sum.f_add(&loss.f_detach()?.f_to_kind(Kind::Double)?)?;
            Ok(())
        };
        match (&data, &train_features) {
            (TrainData::Features(_), Some((x, y))) => {
                let n = x.size()[0] as usize;
                let mut order: Vec<i64> = (0..n as i64).collect();
                order.shuffle(&mut rng);
                for chunk in order.chunks(config.batch_size) {
                    let idx = Tensor::from_slice(chunk).f_to_device(device)?;
                    step(
                        &x.f_index_select(0, &idx)?,
                        &y.f_index_select(0, &idx)?,
                        &mut loss_sum,
                    )?;
                    batches += 1;
                }
            }
            (
                TrainData::Augmented {
                    model,
                    loader,
                    norm,
                    columns: (s, e),
                },
                _,
            ) => {
                for batch in loader.epoch(epoch as u64) {
                    let batch = batch?;
                    let x = norm.apply_tensor(&batch.views[0].f_to_device(device)?);
                    let f = model.features(&x, config.space)?.f_narrow(1, *s, e - s)?;
                    step(&f, &batch.labels.f_to_device(device)?, &mut loss_sum)?;
                    batches += 1;
                }
            }
            (TrainData::Features(_), None) => unreachable!("features are set with the data"),
        }
        let (top1, top5) = tch::no_grad(|| -> Result<(f64, f64)> {
            accuracies(&classifier.logits(&test_x)?, &test_y, 5)
        })?;
        let result = ProbeEpoch {
            epoch,
            lr,
            loss: f64::try_from(loss_sum)? / batches.max(1) as f64,
            top1,
            top5,
        };
        if !result.loss.is_finite() {
            return Err(Error::Numerical {
                context: format!("linear probe, epoch {epoch}"),
                reason: format!("the training loss is {}", result.loss),
            });
        }
        on_epoch(&result);
        epochs.push(result);
    }
    let best = epochs
        .iter()
        .max_by(|a, b| a.top1.total_cmp(&b.top1))
        .copied()
        .expect("at least one epoch");
    let best_top5 = epochs.iter().map(|r| r.top5).fold(f64::MIN, f64::max);
    let last = *epochs.last().expect("at least one epoch");
    Ok((
        ProbeReport {
            config: *config,
            dim,
            samples: (train_samples, test.len()),
            epochs,
            best_top1: best.top1,
            best_top5,
            last_top1: last.top1,
            last_top5: last.top5,
        },
        classifier,
    ))
}

/// Keeps columns `[s, e)` of the features.
fn sliced(f: Features, s: i64, e: i64) -> Result<Features> {
    Ok(Features {
        x: f.x.f_narrow(1, s, e - s)?.f_contiguous()?,
        labels: f.labels,
    })
}

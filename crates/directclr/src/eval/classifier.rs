//! The linear classifier of the probe, with the classes and features it was trained on, saved
//! as safetensors so that it can be evaluated again (and refused on another label set).

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::model::{read_safetensors, serialize_safetensors, OnlineProbe};
use crate::model::{FeatureSlice, Space};
use crate::{Error, Result};

/// Metadata key of a saved classifier.
const METADATA_KEY: &str = "directclr-linear-probe";

/// What a classifier reads and predicts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassifierMeta {
    /// The feature space.
    pub space: Space,
    /// The coordinates of that space.
    pub slice: FeatureSlice,
    /// Input dimension (the slice's width).
    pub dim: i64,
    /// The class names, in label order.
    pub classes: Vec<String>,
}

/// A linear classifier `logits = x Wᵀ + b`.
///
/// # Shapes
/// `weight`: `[C, dim]`, `bias`: `[C]`.
#[derive(Debug)]
pub struct Classifier {
    /// The weight, requiring gradients while the probe trains.
    pub weight: Tensor,
    /// The bias.
    pub bias: Tensor,
    /// What it reads and predicts.
    pub meta: ClassifierMeta,
}

impl Classifier {
    /// The paper's initialisation: weight ~ N(0, 0.01²), bias 0, from libtorch's generator.
    pub fn new(meta: ClassifierMeta, device: Device) -> Result<Self> {
        let c = meta.classes.len() as i64;
        let weight = Tensor::f_randn([c, meta.dim], (Kind::Float, device))?
            .f_mul_scalar(0.01)?
            .f_set_requires_grad(true)?;
        let bias = Tensor::f_zeros([c], (Kind::Float, device))?.f_set_requires_grad(true)?;
        Ok(Classifier { weight, bias, meta })
    }

    /// The online probe of a run as a classifier of the whole representation r, predicting
    /// `classes` (the evaluated dataset's class names, in label order).
    ///
    /// Errors: a class count other than the probe's.
    pub fn from_online_probe(probe: &OnlineProbe, classes: &[String], what: &str) -> Result<Self> {
        if probe.classes() != classes.len() as i64 {
            return Err(Error::StateMismatch {
                what: what.to_string(),
                reason: format!(
                    "the online probe predicts {} classes, the data has {}",
                    probe.classes(),
                    classes.len()
                ),
            });
        }
        Ok(Classifier {
            weight: probe.weight().shallow_clone(),
            bias: probe.bias().shallow_clone(),
            meta: ClassifierMeta {
                space: Space::Representation,
                slice: FeatureSlice::default(),
                dim: probe.feat_dim(),
                classes: classes.to_vec(),
            },
        })
    }

    /// The logits of features `x` (`[N, dim]` → `[N, C]`).
    pub fn logits(&self, x: &Tensor) -> Result<Tensor> {
        if x.dim() != 2 || x.size()[1] != self.meta.dim {
            return Err(Error::config(
                "features",
                format!(
                    "the classifier reads {} features, got a tensor of shape {:?}",
                    self.meta.dim,
                    x.size()
                ),
            ));
        }
        Ok(x.f_linear(&self.weight, Some(&self.bias))?)
    }

    /// Checks that `classes` (a dataset's class names) are the ones the classifier predicts.
    pub fn check_classes(&self, classes: &[String], what: &str) -> Result<()> {
        if classes != self.meta.classes.as_slice() {
            return Err(Error::StateMismatch {
                what: what.to_string(),
                reason: format!(
                    "the classifier predicts {} classes {:?}, the dataset has {} classes {:?}",
                    self.meta.classes.len(),
                    self.meta.classes,
                    classes.len(),
                    classes
                ),
            });
        }
        Ok(())
    }

    /// Writes the classifier (weights and metadata) to `file`, atomically.
    pub fn save(&self, file: &Path) -> Result<()> {
        let meta = serde_json::to_string(&self.meta)
            .map_err(|e| Error::config("classifier", e.to_string()))?;
        let tensors = [
            ("weight".to_string(), self.weight.f_detach()?),
            ("bias".to_string(), self.bias.f_detach()?),
        ];
        let bytes =
            serialize_safetensors(&tensors, Some(HashMap::from([(METADATA_KEY.into(), meta)])))?;
        let tmp = file.with_extension("safetensors.tmp");
        std::fs::write(&tmp, bytes).map_err(|e| Error::io("cannot write", &tmp, e))?;
        std::fs::rename(&tmp, file).map_err(|e| Error::io("cannot rename onto", file, e))
    }

    /// Reads a classifier written by [`Classifier::save`].
    pub fn load(file: &Path, device: Device) -> Result<Self> {
        let what = || format!("classifier `{}`", file.display());
        let bytes = std::fs::read(file).map_err(|e| Error::io("cannot read", file, e))?;
        let (_, header) =
            safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| Error::StateMismatch {
                what: what(),
                reason: format!("not a safetensors file: {e}"),
            })?;
        let meta: ClassifierMeta = header
            .metadata()
            .as_ref()
            .and_then(|m| m.get(METADATA_KEY))
            .and_then(|v| serde_json::from_str(v).ok())
            .ok_or_else(|| Error::StateMismatch {
                what: what(),
                reason: format!("its metadata has no valid `{METADATA_KEY}` entry"),
            })?;
        let tensors = read_safetensors(file)?;
        let get = |name: &str, shape: &[i64]| -> Result<Tensor> {
            let t = tensors
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, t)| t)
                .ok_or_else(|| Error::StateMismatch {
                    what: what(),
                    reason: format!("tensor `{name}` is missing"),
                })?;
            if t.size() != shape {
                return Err(Error::StateMismatch {
                    what: what(),
                    reason: format!(
                        "tensor `{name}` has shape {:?}, expected {shape:?}",
                        t.size()
                    ),
                });
            }
            Ok(t.f_to_kind(Kind::Float)?.f_to_device(device)?)
        };
        let c = meta.classes.len() as i64;
        Ok(Classifier {
            weight: get("weight", &[c, meta.dim])?,
            bias: get("bias", &[c])?,
            meta,
        })
    }
}

/// Top-1 and top-k accuracies (in %) of `logits` (`[N, C]`) against `labels` (`[N]`); k is
/// capped at C.
pub fn accuracies(logits: &Tensor, labels: &Tensor, k: i64) -> Result<(f64, f64)> {
    let n = logits.size()[0];
    if n == 0 {
        return Ok((0.0, 0.0));
    }
    let k = k.min(logits.size()[1]);
    let (_, top) = logits.f_topk(k, 1, true, true)?; // [N, k]
    let hits = top.f_eq_tensor(&labels.f_unsqueeze(1)?)?; // [N, k]
    let top1 = f64::try_from(hits.f_narrow(1, 0, 1)?.f_sum(Kind::Double)?)?;
    let topk = f64::try_from(hits.f_sum(Kind::Double)?)?;
    Ok((100.0 * top1 / n as f64, 100.0 * topk / n as f64))
}

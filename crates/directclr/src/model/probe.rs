//! The online linear probe trained alongside pretraining (the authors' `online_head`).

use tch::nn::{self, Init};
use tch::{Kind, Reduction, Tensor};

use super::state::StateRecorder;
use crate::{Error, Result};

/// `nn.Linear(D, classes)` on the detached representation r of view 1; its cross-entropy is
/// added to the pretraining loss and trained by the same optimiser, without reaching the
/// encoder (facebookresearch/directclr, `online_head`). Parameters `weight` `[classes, D]`,
/// `bias` `[classes]`, with PyTorch's default `nn.Linear` initialisation.
#[derive(Debug)]
pub struct OnlineProbe {
    weight: Tensor,
    bias: Tensor,
    state: Vec<(String, Tensor)>,
}

impl OnlineProbe {
    /// Builds the probe under `path` for representations of dimension `feat_dim` and
    /// `classes` classes.
    pub fn new(path: &nn::Path, feat_dim: i64, classes: i64) -> Result<Self> {
        if feat_dim < 1 {
            return Err(Error::config(
                "feat_dim",
                format!("{feat_dim} must be at least 1"),
            ));
        }
        if classes < 2 {
            return Err(Error::config(
                "classes",
                format!("{classes} must be at least 2"),
            ));
        }
        let bound = 1.0 / (feat_dim as f64).sqrt();
        let init = Init::Uniform {
            lo: -bound,
            up: bound,
        };
        let mut rec = StateRecorder::new(path);
        let weight = rec.param(path, "weight", &[classes, feat_dim], init)?;
        let bias = rec.param(path, "bias", &[classes], init)?;
        Ok(OnlineProbe {
            weight,
            bias,
            state: rec.finish(),
        })
    }

    /// The weight `[classes, D]`.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The bias `[classes]`.
    pub fn bias(&self) -> &Tensor {
        &self.bias
    }

    /// The number of classes it predicts.
    pub fn classes(&self) -> i64 {
        self.weight.size()[0]
    }

    /// Dimension D of the representation it reads.
    pub fn feat_dim(&self) -> i64 {
        self.weight.size()[1]
    }

    /// Its `weight` and `bias` under those names.
    pub fn named_tensors(&self) -> &[(String, Tensor)] {
        &self.state
    }

    /// Class logits of the detached r (no gradient reaches the encoder).
    ///
    /// # Shapes
    /// - `r`: `[batch, D]` → `[batch, classes]`.
    pub fn logits(&self, r: &Tensor) -> Result<Tensor> {
        let (s, w) = (r.size(), self.weight.size());
        if s.len() != 2 || s[1] != w[1] {
            return Err(Error::config(
                "representation",
                format!("expected r of shape [batch, {}], got {s:?}", w[1]),
            ));
        }
        Ok(r.f_detach()?
            .f_to_kind(self.weight.kind())?
            .f_linear(&self.weight, Some(&self.bias))?)
    }

    /// The probe's mean cross-entropy and its top-1 accuracy over the labelled samples of the
    /// batch (both scalar tensors on the device, so no synchronisation happens here).
    ///
    /// Samples labelled [`crate::data::UNLABELED`] (any negative label, e.g. STL-10's
    /// unlabeled split mixed into pretraining) are left out of both; a batch without labelled
    /// samples gives 0 and 0.
    ///
    /// # Shapes
    /// - `r`: `[batch, D]`, `labels`: `[batch]` int64 in `0..classes` or negative → (`[]`,
    ///   `[]`). Labels are not range-checked here (that would synchronise the device every
    ///   step): the data readers guarantee them; on the CPU a label ≥ classes is an error of
    ///   libtorch.
    pub fn loss_and_accuracy(&self, r: &Tensor, labels: &Tensor) -> Result<(Tensor, Tensor)> {
        let logits = self.logits(r)?; // [batch, classes]
        if labels.size() != [r.size()[0]] {
            return Err(Error::config(
                "labels",
                format!("expected [{}], got {:?}", r.size()[0], labels.size()),
            ));
        }
        let labels = labels.f_to_kind(Kind::Int64)?;
        let labelled = labels.f_ge(0)?.f_to_kind(Kind::Float)?; // [batch], 1 where labelled
        let count = labelled.f_sum(Kind::Float)?.f_clamp_min(1.0)?;
        let per_sample = logits.f_cross_entropy_loss(
            &labels.f_clamp_min(0)?,
            None::<&Tensor>,
            Reduction::None,
            -100,
            0.0,
        )?; // [batch]
        let loss = per_sample
            .f_mul(&labelled)?
            .f_sum(Kind::Float)?
            .f_div(&count)?;
        let correct = logits
            .f_argmax(-1, false)?
            .f_eq_tensor(&labels)?
            .f_to_kind(Kind::Float)?;
        let acc = correct
            .f_mul(&labelled)?
            .f_sum(Kind::Float)?
            .f_div(&count)?;
        Ok((loss, acc))
    }
}

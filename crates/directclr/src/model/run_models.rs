//! A run's models — the encoder, the projector head and the online probe — built in one place,
//! and the names under which a training checkpoint stores them.
//!
//! # Checkpoint layout
//!
//! `checkpoint.safetensors` holds every tensor of a run under one prefix per part:
//!
//! | prefix | part | names after the prefix |
//! |---|---|---|
//! | `encoder.` | [`Encoder`] | torchvision's for a ResNet (`conv1.weight`, `layer1.0.bn1.running_mean`, …) |
//! | `head.` | [`Head`] | `weight`, or `0.weight`, `1.running_mean`, … for the MLP |
//! | `probe.` | [`OnlineProbe`] | `weight` `[classes, D]`, `bias` `[classes]` |
//! | `momentum.` | the optimiser's momentum buffers | the parameter's variable-store name |
//!
//! The variable store holds the same tensors under `encoder.*`, `head.*`, `probe.*` (each part
//! is built under [`Part::name`]). This file alone spells these prefixes.

use tch::{nn, Tensor};

use super::{load_state, Encoder, EncoderConfig, Head, OnlineProbe};
use crate::method::Method;
use crate::{Error, Result};

/// One part of a run's state in a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The encoder f: image → r.
    Encoder,
    /// The projector g: r → z (Table 1's row).
    Head,
    /// The online linear probe on r.
    Probe,
    /// The optimiser's momentum buffers.
    Momentum,
}

impl Part {
    /// The variable-store path the part is built under (`encoder`, `head`, `probe`,
    /// `momentum`).
    pub fn name(self) -> &'static str {
        match self {
            Part::Encoder => "encoder",
            Part::Head => "head",
            Part::Probe => "probe",
            Part::Momentum => "momentum",
        }
    }

    /// The key prefix of the part's tensors in a checkpoint (`encoder.`, …).
    pub fn prefix(self) -> &'static str {
        match self {
            Part::Encoder => "encoder.",
            Part::Head => "head.",
            Part::Probe => "probe.",
            Part::Momentum => "momentum.",
        }
    }

    /// How error messages name the part.
    fn describe(self) -> &'static str {
        match self {
            Part::Encoder => "encoder",
            Part::Head => "projector",
            Part::Probe => "online probe",
            Part::Momentum => "optimiser momentum",
        }
    }

    /// The tensors of `tensors` (a whole checkpoint) under this part's prefix, with the prefix
    /// removed.
    pub fn section(self, tensors: &[(String, Tensor)]) -> Vec<(String, Tensor)> {
        tensors
            .iter()
            .filter_map(|(n, t)| {
                n.strip_prefix(self.prefix())
                    .map(|s| (s.to_string(), t.shallow_clone()))
            })
            .collect()
    }

    /// `tensors` (named relative to the part) under the part's prefix, as shallow copies.
    pub fn prefixed(self, tensors: &[(String, Tensor)]) -> Vec<(String, Tensor)> {
        tensors
            .iter()
            .map(|(n, t)| (format!("{}{n}", self.prefix()), t.shallow_clone()))
            .collect()
    }
}

/// The number of classes of the online probe a checkpoint holds (the rows of `probe.weight`),
/// or `None` when it holds none.
pub fn checkpoint_probe_classes(tensors: &[(String, Tensor)]) -> Option<i64> {
    Part::Probe
        .section(tensors)
        .iter()
        .find(|(n, _)| n == "weight")
        .and_then(|(_, w)| w.size().first().copied())
}

/// The encoder, head and (optional) online probe of one run, under one variable store.
#[derive(Debug)]
pub struct RunModels {
    /// The encoder: images `[B, 3, H, W]` → r `[B, D]`.
    pub encoder: Encoder,
    /// The projector of the run's method: r `[B, D]` → z `[B, d]`.
    pub head: Head,
    /// The online probe on the detached r (`probe = true`): r `[B, D]` → logits
    /// `[B, classes]`.
    pub probe: Option<OnlineProbe>,
}

impl RunModels {
    /// Builds the encoder of `model` for crops of side `image_size`, the head of `method` on its
    /// representation and, when `probe_classes` is given, the online probe, under `root`
    /// (paths [`Part::name`]), in that order. Trainable weights are drawn from libtorch's
    /// global generator: seed it first.
    pub fn build(
        root: &nn::Path,
        model: &EncoderConfig,
        image_size: usize,
        method: &Method,
        probe_classes: Option<i64>,
    ) -> Result<Self> {
        let encoder = model.build(&root.sub(Part::Encoder.name()), image_size)?;
        let head = method.build(&root.sub(Part::Head.name()), encoder.feat_dim())?;
        let probe = match probe_classes {
            Some(classes) => Some(OnlineProbe::new(
                &root.sub(Part::Probe.name()),
                encoder.feat_dim(),
                classes,
            )?),
            None => None,
        };
        Ok(RunModels {
            encoder,
            head,
            probe,
        })
    }

    /// Dimension D of the representation r.
    pub fn feat_dim(&self) -> i64 {
        self.encoder.feat_dim()
    }

    /// Every tensor of the models under the checkpoint's prefixes (shallow copies: they share
    /// storage with the models).
    pub fn checkpoint_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Part::Encoder.prefixed(self.encoder.named_tensors());
        out.extend(Part::Head.prefixed(self.head.named_tensors()));
        if let Some(p) = &self.probe {
            out.extend(Part::Probe.prefixed(p.named_tensors()));
        }
        out
    }

    /// Copies the encoder, head and probe of a checkpoint's `tensors` into the models. `source`
    /// names where they come from in errors (e.g. "checkpoint `runs/x/checkpoint.safetensors`").
    ///
    /// Errors: a part whose tensors do not match (every missing, unexpected and reshaped
    /// tensor listed), and a checkpoint holding a probe when the models have none.
    pub fn load_checkpoint(&self, tensors: &[(String, Tensor)], source: &str) -> Result<()> {
        let what = |part: Part| format!("{} from {source}", part.describe());
        load_state(
            self.encoder.named_tensors(),
            &Part::Encoder.section(tensors),
            &[],
            &what(Part::Encoder),
        )?;
        load_state(
            self.head.named_tensors(),
            &Part::Head.section(tensors),
            &[],
            &what(Part::Head),
        )?;
        let probe = Part::Probe.section(tensors);
        match &self.probe {
            Some(p) => {
                load_state(p.named_tensors(), &probe, &[], &what(Part::Probe))?;
            }
            None if !probe.is_empty() => {
                return Err(Error::StateMismatch {
                    what: what(Part::Probe),
                    reason: "the checkpoint holds a probe, the run has none".into(),
                })
            }
            None => {}
        }
        Ok(())
    }
}

//! Features of a whole labelled split, extracted once in eval mode (the fast linear probe, kNN
//! and the spectra all start from them).

use std::sync::Arc;

use tch::{Device, Kind, Tensor};

use super::trained::TrainedModel;
use crate::data::{eval_loader, Dataset, EvalTransform, ExtractOptions, Transform};
use crate::model::Space;
use crate::Result;

/// Features and labels of a split, on the CPU.
///
/// # Shapes
/// `x`: `[N, dim]` f32; `labels`: `[N]` i64.
#[derive(Debug)]
pub struct Features {
    /// One row per sample, in dataset order.
    pub x: Tensor,
    /// The samples' labels.
    pub labels: Tensor,
}

impl Features {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.x.size()[0] as usize
    }

    /// Whether there is no sample.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Dimension of the features.
    pub fn dim(&self) -> i64 {
        self.x.size()[1]
    }
}

/// The features of every sample of `dataset` in `space`, through the deterministic evaluation
/// transform `eval` (the paper's centre crop), in eval mode.
pub fn extract(
    model: &TrainedModel,
    dataset: Arc<Dataset>,
    eval: EvalTransform,
    space: Space,
    opts: &ExtractOptions,
) -> Result<Features> {
    let device = model.device();
    model.dim(space)?;
    let transform = Transform::Eval(eval);
    let norm = transform.normalize(0);
    let loader = eval_loader(dataset, transform, opts, device, (0, false))?;
    let mut xs = Vec::new();
    let mut ys = Vec::new();
    for batch in loader.epoch(0) {
        let batch = batch?;
        let x = norm.apply_tensor(&batch.views[0].f_to_device(device)?);
        let f = model.features(&x, space)?; // [b, dim]
        xs.push(f.f_to_kind(Kind::Float)?.f_to_device(Device::Cpu)?);
        ys.push(batch.labels.f_to_device(Device::Cpu)?);
    }
    Ok(Features {
        x: Tensor::f_cat(&xs, 0)?,
        labels: Tensor::f_cat(&ys, 0)?,
    })
}

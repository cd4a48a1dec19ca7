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
///
/// # Errors
/// An undecodable image (with [`BadImagePolicy::Fail`](crate::data::BadImagePolicy), the
/// default; see [`extract_observed`] for the skipping form), a model without `space`.
pub fn extract(
    model: &TrainedModel,
    dataset: Arc<Dataset>,
    eval: EvalTransform,
    space: Space,
    opts: &ExtractOptions,
) -> Result<Features> {
    Ok(extract_observed(model, dataset, eval, space, opts, &mut |_| {})?.features)
}

/// Features of an extraction, with which samples they are of.
#[derive(Debug)]
pub struct Extracted {
    /// One row per kept sample, in dataset order.
    pub features: Features,
    /// The dataset index of each row, `[N]` ascending.
    pub indices: Vec<usize>,
    /// Dataset indices left out because their image could not be decoded (only with
    /// [`BadImagePolicy::Skip`](crate::data::BadImagePolicy)), ascending.
    pub skipped: Vec<usize>,
}

/// [`extract`], calling `on_batch(samples done)` after every batch (for a progress bar) and
/// keeping the dataset index of every row, so that skipped images can be named.
///
/// # Shapes
/// `features.x`: `[N, dim]` f32 with N = the dataset's length less the skipped images.
pub fn extract_observed(
    model: &TrainedModel,
    dataset: Arc<Dataset>,
    eval: EvalTransform,
    space: Space,
    opts: &ExtractOptions,
    on_batch: &mut dyn FnMut(usize),
) -> Result<Extracted> {
    let device = model.device();
    model.dim(space)?;
    let n = dataset.len();
    let transform = Transform::Eval(eval);
    let norm = transform.normalize(0);
    let loader = eval_loader(dataset, transform, opts, device, (0, false))?;
    let mut xs = Vec::new();
    let mut ys = Vec::new();
    let mut indices = Vec::with_capacity(n);
    let mut done = 0;
    for batch in loader.epoch(0) {
        let batch = batch?;
        // An epoch of size n is cut into consecutive batches; skipped samples only shorten one.
        done = batch.indices.last().map_or(done, |&i| i + 1);
        indices.extend_from_slice(&batch.indices);
        if !batch.indices.is_empty() {
            let x = norm.apply_tensor(&batch.views[0].f_to_device(device)?);
            let f = model.features(&x, space)?; // [b, dim]
            xs.push(f.f_to_kind(Kind::Float)?.f_to_device(Device::Cpu)?);
            ys.push(batch.labels.f_to_device(Device::Cpu)?);
        }
        on_batch(done);
    }
    let mut skipped = Vec::new();
    let mut next = indices.iter().peekable();
    for i in 0..n {
        if next.peek() == Some(&&i) {
            next.next();
        } else {
            skipped.push(i);
        }
    }
    if xs.is_empty() {
        return Err(crate::Error::config(
            "data",
            format!("no image of the {n} could be decoded"),
        ));
    }
    Ok(Extracted {
        features: Features {
            x: Tensor::f_cat(&xs, 0)?,
            labels: Tensor::f_cat(&ys, 0)?,
        },
        indices,
        skipped,
    })
}

//! What the evaluation commands share: the pretrained model of `--run` and the labelled
//! splits of its dataset.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use directclr::data::Dataset;
use directclr::eval::{read_labelled_first, EvalSplit, ExtractOptions, TrainedModel, Weights};
use directclr::runtime::DeviceSpec;
use directclr::train::DataSource;

use crate::cli_eval::{EvalDataArgs, ModelArgs};

/// Loads the model of `m` on its device.
pub fn load_model(m: &ModelArgs) -> anyhow::Result<TrainedModel> {
    let weights = match (&m.checkpoint, &m.encoder) {
        (Some(c), _) => Weights::Checkpoint(c.clone()),
        (None, Some(e)) => Weights::Encoder(e.clone()),
        (None, None) => Weights::RunCheckpoint,
    };
    load_run(&m.run, &weights, m.device.as_ref())
}

/// Loads the model of run folder `run` with `weights` on `device` (the run's when `None`).
pub fn load_run(
    run: &Path,
    weights: &Weights,
    device: Option<&DeviceSpec>,
) -> anyhow::Result<TrainedModel> {
    let spec = match device {
        Some(d) => *d,
        None => run_device(run)?,
    };
    let device = spec.resolve()?;
    TrainedModel::load(run, weights, device)
        .with_context(|| format!("loading the model of run `{}`", run.display()))
}

/// The device a run folder's config names (CPU if it cannot be read; loading reports why).
fn run_device(run: &Path) -> anyhow::Result<DeviceSpec> {
    let file = run.join(directclr::train::CONFIG_FILE);
    Ok(directclr::train::TrainConfig::from_file(&file)
        .map(|c| c.device)
        .unwrap_or(DeviceSpec::Cpu))
}

/// The run's data source, read from `data` when given.
pub fn source(model: &TrainedModel, data: Option<&Path>) -> DataSource {
    let s = &model.config().config().data.source;
    match data {
        Some(p) => s.with_path(p.to_path_buf()),
        None => s.clone(),
    }
}

/// The labelled `split`, cut to `limit` samples.
pub fn read_split(
    source: &DataSource,
    split: EvalSplit,
    test_folder: Option<&Path>,
    limit: Option<usize>,
) -> anyhow::Result<Arc<Dataset>> {
    Ok(read_labelled_first(source, split, test_folder, limit)?)
}

/// Both labelled splits of `d`.
pub fn read_splits(
    model: &TrainedModel,
    d: &EvalDataArgs,
) -> anyhow::Result<(Arc<Dataset>, Arc<Dataset>)> {
    let src = source(model, d.data.as_deref());
    let tf = d.test_folder.as_deref();
    Ok((
        read_split(&src, EvalSplit::Train, tf, d.limit_train)?,
        read_split(&src, EvalSplit::Test, tf, d.limit_test)?,
    ))
}

/// Extraction settings of `d`.
pub fn extract_options(d: &EvalDataArgs) -> ExtractOptions {
    ExtractOptions {
        batch_size: d.batch_size,
        workers: d.workers,
    }
}

//! What the evaluation commands share: the pretrained model of `--run` and the labelled
//! splits of its dataset.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use directclr::data::Dataset;
use directclr::eval::{read_labelled_first, EvalSplit, ExtractOptions, TrainedModel, Weights};
use directclr::runtime::DeviceSpec;
use directclr::train::DataSource;

use crate::cli_eval::{EncoderArchArgs, EvalDataArgs, ModelArgs};
use directclr::model::{ResNetConfig, Stem};
use directclr::run::DataConfig;

/// Loads the model of `m` on its device; `data` is the dataset folder an encoder without a run
/// folder reads.
pub fn load_model(m: &ModelArgs, data: Option<&Path>) -> anyhow::Result<TrainedModel> {
    let Some(run) = &m.run else {
        let file = m
            .encoder
            .as_ref()
            .expect("clap requires --run or --encoder");
        return load_encoder(file, &m.arch, data, m.device.as_ref());
    };
    let weights = match (&m.checkpoint, &m.encoder, &m.arch.prefix) {
        (Some(c), _, _) => Weights::Checkpoint(c.clone()),
        (None, Some(e), None) => Weights::Encoder(e.clone()),
        (None, Some(e), Some(p)) => Weights::EncoderWithPrefix(e.clone(), p.clone()),
        (None, None, _) => Weights::RunCheckpoint,
    };
    load_run(run, &weights, m.device.as_ref())
}

/// Loads the encoder file `file` without a run folder, into the architecture of `a`, with the
/// dataset `--dataset` read from `data`.
pub fn load_encoder(
    file: &Path,
    a: &EncoderArchArgs,
    data: Option<&Path>,
    device: Option<&DeviceSpec>,
) -> anyhow::Result<TrainedModel> {
    let Some(arch) = a.arch else {
        anyhow::bail!(
            "--encoder without --run needs the architecture: --arch resnet18|resnet34|resnet50 \
             --stem imagenet|cifar [--width W]"
        );
    };
    let Some(path) = data else {
        anyhow::bail!(
            "--encoder without --run needs the images to evaluate: --data FOLDER (an image \
             folder, or a dataset folder with --dataset mnist, fashion_mnist, cifar10, cifar100 \
             or stl10)"
        );
    };
    let kind = a.dataset.as_deref().unwrap_or("image_folder");
    let source: DataSource =
        serde_json::from_value(serde_json::json!({ "kind": kind, "path": path }))
            .map_err(|e| anyhow::anyhow!("--dataset `{kind}`: {e}"))?;
    let image_size = a.image_size.unwrap_or(match a.stem {
        Stem::Cifar => 32,
        Stem::ImageNet => 224,
    });
    let model = ResNetConfig {
        arch,
        stem: a.stem,
        width_multiplier: a.width,
        zero_init_residual: true,
    };
    let data = DataConfig {
        source,
        image_size,
        limit: None,
    };
    let device = device.copied().unwrap_or(DeviceSpec::Cpu).resolve()?;
    TrainedModel::from_encoder(model, data, file, a.prefix.as_deref(), device)
        .with_context(|| format!("loading the encoder `{}`", file.display()))
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
        ..Default::default()
    }
}

/// The folder outputs of `m` go to by default: its run folder, or `out/<encoder file stem>`.
pub fn model_folder(m: &ModelArgs) -> PathBuf {
    match (&m.run, &m.encoder) {
        (Some(run), _) => run.clone(),
        (None, Some(e)) => PathBuf::from("out").join(
            e.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "encoder".into()),
        ),
        (None, None) => PathBuf::from("out"),
    }
}

/// The run folder or encoder file of `m`, for messages: "run `…`" or "encoder `…`".
pub fn model_name(m: &ModelArgs) -> String {
    match (&m.run, &m.encoder) {
        (Some(run), _) => format!("run `{}`", run.display()),
        (None, Some(e)) => format!("encoder `{}`", e.display()),
        (None, None) => String::new(),
    }
}

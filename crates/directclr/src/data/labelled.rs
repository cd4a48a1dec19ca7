//! The labelled splits an evaluation reads, the deterministic evaluation transform at a run's
//! image size, and the loader over them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::data::augment::{Interpolation, Normalize};
use crate::data::cifar;
use crate::data::idx::{self, IdxDataset};
use crate::data::image_folder;
use crate::data::stl10::{self, Stl10Split};
use crate::data::DataSource;
use crate::data::{dataset::Split, Dataset, EvalTransform};
use crate::data::{BadImagePolicy, Loader, LoaderConfig, OutputKind, Shard, Transform};
use crate::{Error, Result};
use tch::Device;

/// Which labelled split of a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum EvalSplit {
    /// The labelled training split (the probe's training data, the kNN memory bank).
    Train,
    /// The labelled test split (accuracies, spectra as in the paper's figures).
    Test,
}

/// Reads the labelled `split` of `source`.
///
/// STL-10's labelled splits are used whatever split pretraining read; an image folder's test
/// split is `test_folder`, or else the sibling folder `val` of its training folder
/// (ImageNet's layout), which must exist.
pub fn read_labelled(
    source: &DataSource,
    split: EvalSplit,
    test_folder: Option<&Path>,
) -> Result<Arc<Dataset>> {
    let s = match split {
        EvalSplit::Train => Split::Train,
        EvalSplit::Test => Split::Test,
    };
    let ds = match source {
        DataSource::Mnist { path } => idx::read_split(path, IdxDataset::Mnist, s)?,
        DataSource::FashionMnist { path } => idx::read_split(path, IdxDataset::FashionMnist, s)?,
        DataSource::Cifar10 { path } => cifar::read_cifar10(path, s)?,
        DataSource::Cifar100 { path, labels } => cifar::read_cifar100(path, s, *labels)?,
        DataSource::Stl10 { path, .. } => stl10::read_stl10(
            path,
            match split {
                EvalSplit::Train => Stl10Split::Train,
                EvalSplit::Test => Stl10Split::Test,
            },
        )?,
        DataSource::ImageFolder { path } => match split {
            EvalSplit::Train => image_folder::read_image_folder(path)?,
            EvalSplit::Test => {
                let folder: PathBuf = match test_folder {
                    Some(f) => f.to_path_buf(),
                    None => path.parent().map(|p| p.join("val")).unwrap_or_default(),
                };
                if !folder.is_dir() {
                    return Err(Error::config(
                        "test_folder",
                        format!(
                            "the image folder `{}` has no test split: `{}` does not exist \
                             (give the test folder explicitly)",
                            path.display(),
                            folder.display()
                        ),
                    ));
                }
                image_folder::read_image_folder(&folder)?
            }
        },
    };
    if ds.is_empty() {
        return Err(Error::config(
            "data",
            format!(
                "the {split:?} split of `{}` is empty",
                source.path().display()
            ),
        ));
    }
    Ok(Arc::new(ds))
}

/// The labelled `split` of `source` (see [`read_labelled`]), cut to its first `limit` samples.
pub fn read_labelled_first(
    source: &DataSource,
    split: EvalSplit,
    test_folder: Option<&Path>,
    limit: Option<usize>,
) -> Result<Arc<Dataset>> {
    let ds = read_labelled(source, split, test_folder)?;
    Ok(match limit {
        Some(n) if n < ds.len() => Arc::new(ds.first(n)?),
        _ => ds,
    })
}

/// The evaluation transform for crops of `size` px: small images (≤ 64 px, CIFAR and
/// Fashion-MNIST style) are resized to `size` without cropping; larger ones follow ImageNet's
/// `Resize(size · 256/224)` + `CenterCrop(size)` (256/224 at 224).
pub fn eval_transform(size: usize) -> EvalTransform {
    let resize = if size <= 64 {
        size
    } else {
        (size * 256 + 112) / 224
    };
    EvalTransform {
        resize,
        crop: size,
        interpolation: Interpolation::Bilinear,
        normalize: Normalize::IMAGENET,
    }
}

/// How to run an extraction.
#[derive(Debug, Clone, Copy)]
pub struct ExtractOptions {
    /// Images per forward pass.
    pub batch_size: usize,
    /// Loader worker threads.
    pub workers: usize,
    /// An undecodable image file stops the extraction (`Fail`, the default: a spectrum of
    /// fewer images than asked for is not silent) or is left out and listed (`Skip`).
    pub bad_images: BadImagePolicy,
}

impl Default for ExtractOptions {
    fn default() -> Self {
        ExtractOptions {
            batch_size: 256,
            workers: 2,
            bad_images: BadImagePolicy::Fail,
        }
    }
}

/// A loader over every sample of `dataset` (u8 output), in dataset order or shuffled per epoch
/// (what the evaluations and the collapse monitor read).
pub fn eval_loader(
    dataset: Arc<Dataset>,
    transform: Transform,
    opts: &ExtractOptions,
    device: Device,
    (seed, shuffle): (u64, bool),
) -> Result<Loader> {
    Ok(Loader::new(
        dataset,
        transform,
        LoaderConfig {
            batch_size: opts.batch_size,
            workers: opts.workers,
            prefetch: 2,
            seed,
            shuffle,
            drop_last: false,
            shard: Shard::SINGLE,
            output: OutputKind::U8,
            pin_memory: device.is_cuda(),
            bad_images: opts.bad_images,
        },
    )?)
}

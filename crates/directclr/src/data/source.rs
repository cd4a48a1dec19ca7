//! Which dataset a run reads, and from where (the `source` of a run's `[data]` table).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::cifar::{self, Cifar100Labels};
use super::dataset::Split;
use super::idx::{self, IdxDataset};
use super::image_folder;
use super::stl10::{self, Stl10Split};
use super::Dataset;
use crate::Result;

/// Which dataset a run reads, and from where. Serialised with a `kind` tag, e.g.
/// `source = { kind = "fashion_mnist", path = "data/fashion-mnist" }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum DataSource {
    /// MNIST in IDX files (train split).
    Mnist {
        /// Folder of `train-images-idx3-ubyte[.gz]`, ….
        path: PathBuf,
    },
    /// Fashion-MNIST in IDX files (train split).
    FashionMnist {
        /// Folder of `train-images-idx3-ubyte[.gz]`, ….
        path: PathBuf,
    },
    /// CIFAR-10 binary version (train split).
    Cifar10 {
        /// Folder of `data_batch_1.bin` … `data_batch_5.bin`.
        path: PathBuf,
    },
    /// CIFAR-100 binary version (train split).
    Cifar100 {
        /// Folder of `train.bin`.
        path: PathBuf,
        /// Fine (100) or coarse (20) labels for the online probe.
        #[serde(default = "default_cifar100_labels")]
        labels: Cifar100Labels,
    },
    /// STL-10 binary version.
    Stl10 {
        /// Folder of `train_X.bin`, `unlabeled_X.bin`, ….
        path: PathBuf,
        /// Which split (pretraining usually uses `train_unlabeled`; unlabelled samples are left
        /// out of the online probe).
        #[serde(default = "default_stl10_split")]
        split: Stl10Split,
    },
    /// An ImageNet-style folder: one sub-folder of JPEG/PNG files per class.
    ImageFolder {
        /// The root folder (e.g. `imagenet/train`).
        path: PathBuf,
    },
}

fn default_cifar100_labels() -> Cifar100Labels {
    Cifar100Labels::Fine
}

fn default_stl10_split() -> Stl10Split {
    Stl10Split::TrainUnlabeled
}

impl DataSource {
    /// The dataset's folder.
    pub fn path(&self) -> &Path {
        match self {
            DataSource::Mnist { path }
            | DataSource::FashionMnist { path }
            | DataSource::Cifar10 { path }
            | DataSource::Cifar100 { path, .. }
            | DataSource::Stl10 { path, .. }
            | DataSource::ImageFolder { path } => path,
        }
    }

    /// The same source read from another folder.
    pub fn with_path(&self, path: PathBuf) -> DataSource {
        let mut s = self.clone();
        *s.path_mut() = path;
        s
    }

    fn path_mut(&mut self) -> &mut PathBuf {
        match self {
            DataSource::Mnist { path }
            | DataSource::FashionMnist { path }
            | DataSource::Cifar10 { path }
            | DataSource::Cifar100 { path, .. }
            | DataSource::Stl10 { path, .. }
            | DataSource::ImageFolder { path } => path,
        }
    }

    /// Reads the pretraining split.
    pub fn read(&self) -> Result<Dataset> {
        Ok(match self {
            DataSource::Mnist { path } => idx::read_split(path, IdxDataset::Mnist, Split::Train)?,
            DataSource::FashionMnist { path } => {
                idx::read_split(path, IdxDataset::FashionMnist, Split::Train)?
            }
            DataSource::Cifar10 { path } => cifar::read_cifar10(path, Split::Train)?,
            DataSource::Cifar100 { path, labels } => {
                cifar::read_cifar100(path, Split::Train, *labels)?
            }
            DataSource::Stl10 { path, split } => stl10::read_stl10(path, *split)?,
            DataSource::ImageFolder { path } => image_folder::read_image_folder(path)?,
        })
    }
}

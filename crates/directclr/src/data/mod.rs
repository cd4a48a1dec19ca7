//! Data pipeline: dataset readers, the authors' augmentations, and a seeded parallel loader.
//!
//! - Readers return a [`Dataset`]: u8 images `[n, c, h, w]` held in memory (IDX, CIFAR, STL-10)
//!   or image files decoded on demand (image folders in the ImageNet layout), with labels and
//!   class names: [`idx`], [`cifar`], [`stl10`], [`image_folder`].
//! - [`augment`] holds each transform of the authors' asymmetric two-view recipe, written after
//!   torchvision's definitions, and the recipe itself ([`augment::RecipeConfig`]).
//! - [`loader`] decodes and augments on worker threads and hands out batches as tensors; order
//!   and augmentations depend only on (seed, epoch, index), and [`shard`] splits an epoch over
//!   ranks.
//!
//! A pretraining epoch over an ImageNet-style folder:
//!
//! ```no_run
//! use std::sync::Arc;
//! use directclr::data::{image_folder, Loader, LoaderConfig, OutputKind, RecipeConfig, Transform};
//!
//! # fn main() -> Result<(), directclr::data::DataError> {
//! let dataset = Arc::new(image_folder::read_image_folder("imagenet/train".as_ref())?);
//! let recipe = RecipeConfig::default().check()?; // the authors' two views, 224 px
//! let config = LoaderConfig { batch_size: 256, workers: 8, seed: 42, output: OutputKind::U8, ..Default::default() };
//! let loader = Loader::new(dataset, Transform::Views(recipe.clone()), config)?;
//! for epoch in 0..100 {
//!     for batch in loader.epoch(epoch) {
//!         let batch = batch?;
//!         // batch.views[0], batch.views[1]: [256, 3, 224, 224] u8; normalise on the device:
//!         let x1 = recipe.views()[0].normalize.apply_tensor(&batch.views[0]);
//!         # let _ = x1;
//!     }
//! }
//! # Ok(())
//! # }
//! ```

#[macro_use]
pub mod augment;
pub mod cifar;
pub mod dataset;
pub mod device_augment;
pub mod idx;
pub mod image_folder;
pub mod labelled;
pub mod loader;
pub mod shard;
pub mod source;
pub mod stl10;

pub use augment::{EvalTransform, Recipe, RecipeConfig, Transform, ViewConfig, ViewDraw};
pub use dataset::{Dataset, ImageArray, ImageRef, Images, Layout, OwnedImage, UNLABELED};
pub use device_augment::DeviceAugment;
pub use labelled::{
    eval_loader, eval_transform, read_labelled, read_labelled_first, EvalSplit, ExtractOptions,
};
pub use loader::{BadImagePolicy, Batch, Loader, LoaderConfig, OutputKind};
pub use shard::Shard;
pub use source::DataSource;

use std::path::PathBuf;

/// Errors of the data pipeline. Each variant names the file (or parameter) and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A dataset file is malformed (bad magic number, truncated, trailing bytes, …).
    #[error("malformed dataset file `{}`: {reason}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A file or folder could not be read (missing, unreadable).
    #[error("cannot read `{}`: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The images and labels of a dataset do not have the same count.
    #[error("label count mismatch: `{}` holds {images} images but `{}` holds {labels} labels",
        images_path.display(), labels_path.display())]
    LabelCountMismatch {
        /// The images file.
        images_path: PathBuf,
        /// The labels file.
        labels_path: PathBuf,
        /// Number of images.
        images: usize,
        /// Number of labels.
        labels: usize,
    },
    /// A class folder of an image-folder dataset holds no JPEG or PNG file.
    #[error("empty class folder `{}`: no .jpg, .jpeg or .png file in it", path.display())]
    EmptyClass {
        /// The class folder.
        path: PathBuf,
    },
    /// A dataset holds no sample at all.
    #[error("empty dataset at `{}`: {reason}", path.display())]
    Empty {
        /// The dataset's file or folder.
        path: PathBuf,
        /// What was looked for.
        reason: String,
    },
    /// An image file could not be decoded (reported when bad images are fatal).
    #[error("cannot decode image `{}`: {reason}", path.display())]
    Decode {
        /// The image file.
        path: PathBuf,
        /// What the decoder reported.
        reason: String,
    },
    /// A parameter of an augmentation, the recipe or the loader is impossible.
    #[error("invalid data parameter `{field}`: {reason}")]
    InvalidParameter {
        /// The parameter, e.g. `view1.crop.scale`.
        field: String,
        /// Why it is refused.
        reason: String,
    },
    /// A sample index beyond the dataset.
    #[error("sample index {index} out of range for a dataset of {len} samples")]
    IndexOutOfRange {
        /// The index asked for.
        index: usize,
        /// The dataset's length.
        len: usize,
    },
    /// libtorch refused to build or move a batch tensor.
    #[error("cannot build batch tensor ({context}): {source}")]
    Tensor {
        /// What was being built.
        context: &'static str,
        /// libtorch's error.
        #[source]
        source: tch::TchError,
    },
    /// A loader worker thread stopped unexpectedly.
    #[error("data loader worker failed: {reason}")]
    Worker {
        /// What happened.
        reason: String,
    },
}

impl DataError {
    /// A [`DataError::Malformed`] for `path`.
    pub fn malformed(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        DataError::Malformed {
            path: path.into(),
            reason: reason.into(),
        }
    }

    /// A [`DataError::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            source,
        }
    }

    /// A [`DataError::InvalidParameter`] for `field`.
    pub fn param(field: impl Into<String>, reason: impl Into<String>) -> Self {
        DataError::InvalidParameter {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

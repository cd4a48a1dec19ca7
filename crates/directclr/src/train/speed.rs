//! Speed settings of a run (`[speed]` in the TOML file) and what the training loop does with
//! them: where the two views are made (loader threads on the CPU, or batched tensor operations
//! on the device), host-to-device copies without waiting, cuDNN's benchmark mode, and the
//! flat (fused) optimiser update. Each is a switch so that its gain can be measured alone
//! (`benches/gpu/`); none changes the science beyond rounding, and the CPU path stays the
//! default where results would change.

use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};

use crate::data::augment::Normalize;
use crate::data::{Batch, DeviceAugment, Recipe, Transform};
use crate::{Error, Result};

/// Where the augmentations run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AugmentOn {
    /// In the loader's worker threads, on the CPU (PIL's antialiased filters).
    Loader,
    /// As batched tensor operations on the training device; the loader only decodes
    /// (`data::device_augment`).
    Device,
}

/// `[speed]`: switches of the speed levers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpeedConfig {
    /// Where the two views are made.
    pub augment: AugmentOn,
    /// With `augment = "device"`: side of the square the loader decodes each image to
    /// (shorter side resized, centre crop), from which the device draws its crops; `None`
    /// takes the crop side (`data.image_size`), exact for square datasets of that size.
    pub source_size: Option<usize>,
    /// Update all parameters with one flat LARS/SGD update (`optim/flat.rs`).
    pub fused_optimizer: bool,
    /// Let cuDNN time its algorithms on the first batches and keep the fastest (CUDA).
    pub cudnn_benchmark: bool,
    /// Copy batches from pinned host memory without waiting for the copy (CUDA).
    pub non_blocking: bool,
}

impl Default for SpeedConfig {
    fn default() -> Self {
        SpeedConfig {
            augment: AugmentOn::Loader,
            source_size: None,
            fused_optimizer: false,
            cudnn_benchmark: true,
            non_blocking: true,
        }
    }
}

impl SpeedConfig {
    /// Checks the values.
    pub fn validate(&self) -> Result<()> {
        if let Some(s) = self.source_size {
            if s == 0 {
                return Err(Error::config("speed.source_size", "must be positive"));
            }
            if self.augment == AugmentOn::Loader {
                return Err(Error::config(
                    "speed.source_size",
                    "only applies with augment = \"device\"",
                ));
            }
        }
        Ok(())
    }
}

/// Makes the two views of a batch on the training device, by either path.
#[derive(Debug)]
pub(super) struct ViewMaker {
    device: Device,
    non_blocking: bool,
    path: Path,
}

#[derive(Debug)]
enum Path {
    /// The loader made the views (u8); they are normalised on the device.
    Loader(Recipe, Vec<Normalize>),
    /// The loader decoded; the device augments.
    Device(DeviceAugment),
}

impl ViewMaker {
    /// For `recipe` at crop side `image_size`, run seed `seed`, on `device`.
    pub fn new(
        speed: &SpeedConfig,
        recipe: &Recipe,
        image_size: usize,
        seed: u64,
        device: Device,
    ) -> Result<Self> {
        if speed.cudnn_benchmark && device.is_cuda() {
            tch::Cuda::cudnn_set_benchmark(true);
        }
        let path = match speed.augment {
            AugmentOn::Loader => Path::Loader(
                recipe.clone(),
                recipe.views().iter().map(|v| v.normalize).collect(),
            ),
            AugmentOn::Device => Path::Device(DeviceAugment::new(
                recipe.clone(),
                speed.source_size.unwrap_or(image_size),
                seed,
            )?),
        };
        Ok(ViewMaker {
            device,
            non_blocking: speed.non_blocking && device.is_cuda(),
            path,
        })
    }

    /// What the loader does to each sample.
    pub fn transform(&self) -> Transform {
        match &self.path {
            Path::Loader(recipe, _) => Transform::Views(recipe.clone()),
            Path::Device(aug) => aug.source_transform(),
        }
    }

    /// A host tensor on the training device (asynchronously from pinned memory when asked).
    pub fn upload(&self, t: &Tensor) -> Result<Tensor> {
        Ok(t.f_to_device_(self.device, t.kind(), self.non_blocking, false)?)
    }

    /// The normalised views of `batch` (of `epoch`) on the device.
    ///
    /// # Shapes
    /// returns one `[n, 3, size, size]` f32 per view.
    pub fn views(&self, batch: &Batch, epoch: u64) -> Result<Vec<Tensor>> {
        match &self.path {
            Path::Loader(_, norms) => batch
                .views
                .iter()
                .zip(norms)
                .map(|(x, nm)| Ok(nm.apply_tensor(&self.upload(x)?)))
                .collect(),
            Path::Device(aug) => {
                let src = self.upload(&batch.views[0])?;
                aug.apply(&src, epoch, &batch.indices)
            }
        }
    }
}

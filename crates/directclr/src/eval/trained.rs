//! A pretrained model read back from a run folder: the run's resolved configuration, its encoder
//! and projector with the checkpoint's weights, in eval mode.

use std::path::{Path, PathBuf};

use tch::{nn, Device, Tensor};

use crate::method::Method;
use crate::model::Space;
use crate::model::{
    checkpoint_probe_classes, load_encoder_file, Encoder, Head, OnlineProbe, ResNetConfig,
    RunModels,
};
use crate::optim::ScheduleConfig;
use crate::run::{
    read_checkpoint, CheckedConfig, DataConfig, TrainConfig, CHECKPOINT_FILE, CONFIG_FILE,
};
use crate::runtime::DeviceSpec;
use crate::{Error, Result};

/// Where the weights of a [`TrainedModel`] come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Weights {
    /// The run folder's own `checkpoint.safetensors` (encoder, projector, online probe).
    RunCheckpoint,
    /// Another training checkpoint, checked against the run's architecture.
    Checkpoint(PathBuf),
    /// Encoder weights alone under torchvision's names (our `encoder.safetensors`, or weights
    /// exported from torchvision: its classifier `fc.*` is ignored). The projector keeps its
    /// initialisation, so only the representation space is meaningful.
    Encoder(PathBuf),
    /// [`Weights::Encoder`] from a `.safetensors` or `torch.save` file (`.pt`, `.pth`,
    /// `.pth.tar`, `.bin`) whose encoder sits under the key prefix given (`module.`,
    /// `backbone.`; `""` for none); [`Weights::Encoder`] finds the prefix itself.
    EncoderWithPrefix(PathBuf, String),
}

/// A pretrained encoder and projector in eval mode.
pub struct TrainedModel {
    config: CheckedConfig,
    run: PathBuf,
    _vs: nn::VarStore,
    /// Its encoder, head and (when the checkpoint holds one) online probe.
    models: RunModels,
    head_loaded: bool,
    epochs_done: Option<usize>,
    device: Device,
}

impl std::fmt::Debug for TrainedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrainedModel")
            .field("run", &self.run)
            .field("method", &self.config.config().method)
            .field("epochs_done", &self.epochs_done)
            .finish()
    }
}

impl TrainedModel {
    /// Builds the run's models from `<run>/config.toml` and loads `weights` into them.
    ///
    /// Errors: a run folder without configuration or checkpoint, and weights whose tensors do
    /// not match the architecture (an error listing every missing, unexpected and reshaped
    /// tensor).
    pub fn load(run: &Path, weights: &Weights, device: Device) -> Result<Self> {
        let config_file = run.join(CONFIG_FILE);
        if !config_file.is_file() {
            return Err(Error::StateMismatch {
                what: format!("run folder `{}`", run.display()),
                reason: format!("it has no `{CONFIG_FILE}`: not a run folder of `directclr train`"),
            });
        }
        let config = TrainConfig::from_file(&config_file)?.check()?;
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let c = config.config();
        let (models, head_loaded, epochs_done) = match weights {
            Weights::RunCheckpoint | Weights::Checkpoint(_) => {
                let file = match weights {
                    Weights::Checkpoint(f) => f.clone(),
                    _ => run.join(CHECKPOINT_FILE),
                };
                if !file.is_file() {
                    return Err(Error::StateMismatch {
                        what: format!("run folder `{}`", run.display()),
                        reason: format!(
                            "the checkpoint `{}` does not exist (has the run finished an epoch?)",
                            file.display()
                        ),
                    });
                }
                let ckpt = read_checkpoint(&file)?;
                // The probe is built only when the checkpoint holds one, at its class count.
                let classes = checkpoint_probe_classes(&ckpt.tensors);
                let models =
                    RunModels::build(&root, &c.model, c.data.image_size, &c.method, classes)?;
                models
                    .load_checkpoint(&ckpt.tensors, &format!("checkpoint `{}`", file.display()))?;
                (models, true, Some(ckpt.progress.epoch))
            }
            Weights::Encoder(file) | Weights::EncoderWithPrefix(file, _) => {
                let models = RunModels::build(&root, &c.model, c.data.image_size, &c.method, None)?;
                let prefix = match weights {
                    Weights::EncoderWithPrefix(_, p) => Some(p.as_str()),
                    _ => None,
                };
                load_encoder_file(
                    models.encoder.require_resnet("loading an encoder file")?,
                    file,
                    prefix,
                )?;
                (models, false, None)
            }
        };
        Ok(TrainedModel {
            config,
            run: run.to_path_buf(),
            _vs: vs,
            models,
            head_loaded,
            epochs_done,
            device,
        })
    }

    /// An encoder alone, without a run folder: the ResNet `model` (architecture, stem, width)
    /// with the weights of `file` (`.safetensors` or `torch.save`; the key prefix found
    /// automatically unless `prefix` is given, see [`crate::model::load_encoder_file`]), and
    /// `data` as the dataset its evaluations read. Only the representation space r is
    /// available; [`TrainedModel::run`] is `file`.
    ///
    /// Errors: an invalid architecture or image size, an unreadable file, and weights that do
    /// not fit the architecture (the error lists the differences and the closest prefix).
    pub fn from_encoder(
        model: ResNetConfig,
        data: DataConfig,
        file: &Path,
        prefix: Option<&str>,
        device: Device,
    ) -> Result<Self> {
        let config = TrainConfig {
            seed: 0,
            epochs: 1,
            batch_size: 2,
            workers: 2,
            device: DeviceSpec::Cpu,
            probe: false,
            data,
            augment: Default::default(),
            model: model.into(),
            method: Method::SimclrNoProjector,
            loss: Default::default(),
            optimizer: Default::default(),
            schedule: ScheduleConfig {
                warmup_epochs: 0.0,
                ..Default::default()
            },
            precision: Default::default(),
            speed: Default::default(),
            checkpoint: Default::default(),
            log: Default::default(),
            monitor: Default::default(),
            dist: Default::default(),
            guard: Default::default(),
        }
        .check()?;
        let vs = nn::VarStore::new(device);
        let c = config.config();
        let models = RunModels::build(&vs.root(), &c.model, c.data.image_size, &c.method, None)?;
        load_encoder_file(
            models.encoder.require_resnet("loading an encoder file")?,
            file,
            prefix,
        )?;
        Ok(TrainedModel {
            config,
            run: file.to_path_buf(),
            _vs: vs,
            models,
            head_loaded: false,
            epochs_done: None,
            device,
        })
    }

    /// The run's validated configuration.
    pub fn config(&self) -> &CheckedConfig {
        &self.config
    }

    /// The run folder.
    pub fn run(&self) -> &Path {
        &self.run
    }

    /// The encoder.
    pub fn encoder(&self) -> &Encoder {
        &self.models.encoder
    }

    /// The projector.
    pub fn head(&self) -> &Head {
        &self.models.head
    }

    /// The online probe of the checkpoint, if the run trained one.
    pub fn online_probe(&self) -> Option<&OnlineProbe> {
        self.models.probe.as_ref()
    }

    /// Epochs the checkpoint had completed (`None` for encoder-only weights).
    pub fn epochs_done(&self) -> Option<usize> {
        self.epochs_done
    }

    /// The device the model lives on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// Dimension of the features of `space`, or an error if the method has no such space (the
    /// hidden layer of a projector without one, the embedding of encoder-only weights).
    pub fn dim(&self, space: Space) -> Result<i64> {
        match space {
            Space::Representation => Ok(self.models.encoder.feat_dim()),
            Space::Embedding => {
                self.require_head(space)?;
                Ok(self.models.head.out_dim())
            }
            Space::ProjectorHidden => {
                self.require_head(space)?;
                self.models.head.hidden_dim().ok_or_else(|| {
                    Error::config(
                        "space",
                        format!(
                            "the method `{}` has no projector hidden layer",
                            self.config.config().method.name()
                        ),
                    )
                })
            }
        }
    }

    fn require_head(&self, space: Space) -> Result<()> {
        if self.head_loaded {
            Ok(())
        } else {
            Err(Error::config(
                "space",
                format!(
                    "space `{}` needs the projector, but only encoder weights were loaded",
                    space.symbol()
                ),
            ))
        }
    }

    /// Features of normalised images in eval mode, without gradients.
    ///
    /// # Shapes
    /// `x`: `[B, 3, H, W]` f32 on the model's device → `[B, dim(space)]`.
    pub fn features(&self, x: &Tensor, space: Space) -> Result<Tensor> {
        self.dim(space)?;
        let _g = tch::no_grad_guard();
        let r = self.models.encoder.forward_t(x, false)?;
        match space {
            Space::Representation => Ok(r),
            Space::Embedding => self.models.head.embed(&r, false),
            Space::ProjectorHidden => {
                self.models.head.hidden(&r, false)?.ok_or_else(|| {
                    Error::config("space", "the method has no projector hidden layer")
                })
            }
        }
    }
}

//! The encoder (torchvision's ResNet-18/34/50 with CIFAR and ImageNet stems), the projectors of
//! the paper's Table 1, the online probe, and the named state (torchvision names, safetensors)
//! of them all.

mod batch_norm;
mod block;
mod config;
mod conv;
mod probe;
mod projector;
mod resnet;
mod state;

pub use batch_norm::BatchNorm;
pub use block::Block;
pub use config::{Arch, ResNetConfig, Stem};
pub use conv::Conv2d;
pub use probe::OnlineProbe;
pub use projector::{
    DiagonalProjector, FixedLowRankProjector, Head, LinearProjector, MlpProjector, Projector,
};
pub use resnet::ResNet;
pub use state::{load_state, read_safetensors, save_safetensors, LoadReport};

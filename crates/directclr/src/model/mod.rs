//! The encoder (torchvision's ResNet-18/34/50 with CIFAR and ImageNet stems, or a small encoder
//! of the collapse ladder: [`EncoderConfig`]), the projectors of
//! the paper's Table 1, the online probe, and the named state (torchvision names, safetensors)
//! of them all.
//!
//! # Decisions
//!
//! - **Names.** Every module records its tensors under PyTorch's `state_dict` names relative to
//!   the path it is built under ([`ResNet::named_tensors`], [`Head::named_tensors`],
//!   [`OnlineProbe::named_tensors`]); the [`tch::nn::VarStore`] holds the same tensors under
//!   `<path>.<name>`. The encoder's names, shapes and dtypes equal torchvision 0.26's
//!   (`tests/fixtures/resnet_names.json`).
//! - **`num_batches_tracked`** is kept: an int64 scalar buffer per BN, counted on every
//!   training forward as PyTorch does (it does not enter the computation, the momentum being
//!   0.1). Files written here therefore load into torchvision with `strict=True`; files that
//!   lack it are accepted and the omission is reported ([`LoadReport::defaulted`]).
//! - **CIFAR stem**: 3×3 stride-1 conv and no max-pool (SimCLR's CIFAR appendix, solo-learn),
//!   under the same names as the ImageNet stem.
//! - **Width multiplier** m: stage widths 64m … 512m, 64m a whole number; torchvision has no
//!   such option, so only m = 1 is compared with it, and the narrow models (for CPU runs) use
//!   the same code.
//! - **Initialisation** as torchvision (convs `kaiming_normal_(fan_out, relu)`, BN γ = 1,
//!   β = 0, `zero_init_residual`) and PyTorch's `nn.Linear` defaults for heads, from
//!   libtorch's global generator; the fixed low-rank projector alone draws from its own seed.
//! - **Fallible forwards**: [`ResNet::forward_t`], [`Head::embed`] and the probe return
//!   [`crate::Result`] and check the input's shape instead of panicking inside libtorch.

mod batch_norm;
mod block;
mod config;
mod conv;
mod encoder;
mod export;
mod import;
mod probe;
mod projector;
mod resnet;
mod run_models;
mod small;
mod space;
mod state;

pub use batch_norm::BatchNorm;
pub use block::Block;
pub use config::{Arch, ResNetConfig, Stem};
pub use conv::Conv2d;
pub use encoder::{Encoder, EncoderConfig};
pub use export::{save_torch, serialize_torch};
pub use import::{
    guess_architecture, load_encoder_file, load_encoder_state, read_torch_tensors,
    read_weights_file, ImportReport,
};
pub use probe::OnlineProbe;
pub use projector::{
    DiagonalProjector, FixedLowRankProjector, Head, LinearProjector, MlpProjector, Projector,
};
pub use resnet::ResNet;
pub use run_models::{checkpoint_probe_classes, Part, RunModels};
pub use small::{
    SmallArch, SmallConfig, SmallEncoder, MAX_DENSE_WEIGHTS, MAX_SMALL_WIDTH, MAX_STAGES,
};
pub use space::{FeatureSlice, Space};
pub use state::{
    load_state, read_safetensors, save_safetensors, serialize_safetensors, LoadReport,
};

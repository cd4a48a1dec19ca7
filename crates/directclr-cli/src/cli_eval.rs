//! Arguments of the evaluation commands: `probe`, `knn`, `spectrum`, `reproduce`.

use std::path::PathBuf;

use clap::Args;
use directclr::analysis::RowNormalisation;
use directclr::eval::{EvalSplit, FeatureSlice, ProbeMode, Space};
use directclr::model::{Arch, Stem};
use directclr::runtime::DeviceSpec;

use crate::cli::parse_device;

/// A pretrained model: a run folder of `directclr train`, optionally with other weights, or
/// an encoder file alone with its architecture.
#[derive(Debug, Args, Clone)]
pub struct ModelArgs {
    /// Run folder of `directclr train` (its config.toml builds the model).
    #[arg(long, required_unless_present = "encoder", conflicts_with = "arch")]
    pub run: Option<PathBuf>,
    /// Another training checkpoint to load instead of <run>/checkpoint.safetensors (it must
    /// fit the run's architecture).
    #[arg(long, conflicts_with = "encoder", requires = "run")]
    pub checkpoint: Option<PathBuf>,
    /// Encoder weights alone under torchvision's names: .safetensors or a torch.save
    /// checkpoint (.pt, .pth, .pth.tar, .bin; read without executing anything), as a bare
    /// state dict, {"state_dict": …}, {"model": …} or {"backbone": …}, keys prefixed
    /// `module.`/`backbone.`/… found automatically, `fc.*` ignored. Into the run's
    /// architecture, or, without --run, into --arch/--stem/--width; only the representation
    /// space r is then available.
    #[arg(long)]
    pub encoder: Option<PathBuf>,
    #[command(flatten)]
    pub arch: EncoderArchArgs,
    /// Device: cpu, cuda or cuda:N [the run's device].
    #[arg(long, value_parser = parse_device)]
    pub device: Option<DeviceSpec>,
}

/// The labelled data an evaluation reads (the run's dataset by default).
#[derive(Debug, Args, Clone)]
pub struct EvalDataArgs {
    /// Dataset folder (replaces the run's data.source.path; same format).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Test folder of an image-folder dataset [<train folder>/../val].
    #[arg(long)]
    pub test_folder: Option<PathBuf>,
    /// Use only the first N training samples.
    #[arg(long)]
    pub limit_train: Option<usize>,
    /// Use only the first N test samples.
    #[arg(long)]
    pub limit_test: Option<usize>,
    /// Images per forward pass.
    #[arg(long, default_value_t = 256)]
    pub batch_size: usize,
    /// Loader worker threads.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
}

/// Arguments of `probe`.
#[derive(Debug, Args)]
pub struct ProbeArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub data: EvalDataArgs,
    /// `augmented`: the paper's protocol (fresh crops and flips through the frozen encoder
    /// every epoch); `features`: centre-crop features extracted once (fast).
    #[arg(long, value_enum, default_value_t = ProbeMode::Augmented)]
    pub mode: ProbeMode,
    /// Feature space: the representation r, the embedding z or the projector's hidden layer.
    #[arg(long, value_enum, default_value_t = Space::Representation)]
    pub space: Space,
    /// Coordinates of the space, as a Python slice: `:360` (DirectCLR's r[:d0]), `360:`, `:`.
    #[arg(long, default_value = ":")]
    pub slice: FeatureSlice,
    /// Epochs [paper: 100].
    #[arg(long, default_value_t = 100)]
    pub epochs: usize,
    /// Learning rate at epoch 0, cosine to 0 [paper: 0.1].
    #[arg(long, default_value_t = 0.1)]
    pub lr: f64,
    /// Weight decay [paper: 1e-6].
    #[arg(long, default_value_t = 1e-6)]
    pub weight_decay: f64,
    /// Seed of the classifier, order and augmentations.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Evaluate a classifier saved by an earlier probe instead of training one.
    #[arg(long, conflicts_with = "online")]
    pub classifier: Option<PathBuf>,
    /// Evaluate the run's online probe (trained during pretraining) instead of training one.
    #[arg(long)]
    pub online: bool,
    /// Output folder (probe.json, probe.csv, classifier.safetensors)
    /// [<run>/probe/<space><slice>-<mode>].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Only the final result, no line per epoch.
    #[arg(long)]
    pub quiet: bool,
}

/// Arguments of `knn`.
#[derive(Debug, Args)]
pub struct KnnArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub data: EvalDataArgs,
    /// Neighbours; several comma-separated values are evaluated on the same features.
    #[arg(long, value_delimiter = ',', default_values_t = [20usize, 200])]
    pub k: Vec<usize>,
    /// Temperature T of the votes exp(s/T).
    #[arg(long, default_value_t = 0.07)]
    pub temperature: f64,
    /// Feature space.
    #[arg(long, value_enum, default_value_t = Space::Representation)]
    pub space: Space,
    /// Coordinates of the space, as a Python slice.
    #[arg(long, default_value = ":")]
    pub slice: FeatureSlice,
    /// Also write the result as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// Arguments of `spectrum`: run folders (`--run`) or embedding files (`--embeddings`).
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["runs", "embeddings", "encoder"])))]
pub struct SpectrumArgs {
    /// Run folders; several are overlaid in one figure (Figure 9).
    #[arg(long = "run", num_args = 1..)]
    pub runs: Vec<PathBuf>,
    /// Embedding matrices [N, d] written by other tools: .npy, .npz or .safetensors (f16, bf16,
    /// f32, f64), streamed, never held whole; several are overlaid in one figure.
    #[arg(long, num_args = 1..)]
    pub embeddings: Vec<PathBuf>,
    /// Encoder weights (.safetensors, .pt, .pth, .pth.tar, .bin) whose representations of the
    /// dataset are analysed, into --arch/--stem/--width, reading --dataset from --data.
    #[arg(long, requires = "arch")]
    pub encoder: Option<PathBuf>,
    #[command(flatten)]
    pub arch: EncoderArchArgs,
    /// The array of each .npz, or the tensor of each .safetensors [the file's only one].
    #[arg(long, requires = "embeddings")]
    pub key: Option<String>,
    /// Legend labels, one per run or file [each run's method; each file's name].
    #[arg(long = "label", num_args = 1..)]
    pub labels: Vec<String>,
    /// Feature space: r (Figures 7b, 9), z (Figure 2) or the projector's hidden layer.
    #[arg(long, value_enum, default_value_t = Space::Representation)]
    pub space: Space,
    /// Coordinates of the space, as a Python slice.
    #[arg(long, default_value = ":")]
    pub slice: FeatureSlice,
    /// Split whose features are used [paper: the validation set].
    #[arg(long, value_enum, default_value_t = EvalSplit::Test)]
    pub split: EvalSplit,
    /// Row preprocessing before the covariance [paper: l2]: l2 or none.
    #[arg(long, alias = "normalise", value_enum, default_value_t = RowNormalisation::L2)]
    pub rows: RowNormalisation,
    /// λ_k/λ₁ below this counts as a collapsed dimension.
    #[arg(long, default_value_t = directclr::analysis::DEFAULT_COLLAPSE_THRESHOLD)]
    pub collapse_threshold: f64,
    /// Use only the first N samples of the split.
    #[arg(long, conflicts_with = "sample")]
    pub limit: Option<usize>,
    /// Use a seeded random subset of N samples (kept in dataset order; see --seed).
    #[arg(long)]
    pub sample: Option<usize>,
    /// Seed of --sample.
    #[arg(long, default_value_t = 0, requires = "sample")]
    pub seed: u64,
    /// The images to analyse. An image folder (--dataset image_folder, the default with
    /// --encoder) is read as given: one sub-folder per class (ImageNet's val/) or a flat
    /// folder of .jpg/.jpeg/.png files. For the other kinds, the dataset folder whose --split
    /// is read (replaces each run's data.source.path).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Test folder of an image-folder dataset (a run's own data, without --data).
    #[arg(long)]
    pub test_folder: Option<PathBuf>,
    #[command(flatten)]
    pub transform: EvalTransformArgs,
    /// Leave out image files that cannot be decoded (counted, listed, and written to
    /// skipped.txt) instead of stopping at the first.
    #[arg(long)]
    pub skip_bad: bool,
    /// Also write the features (before --slice) as an f32 .npy [N, dim], rows in the order
    /// of the images, with FILE's image list beside it (FILE with .files.txt) for file data.
    #[arg(long, value_name = "FILE")]
    pub save_embeddings: Option<PathBuf>,
    /// Device: cpu, cuda or cuda:N [each run's device].
    #[arg(long, value_parser = parse_device)]
    pub device: Option<DeviceSpec>,
    /// Images per forward pass.
    #[arg(long, default_value_t = 256)]
    pub batch_size: usize,
    /// Loader worker threads (decoding and the evaluation transform).
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Output folder (spectrum.csv, spectrum.png and .svg, metrics.json).
    #[arg(long, default_value = "out/spectrum")]
    pub out: PathBuf,
    /// Figure title.
    #[arg(long)]
    pub title: Option<String>,
}

/// Arguments of `reproduce`.
#[derive(Debug, Args)]
pub struct ReproduceArgs {
    /// The reproduction's TOML config (e.g. configs/reproduce-quick.toml).
    #[arg(long)]
    pub config: PathBuf,
    /// Output folder (runs/, figures, report.md) [out/<config file name>].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Device: cpu, cuda or cuda:N (replaces the pretraining preset's).
    #[arg(long, value_parser = parse_device)]
    pub device: Option<DeviceSpec>,
    /// Dataset folder (replaces the pretraining preset's data.source.path).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Pretraining epochs (replaces the preset's).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Loader worker threads.
    #[arg(long)]
    pub workers: Option<usize>,
    /// Only a line per finished stage.
    #[arg(long)]
    pub quiet: bool,
}

/// The evaluation transform's settings, each replacing the default for the model's image size
/// (ImageNet: resize 256, centre crop 224, ImageNet mean/std; 32-px CIFAR and 28-px IDX
/// images: resized to the model's size, no crop).
#[derive(Debug, Args, Clone)]
pub struct EvalTransformArgs {
    /// Shorter side after resizing (torchvision's `Resize(N)`).
    #[arg(long)]
    pub resize: Option<usize>,
    /// Side of the centre crop (torchvision's `CenterCrop(N)`), at most --resize.
    #[arg(long)]
    pub crop: Option<usize>,
    /// Per-channel mean of the normalisation, R,G,B.
    #[arg(long, value_delimiter = ',')]
    pub mean: Option<Vec<f32>>,
    /// Per-channel standard deviation of the normalisation, R,G,B.
    #[arg(long, value_delimiter = ',')]
    pub std: Option<Vec<f32>>,
}

/// The architecture of an encoder file evaluated without a run folder (`--encoder` alone).
#[derive(Debug, Args, Clone)]
pub struct EncoderArchArgs {
    /// Architecture of --encoder without --run: resnet18, resnet34 or resnet50.
    #[arg(long, value_parser = parse_arch, requires = "encoder")]
    pub arch: Option<Arch>,
    /// Stem of --encoder without --run: imagenet (7×7 conv, max-pool) or cifar (3×3 conv).
    #[arg(long, value_parser = parse_stem, default_value = "imagenet", requires = "arch")]
    pub stem: Stem,
    /// Width multiplier of --encoder without --run (1 is torchvision's; 0.0625 gives 4 base
    /// channels).
    #[arg(long, default_value_t = 1.0, requires = "arch")]
    pub width: f64,
    /// Key prefix of the encoder's tensors in --encoder (`module.`, `backbone.`,
    /// `state_dict.module.`; "" for none) [found automatically].
    #[arg(long, requires = "encoder")]
    pub prefix: Option<String>,
    /// Dataset kind of --encoder without --run: mnist, fashion_mnist, cifar10, cifar100,
    /// stl10 or image_folder (read from --data) [image_folder].
    #[arg(long, requires = "arch")]
    pub dataset: Option<String>,
    /// Image side of --encoder without --run [32 with the cifar stem, 224 with imagenet].
    #[arg(long, requires = "arch")]
    pub image_size: Option<usize>,
}

fn parse_arch(s: &str) -> Result<Arch, String> {
    s.parse().map_err(|e: directclr::Error| e.to_string())
}

fn parse_stem(s: &str) -> Result<Stem, String> {
    s.parse().map_err(|e: directclr::Error| e.to_string())
}

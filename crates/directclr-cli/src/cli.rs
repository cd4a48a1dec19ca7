//! The command-line interface: clap types whose doc comments are the `--help` text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use directclr::runtime::{DeviceSpec, HeapPolicy};
use directclr::theory::{projector::Mechanism, Activation, HeadKind, Precision, ToyLoss, ZNorm};

pub use crate::cli_eval::{KnnArgs, ProbeArgs, ReproduceArgs, SpectrumArgs};

/// Contrastive self-supervised learning and the study of dimensional collapse
/// (Jing, Vincent, LeCun, Tian: Understanding Dimensional Collapse in Contrastive
/// Self-Supervised Learning, ICLR 2022).
#[derive(Debug, Parser)]
#[command(name = "directclr", version, propagate_version = true)]
pub struct Cli {
    /// CPU threads for libtorch and parallel runs (0 = all cores).
    #[arg(long, global = true, default_value_t = 0)]
    pub threads: usize,
    /// Freed CPU memory: `reuse` keeps it for the next step (no per-block mmap; faster where
    /// activations exceed 32 MiB), `system` leaves glibc's defaults (PyTorch's behaviour).
    #[arg(long, global = true, default_value_t = HeapPolicy::Reuse)]
    pub heap: HeapPolicy,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the libtorch version, threads and whether CUDA can be used.
    Info,
    /// The theory lab: the toy models of Sections 4–5 (Theorem 1, Figures 4, 5, 6).
    #[command(subcommand)]
    Theory(TheoryCommand),
    /// Pretrain an encoder with one method of Table 1 (SimCLR projectors, DirectCLR,
    /// ablations) from a TOML config; resumes an existing run folder automatically.
    Train(TrainArgs),
    /// Linear probe of a pretrained encoder: the paper's protocol or the fast features mode,
    /// on r, z or a slice such as r[:d0].
    Probe(ProbeArgs),
    /// Weighted k-nearest-neighbour accuracy of a pretrained encoder's features.
    Knn(KnnArgs),
    /// Covariance spectra (Eqn 1) and rank metrics of r or z, several runs overlaid (Figures
    /// 2, 7b, 9).
    Spectrum(SpectrumArgs),
    /// Pretrain, probe and diagnose the rows of Table 1 and write one report (resumable).
    Reproduce(ReproduceArgs),
    /// Write a run's encoder for PyTorch under torchvision's names: safetensors or torch.save
    /// (`resnetXX()` with `fc = nn.Identity()` loads it with `strict=True`).
    Export(ExportArgs),
}

/// Format of `export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// `.safetensors` (`safetensors.torch.load_file`).
    Safetensors,
    /// `torch.save` zip format (`torch.load(f, weights_only=True)`).
    Pt,
}

/// Arguments of `export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub model: crate::cli_eval::ModelArgs,
    /// Output format [by the extension of --out: .safetensors, otherwise pt].
    #[arg(long, value_enum)]
    pub format: Option<ExportFormat>,
    /// Output file.
    #[arg(long)]
    pub out: PathBuf,
}

/// Arguments of `train`; flags replace the values of the config file.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// The run's TOML config (e.g. configs/fashion-mnist-quick.toml).
    #[arg(long)]
    pub config: PathBuf,
    /// Run folder (config.toml, metrics.jsonl, checkpoint.safetensors, encoder.safetensors)
    /// [runs/<config file name>].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Number of epochs.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Batch size.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Loader worker threads.
    #[arg(long)]
    pub workers: Option<usize>,
    /// Seed of initialisation, data order and augmentations.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Device: cpu, cuda or cuda:N.
    #[arg(long, value_parser = parse_device)]
    pub device: Option<DeviceSpec>,
    /// Dataset folder (replaces data.source.path).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Use only the first N samples of the dataset.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Learning rate (schedule.lr).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Log a metrics line every N steps.
    #[arg(long)]
    pub log_every: Option<usize>,
    /// Require a checkpoint in the run folder and continue from it (a folder with a checkpoint
    /// is resumed even without this flag).
    #[arg(long)]
    pub resume: bool,
    /// No progress bar and no per-window lines: one line per epoch (for logs).
    #[arg(long)]
    pub quiet: bool,
    /// Data-parallel on this machine: start N processes of this command (ranks 0..N, a free
    /// port on 127.0.0.1), as `torchrun --nproc-per-node N` would. `batch_size` stays the
    /// global batch. Without it, the launch variables (RANK, WORLD_SIZE, LOCAL_RANK,
    /// MASTER_ADDR, MASTER_PORT, as set by torchrun or SLURM) decide.
    #[arg(long)]
    pub nproc: Option<usize>,
}

pub(crate) fn parse_device(s: &str) -> Result<DeviceSpec, String> {
    s.parse().map_err(|e: directclr::Error| e.to_string())
}

/// The theory experiments.
#[derive(Debug, Subcommand)]
pub enum TheoryCommand {
    /// Section 4 / Theorem 1: one linear layer, strong noise on some coordinates. Sweeps the
    /// noise std; per run reports X (Eqn 6) and which directions collapsed.
    Augmentation(AugmentationArgs),
    /// Section 5 / Figures 4–5: two linear layers align and keep small singular values small.
    Implicit(ImplicitArgs),
    /// Figure 6: more layers collapse more dimensions; ReLU between 2 layers alike.
    Depth(DepthArgs),
    /// Section 6 / Table 1: each head (none, linear, nonlinear projector, DirectCLR, fixed
    /// low-rank, diagonal) on a toy encoder, under both collapse mechanisms; reports the
    /// spectrum and effective rank of the representation r and whether the loss left chance.
    Projector(ProjectorArgs),
    /// Section 6, Propositions 1–2: the alignment of a trainable linear projector with the
    /// encoder's last layer (|V_pᵀU_L| and its off-diagonal mass over training), a diagonal
    /// projector against the full one, on a toy encoder under both collapse mechanisms.
    Propositions(PropositionsArgs),
    /// Issue 28, item 4: the heads none / linear / diagonal under scaled initial weights
    /// (encoder and head), weight decay and L2-normalised z, both mechanisms; one summary table,
    /// runs that never left chance flagged.
    Conditions(ConditionsArgs),
    /// All three experiments, each into a subfolder of --out.
    All(AllArgs),
}

/// Settings shared by the toy experiments; unset ones keep the paper's value.
#[derive(Debug, Args, Clone)]
pub struct ToyArgs {
    /// Width d of data and layers [paper: 16].
    #[arg(long)]
    pub dim: Option<usize>,
    /// SGD steps [10000].
    #[arg(long)]
    pub steps: Option<usize>,
    /// Batch size, drawn without replacement [128].
    #[arg(long)]
    pub batch: Option<usize>,
    /// Learning rate [1e-3 for Section 4, 1e-2 for Section 5].
    #[arg(long, allow_negative_numbers = true)]
    pub lr: Option<f64>,
    /// Number of fixed training samples x ~ N(0, I) [10000].
    #[arg(long)]
    pub samples: Option<usize>,
    /// Fresh samples for each spectrum measurement [1000].
    #[arg(long)]
    pub eval_samples: Option<usize>,
    /// Measure every this many steps [10].
    #[arg(long)]
    pub log_every: Option<usize>,
    /// InfoNCE temperature τ [0.1].
    #[arg(long, allow_negative_numbers = true)]
    pub temperature: Option<f64>,
    /// Loss form: `distance` is the paper's Eqn 2, `dot` the authors' toy code
    /// [distance for Section 4, dot for Section 5].
    #[arg(long, value_enum)]
    pub loss: Option<ToyLoss>,
    /// `l2` scales every row of z to unit length before the loss (SimCLR); `none` is the
    /// paper's toy [none]. `theory conditions` sweeps it with --z-norms instead.
    #[arg(long, value_enum)]
    pub z_norm: Option<ZNorm>,
    /// Seed of every random draw [0].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Arithmetic precision [f32].
    #[arg(long, value_enum)]
    pub precision: Option<Precision>,
    /// Batches averaged per estimate of X (Eqn 6) [4 in Section 4, none in Section 5].
    #[arg(long)]
    pub x_batches: Option<usize>,
    /// Eigenvalues below this fraction of the largest count as collapsed dimensions
    /// [1e-2 for Section 4, 1e-4 for Section 5].
    #[arg(long, allow_negative_numbers = true)]
    pub collapse_threshold: Option<f64>,
}

/// Arguments of `theory augmentation`.
#[derive(Debug, Args)]
pub struct AugmentationArgs {
    /// Noise stds to sweep, comma-separated.
    #[arg(long, value_delimiter = ',', allow_negative_numbers = true, default_values_t = [0.01, 0.1, 0.5, 1.0, 1.5, 2.0])]
    pub noise: Vec<f64>,
    /// How many of the last coordinates get noise [paper: 8].
    #[arg(long, default_value_t = 8)]
    pub noisy_dims: usize,
    /// Output folder.
    #[arg(long, default_value = "out/theory/augmentation")]
    pub out: PathBuf,
    #[command(flatten)]
    pub toy: ToyArgs,
}

/// Arguments of `theory implicit`.
#[derive(Debug, Args)]
pub struct ImplicitArgs {
    /// Number of linear layers (at least 2).
    #[arg(long, default_value_t = 2)]
    pub layers: usize,
    /// Output folder.
    #[arg(long, default_value = "out/theory/implicit")]
    pub out: PathBuf,
    #[command(flatten)]
    pub toy: ToyArgs,
}

/// Arguments of `theory depth`.
#[derive(Debug, Args)]
pub struct DepthArgs {
    /// Linear networks of 1..=this many layers.
    #[arg(long, default_value_t = 4)]
    pub max_layers: usize,
    /// Output folder.
    #[arg(long, default_value = "out/theory/depth")]
    pub out: PathBuf,
    #[command(flatten)]
    pub toy: ToyArgs,
}

/// Arguments of `theory projector`.
#[derive(Debug, Args)]
pub struct ProjectorArgs {
    /// Collapse mechanisms, comma-separated [both].
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = Mechanism::ALL)]
    pub mechanisms: Vec<Mechanism>,
    /// Heads between r and the loss, comma-separated [all six].
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = HeadKind::ALL)]
    pub heads: Vec<HeadKind>,
    /// DirectCLR's d0: z = r[:d0] (1..=dim).
    #[arg(long, default_value_t = 8)]
    pub d0: usize,
    /// Rank k of the fixed low-rank projector (1..=dim).
    #[arg(long, default_value_t = 8)]
    pub rank: usize,
    /// Noise std of strong augmentation [Section 4: 1.5 collapses].
    #[arg(long, default_value_t = 1.5, allow_negative_numbers = true)]
    pub noise: f64,
    /// How many of the last coordinates get strong-augmentation noise [paper: 8].
    #[arg(long, default_value_t = 8)]
    pub noisy_dims: usize,
    /// Encoder depth L [1 for strong augmentation, 2 for implicit regularisation].
    #[arg(long)]
    pub layers: Option<usize>,
    /// Between encoder layers [linear].
    #[arg(long, value_enum)]
    pub activation: Option<Activation>,
    /// Output folder.
    #[arg(long, default_value = "out/theory/projector")]
    pub out: PathBuf,
    #[command(flatten)]
    pub toy: ToyArgs,
}

/// Arguments of `theory propositions`.
#[derive(Debug, Args)]
pub struct PropositionsArgs {
    /// Collapse mechanisms, comma-separated [both].
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = Mechanism::ALL)]
    pub mechanisms: Vec<Mechanism>,
    /// Noise std of strong augmentation [Section 4: 1.5 collapses].
    #[arg(long, default_value_t = 1.5, allow_negative_numbers = true)]
    pub noise: f64,
    /// How many of the last coordinates get strong-augmentation noise [paper: 8].
    #[arg(long, default_value_t = 8)]
    pub noisy_dims: usize,
    /// Encoder depth L [1 for strong augmentation, 2 for implicit regularisation].
    #[arg(long)]
    pub layers: Option<usize>,
    /// Between encoder layers [linear].
    #[arg(long, value_enum)]
    pub activation: Option<Activation>,
    /// Output folder.
    #[arg(long, default_value = "out/theory/propositions")]
    pub out: PathBuf,
    #[command(flatten)]
    pub toy: ToyArgs,
}

/// Arguments of `theory conditions`.
#[derive(Debug, Args)]
pub struct ConditionsArgs {
    /// Collapse mechanisms, comma-separated [both].
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = Mechanism::ALL)]
    pub mechanisms: Vec<Mechanism>,
    /// Factors on the preset's initial weights, comma-separated: each as (encoder, head) =
    /// (s, s), and (1, s) for s ≠ 1.
    #[arg(long, value_delimiter = ',', default_values_t = vec![1.0, 0.3, 0.1], allow_negative_numbers = true)]
    pub scales: Vec<f64>,
    /// Weight decays λ (w ← w − lr·(∇L + λw)), comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = vec![0.0, 0.1], allow_negative_numbers = true)]
    pub weight_decays: Vec<f64>,
    /// Normalisations of z before the loss, comma-separated: `none` (the paper's toy), `l2`
    /// (SimCLR's z/‖z‖).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = vec![ZNorm::None, ZNorm::L2])]
    pub z_norms: Vec<ZNorm>,
    /// Training lengths in SGD steps, comma-separated, each a condition crossed with the rest
    /// [only --steps, or the preset's 10000]; not with --steps.
    #[arg(long, value_delimiter = ',')]
    pub steps_list: Option<Vec<usize>>,
    /// Output folder.
    #[arg(long, default_value = "out/theory/conditions")]
    pub out: PathBuf,
    #[command(flatten)]
    pub toy: ToyArgs,
}

/// Arguments of `theory all`.
#[derive(Debug, Args)]
pub struct AllArgs {
    /// Output folder (subfolders augmentation/, implicit/, depth/).
    #[arg(long, default_value = "out/theory")]
    pub out: PathBuf,
    #[command(flatten)]
    pub toy: ToyArgs,
}

//! The tiny run the training tests share, as TOML: ResNet-18 (CIFAR stem) on 32 px images of the
//! Fashion-MNIST subset shipped in the repository. The command-line tests use it too
//! (crates/directclr-cli/tests/common/mod.rs).
#![allow(dead_code)]

use std::fmt::Write;
use std::path::{Path, PathBuf};

/// The subset shipped in the repository (`data/fashion-mnist-subset`).
pub fn fashion_mnist() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/fashion-mnist-subset")
}

/// A tiny run: each field is one TOML key, and `None` leaves the key out (its default holds).
/// [`Tiny::toml`] writes the top-level keys, then `[data]`, `[model]`, `[method]`,
/// `[optimizer]`, `[schedule]`, `[monitor]`, `[log]` and last `extra`, so that bare keys in
/// `extra` belong to the last table written.
#[derive(Debug, Clone)]
pub struct Tiny<'a> {
    pub seed: Option<u64>,
    pub epochs: usize,
    pub batch_size: usize,
    pub workers: Option<usize>,
    pub probe: Option<bool>,
    /// Images of the subset used (`data.limit`).
    pub limit: usize,
    /// `model.width_multiplier`: 1/16 gives a 32-d representation r.
    pub width: f64,
    /// The body of `[model]` in place of the ResNet-18 (CIFAR stem, `width`).
    pub model: Option<&'a str>,
    /// The body of `[method]` (`None`: no table, the default method).
    pub method: Option<&'a str>,
    /// `optimizer.kind`.
    pub optimizer: Option<&'a str>,
    /// `schedule.lr`.
    pub lr: Option<f64>,
    /// `schedule.warmup_epochs`.
    pub warmup_epochs: f64,
    /// `monitor.samples`.
    pub monitor_samples: Option<usize>,
    /// `log.every_steps`.
    pub log_every_steps: Option<usize>,
    /// TOML appended last.
    pub extra: &'a str,
}

/// DirectCLR's sub-vector of r as the loss's input, d0 = 8.
pub const DIRECT_CLR: &str = "kind = \"direct_clr\"\nd0 = 8";

impl Default for Tiny<'_> {
    /// Seed 7, 3 epochs of 48 images in batches of 16, width 1/16, DirectCLR with d0 = 8,
    /// one warm-up epoch; every other key at its default.
    fn default() -> Self {
        Tiny {
            seed: Some(7),
            epochs: 3,
            batch_size: 16,
            workers: None,
            probe: None,
            limit: 48,
            width: 0.0625,
            model: None,
            method: Some(DIRECT_CLR),
            optimizer: None,
            lr: None,
            warmup_epochs: 1.0,
            monitor_samples: None,
            log_every_steps: None,
            extra: "",
        }
    }
}

impl Tiny<'_> {
    /// The run's TOML.
    pub fn toml(&self) -> String {
        let mut t = String::new();
        // `{:?}` writes a float with its decimal point (0.0, not 0), as TOML's floats need.
        if let Some(seed) = self.seed {
            writeln!(t, "seed = {seed}").unwrap();
        }
        writeln!(t, "epochs = {}", self.epochs).unwrap();
        writeln!(t, "batch_size = {}", self.batch_size).unwrap();
        if let Some(workers) = self.workers {
            writeln!(t, "workers = {workers}").unwrap();
        }
        if let Some(probe) = self.probe {
            writeln!(t, "probe = {probe}").unwrap();
        }
        writeln!(t, "[data]").unwrap();
        let path = fashion_mnist();
        let path = path.display();
        writeln!(
            t,
            "source = {{ kind = \"fashion_mnist\", path = \"{path}\" }}"
        )
        .unwrap();
        writeln!(t, "image_size = 32\nlimit = {}", self.limit).unwrap();
        match self.model {
            Some(body) => writeln!(t, "[model]\n{body}").unwrap(),
            None => {
                writeln!(t, "[model]\narch = \"resnet18\"\nstem = \"cifar\"").unwrap();
                writeln!(t, "width_multiplier = {:?}", self.width).unwrap();
            }
        }
        if let Some(method) = self.method {
            writeln!(t, "[method]\n{method}").unwrap();
        }
        if let Some(kind) = self.optimizer {
            writeln!(t, "[optimizer]\nkind = \"{kind}\"").unwrap();
        }
        writeln!(t, "[schedule]").unwrap();
        if let Some(lr) = self.lr {
            writeln!(t, "lr = {lr:?}").unwrap();
        }
        writeln!(t, "warmup_epochs = {:?}", self.warmup_epochs).unwrap();
        if let Some(samples) = self.monitor_samples {
            writeln!(t, "[monitor]\nsamples = {samples}").unwrap();
        }
        if let Some(every) = self.log_every_steps {
            writeln!(t, "[log]\nevery_steps = {every}").unwrap();
        }
        writeln!(t, "{}", self.extra).unwrap();
        t
    }

    /// Writes [`Tiny::toml`] to `dir/{name}.toml`.
    pub fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let file = dir.join(format!("{name}.toml"));
        std::fs::write(&file, self.toml()).unwrap();
        file
    }
}

//! Times the pretraining step on the CPU: ResNet-18 (CIFAR stem, width 1), the SimCLR 2-layer
//! projector (512 → 512 → 128, BN, no biases), the authors' InfoNCE (τ 0.1, cross-view,
//! symmetric) and LARS, on two synthetic views of `--batch` 32×32 images. Prints one JSON line
//! (view-images per second = 2 × batch × steps / seconds). `benches/train/step_cpu.sh` runs it
//! beside the same step in PyTorch (`benches/train/step_reference.py`).
//!
//! `cargo run --release --example train_step_bench -- [--batch N] [--steps N] [--warmup N]
//! [--threads N]` (`--threads` as the CLI's: libtorch's `set_num_threads`, which also pins MKL's
//! thread count and turns off its dynamic adjustment, as `torch.set_num_threads` does).

use std::time::Instant;

use directclr::{
    loss::InfoNce,
    method::Method,
    model::{Arch, ResNetConfig, Stem},
    optim::OptimizerConfig,
};
use tch::{nn, Device, Kind, Tensor};

fn arg(name: &str, default: i64) -> i64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> Result<(), directclr::Error> {
    let (batch, steps, warmup) = (arg("--batch", 128), arg("--steps", 5), arg("--warmup", 2));
    directclr::runtime::set_threads(arg("--threads", 0).max(0) as usize);
    tch::manual_seed(0);
    let vs = nn::VarStore::new(Device::Cpu);
    let encoder = ResNetConfig {
        arch: Arch::ResNet18,
        stem: Stem::Cifar,
        width_multiplier: 1.0,
        zero_init_residual: true,
    }
    .build(&vs.root().sub("encoder"))?;
    let head = Method::SimclrMlp {
        hidden_dim: None,
        out_dim: 128,
    }
    .build(&vs.root().sub("head"), encoder.feat_dim())?;
    let mut opt = OptimizerConfig::default().build_for(&vs)?;
    let loss_fn = InfoNce::authors();
    let x1 = Tensor::randn([batch, 3, 32, 32], (Kind::Float, Device::Cpu));
    let x2 = Tensor::randn([batch, 3, 32, 32], (Kind::Float, Device::Cpu));
    let mut losses = Vec::new();
    let mut start = Instant::now();
    for step in 0..warmup + steps {
        if step == warmup {
            start = Instant::now();
        }
        let z1 = head.embed(&encoder.forward_t(&x1, true)?, true)?;
        let z2 = head.embed(&encoder.forward_t(&x2, true)?, true)?;
        let loss = loss_fn.loss(&z1, &z2)?;
        opt.zero_grad();
        loss.backward();
        opt.step(0.3)?;
        losses.push(loss.double_value(&[]));
    }
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "{{\"impl\": \"directclr\", \"batch\": {batch}, \"steps\": {steps}, \"seconds\": {seconds}, \"view_images_per_s\": {}, \"threads\": {}, \"first_losses\": {:?}}}",
        (2 * batch * steps) as f64 / seconds,
        tch::get_num_threads(),
        &losses[..3.min(losses.len())]
    );
    Ok(())
}

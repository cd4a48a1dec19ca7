//! Times the pretraining step: a ResNet encoder, the SimCLR 2-layer projector (BN, no biases),
//! the authors' InfoNCE (τ 0.1, cross-view, symmetric) and LARS, on two synthetic views of
//! `--batch` images. Prints one JSON line (view-images per second = 2 × batch × steps /
//! seconds, and the first losses). `benches/train/step_cpu.sh` runs it beside the same step in
//! PyTorch on the CPU; `benches/gpu/bench_all.sh` on a GPU with every speed lever switchable.
//!
//! ```text
//! cargo run --release --example train_step_bench -- [--batch N] [--steps N] [--warmup N]
//!   [--device cpu|cuda] [--arch resnet18|resnet50] [--size 32|224] [--width 1|0.125]
//!   [--heap reuse|system] [--bf16] [--channels-last]
//!   [--fused] [--no-cudnn-benchmark] [--sync-every-step] [--save-init FILE]
//! ```
//!
//! The inputs are a fixed formula of the element index (`inputs`), computed in f64 on the CPU,
//! so the PyTorch reference (`benches/gpu/step_reference.py`) builds the same batch; with
//! `--save-init` the initial weights (torchvision's names under `encoder.`, the projector's
//! `nn.Sequential` names under `head.`) are written for the reference to load, so that both
//! start from the same point and their first losses can be compared.
//! `--threads N` as the CLI's: libtorch's `set_num_threads`, which also pins MKL's
//! thread count and turns off its dynamic adjustment, as `torch.set_num_threads` does).

use std::time::Instant;

use directclr::{
    loss::InfoNce,
    method::Method,
    model::{save_safetensors, Arch, ResNetConfig, RunModels, Stem},
    optim::OptimizerConfig,
    precision::{to_channels_last, Autocast, LowPrecision},
    runtime::DeviceSpec,
};
use tch::{nn, Device, Kind, Tensor};

fn args() -> Vec<String> {
    std::env::args().collect()
}

fn arg(name: &str, default: i64) -> i64 {
    let args = args();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn text(name: &str) -> Option<String> {
    let args = args();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

fn flag(name: &str) -> bool {
    args().iter().any(|a| a == name)
}

/// `[n, 3, s, s]` f32 inputs: `2·frac(0.6180339887·(i + offset)) − 1` of the element index i,
/// computed in f64 (the reference computes the same).
fn inputs(n: i64, s: i64, offset: f64) -> Tensor {
    let i = Tensor::arange(n * 3 * s * s, (Kind::Double, Device::Cpu)) + offset;
    let v = &i * 0.6180339887;
    let frac = &v - v.floor();
    (frac * 2.0 - 1.0).to_kind(Kind::Float).view([n, 3, s, s])
}

fn main() -> Result<(), directclr::Error> {
    // As the CLI does, before the first tensor (`--heap system` for glibc's defaults).
    directclr::runtime::set_heap_policy(text("--heap").unwrap_or_else(|| "reuse".into()).parse()?);
    let (batch, steps, warmup) = (arg("--batch", 128), arg("--steps", 5), arg("--warmup", 2));
    let size = arg("--size", 32);
    let width: f64 = match text("--width") {
        None => 1.0,
        Some(w) => w
            .parse()
            .map_err(|_| directclr::Error::config("--width", format!("`{w}` is not a number")))?,
    };
    let device: DeviceSpec = text("--device").unwrap_or_else(|| "cpu".into()).parse()?;
    let device = device.resolve()?;
    let arch = match text("--arch").as_deref() {
        None | Some("resnet18") => Arch::ResNet18,
        Some("resnet50") => Arch::ResNet50,
        Some(other) => {
            return Err(directclr::Error::config(
                "--arch",
                format!("`{other}` is not resnet18 or resnet50"),
            ))
        }
    };
    let cuda = device.is_cuda();
    let (bf16, channels_last) = (flag("--bf16"), flag("--channels-last"));
    let (fused, sync_every_step) = (flag("--fused"), flag("--sync-every-step"));
    let cudnn_benchmark = cuda && !flag("--no-cudnn-benchmark");
    if cudnn_benchmark {
        tch::Cuda::cudnn_set_benchmark(true);
    }
    directclr::runtime::set_threads(arg("--threads", 0).max(0) as usize);
    tch::manual_seed(0);
    let vs = nn::VarStore::new(device);
    let model = ResNetConfig {
        arch,
        stem: if size <= 64 {
            Stem::Cifar
        } else {
            Stem::ImageNet
        },
        width_multiplier: width,
        zero_init_residual: true,
    };
    let method = Method::SimclrMlp {
        hidden_dim: None,
        out_dim: 128,
    };
    let models = RunModels::build(&vs.root(), &model.into(), size as usize, &method, None)?;
    if let Some(file) = text("--save-init") {
        let all = models.checkpoint_tensors();
        save_safetensors(&file, &all)?;
    }
    let RunModels { encoder, head, .. } = models;
    if channels_last {
        for (_, mut t) in vs.variables() {
            if t.dim() == 4 {
                let cl = to_channels_last(&t)?;
                tch::no_grad(|| t.set_data(&cl));
            }
        }
    }
    let mut opt = OptimizerConfig::default().build_for(&vs)?;
    if fused {
        opt.fuse()?;
    }
    let loss_fn = InfoNce::authors();
    let mut x1 = inputs(batch, size, 0.0).to_device(device);
    let mut x2 = inputs(batch, size, 0.5).to_device(device);
    if channels_last {
        x1 = to_channels_last(&x1)?;
        x2 = to_channels_last(&x2)?;
    }
    let sync = || {
        if let Device::Cuda(i) = device {
            tch::Cuda::synchronize(i as i64);
        }
    };
    let mut losses = Vec::new();
    sync();
    let mut start = Instant::now();
    for step in 0..warmup + steps {
        if step == warmup {
            sync();
            start = Instant::now();
        }
        let loss = {
            let _autocast = if bf16 {
                Some(Autocast::enter(device, LowPrecision::Bf16)?)
            } else {
                None
            };
            let z1 = head.embed(&encoder.forward_t(&x1, true)?, true)?;
            let z2 = head.embed(&encoder.forward_t(&x2, true)?, true)?;
            loss_fn.loss(&z1, &z2)?
        };
        opt.zero_grad();
        loss.backward();
        opt.step(0.3)?;
        if sync_every_step {
            // What a loop that prints or checks the loss every step does.
            let _ = loss.double_value(&[]);
        }
        losses.push(loss.detach());
    }
    sync();
    let seconds = start.elapsed().as_secs_f64();
    let first: Vec<f64> = losses.iter().take(3).map(|l| l.double_value(&[])).collect();
    let finite = losses.iter().all(|l| l.double_value(&[]).is_finite());
    println!(
        "{{\"impl\": \"directclr\", \"device\": \"{device:?}\", \"arch\": \"{arch:?}\", \"size\": {size}, \"width\": {width}, \"batch\": {batch}, \"steps\": {steps}, \"seconds\": {seconds}, \"view_images_per_s\": {}, \"threads\": {}, \"bf16\": {bf16}, \"channels_last\": {channels_last}, \"fused\": {fused}, \"cudnn_benchmark\": {cudnn_benchmark}, \"sync_every_step\": {sync_every_step}, \"finite\": {finite}, \"first_losses\": {:?}}}",
        (2 * batch * steps) as f64 / seconds,
        tch::get_num_threads(),
        first
    );
    Ok(())
}

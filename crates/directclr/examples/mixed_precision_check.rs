//! Mixed-precision check: trains a few steps of ResNet-50 (ImageNet stem) with the SimCLR
//! 2-layer projector, the authors' InfoNCE and LARS on a fixed synthetic batch, once in f32 on
//! the CPU and once on `--device` (default `cuda`) with bf16 autocast and channels-last tensors,
//! from the same initial weights, and compares the losses step by step.
//!
//! Tolerance: the first loss within 2 % (relative), the following ones within 50 % (see the
//! constants); exit code 1 otherwise. `--no-bf16` / `--no-channels-last` switch either part off
//! (with both off the losses agree to about 1e-6: the mechanism itself adds no error). Run on a GPU machine with `scripts/gpu/check_mixed_precision.sh`; on a CPU machine
//! `--device cpu` checks the CPU bf16 path the same way.
//!
//! `cargo run --release --example mixed_precision_check -- [--device cuda|cpu] [--steps N]
//! [--batch N] [--size PX] [--no-bf16] [--no-channels-last]`

use std::process::ExitCode;

use directclr::{
    loss::InfoNce,
    method::Method,
    model::{Arch, ResNetConfig, Stem},
    optim::OptimizerConfig,
    precision::{is_channels_last, to_channels_last, Autocast, LowPrecision},
    runtime::DeviceSpec,
};
use tch::{nn, Device, Kind, Tensor};

/// The first loss (same weights, same batch: only the arithmetic differs) must agree this well.
const FIRST_TOLERANCE: f64 = 0.02;
/// Later losses follow trajectories that separate (bf16 rounding changes every update; one
/// LARS step at lr 0.02 already moves the loss by 40 % here), so they only have to stay in
/// the same range: this catches divergence, NaN and blow-ups, not rounding.
const LATER_TOLERANCE: f64 = 0.5;

struct Args {
    bf16: bool,
    channels_last: bool,
    device: DeviceSpec,
    steps: usize,
    batch: i64,
    size: i64,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        bf16: true,
        channels_last: true,
        device: DeviceSpec::Cuda(0),
        steps: 5,
        batch: 16,
        size: 64,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--no-bf16" => {
                a.bf16 = false;
                continue;
            }
            "--no-channels-last" => {
                a.channels_last = false;
                continue;
            }
            _ => {}
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--device" => a.device = value.parse().map_err(|e| format!("{e}"))?,
            "--steps" => {
                a.steps = value
                    .parse()
                    .map_err(|_| "--steps: not a number".to_string())?
            }
            "--batch" => {
                a.batch = value
                    .parse()
                    .map_err(|_| "--batch: not a number".to_string())?
            }
            "--size" => {
                a.size = value
                    .parse()
                    .map_err(|_| "--size: not a number".to_string())?
            }
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(a)
}

/// Two deterministic views [B, 3, S, S].
fn views(b: i64, s: i64) -> (Tensor, Tensor) {
    let n = (b * 3 * s * s) as usize;
    let base: Vec<f32> = (0..n).map(|i| ((i as f64) * 0.0137).sin() as f32).collect();
    let noise: Vec<f32> = (0..n)
        .map(|i| ((i as f64) * 0.71 + 1.0).sin() as f32 * 0.2)
        .collect();
    let x = Tensor::from_slice(&base).reshape([b, 3, s, s]);
    let e = Tensor::from_slice(&noise).reshape([b, 3, s, s]);
    (&x + &e, &x - &e)
}

/// The model: ResNet-50 encoder and the SimCLR 2-layer projector.
struct Net {
    encoder: directclr::model::ResNet,
    head: directclr::model::Head,
}

fn build(vs: &nn::VarStore) -> Result<Net, directclr::Error> {
    let encoder = ResNetConfig {
        arch: Arch::ResNet50,
        stem: Stem::ImageNet,
        width_multiplier: 1.0,
        zero_init_residual: true,
    }
    .build(&vs.root().sub("backbone"))?;
    let head = Method::SimclrMlp {
        hidden_dim: None,
        out_dim: 128,
    }
    .build(&vs.root().sub("projector"), encoder.feat_dim())?;
    Ok(Net { encoder, head })
}

/// Trains `steps` steps; returns the losses. `mixed`: bf16 autocast and channels-last.
fn train(
    vs: &nn::VarStore,
    net: &Net,
    device: Device,
    mixed: bool,
    args: &Args,
) -> Result<Vec<f64>, directclr::Error> {
    let mut opt = OptimizerConfig::default().build_for(vs)?;
    let (mut y1, mut y2) = views(args.batch, args.size);
    y1 = y1.to_device(device);
    y2 = y2.to_device(device);
    let (channels_last, bf16) = (mixed && args.channels_last, mixed && args.bf16);
    if channels_last {
        y1 = to_channels_last(&y1)?;
        y2 = to_channels_last(&y2)?;
        for (_, mut t) in vs.variables() {
            if t.dim() == 4 {
                let cl = to_channels_last(&t)?;
                tch::no_grad(|| t.set_data(&cl));
            }
        }
        debug_assert!(is_channels_last(&y1));
    }
    let loss_fn = InfoNce::authors();
    let mut losses = Vec::new();
    for _ in 0..args.steps {
        let loss = {
            let _autocast = if bf16 {
                Some(Autocast::enter(device, LowPrecision::Bf16)?)
            } else {
                None
            };
            let z1 = net.head.embed(&net.encoder.forward_t(&y1, true)?, true)?;
            let z2 = net.head.embed(&net.encoder.forward_t(&y2, true)?, true)?;
            loss_fn.loss(&z1, &z2)?
        };
        opt.zero_grad();
        loss.backward();
        opt.step(0.02)?;
        losses.push(loss.to_kind(Kind::Double).double_value(&[]));
    }
    Ok(losses)
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let run = || -> Result<bool, directclr::Error> {
        let device = args.device.resolve()?;
        tch::manual_seed(0);
        let reference = nn::VarStore::new(Device::Cpu);
        let reference_net = build(&reference)?;
        let mut mixed = nn::VarStore::new(device);
        let mixed_net = build(&mixed)?;
        mixed.copy(&reference)?; // the same initial weights
        let f32_losses = train(&reference, &reference_net, Device::Cpu, false, &args)?;
        let bf16_losses = train(&mixed, &mixed_net, device, true, &args)?;
        println!(
            "step  loss f32 (cpu)  loss bf16 ({})  relative difference",
            args.device
        );
        let mut ok = true;
        for (k, (a, b)) in f32_losses.iter().zip(&bf16_losses).enumerate() {
            let rel = (a - b).abs() / a.abs().max(1e-12);
            let tol = if k == 0 {
                FIRST_TOLERANCE
            } else {
                LATER_TOLERANCE
            };
            ok &= rel <= tol;
            println!("{k:>4}  {a:>14.6}  {b:>16.6}  {rel:>10.2e} (tolerance {tol})");
        }
        Ok(ok)
    };
    match run() {
        Ok(true) => {
            println!("mixed precision agrees with f32 within tolerance");
            ExitCode::SUCCESS
        }
        Ok(false) => {
            println!("mixed precision differs from f32 beyond tolerance");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

//! The building blocks composed as the training loop will call them: encoder → method head →
//! InfoNCE, online probe on detached r, LARS with the warm-up + cosine schedule. Checks that
//! gradients reach exactly what they should and that a few steps on a fixed batch lower the
//! loss, for every method of Table 1.

use directclr::loss::InfoNce;
use directclr::method::Method;
use directclr::model::{Arch, OnlineProbe, ResNetConfig, Stem};
use directclr::optim::{OptimizerConfig, ScheduleConfig};
use tch::{nn, Device, Kind, Tensor};

/// Two "views" of a batch of 8 images, deterministic, and their labels.
fn batch() -> (Tensor, Tensor, Tensor) {
    let n = 8 * 3 * 8 * 8;
    let base: Vec<f32> = (0..n).map(|i| ((i as f64) * 0.013).sin() as f32).collect();
    let noise: Vec<f32> = (0..n)
        .map(|i| ((i as f64) * 0.71 + 1.0).sin() as f32 * 0.1)
        .collect();
    let x = Tensor::from_slice(&base).reshape([8, 3, 8, 8]);
    let y1 = &x + Tensor::from_slice(&noise).reshape([8, 3, 8, 8]);
    let y2 = &x - Tensor::from_slice(&noise).reshape([8, 3, 8, 8]);
    (y1, y2, Tensor::from_slice(&[0i64, 1, 2, 3, 0, 1, 2, 3]))
}

#[test]
fn a_few_pretraining_steps_lower_the_loss_for_every_method() {
    let (y1, y2, labels) = batch();
    let methods = [
        Method::SimclrMlp {
            hidden_dim: None,
            out_dim: 16,
        },
        Method::SimclrLinear { out_dim: 16 },
        Method::SimclrNoProjector,
        Method::DirectClr { d0: 20 },
        Method::FixedLowRank { rank: 20, seed: 1 },
        Method::TrainableDiagonal,
    ];
    for method in methods {
        tch::manual_seed(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let encoder = ResNetConfig {
            arch: Arch::ResNet18,
            stem: Stem::Cifar,
            width_multiplier: 0.125,
            zero_init_residual: true,
        }
        .build(&vs.root().sub("backbone"))
        .unwrap();
        let head = method
            .build(&vs.root().sub("projector"), encoder.feat_dim())
            .unwrap();
        let probe = OnlineProbe::new(&vs.root().sub("online_head"), encoder.feat_dim(), 4).unwrap();
        let loss_fn = InfoNce::authors();
        let mut opt = OptimizerConfig::default().build_for(&vs).unwrap();
        let schedule = ScheduleConfig {
            lr: 0.02,
            warmup_epochs: 0.0,
            ..ScheduleConfig::default()
        }
        .build(8, 2, 3)
        .unwrap();

        let contrastive = |train: bool| -> (Tensor, Tensor) {
            let r1 = encoder.forward_t(&y1, train).unwrap(); // [8, 64]
            let r2 = encoder.forward_t(&y2, train).unwrap();
            let z1 = head.embed(&r1, train).unwrap();
            let z2 = head.embed(&r2, train).unwrap();
            (loss_fn.loss(&z1, &z2).unwrap(), r1)
        };
        let mut losses = Vec::new();
        for step in 0..6 {
            let (l, r1) = contrastive(true);
            let (probe_loss, _acc) = probe.loss_and_accuracy(&r1, &labels).unwrap();
            opt.zero_grad();
            if step == 0 {
                // The probe's loss reaches the probe only.
                probe.loss_and_accuracy(&r1, &labels).unwrap().0.backward();
                for (name, t) in vs.variables() {
                    let g = t.grad();
                    // Exact zero vs not: a parameter off the probe's graph gets no gradient at
                    // all; one on it a gradient far from 0 (no rounding question).
                    let touched =
                        g.defined() && f64::try_from(g.abs().sum(Kind::Double)).unwrap() > 0.0;
                    assert_eq!(
                        touched,
                        name.starts_with("online_head."),
                        "{method:?}: {name}"
                    );
                }
                opt.zero_grad();
            }
            (&l + probe_loss).backward();
            if step == 0 {
                // The contrastive loss reaches the encoder's last layer and every trainable
                // parameter of the projector.
                let vars = vs.variables();
                let reached = |name: &str| {
                    f64::try_from(vars[name].grad().abs().sum(Kind::Double)).unwrap() > 0.0
                };
                assert!(reached("backbone.layer4.1.bn2.weight"), "{method:?}");
                assert!(reached("backbone.conv1.weight"), "{method:?}");
                for (name, t) in head.named_tensors() {
                    if t.requires_grad() {
                        assert!(reached(&format!("projector.{name}")), "{method:?}: {name}");
                    }
                }
            }
            opt.step(schedule.lr(step)).unwrap();
            losses.push(f64::try_from(&l).unwrap());
        }
        assert!(losses.iter().all(|l| l.is_finite()));
        // The train-mode loss is a function of the parameters on a fixed batch: small steps
        // along the gradient lower it. Each computed loss is within δL of the exact loss of its
        // parameters, whatever the kernels' order of summation: the float32 embeddings carry a
        // relative error ρ ≤ ε32·(Σ fan-in of the convolutions and linear maps + Σ values
        // per BN batch statistic) (γ_n per sum, activations kept O(1) by BN), the normalised
        // logits ẑᵢ·ẑⱼ/τ move by ≤ 2ρ/τ, and the loss, 2-Lipschitz in the logits, by
        // δL ≤ 4ρ/τ. (was: losses[1] < losses[0] and losses[5] < losses[0], which a machine
        // rounding differently could break for a decrease below 2δL)
        let fan_in: i64 = vs
            .variables()
            .iter()
            .filter(|(_, t)| t.dim() >= 2)
            .map(|(_, t)| t.numel() as i64 / t.size()[0])
            .sum();
        // BN batch statistics of ResNet-18's CIFAR stem on 8 × 8 inputs, batch 8: bn1 and
        // layer1 (5 BNs at 8 × 8), layer2 (5 at 4 × 4), layer3 (5 at 2 × 2), layer4 (5 at
        // 1 × 1); the MLP head's two BNs over the batch of 8.
        let reduced = 8 * (5 * 64 + 5 * 16 + 5 * 4 + 5) + 2 * 8;
        let rho = f32::EPSILON as f64 * (fan_in + reduced) as f64;
        let delta_l = 4.0 * rho / loss_fn.temperature;
        println!("{method:?}: {losses:?}, δL ≤ {delta_l:.1e}");
        // The first step does not raise the loss beyond rounding, and six steps lower it by
        // more than rounding.
        assert!(
            losses[1] < losses[0] + 2.0 * delta_l && losses[5] < losses[0] - 2.0 * delta_l,
            "{method:?}: {losses:?}, δL ≤ {delta_l:.1e}"
        );
    }
}

//! The numerical guard against a slow reference: the moving average m ← 0.95·m + 0.05·ℓ,
//! the spike test ℓ > factor·m once armed, the first trip kept, the state a checkpoint saves.

use directclr::train::{Action, Cause, Guard, GuardConfig, GuardState, OnFailure, LOSS_EMA_DECAY};
use tch::{Device, Kind, Tensor};

fn scalar(v: f64) -> Tensor {
    Tensor::from(v as f32).to_kind(Kind::Float)
}

/// The reference: the index (1-based step) of the first spike or non-finite loss of
/// `losses`, and the moving average before it.
fn reference(losses: &[(f64, f64)], factor: f64, warmup: usize) -> (Option<(usize, Cause)>, f64) {
    let mut m = 0.0f64;
    for (i, &(l, p)) in losses.iter().enumerate() {
        let total = l as f32 as f64 + p as f32 as f64;
        if !total.is_finite() {
            return (Some((i + 1, Cause::NonFinite)), m);
        }
        if factor > 0.0 && i >= warmup && total > factor * m {
            return (Some((i + 1, Cause::Spike)), m);
        }
        m = if i == 0 {
            total
        } else {
            LOSS_EMA_DECAY * m + (1.0 - LOSS_EMA_DECAY) * total
        };
    }
    (None, m)
}

fn run(losses: &[(f64, f64)], config: GuardConfig) -> Guard {
    let mut g = Guard::new(config, GuardState::default(), Device::Cpu).unwrap();
    for (i, &(l, p)) in losses.iter().enumerate() {
        g.observe(&scalar(l), Some(&scalar(p)), i + 1).unwrap();
    }
    g
}

#[test]
fn the_guard_trips_where_the_reference_does() {
    let config = GuardConfig {
        spike_factor: 3.0,
        spike_warmup_steps: 5,
        ..Default::default()
    };
    let calm: Vec<(f64, f64)> = (0..40)
        .map(|i| (5.0 - 0.05 * i as f64, 2.3 - 0.01 * i as f64))
        .collect();
    let g = run(&calm, config);
    assert_eq!(g.check().unwrap(), None);
    let (none, m) = reference(&calm, 3.0, 5);
    assert!(none.is_none());
    // f64, 3 roundings a step (×0.95, ×0.05, +) of values ≤ 7.3 ≈ 1.3·m, contracted by 0.95:
    // ≤ 40·3·(ε64/2)·1.3·m ≈ 78·ε64·m < 2e-14·m each way (the same ops: in fact equal).
    assert!((g.state().unwrap().loss_ema - m).abs() < 1e-12 * m);
    assert_eq!(g.state().unwrap().seen, 40);

    // A spike at step 31 (of the probe: its loss explodes), then NaN at 33: the first counts.
    let mut spiked = calm.clone();
    spiked[30].1 = 1e4;
    spiked[32].0 = f64::NAN;
    let trip = run(&spiked, config).check().unwrap().unwrap();
    let (Some((step, cause)), base) = reference(&spiked, 3.0, 5) else {
        panic!()
    };
    assert_eq!((trip.step, trip.cause), (step, cause));
    assert_eq!((trip.step, trip.cause), (31, Cause::Spike));
    // The same moving average over 30 steps: ≤ 30·3·(ε64/2)·1.3·m < 2e-14·m, as above.
    assert!((trip.baseline - base).abs() < 1e-12 * base);
    // One f64 addition of two exact f32 values (1e4 is one): ≤ (ε64/2)·1.1e4 < 2e-12.
    assert!((trip.loss - (spiked[30].0 as f32 as f64 + 1e4)).abs() < 1e-9);

    // Before the warm-up a large loss is not a spike; a non-finite one always trips.
    let mut early = calm.clone();
    early[2].0 = 1e4;
    assert_eq!(run(&early, config).check().unwrap(), None);
    early[3].1 = f64::INFINITY;
    let trip = run(&early, config).check().unwrap().unwrap();
    assert_eq!((trip.step, trip.cause), (4, Cause::NonFinite));
    assert!(trip.loss.is_infinite());
    // With spike detection off only non-finite losses trip.
    let off = GuardConfig {
        spike_factor: 0.0,
        ..config
    };
    assert_eq!(run(&spiked[..32], off).check().unwrap(), None);
}

#[test]
fn rollbacks_lower_the_rate_until_the_limit_then_stop() {
    let config = GuardConfig {
        on_failure: OnFailure::Rollback,
        lr_factor: 0.25,
        max_rollbacks: 2,
        ..Default::default()
    };
    let mut g = run(&[(1.0, 1.0), (f64::NAN, 1.0)], config);
    let saved = GuardState {
        lr_scale: 1.0,
        rollbacks: 0,
        loss_ema: 1.75,
        seen: 1,
    };
    for k in 1..=2 {
        assert!(g.check().unwrap().is_some());
        assert_eq!(g.decide(), Action::Rollback);
        g.rewind(&saved).unwrap();
        assert_eq!(g.check().unwrap(), None, "the flag is cleared");
        let s = g.state().unwrap();
        // Exact: powers of 0.25 are products of powers of 2, and 1.75 is a copied value.
        assert_eq!(
            (s.rollbacks, s.lr_scale, s.loss_ema, s.seen),
            (k, 0.25f64.powi(k as i32), 1.75, 1)
        );
        g.observe(&scalar(f64::NAN), None, 2).unwrap();
    }
    assert_eq!(g.decide(), Action::Stop);
    // The default policy stops at once.
    let g = run(&[(f64::NAN, 0.0)], GuardConfig::default());
    assert_eq!(g.decide(), Action::Stop);
    let line = g.line(&g.check().unwrap().unwrap(), Action::Stop, 0, 1);
    let json = serde_json::to_value(&line).unwrap();
    assert_eq!(json["kind"], "guard");
    assert!(json["loss"].is_null());
}

#[test]
fn impossible_guard_settings_are_refused() {
    for (c, field) in [
        (
            GuardConfig {
                spike_factor: 1.0,
                ..Default::default()
            },
            "spike_factor",
        ),
        (
            GuardConfig {
                spike_factor: f64::NAN,
                ..Default::default()
            },
            "spike_factor",
        ),
        (
            GuardConfig {
                lr_factor: 0.0,
                ..Default::default()
            },
            "lr_factor",
        ),
        (
            GuardConfig {
                lr_factor: 1.5,
                ..Default::default()
            },
            "lr_factor",
        ),
    ] {
        match c.validate() {
            Err(directclr::Error::InvalidConfig { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{c:?}: {other:?}"),
        }
    }
    assert!(GuardConfig::default().validate().is_ok());
}

//! The training length as a condition of the conditions sweep (issue 28, item 4: Sections 5–6
//! assume long training): a condition's `steps` is the run's length, bit for bit the run of a
//! config with that length, and a longer run passes through a shorter one; `over_lengths` crosses every condition with every length and refuses
//! an empty list, a length of 0 and a repeated length by name; the sweep records each row's
//! length in its rows, CSV and JSON.

use directclr::theory::{
    alignment::{track, track_under, Condition},
    conditions::{grid, over_lengths, sweep},
    experiments::Overrides,
    head::HeadKind,
    projector::{Mechanism, ProjectorSettings},
    ToyConfig, ZNorm,
};
use directclr::Error;

fn tiny(steps: usize) -> Overrides {
    Overrides {
        steps: Some(steps),
        samples: Some(512),
        eval_samples: Some(200),
        log_every: Some(10),
        ..Default::default()
    }
}

fn refused_field<T: std::fmt::Debug>(r: directclr::Result<T>) -> String {
    match r {
        Err(Error::InvalidConfig { field, .. }) => field,
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
}

#[test]
fn a_conditions_length_is_the_runs_length() {
    let settings = ProjectorSettings {
        mechanisms: vec![Mechanism::ImplicitRegularization],
        ..Default::default()
    };
    let config = settings.toy_config(Mechanism::ImplicitRegularization, &tiny(40));
    let head = settings.head_config(HeadKind::Linear);
    let short = Condition {
        steps: Some(20),
        ..Condition::default()
    };
    // 20 steps by condition on a 40-step config = 20 steps by config, bit for bit.
    let by_condition = track_under(&config, &head, &short).unwrap();
    let by_config = track(
        &ToyConfig {
            steps: 20,
            ..config.clone()
        },
        &head,
    )
    .unwrap();
    assert_eq!(by_condition.run.weights, by_config.run.weights);
    assert_eq!(by_condition.run.config.steps, 20);
    // No length in the condition: the config's 40 steps, a different trajectory.
    let long = track_under(&config, &head, &Condition::default()).unwrap();
    assert_eq!(long.run.config.steps, 40);
    assert_ne!(long.run.weights, by_condition.run.weights);
    // The learning rate is constant, so the longer run passes through the shorter one: its
    // records up to step 20 are the 20-step run's, bit for bit.
    let n = by_condition.points.len();
    assert_eq!(n, 3);
    for (a, b) in by_condition.points.iter().zip(&long.points[..n]) {
        assert_eq!((a.step, a.loss), (b.step, b.loss));
        assert_eq!(a.off_diagonal_mass, b.off_diagonal_mass);
        assert_eq!(a.misalignment, b.misalignment);
    }
    // A length of 0 is refused by the condition's check.
    let zero = Condition {
        steps: Some(0),
        ..Condition::default()
    };
    assert_eq!(refused_field(track_under(&config, &head, &zero)), "steps");
}

#[test]
fn over_lengths_crosses_every_condition_and_refuses_bad_lists_by_name() {
    let base = grid(&[1.0, 0.1], &[0.0], &[ZNorm::None, ZNorm::L2]);
    let crossed = over_lengths(&base, &[30, 10]).unwrap();
    assert_eq!(crossed.len(), 2 * base.len());
    // Length-major, every other field kept.
    for (i, c) in crossed.iter().enumerate() {
        let b = base[i % base.len()];
        assert_eq!(c.steps, Some(if i < base.len() { 30 } else { 10 }));
        assert_eq!(Condition { steps: None, ..*c }, b);
    }
    for bad in [&[][..], &[10, 0][..], &[10, 20, 10][..]] {
        assert_eq!(
            refused_field(over_lengths(&base, bad)),
            "steps_list",
            "{bad:?}"
        );
    }
}

#[test]
fn the_sweep_records_each_rows_length() {
    let settings = ProjectorSettings {
        mechanisms: vec![Mechanism::ImplicitRegularization],
        ..Default::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let conditions = over_lengths(&grid(&[1.0], &[0.0], &[ZNorm::None]), &[20, 30]).unwrap();
    let r = sweep(&settings, &conditions, &tiny(10), dir.path()).unwrap();
    for steps in [20, 30] {
        let heads: Vec<HeadKind> = r
            .runs
            .iter()
            .filter(|c| c.condition.steps == Some(steps) && c.fixed_rank.is_none())
            .map(|c| c.run.head)
            .collect();
        assert_eq!(
            heads,
            vec![HeadKind::None, HeadKind::Linear, HeadKind::Diagonal],
            "{steps}"
        );
    }
    // The two lengths train differently (the same seed and init: the first 20 steps agree,
    // the last 10 move the weights).
    let loss = |steps| {
        r.runs
            .iter()
            .find(|c| c.condition.steps == Some(steps) && c.run.head == HeadKind::Linear)
            .unwrap()
            .run
            .final_loss
    };
    assert_ne!(loss(20), loss(30));
    // Without a length the row records the config's (10 here), so every row has one.
    let plain = sweep(
        &settings,
        &grid(&[1.0], &[0.0], &[ZNorm::None]),
        &tiny(10),
        &dir.path().join("plain"),
    )
    .unwrap();
    assert!(plain.runs.iter().all(|c| c.condition.steps == Some(10)));
    let csv = std::fs::read_to_string(dir.path().join("summary.csv")).unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let col = header.iter().position(|h| *h == "steps").unwrap();
    let lengths: Vec<&str> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(col).unwrap())
        .collect();
    assert!(
        lengths.contains(&"20") && lengths.contains(&"30"),
        "{lengths:?}"
    );
    let json = std::fs::read_to_string(dir.path().join("summary.json")).unwrap();
    assert!(json.contains("\"steps\":30") || json.contains("\"steps\": 30"));
}

//! `reproduce` end to end on a tiny preset: the report's tables and figures, the paper's
//! numbers beside ours, reuse of finished runs and evaluations, and configuration errors.

use std::path::Path;

use directclr::method::Method;
use directclr::reproduce::{
    paper_top1, reproduce, ReproduceConfig, ReproduceEvent, ReproduceOptions, FIG2_FILE, FIG9_FILE,
    REPORT_FILE,
};
use directclr::train::{Event, Overrides};

mod common;
use common::Tiny;

fn write_configs(dir: &Path, runs: &str) -> std::path::PathBuf {
    let preset = Tiny {
        seed: Some(2),
        epochs: 2,
        batch_size: 32,
        workers: Some(1),
        probe: Some(true),
        limit: 64,
        method: None,
        optimizer: Some("sgd"),
        lr: Some(0.1),
        warmup_epochs: 0.0,
        monitor_samples: Some(64),
        ..Tiny::default()
    }
    .toml();
    std::fs::write(dir.join("preset.toml"), preset).unwrap();
    let text = format!(
        r#"
title = "tiny"
pretrain = "preset.toml"
{runs}
[probe]
mode = "features"
epochs = 2
batch_size = 64
workers = 1
[knn]
k = 5
[eval]
limit_train = 150
limit_test = 100
"#
    );
    let file = dir.join("reproduce.toml");
    std::fs::write(&file, text).unwrap();
    file
}

const TWO_RUNS: &str = r#"
[[runs]]
name = "direct"
method = { kind = "direct_clr", d0 = 8 }
sub_vector_probe = true
[[runs]]
name = "no-proj"
method = { kind = "simclr_no_projector" }
"#;

#[test]
fn a_tiny_reproduction_writes_the_report_and_reuses_its_runs() {
    tch::set_num_threads(1);
    let tmp = tempfile::tempdir().unwrap();
    let file = write_configs(tmp.path(), TWO_RUNS);
    let config = ReproduceConfig::from_file(&file).unwrap();
    let opts = ReproduceOptions {
        out: tmp.path().join("out"),
        overrides: Overrides::default(),
    };
    let mut steps = 0;
    let mut reused = Vec::new();
    let summary = reproduce(&config, &opts, &mut |e| match e {
        ReproduceEvent::Train(Event::Step { .. }) => steps += 1,
        ReproduceEvent::Evaluated { reused: r, .. } => reused.push(r),
        _ => {}
    })
    .unwrap();
    assert_eq!(steps, 2 * 2 * 2, "2 runs × 2 epochs × 2 steps");
    assert_eq!(reused, [false, false]);
    let results = &summary.results;
    assert_eq!(results.len(), 2);
    let direct = &results[0];
    assert_eq!(direct.sub_vector.len(), 2);
    assert_eq!(direct.sub_vector[0].dim, 8);
    assert_eq!(direct.sub_vector[1].dim, 32 - 8);
    assert_eq!(direct.spectrum_r.metrics.dim, 32);
    assert_eq!(direct.spectrum_z.metrics.dim, 8);
    assert_eq!(direct.spectrum_r.metrics.samples, 100);
    assert_eq!(results[1].spectrum_z.metrics.dim, 32);
    assert!(results[1].sub_vector.is_empty());
    for r in results {
        assert_eq!(r.epochs, 2);
        // Percentages of counts: in [0, 100] exactly; above 0 as any classifier, even a
        // constant one, is right on the ~10 % of the balanced test images of its class.
        assert!(r.probe.best_top1 > 0.0 && r.probe.best_top1 <= 100.0);
        assert!(r.knn.top1 > 0.0 && r.knn.top1 <= 100.0);
    }
    let out = tmp.path().join("out");
    let report = std::fs::read_to_string(out.join(REPORT_FILE)).unwrap();
    assert!(report.starts_with("# tiny"));
    assert!(
        report.contains("| direct | direct_clr | 62.7 |"),
        "{report}"
    );
    assert!(
        report.contains("| no-proj | simclr_no_projector | 51.5 |"),
        "{report}"
    );
    assert!(
        report.contains("| direct probe on r[:8] | direct_clr | 47.9 |"),
        "{report}"
    );
    assert!(report.contains("| direct probe on r[8:] |"), "{report}");
    assert!(report.contains("| no-proj | z | 32 |"), "{report}");
    for f in [
        format!("{FIG9_FILE}.png"),
        format!("{FIG9_FILE}.svg"),
        format!("{FIG2_FILE}.png"),
        "spectra-r.csv".into(),
        "spectra-z.csv".into(),
        "results.json".into(),
    ] {
        assert!(out.join(&f).is_file(), "{f}");
    }
    // Again: nothing is trained or measured twice, and the numbers are the same.
    let mut steps = 0;
    let mut reused = Vec::new();
    let again = reproduce(&config, &opts, &mut |e| match e {
        ReproduceEvent::Train(Event::Step { .. }) => steps += 1,
        ReproduceEvent::Evaluated { reused: r, .. } => reused.push(r),
        _ => {}
    })
    .unwrap();
    assert_eq!(steps, 0);
    assert_eq!(reused, [true, true]);
    assert_eq!(again.results, summary.results);
    // A checkpoint written anew (as one retrained or copied in would be) is measured again,
    // even with the same epoch and step; the other run's evaluation is still reused.
    let ckpt = out.join("runs/direct/checkpoint.safetensors");
    let bytes = std::fs::read(&ckpt).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(&ckpt, bytes).unwrap();
    let mut reused = Vec::new();
    reproduce(&config, &opts, &mut |e| {
        if let ReproduceEvent::Evaluated { reused: r, .. } = e {
            reused.push(r)
        }
    })
    .unwrap();
    assert_eq!(reused, [false, true]);
    // A changed protocol is measured again (from the same checkpoints).
    let mut changed = config.clone().into_inner();
    changed.knn.k = 3;
    let changed = changed.check().unwrap();
    let mut reused = Vec::new();
    reproduce(&changed, &opts, &mut |e| {
        if let ReproduceEvent::Evaluated { reused: r, .. } = e {
            reused.push(r)
        }
    })
    .unwrap();
    assert_eq!(reused, [false, false]);
    // More epochs than the finished runs: an error naming the run and the changed field.
    let more = ReproduceOptions {
        overrides: Overrides {
            epochs: Some(3),
            ..Overrides::default()
        },
        ..opts.clone()
    };
    let err = reproduce(&config, &more, &mut |_| {}).unwrap_err();
    let text = format!(
        "{err}: {}",
        std::error::Error::source(&err)
            .map(|s| s.to_string())
            .unwrap_or_default()
    );
    assert!(
        text.contains("run `direct`") && text.contains("epochs"),
        "{text}"
    );
}

#[test]
fn seeds_replicate_every_row_and_the_report_gives_their_mean_and_spread() {
    tch::set_num_threads(1);
    let tmp = tempfile::tempdir().unwrap();
    let runs =
        "seeds = [3, 4]\n[[runs]]\nname = \"no-proj\"\nmethod = { kind = \"simclr_no_projector\" }";
    let file = write_configs(tmp.path(), runs);
    let config = ReproduceConfig::from_file(&file).unwrap();
    let folders: Vec<String> = config.jobs().into_iter().map(|j| j.folder).collect();
    assert_eq!(folders, ["no-proj.seed3", "no-proj.seed4"]);
    let out = tmp.path().join("out");
    let opts = ReproduceOptions {
        out: out.clone(),
        overrides: Overrides::default(),
    };
    let summary = reproduce(&config, &opts, &mut |_| {}).unwrap();
    let results = &summary.results;
    assert_eq!(results.len(), 2);
    for (r, seed) in results.iter().zip([3, 4]) {
        assert_eq!((r.name.as_str(), r.seed), ("no-proj", seed));
        assert_eq!(r.folder, format!("no-proj.seed{seed}"));
        let resolved =
            std::fs::read_to_string(out.join("runs").join(&r.folder).join("config.toml")).unwrap();
        assert!(resolved.contains(&format!("seed = {seed}")), "{resolved}");
    }
    // Other seeds, other weights.
    let weights = |f: &str| std::fs::read(out.join("runs").join(f).join("encoder.safetensors"));
    assert_ne!(
        weights("no-proj.seed3").unwrap(),
        weights("no-proj.seed4").unwrap()
    );
    // The report's row is the mean ± sample standard deviation of the two seeds.
    let (a, b) = (results[0].probe.best_top1, results[1].probe.best_top1);
    let mean = (a + b) / 2.0;
    let sd = ((a - mean).powi(2) + (b - mean).powi(2)).sqrt();
    let report = std::fs::read_to_string(out.join(REPORT_FILE)).unwrap();
    let row = format!("| no-proj | simclr_no_projector | 51.5 | {mean:.2} ± {sd:.2} |");
    assert!(report.contains(&row), "{row}\n{report}");
    let (ea, eb) = (
        results[0].spectrum_r.metrics.effective_rank,
        results[1].spectrum_r.metrics.effective_rank,
    );
    let em = (ea + eb) / 2.0;
    let esd = ((ea - em).powi(2) + (eb - em).powi(2)).sqrt();
    let rank_row = format!("| no-proj | r | 32 | {em:.2} ± {esd:.2} |");
    assert!(report.contains(&rank_row), "{rank_row}\n{report}");
    // Every seed's own numbers follow.
    assert!(report.contains("## Every seed"), "{report}");
    assert!(
        report.contains(&format!(
            "| no-proj.seed4 | simclr_no_projector | 51.5 | {b:.2} |"
        )),
        "{report}"
    );
    // The CSV holds both runs' spectra.
    let csv = std::fs::read_to_string(out.join("spectra-r.csv")).unwrap();
    let header = csv.lines().next().unwrap();
    assert!(
        header.contains("no-proj.seed3") && header.contains("no-proj.seed4"),
        "{header}"
    );
}

#[test]
fn bad_reproduction_configs_name_the_field() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        ("[[runs]]\nname = \"a b\"\nmethod = { kind = \"simclr_no_projector\" }", "runs[0].name"),
        (
            "[[runs]]\nname = \"a\"\nmethod = { kind = \"simclr_no_projector\" }\n[[runs]]\nname = \"a\"\nmethod = { kind = \"simclr_no_projector\" }",
            "runs[1].name",
        ),
        (
            "[[runs]]\nname = \"a\"\nmethod = { kind = \"simclr_no_projector\" }\nsub_vector_probe = true",
            "sub_vector_probe",
        ),
        ("", "runs"),
        (
            "seeds = []\n[[runs]]\nname = \"a\"\nmethod = { kind = \"simclr_no_projector\" }",
            "seeds",
        ),
        (
            "seeds = [1, 2, 1]\n[[runs]]\nname = \"a\"\nmethod = { kind = \"simclr_no_projector\" }",
            "seeds[2]",
        ),
        ("[[runs]]\nname = \"a\"\nmethod = { kind = \"simclr_no_projector\" }\ncolour = 3", "colour"),
    ];
    for (runs, field) in cases {
        let file = write_configs(tmp.path(), runs);
        let err = ReproduceConfig::from_file(&file).unwrap_err().to_string();
        assert!(err.contains(field), "{field}: {err}");
    }
    // d0 beyond r (32-d here) is refused before any training.
    let file = write_configs(
        tmp.path(),
        "[[runs]]\nname = \"a\"\nmethod = { kind = \"direct_clr\", d0 = 64 }",
    );
    let config = ReproduceConfig::from_file(&file).unwrap();
    let err = reproduce(
        &config,
        &ReproduceOptions {
            out: tmp.path().join("out"),
            overrides: Overrides::default(),
        },
        &mut |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("runs[0] (a)") && err.contains("d0"), "{err}");
    assert!(!tmp.path().join("out/runs/a").exists());
}

#[test]
fn the_paper_numbers_are_table_1() {
    assert_eq!(
        paper_top1(&Method::SimclrMlp {
            hidden_dim: None,
            out_dim: 128
        }),
        66.5
    );
    // Literal constants of Table 1 read back: exact.
    assert_eq!(paper_top1(&Method::SimclrLinear { out_dim: 128 }), 61.1);
    assert_eq!(paper_top1(&Method::SimclrNoProjector), 51.5);
    assert_eq!(paper_top1(&Method::DirectClr { d0: 360 }), 62.7);
    assert_eq!(
        paper_top1(&Method::FixedLowRank { rank: 360, seed: 0 }),
        62.3
    );
    assert_eq!(paper_top1(&Method::TrainableDiagonal), 60.2);
}

//! `directclr reproduce` from the command line: a tiny replicated reproduction (what it prints,
//! the report's mean ± sd rows) and a bad configuration (exit status 1, the field named).

mod common;

use std::path::Path;
use std::process::Command;

use common::{run_err, run_ok, tiny_config};

/// A reproduction of one row (`runs`) on a tiny preset, with `top` lines before the rows.
fn reproduce_config(dir: &Path, top: &str) -> std::path::PathBuf {
    tiny_config(dir, "preset", 32, 2, "");
    let text = format!(
        r#"title = "tiny"
pretrain = "preset.toml"
{top}
[[runs]]
name = "no-proj"
method = {{ kind = "simclr_no_projector" }}
[probe]
mode = "features"
epochs = 1
batch_size = 32
workers = 1
[knn]
k = 3
[eval]
limit_train = 64
limit_test = 32
"#
    );
    let file = dir.join("reproduce.toml");
    std::fs::write(&file, text).unwrap();
    file
}

fn reproduce(config: &Path, out: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_directclr"));
    c.args(["--threads", "2", "reproduce", "--quiet", "--config"])
        .arg(config)
        .arg("--out")
        .arg(out);
    c
}

#[test]
fn a_replicated_reproduction_prints_its_runs_and_the_mean_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let config = reproduce_config(tmp.path(), "seeds = [1, 2]");
    let out = tmp.path().join("out");
    let output = run_ok(&mut reproduce(&config, &out));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("(1 row × 2 seeds = 2 runs)"), "{stdout}");
    for folder in ["no-proj.seed1", "no-proj.seed2"] {
        assert!(
            stdout.contains(&format!("[{folder}] pretraining")),
            "{stdout}"
        );
        assert!(out
            .join("runs")
            .join(folder)
            .join("encoder.safetensors")
            .is_file());
    }
    let row = stdout
        .lines()
        .find(|l| l.starts_with("| no-proj | simclr_no_projector | 51.5 |"))
        .unwrap_or_else(|| panic!("no mean row:\n{stdout}"));
    assert!(row.contains(" ± "), "{row}");
    assert!(
        stdout.contains("| no-proj.seed2 | simclr_no_projector |"),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("report: {}", out.join("report.md").display())));
}

#[test]
fn an_empty_seed_list_is_refused_with_the_field_named() {
    let tmp = tempfile::tempdir().unwrap();
    let config = reproduce_config(tmp.path(), "seeds = []");
    let err = run_err(&mut reproduce(&config, &tmp.path().join("out")));
    assert!(err.contains("seeds"), "{err}");
    assert!(
        !tmp.path().join("out").join("runs").exists(),
        "nothing may start"
    );
}

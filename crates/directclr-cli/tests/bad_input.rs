//! The command line's rows of the bad-input table (`docs/bad-input.md`): a disk that fills up
//! while a checkpoint is written, a read-only output folder, a checkpoint holding NaN weights,
//! and runs that diverge (the numerical guard's stop and rollback).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{bytes, losses, metrics, run_err, run_ok, tiny_config, train};
use directclr::train::{
    read_checkpoint, Opened, RunDir, TrainConfig, CHECKPOINT_FILE, CONFIG_FILE,
};

/// Runs `cmd` until the first checkpoint appears in `out`, then kills it (-9).
fn run_until_first_checkpoint(mut cmd: Command, out: &Path) {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !out.join(CHECKPOINT_FILE).exists() {
        assert!(start.elapsed() < Duration::from_secs(300), "no checkpoint");
        assert!(
            child.try_wait().unwrap().is_none(),
            "exited before a checkpoint"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Leftover temporary files of atomic writes in `dir`.
fn temporaries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect()
}

#[test]
fn a_disk_that_fills_up_while_a_checkpoint_is_written_keeps_the_last_one() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tiny_config(tmp.path(), "full", 32, 3, "");
    let (whole, out) = (tmp.path().join("whole"), tmp.path().join("full"));
    run_ok(&mut train(&config, &whole, &[]));
    run_until_first_checkpoint(train(&config, &out, &[]), &out);
    let before = bytes(&out.join(CHECKPOINT_FILE));

    // Resume with files limited to 64 KiB (RLIMIT_FSIZE, SIGXFSZ ignored so that the write
    // fails with EFBIG as on a full disk): the config and the log fit, the next checkpoint
    // (about 200 KB) does not.
    let mut cmd = train(&config, &out, &[]);
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let limit = libc::rlimit {
                rlim_cur: 64 << 10,
                rlim_max: 64 << 10,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let err = run_err(&mut cmd);
    assert!(
        err.contains("cannot write")
            && err.contains(".safetensors.tmp")
            && err.contains("File too large"),
        "{err}"
    );
    // The last good checkpoint is untouched and readable, no partial file is left.
    assert!(bytes(&out.join(CHECKPOINT_FILE)) == before);
    assert_eq!(
        read_checkpoint(&out.join(CHECKPOINT_FILE))
            .unwrap()
            .progress
            .epoch,
        1
    );
    assert_eq!(temporaries(&out), Vec::<String>::new());
    // With space again the run resumes and ends as the uninterrupted one.
    run_ok(&mut train(&config, &out, &[]));
    // Bit for bit: the same code, machine and thread count resumed (determinism).
    assert!(bytes(&out.join(CHECKPOINT_FILE)) == bytes(&whole.join(CHECKPOINT_FILE)));
    assert_eq!(losses(&whole), losses(&out));
}

/// Drops, in the child about to run, the capabilities that let root ignore file permissions
/// (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER) from its bounding set, so that after
/// `exec` a root-owned read-only folder is read-only to it too. For a user other than root,
/// the permissions alone hold and nothing needs dropping.
fn without_permission_override(cmd: &mut Command) {
    unsafe {
        cmd.pre_exec(|| {
            if libc::geteuid() != 0 {
                return Ok(());
            }
            for cap in [1, 2, 3] {
                if libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

#[test]
fn a_read_only_output_folder_is_a_clear_error_before_any_training() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tiny_config(tmp.path(), "ro", 32, 2, "");
    let out = tmp.path().join("ro");
    std::fs::create_dir(&out).unwrap();
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o555)).unwrap();
    // The check is honest: the child cannot write there (root included, see above).
    let mut probe = Command::new("touch");
    probe.arg(out.join("x")).stderr(Stdio::null());
    without_permission_override(&mut probe);
    assert!(
        !probe.status().unwrap().success(),
        "the folder is writable to the child"
    );

    let mut cmd = train(&config, &out, &[]);
    without_permission_override(&mut cmd);
    let err = run_err(&mut cmd);
    assert!(
        err.contains("cannot create")
            && err.contains(".config.toml.tmp")
            && err.contains("Permission denied"),
        "{err}"
    );
    // A run folder under a read-only parent.
    let mut cmd = train(&config, &out.join("sub"), &[]);
    without_permission_override(&mut cmd);
    let err = run_err(&mut cmd);
    assert!(
        err.contains("cannot create") && err.contains("sub"),
        "{err}"
    );
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(
        std::fs::read_dir(&out).unwrap().count(),
        0,
        "nothing was written"
    );
}

#[test]
fn a_checkpoint_holding_nan_weights_stops_at_the_first_resumed_step() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tiny_config(tmp.path(), "nanw", 32, 3, "");
    let out = tmp.path().join("nanw");
    run_until_first_checkpoint(train(&config, &out, &[]), &out);
    // Poison one weight of the saved encoder, through the library's own writer.
    let cfg = TrainConfig::from_file(&out.join(CONFIG_FILE)).unwrap();
    let Opened::Resume(run, ck) = RunDir::open(&out, &cfg, true).unwrap() else {
        panic!("no checkpoint")
    };
    let tensors: Vec<_> = ck
        .tensors
        .iter()
        .map(|(n, t)| {
            let t = t.copy();
            if n == "encoder.conv1.weight" {
                let _ = t.view(-1).get(0).fill_(f64::NAN);
            }
            (n.clone(), t)
        })
        .collect();
    let encoder = directclr::model::Part::Encoder.section(&ck.tensors);
    run.write_checkpoint(ck.progress, &ck.guard, &tensors, &encoder)
        .unwrap();
    let poisoned = bytes(&out.join(CHECKPOINT_FILE));

    let err = run_err(&mut train(&config, &out, &[]));
    assert!(err.contains("non-finite at step 3"), "{err}");
    assert!(
        bytes(&out.join(CHECKPOINT_FILE)) == poisoned,
        "nothing overwritten"
    );
    let last = metrics(&out).pop().unwrap();
    assert_eq!(
        (last["kind"].as_str(), last["action"].as_str()),
        (Some("guard"), Some("stop"))
    );
}

const ROLLBACK: &str = "[optimizer]\nkind = \"sgd\"\n\n[guard]\non_failure = \"rollback\"\n\
                        spike_factor = 4.0\nspike_warmup_steps = 1\nlr_factor = 0.001\n";

#[test]
fn a_loss_spike_rolls_back_with_a_lower_learning_rate_and_logs_it() {
    let tmp = tempfile::tempdir().unwrap();
    // 48 images, batch 16: 3 steps an epoch, 3 epochs. At lr 100 (warm-up 0, 33, 67, …) the
    // probe explodes at step 3; with no checkpoint yet the run returns to its initial weights
    // with lr × 0.001, i.e. lr 0.1, and then runs clean.
    let config = tiny_config(tmp.path(), "spike", 48, 3, ROLLBACK);
    let (spiked, calm) = (tmp.path().join("spiked"), tmp.path().join("calm"));
    let out = run_ok(&mut train(&config, &spiked, &["--lr", "100"]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("[guard] loss spike at step 3") && err.contains("rolled back to step 0"),
        "{err}"
    );
    let m = metrics(&spiked);
    let guard: Vec<_> = m.iter().filter(|l| l["kind"] == "guard").collect();
    assert_eq!(guard.len(), 1, "{guard:?}");
    let g = guard[0];
    assert_eq!(
        (g["failed_step"].as_u64(), g["step"].as_u64()),
        (Some(3), Some(0))
    );
    assert_eq!(
        (g["cause"].as_str(), g["action"].as_str()),
        (Some("spike"), Some("rollback"))
    );
    // Exact: the guard's own f64 test (×4 is exact), logged with round-trip decimals; and
    // 1 × 0.001.
    assert!(g["loss"].as_f64().unwrap() > 4.0 * g["baseline"].as_f64().unwrap());
    assert_eq!(g["lr_scale"].as_f64(), Some(0.001));
    // The steps the rollback undid are gone from the log: it is the log of the run that
    // continued, and matches a fresh run at lr 0.1 up to the rounding of 100 × 0.001.
    run_ok(&mut train(&config, &calm, &["--lr", "0.1"]));
    let after: Vec<_> = m.iter().filter(|l| l["kind"] != "guard").collect();
    let fresh = metrics(&calm);
    assert_eq!(after.len(), fresh.len());
    for (a, b) in after.iter().zip(&fresh) {
        assert_eq!(a["step"], b["step"]);
        for key in ["loss", "probe_loss", "lr"] {
            // The two runs differ only in lr = (100·f(t))·0.001 against 0.1·f(t): ≤ 2 ulp
            // of f64, at most 1 ulp (ε32) once the kernels round lr to f32. 1e-3 leaves room
            // for a growth of that ε32 by 8,000 over the 9 steps (seen: equal here).
            let (x, y) = (a[key].as_f64().unwrap(), b[key].as_f64().unwrap());
            assert!(
                (x - y).abs() <= 1e-3 * y.abs().max(1.0),
                "step {}: {key} {x} vs {y}",
                a["step"]
            );
        }
    }
    // The checkpoint carries the lower rate, so a resume keeps it.
    let ck = read_checkpoint(&spiked.join(CHECKPOINT_FILE)).unwrap();
    assert_eq!((ck.guard.lr_scale, ck.guard.rollbacks), (0.001, 1)); // 1 × 0.001: exact
}

#[test]
fn a_non_finite_loss_is_caught_at_its_step_and_a_useless_rollback_is_not_tried() {
    let tmp = tempfile::tempdir().unwrap();
    // 1/τ overflows float32: every step's loss is NaN, whatever the weights.
    let config = tiny_config(
        tmp.path(),
        "nan",
        48,
        3,
        &format!(
            "{ROLLBACK}\n[loss]\ntemperature = 1e-40\nnormalize = true\nsymmetric = true\n\
             negatives = \"cross_view\"\n"
        ),
    );
    let out = tmp.path().join("nan");
    let err = run_err(&mut train(&config, &out, &[]));
    assert!(err.contains("non-finite at step 1"), "{err}");
    assert!(err.contains("a rollback cannot avoid it"), "{err}");
    assert!(!out.join(CHECKPOINT_FILE).exists());
    let m = metrics(&out);
    assert_eq!(
        m.len(),
        1,
        "stopped at step 1, before any metrics line: {m:?}"
    );
    assert_eq!(
        (m[0]["failed_step"].as_u64(), m[0]["loss"].is_null()),
        (Some(1), true)
    );
}

//! `kill -9` at random points of a CPU training run, many times over, resuming each time: the
//! final weights equal an uninterrupted run's bit for bit, every checkpoint seen on the way is
//! readable, and a checkpoint never goes back in time.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{bytes, losses, run_ok, tiny_config, train};
use directclr::model::read_safetensors;
use directclr::train::{read_checkpoint, CHECKPOINT_FILE, ENCODER_FILE};

/// A small seeded generator (xorshift64*), for the kill times.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Whether the checkpoint's or the encoder's temporary file is in `dir` (a write in
/// progress).
fn writing(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok()).any(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.ends_with(".safetensors.tmp")
            })
        })
        .unwrap_or(false)
}

/// Reads the checkpoint and encoder files of `dir` if present (both must be whole), returning
/// the checkpoint's epoch.
fn readable_state(dir: &Path) -> Option<usize> {
    let enc = dir.join(ENCODER_FILE);
    if enc.exists() {
        read_safetensors(&enc).unwrap_or_else(|e| panic!("unreadable encoder file: {e}"));
    }
    let ck = dir.join(CHECKPOINT_FILE);
    ck.exists().then(|| {
        read_checkpoint(&ck)
            .unwrap_or_else(|e| panic!("unreadable checkpoint: {e}"))
            .progress
            .epoch
    })
}

/// Whether the run in `out` ends with the same bytes and log as the uninterrupted `whole`.
fn assert_same(whole: &Path, out: &Path) {
    for file in [ENCODER_FILE, CHECKPOINT_FILE] {
        assert!(
            bytes(&whole.join(file)) == bytes(&out.join(file)),
            "{file} differs from the uninterrupted run's"
        );
    }
    // Bit for bit: the same code, machine and thread count (determinism).
    assert_eq!(losses(whole), losses(out));
}

#[test]
fn kill_9_at_random_points_and_resume_ends_bit_identical() {
    let tmp = tempfile::tempdir().unwrap();
    // 32 images, batch 16: 2 steps an epoch, 5 epochs, a checkpoint after each.
    let config = tiny_config(tmp.path(), "kill", 32, 5, "");
    let whole = tmp.path().join("whole");
    let start = Instant::now();
    run_ok(&mut train(&config, &whole, &[]));
    let duration = start.elapsed().as_secs_f64();

    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let (mut kills, mut mid_write_kills, mut completed) = (0, 0, 0);
    let mut killed = tmp.path().join("killed-0");
    let mut last_epoch = None;
    let mut round = 0;
    // Ten kills; a run that ends on its own before its kill is checked and the next round
    // starts a new folder.
    while kills < 10 && round < 40 {
        round += 1;
        let mut child = train(&config, &killed, &[])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Every other round: kill while the checkpoint or the encoder file is being written
        // (its temporary file exists); otherwise at a uniformly random time of a run.
        let mid_write = round % 2 == 0;
        let deadline = Duration::from_secs_f64(rng.unit() * duration);
        let t0 = Instant::now();
        let finished = loop {
            if child.try_wait().unwrap().is_some() {
                break true;
            }
            let due = if mid_write {
                writing(&killed)
            } else {
                t0.elapsed() >= deadline
            };
            if due {
                break false;
            }
            std::thread::sleep(Duration::from_micros(200));
        };
        if finished {
            let status = child.wait().unwrap();
            assert!(status.success(), "a run ended on its own with {status:?}");
            assert_same(&whole, &killed);
            completed += 1;
            killed = tmp.path().join(format!("killed-{completed}"));
            last_epoch = None;
            continue;
        }
        child.kill().unwrap();
        let status = child.wait().unwrap();
        if status.signal() == Some(9) {
            kills += 1;
            mid_write_kills += usize::from(mid_write);
        }
        // What a crash leaves is readable, and never older than what was there before.
        let epoch = readable_state(&killed);
        assert!(
            epoch >= last_epoch,
            "checkpoint went back from {last_epoch:?} to {epoch:?}"
        );
        last_epoch = epoch;
    }
    eprintln!(
        "{kills} kills ({mid_write_kills} during a write) in {round} rounds, {completed} \
         folders completed between kills; uninterrupted run {duration:.1} s"
    );
    assert!(
        kills >= 10,
        "only {kills} runs could be killed in {round} rounds"
    );
    // Resume the last folder to its end.
    run_ok(&mut train(&config, &killed, &[]));
    assert_same(&whole, &killed);
}

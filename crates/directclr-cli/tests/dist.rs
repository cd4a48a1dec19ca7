//! Data-parallel training through c10d (Gloo, CPU), end to end with the `directclr` binary:
//! 2 processes with synchronised BN hold the weights of 1 process on the same global batch,
//! with the gradient all-reduce overlapping the backward pass (c10d's Reducer) or after it;
//! a rank that dies makes the other exit with a message; launch variables are checked; the
//! NCCL backend's library is looked for and loaded (the loading itself needs PyTorch's CUDA
//! libraries: an ignored test).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use directclr::train::read_checkpoint;

mod common;
use common::{run_err, run_ok};

/// A tiny DirectCLR run with the authors' recipe (LARS, BN in the encoder): 48 images, global
/// batch 16 (3 steps an epoch), ResNet-18 of width 1/16, 32 px. The learning rate is low
/// enough (0.05) that 6 steps do not amplify float32 rounding beyond [`BATCH_ORDER_BOUND`]
/// (the weights move by lr × the momentum's differences): with lr 0.3 two
/// one-process runs that differ only in `--threads` (1 or 2) already drift apart by 1e-4.
fn tiny_config(dir: &Path, epochs: usize, extra: &str) -> PathBuf {
    let extra = format!("[optimizer]\nkind = \"lars\"\n{extra}");
    common::tiny_config_lr(dir, &format!("tiny-{epochs}"), 48, epochs, 0.05, &extra)
}

/// `directclr train` with 1 thread and none of the launch variables of the test's own
/// environment.
fn train(config: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut c = common::train_threads(config, out, 1, extra);
    for v in [
        "RANK",
        "WORLD_SIZE",
        "LOCAL_RANK",
        "MASTER_ADDR",
        "MASTER_PORT",
    ] {
        c.env_remove(v);
    }
    c
}

/// float32's machine epsilon.
const EPS32: f64 = f32::EPSILON as f64;

/// The bound on each entry's difference ([`agreement`]) between runs that sum the same global batch of 16 in
/// another order (1 process against 2 with synchronised BN, or a resume with another number
/// of processes). Every gradient, BN statistic and loss is an f32 reduction over the global
/// batch; each image's contribution is computed alike, and only how the 16 are combined
/// differs (8 + 8 and an all-reduce, against 16 at once): ≤ 16·ε32 ≈ 1.9e-6 of the
/// contributions' magnitude, per reduction. The largest difference is in the momentum of the
/// 1-d parameters (excluded from LARS: μ is a plain sum of their raw gradients), which sums 6
/// steps' gradients with weights 0.9^k (Σ ≤ 4.7): ≤ 4.7·16·ε32 ≈ 9e-6 of max(1, max |μ|),
/// taking the contributions' magnitude as the result's (the weights move by lr × that).
/// Seen: 7.2e-7 (12 ulps) in the momentum, ≤ 2 ulps in weights and BN buffers; without
/// synchronised BN: 1.26.
const BATCH_ORDER_BOUND: f64 = 4.7 * 16.0 * EPS32;

/// How two checkpoints (weights, BN buffers, momentum) agree, entry by entry, each difference
/// taken relative to max(1, max |a|) of its tensor.
struct Agreement {
    /// The largest relative difference.
    max: f64,
    /// The largest |a|.
    scale: f64,
    /// How many entries differ by more than [`BATCH_ORDER_BOUND`].
    over: i64,
    /// How many entries there are (89,864 in the tiny run).
    entries: i64,
}

/// At most this fraction of a checkpoint's entries may lie beyond [`BATCH_ORDER_BOUND`] for
/// two runs to agree to rounding. The bound is per reduction and holds where the computation
/// is smooth; a ReLU is not. Where a pre-activation lies within its rounding error of 0, two
/// runs can take the two sides of the kink, and that one element's upstream gradient enters
/// one run's sums and not the other's: the loss is continuous there, its gradient jumps, and
/// the momentum carries the jump. The tiny run has ~1.1·10⁶ ReLU inputs a step (2 views × 16
/// images × 34,816), BN-normalised (density ≈ 0.4 at 0), with rounding ~1e-7 typical and
/// ≤ 36·ε32 ≈ 4e-6 for a 3×3×4 convolution: ~0.1 flips a step expected, ≤ ~4 worst case.
/// Seen (ATEN_CPU_CAPABILITY=default, a 2-process checkpoint resumed by 1 process at 1 thread),
/// the signature of one flip in channel 1 of layer3.1's output: 5.6e-5 in the momentum of
/// layer3.1.bn2.bias[1], 3.4e-5 in that of its weight, 2.3e-5 and 1.0e-5 upstream; 5 of
/// 89,864 entries beyond the bound. The same checkpoint resumed at 2 threads, and 3 other
/// realisations, crossed no kink (≤ 1.5e-6). So the assertion allows a few such entries: 1%
/// is ~180 flips' worth at 5 entries each, above the worst case of 6 steps (~24), while a wrong
/// resume (data order, schedule step, momentum, BN statistics or RNG not restored) or a wrong
/// all-reduce moves whole tensors (without synchronised BN: 43,777 of 89,864 entries, up to
/// 1.26).
const KINK_FRACTION: f64 = 0.01;

impl Agreement {
    /// Whether all but [`KINK_FRACTION`] of the entries agree within [`BATCH_ORDER_BOUND`].
    fn to_rounding(&self) -> bool {
        (self.over as f64) <= KINK_FRACTION * self.entries as f64
    }
}

impl std::fmt::Display for Agreement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "largest difference {:e}, {} of {} entries beyond {BATCH_ORDER_BOUND:e}",
            self.max, self.over, self.entries
        )
    }
}

/// Compares the checkpoints of two run folders (same progress, same tensors).
fn agreement(a: &Path, b: &Path) -> Agreement {
    let a = read_checkpoint(&a.join("checkpoint.safetensors")).unwrap();
    let b = read_checkpoint(&b.join("checkpoint.safetensors")).unwrap();
    assert_eq!(a.progress, b.progress);
    assert_eq!(a.tensors.len(), b.tensors.len());
    let mut out = Agreement {
        max: 0.0,
        scale: 0.0,
        over: 0,
        entries: 0,
    };
    for ((na, ta), (nb, tb)) in a.tensors.iter().zip(&b.tensors) {
        assert_eq!(na, nb);
        assert_eq!(ta.size(), tb.size(), "{na}");
        let ta = ta.to_kind(tch::Kind::Double);
        let tb = tb.to_kind(tch::Kind::Double);
        let s = ta.abs().max().double_value(&[]);
        let d = (&ta - &tb).abs() / s.max(1.0);
        out.max = out.max.max(d.max().double_value(&[]));
        out.scale = out.scale.max(s);
        out.over += d
            .gt(BATCH_ORDER_BOUND)
            .sum(tch::Kind::Int64)
            .int64_value(&[]);
        out.entries += ta.numel() as i64;
    }
    out
}

/// The logged losses and learning rates of a run, line by line.
fn losses_and_rates(p: &Path) -> Vec<(f64, f64)> {
    std::fs::read_to_string(p.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v = serde_json::from_str::<serde_json::Value>(l).unwrap();
            (v["loss"].as_f64().unwrap(), v["lr"].as_f64().unwrap())
        })
        .collect()
}

/// Whether two runs' logged losses agree to rounding: the InfoNCE ℓ (≈ 3.4) is a mean over
/// the 32 rows, summed 16 + 16 against 32 at once (≤ 32·ε32·ℓ), of logits from embeddings
/// that differ as the weights do (≤ 16·ε32, as in [`BATCH_ORDER_BOUND`]): ≤ 48·ε32·ℓ ≈ 2e-5.
/// A kink crossed (see [`KINK_FRACTION`]) moves the weights by lr × the momentum's jump
/// (≤ 0.05·5.6e-5 seen), and a loss is Lipschitz in the weights: no jump. Was 1e-5
/// absolute, below that; seen 7.2e-7.
fn losses_agree(a: &[(f64, f64)], b: &[(f64, f64)]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|((la, _), (lb, _))| (la - lb).abs() <= 48.0 * EPS32 * lb.abs())
}

#[test]
fn two_processes_with_sync_bn_hold_the_weights_of_one_process() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tiny_config(tmp.path(), 2, "");
    let (one, two) = (tmp.path().join("one"), tmp.path().join("two"));
    run_ok(&mut train(&config, &one, &[]));
    let out = run_ok(&mut train(&config, &two, &["--nproc", "2"]));
    assert!(String::from_utf8_lossy(&out.stdout).contains("data-parallel: 2 processes"));

    // 6 steps of LARS on the global batch of 16: the same weights, buffers and momentum.
    let agree = agreement(&one, &two);
    eprintln!("2 processes against 1: {agree}");
    assert!(agree.scale > 0.1, "{}", agree.scale);
    // Was max < 1e-6: below the bound, and only 1.4× the 7.2e-7 seen; now the bound, with a
    // ReLU kink crossed allowed for (KINK_FRACTION).
    assert!(agree.to_rounding(), "2 processes against 1: {agree}");

    // The global InfoNCE is logged, the same as on one process.
    let (l1, l2) = (losses_and_rates(&one), losses_and_rates(&two));
    let worst = l1
        .iter()
        .zip(&l2)
        .map(|(a, b)| (a.0 - b.0).abs())
        .fold(0.0, f64::max);
    eprintln!("losses of 2 processes against 1: {worst:e}");
    assert!(losses_agree(&l1, &l2), "{l1:?} {l2:?}");
    // Rank 0 alone writes the run folder: one line per step and epoch, no duplicates.
    assert_eq!(l2.len(), 6 + 2);
}

#[test]
fn without_sync_bn_two_processes_differ_from_one() {
    // The control of the test above: BN over each rank's 8 rows is another computation.
    let tmp = tempfile::tempdir().unwrap();
    let config = tiny_config(tmp.path(), 2, "[dist]\nsync_bn = false\n");
    let (one, two) = (tmp.path().join("one"), tmp.path().join("two"));
    run_ok(&mut train(&config, &one, &[]));
    run_ok(&mut train(&config, &two, &["--nproc", "2"]));
    let agree = agreement(&one, &two);
    eprintln!("without sync BN, 2 processes against 1: {agree}");
    // Another function, not rounding: 1e-4 is 10× BATCH_ORDER_BOUND (seen: 1.26), and far
    // more entries than KINK_FRACTION lie beyond the bound (seen: 43,777 of 89,864).
    assert!(agree.max > 1e-4, "{agree}");
    assert!(!agree.to_rounding(), "{agree}");
}

fn spawn_rank(config: &Path, out: &Path, rank: usize, port: u16) -> Child {
    train(config, out, &[])
        .env("RANK", rank.to_string())
        .env("WORLD_SIZE", "2")
        .env("LOCAL_RANK", rank.to_string())
        .env("MASTER_ADDR", "127.0.0.1")
        .env("MASTER_PORT", port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits at most `limit` for `child`; returns its output, or None (then kills it).
fn wait_for(mut child: Child, limit: Duration) -> Option<Output> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if child.try_wait().unwrap().is_some() {
            return Some(child.wait_with_output().unwrap());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

#[test]
fn a_rank_that_dies_makes_the_other_exit_with_a_message() {
    let tmp = tempfile::tempdir().unwrap();
    // Many epochs, so that the run is still going when a rank is killed; a short collective
    // timeout bounds the wait even if the closed connection went unnoticed.
    let config = tiny_config(tmp.path(), 1000, "[dist]\ntimeout_s = 30\n");
    for victim in [1usize, 0] {
        let out = tmp.path().join(format!("run-{victim}"));
        let port = directclr::dist::launch::free_port().unwrap();
        let mut ranks: Vec<Option<Child>> = (0..2)
            .map(|r| Some(spawn_rank(&config, &out, r, port)))
            .collect();
        // Both ranks are training once rank 0 has logged a step.
        let start = Instant::now();
        while !std::fs::read_to_string(out.join("metrics.jsonl"))
            .is_ok_and(|m| m.lines().count() >= 2)
        {
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "the run did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut dead = ranks[victim].take().unwrap();
        // SIGKILL: no chance to say goodbye.
        unsafe { libc::kill(dead.id() as i32, libc::SIGKILL) };
        dead.wait().unwrap();
        let killed_at = Instant::now();
        let survivor = ranks[1 - victim].take().unwrap();
        let output = wait_for(survivor, Duration::from_secs(60)).unwrap_or_else(|| {
            panic!(
                "rank {} still runs 60 s after rank {victim} died",
                1 - victim
            )
        });
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{stderr}");
        assert!(
            stderr.contains(&format!("rank {} of 2", 1 - victim))
                && stderr.contains("distributed run"),
            "{stderr}"
        );
        eprintln!(
            "rank {} exited {:.1} s after rank {victim} was killed: {}",
            1 - victim,
            killed_at.elapsed().as_secs_f64(),
            stderr
                .lines()
                .filter(|l| l.contains("error") || l.contains("caused by"))
                .collect::<Vec<_>>()
                .join(" / ")
        );
    }
}

#[test]
fn missing_or_inconsistent_launch_variables_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tiny_config(tmp.path(), 2, "");
    let out = tmp.path().join("run");
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("RANK", "0")], "`WORLD_SIZE`"),
        (
            &[("RANK", "2"), ("WORLD_SIZE", "2")],
            "rank 2 is not in 0..2",
        ),
        (
            &[
                ("RANK", "0"),
                ("WORLD_SIZE", "2"),
                ("LOCAL_RANK", "0"),
                ("MASTER_PORT", "1"),
            ],
            "`MASTER_ADDR`",
        ),
        (&[("RANK", "x"), ("WORLD_SIZE", "2")], "`RANK`"),
        (
            &[
                ("RANK", "0"),
                ("WORLD_SIZE", "2"),
                ("MASTER_ADDR", "127.0.0.1"),
                ("MASTER_PORT", "1"),
            ],
            "`LOCAL_RANK`",
        ),
    ];
    for (vars, expected) in cases {
        let mut cmd = train(&config, &out, &[]);
        for (k, v) in vars.iter() {
            cmd.env(k, v);
        }
        let o = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success() && stderr.contains(expected),
            "{vars:?}: {stderr}"
        );
        assert!(!out.exists(), "nothing is written on a launch error");
    }
    // A global batch the processes cannot share.
    let mut cmd = train(&config, &out, &["--nproc", "3"]);
    let o = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && stderr.contains("batch_size"),
        "{stderr}"
    );
}

/// A copy of a run folder (files only; a run folder has no subfolders).
fn copy_run(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// Whether two run folders hold the same checkpoint bytes.
fn same_checkpoint(a: &Path, b: &Path) -> bool {
    let read = |d: &Path| std::fs::read(d.join("checkpoint.safetensors")).unwrap();
    read(a) == read(b)
}

#[test]
fn a_run_resumes_with_another_number_of_processes() {
    // Same global batch, so the same steps and samples: 2 processes killed after epoch 1 and
    // resumed by 1, and 1 process killed and resumed by 2.
    // - Exactly (on every machine: the same binary, process count and threads run twice):
    //   each killed folder resumed by its own process count ends bit for bit as the
    //   uninterrupted run of that count, so every piece of state (weights, momentum, BN
    //   buffers, sampler position, RNG, on every rank) is restored; resumed by the other
    //   count, two copies end bit for bit alike, and every step logs the uninterrupted run's
    //   learning rate (the schedule's step is restored).
    // - To rounding: each ends near the uninterrupted one-process run, which differs only in
    //   how the epoch(s) of 2 processes summed the global batch: losses within 48·ε32·ℓ and
    //   the state within BATCH_ORDER_BOUND, but for the few entries a crossed ReLU kink moves
    //   (KINK_FRACTION). Under ATEN_CPU_CAPABILITY=default the 2-then-1 run crosses one
    //   (5.6e-5 in one channel's momentum, 5 entries of 89,864 beyond the bound), where the
    //   same checkpoint resumed at 2 threads does not (8.9e-7): the resume is exact, the
    //   gradient is not continuous. The earlier tolerance, 4× the uninterrupted 2-process
    //   run's own distance (1.2e-6), took one realisation of that chance for a bound.
    let tmp = tempfile::tempdir().unwrap();
    let config = tiny_config(tmp.path(), 2, "");
    let whole = tmp.path().join("whole");
    run_ok(&mut train(&config, &whole, &[]));
    let whole_two = tmp.path().join("whole-two");
    run_ok(&mut train(&config, &whole_two, &["--nproc", "2"]));
    let rates = |p: &Path| -> Vec<f64> { losses_and_rates(p).iter().map(|l| l.1).collect() };
    let wait_for_checkpoint = |out: &Path| {
        let start = Instant::now();
        while !out.join("checkpoint.safetensors").exists() {
            assert!(start.elapsed() < Duration::from_secs(120), "no checkpoint");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    // Resumes `killed` (and, alike, a copy of it) with `to`; resumes another copy with
    // `same`, which must end as `uninterrupted`.
    let resume = |killed: &Path, to: &[&str], same: &[&str], uninterrupted: &Path| {
        let copy = killed.with_extension("copy");
        copy_run(killed, &copy);
        let own = killed.with_extension("own");
        copy_run(killed, &own);
        let out = run_ok(&mut train(&config, killed, to));
        assert!(String::from_utf8_lossy(&out.stderr).contains("resuming after epoch 1"));
        run_ok(&mut train(&config, &copy, to));
        assert!(same_checkpoint(killed, &copy), "{}", killed.display());
        run_ok(&mut train(&config, &own, same));
        assert!(
            same_checkpoint(&own, uninterrupted),
            "{} resumed by its own process count",
            killed.display()
        );
        assert_eq!(rates(killed), rates(&whole), "{}", killed.display());
    };

    let two_then_one = tmp.path().join("two-then-one");
    let port = directclr::dist::launch::free_port().unwrap();
    let mut ranks: Vec<Child> = (0..2)
        .map(|r| spawn_rank(&config, &two_then_one, r, port))
        .collect();
    wait_for_checkpoint(&two_then_one);
    for r in &mut ranks {
        r.kill().unwrap();
        r.wait().unwrap();
    }
    resume(&two_then_one, &[], &["--nproc", "2"], &whole_two);

    let one_then_two = tmp.path().join("one-then-two");
    let mut one = train(&config, &one_then_two, &[])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_checkpoint(&one_then_two);
    one.kill().unwrap();
    one.wait().unwrap();
    resume(&one_then_two, &["--nproc", "2"], &[], &whole);

    let reference = agreement(&whole, &whole_two);
    eprintln!("uninterrupted, 2 processes against 1: {reference}");
    for (name, run) in [("2 then 1", &two_then_one), ("1 then 2", &one_then_two)] {
        let agree = agreement(&whole, run);
        eprintln!("{name} processes against 1: {agree}");
        assert!(agree.to_rounding(), "{name} processes against 1: {agree}");
        let (l1, l2) = (losses_and_rates(&whole), losses_and_rates(run));
        assert!(losses_agree(&l1, &l2), "{name}: {l1:?} {l2:?}");
    }
}

#[test]
fn overlapped_and_after_backward_all_reduce_give_the_weights_of_one_process() {
    // Buckets of 10 kB: the 62 parameter tensors (178 kB) of the tiny ResNet and probe make 11
    // buckets, whose all-reduces the overlapped way starts from autograd hooks during the
    // backward pass (and rebuilds, in the order the gradients arrived, after the first step).
    // After 6 LARS steps both ways hold the weights of one process, and of each other.
    let tmp = tempfile::tempdir().unwrap();
    let config = |overlap: bool| {
        let dir = tmp.path().join(format!("overlap-{overlap}"));
        std::fs::create_dir_all(&dir).unwrap();
        tiny_config(
            &dir,
            2,
            &format!("[dist]\nbucket_mb = 0.01\noverlap = {overlap}\n"),
        )
    };
    let one = tmp.path().join("one");
    run_ok(&mut train(&config(true), &one, &[]));
    let mut outs = Vec::new();
    for overlap in [true, false] {
        let out = tmp.path().join(format!("two-{overlap}"));
        run_ok(&mut train(&config(overlap), &out, &["--nproc", "2"]));
        let agree = agreement(&one, &out);
        assert!(agree.scale > 0.1, "{}", agree.scale);
        // Was max < 1e-6; now the bound, with a ReLU kink crossed allowed for.
        assert!(
            agree.to_rounding(),
            "overlap {overlap}: 2 processes against 1: {agree}"
        );
        eprintln!("overlap = {overlap}: 2 processes against 1: {agree}");
        outs.push(out);
    }
    let diff = agreement(&outs[0], &outs[1]).max;
    eprintln!("overlap = true against false: {diff:e}");
    // The same arithmetic either way (only the buckets' timing and grouping differ; a 2-term
    // sum is commutative and halving exact): in fact equal (seen: 0); 1e-6 < the bound above.
    assert!(diff < 1e-6, "overlapped and not differ by {diff:e}");
}

/// Rank 0 of a 2-process run on `device`, alone: an NCCL run fails before the rendezvous.
fn nccl_rank(config: &Path, out: &Path, device: &str) -> Command {
    let mut c = train(config, out, &["--device", device]);
    c.env("RANK", "0")
        .env("WORLD_SIZE", "2")
        .env("LOCAL_RANK", "0")
        .env("MASTER_ADDR", "127.0.0.1")
        .env("MASTER_PORT", "1");
    c
}

#[test]
fn the_nccl_backend_without_its_library_or_on_the_cpu_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let config = tiny_config(tmp.path(), 2, "[dist]\nbackend = \"nccl\"\n");
    let stderr = run_err(&mut nccl_rank(&config, &out, "cpu"));
    assert!(
        stderr.contains("dist.backend") && stderr.contains("device"),
        "{stderr}"
    );
    let missing = tmp.path().join("nowhere/libdirectclr_cuda.so");
    let stderr = run_err(nccl_rank(&config, &out, "cuda").env("DIRECTCLR_CUDA_SHIM", &missing));
    assert!(
        stderr.contains(&format!("`{}`", missing.display()))
            && stderr.contains("scripts/cuda_shim.sh")
            && stderr.contains("rank 0 of 2"),
        "{stderr}"
    );
    assert!(
        !out.exists(),
        "nothing is written when the backend cannot start"
    );
}

#[test]
#[ignore = "needs PyTorch 2.11's CUDA libraries (the cu130 wheel's torch/lib with its nvidia/ \
            folders: DIRECTCLR_TEST_CUDA_TORCH_LIB) and libdirectclr_cuda.so beside the binary \
            (scripts/cuda_shim.sh target/release); CI has neither"]
fn the_nccl_library_loads_after_libtorch_cuda_and_asks_for_a_device() {
    // Run here with the benchmark venv's torch/lib (README, "Data-parallel training"). The
    // binary runs on that libtorch (LD_LIBRARY_PATH wins over its RUNPATH), opens its
    // libtorch_cuda.so, then libdirectclr_cuda.so with RTLD_NOW (every symbol resolved), checks
    // its calling convention and libtorch version, and stops at the missing CUDA device
    // (hidden with CUDA_VISIBLE_DEVICES on a machine that has one).
    let torch_lib = std::env::var("DIRECTCLR_TEST_CUDA_TORCH_LIB")
        .expect("set DIRECTCLR_TEST_CUDA_TORCH_LIB to a PyTorch 2.11 (cu130) torch/lib folder");
    let shim = Path::new(env!("CARGO_BIN_EXE_directclr"))
        .parent()
        .unwrap()
        .join("libdirectclr_cuda.so");
    assert!(
        shim.is_file(),
        "{} is missing: run scripts/cuda_shim.sh target/release",
        shim.display()
    );
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let config = tiny_config(tmp.path(), 2, "[dist]\nbackend = \"nccl\"\n");
    let stderr = run_err(
        nccl_rank(&config, &out, "cuda")
            .env("LD_LIBRARY_PATH", &torch_lib)
            .env("CUDA_VISIBLE_DEVICES", "")
            .env_remove("DIRECTCLR_CUDA_SHIM"),
    );
    eprintln!("{stderr}");
    assert!(
        stderr.contains("no CUDA device is visible")
            && stderr.contains(&shim.display().to_string()),
        "{stderr}"
    );
    assert!(!out.exists());
}

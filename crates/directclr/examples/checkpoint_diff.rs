//! Compares two run folders' checkpoints tensor by tensor (weights, batch-norm buffers,
//! optimiser momentum): prints the largest differences, relative to max(1, max |a|) of each
//! tensor, and exits with status 1 when one exceeds the tolerance.
//!
//! `checkpoint_diff RUN_A RUN_B [TOLERANCE (default 1e-6)]` (used by
//! scripts/gpu/check_ddp.sh).

use std::path::PathBuf;
use std::process::ExitCode;

use directclr::train::{read_checkpoint, CHECKPOINT_FILE};
use tch::Kind;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        eprintln!("usage: checkpoint_diff RUN_A RUN_B [TOLERANCE]");
        return ExitCode::from(2);
    }
    let tol: f64 = match args.get(2).map(|s| s.parse()) {
        None => 1e-6,
        Some(Ok(t)) => t,
        Some(Err(_)) => {
            eprintln!("invalid tolerance `{}`", args[2]);
            return ExitCode::from(2);
        }
    };
    let read = |dir: &str| {
        let file = PathBuf::from(dir).join(CHECKPOINT_FILE);
        read_checkpoint(&file).map_err(|e| e.to_string())
    };
    let (a, b) = match (read(&args[0]), read(&args[1])) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if a.progress != b.progress {
        eprintln!("different progress: {:?} vs {:?}", a.progress, b.progress);
        return ExitCode::FAILURE;
    }
    let mut rows = Vec::new();
    for (name, ta) in &a.tensors {
        let Some((_, tb)) = b.tensors.iter().find(|(n, _)| n == name) else {
            eprintln!("`{name}` is missing from {}", args[1]);
            return ExitCode::FAILURE;
        };
        let (ta, tb) = (ta.to_kind(Kind::Double), tb.to_kind(Kind::Double));
        let d = (&ta - &tb).abs().max().double_value(&[]);
        let s = ta.abs().max().double_value(&[]).max(1.0);
        rows.push((d / s, name.clone()));
    }
    rows.sort_by(|x, y| y.0.total_cmp(&x.0));
    for (d, name) in rows.iter().take(5) {
        println!("{d:.3e}  {name}");
    }
    let worst = rows.first().map_or(0.0, |r| r.0);
    println!(
        "{} tensors, largest relative difference {worst:.3e} (tolerance {tol:e}): {}",
        rows.len(),
        if worst <= tol { "PASS" } else { "FAIL" }
    );
    if worst <= tol {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

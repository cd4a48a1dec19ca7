//! End-to-end throughput of the data pipeline with the authors' two-view recipe, for
//! `benches/data/run.sh` (which runs torchvision's side by side).
//!
//! Usage: `data_pipeline_bench <jpeg> <images> <workers>...`
//! - 32 px: in-memory random 32×32 RGB images (CIFAR-like), two 32 px views each.
//! - 224 px: the JPEG (400×350 in the benchmark) decoded from the file for every sample, two
//!   224 px views each.
//!
//! Batches of 64, as normalised f32 or as u8. Prints one line per (size, output, workers):
//! `ours <size>px <f32|u8> workers=<w> <images/s wall> <images per CPU-second>`; the second figure (CPU time of the whole process) is the per-core
//! rate, robust to other load on the machine.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use directclr::data::{
    Dataset, ImageArray, Loader, LoaderConfig, OutputKind, RecipeConfig, Transform,
};
use rand::{Rng, SeedableRng};

/// User + system CPU seconds of the whole process so far.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the struct we pass.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 * 1e-6;
    t(u.ru_utime) + t(u.ru_stime)
}

fn run(
    ds: Arc<Dataset>,
    size: usize,
    workers: usize,
    output: OutputKind,
) -> Result<(f64, f64), Box<dyn std::error::Error>> {
    let recipe = Transform::Views(RecipeConfig::with_size(size).check()?);
    let cfg = LoaderConfig {
        batch_size: 64,
        workers,
        prefetch: 2 * workers.max(1),
        seed: 1,
        output,
        ..Default::default()
    };
    let loader = Loader::new(ds, recipe, cfg)?;
    // Warm-up, then a timed epoch.
    for b in loader.epoch(0).take(2) {
        b?;
    }
    let (t, c) = (Instant::now(), cpu_seconds());
    let mut n = 0;
    for b in loader.epoch(1) {
        n += b?.indices.len();
    }
    let (wall, cpu) = (t.elapsed().as_secs_f64(), cpu_seconds() - c);
    Ok((n as f64 / wall, n as f64 / cpu))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        return Err("usage: data_pipeline_bench <jpeg> <images> <workers>...".into());
    }
    let jpeg = PathBuf::from(&args[1]);
    let n: usize = args[2].parse()?;
    let workers: Vec<usize> = args[3..]
        .iter()
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;

    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let n32 = n * 8;
    let px: Vec<u8> = (0..n32 * 3 * 32 * 32).map(|_| rng.gen()).collect();
    let a = ImageArray::new(px, n32, 3, 32, 32, Path::new("random"))?;
    let small = Arc::new(Dataset::from_array(
        a,
        vec![0; n32],
        vec!["x".into()],
        "random",
    )?);
    let files = Arc::new(Dataset::from_files(
        vec![jpeg.clone(); n],
        vec![0; n],
        vec!["x".into()],
        &jpeg,
    )?);

    for (size, ds) in [(32, small), (224, files)] {
        for (output, name) in [(OutputKind::F32, "f32"), (OutputKind::U8, "u8")] {
            for &w in &workers {
                let (wall, per_cpu) = run(ds.clone(), size, w, output)?;
                println!("ours {size}px {name} workers={w} {wall:.0} {per_cpu:.0}");
            }
        }
    }
    Ok(())
}

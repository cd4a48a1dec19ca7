//! End-to-end throughput of the data pipeline with the authors' two-view recipe, for
//! `benches/data/run.sh` (which runs torchvision's side by side).
//!
//! Usage: `data_pipeline_bench <jpeg> <images> <workers>...`
//! - 32 px: in-memory random 32×32 RGB images (CIFAR-like), two 32 px views each.
//! - 224 px: the JPEG (400×350 in the benchmark) decoded from the file for every sample, two
//!   224 px views each.
//! Prints one line per (size, workers): `ours <size>px workers=<w> <images/s>`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use directclr::data::{Dataset, ImageArray, Loader, LoaderConfig, OutputKind, RecipeConfig, Transform};
use rand::{Rng, SeedableRng};

fn run(ds: Arc<Dataset>, size: usize, workers: usize, output: OutputKind) -> Result<f64, Box<dyn std::error::Error>> {
    let recipe = Transform::Views(RecipeConfig::with_size(size).check()?);
    let cfg = LoaderConfig { batch_size: 64, workers, prefetch: 2 * workers.max(1), seed: 1, output, ..Default::default() };
    let loader = Loader::new(ds, recipe, cfg)?;
    // Warm-up epoch, then a timed one.
    for b in loader.epoch(0).take(2) {
        b?;
    }
    let t = Instant::now();
    let mut n = 0;
    for b in loader.epoch(1) {
        n += b?.indices.len();
    }
    Ok(n as f64 / t.elapsed().as_secs_f64())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        return Err("usage: data_pipeline_bench <jpeg> <images> <workers>...".into());
    }
    let jpeg = PathBuf::from(&args[1]);
    let n: usize = args[2].parse()?;
    let workers: Vec<usize> = args[3..].iter().map(|a| a.parse()).collect::<Result<_, _>>()?;

    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let n32 = n * 8;
    let px: Vec<u8> = (0..n32 * 3 * 32 * 32).map(|_| rng.gen()).collect();
    let a = ImageArray::new(px, n32, 3, 32, 32, Path::new("random"))?;
    let small = Arc::new(Dataset::from_array(a, vec![0; n32], vec!["x".into()], "random")?);
    let files = Arc::new(Dataset::from_files(vec![jpeg.clone(); n], vec![0; n], vec!["x".into()], &jpeg)?);

    for &w in &workers {
        let r = run(small.clone(), 32, w, OutputKind::F32)?;
        println!("ours 32px workers={w} {r:.0}");
    }
    for &w in &workers {
        let r = run(files.clone(), 224, w, OutputKind::F32)?;
        println!("ours 224px workers={w} {r:.0}");
    }
    Ok(())
}

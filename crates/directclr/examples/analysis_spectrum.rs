//! Times the spectrum of the paper's figures (L2-normalised rows, covariance of Eqn 1 in f64,
//! eigenvalues descending) on the embeddings written by `benches/analysis/reference_spectrum.py`
//! and compares them with numpy's f64 eigenvalues:
//!
//! `cargo run --release --example analysis_spectrum -- DIR [N D REPEATS]`
//!
//! reads DIR/embeddings-N-D.f32 and DIR/numpy-eigenvalues-N-D.f64 and prints one JSON line. The
//! time runs from the f32 tensor in memory to the descending eigenvalues in a `Vec<f64>`, as
//! the Python reference's runs from its float32 array; it is the best of REPEATS, once in one
//! shot and once fed in chunks of 4096 rows.
use std::{path::Path, time::Instant};

use directclr::analysis::{embedding_spectrum, CovarianceAccumulator, RowNormalisation};
use tch::Tensor;

fn read_raw<const W: usize>(path: &Path) -> Vec<[u8; W]> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {path:?}: {e}"));
    bytes
        .chunks_exact(W)
        .map(|c| c.try_into().expect("chunks of W bytes"))
        .collect()
}

fn main() -> directclr::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = Path::new(
        args.first()
            .expect("usage: analysis_spectrum DIR [N D REPEATS]"),
    );
    let arg = |i: usize, default: i64| args.get(i).map_or(default, |s| s.parse().expect("integer"));
    let (n, d, repeats) = (arg(1, 50_000), arg(2, 2048), arg(3, 3));

    let data: Vec<f32> = read_raw::<4>(&dir.join(format!("embeddings-{n}-{d}.f32")))
        .into_iter()
        .map(f32::from_le_bytes)
        .collect();
    assert_eq!(data.len() as i64, n * d, "file size does not match N × D");
    let z = Tensor::from_slice(&data).reshape([n, d]);
    drop(data);
    let reference: Vec<f64> = read_raw::<8>(&dir.join(format!("numpy-eigenvalues-{n}-{d}.f64")))
        .into_iter()
        .map(f64::from_le_bytes)
        .collect();

    let mut best = f64::INFINITY;
    let mut values = Vec::new();
    for _ in 0..repeats {
        let start = Instant::now();
        values = embedding_spectrum(&z, RowNormalisation::L2)?;
        best = best.min(start.elapsed().as_secs_f64());
    }
    let mut best_chunked = f64::INFINITY;
    let mut chunked = Vec::new();
    for _ in 0..repeats {
        let start = Instant::now();
        let mut acc = CovarianceAccumulator::new(RowNormalisation::L2);
        for chunk in z.split(4096, 0) {
            acc.update(&chunk)?;
        }
        chunked = acc.finish()?.covariance_eigenvalues()?;
        best_chunked = best_chunked.min(start.elapsed().as_secs_f64());
    }

    let top = reference[0];
    let (mut rel, mut abs) = (0.0f64, 0.0f64);
    for ((ours, np), other) in values.iter().zip(&reference).zip(&chunked) {
        for v in [ours, other] {
            abs = abs.max((v - np).abs() / top);
            if *np > 1e-10 * top {
                rel = rel.max((v - np).abs() / np);
            }
        }
    }
    println!(
        "{{\"ours_seconds\": {best}, \"ours_chunked_seconds\": {best_chunked}, \
         \"ours_max_rel_diff\": {rel:e}, \"ours_max_abs_diff_over_top\": {abs:e}, \
         \"threads\": {}}}",
        tch::get_num_threads(),
    );
    Ok(())
}

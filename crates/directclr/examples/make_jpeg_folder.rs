//! Writes an ImageNet-style folder of synthetic JPEG files for the end-to-end data benchmark
//! on machines without a dataset (`benches/gpu/bench_all.sh`): `N` images of `W × H` pixels
//! (smooth waves plus noise, quality 90, about the size of an ImageNet JPEG at 500 × 375) in
//! `CLASSES` class folders.
//!
//! `cargo run --release --example make_jpeg_folder -- OUT [N] [W] [H] [CLASSES]`

use std::path::PathBuf;

use image::codecs::jpeg::JpegEncoder;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a: Vec<String> = std::env::args().collect();
    let out = PathBuf::from(
        a.get(1)
            .ok_or("usage: make_jpeg_folder OUT [N] [W] [H] [CLASSES]")?,
    );
    let num = |i: usize, d: usize| -> Result<usize, Box<dyn std::error::Error>> {
        Ok(a.get(i).map(|v| v.parse()).transpose()?.unwrap_or(d))
    };
    let (n, w, h, classes) = (num(2, 2048)?, num(3, 500)?, num(4, 375)?, num(5, 8)?);
    for c in 0..classes {
        std::fs::create_dir_all(out.join(format!("class{c:03}")))?;
    }
    (0..n)
        .into_par_iter()
        .try_for_each(|i| -> Result<(), String> {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(i as u64);
            let (fx, fy, ph): (f32, f32, f32) = (
                rng.gen_range(0.005..0.05),
                rng.gen_range(0.005..0.05),
                rng.gen(),
            );
            let mut px = Vec::with_capacity(w * h * 3);
            for y in 0..h {
                for x in 0..w {
                    for c in 0..3 {
                        let v = 128.0
                            + 90.0
                                * (fx * x as f32
                                    + fy * y as f32
                                    + ph * std::f32::consts::TAU
                                    + c as f32)
                                    .sin()
                            + rng.gen_range(-20.0..20.0);
                        px.push(v.clamp(0.0, 255.0) as u8);
                    }
                }
            }
            let file = out.join(format!("class{:03}/img{i:06}.jpg", i % classes));
            let f = std::fs::File::create(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            JpegEncoder::new_with_quality(std::io::BufWriter::new(f), 90)
                .encode(&px, w as u32, h as u32, image::ExtendedColorType::Rgb8)
                .map_err(|e| format!("{}: {e}", file.display()))
        })?;
    println!(
        "{n} JPEG files of {w}x{h} in {classes} classes under {}",
        out.display()
    );
    Ok(())
}

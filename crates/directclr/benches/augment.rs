//! Micro-benchmarks of the augmentation kernels at 224 px (and 32 px for a whole view), one
//! core. Run: `cargo bench -p directclr --bench augment`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use directclr::data::augment::blur::{blur, kernel1d};
use directclr::data::augment::color_jitter::{
    adjust_brightness, adjust_contrast, adjust_hue, adjust_saturation,
};
use directclr::data::augment::grayscale::to_grayscale;
use directclr::data::augment::resized_crop::resample;
use directclr::data::augment::solarize::solarize;
use directclr::data::augment::{CropBox, Normalize, RandomResizedCrop, RecipeConfig, Scratch};
use directclr::data::dataset::decode_bytes;
use directclr::data::{ImageRef, Layout};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A 400×350 RGB JPEG of smooth gradients plus noise (quality 90), as in the end-to-end
/// benchmark.
fn jpeg_400x350() -> Vec<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let img = image::RgbImage::from_fn(400, 350, |x, y| {
        let n: i32 = rng.gen_range(-12..=12);
        let f = |v: f32| (v as i32 + n).clamp(0, 255) as u8;
        image::Rgb([
            f(x as f32 * 0.6 + 30.0 * (y as f32 / 17.0).sin()),
            f(y as f32 * 0.7 + 40.0 * (x as f32 / 23.0).cos()),
            f((x + y) as f32 * 0.3),
        ])
    });
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
        .encode_image(&img)
        .expect("encode");
    out
}

fn kernels(c: &mut Criterion) {
    let jpeg = jpeg_400x350();
    let path = std::path::Path::new("bench.jpg");
    let decoded = decode_bytes(&jpeg, path).expect("decode");
    let src = decoded.view();
    let mut g = c.benchmark_group("augment_224");
    g.bench_function("decode_jpeg_400x350", |b| {
        b.iter(|| decode_bytes(black_box(&jpeg), path).expect("decode"))
    });

    let rrc = RandomResizedCrop::default();
    let crop = CropBox {
        top: 20,
        left: 40,
        height: 300,
        width: 300,
    };
    let mut scratch = Scratch::default();
    let mut out = vec![0.0f32; 3 * 224 * 224];
    g.bench_function("resized_crop_300_to_224_bicubic", |b| {
        b.iter(|| {
            let (xs, ys) = rrc.coeffs(350, 400, crop, false);
            resample(src, &xs, &ys, &mut scratch, &mut out)
        })
    });
    let small = CropBox {
        top: 100,
        left: 100,
        height: 70,
        width: 80,
    };
    g.bench_function("resized_crop_70x80_to_224_bicubic", |b| {
        b.iter(|| {
            let (xs, ys) = rrc.coeffs(350, 400, small, false);
            resample(src, &xs, &ys, &mut scratch, &mut out)
        })
    });
    let base = out.clone();
    g.bench_function("brightness", |b| {
        b.iter(|| adjust_brightness(&mut out, black_box(1.1)))
    });
    g.bench_function("contrast", |b| {
        b.iter(|| adjust_contrast(&mut out, black_box(0.9)))
    });
    g.bench_function("saturation", |b| {
        b.iter(|| adjust_saturation(&mut out, black_box(1.1)))
    });
    out.copy_from_slice(&base);
    g.bench_function("hue", |b| b.iter(|| adjust_hue(&mut out, black_box(0.05))));
    g.bench_function("grayscale", |b| b.iter(|| to_grayscale(&mut out)));
    out.copy_from_slice(&base);
    for sigma in [0.5f32, 1.0, 2.0] {
        let k = kernel1d(23, sigma);
        g.bench_function(format!("blur_k23_sigma{sigma}"), |b| {
            b.iter(|| blur(&mut out, 224, 224, &k, &mut scratch))
        });
    }
    g.bench_function("solarize", |b| {
        b.iter(|| solarize(&mut out, black_box(0.5)))
    });
    g.bench_function("normalize", |b| {
        b.iter(|| Normalize::IMAGENET.apply(&mut out))
    });

    let recipe = RecipeConfig::default().check().expect("recipe");
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    g.bench_function("two_views_from_decoded", |b| {
        b.iter(|| {
            for v in recipe.views() {
                v.apply(src, &mut rng, &mut scratch, &mut out);
                v.normalize.apply(&mut out);
            }
        })
    });
    g.finish();

    let mut g = c.benchmark_group("augment_32");
    let px: Vec<u8> = (0..3 * 32 * 32).map(|_| rng.gen()).collect();
    let img = ImageRef {
        data: &px,
        channels: 3,
        height: 32,
        width: 32,
        layout: Layout::Planar,
    };
    let recipe = RecipeConfig::with_size(32).check().expect("recipe");
    let mut out = vec![0.0f32; 3 * 32 * 32];
    g.bench_function("two_views", |b| {
        b.iter(|| {
            for v in recipe.views() {
                v.apply(img, &mut rng, &mut scratch, &mut out);
                v.normalize.apply(&mut out);
            }
        })
    });
    g.finish();
}

criterion_group!(benches, kernels);
criterion_main!(benches);

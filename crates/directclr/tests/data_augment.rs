//! Each transform against its definition (torchvision's), closed forms and slow references.

use directclr::data::augment::blur::{blur, kernel1d, reflect};
use directclr::data::augment::color_jitter::{
    adjust_brightness, adjust_contrast, adjust_hue, adjust_saturation, hsv_round_trip_reference,
};
use directclr::data::augment::flip::hflip;
use directclr::data::augment::grayscale::to_grayscale;
use directclr::data::augment::resized_crop::resample;
use directclr::data::augment::solarize::solarize;
use directclr::data::augment::{
    ColorJitter, CropBox, EvalTransform, Interpolation, KernelSize, Normalize, RandomResizedCrop,
    RecipeConfig, Scratch,
};
use directclr::data::{DataError, ImageRef, Layout};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn random_image(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..3 * n).map(|_| rng.gen::<f32>()).collect()
}

// Tolerances: u = ε32/2 = 2⁻²⁴ ≈ 6.0e-8 is f32's unit roundoff; a rounding moves a value x by
// at most u·|x| (half an ulp). The CPU kernels fix their operation order in the source (no
// BLAS, no reassociation; `mul_add` is one fused rounding on every path), but the bounds below
// hold for any order of their sums.

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn hue_shift_round_trips_and_matches_torchvision_sector_table() {
    let n = 5000;
    let img = random_image(n, 1);
    for shift in [-0.5f32, -0.1, -0.03, 0.0, 0.07, 0.1, 0.33, 0.5] {
        let mut x = img.clone();
        adjust_hue(&mut x, shift);
        for i in 0..n {
            let r = hsv_round_trip_reference([img[i], img[n + i], img[2 * n + i]], shift);
            for c in 0..3 {
                // Both share the bits of h6 = 6·frac(hue + shift); adjust_hue rounds k = n + h6
                // < 12 (≤ 8u) and c·t, v − c·t (≤ 3u); the sector table ≤ 6u (s = c/v, s·f,
                // 1 − s·f, v·(…)): |Δ| ≤ 17u ≈ 1.0e-6 < 2e-6.
                assert!(
                    (x[c * n + i] - r[c]).abs() < 2e-6,
                    "shift {shift} pixel {i}: {:?}",
                    r
                );
            }
        }
        adjust_hue(&mut x, -shift);
        // One pass is within 54u of the exact rotation (hue of ≤ 16u in sixths through ×1/6,
        // +1, +shift, ×6 and k = n + h6: ≤ 51u, times c ≤ 1, then c·t and v − c·t: 3u), and
        // the exact rotation is 3-Lipschitz in the max norm (piecewise linear, coefficient sums
        // ≤ 3): |round trip − x| ≤ 54u + 3·54u = 216u ≈ 1.29e-5 (was 1e-5, below the bound).
        assert!(max_diff(&x, &img) < 1.3e-5, "round trip of {shift}");
    }
    // Pure red rotated by a third of a turn is pure green, by two thirds pure blue.
    let mut red = vec![1.0, 0.0, 0.0];
    adjust_hue(&mut red, 1.0 / 3.0);
    // Hue 0 and c = 1 are exact; only h6 = 6·fl(1/3) rounds (≤ 4u), times c = 1: ≤ 2.4e-7.
    assert!(max_diff(&red, &[0.0, 1.0, 0.0]) < 1e-6, "{red:?}");
    let mut red = vec![0.8, 0.2, 0.2];
    adjust_hue(&mut red, -1.0 / 3.0);
    // h6 = 6·(1 − fl(1/3)) rounds by ≤ 7u, times c = 0.6, plus c, c·t, v − c·t (3u): ≤ 8u
    // ≈ 4.8e-7 < 1e-6.
    assert!(max_diff(&red, &[0.2, 0.2, 0.8]) < 1e-6, "{red:?}");
    // Grays have no hue.
    let mut gray = vec![0.4, 0.4, 0.4];
    adjust_hue(&mut gray, 0.25);
    // Exact: chroma c = v − v = 0, so every channel is v − 0·t = v.
    assert_eq!(gray, vec![0.4, 0.4, 0.4]);
}

#[test]
fn grayscale_weights_are_itu_601() {
    // Pixels: pure R, pure G, pure B, white.
    let mut x = vec![1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0];
    to_grayscale(&mut x);
    let l = [0.299f32, 0.587, 0.114, 1.0];
    for c in 0..3 {
        for p in 0..4 {
            // Pure channels are exact (one weight times 1, plus zeros); white adds the three
            // f32 weights (representation ≤ u, two additions ≤ 2u): ≤ 3u ≈ 1.8e-7 < 1e-6.
            assert!((x[c * 4 + p] - l[p]).abs() < 1e-6);
        }
    }
}

#[test]
fn brightness_contrast_saturation_closed_forms() {
    let n = 1000;
    let img = random_image(n, 2);
    let gray = |i: usize| {
        0.299 * img[i] as f64 + 0.587 * img[n + i] as f64 + 0.114 * img[2 * n + i] as f64
    };
    let mean: f64 = (0..n).map(gray).sum::<f64>() / n as f64;
    for f in [0.0f32, 0.6, 1.0, 1.4] {
        let mut b = img.clone();
        adjust_brightness(&mut b, f);
        let mut c = img.clone();
        adjust_contrast(&mut c, f);
        let mut s = img.clone();
        adjust_saturation(&mut s, f);
        for ch in 0..3 {
            for i in 0..n {
                let x = img[ch * n + i] as f64;
                let f = f as f64;
                let eb = (f * x).clamp(0.0, 1.0);
                let ec = (f * x + (1.0 - f) * mean).clamp(0.0, 1.0);
                let es = (f * x + (1.0 - f) * gray(i)).clamp(0.0, 1.0);
                // One product (f ≤ 1.4), the clamp is 1-Lipschitz: ≤ 1.4u ≈ 8.4e-8 < 1e-6.
                assert!((b[ch * n + i] as f64 - eb).abs() < 1e-6);
                // The mean of 1000 grays ≤ 1 (each ≤ 3u, plus u for the f32 weights against
                // these f64 ones) summed in 16 f32 lanes of ≤ 63 terms (γ₆₂), lanes in f64:
                // ≤ 68u; then |1 − f|·m (1 − f exact) and f·x + off ≤ 2u: ≤ 70u ≈ 4.2e-6 < 1e-5.
                assert!((c[ch * n + i] as f64 - ec).abs() < 1e-5);
                // gray ≤ 4u, (1 − f)·gray, f·x and the sum ≤ 4u: ≤ 8u ≈ 4.8e-7 < 1e-5.
                assert!((s[ch * n + i] as f64 - es).abs() < 1e-5);
            }
        }
    }
    // Saturation 0 is grayscale; contrast 0 is the uniform mean gray.
    let mut s = img.clone();
    adjust_saturation(&mut s, 0.0);
    let mut g = img.clone();
    to_grayscale(&mut g);
    // Exact (1·gray + 0·x = gray, same bits) up to the clamp of a gray that the weights'
    // rounding may lift above 1 by ≤ 3u ≈ 1.8e-7 < 1e-6.
    assert!(max_diff(&s, &g) < 1e-6);
    let mut c = img.clone();
    adjust_contrast(&mut c, 0.0);
    // The f32 mean, as above: ≤ 68u + u ≈ 4.1e-6 < 1e-5.
    assert!(c.iter().all(|&v| (v as f64 - mean).abs() < 1e-5));
}

#[test]
fn color_jitter_sampling_follows_torchvision() {
    let cj = ColorJitter::default();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let draws = 20000;
    let mut applied = 0;
    let mut first = [0usize; 4];
    for _ in 0..draws {
        let ops = cj.sample(&mut rng);
        if ops.is_empty() {
            continue;
        }
        applied += 1;
        assert_eq!(ops.len(), 4);
        for op in &ops {
            use directclr::data::augment::ColorOp::*;
            match *op {
                Brightness(f) | Contrast(f) => assert!((0.6..=1.4).contains(&f)),
                Saturation(f) => assert!((0.8..=1.2).contains(&f)),
                Hue(h) => assert!((-0.1..=0.1).contains(&h)),
            }
        }
        let idx = match ops[0] {
            directclr::data::augment::ColorOp::Brightness(_) => 0,
            directclr::data::augment::ColorOp::Contrast(_) => 1,
            directclr::data::augment::ColorOp::Saturation(_) => 2,
            directclr::data::augment::ColorOp::Hue(_) => 3,
        };
        first[idx] += 1;
    }
    // p = 0.8: binomial std over 20,000 draws is √(0.8·0.2/20000) = 0.0028, the tolerance
    // 0.015 is 5.3σ; the draws come from the seeded ChaCha8 stream (machine-independent).
    let rate = applied as f64 / draws as f64;
    assert!((rate - 0.8).abs() < 0.015, "{rate}");
    // Random order: each operation comes first a quarter of the time; binomial std over the
    // ≈ 16,000 applied draws √(0.25·0.75/16000) = 0.0034, the tolerance 0.02 is 5.8σ (ChaCha8).
    for f in first {
        let q = f as f64 / applied as f64;
        assert!((q - 0.25).abs() < 0.02, "{first:?}");
    }
}

#[test]
fn gaussian_kernel_sums_to_one_and_is_gaussian() {
    for (size, sigma) in [(23, 0.1f32), (23, 2.0), (3, 1.0), (9, 0.7)] {
        let k = kernel1d(size, sigma);
        assert_eq!(k.len(), size);
        // The normaliser s = Σ pdf has relative error ≤ (size − 1)u, each quotient ≤ u, and
        // this f32 sum of values ≤ 1 ≤ (size − 1)u: ≤ (2·size − 1)u < size·ε32 (2.7e-6 at 23;
        // was 1e-6, below the bound for size 23).
        assert!((k.iter().sum::<f32>() - 1.0).abs() <= size as f32 * f32::EPSILON);
        let c = size / 2;
        for i in 0..size {
            // Exact (bound 0): x_i = −x_{size−1−i} in f32, so the pdf values and quotients agree.
            assert!((k[i] - k[size - 1 - i]).abs() < 1e-7);
            let x = i as f64 - c as f64;
            let expect = (-x * x / (2.0 * (sigma as f64).powi(2))).exp();
            // pdf_c = exp(0) = 1; the argument −x²/2 has relative error ≤ 4u (exp moves by
            // |a|·4u·e^a ≤ 4u/e), expf ≤ 1 ulp, two quotients 2u: ≤ 5.5u ≈ 3.3e-7 < 1e-5.
            assert!((k[i] as f64 / k[c] as f64 - expect).abs() < 1e-5);
        }
    }
    assert_eq!(KernelSize::Fraction { fraction: 0.1 }.resolve(224), 23);
    assert_eq!(KernelSize::Fraction { fraction: 0.1 }.resolve(32), 3);
    assert_eq!(KernelSize::Fraction { fraction: 0.1 }.resolve(96), 9);
    assert_eq!(
        (
            reflect(-1, 5),
            reflect(-2, 5),
            reflect(5, 5),
            reflect(6, 5),
            reflect(-9, 5)
        ),
        (1, 2, 3, 2, 1)
    );
}

#[test]
fn blur_matches_a_direct_2d_convolution_with_reflect_padding() {
    let (h, w) = (13, 17);
    let img = random_image(h * w, 4);
    let k = kernel1d(9, 1.7);
    let mut out = img.clone();
    blur(&mut out, h, w, &k, &mut Scratch::default());
    let r = 4isize;
    for c in 0..3 {
        for y in 0..h {
            for x in 0..w {
                let mut s = 0.0f64;
                for dy in -r..=r {
                    for dx in -r..=r {
                        let sy = reflect(y as isize + dy, h);
                        let sx = reflect(x as isize + dx, w);
                        s += k[(dy + r) as usize] as f64
                            * k[(dx + r) as usize] as f64
                            * img[c * h * w + sy * w + sx] as f64;
                    }
                }
                // Two passes of 9 FMAs on values ≤ 1, weights ≥ 0 summing to 1: ≤ 9u each, so
                // ≤ 18u ≈ 1.1e-6 < 1e-5 (the f64 reference is exact to 1e-14).
                assert!((out[c * h * w + y * w + x] as f64 - s).abs() < 1e-5);
            }
        }
    }
    let mut flat = vec![0.3f32; 3 * h * w];
    blur(&mut flat, h, w, &kernel1d(23, 2.0), &mut Scratch::default());
    // The 23 weights sum to 1 within 23u (the normaliser's 22 roundings, the quotients) and
    // each pass of 23 FMAs adds ≤ 23u relative: ≤ 0.3·(2·23 + 2·23)u = 27.6u ≈ 1.65e-6
    // (was 1e-6, below the bound).
    assert!(flat.iter().all(|&v| (v - 0.3).abs() < 1.7e-6));
}

#[test]
fn solarize_and_normalize_definitions() {
    let mut x = vec![0.0, 0.3, 0.5, 0.7, 1.0, 128.0 / 255.0, 127.0 / 255.0];
    solarize(&mut x, 128.0 / 255.0);
    let e = [0.0, 0.3, 0.5, 0.3, 0.0, 127.0 / 255.0, 127.0 / 255.0];
    // 1 − x is exact for x ≥ ½; against the f32 literals: representation errors ≤ 2u ≈ 1.2e-7.
    assert!(max_diff(&x, &e) < 1e-6);
    let mut y = vec![0.485, 1.0, 0.456, 0.0, 0.406, 0.5];
    Normalize::IMAGENET.apply(&mut y);
    let e = [
        0.0,
        (1.0 - 0.485) / 0.229,
        0.0,
        -0.456 / 0.224,
        0.0,
        (0.5 - 0.406) / 0.225,
    ];
    // x − m (≤ u), ·fl(1/std) (2u) against one f32 quotient (u) of the same difference, on
    // values ≤ 2.25: ≤ 4u·2.25 ≈ 5.4e-7 < 1e-5.
    assert!(max_diff(&y, &e) < 1e-5);
    let t = Normalize::IMAGENET
        .apply_tensor(&tch::Tensor::from_slice(&[255u8, 0, 0]).view([1, 3, 1, 1]));
    let v: Vec<f32> = Vec::try_from(t.flatten(0, -1)).unwrap();
    // libtorch: x/255 (≤ 2u if by a reciprocal), − m, /std (≤ 2u), on values ≤ 2.25, against
    // the f32 literals (2u): ≤ 18u ≈ 1.1e-6 < 1e-5, whatever kernels ATen dispatches to.
    assert!(max_diff(&v, &[(1.0 - 0.485) / 0.229, -0.456 / 0.224, -0.406 / 0.225]) < 1e-5);
}

#[test]
fn random_resized_crop_areas_and_ratios_within_range() {
    let rrc = RandomResizedCrop::default();
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let (h, w) = (350usize, 400usize);
    let mut log_ratio_sum = 0.0;
    let draws = 20000;
    for _ in 0..draws {
        let c = rrc.sample(&mut rng, h, w);
        assert!(c.height >= 1 && c.width >= 1 && c.top + c.height <= h && c.left + c.width <= w);
        let area = (c.height * c.width) as f64 / (h * w) as f64;
        let ratio = c.width as f64 / c.height as f64;
        // Rounding each side to the nearest pixel moves area and ratio by at most one pixel
        // (integer geometry, not f64 rounding: the f64 sqrt/exp/ln errors are ~1e-16): area by
        // ≤ (h + w + 1)/2 px²; ratio by ≤ r·(½/w + ½/(h − ½)) + …, within r·(1/h + 1/w)·½·1.01
        // because every side is ≥ 91 px here (area ≥ 0.08·350·400 at ratio ≤ 4/3).
        let tol_a = (c.height + c.width + 1) as f64 / (h * w) as f64;
        let tol_r = ratio * (1.0 / c.height as f64 + 1.0 / c.width as f64) * 0.5 * 1.01;
        assert!(area >= 0.08 - tol_a && area <= 1.0 + tol_a, "{c:?}");
        assert!(ratio >= 0.75 - tol_r && ratio <= 4.0 / 3.0 + tol_r, "{c:?}");
        log_ratio_sum += ratio.ln();
    }
    assert!(log_ratio_sum.is_finite());
    // Where no draw is rejected (areas up to 0.3), the area is uniform in the range and the
    // ratio log-uniform: mean area 0.19, mean log ratio 0; over 20,000 draws their standard
    // errors are 0.22/√12/√20000 = 0.00045 and 0.575/√12/√20000 = 0.0012, so the tolerances
    // 0.003 and 0.006 are 6.7σ and 5.1σ (pixel rounding adds a bias < 1e-5). Seeded ChaCha8
    // draws: machine-independent.
    let small = RandomResizedCrop {
        scale: (0.08, 0.3),
        ..rrc
    };
    let (mut area_sum, mut lr_sum) = (0.0, 0.0);
    for _ in 0..draws {
        let c = small.sample(&mut rng, h, w);
        area_sum += (c.height * c.width) as f64 / (h * w) as f64;
        lr_sum += (c.width as f64 / c.height as f64).ln();
    }
    assert!(
        (area_sum / draws as f64 - 0.19).abs() < 0.003,
        "{}",
        area_sum / draws as f64
    );
    assert!(
        (lr_sum / draws as f64).abs() < 0.006,
        "{}",
        lr_sum / draws as f64
    );
    // Fallback: an image too elongated for any crop gives torchvision's centre crop. Integer
    // results: round(10·4/3 = 13.33) is 0.17 away from a rounding boundary.
    let c = RandomResizedCrop {
        scale: (0.9, 1.0),
        ..rrc
    }
    .sample(&mut rng, 10, 100);
    assert_eq!(
        c,
        CropBox {
            top: 0,
            left: 43,
            height: 10,
            width: 13
        }
    );
    let c = RandomResizedCrop {
        scale: (0.9, 1.0),
        ..rrc
    }
    .sample(&mut rng, 100, 10);
    assert_eq!(
        c,
        CropBox {
            top: 43,
            left: 0,
            height: 13,
            width: 10
        }
    );
}

/// PIL's resampling weights written again, in f64, for a direct 2-D reference.
fn pil_weights(
    in_size: usize,
    in0: f64,
    in1: f64,
    out: usize,
    interp: Interpolation,
) -> Vec<Vec<(usize, f64)>> {
    let scale = (in1 - in0) / out as f64;
    let fs = scale.max(1.0);
    let support = match interp {
        Interpolation::Bilinear => 1.0,
        Interpolation::Bicubic => 2.0,
    } * fs;
    let f = |x: f64| {
        let x = x.abs();
        match interp {
            Interpolation::Bilinear => (1.0 - x).max(0.0),
            Interpolation::Bicubic => {
                let a = -0.5;
                if x < 1.0 {
                    ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * a
                } else {
                    0.0
                }
            }
        }
    };
    (0..out)
        .map(|o| {
            let center = in0 + (o as f64 + 0.5) * scale;
            let lo = ((center - support + 0.5).floor().max(0.0)) as usize;
            let hi = ((center + support + 0.5).floor() as usize).min(in_size);
            let ws: Vec<(usize, f64)> = (lo..hi)
                .map(|i| (i, f((i as f64 - center + 0.5) / fs)))
                .collect();
            let s: f64 = ws.iter().map(|p| p.1).sum();
            ws.into_iter().map(|(i, w)| (i, w / s)).collect()
        })
        .collect()
}

fn planar_u8(c: usize, h: usize, w: usize, seed: u64) -> Vec<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..c * h * w).map(|_| rng.gen()).collect()
}

fn to_interleaved(p: &[u8], c: usize, h: usize, w: usize) -> Vec<u8> {
    let mut v = vec![0; p.len()];
    for ch in 0..c {
        for i in 0..h * w {
            v[i * c + ch] = p[ch * h * w + i];
        }
    }
    v
}

#[test]
fn resampling_matches_pil_definition_both_layouts_and_flip() {
    let (h, w) = (23usize, 31usize);
    let src = planar_u8(3, h, w, 6);
    let inter = to_interleaved(&src, 3, h, w);
    for interp in [Interpolation::Bicubic, Interpolation::Bilinear] {
        for (crop, size) in [
            (
                CropBox {
                    top: 2,
                    left: 3,
                    height: 19,
                    width: 25,
                },
                8,
            ), // downscale
            (
                CropBox {
                    top: 5,
                    left: 1,
                    height: 6,
                    width: 9,
                },
                16,
            ), // upscale
            (
                CropBox {
                    top: 0,
                    left: 0,
                    height: 23,
                    width: 31,
                },
                13,
            ), // whole image
        ] {
            let rrc = RandomResizedCrop {
                size,
                interpolation: interp,
                ..Default::default()
            };
            let (xs, ys) = rrc.coeffs(h, w, crop, false);
            let mut out = vec![0.0; 3 * size * size];
            let img = ImageRef {
                data: &src,
                channels: 3,
                height: h,
                width: w,
                layout: Layout::Planar,
            };
            resample(img, &xs, &ys, &mut Scratch::default(), &mut out);
            let wx = pil_weights(
                w,
                crop.left as f64,
                (crop.left + crop.width) as f64,
                size,
                interp,
            );
            let wy = pil_weights(
                h,
                crop.top as f64,
                (crop.top + crop.height) as f64,
                size,
                interp,
            );
            for c in 0..3 {
                for y in 0..size {
                    for x in 0..size {
                        let mut s = 0.0;
                        for &(i, a) in &wy[y] {
                            for &(j, b) in &wx[x] {
                                s += a * b * src[c * h * w + i * w + j] as f64;
                            }
                        }
                        let e = (s / 255.0).clamp(0.0, 1.0);
                        // f32 weights (≤ u each), a vertical and a horizontal FMA chain of
                        // n_y, n_x ≤ 13 taps: ≤ (n_x + n_y + 2)·u·Σ|w_x|·Σ|w_y| with Σ|w| ≤ 1.27
                        // for PIL's bicubic: ≤ 28·1.62u ≈ 2.7e-6 < 1e-5 (f64 reference exact).
                        assert!((out[c * size * size + y * size + x] as f64 - e).abs() < 1e-5);
                    }
                }
            }
            // Interleaved source gives the same result.
            let mut out2 = vec![0.0; out.len()];
            let img2 = ImageRef {
                data: &inter,
                channels: 3,
                height: h,
                width: w,
                layout: Layout::Interleaved,
            };
            resample(img2, &xs, &ys, &mut Scratch::default(), &mut out2);
            // The same FMA chain per output in both layouts (taps in source order): equal bit
            // for bit (bound 0).
            assert!(max_diff(&out, &out2) < 1e-6);
            // Flipping the coefficients equals mirroring the output.
            let (fx, fy) = rrc.coeffs(h, w, crop, true);
            let mut flipped = vec![0.0; out.len()];
            resample(img, &fx, &fy, &mut Scratch::default(), &mut flipped);
            let mut mirrored = out.clone();
            hflip(&mut mirrored, size);
            // The mirrored output's chain is the same FMAs in the same source order, the block
            // matrices only add exact zeros (fma(0, v, a) = a): equal bit for bit (bound 0).
            assert!(max_diff(&flipped, &mirrored) < 1e-6);
        }
    }
    // Same size, whole image: the identity.
    let rrc = RandomResizedCrop {
        size: 9,
        ..Default::default()
    };
    let small = planar_u8(3, 9, 9, 7);
    let (xs, ys) = rrc.coeffs(
        9,
        9,
        CropBox {
            top: 0,
            left: 0,
            height: 9,
            width: 9,
        },
        false,
    );
    let mut out = vec![0.0; 3 * 81];
    let img = ImageRef {
        data: &small,
        channels: 3,
        height: 9,
        width: 9,
        layout: Layout::Planar,
    };
    resample(img, &xs, &ys, &mut Scratch::default(), &mut out);
    let expect: Vec<f32> = small.iter().map(|&v| v as f32 / 255.0).collect();
    // Same size: the bicubic weights are exactly (0, 1, 0), so out = fl(fl(1/255)·v) against
    // fl(v/255): ≤ 3u ≈ 1.8e-7 < 1e-6.
    assert!(max_diff(&out, &expect) < 1e-6);
    // Grayscale is expanded to three equal channels.
    let gray = planar_u8(1, 9, 9, 8);
    let img = ImageRef {
        data: &gray,
        channels: 1,
        height: 9,
        width: 9,
        layout: Layout::Planar,
    };
    resample(img, &xs, &ys, &mut Scratch::default(), &mut out);
    let expect: Vec<f32> = gray.iter().map(|&v| v as f32 / 255.0).collect();
    for c in 0..3 {
        // As above, ≤ 3u; the planes are copies.
        assert!(max_diff(&out[c * 81..(c + 1) * 81], &expect) < 1e-6);
    }
}

#[test]
fn eval_transform_is_resize_then_centre_crop() {
    let e = EvalTransform::default();
    assert_eq!(e.resized_size(350, 400), (256, 292));
    assert_eq!(e.resized_size(500, 375), (341, 256));
    let small = EvalTransform {
        resize: 20,
        crop: 16,
        ..e
    };
    let (h, w) = (25, 30);
    let src = planar_u8(3, h, w, 9);
    let (nh, nw) = small.resized_size(h, w);
    assert_eq!((nh, nw), (20, 24));
    let img = ImageRef {
        data: &src,
        channels: 3,
        height: h,
        width: w,
        layout: Layout::Planar,
    };
    let mut out = vec![0.0; 3 * 16 * 16];
    small.apply(img, &mut Scratch::default(), &mut out);
    // Centre crop offsets round((20 − 16)/2) = 2 and round((24 − 16)/2) = 4.
    let wx = pil_weights(w, 0.0, w as f64, nw, Interpolation::Bilinear);
    let wy = pil_weights(h, 0.0, h as f64, nh, Interpolation::Bilinear);
    for c in 0..3 {
        for y in 0..16 {
            for x in 0..16 {
                let mut s = 0.0;
                for &(i, a) in &wy[y + 2] {
                    for &(j, b) in &wx[x + 4] {
                        s += a * b * src[c * h * w + i * w + j] as f64;
                    }
                }
                // Bilinear weights ≥ 0 (Σ|w| = 1), ≤ 5 taps per axis: ≤ (5 + 5 + 2)u ≈ 7.2e-7.
                assert!((out[c * 256 + y * 16 + x] as f64 - s / 255.0).abs() < 1e-5);
            }
        }
    }
    assert!(EvalTransform {
        resize: 10,
        crop: 16,
        ..e
    }
    .check()
    .is_err());
}

#[test]
fn recipe_defaults_are_the_authors_and_round_trip_through_toml() {
    let r = RecipeConfig::default();
    assert_eq!(r.views.len(), 2);
    for v in &r.views {
        assert_eq!(v.crop.size, 224);
        assert_eq!(v.crop.scale, (0.08, 1.0));
        assert_eq!(v.crop.interpolation, Interpolation::Bicubic);
        assert_eq!(v.flip_p, 0.5);
        assert_eq!(
            (
                v.color_jitter.brightness,
                v.color_jitter.contrast,
                v.color_jitter.saturation,
                v.color_jitter.hue
            ),
            (0.4, 0.4, 0.2, 0.1)
        );
        assert_eq!(v.color_jitter.p, 0.8);
        assert_eq!(v.grayscale.p, 0.2);
        assert_eq!(v.blur.sigma, (0.1, 2.0));
        assert_eq!(v.normalize, Normalize::IMAGENET);
    }
    assert_eq!((r.views[0].blur.p, r.views[1].blur.p), (1.0, 0.1));
    assert_eq!((r.views[0].solarize.p, r.views[1].solarize.p), (0.0, 0.2));
    let text = toml::to_string(&r).unwrap();
    let back: RecipeConfig = toml::from_str(&text).unwrap();
    assert_eq!(back, r);
    assert!(r.clone().check().is_ok());

    let bad = |f: &dyn Fn(&mut RecipeConfig), field: &str| {
        let mut c = RecipeConfig::default();
        f(&mut c);
        match c.check() {
            Err(DataError::InvalidParameter { field: got, .. }) => assert_eq!(got, field),
            other => panic!("{field}: {other:?}"),
        }
    };
    bad(&|c| c.views[1].flip_p = 1.5, "views[1].flip_p");
    bad(
        &|c| c.views[0].crop.scale = (0.9, 0.1),
        "views[0].crop.scale",
    );
    bad(
        &|c| c.views[0].blur.kernel = KernelSize::Fixed { size: 4 },
        "views[0].blur.kernel.size",
    );
    bad(
        &|c| c.views[1].color_jitter.hue = 0.6,
        "views[1].color_jitter.hue",
    );
    bad(
        &|c| c.views[0].blur.sigma = (0.0, 1.0),
        "views[0].blur.sigma",
    );
    bad(&|c| c.views.clear(), "views");
    assert_eq!(RecipeConfig::with_size(32).views[1].crop.size, 32);
}

#[test]
fn probabilities_are_per_view() {
    use directclr::data::augment::ViewConfig;
    // Everything deterministic except that view 0 always solarises at threshold 0 (x → 1 − x)
    // and view 1 never does: the two views then sum to one everywhere.
    let mut v = ViewConfig::probe_train(12);
    v.crop.scale = (1.0, 1.0);
    v.crop.ratio = (1.0, 1.0);
    v.flip_p = 0.0;
    let mut v0 = v;
    v0.solarize.threshold = 0.0;
    v0.solarize.p = 1.0;
    let mut v1 = v;
    v1.solarize.p = 0.0;
    let recipe = RecipeConfig {
        views: vec![v0, v1],
    }
    .check()
    .unwrap();
    let src = planar_u8(3, 12, 12, 10);
    let img = ImageRef {
        data: &src,
        channels: 3,
        height: 12,
        width: 12,
        layout: Layout::Planar,
    };
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut s = Scratch::default();
    let (mut a, mut b) = (vec![0.0; 3 * 144], vec![0.0; 3 * 144]);
    recipe.views()[0].apply(img, &mut rng, &mut s, &mut a);
    recipe.views()[1].apply(img, &mut rng, &mut s, &mut b);
    for (x, y) in a.iter().zip(&b) {
        // Same resampled bits in both views; fl(1 − x) (≤ u) and this sum (≤ u): ≤ 2u < 1e-6.
        assert!((x + y - 1.0).abs() < 1e-6);
    }
    // Blur with p = 1 in one view only: the other is the plain resized image.
    let mut v2 = v;
    v2.blur.p = 1.0;
    v2.blur.kernel = KernelSize::Fixed { size: 5 };
    let recipe = RecipeConfig { views: vec![v2, v] }.check().unwrap();
    recipe.views()[0].apply(img, &mut rng, &mut s, &mut a);
    recipe.views()[1].apply(img, &mut rng, &mut s, &mut b);
    let plain: Vec<f32> = src.iter().map(|&p| p as f32 / 255.0).collect();
    // Identity resampling, as in the resampling test: ≤ 3u < 1e-6.
    assert!(max_diff(&b, &plain) < 1e-6);
    // Not a rounding bound: blurring random pixels (σ drawn from the seeded ChaCha8 stream)
    // moves them by ≫ 1e-3, while rounding moves them by < 1e-6.
    assert!(max_diff(&a, &plain) > 1e-3);
}

//! The AVX2 + FMA kernels and the baseline ones give the same bits (own test binary: forcing the
//! baseline path is process-wide).

use directclr::data::augment::{force_portable_kernels, RecipeConfig, Scratch};
use directclr::data::{ImageRef, Layout};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn run_recipe() -> Vec<Vec<u32>> {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let (h, w) = (53, 61);
    let px: Vec<u8> = (0..h * w * 3).map(|_| rng.gen()).collect();
    let img = ImageRef {
        data: &px,
        channels: 3,
        height: h,
        width: w,
        layout: Layout::Interleaved,
    };
    let mut cfg = RecipeConfig::with_size(40);
    for v in &mut cfg.views {
        v.blur.p = 1.0;
        v.color_jitter.p = 1.0;
        v.solarize.p = 0.5;
    }
    let recipe = cfg.check().unwrap();
    let mut s = Scratch::default();
    let mut out = vec![0.0f32; 3 * 40 * 40];
    let mut all = Vec::new();
    for _ in 0..20 {
        for v in recipe.views() {
            v.apply(img, &mut rng, &mut s, &mut out);
            v.normalize.apply(&mut out);
            all.push(out.iter().map(|x| x.to_bits()).collect());
        }
    }
    all
}

#[test]
fn simd_and_baseline_kernels_agree_bit_for_bit() {
    force_portable_kernels(false);
    let fast = run_recipe();
    force_portable_kernels(true);
    let portable = run_recipe();
    force_portable_kernels(false);
    // Exact equality of two code paths on the same machine: the kernels spell out every f32
    // operation and its order (Rust never reassociates or contracts; `mul_add` is one fused
    // rounding on both paths, in hardware or in libm's fmaf), so IEEE-754 gives the same bits.
    assert_eq!(fast, portable);
}

//! Standard normal samples in `f32`, many at a time, by the Box–Muller transform with
//! vectorisable logarithm and sine/cosine polynomials: z1 = r·cos θ, z2 = r·sin θ with
//! r = √(−2 ln u) and θ uniform on the circle.
//!
//! Each pair takes one 64-bit random number: 24 bits make u ∈ [2⁻²⁵, 1 − 2⁻²⁵] (so |z| ≤ 5.9,
//! a truncation of probability below 4·10⁻⁹), 2 bits the quadrant of θ and 24 bits its angle
//! within the quadrant.

use rand::Rng;

/// Pairs per block: the math runs over blocks of this many lanes.
const BLOCK: usize = 16;

/// ln x for x > 0 (normal floats), relative error below 1e-7: x = 2^e·m with m ∈ [√½, √2),
/// ln m = 2·atanh(s), s = (m − 1)/(m + 1), |s| ≤ 0.172, by its series to s⁹.
#[inline(always)]
fn ln(x: f32) -> f32 {
    let bits = x.to_bits();
    let mut e = ((bits >> 23) & 0xff) as i32 - 127;
    let mut m = f32::from_bits((bits & 0x007f_ffff) | 0x3f80_0000);
    let big = m > std::f32::consts::SQRT_2;
    m = if big { m * 0.5 } else { m };
    e += big as i32;
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let p = ((((1.0 / 9.0) * s2 + 1.0 / 7.0) * s2 + 1.0 / 5.0) * s2 + 1.0 / 3.0) * s2 + 1.0;
    e as f32 * std::f32::consts::LN_2 + 2.0 * s * p
}

/// (sin φ, cos φ) for |φ| ≤ π/4 by Taylor polynomials to degree 11 and 10 (error < 2e-9).
#[inline(always)]
fn sin_cos(phi: f32) -> (f32, f32) {
    let x2 = phi * phi;
    let s = phi
        * (1.0
            + x2 * (-1.0 / 6.0
                + x2 * (1.0 / 120.0
                    + x2 * (-1.0 / 5040.0 + x2 * (1.0 / 362_880.0 - x2 / 39_916_800.0)))));
    let c = 1.0
        + x2 * (-0.5
            + x2 * (1.0 / 24.0 + x2 * (-1.0 / 720.0 + x2 * (1.0 / 40_320.0 - x2 / 3_628_800.0))));
    (s, c)
}

/// The math of one block: from BLOCK random words to 2·BLOCK normals (the cosines first, then
/// the sines), written as straight lane-wise loops so the compiler vectorises them.
#[inline(always)]
fn block(words: &[u64; BLOCK], out: &mut [f32]) {
    let mut r = [0.0f32; BLOCK];
    let mut c = [0.0f32; BLOCK];
    let mut s = [0.0f32; BLOCK];
    for k in 0..BLOCK {
        let w = words[k];
        let u = ((w >> 40) as u32) as f32 * (1.0 / 16_777_216.0) + 1.0 / 33_554_432.0;
        r[k] = (-2.0 * ln(u)).sqrt();
        // φ uniform in [−π/4, π/4).
        let phi = ((w & 0xff_ffff) as u32) as f32 * (std::f32::consts::FRAC_PI_2 / 16_777_216.0)
            - std::f32::consts::FRAC_PI_4;
        let (sin, cos) = sin_cos(phi);
        // Rotate by q·π/2 (q = the quadrant bits): q odd swaps cos and sin; the sign of the
        // cosine flips for q ∈ {1, 2}, that of the sine for q ∈ {2, 3}.
        let q = ((w >> 38) & 3) as u32;
        let swap = (q & 1).wrapping_neg(); // all ones when q is odd
        let (cb, sb) = (cos.to_bits(), sin.to_bits());
        let first = (cb & !swap) | (sb & swap);
        let second = (sb & !swap) | (cb & swap);
        c[k] = f32::from_bits(first ^ (((q ^ (q >> 1)) & 1) << 31));
        s[k] = f32::from_bits(second ^ ((q >> 1) << 31));
    }
    for k in 0..BLOCK {
        out[k] = r[k] * c[k];
        out[BLOCK + k] = r[k] * s[k];
    }
}

#[inline(always)]
fn blocks<G: Rng + ?Sized>(rng: &mut G, out: &mut [f32]) {
    for chunk in out.chunks_exact_mut(2 * BLOCK) {
        let words: [u64; BLOCK] = std::array::from_fn(|_| rng.next_u64());
        block(&words, chunk);
    }
}

// No FMA in these paths: the samples are the same bits whatever the instruction set.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2")]
unsafe fn blocks_avx512<G: Rng + ?Sized>(rng: &mut G, out: &mut [f32]) {
    blocks(rng, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn blocks_avx2<G: Rng + ?Sized>(rng: &mut G, out: &mut [f32]) {
    blocks(rng, out)
}

fn blocks_portable<G: Rng + ?Sized>(rng: &mut G, out: &mut [f32]) {
    blocks(rng, out)
}

/// Fills `out` with independent standard normal samples. The values depend only on the
/// random stream, not on the instruction set.
pub fn fill_standard_normal_f32<G: Rng + ?Sized>(rng: &mut G, out: &mut [f32]) {
    let whole = out.len() / (2 * BLOCK) * (2 * BLOCK);
    let (body, rest) = out.split_at_mut(whole);
    #[cfg(target_arch = "x86_64")]
    match *super::real::simd_level() {
        // SAFETY: simd_level checked that the CPU has the features of each path.
        super::real::SimdLevel::Avx512 => unsafe { blocks_avx512(rng, body) },
        super::real::SimdLevel::Avx2Fma => unsafe { blocks_avx2(rng, body) },
        super::real::SimdLevel::Portable => blocks_portable(rng, body),
    }
    #[cfg(not(target_arch = "x86_64"))]
    blocks_portable(rng, body);
    if !rest.is_empty() {
        let mut tail = [0.0f32; 2 * BLOCK];
        blocks_portable(rng, &mut tail);
        rest.copy_from_slice(&tail[..rest.len()]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn ln_and_sin_cos_are_accurate() {
        // These are plain scalar f32 operations (no FMA contraction in Rust), the same bits on
        // every x86-64; the bounds are in units of u32 = ε32/2 (round to nearest).
        let u32_ = f32::EPSILON as f64 / 2.0;
        for k in 1..10_000 {
            let x = k as f32 * 1e-4;
            // ln x = e·ln2 + 2s·p: s = (m − 1)/(m + 1) (m − 1 exact) 2u, s² 5u, p ≈ 1 to 1.1u, the
            // product u: 2s·p to 4.1u of |ln m| ≤ 0.347, i.e. ≤ 1.42u; e·LN_2 ≤ 1.05u·|e ln2|
            // (f32 ln2 is off by 0.05u) with |e ln2| ≤ |ln x| + 0.347; the final sum u·|ln x|;
            // the series' truncation 2s¹¹/11/(1 − s²) < 7e-10. Total ≤ u·(2.05|ln x| + 1.79)
            // + 7e-10 (was 2e-7·max(|ln x|, 1), below this bound near |ln x| = 1).
            let want = (x as f64).ln();
            let bound = u32_ * (2.1 * want.abs() + 1.8) + 1e-9;
            assert!(((ln(x) as f64) - want).abs() <= bound, "ln {x}");
            let phi = (k as f32 / 10_000.0 - 0.5) * std::f32::consts::FRAC_PI_2;
            let (s, c) = sin_cos(phi);
            // Horner in f32 for |φ| ≤ π/4: sin ≤ 1.9u, cos ≤ 2.3u (the last two steps: the
            // product x²·q ≤ 0.31 to 4u, the sum with 1 to u), plus the Taylor truncation < 2e-9
            // (φ¹³/13!, φ¹²/12!): ≤ 2.3·u32 + 2e-9 = 1.4e-7 < 2e-7.
            assert!(
                (s as f64 - (phi as f64).sin()).abs() < 2e-7
                    && (c as f64 - (phi as f64).cos()).abs() < 2e-7
            );
        }
    }

    #[test]
    fn every_instruction_set_gives_the_same_samples() {
        let draw = |f: &dyn Fn(&mut rand_xoshiro::Xoshiro256PlusPlus, &mut [f32])| {
            let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(9);
            let mut v = vec![0.0f32; 4 * BLOCK];
            f(&mut rng, &mut v);
            v
        };
        let portable = draw(&|r, v| blocks_portable(r, v));
        // Exact equality is right: the same IEEE operations in the same order (no FMA in these
        // paths, and Rust never contracts a·b + c), so every instruction set gives the same bits.
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx2") {
                assert_eq!(portable, draw(&|r, v| unsafe { blocks_avx2(r, v) }));
            }
            if is_x86_feature_detected!("avx512f") {
                assert_eq!(portable, draw(&|r, v| unsafe { blocks_avx512(r, v) }));
            }
        }
    }

    #[test]
    fn samples_follow_the_standard_normal() {
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(1);
        let n = 1_000_000;
        let mut v = vec![0.0f32; n + 5]; // a length that is not a multiple of the block
        fill_standard_normal_f32(&mut rng, &mut v);
        let xs: Vec<f64> = v.iter().map(|&x| x as f64).collect();
        let m = xs.len() as f64;
        let mean = xs.iter().sum::<f64>() / m;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / m;
        let kurt = xs.iter().map(|x| (x - mean).powi(4)).sum::<f64>() / m / (var * var);
        // Statistical bounds, not rounding ones: the samples are the same bits on every machine
        // (see above) and the f64 sums run in a fixed order (rounding ≤ n·ε64 ≈ 2e-10 relative,
        // negligible). Standard errors: mean 1/√n = 1e-3, variance √(2/n) = 1.4e-3, kurtosis
        // √(24/n) = 4.9e-3; the bounds are 5σ, 5σ and 6σ. The approximations of ln and sin/cos
        // (≤ 2.5e-7 relative) and the truncation at |z| ≤ 5.9 move these by < 1e-6.
        assert!(
            mean.abs() < 5e-3 && (var - 1.0).abs() < 7e-3 && (kurt - 3.0).abs() < 3e-2,
            "{mean} {var} {kurt}"
        );
        // The two members of a pair (cosine at k, sine at BLOCK + k) are uncorrelated.
        let corr = xs
            .chunks_exact(2 * BLOCK)
            .flat_map(|b| (0..BLOCK).map(move |k| b[k] * b[BLOCK + k]))
            .sum::<f64>()
            / (m / 2.0);
        // Standard error 1/√(n/2) = 1.4e-3: 5σ.
        assert!(corr.abs() < 7e-3, "{corr}");
        // Kolmogorov–Smirnov against Φ (critical distance at 0.1 %: 1.95/√n).
        let mut sorted = xs.clone();
        sorted.sort_by(f64::total_cmp);
        let d = sorted
            .iter()
            .enumerate()
            .map(|(k, &x)| {
                (phi(x) - k as f64 / m)
                    .abs()
                    .max((phi(x) - (k + 1) as f64 / m).abs())
            })
            .fold(0.0, f64::max);
        // Φ's approximation error (1.5e-7) is ≪ the critical distance 1.95e-3.
        assert!(d < 1.95 / m.sqrt(), "KS distance {d}");
        // Tail mass beyond 3: 2(1 − Φ(3)) = 2.70e-3, standard error √(p(1 − p)/n) = 5.2e-5: the
        // bound 2.5e-4 is 4.8σ (the constant's rounding to 2.70e-3 adds < 5e-6).
        let tail = xs.iter().filter(|x| x.abs() > 3.0).count() as f64 / m;
        assert!((tail - 2.70e-3).abs() < 2.5e-4, "{tail}");
    }

    /// Φ through erf by Abramowitz–Stegun 7.1.26 (absolute error below 1.5e-7), ample for a KS
    /// test at n = 10⁶ (critical distance 2e-3).
    fn phi(x: f64) -> f64 {
        let z = x.abs() / std::f64::consts::SQRT_2;
        let t = 1.0 / (1.0 + 0.327_591_1 * z);
        let erf = 1.0
            - (((((1.061_405_429 * t - 1.453_152_027) * t) + 1.421_413_741) * t - 0.284_496_736)
                * t
                + 0.254_829_592)
                * t
                * (-z * z).exp();
        0.5 * (1.0 + x.signum() * erf)
    }
}

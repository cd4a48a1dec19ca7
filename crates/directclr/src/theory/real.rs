//! The scalar types the toy models run in: `f32` (the authors' precision, fast) and `f64`
//! (for checking closed forms to 1e-10).

use std::sync::OnceLock;

use nalgebra::{DMatrix, RealField};
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

/// A floating-point scalar for the toy models.
pub trait Real: RealField + Copy + Default + Send + Sync + 'static {
    /// Converts from `f64` (rounding for `f32`).
    fn of(v: f64) -> Self;
    /// Converts to `f64`.
    fn f64(self) -> f64;
    /// Draws one standard normal sample.
    fn standard_normal<R: Rng + ?Sized>(rng: &mut R) -> Self;
    /// Fills `out` with standard normal samples.
    fn fill_standard_normal<R: Rng + ?Sized>(rng: &mut R, out: &mut [Self]) {
        out.iter_mut().for_each(|v| *v = Self::standard_normal(rng));
    }
    /// `x ← exp(x)` for every element.
    fn exp_in_place(xs: &mut [Self]);
    /// Softmax of `xs` in place; returns (max, Σ exp(x − max)), whose log-sum-exp is
    /// max + ln(sum) (left to the caller, which can batch the logarithms).
    fn softmax_in_place(xs: &mut [Self]) -> (f64, f64) {
        softmax_generic(xs)
    }
    /// The name used in reports, `f32` or `f64`.
    const NAME: &'static str;
    /// matrixmultiply's general product for this type (see [`gemm`]); for `f32`, small products
    /// skip its packing and keep its bits ([`super::small_gemm`]).
    ///
    /// # Safety
    /// The pointers and strides must describe valid m×k, k×n and m×n matrices, `c` not
    /// overlapping `a` or `b`.
    #[allow(clippy::too_many_arguments)]
    unsafe fn gemm_raw(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        beta: Self,
        c: *mut Self,
        rsc: isize,
        csc: isize,
    );
}

impl Real for f64 {
    fn of(v: f64) -> Self {
        v
    }
    fn f64(self) -> f64 {
        self
    }
    fn standard_normal<R: Rng + ?Sized>(rng: &mut R) -> Self {
        StandardNormal.sample(rng)
    }
    fn exp_in_place(xs: &mut [Self]) {
        xs.iter_mut().for_each(|x| *x = x.exp());
    }
    const NAME: &'static str = "f64";
    unsafe fn gemm_raw(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        beta: Self,
        c: *mut Self,
        rsc: isize,
        csc: isize,
    ) {
        matrixmultiply::dgemm(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc)
    }
}

impl Real for f32 {
    fn of(v: f64) -> Self {
        v as f32
    }
    fn f64(self) -> f64 {
        self as f64
    }
    fn standard_normal<R: Rng + ?Sized>(rng: &mut R) -> Self {
        StandardNormal.sample(rng)
    }
    fn fill_standard_normal<R: Rng + ?Sized>(rng: &mut R, out: &mut [Self]) {
        super::gaussian::fill_standard_normal_f32(rng, out)
    }
    #[inline(always)]
    fn exp_in_place(xs: &mut [Self]) {
        xs.iter_mut().for_each(|x| *x = fast_exp_f32(*x));
    }
    fn softmax_in_place(xs: &mut [Self]) -> (f64, f64) {
        #[cfg(target_arch = "x86_64")]
        {
            match *simd_level() {
                // SAFETY: the CPU supports the features of each path, checked by simd_level.
                SimdLevel::Avx512 => return unsafe { softmax_f32_avx512(xs) },
                SimdLevel::Avx2Fma => return unsafe { softmax_f32_avx2_fma(xs) },
                SimdLevel::Portable => {}
            }
        }
        softmax_generic(xs)
    }
    const NAME: &'static str = "f32";
    unsafe fn gemm_raw(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        beta: Self,
        c: *mut Self,
        rsc: isize,
        csc: isize,
    ) {
        super::small_gemm::sgemm(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc)
    }
}

/// Whether an operand of [`gemm`] is used as stored or transposed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// As stored.
    N,
    /// Transposed.
    T,
}

/// C ← α·op(A)·op(B) + β·C on nalgebra's column-major matrices, without copying a transpose
/// (matrixmultiply reads any strides).
/// # Shapes
/// op(A): [m, k]; op(B): [k, n]; C: [m, n]
/// # Panics
/// If the shapes do not agree (a programming error, never user input).
pub fn gemm<T: Real>(
    alpha: T,
    a: &DMatrix<T>,
    op_a: Op,
    b: &DMatrix<T>,
    op_b: Op,
    beta: T,
    c: &mut DMatrix<T>,
) {
    // Column-major: element (i, j) sits at i + j·rows, so row stride 1 and column stride rows.
    let view = |m: &DMatrix<T>, op: Op| {
        let (r, k) = m.shape();
        match op {
            Op::N => (r, k, 1isize, r as isize),
            Op::T => (k, r, r as isize, 1isize),
        }
    };
    let (m, k, rsa, csa) = view(a, op_a);
    let (k2, n, rsb, csb) = view(b, op_b);
    assert!(
        k == k2 && c.shape() == (m, n),
        "gemm shapes: op(A) {m}×{k}, op(B) {k2}×{n}, C {:?}",
        c.shape()
    );
    let rsc = 1isize;
    let csc = m as isize;
    // SAFETY: the views describe the matrices' own storage, checked to agree in shape above;
    // `c` is borrowed mutably, so it cannot alias `a` or `b`.
    unsafe {
        T::gemm_raw(
            m,
            k,
            n,
            alpha,
            a.as_ptr(),
            rsa,
            csa,
            b.as_ptr(),
            rsb,
            csb,
            beta,
            c.as_mut_ptr(),
            rsc,
            csc,
        )
    }
}

/// `exp(x)` for `f32`, written without branches so the compiler vectorises a loop of it. Range
/// reduction x = n·ln2 + r with |r| ≤ ln2/2, then a degree-6 polynomial for e^r and the
/// exponent bits of 2^n.
///
/// Accuracy for x ∈ [−87.3, 88.376] (a softmax uses x ≤ 0, after the max is subtracted): relative
/// error ≤ 5u = 2.5·ε32 by derivation (the test below); measured over every f32 of the range
/// (2,237,618,718 values, against f64 `exp`): ≤ 2.14·ε32, i.e. ≤ 3.02 ulp (2.13·ε32 and 3.01
/// ulp for x ≤ 0). Scalar f32 without FMA, so these are the same bits on every x86-64 CPU.
/// Outside it: x < −87.3 (and −∞) gives e^−87.3 ≈ 1.22e−38, an absolute error below 1.3e−38
/// (nothing next to a softmax's largest term, 1); x > 88.376 (2^n's biased exponent reaching
/// 255) gives +∞, though e^x overflows f32 only above 88.722; NaN gives NaN.
#[inline(always)]
pub fn fast_exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Round to nearest by adding and subtracting 1.5·2^23 (vectorises, unlike `round`).
    const SHIFTER: f32 = 12_582_912.0;
    let x = x.clamp(-87.3, 88.7);
    let n = (x * LOG2E + SHIFTER) - SHIFTER;
    let r = x - n * LN2_HI - n * LN2_LO;
    // Taylor coefficients of e^r to degree 6 (|r| ≤ 0.347: truncation error < 1.3e-8).
    let p = 1.0 / 720.0;
    let p = p * r + 1.0 / 120.0;
    let p = p * r + 1.0 / 24.0;
    let p = p * r + 1.0 / 6.0;
    let p = p * r + 0.5;
    let p = p * r + 1.0;
    let p = p * r + 1.0;
    // 2^n from the bits: the low mantissa bits of 1.5·2^23 + 127 + n hold the biased exponent
    // n + 127 ∈ [1, 255] (255, +∞, for x > 88.376); shifting them into the exponent field needs
    // no float→int conversion.
    let two_n = f32::from_bits((n + (SHIFTER + 127.0)).to_bits() << 23);
    p * two_n
}

/// The largest element, accumulated in 8 independent lanes so the loop vectorises.
/// `xs` must not be empty.
#[inline(always)]
pub fn lane_max<T: Real>(xs: &[T]) -> T {
    let mut acc = [xs[0]; 8];
    let chunks = xs.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for k in 0..8 {
            acc[k] = if c[k] > acc[k] { c[k] } else { acc[k] };
        }
    }
    rest.iter()
        .chain(acc.iter())
        .copied()
        .fold(xs[0], |a, b| if b > a { b } else { a })
}

/// The sum, accumulated in 8 independent lanes so the loop vectorises (the order of the
/// additions is fixed, so the result is deterministic).
#[inline(always)]
pub fn lane_sum<T: Real>(xs: &[T]) -> T {
    let mut acc = [T::zero(); 8];
    let chunks = xs.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for k in 0..8 {
            acc[k] += c[k];
        }
    }
    acc.iter()
        .chain(rest.iter())
        .copied()
        .fold(T::zero(), |a, b| a + b)
}

/// Softmax in place, returning log-sum-exp: max-shifted exponentials, normalised. The sums
/// run in 8 fixed lanes, so every instruction set gives the same bits.
#[inline(always)]
fn softmax_generic<T: Real>(xs: &mut [T]) -> (f64, f64) {
    let max = lane_max(xs);
    xs.iter_mut().for_each(|v| *v -= max);
    T::exp_in_place(xs);
    let sum = lane_sum(xs);
    let inv = T::one() / sum;
    xs.iter_mut().for_each(|v| *v *= inv);
    (max.f64(), sum.f64())
}

/// [`softmax_generic`] for `f32` compiled for AVX2 with fused multiply-adds in the exponential
/// (8 lanes per instruction, one rounding per polynomial step). Its results differ from the
/// portable path in the last bits; on one machine runs stay repeatable bit for bit (as with
/// matrixmultiply, whose kernels also depend on the CPU).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn softmax_f32_avx2_fma(xs: &mut [f32]) -> (f64, f64) {
    softmax_f32_fma(xs)
}

/// The same with 16-lane AVX-512 vectors (bit-identical to the AVX2 + FMA path).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn softmax_f32_avx512(xs: &mut [f32]) -> (f64, f64) {
    softmax_f32_fma(xs)
}

/// The instruction sets the hand-vectorised kernels can use on this CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimdLevel {
    /// AVX-512F (with AVX2 and FMA).
    Avx512,
    /// AVX2 and FMA.
    Avx2Fma,
    /// Whatever the build targets (SSE2 on x86-64).
    Portable,
}

/// The best [`SimdLevel`] of this CPU, detected once.
pub fn simd_level() -> &'static SimdLevel {
    static LEVEL: OnceLock<SimdLevel> = OnceLock::new();
    LEVEL.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            let avx2_fma = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
            if avx2_fma && is_x86_feature_detected!("avx512f") {
                return SimdLevel::Avx512;
            }
            if avx2_fma {
                return SimdLevel::Avx2Fma;
            }
        }
        SimdLevel::Portable
    })
}

#[inline(always)]
fn softmax_f32_fma(xs: &mut [f32]) -> (f64, f64) {
    const LANES: usize = 16;
    let max = lane_max(xs);
    // Exponentials and their sum in one pass, in 16 fixed lanes.
    let mut acc = [0.0f32; LANES];
    let mut chunks = xs.chunks_exact_mut(LANES);
    for c in &mut chunks {
        for k in 0..LANES {
            let e = fast_exp_f32_fma(c[k] - max);
            c[k] = e;
            acc[k] += e;
        }
    }
    let mut sum = acc.iter().sum::<f32>();
    for v in chunks.into_remainder() {
        *v = fast_exp_f32_fma(*v - max);
        sum += *v;
    }
    let inv = 1.0 / sum;
    xs.iter_mut().for_each(|v| *v *= inv);
    (max as f64, sum as f64)
}

/// [`fast_exp_f32`] with fused multiply-adds; only for code compiled with FMA enabled (elsewhere
/// `mul_add` is a slow library call). Measured over every f32 of [−87.3, 88.376]: ≤ 1.94·ε32,
/// ≤ 2.74 ulp; the same behaviour outside it.
#[inline(always)]
fn fast_exp_f32_fma(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const SHIFTER: f32 = 12_582_912.0;
    let x = x.clamp(-87.3, 88.7);
    let n = x.mul_add(LOG2E, SHIFTER) - SHIFTER;
    let r = n.mul_add(-LN2_LO, n.mul_add(-LN2_HI, x));
    let p = (1.0f32 / 720.0).mul_add(r, 1.0 / 120.0);
    let p = p.mul_add(r, 1.0 / 24.0);
    let p = p.mul_add(r, 1.0 / 6.0);
    let p = p.mul_add(r, 0.5);
    let p = p.mul_add(r, 1.0);
    let p = p.mul_add(r, 1.0);
    p * f32::from_bits((n + (SHIFTER + 127.0)).to_bits() << 23)
}

/// Converts a matrix to `f64`.
pub fn to_f64<T: Real>(m: &DMatrix<T>) -> DMatrix<f64> {
    m.map(|v| v.f64())
}

/// Converts an `f64` matrix to `T`.
pub fn from_f64<T: Real>(m: &DMatrix<f64>) -> DMatrix<T> {
    m.map(T::of)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_paths_agree_and_sum_to_one() {
        let mut xs: Vec<f32> = (0..203)
            .map(|k| ((k * 37 % 101) as f32 - 50.0) * 0.37)
            .collect();
        let mut portable = xs.clone();
        let (m, s) = <f32 as Real>::softmax_in_place(&mut xs);
        let (mp, sp) = softmax_generic(&mut portable);
        let (lse, lse_portable) = (m + s.ln(), mp + sp.ln());
        // Bounds in u = ε32/2. The sums run in fixed lanes: an exponential passes through
        // ≤ 11 + 15 + 11 = 37 roundings (16 lanes over 203 values: 12 per lane, the 16 lanes, the
        // 11 left over) or ≤ 24 + 10 = 34 (8 lanes), so each path's sum is within 37u of the sum
        // of its computed exponentials; each exponential is within 5u of e^x (fast_exp_f32: the
        // degree-6 truncation r⁷/7!/e^r ≤ 2.7u, Horner 1.9u, the reduced argument 0.4u).
        let sum: f64 = xs.iter().map(|&v| v as f64).sum();
        // Σ e_i·(1/S): the sum's 37u, the reciprocal and the products 2u (the exponentials'
        // errors cancel in the normalisation): ≤ 39u = 2.3e-6 < 1e-5.
        assert!((sum - 1.0).abs() < 1e-5, "{sum}");
        // ln S per path: 5u (exponentials) + 37u (sum) = 42u, two paths 84u = 5.0e-6 < 1e-5.
        assert!((lse - lse_portable).abs() < 1e-5);
        for (a, b) in xs.iter().zip(&portable) {
            // Per weight: the two exponentials 2·5u, the two sums 37u + 34u + 10u (the
            // exponentials' differences), two reciprocals and two products 4u: ≤ 95u < 48·ε32
            // (was 4·ε32, tighter than this bound).
            assert!(
                (a - b).abs() <= 48.0 * f32::EPSILON * b.abs().max(1e-30),
                "{a} vs {b}"
            );
        }
    }

    /// Every `step`-th f32 of [lo, hi] (by bit pattern, each sign separately).
    fn dense(lo: f32, hi: f32, step: u32) -> impl Iterator<Item = f32> {
        let negative = (0x8000_0000u32..=lo.to_bits()).step_by(step as usize);
        let positive = (0u32..=hi.to_bits()).step_by(step as usize);
        negative.chain(positive).map(f32::from_bits)
    }

    #[test]
    fn fast_exp_matches_std_within_a_few_ulp() {
        // Scalar f32 without FMA (the same bits on every x86-64): Cody–Waite reduction with an
        // exact n·LN2_HI, r to 0.4u; the degree-6 Taylor truncation r⁷/7!·e^|r|/e^r ≤ 2.7u for
        // |r| ≤ ln2/2; Horner's last two steps 1.9u; 2^n exact (normal range): ≤ 5u = 2.5·ε32
        // (u = ε32/2; the f64 reference is exact to 1e-16). Every f32 of the range was measured
        // once (2.2e9 values): ≤ 2.14·ε32 plain, 1.94·ε32 with FMA. Here every 499th, 4.5e6.
        // (Was a 0.0137 grid over [−87, 88], 12,800 values, against 4·ε32.)
        let bound = 5.0 * f32::EPSILON as f64 / 2.0;
        let (mut worst, mut worst_fma, mut count) = (0.0f64, 0.0f64, 0usize);
        for x in dense(-87.3, 88.376, 499) {
            let want = (x as f64).exp();
            worst = worst.max(((fast_exp_f32(x) as f64 - want) / want).abs());
            worst_fma = worst_fma.max(((fast_exp_f32_fma(x) as f64 - want) / want).abs());
            count += 1;
        }
        assert!(count > 4_000_000, "{count}");
        assert!(worst <= bound, "worst relative error {worst}");
        assert!(
            worst_fma <= bound,
            "worst relative error with FMA {worst_fma}"
        );
        // Outside the range: e^−87.3 below it (absolute error < 1.3e-38), +∞ above 88.376 (by
        // the exponent bits; e^x itself overflows above 88.722), NaN kept.
        for x in [-87.31f32, -100.0, -1e30, f32::NEG_INFINITY] {
            for e in [fast_exp_f32(x), fast_exp_f32_fma(x)] {
                assert!(
                    e > 0.0 && ((e as f64) - (x as f64).exp()).abs() < 1.3e-38,
                    "{x}: {e}"
                );
            }
        }
        for x in [88.38f32, 88.7, 89.0, 1e30, f32::INFINITY] {
            assert_eq!(fast_exp_f32(x), f32::INFINITY, "{x}");
            assert_eq!(fast_exp_f32_fma(x), f32::INFINITY, "{x}");
        }
        assert!(fast_exp_f32(f32::NAN).is_nan() && fast_exp_f32_fma(f32::NAN).is_nan());
    }
}

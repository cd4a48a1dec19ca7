//! `f32` products of the toy models without matrixmultiply's packing, giving matrixmultiply's
//! bits.
//!
//! The toy models multiply small matrices (d = 16 features, 2B = 256 rows) about a dozen times a
//! step. matrixmultiply packs both operands into aligned panels and allocates its buffers on
//! every call, which at these sizes costs more than its kernel (21 % of a step against 12 %,
//! profiled on the implicit-regularisation case). This product skips that work and computes
//! every element with **the same floating-point operations in the same order** as
//! matrixmultiply 0.3 does, so a run is bit for bit the run it was before (every table in the
//! docs stays valid):
//!
//! - Within a block of `KC` = 256 steps of k, an element is one chain of fused multiply-adds
//!   over k in order, from +0: `s ← fma(a[i,p], b[p,j], s)` (matrixmultiply's FMA kernels).
//! - The block's epilogue depends on whether the element lies in a full `MR`×`NR` tile of C (the
//!   kernel writes it) or in a partial tile at the bottom or right edge (the kernel writes a
//!   buffer with β = 0, then a scalar loop adds βC):
//!   - full, β = 0: `α·s` (AVX-512 kernel: a product; AVX2 kernel: `fma(α, s, +0)`, which
//!     differs only in the sign of a zero);
//!   - full, β ≠ 0: `fma(α, s, β·c)`;
//!   - partial: `m = ` the β = 0 value above, then `c ← m` (β = 0) or `c ← β·c + m`.
//! - Blocks after the first use β = 1.
//!
//! matrixmultiply picks its kernel from the CPU and from how it was built (its AVX-512 kernel,
//! `MR` = `NR` = 16, needs rustc ≥ 1.89; its AVX2+FMA kernel has `MR` = `NR` = 8). Rather than
//! guess, [`mode`] runs a probe once through matrixmultiply and through both candidate rules and
//! takes the rule that reproduces it bit for bit; where neither does (a CPU without FMA, another
//! matrixmultiply), every product goes to matrixmultiply. The test
//! `small_products_match_matrixmultiply_bit_for_bit` checks many shapes, strides, α and β.
//!
//! Arithmetic: FMA on AVX-512 (two 16-lane vectors of rows × 8 columns of C in registers) or
//! AVX2 (two 8-lane vectors × 6 columns), vectorised along C's rows (the columns of the toy
//! models' column-major matrices). Operands not laid out for that are copied first (a
//! transposed A, B, A's last partial block of rows): moves, which leave the bits alone.
//!
//! Speed, `cargo bench -p directclr --bench small_gemm` (the shapes of one toy step; results
//! in `benches/theory/small-gemm-results.md`): 1.47× matrixmultiply's speed over a step's
//! products on the 2-core AMD EPYC (AVX-512) the project measures on.

use std::cell::RefCell;
use std::sync::OnceLock;

/// matrixmultiply's k-block (`S_KC` of matrixmultiply 0.3).
const KC: usize = 256;
/// Products up to this many multiply-adds (m·k·n) take this path; larger ones, where cache
/// blocking pays, go to matrixmultiply.
const MAX_WORK: usize = 1 << 22;

/// Which of matrixmultiply's epilogue rules this process reproduces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// matrixmultiply's AVX-512 kernel: 16×16 tiles, β = 0 scales by a product.
    Tile16Mul,
    /// matrixmultiply's AVX2+FMA kernel: 8×8 tiles, β = 0 scales by a fused multiply-add.
    Tile8Fma,
    /// Neither reproduces matrixmultiply here: every product goes to it.
    Off,
}

impl Mode {
    fn tile(self) -> usize {
        match self {
            Mode::Tile16Mul => 16,
            Mode::Tile8Fma => 8,
            Mode::Off => 0,
        }
    }
}

/// The rule in force, decided once by a probe (see the module docs).
pub fn mode() -> Mode {
    static MODE: OnceLock<Mode> = OnceLock::new();
    *MODE.get_or_init(probe)
}

/// C ← α·A·B + β·C for m×k A, k×n B, m×n C with any strides (matrixmultiply's `sgemm`
/// signature), with matrixmultiply's bits.
///
/// # Safety
/// As `matrixmultiply::sgemm`: the pointers and strides describe valid matrices, `c` does not
/// overlap `a` or `b`, and C's strides do not make two elements share memory.
#[allow(clippy::too_many_arguments)]
pub unsafe fn sgemm(
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: *const f32,
    rsa: isize,
    csa: isize,
    b: *const f32,
    rsb: isize,
    csb: isize,
    beta: f32,
    c: *mut f32,
    rsc: isize,
    csc: isize,
) {
    let p = Product {
        m,
        k,
        n,
        alpha,
        a,
        rsa,
        csa,
        b,
        rsb,
        csb,
        beta,
        c,
        rsc,
        csc,
    };
    let mode = mode();
    let small = m
        .checked_mul(k)
        .and_then(|mk| mk.checked_mul(n))
        .is_some_and(|w| w <= MAX_WORK);
    // The copies index A and B with unsigned strides; negative ones (allowed by matrixmultiply,
    // never used by the toy models) go to matrixmultiply.
    let forward = rsa >= 0 && csa >= 0 && rsb >= 0 && csb >= 0;
    if mode == Mode::Off || !small || !forward || m == 0 || n == 0 || k == 0 {
        return p.matrixmultiply();
    }
    // SAFETY: `mode` is not Off only where the probe ran the AVX2+FMA kernel, so the CPU has
    // both; the matrices are the caller's contract.
    #[cfg(target_arch = "x86_64")]
    fma_product(&p, mode);
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("the probe turns this path off off x86-64")
}

/// One product's operands (matrixmultiply's arguments).
struct Product {
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: *const f32,
    rsa: isize,
    csa: isize,
    b: *const f32,
    rsb: isize,
    csb: isize,
    beta: f32,
    c: *mut f32,
    rsc: isize,
    csc: isize,
}

impl Product {
    /// The product by matrixmultiply itself.
    ///
    /// # Safety
    /// As [`sgemm`].
    unsafe fn matrixmultiply(&self) {
        matrixmultiply::sgemm(
            self.m, self.k, self.n, self.alpha, self.a, self.rsa, self.csa, self.b, self.rsb,
            self.csb, self.beta, self.c, self.rsc, self.csc,
        )
    }
}

thread_local! {
    /// Copies of A's rows and of B, reused across calls (see [`Operands`]).
    static PANELS: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// Where the kernel reads A and B. Row block i0.. of A at step q of k is at
/// `a + q·a_stride + i0` for i0 < `a_rows`, and at `tail + q·R` for the last block when
/// `a_rows` < m; B's elements of step q are at `b + q·np`, zero-padded to `np` (a multiple of
/// the tile's columns). Copies only: the bits of the product do not depend on where its
/// operands sit.
struct Operands {
    a: *const f32,
    a_stride: usize,
    a_rows: usize,
    tail: *const f32,
    b: *const f32,
    np: usize,
}

/// Lays out A and B for the kernel, then runs the kernel for this CPU's widest vectors.
///
/// A whose rows are contiguous (`rsa` = 1, the toy models' column-major matrices as stored) is
/// read in place but for its last, partial block of rows, copied zero-padded; a transposed A
/// is copied whole, a column of op(A) at a time. B is always copied (k×n, small next to m·k·n).
#[cfg(target_arch = "x86_64")]
fn fma_product(p: &Product, mode: Mode) {
    PANELS.with(|panels| {
        let (ap, bp) = &mut *panels.borrow_mut();
        let wide = super::real::simd_level() == &super::real::SimdLevel::Avx512;
        let (rows, cols) = if wide {
            (WIDE_ROWS, WIDE_COLS)
        } else {
            (NARROW_ROWS, NARROW_COLS)
        };
        let np = p.n.div_ceil(cols) * cols;
        // SAFETY: every copy stays within the panels' lengths, set just before; the operands
        // are the caller's contract; the CPU has AVX2 and FMA (see `sgemm`), and AVX-512F where
        // `wide`.
        unsafe {
            let ops = if p.rsa == 1 {
                let a_rows = p.m - p.m % rows;
                grow(ap, rows * p.k);
                if a_rows < p.m {
                    for q in 0..p.k {
                        let src = p.a.offset(q as isize * p.csa + a_rows as isize);
                        let dst = &mut ap[q * rows..(q + 1) * rows];
                        let len = p.m - a_rows;
                        dst[..len].copy_from_slice(std::slice::from_raw_parts(src, len));
                        dst[len..].fill(0.0);
                    }
                }
                (p.a, p.csa as usize, a_rows)
            } else {
                let mp = p.m.div_ceil(rows) * rows;
                grow(ap, mp * p.k);
                if p.csa == 1 {
                    transpose_avx2(p.a, p.rsa as usize, p.m, p.k, ap, mp);
                } else {
                    for q in 0..p.k {
                        let src = p.a.offset(q as isize * p.csa);
                        for (i, v) in ap[q * mp..q * mp + p.m].iter_mut().enumerate() {
                            *v = *src.offset(i as isize * p.rsa);
                        }
                    }
                }
                for q in 0..p.k {
                    ap[q * mp + p.m..(q + 1) * mp].fill(0.0);
                }
                (ap.as_ptr(), mp, mp)
            };
            grow(bp, np * p.k);
            if p.rsb == 1 && p.csb != 1 {
                // B stored column by column (the toy models' B as stored): a transposed copy.
                transpose_avx2(p.b, p.csb as usize, p.n, p.k, bp, np);
            } else {
                for q in 0..p.k {
                    let src = p.b.offset(q as isize * p.rsb);
                    for (j, v) in bp[q * np..q * np + p.n].iter_mut().enumerate() {
                        *v = *src.offset(j as isize * p.csb);
                    }
                }
            }
            for q in 0..p.k {
                bp[q * np + p.n..(q + 1) * np].fill(0.0);
            }
            let ops = Operands {
                a: ops.0,
                a_stride: ops.1,
                a_rows: ops.2,
                tail: ap.as_ptr(),
                b: bp.as_ptr(),
                np,
            };
            if wide {
                kernel_avx512(p, mode, &ops)
            } else {
                kernel_avx2(p, mode, &ops)
            }
        }
    })
}

/// `dst[q·ld + i] = src[i·rs + q]` for i < m, q < k: a row-major m×k matrix (row stride `rs`)
/// copied transposed, 8×8 blocks at a time through AVX registers (moves only).
///
/// # Safety
/// AVX2 present; `src` valid for the m×k reads; `dst` holds k rows of `ld` ≥ m.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn transpose_avx2(
    src: *const f32,
    rs: usize,
    m: usize,
    k: usize,
    dst: &mut [f32],
    ld: usize,
) {
    use std::arch::x86_64::*;
    let (m8, k8) = (m - m % 8, k - k % 8);
    let d = dst.as_mut_ptr();
    for i in (0..m8).step_by(8) {
        for q in (0..k8).step_by(8) {
            let r = |t: usize| _mm256_loadu_ps(src.add((i + t) * rs + q));
            let (r0, r1, r2, r3, r4, r5, r6, r7) = (r(0), r(1), r(2), r(3), r(4), r(5), r(6), r(7));
            let (t0, t1) = (_mm256_unpacklo_ps(r0, r1), _mm256_unpackhi_ps(r0, r1));
            let (t2, t3) = (_mm256_unpacklo_ps(r2, r3), _mm256_unpackhi_ps(r2, r3));
            let (t4, t5) = (_mm256_unpacklo_ps(r4, r5), _mm256_unpackhi_ps(r4, r5));
            let (t6, t7) = (_mm256_unpacklo_ps(r6, r7), _mm256_unpackhi_ps(r6, r7));
            let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
            let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
            let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
            let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
            let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
            let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
            let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
            let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
            let w = |u: usize, v: __m256| _mm256_storeu_ps(d.add((q + u) * ld + i), v);
            w(0, _mm256_permute2f128_ps::<0x20>(u0, u4));
            w(1, _mm256_permute2f128_ps::<0x20>(u1, u5));
            w(2, _mm256_permute2f128_ps::<0x20>(u2, u6));
            w(3, _mm256_permute2f128_ps::<0x20>(u3, u7));
            w(4, _mm256_permute2f128_ps::<0x31>(u0, u4));
            w(5, _mm256_permute2f128_ps::<0x31>(u1, u5));
            w(6, _mm256_permute2f128_ps::<0x31>(u2, u6));
            w(7, _mm256_permute2f128_ps::<0x31>(u3, u7));
        }
    }
    // The rows and columns the 8×8 blocks leave.
    for i in 0..m {
        let from = if i < m8 { k8 } else { 0 };
        for q in from..k {
            dst[q * ld + i] = *src.add(i * rs + q);
        }
    }
}

/// Makes `v` at least `len` long (its old contents are overwritten where used).
fn grow(v: &mut Vec<f32>, len: usize) {
    if v.len() < len {
        v.resize(len, 0.0);
    }
}

/// The register tile with AVX-512: 32 rows (two 16-lane vectors) × 8 columns, 16 sums.
const WIDE_ROWS: usize = 32;
const WIDE_COLS: usize = 8;
/// The register tile with AVX2: 16 rows (two 8-lane vectors) × 6 columns, 12 sums.
const NARROW_ROWS: usize = 16;
const NARROW_COLS: usize = 6;

/// A kernel for one vector width W: the product, a tile of two vectors of rows (one where at
/// most W rows are left) × C columns at a time, each element one chain of fused multiply-adds
/// over k in order, then matrixmultiply's epilogue (module docs), vectorised where C's rows
/// are contiguous and a vector's rows are all of one kind (in a full tile or not).
///
/// # Safety (of the generated function)
/// The named features present; C as described by `p` valid for reads and writes; `ops` as
/// built by `fma_product`.
macro_rules! fma_kernel {
    ($name:ident, $features:literal, $lanes:expr, $cols:expr, $v:ty,
     $zero:ident, $load:ident, $set1:ident, $fmadd:ident, $mul:ident, $add:ident,
     $store:ident) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $features)]
        unsafe fn $name(p: &Product, mode: Mode, ops: &Operands) {
            use std::arch::x86_64::*;
            const W: usize = $lanes;
            const C: usize = $cols;
            let tile = mode.tile();
            let (full_m, full_n) = (p.m - p.m % tile, p.n - p.n % tile);
            let fused_zero = mode == Mode::Tile8Fma;
            let alpha = $set1(p.alpha);
            for (block, k0) in (0..p.k).step_by(KC).enumerate() {
                let k1 = (k0 + KC).min(p.k);
                let beta = if block == 0 { p.beta } else { 1.0 };
                let betav = $set1(beta);
                for j0 in (0..p.n).step_by(C) {
                    let cols = C.min(p.n - j0);
                    for i0 in (0..p.m).step_by(2 * W) {
                        let (mut a, a_stride) = if i0 < ops.a_rows {
                            (ops.a.add(k0 * ops.a_stride + i0), ops.a_stride)
                        } else {
                            (ops.tail.add(k0 * 2 * W), 2 * W)
                        };
                        let mut b = ops.b.add(k0 * ops.np + j0);
                        let mut acc: [[$v; 2]; C] = [[$zero(); 2]; C];
                        let nv = if p.m - i0 > W { 2 } else { 1 };
                        if nv == 2 {
                            for _ in k0..k1 {
                                let (a0, a1) = ($load(a), $load(a.add(W)));
                                for (jj, s) in acc.iter_mut().enumerate() {
                                    let bj = $set1(*b.add(jj));
                                    s[0] = $fmadd(a0, bj, s[0]);
                                    s[1] = $fmadd(a1, bj, s[1]);
                                }
                                a = a.add(a_stride);
                                b = b.add(ops.np);
                            }
                        } else {
                            for _ in k0..k1 {
                                let a0 = $load(a);
                                for (jj, s) in acc.iter_mut().enumerate() {
                                    s[0] = $fmadd(a0, $set1(*b.add(jj)), s[0]);
                                }
                                a = a.add(a_stride);
                                b = b.add(ops.np);
                            }
                        }
                        // The common case, in straight-line code: a whole tile inside C,
                        // contiguous rows, β = 0.
                        if beta == 0.0 && p.rsc == 1 && nv == 2 && cols == C && i0 + 2 * W <= p.m {
                            let c = p.c.add(i0);
                            for (jj, s) in acc.iter().enumerate() {
                                let c = c.offset((j0 + jj) as isize * p.csc);
                                for (v, &sv) in s.iter().enumerate() {
                                    let out = if fused_zero {
                                        $fmadd(alpha, sv, $zero())
                                    } else {
                                        $mul(alpha, sv)
                                    };
                                    $store(c.add(v * W), out);
                                }
                            }
                            continue;
                        }
                        for (jj, s) in acc.iter().enumerate().take(cols) {
                            let j = j0 + jj;
                            for (v, &sv) in s.iter().enumerate().take(nv) {
                                let lo = i0 + v * W;
                                let rows = W.min(p.m.saturating_sub(lo));
                                if rows == 0 {
                                    break;
                                }
                                let c = p.c.offset(j as isize * p.csc + lo as isize * p.rsc);
                                let scaled = if fused_zero {
                                    $fmadd(alpha, sv, $zero())
                                } else {
                                    $mul(alpha, sv)
                                };
                                let all_full = j < full_n && lo + W <= full_m;
                                let none_full = j >= full_n || lo >= full_m;
                                if p.rsc == 1 && rows == W && (beta == 0.0 || all_full || none_full)
                                {
                                    let out = if beta == 0.0 {
                                        scaled
                                    } else {
                                        let cb = $mul($load(c), betav);
                                        if all_full {
                                            $fmadd(alpha, sv, cb)
                                        } else {
                                            $add(cb, scaled)
                                        }
                                    };
                                    $store(c, out);
                                } else {
                                    let mut sums = [0.0f32; W];
                                    $store(sums.as_mut_ptr(), sv);
                                    for (l, &s) in sums.iter().enumerate().take(rows) {
                                        let c = c.offset(l as isize * p.rsc);
                                        let full = lo + l < full_m && j < full_n;
                                        *c = epilogue(p.alpha, s, beta, *c, full, fused_zero);
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
}

fma_kernel!(
    kernel_avx512,
    "avx512f,avx2,fma",
    16,
    WIDE_COLS,
    __m512,
    _mm512_setzero_ps,
    _mm512_loadu_ps,
    _mm512_set1_ps,
    _mm512_fmadd_ps,
    _mm512_mul_ps,
    _mm512_add_ps,
    _mm512_storeu_ps
);
fma_kernel!(
    kernel_avx2,
    "avx2,fma",
    8,
    NARROW_COLS,
    __m256,
    _mm256_setzero_ps,
    _mm256_loadu_ps,
    _mm256_set1_ps,
    _mm256_fmadd_ps,
    _mm256_mul_ps,
    _mm256_add_ps,
    _mm256_storeu_ps
);

/// matrixmultiply's epilogue for one element (module docs): sum `s`, old value `c`, whether
/// the element lies in a full tile, whether the kernel's β = 0 scaling is fused. Inlined into
/// the kernels, compiled with FMA, where `mul_add` is one instruction.
#[inline(always)]
fn epilogue(alpha: f32, s: f32, beta: f32, c: f32, full: bool, fused_zero: bool) -> f32 {
    let scaled = if fused_zero {
        alpha.mul_add(s, 0.0)
    } else {
        alpha * s
    };
    if beta == 0.0 {
        scaled
    } else if full {
        alpha.mul_add(s, c * beta)
    } else {
        c * beta + scaled
    }
}

/// Runs matrixmultiply and both rules on a product built to tell them apart: 24×24 (a 16-tile
/// leaves rows and columns 16..24 partial, an 8-tile none), α and β that are not 1 (the
/// partial tiles round twice, the full once), and a zero column with α < 0 (−0 from a product,
/// +0 from a fused multiply-add).
fn probe() -> Mode {
    #[cfg(target_arch = "x86_64")]
    {
        if !(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")) {
            return Mode::Off;
        }
        let (m, k, n) = (24usize, 300usize, 24usize);
        let mut state = 0x2545_f491_u32;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        };
        let a: Vec<f32> = (0..m * k).map(|_| next()).collect();
        let mut b: Vec<f32> = (0..k * n).map(|_| next()).collect();
        // Column 3 of B is zero, so column 3 of A·B is +0.
        (0..k).for_each(|q| b[q * n + 3] = 0.0);
        let c0: Vec<f32> = (0..m * n).map(|_| next()).collect();
        let cases = [(0.1f32, 0.7f32), (-1.0, 0.0), (0.3, 0.0), (1.0, 1.0)];
        let run = |mode: Option<Mode>| -> Vec<u32> {
            let mut bits = Vec::new();
            for &(alpha, beta) in &cases {
                let mut c = c0.clone();
                let args = Product {
                    m,
                    k,
                    n,
                    alpha,
                    a: a.as_ptr(),
                    rsa: k as isize,
                    csa: 1,
                    b: b.as_ptr(),
                    rsb: n as isize,
                    csb: 1,
                    beta,
                    c: c.as_mut_ptr(),
                    rsc: n as isize,
                    csc: 1,
                };
                // SAFETY: the buffers hold the row-major matrices the strides describe; AVX2
                // and FMA were detected above.
                unsafe {
                    match mode {
                        None => args.matrixmultiply(),
                        Some(mode) => fma_product(&args, mode),
                    }
                }
                bits.extend(c.iter().map(|v| v.to_bits()));
            }
            bits
        };
        let reference = run(None);
        for mode in [Mode::Tile16Mul, Mode::Tile8Fma] {
            if run(Some(mode)) == reference {
                return mode;
            }
        }
    }
    Mode::Off
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Seeded values in [−0.5, 0.5) with full 24-bit mantissas, so that nearly every product
    /// and sum rounds and any difference in the order or fusing of operations shows in the bits.
    fn values(seed: u64, len: usize) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
            })
            .collect()
    }

    #[test]
    fn negative_strides_are_left_to_matrixmultiply() {
        // A's columns read right to left (column stride −m), as matrixmultiply allows.
        let (m, k, n) = (40usize, 7usize, 4usize);
        let (a, b) = (values(7, m * k), values(8, k * n));
        let (mut fast, mut reference) = (vec![0.0f32; m * n], vec![0.0f32; m * n]);
        // SAFETY: from the first row of A's last column, stride 1 walks its m rows and stride −m
        // its k columns back to the first, all inside `a`; B and C column-major.
        unsafe {
            let a_last = a.as_ptr().add((k - 1) * m);
            sgemm(
                m,
                k,
                n,
                0.5,
                a_last,
                1,
                -(m as isize),
                b.as_ptr(),
                1,
                k as isize,
                0.0,
                fast.as_mut_ptr(),
                1,
                m as isize,
            );
            matrixmultiply::sgemm(
                m,
                k,
                n,
                0.5,
                a_last,
                1,
                -(m as isize),
                b.as_ptr(),
                1,
                k as isize,
                0.0,
                reference.as_mut_ptr(),
                1,
                m as isize,
            );
        }
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&fast), bits(&reference));
    }

    #[test]
    fn small_products_match_matrixmultiply_bit_for_bit() {
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            // matrixmultiply 0.3 on any x86-64 with AVX2 and FMA uses one of the two rules;
            // Off here would mean the toy models silently lost this path.
            assert_ne!(mode(), Mode::Off, "no rule reproduces matrixmultiply");
        }
        let dims = [1usize, 3, 8, 9, 16, 17, 24, 40, 69];
        let ks = [1usize, 16, 255, 256, 257, 530];
        let scalars = [
            (1.0f32, 0.0f32),
            (1.0, 1.0),
            (-1.0, 1.0),
            (0.37, 1.0),
            (0.37, 0.0),
            (-1.3, -0.6),
        ];
        let mut seed = 1u64;
        let mut checked = 0usize;
        for &m in &dims {
            for &n in &dims {
                for (ki, &k) in ks.iter().enumerate() {
                    // Every layout of the column-major toy matrices: op(A) and op(B) stored or
                    // transposed, C column-major; every (α, β) pair once per shape, cycled.
                    let layout = (m + n + ki) % 4;
                    let (alpha, beta) = scalars[(m * 7 + n * 3 + ki) % scalars.len()];
                    let (rsa, csa) = if layout & 1 == 0 {
                        (1, m as isize)
                    } else {
                        (k as isize, 1)
                    };
                    let (rsb, csb) = if layout & 2 == 0 {
                        (1, k as isize)
                    } else {
                        (n as isize, 1)
                    };
                    // C column-major (the toy models') for most shapes, row-major for some.
                    let (rsc, csc) = if (m + 2 * n + ki) % 5 == 0 {
                        (n as isize, 1)
                    } else {
                        (1, m as isize)
                    };
                    seed += 1;
                    let a = values(seed, m * k);
                    let b = values(seed + 1000, k * n);
                    let c0 = values(seed + 2000, m * n);
                    let (mut fast, mut reference) = (c0.clone(), c0);
                    // SAFETY: each buffer holds the matrix its strides describe.
                    unsafe {
                        sgemm(
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
                            fast.as_mut_ptr(),
                            rsc,
                            csc,
                        );
                        matrixmultiply::sgemm(
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
                            reference.as_mut_ptr(),
                            rsc,
                            csc,
                        );
                    }
                    for (e, (x, y)) in fast.iter().zip(&reference).enumerate() {
                        assert_eq!(
                            x.to_bits(),
                            y.to_bits(),
                            "m={m} k={k} n={n} α={alpha} β={beta} layout {layout}: element \
                             {e} of C (strides {rsc}, {csc}) is {x:e}, matrixmultiply gives {y:e} \
                             ({:?})",
                            mode()
                        );
                    }
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, dims.len() * dims.len() * ks.len());
    }
}

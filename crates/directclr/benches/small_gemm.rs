//! The toy models' products, matrixmultiply against the packing-free path that gives its bits
//! (`theory::small_gemm`), one core. The shapes and layouts are those of one step of
//! `theory projector --mechanisms implicit-regularization --heads linear` (batch 128 per view,
//! d = 16): m×k×n, op(A) and op(B) stored (N) or transposed (T), C column-major.
//! Run: `cargo bench -p directclr --bench small_gemm`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use directclr::theory::small_gemm;

/// (name, m, k, n, A transposed, B transposed, α, β), each as the toy step calls it.
type Shape = (&'static str, usize, usize, usize, bool, bool, f32, f32);
const SHAPES: [Shape; 6] = [
    (
        "softmax·z 128x128x16 NN",
        128,
        128,
        16,
        false,
        false,
        0.078125,
        1.0,
    ),
    (
        "softmaxT·z 128x128x16 TN",
        128,
        128,
        16,
        true,
        false,
        0.078125,
        1.0,
    ),
    ("logits 128x16x128 NT", 128, 16, 128, false, true, 10.0, 0.0),
    (
        "weight grad 16x256x16 TN",
        16,
        256,
        16,
        true,
        false,
        1.0,
        0.0,
    ),
    ("layer 256x16x16 NT", 256, 16, 16, false, true, 1.0, 0.0),
    ("backprop 256x16x16 NN", 256, 16, 16, false, false, 1.0, 0.0),
];

fn values(len: usize, seed: u32) -> Vec<f32> {
    let mut s = seed | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("toy products");
    for (name, m, k, n, ta, tb, alpha, beta) in SHAPES {
        // Column-major storage of A (m×k, or k×m when transposed) and B (k×n, or n×k).
        let (a, b, mut out) = (values(m * k, 1), values(k * n, 2), values(m * n, 3));
        let (rsa, csa) = if ta { (k as isize, 1) } else { (1, m as isize) };
        let (rsb, csb) = if tb { (n as isize, 1) } else { (1, k as isize) };
        type Gemm = unsafe fn(
            usize,
            usize,
            usize,
            f32,
            *const f32,
            isize,
            isize,
            *const f32,
            isize,
            isize,
            f32,
            *mut f32,
            isize,
            isize,
        );
        let paths: [(&str, Gemm); 2] = [
            ("matrixmultiply", matrixmultiply::sgemm),
            ("small_gemm", small_gemm::sgemm),
        ];
        for (path, gemm) in paths {
            group.bench_function(format!("{name} {path}"), |bench| {
                bench.iter(|| {
                    // SAFETY: the buffers hold the matrices the strides describe.
                    unsafe {
                        gemm(
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
                            out.as_mut_ptr(),
                            1,
                            m as isize,
                        )
                    };
                    black_box(&mut out);
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! The inner kernel shared by the resampling and the blur: a weighted sum of rows, with the
//! accumulators held in registers across the taps.

/// A pixel value read as f32.
pub(crate) trait Px: Copy {
    /// The value.
    fn f(self) -> f32;
}

impl Px for u8 {
    #[inline(always)]
    fn f(self) -> f32 {
        f32::from(self)
    }
}

impl Px for f32 {
    #[inline(always)]
    fn f(self) -> f32 {
        self
    }
}

/// `out[i] = Σ_k weights[k] · src[offsets[k] + i]`, fused multiply-adds in tap order from 0 (so
/// any vector width gives the same bits). Inline into a caller compiled for the wanted instruction set.
///
/// # Shapes
/// `weights`, `offsets`: `[taps]`; every `src[offsets[k] .. offsets[k] + out.len()]` in bounds.
#[inline(always)]
pub(crate) fn weighted_rows<T: Px>(out: &mut [f32], weights: &[f32], src: &[T], offsets: &[usize]) {
    let n = out.len();
    // Wide blocks first (8 independent vector chains hide the multiply-add latency), then
    // narrower ones, then single values; every value is summed in the same tap order.
    let x = block::<T, 64>(out, weights, src, offsets, 0);
    let x = block::<T, 16>(out, weights, src, offsets, x);
    for (i, o) in out.iter_mut().enumerate().skip(x) {
        let mut a = 0.0f32;
        for (&w, &off) in weights.iter().zip(offsets) {
            a = w.mul_add(src[off + i].f(), a);
        }
        *o = a;
    }
    debug_assert!(x <= n);
}

/// Blocks of `L` outputs from `x` on; returns where it stopped.
#[inline(always)]
fn block<T: Px, const L: usize>(
    out: &mut [f32],
    weights: &[f32],
    src: &[T],
    offsets: &[usize],
    mut x: usize,
) -> usize {
    while x + L <= out.len() {
        let mut acc = [0.0f32; L];
        for (&w, &o) in weights.iter().zip(offsets) {
            let row: &[T; L] = src[o + x..o + x + L].try_into().expect("slice of L values");
            for j in 0..L {
                acc[j] = w.mul_add(row[j].f(), acc[j]);
            }
        }
        out[x..x + L].copy_from_slice(&acc);
        x += L;
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every block width and the scalar tail give `Σ_k w_k · row_k` in tap order, bit for bit.
    #[test]
    fn weighted_rows_equals_the_plain_sum_for_every_length() {
        let src: Vec<f32> = (0..4000).map(|i| ((i * 37 % 101) as f32) / 101.0).collect();
        let weights = [0.25f32, -0.125, 0.5, 0.375];
        let offsets = [0usize, 333, 1000, 2001];
        for n in [1, 15, 16, 17, 63, 64, 65, 80, 200, 224, 900] {
            let mut out = vec![0.0; n];
            weighted_rows(&mut out, &weights, &src, &offsets);
            for (i, &o) in out.iter().enumerate() {
                let mut a = 0.0f32;
                for (&w, &off) in weights.iter().zip(&offsets) {
                    a = w.mul_add(src[off + i], a);
                }
                assert_eq!(o.to_bits(), a.to_bits(), "n = {n}, i = {i}");
            }
        }
        let bytes: Vec<u8> = (0..300).map(|i| (i * 7 % 256) as u8).collect();
        let mut out = vec![0.0; 100];
        weighted_rows(&mut out, &[1.0, 2.0], &bytes, &[0, 150]);
        assert_eq!(out[3], bytes[3] as f32 + 2.0 * bytes[153] as f32);
    }
}

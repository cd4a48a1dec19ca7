//! Gaussian blur of a batch, each sample with its own σ (or none), as two batched matrix
//! products: the separable kernel with reflect padding is a banded `[H, H]` matrix per sample
//! (built on the device by a scatter-add from `[N, k]` weights), applied to the columns and
//! then the rows. Matrix products run in full f32 on GPUs (PyTorch's default keeps TF32 off
//! for them, unlike cuDNN convolutions), and a sample without blur gets the identity matrix,
//! which changes no value.

use tch::{Kind, Tensor};

use crate::data::augment::blur::{kernel1d, reflect};
use crate::data::ViewDraw;
use crate::Result;

/// Blurs the drawn samples with a `ksize` kernel (odd, the same for every sample of the view).
///
/// # Shapes
/// `x`: `[N, 3, S, S]` → same.
pub fn blur(x: Tensor, draws: &[ViewDraw], ksize: usize) -> Result<Tensor> {
    if ksize <= 1 || draws.iter().all(|d| d.blur_sigma.is_none()) {
        return Ok(x);
    }
    let dims = x.size();
    let (n, s) = (dims[0], dims[2]);
    let device = x.device();
    let r = ksize / 2;
    // Weights [N, k]: the normalised Gaussian, or a unit tap in the middle (identity).
    let mut w = Vec::with_capacity(draws.len() * ksize);
    for d in draws {
        match d.blur_sigma {
            Some(sigma) => w.extend(kernel1d(ksize, sigma)),
            None => w.extend((0..ksize).map(|t| if t == r { 1.0f32 } else { 0.0 })),
        }
    }
    // Column index of tap t of output i: reflect(i + t − r) [S, k].
    let idx: Vec<i64> = (0..s as usize)
        .flat_map(|i| {
            (0..ksize)
                .map(move |t| reflect(i as isize + t as isize - r as isize, s as usize) as i64)
        })
        .collect();
    let k = ksize as i64;
    let idx = Tensor::f_from_slice(&idx)?
        .f_to_device_(device, Kind::Int64, true, false)?
        .f_view([1, s, k])?
        .f_expand([n, s, k], false)?;
    let w = Tensor::f_from_slice(&w)?
        .f_to_device_(device, Kind::Float, true, false)?
        .f_view([n, 1, k])?
        .f_expand([n, s, k], false)?;
    // m[n, i, j] = Σ_t w[n, t] · [reflect(i + t − r) = j]
    let m = Tensor::f_zeros([n, s, s], (Kind::Float, device))?.f_scatter_add(2, &idx, &w)?;
    let m = m.f_unsqueeze(1)?; // [N, 1, S, S]
                               // Vertical pass (columns), then horizontal (rows).
    let v = m.f_matmul(&x)?; // [N, 3, S, S]
    Ok(v.f_matmul(&m.f_transpose(2, 3)?)?)
}

//! The optimiser's update over all parameters at once: every parameter (and its momentum
//! buffer) becomes a view into one flat buffer, so that an update is a fixed number of tensor
//! operations (about twenty kernels on a GPU) whatever the number of parameter tensors, instead
//! of about ten per tensor (≈ 570 small kernels for ResNet-18 with its head, ≈ 1,430 for
//! ResNet-50). The per-tensor quantities of LARS (‖w‖ and ‖d‖ of each parameter tensor) are
//! segment sums over the flat buffer; a per-tensor scalar is spread back to its elements with
//! `repeat_interleave` (with the output size given, so a GPU does not synchronise).
//!
//! The arithmetic per element is the same as [`super::Optimizer::step`]'s
//! (d = g + λw, d ← q·d, μ ← mμ + d, w ← w − lr·μ); only the norms are summed in a different
//! order (segment sums instead of `norm`), a difference of a few units in the last place of q.

use tch::Tensor;

use crate::{Error, Result};

/// The order in which a tensor's elements lie in memory, as a permutation of its dimensions
/// (outermost first): dimensions by decreasing stride, ties (size-1 dimensions) in their
/// natural order. For a contiguous tensor this is the identity; for a channels-last 4-d tensor
/// it is `[0, 2, 3, 1]`.
fn memory_order(t: &Tensor) -> Vec<i64> {
    let stride = t.stride();
    let mut perm: Vec<i64> = (0..t.dim() as i64).collect();
    perm.sort_by(|&a, &b| stride[b as usize].cmp(&stride[a as usize]));
    perm
}

fn inverse(perm: &[i64]) -> Vec<i64> {
    let mut inv = vec![0; perm.len()];
    for (i, &p) in perm.iter().enumerate() {
        inv[p as usize] = i as i64;
    }
    inv
}

/// Flat update state of an optimiser: the parameters' values and momentum buffers as two flat
/// buffers of `numel` elements, segment `i` holding parameter `i` in its memory order.
#[derive(Debug)]
pub(super) struct FlatState {
    /// All parameters, `[numel]`; the parameters are views into it.
    weights: Tensor,
    /// All momentum buffers, `[numel]`; the per-parameter buffers are views into it.
    momentum: Tensor,
    /// Memory order of each parameter (see [`memory_order`]).
    perms: Vec<Vec<i64>>,
    /// Elements of each segment, `[P]` i64 on the parameters' device.
    lengths: Tensor,
    /// Weight decay of each segment (λ, or 0 where excluded), `[P]`.
    decay: Tensor,
    /// Whether the trust ratio applies to each segment, `[P]` bool.
    trust: Tensor,
    numel: i64,
}

/// Per-parameter settings of the flat update.
#[derive(Debug, Clone, Copy)]
pub(super) struct Segment {
    /// Weight decay λ of this parameter (0 where excluded).
    pub decay: f64,
    /// Whether LARS's trust ratio applies.
    pub trust: bool,
}

impl FlatState {
    /// Moves `params` and `momentum` (same shapes, one device and dtype) into two flat buffers
    /// and makes every tensor a view of its segment (values, shapes and strides unchanged).
    pub fn new(
        params: &mut [Tensor],
        momentum: &mut [Tensor],
        segments: &[Segment],
    ) -> Result<Self> {
        let first = params
            .first()
            .ok_or_else(|| Error::config("parameters", "no parameter to fuse"))?;
        let (kind, device) = (first.kind(), first.device());
        if let Some(p) = params
            .iter()
            .find(|p| p.kind() != kind || p.device() != device)
        {
            return Err(Error::config(
                "speed.fused_optimizer",
                format!(
                    "every parameter must have one dtype and device to be fused, found {:?} on {:?} and {:?} on {:?}",
                    kind, device, p.kind(), p.device()
                ),
            ));
        }
        let _g = tch::no_grad_guard();
        let perms: Vec<Vec<i64>> = params.iter().map(memory_order).collect();
        let flat = |ts: &[Tensor]| -> Result<Tensor> {
            let parts = ts
                .iter()
                .zip(&perms)
                .map(|(t, perm)| t.f_detach()?.f_permute(perm.as_slice())?.f_reshape([-1]))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            Ok(Tensor::f_cat(&parts, 0)?)
        };
        let weights = flat(params)?;
        let momentum_flat = flat(momentum)?;
        let lengths: Vec<i64> = params.iter().map(|p| p.numel() as i64).collect();
        let numel: i64 = lengths.iter().sum();
        let mut off = 0;
        for ((p, mu), (perm, &n)) in params
            .iter_mut()
            .zip(momentum.iter_mut())
            .zip(perms.iter().zip(&lengths))
        {
            let shape: Vec<i64> = perm.iter().map(|&d| p.size()[d as usize]).collect();
            let inv = inverse(perm);
            let view = |buf: &Tensor| -> Result<Tensor> {
                Ok(buf
                    .f_narrow(0, off, n)?
                    .f_view(shape.as_slice())?
                    .f_permute(inv.as_slice())?)
            };
            p.set_data(&view(&weights)?);
            mu.set_data(&view(&momentum_flat)?);
            off += n;
        }
        let decay: Vec<f64> = segments.iter().map(|s| s.decay).collect();
        let trust: Vec<bool> = segments.iter().map(|s| s.trust).collect();
        Ok(FlatState {
            weights,
            momentum: momentum_flat,
            perms,
            lengths: Tensor::f_from_slice(&lengths)?.f_to_device(device)?,
            decay: Tensor::f_from_slice(&decay)?.f_to_device_(device, kind, false, false)?,
            trust: Tensor::f_from_slice(&trust)?.f_to_device(device)?,
            numel,
        })
    }

    /// Spreads a per-segment value `[P]` over the elements `[numel]`.
    fn spread(&self, per_segment: &Tensor) -> Result<Tensor> {
        Ok(per_segment.f_repeat_interleave_self_tensor(&self.lengths, 0, self.numel)?)
    }

    /// Sum of squares of each segment of `x` `[numel]` → `[P]`. The lengths are checked once
    /// here by construction (positive, summing to `numel`), so the reduction runs `unsafe`:
    /// its own check would read values back to the host, a GPU synchronisation.
    fn segment_sq_norms(&self, x: &Tensor) -> Result<Tensor> {
        Ok(Tensor::f_segment_reduce(
            &x.f_square()?,
            "sum",
            Some(&self.lengths),
            None::<&Tensor>,
            None::<&Tensor>,
            0,
            true,
            0.0,
        )?)
    }

    /// One update from the parameters' gradients `grads` (one per parameter, all defined):
    /// `lars_eta` is LARS's η (None for SGD), `nesterov` SGD's Nesterov form.
    pub fn step(
        &mut self,
        grads: &[Tensor],
        momentum: f64,
        lr: f64,
        lars_eta: Option<f64>,
        nesterov: bool,
    ) -> Result<()> {
        let _g = tch::no_grad_guard();
        let parts = grads
            .iter()
            .zip(&self.perms)
            .map(|(g, perm)| g.f_permute(perm.as_slice())?.f_reshape([-1]))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let g = Tensor::f_cat(&parts, 0)?; // [numel]
                                           // d = g + λ w (λ = 0 on excluded segments: g + 0 = g)
        let mut d = g.f_add(&self.weights.f_mul(&self.spread(&self.decay)?)?)?;
        if let Some(eta) = lars_eta {
            // q = η‖w‖/‖d‖ where the ratio applies and both norms are > 0, else 1
            let w_norm = self.segment_sq_norms(&self.weights)?.f_sqrt()?; // [P]
            let d_norm = self.segment_sq_norms(&d)?.f_sqrt()?; // [P]
            let apply = self
                .trust
                .f_logical_and(&w_norm.f_gt(0.0)?)?
                .f_logical_and(&d_norm.f_gt(0.0)?)?;
            let ratio = w_norm.f_mul_scalar(eta)?.f_div(&d_norm)?;
            let q = ratio.f_where_self(&apply, &w_norm.f_ones_like()?)?;
            d = d.f_mul(&self.spread(&q)?)?;
        }
        // μ ← m μ + d
        let _ = self.momentum.f_mul_scalar_(momentum)?;
        let _ = self.momentum.f_add_(&d)?;
        let update = if nesterov {
            d.f_add(&self.momentum.f_mul_scalar(momentum)?)?
        } else {
            self.momentum.shallow_clone()
        };
        let _ = self.weights.f_sub_(&update.f_mul_scalar(lr)?)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn memory_order_of_contiguous_and_channels_last() {
        let x = Tensor::zeros([2, 3, 4, 5], (Kind::Float, Device::Cpu));
        assert_eq!(memory_order(&x), vec![0, 1, 2, 3]);
        let cl = crate::precision::to_channels_last(&x).unwrap();
        assert_eq!(memory_order(&cl), vec![0, 2, 3, 1]);
        assert_eq!(inverse(&[0, 2, 3, 1]), vec![0, 3, 1, 2]);
    }

    #[test]
    fn views_keep_values_shapes_and_strides() {
        let a = Tensor::randn([4, 3, 2, 2], (Kind::Float, Device::Cpu));
        let mut ps = vec![
            crate::precision::to_channels_last(&a).unwrap(),
            Tensor::randn([5], (Kind::Float, Device::Cpu)),
            Tensor::randn([3, 7], (Kind::Float, Device::Cpu)),
        ];
        let before: Vec<Tensor> = ps.iter().map(|p| p.copy()).collect();
        let strides: Vec<Vec<i64>> = ps.iter().map(|p| p.stride()).collect();
        let mut mus: Vec<Tensor> = ps.iter().map(|p| p.zeros_like()).collect();
        let seg = Segment {
            decay: 0.0,
            trust: false,
        };
        let state = FlatState::new(&mut ps, &mut mus, &[seg; 3]).unwrap();
        // Exact: the flat buffer holds copies of the values (no arithmetic).
        for ((p, b), s) in ps.iter().zip(&before).zip(&strides) {
            assert_eq!(p.size(), b.size());
            assert_eq!(&p.stride(), s);
            assert!(p.equal(b));
        }
        // Writing the flat buffer writes the parameters (a fill with 2.0: exact).
        let _ = state.weights.shallow_clone().fill_(2.0);
        assert!(ps.iter().all(|p| p.eq(2.0).all().int64_value(&[]) == 1));
    }
}

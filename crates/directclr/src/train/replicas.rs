//! What keeps the ranks of a data-parallel run in step around the training loop: one start
//! (rank 0's progress and tensors, fresh or resumed) and one set of metrics.
//!
//! Resuming with another number of processes: `batch_size` is the global batch, so the steps
//! per epoch (⌊⌊len/W⌋ / (N/W)⌋ = ⌊len/N⌋), the schedule and each step's set of samples (the
//! same seeded permutation, strided over the ranks) do not change with W. What changes: the
//! per-rank batch (N/W), the order of floating-point sums (so runs agree to rounding, not bit
//! for bit), and, with `dist.sync_bn = false`, the batch-norm statistics (per-rank rows).

use tch::{Kind, Tensor};

use super::window::Window;
use crate::dist::{broadcast_tensors, Distributed};
use crate::Result;

/// Makes every rank start where rank 0 does: its (epoch, step) and every tensor of the run's
/// state (weights, batch-norm buffers, optimiser momentum), whether fresh or restored.
pub(super) fn start_from_rank0(
    d: &Distributed,
    (epoch, step): (usize, usize),
    tensors: &[(String, Tensor)],
) -> Result<(usize, usize)> {
    let progress = Tensor::f_from_slice(&[epoch as i64, step as i64])?;
    d.group()
        .broadcast_(&progress, 0, "broadcast of the run's progress from rank 0")?;
    let values: Vec<Tensor> = tensors.iter().map(|(_, t)| t.shallow_clone()).collect();
    broadcast_tensors(d.group(), &values, 0)?;
    let progress: Vec<i64> = Vec::<i64>::try_from(&progress)?;
    Ok((progress[0] as usize, progress[1] as usize))
}

/// The window with its sums averaged over the ranks (the InfoNCE is the same everywhere; the
/// probe's loss and accuracy are per-rank means). Samples already count the global batch.
pub(super) fn window_over_ranks(d: &Distributed, w: &Window) -> Result<Window> {
    let means = d.mean_over_ranks(&[&w.loss, &w.probe_loss, &w.probe_acc])?;
    let [loss, probe_loss, probe_acc]: [Tensor; 3] = means
        .into_iter()
        .map(|t| t.f_to_kind(Kind::Double))
        .collect::<Result<Vec<_>, _>>()?
        .try_into()
        .expect("one mean per sum");
    Ok(Window {
        loss,
        probe_loss,
        probe_acc,
        steps: w.steps,
        samples: w.samples,
        since: w.since,
        probe: w.probe,
    })
}

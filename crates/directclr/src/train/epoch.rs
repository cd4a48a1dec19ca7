//! The end of an epoch ([`save_epoch`]): the collapse monitor, the epoch's metrics line and
//! the checkpoint.

use std::path::Path;

use super::prepare::Prepared;
use super::run_dir::{MetricsKind, MetricsLine};
use super::trainer::Event;
use super::window::{log_window, Window};
use crate::dist::Distributed;
use crate::run::{Progress, TrainConfig};
use crate::Result;

/// Ends epoch `epoch` (0-based) of the run `c`, after `step` steps, the last at learning rate
/// `lr`: when the monitor is due, measures the effective rank of r `[N, D]` and z `[N, d]` on
/// its held-out images; logs `epoch_window` as the epoch's metrics line (to `out`'s log on
/// rank 0, averaged over the ranks of `dist`); then every `checkpoint.every_epochs` epochs and
/// after the last one checks that the parameters are finite and (rank 0) writes the checkpoint
/// after `epoch + 1` epochs, which becomes `last_checkpoint`. Returns the epoch's line.
pub(super) fn save_epoch(
    p: &mut Prepared<'_>,
    c: &TrainConfig,
    (out, dist): (&Path, Option<&Distributed>),
    on_event: &mut dyn FnMut(&Event),
    epoch_window: &Window,
    (epoch, step, lr): (usize, usize, f64),
    last_checkpoint: &mut Option<usize>,
) -> Result<MetricsLine> {
    let rank = match p.monitor.as_mut() {
        Some(m) if m.due(epoch + 1, c.epochs) => {
            let (snapshot, jumps) =
                m.measure(&p.models.run.encoder, &p.models.run.head, p.device)?;
            for j in jumps {
                on_event(&Event::Collapse(j));
            }
            Some(snapshot)
        }
        _ => None,
    };
    let at = (epoch, step, lr, *last_checkpoint);
    let to = (p.run.as_ref(), out, dist);
    let line = log_window(to, on_event, epoch_window, MetricsKind::Epoch, at, rank)?;
    let done = epoch + 1; // epochs completed
    if done % c.checkpoint.every_epochs == 0 || done == c.epochs {
        p.models.check_finite(done)?;
        if let Some(run) = &p.run {
            let progress = Progress {
                epoch: done,
                step,
                seed: c.seed,
            };
            run.write_checkpoint(
                progress,
                &p.guard.state()?,
                &p.models.checkpoint_tensors(),
                p.models.run.encoder.named_tensors(),
            )?;
            on_event(&Event::Checkpoint { epoch: done });
        }
        *last_checkpoint = Some(done);
    }
    Ok(line)
}

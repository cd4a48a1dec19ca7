//! The progress display of `directclr train`, fed by the training loop's [`Event`]s.
//!
//! - On a terminal: a progress bar over the run's steps (indicatif) with the loss and online-probe
//!   accuracy of the last logged window, the learning rate of the current step, images/s of the
//!   last window and the ETA. The loss is the one the loop already read back for the metrics
//!   log, so the bar adds no device synchronisation.
//! - Otherwise (stderr redirected to a file or a pipe): one plain line per metrics window
//!   (`log.every_steps`) with the ETA, and one per epoch.
//! - `--quiet`: one line per epoch only, on any stderr.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use directclr::train::{Event, MetricsKind, MetricsLine};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A progress bar redrawn in place (stderr is a terminal).
    Bar,
    /// Plain lines, one per metrics window and per epoch.
    Lines,
    /// One line per epoch.
    Quiet,
}

impl Mode {
    /// `Quiet` if asked, else `Bar` when stderr is a terminal, `Lines` otherwise.
    pub fn detect(quiet: bool) -> Self {
        if quiet {
            Mode::Quiet
        } else if std::io::stderr().is_terminal() {
            Mode::Bar
        } else {
            Mode::Lines
        }
    }
}

/// The bar's layout: position over the run, the status message (with the ETA), elapsed time.
const BAR_TEMPLATE: &str = "{prefix} [{bar:28}] {pos}/{len} {msg} | {elapsed_precise}";

/// Turns training events into progress output on stderr.
pub struct Progress {
    mode: Mode,
    bar: Option<ProgressBar>,
    started: Instant,
    first_step: usize,
    total_steps: Option<usize>,
    last: Option<MetricsLine>,
}

impl Progress {
    /// A display in `mode` (the bar is created when the run starts).
    pub fn new(mode: Mode) -> Self {
        Progress {
            mode,
            bar: None,
            started: Instant::now(),
            first_step: 0,
            total_steps: None,
            last: None,
        }
    }

    /// Shows `e`.
    pub fn event(&mut self, e: &Event) {
        match e {
            Event::Start {
                epoch,
                step,
                total_steps,
                steps_per_epoch,
                samples,
                device,
            } => {
                self.first_step = *step;
                self.total_steps = Some(*total_steps);
                self.started = Instant::now();
                if *step > 0 {
                    self.print(format!(
                        "resuming after epoch {epoch} (step {step} of {total_steps})"
                    ));
                }
                self.print(format!(
                    "{samples} samples, {steps_per_epoch} steps per epoch, {total_steps} steps, \
                     device {device:?}"
                ));
                if self.mode == Mode::Bar && *step < *total_steps {
                    self.bar = Some(new_bar(*step, *total_steps));
                }
            }
            Event::Step {
                epoch, step, lr, ..
            } => {
                if let Some(bar) = &self.bar {
                    let eta = self.eta_secs(*step).map(format_duration);
                    bar.set_prefix(format!("epoch {epoch}"));
                    bar.set_message(status(self.last.as_ref(), *lr, eta.as_deref()));
                    bar.set_position(*step as u64);
                }
            }
            Event::Metrics(m) => {
                self.last = Some(m.clone());
                let show = match (m.kind, self.mode) {
                    (MetricsKind::Epoch, _) => true,
                    (MetricsKind::Step, mode) => mode == Mode::Lines,
                };
                if show {
                    let eta = match m.kind {
                        MetricsKind::Step => self.eta_secs(m.step).map(format_duration),
                        MetricsKind::Epoch => None,
                    };
                    self.print(metrics_line(m, eta.as_deref()));
                }
            }
            Event::Collapse(jump) => self.print(format!("warning: {jump}")),
            Event::Guard(g) => self.print(guard_line(g)),
            Event::Checkpoint { epoch } => {
                if self.mode != Mode::Quiet {
                    self.print(format!("checkpoint after epoch {epoch}"));
                }
            }
        }
    }

    /// Removes the bar (at the end of the run or on an error).
    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }

    /// Seconds left after `step`, from the mean step time since the start of this call (steadier
    /// than indicatif's own estimate, which decays while a slow step runs).
    fn eta_secs(&self, step: usize) -> Option<f64> {
        let total = self.total_steps?;
        let done = step.checked_sub(self.first_step).filter(|&d| d > 0)?;
        let per_step = self.started.elapsed().as_secs_f64() / done as f64;
        Some(per_step * total.saturating_sub(step) as f64)
    }

    /// A line on stderr above the bar, if any.
    fn print(&self, line: String) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

fn new_bar(step: usize, total_steps: usize) -> ProgressBar {
    let style = ProgressStyle::with_template(BAR_TEMPLATE)
        .expect("the bar template is valid")
        .progress_chars("=> ");
    let bar = ProgressBar::with_draw_target(Some(total_steps as u64), ProgressDrawTarget::stderr())
        .with_style(style)
        .with_position(step as u64);
    bar.set_message(status(None, f64::NAN, None));
    bar.enable_steady_tick(Duration::from_millis(500));
    bar
}

/// The bar's message: the last window's loss, probe accuracy and throughput, the current
/// learning rate and the ETA (`-` for what is not known yet).
pub fn status(last: Option<&MetricsLine>, lr: f64, eta: Option<&str>) -> String {
    let lr = if lr.is_finite() {
        format!("{lr:.4}")
    } else {
        "-".into()
    };
    let eta = eta.unwrap_or("-");
    let body = match last {
        Some(m) => format!(
            "loss {:.4} probe {} lr {lr} {:.0} img/s",
            m.loss,
            m.probe_acc
                .map(|a| format!("{:.1}%", 100.0 * a))
                .unwrap_or_else(|| "-".into()),
            m.images_per_s
        ),
        None => format!("loss - probe - lr {lr} - img/s"),
    };
    format!("{body} ETA {eta}")
}

/// One plain line for a metrics window (with the ETA for step windows).
pub fn metrics_line(m: &MetricsLine, eta: Option<&str>) -> String {
    let probe = match (m.probe_loss, m.probe_acc) {
        (Some(l), Some(a)) => format!(" probe loss {l:.4} acc {:.2}%", 100.0 * a),
        _ => String::new(),
    };
    let what = match m.kind {
        MetricsKind::Epoch => "[epoch]",
        MetricsKind::Step => "[step] ",
    };
    let eta = eta.map(|e| format!(" ETA {e}")).unwrap_or_default();
    let rank = match &m.rank {
        Some(r) => format!(
            " | rank r {:.1} ({} collapsed) z {:.1} ({} collapsed)",
            r.r.effective_rank,
            r.r.collapsed_dimensions,
            r.z.effective_rank,
            r.z.collapsed_dimensions
        ),
        None => String::new(),
    };
    format!(
        "{what} epoch {} step {}: loss {:.4}{probe} lr {:.5} {:.0} img/s{eta}{rank}",
        m.epoch, m.step, m.loss, m.lr, m.images_per_s
    )
}

/// What the numerical guard did, in one line.
pub fn guard_line(g: &directclr::train::GuardLine) -> String {
    use directclr::train::{Action, Cause};
    let loss = g
        .loss
        .map(|l| format!("{l:.4}"))
        .unwrap_or_else(|| "non-finite".into());
    let cause = match g.cause {
        Cause::NonFinite => "non-finite loss",
        Cause::Spike => "loss spike",
    };
    match g.action {
        Action::Stop => format!(
            "[guard] {cause} at step {} (loss {loss}, moving average {:.4}): stopping",
            g.failed_step, g.baseline
        ),
        Action::Rollback => format!(
            "[guard] {cause} at step {} (loss {loss}, moving average {:.4}): rolled back to \
             step {} (epoch {}), learning rate × {} (rollback {})",
            g.failed_step, g.baseline, g.step, g.epoch, g.lr_scale, g.rollbacks
        ),
    }
}

/// `h:mm:ss`.
pub fn format_duration(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(kind: MetricsKind) -> MetricsLine {
        MetricsLine {
            kind,
            epoch: 1,
            step: 20,
            loss: 3.25819,
            probe_loss: Some(2.0),
            probe_acc: Some(0.4567),
            lr: 0.15,
            images_per_s: 712.4,
            rank: None,
        }
    }

    #[test]
    fn durations_read_as_hours_minutes_seconds() {
        assert_eq!(format_duration(0.0), "0:00:00");
        assert_eq!(format_duration(59.6), "0:01:00");
        assert_eq!(format_duration(3.0 * 3600.0 + 25.0 * 60.0 + 7.0), "3:25:07");
        assert_eq!(format_duration(-5.0), "0:00:00");
    }

    #[test]
    fn the_bar_message_comes_from_the_last_window_and_the_current_lr() {
        assert_eq!(
            status(None, f64::NAN, None),
            "loss - probe - lr - - img/s ETA -"
        );
        let m = line(MetricsKind::Step);
        assert_eq!(
            status(Some(&m), 0.0375, Some("0:01:02")),
            "loss 3.2582 probe 45.7% lr 0.0375 712 img/s ETA 0:01:02"
        );
        let no_probe = MetricsLine {
            probe_acc: None,
            probe_loss: None,
            ..m
        };
        assert_eq!(
            status(Some(&no_probe), 0.1, None),
            "loss 3.2582 probe - lr 0.1000 712 img/s ETA -"
        );
    }

    #[test]
    fn plain_lines_carry_the_eta_of_step_windows() {
        assert_eq!(
            metrics_line(&line(MetricsKind::Step), Some("0:00:42")),
            "[step]  epoch 1 step 20: loss 3.2582 probe loss 2.0000 acc 45.67% lr 0.15000 712 img/s ETA 0:00:42"
        );
        assert_eq!(
            metrics_line(&line(MetricsKind::Epoch), None),
            "[epoch] epoch 1 step 20: loss 3.2582 probe loss 2.0000 acc 45.67% lr 0.15000 712 img/s"
        );
    }
}

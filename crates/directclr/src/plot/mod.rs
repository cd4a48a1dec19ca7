//! Figures in the style of the paper: log spectra, evolution curves, heat maps. PNG or SVG,
//! chosen by the file's extension. The font is embedded, so figures draw the same everywhere.

mod heatmap;
mod lines;

pub use heatmap::heatmap;
pub use lines::{line_chart, LineChart, Series};

use std::{path::Path, sync::Once};

use crate::{Error, Result};

/// Registers the embedded DejaVu Sans as the "sans-serif" family, once.
fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let font: &'static [u8] = include_bytes!("../../assets/DejaVuSans.ttf");
        // The bytes are a valid TrueType font shipped with the crate; a failure would be a
        // packaging bug, and text then falls back to nothing rather than aborting the run.
        let _ =
            plotters::style::register_font("sans-serif", plotters::style::FontStyle::Normal, font);
    });
}

/// The output format of a figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Png,
    Svg,
}

fn format_of(path: &Path) -> Result<Format> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("png") => Ok(Format::Png),
        Some("svg") => Ok(Format::Svg),
        _ => Err(Error::Plot {
            path: path.into(),
            reason: "the file name must end in .png or .svg".into(),
        }),
    }
}

fn plot_error<E: std::fmt::Display>(path: &Path) -> impl Fn(E) -> Error + '_ {
    move |e| Error::Plot {
        path: path.into(),
        reason: e.to_string(),
    }
}

/// How the curves of a chart are coloured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Palette {
    /// Along a blue-to-red ramp, in series order: for ordered families (steps, depths,
    /// dimensions), where neighbouring curves are meant to look alike.
    #[default]
    Ramp,
    /// Ten distinct hues, repeating after ten: for unrelated curves such as the runs of an
    /// overlay (Figure 9), where every curve must be told apart.
    Categorical,
}

impl Palette {
    /// The colour of line `k` of `n`.
    fn color(self, k: usize, n: usize) -> plotters::style::RGBColor {
        match self {
            Palette::Ramp => ramp(k, n),
            Palette::Categorical => categorical(k),
        }
    }
}

/// Line `k` of a categorical palette: blue, orange, green, red, purple, brown, pink, grey,
/// olive, cyan (the common ten-colour qualitative scheme).
fn categorical(k: usize) -> plotters::style::RGBColor {
    const TEN: [(u8, u8, u8); 10] = [
        (31, 119, 180),
        (255, 127, 14),
        (44, 160, 44),
        (214, 39, 40),
        (148, 103, 189),
        (140, 86, 75),
        (227, 119, 194),
        (127, 127, 127),
        (188, 189, 34),
        (23, 190, 207),
    ];
    let (r, g, b) = TEN[k % TEN.len()];
    plotters::style::RGBColor(r, g, b)
}

/// A colour for line `k` of `n`, along a blue-to-red ramp.
fn ramp(k: usize, n: usize) -> plotters::style::RGBColor {
    let t = if n <= 1 {
        0.0
    } else {
        k as f64 / (n - 1) as f64
    };
    let c = plotters::style::HSLColor(0.66 * (1.0 - t), 0.85, 0.45);
    let (r, g, b) = plotters::style::Color::rgb(&c);
    plotters::style::RGBColor(r, g, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn distance(a: plotters::style::RGBColor, b: plotters::style::RGBColor) -> f64 {
        let d = |x: u8, y: u8| (f64::from(x) - f64::from(y)).powi(2);
        (d(a.0, b.0) + d(a.1, b.1) + d(a.2, b.2)).sqrt()
    }

    #[test]
    fn categorical_colours_of_an_overlay_are_far_apart_and_repeat_after_ten() {
        let n = 10;
        for i in 0..n {
            for j in 0..i {
                let (a, b) = (
                    Palette::Categorical.color(i, n),
                    Palette::Categorical.color(j, n),
                );
                assert!(distance(a, b) > 60.0, "colours {j} and {i} are too close");
            }
        }
        assert_eq!(
            Palette::Categorical.color(10, 12),
            Palette::Categorical.color(0, 12)
        );
    }

    #[test]
    fn the_ramp_runs_from_blue_to_red_in_small_steps() {
        let n = 6;
        let first = Palette::Ramp.color(0, n);
        let last = Palette::Ramp.color(n - 1, n);
        assert!(first.2 > first.0 && last.0 > last.2, "{first:?} → {last:?}");
        // Neighbours on the ramp are closer than its ends: an ordered family reads as one.
        for k in 1..n {
            let step = distance(Palette::Ramp.color(k - 1, n), Palette::Ramp.color(k, n));
            assert!(step < distance(first, last));
        }
    }
}

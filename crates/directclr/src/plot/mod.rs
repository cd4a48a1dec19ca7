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

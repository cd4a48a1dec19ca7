//! Heat maps of small matrices (the alignment matrix of Figure 4).

use std::path::Path;

use nalgebra::DMatrix;
use plotters::prelude::*;

use super::{format_of, plot_error, register_font, Format};
use crate::Result;

/// Draws |m| as a grey-scale heat map (white = 0, black = the largest |entry|, as in Figure 4),
/// row 0 at the top, into `path` (.png or .svg), 640×640.
pub fn heatmap(path: &Path, title: &str, m: &DMatrix<f64>) -> Result<()> {
    match format_of(path)? {
        Format::Png => draw(
            BitMapBackend::new(path, (640, 640)).into_drawing_area(),
            path,
            title,
            m,
        ),
        Format::Svg => draw(
            SVGBackend::new(path, (640, 640)).into_drawing_area(),
            path,
            title,
            m,
        ),
    }
}

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, plotters::coord::Shift>,
    path: &Path,
    title: &str,
    m: &DMatrix<f64>,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    register_font();
    let err = plot_error(path);
    root.fill(&WHITE).map_err(&err)?;
    let (rows, cols) = m.shape();
    let max = m.abs().max().max(f64::MIN_POSITIVE);
    let mut ctx = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(14)
        .x_label_area_size(34)
        .y_label_area_size(34)
        .build_cartesian_2d(0..cols as i32, rows as i32..0)
        .map_err(&err)?;
    ctx.configure_mesh()
        .disable_mesh()
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(&err)?;
    let cells = (0..rows)
        .flat_map(|r| (0..cols).map(move |c| (r, c)))
        .map(|(r, c)| {
            let v = (255.0 * (1.0 - m[(r, c)].abs() / max)).round() as u8;
            Rectangle::new(
                [(c as i32, r as i32), (c as i32 + 1, r as i32 + 1)],
                RGBColor(v, v, v).filled(),
            )
        });
    ctx.draw_series(cells).map_err(&err)?;
    root.present().map_err(&err)?;
    Ok(())
}

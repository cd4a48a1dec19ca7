//! Line charts: spectra (value against rank) and evolution curves (value against step).

use std::path::Path;

use plotters::prelude::*;

use super::{format_of, plot_error, register_font, Format, Palette};
use crate::Result;

/// One curve.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend entry; `None` keeps the curve out of the legend.
    pub label: Option<String>,
    /// The points (x, y), in drawing order.
    pub points: Vec<(f64, f64)>,
}

/// A line chart.
#[derive(Debug, Clone)]
pub struct LineChart {
    /// Title above the plot.
    pub title: String,
    /// Label of the x axis.
    pub x_label: String,
    /// Label of the y axis.
    pub y_label: String,
    /// The curves, in drawing order.
    pub series: Vec<Series>,
    /// How the curves are coloured.
    pub palette: Palette,
}

/// Draws `chart` into `path` (.png or .svg), 900×600.
pub fn line_chart(path: &Path, chart: &LineChart) -> Result<()> {
    match format_of(path)? {
        Format::Png => draw(
            BitMapBackend::new(path, (900, 600)).into_drawing_area(),
            path,
            chart,
        ),
        Format::Svg => draw(
            SVGBackend::new(path, (900, 600)).into_drawing_area(),
            path,
            chart,
        ),
    }
}

fn bounds(chart: &LineChart) -> ((f64, f64), (f64, f64)) {
    let pts = chart
        .series
        .iter()
        .flat_map(|s| s.points.iter())
        .filter(|(x, y)| x.is_finite() && y.is_finite());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in pts {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    if x0 > x1 {
        return ((0.0, 1.0), (0.0, 1.0));
    }
    let pad = |a: f64, b: f64| {
        if b - a < 1e-12 {
            (a - 0.5, b + 0.5)
        } else {
            (a - 0.03 * (b - a), b + 0.03 * (b - a))
        }
    };
    (pad(x0, x1), pad(y0, y1))
}

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, plotters::coord::Shift>,
    path: &Path,
    chart: &LineChart,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    register_font();
    let err = plot_error(path);
    root.fill(&WHITE).map_err(&err)?;
    let ((x0, x1), (y0, y1)) = bounds(chart);
    let mut ctx = ChartBuilder::on(&root)
        .caption(&chart.title, ("sans-serif", 24))
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(&err)?;
    ctx.configure_mesh()
        .x_desc(&chart.x_label)
        .y_desc(&chart.y_label)
        .label_style(("sans-serif", 15))
        .x_label_formatter(&|v| {
            if (v - v.round()).abs() < 1e-9 {
                format!("{v:.0}")
            } else {
                format!("{v:.2}")
            }
        })
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(&err)?;
    let n = chart.series.len();
    let mut labelled = false;
    for (k, s) in chart.series.iter().enumerate() {
        let color = chart.palette.color(k, n);
        let pts = s
            .points
            .iter()
            .copied()
            .filter(|(x, y)| x.is_finite() && y.is_finite());
        let drawn = ctx
            .draw_series(LineSeries::new(pts, color.stroke_width(2)))
            .map_err(&err)?;
        if let Some(label) = &s.label {
            labelled = true;
            drawn.label(label).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(3))
            });
        }
    }
    if labelled {
        ctx.configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .label_font(("sans-serif", 15))
            .position(SeriesLabelPosition::LowerLeft)
            .draw()
            .map_err(&err)?;
    }
    root.present().map_err(&err)?;
    Ok(())
}

//! PNG plots for run outputs: samples over reference data, the training-loss curve, and for
//! sets the size histogram and a grid of single sets.
//!
//! Rendering is pure Rust (plotters bitmap backend + ab_glyph) with DejaVu Sans embedded from
//! the `dejavu` crate, so plots work on machines without system fonts. Files are written to
//! `<path>.tmp.png` and renamed into place, so a reader never sees half a PNG.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

use super::sets::SetData;

/// Errors from drawing or writing a plot.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// Nothing finite to draw.
    #[error("cannot plot `{path}`: {reason}")]
    NoData { path: PathBuf, reason: String },
    /// The embedded font could not be registered (should not happen with the bundled font).
    #[error("the embedded DejaVu font could not be loaded for plotting")]
    Font,
    /// plotters failed to draw or encode.
    #[error("drawing `{path}` failed: {detail}")]
    Draw { path: PathBuf, detail: String },
    /// Moving the finished file into place failed.
    #[error("writing `{path}` failed: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Result type of this module.
pub type Result<T> = std::result::Result<T, PlotError>;

/// Plot size in pixels.
const SIZE: (u32, u32) = (800, 800);
/// Font family name the embedded font is registered under.
const FONT: &str = "sans-serif";

/// Registers the embedded font once per process (plotters keeps a global font table).
fn ensure_font() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = REGISTERED
        .get_or_init(|| register_font(FONT, FontStyle::Normal, dejavu::sans::regular()).is_ok());
    if *ok {
        Ok(())
    } else {
        Err(PlotError::Font)
    }
}

/// The first two columns of row-major `[n, dim]` data as points (`dim ≥ 2`).
pub fn rows_to_points(flat: &[f32], dim: usize) -> Vec<[f32; 2]> {
    if dim < 2 {
        return Vec::new();
    }
    flat.chunks_exact(dim).map(|r| [r[0], r[1]]).collect()
}

/// Draws into `<path>.tmp.png` with `draw`, then renames it to `path`.
fn render<F>(path: &Path, draw: F) -> Result<()>
where
    F: FnOnce(
        &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    ) -> std::result::Result<(), String>,
{
    render_sized(path, SIZE, draw)
}

/// [`render`] at another size.
fn render_sized<F>(path: &Path, size: (u32, u32), draw: F) -> Result<()>
where
    F: FnOnce(
        &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    ) -> std::result::Result<(), String>,
{
    ensure_font()?;
    let mut tmp_name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    tmp_name.push(".tmp.png");
    let tmp = path.with_file_name(tmp_name);
    let fail = |detail: String| PlotError::Draw {
        path: path.to_path_buf(),
        detail,
    };
    {
        let root = BitMapBackend::new(&tmp, size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| fail(e.to_string()))?;
        draw(&root).map_err(fail)?;
        root.present().map_err(|e| fail(e.to_string()))?;
    }
    std::fs::rename(&tmp, path).map_err(|source| PlotError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// The `q`-quantile (0..=1) of finite values, by sorting a copy.
fn quantile(mut v: Vec<f32>, q: f64) -> Option<f32> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((v.len() - 1) as f64 * q).round() as usize;
    Some(v[i])
}

/// Square plotting window from the 0.5%–99.5% quantiles of all points (so a few outliers do
/// not squash the picture), padded by 10%.
fn robust_window(sets: &[&[[f32; 2]]]) -> Option<((f64, f64), (f64, f64))> {
    let axis = |k: usize| -> Option<(f64, f64)> {
        let vals: Vec<f32> = sets.iter().flat_map(|s| s.iter().map(|p| p[k])).collect();
        Some((
            quantile(vals.clone(), 0.005)? as f64,
            quantile(vals, 0.995)? as f64,
        ))
    };
    let (x, y) = (axis(0)?, axis(1)?);
    let half = ((x.1 - x.0).max(y.1 - y.0) * 0.55).max(1e-6);
    let (cx, cy) = ((x.0 + x.1) / 2.0, (y.0 + y.1) / 2.0);
    Some(((cx - half, cx + half), (cy - half, cy + half)))
}

/// The learned transform (NDM): one panel per time with the points F(x, t) of the same data
/// points x, each coloured by its position in the data (hue from the angle around the data's
/// centre, so one can follow a point across panels). `panels` holds (label, points) pairs;
/// every panel has the same number of points, in the same order.
pub fn transform_png(path: &Path, panels: &[(String, Vec<[f32; 2]>)], title: &str) -> Result<()> {
    let Some((_, first)) = panels.first() else {
        return Err(PlotError::NoData {
            path: path.to_path_buf(),
            reason: "no panels".into(),
        });
    };
    let n = first.len().max(1) as f64;
    let (cx, cy) = first.iter().fold((0.0, 0.0), |(a, b), p| {
        (a + p[0] as f64 / n, b + p[1] as f64 / n)
    });
    let colour: Vec<RGBColor> = first
        .iter()
        .map(|p| {
            let hue = ((p[1] as f64 - cy).atan2(p[0] as f64 - cx) / std::f64::consts::TAU + 0.5)
                .clamp(0.0, 1.0);
            let (r, g, b) = hsv(hue, 0.85, 0.85);
            RGBColor(r, g, b)
        })
        .collect();
    let w = 320 * panels.len() as u32;
    render_sized(path, (w.max(320), 380), |root| {
        let e = |e: &dyn std::fmt::Display| e.to_string();
        let root = root.titled(title, (FONT, 22)).map_err(|x| e(&x))?;
        let areas = root.split_evenly((1, panels.len()));
        for (area, (label, pts)) in areas.iter().zip(panels) {
            let finite: Vec<[f32; 2]> = pts
                .iter()
                .filter(|p| p[0].is_finite() && p[1].is_finite())
                .copied()
                .collect();
            let Some(((x0, x1), (y0, y1))) = robust_window(&[&finite]) else {
                continue;
            };
            let mut chart = ChartBuilder::on(area)
                .caption(label, (FONT, 16))
                .margin(8)
                .x_label_area_size(25)
                .y_label_area_size(35)
                .build_cartesian_2d(x0..x1, y0..y1)
                .map_err(|x| e(&x))?;
            chart
                .configure_mesh()
                .label_style((FONT, 11))
                .light_line_style(WHITE.mix(0.0))
                .x_labels(4)
                .y_labels(4)
                .draw()
                .map_err(|x| e(&x))?;
            chart
                .draw_series(
                    pts.iter()
                        .zip(&colour)
                        .filter(|(p, _)| p[0].is_finite() && p[1].is_finite())
                        .map(|(p, c)| {
                            Circle::new((p[0] as f64, p[1] as f64), 1, c.mix(0.6).filled())
                        }),
                )
                .map_err(|x| e(&x))?;
        }
        Ok(())
    })
}

/// HSV (all in [0, 1]) to 8-bit RGB.
fn hsv(h: f64, s: f64, v: f64) -> (u8, u8, u8) {
    let i = (h * 6.0).floor();
    let f = h * 6.0 - i;
    let (p, q, t) = (v * (1.0 - s), v * (1.0 - f * s), v * (1.0 - (1.0 - f) * s));
    let (r, g, b) = match (i as i64).rem_euclid(6) {
        0 => (v, t, p),
        1 => (q, v, p),
        2 => (p, v, t),
        3 => (p, q, v),
        4 => (t, p, v),
        _ => (v, p, q),
    };
    let c = |x: f64| (x * 255.0).round().clamp(0.0, 255.0) as u8;
    (c(r), c(g), c(b))
}

/// Scatter plot of generated `samples` (orange) over `reference` data (blue): small
/// semi-transparent points, a legend, and a square window from robust quantiles. Non-finite
/// samples are dropped and counted in the legend.
pub fn scatter_png(
    path: &Path,
    samples: &[[f32; 2]],
    reference: &[[f32; 2]],
    title: &str,
) -> Result<()> {
    let finite = |p: &&[f32; 2]| p[0].is_finite() && p[1].is_finite();
    let s: Vec<[f32; 2]> = samples.iter().filter(finite).copied().collect();
    let r: Vec<[f32; 2]> = reference.iter().filter(finite).copied().collect();
    let dropped = samples.len() - s.len();
    let ((x0, x1), (y0, y1)) = robust_window(&[&s, &r]).ok_or_else(|| PlotError::NoData {
        path: path.to_path_buf(),
        reason: "no finite points in samples or reference".to_string(),
    })?;
    let inside =
        |p: &[f32; 2]| (x0..=x1).contains(&(p[0] as f64)) && (y0..=y1).contains(&(p[1] as f64));
    let sample_label = if dropped > 0 {
        format!("samples (n = {}, {dropped} non-finite dropped)", s.len())
    } else {
        format!("samples (n = {})", s.len())
    };
    let reference_label = format!("data (n = {})", r.len());
    let blue = RGBColor(31, 119, 180);
    let orange = RGBColor(255, 127, 14);
    render(path, |root| {
        let e = |e: &dyn std::fmt::Display| e.to_string();
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 24))
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(55)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|x| e(&x))?;
        chart
            .configure_mesh()
            .label_style((FONT, 14))
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(|x| e(&x))?;
        let sets = [
            (&r, blue, reference_label.as_str()),
            (&s, orange, sample_label.as_str()),
        ];
        for (pts, colour, label) in sets {
            let style = colour.mix(0.35).filled();
            chart
                .draw_series(
                    pts.iter()
                        .filter(|p| inside(p))
                        .map(|p| Circle::new((p[0] as f64, p[1] as f64), 1, style)),
                )
                .map_err(|x| e(&x))?
                .label(label)
                .legend(move |(x, y)| Circle::new((x, y), 5, colour.filled()));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .label_font((FONT, 16))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .draw()
            .map_err(|x| e(&x))
    })
}

/// Set sizes: for each k = 1..N two bars side by side, the fraction of generated sets with k
/// components (orange) and of data sets (blue), with a legend. The histograms are indexed by
/// k − 1 (as `SetData::count_histogram` returns them); the shorter one counts as 0 beyond its end.
pub fn counts_png(path: &Path, gen_hist: &[f64], data_hist: &[f64], title: &str) -> Result<()> {
    let max = gen_hist.len().max(data_hist.len());
    let at = |h: &[f64], i: usize| h.get(i).copied().filter(|v| v.is_finite()).unwrap_or(0.0);
    let top = (0..max)
        .map(|i| at(gen_hist, i).max(at(data_hist, i)))
        .fold(0.0, f64::max);
    if max == 0 || top <= 0.0 {
        return Err(PlotError::NoData {
            path: path.to_path_buf(),
            reason: "both size histograms are empty".into(),
        });
    }
    let blue = RGBColor(31, 119, 180);
    let orange = RGBColor(255, 127, 14);
    let x_labels = max.min(16);
    render_sized(path, (800, 500), |root| {
        let e = |e: &dyn std::fmt::Display| e.to_string();
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 24))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(60)
            .build_cartesian_2d(0.4..max as f64 + 0.6, 0.0..top * 1.15)
            .map_err(|x| e(&x))?;
        chart
            .configure_mesh()
            .label_style((FONT, 14))
            .light_line_style(WHITE.mix(0.0))
            .disable_x_mesh()
            .x_desc("components per set (k)")
            .y_desc("fraction of sets")
            .x_labels(x_labels)
            .x_label_formatter(&|v| {
                let k = v.round();
                if (v - k).abs() < 1e-6 && k >= 1.0 {
                    format!("{k:.0}")
                } else {
                    String::new()
                }
            })
            .y_label_formatter(&|v| short_number(*v))
            .draw()
            .map_err(|x| e(&x))?;
        let bars = [
            (gen_hist, orange, -0.4, "generated"),
            (data_hist, blue, 0.0, "data"),
        ];
        for (hist, colour, offset, label) in bars {
            chart
                .draw_series((0..max).map(|i| {
                    let k = (i + 1) as f64;
                    Rectangle::new(
                        [(k + offset, 0.0), (k + offset + 0.4, at(hist, i))],
                        colour.mix(0.85).filled(),
                    )
                }))
                .map_err(|x| e(&x))?
                .label(label)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 12, y + 5)], colour.filled())
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .label_font((FONT, 16))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .draw()
            .map_err(|x| e(&x))
    })
}

/// Sets drawn one per panel: a grid of up to `panels` small panels (as square as possible),
/// each showing one set's components as points (the first two coordinates; a 1-D component at
/// height 0), all panels on the same axis window, the set's size in the panel's corner.
pub fn sets_png(path: &Path, sets: &SetData, panels: usize, title: &str) -> Result<()> {
    let shown = panels.min(sets.len());
    let d = sets.component;
    let point = |c: &[f32]| -> [f32; 2] {
        match c {
            [x] => [*x, 0.0],
            [x, y, ..] => [*x, *y],
            [] => [f32::NAN, f32::NAN],
        }
    };
    let pts: Vec<Vec<[f32; 2]>> = (0..shown)
        .map(|i| sets.set(i).chunks_exact(d.max(1)).map(point).collect())
        .collect();
    let all: Vec<[f32; 2]> = pts
        .iter()
        .flatten()
        .filter(|p| p[0].is_finite() && p[1].is_finite())
        .copied()
        .collect();
    if d == 0 || all.is_empty() {
        return Err(PlotError::NoData {
            path: path.to_path_buf(),
            reason: "no sets with finite components".into(),
        });
    }
    // The whole extent (a set has few points; none may fall outside), square, padded by 20%.
    let range = |k: usize| {
        all.iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
                (lo.min(p[k] as f64), hi.max(p[k] as f64))
            })
    };
    let ((x0, x1), (y0, y1)) = (range(0), range(1));
    let half = ((x1 - x0).max(y1 - y0) * 0.6).max(1e-3);
    let (cx, cy) = ((x0 + x1) / 2.0, (y0 + y1) / 2.0);
    let (xs, ys) = ((cx - half)..(cx + half), (cy - half)..(cy + half));
    let cols = (1..=shown).find(|c| c * c >= shown).unwrap_or(1);
    let rows = shown.div_ceil(cols);
    let side = 200u32;
    let size = (cols as u32 * side, rows as u32 * side + 40);
    let blue = RGBColor(31, 119, 180);
    render_sized(path, size, |root| {
        let e = |e: &dyn std::fmt::Display| e.to_string();
        let root = root.titled(title, (FONT, 22)).map_err(|x| e(&x))?;
        for (area, set) in root.split_evenly((rows, cols)).iter().zip(&pts) {
            let mut chart = ChartBuilder::on(area)
                .margin(6)
                .build_cartesian_2d(xs.clone(), ys.clone())
                .map_err(|x| e(&x))?;
            chart
                .configure_mesh()
                .disable_mesh()
                .disable_x_axis()
                .disable_y_axis()
                .draw()
                .map_err(|x| e(&x))?;
            chart
                .plotting_area()
                .draw(&Rectangle::new(
                    [(xs.start, ys.start), (xs.end, ys.end)],
                    BLACK.mix(0.3),
                ))
                .map_err(|x| e(&x))?;
            // Faint axes through the origin, when it is in view, to anchor the eye.
            let grey = RGBColor(200, 200, 200);
            if xs.contains(&0.0) {
                chart
                    .draw_series(std::iter::once(PathElement::new(
                        vec![(0.0, ys.start), (0.0, ys.end)],
                        grey,
                    )))
                    .map_err(|x| e(&x))?;
            }
            if ys.contains(&0.0) {
                chart
                    .draw_series(std::iter::once(PathElement::new(
                        vec![(xs.start, 0.0), (xs.end, 0.0)],
                        grey,
                    )))
                    .map_err(|x| e(&x))?;
            }
            chart
                .draw_series(
                    set.iter()
                        .filter(|p| p[0].is_finite() && p[1].is_finite())
                        .map(|p| Circle::new((p[0] as f64, p[1] as f64), 4, blue.filled())),
                )
                .map_err(|x| e(&x))?;
            chart
                .plotting_area()
                .draw(&Text::new(
                    format!("k = {}", set.len()),
                    (
                        xs.start + 0.04 * (xs.end - xs.start),
                        ys.end - 0.04 * (ys.end - ys.start),
                    ),
                    (FONT, 14),
                ))
                .map_err(|x| e(&x))?;
        }
        Ok(())
    })
}

/// A tick label with at most 3 significant digits (plotters prints `0.6000000000001`).
fn short_number(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let a = v.abs();
    if !(1e-3..1e5).contains(&a) {
        return format!("{v:.2e}");
    }
    let decimals = (2 - a.log10().floor() as i32).max(0) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// Centred moving average over `window` points (shrinking at the ends).
fn smooth(v: &[f64], window: usize) -> Vec<f64> {
    let half = window / 2;
    let mut prefix = vec![0.0; v.len() + 1];
    for (i, x) in v.iter().enumerate() {
        prefix[i + 1] = prefix[i] + x;
    }
    (0..v.len())
        .map(|i| {
            let (a, b) = (i.saturating_sub(half), (i + half + 1).min(v.len()));
            (prefix[b] - prefix[a]) / (b - a) as f64
        })
        .collect()
}

/// Training-loss curve: the raw values in light grey and a moving average (window ≈ 2% of the
/// points) in blue; log-scale y when every finite loss is positive. Non-finite entries are
/// skipped.
pub fn loss_png(path: &Path, steps: &[u64], losses: &[f64], title: &str) -> Result<()> {
    let pts: Vec<(f64, f64)> = steps
        .iter()
        .zip(losses)
        .filter(|(_, l)| l.is_finite())
        .map(|(s, l)| (*s as f64, *l))
        .collect();
    if pts.is_empty() {
        return Err(PlotError::NoData {
            path: path.to_path_buf(),
            reason: "no finite loss values".to_string(),
        });
    }
    let ys: Vec<f64> = pts.iter().map(|p| p.1).collect();
    let window = (pts.len() / 50).max(1);
    let smoothed: Vec<(f64, f64)> = pts
        .iter()
        .zip(smooth(&ys, window))
        .map(|(p, y)| (p.0, y))
        .collect();
    let (x0, x1) = (pts[0].0, pts[pts.len() - 1].0.max(pts[0].0 + 1.0));
    let lo = ys.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = ys.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let log = lo > 0.0;
    let blue = RGBColor(31, 119, 180);
    let draw_lines = |root: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>| {
        let e = |e: &dyn std::fmt::Display| e.to_string();
        let mut builder = ChartBuilder::on(root);
        builder
            .caption(title, (FONT, 24))
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(70);
        let raw_label = "loss";
        let smooth_label = format!("moving average ({window})");
        macro_rules! finish {
            ($chart:expr) => {{
                let mut chart = $chart;
                chart
                    .configure_mesh()
                    .label_style((FONT, 14))
                    .light_line_style(WHITE.mix(0.0))
                    .x_desc("step")
                    .x_label_formatter(&|v| format!("{v:.0}"))
                    .y_label_formatter(&|v| short_number(*v))
                    .draw()
                    .map_err(|x| e(&x))?;
                chart
                    .draw_series(LineSeries::new(
                        pts.iter().copied(),
                        RGBColor(180, 180, 180),
                    ))
                    .map_err(|x| e(&x))?
                    .label(raw_label)
                    .legend(|(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], RGBColor(180, 180, 180))
                    });
                chart
                    .draw_series(LineSeries::new(
                        smoothed.iter().copied(),
                        blue.stroke_width(2),
                    ))
                    .map_err(|x| e(&x))?
                    .label(smooth_label.as_str())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], blue.stroke_width(2))
                    });
                chart
                    .configure_series_labels()
                    .position(SeriesLabelPosition::UpperRight)
                    .label_font((FONT, 16))
                    .background_style(WHITE.mix(0.85))
                    .border_style(BLACK.mix(0.4))
                    .draw()
                    .map_err(|x| e(&x))
            }};
        }
        if log {
            let range = (lo * 0.9)..(hi * 1.1);
            finish!(builder
                .build_cartesian_2d(x0..x1, range.log_scale())
                .map_err(|x| e(&x))?)
        } else {
            let pad = ((hi - lo) * 0.05).max(1e-12);
            finish!(builder
                .build_cartesian_2d(x0..x1, (lo - pad)..(hi + pad))
                .map_err(|x| e(&x))?)
        }
    };
    render(path, draw_lines)
}

/// Layout of an image grid: each tile `channels × height × width` (values on [−1, 1]),
/// `cols` tiles per row, optional column headers.
pub struct ImageGrid<'a> {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub cols: usize,
    pub headers: &'a [String],
}

/// `tiles` (n × c·h·w, row-major C, H, W; values on [−1, 1], clamped) as a grid of images,
/// grey for one channel, RGB for three (other channel counts show their first channel).
pub fn image_grid_png(path: &Path, tiles: &[f32], grid: &ImageGrid, title: &str) -> Result<()> {
    let (c, h, w) = (grid.channels.max(1), grid.height.max(1), grid.width.max(1));
    let per = c * h * w;
    let n = tiles.len() / per;
    let cols = grid.cols.clamp(1, n.max(1));
    let rows = n.div_ceil(cols).max(1);
    // Each pixel a square of `scale` device pixels: tiles about 64 pixels wide at least.
    let scale = (64 / w.max(h)).clamp(1, 8) as u32 * if w.max(h) <= 8 { 2 } else { 1 };
    let gap = 4u32;
    let head = if grid.headers.is_empty() { 0 } else { 22 };
    let top = 34 + head;
    let tile = (w as u32 * scale, h as u32 * scale);
    let size = (
        (cols as u32 * (tile.0 + gap) + gap).max(360),
        top + rows as u32 * (tile.1 + gap) + gap,
    );
    let level = |v: f32| (((v.clamp(-1.0, 1.0) + 1.0) * 0.5) * 255.0).round() as u8;
    render_sized(path, size, |root| {
        fn e<E: std::fmt::Display>(e: E) -> String {
            e.to_string()
        }
        root.draw(&Text::new(title.to_string(), (gap as i32, 8), (FONT, 18)))
            .map_err(e)?;
        for (j, label) in grid.headers.iter().enumerate().take(cols) {
            let x = (gap + j as u32 * (tile.0 + gap)) as i32;
            root.draw(&Text::new(label.clone(), (x, 34), (FONT, 14)))
                .map_err(e)?;
        }
        for (k, img) in tiles.chunks_exact(per).enumerate() {
            let (r, col) = (k / cols, k % cols);
            let x0 = gap + col as u32 * (tile.0 + gap);
            let y0 = top + r as u32 * (tile.1 + gap);
            for y in 0..h {
                for x in 0..w {
                    let at = |ch: usize| img[ch * h * w + y * w + x];
                    let colour = if c == 3 {
                        RGBColor(level(at(0)), level(at(1)), level(at(2)))
                    } else {
                        let g = level(at(0));
                        RGBColor(g, g, g)
                    };
                    let px = (x0 + x as u32 * scale) as i32;
                    let py = (y0 + y as u32 * scale) as i32;
                    root.draw(&Rectangle::new(
                        [(px, py), (px + scale as i32, py + scale as i32)],
                        colour.filled(),
                    ))
                    .map_err(e)?;
                }
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{stream, Purpose};
    use rand::Rng;

    fn png_size(path: &Path) -> Option<(u32, u32)> {
        let b = std::fs::read(path).ok()?;
        if b.get(..8)? != b"\x89PNG\r\n\x1a\n" {
            return None;
        }
        let w = u32::from_be_bytes(b.get(16..20)?.try_into().ok()?);
        let h = u32::from_be_bytes(b.get(20..24)?.try_into().ok()?);
        Some((w, h))
    }

    #[test]
    fn writes_both_plots_as_png() -> std::result::Result<(), Box<dyn std::error::Error>> {
        let dir = std::env::var_os("DIFC_PLOT_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let mut rng = stream(1, Purpose::Test, 0, 0);
        let mut normal = || -> f32 { rng.sample(rand_distr::StandardNormal) };
        let reference: Vec<[f32; 2]> = (0..4000)
            .map(|i| {
                let a = (i % 8) as f32 * std::f32::consts::PI / 4.0;
                [
                    4.0 * a.cos() + 0.3 * normal(),
                    4.0 * a.sin() + 0.3 * normal(),
                ]
            })
            .collect();
        let mut samples: Vec<[f32; 2]> = reference
            .iter()
            .map(|p| [p[0] * 1.1 + 0.2, p[1] * 0.9])
            .collect();
        samples.push([1e6, -1e6]); // an outlier must not squash the plot
        samples.push([f32::NAN, 0.0]);
        let sp = dir.join("difc_runtime_scatter.png");
        scatter_png(&sp, &samples, &reference, "8 gaussians: samples vs data")?;
        assert_eq!(png_size(&sp), Some(SIZE));
        let steps: Vec<u64> = (0..2000).collect();
        let losses: Vec<f64> = steps
            .iter()
            .map(|&s| 2.0 * (-(s as f64) / 400.0).exp() + 0.1 + 0.05 * (s as f64 * 0.7).sin())
            .collect();
        let lp = dir.join("difc_runtime_loss.png");
        loss_png(&lp, &steps, &losses, "training loss")?;
        assert_eq!(png_size(&lp), Some(SIZE));
        // Negative values switch to a linear axis rather than failing.
        let neg: Vec<f64> = losses.iter().map(|l| l - 1.0).collect();
        let lin = dir.join("difc_runtime_loss_linear.png");
        loss_png(&lin, &steps, &neg, "linear axis")?;
        assert_eq!(png_size(&lin), Some(SIZE));
        assert!(matches!(
            loss_png(&lp, &steps, &[f64::NAN; 2000], "x"),
            Err(PlotError::NoData { .. })
        ));
        Ok(())
    }

    #[test]
    fn writes_set_plots_as_png() -> std::result::Result<(), Box<dyn std::error::Error>> {
        use crate::run::data::generate;
        let dir = std::env::var_os("DIFC_PLOT_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let d = generate("ring_sets", 400, 2, &[])?;
        let sets = SetData::from_dataset(&d, 2, 8)?;
        let (a, b) = sets.split_at(200);
        let cp = dir.join("difc_runtime_counts.png");
        let mut skewed = a.count_histogram();
        skewed.reverse();
        counts_png(
            &cp,
            &skewed,
            &b.count_histogram(),
            "set sizes: generated vs data",
        )?;
        assert_eq!(png_size(&cp), Some((800, 500)));
        let sp = dir.join("difc_runtime_sets.png");
        sets_png(&sp, &sets, 16, "ring sets")?;
        assert_eq!(png_size(&sp), Some((800, 840)));
        // Fewer sets than panels: a smaller grid, not an error.
        let (three, _) = sets.split_at(3);
        let fp = dir.join("difc_runtime_sets_few.png");
        sets_png(&fp, &three, 16, "three sets")?;
        assert_eq!(png_size(&fp), Some((400, 440)));
        assert!(matches!(
            counts_png(&cp, &[], &[0.0], "x"),
            Err(PlotError::NoData { .. })
        ));
        let (none, _) = sets.split_at(0);
        assert!(matches!(
            sets_png(&sp, &none, 16, "x"),
            Err(PlotError::NoData { .. })
        ));
        Ok(())
    }

    #[test]
    fn window_ignores_outliers_and_is_square() -> std::result::Result<(), &'static str> {
        let mut pts: Vec<[f32; 2]> = (0..1000).map(|i| [i as f32 / 1000.0, 0.0]).collect();
        pts.push([1e9, 1e9]);
        let ((x0, x1), (y0, y1)) = robust_window(&[&pts]).ok_or("no window")?;
        assert!(x1 < 2.0 && x1 > 0.9 && x0 > -1.0 && x0 < 0.1, "{x0} {x1}");
        assert!(((x1 - x0) - (y1 - y0)).abs() < 1e-9);
        assert_eq!(smooth(&[1.0, 2.0, 3.0], 3), vec![1.5, 2.0, 2.5]);
        assert_eq!(short_number(0.6000000000001), "0.6");
        assert_eq!(short_number(0.0123456), "0.0123");
        assert_eq!(short_number(1234.6), "1235");
        assert_eq!(short_number(2e-5), "2.00e-5");
        assert_eq!(
            rows_to_points(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 3),
            vec![[1.0, 2.0], [4.0, 5.0]]
        );
        Ok(())
    }
}

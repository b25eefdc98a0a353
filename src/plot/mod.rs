//! Figures for reports, drawn with `plotters`: every function writes `<stem>.svg` and
//! `<stem>.png` (written to a temporary name, then renamed, so nothing is left half-written).
//!
//! Text in the PNG is rasterised with `ab_glyph` from a TrueType font loaded at run time from
//! the first existing file among `$PREFIX_SUBSPACE_FONT` and a few common Linux paths; it is
//! registered under the family name `sans-serif`, which is also the family every text style
//! here asks for. The SVG needs no font file (the viewer renders the text): when no font is
//! found the SVG is still written and the PNG is reported as an error.
//!
//! This file holds the public functions and what the figures share (writing the files, the
//! font, titles, legends and their glyphs, axis numbers); each figure is drawn in its own file:
//! `line.rs` (n = 2), `triangle.rs` (n = 3), `comparison.rs` (methods per task), `curves.rs`
//! (training curves).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{register_font, FontStyle};

use crate::error::{Error, Result};

mod comparison;
mod curves;
mod line;
mod triangle;

use comparison::ComparisonPlot;
use curves::CurvesPlot;
use line::LinePlot;
use triangle::TrianglePlot;

/// The font family registered with `ab_glyph` and used by every text style.
const FAMILY: &str = "sans-serif";
/// Environment variable naming a TrueType font file for the PNG text.
const FONT_ENV: &str = "PREFIX_SUBSPACE_FONT";
/// Fallback font files, first existing one wins.
const FONT_PATHS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/freefont/FreeSans.ttf",
];

const SIZE: (u32, u32) = (800, 500);
const TALL: (u32, u32) = (800, 600);

const TITLE_PX: u32 = 22;
const DESC_PX: u32 = 17;
const TICK_PX: u32 = 14;
const LEGEND_PX: u32 = 14;

/// Tableau 10: one colour per curve or method (cycled).
const COLORS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];
const GREY: RGBColor = RGBColor(190, 190, 190);

/// Errors inside a drawing routine; turned into an `Error::Input` naming the file.
type DrawResult<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

/// (a) The classic subspace-paper figure for a line (n = 2): the metric as α goes from vertex 0
/// (t = 0) to vertex 1 (t = 1).
///
/// `series`: one or more named curves (e.g. "dev", "test"), each a list of (t, value) points
/// (sorted by t here; non-finite points are skipped). `markers`: (label, t, value) points drawn
/// as diamonds annotated with their value, e.g. the centroid (t = 0.5) per curve. `hlines`:
/// (label, value) horizontal dashed lines, e.g. the ensemble of the vertices per curve. A
/// marker or line whose label is a curve name (or starts with one followed by a space) takes
/// that curve's colour. Writes `<stem>.svg` and `<stem>.png` (800×500).
pub fn simplex_line(
    series: &[(String, Vec<(f64, f64)>)],
    markers: &[(String, f64, f64)],
    hlines: &[(String, f64)],
    metric: &str,
    title: &str,
    stem: &Path,
) -> Result<()> {
    let plot = LinePlot::new(series, markers, hlines, metric, title).map_err(|m| input(stem, &m))?;
    write_figure(stem, SIZE, |a| plot.draw(a), |a| plot.draw(a))
}

/// (a') The n = 3 figure: a heat map over the triangle of mixing weights.
///
/// `points`: (α0, α1, α2, value) on a barycentric grid (weights are normalised to sum to 1;
/// points with a non-finite value are skipped, negative weights are an error). Each point is
/// drawn as the hexagonal cell around it, clipped to the triangle; the vertices are labelled
/// v0, v1, v2 (with their value when the grid has them), the centroid is marked, and a colour
/// bar gives the scale with its min and max. Writes `<stem>.svg` and `<stem>.png` (800×600).
pub fn simplex_triangle(points: &[([f64; 3], f64)], metric: &str, title: &str, stem: &Path) -> Result<()> {
    let plot = TrianglePlot::new(points, metric, title).map_err(|m| input(stem, &m))?;
    write_figure(stem, TALL, |a| plot.draw(a), |a| plot.draw(a))
}

/// (b) Method comparison per task: for each task a group of points, one colour per method,
/// at the mean with an error bar of ± std (over seeds), with a legend of the methods.
///
/// `values`: (task, method) → (mean, std); missing pairs and non-finite means are skipped, a
/// non-finite std draws the point without a bar. Tasks and methods are drawn in the given
/// order. Writes `<stem>.svg` and `<stem>.png` (800×500).
pub fn method_comparison(
    tasks: &[String],
    methods: &[String],
    values: &BTreeMap<(String, String), (f64, f64)>,
    ylabel: &str,
    title: &str,
    stem: &Path,
) -> Result<()> {
    let plot = ComparisonPlot::new(tasks, methods, values, ylabel, title).map_err(|m| input(stem, &m))?;
    write_figure(stem, SIZE, |a| plot.draw(a), |a| plot.draw(a))
}

/// (c) Training curves: the training loss per step (top panel, with a moving average when
/// there are many steps) and the dev metric per evaluation step (bottom panel, its maximum
/// circled), sharing the step axis.
///
/// `loss`: (step, loss); `dev`: (step, metric). Either may be empty (that panel is left out),
/// not both; non-finite points are skipped. Writes `<stem>.svg` and `<stem>.png` (800×600
/// with both panels, 800×500 with one).
pub fn training_curves(loss: &[(f64, f64)], dev: &[(f64, f64)], metric: &str, title: &str, stem: &Path) -> Result<()> {
    let plot = CurvesPlot::new(loss, dev, metric, title).map_err(|m| input(stem, &m))?;
    let size = if plot.loss.is_empty() || plot.dev.is_empty() { SIZE } else { TALL };
    write_figure(stem, size, |a| plot.draw(a), |a| plot.draw(a))
}

// ---------------------------------------------------------------------------------------------
// Writing both files.

/// `<stem><ext>`, keeping any dots already in the stem.
fn with_ext(stem: &Path, ext: &str) -> PathBuf {
    let mut s: OsString = stem.as_os_str().to_owned();
    s.push(ext);
    PathBuf::from(s)
}

/// A hidden temporary sibling of `path` that keeps its extension (the PNG encoder picks the
/// format from the extension).
fn temp_sibling(path: &Path, ext: &str) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.tmp{ext}", std::process::id()))
}

fn input(stem: &Path, msg: &str) -> Error {
    Error::Input(format!("{}.{{svg,png}}: {msg}", stem.display()))
}

fn draw_error(path: &Path, e: impl std::fmt::Display) -> Error {
    let msg = e.to_string().replace('\n', " ");
    Error::Input(format!("{}: cannot draw the figure: {msg}", path.display()))
}

/// Draws the figure on an SVG and on a bitmap backend and writes `<stem>.svg`, `<stem>.png`.
/// The SVG is written even when no font is available for the PNG.
fn write_figure<FS, FP>(stem: &Path, size: (u32, u32), draw_svg: FS, draw_png: FP) -> Result<()>
where
    FS: FnOnce(&DrawingArea<SVGBackend<'_>, Shift>) -> DrawResult,
    FP: FnOnce(&DrawingArea<BitMapBackend<'_>, Shift>) -> DrawResult,
{
    let (svg_path, png_path) = (with_ext(stem, ".svg"), with_ext(stem, ".png"));
    if let Some(dir) = svg_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let font = font_status();

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        let drawn: DrawResult = (|| {
            root.fill(&WHITE)?;
            draw_svg(&root)?;
            root.present()?;
            Ok(())
        })();
        drawn.map_err(|e| draw_error(&svg_path, e))?;
    }
    let svg_tmp = temp_sibling(&svg_path, ".svg");
    if let Err(e) = std::fs::write(&svg_tmp, svg.as_bytes()).and_then(|()| std::fs::rename(&svg_tmp, &svg_path)) {
        let _ = std::fs::remove_file(&svg_tmp);
        return Err(Error::io(&svg_path, e));
    }

    if let Err(msg) = font {
        return Err(Error::Input(format!("{}: {msg} ({} was written)", png_path.display(), svg_path.display())));
    }
    let png_tmp = temp_sibling(&png_path, ".png");
    let drawn: DrawResult = (|| {
        let root = BitMapBackend::new(&png_tmp, size).into_drawing_area();
        root.fill(&WHITE)?;
        draw_png(&root)?;
        root.present()?;
        Ok(())
    })();
    // The backend is dropped by now (it may have saved a partial image on drop).
    if let Err(e) = drawn {
        let _ = std::fs::remove_file(&png_tmp);
        return Err(draw_error(&png_path, e));
    }
    std::fs::rename(&png_tmp, &png_path).map_err(|e| {
        let _ = std::fs::remove_file(&png_tmp);
        Error::io(&png_path, e)
    })
}

// ---------------------------------------------------------------------------------------------
// Font.

/// The path of the font registered so far (registration is process-wide).
static FONT_LOADED: Mutex<Option<PathBuf>> = Mutex::new(None);

#[cfg(test)]
thread_local! {
    /// Tests: behave as if no font file existed (and draw with an unregistered family).
    static SIMULATE_NO_FONT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The family every text style uses.
fn family() -> &'static str {
    #[cfg(test)]
    if SIMULATE_NO_FONT.with(|c| c.get()) {
        return "unregistered-test-family";
    }
    FAMILY
}

/// Ok once a font is registered for [`FAMILY`], else a one-line message.
fn font_status() -> std::result::Result<(), String> {
    #[cfg(test)]
    if SIMULATE_NO_FONT.with(|c| c.get()) {
        return register_first_font(&[]).map(|_| ());
    }
    let mut loaded = FONT_LOADED.lock().unwrap_or_else(|e| e.into_inner());
    if loaded.is_none() {
        let mut candidates = Vec::new();
        if let Some(p) = std::env::var_os(FONT_ENV).filter(|p| !p.is_empty()) {
            candidates.push(PathBuf::from(p));
        }
        candidates.extend(FONT_PATHS.iter().map(PathBuf::from));
        *loaded = Some(register_first_font(&candidates)?);
    }
    Ok(())
}

/// Registers the first readable TrueType/OpenType file among `candidates` under [`FAMILY`].
fn register_first_font(candidates: &[PathBuf]) -> std::result::Result<PathBuf, String> {
    let mut tried = Vec::new();
    for path in candidates {
        match std::fs::read(path) {
            // TrueType, "true", OpenType/CFF and collection signatures.
            Ok(bytes) if [&[0, 1, 0, 0][..], b"true", b"OTTO", b"ttcf"].iter().any(|m| bytes.starts_with(m)) => {
                // `register_font` wants 'static bytes; this runs once per process.
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if register_font(FAMILY, FontStyle::Normal, bytes).is_ok() {
                    return Ok(path.clone());
                }
                tried.push(format!("{} (unreadable font)", path.display()));
            }
            Ok(_) => tried.push(format!("{} (not a TrueType font)", path.display())),
            Err(_) => tried.push(path.display().to_string()),
        }
    }
    let tried = if tried.is_empty() { "nothing".to_string() } else { tried.join(", ") };
    Err(format!("no TrueType font for the PNG text (tried {tried}); set {FONT_ENV} to a .ttf file"))
}

// ---------------------------------------------------------------------------------------------
// Shared drawing helpers.

fn font(size: u32) -> TextStyle<'static> {
    (family(), size).into_font().color(&BLACK)
}

/// Width of `text` in pixels; a rough estimate when the font cannot measure it (SVG, no font).
fn text_width<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, text: &str, size: u32) -> u32 {
    area.estimate_text_size(text, &font(size))
        .map(|(w, _)| w)
        .unwrap_or_else(|_| (text.chars().count() as f64 * f64::from(size) * 0.5).ceil() as u32)
}

/// Draws `title` centred at the top and returns the area below it.
fn titled<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, title: &str) -> DrawResult<DrawingArea<DB, Shift>>
where
    DB::ErrorType: 'static,
{
    let (top, body) = root.split_vertically(if title.is_empty() { 10 } else { 44 });
    let w = top.dim_in_pixel().0 as i32;
    top.draw(&Text::new(title.to_string(), (w / 2, 24), font(TITLE_PX).pos(Pos::new(HPos::Center, VPos::Center))))?;
    Ok(body)
}

/// Legend glyphs.
#[derive(Clone, Copy)]
enum Glyph {
    Line(RGBColor),
    Faint(RGBColor),
    LineDots(RGBColor),
    Dashed(RGBColor),
    Diamond(RGBColor),
    Whisker(RGBColor),
    Ring(RGBColor),
}

const GLYPH_W: i32 = 26;
const LEGEND_ROW: i32 = 22;

/// The width a legend with these labels needs (0 for none).
fn legend_width<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, entries: &[(String, Glyph)]) -> u32 {
    let text = entries.iter().map(|(l, _)| text_width(area, l, LEGEND_PX)).max();
    text.map_or(0, |w| w + GLYPH_W as u32 + 34)
}

/// Splits off a legend column on the right of `area` and draws the legend in it, top-aligned at
/// `top` pixels; returns the remaining area.
fn with_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    entries: &[(String, Glyph)],
    width: u32,
    top: i32,
) -> DrawResult<DrawingArea<DB, Shift>>
where
    DB::ErrorType: 'static,
{
    if entries.is_empty() || width == 0 {
        return Ok(area.clone());
    }
    let (plot, legend) = area.split_horizontally(area.dim_in_pixel().0.saturating_sub(width) as i32);
    draw_legend(&legend, entries, top)?;
    Ok(plot)
}

fn draw_legend<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, entries: &[(String, Glyph)], top: i32) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let w = area.dim_in_pixel().0 as i32;
    let (x0, x1) = (4, w - 8);
    let y1 = top + 8 + LEGEND_ROW * entries.len() as i32;
    area.draw(&Rectangle::new([(x0, top), (x1, y1)], GREY.stroke_width(1)))?;
    for (i, (label, glyph)) in entries.iter().enumerate() {
        let y = top + 4 + LEGEND_ROW * i as i32 + LEGEND_ROW / 2;
        draw_glyph(area, *glyph, x0 + 8, y)?;
        let style = font(LEGEND_PX).pos(Pos::new(HPos::Left, VPos::Center));
        area.draw(&Text::new(label.clone(), (x0 + 14 + GLYPH_W, y), style))?;
    }
    Ok(())
}

fn diamond((x, y): (i32, i32), r: i32) -> Vec<(i32, i32)> {
    vec![(x, y - r), (x + r, y), (x, y + r), (x - r, y)]
}

fn draw_glyph<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, glyph: Glyph, x: i32, y: i32) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let mid = (x + GLYPH_W / 2, y);
    let hline = |style: ShapeStyle| PathElement::new(vec![(x, y), (x + GLYPH_W, y)], style);
    match glyph {
        Glyph::Line(c) => area.draw(&hline(c.stroke_width(2)))?,
        Glyph::Faint(c) => area.draw(&hline(c.mix(0.35).stroke_width(1)))?,
        Glyph::LineDots(c) => {
            area.draw(&hline(c.stroke_width(2)))?;
            area.draw(&Circle::new(mid, 3, c.filled()))?;
        }
        Glyph::Dashed(c) => {
            area.draw(&PathElement::new(vec![(x, y), (x + 9, y)], c.stroke_width(2)))?;
            area.draw(&PathElement::new(vec![(x + GLYPH_W - 9, y), (x + GLYPH_W, y)], c.stroke_width(2)))?;
        }
        Glyph::Diamond(c) => {
            area.draw(&Polygon::new(diamond(mid, 6), c.filled()))?;
            let mut outline = diamond(mid, 6);
            outline.push(outline[0]);
            area.draw(&PathElement::new(outline, BLACK.stroke_width(1)))?;
        }
        Glyph::Whisker(c) => {
            area.draw(&PathElement::new(vec![(mid.0, y - 8), (mid.0, y + 8)], c.stroke_width(2)))?;
            area.draw(&PathElement::new(vec![(mid.0 - 4, y - 8), (mid.0 + 4, y - 8)], c.stroke_width(2)))?;
            area.draw(&PathElement::new(vec![(mid.0 - 4, y + 8), (mid.0 + 4, y + 8)], c.stroke_width(2)))?;
            area.draw(&Circle::new(mid, 4, c.filled()))?;
        }
        Glyph::Ring(c) => area.draw(&Circle::new(mid, 7, c.stroke_width(2)))?,
    }
    Ok(())
}

/// `(lo, hi)` widened by `frac` of the span on each side (or around a single value).
fn padded(lo: f64, hi: f64, frac: f64) -> (f64, f64) {
    if hi > lo {
        let d = (hi - lo) * frac;
        (lo - d, hi + d)
    } else {
        let d = if lo.abs() > 0.0 { lo.abs() * 0.05 } else { 0.5 };
        (lo - d, hi + d)
    }
}

/// Min and max of finite values (None when there are none).
fn min_max(values: impl IntoIterator<Item = f64>) -> Option<(f64, f64)> {
    values.into_iter().filter(|v| v.is_finite()).fold(None, |acc, v| match acc {
        None => Some((v, v)),
        Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
    })
}

/// A compact number: 4 decimals at most, trailing zeros trimmed; scientific when tiny or huge.
fn fmt_num(v: f64) -> String {
    if v != 0.0 && (v.abs() < 1e-3 || v.abs() >= 1e6) {
        return format!("{v:.2e}");
    }
    let s = format!("{v:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".to_string()
    } else {
        s.to_string()
    }
}

/// A 1-2-5 step close to `raw`.
fn nice_step(raw: f64) -> f64 {
    let mag = 10f64.powf(raw.log10().floor());
    let r = raw / mag;
    mag * if r < 1.5 {
        1.0
    } else if r < 3.0 {
        2.0
    } else if r < 7.0 {
        5.0
    } else {
        10.0
    }
}

/// Finite points sorted by x.
fn finite_sorted(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut out: Vec<_> = points.iter().copied().filter(|(x, y)| x.is_finite() && y.is_finite()).collect();
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

fn color(i: usize) -> RGBColor {
    COLORS[i % COLORS.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

    fn assert_written(stem: &Path) {
        let png = std::fs::read(with_ext(stem, ".png")).expect("png written");
        assert!(png.starts_with(PNG_SIGNATURE), "{}: not a PNG", stem.display());
        let svg = std::fs::read_to_string(with_ext(stem, ".svg")).expect("svg written");
        assert!(svg.contains("<svg"), "{}: not an SVG", stem.display());
        // No temporary files left behind.
        let dir = stem.parent().unwrap();
        let leftovers: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    }

    type LineArgs = (Vec<(String, Vec<(f64, f64)>)>, Vec<(String, f64, f64)>, Vec<(String, f64)>);
    type ComparisonArgs = (Vec<String>, Vec<String>, BTreeMap<(String, String), (f64, f64)>);
    type CurvesArgs = (Vec<(f64, f64)>, Vec<(f64, f64)>);

    fn line_args() -> LineArgs {
        let curve = |base: f64, bump: f64| -> Vec<(f64, f64)> {
            (0..=20).map(|i| i as f64 / 20.0).map(|t| (t, base + bump * 4.0 * t * (1.0 - t) + 0.01 * t)).collect()
        };
        let mut dev = curve(0.80, 0.06);
        dev.push((0.5, f64::NAN)); // skipped
        let series = vec![("dev".to_string(), dev), ("test".to_string(), curve(0.78, 0.05))];
        let markers = vec![("dev".to_string(), 0.5, 0.865), ("test".to_string(), 0.5, 0.835)];
        let hlines = vec![("dev".to_string(), 0.85), ("test".to_string(), 0.82)];
        (series, markers, hlines)
    }

    fn triangle_points(k: usize) -> Vec<([f64; 3], f64)> {
        let mut pts = Vec::new();
        for i in 0..=k {
            for j in 0..=k - i {
                let a = [i as f64 / k as f64, j as f64 / k as f64, (k - i - j) as f64 / k as f64];
                let v = 0.7 + 0.2 * (a[0] * a[1] + a[1] * a[2] + a[0] * a[2]) * 3.0 + 0.03 * a[2];
                pts.push((a, v));
            }
        }
        pts
    }

    fn comparison_args() -> ComparisonArgs {
        let tasks: Vec<String> = ["SST-2", "MRPC", "RTE", "CoLA", "QNLI"].iter().map(|s| s.to_string()).collect();
        let methods: Vec<String> =
            ["fine-tuning", "prefix tuning", "prefix subspace"].iter().map(|s| s.to_string()).collect();
        let mut values = BTreeMap::new();
        for (ti, t) in tasks.iter().enumerate() {
            for (mi, m) in methods.iter().enumerate() {
                let mean = 60.0 + 5.0 * ti as f64 + 2.0 * mi as f64;
                values.insert((t.clone(), m.clone()), (mean, 1.0 + 0.5 * mi as f64));
            }
        }
        values.remove(&("CoLA".to_string(), "fine-tuning".to_string())); // a missing cell
        (tasks, methods, values)
    }

    fn curves_args() -> CurvesArgs {
        let loss = (1..=500)
            .map(|s| (s as f64, 0.3 + 0.7 * (-(s as f64) / 120.0).exp() + 0.05 * ((s * 7919) % 13) as f64 / 13.0))
            .collect();
        let dev = (1..=10)
            .map(|k| (50.0 * k as f64, 0.6 + 0.3 * (1.0 - (-(k as f64) / 3.0).exp()) - 0.004 * k as f64))
            .collect();
        (loss, dev)
    }

    #[test]
    fn simplex_line_writes_both_files() {
        let dir = tempfile::tempdir().unwrap();
        let stem = dir.path().join("line");
        let (series, markers, hlines) = line_args();
        simplex_line(&series, &markers, &hlines, "accuracy", "RTE: accuracy along the line v0 → v1", &stem).unwrap();
        assert_written(&stem);
    }

    #[test]
    fn simplex_triangle_writes_both_files() {
        let dir = tempfile::tempdir().unwrap();
        let stem = dir.path().join("triangle");
        let mut points = triangle_points(12);
        points.push(([0.2, 0.2, 0.6], f64::NAN)); // skipped
        simplex_triangle(&points, "dev accuracy", "RTE: dev accuracy over the simplex", &stem).unwrap();
        assert_written(&stem);
    }

    /// The corner labels stay inside the figure: the bottom-left one ends left of its corner,
    /// so it needs that much room (the label bug of the first LLM triangles: "v0" cut off).
    #[test]
    fn simplex_triangle_corner_labels_fit_in_the_figure() {
        let dir = tempfile::tempdir().unwrap();
        let stem = dir.path().join("triangle");
        let points: Vec<_> = triangle_points(10).into_iter().map(|(a, v)| (a, v / 3.0)).collect();
        simplex_triangle(&points, "dev accuracy", "labels", &stem).unwrap();
        let svg = std::fs::read_to_string(stem.with_extension("svg")).unwrap();
        let (_, rest) = svg.split_once("text-anchor=\"end\"").expect("the bottom-left label is right-aligned");
        let tag_start = svg.len() - rest.len();
        let tag = &svg[svg[..tag_start].rfind("<text").unwrap()..tag_start + rest.find("</text>").unwrap()];
        let attr = |name: &str| -> f64 {
            let v = tag.split(&format!("{name}=\"")).nth(1).unwrap();
            v[..v.find('"').unwrap()].parse().unwrap()
        };
        let label = tag[tag.find('>').unwrap() + 1..].trim();
        assert!(label.starts_with("v0 ("), "{label}");
        // Sans-serif digits and letters are at most about 0.6 em wide.
        let width = 0.6 * attr("font-size") * label.chars().count() as f64;
        assert!(attr("x") >= width, "label {label:?} ends at x = {} but is about {width:.0} px wide", attr("x"));
    }

    #[test]
    fn method_comparison_writes_both_files() {
        let dir = tempfile::tempdir().unwrap();
        let stem = dir.path().join("methods");
        let (tasks, methods, values) = comparison_args();
        method_comparison(
            &tasks,
            &methods,
            &values,
            "accuracy (%)",
            "Few-shot results (mean ± std over 5 seeds)",
            &stem,
        )
        .unwrap();
        assert_written(&stem);
    }

    #[test]
    fn training_curves_writes_both_files() {
        let dir = tempfile::tempdir().unwrap();
        let stem = dir.path().join("curves");
        let (loss, dev) = curves_args();
        training_curves(&loss, &dev, "accuracy", "RTE, seed 1: training", &stem).unwrap();
        assert_written(&stem);
        // One panel only.
        let stem = dir.path().join("curves_loss_only");
        training_curves(&loss, &[], "accuracy", "loss only", &stem).unwrap();
        assert_written(&stem);
    }

    #[test]
    fn degenerate_inputs_still_draw() {
        let dir = tempfile::tempdir().unwrap();
        let one = vec![("dev".to_string(), vec![(0.5, 0.7)])];
        let stem = dir.path().join("line1");
        simplex_line(&one, &[("other".to_string(), 1.5, 0.7)], &[("x".to_string(), 0.7)], "acc", "", &stem).unwrap();
        assert_written(&stem);
        let stem = dir.path().join("tri1");
        simplex_triangle(&[([1.0, 1.0, 1.0], 0.5)], "acc", "one point", &stem).unwrap();
        assert_written(&stem);
        let stem = dir.path().join("triflat");
        let flat: Vec<_> = triangle_points(4).into_iter().map(|(a, _)| (a, 0.5)).collect();
        simplex_triangle(&flat, "acc", "constant", &stem).unwrap();
        assert_written(&stem);
        let stem = dir.path().join("methods1");
        let values = BTreeMap::from([(("RTE".to_string(), "ours".to_string()), (70.0, f64::NAN))]);
        method_comparison(&["RTE".to_string()], &["ours".to_string()], &values, "acc", "one", &stem).unwrap();
        assert_written(&stem);
        let stem = dir.path().join("curves1");
        training_curves(&[], &[(10.0, 0.5)], "acc", "one dev point", &stem).unwrap();
        assert_written(&stem);
    }

    #[test]
    fn empty_inputs_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let stem = dir.path().join("empty");
        let err = simplex_line(&[], &[], &[], "acc", "t", &stem).unwrap_err().to_string();
        assert!(err.contains("empty.{svg,png}") && err.contains("no series"), "{err}");
        let nan_only = vec![("dev".to_string(), vec![(0.0, f64::NAN)])];
        assert!(simplex_line(&nan_only, &[], &[], "acc", "t", &stem).is_err());
        assert!(simplex_triangle(&[], "acc", "t", &stem).is_err());
        assert!(simplex_triangle(&[([1.0, 0.5, -0.5], 0.7)], "acc", "t", &stem).is_err());
        assert!(method_comparison(&[], &[], &BTreeMap::new(), "acc", "t", &stem).is_err());
        let (tasks, methods, _) = comparison_args();
        assert!(method_comparison(&tasks, &methods, &BTreeMap::new(), "acc", "t", &stem).is_err());
        let err = training_curves(&[], &[], "acc", "t", &stem).unwrap_err().to_string();
        assert!(err.contains("training_curves"), "{err}");
        assert!(!err.contains('\n'));
        assert!(!with_ext(&stem, ".svg").exists() && !with_ext(&stem, ".png").exists());
    }

    #[test]
    fn without_font_svg_is_written_and_png_is_an_error() {
        SIMULATE_NO_FONT.with(|c| c.set(true));
        let dir = tempfile::tempdir().unwrap();
        let check = |stem: &Path, r: Result<()>| {
            let err = r.unwrap_err().to_string();
            assert!(err.contains(FONT_ENV) && err.contains(".png"), "{err}");
            let svg = std::fs::read_to_string(with_ext(stem, ".svg")).expect("svg written without a font");
            assert!(svg.contains("<svg") && svg.contains("</svg>"));
            assert!(!with_ext(stem, ".png").exists());
        };
        let (series, markers, hlines) = line_args();
        let stem = dir.path().join("line");
        check(&stem, simplex_line(&series, &markers, &hlines, "acc", "line", &stem));
        let stem = dir.path().join("triangle");
        check(&stem, simplex_triangle(&triangle_points(6), "acc", "triangle", &stem));
        let (tasks, methods, values) = comparison_args();
        let stem = dir.path().join("methods");
        check(&stem, method_comparison(&tasks, &methods, &values, "acc", "methods", &stem));
        let (loss, dev) = curves_args();
        let stem = dir.path().join("curves");
        check(&stem, training_curves(&loss, &dev, "acc", "curves", &stem));
        SIMULATE_NO_FONT.with(|c| c.set(false));
    }

    #[test]
    fn font_error_names_the_paths_tried() {
        let missing = PathBuf::from("/nonexistent/font.ttf");
        let err = register_first_font(&[missing]).unwrap_err();
        assert!(err.contains("/nonexistent/font.ttf") && err.contains(FONT_ENV), "{err}");
    }

    #[test]
    fn numbers_are_compact() {
        assert_eq!(fmt_num(0.8500), "0.85");
        assert_eq!(fmt_num(-0.0), "0");
    }

    /// Writes the figures to `$PREFIX_SUBSPACE_PLOT_DIR` for a look (ignored by default).
    #[test]
    #[ignore]
    fn write_samples() {
        let dir =
            PathBuf::from(std::env::var("PREFIX_SUBSPACE_PLOT_DIR").unwrap_or_else(|_| "target/plot-samples".into()));
        let (series, markers, hlines) = line_args();
        simplex_line(&series, &markers, &hlines, "accuracy", "RTE: accuracy along the line v0 → v1", &dir.join("line"))
            .unwrap();
        simplex_triangle(
            &triangle_points(12),
            "dev accuracy",
            "RTE: dev accuracy over the simplex",
            &dir.join("triangle"),
        )
        .unwrap();
        let (tasks, methods, values) = comparison_args();
        method_comparison(
            &tasks,
            &methods,
            &values,
            "accuracy (%)",
            "Few-shot results (mean ± std over 5 seeds)",
            &dir.join("methods"),
        )
        .unwrap();
        let (loss, dev) = curves_args();
        training_curves(&loss, &dev, "accuracy", "RTE, seed 1: training", &dir.join("curves")).unwrap();
        // The same without a font: SVGs only (laid out with estimated text widths).
        SIMULATE_NO_FONT.with(|c| c.set(true));
        let _ = simplex_line(&series, &markers, &hlines, "accuracy", "no font", &dir.join("nofont_line"));
        let _ = simplex_triangle(&triangle_points(12), "dev accuracy", "no font", &dir.join("nofont_triangle"));
        let _ = method_comparison(&tasks, &methods, &values, "accuracy (%)", "no font", &dir.join("nofont_methods"));
        let _ = training_curves(&loss, &dev, "accuracy", "no font", &dir.join("nofont_curves"));
        SIMULATE_NO_FONT.with(|c| c.set(false));
    }
}

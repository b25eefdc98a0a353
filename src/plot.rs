//! Figures for reports, drawn with `plotters`: every function writes `<stem>.svg` and
//! `<stem>.png` (written to a temporary name, then renamed, so nothing is left half-written).
//!
//! Text in the PNG is rasterised with `ab_glyph` from a TrueType font loaded at run time from
//! the first existing file among `$PREFIX_SUBSPACE_FONT` and a few common Linux paths; it is
//! registered under the family name `sans-serif`, which is also the family every text style
//! here asks for. The SVG needs no font file (the viewer renders the text): when no font is
//! found the SVG is still written and the PNG is reported as an error.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{register_font, FontStyle};

use crate::error::{Error, Result};

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

// ---------------------------------------------------------------------------------------------
// (a) Line.

struct LinePlot {
    series: Vec<(String, Vec<(f64, f64)>)>,
    /// (legend label, colour, t, value)
    markers: Vec<(String, RGBColor, f64, f64)>,
    /// (legend label, colour, value)
    hlines: Vec<(String, RGBColor, f64)>,
    x: (f64, f64),
    y: (f64, f64),
    metric: String,
    title: String,
}

impl LinePlot {
    fn new(
        series: &[(String, Vec<(f64, f64)>)],
        markers: &[(String, f64, f64)],
        hlines: &[(String, f64)],
        metric: &str,
        title: &str,
    ) -> std::result::Result<Self, String> {
        if series.is_empty() {
            return Err("simplex_line: no series to plot".into());
        }
        let series: Vec<_> = series.iter().map(|(name, pts)| (name.clone(), finite_sorted(pts))).collect();
        if series.iter().all(|(_, pts)| pts.is_empty()) {
            return Err("simplex_line: no finite (t, value) point in any series".into());
        }
        // The colour of the curve whose name is the label, or the longest word-prefix of it.
        let color_of = |label: &str| {
            series
                .iter()
                .enumerate()
                .filter(|(_, (name, _))| {
                    label == name || (label.starts_with(name.as_str()) && label[name.len()..].starts_with(' '))
                })
                .max_by_key(|(_, (name, _))| name.len())
                .map_or(BLACK, |(i, _)| color(i))
        };
        let is_name = |label: &str| series.iter().any(|(name, _)| name == label);
        let markers: Vec<_> = markers
            .iter()
            .filter(|(_, t, v)| t.is_finite() && v.is_finite())
            .map(|(label, t, v)| {
                let text = if is_name(label) { format!("{label} at t = {}", fmt_num(*t)) } else { label.clone() };
                (text, color_of(label), *t, *v)
            })
            .collect();
        let hlines: Vec<_> = hlines
            .iter()
            .filter(|(_, v)| v.is_finite())
            .map(|(label, v)| {
                let text = if is_name(label) { format!("{label} ensemble") } else { label.clone() };
                (text, color_of(label), *v)
            })
            .collect();
        let ts = series.iter().flat_map(|(_, p)| p.iter().map(|q| q.0)).chain(markers.iter().map(|m| m.2));
        let (t0, t1) = min_max(ts).unwrap_or((0.0, 1.0));
        let x = padded(t0.min(0.0), t1.max(1.0), 0.03);
        let vs = series
            .iter()
            .flat_map(|(_, p)| p.iter().map(|q| q.1))
            .chain(markers.iter().map(|m| m.3))
            .chain(hlines.iter().map(|h| h.2));
        let (v0, v1) = min_max(vs).unwrap_or((0.0, 1.0));
        let y = padded(v0, v1, 0.08);
        Ok(LinePlot { series, markers, hlines, x, y, metric: metric.to_string(), title: title.to_string() })
    }

    fn legend(&self) -> Vec<(String, Glyph)> {
        let mut out: Vec<_> = self
            .series
            .iter()
            .enumerate()
            .map(|(i, (name, pts))| {
                (name.clone(), if pts.len() <= 30 { Glyph::LineDots(color(i)) } else { Glyph::Line(color(i)) })
            })
            .collect();
        out.extend(self.markers.iter().map(|(l, c, _, _)| (l.clone(), Glyph::Diamond(*c))));
        out.extend(self.hlines.iter().map(|(l, c, _)| (l.clone(), Glyph::Dashed(*c))));
        out
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        let body = titled(root, &self.title)?;
        let legend = self.legend();
        let area = with_legend(&body, &legend, legend_width(root, &legend), 10)?;
        let mut chart = ChartBuilder::on(&area)
            .margin(10)
            .x_label_area_size(50)
            .y_label_area_size(70)
            .build_cartesian_2d(self.x.0..self.x.1, self.y.0..self.y.1)?;
        let vertex_tick = |t: &f64| {
            if t.abs() < 1e-9 {
                "0 (v0)".to_string()
            } else if (t - 1.0).abs() < 1e-9 {
                "1 (v1)".to_string()
            } else {
                fmt_num(*t)
            }
        };
        chart
            .configure_mesh()
            .x_desc("t   (α = (1 − t)·v0 + t·v1)")
            .y_desc(self.metric.as_str())
            .x_label_formatter(&vertex_tick)
            .y_label_formatter(&|v| fmt_num(*v))
            .label_style(font(TICK_PX))
            .axis_desc_style(font(DESC_PX))
            .draw()?;
        for (i, (_, pts)) in self.series.iter().enumerate() {
            let c = color(i);
            chart.draw_series(LineSeries::new(pts.iter().copied(), c.stroke_width(2)))?;
            if pts.len() <= 30 {
                chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, c.filled())))?;
            }
        }
        for (_, c, v) in &self.hlines {
            chart.draw_series(DashedLineSeries::new([(self.x.0, *v), (self.x.1, *v)], 9, 6, c.stroke_width(2)))?;
        }
        for (_, c, t, v) in &self.markers {
            let mut outline = diamond((0, 0), 7);
            outline.push(outline[0]);
            let label = font(TICK_PX).pos(Pos::new(HPos::Left, VPos::Bottom));
            chart.plotting_area().draw(
                &(EmptyElement::at((*t, *v))
                    + Polygon::new(diamond((0, 0), 7), c.filled())
                    + PathElement::new(outline, BLACK.stroke_width(1))
                    + Text::new(fmt_num(*v), (9, -6), label)),
            )?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// (a') Triangle.

const H: f64 = 0.866_025_403_784_438_6; // √3 / 2

/// The plane position of barycentric weights (v0 bottom left, v1 bottom right, v2 top).
fn bary_to_xy(a: [f64; 3]) -> (f64, f64) {
    (a[1] + 0.5 * a[2], H * a[2])
}

/// Sutherland–Hodgman clip of a convex polygon to the triangle.
fn clip_to_triangle(poly: Vec<(f64, f64)>) -> Vec<(f64, f64)> {
    let tri = [(0.0, 0.0), (1.0, 0.0), (0.5, H)];
    let mut out = poly;
    for k in 0..3 {
        let (a, b) = (tri[k], tri[(k + 1) % 3]);
        let side = |p: (f64, f64)| (b.0 - a.0) * (p.1 - a.1) - (b.1 - a.1) * (p.0 - a.0);
        let input = std::mem::take(&mut out);
        for i in 0..input.len() {
            let (p, q) = (input[i], input[(i + 1) % input.len()]);
            let (sp, sq) = (side(p), side(q));
            if sp >= 0.0 {
                out.push(p);
            }
            if (sp >= 0.0) != (sq >= 0.0) {
                let t = sp / (sp - sq);
                out.push((p.0 + t * (q.0 - p.0), p.1 + t * (q.1 - p.1)));
            }
        }
    }
    out
}

/// Viridis, sampled at 9 points and interpolated linearly; `t` in [0, 1].
fn viridis(t: f64) -> RGBColor {
    const V: [(f64, f64, f64); 9] = [
        (68., 1., 84.),
        (71., 44., 122.),
        (59., 81., 139.),
        (44., 113., 142.),
        (33., 145., 140.),
        (39., 173., 129.),
        (92., 200., 99.),
        (170., 220., 50.),
        (253., 231., 37.),
    ];
    let x = if t.is_finite() { t.clamp(0.0, 1.0) } else { 0.5 } * (V.len() - 1) as f64;
    let i = (x.floor() as usize).min(V.len() - 2);
    let f = x - i as f64;
    let mix = |a: f64, b: f64| (a + f * (b - a)).round() as u8;
    RGBColor(mix(V[i].0, V[i + 1].0), mix(V[i].1, V[i + 1].1), mix(V[i].2, V[i + 1].2))
}

struct TrianglePlot {
    /// (plane position, value)
    points: Vec<((f64, f64), f64)>,
    /// Lattice spacing in plane units (edge = 1).
    spacing: f64,
    lo: f64,
    hi: f64,
    metric: String,
    title: String,
}

impl TrianglePlot {
    fn new(points: &[([f64; 3], f64)], metric: &str, title: &str) -> std::result::Result<Self, String> {
        if points.is_empty() {
            return Err("simplex_triangle: no points to plot".into());
        }
        let mut out = Vec::with_capacity(points.len());
        for (i, (a, v)) in points.iter().enumerate() {
            if !v.is_finite() || a.iter().any(|x| !x.is_finite()) {
                continue;
            }
            let sum: f64 = a.iter().sum();
            if a.iter().any(|&x| x < -1e-6) || sum <= 0.0 {
                return Err(format!("simplex_triangle: point {i} has weights {a:?}, not on the simplex"));
            }
            out.push((bary_to_xy([a[0] / sum, a[1] / sum, a[2] / sum]), *v));
        }
        let (lo, hi) = min_max(out.iter().map(|p| p.1)).ok_or("simplex_triangle: no point with a finite value")?;
        // Closest distinct pair (quadratic; beyond a few thousand points assume a full lattice).
        let n = out.len();
        let lattice = |n: usize| {
            let k = (((8 * n + 1) as f64).sqrt() - 3.0) / 2.0;
            if k >= 1.0 {
                1.0 / k
            } else {
                1.0
            }
        };
        let mut spacing = f64::INFINITY;
        if n <= 4000 {
            for i in 0..n {
                for j in i + 1..n {
                    let d = ((out[i].0 .0 - out[j].0 .0).powi(2) + (out[i].0 .1 - out[j].0 .1).powi(2)).sqrt();
                    if d > 1e-9 {
                        spacing = spacing.min(d);
                    }
                }
            }
        }
        if !spacing.is_finite() {
            spacing = lattice(n);
        }
        Ok(TrianglePlot { points: out, spacing, lo, hi, metric: metric.to_string(), title: title.to_string() })
    }

    fn unit(&self, v: f64) -> f64 {
        if self.hi > self.lo {
            (v - self.lo) / (self.hi - self.lo)
        } else {
            0.5
        }
    }

    /// The value of the grid point within half a cell of `p`, if any.
    fn value_near(&self, p: (f64, f64)) -> Option<f64> {
        let d = |q: (f64, f64)| ((q.0 - p.0).powi(2) + (q.1 - p.1).powi(2)).sqrt();
        self.points
            .iter()
            .filter(|(q, _)| d(*q) < self.spacing / 2.0)
            .min_by(|a, b| d(a.0).total_cmp(&d(b.0)))
            .map(|(_, v)| *v)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        let body = titled(root, &self.title)?;
        let (w, h) = body.dim_in_pixel();
        let (tri_area, bar_area) = body.split_horizontally(w as i32 - 150);
        let (tw, th) = tri_area.dim_in_pixel();
        let margin = 60.0;
        let scale = ((f64::from(tw) - 2.0 * margin) / 1.0).min((f64::from(th) - 2.0 * margin) / H);
        let ox = (f64::from(tw) - scale) / 2.0;
        let oy = (f64::from(th) + scale * H) / 2.0;
        let px = |(x, y): (f64, f64)| ((ox + scale * x).round() as i32, (oy - scale * y).round() as i32);

        // Cells: pointy-top hexagons (the Voronoi cells of a triangular lattice), slightly
        // enlarged so that neighbours overlap instead of leaving hairline gaps.
        let r = self.spacing / 3f64.sqrt() * 1.04;
        for &((x, y), v) in &self.points {
            let hex: Vec<_> = (0..6)
                .map(|k| {
                    let a = std::f64::consts::PI / 6.0 + k as f64 * std::f64::consts::PI / 3.0;
                    (x + r * a.cos(), y + r * a.sin())
                })
                .collect();
            let cell: Vec<_> = clip_to_triangle(hex).into_iter().map(px).collect();
            if cell.len() >= 3 {
                tri_area.draw(&Polygon::new(cell, viridis(self.unit(v)).filled()))?;
            }
        }
        let corners = [(0.0, 0.0), (1.0, 0.0), (0.5, H)];
        let mut outline: Vec<_> = corners.iter().map(|&c| px(c)).collect();
        outline.push(outline[0]);
        tri_area.draw(&PathElement::new(outline, BLACK.stroke_width(2)))?;

        let anchors = [(HPos::Right, VPos::Top), (HPos::Left, VPos::Top), (HPos::Center, VPos::Bottom)];
        let offsets = [(-6, 6), (6, 6), (0, -10)];
        for (i, ((&c, anchor), off)) in corners.iter().zip(anchors).zip(offsets).enumerate() {
            let text = match self.value_near(c) {
                Some(v) => format!("v{i} ({})", fmt_num(v)),
                None => format!("v{i}"),
            };
            let (x, y) = px(c);
            let style = font(DESC_PX).pos(Pos::new(anchor.0, anchor.1));
            tri_area.draw(&Text::new(text, (x + off.0, y + off.1), style))?;
        }
        let centre = px((0.5, H / 3.0));
        tri_area.draw(&Circle::new(centre, 6, WHITE.filled()))?;
        tri_area.draw(&Circle::new(centre, 6, BLACK.stroke_width(2)))?;
        let text = match self.value_near((0.5, H / 3.0)) {
            Some(v) => format!("centroid ({})", fmt_num(v)),
            None => "centroid".to_string(),
        };
        let style = font(TICK_PX).pos(Pos::new(HPos::Left, VPos::Center));
        tri_area.draw(&(EmptyElement::at(centre) + Text::new(text, (10, 0), style.clone())))?;

        // Colour bar: a gradient with five labelled ticks, the metric above.
        let (bar_x0, bar_x1) = (10, 32);
        let (bar_top, bar_bottom) = (margin as i32, h as i32 - margin as i32);
        let span = (bar_bottom - bar_top).max(1);
        for k in 0..span {
            let t = 1.0 - f64::from(k) / f64::from(span - 1).max(1.0);
            let y = bar_top + k;
            bar_area.draw(&Rectangle::new([(bar_x0, y), (bar_x1, y + 1)], viridis(t).filled()))?;
        }
        bar_area.draw(&Rectangle::new([(bar_x0, bar_top), (bar_x1, bar_bottom)], BLACK.stroke_width(1)))?;
        // Min and max at the ends, round values in between (unless too close to an end).
        let y_of = |v: f64| bar_bottom - (self.unit(v) * f64::from(span)).round() as i32;
        let mut ticks = vec![(self.lo, format!("{} min", fmt_num(self.lo)))];
        if self.hi > self.lo {
            ticks.push((self.hi, format!("{} max", fmt_num(self.hi))));
            let step = nice_step((self.hi - self.lo) / 4.0);
            let decimals = (-step.log10().floor()).max(0.0) as usize;
            let mut v = (self.lo / step).ceil() * step;
            while v < self.hi {
                if (y_of(v) - y_of(self.lo)).abs() >= 16 && (y_of(v) - y_of(self.hi)).abs() >= 16 {
                    ticks.push((v, format!("{v:.decimals$}")));
                }
                v += step;
            }
        } else {
            ticks[0].1 = fmt_num(self.lo);
        }
        for (v, label) in ticks {
            let y = y_of(v);
            bar_area.draw(&PathElement::new(vec![(bar_x1, y), (bar_x1 + 5, y)], BLACK.stroke_width(1)))?;
            bar_area.draw(&Text::new(label, (bar_x1 + 8, y), style.clone()))?;
        }
        let metric_style = font(TICK_PX).pos(Pos::new(HPos::Left, VPos::Bottom));
        bar_area.draw(&Text::new(self.metric.clone(), (bar_x0, bar_top - 12), metric_style))?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// (b) Method comparison.

struct ComparisonPlot {
    tasks: Vec<String>,
    methods: Vec<String>,
    /// (task index, method index, mean, std or None)
    points: Vec<(usize, usize, f64, Option<f64>)>,
    y: (f64, f64),
    ylabel: String,
    title: String,
}

impl ComparisonPlot {
    fn new(
        tasks: &[String],
        methods: &[String],
        values: &BTreeMap<(String, String), (f64, f64)>,
        ylabel: &str,
        title: &str,
    ) -> std::result::Result<Self, String> {
        if tasks.is_empty() || methods.is_empty() {
            return Err("method_comparison: no tasks or no methods to plot".into());
        }
        let mut points = Vec::new();
        for (ti, task) in tasks.iter().enumerate() {
            for (mi, method) in methods.iter().enumerate() {
                if let Some(&(mean, std)) = values.get(&(task.clone(), method.clone())) {
                    if mean.is_finite() {
                        points.push((ti, mi, mean, Some(std.abs()).filter(|s| s.is_finite())));
                    }
                }
            }
        }
        let ys = points.iter().flat_map(|&(_, _, m, s)| [m - s.unwrap_or(0.0), m + s.unwrap_or(0.0)]);
        let (lo, hi) = min_max(ys).ok_or("method_comparison: no finite mean for any (task, method)")?;
        Ok(ComparisonPlot {
            tasks: tasks.to_vec(),
            methods: methods.to_vec(),
            points,
            y: padded(lo, hi, 0.08),
            ylabel: ylabel.to_string(),
            title: title.to_string(),
        })
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        let body = titled(root, &self.title)?;
        let legend: Vec<_> =
            self.methods.iter().enumerate().map(|(i, m)| (m.clone(), Glyph::Whisker(color(i)))).collect();
        let area = with_legend(&body, &legend, legend_width(root, &legend), 10)?;
        let n = self.tasks.len();
        let mut chart = ChartBuilder::on(&area)
            .margin(10)
            .x_label_area_size(64)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..n as f64, self.y.0..self.y.1)?;
        // Task names are drawn by hand at the group centres (plotters picks its own tick values).
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .x_desc("task")
            .y_desc(self.ylabel.as_str())
            .y_label_formatter(&|v| fmt_num(*v))
            .label_style(font(TICK_PX))
            .axis_desc_style(font(DESC_PX))
            .draw()?;
        // A label "task (metric)" takes two lines, in the largest size at which every line fits
        // its group.
        let lines: Vec<Vec<&str>> = self.tasks.iter().map(|t| two_lines(t)).collect();
        let group = (chart.backend_coord(&(1.0, self.y.0)).0 - chart.backend_coord(&(0.0, self.y.0)).0).max(1) as u32;
        let fits = |px: u32| lines.iter().flatten().all(|l| text_width(root, l, px) + 6 <= group);
        let px = [TICK_PX, 12, 11, 10].into_iter().find(|&px| fits(px)).unwrap_or(10);
        let task_style = font(px).pos(Pos::new(HPos::Center, VPos::Top));
        for (i, task) in lines.iter().enumerate() {
            let (x, y) = chart.backend_coord(&(i as f64 + 0.5, self.y.0));
            root.draw(&PathElement::new(vec![(x, y), (x, y + 5)], BLACK.stroke_width(1)))?;
            for (j, line) in task.iter().enumerate() {
                let dy = 8 + j as i32 * (px as i32 + 3);
                root.draw(&Text::new(line.to_string(), (x, y + dy), task_style.clone()))?;
            }
        }
        for i in 1..n {
            let x = i as f64;
            chart.draw_series(LineSeries::new([(x, self.y.0), (x, self.y.1)], GREY.stroke_width(1)))?;
        }
        let m = self.methods.len() as f64;
        for &(ti, mi, mean, std) in &self.points {
            let x = ti as f64 + 0.15 + 0.7 * (mi as f64 + 0.5) / m;
            let c = color(mi);
            if let Some(s) = std.filter(|s| *s > 0.0) {
                let cap =
                    |y: f64| EmptyElement::at((x, y)) + PathElement::new(vec![(-5, 0), (5, 0)], c.stroke_width(2));
                chart.draw_series([PathElement::new(vec![(x, mean - s), (x, mean + s)], c.stroke_width(2))])?;
                chart.draw_series([cap(mean - s), cap(mean + s)])?;
            }
            chart.draw_series([Circle::new((x, mean), 5, c.filled())])?;
        }
        Ok(())
    }
}

/// "task (metric)" as two lines, "task" and "(metric)"; any other label as one.
fn two_lines(label: &str) -> Vec<&str> {
    match label.find(" (") {
        Some(i) => vec![&label[..i], &label[i + 1..]],
        None => vec![label],
    }
}

// ---------------------------------------------------------------------------------------------
// (c) Training curves.

struct CurvesPlot {
    loss: Vec<(f64, f64)>,
    /// Trailing moving average of the loss and its window, when there are many steps.
    smooth: Option<(Vec<(f64, f64)>, usize)>,
    dev: Vec<(f64, f64)>,
    x: (f64, f64),
    metric: String,
    title: String,
}

impl CurvesPlot {
    fn new(loss: &[(f64, f64)], dev: &[(f64, f64)], metric: &str, title: &str) -> std::result::Result<Self, String> {
        if loss.is_empty() && dev.is_empty() {
            return Err("training_curves: no loss and no dev points to plot".into());
        }
        let (loss, dev) = (finite_sorted(loss), finite_sorted(dev));
        if loss.is_empty() && dev.is_empty() {
            return Err("training_curves: no finite (step, value) point".into());
        }
        let smooth = (loss.len() >= 40).then(|| {
            let w = (loss.len() / 20).clamp(2, 200);
            let mut sum = 0.0;
            let pts = (0..loss.len())
                .map(|i| {
                    sum += loss[i].1;
                    if i >= w {
                        sum -= loss[i - w].1;
                    }
                    (loss[i].0, sum / (i + 1).min(w) as f64)
                })
                .collect();
            (pts, w)
        });
        let (x0, x1) = min_max(loss.iter().chain(&dev).map(|p| p.0)).unwrap_or((0.0, 1.0));
        let x = padded(x0, x1, 0.02);
        Ok(CurvesPlot { loss, smooth, dev, x, metric: metric.to_string(), title: title.to_string() })
    }

    fn loss_legend(&self) -> Vec<(String, Glyph)> {
        let c = color(0);
        match &self.smooth {
            Some((_, w)) => {
                vec![("training loss".into(), Glyph::Faint(c)), (format!("moving avg ({w} pts)"), Glyph::Line(c))]
            }
            None => vec![("training loss".into(), Glyph::Line(c))],
        }
    }

    fn best_dev(&self) -> Option<(f64, f64)> {
        self.dev.iter().copied().max_by(|a, b| a.1.total_cmp(&b.1))
    }

    fn dev_legend(&self) -> Vec<(String, Glyph)> {
        let mut out = vec![(format!("dev {}", self.metric), Glyph::LineDots(color(1)))];
        if let Some((s, v)) = self.best_dev() {
            out.push((format!("max {} @ {}", fmt_num(v), fmt_num(s)), Glyph::Ring(BLACK)));
        }
        out
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        let body = titled(root, &self.title)?;
        let (loss_legend, dev_legend) = (self.loss_legend(), self.dev_legend());
        // One legend width for both panels keeps their step axes aligned.
        let width = legend_width(root, &loss_legend).max(legend_width(root, &dev_legend));
        let (top, bottom) = match (self.loss.is_empty(), self.dev.is_empty()) {
            (false, false) => {
                let h = body.dim_in_pixel().1 as i32;
                let (a, b) = body.split_vertically(h / 2);
                (Some(a), Some(b))
            }
            (false, true) => (Some(body), None),
            _ => (None, Some(body)),
        };
        let x_desc = |last: bool| if last { "step" } else { "" };
        if let Some(area) = top {
            let area = with_legend(&area, &loss_legend, width, 10)?;
            let (lo, hi) = min_max(self.loss.iter().map(|p| p.1)).unwrap_or((0.0, 1.0));
            let y = padded(lo, hi, 0.05);
            let mut chart = ChartBuilder::on(&area)
                .margin(10)
                .x_label_area_size(if bottom.is_some() { 30 } else { 50 })
                .y_label_area_size(70)
                .build_cartesian_2d(self.x.0..self.x.1, y.0..y.1)?;
            chart
                .configure_mesh()
                .x_desc(x_desc(bottom.is_none()))
                .y_desc("training loss")
                .x_label_formatter(&|v| fmt_num(*v))
                .y_label_formatter(&|v| fmt_num(*v))
                .label_style(font(TICK_PX))
                .axis_desc_style(font(DESC_PX))
                .draw()?;
            let c = color(0);
            match &self.smooth {
                Some((pts, _)) => {
                    chart.draw_series(LineSeries::new(self.loss.iter().copied(), c.mix(0.35).stroke_width(1)))?;
                    chart.draw_series(LineSeries::new(pts.iter().copied(), c.stroke_width(2)))?;
                }
                None => {
                    chart.draw_series(LineSeries::new(self.loss.iter().copied(), c.stroke_width(2)))?;
                }
            }
        }
        if let Some(area) = bottom {
            let area = with_legend(&area, &dev_legend, width, 10)?;
            let (lo, hi) = min_max(self.dev.iter().map(|p| p.1)).unwrap_or((0.0, 1.0));
            let y = padded(lo, hi, 0.08);
            let mut chart = ChartBuilder::on(&area)
                .margin(10)
                .x_label_area_size(50)
                .y_label_area_size(70)
                .build_cartesian_2d(self.x.0..self.x.1, y.0..y.1)?;
            chart
                .configure_mesh()
                .x_desc("step")
                .y_desc(format!("dev {}", self.metric))
                .x_label_formatter(&|v| fmt_num(*v))
                .y_label_formatter(&|v| fmt_num(*v))
                .label_style(font(TICK_PX))
                .axis_desc_style(font(DESC_PX))
                .draw()?;
            let c = color(1);
            chart.draw_series(LineSeries::new(self.dev.iter().copied(), c.stroke_width(2)))?;
            chart.draw_series(self.dev.iter().map(|&p| Circle::new(p, 3, c.filled())))?;
            if let Some(best) = self.best_dev() {
                chart.draw_series([Circle::new(best, 7, BLACK.stroke_width(2))])?;
            }
        }
        Ok(())
    }
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
    fn task_labels_split_before_the_metric() {
        assert_eq!(two_lines("qnli (accuracy)"), ["qnli", "(accuracy)"]);
        assert_eq!(two_lines("mnli (accuracy, mismatched)"), ["mnli", "(accuracy, mismatched)"]);
        assert_eq!(two_lines("RTE"), ["RTE"]);
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
    fn clipping_keeps_cells_inside_the_triangle() {
        let square = vec![(-1.0, -1.0), (2.0, -1.0), (2.0, 2.0), (-1.0, 2.0)];
        let clipped = clip_to_triangle(square);
        assert_eq!(clipped.len(), 3);
        for (x, y) in clipped {
            assert!((-1e-12..=H + 1e-12).contains(&y) && (-1e-12..=1.0 + 1e-12).contains(&x));
        }
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

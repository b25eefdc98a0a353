//! (a) The line figure (n = 2): the metric as α goes from vertex 0 to vertex 1.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{
    color, diamond, finite_sorted, fmt_num, font, legend_width, min_max, padded, titled, with_legend, DrawResult,
    Glyph, DESC_PX, TICK_PX,
};

pub(super) struct LinePlot {
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
    pub(super) fn new(
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

    pub(super) fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult
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

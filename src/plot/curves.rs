//! (c) The training curves: the loss per step and the dev metric per evaluation.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{
    color, finite_sorted, fmt_num, font, legend_width, min_max, padded, titled, with_legend, DrawResult, Glyph,
    DESC_PX, TICK_PX,
};

pub(super) struct CurvesPlot {
    pub(super) loss: Vec<(f64, f64)>,
    /// Trailing moving average of the loss and its window, when there are many steps.
    smooth: Option<(Vec<(f64, f64)>, usize)>,
    pub(super) dev: Vec<(f64, f64)>,
    x: (f64, f64),
    metric: String,
    title: String,
}

impl CurvesPlot {
    pub(super) fn new(
        loss: &[(f64, f64)],
        dev: &[(f64, f64)],
        metric: &str,
        title: &str,
    ) -> std::result::Result<Self, String> {
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

    pub(super) fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult
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

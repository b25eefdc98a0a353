//! (b) The method comparison: per task, one point per method at the mean with ± std bars.

use std::collections::BTreeMap;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{
    color, fmt_num, font, legend_width, min_max, padded, text_width, titled, with_legend, DrawResult, Glyph, DESC_PX,
    GREY, TICK_PX,
};

pub(super) struct ComparisonPlot {
    tasks: Vec<String>,
    methods: Vec<String>,
    /// (task index, method index, mean, std or None)
    points: Vec<(usize, usize, f64, Option<f64>)>,
    y: (f64, f64),
    ylabel: String,
    title: String,
}

impl ComparisonPlot {
    pub(super) fn new(
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

    pub(super) fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_labels_split_before_the_metric() {
        assert_eq!(two_lines("qnli (accuracy)"), ["qnli", "(accuracy)"]);
        assert_eq!(two_lines("mnli (accuracy, mismatched)"), ["mnli", "(accuracy, mismatched)"]);
        assert_eq!(two_lines("RTE"), ["RTE"]);
    }
}

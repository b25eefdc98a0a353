//! (a') The triangle figure (n = 3): a heat map over the simplex of mixing weights, with the
//! barycentric helpers and the viridis colour map it draws with.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{fmt_num, font, min_max, nice_step, titled, DrawResult, DESC_PX, TICK_PX};

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

pub(super) struct TrianglePlot {
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
    pub(super) fn new(points: &[([f64; 3], f64)], metric: &str, title: &str) -> std::result::Result<Self, String> {
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

    pub(super) fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        let body = titled(root, &self.title)?;
        let (w, h) = body.dim_in_pixel();
        let (tri_area, bar_area) = body.split_horizontally(w as i32 - 150);
        let (tw, th) = tri_area.dim_in_pixel();
        // Room beside the bottom corners for their labels ("v0 (0.6562)"), above and below
        // for the top label and the colour bar's ends.
        let (margin_x, margin) = (110.0, 60.0);
        let scale = (f64::from(tw) - 2.0 * margin_x).min((f64::from(th) - 2.0 * margin) / H);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clipping_keeps_cells_inside_the_triangle() {
        let square = vec![(-1.0, -1.0), (2.0, -1.0), (2.0, 2.0), (-1.0, 2.0)];
        let clipped = clip_to_triangle(square);
        assert_eq!(clipped.len(), 3);
        for (x, y) in clipped {
            assert!((-1e-12..=H + 1e-12).contains(&y) && (-1e-12..=1.0 + 1e-12).contains(&x));
        }
    }
}

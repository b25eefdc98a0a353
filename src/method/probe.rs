//! The `probe` baseline: a linear classifier fitted to convergence on frozen features, the
//! simplest strong few-shot baseline (scikit-learn's `LogisticRegression` on sentence
//! embeddings).
//!
//! The backbone is frozen and sees no prefix, so the features are computed once: the run's
//! pooling on an encoder, the last real token's final hidden state on a decoder, L2-normalised
//! (the checkpoint variable `probe/normalize` records that, and [`Subspace::features`] applies
//! it wherever the run is evaluated). Then, for each C of [`CS`]:
//!
//! - classification: multinomial logistic regression with scikit-learn's objective
//!   `C · Σᵢ CE(W xᵢ + b, yᵢ) + ½ ‖W‖²` (the bias is not penalised); with two classes, as
//!   scikit-learn does, the binary (sigmoid) form with one weight row, i.e. the head `(0; w)`.
//!   Solved in f64 by Newton's method with a backtracking line search, until the gradient's
//!   Euclidean norm is at most [`GTOL`] (or no step makes progress);
//! - regression: ridge regression `‖y − X w − b‖² + α ‖w‖²` with α = 1/C, in closed form.
//!
//! The dev split scores each C (the task's main metric, at the run's evaluation path, so that
//! `eval --split dev` gives the same numbers); the best C (a tie: the smaller) is kept.
//!
//! Solving in the row space: the optimal W lies in the span of the training features (the
//! gradient of the loss does, and the penalty removes the rest), so with fewer examples than
//! dimensions the problem is solved exactly in an orthonormal basis of that span (r ≤ N
//! coordinates per class instead of H): a Newton step then costs little even for H = 576.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Value};
use tch::{Kind, Tensor};

use crate::data::Label;
use crate::error::{Error, Result};
use crate::eval::{features, outputs, score, Encoded};
use crate::method::subspace::{At, Subspace};
use crate::results::{ProbeRow, ProbeSummary};
use crate::session::Session;

/// The `probe` method: no gradient step; the head is fitted after the (empty) loop.
pub struct Probe;

impl super::Method for Probe {
    fn name(&self) -> &'static str {
        "probe"
    }
    /// No gradient step is taken; the value is never used.
    fn default_lr(&self) -> f64 {
        5e-3
    }
    fn trains(&self) -> bool {
        false
    }
    fn trains_only_the_head(&self) -> bool {
        true
    }
    fn fits_probe(&self) -> bool {
        true
    }
    fn after_steps(&self, ctx: &mut super::AfterSteps) -> Result<super::Fitted> {
        fit_head(ctx)
    }
}

/// The head of `probe` and `setfit`: fitted here, to convergence, C chosen on dev (one line
/// per C in metrics.jsonl), where the methods that train nothing evaluate once; a run resumed
/// after its fit reads its summary back from the log.
pub fn fit_head(ctx: &mut super::AfterSteps) -> Result<super::Fitted> {
    let regression = ctx.session.task.is_regression();
    if ctx.resumed_trained {
        let summary = summary_from_log(ctx.subspace, ctx.metrics, regression)?;
        return Ok(super::Fitted { probe: Some(summary), ..Default::default() });
    }
    let choice = fit_run(ctx.session, ctx.subspace, ctx.train, ctx.dev, ctx.emit)?;
    let c = Value::from(choice.summary.c);
    (ctx.say)(format!("probe: C = {c} chosen on dev ({})", crate::train::fmt_metrics(&choice.dev)));
    Ok(super::Fitted { dev: Some(choice.dev), probe: Some(choice.summary), ..Default::default() })
}

/// The inverse regularisation strengths tried, in this order (a tie keeps the earlier, smaller C).
/// The grid reaches 10⁴ because a decoder's last-token features have a few dimensions that hold
/// most of the norm: after L2 normalisation the rest is small, and on SmolLM2 the best C on SST-2
/// is 10³–10⁴ (at C ≤ 100 the probe under-fits).
pub const CS: [f64; 7] = [0.01, 0.1, 1.0, 10.0, 100.0, 1e3, 1e4];
/// Newton's method stops when the gradient's Euclidean norm is at most this.
pub const GTOL: f64 = 1e-10;
/// At most this many Newton steps.
pub const MAX_ITER: usize = 200;

/// A fitted linear model, in scikit-learn's shapes.
#[derive(Debug, Clone, PartialEq)]
pub struct Fit {
    /// One row of d coefficients per output: 1 (binary logistic regression, ridge) or C
    /// (multinomial), as scikit-learn's `coef_`.
    pub coef: Vec<Vec<f64>>,
    /// One intercept per output, as `intercept_` (multinomial: centred to sum 0, as
    /// scikit-learn's symmetric parametrisation gives them).
    pub intercept: Vec<f64>,
    /// Newton steps taken (0 for the closed form).
    pub iterations: usize,
    /// The gradient's Euclidean norm where the solver stopped (0 for the closed form).
    pub gradient_norm: f64,
    /// Whether the gradient norm reached [`GTOL`] (the closed form: always); false when the
    /// solver stopped because no step made progress (rounding) or after [`MAX_ITER`] steps.
    pub converged: bool,
}

impl Fit {
    /// The head `(C rows, bias)` of a run with `classes` outputs: binary logistic regression
    /// gives the rows `(0, w)` and biases `(0, b)` (the softmax of `(0, s)` is the sigmoid of
    /// s), multinomial and ridge their own rows.
    pub fn head(&self, classes: usize) -> (Vec<Vec<f64>>, Vec<f64>) {
        if self.coef.len() == 1 && classes == 2 {
            let zero = vec![0.0; self.coef[0].len()];
            (vec![zero, self.coef[0].clone()], vec![0.0, self.intercept[0]])
        } else {
            (self.coef.clone(), self.intercept.clone())
        }
    }

    /// Class probabilities of the rows of `x` (n × d, row-major), as scikit-learn's
    /// `predict_proba` (a logistic fit).
    pub fn probabilities(&self, x: &[f64], d: usize) -> Vec<Vec<f64>> {
        x.chunks(d)
            .map(|row| {
                let s: Vec<f64> = self.coef.iter().zip(&self.intercept).map(|(w, b)| dot(w, row) + b).collect();
                if s.len() == 1 {
                    let p = sigmoid(s[0]);
                    vec![1.0 - p, p]
                } else {
                    softmax(&s)
                }
            })
            .collect()
    }
}

/// Logistic regression of labels `y` (in `0..classes`) on the rows of `x` (n × d, row-major):
/// minimises `c · Σᵢ CE + ½ ‖W‖²` (bias unpenalised); binary (one row) for two classes,
/// multinomial otherwise, as scikit-learn's `LogisticRegression(C = c)`.
pub fn logistic(x: &[f64], d: usize, y: &[usize], classes: usize, c: f64) -> Fit {
    let n = y.len();
    assert_eq!(x.len(), n * d, "x is n × d");
    assert!(classes >= 2 && y.iter().all(|&k| k < classes), "labels in 0..classes, classes ≥ 2");
    let basis = row_space(x, n, d);
    let r = basis.as_ref().map_or(d, Vec::len);
    let z: Vec<f64> = match &basis {
        Some(u) => x.chunks(d).flat_map(|row| u.iter().map(|v| dot(v, row)).collect::<Vec<_>>()).collect(),
        None => x.to_vec(),
    };
    let problem = Logistic { z, n, r, y, outputs: if classes == 2 { 1 } else { classes }, c };
    let (theta, iterations, gradient_norm, converged) = problem.newton();
    let r1 = r + 1;
    let mut coef = Vec::with_capacity(problem.outputs);
    let mut intercept = Vec::with_capacity(problem.outputs);
    for j in 0..problem.outputs {
        let v = &theta[j * r1..j * r1 + r];
        coef.push(match &basis {
            Some(u) => {
                let mut w = vec![0.0; d];
                for (a, ut) in v.iter().zip(u) {
                    axpy(*a, ut, &mut w);
                }
                w
            }
            None => v.to_vec(),
        });
        intercept.push(theta[j * r1 + r]);
    }
    if problem.outputs > 1 {
        let mean = intercept.iter().sum::<f64>() / intercept.len() as f64;
        intercept.iter_mut().for_each(|b| *b -= mean);
    }
    Fit { coef, intercept, iterations, gradient_norm, converged }
}

/// Per-dimension centring and scaling of features, as scikit-learn's `StandardScaler`: the
/// mean and the population standard deviation of each column of the train rows (a constant
/// column gets scale 1).
#[derive(Debug, Clone, PartialEq)]
pub struct Scaler {
    pub mean: Vec<f64>,
    pub scale: Vec<f64>,
}

impl Scaler {
    /// The scaler of the rows of `x` (n × d, row-major).
    pub fn fit(x: &[f64], d: usize) -> Self {
        let n = (x.len() / d).max(1) as f64;
        let mut mean = vec![0.0; d];
        for row in x.chunks(d) {
            axpy(1.0 / n, row, &mut mean);
        }
        let mut var = vec![0.0; d];
        for row in x.chunks(d) {
            for ((v, xi), m) in var.iter_mut().zip(row).zip(&mean) {
                *v += (xi - m) * (xi - m) / n;
            }
        }
        let scale = var.into_iter().map(|v| if v > 0.0 { v.sqrt() } else { 1.0 }).collect();
        Self { mean, scale }
    }

    /// The standardised rows `(x − mean) / scale`.
    pub fn transform(&self, x: &[f64]) -> Vec<f64> {
        let d = self.mean.len();
        x.chunks(d).flat_map(|row| row.iter().zip(&self.mean).zip(&self.scale).map(|((v, m), s)| (v - m) / s)).collect()
    }

    /// A fit on standardised rows as the same linear function of the raw rows: `w = w_z / scale`,
    /// `b = b_z − Σ w_z · mean / scale` (multinomial intercepts re-centred to sum 0, which leaves
    /// the probabilities unchanged). The head then needs no scaler at evaluation.
    pub fn unscale(&self, fit: Fit) -> Fit {
        let mut coef = Vec::with_capacity(fit.coef.len());
        let mut intercept = Vec::with_capacity(fit.coef.len());
        for (wz, bz) in fit.coef.iter().zip(&fit.intercept) {
            let w: Vec<f64> = wz.iter().zip(&self.scale).map(|(w, s)| w / s).collect();
            intercept.push(bz - dot(&w, &self.mean));
            coef.push(w);
        }
        if coef.len() > 1 {
            let mean = intercept.iter().sum::<f64>() / intercept.len() as f64;
            intercept.iter_mut().for_each(|b| *b -= mean);
        }
        Fit { coef, intercept, ..fit }
    }
}

/// Ridge regression of `y` on the rows of `x` (n × d): minimises `‖y − X w − b‖² + α ‖w‖²`
/// (bias unpenalised), as scikit-learn's `Ridge(alpha = α)`; in closed form (the dual when
/// n ≤ d).
pub fn ridge(x: &[f64], d: usize, y: &[f64], alpha: f64) -> Fit {
    let n = y.len();
    assert_eq!(x.len(), n * d, "x is n × d");
    let mut mean = vec![0.0; d];
    for row in x.chunks(d) {
        axpy(1.0 / n as f64, row, &mut mean);
    }
    let y_mean = y.iter().sum::<f64>() / n as f64;
    let xc: Vec<f64> = x.chunks(d).flat_map(|row| row.iter().zip(&mean).map(|(a, m)| a - m)).collect();
    let yc: Vec<f64> = y.iter().map(|v| v - y_mean).collect();
    let w = if n <= d {
        // w = Xcᵀ (Xc Xcᵀ + α I)⁻¹ yc
        let mut k = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..=i {
                let v = dot(&xc[i * d..(i + 1) * d], &xc[j * d..(j + 1) * d]);
                k[i * n + j] = v;
                k[j * n + i] = v;
            }
            k[i * n + i] += alpha;
        }
        let mut a = yc.clone();
        solve_spd(&mut k, n, &mut a);
        let mut w = vec![0.0; d];
        for (ai, row) in a.iter().zip(xc.chunks(d)) {
            axpy(*ai, row, &mut w);
        }
        w
    } else {
        // (XcᵀXc + α I) w = Xcᵀ yc
        let mut g = vec![0.0; d * d];
        let mut rhs = vec![0.0; d];
        for (row, yi) in xc.chunks(d).zip(&yc) {
            for a in 0..d {
                for b in 0..=a {
                    g[a * d + b] += row[a] * row[b];
                }
            }
            axpy(*yi, row, &mut rhs);
        }
        for a in 0..d {
            for b in 0..a {
                g[b * d + a] = g[a * d + b];
            }
            g[a * d + a] += alpha;
        }
        solve_spd(&mut g, d, &mut rhs);
        rhs
    };
    let b = y_mean - dot(&mean, &w);
    Fit { coef: vec![w], intercept: vec![b], iterations: 0, gradient_norm: 0.0, converged: true }
}

/// A logistic-regression problem in the coordinates `z` (n × r) of the features in an
/// orthonormal basis of their span. Parameters θ: per output j, r coefficients then its
/// intercept; the last class's intercept of a multinomial is held at 0 (the softmax does not
/// see a common shift of the intercepts, which are not penalised).
struct Logistic<'a> {
    z: Vec<f64>,
    n: usize,
    r: usize,
    y: &'a [usize],
    /// 1 (binary: the logit of class 1) or C (multinomial).
    outputs: usize,
    c: f64,
}

impl Logistic<'_> {
    fn params(&self) -> usize {
        self.outputs * (self.r + 1)
    }

    /// The index of the intercept held at 0, if any.
    fn fixed(&self) -> Option<usize> {
        (self.outputs > 1).then(|| self.params() - 1)
    }

    /// Scores of example i: one per output.
    fn scores(&self, theta: &[f64], i: usize) -> Vec<f64> {
        let (r, r1) = (self.r, self.r + 1);
        let zi = &self.z[i * r..(i + 1) * r];
        (0..self.outputs).map(|j| dot(&theta[j * r1..j * r1 + r], zi) + theta[j * r1 + r]).collect()
    }

    /// Cross-entropy of example i, its derivative by the scores, and the second derivative
    /// (outputs × outputs, row-major).
    fn example(&self, theta: &[f64], i: usize, second: bool) -> (f64, Vec<f64>, Vec<f64>) {
        let s = self.scores(theta, i);
        let y = self.y[i];
        if self.outputs == 1 {
            let t = if y == 1 { 1.0 } else { 0.0 };
            let p = sigmoid(s[0]);
            // log(1 + e^s) − t s, stably.
            let loss = s[0].max(0.0) + (-s[0].abs()).exp().ln_1p() - t * s[0];
            let h = if second { vec![p * (1.0 - p)] } else { Vec::new() };
            (loss, vec![p - t], h)
        } else {
            let m = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let lse = m + s.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
            let p: Vec<f64> = s.iter().map(|v| (v - lse).exp()).collect();
            let g: Vec<f64> = p.iter().enumerate().map(|(j, pj)| pj - f64::from(u8::from(j == y))).collect();
            let k = self.outputs;
            let mut h = Vec::new();
            if second {
                h = vec![0.0; k * k];
                for a in 0..k {
                    for b in 0..k {
                        h[a * k + b] = if a == b { p[a] * (1.0 - p[a]) } else { -p[a] * p[b] };
                    }
                }
            }
            (lse - s[y], g, h)
        }
    }

    fn objective(&self, theta: &[f64]) -> f64 {
        let loss: f64 = (0..self.n).map(|i| self.example(theta, i, false).0).sum();
        self.c * loss + 0.5 * self.penalty(theta)
    }

    fn penalty(&self, theta: &[f64]) -> f64 {
        let r1 = self.r + 1;
        (0..self.outputs).map(|j| theta[j * r1..j * r1 + self.r].iter().map(|v| v * v).sum::<f64>()).sum()
    }

    /// Objective, gradient and (with `second`) Hessian (params × params, row-major).
    fn derivatives(&self, theta: &[f64], second: bool) -> (f64, Vec<f64>, Vec<f64>) {
        let (r, r1, k, p) = (self.r, self.r + 1, self.outputs, self.params());
        let mut g = vec![0.0; p];
        let mut h = if second { vec![0.0; p * p] } else { Vec::new() };
        let mut loss = 0.0;
        let mut zt = vec![0.0; r1];
        for i in 0..self.n {
            let (l, gi, hi) = self.example(theta, i, second);
            loss += l;
            zt[..r].copy_from_slice(&self.z[i * r..(i + 1) * r]);
            zt[r] = 1.0;
            for j in 0..k {
                axpy(self.c * gi[j], &zt, &mut g[j * r1..(j + 1) * r1]);
            }
            if second {
                for a in 0..k {
                    for b in 0..=a {
                        let w = self.c * hi[a * k + b];
                        if w == 0.0 {
                            continue;
                        }
                        for t in 0..r1 {
                            let wt = w * zt[t];
                            let row = &mut h[(a * r1 + t) * p + b * r1..(a * r1 + t) * p + (b + 1) * r1];
                            axpy(wt, &zt, row);
                        }
                    }
                }
            }
        }
        for j in 0..k {
            for t in 0..r {
                g[j * r1 + t] += theta[j * r1 + t];
            }
        }
        if second {
            // The blocks below the diagonal were filled; mirror them, and add the penalty.
            for a in 0..p {
                for b in 0..a {
                    h[b * p + a] = h[a * p + b];
                }
            }
            for j in 0..k {
                for t in 0..r {
                    h[(j * r1 + t) * p + j * r1 + t] += 1.0;
                }
            }
        }
        if let Some(f) = self.fixed() {
            g[f] = 0.0;
            if second {
                for a in 0..p {
                    h[a * p + f] = 0.0;
                    h[f * p + a] = 0.0;
                }
                h[f * p + f] = 1.0;
            }
        }
        (self.c * loss + 0.5 * self.penalty(theta), g, h)
    }

    /// Newton's method from θ = 0 with a backtracking (Armijo) line search. Returns θ, the
    /// steps taken, the final gradient norm and whether it reached [`GTOL`].
    fn newton(&self) -> (Vec<f64>, usize, f64, bool) {
        let p = self.params();
        let mut theta = vec![0.0; p];
        let (mut f, mut g, mut h) = self.derivatives(&theta, true);
        let mut steps = 0;
        loop {
            let gn = norm(&g);
            if gn <= GTOL {
                return (theta, steps, gn, true);
            }
            if steps == MAX_ITER {
                return (theta, steps, gn, false);
            }
            let mut delta: Vec<f64> = g.iter().map(|v| -v).collect();
            solve_spd(&mut h, p, &mut delta);
            let slope = dot(&g, &delta);
            if slope >= 0.0 {
                return (theta, steps, gn, false);
            }
            let mut t = 1.0;
            let mut next = None;
            for _ in 0..60 {
                let cand: Vec<f64> = theta.iter().zip(&delta).map(|(a, b)| a + t * b).collect();
                let fc = self.objective(&cand);
                if fc <= f + 1e-4 * t * slope {
                    next = Some(cand);
                    break;
                }
                if t == 1.0 && -slope <= 1e-12 * (1.0 + f.abs()) {
                    // The decrease is below what f resolves: take the full step when it
                    // shrinks the gradient (Newton's quadratic convergence), else stop.
                    let (_, gc, _) = self.derivatives(&cand, false);
                    if norm(&gc) < gn {
                        next = Some(cand);
                    }
                    break;
                }
                t *= 0.5;
            }
            let Some(cand) = next else { return (theta, steps, gn, false) };
            theta = cand;
            (f, g, h) = self.derivatives(&theta, true);
            steps += 1;
        }
    }
}

/// An orthonormal basis of the span of the rows of `x` (n × d) when n < d (Gram–Schmidt,
/// orthogonalised twice; rows within 1e-10 (relative) of the span so far add nothing); `None`
/// (the identity) otherwise.
fn row_space(x: &[f64], n: usize, d: usize) -> Option<Vec<Vec<f64>>> {
    if n >= d {
        return None;
    }
    let mut basis: Vec<Vec<f64>> = Vec::new();
    for row in x.chunks(d) {
        let size = norm(row);
        if size == 0.0 {
            continue;
        }
        let mut v = row.to_vec();
        for _ in 0..2 {
            for u in &basis {
                let a = dot(u, &v);
                axpy(-a, u, &mut v);
            }
        }
        let left = norm(&v);
        if left > 1e-10 * size {
            v.iter_mut().for_each(|x| *x /= left);
            basis.push(v);
        }
    }
    Some(basis)
}

/// Solves `a x = b` in place for a symmetric positive definite `a` (m × m, row-major,
/// overwritten) by Cholesky; a matrix that is not numerically positive definite gets the
/// smallest diagonal shift (1e-12 × its largest diagonal entry, × 10 each time) that makes it so.
fn solve_spd(a: &mut [f64], m: usize, b: &mut [f64]) {
    let original = a.to_vec();
    let scale = (0..m).map(|i| a[i * m + i].abs()).fold(0.0, f64::max).max(1e-300);
    let mut shift = 0.0;
    loop {
        if shift > 0.0 {
            a.copy_from_slice(&original);
            for i in 0..m {
                a[i * m + i] += shift;
            }
        }
        if cholesky(a, m) {
            break;
        }
        shift = if shift == 0.0 { 1e-12 * scale } else { shift * 10.0 };
    }
    // L y = b, then Lᵀ x = y.
    for i in 0..m {
        let s = b[i] - dot(&a[i * m..i * m + i], &b[..i]);
        b[i] = s / a[i * m + i];
    }
    for i in (0..m).rev() {
        let mut s = b[i];
        for k in i + 1..m {
            s -= a[k * m + i] * b[k];
        }
        b[i] = s / a[i * m + i];
    }
}

/// The Cholesky factor L (lower triangle of `a`, in place); false when a pivot is not positive.
fn cholesky(a: &mut [f64], m: usize) -> bool {
    for j in 0..m {
        let d = a[j * m + j] - a[j * m..j * m + j].iter().map(|v| v * v).sum::<f64>();
        if d.is_nan() || d <= 0.0 {
            return false;
        }
        let l = d.sqrt();
        a[j * m + j] = l;
        for i in j + 1..m {
            let s = a[i * m + j] - dot(&a[i * m..i * m + j], &a[j * m..j * m + j]);
            a[i * m + j] = s / l;
        }
    }
    true
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn axpy(a: f64, x: &[f64], y: &mut [f64]) {
    y.iter_mut().zip(x).for_each(|(v, u)| *v += a * u);
}

fn norm(a: &[f64]) -> f64 {
    dot(a, a).sqrt()
}

fn sigmoid(s: f64) -> f64 {
    if s >= 0.0 {
        1.0 / (1.0 + (-s).exp())
    } else {
        let e = s.exp();
        e / (1.0 + e)
    }
}

fn softmax(s: &[f64]) -> Vec<f64> {
    let m = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = s.iter().map(|v| (v - m).exp()).collect();
    let sum: f64 = e.iter().sum();
    e.into_iter().map(|v| v / sum).collect()
}

/// What a probe run chose: the dev metrics of the chosen C, and the `probe` object of
/// results.json.
pub struct Choice {
    /// Dev metrics at the chosen C.
    pub dev: BTreeMap<String, f64>,
    /// `{C, objective, features, per_c: [{C, dev, iterations, converged, gradient_norm}]}`.
    pub summary: ProbeSummary,
}

/// Fits the probe of a run: frozen features of `train` (through `subspace`, which normalises
/// them), one fit per C of [`CS`], each scored on `dev` with the run's evaluation path; the
/// best C's head is left in `subspace` (and C in its `probe/c` variable). Each C is logged
/// through `emit` (`{"kind": "probe", "step": 0, "C", "dev", "iterations", "converged",
/// "gradient_norm"}`).
pub fn fit_run(
    session: &Session,
    subspace: &mut Subspace,
    train: &Encoded,
    dev: &Encoded,
    emit: &mut dyn FnMut(Value) -> Result<()>,
) -> Result<Choice> {
    let cfg = &session.cfg;
    let task = &session.task;
    let (enc, pad, bs) = (&*session.backbone, session.tokenizer.pad_id(), cfg.eval_batch_size);
    if !subspace.normalizes() {
        return Err(Error::Input("probe: the run's subspace does not normalise its features".into()));
    }
    let feats = features(enc, subspace, train, bs, pad).to_kind(Kind::Double).to(tch::Device::Cpu);
    let d = feats.size()[1] as usize;
    // Standardised (scikit-learn's StandardScaler) before the fit, so that C means the same on
    // every backbone: a decoder's last-token features have a few dimensions that hold most of
    // the norm, and without it the penalty would silence the rest. The scaler is folded into
    // the head afterwards ([`Scaler::unscale`]), so evaluation needs nothing new.
    let raw = Vec::<f64>::try_from(feats.flatten(0, -1))?;
    let scaler = Scaler::fit(&raw, d);
    let x = scaler.transform(&raw);
    let classes = subspace.classes as usize;
    let main = task.main_metric.name();
    let regression = task.is_regression();
    let mut best: Option<(f64, f64, Fit, BTreeMap<String, f64>)> = None;
    let mut per_c = Vec::new();
    for c in CS {
        let fit = if regression {
            let y: Vec<f64> =
                train.labels.iter().map(|l| if let Label::Score(s) = l { f64::from(*s) } else { 0.0 }).collect();
            ridge(&x, d, &y, 1.0 / c)
        } else {
            let y: Vec<usize> = train.labels.iter().map(|l| if let Label::Class(k) = l { *k } else { 0 }).collect();
            logistic(&x, d, &y, classes, c)
        };
        let fit = scaler.unscale(fit);
        set_head(subspace, &fit, classes)?;
        let out = outputs(enc, subspace, dev, &At::Centroid, 1, bs, pad);
        let m = score(&out, &dev.labels, &task.metrics, true);
        let v = m[main];
        let line = json!({"kind": "probe", "step": 0, "C": c, "dev": m, "iterations": fit.iterations,
            "converged": fit.converged, "gradient_norm": fit.gradient_norm});
        // results.json's row is the log line read back, as a resumed run reads it (serde_json's
        // parser may round a float's last bit: both runs then round it alike).
        let read_back = serde_json::from_str(&line.to_string()).expect("a JSON line");
        per_c.push(row_of(read_back).expect("a probe line"));
        emit(line)?;
        if best.as_ref().is_none_or(|(b, _, _, _)| v > *b) {
            best = Some((v, c, fit, m));
        }
    }
    let (_, c, fit, dev_metrics) = best.expect("at least one C");
    set_head(subspace, &fit, classes)?;
    subspace.record_probe_c(c);
    Ok(Choice { dev: dev_metrics, summary: summary(c, regression, per_c) })
}

/// The `probe` object of results.json.
fn summary(c: f64, regression: bool, per_c: Vec<ProbeRow>) -> ProbeSummary {
    ProbeSummary {
        c,
        objective: if regression {
            "ridge regression, alpha = 1/C"
        } else {
            "logistic regression, C · Σ cross-entropy + ½‖W‖²"
        }
        .into(),
        features: "l2-normalised, standardised for the fit (folded into the head)".into(),
        per_c,
    }
}

/// The `probe` object of results.json of a run resumed after its fit (during its test
/// evaluation): the chosen C from the restored `subspace`, every C's line from `metrics.jsonl`.
pub fn summary_from_log(subspace: &Subspace, metrics: &Path, regression: bool) -> Result<ProbeSummary> {
    let per_c: Vec<ProbeRow> = crate::state::log_lines(metrics, "probe")?
        .into_iter()
        .map(|v| {
            row_of(v).map_err(|e| Error::Input(format!("{}: a probe line that is not one ({e})", metrics.display())))
        })
        .collect::<Result<_>>()?;
    if per_c.len() != CS.len() {
        return Err(Error::Input(format!(
            "{}: {} probe lines, expected one per C ({}): the log was edited",
            metrics.display(),
            per_c.len(),
            CS.len()
        )));
    }
    // The variable holds C in f32: the grid's C it stands for.
    let recorded = subspace.probe_c();
    let c = CS.into_iter().min_by(|a, b| (a / recorded).ln().abs().total_cmp(&(b / recorded).ln().abs())).expect("a C");
    Ok(summary(c, regression, per_c))
}

/// A `"kind": "probe"` line of metrics.jsonl as a row of results.json's `per_c`.
fn row_of(line: Value) -> serde_json::Result<ProbeRow> {
    serde_json::from_value(line)
}

/// Puts the fitted head into the subspace (f32).
fn set_head(subspace: &mut Subspace, fit: &Fit, classes: usize) -> Result<()> {
    let (w, b) = fit.head(classes);
    let rows = w.len() as i64;
    let flat: Vec<f64> = w.into_iter().flatten().collect();
    let weight = Tensor::from_slice(&flat).view([rows, -1]).to_kind(Kind::Float);
    let bias = Tensor::from_slice(&b).to_kind(Kind::Float);
    subspace.set_head(0, &weight, &bias).map_err(|e| Error::Input(format!("probe: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic data set: n rows of d features, labels by a noisy linear rule.
    fn data(n: usize, d: usize, classes: usize) -> (Vec<f64>, Vec<usize>) {
        let mut state = 12345u64;
        let mut next = || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
        };
        let x: Vec<f64> = (0..n * d).map(|_| next()).collect();
        // A noisy rule of the first feature; the first examples give every class one example.
        let y = (0..n)
            .map(|i| {
                if i < classes {
                    i
                } else {
                    ((x[i * d] + 0.5 * next() + 1.5) * classes as f64 / 3.0) as usize % classes
                }
            })
            .collect();
        (x, y)
    }

    /// The gradient of the full (d-dimensional) problem at the fit: zero.
    fn full_gradient(fit: &Fit, x: &[f64], d: usize, y: &[usize], c: f64) -> f64 {
        let p = fit.probabilities(x, d);
        let k = fit.coef.len();
        let mut gw = fit.coef.clone();
        let mut gb = vec![0.0; k];
        for (i, row) in x.chunks(d).enumerate() {
            for j in 0..k {
                let (pj, t) = if k == 1 { (p[i][1], y[i] == 1) } else { (p[i][j], y[i] == j) };
                let e = c * (pj - f64::from(u8::from(t)));
                axpy(e, row, &mut gw[j]);
                gb[j] += e;
            }
        }
        let mut s: f64 = gw.iter().flatten().map(|v| v * v).sum::<f64>();
        if k == 1 {
            s += gb[0] * gb[0];
        } else {
            // The intercepts' gradient is defined up to a common shift (the softmax ignores it).
            let mean = gb.iter().sum::<f64>() / k as f64;
            s += gb.iter().map(|v| (v - mean).powi(2)).sum::<f64>();
        }
        s.sqrt()
    }

    #[test]
    fn newton_converges_in_the_row_space_and_in_full() {
        for (n, d, classes) in [(30, 5, 2), (30, 5, 3), (12, 20, 2), (12, 20, 3), (9, 40, 4)] {
            let (x, y) = data(n, d, classes);
            for c in CS {
                let fit = logistic(&x, d, &y, classes, c);
                assert!(fit.converged, "n {n} d {d} C {c}: {fit:?}");
                assert!(fit.iterations < 60, "n {n} d {d} C {c}: {} steps", fit.iterations);
                let g = full_gradient(&fit, &x, d, &y, c);
                assert!(g < 1e-8, "n {n} d {d} classes {classes} C {c}: gradient {g}");
                if classes > 2 {
                    for t in 0..d {
                        let s: f64 = fit.coef.iter().map(|w| w[t]).sum();
                        assert!(s.abs() < 1e-9, "rows sum to 0 at the optimum: {s}");
                    }
                }
            }
        }
    }

    #[test]
    fn ridge_solves_its_normal_equations_in_both_forms() {
        for (n, d) in [(30, 5), (8, 20)] {
            let (x, _) = data(n, d, 2);
            let y: Vec<f64> = x.chunks(d).map(|r| 2.0 * r[0] - r[1] + 0.3).collect();
            let fit = ridge(&x, d, &y, 0.5);
            // Gradient of ‖y − Xw − b‖² + α‖w‖²: zero.
            let mut gw: Vec<f64> = fit.coef[0].iter().map(|w| 0.5 * w).collect();
            let mut gb = 0.0;
            for (row, yi) in x.chunks(d).zip(&y) {
                let e = dot(&fit.coef[0], row) + fit.intercept[0] - yi;
                axpy(e, row, &mut gw);
                gb += e;
            }
            assert!(norm(&gw) < 1e-10 && gb.abs() < 1e-10, "n {n} d {d}: {gw:?} {gb}");
        }
    }

    #[test]
    fn the_binary_head_is_the_sigmoid() {
        let fit = Fit {
            coef: vec![vec![0.5, -1.0]],
            intercept: vec![0.25],
            iterations: 0,
            gradient_norm: 0.0,
            converged: true,
        };
        let (w, b) = fit.head(2);
        let x = [0.3, 0.7];
        let s: Vec<f64> = w.iter().zip(&b).map(|(r, bi)| dot(r, &x) + bi).collect();
        let p = fit.probabilities(&x, 2);
        assert!((softmax(&s)[1] - p[0][1]).abs() < 1e-15);
    }

    #[test]
    fn a_standardised_fit_folds_into_the_raw_head() {
        let (n, d) = (12, 5);
        let (mut x, y) = data(n, d, 3);
        // One constant column (scale 1) and one with a large offset and spread.
        for row in x.chunks_mut(d) {
            row[1] = 4.0;
            row[3] = 100.0 + 30.0 * row[3];
        }
        let scaler = Scaler::fit(&x, d);
        assert_eq!(scaler.scale[1], 1.0);
        let z = scaler.transform(&x);
        for j in 0..d {
            let col: Vec<f64> = z.iter().skip(j).step_by(d).copied().collect();
            assert!(col.iter().sum::<f64>().abs() < 1e-9, "centred");
            if j != 1 {
                assert!((col.iter().map(|v| v * v).sum::<f64>() / n as f64 - 1.0).abs() < 1e-9, "unit variance");
            }
        }
        for classes in [2, 3] {
            let y: Vec<usize> = y.iter().map(|&k| k % classes).collect();
            let fit = logistic(&z, d, &y, classes, 1.0);
            let raw = scaler.unscale(fit.clone());
            let (pz, px) = (fit.probabilities(&z, d), raw.probabilities(&x, d));
            let gap = pz.iter().flatten().zip(px.iter().flatten()).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
            assert!(gap < 1e-12, "{classes} classes: {gap}");
        }
    }
}

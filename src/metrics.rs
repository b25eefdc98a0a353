//! Evaluation metrics for classification and regression, in f64, on the 0..1 scale (not
//! percentages).
//!
//! Degenerate inputs (empty vectors, a constant vector for a correlation, no positive
//! predictions or gold labels for F1) give 0.0 rather than NaN.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::data::Label;

/// A metric a task is evaluated with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// Fraction of correct class predictions.
    Accuracy,
    /// Binary F1 score of class 1.
    F1,
    /// Matthews correlation coefficient.
    Mcc,
    /// Pearson correlation of scores.
    Pearson,
    /// Spearman rank correlation of scores.
    Spearman,
}

impl Metric {
    /// Lower-case name: "accuracy", "f1", "mcc", "pearson" or "spearman".
    pub fn name(self) -> &'static str {
        match self {
            Metric::Accuracy => "accuracy",
            Metric::F1 => "f1",
            Metric::Mcc => "mcc",
            Metric::Pearson => "pearson",
            Metric::Spearman => "spearman",
        }
    }

    /// True for metrics on class predictions (accuracy, F1, MCC).
    pub fn is_classification(self) -> bool {
        matches!(self, Metric::Accuracy | Metric::F1 | Metric::Mcc)
    }
}

/// Model predictions for a whole evaluation set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Predictions {
    /// Predicted class indices.
    Classes(Vec<usize>),
    /// Predicted regression scores.
    Scores(Vec<f64>),
}

impl Predictions {
    /// Number of predictions.
    pub fn len(&self) -> usize {
        match self {
            Predictions::Classes(v) => v.len(),
            Predictions::Scores(v) => v.len(),
        }
    }

    /// True when there are no predictions.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Computes `metrics` of `pred` against `gold`, keyed by [`Metric::name`].
///
/// Correlations accept class predictions and gold classes too (as numbers).
///
/// # Panics
/// If `pred` and `gold` differ in length, or a classification metric is asked for score
/// predictions or score gold labels (both are programming errors, not bad input).
pub fn compute(metrics: &[Metric], pred: &Predictions, gold: &[Label]) -> BTreeMap<String, f64> {
    assert_eq!(pred.len(), gold.len(), "metrics::compute: {} predictions for {} gold labels", pred.len(), gold.len());
    let gold_scores: Vec<f64> = gold
        .iter()
        .map(|l| match *l {
            Label::Class(c) => c as f64,
            Label::Score(s) => f64::from(s),
        })
        .collect();
    let pred_scores: Vec<f64> = match pred {
        Predictions::Classes(v) => v.iter().map(|&c| c as f64).collect(),
        Predictions::Scores(v) => v.clone(),
    };
    let classes = || -> (&[usize], Vec<usize>) {
        let Predictions::Classes(p) = pred else {
            panic!("metrics::compute: classification metric asked for score predictions");
        };
        let g = gold
            .iter()
            .map(|l| match *l {
                Label::Class(c) => c,
                Label::Score(_) => {
                    panic!("metrics::compute: classification metric asked for score labels")
                }
            })
            .collect();
        (p, g)
    };
    metrics
        .iter()
        .map(|&m| {
            let value = match m {
                Metric::Accuracy => {
                    let (p, g) = classes();
                    accuracy(p, &g)
                }
                Metric::F1 => {
                    let (p, g) = classes();
                    f1(p, &g)
                }
                Metric::Mcc => {
                    let (p, g) = classes();
                    mcc(p, &g)
                }
                Metric::Pearson => pearson(&pred_scores, &gold_scores),
                Metric::Spearman => spearman(&pred_scores, &gold_scores),
            };
            (m.name().to_string(), value)
        })
        .collect()
}

/// What always answering the most frequent class of a test set scores: what a score must beat
/// to show that anything was learned (for F1, always answering the positive class can score
/// far above its accuracy).
#[derive(Debug, Clone, PartialEq)]
pub struct Majority {
    /// The class's share of the set: the accuracy of always answering it.
    pub rate: f64,
    /// The run's `metrics` of always answering it.
    pub scores: BTreeMap<String, f64>,
}

/// The majority-class baseline of `gold` in `metrics` (the smaller class on ties); `None` for
/// regression labels or an empty set.
pub fn majority(metrics: &[Metric], gold: &[Label]) -> Option<Majority> {
    let mut counts: BTreeMap<usize, usize> = BTreeMap::new();
    for l in gold {
        match l {
            Label::Class(c) => *counts.entry(*c).or_default() += 1,
            _ => return None,
        }
    }
    let (&c, &m) = counts.iter().max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))?;
    Some(Majority {
        rate: m as f64 / gold.len() as f64,
        scores: compute(metrics, &Predictions::Classes(vec![c; gold.len()]), gold),
    })
}

/// Fraction of positions where `pred` equals `gold` (over the shorter length); 0.0 when empty.
pub fn accuracy(pred: &[usize], gold: &[usize]) -> f64 {
    let n = pred.len().min(gold.len());
    if n == 0 {
        return 0.0;
    }
    let correct = pred.iter().zip(gold).filter(|(p, g)| p == g).count();
    correct as f64 / n as f64
}

/// Binary F1 score with class 1 as the positive class; any other class counts as negative.
/// 0.0 when there are no positive predictions and no positive gold labels.
pub fn f1(pred: &[usize], gold: &[usize]) -> f64 {
    let (mut tp, mut fp, mut fn_) = (0usize, 0usize, 0usize);
    for (&p, &g) in pred.iter().zip(gold) {
        match (p == 1, g == 1) {
            (true, true) => tp += 1,
            (true, false) => fp += 1,
            (false, true) => fn_ += 1,
            (false, false) => {}
        }
    }
    if tp + fp + fn_ == 0 {
        return 0.0;
    }
    2.0 * tp as f64 / (2 * tp + fp + fn_) as f64
}

/// Matthews correlation coefficient, in its multi-class form (equal to the usual binary formula
/// for two classes); 0.0 when empty or when either side predicts a single class.
pub fn mcc(pred: &[usize], gold: &[usize]) -> f64 {
    let n = pred.len().min(gold.len());
    if n == 0 {
        return 0.0;
    }
    let k = pred.iter().chain(gold).max().map_or(0, |m| m + 1);
    let mut p_count = vec![0f64; k];
    let mut g_count = vec![0f64; k];
    let mut correct = 0f64;
    for (&p, &g) in pred.iter().zip(gold) {
        p_count[p] += 1.0;
        g_count[g] += 1.0;
        if p == g {
            correct += 1.0;
        }
    }
    let s = n as f64;
    let pg: f64 = p_count.iter().zip(&g_count).map(|(p, g)| p * g).sum();
    let pp: f64 = p_count.iter().map(|p| p * p).sum();
    let gg: f64 = g_count.iter().map(|g| g * g).sum();
    let denom = ((s * s - pp) * (s * s - gg)).sqrt();
    if denom == 0.0 {
        return 0.0;
    }
    (correct * s - pg) / denom
}

/// Pearson correlation coefficient (over the shorter length); 0.0 when empty or when either
/// vector is constant.
pub fn pearson(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len().min(y.len());
    if n == 0 {
        return 0.0;
    }
    let (x, y) = (&x[..n], &y[..n]);
    let mx = x.iter().sum::<f64>() / n as f64;
    let my = y.iter().sum::<f64>() / n as f64;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        let (dx, dy) = (a - mx, b - my);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    if sxx == 0.0 || syy == 0.0 {
        return 0.0;
    }
    sxy / (sxx.sqrt() * syy.sqrt())
}

/// Spearman rank correlation: Pearson correlation of the ranks, tied values getting the average
/// of their ranks; 0.0 when empty or when either vector is constant.
pub fn spearman(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len().min(y.len());
    pearson(&average_ranks(&x[..n]), &average_ranks(&y[..n]))
}

/// 1-based ranks of `v`, ties sharing the average of the ranks they span.
fn average_ranks(v: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut ranks = vec![0.0; v.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && v[order[end]] == v[order[start]] {
            end += 1;
        }
        // Positions start..end hold equal values: ranks start+1 ..= end, average (start+1+end)/2.
        let rank = (start + 1 + end) as f64 / 2.0;
        for &i in &order[start..end] {
            ranks[i] = rank;
        }
        start = end;
    }
    ranks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_majority_baseline_always_answers_the_most_frequent_class() {
        let (acc, f1, mcc) = (Metric::Accuracy, Metric::F1, Metric::Mcc);
        let rate = |gold: &[Label]| majority(&[acc], gold).map(|m| m.rate);
        let three = [Label::Class(1), Label::Class(0), Label::Class(1), Label::Class(2)];
        assert_eq!(rate(&three), Some(0.5));
        // Two of three positive: accuracy 2/3, F1 2·2 / (2·2 + 1) = 0.8 (above its accuracy),
        // MCC 0 (a constant answer).
        let m = majority(&[acc, f1, mcc], &[Label::Class(1), Label::Class(0), Label::Class(1)]).unwrap();
        close(m.rate, 2.0 / 3.0);
        close(m.scores["accuracy"], 2.0 / 3.0);
        close(m.scores["f1"], 0.8);
        close(m.scores["mcc"], 0.0);
        // Mostly negative: F1 0. A tie answers the smaller class.
        let m = majority(&[f1], &[Label::Class(0), Label::Class(0), Label::Class(1)]).unwrap();
        close(m.rate, 2.0 / 3.0);
        close(m.scores["f1"], 0.0);
        let m = majority(&[acc, f1], &[Label::Class(1), Label::Class(0)]).unwrap();
        close(m.scores["accuracy"], 0.5);
        close(m.scores["f1"], 0.0);
        assert_eq!(majority(&[acc], &[]), None);
        assert_eq!(majority(&[acc], &[Label::Score(0.5)]), None);
    }

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-9, "{a} != {b}");
    }

    #[test]
    fn names() {
        let all = [Metric::Accuracy, Metric::F1, Metric::Mcc, Metric::Pearson, Metric::Spearman];
        let names: Vec<&str> = all.iter().map(|m| m.name()).collect();
        assert_eq!(names, ["accuracy", "f1", "mcc", "pearson", "spearman"]);
        assert_eq!(serde_json::to_string(&Metric::Mcc).unwrap(), "\"mcc\"");
    }

    #[test]
    fn accuracy_values() {
        close(accuracy(&[0, 1, 1, 0], &[0, 1, 0, 0]), 0.75);
        close(accuracy(&[], &[]), 0.0);
    }

    #[test]
    fn f1_values() {
        // pred 1 1 0 1 0 1, gold 1 0 0 1 1 1: tp 3, fp 1, fn 1 -> 2*3 / (6 + 2) = 0.75.
        close(f1(&[1, 1, 0, 1, 0, 1], &[1, 0, 0, 1, 1, 1]), 0.75);
        close(f1(&[0, 0], &[0, 0]), 0.0);
        close(f1(&[1, 1], &[0, 0]), 0.0);
    }

    #[test]
    fn mcc_values() {
        // Binary: tp 3, tn 1, fp 1, fn 1: (3*1 - 1*1) / sqrt(4*4*2*2) = 2/8 = 0.25.
        close(mcc(&[1, 1, 0, 1, 0, 1], &[1, 0, 0, 1, 1, 1]), 0.25);
        close(mcc(&[1, 0, 1, 0], &[1, 0, 1, 0]), 1.0);
        close(mcc(&[0, 1, 0, 1], &[1, 0, 1, 0]), -1.0);
        // Constant prediction: 0, not NaN.
        close(mcc(&[1, 1, 1], &[1, 0, 1]), 0.0);
        close(mcc(&[], &[]), 0.0);
        // Three classes: pred 0,0,2,2,0,2 ; gold 2,0,2,2,0,1. correct c = 4, s = 6,
        // pred counts p = (3,0,3), gold counts t = (2,1,3): sum p*t = 15, sum p^2 = 18,
        // sum t^2 = 14 -> (4*6 - 15) / sqrt((36-18)*(36-14)) = 9 / sqrt(396).
        close(mcc(&[0, 0, 2, 2, 0, 2], &[2, 0, 2, 2, 0, 1]), 9.0 / 396f64.sqrt());
    }

    #[test]
    fn pearson_values() {
        close(pearson(&[1.0, 2.0, 3.0], &[2.0, 4.0, 6.0]), 1.0);
        close(pearson(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]), -1.0);
        // x = 1,2,3,4 ; y = 1,3,2,4: means 2.5; sxy = 2.25+(-0.25)+(-0.25)+2.25 = 4; sxx = syy = 5
        // -> 0.8.
        close(pearson(&[1.0, 2.0, 3.0, 4.0], &[1.0, 3.0, 2.0, 4.0]), 0.8);
        close(pearson(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]), 0.0);
        close(pearson(&[], &[]), 0.0);
    }

    #[test]
    fn spearman_with_ties() {
        assert_eq!(average_ranks(&[10.0, 20.0, 20.0, 30.0]), [1.0, 2.5, 2.5, 4.0]);
        // x = 1,2,2,3 -> ranks 1,2.5,2.5,4 ; y = 1,3,2,4 -> ranks 1,3,2,4.
        // Rank means 2.5; dx = -1.5,0,0,1.5 ; dy = -1.5,0.5,-0.5,1.5.
        // sxy = 2.25+0+0+2.25 = 4.5 ; sxx = 4.5 ; syy = 2.25+0.25+0.25+2.25 = 5
        // -> 4.5 / sqrt(4.5*5) = sqrt(0.9) = 0.9486832980505138.
        close(spearman(&[1.0, 2.0, 2.0, 3.0], &[1.0, 3.0, 2.0, 4.0]), 0.948_683_298_050_513_8);
        // Monotone but non-linear -> 1.
        close(spearman(&[1.0, 2.0, 3.0, 4.0], &[1.0, 8.0, 27.0, 64.0]), 1.0);
        close(spearman(&[5.0, 5.0], &[1.0, 2.0]), 0.0);
    }

    #[test]
    fn compute_classification_and_regression() {
        let gold = [Label::Class(1), Label::Class(0), Label::Class(0), Label::Class(1)];
        let pred = Predictions::Classes(vec![1, 0, 1, 1]);
        let m = compute(&[Metric::F1, Metric::Accuracy], &pred, &gold);
        assert_eq!(m.len(), 2);
        close(m["accuracy"], 0.75);
        close(m["f1"], 0.8);

        let gold = [Label::Score(1.0), Label::Score(2.0), Label::Score(3.0), Label::Score(4.0)];
        let pred = Predictions::Scores(vec![1.0, 3.0, 2.0, 4.0]);
        let m = compute(&[Metric::Pearson, Metric::Spearman], &pred, &gold);
        close(m["pearson"], 0.8);
        close(m["spearman"], 0.8);
    }

    #[test]
    #[should_panic(expected = "predictions for")]
    fn compute_length_mismatch_panics() {
        compute(&[Metric::Accuracy], &Predictions::Classes(vec![1]), &[Label::Class(1), Label::Class(0)]);
    }
}

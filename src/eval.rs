//! Inference with a trained subspace: batched, length-sorted predictions at any point of the
//! simplex (centroid, a vertex, a given α, or m sampled models per example), and the metrics
//! computed from them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};

use tch::{Kind, Tensor};

use crate::data::{Example, Label};
use crate::error::Result;
use crate::method::subspace::{At, Subspace};
use crate::metrics::{compute, Metric, Predictions};
use crate::model::tokenizer::pad_batch;
use crate::model::{Backbone, TextTokenizer};

/// Tokenised inputs, encoded once and reused by every evaluation.
#[derive(Debug, Clone)]
pub struct Encoded {
    /// `(token ids, type ids)` per example.
    pub inputs: Vec<(Vec<i64>, Vec<i64>)>,
    /// Gold labels.
    pub labels: Vec<Label>,
}

impl Encoded {
    /// Tokenises examples.
    pub fn new(tokenizer: &TextTokenizer, examples: &[Example]) -> Result<Self> {
        let inputs =
            examples.iter().map(|e| tokenizer.encode(&e.text_a, e.text_b.as_deref())).collect::<Result<Vec<_>>>()?;
        Ok(Self { inputs, labels: examples.iter().map(|e| e.label).collect() })
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.inputs.len()
    }

    /// True when there is no example.
    pub fn is_empty(&self) -> bool {
        self.inputs.is_empty()
    }
}

/// Model outputs `(N, m, C)`: class probabilities (classification) or the predicted score
/// (regression, C = 1; [`Subspace::outputs`]), for each example and each of the m models
/// (m = 1 at a fixed point).
pub fn outputs(
    encoder: &dyn Backbone,
    subspace: &Subspace,
    data: &Encoded,
    at: &At,
    samples: usize,
    batch_size: usize,
    pad_id: i64,
) -> Tensor {
    outputs_unless(encoder, subspace, data, at, samples, batch_size, pad_id, &AtomicBool::new(false))
        .expect("never stopped")
}

/// [`outputs`], giving up (`None`) before any batch once `stop` is set: a long evaluation that
/// an interrupt must not wait for.
#[allow(clippy::too_many_arguments)]
pub fn outputs_unless(
    encoder: &dyn Backbone,
    subspace: &Subspace,
    data: &Encoded,
    at: &At,
    samples: usize,
    batch_size: usize,
    pad_id: i64,
    stop: &AtomicBool,
) -> Option<Tensor> {
    let _guard = tch::no_grad_guard();
    let m = if *at == At::Sample { samples.max(1) } else { 1 };
    let dev = encoder.device();
    let c = subspace.output_width();
    let n = data.len();
    let out = Tensor::zeros([n as i64, m as i64, c], (Kind::Float, tch::Device::Cpu));
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| data.inputs[i].0.len());
    let per_batch = (batch_size / m).max(1);
    let fixed = (*at != At::Sample).then(|| subspace.fixed_alphas(at, dev));
    for chunk in order.chunks(per_batch) {
        if stop.load(Ordering::SeqCst) {
            return None;
        }
        let items: Vec<_> = chunk.iter().flat_map(|&i| std::iter::repeat_n(data.inputs[i].clone(), m)).collect();
        let batch = pad_batch(&items, pad_id, dev);
        let alphas = match &fixed {
            Some(a) => {
                crate::method::subspace::Alphas { layers: a.layers.shallow_clone(), head: a.head.shallow_clone() }
            }
            None => subspace.sample_alphas(batch.len(), dev),
        };
        let logits = subspace.forward(encoder, &batch, &alphas, false);
        let y = subspace.outputs(&logits);
        let idx = Tensor::from_slice(&chunk.iter().map(|&i| i as i64).collect::<Vec<_>>());
        let mut out_ref = out.shallow_clone();
        let _ = out_ref.index_copy_(0, &idx, &y.view([chunk.len() as i64, m as i64, c]).to(tch::Device::Cpu));
    }
    Some(out)
}

/// Pooled features `(N, H)` at the centroid, without dropout (for the head-only method,
/// whose encoder input never changes).
pub fn features(encoder: &dyn Backbone, subspace: &Subspace, data: &Encoded, batch_size: usize, pad_id: i64) -> Tensor {
    let _guard = tch::no_grad_guard();
    let dev = encoder.device();
    let alphas = subspace.fixed_alphas(&At::Centroid, dev);
    let parts: Vec<Tensor> = data
        .inputs
        .chunks(batch_size.max(1))
        .map(|c| subspace.features(encoder, &pad_batch(c, pad_id, dev), &alphas, false))
        .collect();
    Tensor::cat(&parts, 0)
}

/// Metrics of outputs `(N, m, C)`. `pairs = true` scores every (example, model) pair (the
/// subspace-augmented dev metric); otherwise the m outputs are averaged first (ensemble).
pub fn score(out: &Tensor, gold: &[Label], metrics: &[Metric], pairs: bool) -> BTreeMap<String, f64> {
    let (n, m, c) = out.size3().expect("(N, m, C)");
    let (flat, gold): (Tensor, Vec<Label>) = if pairs {
        (out.reshape([n * m, c]), gold.iter().flat_map(|g| std::iter::repeat_n(*g, m as usize)).collect())
    } else {
        (out.mean_dim(1, false, Kind::Float), gold.to_vec())
    };
    let pred = if c == 1 {
        Predictions::Scores(Vec::<f64>::try_from(flat.select(1, 0).to_kind(Kind::Double)).expect("scores"))
    } else {
        let p = Vec::<i64>::try_from(flat.argmax(-1, false)).expect("classes");
        Predictions::Classes(p.into_iter().map(|x| x as usize).collect())
    };
    compute(metrics, &pred, &gold)
}

//! Self-attention (`attention.self`; MPNet `attention.attn`) with a per-example prefix in
//! front of the keys and values, its additive masks, and MPNet's relative-position bias.

use tch::{Device, Kind, Tensor};

use super::config::Config;
use super::linear::{dense, Linear};
use super::names::LayerNames;
use crate::error::Result;
use crate::model::load::Weights;
use crate::model::packing::Packing;

/// Buckets MPNet's relative positions fall into (Hugging Face uses 32 whatever the config says).
pub(super) const MPNET_BUCKETS: i64 = 32;
/// Distance from which all relative positions share the last bucket.
const MPNET_MAX_DISTANCE: i64 = 128;

/// Self-attention with an optional per-example prefix in front of the keys and values.
#[derive(Debug)]
pub struct SelfAttention {
    /// Query projection.
    pub query: Linear,
    /// Key projection.
    pub key: Linear,
    /// Value projection.
    pub value: Linear,
    heads: i64,
    head_dim: i64,
}

impl SelfAttention {
    /// Takes the query, key and value projections of layer module `prefix` out of `w`.
    pub(super) fn load(w: &mut Weights, cfg: &Config, names: &LayerNames, prefix: &str) -> Result<Self> {
        let h = cfg.hidden_size;
        let n = |name: &str| format!("{prefix}.{name}");
        Ok(Self {
            query: dense(w, &n(names.query), h, h)?,
            key: dense(w, &n(names.key), h, h)?,
            value: dense(w, &n(names.value), h, h)?,
            heads: cfg.num_attention_heads,
            head_dim: cfg.head_dim(),
        })
    }

    /// `x: (B, T, H)`, or `(N, H)` packed real-token rows when `pack` is given; `mask:
    /// (B, 1 or heads, 1 or T, p+T)` additive (mask and any position bias together), `prefix:
    /// Some((k, v))` each `(B, p, H)`. Returns the context in the layout of `x`.
    pub(super) fn forward(
        &self,
        x: &Tensor,
        mask: &Tensor,
        prefix: Option<(&Tensor, &Tensor)>,
        dropout: f64,
        pack: Option<&Packing>,
    ) -> Tensor {
        let (b, t, h) = match pack {
            Some(p) => (p.b, p.t, x.size()[1]),
            None => x.size3().expect("hidden states are (B, T, H)"),
        };
        let padded = |y: Tensor| match pack {
            Some(p) => p.unpack(&y),
            None => y,
        };
        let split = |y: Tensor| y.view([b, -1, self.heads, self.head_dim]).transpose(1, 2);
        let q = split(padded(self.query.forward(x)));
        let mut k = padded(self.key.forward(x));
        let mut v = padded(self.value.forward(x));
        if let Some((pk, pv)) = prefix {
            k = Tensor::cat(&[pk, &k], 1);
            v = Tensor::cat(&[pv, &v], 1);
        }
        let (k, v) = (split(k), split(v));
        let ctx = if dropout > 0.0 {
            // SDPA's math path, with the probabilities' dropout mask drawn on all threads.
            let scores = q.matmul(&k.transpose(-2, -1)) * (1.0 / (self.head_dim as f64).sqrt()) + mask;
            crate::model::dropout::dropout(&scores.softmax(-1, Kind::Float), dropout).matmul(&v)
        } else {
            Tensor::scaled_dot_product_attention(&q, &k, &v, Some(mask), 0.0, false, None, false)
        };
        let ctx = ctx.transpose(1, 2).reshape([b, t, h]);
        match pack {
            Some(p) => p.pack(&ctx),
            None => ctx,
        }
    }
}

/// Additive attention mask from a 0/1 mask of any shape: 0 where attended, the most negative
/// float elsewhere (as Hugging Face does).
pub fn additive(allowed: &Tensor) -> Tensor {
    (allowed.to_kind(Kind::Float).neg() + 1.0) * f64::from(f32::MIN)
}

/// The additive mask `(B, 1, 1, p+T)` that [`Encoder::forward`] gives the layers: the `(B, T)`
/// 0/1 attention mask after `p` prefix columns, which every token attends.
pub fn prefixed_additive_mask(attention_mask: &Tensor, p: i64) -> Tensor {
    let b = attention_mask.size()[0];
    let mask = attention_mask.to_kind(Kind::Float);
    let mask = if p > 0 { Tensor::cat(&[Tensor::ones([b, p], (Kind::Float, mask.device())), mask], 1) } else { mask };
    additive(&mask).view([b, 1, 1, -1])
}

/// MPNet's relative-position bias `(1, heads, T, T)` from its `(buckets, heads)` table, for T
/// tokens at positions 0..T-1 (`bias[h, i, j]` = table[bucket(j - i), h]).
pub(super) fn relative_position_bias(table: &Tensor, t: i64, device: Device) -> Tensor {
    let pos = Tensor::arange(t, (Kind::Int64, device));
    let relative = pos.unsqueeze(0) - pos.unsqueeze(1); // memory - context
    let buckets = relative_position_bucket(&relative);
    Tensor::embedding(table, &buckets, -1, false, false).permute([2, 0, 1]).unsqueeze(0)
}

/// Hugging Face `MPNetEncoder.relative_position_bucket` (32 buckets, max distance 128), with
/// the same float32 operations so that the bucket boundaries round the same way: half the
/// buckets for keys before the query, half after; distances below 8 get their own bucket,
/// larger ones share log-spaced buckets up to 128.
fn relative_position_bucket(relative: &Tensor) -> Tensor {
    let half = MPNET_BUCKETS / 2;
    let max_exact = half / 2;
    let n = relative.neg();
    let ret = n.lt(0).to_kind(Kind::Int64) * half;
    let n = n.abs();
    let is_small = n.lt(max_exact);
    let large = ((n.to_kind(Kind::Float) / max_exact).log() / (MPNET_MAX_DISTANCE as f64 / max_exact as f64).ln()
        * (half - max_exact))
        .to_kind(Kind::Int64)
        + max_exact;
    let large = large.clamp_max(half - 1);
    ret + n.where_self(&is_small, &large)
}

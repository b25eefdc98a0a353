//! One transformer layer (`encoder.layer.N`): self-attention, its output projection and
//! LayerNorm, the feed-forward block (`intermediate`, `output`) and its LayerNorm.

use tch::Tensor;

use super::attention::SelfAttention;
use super::config::Config;
use super::linear::{dense, LayerNorm, Linear};
use super::names::LayerNames;
use crate::error::{Error, Result};
use crate::model::load::Weights;
use crate::model::packing::Packing;

/// A layer's six linear maps and two LayerNorms, each with its checkpoint name.
type Parts<L, N> = ([(&'static str, L); 6], [(&'static str, N); 2]);

/// One post-LN transformer layer (field names are BERT's; [`LayerNames`] maps them to each
/// family's checkpoint names).
#[derive(Debug)]
pub struct Layer {
    /// `attention.self` (MPNet `attention.attn.{q,k,v}`).
    pub attention: SelfAttention,
    /// `attention.output.dense` (MPNet `attention.attn.o`).
    pub attention_output: Linear,
    /// `attention.output.LayerNorm` (MPNet `attention.LayerNorm`).
    pub attention_norm: LayerNorm,
    /// `intermediate.dense`.
    pub intermediate: Linear,
    /// `output.dense`.
    pub output: Linear,
    /// `output.LayerNorm`.
    pub output_norm: LayerNorm,
    act: Activation,
}

impl Layer {
    /// Takes the tensors of layer module `prefix` (`encoder.layer.N`) out of `w`.
    pub(super) fn load(w: &mut Weights, cfg: &Config, names: &LayerNames, prefix: &str) -> Result<Self> {
        let (h, f, eps) = (cfg.hidden_size, cfg.intermediate_size, cfg.layer_norm_eps);
        let n = |name: &str| format!("{prefix}.{name}");
        Ok(Self {
            attention: SelfAttention::load(w, cfg, names, prefix)?,
            attention_output: dense(w, &n(names.attention_output), h, h)?,
            attention_norm: LayerNorm::load(w, &n(names.attention_norm), h, eps)?,
            intermediate: dense(w, &n(names.intermediate), f, h)?,
            output: dense(w, &n(names.output), h, f)?,
            output_norm: LayerNorm::load(w, &n(names.output_norm), h, eps)?,
            act: Activation::parse(&cfg.hidden_act).map_err(Error::Input)?,
        })
    }

    /// The names and shapes of the tensors of layer module `prefix` under `cfg`, in the order
    /// of [`Layer::named_tensors`].
    pub(super) fn shapes(cfg: &Config, names: &LayerNames, prefix: &str) -> Vec<(String, Vec<i64>)> {
        let (h, f) = (cfg.hidden_size, cfg.intermediate_size);
        let mut out = Vec::new();
        for (n, o, i) in [
            (names.query, h, h),
            (names.key, h, h),
            (names.value, h, h),
            (names.attention_output, h, h),
            (names.intermediate, f, h),
            (names.output, h, f),
        ] {
            out.push((format!("{prefix}.{n}.weight"), vec![o, i]));
            out.push((format!("{prefix}.{n}.bias"), vec![o]));
        }
        for n in [names.attention_norm, names.output_norm] {
            out.push((format!("{prefix}.{n}.weight"), vec![h]));
            out.push((format!("{prefix}.{n}.bias"), vec![h]));
        }
        out
    }

    /// The layer's tensors with their checkpoint names below `prefix` (`encoder.layer.N`):
    /// each linear map's weight and bias, then each LayerNorm's.
    pub(super) fn named_tensors(&self, names: &LayerNames, prefix: &str) -> Vec<(String, &Tensor)> {
        let (lins, norms) = self.parts(names);
        let mut out: Vec<(String, &Tensor)> = Vec::new();
        for (n, lin) in lins {
            out.push((format!("{prefix}.{n}.weight"), &lin.weight));
            if let Some(b) = &lin.bias {
                out.push((format!("{prefix}.{n}.bias"), b));
            }
        }
        for (n, ln) in norms {
            out.push((format!("{prefix}.{n}.weight"), &ln.weight));
            out.push((format!("{prefix}.{n}.bias"), &ln.bias));
        }
        out
    }

    /// Mutable [`Layer::named_tensors`].
    pub(super) fn named_tensors_mut(&mut self, names: &LayerNames, prefix: &str) -> Vec<(String, &mut Tensor)> {
        let (lins, norms) = self.parts_mut(names);
        let mut out: Vec<(String, &mut Tensor)> = Vec::new();
        for (n, lin) in lins {
            out.push((format!("{prefix}.{n}.weight"), &mut lin.weight));
            if let Some(b) = &mut lin.bias {
                out.push((format!("{prefix}.{n}.bias"), b));
            }
        }
        for (n, ln) in norms {
            out.push((format!("{prefix}.{n}.weight"), &mut ln.weight));
            out.push((format!("{prefix}.{n}.bias"), &mut ln.bias));
        }
        out
    }

    /// The layer's linear maps and LayerNorms under their checkpoint names.
    fn parts<'a>(&'a self, names: &LayerNames) -> Parts<&'a Linear, &'a LayerNorm> {
        (
            [
                (names.query, &self.attention.query),
                (names.key, &self.attention.key),
                (names.value, &self.attention.value),
                (names.attention_output, &self.attention_output),
                (names.intermediate, &self.intermediate),
                (names.output, &self.output),
            ],
            [(names.attention_norm, &self.attention_norm), (names.output_norm, &self.output_norm)],
        )
    }

    /// Mutable [`Layer::parts`].
    pub(super) fn parts_mut<'a>(&'a mut self, names: &LayerNames) -> Parts<&'a mut Linear, &'a mut LayerNorm> {
        (
            [
                (names.query, &mut self.attention.query),
                (names.key, &mut self.attention.key),
                (names.value, &mut self.attention.value),
                (names.attention_output, &mut self.attention_output),
                (names.intermediate, &mut self.intermediate),
                (names.output, &mut self.output),
            ],
            [(names.attention_norm, &mut self.attention_norm), (names.output_norm, &mut self.output_norm)],
        )
    }

    /// `x: (B, T, H)`, or `(N, H)` real-token rows with `pack` (see [`Packing`]).
    pub(super) fn forward(
        &self,
        x: &Tensor,
        mask: &Tensor,
        prefix: Option<(&Tensor, &Tensor)>,
        drop: Dropout,
        pack: Option<&Packing>,
    ) -> Tensor {
        let a = self.attention.forward(x, mask, prefix, drop.attention, pack);
        let a = drop.hidden(&self.attention_output.forward(&a), pack);
        let x = self.attention_norm.forward(&(a + x));
        let f = self.act.apply(&self.intermediate.forward(&x));
        let f = drop.hidden(&self.output.forward(&f), pack);
        self.output_norm.forward(&(f + x))
    }
}

/// The dropout probabilities of one pass (0 when not training with dropout).
#[derive(Debug, Clone, Copy)]
pub(super) struct Dropout {
    /// On the hidden states after the attention output and the feed-forward block.
    pub(super) hidden: f64,
    /// On the attention probabilities.
    pub(super) attention: f64,
}

impl Dropout {
    /// Hidden dropout; on packed rows each real token gets the mask values of its row in the
    /// padded batch (only those are drawn), so that a token's mask does not depend on the
    /// packing.
    fn hidden(&self, x: &Tensor, pack: Option<&Packing>) -> Tensor {
        match pack {
            Some(p) => crate::model::dropout::dropout_rows(x, self.hidden, &p.host_rows),
            None => crate::model::dropout::dropout(x, self.hidden),
        }
    }
}

/// The feed-forward block's activation (`hidden_act`).
#[derive(Debug, Clone, Copy)]
pub(super) enum Activation {
    Gelu,
    GeluTanh,
    Relu,
}

impl Activation {
    /// From `hidden_act`; the message names the value and what is supported.
    pub(super) fn parse(name: &str) -> std::result::Result<Self, String> {
        match name {
            "gelu" => Ok(Self::Gelu),
            "gelu_new" | "gelu_pytorch_tanh" => Ok(Self::GeluTanh),
            "relu" => Ok(Self::Relu),
            other => Err(format!("hidden_act \"{other}\" is not supported (expected gelu, gelu_new or relu)")),
        }
    }

    /// Applies the activation elementwise.
    fn apply(self, x: &Tensor) -> Tensor {
        match self {
            Self::Gelu => x.gelu("none"),
            Self::GeluTanh => x.gelu("tanh"),
            Self::Relu => x.relu(),
        }
    }
}

//! The checkpoint names of the encoder's tensors: one table per architecture.
//!
//! Every place that names a checkpoint tensor (loading, [`super::Encoder::named_tensors`],
//! trainable variables, LoRA variables, [`super::Config::parameter_shapes`]) reads it here.

/// The checkpoint names of one architecture's tensors, as they are after the task-model
/// prefix ([`Names::checkpoint_prefix`]) is stripped. Single tensors (the embedding tables and
/// MPNet's relative-position table) are named in full; linear maps and LayerNorms by their
/// module, whose `.weight` and `.bias` follow.
#[derive(Debug, Clone, Copy)]
pub struct Names {
    /// The name prefix a task-model checkpoint puts before the encoder's tensors (`bert.`).
    pub checkpoint_prefix: &'static str,
    /// Word embeddings `(vocab, H)`.
    pub word_embeddings: &'static str,
    /// Absolute position embeddings `(max_positions, H)`.
    pub position_embeddings: &'static str,
    /// Token-type embeddings `(type_vocab, H)`; `None` for MPNet, which has none.
    pub token_type_embeddings: Option<&'static str>,
    /// The LayerNorm after the embeddings.
    pub embeddings_norm: &'static str,
    /// The layers' module: layer N is `{layers}.N`.
    pub layers: &'static str,
    /// The sub-modules of each layer, below `{layers}.N.`.
    pub layer: LayerNames,
    /// MPNet's relative-position table `(buckets, heads)`, shared by all layers; `None` for
    /// BERT and RoBERTa.
    pub relative_attention_bias: Option<&'static str>,
}

/// The checkpoint names of one layer's sub-modules, below `encoder.layer.N.`.
#[derive(Debug, Clone, Copy)]
pub struct LayerNames {
    /// Query projection (`attention.self.query`; MPNet `attention.attn.q`).
    pub query: &'static str,
    /// Key projection.
    pub key: &'static str,
    /// Value projection.
    pub value: &'static str,
    /// Attention output projection (`attention.output.dense`; MPNet `attention.attn.o`).
    pub attention_output: &'static str,
    /// LayerNorm after attention (`attention.output.LayerNorm`; MPNet `attention.LayerNorm`).
    pub attention_norm: &'static str,
    /// Feed-forward up projection.
    pub intermediate: &'static str,
    /// Feed-forward down projection.
    pub output: &'static str,
    /// LayerNorm after the feed-forward block.
    pub output_norm: &'static str,
}

/// MPNet's relative-position table (`encoder.relative_attention_bias.weight`, `(buckets, heads)`).
pub const MPNET_RELATIVE_BIAS: &str = "encoder.relative_attention_bias.weight";

/// BERT (Hugging Face `BertModel` without its pooler).
pub(super) const BERT: Names = Names {
    checkpoint_prefix: "bert.",
    word_embeddings: "embeddings.word_embeddings.weight",
    position_embeddings: "embeddings.position_embeddings.weight",
    token_type_embeddings: Some("embeddings.token_type_embeddings.weight"),
    embeddings_norm: "embeddings.LayerNorm",
    layers: "encoder.layer",
    layer: LayerNames {
        query: "attention.self.query",
        key: "attention.self.key",
        value: "attention.self.value",
        attention_output: "attention.output.dense",
        attention_norm: "attention.output.LayerNorm",
        intermediate: "intermediate.dense",
        output: "output.dense",
        output_norm: "output.LayerNorm",
    },
    relative_attention_bias: None,
};

/// RoBERTa: BERT's names under another task-model prefix.
pub(super) const ROBERTA: Names = Names { checkpoint_prefix: "roberta.", ..BERT };

/// MPNet (Hugging Face `MPNetModel` without its pooler).
pub(super) const MPNET: Names = Names {
    checkpoint_prefix: "mpnet.",
    word_embeddings: "embeddings.word_embeddings.weight",
    position_embeddings: "embeddings.position_embeddings.weight",
    token_type_embeddings: None,
    embeddings_norm: "embeddings.LayerNorm",
    layers: "encoder.layer",
    layer: LayerNames {
        query: "attention.attn.q",
        key: "attention.attn.k",
        value: "attention.attn.v",
        attention_output: "attention.attn.o",
        attention_norm: "attention.LayerNorm",
        intermediate: "intermediate.dense",
        output: "output.dense",
        output_norm: "output.LayerNorm",
    },
    relative_attention_bias: Some(MPNET_RELATIVE_BIAS),
};

impl Names {
    /// The module of layer `i` (`encoder.layer.i`).
    pub fn layer_prefix(&self, i: impl std::fmt::Display) -> String {
        format!("{}.{i}", self.layers)
    }
}

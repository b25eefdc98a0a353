//! `prompt`: prompt tuning, `prefix_len` trainable vectors in front of the input embeddings
//! (started from the embeddings of random vocabulary tokens, as PEFT's default), + head.

use super::Method;

/// A soft prompt (the `prompt` variable of the [`super::subspace::Subspace`]).
pub struct PromptTuning;

impl Method for PromptTuning {
    fn name(&self) -> &'static str {
        "prompt"
    }
    fn default_lr(&self) -> f64 {
        5e-3
    }
    fn uses_prompt(&self) -> bool {
        true
    }
}

//! `zero-shot` (decoders): the task's template and label words, nothing trained.

use super::Method;

/// The decoder as it is: the class score is the LM logit of each label word after the prompt.
pub struct ZeroShot;

impl Method for ZeroShot {
    fn name(&self) -> &'static str {
        "zero-shot"
    }
    /// No gradient step is taken; the value is never used.
    fn default_lr(&self) -> f64 {
        5e-3
    }
    fn trains(&self) -> bool {
        false
    }
    fn needs_decoder(&self) -> bool {
        true
    }
}

//! `head`: a linear head trained with AdamW on frozen features, for the step budget, with the
//! step picked on dev (where `probe` fits the same head to convergence).

use super::Method;

/// The head alone: the backbone is frozen and sees no prefix, so the train features are
/// computed once.
pub struct HeadOnly;

impl Method for HeadOnly {
    fn name(&self) -> &'static str {
        "head"
    }
    fn default_lr(&self) -> f64 {
        5e-3
    }
    fn trains_only_the_head(&self) -> bool {
        true
    }
    fn caches_features(&self) -> bool {
        true
    }
}

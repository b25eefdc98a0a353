//! `prefix`: plain deep prefix tuning (P-tuning v2), the prefix subspace with one vertex.

use super::Method;

/// One trained deep prefix (and, on an encoder, a head): the subspace of [`super::subspace`]
/// with `vertices = 1`, so that both share every line of code.
pub struct PrefixTuning;

impl Method for PrefixTuning {
    fn name(&self) -> &'static str {
        "prefix"
    }
    fn default_lr(&self) -> f64 {
        5e-3
    }
    fn uses_prefix(&self) -> bool {
        true
    }
}

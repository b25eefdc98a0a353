//! `zero-shot` (decoders): the task's template and label words, nothing trained.

use super::subspace::Subspace;
use super::Method;
use crate::error::Result;
use crate::session::Session;

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
    /// Calibrated behind the template alone ([`super::icl::calibrate`]).
    fn calibrate(&self, session: &Session, s: &mut Subspace) -> Result<()> {
        super::icl::calibrate(session, s)
    }
}

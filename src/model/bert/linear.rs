//! The encoder's dense layers ([`Linear`], shared with the decoders) and LayerNorms, each
//! loaded by its checkpoint module name.

use tch::Tensor;

use crate::error::Result;
pub use crate::model::linear::{Linear, Lora};
use crate::model::load::Weights;

/// The encoder's dense layer `name` (`{name}.weight` `(out, in)` and `{name}.bias`).
pub(super) fn dense(w: &mut Weights, name: &str, out_dim: i64, in_dim: i64) -> Result<Linear> {
    let weight = w.take(&format!("{name}.weight"), &[out_dim, in_dim])?;
    let bias = w.take(&format!("{name}.bias"), &[out_dim])?;
    Ok(Linear::new(weight, Some(bias)))
}

/// LayerNorm with the checkpoint's `weight` / `bias` (older `gamma` / `beta` accepted).
#[derive(Debug)]
pub struct LayerNorm {
    /// Scale.
    pub weight: Tensor,
    /// Shift.
    pub bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    pub(super) fn load(w: &mut Weights, name: &str, dim: i64, eps: f64) -> Result<Self> {
        let weight = w.take_any(&[&format!("{name}.weight"), &format!("{name}.gamma")], &[dim])?;
        let bias = w.take_any(&[&format!("{name}.bias"), &format!("{name}.beta")], &[dim])?;
        Ok(Self { weight, bias, eps })
    }

    /// Applies the normalisation over the last dimension.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let d = *x.size().last().expect("tensor has a last dimension");
        x.layer_norm([d], Some(&self.weight), Some(&self.bias), self.eps, true)
    }
}

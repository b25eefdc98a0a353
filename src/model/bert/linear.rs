//! The encoder's dense layers (with an optional LoRA update and bf16 products) and LayerNorms,
//! each loaded by its checkpoint module name.

use tch::{Kind, Tensor};

use crate::error::Result;
use crate::model::load::Weights;

/// A dense layer `y = x Wᵀ + b` with the checkpoint's `(out, in)` weight, and an optional
/// low-rank update (LoRA).
#[derive(Debug)]
pub struct Linear {
    /// `(out, in)`.
    pub weight: Tensor,
    /// `(out,)`.
    pub bias: Tensor,
    /// LoRA: `y += scale · (x Aᵀ) Bᵀ`.
    pub lora: Option<Lora>,
    /// Multiply in this lower precision (bf16) instead of fp32, with `weight` rounded once
    /// when it is frozen (`Some`) or at every call when it is trained (`None`).
    low: Option<(Kind, Option<Tensor>)>,
}

/// A trainable low-rank update of a frozen linear layer (Hu et al. 2021), kept unmerged.
#[derive(Debug)]
pub struct Lora {
    /// `(r, in)`, Kaiming-uniform initialised.
    pub a: Tensor,
    /// `(out, r)`, zero initialised (the update starts at 0).
    pub b: Tensor,
    /// `alpha / r`.
    pub scale: f64,
}

impl Linear {
    pub(super) fn load(w: &mut Weights, name: &str, out_dim: i64, in_dim: i64) -> Result<Self> {
        Ok(Self {
            weight: w.take(&format!("{name}.weight"), &[out_dim, in_dim])?,
            bias: w.take(&format!("{name}.bias"), &[out_dim])?,
            lora: None,
            low: None,
        })
    }

    /// Multiply in `kind` (e.g. bf16) from now on, or in fp32 again (`None`).
    pub fn set_product_kind(&mut self, kind: Option<Kind>) {
        self.low = kind.map(|k| (k, (!self.weight.requires_grad()).then(|| self.weight.to_kind(k))));
    }

    /// Applies the layer.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let y = match &self.low {
            None => x.linear(&self.weight, Some(&self.bias)),
            Some((k, frozen)) => {
                let w = frozen.as_ref().map_or_else(|| self.weight.to_kind(*k), |w| w.shallow_clone());
                x.to_kind(*k).linear::<Tensor>(&w, None).to_kind(x.kind()) + &self.bias
            }
        };
        match &self.lora {
            Some(l) => y + x.linear::<Tensor>(&l.a, None).linear::<Tensor>(&l.b, None) * l.scale,
            None => y,
        }
    }
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

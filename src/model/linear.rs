//! The dense layer of every backbone: `y = x Wᵀ (+ b)` with the checkpoint's `(out, in)`
//! weight, an optional low-rank update (LoRA) and optional bf16 products. Each backbone loads
//! its layers by its own checkpoint names (`bert::linear`, `decoder`).

use tch::{Kind, Tensor};

/// A dense layer.
#[derive(Debug)]
pub struct Linear {
    /// `(out, in)`.
    pub weight: Tensor,
    /// `(out,)`, when the checkpoint has one (every encoder layer; Qwen2's query, key and value
    /// projections among the decoders).
    pub bias: Option<Tensor>,
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
    /// The layer of a loaded weight and bias, fp32 products, no LoRA.
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        Self { weight, bias, lora: None, low: None }
    }

    /// Multiply in `kind` (e.g. bf16) from now on, or in fp32 again (`None`). Call it after
    /// choosing what is trained: a frozen weight is rounded once, here.
    pub fn set_product_kind(&mut self, kind: Option<Kind>) {
        self.low = kind.map(|k| (k, (!self.weight.requires_grad()).then(|| self.weight.to_kind(k))));
    }

    /// Applies the layer.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let y = match &self.low {
            None => x.linear(&self.weight, self.bias.as_ref()),
            Some((k, frozen)) => {
                let w = frozen.as_ref().map_or_else(|| self.weight.to_kind(*k), |w| w.shallow_clone());
                let y = x.to_kind(*k).linear::<Tensor>(&w, None).to_kind(x.kind());
                match &self.bias {
                    Some(b) => y + b,
                    None => y,
                }
            }
        };
        match &self.lora {
            Some(l) => y + x.linear::<Tensor>(&l.a, None).linear::<Tensor>(&l.b, None) * l.scale,
            None => y,
        }
    }
}

//! What training changes in the frozen encoder: trainable weights (BitFit, full
//! fine-tuning), LoRA updates, bf16 products, and whether a pass may pack out the padding.

use tch::{Kind, Tensor};

use super::linear::Lora;
use super::Encoder;
use crate::error::{Error, Result};

impl Encoder {
    /// Mutable access to every weight tensor, with its checkpoint name (as [`Encoder::named_tensors`]).
    fn named_tensors_mut(&mut self) -> Vec<(String, &mut Tensor)> {
        let names = self.arch.names();
        let mut out = self.embeddings.named_tensors_mut(names);
        for (i, l) in self.layers.iter_mut().enumerate() {
            out.extend(l.named_tensors_mut(&names.layer, &names.layer_prefix(i)));
        }
        if let (Some(n), Some(t)) = (names.relative_attention_bias, &mut self.relative_attention_bias) {
            out.push((n.into(), t));
        }
        out
    }

    /// Runs every dense layer's product in `kind` (bf16), or in fp32 again (`None`). Call it
    /// after choosing what is trained: frozen weights are rounded once, here.
    pub fn set_product_kind(&mut self, kind: Option<Kind>) {
        for l in &mut self.layers {
            for lin in [
                &mut l.attention.query,
                &mut l.attention.key,
                &mut l.attention.value,
                &mut l.attention_output,
                &mut l.intermediate,
                &mut l.output,
            ] {
                lin.set_product_kind(kind);
            }
        }
    }

    /// Makes the weights whose checkpoint name passes `select` trainable: each becomes a
    /// variable of `path` under its checkpoint name (BitFit: the biases; full fine-tuning:
    /// everything). Returns how many tensors were made trainable.
    pub fn make_trainable(&mut self, path: &tch::nn::Path, select: &dyn Fn(&str) -> bool) -> usize {
        let (mut count, mut first) = (0, None);
        for (name, t) in self.named_tensors_mut() {
            if select(&name) {
                *t = nested(path, &name).var_copy(name.rsplit('.').next().expect("name"), t);
                first.get_or_insert_with(|| t.shallow_clone());
                count += 1;
            }
        }
        self.trained = self.trained.take().or(first);
        count
    }

    /// Adds LoRA updates of rank `r` (scale `alpha / r`) to the attention projections named
    /// in `targets` (`query`, `key`, `value`, `output`: the roles, whatever the family; for
    /// MPNet they are `attention.attn.{q,k,v,o}`) of every layer, as variables of `path`
    /// under the checkpoint name of the projection + `.lora`.
    pub fn add_lora(&mut self, path: &tch::nn::Path, r: i64, alpha: f64, targets: &[String]) -> Result<()> {
        for t in targets {
            if !["query", "key", "value", "output"].contains(&t.as_str()) {
                return Err(Error::Input(format!(
                    "lora target \"{t}\" is not known (expected query, key, value or output)"
                )));
            }
        }
        let h = self.hidden_size();
        let names = self.arch.names();
        let ln = &names.layer;
        for (i, layer) in self.layers.iter_mut().enumerate() {
            for t in targets {
                let (lin, name) = match t.as_str() {
                    "query" => (&mut layer.attention.query, ln.query),
                    "key" => (&mut layer.attention.key, ln.key),
                    "value" => (&mut layer.attention.value, ln.value),
                    _ => (&mut layer.attention_output, ln.attention_output),
                };
                let p = nested(path, &format!("{}.{name}.lora", names.layer_prefix(i)));
                let bound = 1.0 / (h as f64).sqrt();
                let lora = Lora {
                    a: p.var("A", &[r, h], tch::nn::Init::Uniform { lo: -bound, up: bound }),
                    b: p.zeros("B", &[h, r]),
                    scale: alpha / r as f64,
                };
                self.trained.get_or_insert_with(|| lora.a.shallow_clone());
                lin.lora = Some(lora);
            }
        }
        Ok(())
    }

    /// Whether [`Encoder::forward`] runs the token-wise work on real tokens only
    /// ([`Packing`](super::Packing)): always, except in a pass that computes gradients for
    /// trained encoder weights (full fine-tuning, BitFit, LoRA). Their gradients sum over
    /// token rows, and a sum over fewer rows, even when the rows left out are exactly zero, is
    /// blocked differently by the matrix-product kernels and rounds differently; those passes
    /// keep the padded layout so that training numbers stay what they were. Every other pass (inference; training a
    /// prefix, a subspace, a prompt or a head) gives the same numbers packed or not, bit for
    /// bit where the product kernel computes each output row the same way whatever the
    /// number of rows (MKL on an AMD Zen 4), and up to rounding (a few 1e-6) where it does
    /// not (MKL on an Intel Xeon with AMX).
    pub fn packs(&self) -> bool {
        // A product with a trained weight requires a gradient only where gradients are on.
        !self.trained.as_ref().is_some_and(|w| (w.reshape([-1]).narrow(0, 0, 1) * 1.0).requires_grad())
    }
}

/// The path `a / b / c` for a dotted name `a.b.c.leaf` (the leaf excluded).
fn nested<'a>(path: &tch::nn::Path<'a>, name: &str) -> tch::nn::Path<'a> {
    let parts: Vec<&str> = name.split('.').collect();
    let mut p = path.sub(parts[0]);
    let upto = if name.ends_with(".weight")
        || name.ends_with(".bias")
        || name.ends_with(".gamma")
        || name.ends_with(".beta")
    {
        parts.len() - 1
    } else {
        parts.len()
    };
    for part in &parts[1..upto] {
        p = p.sub(*part);
    }
    p
}

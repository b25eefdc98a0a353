//! The FLOP model of a training step: its matrix products ([`step_products`]) and their
//! FLOPs ([`step_flops`]).

use super::{LoraTargets, Trainable};

/// The dimensions of one training step.
#[derive(Debug, Clone, Copy)]
pub struct StepShape {
    /// B.
    pub batch: i64,
    /// T, tokens per example (the batch's longest example under dynamic padding).
    pub seq: i64,
    /// Token rows the linear layers run on: B·T, or the batch's real tokens when the encoder
    /// packs out the padding (see `model::Packing`; attention still runs on B × T).
    pub tokens: i64,
    /// p, prefix length (0 = no prefix).
    pub prefix: i64,
    /// L.
    pub layers: i64,
    /// H.
    pub hidden: i64,
    /// F, feed-forward inner size.
    pub ffn: i64,
    /// C, outputs of the head.
    pub classes: i64,
    /// n, vertices mixed into the prefix.
    pub vertices: i64,
    /// Heads mixed (n with a head simplex, else 1).
    pub heads: i64,
    /// Attention heads (they split H; the attention products are batched over them).
    pub attention_heads: i64,
}

/// Matmul FLOPs of one training step.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Flops {
    /// Forward.
    pub forward: f64,
    /// Backward.
    pub backward: f64,
}

impl Flops {
    /// Forward + backward.
    pub fn total(&self) -> f64 {
        self.forward + self.backward
    }
}

/// One matrix product of a step: `batch` independent (m × k) by (k × n) products.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Product {
    /// Independent products (B × heads for attention, else 1).
    pub batch: i64,
    /// Rows of the left operand.
    pub m: i64,
    /// Shared dimension.
    pub k: i64,
    /// Columns of the right operand.
    pub n: i64,
}

impl Product {
    fn new(batch: i64, m: i64, k: i64, n: i64) -> Self {
        Self { batch, m, k, n }
    }

    /// 2·batch·m·k·n.
    pub fn flops(&self) -> f64 {
        2.0 * self.batch as f64 * self.m as f64 * self.k as f64 * self.n as f64
    }
}

/// The matrix products of one training step, in the order they run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Products {
    /// Forward (all an inference pass does).
    pub forward: Vec<Product>,
    /// Backward (in forward order: the order does not change their cost).
    pub backward: Vec<Product>,
}

impl Products {
    /// Forward then backward, in one list.
    pub fn all(&self) -> Vec<Product> {
        [self.forward.as_slice(), self.backward.as_slice()].concat()
    }

    /// Their FLOPs.
    pub fn flops(&self) -> Flops {
        let sum = |v: &[Product]| v.iter().map(Product::flops).sum();
        Flops { forward: sum(&self.forward), backward: sum(&self.backward) }
    }
}

/// Lists the matrix products of one training step (forward and backward), following which
/// tensors need a gradient: [`step_flops`] counts them, and the `products_only_*` figures of
/// `speed` run them alone.
///
/// With N token rows (`StepShape::tokens`: B·T, or fewer when packed) and S = p + T keys, a linear layer in → out is an (N × in) by (in × out)
/// product forward; backward, its input gradient (when the input depends on a trained tensor)
/// is (N × out) by (out × in) and its weight gradient (when the weight is trained) (in × N) by
/// (N × out). Per layer, forward: the Q, K, V and output projections (H → H), the
/// feed-forward (H → F → H), attention scores QKᵀ and the weighted sum PV (B·heads products of
/// T × d by d × S and T × S by S × d, d = H / heads), LoRA's (N × in) by (in × r) and (N × r)
/// by (r × out) per adapted projection. Backward, for prefix tuning (frozen weights): every
/// layer after the first needs the input gradients of all six projections and all four
/// attention gradients (dQ, dK, dP, dV); the first layer's input (the frozen embeddings) needs
/// no gradient, so neither do its Q, K, V projections nor dQ; its dK and dV (which hold the
/// prefix's) and dP are needed. Full fine-tuning needs every gradient: backward = 2 × forward.
/// Also listed: the prefix mixing α·vertices ((B·L) × n by n × 2pH, forward and the vertices'
/// gradient) and the head (B × H by H × C per mixed head, forward and each of its two
/// gradients). Not listed: LayerNorm, softmax, GELU, dropout, embedding lookups, the
/// optimizer.
pub fn step_products(s: &StepShape, what: &Trainable) -> Products {
    let (n_tok, h, ff, p) = (s.tokens, s.hidden, s.ffn, s.prefix);
    let keys = s.seq + p;
    let full = matches!(what, Trainable::Full);
    let (r, targets) = match *what {
        Trainable::Lora { r, targets } => (r, targets),
        _ => (0, LoraTargets::default()),
    };
    let mut ps = Products::default();
    // A linear layer in → out on N tokens; returns whether its output needs a gradient.
    let linear = |ps: &mut Products, din: i64, dout: i64, lora: bool, input_grad: bool| -> bool {
        ps.forward.push(Product::new(1, n_tok, din, dout));
        if full {
            ps.backward.push(Product::new(1, din, n_tok, dout)); // weight gradient
        }
        if input_grad {
            ps.backward.push(Product::new(1, n_tok, dout, din)); // input gradient
        }
        if lora {
            ps.forward.push(Product::new(1, n_tok, din, r));
            ps.forward.push(Product::new(1, n_tok, r, dout));
            // dB, d(xA), dA always; dx through A when the input needs it.
            ps.backward.push(Product::new(1, r, n_tok, dout));
            ps.backward.push(Product::new(1, n_tok, dout, r));
            ps.backward.push(Product::new(1, din, n_tok, r));
            if input_grad {
                ps.backward.push(Product::new(1, n_tok, r, din));
            }
        }
        input_grad || full || lora
    };
    let prefix = p > 0;
    if prefix {
        ps.forward.push(Product::new(1, s.batch * s.layers, s.vertices, 2 * p * h));
        // The vertices' gradient (α needs none).
        ps.backward.push(Product::new(1, s.vertices, s.batch * s.layers, 2 * p * h));
    }
    let (bh, d) = (s.batch * s.attention_heads, h / s.attention_heads);
    let mut x_grad = full; // embeddings are trained only in full fine-tuning
    for _ in 0..s.layers {
        let q = linear(&mut ps, h, h, targets.query, x_grad);
        let k = linear(&mut ps, h, h, targets.key, x_grad) || prefix;
        let v = linear(&mut ps, h, h, targets.value, x_grad) || prefix;
        let scores = q || k;
        ps.forward.push(Product::new(bh, s.seq, d, keys)); // QKᵀ
        ps.forward.push(Product::new(bh, s.seq, keys, d)); // PV
        if q {
            ps.backward.push(Product::new(bh, s.seq, keys, d)); // dQ = dS K
        }
        if k {
            ps.backward.push(Product::new(bh, keys, s.seq, d)); // dK = dSᵀ Q
        }
        if scores {
            ps.backward.push(Product::new(bh, s.seq, d, keys)); // dP = dCtx Vᵀ
        }
        if v {
            ps.backward.push(Product::new(bh, keys, s.seq, d)); // dV = Pᵀ dCtx
        }
        let ctx = scores || v;
        let o = linear(&mut ps, h, h, targets.output, ctx);
        let a = o || x_grad;
        let up = linear(&mut ps, h, ff, false, a);
        let down = linear(&mut ps, ff, h, false, up);
        x_grad = down || a;
    }
    for _ in 0..s.heads {
        ps.forward.push(Product::new(1, s.batch, h, s.classes));
        ps.backward.push(Product::new(1, h, s.batch, s.classes)); // the head's weight gradient
        if x_grad {
            ps.backward.push(Product::new(1, s.batch, s.classes, h)); // the pooled features' gradient
        }
    }
    ps
}

/// Counts the matmul FLOPs of one training step (forward + backward): the sum over
/// [`step_products`].
pub fn step_flops(s: &StepShape, what: &Trainable) -> Flops {
    step_products(s, what).flops()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(p: i64) -> StepShape {
        StepShape {
            batch: 16,
            seq: 128,
            tokens: 16 * 128,
            prefix: p,
            layers: 6,
            hidden: 384,
            ffn: 1536,
            classes: 2,
            vertices: 1,
            heads: 1,
            attention_heads: 12,
        }
    }

    #[test]
    fn packing_shrinks_the_linear_layers_only() {
        let padded = step_products(&shape(16), &Trainable::Prefix);
        let packed = step_products(&StepShape { tokens: 16 * 64, ..shape(16) }, &Trainable::Prefix);
        assert_eq!(padded.forward.len(), packed.forward.len());
        for (a, b) in padded.all().iter().zip(packed.all()) {
            if a.batch == 1 && a.m == 16 * 128 {
                assert_eq!(b.m, 16 * 64, "{a:?}: a linear layer runs on the packed rows");
            } else if a.batch == 1 && a.k == 16 * 128 {
                assert_eq!(b.k, 16 * 64, "{a:?}: a weight gradient sums over the packed rows");
            } else {
                assert_eq!(*a, b, "attention, the head and the prefix mixing keep their shape");
            }
        }
    }

    #[test]
    fn full_fine_tuning_backward_is_twice_forward() {
        let s = StepShape { prefix: 0, ..shape(0) };
        let fl = step_flops(&s, &Trainable::Full);
        assert!((fl.backward - 2.0 * fl.forward).abs() < 1e-6 * fl.forward, "{fl:?}");
    }

    #[test]
    fn prefix_step_matches_the_hand_count() {
        let s = shape(16);
        let (n, h, f, keys, l) = (16.0 * 128.0, 384.0, 1536.0, 144.0, 6.0);
        let lin = 2.0 * n * (4.0 * h * h + 2.0 * h * f);
        let attn = 2.0 * n * keys * h;
        let mix = 2.0 * 16.0 * 6.0 * 2.0 * 16.0 * h;
        let head = 2.0 * 16.0 * h * 2.0;
        let fwd = l * (lin + 2.0 * attn) + mix + head;
        // Layer 0: no Q/K/V input gradients, no dQ; later layers: everything but weights.
        let layer0 = 2.0 * n * (h * h + 2.0 * h * f) + 3.0 * attn;
        let bwd = (l - 1.0) * (lin + 4.0 * attn) + layer0 + mix + 2.0 * head;
        let fl = step_flops(&s, &Trainable::Prefix);
        assert!((fl.forward - fwd).abs() < 1.0, "{} vs {fwd}", fl.forward);
        assert!((fl.backward - bwd).abs() < 1.0, "{} vs {bwd}", fl.backward);
    }

    #[test]
    fn prefix_step_lists_each_product_once() {
        let s = shape(16);
        let ps = step_products(&s, &Trainable::Prefix);
        // Mixing, 6 projections + QKᵀ + PV per layer, the head.
        assert_eq!(ps.forward.len(), 1 + 6 * 8 + 1);
        // The vertices' gradient; layer 0: the input gradients of output, up, down and dK, dP,
        // dV; later layers: all six input gradients and the four attention ones; the head's
        // weight and input gradients.
        assert_eq!(ps.backward.len(), 1 + 6 + 5 * 10 + 2);
        let attn: Vec<&Product> = ps.forward.iter().filter(|p| p.batch > 1).collect();
        assert_eq!(attn.len(), 12);
        assert!(attn.iter().all(|p| p.batch == 16 * 12 && [p.m, p.k, p.n].contains(&32)), "{attn:?}");
        // The H → H input gradients: Q, K, V and output of layers 1-5, and layer 0's output.
        let square = Product::new(1, 16 * 128, 384, 384);
        assert_eq!(ps.backward.iter().filter(|p| **p == square).count(), 5 * 4 + 1);
        assert_eq!(ps.flops(), step_flops(&s, &Trainable::Prefix));
    }

    #[test]
    fn lora_costs_more_than_prefix_and_less_than_full() {
        let s = StepShape { prefix: 0, ..shape(0) };
        let lora =
            step_flops(&s, &Trainable::Lora { r: 8, targets: LoraTargets::of(&["query".into(), "value".into()]) });
        let full = step_flops(&s, &Trainable::Full);
        assert!(lora.forward > full.forward && lora.backward < full.backward, "{lora:?} {full:?}");
    }
}

//! Decoder-only language models (the Llama family and Gemma 3) as a frozen backbone: a
//! causal transformer with rotary positions, grouped-query attention and RMSNorm, loaded from
//! a GGUF file (the format llama.cpp, Ollama and LM Studio use), weights dequantised to fp32.
//!
//! The module tree mirrors the checkpoint: [`Decoder`] holds the token embedding, the
//! [`Block`]s (`blk.N.*`) and the final norm; each part loads its own tensors by their GGUF
//! names, in one place. What the numbers must match is Hugging Face transformers' `LlamaModel`
//! and `Gemma3TextModel` run on the same GGUF file (see `tests/decoder_parity.rs`).
//!
//! A deep prefix is a set of p keys and values per layer and per *key/value head*, placed
//! before the sequence: every real token attends to every prefix position (also in a
//! sliding-window layer), and the prefix keys get no rotary embedding (they are what a
//! key/value cache holds: keys already rotated, and already normalised on Gemma 3).

use std::path::Path;

use tch::{Device, Kind, Tensor};

use super::bert::{Batch, Forward, Positions};
use super::gguf::Gguf;
use super::linear::{Linear, Lora};
use super::packing::Packing;
use crate::error::{Error, Result};

/// The two decoder families this module runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Llama-style blocks (GGUF `llama`: Llama, Mistral, SmolLM; `qwen2`, with Q/K/V biases).
    Llama,
    /// Gemma 3 text models (GGUF `gemma3`): QK-norm, norms after attention and FFN, embeddings
    /// scaled by √hidden, GELU-tanh FFN, sliding-window layers with their own rotary base.
    Gemma3,
}

/// The hyper-parameters of a decoder, read from the GGUF metadata.
#[derive(Debug, Clone)]
pub struct DecoderConfig {
    /// The family.
    pub family: Family,
    /// Layers L.
    pub layers: i64,
    /// Hidden size H.
    pub hidden: i64,
    /// FFN inner size.
    pub ffn: i64,
    /// Query heads.
    pub heads: i64,
    /// Key/value heads (grouped-query attention: `heads` is a multiple of it).
    pub kv_heads: i64,
    /// Dimension of one head.
    pub head_dim: i64,
    /// Rotary base of the full-attention layers.
    pub rope_base: f64,
    /// Rotary base of the sliding-window layers (Gemma 3).
    pub rope_local_base: f64,
    /// Sliding window of the local layers (Gemma 3), in tokens.
    pub sliding_window: Option<i64>,
    /// Gemma 3: every `global_every`-th layer (1-based) attends to the whole sequence.
    pub global_every: i64,
    /// RMSNorm epsilon.
    pub eps: f64,
    /// Vocabulary size.
    pub vocab: i64,
    /// The context length the model was trained for.
    pub context: i64,
    /// The file stores Q and K rows in llama.cpp's rotary order (GGUF `llama` architecture).
    pub permuted_qk: bool,
}

impl DecoderConfig {
    /// Reads the configuration from the GGUF metadata (`{arch}.block_count`, ...).
    pub fn from_gguf(g: &Gguf) -> Result<Self> {
        let arch = g.architecture()?;
        let family = match arch.as_str() {
            "llama" | "qwen2" => Family::Llama,
            "gemma3" => Family::Gemma3,
            other => {
                return Err(Error::Input(format!(
                    "{}: general.architecture = \"{other}\" is not supported (expected llama, qwen2 or gemma3)",
                    g.path().display()
                )))
            }
        };
        let key = |k: &str| format!("{arch}.{k}");
        let u = |k: &str| -> Result<i64> { Ok(i64::from(g.u32(&key(k))?)) };
        let hidden = u("embedding_length")?;
        let heads = u("attention.head_count")?;
        let kv_heads = if g.has(&key("attention.head_count_kv")) { u("attention.head_count_kv")? } else { heads };
        let head_dim =
            if g.has(&key("attention.key_length")) { u("attention.key_length")? } else { hidden / heads.max(1) };
        let vocab = match g.tensor_shape("token_embd.weight")?.as_slice() {
            [vocab, _] => *vocab,
            other => {
                return Err(Error::Input(format!(
                    "{}: tensor token_embd.weight has shape {other:?}, expected (vocabulary, hidden)",
                    g.path().display()
                )))
            }
        };
        let cfg = Self {
            family,
            layers: u("block_count")?,
            hidden,
            ffn: u("feed_forward_length")?,
            heads,
            kv_heads,
            head_dim,
            rope_base: if g.has(&key("rope.freq_base")) { f64::from(g.f32(&key("rope.freq_base"))?) } else { 10_000.0 },
            rope_local_base: 10_000.0,
            sliding_window: match family {
                Family::Gemma3 => Some(u("attention.sliding_window")?),
                Family::Llama => None,
            },
            global_every: 6,
            eps: f64::from(g.f32(&key("attention.layer_norm_rms_epsilon"))?),
            vocab,
            context: u("context_length")?,
            permuted_qk: arch == "llama",
        };
        cfg.validate().map_err(|e| Error::Input(format!("{}: {e}", g.path().display())))?;
        Ok(cfg)
    }

    /// Sane sizes: everything positive, heads a multiple of the key/value heads, an even head
    /// dimension (rotary pairs).
    pub fn validate(&self) -> std::result::Result<(), String> {
        let sizes = [
            ("block_count", self.layers),
            ("embedding_length", self.hidden),
            ("feed_forward_length", self.ffn),
            ("attention.head_count", self.heads),
            ("attention.head_count_kv", self.kv_heads),
            ("head dimension", self.head_dim),
            ("vocabulary", self.vocab),
        ];
        for (k, v) in sizes {
            if !(1..=1 << 20).contains(&v) {
                return Err(format!("{k} = {v}: expected a size in [1, 1048576]"));
            }
        }
        if self.heads % self.kv_heads != 0 {
            return Err(format!(
                "attention.head_count = {} is not a multiple of attention.head_count_kv = {}",
                self.heads, self.kv_heads
            ));
        }
        if self.head_dim % 2 != 0 {
            return Err(format!("head dimension {} is odd (rotary embeddings rotate pairs)", self.head_dim));
        }
        if !(self.eps > 0.0 && self.eps < 1.0 && self.rope_base > 1.0 && self.rope_base.is_finite()) {
            return Err(format!("rms epsilon {} or rope base {} out of range", self.eps, self.rope_base));
        }
        Ok(())
    }

    /// Whether layer `i` (from 0) is a sliding-window layer.
    pub fn is_local(&self, i: i64) -> bool {
        self.sliding_window.is_some() && (i + 1) % self.global_every != 0
    }
}

/// The linear layer `name` (`blk.N.attn_q.weight`) with its bias when the file has one (Llama
/// and Gemma have none; Qwen2 has them on the query, key and value projections).
fn linear(g: &mut dyn Weights, name: &str, out_dim: i64, in_dim: i64, device: Device) -> Result<Linear> {
    let bias_name = name.replace(".weight", ".bias");
    let bias = if g.has(&bias_name) { Some(take(g, &bias_name, &[out_dim], device)?) } else { None };
    Ok(Linear::new(take(g, name, &[out_dim, in_dim], device)?, bias))
}

/// RMSNorm: `x / √(mean(x²) + eps) · w` (Gemma's `1 + w` is stored as such in GGUF files).
#[derive(Debug)]
pub struct RmsNorm {
    /// Scale.
    pub weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    fn load(g: &mut dyn Weights, name: &str, dim: i64, eps: f64, device: Device) -> Result<Self> {
        Ok(Self { weight: take(g, name, &[dim], device)?, eps })
    }

    /// Normalises over the last dimension.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let var = x.pow_tensor_scalar(2).mean_dim(-1, true, Kind::Float);
        x * (var + self.eps).rsqrt() * &self.weight
    }
}

/// Self-attention with grouped-query heads, rotary positions and an optional prefix.
#[derive(Debug)]
pub struct Attention {
    /// `attn_q`.
    pub q: Linear,
    /// `attn_k`.
    pub k: Linear,
    /// `attn_v`.
    pub v: Linear,
    /// `attn_output`.
    pub o: Linear,
    /// Gemma 3: `attn_q_norm` over each head.
    pub q_norm: Option<RmsNorm>,
    /// Gemma 3: `attn_k_norm` over each head.
    pub k_norm: Option<RmsNorm>,
}

/// One transformer block (`blk.N`).
#[derive(Debug)]
pub struct Block {
    /// `attn_norm` (before attention).
    pub attn_norm: RmsNorm,
    /// The attention.
    pub attn: Attention,
    /// Gemma 3: `post_attention_norm`.
    pub post_attn_norm: Option<RmsNorm>,
    /// `ffn_norm` (before the FFN).
    pub ffn_norm: RmsNorm,
    /// `ffn_gate`.
    pub gate: Linear,
    /// `ffn_up`.
    pub up: Linear,
    /// `ffn_down`.
    pub down: Linear,
    /// Gemma 3: `post_ffw_norm`.
    pub post_ffn_norm: Option<RmsNorm>,
}

/// Per-forward constants shared by the layers.
struct Ctx<'a> {
    cfg: &'a DecoderConfig,
    /// Batch size and padded length.
    b: i64,
    t: i64,
    /// The real-token rows, when the batch has padding: the blocks then work on `(N, H)` rows
    /// and only attention sees the padded layout (see [`Packing`]).
    pack: Option<Packing>,
    /// `(cos, sin)` for the full-attention rotary base, shaped to the rows of [`Ctx::heads`]:
    /// each `(1, T, 1, D)`, or `(N, 1, D)` (one row per real token) with `pack`.
    rope_global: (Tensor, Tensor),
    /// The same for the local base (Gemma 3), else a copy of the global one.
    rope_local: (Tensor, Tensor),
    /// Additive masks `(B, 1, T, p+T)`.
    mask_global: Tensor,
    mask_local: Tensor,
}

impl Ctx<'_> {
    /// The rows `y` `(N or B·T, n·D)` of n heads as `(B, n, T, D)`, each head normalised by
    /// `norm` and rotated by `rope` first when given (zeros at padded positions with `pack`).
    fn heads(&self, y: Tensor, n: i64, norm: Option<&RmsNorm>, rope: Option<&(Tensor, Tensor)>) -> Tensor {
        let d = self.cfg.head_dim;
        // Token-wise work on the rows: `(N, n, D)` with packing, else `(B, T, n, D)`.
        let mut y = match &self.pack {
            Some(_) => y.view([-1, n, d]),
            None => y.view([self.b, self.t, n, d]),
        };
        if let Some(nrm) = norm {
            y = nrm.forward(&y);
        }
        if let Some((cos, sin)) = rope {
            y = rotate(&y, cos, sin);
        }
        let y = match &self.pack {
            Some(pk) => pk.unpack(&y.reshape([-1, n * d])).view([self.b, self.t, n, d]),
            None => y,
        };
        y.transpose(1, 2)
    }

    /// `(B, n, T, D)` → the rows `(N or B·T, n·D)` (the inverse of [`Ctx::heads`]).
    fn rows(&self, y: &Tensor) -> Tensor {
        let y = y.transpose(1, 2).reshape([self.b, self.t, -1]);
        match &self.pack {
            Some(pk) => pk.pack(&y),
            None => y,
        }
    }
}

impl Block {
    fn load(g: &mut dyn Weights, c: &DecoderConfig, i: i64, device: Device) -> Result<Self> {
        let n = |s: &str| format!("blk.{i}.{s}.weight");
        let (h, hd) = (c.hidden, c.head_dim);
        let gemma = c.family == Family::Gemma3;
        let mut q = linear(g, &n("attn_q"), c.heads * hd, h, device)?;
        let mut k = linear(g, &n("attn_k"), c.kv_heads * hd, h, device)?;
        if c.permuted_qk {
            // llama.cpp's converter permutes Q and K rows of llama-architecture files for its
            // rotary layout; undo it so that Hugging Face's rotate-half convention applies.
            q.weight = unpermute(&q.weight, c.heads);
            k.weight = unpermute(&k.weight, c.kv_heads);
        }
        let opt_norm = |g: &mut dyn Weights, s: &str, dim: i64| -> Result<Option<RmsNorm>> {
            if gemma {
                Ok(Some(RmsNorm::load(g, &n(s), dim, c.eps, device)?))
            } else {
                Ok(None)
            }
        };
        Ok(Self {
            attn_norm: RmsNorm::load(g, &n("attn_norm"), h, c.eps, device)?,
            attn: Attention {
                q,
                k,
                v: linear(g, &n("attn_v"), c.kv_heads * hd, h, device)?,
                o: linear(g, &n("attn_output"), h, c.heads * hd, device)?,
                q_norm: opt_norm(g, "attn_q_norm", hd)?,
                k_norm: opt_norm(g, "attn_k_norm", hd)?,
            },
            post_attn_norm: opt_norm(g, "post_attention_norm", h)?,
            ffn_norm: RmsNorm::load(g, &n("ffn_norm"), h, c.eps, device)?,
            gate: linear(g, &n("ffn_gate"), c.ffn, h, device)?,
            up: linear(g, &n("ffn_up"), c.ffn, h, device)?,
            down: linear(g, &n("ffn_down"), h, c.ffn, device)?,
            post_ffn_norm: opt_norm(g, "post_ffw_norm", h)?,
        })
    }

    /// The keys `(B, kv, T, D)` (normalised, rotated) and the value rows of `h`, the
    /// normalised input of the attention.
    fn key_value(&self, h: &Tensor, ctx: &Ctx, local: bool) -> (Tensor, Tensor) {
        let rope = if local { &ctx.rope_local } else { &ctx.rope_global };
        let k = ctx.heads(self.attn.k.forward(h), ctx.cfg.kv_heads, self.attn.k_norm.as_ref(), Some(rope));
        (k, self.attn.v.forward(h))
    }

    /// `x`: the rows `(N, H)` with `ctx.pack`, else `(B, T, H)`; `prefix`: keys and values
    /// `(B, p, kv·D)` each. `cache`: receives this layer's keys and values of `x` as a cache
    /// holds them (normalised, rotated) `(2, B, T, kv·D)`; `ctx` without packing.
    fn forward(
        &self,
        x: &Tensor,
        ctx: &Ctx,
        local: bool,
        prefix: Option<(&Tensor, &Tensor)>,
        cache: Option<&mut Vec<Tensor>>,
    ) -> Tensor {
        let c = ctx.cfg;
        let h = self.attn_norm.forward(x);
        let rope = if local { &ctx.rope_local } else { &ctx.rope_global };
        let q = ctx.heads(self.attn.q.forward(&h), c.heads, self.attn.q_norm.as_ref(), Some(rope));
        let (mut k, v_rows) = self.key_value(&h, ctx, local);
        if let Some(cache) = cache {
            debug_assert!(ctx.pack.is_none(), "a cache is read in the padded layout");
            cache.push(Tensor::stack(&[ctx.rows(&k), v_rows.shallow_clone()], 0));
        }
        let mut v = ctx.heads(v_rows, c.kv_heads, None, None);
        if let Some((pk, pv)) = prefix {
            let (b, p) = (ctx.b, pk.size()[1]);
            let split = |y: &Tensor| y.view([b, p, c.kv_heads, c.head_dim]).transpose(1, 2);
            k = Tensor::cat(&[split(pk), k], 2);
            v = Tensor::cat(&[split(pv), v], 2);
        }
        let mask = if local { &ctx.mask_local } else { &ctx.mask_global };
        let scale = 1.0 / (c.head_dim as f64).sqrt();
        let a = Tensor::scaled_dot_product_attention(&q, &k, &v, Some(mask), 0.0, false, Some(scale), true);
        let a = self.attn.o.forward(&ctx.rows(&a));
        let a = match &self.post_attn_norm {
            Some(nrm) => nrm.forward(&a),
            None => a,
        };
        let x = x + a;
        let h = self.ffn_norm.forward(&x);
        let gate = self.gate.forward(&h);
        let gate = match c.family {
            Family::Llama => gate.silu(),
            Family::Gemma3 => gate.gelu("tanh"),
        };
        let f = self.down.forward(&(gate * self.up.forward(&h)));
        let f = match &self.post_ffn_norm {
            Some(nrm) => nrm.forward(&f),
            None => f,
        };
        x + f
    }
}

/// The frozen decoder.
#[derive(Debug)]
pub struct Decoder {
    /// Its configuration.
    pub config: DecoderConfig,
    /// `token_embd` `(vocab, H)`.
    pub embed: Tensor,
    /// The blocks.
    pub blocks: Vec<Block>,
    /// `output_norm`.
    pub norm: RmsNorm,
    /// `output` `(vocab, H)`; `None` when tied to the embedding.
    pub lm_head: Option<Tensor>,
    device: Device,
}

impl Decoder {
    /// Loads a GGUF file.
    pub fn load(path: &Path, device: Device) -> Result<Self> {
        let mut g = Gguf::open(path)?;
        Self::from_gguf(&mut g, device)
    }

    /// Builds the decoder from an opened GGUF file.
    pub fn from_gguf(g: &mut Gguf, device: Device) -> Result<Self> {
        let config = DecoderConfig::from_gguf(g)?;
        Self::from_weights(config, g, device)
    }

    /// Builds the decoder of `config` from weights under their GGUF names.
    pub fn from_weights(config: DecoderConfig, g: &mut dyn Weights, device: Device) -> Result<Self> {
        let c = &config;
        let embed = take(g, "token_embd.weight", &[c.vocab, c.hidden], device)?;
        let blocks = (0..c.layers).map(|i| Block::load(g, c, i, device)).collect::<Result<Vec<_>>>()?;
        let norm = RmsNorm::load(g, "output_norm.weight", c.hidden, c.eps, device)?;
        let lm_head =
            if g.has("output.weight") { Some(take(g, "output.weight", &[c.vocab, c.hidden], device)?) } else { None };
        Ok(Self { config, embed, blocks, norm, lm_head, device })
    }

    /// The device the weights live on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// Every weight tensor under its GGUF name, mutable (to make some trainable).
    fn named_tensors_mut(&mut self) -> Vec<(String, &mut Tensor)> {
        let mut out: Vec<(String, &mut Tensor)> = vec![("token_embd.weight".into(), &mut self.embed)];
        for (i, b) in self.blocks.iter_mut().enumerate() {
            let n = |s: &str, leaf: &str| format!("blk.{i}.{s}.{leaf}");
            let lins = [
                ("attn_q", &mut b.attn.q),
                ("attn_k", &mut b.attn.k),
                ("attn_v", &mut b.attn.v),
                ("attn_output", &mut b.attn.o),
                ("ffn_gate", &mut b.gate),
                ("ffn_up", &mut b.up),
                ("ffn_down", &mut b.down),
            ];
            for (s, lin) in lins {
                out.push((n(s, "weight"), &mut lin.weight));
                if let Some(bias) = &mut lin.bias {
                    out.push((n(s, "bias"), bias));
                }
            }
            let norms = [
                ("attn_norm", Some(&mut b.attn_norm)),
                ("attn_q_norm", b.attn.q_norm.as_mut()),
                ("attn_k_norm", b.attn.k_norm.as_mut()),
                ("post_attention_norm", b.post_attn_norm.as_mut()),
                ("ffn_norm", Some(&mut b.ffn_norm)),
                ("post_ffw_norm", b.post_ffn_norm.as_mut()),
            ];
            for (s, norm) in norms {
                if let Some(norm) = norm {
                    out.push((n(s, "weight"), &mut norm.weight));
                }
            }
        }
        out.push(("output_norm.weight".into(), &mut self.norm.weight));
        if let Some(h) = &mut self.lm_head {
            out.push(("output.weight".into(), h));
        }
        out
    }

    /// Makes the weights whose GGUF name passes `select` trainable, as variables of `path`
    /// under that name (full fine-tuning: all; BitFit: the biases, which only Qwen2 has).
    /// Returns how many tensors were made trainable.
    pub fn make_trainable(&mut self, path: &tch::nn::Path, select: &dyn Fn(&str) -> bool) -> usize {
        let mut count = 0;
        for (name, t) in self.named_tensors_mut() {
            if select(&name) {
                let (dir, leaf) = name.rsplit_once('.').expect("GGUF names have a leaf");
                let p = dir.split('.').fold(path.sub("decoder"), |p, part| p.sub(part));
                *t = p.var_copy(leaf, t);
                count += 1;
            }
        }
        count
    }

    /// Adds LoRA updates of rank `r` (scale `alpha / r`) to the attention projections named in
    /// `targets` (`query`, `key`, `value`, `output`) of every block, as variables of `path`.
    pub fn add_lora(&mut self, path: &tch::nn::Path, r: i64, alpha: f64, targets: &[String]) -> Result<()> {
        for t in targets {
            if !["query", "key", "value", "output"].contains(&t.as_str()) {
                return Err(Error::Input(format!(
                    "lora target \"{t}\" is not known (expected query, key, value or output)"
                )));
            }
        }
        for (i, b) in self.blocks.iter_mut().enumerate() {
            for t in targets {
                let (lin, name) = match t.as_str() {
                    "query" => (&mut b.attn.q, "attn_q"),
                    "key" => (&mut b.attn.k, "attn_k"),
                    "value" => (&mut b.attn.v, "attn_v"),
                    _ => (&mut b.attn.o, "attn_output"),
                };
                let (out_dim, in_dim) = lin.weight.size2().expect("a linear weight is (out, in)");
                let p = path.sub("decoder").sub("blk").sub(i.to_string()).sub(name).sub("lora");
                let bound = 1.0 / (in_dim as f64).sqrt();
                lin.lora = Some(Lora {
                    a: p.var("A", &[r, in_dim], tch::nn::Init::Uniform { lo: -bound, up: bound }),
                    b: p.zeros("B", &[out_dim, r]),
                    scale: alpha / r as f64,
                });
            }
        }
        Ok(())
    }

    /// Runs every linear layer's product of the blocks in `kind` (bf16), or in fp32 again
    /// (`None`). Call it after choosing what is trained: frozen weights are rounded once, here.
    /// The label words' output rows stay in fp32.
    pub fn set_product_kind(&mut self, kind: Option<Kind>) {
        for b in &mut self.blocks {
            for lin in [&mut b.attn.q, &mut b.attn.k, &mut b.attn.v, &mut b.attn.o, &mut b.gate, &mut b.up, &mut b.down]
            {
                lin.set_product_kind(kind);
            }
        }
    }

    /// The output projection `(vocab, H)` (the embedding when tied).
    pub fn output_weight(&self) -> &Tensor {
        self.lm_head.as_ref().unwrap_or(&self.embed)
    }

    /// Width of one layer's prefix keys (and values): key/value heads × head dimension.
    pub fn kv_width(&self) -> i64 {
        self.config.kv_heads * self.config.head_dim
    }

    /// Token embeddings of `ids` (Gemma 3 scales them by √H).
    pub fn embed_ids(&self, ids: &Tensor) -> Tensor {
        let x = Tensor::embedding(&self.embed, ids, -1, false, false);
        match self.config.family {
            Family::Gemma3 => x * (self.config.hidden as f64).sqrt(),
            Family::Llama => x,
        }
    }

    /// The final hidden states `(B, T, H)` (after the final norm) of a right-padded batch,
    /// with an optional prefix `(L, 2, B or 1, p, kv·D)`. Real tokens take positions 0..T-1,
    /// or p..p+T-1 with [`Positions::Shifted`].
    pub fn forward(&self, batch: &Batch, prefix: Option<&Tensor>, opts: Forward) -> Tensor {
        let x = self.embed_ids(&batch.input_ids);
        self.forward_embedded(&x, &batch.attention_mask, prefix, opts)
    }

    /// [`Decoder::forward`] on embedded inputs `x: (B, T, H)` (prompt tuning puts trainable
    /// vectors in front of the token embeddings).
    pub fn forward_embedded(
        &self,
        x: &Tensor,
        attention_mask: &Tensor,
        prefix: Option<&Tensor>,
        opts: Forward,
    ) -> Tensor {
        let (b, t, _) = x.size3().expect("embeddings are (B, T, H)");
        let p = prefix.map_or(0, |pr| pr.size()[3]);
        if let Some(pr) = prefix {
            let s = pr.size();
            assert!(
                s.len() == 5
                    && s[0] == self.config.layers
                    && s[1] == 2
                    && (s[2] == b || s[2] == 1)
                    && s[4] == self.kv_width(),
                "prefix must be (L={}, 2, B={b} or 1, p, {}), got {s:?}",
                self.config.layers,
                self.kv_width()
            );
        }
        let start = if opts.positions == Positions::Shifted { p } else { 0 };
        let ctx = self.context(attention_mask, t, p, start, true);
        let layer_prefixes: Vec<Option<(Tensor, Tensor)>> = match prefix {
            Some(pr) if p > 0 => pr
                .unbind(0)
                .into_iter()
                .map(|pl| {
                    let [pk, pv]: [Tensor; 2] = pl.unbind(0).try_into().expect("keys and values");
                    Some((pk.expand([b, p, -1], false), pv.expand([b, p, -1], false)))
                })
                .collect(),
            _ => self.blocks.iter().map(|_| None).collect(),
        };
        let mut h = match &ctx.pack {
            Some(pk) => pk.pack(x),
            None => x.shallow_clone(),
        };
        for (i, (blk, pl)) in self.blocks.iter().zip(layer_prefixes).enumerate() {
            h = blk.forward(&h, &ctx, self.config.is_local(i as i64), pl.as_ref().map(|(k, v)| (k, v)), None);
        }
        let h = self.norm.forward(&h);
        match &ctx.pack {
            Some(pk) => pk.unpack(&h),
            None => h,
        }
    }

    /// Per-layer keys and values of `batch` `(L, 2, B, T, kv·D)`, as a cache holds them: run
    /// another input with this prefix and [`Positions::Shifted`], and it is the continuation of
    /// `batch` (in-context demonstrations, computed once), up to the padding of `batch`.
    pub fn keys_values(&self, batch: &Batch) -> Tensor {
        let (_, t) = batch.input_ids.size2().expect("(B, T)");
        let ctx = self.context(&batch.attention_mask, t, 0, 0, false);
        let mut h = self.embed_ids(&batch.input_ids);
        let mut out = Vec::with_capacity(self.blocks.len());
        let (last, rest) = self.blocks.split_last().expect("a decoder has blocks");
        for (i, blk) in rest.iter().enumerate() {
            h = blk.forward(&h, &ctx, self.config.is_local(i as i64), None, Some(&mut out));
        }
        // The last layer's keys and values need only its attention's input.
        let local = self.config.is_local(rest.len() as i64);
        let (k, v) = last.key_value(&last.attn_norm.forward(&h), &ctx, local);
        out.push(Tensor::stack(&[ctx.rows(&k), v], 0));
        Tensor::stack(&out, 0)
    }

    /// Rotary tables and masks for T tokens at positions `start..start+T` after p prefix
    /// positions; the blocks work on the real-token rows only when `pack` and the batch has
    /// padding.
    fn context(&self, attention_mask: &Tensor, t: i64, p: i64, start: i64, pack: bool) -> Ctx<'_> {
        let c = &self.config;
        let pack = if pack { Packing::new(attention_mask) } else { None };
        let pos = match &pack {
            Some(pk) => (pk.columns() + start).to_kind(Kind::Float),
            None => Tensor::arange_start(start, start + t, (Kind::Float, self.device)),
        };
        let n = pos.size()[0];
        let rope = |base: f64| {
            // 1 / base^(2i/D), as transformers computes it in float32.
            let exponent = Tensor::arange_start_step(0, c.head_dim, 2, (Kind::Int64, self.device)).to_kind(Kind::Float)
                / c.head_dim as f64;
            let inv = Tensor::pow_scalar(base, &exponent).reciprocal();
            let freqs = pos.unsqueeze(1) * inv.unsqueeze(0);
            let emb = Tensor::cat(&[&freqs, &freqs], -1);
            let shape: &[i64] = if pack.is_some() { &[n, 1, c.head_dim] } else { &[1, t, 1, c.head_dim] };
            (emb.cos().view(shape), emb.sin().view(shape))
        };
        let rope_global = rope(c.rope_base);
        let rope_local = if c.sliding_window.is_some() { rope(c.rope_local_base) } else { rope(c.rope_base) };
        let b = attention_mask.size()[0];
        let i = Tensor::arange(t, (Kind::Int64, self.device));
        let causal = i.unsqueeze(1).ge_tensor(&i.unsqueeze(0)); // (T, T): key j <= query i
        let keys = attention_mask.ne(0).view([b, 1, 1, t]);
        let allowed = causal.view([1, 1, t, t]).logical_and(&keys);
        let with_prefix = |a: &Tensor| {
            let a = if p > 0 {
                Tensor::cat(&[Tensor::ones([b, 1, t, p], (Kind::Bool, self.device)), a.expand([b, 1, t, t], false)], 3)
            } else {
                a.expand([b, 1, t, t], false)
            };
            super::bert::additive(&a)
        };
        let mask_global = with_prefix(&allowed);
        let mask_local = match c.sliding_window {
            Some(w) => {
                let near = (i.unsqueeze(1) - i.unsqueeze(0)).lt(w).view([1, 1, t, t]);
                with_prefix(&allowed.logical_and(&near))
            }
            None => mask_global.shallow_clone(),
        };
        Ctx { cfg: c, b, t, pack, rope_global, rope_local, mask_global, mask_local }
    }
}

/// The GGUF file a `--model` path names: the path itself when it is a file that ends in `.gguf`
/// or starts with GGUF's magic (an Ollama blob, `sha256-…`, has no extension), or the one
/// `.gguf` file of a folder without `config.json`; `None` for anything else (an encoder
/// folder). Any other file is refused: no model is a single file but a GGUF one.
pub fn find_gguf(path: &Path) -> Result<Option<std::path::PathBuf>> {
    let is_gguf = |p: &Path| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf"));
    if path.is_file() {
        if is_gguf(path) || starts_with_gguf_magic(path) {
            return Ok(Some(path.to_path_buf()));
        }
        return Err(Error::Input(format!(
            "{}: a file that is not GGUF (it does not start with \"GGUF\"); --model takes a GGUF file \
             (any name, e.g. an Ollama blob), a model folder with config.json, or the name of an installed model",
            path.display()
        )));
    }
    if !path.is_dir() || path.join("config.json").is_file() {
        return Ok(None);
    }
    let entries = std::fs::read_dir(path).map_err(|e| Error::io(path, e))?;
    let mut found: Vec<std::path::PathBuf> =
        entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file() && is_gguf(p)).collect();
    found.sort();
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.pop()),
        _ => Err(Error::Input(format!(
            "{}: the folder holds {} .gguf files; pass the one to use (--model {})",
            path.display(),
            found.len(),
            found[0].display()
        ))),
    }
}

/// Whether the file at `path` starts with the 4 bytes of GGUF's magic (false if unreadable).
fn starts_with_gguf_magic(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    std::fs::File::open(path).and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic)).is_ok()
        && &magic == b"GGUF"
}

/// Hugging Face's `rotate_half` rotary embedding of `x: (…, D)`.
fn rotate(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Tensor {
    let d = *x.size().last().expect("rotary input has a head dimension");
    let x1 = x.narrow(-1, 0, d / 2);
    let x2 = x.narrow(-1, d / 2, d / 2);
    let rotated = Tensor::cat(&[x2.neg(), x1], -1);
    x * cos + rotated * sin
}

/// Undoes llama.cpp's Q/K row permutation (`transformers`' `reverse_permute_weights`).
fn unpermute(w: &Tensor, heads: i64) -> Tensor {
    let s = w.size();
    let dim = s[0] / heads / 2;
    w.reshape([heads, dim, 2, s[1]]).transpose(1, 2).reshape([s[0], s[1]]).contiguous()
}

/// Where a decoder's weights come from, by their GGUF names (`blk.N.attn_q.weight`), in the
/// layout transformers uses (a loader of another format maps the names and converts).
pub trait Weights {
    /// The file, for messages.
    fn path(&self) -> &Path;
    /// Whether a tensor of that name exists.
    fn has(&self, name: &str) -> bool;
    /// The tensor, fp32 on the CPU.
    fn tensor(&mut self, name: &str) -> Result<Tensor>;
}

impl Weights for Gguf {
    fn path(&self) -> &Path {
        Gguf::path(self)
    }
    fn has(&self, name: &str) -> bool {
        self.tensor_type(name).is_ok()
    }
    fn tensor(&mut self, name: &str) -> Result<Tensor> {
        Gguf::tensor(self, name)
    }
}

/// A tensor of the file, checked against the shape the config implies.
fn take(g: &mut dyn Weights, name: &str, shape: &[i64], device: Device) -> Result<Tensor> {
    let t = g.tensor(name)?;
    if t.size() != shape {
        return Err(Error::Input(format!(
            "{}: tensor {name} has shape {:?}, the metadata implies {shape:?}",
            g.path().display(),
            t.size()
        )));
    }
    Ok(t.to(device))
}

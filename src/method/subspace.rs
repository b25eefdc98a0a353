//! The simplex of deep prefixes and heads (Wortsman et al. 2021 applied to prefix tuning):
//! n independently initialised vertices, each a full set of per-layer prefix keys/values and
//! a classification head; a point α of the simplex per example (and per layer) mixes them.
//!
//! With one vertex this is plain deep prefix tuning: α is exactly 1, no random draw is made
//! and the regulariser is off, so `--method prefix` and `--vertices 1` give the same numbers.
//!
//! The [`Subspace`] is also the container of every other method's own vectors (a soft prompt,
//! a linear head, the probe's variables): the training loop, the evaluation and the export
//! read all methods through it.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use tch::nn::{self, Init as NnInit};
use tch::{Device, Kind, Tensor};

use crate::config::{Granularity, Init, RunConfig};
use crate::model::{Backbone, Batch, Forward, Pooling, Positions};

/// The paper's method, `subspace`: a simplex of `vertices` deep prefixes (and, on an encoder,
/// heads), trained with one α drawn per example and the cos² regulariser, evaluated at the
/// centroid.
pub struct PrefixSubspace;

impl super::Method for PrefixSubspace {
    fn name(&self) -> &'static str {
        "subspace"
    }
    fn default_lr(&self) -> f64 {
        5e-3
    }
    fn uses_prefix(&self) -> bool {
        true
    }
    fn vertices(&self, configured: usize) -> usize {
        configured
    }
}

/// Mixing weights for a batch: one α per example and layer, and one for the head.
#[derive(Debug)]
pub struct Alphas {
    /// `(B or 1, L, n)`: rows on the simplex.
    pub layers: Tensor,
    /// `(B or 1, n)`.
    pub head: Tensor,
}

/// Where on the simplex to evaluate.
#[derive(Debug, Clone, PartialEq)]
pub enum At {
    /// α = (1/n, …, 1/n) everywhere (the default for inference).
    Centroid,
    /// α = e_i everywhere.
    Vertex(usize),
    /// A given α (length n, non-negative, normalised to sum 1) everywhere.
    Alpha(Vec<f64>),
    /// α ~ Dirichlet(1), drawn per example (and per layer, as in training).
    Sample,
}

impl At {
    /// Parses an `--at` point: `centroid`, `vertex:I`, `ensemble:M` (1 ≤ M ≤
    /// [`MAX_SAMPLES`](crate::config::MAX_SAMPLES)) or `alpha:A,B,...` (finite, non-negative,
    /// not all zero). Returns the point and the models sampled per example (M, else 1).
    pub fn parse(s: &str) -> crate::Result<(At, usize)> {
        use crate::config::MAX_SAMPLES;
        let err = |why: String| crate::Error::Input(format!("--at {s}: {why}"));
        let forms = "expected centroid, vertex:I, ensemble:M or alpha:A,B,...";
        Ok(match s.split_once(':') {
            None if s == "centroid" => (At::Centroid, 1),
            Some(("vertex", i)) => (
                At::Vertex(i.trim().parse().map_err(|_| err(format!("vertex:I takes an index 0, 1, ... ({forms})")))?),
                1,
            ),
            Some(("ensemble", m)) => {
                let m: u64 =
                    m.trim().parse().map_err(|_| err(format!("ensemble:M takes a count of models ({forms})")))?;
                if !(1..=MAX_SAMPLES).contains(&m) {
                    return Err(err(format!("ensemble:M takes M in [1, {MAX_SAMPLES}]")));
                }
                (At::Sample, m as usize)
            }
            Some(("alpha", a)) => {
                let v = a
                    .split(',')
                    .map(|x| x.trim().parse::<f64>())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| err(format!("alpha:A,B,... takes one number per vertex ({forms})")))?;
                if v.iter().any(|x| !x.is_finite() || *x < 0.0) || v.iter().sum::<f64>() <= 0.0 {
                    return Err(err("alpha weights must be finite, non-negative and not all zero".into()));
                }
                (At::Alpha(v), 1)
            }
            _ => return Err(err(forms.into())),
        })
    }

    /// Checks the point against a run of `n` vertices (`arg`: the `--at` text, for the message).
    pub fn check(&self, n: usize, arg: &str) -> crate::Result<()> {
        let err = |m: String| Err(crate::Error::Input(m));
        match self {
            At::Vertex(i) if *i >= n => err(format!("--at {arg}: this run has {n} vertices (0..{})", n - 1)),
            At::Alpha(a) if a.len() != n => err(format!("--at {arg}: give {n} weights, one per vertex")),
            _ => Ok(()),
        }
    }

    /// The points of the edge from vertex 0 to vertex 1 of a simplex of `n` vertices, every
    /// `step` (rounded to a whole number of steps): `(t, α = (1 − t) e₀ + t e₁)` for t from 0 to 1.
    pub fn edge(n: usize, step: f64) -> Vec<(f64, At)> {
        let k = (1.0 / step).round().max(1.0) as usize;
        (0..=k)
            .map(|i| {
                let t = i as f64 / k as f64;
                let mut a = vec![0.0; n];
                a[0] = 1.0 - t;
                a[1] = t;
                (t, At::Alpha(a))
            })
            .collect()
    }

    /// Parses `sweep:STEP` (the text after `sweep:`): a step of α along the edge from vertex 0
    /// to vertex 1, in [0.001, 1] (at most 1,001 points).
    pub fn parse_sweep(step: &str) -> crate::Result<f64> {
        let s: f64 = step.trim().parse().map_err(|_| {
            crate::Error::Input(format!("--at sweep:{step}: expected sweep:STEP with STEP a number, e.g. sweep:0.05"))
        })?;
        if !(0.001..=1.0).contains(&s) {
            return Err(crate::Error::Input(format!("--at sweep:{step}: STEP must be in [0.001, 1]")));
        }
        Ok(s)
    }
}

/// The trainable parameters of the method.
#[derive(Debug)]
pub struct Subspace {
    /// Number of vertices n.
    pub n: usize,
    /// Number of head outputs C: classes, 1 for a regression head, 2 for a regression task's
    /// two label words (its poles).
    pub classes: i64,
    layers: i64,
    hidden: i64,
    prefix_len: i64,
    /// `(n, L, 2, p, H)` vertex prefixes (absent with the MLP reparameterisation).
    prefix: Option<Tensor>,
    reparam: Option<Reparam>,
    /// Prompt tuning: `(q, H)` vectors in front of the word embeddings.
    prompt: Option<Tensor>,
    /// `(n_heads, C, H)`, n_heads = n with a head simplex, else 1. With label words: the
    /// frozen output rows of the words `(1, C, H)`.
    head_w: Tensor,
    /// `(n_heads, C)` (zeros with label words).
    head_b: Tensor,
    /// The head is a decoder's label words (frozen), not trained weights.
    words: bool,
    /// A regression task through two label words (LM-BFF): the score is
    /// `lo + (hi − lo) · P(word 1)`, with `(lo, hi)` these poles.
    poles: Option<(f64, f64)>,
    /// Label words of several tokens: every token id of each class's word. The class score is
    /// then the summed log-probability of the word's tokens ([`Subspace::forward`]).
    word_tokens: Option<Vec<Vec<i64>>>,
    /// In-context learning: the demonstrations' keys and values `(L, 2, 1, D, W)`, a fixed
    /// prefix after which the inputs continue (positions D..).
    context: Option<Tensor>,
    /// In-context learning: the demonstrations per class, a (non-trained) checkpoint variable.
    icl_shots: Option<Tensor>,
    /// The probe: checkpoint variables (not trained) `probe/normalize` (1: the pooled features
    /// are L2-normalised before the head) and `probe/c` (the C chosen on dev).
    probe: Option<(Tensor, Tensor)>,
    granularity: Granularity,
    prefix_dropout: f64,
    head_dropout: f64,
    beta: f64,
    backbone_dropout: bool,
    positions: Positions,
    pooling: Pooling,
}

/// P-tuning v2's MLP reparameterisation, one per vertex, mixed in prefix space.
#[derive(Debug)]
struct Reparam {
    emb: Tensor, // (n, p, H)
    w1: Tensor,  // (n, r, H)
    b1: Tensor,  // (n, r)
    w2: Tensor,  // (n, 2LH, r)
    b2: Tensor,  // (n, 2LH)
}

impl Subspace {
    /// Creates the vertices in `vs` (independent initialisation of every vertex). Methods
    /// without a deep prefix (LoRA, BitFit, head, prompt, full) get a length-0 prefix and one
    /// vertex; the heads live in optimizer group 1 (their own learning rate), everything else
    /// in group 0. `words`: the output rows `(C, H)` of a decoder's label words, which then
    /// are the (frozen) head: the class score is the language model's logit of its word.
    pub fn new(
        vs: &nn::Path,
        cfg: &RunConfig,
        backbone: &dyn Backbone,
        classes: i64,
        pooling: Pooling,
        words: Option<Tensor>,
        text_ids: Option<&Tensor>,
    ) -> Self {
        let n = cfg.vertices as i64;
        let p = if cfg.method.uses_prefix() { cfg.prefix_len as i64 } else { 0 };
        let (l, h, w) = (backbone.num_layers(), backbone.hidden_size(), backbone.prefix_width());
        let (prefix, reparam) = if cfg.reparam > 0 {
            let r = cfg.reparam as i64;
            let emb_init = init_vertices(cfg, backbone, n, p, text_ids).select(1, 0).select(1, 0); // (n, p, W): layer-0 keys
            let emb = (vs / "reparam").var_copy("embedding", &emb_init);
            let bound1 = 1.0 / (w as f64).sqrt();
            let bound2 = 1.0 / (r as f64).sqrt();
            let reparam = Reparam {
                emb,
                w1: (vs / "reparam").var("w1", &[n, r, w], NnInit::Uniform { lo: -bound1, up: bound1 }),
                b1: (vs / "reparam").var("b1", &[n, r], NnInit::Uniform { lo: -bound1, up: bound1 }),
                w2: (vs / "reparam").var("w2", &[n, 2 * l * w, r], NnInit::Uniform { lo: -bound2, up: bound2 }),
                b2: (vs / "reparam").var("b2", &[n, 2 * l * w], NnInit::Uniform { lo: -bound2, up: bound2 }),
            };
            (None, Some(reparam))
        } else {
            (Some(vs.var_copy("prefix", &init_vertices(cfg, backbone, n, p, text_ids))), None)
        };
        let prompt = (cfg.method.uses_prompt()).then(|| {
            // Word embeddings of random vocabulary tokens (PEFT's "random vocabulary" init).
            let vocab = backbone.vocab_size();
            let low = if vocab > 2000 { 1000 } else { 0 };
            let ids = Tensor::randint_low(low, vocab, [cfg.prefix_len as i64], (Kind::Int64, backbone.device()));
            let init = tch::no_grad(|| backbone.word_embeddings().index_select(0, &ids));
            vs.var_copy("prompt", &init)
        });
        let (head_w, head_b) = match &words {
            Some(rows) => (rows.detach().unsqueeze(0), Tensor::zeros([1, classes], (Kind::Float, rows.device()))),
            None => {
                let heads = if cfg.head_simplex { n } else { 1 };
                let bound = 1.0 / (h as f64).sqrt();
                let vs = &vs.set_group(1);
                (
                    (vs / "head").var("weight", &[heads, classes, h], NnInit::Uniform { lo: -bound, up: bound }),
                    (vs / "head").var("bias", &[heads, classes], NnInit::Uniform { lo: -bound, up: bound }),
                )
            }
        };
        let probe = cfg.method.fits_probe().then(|| {
            let mut normalize = (vs / "probe").zeros_no_train("normalize", &[1]);
            let _ = tch::no_grad(|| normalize.fill_(1.0));
            (normalize, (vs / "probe").zeros_no_train("c", &[1]))
        });
        Self {
            n: cfg.vertices,
            classes,
            layers: l,
            hidden: w,
            prefix_len: p,
            prefix,
            reparam,
            prompt,
            head_w,
            head_b,
            words: words.is_some(),
            poles: None,
            word_tokens: None,
            context: None,
            icl_shots: None,
            probe,
            granularity: cfg.granularity,
            prefix_dropout: cfg.prefix_dropout,
            head_dropout: cfg.head_dropout,
            beta: cfg.beta,
            backbone_dropout: cfg.backbone_dropout,
            positions: cfg.positions.get(),
            pooling,
        }
    }

    /// The vertices' prefixes `(n, L, 2, p, W)` (W: [`Backbone::prefix_width`]).
    pub fn vertex_prefixes(&self) -> Tensor {
        match (&self.prefix, &self.reparam) {
            (Some(p), _) => p.shallow_clone(),
            (None, Some(r)) => {
                let hid = (Tensor::einsum("nph,nrh->npr", &[&r.emb, &r.w1], None::<i64>) + r.b1.unsqueeze(1)).tanh();
                let out = Tensor::einsum("npr,nor->npo", &[&hid, &r.w2], None::<i64>) + r.b2.unsqueeze(1);
                out.view([self.n as i64, self.prefix_len, self.layers, 2, self.hidden]).permute([0, 2, 3, 1, 4])
            }
            (None, None) => unreachable!("a subspace has prefixes"),
        }
    }

    /// Fixed α for the whole batch (broadcast: leading dimension 1).
    pub fn fixed_alphas(&self, at: &At, device: Device) -> Alphas {
        let n = self.n as i64;
        let w: Vec<f64> = match at {
            At::Centroid => vec![1.0 / n as f64; self.n],
            At::Vertex(i) => (0..self.n).map(|j| if j == *i { 1.0 } else { 0.0 }).collect(),
            At::Alpha(a) => {
                let s: f64 = a.iter().sum();
                a.iter().map(|x| x / s).collect()
            }
            At::Sample => panic!("sampled alphas need a batch size: use sample_alphas"),
        };
        let row = Tensor::from_slice(&w).to_kind(Kind::Float).to(device);
        Alphas { layers: row.view([1, 1, n]).expand([1, self.layers, n], true).contiguous(), head: row.view([1, n]) }
    }

    /// α ~ Dirichlet(1,…,1) with this subspace's granularity, for a batch of `b`.
    /// With one vertex α is exactly 1 and nothing is drawn.
    pub fn sample_alphas(&self, b: i64, device: Device) -> Alphas {
        let n = self.n as i64;
        if n == 1 {
            return self.fixed_alphas(&At::Centroid, device);
        }
        let (rows, per_layer) = match self.granularity {
            Granularity::ExampleLayer => (b, self.layers + 1),
            Granularity::Example => (b, 1),
            Granularity::Batch => (1, 1),
        };
        let mut e = Tensor::empty([rows, per_layer, n], (Kind::Float, device));
        let _ = e.exponential_(1.0);
        let a = &e / e.sum_dim_intlist(-1, true, Kind::Float);
        let a = a.expand([rows, self.layers + 1, n], false);
        Alphas { layers: a.narrow(1, 0, self.layers).contiguous(), head: a.select(1, self.layers).contiguous() }
    }

    /// Mixed prefix `(L, 2, B or 1, p, H)` for the given α.
    pub fn mixed_prefix(&self, alphas: &Alphas) -> Tensor {
        Tensor::einsum("bln,nlkph->lkbph", &[&alphas.layers, &self.vertex_prefixes()], None::<i64>)
    }

    /// The head at a fixed point: `(W (C, H), b (C))` = Σᵢ αᵢ (Wᵢ, bᵢ) (the logits are linear
    /// in the head's parameters, so this is the mixed head exactly).
    pub fn head_at(&self, at: &At) -> (Tensor, Tensor) {
        if self.head_w.size()[0] == 1 {
            return (self.head_w.get(0).detach(), self.head_b.get(0).detach());
        }
        let a = self.fixed_alphas(at, self.head_w.device()).head.squeeze_dim(0);
        (
            Tensor::einsum("n,nch->ch", &[&a, &self.head_w], None::<i64>).detach(),
            Tensor::einsum("n,nc->c", &[&a, &self.head_b], None::<i64>).detach(),
        )
    }

    /// Overwrites vertex `i`'s prefix with `prefix` `(L, 2, p, H)` (an imported starting point).
    pub fn set_vertex_prefix(&mut self, i: usize, prefix: &Tensor) -> Result<(), String> {
        let Some(vertices) = &self.prefix else {
            return Err("a prefix can only be imported into a run with a deep prefix and without reparam".into());
        };
        let mut dst = vertices.get(i as i64);
        if dst.size() != prefix.size() {
            return Err(format!("prefix shape {:?}, the run expects {:?} (L, 2, p, H)", prefix.size(), dst.size()));
        }
        tch::no_grad(|| dst.copy_(&prefix.to(dst.device())));
        Ok(())
    }

    /// Overwrites head `i` (`weight (C, H)`, `bias (C)`; every head when heads are shared).
    pub fn set_head(&mut self, i: usize, weight: &Tensor, bias: &Tensor) -> Result<(), String> {
        if self.words {
            return Err("this run's head is the decoder's label words, which are not trained".into());
        }
        let i = if self.head_w.size()[0] == 1 { 0 } else { i as i64 };
        let (mut w, mut b) = (self.head_w.get(i), self.head_b.get(i));
        if w.size() != weight.size() || b.size() != bias.size() {
            return Err(format!(
                "head shapes {:?} / {:?}, the run expects {:?} / {:?}",
                weight.size(),
                bias.size(),
                w.size(),
                b.size()
            ));
        }
        tch::no_grad(|| {
            w.copy_(&weight.to(w.device()));
            b.copy_(&bias.to(b.device()));
        });
        Ok(())
    }

    /// Number of prefix positions p (0 for methods without a prefix).
    pub fn prefix_len(&self) -> i64 {
        self.prefix_len
    }

    /// The pooling the head reads.
    pub fn pooling(&self) -> Pooling {
        self.pooling
    }

    /// Logits `(B, C)` of the mixed head on pooled features `(B, H)`.
    pub fn head_logits(&self, pooled: &Tensor, head_alpha: &Tensor) -> Tensor {
        let per_vertex = Tensor::einsum("bh,nch->bnc", &[pooled, &self.head_w], None::<i64>) + self.head_b.unsqueeze(0);
        if self.head_w.size()[0] == 1 {
            return per_vertex.select(1, 0);
        }
        let b = pooled.size()[0];
        let a = head_alpha.expand([b, self.n as i64], false);
        Tensor::einsum("bn,bnc->bc", &[&a, &per_vertex], None::<i64>)
    }

    /// Full forward: mixed prefix → backbone → pooling → mixed head. `(B, C)`. With label
    /// words of several tokens, the summed log-probabilities of the words' tokens instead
    /// ([`Subspace::word_scores`]).
    pub fn forward(&self, backbone: &dyn Backbone, batch: &Batch, alphas: &Alphas, train: bool) -> Tensor {
        if let Some(words) = &self.word_tokens {
            return self.word_scores(backbone, batch, alphas, train, words) + &self.head_b;
        }
        let pooled = self.features(backbone, batch, alphas, train);
        self.head(&pooled, alphas, train)
    }

    /// Pooled features `(B, H)` of the backbone run with the mixed prefix (or prompt), divided
    /// by their Euclidean norm when the run says so ([`Subspace::normalizes`]).
    pub fn features(&self, backbone: &dyn Backbone, batch: &Batch, alphas: &Alphas, train: bool) -> Tensor {
        let hidden = self.hidden_states(backbone, batch, alphas, train, None);
        let pooled = self.pooling.pool(&hidden, &batch.attention_mask);
        if self.normalizes() {
            // As scikit-learn's `normalize`: a zero vector stays zero.
            let norm = pooled.norm_scalaropt_dim(2, [1], true).clamp_min(1e-12);
            pooled / norm
        } else {
            pooled
        }
    }

    /// Label words of several tokens (PET, LM-BFF with multi-token verbalizers): the score of
    /// class c is `Σⱼ log P(wⱼ | input, w₁ … wⱼ₋₁)` over the tokens of its word, `(B, C)`.
    /// Each input runs once as it is (the first token of every word is read at its last real
    /// position) and once more for each word of several tokens, followed by that word's tokens
    /// but its last; all of an example's rows share one mixed prefix (and its dropout).
    fn word_scores(
        &self,
        backbone: &dyn Backbone,
        batch: &Batch,
        alphas: &Alphas,
        train: bool,
        words: &[Vec<i64>],
    ) -> Tensor {
        let dev = backbone.device();
        let (b, t) = batch.input_ids.size2().expect("input ids are (B, T)");
        let ids = Vec::<i64>::try_from(batch.input_ids.to_device(Device::Cpu).reshape([-1])).expect("ids");
        let mask = Vec::<i64>::try_from(batch.attention_mask.to_device(Device::Cpu).reshape([-1])).expect("mask");
        let (b, t) = (b as usize, t as usize);
        let lens: Vec<usize> = (0..b).map(|i| mask[i * t..(i + 1) * t].iter().filter(|&&m| m != 0).count()).collect();
        // Row group 0: the inputs; then one group per word of several tokens.
        let mut group_of = vec![0usize; words.len()];
        let mut tails: Vec<&[i64]> = vec![&[]];
        for (c, w) in words.iter().enumerate() {
            if w.len() > 1 {
                group_of[c] = tails.len();
                tails.push(&w[..w.len() - 1]);
            }
        }
        let g = tails.len();
        let t2 = t + tails.iter().map(|x| x.len()).max().unwrap_or(0);
        let (mut ids2, mut mask2) = (vec![0i64; b * g * t2], vec![0i64; b * g * t2]);
        for i in 0..b {
            for (k, tail) in tails.iter().enumerate() {
                let r = (i * g + k) * t2;
                ids2[r..r + lens[i]].copy_from_slice(&ids[i * t..i * t + lens[i]]);
                ids2[r + lens[i]..r + lens[i] + tail.len()].copy_from_slice(tail);
                mask2[r..r + lens[i] + tail.len()].iter_mut().for_each(|m| *m = 1);
            }
        }
        let shape = [(b * g) as i64, t2 as i64];
        let expanded = Batch {
            input_ids: Tensor::from_slice(&ids2).view(shape).to(dev),
            attention_mask: Tensor::from_slice(&mask2).view(shape).to(dev),
            token_type_ids: Tensor::zeros(shape, (Kind::Int64, dev)),
        };
        let rows = Tensor::arange(b as i64, (Kind::Int64, dev)).repeat_interleave_self_int(g as i64, 0, None);
        let hidden = self.hidden_states(backbone, &expanded, alphas, train, Some(&rows));
        // The positions read (row · t2 + position) and, for each scored token, which position,
        // which token and which (example, class) it counts for.
        let (mut positions, mut read, mut token, mut owner) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (i, &len) in lens.iter().enumerate() {
            let first = positions.len() as i64;
            positions.push(((i * g) * t2 + len - 1) as i64);
            for (c, w) in words.iter().enumerate() {
                for (j, &tok) in w.iter().enumerate() {
                    let at = if j == 0 {
                        first
                    } else {
                        positions.push(((i * g + group_of[c]) * t2 + len - 1 + j) as i64);
                        positions.len() as i64 - 1
                    };
                    read.push(at);
                    token.push(tok);
                    owner.push((i * words.len() + c) as i64);
                }
            }
        }
        let h = hidden.reshape([(b * g * t2) as i64, -1]).index_select(0, &Tensor::from_slice(&positions).to(dev));
        let out = backbone.output_weight().expect("label words of several tokens need a language-model head");
        let logp = h.matmul(&out.tr()).log_softmax(-1, Kind::Float);
        let v = logp.size()[1];
        let flat: Vec<i64> = read.iter().zip(&token).map(|(&p, &k)| p * v + k).collect();
        let picked = logp.reshape([-1]).index_select(0, &Tensor::from_slice(&flat).to(dev));
        let scores = Tensor::zeros([(b * words.len()) as i64], (Kind::Float, dev));
        scores.index_add(0, &Tensor::from_slice(&owner).to(dev), &picked).view([b as i64, words.len() as i64])
    }

    /// Final hidden states `(B, T, H)` of the backbone run with the mixed prefix (or prompt);
    /// `rows`: the example each row of `batch` belongs to, when an example has several rows
    /// (the prefix mixed per example is repeated for them).
    fn hidden_states(
        &self,
        backbone: &dyn Backbone,
        batch: &Batch,
        alphas: &Alphas,
        train: bool,
        rows: Option<&Tensor>,
    ) -> Tensor {
        let opts = Forward { dropout: train && self.backbone_dropout, positions: self.positions };
        let opts = match &self.context {
            Some(_) => Forward { positions: Positions::Shifted, ..opts },
            None => opts,
        };
        let prefix = self.context.as_ref().map(|c| c.shallow_clone()).or_else(|| {
            (self.prefix_len > 0).then(|| {
                let p = self.mixed_prefix(alphas);
                let p = if train && self.prefix_dropout > 0.0 {
                    crate::model::dropout::dropout(&p, self.prefix_dropout)
                } else {
                    p
                };
                // (L, 2, B or 1, p, W): one mixed prefix per example, or one for all.
                match rows {
                    Some(r) if p.size()[2] > 1 => p.index_select(2, r),
                    _ => p,
                }
            })
        });
        match &self.prompt {
            None => backbone.forward(batch, prefix.as_ref(), opts),
            // The real tokens' states only.
            Some(prompt) => backbone.forward_prompted(batch, prompt, prefix.as_ref(), opts),
        }
    }

    /// Whether the pooled features are L2-normalised before the head: what the checkpoint
    /// variable `probe/normalize` of a probe run records (no other run normalises).
    pub fn normalizes(&self) -> bool {
        self.probe.as_ref().is_some_and(|(n, _)| n.double_value(&[0]) != 0.0)
    }

    /// Records the probe's chosen C in its checkpoint variable `probe/c`.
    pub fn record_probe_c(&mut self, c: f64) {
        if let Some((_, v)) = &mut self.probe {
            let _ = tch::no_grad(|| v.fill_(c));
        }
    }

    /// The C a probe run chose (0: none recorded, or not a probe).
    pub fn probe_c(&self) -> f64 {
        self.probe.as_ref().map_or(0.0, |(_, v)| v.double_value(&[0]))
    }

    /// Contextual calibration of a label-word head: `bias` `(C,)` is added to the words'
    /// logits (−log of the probabilities of a content-free input).
    pub fn set_word_bias(&mut self, bias: &Tensor) {
        assert!(self.words, "only a label-word head is calibrated");
        self.head_b = bias.detach().view([1, -1]).to_kind(Kind::Float);
    }

    /// The checkpoint variable that records in-context learning's demonstrations per class.
    pub fn set_icl_shots(&mut self, var: Tensor) {
        self.icl_shots = Some(var);
    }

    /// Records `k` demonstrations per class in that variable.
    pub fn record_icl_shots(&mut self, k: usize) {
        if let Some(v) = &mut self.icl_shots {
            let _ = tch::no_grad(|| v.fill_(k as f64));
        }
    }

    /// The recorded demonstrations per class (0: none recorded).
    pub fn icl_shots(&self) -> usize {
        self.icl_shots.as_ref().map_or(0, |v| v.double_value(&[0]).round().max(0.0) as usize)
    }

    /// Sets the demonstrations of in-context learning (see [`Subspace::features`]).
    pub fn set_context(&mut self, keys_values: Tensor) {
        self.context = Some(keys_values);
    }

    /// Whether the head is a decoder's (frozen) label words.
    pub fn label_words(&self) -> bool {
        self.words
    }

    /// Makes the two outputs of the head the poles `(lo, hi)` of a regression score (see
    /// [`Subspace::outputs`]); `None` leaves the head as it is.
    pub fn set_poles(&mut self, poles: Option<(f64, f64)>) {
        assert!(poles.is_none() || self.classes == 2, "two poles need a head with two outputs");
        self.poles = poles;
    }

    /// Scores classes by every token of their label words (summed log-probabilities), for
    /// label words of which at least one has several tokens.
    pub fn set_word_tokens(&mut self, tokens: Vec<Vec<i64>>) {
        assert!(self.words && tokens.len() as i64 == self.classes, "one token list per label word");
        self.word_tokens = Some(tokens);
    }

    /// The poles of a regression task read through two label words.
    pub fn poles(&self) -> Option<(f64, f64)> {
        self.poles
    }

    /// The number of values [`Subspace::outputs`] gives per example: 1 for a regression task,
    /// else C.
    pub fn output_width(&self) -> i64 {
        if self.poles.is_some() {
            1
        } else {
            self.classes
        }
    }

    /// What a run reports from head logits `(B, C)`: class probabilities (the softmax), the
    /// score of a regression head `(B, 1)` as it is, or with two poles the interpolated score
    /// `lo + (hi − lo) · softmax(logits)[1]` `(B, 1)`.
    pub fn outputs(&self, logits: &Tensor) -> Tensor {
        match self.poles {
            Some((lo, hi)) => logits.softmax(-1, Kind::Float).narrow(1, 1, 1) * (hi - lo) + lo,
            None if self.classes == 1 => logits.shallow_clone(),
            None => logits.softmax(-1, Kind::Float),
        }
    }

    /// The mixed head on pooled features, with head dropout while training.
    pub fn head(&self, pooled: &Tensor, alphas: &Alphas, train: bool) -> Tensor {
        let pooled = if train && self.head_dropout > 0.0 {
            crate::model::dropout::dropout(pooled, self.head_dropout)
        } else {
            pooled.shallow_clone()
        };
        self.head_logits(&pooled, &alphas.head)
    }

    /// β · cos²(θ_i, θ_j) for a random pair i ≠ j of vertices (their flattened prefixes);
    /// `None` with one vertex or β = 0 (no random draw is made then).
    pub fn regulariser(&self, rng: &mut ChaCha8Rng) -> Option<Tensor> {
        if self.n < 2 || self.beta == 0.0 || self.prefix_len == 0 {
            return None;
        }
        let i = rng.gen_range(0..self.n);
        let mut j = rng.gen_range(0..self.n - 1);
        if j >= i {
            j += 1;
        }
        let v = self.vertex_prefixes();
        Some(cos_squared(&v.get(i as i64).flatten(0, -1), &v.get(j as i64).flatten(0, -1)) * self.beta)
    }
}

/// cos²(a, b) of two vectors.
pub fn cos_squared(a: &Tensor, b: &Tensor) -> Tensor {
    let dot = (a * b).sum(Kind::Float);
    let den = (a.pow_tensor_scalar(2).sum(Kind::Float) * b.pow_tensor_scalar(2).sum(Kind::Float)).clamp_min(1e-24);
    dot.pow_tensor_scalar(2) / den
}

/// Independent initial prefixes for n vertices: `(n, L, 2, p, H)`.
fn init_vertices(cfg: &RunConfig, encoder: &dyn Backbone, n: i64, p: i64, text_ids: Option<&Tensor>) -> Tensor {
    let (l, h, dev) = (encoder.num_layers(), encoder.prefix_width(), encoder.device());
    tch::no_grad(|| match cfg.init {
        Init::Normal => Tensor::randn([n, l, 2, p, h], (Kind::Float, dev)) * cfg.init_std,
        Init::Text if p > 0 => {
            let ids = text_ids.expect("init = text: the session gives the vertices' token ids").to(dev);
            let batch = Batch {
                attention_mask: Tensor::ones([n, p], (Kind::Int64, dev)),
                token_type_ids: Tensor::zeros([n, p], (Kind::Int64, dev)),
                input_ids: ids,
            };
            encoder.keys_values(&batch).permute([2, 0, 1, 3, 4]).contiguous()
        }
        Init::Text => Tensor::zeros([n, l, 2, 0, h], (Kind::Float, dev)),
        Init::Vocab | Init::Auto => {
            // Keys and values the backbone itself computes for p random vocabulary tokens.
            let vocab = encoder.vocab_size();
            let low = if vocab > 2000 { 1000 } else { 0 }; // skip BERT's [unused]/special ids
            let ids = Tensor::randint_low(low, vocab, [n, p], (Kind::Int64, dev));
            if p == 0 {
                // A method without a prefix (the draw above is kept: it is part of the seeded
                // stream that every method's later draws follow).
                return Tensor::zeros([n, l, 2, 0, h], (Kind::Float, dev));
            }
            let batch = Batch {
                input_ids: ids,
                attention_mask: Tensor::ones([n, p], (Kind::Int64, dev)),
                token_type_ids: Tensor::zeros([n, p], (Kind::Int64, dev)),
            };
            encoder.keys_values(&batch).permute([2, 0, 1, 3, 4]).contiguous() // (L,2,n,p,H) → (n,L,2,p,H)
        }
    })
}

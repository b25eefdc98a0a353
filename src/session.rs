//! A loaded run: its resolved config, data, frozen encoder, tokenizer and pooling, with the
//! model-dependent checks on the config; the method's parameters built fresh (seeded) or from
//! a checkpoint; the checkpoint files' reader and writer.

use std::collections::BTreeMap;
use std::path::Path;

use tch::nn;
use tch::{Device, Tensor};

use crate::atomic::write_tensors_atomic;
use crate::config::{HeadKind, PoolingChoice, RunConfig};
use crate::data::Label;
use crate::error::{Error, Result};
use crate::method::subspace::Subspace;
use crate::model::{Backbone, Decoder, Encoder, Pooling, TextTokenizer};
use crate::prompt::Prompt;
use crate::task::TaskData;

/// A loaded run: config, data, frozen encoder and tokenizer. Everything that can fail on bad
/// input fails here, before anything is written.
pub struct Session {
    /// The resolved config.
    pub cfg: RunConfig,
    /// The task's data.
    pub task: TaskData,
    /// The frozen backbone (an encoder, or a decoder LLM).
    pub backbone: Box<dyn Backbone>,
    /// Its tokenizer.
    pub tokenizer: TextTokenizer,
    /// The pooling the head reads.
    pub pooling: Pooling,
    /// Every token id of each class's label word; a class scored by several tokens makes the
    /// class scores summed log-probabilities ([`Subspace::set_word_tokens`]).
    pub label_tokens: Option<Vec<Vec<i64>>>,
    /// [`Session::data_hash`], computed once when the data is loaded.
    data_hash: String,
}

impl Session {
    /// Loads data, model and tokenizer for `cfg`.
    pub fn open(cfg: RunConfig) -> Result<Self> {
        let cfg = cfg.resolve()?;
        let device = crate::embed::parse_device(&cfg.device)?;
        if cfg.threads > 0 {
            tch::set_num_threads(cfg.threads as i32);
        }
        let task = TaskData::load(&cfg)?;
        let dir = cfg.model_dir();
        if !dir.exists() {
            return Err(Error::Input(crate::paths::model_not_found(&dir)));
        }
        if let Some((name, _)) = task.tests.iter().find(|(_, ex)| ex.is_empty()) {
            return Err(Error::Input(format!(
                "task {}: the {name} set is empty, so there is nothing to score (use a larger data file, or give a test_file)",
                task.name
            )));
        }
        if let Some(source) = crate::model::decoder_source(&dir)? {
            return Self::open_decoder(cfg, task, &source, device);
        }
        // The folder's config.json is checked before the method: a missing one, or another
        // architecture's, is what the user needs to hear, not that it "is an encoder".
        let config = crate::model::bert::Config::from_file(&Encoder::config_path(&dir)?)?;
        if cfg.head == Some(HeadKind::Words) {
            return Err(Error::Input(format!(
                "head = \"words\": label words are a decoder's (its language-model head); {} is an encoder, whose head is linear (set head = \"linear\" or leave head unset)",
                dir.display()
            )));
        }
        if cfg.method.needs_decoder() || cfg.calibrate {
            return Err(Error::Input(format!(
                "method = \"{}\"{}: needs a decoder LLM with label words (e.g. --model smollm2-135m-instruct); {} is an encoder",
                cfg.method.name(),
                if cfg.calibrate { " with calibrate = true" } else { "" },
                dir.display()
            )));
        }
        cfg.method.check(&task, &dir, false)?;
        let encoder = Encoder::load_with(&dir, config, device)?;
        check_model_limits(&cfg, &encoder, &dir)?;
        let tokenizer = TextTokenizer::from_dir(&dir, cfg.max_len)?;
        crate::model::check_vocab(&tokenizer, &encoder.config, &dir)?;
        let pooling = match cfg.pooling {
            PoolingChoice::Auto => Pooling::auto(&dir)?,
            PoolingChoice::Mean => Pooling::Mean,
            PoolingChoice::Cls => Pooling::Cls,
            PoolingChoice::Last => Pooling::Last,
        };
        Ok(Self::from_parts(cfg, task, Box::new(encoder), tokenizer, pooling))
    }

    /// [`Session::open`] for a decoder in a GGUF file: prompt-based classification with the
    /// task's template and label words (or the config's).
    /// `path`: a GGUF file, or a Hugging Face decoder folder.
    fn open_decoder(cfg: RunConfig, task: TaskData, path: &Path, device: Device) -> Result<Self> {
        cfg.method.check(&task, path, true)?;
        let mut gguf = if path.is_file() { Some(crate::model::gguf::Gguf::open(path)?) } else { None };
        let instruct = crate::model::instruction_tuned(path, gguf.as_ref());
        let classes = task.label_names.len();
        let pairs = task.split.train.iter().any(|e| e.text_b.is_some());
        let default = Prompt::default_for(&task.name, &task.label_names, instruct, pairs);
        let has_words = cfg.label_words.is_some() || default.is_some();
        // The head: label words when the task has them, except for the methods whose point is
        // a trained head; a linear head otherwise.
        let head = cfg.head.unwrap_or(if has_words && !cfg.method.trains_only_the_head() {
            HeadKind::Words
        } else {
            HeadKind::Linear
        });
        match head {
            HeadKind::Words if cfg.method.trains_only_the_head() => {
                return Err(Error::Input(format!(
                    "head = \"words\" with method = \"{}\": the label words are the language model's own rows, frozen, so nothing would be fitted; use head = \"linear\" (or leave head unset)",
                    cfg.method.name()
                )))
            }
            HeadKind::Linear if cfg.method.needs_decoder() && cfg.head.is_some() => {
                return Err(Error::Input(format!(
                    "head = \"linear\" with method = \"{}\": it trains nothing, so it needs the label words as its head; use head = \"words\" (or leave head unset)",
                    cfg.method.name()
                )))
            }
            _ => {}
        }
        let prompt = match (&cfg.template, &cfg.label_words, default) {
            (Some(t), Some(w), _) => Prompt { template: t.clone(), words: w.clone() },
            (t, w, Some(d)) => {
                Prompt { template: t.clone().unwrap_or(d.template), words: w.clone().unwrap_or(d.words) }
            }
            (_, _, None) if head == HeadKind::Linear && !cfg.method.needs_decoder() => {
                // A regression task: no label words; a linear head reads the last token.
                Prompt {
                    template: cfg.template.clone().unwrap_or_else(|| {
                        if pairs {
                            "{s1} ? {s2} Answer:".into()
                        } else {
                            "{s} Answer:".into()
                        }
                    }),
                    words: Vec::new(),
                }
            }
            _ => {
                return Err(Error::Input(format!(
                "task {}: no label words (a regression task, or set template and label_words) for method = \"{}\"{}",
                task.name,
                cfg.method.name(),
                if cfg.head == Some(HeadKind::Words) { " with head = \"words\"" } else { "" }
            )))
            }
        };
        let words = head == HeadKind::Words;
        if !prompt.words.is_empty() {
            prompt.check(pairs, classes)?;
        }
        let (decoder, tokenizer) = match &mut gguf {
            Some(g) => (Decoder::from_gguf(g, device)?, TextTokenizer::from_gguf(g, cfg.max_len, prompt.clone())?),
            None => (
                crate::model::hf_decoder::load(path, device)?,
                TextTokenizer::from_hf_decoder(path, cfg.max_len, prompt.clone())?,
            ),
        };
        let tok_vocab = tokenizer.vocab_size();
        if tok_vocab > decoder.config.vocab {
            return Err(Error::Input(format!(
                "{}: the tokenizer has {tok_vocab} token ids but token_embd has {} rows",
                path.display(),
                decoder.config.vocab
            )));
        }
        if cfg.max_len as i64 > decoder.config.context {
            return Err(Error::Input(format!(
                "max_len = {}: expected at most the model's context length {} ({})",
                cfg.max_len,
                decoder.config.context,
                path.display()
            )));
        }
        let label_tokens = if words {
            let mut all: Vec<Vec<i64>> = Vec::new();
            for w in &prompt.words {
                let t = tokenizer.ids(w)?;
                if t.is_empty() {
                    return Err(Error::Input(format!("label word {w:?} has no tokens")));
                }
                if all.contains(&t) {
                    return Err(Error::Input(format!(
                        "label_words = {:?}: two words have the same tokens ({t:?}); the class scores would be equal",
                        prompt.words
                    )));
                }
                all.push(t);
            }
            Some(all)
        } else {
            None
        };
        let pooling = match cfg.pooling {
            PoolingChoice::Auto | PoolingChoice::Last => Pooling::Last,
            PoolingChoice::Mean => Pooling::Mean,
            PoolingChoice::Cls => Pooling::Cls,
        };
        let mut s = Self::from_parts(cfg, task, Box::new(decoder), tokenizer, pooling);
        s.label_tokens = label_tokens;
        Ok(s)
    }

    /// A session of parts already loaded (`cfg` resolved; the speed figures build their own).
    pub fn from_parts(
        cfg: RunConfig,
        task: TaskData,
        backbone: Box<dyn Backbone>,
        tokenizer: TextTokenizer,
        pooling: Pooling,
    ) -> Self {
        let data_hash = hash_examples(&task);
        Self { cfg, task, backbone, tokenizer, pooling, label_tokens: None, data_hash }
    }

    /// A decoder's label words: the first token id of each class's word (the head is then the
    /// language model's own output rows of these tokens); the first of each of
    /// [`Session::label_tokens`].
    pub fn label_ids(&self) -> Option<Vec<i64>> {
        self.label_tokens.as_ref().map(|all| all.iter().map(|t| t[0]).collect())
    }

    /// The encoder, for what only encoders do (PEFT export, the FLOP model).
    pub fn encoder(&self) -> Result<&Encoder> {
        self.backbone.as_encoder().ok_or_else(|| {
            Error::Input(format!("{}: this needs an encoder backbone, not a decoder", self.cfg.model_dir().display()))
        })
    }

    /// The hash of every example the run uses (ids, texts and labels of the train, dev and
    /// test sets), so that a run reopened on edited data files is refused.
    pub fn data_hash(&self) -> &str {
        &self.data_hash
    }

    /// A fresh (randomly initialised, seeded) model in a new var store: the method's encoder
    /// parameters (LoRA, BitFit biases, all weights for full fine-tuning) and the subspace of
    /// prefixes/prompt and heads, started from `init_peft` when the config names an adapter.
    pub fn new_subspace(&mut self) -> Result<(nn::VarStore, Subspace)> {
        self.build_subspace(true)
    }

    /// The subspace stored in a run directory's checkpoint.
    pub fn load_subspace(&mut self, checkpoint: &Path) -> Result<(nn::VarStore, Subspace)> {
        let (vs, mut s) = self.build_subspace(false)?;
        load_checkpoint(&vs, checkpoint)?;
        self.cfg.method.loaded(self, &mut s, checkpoint)?;
        Ok((vs, s))
    }

    /// The model with its seeded initialisation; `import`: apply `init_peft` (a model whose
    /// weights are then overwritten from a checkpoint does not need the adapter).
    fn build_subspace(&mut self, import: bool) -> Result<(nn::VarStore, Subspace)> {
        tch::manual_seed(self.cfg.seed as i64);
        let vs = nn::VarStore::new(self.backbone.device());
        let root = vs.root();
        self.cfg.method.prepare_backbone(&self.cfg, self.backbone.as_mut(), &root)?;
        self.backbone.set_product_kind(self.cfg.precision.product_kind());
        let words = self.label_ids().map(|ids| self.backbone.output_rows(&ids).expect("a decoder has output rows"));
        let text_ids = match self.cfg.init {
            crate::config::Init::Text if self.cfg.method.uses_prefix() => Some(self.text_start_ids()?),
            _ => None,
        };
        // With label words the head has one output per word (two poles for a regression task).
        let outputs = words.as_ref().map_or(self.task.num_outputs(), |w| w.size()[0]);
        let poles = match (&words, self.task.is_regression()) {
            (Some(_), true) => Some(self.task.score_range.ok_or_else(|| {
                Error::Input(format!(
                    "task {}: every train score is the same, so its label words have no range to span",
                    self.task.name
                ))
            })?),
            _ => None,
        };
        let mut s =
            Subspace::new(&root, &self.cfg, self.backbone.as_ref(), outputs, self.pooling, words, text_ids.as_ref());
        s.set_poles(poles);
        if let Some(all) = self.label_tokens.as_ref().filter(|all| all.iter().any(|t| t.len() > 1)) {
            s.set_word_tokens(all.clone());
        }
        self.cfg.method.setup(self, &mut s, &root)?;
        if self.cfg.calibrate {
            self.cfg.method.calibrate(self, &mut s)?;
        }
        if let Some(dir) = self.cfg.init_peft.as_ref().filter(|_| import) {
            let encoder = self
                .backbone
                .as_encoder()
                .ok_or_else(|| Error::Input("init_peft: importing a PEFT adapter needs an encoder backbone".into()))?;
            let notes = crate::import::import_peft(dir, &mut s, &self.cfg, encoder)?;
            for n in notes {
                if !self.task.notes.contains(&n) {
                    self.task.notes.push(n);
                }
            }
        }
        Ok((vs, s))
    }

    /// `init = "text"`: for each vertex, the first `prefix_len` token ids `(n, p)` of few-shot
    /// train examples, vertex i starting at a different one (drawn with the run's seed), each
    /// written as an in-context demonstration on a decoder (template, label word, blank line;
    /// BOS first when the tokenizer adds it) and as its plain text on an encoder; an example
    /// shorter than p is followed by the next ones.
    fn text_start_ids(&self) -> Result<Tensor> {
        use rand::seq::SliceRandom;
        use rand::SeedableRng;
        let (n, p) = (self.cfg.vertices, self.cfg.prefix_len);
        let train = &self.task.split.train;
        let mut order: Vec<usize> = (0..train.len()).collect();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(self.cfg.seed ^ 0x7e47);
        order.shuffle(&mut rng);
        let text = |e: &crate::data::Example| -> Result<Vec<i64>> {
            match self.tokenizer.prompt() {
                Some(prompt) => {
                    let word = prompt.word_index(e.label, self.task.score_range).map_or("", |c| &prompt.words[c]);
                    self.tokenizer.ids(&format!("{}{word}\n\n", prompt.fill(&e.text_a, e.text_b.as_deref())))
                }
                None => self.tokenizer.ids(&e.text_a),
            }
        };
        let mut rows = Vec::with_capacity(n * p);
        for v in 0..n {
            let mut ids: Vec<i64> = self.tokenizer.bos().into_iter().collect();
            let mut k = v;
            while ids.len() < p {
                ids.extend(text(&train[order[k % order.len()]])?);
                k += n;
                if k > n * (order.len() + p) {
                    return Err(Error::Input(format!(
                        "init = \"text\": the train examples give fewer than prefix_len = {p} tokens"
                    )));
                }
            }
            rows.extend_from_slice(&ids[..p]);
        }
        Ok(Tensor::from_slice(&rows).view([n as i64, p as i64]))
    }
}

/// The hash behind [`Session::data_hash`].
fn hash_examples(task: &TaskData) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    let sets = [("train", &task.split.train), ("dev", &task.split.dev)];
    for (name, examples) in sets.into_iter().chain(task.tests.iter().map(|(n, e)| (n.as_str(), e))) {
        h.update(format!("{name}\0{}\0", examples.len()).as_bytes());
        for e in examples {
            let label = match e.label {
                Label::Class(c) => format!("c{c}"),
                Label::Score(s) => format!("s{}", s.to_bits()),
            };
            for part in [e.id.as_str(), e.text_a.as_str(), e.text_b.as_deref().unwrap_or("\u{1}"), &label] {
                h.update(part.len().to_le_bytes());
                h.update(part.as_bytes());
            }
        }
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The limits the model puts on the config: inputs of `max_len` tokens (after a prompt, or
/// after the prefix when `positions = shifted`) must fit the checkpoint's position table, and
/// so must the `prefix_len` tokens whose keys and values start the vertices (`init = vocab`).
fn check_model_limits(cfg: &RunConfig, encoder: &Encoder, dir: &Path) -> Result<()> {
    let p = cfg.prefix_len as i64;
    let (shift, why) = if cfg.method.uses_prompt() {
        (p, format!(" after the prompt of prefix_len = {p}"))
    } else if cfg.method.uses_prefix() && cfg.positions.get() == crate::model::Positions::Shifted {
        (p, format!(" with positions = shifted after prefix_len = {p}"))
    } else {
        (0, String::new())
    };
    let table = encoder.config.max_position_embeddings;
    let limit = encoder.max_tokens(shift);
    if cfg.max_len as i64 > limit {
        return Err(Error::Input(format!(
            "max_len = {}: expected at most {} for this model{why} (max_position_embeddings {table} in {})",
            cfg.max_len,
            limit.max(0),
            dir.join("config.json").display()
        )));
    }
    if cfg.method.uses_prefix()
        && matches!(cfg.init, crate::config::Init::Auto | crate::config::Init::Vocab | crate::config::Init::Text)
        && p > encoder.max_tokens(0)
    {
        return Err(Error::Input(format!(
            "prefix_len = {p}: expected at most {} with init = \"vocab\" (the vertices start from the keys and values of prefix_len tokens, which must fit max_position_embeddings {table} in {}); use init = \"normal\" for longer prefixes",
            encoder.max_tokens(0).max(0),
            dir.join("config.json").display()
        )));
    }
    Ok(())
}

/// Writes the trainable tensors atomically (temp file, fsync, rename).
pub fn save_checkpoint(vs: &nn::VarStore, path: &Path) -> Result<()> {
    let vars = vs.variables();
    let mut named: Vec<(String, Tensor)> =
        vars.into_iter().map(|(k, v)| (k, v.detach().to(Device::Cpu).contiguous())).collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    write_tensors_atomic(&named, path)
}

/// Loads a checkpoint written by [`save_checkpoint`] into `vs` (names and shapes must match).
pub fn load_checkpoint(vs: &nn::VarStore, path: &Path) -> Result<()> {
    let tensors: BTreeMap<String, Tensor> = crate::model::load::Weights::read(path, vs.device())?.into_map();
    let _guard = tch::no_grad_guard();
    for (name, mut var) in vs.variables() {
        let src = tensors.get(&name).ok_or_else(|| {
            Error::Input(format!(
                "{}: checkpoint has no tensor \"{name}\" (does config.toml match this checkpoint?)",
                path.display()
            ))
        })?;
        if src.size() != var.size() {
            return Err(Error::Input(format!(
                "{}: tensor \"{name}\" has shape {:?}, the run's config implies {:?}",
                path.display(),
                src.size(),
                var.size()
            )));
        }
        var.copy_(src);
    }
    Ok(())
}

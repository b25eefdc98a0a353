//! A loaded run: its resolved config, data, frozen encoder, tokenizer and pooling, with the
//! model-dependent checks on the config; the method's parameters built fresh (seeded) or from
//! a checkpoint; the checkpoint files' reader and writer.

use std::collections::BTreeMap;
use std::path::Path;

use tch::nn;
use tch::{Device, Tensor};

use crate::atomic::write_tensors_atomic;
use crate::config::{Method, PoolingChoice, RunConfig};
use crate::data::Label;
use crate::error::{Error, Result};
use crate::model::{Encoder, Pooling, TextTokenizer};
use crate::subspace::Subspace;
use crate::task::TaskData;

/// A loaded run: config, data, frozen encoder and tokenizer. Everything that can fail on bad
/// input fails here, before anything is written.
pub struct Session {
    /// The resolved config.
    pub cfg: RunConfig,
    /// The task's data.
    pub task: TaskData,
    /// The frozen encoder.
    pub encoder: Encoder,
    /// Its tokenizer.
    pub tokenizer: TextTokenizer,
    /// The pooling the head reads.
    pub pooling: Pooling,
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
        if !dir.is_dir() {
            return Err(Error::Input(format!(
                "{}: model folder not found (run scripts/setup.sh for the default model, or pass --model DIR)",
                dir.display()
            )));
        }
        if let Some((name, _)) = task.tests.iter().find(|(_, ex)| ex.is_empty()) {
            return Err(Error::Input(format!(
                "task {}: the {name} set is empty, so there is nothing to score (use a larger data file, or give a test_file)",
                task.name
            )));
        }
        let encoder = Encoder::load(&dir, device)?;
        check_model_limits(&cfg, &encoder, &dir)?;
        let tokenizer = TextTokenizer::from_dir(&dir, cfg.max_len)?;
        crate::model::check_vocab(&tokenizer, &encoder.config, &dir)?;
        let pooling = match cfg.pooling {
            PoolingChoice::Auto => Pooling::auto(&dir),
            PoolingChoice::Mean => Pooling::Mean,
            PoolingChoice::Cls => Pooling::Cls,
        };
        Ok(Self::from_parts(cfg, task, encoder, tokenizer, pooling))
    }

    /// A session of parts already loaded (`cfg` resolved; the speed figures build their own).
    pub fn from_parts(
        cfg: RunConfig,
        task: TaskData,
        encoder: Encoder,
        tokenizer: TextTokenizer,
        pooling: Pooling,
    ) -> Self {
        let data_hash = hash_examples(&task);
        Self { cfg, task, encoder, tokenizer, pooling, data_hash }
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
        let (vs, s) = self.build_subspace(false)?;
        load_checkpoint(&vs, checkpoint)?;
        Ok((vs, s))
    }

    /// The model with its seeded initialisation; `import`: apply `init_peft` (a model whose
    /// weights are then overwritten from a checkpoint does not need the adapter).
    fn build_subspace(&mut self, import: bool) -> Result<(nn::VarStore, Subspace)> {
        tch::manual_seed(self.cfg.seed as i64);
        let vs = nn::VarStore::new(self.encoder.device());
        let root = vs.root();
        match self.cfg.method {
            Method::Lora => {
                let (r, alpha) = (self.cfg.lora_r as i64, self.cfg.lora_alpha);
                self.encoder.add_lora(&root, r, alpha, &self.cfg.lora_targets)?;
            }
            Method::Bitfit => {
                self.encoder.make_trainable(&root, &|n| n.ends_with(".bias"));
            }
            Method::Full => {
                self.encoder.make_trainable(&root, &|_| true);
            }
            Method::Subspace | Method::Prefix | Method::Head | Method::Prompt => {}
        }
        self.encoder.set_product_kind(self.cfg.precision.product_kind());
        let mut s = Subspace::new(&root, &self.cfg, &self.encoder, self.task.num_outputs(), self.pooling);
        if let Some(dir) = self.cfg.init_peft.as_ref().filter(|_| import) {
            let notes = crate::import::import_peft(dir, &mut s, &self.cfg, &self.encoder)?;
            for n in notes {
                if !self.task.notes.contains(&n) {
                    self.task.notes.push(n);
                }
            }
        }
        Ok((vs, s))
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
    let (shift, why) = match cfg.method {
        Method::Prompt => (p, format!(" after the prompt of prefix_len = {p}")),
        m if m.uses_prefix() && cfg.positions == crate::model::Positions::Shifted => {
            (p, format!(" with positions = shifted after prefix_len = {p}"))
        }
        _ => (0, String::new()),
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
    if cfg.method.uses_prefix() && cfg.init == crate::config::Init::Vocab && p > encoder.max_tokens(0) {
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

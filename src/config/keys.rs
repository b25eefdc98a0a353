//! Config keys as users meet them: unknown-key errors with the closest key, and the
//! documented key list (`prefix-subspace keys`, docs/keys.md) built from [`key_docs`].

use super::*;

/// Every key of a config: those of the serialised default, and those absent when unset.
pub(super) fn config_keys() -> Vec<String> {
    let mut keys: Vec<String> = toml::Value::try_from(RunConfig::default())
        .ok()
        .and_then(|v| v.as_table().map(|t| t.keys().cloned().collect()))
        .unwrap_or_default();
    keys.extend(OPTIONAL_KEYS.iter().map(|k| k.to_string()));
    keys
}

/// The error text for an unknown key `k`: the closest key when one is close, and where to find
/// every key.
pub(super) fn unknown_key(k: &str) -> String {
    let hint = match closest_key(k) {
        Some(near) => format!("did you mean \"{near}\"? run `prefix-subspace keys` for every key"),
        None => "run `prefix-subspace keys` for every key".to_string(),
    };
    format!("unknown key \"{k}\" ({hint})")
}

/// The config key nearest to `k` by edit distance, when it is close: at most one edit per three
/// characters of `k` (at least one).
fn closest_key(k: &str) -> Option<String> {
    let most = (k.chars().count() / 3).max(1);
    config_keys()
        .into_iter()
        .map(|key| (edit_distance(k, &key), key))
        .filter(|(d, _)| *d <= most)
        .min()
        .map(|(_, key)| key)
}

/// Levenshtein distance (insertions, deletions, substitutions of one character).
pub(super) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let next = (diagonal + usize::from(ca != cb)).min(row[j] + 1).min(row[j + 1] + 1);
            diagonal = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

/// A TOML error about an unknown field (serde's "unknown field `k`, expected one of ...") with
/// the list of fields replaced by [`unknown_key`]'s hint; other errors unchanged.
pub(super) fn with_key_hint(message: &str) -> String {
    const UNKNOWN: &str = "unknown field `";
    let Some(at) = message.find(UNKNOWN) else { return message.to_string() };
    let rest = &message[at + UNKNOWN.len()..];
    let Some(end) = rest.find('`') else { return message.to_string() };
    format!("{}{}", &message[..at], unknown_key(&rest[..end]))
}

/// One config key, documented: what `prefix-subspace keys` prints and the key table of docs/keys.md
/// show (both generated from [`key_docs`]).
#[derive(Debug, Clone, PartialEq)]
pub struct KeyDoc {
    /// The group it is listed under (data, user task, model, method, training, selection and
    /// evaluation).
    pub group: &'static str,
    /// The key.
    pub key: &'static str,
    /// Its valid values: the declared range of a number ([`RANGES`]), the names of an enum,
    /// else what the string or path means.
    pub values: String,
    /// Its default as TOML writes it, or `unset` for a key absent when unset.
    pub default: String,
    /// What it does.
    pub meaning: String,
}

/// The serde names of enum values, as a config writes them.
pub(super) fn names<T: Serialize>(all: &[T]) -> Vec<String> {
    all.iter().filter_map(|v| serde_json::to_value(v).ok()?.as_str().map(str::to_string)).collect()
}

/// "a, b or c", as a list of valid values reads.
pub(super) fn or_list(items: &[String]) -> String {
    and_or(items, "or")
}

/// "a, b `word` c".
fn and_or(items: &[String], word: &str) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} {word} {last}", init.join(", ")),
    }
}

/// Every value of the enums without a list of their own (the tests check each list is whole).
pub(super) const GRANULARITIES: [Granularity; 3] =
    [Granularity::ExampleLayer, Granularity::Example, Granularity::Batch];
pub(super) const INITS: [Init; 4] = [Init::Auto, Init::Vocab, Init::Normal, Init::Text];
pub(super) const PEFT_STARTS: [PeftStart; 2] = [PeftStart::One, PeftStart::All];
pub(super) const PROTOCOLS: [Protocol; 2] = [Protocol::PerClass, Protocol::Total];
pub(super) const POOLINGS: [PoolingChoice; 4] =
    [PoolingChoice::Auto, PoolingChoice::Mean, PoolingChoice::Cls, PoolingChoice::Last];
pub(super) const POSITIONS: [PositionsChoice; 3] =
    [PositionsChoice::Auto, PositionsChoice::Unshifted, PositionsChoice::Shifted];
pub(super) const DEV_ATS: [DevAt; 2] = [DevAt::Samples, DevAt::Centroid];
pub(super) const HEADS: [HeadKind; 2] = [HeadKind::Words, HeadKind::Linear];

/// Every config key with its default, valid values and meaning, in groups (data, user task,
/// model, method, training, selection and evaluation): the one source of `prefix-subspace
/// keys` ([`keys_text`]) and of the key table of docs/keys.md ([`keys_markdown`]).
pub fn key_docs() -> Vec<KeyDoc> {
    /// How a key's valid values are found.
    enum Values {
        /// Its entry in [`RANGES`].
        Number,
        /// These enum names.
        Names(Vec<String>),
        /// In words.
        Text(String),
    }
    use Values::{Names, Number, Text};
    let text = |s: &str| Text(s.to_string());
    let boolean = || text("true or false");
    let column = || text("a column name (a field name in .jsonl)");
    let glue_tasks = crate::data::glue::TASK_NAMES.join(", ");
    // "5e-3 subspace, prefix, head and prompt; 5e-4 lora; ...": methods grouped by default.
    let mut by_lr: Vec<(f64, Vec<String>)> = Vec::new();
    for m in crate::method::ALL {
        match by_lr.iter_mut().find(|(lr, _)| *lr == m.default_lr()) {
            Some((_, ms)) => ms.push(m.name().to_string()),
            None => by_lr.push((m.default_lr(), vec![m.name().to_string()])),
        }
    }
    let lr_defaults =
        by_lr.iter().map(|(lr, ms)| format!("{lr:e} {}", and_or(ms, "and"))).collect::<Vec<_>>().join("; ");
    let defaults =
        toml::Value::try_from(RunConfig::default()).ok().and_then(|v| v.as_table().cloned()).unwrap_or_default();
    let rows: Vec<(&'static str, &'static str, Values, String)> = vec![
        ("data", "task", Text(format!("{glue_tasks}, polarity or user")),
            "The task: a GLUE task (its TSVs from `data_dir`), `polarity` (the installed demo data) or `user` (your own file: see the user-task keys).".into()),
        ("data", "data_dir", text("a folder (holding SST-2/, RTE/, ...)"),
            "Folder with the GLUE task folders; unset: `$GLUE_DIR`.".into()),
        ("data", "allow_partial_train", boolean(),
            "Allow sampling from a partial GLUE train file (`train.subset.tsv`); `results.json` then says so in `notes`.".into()),
        ("data", "protocol", Names(names(&PROTOCOLS)),
            "Few-shot protocol. `per-class` (LM-BFF): `shots` per class for train and a disjoint `shots` per class for dev; `total`: `shots` training examples in total (stratified) and a dev set of the same size.".into()),
        ("data", "shots", Number, "K: examples per class (`per-class`) or in total (`total`).".into()),
        ("data", "split_seed", Number, "Seed of the few-shot sample (which examples are drawn), distinct from `seed`.".into()),
        ("user task", "train_file", text("a .tsv, .csv or .jsonl file (with a header row for .tsv and .csv)"),
            "The training pool of `task = \"user\"` (required for it): the few-shot train and dev sets are drawn from it.".into()),
        ("user task", "test_file", text("a .tsv, .csv or .jsonl file"),
            "The user task's test set (its labels among `train_file`'s); unset: a fixed held-out fifth of `train_file`.".into()),
        ("user task", "text_a", column(), "The column of the (first) text.".into()),
        ("user task", "text_b", column(), "The column of the second text of a pair task; unset: one text per example.".into()),
        ("user task", "label_column", column(),
            "The label column: the classes are its distinct values, sorted (unless `regression`).".into()),
        ("user task", "regression", boolean(),
            "Labels are real numbers: one output, MSE loss, Pearson and Spearman correlation.".into()),
        ("user task", "task_name", Text(TASK_NAME_RULE.into()),
            "The user task's name in `results.json`, tables and bench cell ids; unset: `user`. Gives runs of different user tasks different names (only with `task = \"user\"`).".into()),
        ("model", "model", text("a model folder, a .gguf file, or the name of a model installed in the cache"),
            "The backbone (frozen except by `lora`, `bitfit` and `full`): a Hugging Face encoder folder, or a decoder LLM in a GGUF file (or a folder holding one), e.g. `smollm2-135m-instruct`; unset: the installed all-MiniLM-L6-v2.".into()),
        ("model", "template", text("a text with {s} (single-sentence tasks) or {s1} and {s2} (pair tasks), answer slot last"),
            "Decoders: the prompt each input is written into; the class score is the LM logit of its label word right after it. Unset: the task's default (docs/method.md).".into()),
        ("model", "label_words", text("a list of words, one per class in class order, each with its leading space"),
            "Decoders: the label words (a one-token word is scored by its logit; when a word has several tokens, every class is scored by its word's summed log-probability); a regression task takes two, the low pole then the high one (STS-B: ` No`, ` Yes`). Unset: the task's default.".into()),
        ("model", "max_len", Number, "Truncation length in tokens (at most what the model's position table allows).".into()),
        ("model", "pooling", Names(names(&POOLINGS)),
            "What the head reads: `auto` = the pooling the model folder declares (mean for the default model; a pooling this tool does not compute, such as max, is refused, not replaced), else the first token; `mean` over real tokens; `cls` the first token.".into()),
        ("model", "positions", Names(names(&POSITIONS)),
            "Position ids of the real tokens after a prefix: `unshifted` 0..T-1; `shifted` p..p+T-1, as Hugging Face models and PEFT do (train with it to export to PEFT); `auto` = `shifted` for `subspace` and `prefix` on a decoder, `unshifted` otherwise.".into()),
        ("model", "backbone_dropout", boolean(), "Apply the frozen model's own dropout while training (as Hugging Face's train mode does).".into()),
        ("model", "device", text("cpu, cuda or cuda:N"), "Where the run computes (does not make it another run).".into()),
        ("model", "precision", Names(names(&Precision::ALL)),
            "Number format of the backbone's dense-layer products (an encoder's six per layer, a decoder's seven): `bf16` multiplies bfloat16 inputs and weights with fp32 accumulation (attention, normalisation, prefix, head and label-word rows stay fp32); faster on GPUs and on CPUs with AMX or Zen 4's AVX512-BF16, slower on some others (`speed` measures it), changes the numbers.".into()),
        ("model", "threads", Number, "Intra-op threads (0 = libtorch's default); does not make it another run.".into()),
        ("method", "method", Names(names(&crate::method::ALL)),
            "What is trained: `subspace` (a simplex of deep prefixes and heads, the paper's method), `prefix` (one deep prefix), `lora`, `bitfit`, `head` (a linear head trained with AdamW on frozen features), `prompt` (a soft prompt) or `full` (every weight); each with a classification head (see `head`). `probe`: logistic regression (ridge for regression) fitted to convergence on frozen, L2-normalised, standardised features, C chosen on dev among 0.01, 0.1, 1, 10, 100, 1000, 10000; no gradient steps. `setfit` (encoders, classification): SetFit, contrastive fine-tuning of every encoder weight on pairs of train examples (20 rounds, batches of 16 pairs, `lr`, warm-up 10%), then `probe`'s logistic regression on the fine-tuned embeddings. Decoders only: `zero-shot` (the template, nothing trained) and `icl` (in-context learning: the train examples as demonstrations, nothing trained).".into()),
        ("method", "vertices", Number, "n: vertices of the simplex, each a per-layer prefix K/V and a head (1 for every method but `subspace`).".into()),
        ("method", "prefix_len", Number, "p: prefix length (`prompt`: soft-prompt vectors).".into()),
        ("method", "granularity", Names(names(&GRANULARITIES)),
            "How many α ~ Dirichlet(1) draws a batch uses: `example-layer` one per example and layer (and one for the head), `example` one per example, `batch` one per batch.".into()),
        ("method", "head", Names(names(&HEADS)),
            "What reads the features: `words` = a decoder's label words (the LM's output rows of their first tokens, frozen; decoders only); `linear` = a fresh trained linear head (on a decoder: on the last real token's final hidden state; `head_simplex` applies to it). Unset: `words` on a decoder with label words, except for methods `head` and `probe`; `linear` otherwise. Encoders accept only `linear`.".into()),
        ("method", "head_simplex", boolean(), "Give every vertex its own linear head, mixed with its own α (false: one shared head; a label-word head is never mixed).".into()),
        ("method", "beta", Number, "Weight β of the cos² regulariser between a random pair of vertices (0 = off).".into()),
        ("method", "prefix_dropout", Number, "Dropout on the (mixed) prefix while training.".into()),
        ("method", "head_dropout", Number, "Dropout before the head while training.".into()),
        ("method", "reparam", Number, "MLP reparameterisation width r (0 = off): embedding → Linear(H→r) → tanh → Linear(r→2LH).".into()),
        ("method", "init", Names(names(&INITS)),
            "Vertex initialisation: `auto` = `text` for `subspace` and `prefix` on a decoder (an untrained random-token prefix throws away much of its zero-shot behaviour, docs/models.md), `vocab` otherwise; `vocab` = the backbone's own keys and values of `prefix_len` random vocabulary tokens (different tokens for every vertex); `text` = the keys and values of the first `prefix_len` tokens of a different few-shot train example per vertex (on a decoder written with the template and its label word, as a demonstration); `normal` = N(0, `init_std`²).".into()),
        ("method", "init_std", Number, "Standard deviation of `init = \"normal\"`.".into()),
        ("method", "init_peft", text("a PEFT prefix-tuning adapter folder"),
            "Start from this adapter (method `subspace` or `prefix`, no `reparam`); see `init_peft_vertices`.".into()),
        ("method", "init_peft_vertices", Names(names(&PEFT_STARTS)),
            "With `init_peft`: `one` = vertex 0 starts at the adapter, the others as `init` says; `all` = every vertex at the adapter plus Gaussian noise of `init_peft_noise` × the adapter's std.".into()),
        ("method", "init_peft_noise", Number, "Relative noise around the adapter for `init_peft_vertices = \"all\"` (> 0 with several vertices: identical vertices never separate).".into()),
        ("method", "lora_r", Number, "LoRA rank r.".into()),
        ("method", "lora_alpha", Number, "LoRA alpha: the update is scaled by alpha / r.".into()),
        ("method", "lora_targets", Text(format!("a list of one or more of {}", LORA_TARGETS.join(", "))),
            "The attention projections LoRA updates (unmerged).".into()),
        ("method", "calibrate", boolean(),
            "`zero-shot` and `icl` only: contextual calibration (Zhao et al. 2021): the label words' probabilities are divided by those the model gives the content-free input `N/A` written into the template (with the demonstrations for `icl`), which removes a constant label bias.".into()),
        ("method", "icl_shots", Number, "In-context learning: demonstrations per class drawn (seeded) from the few-shot train set (at most its largest class; the demonstrations and an input of max_len tokens must fit the model's context); 0 = chosen on the dev split among 1, 2, 4, 8, 16, 32 (at most the train set, and only the counts that fit), the fewest among the best.".into()),
        ("training", "seed", Number, "Training seed: initialisation, dropout, α draws, data order.".into()),
        ("training", "lr", Number, format!("Peak learning rate of the method's parameters (AdamW); 0 = the method's default: {lr_defaults}.")),
        ("training", "head_lr", Number, "Peak learning rate of the classification head(s).".into()),
        ("training", "weight_decay", Number, "AdamW weight decay.".into()),
        ("training", "warmup_ratio", Number, "Fraction of the steps of linear warm-up (then linear decay).".into()),
        ("training", "clip", Number, "Gradient-norm clipping (0 = off).".into()),
        ("training", "batch_size", Number, "Training batch size.".into()),
        ("training", "epochs", Number, "Number of epochs (ignored when `max_steps` > 0).".into()),
        ("training", "max_steps", Number, "Optimizer steps in total (0 = use `epochs`).".into()),
        ("training", "eval_every", Number, "Evaluate on dev every this many steps (0 = once per epoch).".into()),
        ("training", "patience", Number, "Stop after this many evaluations without dev improvement (0 = never).".into()),
        ("training", "checkpoint_every", Number, "Save the resumable state every this many steps (0 = at each dev evaluation).".into()),
        ("training", "numerics", Number,
            format!("Version of the training numerics: this build trains version {NUMERICS} only (run directories without the key are version 1).")),
        ("selection and evaluation", "dev_samples", Number, "m: models sampled from the simplex per dev example for the dev metric.".into()),
        ("selection and evaluation", "dev_at", Names(names(&DEV_ATS)),
            "Dev scoring for checkpoint selection: `samples` = `dev_samples` sampled models per example (the augmented metric); `centroid` = the centroid only (with `dev_samples = 1`: ordinary selection).".into()),
        ("selection and evaluation", "ensemble_samples", Number, "Models sampled for the final test ensemble.".into()),
        ("selection and evaluation", "test_vertices", boolean(), "Also score every vertex on the test set (n more test passes; `eval --at all` always does); `bench` cells default to false: its tables report the centroid and the ensemble.".into()),
        ("selection and evaluation", "eval_batch_size", Number, "Evaluation batch size (examples × samples per forward).".into()),
        ("selection and evaluation", "test_limit", Number,
            "Evaluate only a fixed stratified sample of this many examples of each test set (0 = all; for smoke tests, said in `notes`).".into()),
    ];
    rows.into_iter()
        .map(|(group, key, values, meaning)| KeyDoc {
            group,
            key,
            values: match values {
                Number => {
                    RANGES.iter().find(|r| r.key == key).map_or_else(|| "a number".into(), |r| r.range.describe())
                }
                Names(n) => or_list(&n),
                Text(t) => t,
            },
            default: defaults.get(key).map_or_else(|| "unset".to_string(), toml::Value::to_string),
            meaning,
        })
        .collect()
}

/// The first paragraph of [`keys_text`] (README.md and docs/keys.md say the same in their own words).
const KEYS_INTRO: &str = "Every key can be set with `--set key=value` or in a TOML file given to `--config`; command-line flags win over `--set`, which wins over the file. A run writes its resolved config to `config.toml`.";

/// Every config key for a terminal (what `prefix-subspace keys` prints): per group, each key with
/// its default and valid values, then its meaning, indented.
pub fn keys_text() -> String {
    let mut out = wrap(KEYS_INTRO, 100).join("\n") + "\n";
    let mut group = "";
    for d in key_docs() {
        if d.group != group {
            group = d.group;
            out.push_str(&format!("\n{group}:\n"));
        }
        for (i, line) in wrap(&format!("{} (default: {}): {}", d.key, d.default, d.values), 98).iter().enumerate() {
            out.push_str(if i == 0 { "  " } else { "        " });
            out.push_str(line);
            out.push('\n');
        }
        for line in wrap(&d.meaning, 94) {
            out.push_str(&format!("      {line}\n"));
        }
    }
    out
}

/// Every config key as a markdown table (key, default, valid values, meaning), one bold row
/// per group: the key table of docs/keys.md between `<!-- keys:begin -->` and `<!-- keys:end -->`.
pub fn keys_markdown() -> String {
    let cell = |s: &str| s.replace('|', "\\|");
    let mut out = String::from("| key | default | values | meaning |\n|---|---|---|---|\n");
    let mut group = "";
    for d in key_docs() {
        if d.group != group {
            group = d.group;
            out.push_str(&format!("| **{group}** | | | |\n"));
        }
        let default = if d.default == "unset" { "unset".to_string() } else { format!("`{}`", d.default) };
        out.push_str(&format!("| `{}` | {} | {} | {} |\n", d.key, cell(&default), cell(&d.values), cell(&d.meaning)));
    }
    out
}

/// `text` broken into lines of at most `width` characters at spaces (a longer word stays whole).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// serde's names of number types in the words of a config file: "expected usize" → "expected
/// a non-negative integer", "expected f64" → "expected a number".
pub(super) fn plain_types(message: &str) -> String {
    const NAMES: [(&str, &str); 6] = [
        ("expected usize", "expected a non-negative integer"),
        ("expected u64", "expected a non-negative integer"),
        ("expected u32", "expected a non-negative integer"),
        ("expected i64", "expected an integer"),
        ("expected f64", "expected a number"),
        ("expected f32", "expected a number"),
    ];
    NAMES.iter().fold(message.to_string(), |m, (rust, plain)| m.replace(rust, plain))
}

pub(super) fn one_line(s: &str) -> String {
    s.split('\n').map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}

/// A TOML error of `text` in one line: `line L, column C: what (`the line`)`, from the
/// error's span (its message alone when it has none). The toml crate's own text draws the
/// line with a caret under it, which a one-line message cannot show.
pub fn toml_error(e: &toml::de::Error, text: &str) -> String {
    let message = one_line(e.message());
    let Some(before) = e.span().and_then(|span| text.get(..span.start)) else { return message };
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    match text[line_start..].lines().next().map(str::trim).filter(|l| !l.is_empty()) {
        Some(shown) => format!("line {line}, column {column}: {message} (`{shown}`)"),
        None => format!("line {line}, column {column}: {message}"),
    }
}

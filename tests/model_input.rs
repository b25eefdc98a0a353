//! Bad model folders give one clear error instead of a panic (config.json values, integer
//! weights, unreadable safetensors files, a tokenizer larger than the embedding table), and
//! `Encoder::max_tokens` is the exact number of tokens the position table allows.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::path::Path;

use prefix_subspace::model::load::Weights;
use prefix_subspace::model::{check_vocab, Batch, Config, Encoder, Forward, Positions, TextTokenizer};
use serde_json::{json, Value};
use tch::{Device, Kind, Tensor};

mod common;

const VOCAB: i64 = 50;
const HIDDEN: i64 = 16;
const MAX_POS: i64 = 20;

/// A valid tiny config of `model_type` (2 layers, hidden 16, 4 heads, 20 positions).
fn config(model_type: &str) -> Value {
    let mut c = json!({
        "model_type": model_type, "vocab_size": VOCAB, "hidden_size": HIDDEN, "num_hidden_layers": 2,
        "num_attention_heads": 4, "intermediate_size": 32, "max_position_embeddings": MAX_POS,
        "type_vocab_size": 2, "pad_token_id": 0, "layer_norm_eps": 1e-12
    });
    if model_type != "bert" {
        c["type_vocab_size"] = json!(1);
        c["pad_token_id"] = json!(1);
    }
    c
}

/// `c` with `key` set to `value`.
fn with(mut c: Value, key: &str, value: Value) -> Value {
    c[key] = value;
    c
}

/// The tensor names and shapes of the checkpoint `c` describes (each family's names; as many
/// layers as `num_hidden_layers` says, none when it is 0 or negative).
fn parameters(c: &Value) -> Vec<(String, Vec<i64>)> {
    let get = |k: &str| c[k].as_i64().unwrap();
    let (v, h, f, mpnet) =
        (get("vocab_size"), get("hidden_size"), get("intermediate_size"), c["model_type"] == "mpnet");
    let mut shapes: Vec<(String, Vec<i64>)> = vec![
        ("embeddings.word_embeddings.weight".into(), vec![v, h]),
        ("embeddings.position_embeddings.weight".into(), vec![get("max_position_embeddings"), h]),
        ("embeddings.LayerNorm.weight".into(), vec![h]),
        ("embeddings.LayerNorm.bias".into(), vec![h]),
    ];
    if mpnet {
        shapes.push(("encoder.relative_attention_bias.weight".into(), vec![32, get("num_attention_heads")]));
    } else {
        shapes.push(("embeddings.token_type_embeddings.weight".into(), vec![get("type_vocab_size"), h]));
    }
    let (q, k, val, o, ln) = if mpnet {
        ("attention.attn.q", "attention.attn.k", "attention.attn.v", "attention.attn.o", "attention.LayerNorm")
    } else {
        (
            "attention.self.query",
            "attention.self.key",
            "attention.self.value",
            "attention.output.dense",
            "attention.output.LayerNorm",
        )
    };
    for l in 0..get("num_hidden_layers").max(0) {
        for (n, out, inp) in
            [(q, h, h), (k, h, h), (val, h, h), (o, h, h), ("intermediate.dense", f, h), ("output.dense", h, f)]
        {
            shapes.push((format!("encoder.layer.{l}.{n}.weight"), vec![out, inp]));
            shapes.push((format!("encoder.layer.{l}.{n}.bias"), vec![out]));
        }
        for n in [ln, "output.LayerNorm"] {
            shapes.push((format!("encoder.layer.{l}.{n}.weight"), vec![h]));
            shapes.push((format!("encoder.layer.{l}.{n}.bias"), vec![h]));
        }
    }
    shapes.sort();
    shapes
}

/// Random weights for `c` (unit LayerNorm scales).
fn weights(c: &Value) -> Vec<(String, Tensor)> {
    common::random_weights(parameters(c), 0.3)
}

/// vocab.txt with `n` tokens: the BERT special tokens, then `w5`, `w6`, ... (token `wI` has id I).
fn write_vocab(dir: &Path, n: i64) {
    let mut tokens: Vec<String> =
        ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"].iter().map(|s| s.to_string()).collect();
    tokens.extend((5..n).map(|i| format!("w{i}")));
    std::fs::write(dir.join("vocab.txt"), tokens.join("\n") + "\n").unwrap();
}

/// A model folder: config.json `c`, weights `w` (model.safetensors), a vocab.txt of `vocab` tokens.
fn write_folder(dir: &Path, c: &Value, w: &[(String, Tensor)], vocab: i64) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("config.json"), c.to_string()).unwrap();
    Tensor::write_safetensors(w, dir.join("model.safetensors")).unwrap();
    write_vocab(dir, vocab);
}

/// The error of loading a model folder whose config.json is `c` (weights that match it).
fn load_error(c: &Value) -> String {
    let tmp = tempfile::tempdir().unwrap();
    write_folder(tmp.path(), c, &weights(c), VOCAB);
    let e = Encoder::load(tmp.path(), Device::Cpu).expect_err("a bad config.json is refused").to_string();
    assert!(!e.contains('\n'), "one line: {e}");
    assert!(e.contains("config.json"), "names the file: {e}");
    e
}

/// An encoder of config `c` built in memory.
fn encoder(c: &Value) -> Encoder {
    let cfg: Config = serde_json::from_value(c.clone()).unwrap();
    let mut w = Weights::from_tensors(Path::new("tiny"), weights(c).into_iter().collect::<HashMap<_, _>>());
    Encoder::from_weights(cfg, &mut w, Device::Cpu).unwrap()
}

/// Runs the prefix-subspace binary.
fn cli(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_prefix-subspace")).args(args).output().unwrap()
}

/// The one-line error of a failed CLI run (no panic, no backtrace).
fn cli_error(o: &std::process::Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr).trim().to_string();
    assert!(!o.status.success(), "expected a failure, got success: {err}");
    assert_ne!(o.status.code(), Some(101), "panicked: {err}");
    assert!(!err.contains("panicked") && !err.contains('\n'), "one line, no panic: {err}");
    err
}

#[test]
fn zero_attention_heads_is_an_error_not_a_division_by_zero() {
    let c = with(config("bert"), "num_attention_heads", json!(0));
    // No weights needed: the config is refused before any is read.
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("config.json"), c.to_string()).unwrap();
    let e = Encoder::load(tmp.path(), Device::Cpu).unwrap_err().to_string();
    assert!(e.contains("config.json") && e.contains("num_attention_heads is 0, expected at least 1"), "{e}");
    // Config::from_file says the same.
    let e = Config::from_file(&tmp.path().join("config.json")).unwrap_err().to_string();
    assert!(e.contains("num_attention_heads is 0"), "{e}");
}

#[test]
fn zero_negative_or_absurd_layer_counts_are_refused() {
    for (layers, want) in [
        (json!(0), "num_hidden_layers is 0, expected at least 1"),
        (json!(-1), "num_hidden_layers is -1, expected at least 1"),
        (json!(1001), "num_hidden_layers is 1001, expected at most 1000"),
    ] {
        let c = with(config("bert"), "num_hidden_layers", layers);
        let e = if want.contains("1001") {
            // (1001 layers of weights would only slow the test; the config is refused first.)
            let tmp = tempfile::tempdir().unwrap();
            std::fs::write(tmp.path().join("config.json"), c.to_string()).unwrap();
            Encoder::load(tmp.path(), Device::Cpu).unwrap_err().to_string()
        } else {
            load_error(&c)
        };
        assert!(e.contains(want), "{e}");
    }
}

#[test]
fn other_bad_config_values_are_refused_with_key_value_and_expectation() {
    let cases: Vec<(&str, Value, &str, &str)> = vec![
        ("bert", json!({"hidden_size": 18}), "hidden_size 18 is not a multiple of num_attention_heads 4", ""),
        (
            "bert",
            json!({"layer_norm_eps": -1e-12}),
            "layer_norm_eps is -0.000000000001, expected a finite number above 0",
            "",
        ),
        ("bert", json!({"layer_norm_eps": 0.0}), "layer_norm_eps is 0", "above 0"),
        ("bert", json!({"hidden_dropout_prob": 1.0}), "hidden_dropout_prob is 1", "[0, 1)"),
        ("bert", json!({"attention_probs_dropout_prob": -0.1}), "attention_probs_dropout_prob is -0.1", "[0, 1)"),
        ("bert", json!({"pad_token_id": 50}), "pad_token_id is 50", "[0, 50)"),
        ("bert", json!({"pad_token_id": -1}), "pad_token_id is -1", "[0, 50)"),
        ("bert", json!({"type_vocab_size": 0}), "type_vocab_size is 0", "at least 1"),
        ("bert", json!({"intermediate_size": 0}), "intermediate_size is 0", "at least 1"),
        ("bert", json!({"max_position_embeddings": 0}), "max_position_embeddings is 0", "at least 1"),
        ("roberta", json!({"max_position_embeddings": 2}), "max_position_embeddings is 2, expected more than 2", ""),
        ("mpnet", json!({"max_position_embeddings": 1}), "max_position_embeddings is 1, expected more than 2", ""),
    ];
    for (family, changes, want, also) in cases {
        let mut c = config(family);
        for (k, v) in changes.as_object().unwrap() {
            c[k] = v.clone();
        }
        let e = load_error(&c);
        assert!(e.contains(want) && e.contains(also), "{family} {changes}: {e}");
    }
    // vocab_size and hidden_size 0: refused before any weight is looked at.
    for key in ["vocab_size", "hidden_size"] {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("config.json"), with(config("bert"), key, json!(0)).to_string()).unwrap();
        let e = Config::from_file(&tmp.path().join("config.json")).unwrap_err().to_string();
        assert!(e.contains(&format!("{key} is 0, expected at least 1")), "{e}");
    }
}

#[test]
fn configs_built_in_memory_are_checked_too() {
    let c = with(config("bert"), "num_attention_heads", json!(0));
    let cfg: Config = serde_json::from_value(c.clone()).unwrap();
    let mut w = Weights::from_tensors(Path::new("in-memory"), weights(&config("bert")).into_iter().collect());
    let e = Encoder::from_weights(cfg, &mut w, Device::Cpu).unwrap_err().to_string();
    assert!(e.contains("in-memory") && e.contains("num_attention_heads is 0"), "{e}");
}

#[test]
fn an_integer_weight_tensor_is_refused_naming_file_tensor_and_dtype() {
    let c = config("bert");
    let tmp = tempfile::tempdir().unwrap();
    let mut w = weights(&c);
    let name = "encoder.layer.0.attention.self.query.weight";
    for (n, t) in w.iter_mut() {
        if n == name {
            *t = t.to_kind(Kind::Int);
        }
    }
    write_folder(tmp.path(), &c, &w, VOCAB);
    let e = Encoder::load(tmp.path(), Device::Cpu).expect_err("an I32 weight is refused").to_string();
    assert!(!e.contains('\n'), "{e}");
    assert!(e.contains("model.safetensors") && e.contains(name) && e.contains("I32"), "{e}");
    assert!(e.contains("floating point"), "{e}");
    // The CLI says the same in one line.
    let err = cli_error(&cli(&["embed", "--model", tmp.path().to_str().unwrap(), "w7 w8"]));
    assert!(err.contains(name) && err.contains("I32"), "{err}");
}

#[test]
fn integer_tensors_stay_readable_for_the_runs_own_files() {
    // A resume file stores the training position as int64: `into_map` must keep it.
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("resume.safetensors");
    let tensors = vec![
        ("position".to_string(), Tensor::from_slice(&[1i64, 2, 3])),
        ("w".to_string(), Tensor::ones([2], (Kind::Float, Device::Cpu))),
    ];
    Tensor::write_safetensors(&tensors, &path).unwrap();
    let map = Weights::read(&path, Device::Cpu).unwrap().into_map();
    assert_eq!(map["position"].kind(), Kind::Int64);
    assert_eq!(Vec::<i64>::try_from(&map["position"]).unwrap(), vec![1, 2, 3]);
    // But `take` refuses it as a weight.
    let mut w = Weights::read(&path, Device::Cpu).unwrap();
    let e = w.take("position", &[3]).unwrap_err().to_string();
    assert!(e.contains("resume.safetensors") && e.contains("\"position\"") && e.contains("I64"), "{e}");
    assert!(w.take("w", &[2]).is_ok());
}

#[test]
fn a_folder_that_is_no_model_or_another_model_is_called_so_whatever_the_method() {
    // An empty folder (here named like a GGUF file) is neither a decoder nor an encoder: every
    // method, those that need a decoder included, says it has no config.json.
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("smollm2.gguf");
    std::fs::create_dir(&model).unwrap();
    let glue = common::glue_dir();
    // `train` of `method` on the folder: its one-line error, and nothing written.
    let refused = |method: &str| {
        let out = tmp.path().join(format!("run-{method}"));
        let (glue, model, out_s) = (glue.to_str().unwrap(), model.to_str().unwrap(), out.to_str().unwrap());
        let o =
            cli(&["train", "--task", "sst2", "--data-dir", glue, "--model", model, "--method", method, "--out", out_s]);
        let e = cli_error(&o);
        assert!(!e.contains("is an encoder"), "{method}: {e}");
        assert!(!out.exists(), "{method}: nothing written");
        e
    };
    for method in ["subspace", "zero-shot", "icl"] {
        let e = refused(method);
        assert!(
            e.contains("smollm2.gguf: model folder has no config.json") && e.contains(".gguf file"),
            "{method}: {e}"
        );
    }
    // A folder of an architecture the tool does not load (here Phi-3, whose config.json lacks
    // the encoder's keys) is named by its model_type, whatever the method.
    std::fs::write(model.join("config.json"), r#"{"model_type": "phi3", "hidden_size": 3072}"#).unwrap();
    for method in ["subspace", "zero-shot"] {
        let e = refused(method);
        assert!(e.contains("config.json: unsupported architecture model_type \"phi3\""), "{method}: {e}");
        assert!(!e.contains("missing field"), "{method}: {e}");
    }
}

#[test]
fn a_corrupt_run_file_is_not_called_a_download() {
    let tmp = tempfile::tempdir().unwrap();
    for name in ["checkpoint.safetensors", "resume.safetensors"] {
        let path = tmp.path().join(name);
        std::fs::write(&path, b"\x08\x00\x00\x00\x00\x00\x00\x00{\"a\":").unwrap();
        let e = Weights::read(&path, Device::Cpu).unwrap_err().to_string();
        assert!(!e.contains('\n'), "{e}");
        assert!(e.contains(name) && e.contains("truncated or corrupted"), "{e}");
        assert!(!e.contains("download"), "a run's own file is not downloaded: {e}");
    }
    // A model's weights are: there the advice stays.
    let c = config("bert");
    write_folder(tmp.path(), &c, &weights(&c), VOCAB);
    let st = tmp.path().join("model.safetensors");
    let bytes = std::fs::read(&st).unwrap();
    std::fs::write(&st, &bytes[..bytes.len() / 2]).unwrap();
    let e = Encoder::load(tmp.path(), Device::Cpu).unwrap_err().to_string();
    assert!(e.contains("model.safetensors") && e.contains("download it again"), "{e}");
}

#[test]
fn a_vocabulary_larger_than_the_embedding_table_is_refused() {
    let c = config("bert");
    let tmp = tempfile::tempdir().unwrap();
    write_folder(tmp.path(), &c, &weights(&c), VOCAB + 10);
    let enc = Encoder::load(tmp.path(), Device::Cpu).unwrap();
    let tok = TextTokenizer::from_dir(tmp.path(), 16).unwrap();
    assert_eq!(tok.vocab_size(), VOCAB + 10);
    let e = check_vocab(&tok, &enc.config, tmp.path()).unwrap_err().to_string();
    assert!(!e.contains('\n'), "{e}");
    assert!(e.contains("vocab.txt") && e.contains("60 token ids") && e.contains("vocab_size 50"), "{e}");
    assert!(e.contains("config.json"), "{e}");
    // Through the CLI: without the check, token w55 (id 55) indexes past the 50 embeddings.
    let err = cli_error(&cli(&["embed", "--model", tmp.path().to_str().unwrap(), "w7 w55"]));
    assert!(err.contains("vocab.txt") && err.contains("vocab_size 50"), "{err}");
}

#[test]
fn a_vocabulary_that_fits_passes_and_embeds() {
    let c = config("bert");
    let tmp = tempfile::tempdir().unwrap();
    write_folder(tmp.path(), &c, &weights(&c), VOCAB);
    let enc = Encoder::load(tmp.path(), Device::Cpu).unwrap();
    let tok = TextTokenizer::from_dir(tmp.path(), 16).unwrap();
    assert_eq!(tok.vocab_size(), VOCAB);
    check_vocab(&tok, &enc.config, tmp.path()).unwrap();
    let o = cli(&["embed", "--model", tmp.path().to_str().unwrap(), "w7 w49"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let row: Vec<f64> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(row.len(), HIDDEN as usize);
}

#[test]
fn added_tokens_of_a_tokenizer_json_count_towards_its_size() {
    use tokenizers::models::wordpiece::WordPiece;
    use tokenizers::{AddedToken, Tokenizer};
    let c = config("bert");
    let tmp = tempfile::tempdir().unwrap();
    write_folder(tmp.path(), &c, &weights(&c), VOCAB);
    let wp = WordPiece::from_file(&tmp.path().join("vocab.txt").to_string_lossy()).build().unwrap();
    let mut t = Tokenizer::new(wp);
    t.add_special_tokens([AddedToken::from("<extra>", true)]).unwrap(); // id 50
    t.save(tmp.path().join("tokenizer.json"), false).unwrap();
    let tok = TextTokenizer::from_dir(tmp.path(), 16).unwrap();
    assert_eq!(tok.vocab_size(), VOCAB + 1);
    let cfg = Config::from_file(&tmp.path().join("config.json")).unwrap();
    let e = check_vocab(&tok, &cfg, tmp.path()).unwrap_err().to_string();
    assert!(e.contains("tokenizer.json") && e.contains("51 token ids") && e.contains("vocab_size 50"), "{e}");
}

/// `(b, t)` token ids in `[low, VOCAB)` (no padding id for RoBERTa/MPNet when low > 1).
fn batch(b: i64, t: i64, low: i64) -> Batch {
    Batch {
        input_ids: Tensor::randint_low(low, VOCAB, [b, t], (Kind::Int64, Device::Cpu)),
        attention_mask: Tensor::ones([b, t], (Kind::Int64, Device::Cpu)),
        token_type_ids: Tensor::zeros([b, t], (Kind::Int64, Device::Cpu)),
    }
}

/// Whether `f` runs without libtorch failing (an index past the position table panics).
fn runs(f: impl FnOnce() -> Tensor) -> bool {
    std::panic::catch_unwind(AssertUnwindSafe(|| tch::no_grad(f))).is_ok()
}

/// Checks that exactly `max_tokens(shift)` tokens fit, for plain inputs, shifted prefixes,
/// prompts and vocabulary-initialised prefixes.
fn check_limits(enc: &Encoder) {
    let (l, h) = (enc.num_layers(), enc.hidden_size());
    let m = enc.max_tokens(0);
    // Plain inputs (and an unshifted prefix, whatever its length).
    assert!(runs(|| enc.forward(&batch(2, m, 3), None, Forward::default())), "{m} tokens fit");
    assert!(!runs(|| enc.forward(&batch(2, m + 1, 3), None, Forward::default())), "{} tokens do not", m + 1);
    let long_prefix = Tensor::randn([l, 2, 1, 30, h], (Kind::Float, Device::Cpu));
    assert!(runs(|| enc.forward(&batch(2, m, 3), Some(&long_prefix), Forward::default())));
    // A shifted prefix of p.
    for p in [1, 3] {
        let prefix = Tensor::randn([l, 2, 1, p, h], (Kind::Float, Device::Cpu));
        let opts = Forward { positions: Positions::Shifted, ..Forward::default() };
        let n = enc.max_tokens(p);
        assert_eq!(n, m - p);
        assert!(runs(|| enc.forward(&batch(2, n, 3), Some(&prefix), opts)), "shifted by {p}: {n} tokens fit");
        assert!(!runs(|| enc.forward(&batch(2, n + 1, 3), Some(&prefix), opts)), "shifted by {p}: {} do not", n + 1);
    }
    // A prompt of q.
    let q = 4;
    let prompt = Tensor::randn([q, h], (Kind::Float, Device::Cpu));
    let n = enc.max_tokens(q);
    let prompted = |t: i64| {
        let (x, mask) = enc.embed_prompted(&batch(2, t, 3), &prompt, false);
        enc.forward_embedded(&x, &mask, None, Forward::default())
    };
    assert!(runs(|| prompted(n)), "after a prompt of {q}: {n} tokens fit");
    assert!(!runs(|| prompted(n + 1)), "after a prompt of {q}: {} do not", n + 1);
    // init = vocab: the keys and values of p tokens computed as one plain input.
    let p = enc.max_vocab_prefix_len();
    assert_eq!(p, m);
    assert!(runs(|| enc.keys_values(&batch(3, p, 0))), "prefix_len {p} with init = vocab");
    assert!(!runs(|| enc.keys_values(&batch(3, p + 1, 3))), "prefix_len {} with init = vocab", p + 1);
    // No negative limit.
    assert_eq!(enc.max_tokens(m + 5), 0);
}

#[test]
fn max_tokens_is_exact_for_bert() {
    let enc = encoder(&config("bert"));
    assert_eq!(enc.max_tokens(0), MAX_POS);
    assert_eq!(enc.max_tokens(3), MAX_POS - 3);
    check_limits(&enc);
}

#[test]
fn max_tokens_is_exact_for_roberta() {
    let enc = encoder(&config("roberta"));
    assert_eq!(enc.max_tokens(0), MAX_POS - 2); // positions start after pad_token_id 1
    assert_eq!(enc.max_tokens(3), MAX_POS - 5);
    check_limits(&enc);
    // The offset follows pad_token_id.
    let enc = encoder(&with(config("roberta"), "pad_token_id", json!(0)));
    assert_eq!(enc.max_tokens(0), MAX_POS - 1);
    check_limits(&enc);
}

#[test]
fn max_tokens_is_exact_for_mpnet() {
    // MPNet's padding index is 1 whatever pad_token_id says.
    for pad in [1, 0] {
        let enc = encoder(&with(config("mpnet"), "pad_token_id", json!(pad)));
        assert_eq!(enc.max_tokens(0), MAX_POS - 2);
        assert_eq!(enc.max_tokens(2), MAX_POS - 4);
        check_limits(&enc);
    }
}

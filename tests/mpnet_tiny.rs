//! MPNet loading (with an `mpnet.` name prefix), its relative-position bias and its prefix
//! wiring, on a tiny checkpoint written here (pseudo-random weights from a formula); the
//! outputs are compared with Hugging Face values (scripts/reference/make_tiny_mpnet_fixture.py:
//! same config, token ids and weight formula as below).

mod common;

use std::path::Path;

use prefix_subspace::model::{Arch, Batch, Encoder, Forward, Positions};
use tch::nn;
use tch::{Device, Kind, Tensor};

// Keep in sync with scripts/reference/make_tiny_mpnet_fixture.py.
const VOCAB: i64 = 40;
const HIDDEN: i64 = 16;
const LAYERS: i64 = 2;
const HEADS: i64 = 4;
const FFN: i64 = 32;
const MAX_POS: i64 = 160;

/// The parameter names and shapes of HF `MPNetModel` without its pooler, sorted.
fn parameters() -> Vec<(String, Vec<i64>)> {
    let mut shapes: Vec<(String, Vec<i64>)> = vec![
        ("embeddings.word_embeddings.weight".into(), vec![VOCAB, HIDDEN]),
        ("embeddings.position_embeddings.weight".into(), vec![MAX_POS, HIDDEN]),
        ("embeddings.LayerNorm.weight".into(), vec![HIDDEN]),
        ("embeddings.LayerNorm.bias".into(), vec![HIDDEN]),
        ("encoder.relative_attention_bias.weight".into(), vec![32, HEADS]),
    ];
    for l in 0..LAYERS {
        for (n, o, i) in [
            ("attention.attn.q", HIDDEN, HIDDEN),
            ("attention.attn.k", HIDDEN, HIDDEN),
            ("attention.attn.v", HIDDEN, HIDDEN),
            ("attention.attn.o", HIDDEN, HIDDEN),
            ("intermediate.dense", FFN, HIDDEN),
            ("output.dense", HIDDEN, FFN),
        ] {
            shapes.push((format!("encoder.layer.{l}.{n}.weight"), vec![o, i]));
            shapes.push((format!("encoder.layer.{l}.{n}.bias"), vec![o]));
        }
        for n in ["attention.LayerNorm", "output.LayerNorm"] {
            shapes.push((format!("encoder.layer.{l}.{n}.weight"), vec![HIDDEN]));
            shapes.push((format!("encoder.layer.{l}.{n}.bias"), vec![HIDDEN]));
        }
    }
    shapes.sort();
    shapes
}

fn write_checkpoint(dir: &Path) {
    let config = serde_json::json!({
        "model_type": "mpnet", "vocab_size": VOCAB, "hidden_size": HIDDEN, "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS, "intermediate_size": FFN, "max_position_embeddings": MAX_POS,
        "relative_attention_num_buckets": 32, "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2,
        "layer_norm_eps": 1e-5, "hidden_act": "gelu"
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let weights: Vec<(String, Tensor)> = parameters()
        .iter()
        .enumerate()
        .map(|(k, (name, shape))| {
            let numel: i64 = shape.iter().product();
            let v: Vec<f32> = (0..numel)
                .map(|j| {
                    let s = (0.37 * j as f64 + 1.3 * k as f64 + 0.1).sin();
                    (if name.ends_with("LayerNorm.weight") { 1.0 + 0.1 * s } else { 0.5 * s }) as f32
                })
                .collect();
            (format!("mpnet.{name}"), Tensor::from_slice(&v).view(shape.as_slice()))
        })
        .collect();
    Tensor::write_safetensors(&weights, dir.join("model.safetensors")).unwrap();
}

fn load() -> (tempfile::TempDir, Encoder) {
    let tmp = tempfile::tempdir().unwrap();
    write_checkpoint(tmp.path());
    let enc = Encoder::load(tmp.path(), Device::Cpu).unwrap();
    (tmp, enc)
}

fn reference() -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny_mpnet_reference.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A right-padded batch (padding id 1, MPNet's) of token-id rows.
fn batch(rows: &[Vec<i64>]) -> Batch {
    let t = rows.iter().map(Vec::len).max().unwrap();
    let padded = |r: &Vec<i64>, real: i64, pad: i64| -> Vec<i64> {
        r.iter().map(|&id| if real < 0 { id } else { real }).chain(std::iter::repeat(pad)).take(t).collect()
    };
    let ids: Vec<Vec<i64>> = rows.iter().map(|r| padded(r, -1, 1)).collect();
    let mask: Vec<Vec<i64>> = rows.iter().map(|r| padded(r, 1, 0)).collect();
    Batch {
        input_ids: Tensor::from_slice2(&ids),
        attention_mask: Tensor::from_slice2(&mask),
        token_type_ids: Tensor::zeros([rows.len() as i64, t as i64], (Kind::Int64, Device::Cpu)),
    }
}

/// `<s> w… </s>` with n words from a formula.
fn sentence(seed: i64, n: i64) -> Vec<i64> {
    let mut v = vec![0];
    v.extend((0..n).map(|j| 3 + (5 * j + 3 * seed) % (VOCAB - 3)));
    v.push(2);
    v
}

#[test]
fn tiny_mpnet_matches_hugging_face_with_padding_and_every_bucket() {
    let fx = reference();
    let names: Vec<String> = serde_json::from_value(fx["parameters"].clone()).unwrap();
    assert_eq!(names, parameters().into_iter().map(|(n, _)| n).collect::<Vec<_>>(), "same parameters as HF");
    let (_tmp, enc) = load();
    assert_eq!(enc.arch, Arch::Mpnet);
    assert!(enc.embeddings.token_type_embeddings.is_none());
    let ints = |k: &str| -> Tensor {
        let rows: Vec<Vec<i64>> = serde_json::from_value(fx[k].clone()).unwrap();
        Tensor::from_slice2(&rows)
    };
    let (ids, mask) = (ints("input_ids"), ints("attention_mask"));
    // Token types are ignored by MPNet: give non-zero ones to prove it.
    let b = Batch { input_ids: ids, attention_mask: mask.shallow_clone(), token_type_ids: mask.shallow_clone() };
    let shape: Vec<i64> = serde_json::from_value(fx["shape"].clone()).unwrap();
    let h: Vec<f32> = serde_json::from_value(fx["last_hidden_state"].clone()).unwrap();
    let reference = Tensor::from_slice(&h).view(shape.as_slice());
    let out = tch::no_grad(|| enc.forward(&b, None, Forward::default()));
    let m = mask.to_kind(Kind::Float).unsqueeze(-1);
    let diff = common::max_abs_diff(&(&out * &m), &(&reference * &m));
    println!("tiny MPNet vs HF MPNetModel: max abs diff {diff:.3e} over {shape:?}");
    assert!(diff <= 1e-4, "MPNet hidden states differ from HF by {diff}");
}

#[test]
fn relative_position_buckets_match_hugging_face() {
    let fx = reference();
    let expected: Vec<i64> = serde_json::from_value(fx["buckets"].clone()).unwrap(); // relative -200..=200
    let (_tmp, mut enc) = load();
    // A table whose every head reads back the bucket index.
    enc.relative_attention_bias =
        Some(Tensor::arange(32, (Kind::Float, Device::Cpu)).unsqueeze(1).expand([32, HEADS], true).contiguous());
    let bias = enc.relative_position_bias(201).unwrap();
    assert_eq!(bias.size(), vec![1, HEADS, 201, 201]);
    // Query 200 against keys 0..=200: relative positions (key - query) -200..=0; query 0: 0..=200.
    let row_last: Vec<f32> = Vec::try_from(bias.get(0).get(HEADS - 1).get(200)).unwrap();
    let row_first: Vec<f32> = Vec::try_from(bias.get(0).get(0).get(0)).unwrap();
    let ours: Vec<i64> = row_last.iter().chain(row_first.iter().skip(1)).map(|&x| x as i64).collect::<Vec<_>>();
    assert_eq!(ours, expected);
    let distinct: std::collections::BTreeSet<i64> = ours.iter().copied().collect();
    // Every bucket but 16 (distance 0 is bucket 0, so "after, distance 0" never occurs).
    assert_eq!(distinct.len(), 31, "-200..200 reaches every bucket: {distinct:?}");
    assert!(!distinct.contains(&16));
}

#[test]
fn a_length_zero_prefix_equals_no_prefix() {
    let (_tmp, enc) = load();
    let x = batch(&[sentence(1, 12), sentence(2, 4)]);
    let empty = Tensor::zeros([LAYERS, 2, 2, 0, HIDDEN], (Kind::Float, Device::Cpu));
    let a = tch::no_grad(|| enc.forward(&x, None, Forward::default()));
    let b = tch::no_grad(|| enc.forward(&x, Some(&empty), Forward::default()));
    assert_eq!(common::max_abs_diff(&a, &b), 0.0);
}

/// The prefix equivalence of tests/prefix_attention.rs (context K/V as a prefix = running
/// [c; x] with c attending only to c) does NOT hold as such for MPNet: in the concatenation x
/// sees c through the relative-position bias, while prefix columns get no bias (by design: a
/// prefix has no position). It holds exactly once the concatenation's bias between x's
/// queries and c's keys is removed, which pins down what the prefix computes.
#[test]
fn context_as_prefix_equals_the_concatenation_without_the_bias_between_x_and_c() {
    let (_tmp, enc) = load();
    for (c, x) in [(sentence(3, 9), sentence(4, 5)), (sentence(5, 2), sentence(6, 30))] {
        let (cb, xb) = (batch(std::slice::from_ref(&c)), batch(std::slice::from_ref(&x)));
        let (tc, tx) = (c.len() as i64, x.len() as i64);
        let prefix = tch::no_grad(|| enc.keys_values(&cb));
        assert_eq!(prefix.size(), vec![LAYERS, 2, 1, tc, HIDDEN]);
        let opts = Forward { dropout: false, positions: Positions::Shifted };
        let with_prefix = tch::no_grad(|| enc.forward(&xb, Some(&prefix), opts));

        let cat = batch(&[c.iter().chain(x.iter()).copied().collect()]);
        let s = tc + tx;
        let allowed = Tensor::ones([s, s], (Kind::Float, Device::Cpu));
        let _ = allowed.narrow(0, 0, tc).narrow(1, tc, tx).fill_(0.0); // c does not see x
        let mask = ((allowed.neg() + 1.0) * f64::from(f32::MIN)).view([1, 1, s, s]);
        let run = |additive: &Tensor| {
            tch::no_grad(|| enc.run_layers(&enc.embed(&cat, 0, false), additive, None, Forward::default()))
                .narrow(1, tc, tx)
        };
        let plain = common::max_abs_diff(&with_prefix, &run(&mask));
        assert!(plain > 1e-3, "with the bias between x and c the outputs should differ ({plain})");
        // Cancel the bias of x's queries on c's keys: what a prefix gets.
        let bias = enc.relative_position_bias(s).unwrap();
        let cancel = Tensor::zeros([1, HEADS, s, s], (Kind::Float, Device::Cpu));
        cancel.narrow(2, tc, tx).narrow(3, 0, tc).copy_(&bias.narrow(2, tc, tx).narrow(3, 0, tc).neg());
        let diff = common::max_abs_diff(&with_prefix, &run(&(&mask + &cancel)));
        assert!(diff < 1e-4, "prefix vs concatenation without the x→c bias differ by {diff}");
    }
}

#[test]
fn each_example_uses_its_own_prefix_with_padding() {
    let _rng = common::torch_rng_lock();
    let (_tmp, enc) = load();
    tch::manual_seed(0);
    let p = 3;
    let prefix = Tensor::randn([LAYERS, 2, 2, p, HIDDEN], (Kind::Float, Device::Cpu));
    let rows = [sentence(7, 20), sentence(8, 3)];
    let both = batch(&rows);
    for positions in [Positions::Unshifted, Positions::Shifted] {
        let opts = Forward { dropout: false, positions };
        let out = tch::no_grad(|| enc.forward(&both, Some(&prefix), opts));
        for (i, row) in rows.iter().enumerate() {
            let one = batch(std::slice::from_ref(row));
            let t = row.len() as i64;
            let alone = tch::no_grad(|| enc.forward(&one, Some(&prefix.narrow(2, i as i64, 1)), opts));
            let diff = common::max_abs_diff(&alone, &out.narrow(0, i as i64, 1).narrow(1, 0, t));
            assert!(diff < 1e-4, "{positions:?}, example {i}: batched vs alone differ by {diff}");
        }
    }
    let none = tch::no_grad(|| enc.forward(&both, None, Forward::default()));
    let with = tch::no_grad(|| enc.forward(&both, Some(&prefix), Forward::default()));
    assert!(common::max_abs_diff(&none, &with) > 1e-2, "the prefix matters");
}

#[test]
fn gradients_flow_to_the_prefix_and_never_to_the_weights() {
    let _rng = common::torch_rng_lock();
    let (_tmp, enc) = load();
    tch::manual_seed(1);
    let prefix = (Tensor::randn([LAYERS, 2, 1, 3, HIDDEN], (Kind::Float, Device::Cpu)) * 0.1).set_requires_grad(true);
    let x = batch(&[sentence(9, 6), sentence(10, 1)]);
    let out = enc.forward(&x, Some(&prefix), Forward { dropout: true, positions: Positions::Unshifted });
    out.pow_tensor_scalar(2).mean(Kind::Float).backward();
    let g = prefix.grad();
    for l in 0..LAYERS {
        for kv in 0..2 {
            assert!(g.get(l).get(kv).abs().sum(Kind::Float).double_value(&[]) > 0.0, "layer {l} kv {kv}");
        }
    }
    for (name, t) in enc.named_tensors() {
        assert!(!t.requires_grad() && !t.grad().defined(), "{name} got a gradient");
    }
}

#[test]
fn named_tensors_lora_bitfit_and_full_use_the_checkpoint_names() {
    let (_tmp, mut enc) = load();
    let mut names: Vec<String> = enc.named_tensors().into_iter().map(|(n, _)| n).collect();
    names.sort();
    assert_eq!(names, parameters().into_iter().map(|(n, _)| n).collect::<Vec<_>>());

    let x = batch(&[sentence(11, 7), sentence(12, 2)]);
    let before = tch::no_grad(|| enc.forward(&x, None, Forward::default()));
    let vs = nn::VarStore::new(Device::Cpu);
    enc.add_lora(&vs.root(), 4, 8.0, &["query".into(), "value".into()]).unwrap();
    let after = tch::no_grad(|| enc.forward(&x, None, Forward::default()));
    assert_eq!(common::max_abs_diff(&before, &after), 0.0, "B = 0 at init: no change");
    let vars = vs.variables();
    assert_eq!(vars.len(), 2 * 2 * LAYERS as usize);
    assert!(vars.contains_key("encoder.layer.1.attention.attn.q.lora.A"), "{:?}", vars.keys());
    assert!(vars.contains_key("encoder.layer.0.attention.attn.v.lora.B"), "{:?}", vars.keys());
    enc.forward(&x, None, Forward::default()).sum(Kind::Float).backward();
    assert!(vars.values().all(|v| v.grad().defined()));

    let (_tmp, mut enc) = load();
    let vs = nn::VarStore::new(Device::Cpu);
    let n = enc.make_trainable(&vs.root(), &|n| n.ends_with(".bias"));
    assert_eq!(n, 1 + LAYERS as usize * (6 + 2), "embedding LayerNorm + 6 linear + 2 LayerNorm biases per layer");
    assert!(vs.variables().contains_key("encoder.layer.1.attention.attn.o.bias"));

    let (_tmp, mut enc) = load();
    let vs = nn::VarStore::new(Device::Cpu);
    let n = enc.make_trainable(&vs.root(), &|_| true);
    assert_eq!(n, parameters().len());
    assert!(vs.variables().contains_key("encoder.relative_attention_bias.weight"));
    enc.forward(&x, None, Forward::default()).sum(Kind::Float).backward();
    assert!(vs.variables().values().all(|v| v.grad().defined()), "every weight, the bias table included, trains");
}

#[test]
fn a_missing_relative_bias_is_named_and_the_error_lists_mpnet() {
    let tmp = tempfile::tempdir().unwrap();
    write_checkpoint(tmp.path());
    let st = tmp.path().join("model.safetensors");
    let w = Tensor::read_safetensors(&st).unwrap();
    let kept: Vec<(String, Tensor)> = w.into_iter().filter(|(n, _)| !n.contains("relative_attention_bias")).collect();
    Tensor::write_safetensors(&kept, &st).unwrap();
    let err = Encoder::load(tmp.path(), Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("encoder.relative_attention_bias.weight") && err.contains("mpnet."), "{err}");

    write_checkpoint(tmp.path());
    let cfg_path = tmp.path().join("config.json");
    let cfg = std::fs::read_to_string(&cfg_path).unwrap().replace("\"mpnet\"", "\"deberta-v2\"");
    std::fs::write(&cfg_path, cfg).unwrap();
    let err = Encoder::load(tmp.path(), Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("unsupported architecture") && err.contains("deberta-v2") && err.contains("mpnet"), "{err}");
}

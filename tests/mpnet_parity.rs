//! The MPNet encoder and its tokenizer against Hugging Face transformers on the real
//! all-mpnet-base-v2 (reference values made by scripts/reference/make_mpnet_fixture.py: token
//! ids, the final hidden states' first 32 dimensions at every position, the mean-pooled states
//! over all 768 dimensions, and one cosine).
//!
//! The 438 MB model is not installed by CI: these tests are ignored by default. Install it
//! with `scripts/setup-mpnet.sh`, then run `cargo test --release --test mpnet_parity -- --ignored`;
//! without the model they fail (they never pass silently).

mod common;

use std::path::PathBuf;

use prefix_subspace::embed::embed_texts;
use prefix_subspace::model::{Arch, Batch, Encoder, Forward, Pooling, TextTokenizer};
use tch::{Device, Kind, Tensor};

// Keep in sync with scripts/reference/make_mpnet_fixture.py.
const INPUTS: [(&str, Option<&str>); 8] = [
    ("A man is playing a guitar.", None),
    ("Someone plays an instrument.", None),
    ("it 's a charming and often affecting journey .", None),
    ("The quick brown fox jumps over the lazy dog, while the five boxing wizards jump quickly; meanwhile naïve cafés serve crème brûlée to 1,234 customers.", None),
    ("Hi", None),
    ("No Weapons of Mass Destruction Found in Iraq Yet.", Some("Weapons of Mass Destruction Found in Iraq.")),
    ("How do I learn Rust?", Some("What is the best way to learn the Rust programming language quickly?")),
    ("Unbelievably", Some("unrecognisable tokenisation: xylophones & émojis 🙂")),
];

/// The installed all-mpnet-base-v2; a loud failure when it is missing.
fn mpnet_dir() -> PathBuf {
    let dir = prefix_subspace::paths::home().join("models").join("all-mpnet-base-v2");
    assert!(
        dir.join(".done").is_file() && dir.join("model.safetensors").is_file(),
        "{} is missing: run scripts/setup-mpnet.sh first (it installs all-mpnet-base-v2, 438 MB)",
        dir.display()
    );
    dir
}

fn fixture_batch(fx: &std::collections::HashMap<String, Tensor>) -> Batch {
    Batch {
        input_ids: fx["input_ids"].shallow_clone(),
        attention_mask: fx["attention_mask"].shallow_clone(),
        token_type_ids: fx["input_ids"].zeros_like(),
    }
}

#[test]
#[ignore = "needs scripts/setup-mpnet.sh"]
fn tokenizer_matches_hugging_face_ids() {
    let fx = common::fixture("mpnet_parity.json");
    let tok = TextTokenizer::from_dir(&mpnet_dir(), 512).unwrap();
    assert_eq!(tok.pad_id(), 1, "MPNet pads with <pad> = 1 (its vocabulary also has [PAD] = 4)");
    let batch = tok.batch(&INPUTS, Device::Cpu).unwrap();
    assert_eq!(batch.input_ids, fx["input_ids"]);
    assert_eq!(batch.attention_mask, fx["attention_mask"]);
}

#[test]
#[ignore = "needs scripts/setup-mpnet.sh"]
fn hidden_states_match_hugging_face_within_1e_4() {
    let fx = common::fixture("mpnet_parity.json");
    let enc = Encoder::load(&mpnet_dir(), Device::Cpu).unwrap();
    assert_eq!(enc.arch, Arch::Mpnet);
    let batch = fixture_batch(&fx);
    let h = tch::no_grad(|| enc.forward(&batch, None, Forward::default()));
    let reference = &fx["hidden_first32"];
    assert_eq!(h.size()[..2], reference.size()[..2]);
    let m = batch.attention_mask.to_kind(Kind::Float).unsqueeze(-1);
    let diff = common::max_abs_diff(&(h.narrow(2, 0, 32) * &m), &(reference * &m));
    let pooled = Pooling::Mean.pool(&h, &batch.attention_mask);
    let diff_pooled = common::max_abs_diff(&pooled, &fx["mean_pooled"]);
    println!(
        "all-mpnet-base-v2 vs HF over {} inputs: hidden states {diff:.3e}, mean-pooled {diff_pooled:.3e}",
        INPUTS.len()
    );
    assert!(diff <= 1e-4, "max abs diff {diff} > 1e-4");
    assert!(diff_pooled <= 1e-4, "max abs diff of pooled states {diff_pooled} > 1e-4");
}

#[test]
#[ignore = "needs scripts/setup-mpnet.sh"]
fn mean_pooled_normalised_embeddings_give_hugging_faces_cosine() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mpnet_parity.json");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let expected = v["cosine"].as_f64().unwrap();
    let dir = mpnet_dir();
    let enc = Encoder::load(&dir, Device::Cpu).unwrap();
    let tok = TextTokenizer::from_dir(&dir, 384).unwrap();
    assert_eq!(Pooling::auto(&dir).unwrap(), Pooling::Mean, "the model declares mean pooling");
    let texts = [INPUTS[0].0, INPUTS[1].0, "The stock market fell sharply today."].map(String::from);
    let e = embed_texts(&enc, &tok, &texts, Pooling::Mean, true, 2).unwrap();
    let cos = |i: i64, j: i64| (e.get(i) * e.get(j)).sum(Kind::Float).double_value(&[]);
    println!("cos(guitar, instrument) = {:.6} (HF {expected:.6}); cos(guitar, market) = {:.4}", cos(0, 1), cos(0, 2));
    assert!((cos(0, 1) - expected).abs() < 1e-4, "cosine {} vs HF {expected}", cos(0, 1));
    assert!(cos(0, 2).abs() < 0.2);
    let norms = e.norm_scalaropt_dim(2, [1], false);
    assert!(common::max_abs_diff(&norms, &Tensor::ones([3], (Kind::Float, Device::Cpu))) < 1e-5);
}

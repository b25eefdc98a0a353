//! The encoder and tokenizer against Hugging Face transformers on the real default model
//! (reference values made by scripts/reference/make_parity_fixture.py: token ids, the final
//! hidden states' first 48 dimensions at every position, and the mean-pooled states over all
//! 384 dimensions).

mod common;

use prefix_subspace::embed::embed_texts;
use prefix_subspace::model::{Batch, Encoder, Forward, Pooling, TextTokenizer};
use tch::{Device, Kind, Tensor};

const INPUTS: [(&str, Option<&str>); 10] = [
    ("A man is playing a guitar.", None),
    ("Someone plays an instrument.", None),
    ("it 's a charming and often affecting journey .", None),
    ("The quick brown fox jumps over the lazy dog, while the five boxing wizards jump quickly; meanwhile naïve cafés serve crème brûlée to 1,234 customers.", None),
    ("Hi", None),
    ("No Weapons of Mass Destruction Found in Iraq Yet.", Some("Weapons of Mass Destruction Found in Iraq.")),
    ("How do I learn Rust?", Some("What is the best way to learn the Rust programming language quickly?")),
    ("The cat sat on the mat.", Some("A cat is sitting.")),
    ("Unbelievably", Some("unrecognisable tokenisation: xylophones & émojis 🙂")),
    ("", Some("an empty first segment")),
];

#[test]
fn tokenizer_matches_hugging_face_ids_with_dynamic_padding() {
    let fx = common::fixture("minilm_parity.json");
    let tok = TextTokenizer::from_dir(&common::minilm_dir(), 128).unwrap();
    let batch = tok.batch(&INPUTS, Device::Cpu).unwrap();
    assert_eq!(batch.input_ids, fx["input_ids"]);
    assert_eq!(batch.attention_mask, fx["attention_mask"]);
    assert_eq!(batch.token_type_ids, fx["token_type_ids"]);
}

#[test]
fn hidden_states_match_hugging_face_within_1e_4() {
    let fx = common::fixture("minilm_parity.json");
    let enc = Encoder::load(&common::minilm_dir(), Device::Cpu).unwrap();
    let batch = Batch {
        input_ids: fx["input_ids"].shallow_clone(),
        attention_mask: fx["attention_mask"].shallow_clone(),
        token_type_ids: fx["token_type_ids"].shallow_clone(),
    };
    let h = tch::no_grad(|| enc.forward(&batch, None, Forward::default()));
    let reference = &fx["hidden_first48"];
    assert_eq!(h.size()[..2], reference.size()[..2]);
    // Compare real tokens (padding rows are not part of the model's output contract).
    let m = batch.attention_mask.to_kind(Kind::Float).unsqueeze(-1);
    let diff = common::max_abs_diff(&(h.narrow(2, 0, 48) * &m), &(reference * &m));
    let pooled = Pooling::Mean.pool(&h, &batch.attention_mask);
    let diff_pooled = common::max_abs_diff(&pooled, &fx["mean_pooled"]);
    println!("max abs diff vs HF over 10 inputs: hidden states {diff:.3e}, mean-pooled {diff_pooled:.3e}");
    assert!(diff <= 1e-4, "max abs diff {diff} > 1e-4");
    assert!(diff_pooled <= 1e-4, "max abs diff of pooled states {diff_pooled} > 1e-4");
}

#[test]
fn truncation_keeps_the_max_length() {
    let tok = TextTokenizer::from_dir(&common::minilm_dir(), 8).unwrap();
    let long = "word ".repeat(50);
    let b = tok.batch(&[(&long, None), (&long, Some(&long)), ("short", None)], Device::Cpu).unwrap();
    assert_eq!(b.input_ids.size(), vec![3, 8]);
    let lens: Vec<i64> = Vec::try_from(b.attention_mask.sum_dim_intlist(1, false, Kind::Int64)).unwrap();
    assert_eq!(lens, vec![8, 8, 3]);
}

#[test]
fn mean_pooled_normalised_embeddings_give_the_known_cosine() {
    let dir = common::minilm_dir();
    let enc = Encoder::load(&dir, Device::Cpu).unwrap();
    let tok = TextTokenizer::from_dir(&dir, 256).unwrap();
    assert_eq!(Pooling::auto(&dir).unwrap(), Pooling::Mean, "the model declares mean pooling");
    let texts = ["A man is playing a guitar.", "Someone plays an instrument.", "The stock market fell sharply today."]
        .map(String::from);
    let e = embed_texts(&enc, &tok, &texts, Pooling::Mean, true, 2).unwrap();
    let cos = |i: i64, j: i64| (e.get(i) * e.get(j)).sum(Kind::Float).double_value(&[]);
    println!("cos(guitar, instrument) = {:.4}; cos(guitar, market) = {:.4}", cos(0, 1), cos(0, 2));
    assert!((cos(0, 1) - 0.667).abs() < 0.005, "cosine {}", cos(0, 1));
    assert!(cos(0, 2).abs() < 0.2);
    let norms = e.norm_scalaropt_dim(2, [1], false);
    assert!(common::max_abs_diff(&norms, &Tensor::ones([3], (Kind::Float, Device::Cpu))) < 1e-5);
}

#[test]
fn wordpiece_from_vocab_txt_alone_matches_tokenizer_json() {
    let dir = common::minilm_dir();
    let tmp = tempfile::tempdir().unwrap();
    for f in ["vocab.txt", "tokenizer_config.json"] {
        std::fs::copy(dir.join(f), tmp.path().join(f)).unwrap();
    }
    let from_json = TextTokenizer::from_dir(&dir, 128).unwrap();
    let from_vocab = TextTokenizer::from_dir(tmp.path(), 128).unwrap();
    let a = from_json.batch(&INPUTS, Device::Cpu).unwrap();
    let b = from_vocab.batch(&INPUTS, Device::Cpu).unwrap();
    assert_eq!(a.input_ids, b.input_ids);
    assert_eq!(a.token_type_ids, b.token_type_ids);
}

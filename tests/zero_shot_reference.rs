//! Zero-shot classification with SmolLM2-135M-Instruct (Q4_1 GGUF) end to end against Hugging
//! Face transformers: a `zero-shot` run on SST-2, then `predict` on the first 400 sentences of
//! the SST-2 dev split, whose label-word probabilities must match transformers' on the same
//! GGUF file (tests/fixtures/zero_shot_smollm2_sst2.json, written by
//! scripts/reference/make_zero_shot_fixture.py: the default instruction template, the
//! tokenizer from the GGUF, the logits of ` negative` and ` positive` at the last position).
//! This pins the whole path a user takes: template filling, tokenisation, the decoder, the
//! label words and the output, not only the forward pass.

mod common;

const MODEL: &str = "smollm2-135m-instruct";

#[test]
fn zero_shot_predictions_match_transformers_on_400_sst2_sentences() {
    if !common::decoder_installed(MODEL) {
        return;
    }
    let fixture = common::zero_shot::json_fixture("zero_shot_smollm2_sst2.json");
    let sentences: Vec<&str> = fixture["sentences"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    let labels: Vec<u64> = fixture["labels"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    let logits = common::zero_shot::number_pairs(&fixture["logits"]);
    assert_eq!(sentences.len(), 400);

    let tmp = tempfile::tempdir().unwrap();
    let lines: Vec<String> = sentences.iter().map(|s| s.to_string()).collect();
    let rows = common::zero_shot::zero_shot_predict(tmp.path(), MODEL, "sst2", &[], &lines);
    assert_eq!(rows.len(), 400);

    let (mut worst, mut agree, mut correct) = (0.0f64, 0, 0);
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row["line"].as_u64(), Some(i as u64 + 1));
        let ours = row["probabilities"]["1"].as_f64().unwrap(); // SST-2's classes are "0" and "1"
        let (neg, pos) = logits[i];
        let reference = 1.0 / (1.0 + (neg - pos).exp()); // softmax over the two label words
        worst = worst.max((ours - reference).abs());
        let label: u64 = row["label"].as_str().unwrap().parse().unwrap();
        agree += usize::from(label == u64::from(pos > neg));
        correct += usize::from(label == labels[i]);
    }
    let reference_acc = fixture["accuracy"].as_f64().unwrap();
    eprintln!(
        "zero-shot on 400 SST-2 dev sentences: accuracy {:.4} (transformers {reference_acc:.4}); {agree}/400 same predictions; largest probability difference {worst:.2e}",
        correct as f64 / 400.0
    );
    // Both sides dequantise the same Q4_1 weights to fp32; what is left is the order of fp32
    // sums (about 1e-5 here).
    assert!(worst < 1e-3, "largest difference in P(positive) against transformers: {worst}");
    assert_eq!(agree, 400, "predictions differ from transformers'");
    assert!((correct as f64 / 400.0 - reference_acc).abs() < 1e-9);
}

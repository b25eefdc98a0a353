//! Label words of several tokens against Hugging Face transformers: a `zero-shot` run of
//! SmolLM2-135M-Instruct on RTE with the class names as label words (` entailment`,
//! ` not_entailment`: several tokens each), then `predict` on the first 100 RTE dev pairs. Each
//! class's score is the summed log-probability of its word's tokens; the class probabilities
//! must match those of transformers' teacher-forced scores on the same GGUF
//! (tests/fixtures/multi_token_smollm2_rte.json, written by
//! scripts/reference/make_multi_token_fixture.py). The run also trains: a few prefix-tuning
//! steps with these words, evaluated back to the same numbers.

mod common;

use std::process::Command;

const MODEL: &str = "smollm2-135m-instruct";
const WORDS: &str = r#"label_words=[" entailment", " not_entailment"]"#;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_prefix-subspace"))
}

#[test]
fn summed_log_probabilities_match_transformers_on_100_rte_pairs() {
    if !common::decoder_installed(MODEL) {
        return;
    }
    let fixture = common::zero_shot::json_fixture("multi_token_smollm2_rte.json");
    let pairs: Vec<(&str, &str)> =
        fixture["pairs"].as_array().unwrap().iter().map(|p| (p[0].as_str().unwrap(), p[1].as_str().unwrap())).collect();
    let scores = common::zero_shot::number_pairs(&fixture["scores"]);
    assert_eq!(pairs.len(), 100);
    assert!(fixture["tokens"].as_array().unwrap().iter().all(|t| t.as_array().unwrap().len() > 1));

    let tmp = tempfile::tempdir().unwrap();
    // max_len 512: no pair is cut (the reference runs them whole).
    let lines: Vec<String> = pairs.iter().map(|(a, b)| format!("{a}\t{b}")).collect();
    let rows = common::zero_shot::zero_shot_predict(tmp.path(), MODEL, "rte", &["max_len=512", WORDS], &lines);
    assert_eq!(rows.len(), 100);
    // The words' probabilities are far apart here (P(not_entailment) is 1e-7 … 1e-13), so the
    // check is on the log-odds, ln P(not_entailment) − ln P(entailment) = s₁ − s₀, which every
    // token of both words enters (f32 probabilities keep it to about 1e-6).
    let (mut worst, mut agree) = (0.0f64, 0);
    for (row, &(s0, s1)) in rows.iter().zip(&scores) {
        let p = &row["probabilities"];
        let ours = p["not_entailment"].as_f64().unwrap().ln() - p["entailment"].as_f64().unwrap().ln();
        worst = worst.max((ours - (s1 - s0)).abs());
        agree += usize::from((row["label"] == "not_entailment") == (s1 > s0));
    }
    eprintln!("multi-token label words on 100 RTE pairs: {agree}/100 same predictions, largest log-odds difference {worst:.2e}");
    assert!(worst < 1e-2, "largest difference in the log-odds against transformers: {worst}");
    assert_eq!(agree, 100, "predictions differ from transformers'");

    // Training with these words: a few prefix-tuning steps, evaluated back.
    let glue = common::glue_dir();
    let trained = tmp.path().join("prefix");
    let o = bin()
        .args(["train", "--task", "rte", "--model", MODEL, "--method", "prefix", "--quiet"])
        .args(["--data-dir", glue.to_str().unwrap(), "--out", trained.to_str().unwrap()])
        .args(["--set", "test_limit=16", "--set", "threads=2", "--set", WORDS, "--set", "max_steps=2"])
        .args(["--set", "eval_every=2", "--set", "batch_size=4", "--set", "max_len=96"])
        .output()
        .unwrap();
    assert!(o.status.success(), "train prefix: {}", String::from_utf8_lossy(&o.stderr));
    let r = common::results_json(&trained);
    let e = bin().args(["eval", "--run", trained.to_str().unwrap()]).output().unwrap();
    assert!(e.status.success(), "eval: {}", String::from_utf8_lossy(&e.stderr));
    let v: serde_json::Value = serde_json::from_slice(&e.stdout).unwrap();
    assert_eq!(v["test"]["accuracy"], r["test"]["centroid"]["accuracy"], "eval differs from training's test");
}

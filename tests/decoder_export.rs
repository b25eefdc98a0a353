//! `export --format peft` on a decoder run (SmolLM2-135M-Instruct, GGUF): a CAUSAL_LM
//! prefix-tuning adapter sized by the key/value heads (PEFT's layout for grouped-query
//! attention), whose weights are exactly the run's prefix, with the class-score recipe beside
//! it. That PEFT on transformers reproduces our predictions from it is checked by
//! scripts/reference/check_peft_export.py (docs/correctness.md has the measured difference).

mod common;

use std::process::Command;

use tch::Tensor;

const MODEL: &str = "smollm2-135m-instruct";

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_prefix-subspace"))
}

fn run(args: &[&str]) -> std::process::Output {
    let o = bin().args(args).output().unwrap();
    assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
    o
}

/// `train --task rte --model MODEL --method METHOD --out DIR` with `max_len=64` and `sets`.
fn train(method: &str, dir: &std::path::Path, sets: &[&str]) {
    let glue = common::glue_dir();
    let mut args = vec!["train", "--task", "rte", "--model", MODEL, "--method", method, "--quiet"];
    args.extend(["--data-dir", glue.to_str().unwrap(), "--out", dir.to_str().unwrap(), "--set", "max_len=64"]);
    for s in sets {
        args.extend(["--set", s]);
    }
    run(&args);
}

#[test]
fn decoder_prefix_exports_as_a_causal_lm_adapter() {
    if !common::decoder_installed(MODEL) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (rd, out) = (tmp.path().join("run"), tmp.path().join("peft"));
    train(
        "subspace",
        &rd,
        &["max_steps=2", "eval_every=2", "test_limit=4", "dev_samples=2", "ensemble_samples=2", "prefix_len=5"],
    );
    let o = run(&["export", "--run", rd.to_str().unwrap(), "--at", "vertex:2", "--out", out.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&o.stderr).is_empty(), "a shifted run exports without a warning");
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("adapter_config.json")).unwrap()).unwrap();
    assert_eq!(cfg["task_type"], "CAUSAL_LM");
    assert_eq!(cfg["peft_type"], "PREFIX_TUNING");
    // SmolLM2: 30 layers, 3 key/value heads of dim 64 (9 query heads).
    assert_eq!(cfg["num_layers"], 30);
    assert_eq!(cfg["num_attention_heads"], 3);
    assert_eq!(cfg["token_dim"], 192);
    assert_eq!(cfg["num_virtual_tokens"], 5);
    let head: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("head_config.json")).unwrap()).unwrap();
    assert_eq!(head["head"], "label_words");
    assert_eq!(head["label_ids"].as_array().unwrap().len(), 2);
    assert!(head["template"].as_str().unwrap().contains("{s1}"));
    assert!(head["gguf_file"].as_str().unwrap().ends_with(".gguf"));

    // The adapter's (p, 2·L·W) rows are vertex 2's prefix (L, 2, p, W), PEFT's order.
    let emb = Tensor::read_safetensors(out.join("adapter_model.safetensors")).unwrap();
    let emb = &emb.iter().find(|(n, _)| n == "prompt_embeddings").unwrap().1;
    assert_eq!(emb.size(), vec![5, 2 * 30 * 192]);
    let ck = Tensor::read_safetensors(rd.join("checkpoint.safetensors")).unwrap();
    // The checkpoint's `prefix` is (n, L, 2, p, W).
    let vertices = &ck.iter().find(|(n, _)| n == "prefix").expect("a prefix in the checkpoint").1;
    let want = vertices.get(2).permute([2, 0, 1, 3]).reshape([5, 2 * 30 * 192]);
    assert_eq!(common::max_abs_diff(emb, &want), 0.0);

    // An unshifted run (not a decoder's default) exports with a warning that says why PEFT
    // will differ.
    let rd2 = tmp.path().join("run2");
    train("prefix", &rd2, &["positions=unshifted", "max_steps=1", "eval_every=1", "test_limit=2", "prefix_len=2"]);
    let o = run(&["export", "--run", rd2.to_str().unwrap(), "--out", tmp.path().join("peft2").to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("positions=shifted"));
}

//! Importing a PEFT prefix-tuning adapter as a run's starting point: an exported run,
//! imported and barely trained, predicts what the original predicts; bad adapters give one
//! clear error naming the file.

mod common;

use std::path::Path;
use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_prefix-subspace")).args(args).output().unwrap()
}

fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(out.status.success(), "{}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn train(out: &Path, extra: &[&str]) -> Output {
    let mut a = vec!["train", "--task", "polarity", "--quiet", "--out", out.to_str().unwrap()];
    a.extend(["--set", "test_limit=40", "--set", "dev_samples=2", "--set", "ensemble_samples=2"]);
    a.extend(extra);
    run(&a)
}

#[test]
fn an_exported_adapter_imports_back_to_the_same_predictions() {
    common::minilm_dir();
    let tmp = tempfile::tempdir().unwrap();
    let (a, e, b) = (tmp.path().join("a"), tmp.path().join("adapter"), tmp.path().join("b"));
    assert!(train(&a, &["--method", "prefix", "--set", "max_steps=4"]).status.success());
    ok(&["export", "--run", a.to_str().unwrap(), "--format", "peft", "--out", e.to_str().unwrap()]);
    // One step at a negligible learning rate: the imported weights are what b predicts with.
    let init = format!("init_peft={}", e.display());
    let out = train(
        &b,
        &["--method", "prefix", "--set", &init, "--set", "max_steps=1", "--set", "lr=1e-12", "--set", "head_lr=1e-12"],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let texts = tmp.path().join("texts.txt");
    std::fs::write(&texts, "a gorgeous, moving film\nthe worst movie of the year\nit is fine\n").unwrap();
    let predict = |run_dir: &Path| -> Vec<f64> {
        ok(&["predict", "--run", run_dir.to_str().unwrap(), "--input", texts.to_str().unwrap()])
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["probabilities"]["positive"].as_f64().unwrap()
            })
            .collect()
    };
    let (pa, pb) = (predict(&a), predict(&b));
    assert_eq!(pa.len(), 3);
    for (x, y) in pa.iter().zip(&pb) {
        assert!((x - y).abs() < 1e-5, "original {pa:?} vs imported {pb:?}");
    }
    let notes = std::fs::read_to_string(b.join("results.json")).unwrap();
    assert!(notes.contains("started from the PEFT adapter") && notes.contains("head started from"), "{notes}");

    // Every vertex around the adapter: the vertices differ (noise) but stay near it.
    let c = tmp.path().join("c");
    let out = train(&c, &["--set", &init, "--set", "init_peft_vertices=all", "--set", "max_steps=1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // A mismatching prefix length names the fix.
    let out = train(&tmp.path().join("d"), &["--set", &init, "--set", "prefix_len=8", "--set", "max_steps=1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("adapter_config.json") && err.contains("prefix_len=16"), "{err}");
}

#[test]
fn bad_adapters_are_refused_with_the_file_named() {
    common::minilm_dir();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("adapter");
    std::fs::create_dir_all(&dir).unwrap();
    let write_config = |peft_type: &str, layers: i64| {
        let c = serde_json::json!({"peft_type": peft_type, "num_layers": layers, "token_dim": 384,
            "num_attention_heads": 12, "num_virtual_tokens": 16});
        std::fs::write(dir.join("adapter_config.json"), c.to_string()).unwrap();
    };
    let attempt = || {
        let out = train(&tmp.path().join("run"), &["--set", &format!("init_peft={}", dir.display())]);
        assert!(!out.status.success());
        assert!(!tmp.path().join("run").exists(), "nothing written on a bad adapter");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = attempt();
    assert!(err.contains("adapter_config.json"), "missing config: {err}");
    write_config("LORA", 6);
    assert!(attempt().contains("PREFIX_TUNING"));
    write_config("PREFIX_TUNING", 12);
    assert!(attempt().contains("num_layers is 12"));
    write_config("PREFIX_TUNING", 6);
    std::fs::write(dir.join("adapter_model.bin"), b"pickle").unwrap();
    assert!(attempt().contains("safetensors"));
    std::fs::write(dir.join("adapter_model.safetensors"), b"not a safetensors file").unwrap();
    assert!(attempt().contains("adapter_model.safetensors"));
    let out = train(&tmp.path().join("run"), &["--method", "lora", "--set", &format!("init_peft={}", dir.display())]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("init_peft needs method subspace or prefix"));
}

//! The baselines' parameter wiring on a tiny random encoder, and a short real run of each.

mod common;

use prefix_subspace::method;
use prefix_subspace::model::Forward;
use tch::nn;
use tch::{Device, Kind};

#[test]
fn lora_starts_as_the_frozen_model_and_trains_only_its_factors() {
    let mut enc = common::tiny_bert(0);
    let batch = common::tiny_batch(3, 6);
    let before = tch::no_grad(|| enc.forward(&batch, None, Forward::default()));
    let vs = nn::VarStore::new(Device::Cpu);
    enc.add_lora(&vs.root(), 4, 8.0, &["query".into(), "value".into()]).unwrap();
    let after = tch::no_grad(|| enc.forward(&batch, None, Forward::default()));
    assert_eq!(common::max_abs_diff(&before, &after), 0.0, "B = 0 at init: no change");
    let vars = vs.variables();
    assert_eq!(vars.len(), 2 * 2 * 2, "A and B for query and value in 2 layers");
    assert!(vars.keys().all(|k| k.contains(".lora.")));
    let out = enc.forward(&batch, None, Forward::default());
    out.sum(Kind::Float).backward();
    assert!(vars.values().all(|v| v.grad().defined()));
    assert!(enc.named_tensors().iter().all(|(_, t)| !t.requires_grad()), "frozen weights stay frozen");
    assert!(enc.add_lora(&vs.root(), 4, 8.0, &["keys".into()]).unwrap_err().to_string().contains("keys"));
}

#[test]
fn bitfit_trains_the_biases_and_full_fine_tuning_everything() {
    let mut enc = common::tiny_bert(0);
    let vs = nn::VarStore::new(Device::Cpu);
    let n = enc.make_trainable(&vs.root(), &|n| n.ends_with(".bias"));
    let trainable: Vec<String> =
        enc.named_tensors().into_iter().filter(|(_, t)| t.requires_grad()).map(|(n, _)| n).collect();
    assert_eq!(trainable.len(), n);
    assert!(trainable.iter().all(|n| n.ends_with(".bias")));
    assert!(vs.variables().contains_key("encoder.layer.1.attention.self.query.bias"), "vars keep checkpoint names");

    let mut enc = common::tiny_bert(0);
    let vs = nn::VarStore::new(Device::Cpu);
    let n = enc.make_trainable(&vs.root(), &|_| true);
    assert_eq!(n, enc.named_tensors().len());
    assert!(enc.named_tensors().iter().all(|(_, t)| t.requires_grad()));
}

#[test]
fn a_prompt_extends_the_sequence_and_the_mask() {
    let enc = common::tiny_bert(0);
    let batch = common::tiny_batch(2, 5);
    let prompt = tch::Tensor::randn([3, 16], (Kind::Float, Device::Cpu));
    let (x, mask) = enc.embed_prompted(&batch, &prompt, false);
    assert_eq!(x.size(), vec![2, 8, 16]);
    assert_eq!(mask.sum(Kind::Int64).int64_value(&[]), 16);
}

#[test]
fn every_method_trains_and_its_run_directory_evaluates_back() {
    common::minilm_dir();
    let bin = env!("CARGO_BIN_EXE_prefix-subspace");
    let tmp = tempfile::tempdir().unwrap();
    for m in method::ALL {
        let out = tmp.path().join(m.name());
        // Zero-shot and in-context learning need a decoder with label words.
        let model: &[&str] = if m.needs_decoder() { &["--model", "smollm2-135m-instruct"] } else { &[] };
        let o = std::process::Command::new(bin)
            .args(["train", "--task", "polarity", "--quiet", "--method", m.name(), "--out", out.to_str().unwrap()])
            .args(model)
            .args([
                "--set",
                "max_steps=4",
                "--set",
                "test_limit=60",
                "--set",
                "dev_samples=2",
                "--set",
                "ensemble_samples=2",
            ])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}: {}", m.name(), String::from_utf8_lossy(&o.stderr));
        let r: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
        assert_eq!(r["method"], m.name());
        let e = std::process::Command::new(bin).args(["eval", "--run", out.to_str().unwrap()]).output().unwrap();
        assert!(e.status.success(), "{}: {}", m.name(), String::from_utf8_lossy(&e.stderr));
        let v: serde_json::Value = serde_json::from_slice(&e.stdout).unwrap();
        assert_eq!(
            v["test"]["accuracy"],
            r["test"]["centroid"]["accuracy"],
            "{}: eval differs from training's test",
            m.name()
        );
    }
}

#[test]
fn methods_without_a_prefix_train_no_prefix() {
    use prefix_subspace::config::RunConfig;
    use prefix_subspace::method::subspace::Subspace;
    use prefix_subspace::model::Pooling;
    let enc = common::tiny_bert(0);
    for m in method::ALL {
        let cfg = RunConfig { method: m, ..Default::default() }.resolve().unwrap();
        let vs = nn::VarStore::new(Device::Cpu);
        let s = Subspace::new(&vs.root(), &cfg, &enc, 2, Pooling::Mean, None, None);
        let prefix_numel = vs.variables().get("prefix").map_or(0, |t| t.numel());
        assert_eq!(prefix_numel > 0, m.uses_prefix(), "{}: {prefix_numel} prefix parameters", m.name());
        assert_eq!(s.prefix_len() > 0, m.uses_prefix(), "{}", m.name());
        assert_eq!(vs.variables().keys().any(|k| k == "prompt"), m.uses_prompt(), "{}", m.name());
    }
}

#[test]
fn multi_tensor_adamw_trains_the_encoder_as_per_parameter_updates_do() {
    // The GPU's layout (parameters, gradients and moments views of one flat buffer per
    // group) forced on the CPU, for full fine-tuning and LoRA: the encoder must train through
    // the views to the weights per-parameter updates reach (clipping sums in another order).
    let batch = common::tiny_batch(3, 6);
    for lora in [false, true] {
        let train = |multi: bool| {
            let mut enc = common::tiny_bert(0);
            let vs = nn::VarStore::new(Device::Cpu);
            if lora {
                enc.add_lora(&vs.root(), 4, 8.0, &["query".into(), "value".into()]).unwrap();
            } else {
                enc.make_trainable(&vs.root(), &|_| true);
            }
            // As the subspace keeps for these methods: a variable that never gets a gradient.
            let _unused = vs.root().zeros("prefix", &[0, 4]);
            let mut opt = prefix_subspace::optim::AdamW::new(&vs, 1e-2, 0.01).multi_tensor(multi);
            let before = tch::no_grad(|| enc.forward(&batch, None, Forward::default()));
            for _ in 0..6 {
                opt.zero_grad();
                enc.forward(&batch, None, Forward::default()).pow_tensor_scalar(2).mean(Kind::Float).backward();
                opt.clip_grad_norm(0.5);
                opt.step();
            }
            assert_eq!(opt.flat_groups(), usize::from(multi), "lora {lora}: one group, flat when multi-tensor");
            let after = tch::no_grad(|| enc.forward(&batch, None, Forward::default()));
            assert!(common::max_abs_diff(&before, &after) > 1e-2, "lora {lora}: training moved the outputs");
            (after, opt.state())
        };
        let (per_param, (m1, s1)) = train(false);
        let (multi, (m2, s2)) = train(true);
        let d = common::max_abs_diff(&per_param, &multi);
        assert!(d < 1e-5, "lora {lora}: outputs differ by {d}");
        assert_eq!(s1, s2, "lora {lora}: step counts");
        assert!(s2.values().any(|&s| s == 6) && s2["prefix"] == 0);
        for ((k1, t1), (k2, t2)) in m1.iter().zip(&m2) {
            assert_eq!(k1, k2);
            assert!(t1.numel() == 0 || common::max_abs_diff(t1, t2) < 1e-5, "lora {lora}: {k1}");
        }
    }
}

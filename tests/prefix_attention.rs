//! The prefix wiring of the attention, pinned on the real default model.

mod common;

use prefix_subspace::model::{additive, prefixed_additive_mask, Batch, Encoder, Forward, Positions, TextTokenizer};
use tch::{Device, Kind, Tensor};

fn setup() -> (Encoder, TextTokenizer) {
    let dir = common::minilm_dir();
    (Encoder::load(&dir, Device::Cpu).unwrap(), TextTokenizer::from_dir(&dir, 128).unwrap())
}

/// K/V of a context c, computed on its own and fed as the prefix, give for x the same
/// outputs as the concatenation [c; x] run with a mask under which c attends only to c
/// (and x attends to everything).
#[test]
fn context_keys_values_as_prefix_equal_running_the_concatenation() {
    let _rng = common::torch_rng_lock();
    let (enc, tok) = setup();
    for (c_text, x_text) in [
        ("the film was a delight from start to finish", "a great movie ."),
        ("short", "a somewhat longer input sentence that follows a short context"),
    ] {
        let c = tok.batch(&[(c_text, None)], Device::Cpu).unwrap();
        let x = tok.batch(&[(x_text, None)], Device::Cpu).unwrap();
        let (tc, tx) = (c.input_ids.size()[1], x.input_ids.size()[1]);
        let prefix = tch::no_grad(|| enc.keys_values(&c));
        assert_eq!(prefix.size(), vec![enc.num_layers(), 2, 1, tc, enc.hidden_size()]);
        // Positions of x in the concatenation are tc..tc+tx-1: the shifted mode.
        let opts = Forward { dropout: false, positions: Positions::Shifted };
        let with_prefix = tch::no_grad(|| enc.forward(&x, Some(&prefix), opts));

        let cat = Batch {
            input_ids: Tensor::cat(&[&c.input_ids, &x.input_ids], 1),
            attention_mask: Tensor::ones([1, tc + tx], (Kind::Int64, Device::Cpu)),
            token_type_ids: Tensor::zeros([1, tc + tx], (Kind::Int64, Device::Cpu)),
        };
        let s = tc + tx;
        let allowed = Tensor::ones([s, s], (Kind::Float, Device::Cpu));
        let _ = allowed.narrow(0, 0, tc).narrow(1, tc, tx).fill_(0.0); // c does not see x
        let additive = additive(&allowed).view([1, 1, s, s]);
        let full = tch::no_grad(|| enc.run_layers(&enc.embed(&cat, 0, false), &additive, None, Forward::default()));
        let diff = common::max_abs_diff(&with_prefix, &full.narrow(1, tc, tx));
        assert!(diff < 1e-4, "prefix vs concatenation differ by {diff}");
    }
}

#[test]
fn a_length_zero_prefix_equals_no_prefix() {
    let _rng = common::torch_rng_lock();
    let (enc, tok) = setup();
    let x = tok.batch(&[("one sentence", None), ("and a second, longer one", None)], Device::Cpu).unwrap();
    let empty = Tensor::zeros([enc.num_layers(), 2, 2, 0, enc.hidden_size()], (Kind::Float, Device::Cpu));
    let a = tch::no_grad(|| enc.forward(&x, None, Forward::default()));
    let b = tch::no_grad(|| enc.forward(&x, Some(&empty), Forward::default()));
    assert_eq!(common::max_abs_diff(&a, &b), 0.0);
}

#[test]
fn each_example_uses_its_own_prefix() {
    let _rng = common::torch_rng_lock();
    let (enc, tok) = setup();
    tch::manual_seed(0);
    let (l, h, p) = (enc.num_layers(), enc.hidden_size(), 4);
    let prefix = Tensor::randn([l, 2, 2, p, h], (Kind::Float, Device::Cpu));
    let texts = [("first example here", None), ("second", None)];
    let both = tok.batch(&texts, Device::Cpu).unwrap();
    let out = tch::no_grad(|| enc.forward(&both, Some(&prefix), Forward::default()));
    for i in 0..2 {
        let one = tok.batch(&texts[i..i + 1], Device::Cpu).unwrap();
        let t = one.input_ids.size()[1];
        let alone = tch::no_grad(|| enc.forward(&one, Some(&prefix.narrow(2, i as i64, 1)), Forward::default()));
        let diff = common::max_abs_diff(&alone, &out.narrow(0, i as i64, 1).narrow(1, 0, t));
        assert!(diff < 1e-4, "example {i}: batched vs alone differ by {diff}");
    }
    // And the prefix matters.
    let none = tch::no_grad(|| enc.forward(&both, None, Forward::default()));
    assert!(common::max_abs_diff(&none, &out) > 1e-2);
}

#[test]
fn gradients_flow_to_the_prefix_and_never_to_the_weights() {
    let _rng = common::torch_rng_lock();
    let (enc, tok) = setup();
    tch::manual_seed(1);
    let prefix = (Tensor::randn([enc.num_layers(), 2, 1, 3, enc.hidden_size()], (Kind::Float, Device::Cpu)) * 0.1)
        .set_requires_grad(true);
    let x = tok.batch(&[("gradients please", None), ("two", None)], Device::Cpu).unwrap();
    let out = enc.forward(&x, Some(&prefix), Forward { dropout: true, positions: Positions::Unshifted });
    out.pow_tensor_scalar(2).mean(Kind::Float).backward();
    let g = prefix.grad();
    assert!(g.defined());
    for l in 0..enc.num_layers() {
        for kv in 0..2 {
            let n = g.get(l).get(kv).abs().sum(Kind::Float).double_value(&[]);
            assert!(n > 0.0, "no gradient for layer {l} {}", if kv == 0 { "keys" } else { "values" });
        }
    }
    for (name, t) in enc.named_tensors() {
        assert!(!t.requires_grad(), "{name} requires grad");
        assert!(!t.grad().defined(), "{name} got a gradient");
    }
}

/// `precision = "bf16"`: the dense layers multiply in bfloat16. On the real model the final
/// hidden states stay close to fp32 (bf16 keeps 8 bits of mantissa), a prefix still gets
/// gradients through them, and going back to fp32 gives the fp32 outputs exactly.
#[test]
fn bf16_products_stay_close_to_fp32_and_can_be_switched_off() {
    let _rng = common::torch_rng_lock();
    let (mut enc, tok) = setup();
    let x = tok
        .batch(
            &[("a gripping, beautifully acted film", None), ("the plot never comes together at all", None)],
            Device::Cpu,
        )
        .unwrap();
    let fp32 = tch::no_grad(|| enc.forward(&x, None, Forward::default()));
    enc.set_product_kind(Some(Kind::BFloat16));
    let bf16 = tch::no_grad(|| enc.forward(&x, None, Forward::default()));
    assert_eq!(bf16.kind(), Kind::Float, "outputs stay fp32");
    let diff = common::max_abs_diff(&fp32, &bf16);
    let scale = fp32.abs().max().double_value(&[]);
    assert!(diff > 0.0, "bf16 products change the numbers");
    assert!(diff < 0.05 * scale, "bf16 vs fp32: max abs diff {diff} (largest value {scale})");
    let (a, b) = (fp32.flatten(0, -1), bf16.flatten(0, -1));
    let cos = ((&a * &b).sum(Kind::Float) / (a.norm() * b.norm())).double_value(&[]);
    assert!(cos > 0.999, "cosine {cos}");

    tch::manual_seed(0);
    let prefix = (Tensor::randn([enc.num_layers(), 2, 2, 4, enc.hidden_size()], (Kind::Float, Device::Cpu)) * 0.1)
        .set_requires_grad(true);
    enc.forward(&x, Some(&prefix), Forward::default()).pow_tensor_scalar(2).mean(Kind::Float).backward();
    let g = prefix.grad();
    assert!(g.isfinite().all().int64_value(&[]) == 1 && g.abs().sum(Kind::Float).double_value(&[]) > 0.0);

    enc.set_product_kind(None);
    let back = tch::no_grad(|| enc.forward(&x, None, Forward::default()));
    assert_eq!(common::max_abs_diff(&fp32, &back), 0.0);
}

/// `Encoder::forward` runs the token-wise work on the real tokens only (packing); the layers
/// run on the padded batch (`run_layers`) must give the same numbers at every real token, with
/// dropout on (the masks do not depend on the packing), and the same prefix gradient; the
/// packed output is zero at padding. "The same" up to rounding: the linear layers multiply
/// fewer rows, and whether the matrix-product kernel then rounds each row as before depends
/// on the CPU (bit for bit on an AMD Zen 4 with MKL; within 3e-6 on an Intel Xeon with AMX).
#[test]
fn packing_out_the_padding_changes_only_rounding() {
    let _rng = common::torch_rng_lock();
    let (enc, tok) = setup();
    assert!(enc.packs(), "a frozen encoder always packs");
    let texts = [
        ("a", None),
        ("the film was a delight from start to finish , and so were the actors", None),
        ("not good", None),
        ("an uneven batch : one long sentence , three short ones", None),
    ];
    let x = tok.batch(&texts, Device::Cpu).unwrap();
    let real = x.attention_mask.to_kind(Kind::Float).unsqueeze(-1);
    let padding = real.size()[0] * real.size()[1] - real.sum(Kind::Float).int64_value(&[]);
    assert!(padding > 20, "the batch is mostly padding: {padding} padded tokens");
    let (l, h, p) = (enc.num_layers(), enc.hidden_size(), 5);
    tch::manual_seed(3);
    let prefix0 = Tensor::randn([l, 2, 4, p, h], (Kind::Float, Device::Cpu));
    let opts = Forward { dropout: true, positions: Positions::Unshifted };
    let run = |packed: bool| {
        let prefix = prefix0.copy().set_requires_grad(true);
        tch::manual_seed(11);
        let out = if packed {
            enc.forward(&x, Some(&prefix), opts)
        } else {
            let additive = prefixed_additive_mask(&x.attention_mask, p);
            enc.run_layers(&enc.embed(&x, 0, true), &additive, Some(&prefix), opts)
        };
        (&out * &real).square().sum(Kind::Float).backward();
        (out.detach(), prefix.grad())
    };
    let (packed, packed_grad) = run(true);
    let (padded, padded_grad) = run(false);
    let out_diff = common::max_abs_diff(&(&packed * &real), &(&padded * &real));
    assert!(out_diff < 1e-5, "real tokens differ by {out_diff}");
    let grad_scale = padded_grad.abs().max().double_value(&[]);
    let grad_diff = common::max_abs_diff(&packed_grad, &padded_grad);
    assert!(grad_diff < 1e-5 * grad_scale, "prefix gradients differ by {grad_diff} (largest {grad_scale})");
    assert!(packed_grad.abs().sum(Kind::Float).double_value(&[]) > 0.0);
    assert_eq!((&packed * (real.neg() + 1.0)).abs().max().double_value(&[]), 0.0, "padding rows are zero");
    // Dropout was on: another seed gives other numbers.
    tch::manual_seed(12);
    let other = tch::no_grad(|| enc.forward(&x, Some(&prefix0), opts));
    assert!(common::max_abs_diff(&(&other * &real), &(&packed * &real)) > 1e-3);
}

/// A pass that computes gradients for trained encoder weights keeps the padded layout (their
/// gradients sum over rows, which packing would round differently); without gradients it packs.
#[test]
fn passes_that_train_encoder_weights_keep_the_padding() {
    let _rng = common::torch_rng_lock();
    for lora in [true, false] {
        let (mut enc, _) = setup();
        let vs = tch::nn::VarStore::new(Device::Cpu);
        if lora {
            enc.add_lora(&vs.root(), 4, 8.0, &["query".to_string()]).unwrap();
        } else {
            assert!(enc.make_trainable(&vs.root(), &|n| n.ends_with(".bias")) > 0);
        }
        assert!(!enc.packs(), "lora {lora}: a gradient pass does not pack");
        assert!(tch::no_grad(|| enc.packs()), "lora {lora}: a no-grad pass packs");
    }
}

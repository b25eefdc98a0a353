//! Training-step time on the default model's shape (batch 16 × 128 tokens, prefix 16):
//! forward + backward + AdamW into (a) a bare 16-long deep prefix with a linear head, (b) the
//! library's plain prefix tuning (one vertex), (c) the prefix subspace with 3 vertices
//! (per-example-per-layer α, mixed heads, cos² regulariser). Reports the median seconds per
//! step and the subspace's cost relative to plain prefix tuning. Not a timed test.
//!
//! Run: `cargo bench --bench prefix_step` (env: STEPS=10, NODROP=1 to switch dropout off).

use std::time::Instant;

use prefix_subspace::config::RunConfig;
use prefix_subspace::method;
use prefix_subspace::method::subspace::Subspace;
use prefix_subspace::model::{Batch, Encoder, Forward, Pooling};
use rand::SeedableRng;
use tch::nn::{self, OptimizerConfig};
use tch::{Device, Kind, Tensor};

fn median(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

fn time(steps: usize, mut step: impl FnMut()) -> (f64, f64, f64) {
    for _ in 0..2 {
        step();
    }
    median(
        (0..steps)
            .map(|_| {
                let t0 = Instant::now();
                step();
                t0.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

fn main() {
    let dir = prefix_subspace::paths::default_model();
    let enc = Encoder::load(&dir, Device::Cpu).expect("run scripts/setup.sh first");
    let steps: usize = std::env::var("STEPS").ok().and_then(|s| s.parse().ok()).unwrap_or(10);
    let dropout = std::env::var("NODROP").is_err();
    let (b, t, p) = (16i64, 128i64, 16i64);
    let (l, h) = (enc.num_layers(), enc.hidden_size());
    tch::manual_seed(0);
    let batch = Batch {
        input_ids: Tensor::randint_low(1000, 20000, [b, t], (Kind::Int64, Device::Cpu)),
        attention_mask: Tensor::ones([b, t], (Kind::Int64, Device::Cpu)),
        token_type_ids: Tensor::zeros([b, t], (Kind::Int64, Device::Cpu)),
    };
    let labels = Tensor::randint(2, [b], (Kind::Int64, Device::Cpu));
    println!("{l} layers × {h}, batch {b} × {t}, prefix {p}, {} threads, dropout {dropout}", tch::get_num_threads());

    // (a) A bare prefix + linear head, no library machinery.
    let vs = nn::VarStore::new(Device::Cpu);
    let prefix = vs.root().randn("prefix", &[l, 2, 1, p, h], 0.0, 0.02);
    let head = nn::linear(vs.root() / "head", h, 2, Default::default());
    let mut opt = nn::AdamW::default().build(&vs, 5e-3).unwrap();
    let bare = time(steps, || {
        let hidden = enc.forward(&batch, Some(&prefix), Forward { dropout, ..Default::default() });
        let loss = Pooling::Mean.pool(&hidden, &batch.attention_mask).apply(&head).cross_entropy_for_logits(&labels);
        opt.backward_step(&loss);
    });
    println!("bare prefix + head:        median {:.3} s/step (min {:.3}, max {:.3})", bare.0, bare.1, bare.2);

    // (b), (c) The library's methods.
    let mut results = Vec::new();
    for (name, method, n) in [
        ("prefix tuning (n = 1):", method::parse("prefix").unwrap(), 1),
        ("prefix subspace (n = 3):", method::parse("subspace").unwrap(), 3),
    ] {
        let cfg = RunConfig { method, vertices: n, backbone_dropout: dropout, ..Default::default() }.resolve().unwrap();
        let vs = nn::VarStore::new(Device::Cpu);
        let s = Subspace::new(&vs.root(), &cfg, &enc, 2, Pooling::Mean, None, None);
        let mut opt = nn::AdamW::default().build(&vs, 5e-3).unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let r = time(steps, || {
            let a = s.sample_alphas(b, Device::Cpu);
            let mut loss = s.forward(&enc, &batch, &a, true).cross_entropy_for_logits(&labels);
            if let Some(reg) = s.regulariser(&mut rng) {
                loss += reg;
            }
            opt.backward_step(&loss);
        });
        println!(
            "{name:<26} median {:.3} s/step (min {:.3}, max {:.3}), {:.1} samples/s",
            r.0,
            r.1,
            r.2,
            b as f64 / r.0
        );
        results.push(r.0);
    }
    println!("subspace / prefix step time: {:.3}", results[1] / results[0]);
}

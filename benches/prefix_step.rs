//! One training step backpropagating into a 16-long deep prefix (and a linear head) on the
//! default model's shape: batch 16 × 128 tokens, forward + backward + AdamW.
//! Run: `cargo bench --bench prefix_step` (reports seconds/step; not a timed test).

use std::time::Instant;

use prefix_subspace::model::{Batch, Encoder, Forward, Pooling};
use tch::nn::{self, OptimizerConfig};
use tch::{Device, Kind, Tensor};

fn main() {
    let dir = prefix_subspace::paths::default_model();
    let enc = Encoder::load(&dir, Device::Cpu).expect("run scripts/setup.sh first");
    let (b, t, p) = (16i64, 128i64, 16i64);
    let (l, h) = (enc.num_layers(), enc.hidden_size());
    tch::manual_seed(0);
    let vs = nn::VarStore::new(Device::Cpu);
    let prefix = vs.root().randn("prefix", &[l, 2, 1, p, h], 0.0, 0.02);
    let head = nn::linear(vs.root() / "head", h, 2, Default::default());
    let mut opt = nn::AdamW::default().build(&vs, 5e-3).unwrap();
    let batch = Batch {
        input_ids: Tensor::randint_low(1000, 20000, [b, t], (Kind::Int64, Device::Cpu)),
        attention_mask: Tensor::ones([b, t], (Kind::Int64, Device::Cpu)),
        token_type_ids: Tensor::zeros([b, t], (Kind::Int64, Device::Cpu)),
    };
    let labels = Tensor::randint(2, [b], (Kind::Int64, Device::Cpu));
    let step = |opt: &mut nn::Optimizer| {
        let hidden = enc.forward(
            &batch,
            Some(&prefix),
            Forward { dropout: std::env::var("NODROP").is_err(), ..Default::default() },
        );
        let logits = Pooling::Mean.pool(&hidden, &batch.attention_mask).apply(&head);
        let loss = logits.cross_entropy_for_logits(&labels);
        opt.backward_step(&loss);
    };
    for _ in 0..2 {
        step(&mut opt);
    }
    let n = 8;
    let mut times = Vec::new();
    for _ in 0..n {
        let t0 = Instant::now();
        step(&mut opt);
        times.push(t0.elapsed().as_secs_f64());
    }
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "prefix training step, {l} layers × {h}, batch {b} × {t}, prefix {p}, {} threads: median {:.3} s/step (min {:.3}, max {:.3}), {:.1} samples/s",
        tch::get_num_threads(),
        times[n / 2],
        times[0],
        times[n - 1],
        b as f64 / times[n / 2]
    );
}

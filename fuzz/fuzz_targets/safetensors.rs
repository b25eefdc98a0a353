//! The safetensors reader behind model weights, checkpoints and resume files, then loading
//! what it read into a checkpoint-shaped var store, on arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prefix_subspace::model::load::Weights;
use tch::{nn, Device};

#[path = "scratch.rs"]
mod scratch;

fuzz_target!(|input: &[u8]| {
    let path = scratch::scratch("weights.safetensors", input);
    if let Ok(mut w) = Weights::read(&path, Device::Cpu) {
        w.strip_prefix("bert.");
        let _ = w.take("embeddings.word_embeddings.weight", &[4, 2]);
        let vs = nn::VarStore::new(Device::Cpu);
        let _v = vs.root().zeros("prefix", &[2, 3]);
        let _ = prefix_subspace::session::load_checkpoint(&vs, &path);
    }
});

//! The random streams of a run: every draw site is reseeded from (seed, stream, index), so a
//! resumed run draws what an uninterrupted one drew and re-evaluating a run reproduces it.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::data::fewshot::shuffle;

/// The random streams of a run. Each draw site is reseeded from (seed, stream, index), so any
/// step can be recomputed on its own: a resumed run draws exactly what an uninterrupted one
/// drew, and re-evaluating a run directory reproduces its ensemble numbers.
#[derive(Debug, Clone, Copy)]
pub enum Stream {
    /// The order of the training examples in epoch `index`.
    Order = 1,
    /// Dropout and α draws of training step `index`.
    Step = 2,
    /// The regulariser's vertex pair at step `index`.
    Regulariser = 3,
    /// The sampled models of the dev evaluation after step `index`.
    Dev = 4,
    /// The sampled models of the final evaluation (index 0).
    Test = 5,
    /// SetFit's pairs (index 0: their generation and shuffle; see `setfit::pairs`).
    Pairs = 6,
}

/// The seed of draw `index` of `stream` in a run seeded with `seed` (SplitMix64 mixing).
pub fn stream_seed(seed: u64, stream: Stream, index: u64) -> u64 {
    use crate::model::dropout::mix;
    mix(mix(mix(seed) ^ stream as u64) ^ index)
}

/// Seeds libtorch's generator for `stream`.
pub fn seed_torch(seed: u64, stream: Stream, index: u64) {
    tch::manual_seed((stream_seed(seed, stream, index) >> 1) as i64);
}

/// The order in which training visits its `n` examples in `epoch` (1-based): batches are
/// consecutive chunks of it.
pub fn epoch_order(seed: u64, n: usize, epoch: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    shuffle(&mut order, &mut ChaCha8Rng::seed_from_u64(stream_seed(seed, Stream::Order, epoch as u64)));
    order
}

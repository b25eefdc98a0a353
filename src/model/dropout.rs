//! Inverted dropout whose masks are drawn on all intra-op threads.
//!
//! libtorch draws CPU dropout masks element by element on one thread (its parallel MKL path
//! is taken on Intel CPUs only), which made mask drawing about a fifth of a training step on
//! this project's machine. Here the mask is drawn in fixed-size chunks, each from its own
//! small generator (wyrand) seeded from one number drawn from libtorch's generator and the
//! chunk's index: the mask depends on the seed only, not on the thread count, and a run
//! reseeded per step (see `train::Stream`) stays reproducible.

use tch::{Kind, Tensor};

/// Elements per independently seeded chunk.
const CHUNK: usize = 1 << 15;

/// Below this many elements the mask is drawn on the calling thread.
const PARALLEL_FROM: usize = 1 << 17;

/// `x` with each element zeroed with probability `p` and the rest scaled by 1 / (1 − p),
/// differentiable in `x`. `p = 0` returns `x`.
pub fn dropout(x: &Tensor, p: f64) -> Tensor {
    match not_drawn_here(x, p) {
        Some(y) => y,
        None => x * drawn(x.numel(), p).view(x.size().as_slice()).to_kind(x.kind()),
    }
}

/// [`dropout`] of `x: (N, H)`, the rows `rows` of a `(padded_rows, H)` tensor: the mask is
/// drawn for all `padded_rows` rows and its `rows` kept, so each row gets the mask it would
/// get in the padded tensor (the same random numbers with or without packing).
pub fn dropout_rows(x: &Tensor, p: f64, padded_rows: i64, rows: &Tensor) -> Tensor {
    match not_drawn_here(x, p) {
        Some(y) => y,
        None => {
            let h = x.size()[1];
            x * drawn((padded_rows * h) as usize, p).view([padded_rows, h]).index_select(0, rows).to_kind(x.kind())
        }
    }
}

/// The result of dropout when no mask is drawn here: `x` itself for `p = 0`, libtorch's
/// kernel off the CPU (parallel there already, drawing from the device's generator, which
/// `tch::manual_seed` seeds as well).
fn not_drawn_here(x: &Tensor, p: f64) -> Option<Tensor> {
    if p <= 0.0 {
        return Some(x.shallow_clone());
    }
    assert!(p < 1.0, "dropout probability {p} must be below 1");
    (x.device() != tch::Device::Cpu).then(|| x.dropout(p, true))
}

/// A CPU mask tensor of `n` values ([`mask`]), seeded by one draw from libtorch's generator.
fn drawn(n: usize, p: f64) -> Tensor {
    let seed = Tensor::randint(i64::MAX, [1], (Kind::Int64, tch::Device::Cpu)).int64_value(&[0]) as u64;
    Tensor::from_slice(&mask(n, p, seed, tch::get_num_threads().max(1) as usize))
}

/// A mask of `n` values, each 0 with probability `p` and 1 / (1 − p) otherwise.
pub fn mask(n: usize, p: f64, seed: u64, threads: usize) -> Vec<f32> {
    let mut out = vec![0f32; n];
    // Keep when a uniform 32-bit draw is below this threshold.
    let keep = ((1.0 - p) * 4_294_967_296.0).round().min(u32::MAX as f64) as u64;
    let scale = (1.0 / (1.0 - p)) as f32;
    let fill = |chunk_index: usize, chunk: &mut [f32]| {
        let mut state = mix(seed ^ mix(chunk_index as u64));
        let mut pairs = chunk.chunks_exact_mut(2);
        for pair in &mut pairs {
            let r = wyrand(&mut state);
            pair[0] = if (r & 0xffff_ffff) < keep { scale } else { 0.0 };
            pair[1] = if (r >> 32) < keep { scale } else { 0.0 };
        }
        for last in pairs.into_remainder() {
            *last = if (wyrand(&mut state) & 0xffff_ffff) < keep { scale } else { 0.0 };
        }
    };
    if threads <= 1 || n < PARALLEL_FROM {
        out.chunks_mut(CHUNK).enumerate().for_each(|(i, c)| fill(i, c));
        return out;
    }
    let chunks: Vec<(usize, &mut [f32])> = out.chunks_mut(CHUNK).enumerate().collect();
    let per_thread = chunks.len().div_ceil(threads);
    let mut chunks = chunks.into_iter();
    std::thread::scope(|s| {
        for _ in 0..threads {
            let mine: Vec<(usize, &mut [f32])> = chunks.by_ref().take(per_thread).collect();
            let fill = &fill;
            s.spawn(move || mine.into_iter().for_each(|(i, c)| fill(i, c)));
        }
    });
    out
}

/// SplitMix64's finaliser: a well-mixed 64-bit value from any input (also used to derive the
/// seeds of a run's random streams, see `train::stream_seed`).
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn wyrand(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0xa076_1d64_78bd_642f);
    let t = (*state as u128).wrapping_mul((*state ^ 0xe703_7ed1_a0b4_28db) as u128);
    ((t >> 64) ^ t) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_one_minus_p_scaled_and_does_not_depend_on_threads() {
        for p in [0.1, 0.5] {
            let m = mask(1_000_003, p, 42, 1);
            let kept = m.iter().filter(|&&v| v > 0.0).count() as f64 / m.len() as f64;
            assert!((kept - (1.0 - p)).abs() < 0.003, "p = {p}: kept {kept}");
            assert!(m.iter().all(|&v| v == 0.0 || (v - 1.0 / (1.0 - p) as f32).abs() < 1e-6));
            let mean = m.iter().map(|&v| v as f64).sum::<f64>() / m.len() as f64;
            assert!((mean - 1.0).abs() < 0.01, "inverted dropout keeps the mean: {mean}");
            assert_eq!(m, mask(1_000_003, p, 42, 3), "the mask depends on the seed, not the threads");
            assert_ne!(m, mask(1_000_003, p, 43, 1));
        }
    }

    #[test]
    fn dropout_of_rows_keeps_the_padded_tensors_mask() {
        let opts = (Kind::Float, tch::Device::Cpu);
        let rows = Tensor::from_slice(&[1i64, 4, 9]);
        tch::manual_seed(5);
        let padded = dropout(&Tensor::ones([10, 70], opts), 0.3);
        tch::manual_seed(5);
        let packed = dropout_rows(&Tensor::ones([3, 70], opts), 0.3, 10, &rows);
        assert_eq!((packed - padded.index_select(0, &rows)).abs().max().double_value(&[]), 0.0);
    }

    #[test]
    fn gradients_flow_through_the_kept_elements() {
        let x = Tensor::ones([64, 300], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
        let y = dropout(&x, 0.25);
        y.sum(Kind::Float).backward();
        let g = x.grad();
        assert_eq!((g - &y.detach()).abs().max().double_value(&[]), 0.0, "d(sum)/dx equals the mask");
        assert_eq!(dropout(&x, 0.0).detach().sum(Kind::Float).double_value(&[]), 64.0 * 300.0);
    }
}

//! Inverted dropout whose masks are drawn on all intra-op threads.
//!
//! libtorch draws CPU dropout masks element by element on one thread (its parallel MKL path
//! is taken on Intel CPUs only), which made mask drawing about a fifth of a training step on
//! this project's machine. Here the mask is drawn in fixed-size chunks, each from its own
//! small generator (wyrand) seeded from one number drawn from libtorch's generator and the
//! chunk's index: the mask depends on the seed only, not on the thread count, and a run
//! reseeded per step (see `streams::Stream`) stays reproducible. Masks are written straight into
//! the tensor's memory, and since every value can be computed on its own (wyrand's state is a
//! counter), packed hidden states draw the masks of their real rows only.

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
        None => with_mask(x, Draw::new(p, draw_seed())),
    }
}

/// `x` times the mask of `draw` (CPU).
fn with_mask(x: &Tensor, draw: Draw) -> Tensor {
    x * cpu_mask(x.numel(), |out| fill_parallel(out, draw, intra_op_threads()))
        .view(x.size().as_slice())
        .to_kind(x.kind())
}

/// [`dropout`] of `x: (N, H)`, the rows `rows` of a larger (padded) `(·, H)` tensor: each row
/// gets the mask it would get in the padded tensor (the same random numbers with or without
/// packing); only the rows kept are drawn.
pub fn dropout_rows(x: &Tensor, p: f64, rows: &[i64]) -> Tensor {
    match not_drawn_here(x, p) {
        Some(y) => y,
        None => with_row_masks(x, rows, Draw::new(p, draw_seed())),
    }
}

/// `x: (N, H)` times rows `rows` of the mask of `draw` seen as `(·, H)` (CPU).
fn with_row_masks(x: &Tensor, rows: &[i64], draw: Draw) -> Tensor {
    let h = x.size()[1] as usize;
    let mask = cpu_mask(rows.len() * h, |out| {
        let n = out.len();
        let parts = out.chunks_mut(h).zip(rows).collect::<Vec<_>>();
        in_parallel(parts, n, intra_op_threads(), |(row, &r)| fill(row, r as usize * h, draw));
    });
    x * mask.view([rows.len() as i64, h as i64]).to_kind(x.kind())
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

/// A mask's seed: one draw from libtorch's generator.
fn draw_seed() -> u64 {
    Tensor::randint(i64::MAX, [1], (Kind::Int64, tch::Device::Cpu)).int64_value(&[0]) as u64
}

/// A new CPU float tensor of `n` values, written in place by `write`.
fn cpu_mask(n: usize, write: impl FnOnce(&mut [f32])) -> Tensor {
    let t = Tensor::empty([n as i64], (Kind::Float, tch::Device::Cpu));
    if n > 0 {
        // SAFETY: `t` is a new contiguous CPU float tensor of `n > 0` elements; nothing else
        // refers to its memory while `out` lives.
        let out = unsafe { std::slice::from_raw_parts_mut(t.data_ptr() as *mut f32, n) };
        write(out);
    }
    t
}

/// How one mask is drawn: its seed, the keep threshold and the scale of kept elements.
#[derive(Clone, Copy)]
struct Draw {
    seed: u64,
    /// Keep when a uniform 32-bit draw is below this threshold.
    keep: u64,
    scale: f32,
}

impl Draw {
    fn new(p: f64, seed: u64) -> Self {
        let keep = ((1.0 - p) * 4_294_967_296.0).round().min(u32::MAX as f64) as u64;
        Self { seed, keep, scale: (1.0 / (1.0 - p)) as f32 }
    }

    fn value(&self, half: u64) -> f32 {
        if half < self.keep {
            self.scale
        } else {
            0.0
        }
    }
}

/// A mask of `n` values, each 0 with probability `p` and 1 / (1 − p) otherwise.
pub fn mask(n: usize, p: f64, seed: u64, threads: usize) -> Vec<f32> {
    let mut out = vec![0f32; n];
    fill_parallel(&mut out, Draw::new(p, seed), threads);
    out
}

fn intra_op_threads() -> usize {
    tch::get_num_threads().max(1) as usize
}

/// The whole mask (elements from 0) on `threads` threads (on the calling one below
/// [`PARALLEL_FROM`] values).
fn fill_parallel(out: &mut [f32], draw: Draw, threads: usize) {
    let per = out.len().div_ceil(threads.max(1)).max(1);
    let n = out.len();
    let parts = out.chunks_mut(per).enumerate().map(|(i, part)| (part, i * per)).collect::<Vec<_>>();
    in_parallel(parts, n, threads, |(part, from)| fill(part, from, draw));
}

/// Runs `work` on every part, spread over `threads` threads when there are at least
/// [`PARALLEL_FROM`] values in all.
fn in_parallel<T: Send>(parts: Vec<T>, values: usize, threads: usize, work: impl Fn(T) + Sync) {
    if threads <= 1 || values < PARALLEL_FROM || parts.len() < 2 {
        parts.into_iter().for_each(work);
        return;
    }
    let per_thread = parts.len().div_ceil(threads);
    let mut parts = parts.into_iter();
    let work = &work;
    std::thread::scope(|s| {
        for _ in 0..threads {
            let mine: Vec<T> = parts.by_ref().take(per_thread).collect();
            s.spawn(move || mine.into_iter().for_each(work));
        }
    });
}

/// The mask values of elements `start .. start + out.len()`. Element `e` is decided by one half
/// of draw number `(e mod CHUNK) / 2` of chunk `e / CHUNK`'s own wyrand stream (low half for
/// even positions), and wyrand's state is a counter, so any range is drawn on its own, on any
/// thread, with the same values as a sequential draw of the whole mask.
fn fill(out: &mut [f32], start: usize, draw: Draw) {
    let mut done = 0;
    while done < out.len() {
        let e = start + done;
        let chunk = e / CHUNK;
        let in_chunk = e - chunk * CHUNK;
        let n = (CHUNK - in_chunk).min(out.len() - done);
        let base = mix(draw.seed ^ mix(chunk as u64));
        let nth = |q: usize| wyrand_at(base, q as u64);
        let mut k = in_chunk;
        let mut rest = &mut out[done..done + n];
        if k % 2 == 1 {
            rest[0] = draw.value(nth(k / 2) >> 32);
            rest = &mut rest[1..];
            k += 1;
        }
        let mut pairs = rest.chunks_exact_mut(2);
        for pair in &mut pairs {
            let r = nth(k / 2);
            pair[0] = draw.value(r & 0xffff_ffff);
            pair[1] = draw.value(r >> 32);
            k += 2;
        }
        if let [last] = pairs.into_remainder() {
            *last = draw.value(nth(k / 2) & 0xffff_ffff);
        }
        done += n;
    }
}

/// SplitMix64's finaliser: a well-mixed 64-bit value from any input (also used to derive the
/// seeds of a run's random streams, see `streams::stream_seed`).
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Draw number `q` (from 0) of the wyrand stream that starts at state `base`: the state
/// advances by a constant per draw, so the `q`-th one is computed directly.
fn wyrand_at(base: u64, q: u64) -> u64 {
    let state = base.wrapping_add(q.wrapping_add(1).wrapping_mul(0xa076_1d64_78bd_642f));
    let t = (state as u128).wrapping_mul((state ^ 0xe703_7ed1_a0b4_28db) as u128);
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

    /// The masks' random stream is part of the training numerics: this pins it (the values
    /// were computed by the first, sequential implementation).
    #[test]
    fn the_stream_is_pinned() {
        let m = mask(100_003, 0.1, 42, 2);
        let dropped: Vec<usize> = m.iter().enumerate().filter(|(_, &v)| v == 0.0).map(|(i, _)| i).collect();
        let checksum = dropped.iter().fold(0u64, |h, &i| mix(h ^ i as u64));
        assert_eq!(
            (dropped.len(), &dropped[..8], checksum),
            (10016, &[0usize, 15, 18, 25, 32, 37, 40, 44][..], 12483403293344930088)
        );
    }

    #[test]
    fn any_range_is_drawn_as_in_the_whole_mask() {
        let whole = mask(3 * CHUNK + 5, 0.2, 7, 1);
        let draw = Draw::new(0.2, 7);
        for (start, len) in [(0, 1), (1, 1), (1, 2), (CHUNK - 3, 7), (CHUNK - 2, CHUNK + 4), (3 * CHUNK - 1, 6)] {
            let mut part = vec![-1f32; len];
            fill(&mut part, start, draw);
            assert_eq!(part, whole[start..start + len], "range {start}..+{len}");
        }
    }

    #[test]
    fn dropout_of_rows_keeps_the_padded_tensors_mask() {
        let opts = (Kind::Float, tch::Device::Cpu);
        let rows = Tensor::from_slice(&[1i64, 4, 9]);
        let padded = with_mask(&Tensor::ones([10, 71], opts), Draw::new(0.3, 5));
        let packed = with_row_masks(&Tensor::ones([3, 71], opts), &[1, 4, 9], Draw::new(0.3, 5));
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

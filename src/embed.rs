//! Sentence embeddings from the frozen encoder: the `embed` command's library side.

use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};
use crate::model::{Encoder, Forward, Pooling, TextTokenizer};

/// Embeds `texts` (each a sentence, or `a \t b` is NOT split: one text per entry) in
/// length-sorted batches of `batch_size`, returning `(N, H)` in input order.
pub fn embed_texts(
    encoder: &Encoder,
    tokenizer: &TextTokenizer,
    texts: &[String],
    pooling: Pooling,
    normalize: bool,
    batch_size: usize,
) -> Result<Tensor> {
    let _guard = tch::no_grad_guard();
    let enc = texts.iter().map(|t| tokenizer.encode(t, None)).collect::<Result<Vec<_>>>()?;
    let mut order: Vec<usize> = (0..texts.len()).collect();
    order.sort_by_key(|&i| enc[i].0.len());
    let h = encoder.hidden_size();
    let mut out = Tensor::zeros([texts.len() as i64, h], (Kind::Float, Device::Cpu));
    for chunk in order.chunks(batch_size.max(1)) {
        let items: Vec<_> = chunk.iter().map(|&i| enc[i].clone()).collect();
        let batch = crate::model::tokenizer::pad_batch(&items, tokenizer.pad_id(), encoder.device());
        let hidden = encoder.forward(&batch, None, Forward::default());
        let mut pooled = pooling.pool(&hidden, &batch.attention_mask);
        if normalize {
            pooled = &pooled / pooled.norm_scalaropt_dim(2, [1], true).clamp_min(1e-12);
        }
        let idx = Tensor::from_slice(&chunk.iter().map(|&i| i as i64).collect::<Vec<_>>());
        let _ = out.index_copy_(0, &idx, &pooled.to(Device::Cpu));
    }
    Ok(out)
}

/// Parses `cpu`, `cuda` or `cuda:N` into a device, checking that libtorch sees it.
pub fn parse_device(s: &str) -> Result<Device> {
    let dev = match s {
        "cpu" => return Ok(Device::Cpu),
        "cuda" => 0,
        _ => s
            .strip_prefix("cuda:")
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| Error::Input(format!("unknown device \"{s}\" (expected cpu, cuda or cuda:N)")))?,
    };
    let count = tch::Cuda::device_count() as usize;
    if dev >= count {
        return Err(Error::Input(format!(
            "device \"{s}\" is not available: libtorch sees {count} CUDA device(s) (this binary may be a CPU-only build)"
        )));
    }
    Ok(Device::Cuda(dev))
}

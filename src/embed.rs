//! Sentence embeddings from the frozen encoder: the `embed` command's library side.

use std::io::Read;
use std::path::Path;

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

/// The texts of `input` (a file, or standard input for `None` or `-`), one per line, for
/// `embed`: output line i is the embedding of input line i, so an empty line, a line that is
/// not UTF-8 or a folder is refused with one line naming it (lines as [`crate::predict::split_lines`]
/// splits them: a trailing `\r` is dropped, a byte-order mark skipped).
pub fn read_texts(input: Option<&Path>) -> Result<Vec<String>> {
    let path = input.filter(|p| p.as_os_str() != "-");
    let name = path.map_or_else(|| "<stdin>".to_string(), |p| p.display().to_string());
    let bytes = match path {
        None => {
            let mut bytes = Vec::new();
            std::io::stdin().read_to_end(&mut bytes).map_err(|e| Error::Input(format!("{name}: cannot read: {e}")))?;
            bytes
        }
        Some(p) if p.is_dir() => {
            return Err(Error::Input(format!("{name}: a folder; expected a text file with one text per line")))
        }
        Some(p) => std::fs::read(p).map_err(|e| Error::io(p, e))?,
    };
    let mut texts = Vec::new();
    for (i, line) in crate::predict::split_lines(&bytes).into_iter().enumerate() {
        let line =
            std::str::from_utf8(line).map_err(|_| Error::Input(format!("{name}:{}: not valid UTF-8 text", i + 1)))?;
        if line.trim().is_empty() {
            return Err(Error::Input(format!(
                "{name}:{}: empty line; embed writes one embedding per input line, so every line needs a text",
                i + 1
            )));
        }
        texts.push(line.to_string());
    }
    Ok(texts)
}

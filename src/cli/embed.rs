//! `prefix-subspace embed`: print sentence embeddings, one JSON array per line.

use std::path::PathBuf;

use std::io::Write;

use anyhow::{bail, Result};
use clap::ValueEnum;
use prefix_subspace::embed::{embed_texts, parse_device};
use prefix_subspace::model::{Encoder, Pooling, TextTokenizer};
use prefix_subspace::paths;

#[derive(Copy, Clone, ValueEnum)]
pub enum PoolArg {
    /// The pooling the model folder declares (sentence-transformers), else the first token.
    Auto,
    /// Mean over real tokens.
    Mean,
    /// The first token ([CLS] / <s>).
    Cls,
}

/// The flags of `embed`.
#[derive(clap::Args)]
pub struct Args {
    /// Hugging Face model folder (config.json, model.safetensors, tokenizer files).
    /// Default: the installed all-MiniLM-L6-v2.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Pooling of the final hidden states.
    #[arg(long, value_enum, default_value = "auto")]
    pool: PoolArg,
    /// Scale each embedding to unit length.
    #[arg(long)]
    normalize: bool,
    /// Read texts from a file, one per line ("-" for stdin). Without TEXT or --input, stdin is read.
    #[arg(long, conflicts_with = "texts")]
    input: Option<PathBuf>,
    /// Truncate inputs to this many tokens.
    /// (Default: 256, or the model's limit when that is smaller.)
    #[arg(long)]
    max_len: Option<usize>,
    /// Batch size.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// fp32 or bf16: the number format of the dense-layer products (bf16: faster on CPUs
    /// with AMX or on Zen 4; embeddings differ slightly from fp32's, see docs/correctness.md).
    #[arg(long, default_value = "fp32")]
    precision: String,
    /// Texts to embed.
    texts: Vec<String>,
}

/// Runs `embed`.
pub fn run(args: Args) -> Result<()> {
    let Args { model, pool, normalize, input, max_len, batch_size, device, precision, texts } = args;
    let dir = model_dir(model)?;
    let device = parse_device(&device)?;
    let precision = prefix_subspace::config::Precision::parse(&precision)?;
    let texts = if texts.is_empty() { prefix_subspace::embed::read_texts(input.as_deref())? } else { texts };
    if texts.is_empty() {
        bail!("no text to embed (give TEXT arguments, --input FILE, or lines on stdin)");
    }
    let mut encoder = Encoder::load(&dir, device)?;
    encoder.set_product_kind(precision.product_kind());
    let limit = encoder.max_tokens(0);
    let max_len = max_len.unwrap_or(256.min(limit.max(2) as usize));
    if max_len < 2 || max_len as i64 > limit {
        bail!(
            "--max-len {max_len}: expected an integer in [2, {limit}] for this model (max_position_embeddings {} in {})",
            encoder.config.max_position_embeddings,
            dir.join("config.json").display()
        );
    }
    if batch_size == 0 {
        bail!("--batch-size 0: expected at least 1");
    }
    let tokenizer = TextTokenizer::from_dir(&dir, max_len)?;
    prefix_subspace::model::check_vocab(&tokenizer, &encoder.config, &dir)?;
    let pooling = match pool {
        PoolArg::Auto => Pooling::auto(&dir)?,
        PoolArg::Mean => Pooling::Mean,
        PoolArg::Cls => Pooling::Cls,
    };
    let emb = embed_texts(&encoder, &tokenizer, &texts, pooling, normalize, batch_size)?;
    let rows: Vec<Vec<f32>> = Vec::<Vec<f32>>::try_from(&emb)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for r in rows {
        serde_json::to_writer(&mut out, &r)?;
        writeln!(out)?;
    }
    out.flush()?;
    Ok(())
}

fn model_dir(model: Option<PathBuf>) -> Result<PathBuf> {
    let dir = model.as_deref().map(paths::model).unwrap_or_else(paths::default_model);
    if !dir.exists() {
        bail!("{}", paths::model_not_found(&dir));
    }
    if prefix_subspace::model::is_decoder(&dir)? {
        bail!(
            "{}: a decoder LLM; embed computes sentence embeddings with an encoder's model folder (e.g. --model all-MiniLM-L6-v2)",
            dir.display()
        );
    }
    if !dir.is_dir() {
        bail!("{}: embed takes an encoder's model folder (config.json, weights, tokenizer), not a file", dir.display());
    }
    Ok(dir)
}

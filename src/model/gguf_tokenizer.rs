//! The tokenizer a GGUF file describes, rebuilt with the `tokenizers` crate as Hugging Face
//! transformers builds it (see [`super::gguf`] for the flavours): the vocabulary, merges,
//! normalizer, pre-tokenizer, decoder and the BOS/EOS post-processor.

use std::collections::{HashMap, HashSet};

use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::decoders::DecoderWrapper;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::normalizers::{Prepend, Replace, Sequence as NormalizerSequence};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::pre_tokenizers::sequence::Sequence as PreTokenizerSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{SplitDelimiterBehavior, Tokenizer};

/// The tokenizer of a GGUF file, with its special token ids.
///
/// `tokenizer.encode(text, true)` gives the ids transformers' `tokenizer(text)["input_ids"]`
/// gives (BOS first when `add_bos`, EOS last when `add_eos`); `encode(text, false)` gives the
/// same ids without them.
pub struct GgufTokenizer {
    /// The tokenizer, its post-processor adding BOS / EOS as transformers does.
    pub tokenizer: Tokenizer,
    /// The id of the BOS token, if the file names one.
    pub bos_id: Option<u32>,
    /// The id of the EOS token, if the file names one.
    pub eos_id: Option<u32>,
    /// The id of the padding token, if the file names one.
    pub pad_id: Option<u32>,
    /// Whether `tokenizer(text)` in transformers starts with BOS.
    pub add_bos: bool,
    /// Whether `tokenizer(text)` in transformers ends with EOS.
    pub add_eos: bool,
}

impl std::fmt::Debug for GgufTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufTokenizer")
            .field("vocab", &self.tokenizer.get_vocab_size(true))
            .field("bos_id", &self.bos_id)
            .field("eos_id", &self.eos_id)
            .field("pad_id", &self.pad_id)
            .field("add_bos", &self.add_bos)
            .field("add_eos", &self.add_eos)
            .finish()
    }
}

/// llama.cpp's token types (`tokenizer.ggml.token_type`).
pub(super) const TOKEN_CONTROL: i128 = 3;
pub(super) const TOKEN_USER_DEFINED: i128 = 4;

/// Which of transformers' tokenizer builders a file gets.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Flavour {
    /// `gpt2`: `GPT2Tokenizer`.
    ByteLevel,
    /// `llama` (other architectures): `LlamaTokenizer`.
    Llama,
    /// `llama` for `phi3`: `LlamaTokenizer` with a normalizer for the prefix space.
    Phi3,
    /// `llama` for `gemma`, `gemma2`, `gemma3`: `GemmaTokenizer`, respelled, position-ranked.
    Gemma,
    /// `gemma4`: `GemmaTokenizer`.
    Gemma4,
}

impl Flavour {
    /// The default special tokens of the transformers class the vocabulary is handed to,
    /// which it adds before the file's own.
    pub(super) fn class_specials(self) -> &'static [&'static str] {
        match self {
            Flavour::ByteLevel => &["<|endoftext|>"],
            Flavour::Llama | Flavour::Phi3 => &["<s>", "</s>", "<unk>"],
            Flavour::Gemma | Flavour::Gemma4 => &["<bos>", "<eos>", "<unk>", "<pad>", "<mask>"],
        }
    }
}

/// The vocabulary part of the metadata.
pub(super) struct VocabSpec<'a> {
    pub(super) tokens: Vec<&'a str>,
    pub(super) types: Vec<i128>,
    pub(super) scores: Option<Vec<f64>>,
    pub(super) merges: Option<Vec<&'a str>>,
}

/// The split regexes transformers uses for byte-level vocabularies, by `tokenizer.ggml.pre`.
pub(super) fn split_regex(pre: &str) -> Option<&'static str> {
    const LLAMA3: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    const TEKKEN: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    const GPT4O: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    const QWEN2: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    const QWEN35: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    Some(match pre {
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0" | "lfm2"
        | "jina-v5-nano" | "dbrx" | "smaug-bpe" => LLAMA3,
        "tekken" => TEKKEN,
        "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "megrez" => QWEN2,
        "qwen35" => QWEN35,
        "gpt-4o" | "llama4" | "kanana2" | "talkie" | "minimax-m2" => GPT4O,
        _ => return None,
    })
}

/// GPT-2's map from bytes to the printable characters that spell them in a byte-level
/// vocabulary.
pub(super) fn byte_chars() -> [char; 256] {
    let mut out = ['\0'; 256];
    let mut next = 256u32;
    for b in 0..=255u8 {
        let printable = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        out[usize::from(b)] = if printable {
            char::from(b)
        } else {
            next += 1;
            char::from_u32(next - 1).unwrap_or('\0')
        };
    }
    out
}

/// Python's `str.isspace` for one character (Rust's `is_whitespace` plus `\x1c`–`\x1f`).
pub(super) fn py_isspace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Keys in first-seen order, each with its last value: a Python dict built from pairs.
pub(super) fn py_dict<'a, V: Copy>(pairs: impl Iterator<Item = (&'a str, V)>) -> Vec<(&'a str, V)> {
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut out: Vec<(&str, V)> = Vec::new();
    for (k, v) in pairs {
        match index.get(k) {
            Some(&i) => out[i].1 = v,
            None => {
                index.insert(k, out.len());
                out.push((k, v));
            }
        }
    }
    out
}

/// transformers' `generate_merges(vocab, vocab_scores)`: every split of every token into two
/// tokens of the vocabulary, best score first, then longer left, then longer right part
/// (ties in vocabulary-id order of the parts, as Python's stable sort leaves them).
pub(super) fn generate_merges(vocab: &Vocab, scored: &[(&str, f64)]) -> Vec<(String, String)> {
    // (left, right, score as a sortable key, characters left, characters right)
    let mut merges: Vec<(&str, &str, f64, usize, usize)> = Vec::new();
    for &(token, score) in scored {
        let key = if score.is_nan() { f64::NEG_INFINITY } else { score + 0.0 };
        let start = merges.len();
        for (n, (i, _)) in token.char_indices().enumerate().skip(1) {
            let (l, r) = token.split_at(i);
            if let (Some(_), Some(_)) = (vocab.get(l), vocab.get(r)) {
                merges.push((l, r, key, n, token[i..].chars().count()));
            }
        }
        merges[start..].sort_by_key(|m| (vocab.get(m.0).copied(), vocab.get(m.1).copied()));
    }
    merges.sort_by(|a, b| b.2.total_cmp(&a.2).then(b.3.cmp(&a.3)).then(b.4.cmp(&a.4)));
    merges.into_iter().map(|(l, r, ..)| (l.to_string(), r.to_string())).collect()
}

/// The merges of the file (`"left right"` each), or those its vocabulary implies.
pub(super) fn merges_of(
    spec: &VocabSpec,
    vocab: &Vocab,
    scored: Option<Vec<(&str, f64)>>,
) -> std::result::Result<Vec<(String, String)>, String> {
    if let Some(m) = &spec.merges {
        return m
            .iter()
            .map(|line| {
                let mut parts = line.split(' ');
                match (parts.next(), parts.next(), parts.next()) {
                    (Some(l), Some(r), None) => Ok((l.to_string(), r.to_string())),
                    _ => Err(format!("tokenizer.ggml.merges holds \"{line}\", not two tokens separated by a space")),
                }
            })
            .collect();
    }
    let scored = match scored {
        Some(s) => s,
        None => {
            let scores =
                spec.scores.as_ref().ok_or("the file has neither tokenizer.ggml.merges nor tokenizer.ggml.scores")?;
            py_dict(spec.tokens.iter().copied().zip(scores.iter().copied()))
        }
    };
    Ok(generate_merges(vocab, &scored))
}

/// `{token: index}` (the last index of a repeated token).
pub(super) fn vocab_of<'a>(tokens: impl Iterator<Item = &'a str>) -> std::result::Result<Vocab, String> {
    let mut vocab = Vocab::default();
    for (i, t) in tokens.enumerate() {
        let id = u32::try_from(i).map_err(|_| "more than 2^32 tokens".to_string())?;
        vocab.insert(t.to_string(), id);
    }
    Ok(vocab)
}

/// The model, normalizer, pre-tokenizer and decoder of a flavour (no added tokens yet).
pub(super) fn build(flavour: Flavour, spec: &VocabSpec, pre: Option<&str>) -> std::result::Result<Tokenizer, String> {
    let e = |e: tokenizers::Error| e.to_string();
    let sentencepiece_decoder = |strip: bool| {
        let mut steps: Vec<DecoderWrapper> =
            vec![Replace::new("▁", " ").map_err(e)?.into(), ByteFallback::new().into(), Fuse::new().into()];
        if strip {
            steps.push(Strip::new(' ', 1, 0).into());
        }
        Ok::<_, String>(DecoderSequence::new(steps))
    };
    let mut tokenizer = match flavour {
        Flavour::ByteLevel => {
            let spelling = byte_chars();
            let alphabet: HashSet<char> = spelling.iter().copied().collect();
            let respelled: Vec<String> = spec
                .tokens
                .iter()
                .map(|t| {
                    if t.chars().all(|c| alphabet.contains(&c)) {
                        t.to_string()
                    } else {
                        t.bytes().map(|b| spelling[usize::from(b)]).collect()
                    }
                })
                .collect();
            let vocab = vocab_of(respelled.iter().map(String::as_str))?;
            // Without merges in the file, transformers recovers them from the raw tokens.
            let merges = if spec.merges.is_some() {
                merges_of(spec, &vocab, None)?
            } else {
                merges_of(spec, &vocab_of(spec.tokens.iter().copied())?, None)?
            };
            let bpe = BPE::builder()
                .vocab_and_merges(vocab, merges)
                .continuing_subword_prefix(String::new())
                .end_of_word_suffix(String::new())
                .fuse_unk(false)
                .build()
                .map_err(e)?;
            let mut t = Tokenizer::new(bpe);
            t.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
            t.with_decoder(Some(tokenizers::decoders::byte_level::ByteLevel::default()));
            t
        }
        Flavour::Llama | Flavour::Phi3 => {
            let vocab = vocab_of(spec.tokens.iter().copied())?;
            let merges = merges_of(spec, &vocab, None)?;
            let bpe =
                BPE::builder().vocab_and_merges(vocab, merges).fuse_unk(true).byte_fallback(true).build().map_err(e)?;
            let mut t = Tokenizer::new(bpe);
            if flavour == Flavour::Phi3 {
                let n = NormalizerSequence::new(vec![
                    Prepend::new("▁".into()).into(),
                    Replace::new(" ", "▁").map_err(e)?.into(),
                ]);
                t.with_normalizer(Some(n)).map_err(e)?;
            } else {
                t.with_pre_tokenizer(Some(Metaspace::new('▁', PrependScheme::First, false)));
            }
            t.with_decoder(Some(sentencepiece_decoder(true)?));
            t
        }
        Flavour::Gemma | Flavour::Gemma4 => {
            // Gemma files store a token of two or more spaces as spaces; the normalizer
            // writes spaces as ▁, so transformers respells those tokens.
            let respelled: Vec<String> = spec
                .tokens
                .iter()
                .map(|t| {
                    if flavour == Flavour::Gemma && t.contains(' ') && t.chars().all(py_isspace) {
                        "▁".repeat(t.chars().count())
                    } else {
                        t.to_string()
                    }
                })
                .collect();
            let vocab = vocab_of(respelled.iter().map(String::as_str))?;
            let merges = if flavour == Flavour::Gemma {
                // Ranked by position in the file, not by score.
                let positions = py_dict(respelled.iter().enumerate().map(|(i, t)| (t.as_str(), -(i as f64))));
                merges_of(spec, &vocab, Some(positions))?
            } else {
                merges_of(spec, &vocab, None)?
            };
            let bpe = BPE::builder()
                .vocab_and_merges(vocab, merges)
                .unk_token("<unk>".into())
                .fuse_unk(true)
                .byte_fallback(true)
                .build()
                .map_err(e)?;
            let mut t = Tokenizer::new(bpe);
            t.with_normalizer(Some(Replace::new(" ", "▁").map_err(e)?)).map_err(e)?;
            t.with_pre_tokenizer(Some(
                Split::new(SplitPattern::String(" ".into()), SplitDelimiterBehavior::MergedWithPrevious, false)
                    .map_err(e)?,
            ));
            t.with_decoder(Some(sentencepiece_decoder(false)?));
            t
        }
    };
    if let Some(regex) = pre.and_then(split_regex) {
        let split =
            Split::new(SplitPattern::Regex(regex.into()), SplitDelimiterBehavior::Isolated, false).map_err(e)?;
        tokenizer.with_pre_tokenizer(Some(PreTokenizerSequence::new(vec![
            split.into(),
            ByteLevel::new(false, true, false).into(),
        ])));
    }
    Ok(tokenizer)
}

/// transformers' post-processor: `[BOS] $A [EOS]` for one text, `[BOS] $A [EOS] [BOS] $B [EOS]`
/// (second half type 1) for a pair, with whichever of BOS / EOS is added.
pub(super) fn template(
    bos: Option<(&str, u32)>,
    eos: Option<(&str, u32)>,
) -> std::result::Result<TemplateProcessing, String> {
    let piece = |t: &str, type_id: u32| serde_json::json!({"SpecialToken": {"id": t, "type_id": type_id}});
    let sequence = |s: &str, type_id: u32| serde_json::json!({"Sequence": {"id": s, "type_id": type_id}});
    let half = |s: &str, type_id: u32| {
        let mut v = Vec::new();
        v.extend(bos.map(|(t, _)| piece(t, type_id)));
        v.push(sequence(s, type_id));
        v.extend(eos.map(|(t, _)| piece(t, type_id)));
        v
    };
    let single = half("A", 0);
    let pair: Vec<_> = half("A", 0).into_iter().chain(half("B", 1)).collect();
    let mut special = serde_json::Map::new();
    for (t, id) in [bos, eos].into_iter().flatten() {
        special.insert(t.to_string(), serde_json::json!({"id": t, "ids": [id], "tokens": [t]}));
    }
    let json =
        serde_json::json!({"type": "TemplateProcessing", "single": single, "pair": pair, "special_tokens": special});
    serde_json::from_value(json).map_err(|e| format!("post-processor: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_merges_matches_transformers() {
        // transformers' generate_merges on the same vocabulary (with a repeated token "b"),
        // ranked by scores and by position.
        let tokens = ["a", "b", "c", "ab", "bc", "abc", "ca", "cab", "b", "abca"];
        let scores = [0.0, -1.0, -2.0, -3.0, -3.0, -1.5, -4.0, -0.5, -7.0, -3.0];
        let vocab = vocab_of(tokens.iter().copied()).unwrap();
        let pairs = |v: &[(&str, &str)]| v.iter().map(|(l, r)| (l.to_string(), r.to_string())).collect::<Vec<_>>();
        let by_score = generate_merges(&vocab, &py_dict(tokens.iter().copied().zip(scores)));
        let want = [("ca", "b"), ("c", "ab"), ("ab", "c"), ("a", "bc"), ("abc", "a"), ("ab", "ca"), ("a", "b")];
        let want: Vec<_> = want.into_iter().chain([("b", "c"), ("c", "a")]).collect();
        assert_eq!(by_score, pairs(&want));
        let by_position = generate_merges(&vocab, &py_dict(tokens.iter().enumerate().map(|(i, t)| (*t, -(i as f64)))));
        let want = [("a", "b"), ("b", "c"), ("ab", "c"), ("a", "bc"), ("c", "a"), ("ca", "b"), ("c", "ab")];
        let want: Vec<_> = want.into_iter().chain([("abc", "a"), ("ab", "ca")]).collect();
        assert_eq!(by_position, pairs(&want));
    }

    #[test]
    fn byte_chars_spell_the_byte_level_alphabet() {
        let chars = byte_chars();
        let set: HashSet<char> = chars.iter().copied().collect();
        assert_eq!(set.len(), 256);
        assert_eq!(set, ByteLevel::alphabet().into_iter().collect::<HashSet<char>>());
        assert_eq!((chars[usize::from(b' ')], chars[usize::from(b'\n')], chars[usize::from(b'A')]), ('Ġ', 'Ċ', 'A'));
    }

    #[test]
    fn every_split_regex_compiles_and_splits() {
        for pre in ["llama-bpe", "tekken", "qwen2", "qwen35", "gpt-4o"] {
            let regex = split_regex(pre).unwrap();
            let split = Split::new(SplitPattern::Regex(regex.into()), SplitDelimiterBehavior::Isolated, false).unwrap();
            let mut t = Tokenizer::new(BPE::default());
            t.with_pre_tokenizer(Some(split));
            let pieces = t.get_pre_tokenizer().unwrap();
            let mut s = tokenizers::PreTokenizedString::from("Hello world's 12345\n\n  done");
            tokenizers::PreTokenizer::pre_tokenize(pieces, &mut s).unwrap();
            let got: Vec<String> = s
                .get_splits(tokenizers::OffsetReferential::Original, tokenizers::OffsetType::Byte)
                .into_iter()
                .map(|(p, ..)| p.to_string())
                .collect();
            assert_eq!(got.concat(), "Hello world's 12345\n\n  done", "{pre}");
            assert!(got.len() >= 6, "{pre}: {got:?}");
        }
        assert!(split_regex("smollm").is_none());
    }

    #[test]
    fn python_whitespace() {
        assert!(py_isspace(' ') && py_isspace('\u{3000}') && py_isspace('\u{1f}'));
        assert!(!py_isspace('\u{2581}') && !py_isspace('a'));
    }
}

//! prefix-subspace: few-shot fine-tuning of a frozen BERT/RoBERTa encoder by learning a
//! simplex of deep prefixes (Falissard, Guigue, Soulier, EMNLP 2023 Findings).

pub mod data;
pub mod embed;
pub mod error;
pub mod metrics;
pub mod model;
pub mod paths;

pub use error::{Error, Result};

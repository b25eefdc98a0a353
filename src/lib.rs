//! prefix-subspace: few-shot fine-tuning of a frozen BERT/RoBERTa encoder by learning a
//! simplex of deep prefixes (Falissard, Guigue, Soulier, EMNLP 2023 Findings).

pub mod atomic;
pub mod bench;
pub mod config;
pub mod data;
pub mod embed;
pub mod error;
pub mod eval;
pub mod export;
pub mod figures;
pub mod import;
pub mod method;
pub mod metrics;
pub mod model;
pub mod optim;
pub mod paths;
pub mod plot;
pub mod predict;
pub mod prompt;
pub mod report;
pub mod results;
pub mod rundir;
pub mod session;
pub mod speed;
pub mod state;
pub mod streams;
pub mod task;
pub mod train;

pub use error::{Error, Result};

//! `lora`: LoRA (rank `lora_r`, scaling `lora_alpha / r`, unmerged) on the attention projections
//! named in `lora_targets`, + head.

use tch::nn;

use super::{LoraTargets, Method, Trainable};
use crate::config::RunConfig;
use crate::error::Result;
use crate::model::Backbone;

/// Low-rank adapters on the frozen attention projections.
pub struct Lora;

impl Method for Lora {
    fn name(&self) -> &'static str {
        "lora"
    }
    fn default_lr(&self) -> f64 {
        5e-4
    }
    fn prepare_backbone(&self, cfg: &RunConfig, backbone: &mut dyn Backbone, root: &nn::Path) -> Result<()> {
        backbone.add_lora(root, cfg.lora_r as i64, cfg.lora_alpha, &cfg.lora_targets)
    }
    fn trainable(&self, cfg: &RunConfig) -> Trainable {
        Trainable::Lora { r: cfg.lora_r as i64, targets: LoraTargets::of(&cfg.lora_targets) }
    }
}

//! `full`: full fine-tuning, every backbone weight trained, + head.

use tch::nn;

use super::{Method, Trainable};
use crate::config::RunConfig;
use crate::error::Result;
use crate::model::Backbone;

/// Every weight of the backbone, trained.
pub struct FullFineTuning;

impl Method for FullFineTuning {
    fn name(&self) -> &'static str {
        "full"
    }
    fn default_lr(&self) -> f64 {
        2e-5
    }
    fn prepare_backbone(&self, _cfg: &RunConfig, backbone: &mut dyn Backbone, root: &nn::Path) -> Result<()> {
        backbone.make_trainable(root, &|_| true);
        Ok(())
    }
    fn trainable(&self, _cfg: &RunConfig) -> Trainable {
        Trainable::Full
    }
}

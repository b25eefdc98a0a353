//! `bitfit`: BitFit, every bias of the backbone trained, + head.

use tch::nn;

use super::Method;
use crate::config::RunConfig;
use crate::error::{Error, Result};
use crate::model::Backbone;

/// The backbone's biases, trained.
pub struct Bitfit;

impl Method for Bitfit {
    fn name(&self) -> &'static str {
        "bitfit"
    }
    fn default_lr(&self) -> f64 {
        1e-3
    }
    fn prepare_backbone(&self, cfg: &RunConfig, backbone: &mut dyn Backbone, root: &nn::Path) -> Result<()> {
        if backbone.make_trainable(root, &|n| n.ends_with(".bias")) == 0 {
            return Err(Error::Input(format!(
                "method = \"bitfit\": {} has no bias to train",
                cfg.model_dir().display()
            )));
        }
        Ok(())
    }
}

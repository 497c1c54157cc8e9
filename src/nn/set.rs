//! TEMPORARY STUB (replaced by the set transformer from branch `setnet`).
use super::{Activation, NetError, Result};
use candle_core::{DType, Device, Tensor, Var};

pub struct SetNetConfig {
    pub component: usize,
    pub max: usize,
    pub width: usize,
    pub depth: usize,
    pub heads: usize,
    pub embed_dim: usize,
    pub activation: Activation,
    pub seed: u64,
}
pub struct SetOutput {
    pub eps: Tensor,
    pub n0_logits: Tensor,
    pub ins_mean: Tensor,
    pub ins_raw_std: Tensor,
}
pub struct SetTransformer {
    config: SetNetConfig,
}
impl SetTransformer {
    pub fn new(config: SetNetConfig, _dtype: DType, _device: &Device) -> Result<Self> {
        Ok(SetTransformer { config })
    }
    pub fn config(&self) -> &SetNetConfig {
        &self.config
    }
    pub fn forward(&self, _x: &Tensor, _mask: &Tensor, _t: &Tensor) -> Result<SetOutput> {
        Err(NetError::Config("stub".into()))
    }
    pub fn forward_eval(&self, _x: &Tensor, _mask: &Tensor, _t: &Tensor) -> Result<SetOutput> {
        Err(NetError::Config("stub".into()))
    }
    pub fn vars(&self) -> Vec<(String, Var)> {
        Vec::new()
    }
    pub fn weights(&self) -> Vec<(String, Tensor)> {
        Vec::new()
    }
    pub fn load_weights(&mut self, _tensors: &[(String, Tensor)]) -> Result<()> {
        Ok(())
    }
    pub fn parameter_count(&self) -> usize {
        0
    }
}

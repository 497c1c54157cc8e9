//! TEMPORARY shim until the nn branch lands: the Module trait over the current MLP.
pub use crate::run::net::NetError;
use candle_core::{Tensor, Var};
pub type Result<T> = std::result::Result<T, NetError>;

pub trait Module {
    fn forward(&self, x: &Tensor, t: &Tensor) -> Result<Tensor>;
    fn forward_eval(&self, x: &Tensor, t: &Tensor) -> Result<Tensor>;
    fn forward_with_time_tangent(&self, x: &Tensor, t: &Tensor) -> Result<(Tensor, Tensor)>;
    fn vars(&self) -> Vec<(String, Var)>;
    fn weights(&self) -> Vec<(String, Tensor)>;
    fn load_weights(&mut self, tensors: &[(String, Tensor)]) -> Result<()>;
}

impl Module for crate::run::net::Mlp {
    fn forward(&self, x: &Tensor, t: &Tensor) -> Result<Tensor> {
        crate::run::net::Mlp::forward(self, x, t)
    }
    fn forward_eval(&self, x: &Tensor, t: &Tensor) -> Result<Tensor> {
        crate::run::net::Mlp::forward_eval(self, x, t)
    }
    fn forward_with_time_tangent(&self, _x: &Tensor, _t: &Tensor) -> Result<(Tensor, Tensor)> {
        Err(NetError::Config("tangent pass not in the shim".into()))
    }
    fn vars(&self) -> Vec<(String, Var)> {
        crate::run::net::Mlp::vars(self)
    }
    fn weights(&self) -> Vec<(String, Tensor)> {
        crate::run::net::Mlp::weights(self)
    }
    fn load_weights(&mut self, tensors: &[(String, Tensor)]) -> Result<()> {
        crate::run::net::Mlp::load_weights(self, tensors)
    }
}

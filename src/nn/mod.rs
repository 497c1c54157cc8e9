//! Networks as modules: the [`Module`] trait that every network implements, and its parts.
//!
//! - [`linear`]: the linear layer `act(h·Wᵀ + b)` (fused CPU f32 kernel, plain-op path for every
//!   other device and dtype) and the activations;
//! - [`embed`]: time embeddings (sinusoidal, random Fourier, linear);
//! - [`mlp`]: the MLP score network, the first [`Module`];
//! - [`set`]: the [`SetNet`] contract of set networks and the set transformer;
//! - [`egnn`]: the E(n)-equivariant graph network, a set network for molecules;
//! - [`unet`]: the [`UNet`] image network (GroupNorm residual blocks, skips, attention at the
//!   lowest resolution), a [`Module`] on `[B, C·H·W]` rows or `[B, C, H, W]` images.
//!
//! A module maps a batch state `x` `[B, ...]` and the network time `t` `[B]` to an output, and
//! can also return `∂output/∂t` (x held fixed). candle has no forward-mode differentiation, so
//! the tangent is carried through the layers as `(value, tangent)` pairs built from ordinary
//! candle ops; backprop therefore trains through both. A new network (U-Net, set transformer) is
//! one new file here implementing [`Module`].

pub mod egnn;
pub mod embed;
pub mod fused;
pub mod linear;
pub mod mlp;
pub mod set;
pub mod unet;

pub use egnn::Egnn;
pub use embed::{Embedding, TimeEmbedding, FREQS_NAME};
pub use linear::{Activation, Kernel, Linear};
pub use mlp::{Mlp, MlpConfig};
pub use set::{SetNet, SetNetConfig, SetOutput, SetTransformer};
pub use unet::{UNet, UNetConfig};

use candle_core::{DType, Device, Tensor, Var};

/// Errors raised while building or running a network.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A configuration value is out of range.
    #[error("invalid network configuration: {0}")]
    Config(String),
    /// An input tensor has the wrong shape.
    #[error("network input has the wrong shape: {0}")]
    Shape(String),
    /// Weights given to `load_weights` do not match the network.
    #[error("cannot load weights: {0}")]
    Weights(String),
    /// An error from candle itself.
    #[error("tensor operation failed: {0}")]
    Candle(#[from] candle_core::Error),
}

/// Result type of this module.
pub type Result<T> = std::result::Result<T, NetError>;

/// Overwrites every variable of `vars` from the tensor of the same name in `tensors` (a
/// checkpoint, EMA weights), moved to `device` and `dtype`. Every variable must be present
/// with its shape; `hint` names the settings that decide the shapes, for the error.
pub(crate) fn load_vars(
    vars: Vec<(String, Var)>,
    tensors: &[(String, Tensor)],
    device: &Device,
    dtype: DType,
    hint: &str,
) -> Result<()> {
    let find = |name: &str| tensors.iter().find(|(n, _)| n == name).map(|(_, t)| t);
    for (name, var) in vars {
        let src = find(&name).ok_or_else(|| {
            NetError::Weights(format!(
                "tensor `{name}` is missing (was the checkpoint written by a different network?)"
            ))
        })?;
        if src.dims() != var.dims() {
            return Err(NetError::Weights(format!(
                "tensor `{name}` has shape {:?} but the network expects {:?}; check {hint}",
                src.dims(),
                var.dims()
            )));
        }
        var.set(&src.to_device(device)?.to_dtype(dtype)?)?;
    }
    Ok(())
}

/// A network `F(x, t)`. `Send + Sync` so sampling can evaluate disjoint chunks of rows on
/// separate threads.
pub trait Module: Send + Sync {
    /// Training pass, graph recorded. `x`: `[B, D]` (or any `[B, ...]` the module accepts),
    /// `t`: `[B]` (the network's time input).
    fn forward(&self, x: &Tensor, t: &Tensor) -> Result<Tensor>;

    /// Inference pass, no graph kept.
    fn forward_eval(&self, x: &Tensor, t: &Tensor) -> Result<Tensor>;

    /// `(value, ∂value/∂t)` with `x` held fixed, built from ordinary candle ops so that
    /// backprop trains through both outputs.
    fn forward_with_time_tangent(&self, x: &Tensor, t: &Tensor) -> Result<(Tensor, Tensor)>;

    /// Trainable parameters with names relative to the module (e.g. `layers.0.weight`).
    fn vars(&self) -> Vec<(String, Var)>;

    /// Every tensor defining the module (parameters and buffers such as `time_embed.freqs`),
    /// for checkpoints.
    fn weights(&self) -> Vec<(String, Tensor)>;

    /// Overwrites the module's tensors from named tensors (a checkpoint, EMA shadow weights):
    /// every parameter must be present with the right shape; buffers are loaded when present.
    fn load_weights(&mut self, tensors: &[(String, Tensor)]) -> Result<()>;
}

//! Time embeddings: how the scalar network time `t` becomes `E` input features.
//!
//! - [`TimeEmbedding::Sinusoidal`] and [`TimeEmbedding::RandomFourier`]: `[sin(ω t), cos(ω t)]`
//!   with fixed frequencies `ω` (a buffer named [`FREQS_NAME`], shape `[1, E/2]`, saved in
//!   checkpoints but not trained); tangent `[ω cos(ω t), −ω sin(ω t)]`.
//! - [`TimeEmbedding::Linear`]: a learned affine map `t·wᵀ + b` from the scalar to `E` features,
//!   parameters `time_embed.weight` `[E, 1]` and `time_embed.bias` `[E]` (PyTorch
//!   `nn.Linear(1, E)`); tangent `w` for every row.

use candle_core::{DType, Device, Tensor, Var};
use rand::Rng;

use super::linear::{Kernel, Linear};
use super::{NetError, Result};
use crate::rng::{stream, Purpose};

/// Name prefix of the embedding's tensors.
pub const PREFIX: &str = "time_embed";

/// Name of the (non-trainable) embedding frequency buffer of the sin/cos embeddings.
pub const FREQS_NAME: &str = "time_embed.freqs";

/// Which time embedding, and its size.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TimeEmbedding {
    /// Transformer-style frequencies `ω_k = time_scale · 10000^(−k/(size/2))`; with
    /// `time_scale = 1000` a continuous `t ∈ [0, 1]` behaves like DDPM's integer steps.
    Sinusoidal { size: usize, time_scale: f64 },
    /// Random Fourier features `ω_k = 2π·scale·N(0, 1)`, fixed at construction from the seed.
    RandomFourier { size: usize, scale: f64 },
    /// A learned linear map from `t` to `size` features.
    Linear { size: usize },
}

impl TimeEmbedding {
    /// Number of features the embedding produces.
    pub fn size(&self) -> usize {
        match *self {
            TimeEmbedding::Sinusoidal { size, .. }
            | TimeEmbedding::RandomFourier { size, .. }
            | TimeEmbedding::Linear { size } => size,
        }
    }

    /// Checks the size (sin/cos embeddings need an even size ≥ 2; the linear one ≥ 1).
    pub fn validate(&self) -> Result<()> {
        let e = self.size();
        match self {
            TimeEmbedding::Sinusoidal { .. } | TimeEmbedding::RandomFourier { .. } => {
                if e < 2 || !e.is_multiple_of(2) {
                    return Err(NetError::Config(
                        "the time embedding size must be an even number ≥ 2 (sin and cos pairs)"
                            .into(),
                    ));
                }
            }
            TimeEmbedding::Linear { .. } => {
                if e == 0 {
                    return Err(NetError::Config(
                        "the time embedding size must be at least 1".into(),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The embedding's tensors.
enum Params {
    /// Frequencies ω, shape `[1, E/2]`.
    Fourier { freqs: Tensor },
    /// `t ↦ t·wᵀ + b` (`w` `[E, 1]`, `b` `[E]`).
    Linear(Linear),
}

/// A built time embedding: `t` `[B]` ↦ features `[B, E]`.
pub struct Embedding {
    kind: TimeEmbedding,
    params: Params,
}

impl Embedding {
    /// Builds the embedding. Random draws (random Fourier frequencies, linear weights) use
    /// `crate::rng::stream(seed, Init, 0, stream_index)`.
    pub fn new(
        kind: TimeEmbedding,
        seed: u64,
        stream_index: u64,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        kind.validate()?;
        let fourier = |omega: Vec<f64>| -> Result<Params> {
            let half = omega.len();
            let freqs = Tensor::from_vec(omega, (1, half), device)?.to_dtype(dtype)?;
            Ok(Params::Fourier { freqs })
        };
        let params = match kind {
            TimeEmbedding::Sinusoidal { size, time_scale } => {
                let half = size / 2;
                fourier(
                    (0..half)
                        .map(|k| time_scale * (-(10000f64.ln()) * k as f64 / half as f64).exp())
                        .collect(),
                )?
            }
            TimeEmbedding::RandomFourier { size, scale } => {
                let mut rng = stream(seed, Purpose::Init, 0, stream_index);
                fourier(
                    (0..size / 2)
                        .map(|_| {
                            let n: f64 = rng.sample(rand_distr::StandardNormal);
                            2.0 * std::f64::consts::PI * scale * n
                        })
                        .collect(),
                )?
            }
            TimeEmbedding::Linear { size } => Params::Linear(Linear::init(
                seed,
                stream_index,
                1,
                size,
                1.0,
                None,
                dtype,
                device,
            )?),
        };
        Ok(Embedding { kind, params })
    }

    /// The same embedding with another linear-layer kernel (no effect on sin/cos embeddings).
    pub fn with_kernel(self, kernel: Kernel) -> Self {
        let params = match self.params {
            Params::Linear(l) => Params::Linear(l.with_kernel(kernel)),
            p @ Params::Fourier { .. } => p,
        };
        Embedding {
            kind: self.kind,
            params,
        }
    }

    /// What the embedding is.
    pub fn kind(&self) -> TimeEmbedding {
        self.kind
    }

    /// Number of output features `E`.
    pub fn size(&self) -> usize {
        self.kind.size()
    }

    /// Trainable parameters (`time_embed.weight`, `time_embed.bias` for the linear embedding).
    pub fn vars(&self) -> Vec<(String, Var)> {
        match &self.params {
            Params::Fourier { .. } => Vec::new(),
            Params::Linear(l) => l.vars(PREFIX),
        }
    }

    /// Every tensor defining the embedding (parameters or the frequency buffer).
    pub fn weights(&self) -> Vec<(String, Tensor)> {
        match &self.params {
            Params::Fourier { freqs } => vec![(FREQS_NAME.to_string(), freqs.clone())],
            Params::Linear(l) => l
                .vars(PREFIX)
                .into_iter()
                .map(|(n, v)| (n, v.as_detached_tensor()))
                .collect(),
        }
    }

    /// Loads the buffer from `tensors` when present (checkpoints always have it). Trainable
    /// parameters are loaded by the owner with the other variables.
    pub(crate) fn load_buffers(&mut self, tensors: &[(String, Tensor)]) -> Result<()> {
        if let Params::Fourier { freqs } = &mut self.params {
            if let Some((_, f)) = tensors.iter().find(|(n, _)| n == FREQS_NAME) {
                if f.dims() != freqs.dims() {
                    return Err(NetError::Weights(format!(
                        "tensor `{FREQS_NAME}` has shape {:?} but the network expects {:?}",
                        f.dims(),
                        freqs.dims()
                    )));
                }
                *freqs = f.to_device(freqs.device())?.to_dtype(freqs.dtype())?;
            }
        }
        Ok(())
    }

    /// Features `[B, E]` of `t` `[B]` (already in the network's dtype). `train = false` records
    /// no graph to the parameters.
    pub fn forward(&self, t: &Tensor, train: bool) -> Result<Tensor> {
        let b = t.dim(0)?;
        let t = t.reshape((b, 1))?;
        match &self.params {
            Params::Fourier { freqs } => {
                let arg = t.broadcast_mul(freqs)?;
                Ok(Tensor::cat(&[&arg.sin()?, &arg.cos()?], 1)?)
            }
            Params::Linear(l) if train => l.forward(&t),
            Params::Linear(l) => l.forward_eval(&t),
        }
    }

    /// `(features, ∂features/∂t)`, both `[B, E]`, as plain-op graphs.
    pub fn forward_with_tangent(&self, t: &Tensor) -> Result<(Tensor, Tensor)> {
        let b = t.dim(0)?;
        let t = t.reshape((b, 1))?;
        match &self.params {
            Params::Fourier { freqs } => {
                let arg = t.broadcast_mul(freqs)?;
                let (s, c) = (arg.sin()?, arg.cos()?);
                let e = Tensor::cat(&[&s, &c], 1)?;
                // d/dt [sin(ωt), cos(ωt)] = [ω cos(ωt), −ω sin(ωt)].
                let e_dot = Tensor::cat(
                    &[&c.broadcast_mul(freqs)?, &s.broadcast_mul(freqs)?.neg()?],
                    1,
                )?;
                Ok((e, e_dot))
            }
            Params::Linear(l) => l.forward_with_tangent(&t, &t.ones_like()?),
        }
    }
}

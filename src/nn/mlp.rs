//! The MLP score network `F(x, t)`.
//!
//! Layout: `input = [x, emb(t)]` (width `D + E`), then `depth` hidden layers of `width` units with
//! the chosen activation, then a linear output layer back to `D`. Parameters are named
//! `layers.{i}.weight` (shape `[out, in]`) and `layers.{i}.bias` (shape `[out]`), like PyTorch's
//! `nn.Linear`, so checkpoints are readable elsewhere; a linear time embedding adds
//! `time_embed.weight` / `time_embed.bias`, the sin/cos ones the buffer `time_embed.freqs`.
//!
//! On the CPU with f32 every layer runs the fused kernel of [`super::linear`]; other devices and
//! dtypes (CUDA, f64 reference checks) use plain candle ops with the same maths.

use candle_core::{DType, Device, Tensor, Var};

use super::embed::{Embedding, TimeEmbedding};
use super::linear::{Activation, Kernel, Linear};
use super::{Module, NetError, Result};

/// Everything needed to build an [`Mlp`].
#[derive(Clone, Debug, PartialEq)]
pub struct MlpConfig {
    /// Data dimension `D` (input and output width).
    pub dim: usize,
    /// Hidden width.
    pub width: usize,
    /// Number of hidden layers (so there are `depth + 1` linear layers).
    pub depth: usize,
    /// Hidden activation.
    pub activation: Activation,
    /// Time embedding.
    pub time_embedding: TimeEmbedding,
    /// Multiplier on the initial weights and bias of the output layer (1 = PyTorch default;
    /// small values start the network near zero output).
    pub last_layer_scale: f64,
    /// Seed for the initial weights (and random Fourier frequencies).
    pub seed: u64,
}

impl MlpConfig {
    /// A PyTorch-like default: GELU, sinusoidal embedding of size 32, unscaled last layer.
    pub fn new(dim: usize, width: usize, depth: usize, seed: u64) -> Self {
        MlpConfig {
            dim,
            width,
            depth,
            activation: Activation::Gelu,
            time_embedding: TimeEmbedding::Sinusoidal {
                size: 32,
                time_scale: 1000.0,
            },
            last_layer_scale: 1.0,
            seed,
        }
    }

    fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(NetError::Config(m.to_string()));
        if self.dim == 0 {
            return bad("`dim` must be at least 1");
        }
        if self.width == 0 || self.depth == 0 {
            return bad("`width` and `depth` must be at least 1 (depth counts hidden layers)");
        }
        self.time_embedding.validate()?;
        if !self.last_layer_scale.is_finite() {
            return bad("`last_layer_scale` must be finite");
        }
        Ok(())
    }
}

/// MLP score network `F(x, t)`; see the module docs.
pub struct Mlp {
    config: MlpConfig,
    embedding: Embedding,
    layers: Vec<Linear>,
    device: Device,
    dtype: DType,
}

/// Name prefix of layer `i`'s parameters.
fn layer_prefix(i: usize) -> String {
    format!("layers.{i}")
}

impl Mlp {
    /// Builds the network with the weights of layer `i` drawn from
    /// `crate::rng::stream(seed, Init, 0, i)` and the embedding's random draws (if any) from the
    /// stream after the last layer's.
    pub fn new(config: MlpConfig, dtype: DType, device: &Device) -> Result<Self> {
        config.validate()?;
        if !matches!(dtype, DType::F32 | DType::F64) {
            return Err(NetError::Config(format!(
                "dtype {dtype:?} is not supported; use f32 (training) or f64 (reference checks)"
            )));
        }
        let dims = layer_dims(&config);
        let mut layers = Vec::with_capacity(dims.len());
        for (i, &(fan_in, fan_out)) in dims.iter().enumerate() {
            let last = i + 1 == dims.len();
            let scale = if last { config.last_layer_scale } else { 1.0 };
            let act = if last { None } else { Some(config.activation) };
            layers.push(Linear::init(
                config.seed,
                i as u64,
                fan_in,
                fan_out,
                scale,
                act,
                dtype,
                device,
            )?);
        }
        let embedding = Embedding::new(
            config.time_embedding,
            config.seed,
            dims.len() as u64,
            dtype,
            device,
        )?;
        Ok(Mlp {
            config,
            embedding,
            layers,
            device: device.clone(),
            dtype,
        })
    }

    /// Switches off the fused CPU layer and uses plain candle ops (for benchmarks and
    /// cross-checks; the values agree to f32 rounding).
    pub fn with_plain_ops(mut self) -> Self {
        self.layers = self
            .layers
            .into_iter()
            .map(|l| l.with_kernel(Kernel::Plain))
            .collect();
        self.embedding = self.embedding.with_kernel(Kernel::Plain);
        self
    }

    /// The configuration the network was built from.
    pub fn config(&self) -> &MlpConfig {
        &self.config
    }

    /// Trainable parameters: the layers in order (`layers.0.weight`, `layers.0.bias`, …), then
    /// the embedding's (`time_embed.weight`, `time_embed.bias`; none for sin/cos embeddings).
    pub fn vars(&self) -> Vec<(String, Var)> {
        let mut out = Vec::with_capacity(2 * self.layers.len() + 2);
        for (i, l) in self.layers.iter().enumerate() {
            out.extend(l.vars(&layer_prefix(i)));
        }
        out.extend(self.embedding.vars());
        out
    }

    /// Every tensor that defines the network (the layer parameters, then the embedding's
    /// parameters or frequency buffer), as detached copies-by-reference suitable for a
    /// checkpoint.
    pub fn weights(&self) -> Vec<(String, Tensor)> {
        let mut out: Vec<(String, Tensor)> = Vec::with_capacity(2 * self.layers.len() + 2);
        for (i, l) in self.layers.iter().enumerate() {
            out.extend(
                l.vars(&layer_prefix(i))
                    .into_iter()
                    .map(|(n, v)| (n, v.as_detached_tensor())),
            );
        }
        out.extend(self.embedding.weights());
        out
    }

    /// Overwrites the parameters (and, when present, the embedding frequencies) from named
    /// tensors, e.g. a checkpoint or EMA shadow weights. Every parameter must be present with
    /// the right shape; tensors are converted to this network's dtype and device.
    pub fn load_weights(&mut self, tensors: &[(String, Tensor)]) -> Result<()> {
        super::load_vars(
            self.vars(),
            tensors,
            &self.device,
            self.dtype,
            "width/depth/embedding size",
        )?;
        self.embedding.load_buffers(tensors)
    }

    /// Training forward pass: `x` is `[B, D]`, `t` is `[B]`; returns `[B, D]` and records the
    /// graph so that `loss.backward()` reaches every parameter (and `x`/`t` if they are tracked).
    pub fn forward(&self, x: &Tensor, t: &Tensor) -> Result<Tensor> {
        self.run(x, t, true)
    }

    /// Inference forward pass: same values as [`Mlp::forward`] but records no graph and keeps
    /// no activation derivatives, so memory is released at once (use it for sampling).
    pub fn forward_eval(&self, x: &Tensor, t: &Tensor) -> Result<Tensor> {
        self.run(x, t, false)
    }

    /// Inference in chunks of `chunk` rows (bounds the memory of huge batches).
    pub fn forward_eval_chunked(&self, x: &Tensor, t: &Tensor, chunk: usize) -> Result<Tensor> {
        let n = x.dim(0)?;
        if chunk == 0 || n <= chunk {
            return self.forward_eval(x, t);
        }
        let mut parts = Vec::with_capacity(n.div_ceil(chunk));
        let mut start = 0;
        while start < n {
            let len = chunk.min(n - start);
            parts.push(self.forward_eval(&x.narrow(0, start, len)?, &t.narrow(0, start, len)?)?);
            start += len;
        }
        Ok(Tensor::cat(&parts, 0)?)
    }

    /// `(F(x, t), ∂F/∂t (x, t))`, both `[B, D]`, as one plain-op graph (so a loss on either
    /// trains the weights correctly). The value equals [`Mlp::forward`] to rounding, not bit for
    /// bit: this pass never uses the fused kernel.
    pub fn forward_with_time_tangent(&self, x: &Tensor, t: &Tensor) -> Result<(Tensor, Tensor)> {
        self.check_inputs(x, t)?;
        let x = x.to_dtype(self.dtype)?;
        let t = t.to_dtype(self.dtype)?;
        let (e, e_dot) = self.embedding.forward_with_tangent(&t)?;
        let mut h = Tensor::cat(&[&x, &e], 1)?;
        let mut h_dot = Tensor::cat(&[&x.zeros_like()?, &e_dot], 1)?;
        for l in &self.layers {
            (h, h_dot) = l.forward_with_tangent(&h, &h_dot)?;
        }
        Ok((h, h_dot))
    }

    fn run(&self, x: &Tensor, t: &Tensor, train: bool) -> Result<Tensor> {
        self.check_inputs(x, t)?;
        let x = x.to_dtype(self.dtype)?;
        let t = t.to_dtype(self.dtype)?;
        let e = self.embedding.forward(&t, train)?;
        let mut h = Tensor::cat(&[&x, &e], 1)?;
        for l in &self.layers {
            h = if train {
                l.forward(&h)?
            } else {
                l.forward_eval(&h)?
            };
        }
        Ok(h)
    }

    fn check_inputs(&self, x: &Tensor, t: &Tensor) -> Result<()> {
        let d = self.config.dim;
        let (x_ok, b) = match x.dims() {
            [b, c] if *c == d => (true, *b),
            _ => (false, 0),
        };
        if !x_ok {
            return Err(NetError::Shape(format!(
                "x must be [batch, {d}], got {:?}",
                x.dims()
            )));
        }
        if t.dims() != [b] {
            return Err(NetError::Shape(format!(
                "t must be a per-row time of shape [{b}], got {:?}",
                t.dims()
            )));
        }
        Ok(())
    }
}

/// As a [`Module`] the MLP takes any `[B, …]` state (an image `[B, C, H, W]` too): it reads
/// the `D` numbers of each row flat and gives its output the input's shape.
impl Module for Mlp {
    fn forward(&self, x: &Tensor, t: &Tensor) -> Result<Tensor> {
        let flat = flat_rows(x)?;
        Ok(self.run(&flat, t, true)?.reshape(x.shape())?)
    }

    fn forward_eval(&self, x: &Tensor, t: &Tensor) -> Result<Tensor> {
        let flat = flat_rows(x)?;
        Ok(self.run(&flat, t, false)?.reshape(x.shape())?)
    }

    fn forward_with_time_tangent(&self, x: &Tensor, t: &Tensor) -> Result<(Tensor, Tensor)> {
        let (v, dv) = Mlp::forward_with_time_tangent(self, &flat_rows(x)?, t)?;
        Ok((v.reshape(x.shape())?, dv.reshape(x.shape())?))
    }

    fn vars(&self) -> Vec<(String, Var)> {
        Mlp::vars(self)
    }

    fn weights(&self) -> Vec<(String, Tensor)> {
        Mlp::weights(self)
    }

    fn load_weights(&mut self, tensors: &[(String, Tensor)]) -> Result<()> {
        Mlp::load_weights(self, tensors)
    }
}

/// `[B, …]` as `[B, D]` (a rank-2 tensor as it is).
fn flat_rows(x: &Tensor) -> Result<Tensor> {
    Ok(if x.rank() > 2 {
        x.flatten_from(1)?
    } else {
        x.clone()
    })
}

/// `(fan_in, fan_out)` of every linear layer.
fn layer_dims(c: &MlpConfig) -> Vec<(usize, usize)> {
    let mut dims = vec![(c.dim + c.time_embedding.size(), c.width)];
    dims.extend(std::iter::repeat_n((c.width, c.width), c.depth - 1));
    dims.push((c.width, c.dim));
    dims
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{stream, Purpose};
    use rand::Rng;

    fn batch(dtype: DType, b: usize, d: usize) -> Result<(Tensor, Tensor)> {
        let mut rng = stream(7, Purpose::Test, 0, 0);
        let xs: Vec<f64> = (0..b * d)
            .map(|_| rng.sample(rand_distr::StandardNormal))
            .collect();
        let ts: Vec<f64> = (0..b).map(|_| rng.random::<f64>()).collect();
        let x = Tensor::from_vec(xs, (b, d), &Device::Cpu)?.to_dtype(dtype)?;
        let t = Tensor::from_vec(ts, b, &Device::Cpu)?.to_dtype(dtype)?;
        Ok((x, t))
    }

    fn max_abs_diff(a: &Tensor, b: &Tensor) -> Result<f64> {
        let d = (a.to_dtype(DType::F64)? - b.to_dtype(DType::F64)?)?;
        Ok(d.abs()?.flatten_all()?.max(0)?.to_scalar::<f64>()?)
    }

    #[test]
    fn init_is_seeded_and_pytorch_like() -> Result<()> {
        let c = MlpConfig::new(2, 16, 2, 3);
        let a = Mlp::new(c.clone(), DType::F32, &Device::Cpu)?;
        let b = Mlp::new(c, DType::F32, &Device::Cpu)?;
        let names: Vec<String> = a.vars().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names[0], "layers.0.weight");
        assert_eq!(names[5], "layers.2.bias");
        for ((_, va), (_, vb)) in a.vars().iter().zip(b.vars()) {
            assert_eq!(max_abs_diff(va.as_tensor(), vb.as_tensor())?, 0.0);
        }
        // Layer 0 has fan_in 2 + 32 = 34: every weight lies within ±1/√34, and the range is used.
        let w0 = a.vars()[0].1.as_tensor().abs()?.flatten_all()?.max(0)?;
        let m = w0.to_scalar::<f32>()? as f64;
        assert!(
            m <= 1.0 / 34f64.sqrt() && m > 0.9 / 34f64.sqrt(),
            "max |w| = {m}"
        );
        Ok(())
    }

    /// The fused f32 CPU path agrees with the plain-op f64 path, for every activation.
    #[test]
    fn fused_forward_and_gradients_match_plain_f64() -> Result<()> {
        for act in [
            Activation::Gelu,
            Activation::Silu,
            Activation::Relu,
            Activation::Tanh,
        ] {
            let mut c = MlpConfig::new(3, 32, 3, 11);
            c.activation = act;
            c.time_embedding = TimeEmbedding::RandomFourier {
                size: 8,
                scale: 2.0,
            };
            let f32net = Mlp::new(c.clone(), DType::F32, &Device::Cpu)?;
            let f64net = Mlp::new(c, DType::F64, &Device::Cpu)?;
            let (x, t) = batch(DType::F64, 300, 3)?;
            let x32 = Var::from_tensor(&x.to_dtype(DType::F32)?)?;
            let y32 = f32net.forward(x32.as_tensor(), &t.to_dtype(DType::F32)?)?;
            let y64 = f64net.forward(&x, &t)?;
            assert!(max_abs_diff(&y32, &y64)? < 1e-5, "{act:?} forward");
            let ye = f32net.forward_eval(x32.as_tensor(), &t.to_dtype(DType::F32)?)?;
            assert_eq!(max_abs_diff(&y32, &ye)?, 0.0);
            // loss = Σ y² · weights, so that every output gets a distinct gradient.
            let g32 = (y32.sqr()?.sum_all()?).backward()?;
            let g64 = (y64.sqr()?.sum_all()?).backward()?;
            for ((name, v32), (_, v64)) in f32net.vars().iter().zip(f64net.vars()) {
                let a = g32
                    .get(v32.as_tensor())
                    .ok_or(NetError::Config(name.clone()))?;
                let b = g64
                    .get(v64.as_tensor())
                    .ok_or(NetError::Config(name.clone()))?;
                let scale = b.abs()?.flatten_all()?.max(0)?.to_scalar::<f64>()?;
                assert!(
                    max_abs_diff(a, b)? < 1e-4 * scale.max(1.0),
                    "{act:?} grad {name}"
                );
            }
            let gx = g32
                .get(x32.as_tensor())
                .ok_or(NetError::Config("x".into()))?;
            assert_eq!(gx.dims(), [300, 3]);
        }
        Ok(())
    }

    #[test]
    fn chunked_eval_equals_single_pass_and_shapes_are_checked() -> Result<()> {
        let net = Mlp::new(MlpConfig::new(2, 16, 2, 1), DType::F32, &Device::Cpu)?;
        let (x, t) = batch(DType::F32, 1000, 2)?;
        let a = net.forward_eval(&x, &t)?;
        let b = net.forward_eval_chunked(&x, &t, 300)?;
        // candle's GEMM may pick different kernels for different row counts: equal to rounding.
        assert!(max_abs_diff(&a, &b)? < 1e-6);
        assert!(matches!(
            net.forward(&x, &t.narrow(0, 0, 5)?),
            Err(NetError::Shape(_))
        ));
        assert!(matches!(
            Mlp::new(MlpConfig::new(0, 16, 2, 1), DType::F32, &Device::Cpu),
            Err(NetError::Config(_))
        ));
        Ok(())
    }

    #[test]
    fn load_weights_roundtrip_and_validation() -> Result<()> {
        let a = Mlp::new(MlpConfig::new(2, 16, 2, 1), DType::F32, &Device::Cpu)?;
        let mut b = Mlp::new(MlpConfig::new(2, 16, 2, 2), DType::F32, &Device::Cpu)?;
        let (x, t) = batch(DType::F32, 10, 2)?;
        b.load_weights(&a.weights())?;
        let d = max_abs_diff(&a.forward_eval(&x, &t)?, &b.forward_eval(&x, &t)?)?;
        assert_eq!(d, 0.0);
        let mut c = Mlp::new(MlpConfig::new(2, 8, 2, 2), DType::F32, &Device::Cpu)?;
        assert!(matches!(
            c.load_weights(&a.weights()),
            Err(NetError::Weights(_))
        ));
        Ok(())
    }
}

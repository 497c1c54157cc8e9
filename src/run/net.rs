//! The score network: an MLP with a time embedding, built directly on candle `Var`s.
//!
//! Layout: `input = [x, emb(t)]` (width `D + E`), then `depth` hidden layers of `width` units with
//! the chosen activation, then a linear output layer back to `D`. Parameters are named
//! `layers.{i}.weight` (shape `[out, in]`) and `layers.{i}.bias` (shape `[out]`), like PyTorch's
//! `nn.Linear`, so checkpoints are readable elsewhere.
//!
//! Speed: on the CPU with f32 every layer runs as one fused candle `CustomOp3`
//! (`act(h·Wᵀ + b)`): the matmul goes straight to candle's GEMM on the raw storages, the bias add
//! and activation happen in one pass over the output (split across threads), and the activation
//! derivative is kept from the forward pass so the backward is one multiply plus two GEMMs. This
//! avoids candle's slow broadcast bias add and its backward (a reduction plus a broadcast, see
//! huggingface/candle#2499), and halves the number of graph nodes whose gradients candle has to
//! zero-fill and accumulate. Other devices and dtypes (CUDA, f64 reference checks) use plain
//! candle ops with the same maths.

use std::sync::Mutex;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp3, DType, Device, Layout, Shape, Tensor, Var};
use rand::Rng;

use crate::rng::{stream, Purpose};

/// Errors raised while building or running the network.
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

/// Hidden-layer nonlinearity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// `x·Φ(x)` with the exact (erf) normal CDF, as PyTorch's default `GELU()`.
    Gelu,
    /// `x·sigmoid(x)`.
    Silu,
    /// `max(x, 0)`.
    Relu,
    /// `tanh(x)`.
    Tanh,
}

/// How the scalar time `t` is turned into `size` input features `[sin(ω t), cos(ω t)]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TimeEmbedding {
    /// Transformer-style frequencies `ω_k = time_scale · 10000^(−k/(size/2))`; with
    /// `time_scale = 1000` a continuous `t ∈ [0, 1]` behaves like DDPM's integer steps.
    Sinusoidal { size: usize, time_scale: f64 },
    /// Random Fourier features `ω_k = 2π·scale·N(0, 1)`, fixed at construction from the seed.
    RandomFourier { size: usize, scale: f64 },
}

impl TimeEmbedding {
    /// Number of features the embedding produces.
    pub fn size(&self) -> usize {
        match *self {
            TimeEmbedding::Sinusoidal { size, .. } | TimeEmbedding::RandomFourier { size, .. } => {
                size
            }
        }
    }
}

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
        let e = self.time_embedding.size();
        if e < 2 || !e.is_multiple_of(2) {
            return bad("the time embedding size must be an even number ≥ 2 (sin and cos pairs)");
        }
        if !self.last_layer_scale.is_finite() {
            return bad("`last_layer_scale` must be finite");
        }
        Ok(())
    }
}

/// One linear layer's parameters.
struct Linear {
    weight: Var,
    bias: Var,
}

/// MLP score network `F(x, t)`; see the module docs.
pub struct Mlp {
    config: MlpConfig,
    layers: Vec<Linear>,
    /// Embedding frequencies ω, shape `[1, E/2]`.
    freqs: Tensor,
    device: Device,
    dtype: DType,
    /// Use the fused CPU layer (f32 on CPU only).
    fused: bool,
}

/// Name of parameter `kind` ("weight"/"bias") of layer `i`.
fn param_name(i: usize, kind: &str) -> String {
    format!("layers.{i}.{kind}")
}

/// Name of the (non-trainable) embedding frequency buffer.
pub const FREQS_NAME: &str = "time_embed.freqs";

impl Mlp {
    /// Builds the network with weights drawn from `crate::rng::stream(seed, Init, 0, layer)`.
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
            let scale = if i + 1 == dims.len() {
                config.last_layer_scale
            } else {
                1.0
            };
            let (w, b) = init_linear(config.seed, i as u64, fan_in, fan_out, scale);
            let weight = Var::from_tensor(
                &Tensor::from_vec(w, (fan_out, fan_in), device)?.to_dtype(dtype)?,
            )?;
            let bias = Var::from_tensor(&Tensor::from_vec(b, fan_out, device)?.to_dtype(dtype)?)?;
            layers.push(Linear { weight, bias });
        }
        let omega = embedding_freqs(&config, dims.len() as u64);
        let half = omega.len();
        let freqs = Tensor::from_vec(omega, (1, half), device)?.to_dtype(dtype)?;
        Ok(Mlp {
            config,
            layers,
            freqs,
            device: device.clone(),
            dtype,
            fused: device.is_cpu() && dtype == DType::F32,
        })
    }

    /// Switches off the fused CPU layer and uses plain candle ops (for benchmarks and
    /// cross-checks; the values agree to f32 rounding).
    pub fn with_plain_ops(mut self) -> Self {
        self.fused = false;
        self
    }

    /// The configuration the network was built from.
    pub fn config(&self) -> &MlpConfig {
        &self.config
    }

    /// Trainable parameters, in layer order (`layers.0.weight`, `layers.0.bias`, …).
    pub fn vars(&self) -> Vec<(String, Var)> {
        let mut out = Vec::with_capacity(2 * self.layers.len());
        for (i, l) in self.layers.iter().enumerate() {
            out.push((param_name(i, "weight"), l.weight.clone()));
            out.push((param_name(i, "bias"), l.bias.clone()));
        }
        out
    }

    /// Every tensor that defines the network (parameters, then the embedding frequencies), as
    /// detached copies-by-reference suitable for a checkpoint.
    pub fn weights(&self) -> Vec<(String, Tensor)> {
        let mut out: Vec<(String, Tensor)> = self
            .vars()
            .into_iter()
            .map(|(n, v)| (n, v.as_detached_tensor()))
            .collect();
        out.push((FREQS_NAME.to_string(), self.freqs.clone()));
        out
    }

    /// Overwrites the parameters (and, when present, the embedding frequencies) from named
    /// tensors, e.g. a checkpoint or EMA shadow weights. Every parameter must be present with
    /// the right shape; tensors are converted to this network's dtype and device.
    pub fn load_weights(&mut self, tensors: &[(String, Tensor)]) -> Result<()> {
        let find = |name: &str| tensors.iter().find(|(n, _)| n == name).map(|(_, t)| t);
        for (name, var) in self.vars() {
            let src = find(&name).ok_or_else(|| {
                NetError::Weights(format!(
                    "tensor `{name}` is missing (was the checkpoint written by a different network?)"
                ))
            })?;
            if src.dims() != var.dims() {
                return Err(NetError::Weights(format!(
                    "tensor `{name}` has shape {:?} but the network expects {:?}; check width/depth/embedding size",
                    src.dims(),
                    var.dims()
                )));
            }
            var.set(&src.to_device(&self.device)?.to_dtype(self.dtype)?)?;
        }
        if let Some(f) = find(FREQS_NAME) {
            if f.dims() != self.freqs.dims() {
                return Err(NetError::Weights(format!(
                    "tensor `{FREQS_NAME}` has shape {:?} but the network expects {:?}",
                    f.dims(),
                    self.freqs.dims()
                )));
            }
            self.freqs = f.to_device(&self.device)?.to_dtype(self.dtype)?;
        }
        Ok(())
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

    fn run(&self, x: &Tensor, t: &Tensor, train: bool) -> Result<Tensor> {
        self.check_inputs(x, t)?;
        let mut h = self.input_features(x, t)?;
        let fused = self.fused;
        let last = self.layers.len() - 1;
        for (i, l) in self.layers.iter().enumerate() {
            let act = if i == last {
                None
            } else {
                Some(self.config.activation)
            };
            h = if fused {
                let op = FusedLinear::new(act, train);
                let (w, b) = (l.weight.as_tensor(), l.bias.as_tensor());
                if train {
                    h.apply_op3(w, b, op)?
                } else {
                    h.apply_op3_no_bwd(w, b, &op)?
                }
            } else {
                let (w, b) = if train {
                    (l.weight.as_tensor().clone(), l.bias.as_tensor().clone())
                } else {
                    (l.weight.as_detached_tensor(), l.bias.as_detached_tensor())
                };
                let z = h.matmul(&w.t()?)?.broadcast_add(&b)?;
                match act {
                    Some(a) => apply_activation(&z, a)?,
                    None => z,
                }
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

    /// `[x, sin(t ω), cos(t ω)]`, contiguous, in the network's dtype.
    fn input_features(&self, x: &Tensor, t: &Tensor) -> Result<Tensor> {
        let x = x.to_dtype(self.dtype)?;
        let t = t.to_dtype(self.dtype)?;
        let b = t.dim(0)?;
        let arg = t.reshape((b, 1))?.broadcast_mul(&self.freqs)?;
        Ok(Tensor::cat(&[&x, &arg.sin()?, &arg.cos()?], 1)?)
    }
}

/// `(fan_in, fan_out)` of every linear layer.
fn layer_dims(c: &MlpConfig) -> Vec<(usize, usize)> {
    let mut dims = vec![(c.dim + c.time_embedding.size(), c.width)];
    dims.extend(std::iter::repeat_n((c.width, c.width), c.depth - 1));
    dims.push((c.width, c.dim));
    dims
}

/// PyTorch `nn.Linear` default: weight and bias uniform in ±1/√fan_in (times `scale`).
fn init_linear(
    seed: u64,
    layer: u64,
    fan_in: usize,
    fan_out: usize,
    scale: f64,
) -> (Vec<f64>, Vec<f64>) {
    let mut rng = stream(seed, Purpose::Init, 0, layer);
    let bound = scale / (fan_in as f64).sqrt();
    let mut draw = |n: usize| -> Vec<f64> {
        (0..n)
            .map(|_| (2.0 * rng.random::<f64>() - 1.0) * bound)
            .collect()
    };
    let w = draw(fan_in * fan_out);
    let b = draw(fan_out);
    (w, b)
}

/// Embedding frequencies; random Fourier ones use the stream after the last layer's.
fn embedding_freqs(c: &MlpConfig, stream_index: u64) -> Vec<f64> {
    match c.time_embedding {
        TimeEmbedding::Sinusoidal { size, time_scale } => {
            let half = size / 2;
            (0..half)
                .map(|k| time_scale * (-(10000f64.ln()) * k as f64 / half as f64).exp())
                .collect()
        }
        TimeEmbedding::RandomFourier { size, scale } => {
            let mut rng = stream(c.seed, Purpose::Init, 0, stream_index);
            (0..size / 2)
                .map(|_| {
                    let n: f64 = rng.sample(rand_distr::StandardNormal);
                    2.0 * std::f64::consts::PI * scale * n
                })
                .collect()
        }
    }
}

/// Plain-op activation (used off the fused path).
fn apply_activation(z: &Tensor, act: Activation) -> candle_core::Result<Tensor> {
    match act {
        Activation::Gelu => z.gelu_erf(),
        Activation::Silu => z.silu(),
        Activation::Relu => z.relu(),
        Activation::Tanh => z.tanh(),
    }
}

// ---------------------------------------------------------------------------------------------
// Fused CPU layer.

/// Fewer elements than this are not worth a thread spawn (~20 µs).
const PAR_THRESHOLD: usize = 16 * 1024;

/// `act(h·Wᵀ + b)` as one candle op (CPU, f32). In training mode it stores `act'(z)` for `bwd`.
struct FusedLinear {
    act: Option<Activation>,
    keep_derivative: bool,
    derivative: Mutex<Option<Vec<f32>>>,
}

impl FusedLinear {
    fn new(act: Option<Activation>, keep_derivative: bool) -> Self {
        FusedLinear {
            act,
            keep_derivative,
            derivative: Mutex::new(None),
        }
    }
}

/// Contiguous f32 slice of a CPU storage, or an error naming the op.
fn f32_slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> candle_core::Result<&'a [f32]> {
    let data = s.as_slice::<f32>()?;
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("fused linear: {what} must be contiguous"),
    }
}

impl CustomOp3 for FusedLinear {
    fn name(&self) -> &'static str {
        "difc-fused-linear"
    }

    fn cpu_fwd(
        &self,
        sh: &CpuStorage,
        lh: &Layout,
        sw: &CpuStorage,
        lw: &Layout,
        sb: &CpuStorage,
        lb: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (m, k) = lh.shape().dims2()?;
        let (n, k2) = lw.shape().dims2()?;
        if k != k2 || lb.shape().dims() != [n] {
            candle_core::bail!(
                "fused linear: shapes {:?}, {:?}, {:?} do not fit",
                lh.shape(),
                lw.shape(),
                lb.shape()
            );
        }
        // GEMM straight on the storages; Wᵀ is just a transposed layout.
        let z = sh.matmul(sw, (1, m, n, k), lh, &lw.transpose(0, 1)?)?;
        let mut z = match z {
            CpuStorage::F32(v) => v,
            _ => candle_core::bail!("fused linear: only f32 is supported"),
        };
        let bias = f32_slice(sb, lb, "bias")?;
        let mut deriv = match (self.act, self.keep_derivative) {
            (Some(_), true) => vec![0f32; m * n],
            _ => Vec::new(),
        };
        let act = self.act;
        par_rows(&mut z, &mut deriv, n, |zr, dr| {
            bias_activate_rows(zr, dr, bias, act)
        });
        if !deriv.is_empty() {
            if let Ok(mut slot) = self.derivative.lock() {
                *slot = Some(deriv);
            }
        }
        Ok((CpuStorage::F32(z), Shape::from((m, n))))
    }

    fn bwd(
        &self,
        h: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let (m, n) = grad.dims2()?;
        let (gz, gb) = {
            let (storage, layout) = grad.storage_and_layout();
            let g = match &*storage {
                candle_core::Storage::Cpu(s) => f32_slice(s, layout, "gradient")?,
                _ => candle_core::bail!("fused linear: gradient is not on the CPU"),
            };
            let deriv = self.derivative.lock().ok().and_then(|mut d| d.take());
            match (self.act, deriv) {
                (None, _) => (None, column_sums(g, n)),
                (Some(_), Some(d)) => {
                    let gz: Vec<f32> = g.iter().zip(&d).map(|(a, b)| a * b).collect();
                    let gb = column_sums(&gz, n);
                    (Some(gz), gb)
                }
                (Some(_), None) => {
                    candle_core::bail!("fused linear: backward called twice or without forward")
                }
            }
        };
        let gz = match gz {
            Some(v) => Tensor::from_vec(v, (m, n), grad.device())?,
            None => grad,
        };
        let grad_h = if h.track_op() {
            Some(gz.matmul(&w.detach())?)
        } else {
            None
        };
        let grad_w = gz.t()?.matmul(&h.detach())?;
        let grad_b = Tensor::from_vec(gb, n, gz.device())?;
        Ok((grad_h, Some(grad_w), Some(grad_b)))
    }
}

/// Sums of each column of a row-major `[rows, n]` slice.
fn column_sums(g: &[f32], n: usize) -> Vec<f32> {
    let mut acc = vec![0f32; n];
    for row in g.chunks_exact(n) {
        for (a, v) in acc.iter_mut().zip(row) {
            *a += v;
        }
    }
    acc
}

/// Runs `f` over row blocks of `z` (and the matching blocks of `d`, if non-empty) on up to
/// candle's thread count (`RAYON_NUM_THREADS`), serially for small inputs.
fn par_rows<F>(z: &mut [f32], d: &mut [f32], n: usize, f: F)
where
    F: Fn(&mut [f32], &mut [f32]) + Sync,
{
    let rows = z.len() / n.max(1);
    let threads = candle_core::utils::get_num_threads().clamp(1, 8).min(rows);
    if threads <= 1 || z.len() < PAR_THRESHOLD {
        f(z, d);
        return;
    }
    let block = rows.div_ceil(threads) * n;
    let f = &f;
    std::thread::scope(|s| {
        let mut d_rest: &mut [f32] = d;
        for zc in z.chunks_mut(block) {
            let take = if d_rest.is_empty() { 0 } else { zc.len() };
            let (dc, rest) = std::mem::take(&mut d_rest).split_at_mut(take);
            d_rest = rest;
            s.spawn(move || f(zc, dc));
        }
    });
}

/// `z ← act(z + b)` row by row; `d ← act'(z + b)` when `d` is non-empty.
///
/// Dispatches once per call to a loop specialised for the activation (so the compiler can
/// vectorise it) and, on x86-64 CPUs that have them, to a copy compiled for AVX2+FMA. Both copies
/// perform the same IEEE operations in the same order (no `mul_add`), so results do not depend
/// on the CPU.
fn bias_activate_rows(z: &mut [f32], d: &mut [f32], bias: &[f32], act: Option<Activation>) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU supports AVX2 and FMA (checked just above), which is the only
            // requirement of a `#[target_feature]` function.
            unsafe { bias_activate_rows_avx2(z, d, bias, act) };
            return;
        }
    }
    bias_activate_rows_generic(z, d, bias, act);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn bias_activate_rows_avx2(
    z: &mut [f32],
    d: &mut [f32],
    bias: &[f32],
    act: Option<Activation>,
) {
    bias_activate_rows_generic(z, d, bias, act);
}

#[inline(always)]
fn bias_activate_rows_generic(z: &mut [f32], d: &mut [f32], bias: &[f32], act: Option<Activation>) {
    match act {
        None => rows_loop(z, d, bias, |v| (v, 1.0)),
        Some(Activation::Gelu) => rows_loop(z, d, bias, gelu),
        Some(Activation::Silu) => rows_loop(z, d, bias, silu),
        Some(Activation::Relu) => rows_loop(z, d, bias, relu),
        Some(Activation::Tanh) => rows_loop(z, d, bias, tanh),
    }
}

/// The row loop, monomorphised per activation `f` (which returns value and derivative).
#[inline(always)]
fn rows_loop<F: Fn(f32) -> (f32, f32)>(z: &mut [f32], d: &mut [f32], bias: &[f32], f: F) {
    let n = bias.len();
    if d.is_empty() {
        for row in z.chunks_exact_mut(n) {
            for (v, b) in row.iter_mut().zip(bias) {
                *v = f(*v + b).0;
            }
        }
    } else {
        for (row, drow) in z.chunks_exact_mut(n).zip(d.chunks_exact_mut(n)) {
            for ((v, dv), b) in row.iter_mut().zip(drow.iter_mut()).zip(bias) {
                let (y, dy) = f(*v + b);
                *v = y;
                *dv = dy;
            }
        }
    }
}

/// Activation value and derivative at `z` (scalar entry point, used by tests).
#[cfg(test)]
fn activate(a: Activation, z: f32) -> (f32, f32) {
    match a {
        Activation::Gelu => gelu(z),
        Activation::Silu => silu(z),
        Activation::Relu => relu(z),
        Activation::Tanh => tanh(z),
    }
}

/// `e^x` without a library call, so loops using it vectorise: `x = n·ln2 + r`,
/// `|r| ≤ ln2/2`, degree-6 Taylor polynomial for `e^r` (relative error < 2e-7), `2^n` built in
/// the exponent bits. Inputs are clamped to [−87, 88] (the normal f32 range).
#[inline(always)]
fn fast_exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Adding and removing 1.5·2²³ rounds to the nearest integer without a `round` call.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let shifted = x * LOG2E + ROUND;
    let n = shifted - ROUND;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    // The low mantissa bits of `shifted` hold n (offset by 1.5·2²³'s bits); integer maths on
    // them vectorises, unlike a saturating float→int `as` cast.
    let biased = shifted
        .to_bits()
        .wrapping_sub(0x4B40_0000)
        .wrapping_add(127);
    let scale = f32::from_bits(biased << 23);
    p * scale
}

/// GELU-erf `z·Φ(z)` and its derivative `Φ(z) + z·φ(z)`, sharing one exponential: Φ from the
/// Abramowitz–Stegun 7.1.26 erf approximation (|error| ≤ 1.5e-7, at f32 resolution).
#[inline(always)]
fn gelu(z: f32) -> (f32, f32) {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [
        0.254_829_6,
        -0.284_496_74,
        1.421_413_8,
        -1.453_152_1,
        1.061_405_4,
    ];
    const INV_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
    const INV_SQRT_2PI: f32 = 0.398_942_3;
    let x = z.abs() * INV_SQRT_2;
    let e = fast_exp(-x * x); // = exp(−z²/2)
    let t = 1.0 / (1.0 + P * x);
    let poly = t * (A[0] + t * (A[1] + t * (A[2] + t * (A[3] + t * A[4]))));
    let erf = (1.0 - poly * e).copysign(z);
    let cdf = 0.5 * (1.0 + erf);
    (z * cdf, cdf + z * (INV_SQRT_2PI * e))
}

/// SiLU `z·σ(z)` and its derivative `σ(z)·(1 + z·(1 − σ(z)))`.
#[inline(always)]
fn silu(z: f32) -> (f32, f32) {
    let s = 1.0 / (1.0 + fast_exp(-z));
    (z * s, s * (1.0 + z * (1.0 - s)))
}

/// ReLU and its derivative (0 at z = 0, like PyTorch).
#[inline(always)]
fn relu(z: f32) -> (f32, f32) {
    let on = if z > 0.0 { 1.0 } else { 0.0 };
    (z * on, on)
}

/// `tanh(z) = 1 − 2/(e^{2z} + 1)` and its derivative `1 − tanh²`.
#[inline(always)]
fn tanh(z: f32) -> (f32, f32) {
    let y = 1.0 - 2.0 / (fast_exp(2.0 * z) + 1.0);
    (y, 1.0 - y * y)
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn fast_activations_match_f64_formulas() {
        for i in -400..=400 {
            let z = i as f64 / 40.0;
            let e = fast_exp(z as f32) as f64;
            assert!((e / (z as f32 as f64).exp() - 1.0).abs() < 4e-7, "exp({z})");
            let sig = 1.0 / (1.0 + (-z).exp());
            let (y, dy) = activate(Activation::Silu, z as f32);
            assert!(
                (y as f64 - z * sig).abs() < 1e-6 * (1.0 + z.abs()),
                "silu {z}"
            );
            assert!(
                (dy as f64 - sig * (1.0 + z * (1.0 - sig))).abs() < 1e-6,
                "silu' {z}"
            );
            let (y, dy) = activate(Activation::Tanh, z as f32);
            assert!((y as f64 - z.tanh()).abs() < 1e-6, "tanh {z}");
            assert!(
                (dy as f64 - (1.0 - z.tanh().powi(2))).abs() < 2e-6,
                "tanh' {z}"
            );
            let (y, dy) = activate(Activation::Relu, z as f32);
            assert_eq!(
                (y, dy),
                ((z as f32).max(0.0), if z > 0.0 { 1.0 } else { 0.0 })
            );
        }
        assert_eq!(fast_exp(-1000.0), fast_exp(-87.0));
        assert!(fast_exp(f32::NAN).is_nan());
    }

    #[test]
    fn gelu_approximation_is_accurate() {
        for i in -80..=80 {
            let z = i as f64 / 10.0;
            let exact = 0.5 * z * (1.0 + libm::erf(z / 2f64.sqrt()));
            let (y, dy) = activate(Activation::Gelu, z as f32);
            assert!((y as f64 - exact).abs() < 1e-6 * (1.0 + z.abs()), "z = {z}");
            let h = 1e-5;
            let num = (0.5 * (z + h) * (1.0 + libm::erf((z + h) / 2f64.sqrt()))
                - 0.5 * (z - h) * (1.0 + libm::erf((z - h) / 2f64.sqrt())))
                / (2.0 * h);
            assert!((dy as f64 - num).abs() < 1e-5, "z = {z}");
        }
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

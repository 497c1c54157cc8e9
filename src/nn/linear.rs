//! The linear layer `y = act(h·Wᵀ + b)` and the hidden-layer activations.
//!
//! Parameters are `weight` (shape `[out, in]`) and `bias` (shape `[out]`), like PyTorch's
//! `nn.Linear`, initialised like it (uniform in ±1/√fan_in).
//!
//! Two kernels compute the same maths:
//! - **fused** (CPU, f32 only): one candle `CustomOp3`. The matmul goes straight to candle's GEMM
//!   on the raw storages, the bias add and activation happen in one pass over the output (split
//!   across threads), and in training mode `act'(z)` is kept from the forward pass, so the
//!   backward is one multiply plus two GEMMs. This avoids candle's slow broadcast bias add and its
//!   backward (a reduction plus a broadcast, see huggingface/candle#2499), and halves the number
//!   of graph nodes whose gradients candle has to zero-fill and accumulate.
//! - **plain** candle ops, used on every other device and dtype (CUDA, f64 reference checks) and
//!   whenever the fused kernel is switched off. Every path of this module works with it.
//!
//! The time-tangent pass ([`Linear::forward_with_tangent`]) carries `(h, ḣ)` to
//! `(y, ẏ) = (act(z), act'(z) ⊙ (ḣ·Wᵀ))` with `z = h·Wᵀ + b`. It always uses plain ops: `act'(z)`
//! must be a differentiable graph expression of `z` (see [`Activation::derivative`]) so that a
//! loss on `ẏ` has correct gradients with respect to the weights. The fused kernel's stored
//! `act'(z)` is a constant to candle and would silently drop those terms.

use std::sync::Mutex;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp3, DType, Device, Layout, Shape, Tensor, Var};
use rand::Rng;

use super::Result;
use crate::rng::{stream, Purpose};

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

/// `1/√(2π)`.
const INV_SQRT_2PI: f64 = 0.398_942_280_401_432_7;

impl Activation {
    /// `act(z)` with candle's own ops (the plain-kernel forward).
    pub fn apply(self, z: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Activation::Gelu => z.gelu_erf(),
            Activation::Silu => z.silu(),
            Activation::Relu => z.relu(),
            Activation::Tanh => z.tanh(),
        }
    }

    /// `act'(z)` as a graph of ordinary candle ops, so that backprop differentiates through it:
    /// GELU `Φ(z) + z·φ(z)`, SiLU `σ(z)·(1 + z·(1 − σ(z)))`, ReLU `[z > 0]` (0 at z = 0, like
    /// PyTorch; its own derivative is 0 almost everywhere), tanh `1 − tanh²(z)`.
    pub fn derivative(self, z: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Activation::Gelu => {
                let (cdf, pdf) = normal_cdf_pdf(z)?;
                cdf + (z * pdf)?
            }
            Activation::Silu => {
                let s = sigmoid(z)?;
                &s * (z * s.affine(-1.0, 1.0)?)?.affine(1.0, 1.0)?
            }
            Activation::Relu => z.gt(0.0)?.to_dtype(z.dtype()),
            Activation::Tanh => z.tanh()?.sqr()?.affine(-1.0, 1.0),
        }
    }

    /// `(act(z), act'(z))` sharing their intermediate terms, both differentiable plain-op graphs
    /// with exact backward passes (candle's own GELU backward rounds `1/√(2π)` to six digits,
    /// which a 1e-8 gradient check notices). Values equal [`Activation::apply`] to rounding.
    pub fn value_and_derivative(self, z: &Tensor) -> candle_core::Result<(Tensor, Tensor)> {
        match self {
            Activation::Gelu => {
                let (cdf, pdf) = normal_cdf_pdf(z)?;
                let y = (z * &cdf)?;
                let d = (cdf + (z * pdf)?)?;
                Ok((y, d))
            }
            Activation::Silu => {
                let s = sigmoid(z)?;
                let y = (z * &s)?;
                let d = (&s * (z * s.affine(-1.0, 1.0)?)?.affine(1.0, 1.0)?)?;
                Ok((y, d))
            }
            Activation::Relu => Ok((z.relu()?, z.gt(0.0)?.to_dtype(z.dtype())?)),
            Activation::Tanh => {
                let y = z.tanh()?;
                let d = y.sqr()?.affine(-1.0, 1.0)?;
                Ok((y, d))
            }
        }
    }
}

/// Normal CDF `Φ(z) = (1 + erf(z/√2))/2` and density `φ(z) = e^{−z²/2}/√(2π)`, plain ops.
fn normal_cdf_pdf(z: &Tensor) -> candle_core::Result<(Tensor, Tensor)> {
    let cdf = z
        .affine(std::f64::consts::FRAC_1_SQRT_2, 0.0)?
        .erf()?
        .affine(0.5, 0.5)?;
    let pdf = z
        .sqr()?
        .affine(-0.5, 0.0)?
        .exp()?
        .affine(INV_SQRT_2PI, 0.0)?;
    Ok((cdf, pdf))
}

/// `σ(z) = (1 + tanh(z/2))/2`: plain ops whose graph has no overflowing `exp` for large |z|.
fn sigmoid(z: &Tensor) -> candle_core::Result<Tensor> {
    z.affine(0.5, 0.0)?.tanh()?.affine(0.5, 0.5)
}

/// Which kernel a [`Linear`] runs its value pass with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// The fused CPU f32 op (falls back to plain ops for any other device or dtype).
    Fused,
    /// Plain candle ops (any device, any float dtype).
    Plain,
}

impl Kernel {
    /// The fastest kernel for parameters of `dtype` on `device`.
    pub fn auto(dtype: DType, device: &Device) -> Kernel {
        if device.is_cpu() && dtype == DType::F32 {
            Kernel::Fused
        } else {
            Kernel::Plain
        }
    }
}

/// `y = act(h·Wᵀ + b)`, `act` optional (none: an affine output layer).
pub struct Linear {
    weight: Var,
    bias: Var,
    act: Option<Activation>,
    kernel: Kernel,
}

impl Linear {
    /// A layer from existing parameters: `weight` `[out, in]`, `bias` `[out]`.
    pub fn new(weight: Var, bias: Var, act: Option<Activation>, kernel: Kernel) -> Self {
        Linear {
            weight,
            bias,
            act,
            kernel,
        }
    }

    /// PyTorch `nn.Linear` initialisation: weight and bias uniform in ±`scale`/√fan_in, drawn in
    /// f64 from `crate::rng::stream(seed, Init, 0, stream_index)` (weights row-major, then the
    /// bias) and converted to `dtype`.
    #[allow(clippy::too_many_arguments)]
    pub fn init(
        seed: u64,
        stream_index: u64,
        fan_in: usize,
        fan_out: usize,
        scale: f64,
        act: Option<Activation>,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let (w, b) = init_uniform(seed, stream_index, fan_in, fan_out, scale);
        let weight =
            Var::from_tensor(&Tensor::from_vec(w, (fan_out, fan_in), device)?.to_dtype(dtype)?)?;
        let bias = Var::from_tensor(&Tensor::from_vec(b, fan_out, device)?.to_dtype(dtype)?)?;
        Ok(Linear::new(weight, bias, act, Kernel::auto(dtype, device)))
    }

    /// The same layer with another kernel.
    pub fn with_kernel(mut self, kernel: Kernel) -> Self {
        self.kernel = kernel;
        self
    }

    /// The weight `[out, in]`.
    pub fn weight(&self) -> &Var {
        &self.weight
    }

    /// The bias `[out]`.
    pub fn bias(&self) -> &Var {
        &self.bias
    }

    /// The activation (none for an affine layer).
    pub fn activation(&self) -> Option<Activation> {
        self.act
    }

    /// The kernel of the value pass.
    pub fn kernel(&self) -> Kernel {
        self.kernel
    }

    /// `weight` and `bias` named `{prefix}.weight` / `{prefix}.bias`.
    pub fn vars(&self, prefix: &str) -> Vec<(String, Var)> {
        vec![
            (format!("{prefix}.weight"), self.weight.clone()),
            (format!("{prefix}.bias"), self.bias.clone()),
        ]
    }

    /// Training pass on `h` `[B, in]`: records the graph.
    pub fn forward(&self, h: &Tensor) -> Result<Tensor> {
        self.run(h, true)
    }

    /// Inference pass: no graph, no stored derivatives.
    pub fn forward_eval(&self, h: &Tensor) -> Result<Tensor> {
        self.run(h, false)
    }

    fn run(&self, h: &Tensor, train: bool) -> Result<Tensor> {
        let fused = self.kernel == Kernel::Fused
            && h.device().is_cpu()
            && h.dtype() == DType::F32
            && self.weight.dtype() == DType::F32;
        if fused {
            let op = FusedLinear::new(self.act, train);
            let (w, b) = (self.weight.as_tensor(), self.bias.as_tensor());
            let h = h.contiguous()?;
            return Ok(if train {
                h.apply_op3(w, b, op)?
            } else {
                h.apply_op3_no_bwd(w, b, &op)?
            });
        }
        let (w, b) = if train {
            (
                self.weight.as_tensor().clone(),
                self.bias.as_tensor().clone(),
            )
        } else {
            (
                self.weight.as_detached_tensor(),
                self.bias.as_detached_tensor(),
            )
        };
        let z = h.matmul(&w.t()?)?.broadcast_add(&b)?;
        Ok(match self.act {
            Some(a) => a.apply(&z)?,
            None => z,
        })
    }

    /// `(y, ẏ)` for an input `h` with tangent `ḣ` (both `[B, in]`): `y = act(z)`,
    /// `ẏ = act'(z) ⊙ (ḣ·Wᵀ)`, `z = h·Wᵀ + b`, all plain ops with the graph recorded, so
    /// backprop trains through both outputs. `y` equals [`Linear::forward`] to rounding.
    pub fn forward_with_tangent(&self, h: &Tensor, h_dot: &Tensor) -> Result<(Tensor, Tensor)> {
        let wt = self.weight.as_tensor().t()?;
        // One matmul for value and tangent rows together (fewer, larger GEMMs).
        let b = h.dim(0)?;
        let both = Tensor::cat(&[h, h_dot], 0)?.matmul(&wt)?;
        let z = both.narrow(0, 0, b)?.broadcast_add(self.bias.as_tensor())?;
        let z_dot = both.narrow(0, b, b)?;
        Ok(match self.act {
            None => (z, z_dot),
            Some(a) => {
                let (y, d) = a.value_and_derivative(&z)?;
                (y, (d * z_dot)?)
            }
        })
    }
}

/// PyTorch `nn.Linear` default: weight and bias uniform in ±1/√fan_in (times `scale`), in f64.
fn init_uniform(
    seed: u64,
    stream_index: u64,
    fan_in: usize,
    fan_out: usize,
    scale: f64,
) -> (Vec<f64>, Vec<f64>) {
    let mut rng = stream(seed, Purpose::Init, 0, stream_index);
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

    const ALL: [Activation; 4] = [
        Activation::Gelu,
        Activation::Silu,
        Activation::Relu,
        Activation::Tanh,
    ];

    fn max_abs_diff(a: &Tensor, b: &Tensor) -> Result<f64> {
        let d = (a.to_dtype(DType::F64)? - b.to_dtype(DType::F64)?)?;
        Ok(d.abs()?.flatten_all()?.max(0)?.to_scalar::<f64>()?)
    }

    /// Points in [−8, 8] that avoid ReLU's kink at 0.
    fn grid() -> Result<Tensor> {
        let zs: Vec<f64> = (-400..=400).map(|i| (i as f64 + 0.5) / 50.0).collect();
        Ok(Tensor::new(zs, &Device::Cpu)?)
    }

    #[test]
    fn plain_derivative_matches_central_differences_and_values_match_apply() -> Result<()> {
        let z = grid()?;
        let h = 1e-6;
        for a in ALL {
            let d = a.derivative(&z)?;
            let num = ((a.apply(&z.affine(1.0, h)?)? - a.apply(&z.affine(1.0, -h)?)?)?
                .affine(0.5 / h, 0.0))?;
            assert!(max_abs_diff(&d, &num)? < 1e-8, "{a:?}'");
            let (y, d2) = a.value_and_derivative(&z)?;
            assert!(max_abs_diff(&y, &a.apply(&z)?)? < 1e-14, "{a:?} value");
            assert!(max_abs_diff(&d, &d2)? < 1e-15, "{a:?} shared derivative");
        }
        Ok(())
    }

    /// The derivative graph has the right gradient (the second derivative), so losses on
    /// tangents train correctly.
    #[test]
    fn derivative_is_differentiable() -> Result<()> {
        let z = Var::from_tensor(&grid()?)?;
        let h = 1e-5;
        for a in ALL {
            let g = a.derivative(z.as_tensor())?.sum_all()?.backward()?;
            let got = g.get(z.as_tensor()).cloned();
            let num = ((a.derivative(&z.as_tensor().affine(1.0, h)?)?
                - a.derivative(&z.as_tensor().affine(1.0, -h)?)?)?
            .affine(0.5 / h, 0.0))?;
            match (a, got) {
                // ReLU's derivative is piecewise constant: no gradient, and none is needed.
                (Activation::Relu, None) => {}
                (_, Some(got)) => assert!(max_abs_diff(&got, &num)? < 1e-8, "{a:?}''"),
                (_, None) => panic!("{a:?}: the derivative has no gradient"),
            }
        }
        Ok(())
    }

    /// One layer: fused and plain kernels give the same value and gradients in f32, in training
    /// and inference mode, with and without an activation; the tangent pass's value agrees.
    #[test]
    fn fused_and_plain_layer_agree() -> Result<()> {
        let dev = Device::Cpu;
        let mut rng = stream(5, Purpose::Test, 0, 0);
        let hs: Vec<f32> = (0..64 * 20)
            .map(|_| rng.sample::<f32, _>(rand_distr::StandardNormal))
            .collect();
        let h = Var::from_tensor(&Tensor::from_vec(hs, (64, 20), &dev)?)?;
        for act in [None, Some(Activation::Gelu), Some(Activation::Tanh)] {
            let fused = Linear::init(3, 0, 20, 24, 1.0, act, DType::F32, &dev)?;
            assert_eq!(fused.kernel(), Kernel::Fused);
            let plain = Linear::new(
                fused.weight().clone(),
                fused.bias().clone(),
                act,
                Kernel::Plain,
            );
            let yf = fused.forward(h.as_tensor())?;
            let yp = plain.forward(h.as_tensor())?;
            assert!(max_abs_diff(&yf, &yp)? < 1e-5, "{act:?} value");
            assert_eq!(max_abs_diff(&yf, &fused.forward_eval(h.as_tensor())?)?, 0.0);
            let (yt, _) = fused.forward_with_tangent(h.as_tensor(), &h.zeros_like()?)?;
            assert!(max_abs_diff(&yt, &yp)? < 1e-5, "{act:?} tangent-pass value");
            let gf = yf.sqr()?.sum_all()?.backward()?;
            let gp = yp.sqr()?.sum_all()?.backward()?;
            for v in [
                fused.weight().as_tensor(),
                fused.bias().as_tensor(),
                h.as_tensor(),
            ] {
                let (a, b) = (
                    gf.get(v).expect("fused grad"),
                    gp.get(v).expect("plain grad"),
                );
                let scale = max_abs_diff(b, &b.zeros_like()?)?;
                assert!(max_abs_diff(a, b)? < 1e-5 * scale.max(1.0), "{act:?} grad");
            }
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
}

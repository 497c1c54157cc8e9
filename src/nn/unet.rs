//! A small U-Net `F(x, t)` for images (8×8 digits, 28×28 MNIST) on the CPU.
//!
//! Layout, for `levels = L` resolutions with channels `ch[l] = base·(1, 2, 2, …)[l]` (the first
//! level has `base` channels, every lower one `2·base`, which keeps the CPU cost small):
//! - time: `Embedding` → `time.lin1` → SiLU → `time.lin2` → SiLU, a `[B, 4·base]` feature shared by
//!   every residual block (the last SiLU is DDPM's `nonlinearity(temb)` before each projection);
//! - `in.conv`: 3×3 convolution from the image channels to `ch[0]`;
//! - `down.{l}`: `blocks` residual blocks `res.{i}` to `ch[l]`; the output is the level's skip;
//!   then (all but the lowest level) `down.conv`, a stride-2 3×3 convolution with padding 1, so a
//!   side of `n` becomes `⌈n/2⌉` (28 → 14 → 7, 7 → 4);
//! - `mid`: `res.0`, then (with `attention`) `attn`, a single-head pre-norm self-attention over
//!   the `H·W` positions with a residual, then `res.1`;
//! - `up.{l}` (lowest level first): below the lowest level, `up.conv` after a nearest-neighbour ×2
//!   upsampling cropped to the skip's size (no transposed convolution: candle's CPU one is a
//!   plain loop); then the skip is concatenated and `blocks` residual blocks map to `ch[l]`;
//! - `out`: GroupNorm → SiLU → `out.conv` back to the image channels; its initial weights are
//!   scaled by `last_layer_scale`.
//!
//! A residual block is GroupNorm → SiLU → `conv1` → `+ time(temb)` (broadcast over H, W) →
//! GroupNorm → SiLU → `conv2`, plus a 1×1 convolution `skip` when the channel count changes.
//!
//! Inside, images are channels-last `[B, H·W, C]`. A k×k convolution gathers the
//! `[B·Ho·Wo, k·k·C]` patches with one `index_select` on a precomputed index (padding, stride 2
//! and the upsampling folded in; its backward is one `index_add`, on any device), then applies a
//! [`Linear`] layer (the fused CPU f32 kernel, or plain ops). candle's own `conv2d` backward is a
//! transposed convolution, a plain loop on the CPU. A convolution's `weight` is therefore
//! `[out, k·k·in]`, flattened in the order `(ky, kx, in)` (PyTorch's `[out, in, k, k]` is
//! `weight.reshape(out, k, k, in).permute(0, 3, 1, 2)`). GroupNorm parameters are `weight`
//! (ones) and `bias` (zeros), as in PyTorch; its statistics and the time projection's broadcast
//! over positions are matrix products with a ones vector (`position_sum`).
//!
//! The time tangent is carried as a `Dual` `(value, tangent)` through every layer, with the
//! tangent absent until the time features enter (the input convolution and the first
//! block's first convolution run once). Tangents are plain-op graphs, so
//! backprop trains through both outputs. `x` is `[B, C·H·W]` (rows, `(C, H, W)` row-major) or
//! `[B, C, H, W]`; the output has the shape of `x`.

use candle_core::{DType, Device, Tensor, Var, D};

use super::embed::{Embedding, TimeEmbedding};
use super::linear::{Activation, Linear};
use super::{Module, NetError, Result};

/// GroupNorm's variance offset (PyTorch's default).
const NORM_EPS: f64 = 1e-5;

/// Everything needed to build a [`UNet`].
#[derive(Clone, Debug, PartialEq)]
pub struct UNetConfig {
    /// Image channels `C` (1 for grey, 3 for colour).
    pub channels: usize,
    /// Image height `H`.
    pub height: usize,
    /// Image width `W`.
    pub width: usize,
    /// Channels of the first level (the lower levels have twice as many).
    pub base: usize,
    /// Number of resolutions (2: 8×8 → 4×4; 3: 28×28 → 14×14 → 7×7).
    pub levels: usize,
    /// Residual blocks per level on each path.
    pub blocks: usize,
    /// GroupNorm groups; must divide `base` (and so every channel count).
    pub groups: usize,
    /// One self-attention block at the lowest resolution.
    pub attention: bool,
    /// Time embedding.
    pub time_embedding: TimeEmbedding,
    /// Multiplier on the initial weights and bias of the output convolution (1 = PyTorch
    /// default; small values start the network near zero output).
    pub last_layer_scale: f64,
    /// Seed for the initial weights (and random Fourier frequencies).
    pub seed: u64,
}

impl UNetConfig {
    /// A default for `channels`×`height`×`width` images: base 32, one block per level, 8
    /// groups, attention, a sinusoidal embedding of size 32, and 2 levels for sides up to 16
    /// (3 above).
    pub fn new(channels: usize, height: usize, width: usize, seed: u64) -> Self {
        UNetConfig {
            channels,
            height,
            width,
            base: 32,
            levels: if height.max(width) <= 16 { 2 } else { 3 },
            blocks: 1,
            groups: 8,
            attention: true,
            time_embedding: TimeEmbedding::Sinusoidal {
                size: 32,
                time_scale: 1000.0,
            },
            last_layer_scale: 1.0,
            seed,
        }
    }

    /// Channels of each level: `base·(1, 2, 2, …)`.
    pub fn level_channels(&self) -> Vec<usize> {
        (0..self.levels)
            .map(|l| if l == 0 { self.base } else { 2 * self.base })
            .collect()
    }

    /// `(height, width)` of each level: each side halved, rounded up.
    pub fn level_sizes(&self) -> Vec<(usize, usize)> {
        let mut out = vec![(self.height, self.width)];
        for _ in 1..self.levels {
            let (h, w) = out[out.len() - 1];
            out.push((h.div_ceil(2), w.div_ceil(2)));
        }
        out
    }

    /// Width of the time features fed to the residual blocks.
    fn time_width(&self) -> usize {
        4 * self.base
    }

    fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(NetError::Config(m));
        for (name, v) in [
            ("channels", self.channels),
            ("height", self.height),
            ("width", self.width),
            ("base", self.base),
            ("levels", self.levels),
            ("blocks", self.blocks),
            ("groups", self.groups),
        ] {
            if v == 0 {
                return bad(format!("`{name}` must be at least 1"));
            }
        }
        if !self.base.is_multiple_of(self.groups) {
            return bad(format!(
                "{} GroupNorm groups do not divide the {} channels of the first level (`base`)",
                self.groups, self.base
            ));
        }
        let sizes = self.level_sizes();
        if let Some(l) = sizes[..sizes.len() - 1].iter().position(|&s| s == (1, 1)) {
            return bad(format!(
                "{} levels are too many for {}×{} images: level {l} is already 1×1",
                self.levels, self.height, self.width
            ));
        }
        self.time_embedding.validate()?;
        if !self.last_layer_scale.is_finite() {
            return bad("`last_layer_scale` must be finite".into());
        }
        Ok(())
    }
}

/// What a pass computes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Values only, no graph to the parameters.
    Eval,
    /// Values only, graph recorded.
    Train,
    /// Values and time tangents, graph recorded.
    Tangent,
}

/// A value and its time tangent; `None` while the value does not depend on `t`.
#[derive(Clone)]
struct Dual {
    v: Tensor,
    d: Option<Tensor>,
}

impl Dual {
    fn constant(v: Tensor) -> Self {
        Dual { v, d: None }
    }

    /// Applies the same linear map to value and tangent.
    fn map(&self, f: impl Fn(&Tensor) -> candle_core::Result<Tensor>) -> Result<Dual> {
        Ok(Dual {
            v: f(&self.v)?,
            d: self.d.as_ref().map(&f).transpose()?,
        })
    }

    /// `self + other` (same shapes).
    fn add(&self, other: &Dual) -> Result<Dual> {
        let v = (&self.v + &other.v)?;
        let d = match (&self.d, &other.d) {
            (Some(a), Some(b)) => Some((a + b)?),
            (Some(a), None) => Some(a.clone()),
            (None, Some(b)) => Some(b.clone()),
            (None, None) => None,
        };
        Ok(Dual { v, d })
    }

    /// SiLU; tangent `σ(z)(1 + z(1 − σ(z)))·ż`.
    fn silu(&self) -> Result<Dual> {
        Ok(match &self.d {
            None => Dual::constant(self.v.silu()?),
            Some(d) => {
                let (y, dy) = Activation::Silu.value_and_derivative(&self.v)?;
                Dual {
                    v: y,
                    d: Some((dy * d)?),
                }
            }
        })
    }
}

/// A parameter as a graph input (training) or a detached tensor (inference).
fn param(v: &Var, mode: Mode) -> Tensor {
    match mode {
        Mode::Eval => v.as_detached_tensor(),
        _ => v.as_tensor().clone(),
    }
}

/// An affine layer (no activation) on rows `[N, in]`: the value by [`Linear::forward`] (the
/// fused CPU kernel where it applies), the tangent `ḣ·Wᵀ` by a plain matrix product.
fn linear(l: &Linear, x: &Dual, mode: Mode) -> Result<Dual> {
    let v = match mode {
        Mode::Eval => l.forward_eval(&x.v)?,
        _ => l.forward(&x.v)?,
    };
    let d = match &x.d {
        Some(d) => Some(d.matmul(&param(l.weight(), mode).t()?)?),
        None => None,
    };
    Ok(Dual { v, d })
}

// candle's CPU backend sums over a middle axis (the backward of a broadcast over positions)
// with a division per element, far slower than a matrix product; so sums over and repeats
// across the positions of `[B, P, C]` images are matrix products with a ones vector.

/// `Σ_p x[b, p, c]`: `[B, P, C]` → `[B, 1, C]`.
fn position_sum(x: &Tensor) -> candle_core::Result<Tensor> {
    let (b, p, _) = x.dims3()?;
    Tensor::ones((b, 1, p), x.dtype(), x.device())?.matmul(x)
}

/// `m` `[B, 1, C]` repeated over `p` positions: `[B, p, C]`.
fn spread(m: &Tensor, p: usize) -> candle_core::Result<Tensor> {
    let b = m.dim(0)?;
    Tensor::ones((b, p, 1), m.dtype(), m.device())?.matmul(m)
}

/// Draws the layers' initial weights from consecutive `rng::stream(seed, Init, 0, k)` streams.
struct Init<'a> {
    seed: u64,
    next: u64,
    dtype: DType,
    device: &'a Device,
}

impl Init<'_> {
    fn linear(&mut self, fan_in: usize, fan_out: usize, scale: f64) -> Result<Linear> {
        self.next += 1;
        Linear::init(
            self.seed,
            self.next,
            fan_in,
            fan_out,
            scale,
            None,
            self.dtype,
            self.device,
        )
    }

    /// A k×k convolution reading `input`-sized images through `sampling`.
    fn conv(
        &mut self,
        k: usize,
        sampling: Sampling,
        input: (usize, usize),
        cin: usize,
        cout: usize,
    ) -> Result<Conv> {
        self.conv_scaled(k, sampling, input, cin, cout, 1.0)
    }

    fn conv_scaled(
        &mut self,
        k: usize,
        sampling: Sampling,
        input: (usize, usize),
        cin: usize,
        cout: usize,
        scale: f64,
    ) -> Result<Conv> {
        let (index, output) = gather_index(k, sampling, input);
        Ok(Conv {
            lin: self.linear(k * k * cin, cout, scale)?,
            input,
            output,
            index: (k > 1).then(|| std::sync::Arc::new(index)),
        })
    }

    fn norm(&self, channels: usize, groups: usize) -> Result<GroupNorm> {
        Ok(GroupNorm {
            weight: Var::from_tensor(&Tensor::ones(channels, self.dtype, self.device)?)?,
            bias: Var::from_tensor(&Tensor::zeros(channels, self.dtype, self.device)?)?,
            groups,
        })
    }

    /// A residual block on `size` images.
    fn res(
        &mut self,
        size: (usize, usize),
        cin: usize,
        cout: usize,
        groups: usize,
        time: usize,
    ) -> Result<ResBlock> {
        Ok(ResBlock {
            norm1: self.norm(cin, groups)?,
            conv1: self.conv(3, Sampling::Same, size, cin, cout)?,
            time: self.linear(time, cout, 1.0)?,
            norm2: self.norm(cout, groups)?,
            conv2: self.conv(3, Sampling::Same, size, cout, cout)?,
            skip: if cin == cout {
                None
            } else {
                Some(self.conv(1, Sampling::Same, size, cin, cout)?)
            },
        })
    }
}

/// How a convolution's output pixels sit on its input.
#[derive(Clone, Copy)]
enum Sampling {
    /// Stride 1, padding `k/2`: the output has the input's size.
    Same,
    /// Stride 2, padding 1: each side `n` becomes `⌈n/2⌉`.
    Down,
    /// Stride 1 on the nearest-neighbour ×2 upsampled input, cropped to `(height, width)`.
    Up(usize, usize),
}

/// For a k×k convolution (k = 1 or 3) of `input`-sized images: the input pixel that each
/// (output pixel, tap) reads, row-major over `(i, j, ky, kx)` (`h·w`: the zero pixel past the
/// border), and the output size.
fn gather_index(k: usize, sampling: Sampling, input: (usize, usize)) -> (Vec<u32>, (usize, usize)) {
    let (h, w) = input;
    let (ho, wo) = match sampling {
        Sampling::Same => (h, w),
        Sampling::Down => (h.div_ceil(2), w.div_ceil(2)),
        Sampling::Up(ho, wo) => (ho, wo),
    };
    let mut index = Vec::with_capacity(ho * wo * k * k);
    let r = k as isize / 2;
    for i in 0..ho as isize {
        for j in 0..wo as isize {
            for dy in -r..=r {
                for dx in -r..=r {
                    // Position of the tap in the (virtual) image the kernel slides over, that
                    // image's size, and the source pixel of a position.
                    let ((y, x), (vh, vw), div) = match sampling {
                        Sampling::Same => ((i + dy, j + dx), (h, w), 1),
                        Sampling::Down => ((2 * i + dy, 2 * j + dx), (h, w), 1),
                        Sampling::Up(..) => ((i + dy, j + dx), (ho, wo), 2),
                    };
                    let inside = (0..vh as isize).contains(&y) && (0..vw as isize).contains(&x);
                    index.push(if inside {
                        ((y / div) as usize * w + (x / div) as usize) as u32
                    } else {
                        (h * w) as u32
                    });
                }
            }
        }
    }
    (index, (ho, wo))
}

/// A k×k convolution on `[B, H·W, C]` images of one size: the `[B·Ho·Wo, k·k·C]` patches
/// gathered with one `index_select` (whose backward is one `index_add`, on any device), then a
/// [`Linear`] layer.
struct Conv {
    lin: Linear,
    input: (usize, usize),
    output: (usize, usize),
    /// The [`gather_index`] (none for 1×1).
    index: Option<std::sync::Arc<Vec<u32>>>,
}

impl Conv {
    fn vars(&self, prefix: &str) -> Vec<(String, Var)> {
        self.lin.vars(prefix)
    }

    /// `x` `[B, H·W, C]` ↦ `[B, Ho·Wo, Cout]`; value and tangent gathered separately (the
    /// value then runs the fused kernel where it applies).
    fn forward(&self, x: &Dual, mode: Mode) -> Result<Dual> {
        let b = x.v.dim(0)?;
        let (ho, wo) = self.output;
        let cout = self.lin.weight().dim(0)?;
        let rows = Dual {
            v: self.patches(&x.v)?,
            d: x.d.as_ref().map(|d| self.patches(d)).transpose()?,
        };
        linear(&self.lin, &rows, mode)?.map(|t| t.reshape((b, ho * wo, cout)))
    }

    /// The `[B·Ho·Wo, k·k·C]` patches of `x` `[B, H·W, C]`.
    fn patches(&self, x: &Tensor) -> Result<Tensor> {
        let (b, p, c) = x.dims3()?;
        let (h, w) = self.input;
        if p != h * w {
            return Err(NetError::Shape(format!(
                "a convolution built for {h}×{w} images got {p} positions"
            )));
        }
        let (ho, wo) = self.output;
        let Some(index) = &self.index else {
            return Ok(x.reshape((b * p, c))?);
        };
        let taps = index.len() / (ho * wo);
        Ok(super::fused::gather_patches(x, index, taps, true)?)
    }
}

/// GroupNorm over `[B, P, C]` images with a per-channel affine map.
struct GroupNorm {
    weight: Var,
    bias: Var,
    groups: usize,
}

impl GroupNorm {
    fn vars(&self, prefix: &str) -> Vec<(String, Var)> {
        vec![
            (format!("{prefix}.weight"), self.weight.clone()),
            (format!("{prefix}.bias"), self.bias.clone()),
        ]
    }

    /// The mean over each group's positions and channels of `x` `[B, P, C]`, per channel
    /// `[B, 1, C]`.
    fn group_mean(&self, x: &Tensor) -> Result<Tensor> {
        let (b, p, c) = x.dims3()?;
        let (g, cg) = (self.groups, c / self.groups);
        let m = position_sum(x)?.reshape((b, g, cg))?.sum_keepdim(2)?;
        Ok((m.broadcast_as((b, g, cg))?.reshape((b, 1, c))? / (p * cg) as f64)?)
    }

    /// `y = γ·x̂ + β` with `x̂ = (x − μ)/s` per group; tangent
    /// `γ·(ẋ − mean(ẋ) − x̂·mean(x̂·ẋ))/s` (means over the group).
    fn forward(&self, x: &Dual, mode: Mode) -> Result<Dual> {
        let (b, p, c) = x.v.dims3()?;
        let xc = (&x.v - spread(&self.group_mean(&x.v)?, p)?)?;
        let inv = (self.group_mean(&xc.sqr()?)? + NORM_EPS)?.sqrt()?.recip()?;
        let gamma = param(&self.weight, mode).reshape((1, 1, c))?;
        let beta = param(&self.bias, mode).reshape((1, 1, c))?;
        // a = γ/s per image and channel.
        let a = inv.broadcast_mul(&gamma)?;
        let a_full = spread(&a, p)?;
        let v = ((&xc * &a_full)? + spread(&beta.broadcast_as((b, 1, c))?, p)?)?;
        let d = match &x.d {
            None => None,
            Some(d) => {
                // γ/s·(ẋ − mean ẋ) − x_c·γ/s³·mean(x_c·ẋ).
                let m1 = (self.group_mean(d)? * &a)?;
                let m2 = (self.group_mean(&(&xc * d)?)? * (&a * inv.sqr()?)?)?;
                let dy = (((d * &a_full)? - spread(&m1, p)?)? - (&xc * spread(&m2, p)?)?)?;
                Some(dy)
            }
        };
        Ok(Dual { v, d })
    }
}

/// A residual block; see the module docs.
struct ResBlock {
    norm1: GroupNorm,
    conv1: Conv,
    time: Linear,
    norm2: GroupNorm,
    conv2: Conv,
    skip: Option<Conv>,
}

impl ResBlock {
    fn vars(&self, p: &str) -> Vec<(String, Var)> {
        let mut out = self.norm1.vars(&format!("{p}.norm1"));
        out.extend(self.conv1.vars(&format!("{p}.conv1")));
        out.extend(self.time.vars(&format!("{p}.time")));
        out.extend(self.norm2.vars(&format!("{p}.norm2")));
        out.extend(self.conv2.vars(&format!("{p}.conv2")));
        if let Some(s) = &self.skip {
            out.extend(s.vars(&format!("{p}.skip")));
        }
        out
    }

    /// `x` `[B, P, Cin]`, `temb` the time features `[B, T]`.
    fn forward(&self, x: &Dual, temb: &Dual, mode: Mode) -> Result<Dual> {
        let h = self
            .conv1
            .forward(&self.norm1.forward(x, mode)?.silu()?, mode)?;
        let p = h.v.dim(1)?;
        let tp = linear(&self.time, temb, mode)?.map(|t| spread(&t.unsqueeze(1)?, p))?;
        let h = h.add(&tp)?;
        let h = self
            .conv2
            .forward(&self.norm2.forward(&h, mode)?.silu()?, mode)?;
        let skip = match &self.skip {
            Some(s) => s.forward(x, mode)?,
            None => x.clone(),
        };
        skip.add(&h)
    }
}

/// Single-head pre-norm self-attention over the positions of `[B, P, C]`, with a residual.
struct Attention {
    norm: GroupNorm,
    qkv: Linear,
    proj: Linear,
}

impl Attention {
    fn vars(&self, p: &str) -> Vec<(String, Var)> {
        let mut out = self.norm.vars(&format!("{p}.norm"));
        out.extend(self.qkv.vars(&format!("{p}.qkv")));
        out.extend(self.proj.vars(&format!("{p}.proj")));
        out
    }

    /// `A = softmax(q·kᵀ/√C)`, `o = A·v`; tangent `Ȧ = A ⊙ (Ṡ − rowsum(A ⊙ Ṡ))`,
    /// `ȯ = Ȧ·v + A·v̇`.
    fn forward(&self, x: &Dual, mode: Mode) -> Result<Dual> {
        let (b, n, c) = x.v.dims3()?;
        let a = self.norm.forward(x, mode)?.map(|t| t.reshape((b * n, c)))?;
        let qkv = linear(&self.qkv, &a, mode)?.map(|t| t.reshape((b, n, 3 * c)))?;
        let part = |t: &Tensor, i: usize| t.narrow(2, i * c, c)?.contiguous();
        let (q, k, v) = (part(&qkv.v, 0)?, part(&qkv.v, 1)?, part(&qkv.v, 2)?);
        let scale = 1.0 / (c as f64).sqrt();
        let kt = k.t()?.contiguous()?;
        let s = (q.matmul(&kt)? * scale)?;
        // Our fused softmax (with its backward; candle-nn's `softmax_last_dim` has none).
        let att = super::fused::softmax_last_dim(&s, mode != Mode::Eval)?;
        let o = att.matmul(&v)?;
        let o_dot = match &qkv.d {
            None => None,
            Some(d) => {
                let (qd, kd, vd) = (part(d, 0)?, part(d, 1)?, part(d, 2)?);
                let s_dot = ((qd.matmul(&kt)? + q.matmul(&kd.t()?.contiguous()?)?)? * scale)?;
                let as_dot = (&att * s_dot)?;
                let att_dot = (&as_dot - att.broadcast_mul(&as_dot.sum_keepdim(D::Minus1)?)?)?;
                Some((att_dot.matmul(&v)? + att.matmul(&vd)?)?)
            }
        };
        let o = Dual { v: o, d: o_dot }.map(|t| t.reshape((b * n, c)))?;
        let y = linear(&self.proj, &o, mode)?.map(|t| t.reshape((b, n, c)))?;
        x.add(&y)
    }
}

/// One level of the down path.
struct Down {
    res: Vec<ResBlock>,
    down: Option<Conv>,
}

/// One level of the up path.
struct Up {
    up: Option<Conv>,
    res: Vec<ResBlock>,
}

/// The U-Net score network; see the module docs.
pub struct UNet {
    config: UNetConfig,
    embedding: Embedding,
    time1: Linear,
    time2: Linear,
    input: Conv,
    down: Vec<Down>,
    mid: (ResBlock, Option<Attention>, ResBlock),
    up: Vec<Up>,
    out_norm: GroupNorm,
    out_conv: Conv,
    device: Device,
    dtype: DType,
}

impl UNet {
    /// Builds the network. The embedding's random draws (if any) use
    /// `rng::stream(seed, Init, 0, 0)`, the k-th layer's weights (in the order of [`UNet::vars`])
    /// stream k.
    pub fn new(config: UNetConfig, dtype: DType, device: &Device) -> Result<Self> {
        config.validate()?;
        if !matches!(dtype, DType::F32 | DType::F64) {
            return Err(NetError::Config(format!(
                "dtype {dtype:?} is not supported; use f32 (training) or f64 (reference checks)"
            )));
        }
        let embedding = Embedding::new(config.time_embedding, config.seed, 0, dtype, device)?;
        let mut init = Init {
            seed: config.seed,
            next: 0,
            dtype,
            device,
        };
        let (g, tw, ch) = (config.groups, config.time_width(), config.level_channels());
        let levels = config.levels;
        let time1 = init.linear(config.time_embedding.size(), tw, 1.0)?;
        let time2 = init.linear(tw, tw, 1.0)?;
        let sizes = config.level_sizes();
        let input = init.conv(3, Sampling::Same, sizes[0], config.channels, ch[0])?;
        let mut down = Vec::with_capacity(levels);
        let mut cin = ch[0];
        for (l, &c) in ch.iter().enumerate() {
            let mut res = Vec::with_capacity(config.blocks);
            for _ in 0..config.blocks {
                res.push(init.res(sizes[l], cin, c, g, tw)?);
                cin = c;
            }
            let down_conv = (l + 1 < levels)
                .then(|| init.conv(3, Sampling::Down, sizes[l], c, c))
                .transpose()?;
            down.push(Down {
                res,
                down: down_conv,
            });
        }
        let low = ch[levels - 1];
        let lowest = sizes[levels - 1];
        let mid0 = init.res(lowest, low, low, g, tw)?;
        let attn = if config.attention {
            Some(Attention {
                norm: init.norm(low, g)?,
                qkv: init.linear(low, 3 * low, 1.0)?,
                proj: init.linear(low, low, 1.0)?,
            })
        } else {
            None
        };
        let mid1 = init.res(lowest, low, low, g, tw)?;
        // Built lowest level first (the order they run in), stored by level.
        let mut up: Vec<Up> = Vec::with_capacity(levels);
        let mut cur = low;
        for l in (0..levels).rev() {
            let (h, w) = sizes[l];
            let up_conv = (l + 1 < levels)
                .then(|| init.conv(3, Sampling::Up(h, w), sizes[l + 1], cur, cur))
                .transpose()?;
            let mut res = Vec::with_capacity(config.blocks);
            for i in 0..config.blocks {
                let cin = if i == 0 { cur + ch[l] } else { ch[l] };
                res.push(init.res(sizes[l], cin, ch[l], g, tw)?);
            }
            cur = ch[l];
            up.push(Up { up: up_conv, res });
        }
        up.reverse();
        let out_norm = init.norm(ch[0], g)?;
        let out_conv = init.conv_scaled(
            3,
            Sampling::Same,
            sizes[0],
            ch[0],
            config.channels,
            config.last_layer_scale,
        )?;
        Ok(UNet {
            config,
            embedding,
            time1,
            time2,
            input,
            down,
            mid: (mid0, attn, mid1),
            up,
            out_norm,
            out_conv,
            device: device.clone(),
            dtype,
        })
    }

    /// The configuration the network was built from.
    pub fn config(&self) -> &UNetConfig {
        &self.config
    }

    /// Trainable parameters, in construction order: `time.lin1.weight`, …, `in.conv.weight`,
    /// `down.0.res.0.norm1.weight`, …, `mid.attn.qkv.weight`, …, `out.conv.bias`, then the
    /// embedding's (`time_embed.weight`, `time_embed.bias`; none for sin/cos embeddings).
    pub fn vars(&self) -> Vec<(String, Var)> {
        let mut out = self.time1.vars("time.lin1");
        out.extend(self.time2.vars("time.lin2"));
        out.extend(self.input.vars("in.conv"));
        for (l, level) in self.down.iter().enumerate() {
            for (i, r) in level.res.iter().enumerate() {
                out.extend(r.vars(&format!("down.{l}.res.{i}")));
            }
            if let Some(d) = &level.down {
                out.extend(d.vars(&format!("down.{l}.down.conv")));
            }
        }
        out.extend(self.mid.0.vars("mid.res.0"));
        if let Some(a) = &self.mid.1 {
            out.extend(a.vars("mid.attn"));
        }
        out.extend(self.mid.2.vars("mid.res.1"));
        for (l, level) in self.up.iter().enumerate().rev() {
            if let Some(u) = &level.up {
                out.extend(u.vars(&format!("up.{l}.up.conv")));
            }
            for (i, r) in level.res.iter().enumerate() {
                out.extend(r.vars(&format!("up.{l}.res.{i}")));
            }
        }
        out.extend(self.out_norm.vars("out.norm"));
        out.extend(self.out_conv.vars("out.conv"));
        out.extend(self.embedding.vars());
        out
    }

    /// Every tensor that defines the network: the parameters, then the embedding's frequency
    /// buffer (sin/cos embeddings).
    pub fn weights(&self) -> Vec<(String, Tensor)> {
        let mut out: Vec<(String, Tensor)> = self
            .vars()
            .into_iter()
            .map(|(n, v)| (n, v.as_detached_tensor()))
            .collect();
        // The embedding's parameters are among the vars already; add its buffer.
        let buffers: Vec<(String, Tensor)> = self
            .embedding
            .weights()
            .into_iter()
            .filter(|(n, _)| !out.iter().any(|(m, _)| m == n))
            .collect();
        out.extend(buffers);
        out
    }

    /// Overwrites the parameters (and, when present, the embedding frequencies) from named
    /// tensors; every parameter must be present with the right shape.
    pub fn load_weights(&mut self, tensors: &[(String, Tensor)]) -> Result<()> {
        super::load_vars(
            self.vars(),
            tensors,
            &self.device,
            self.dtype,
            "channels/base/levels/blocks/attention/embedding size",
        )?;
        self.embedding.load_buffers(tensors)
    }

    /// `x` as channels-last `[B, H·W, C]` in the network dtype, the batch size and `t` checked.
    fn input_image(&self, x: &Tensor, t: &Tensor) -> Result<Tensor> {
        let UNetConfig {
            channels: c,
            height: h,
            width: w,
            ..
        } = self.config;
        let b = match *x.dims() {
            [b, d] if d == c * h * w => b,
            [b, c2, h2, w2] if (c2, h2, w2) == (c, h, w) => b,
            _ => {
                return Err(NetError::Shape(format!(
                    "x must be [batch, {}] or [batch, {c}, {h}, {w}], got {:?}",
                    c * h * w,
                    x.dims()
                )))
            }
        };
        if t.dims() != [b] {
            return Err(NetError::Shape(format!(
                "t must be a per-image time of shape [{b}], got {:?}",
                t.dims()
            )));
        }
        Ok(x.to_dtype(self.dtype)?
            .reshape((b, c, h * w))?
            .transpose(1, 2)?
            .contiguous()?)
    }

    fn run(&self, x: &Tensor, t: &Tensor, mode: Mode) -> Result<Dual> {
        let (x, t) = match mode {
            Mode::Eval => (x.detach(), t.detach()),
            _ => (x.clone(), t.clone()),
        };
        let img = self.input_image(&x, &t)?;
        let t = t.to_dtype(self.dtype)?;
        let e = match mode {
            Mode::Tangent => {
                let (e, e_dot) = self.embedding.forward_with_tangent(&t)?;
                Dual {
                    v: e,
                    d: Some(e_dot),
                }
            }
            _ => Dual::constant(self.embedding.forward(&t, mode == Mode::Train)?),
        };
        let temb = linear(&self.time1, &e, mode)?.silu()?;
        let temb = linear(&self.time2, &temb, mode)?.silu()?;
        let mut h = self.input.forward(&Dual::constant(img), mode)?;
        let mut skips = Vec::with_capacity(self.down.len());
        for level in &self.down {
            for r in &level.res {
                h = r.forward(&h, &temb, mode)?;
            }
            skips.push(h.clone());
            if let Some(d) = &level.down {
                h = d.forward(&h, mode)?;
            }
        }
        h = self.mid.0.forward(&h, &temb, mode)?;
        if let Some(a) = &self.mid.1 {
            h = a.forward(&h, mode)?;
        }
        h = self.mid.2.forward(&h, &temb, mode)?;
        for (level, skip) in self.up.iter().zip(&skips).rev() {
            if let Some(u) = &level.up {
                h = u.forward(&h, mode)?;
            }
            h = Dual {
                v: Tensor::cat(&[&h.v, &skip.v], 2)?,
                d: match (&h.d, &skip.d) {
                    (Some(a), Some(b)) => Some(Tensor::cat(&[a, b], 2)?),
                    (Some(a), None) => Some(Tensor::cat(&[a, &skip.v.zeros_like()?], 2)?),
                    (None, Some(b)) => Some(Tensor::cat(&[&h.v.zeros_like()?, b], 2)?),
                    (None, None) => None,
                },
            };
            for r in &level.res {
                h = r.forward(&h, &temb, mode)?;
            }
        }
        let h = self.out_norm.forward(&h, mode)?.silu()?;
        self.out_conv.forward(&h, mode)
    }

    /// A channels-last output back in the layout of the input `x`.
    fn output(&self, y: &Tensor, x: &Tensor) -> Result<Tensor> {
        Ok(y.transpose(1, 2)?.contiguous()?.reshape(x.shape())?)
    }
}

impl Module for UNet {
    fn forward(&self, x: &Tensor, t: &Tensor) -> Result<Tensor> {
        self.output(&self.run(x, t, Mode::Train)?.v, x)
    }

    fn forward_eval(&self, x: &Tensor, t: &Tensor) -> Result<Tensor> {
        self.output(&self.run(x, t, Mode::Eval)?.v, x)
    }

    fn forward_with_time_tangent(&self, x: &Tensor, t: &Tensor) -> Result<(Tensor, Tensor)> {
        let y = self.run(x, t, Mode::Tangent)?;
        let d = match &y.d {
            Some(d) => d.clone(),
            None => y.v.zeros_like()?,
        };
        Ok((self.output(&y.v, x)?, self.output(&d, x)?))
    }

    fn vars(&self) -> Vec<(String, Var)> {
        UNet::vars(self)
    }

    fn weights(&self) -> Vec<(String, Tensor)> {
        UNet::weights(self)
    }

    fn load_weights(&mut self, tensors: &[(String, Tensor)]) -> Result<()> {
        UNet::load_weights(self, tensors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{stream, Purpose};
    use rand::Rng;

    fn normal(shape: &[usize], seed: u64) -> Result<Tensor> {
        let mut rng = stream(seed, Purpose::Test, 0, 0);
        let n = shape.iter().product();
        let v: Vec<f64> = (0..n)
            .map(|_| rng.sample(rand_distr::StandardNormal))
            .collect();
        Ok(Tensor::from_vec(v, shape, &Device::Cpu)?)
    }

    /// The gathered convolution equals candle's `conv2d` (NCHW, PyTorch weight layout) for
    /// stride 1 and 2 on even and odd sides, 1×1, and after a cropped nearest ×2 upsampling.
    #[test]
    fn convolutions_match_candle_conv2d() -> Result<()> {
        let mut init = Init {
            seed: 1,
            next: 0,
            dtype: DType::F64,
            device: &Device::Cpu,
        };
        let cases = [
            (8, Sampling::Same, 3),
            (7, Sampling::Same, 3),
            (8, Sampling::Down, 3),
            (7, Sampling::Down, 3),
            (5, Sampling::Same, 1),
            (4, Sampling::Up(7, 7), 3),
            (4, Sampling::Up(8, 8), 3),
        ];
        for (side, sampling, k) in cases {
            let (cin, cout) = (3, 4);
            let conv = init.conv(k, sampling, (side, side), cin, cout)?;
            let x = normal(&[2, cin, side, side], side as u64)?;
            let rows = x
                .reshape((2, cin, side * side))?
                .transpose(1, 2)?
                .contiguous()?;
            let ours = conv.forward(&Dual::constant(rows), Mode::Eval)?.v;
            let (ho, wo) = conv.output;
            let ours = ours.transpose(1, 2)?.reshape((2, cout, ho, wo))?;
            let w = conv.lin.weight().as_tensor();
            let w = w
                .reshape((cout, k, k, cin))?
                .permute((0, 3, 1, 2))?
                .contiguous()?;
            let b = conv.lin.bias().as_tensor().reshape((1, cout, 1, 1))?;
            let (x, stride) = match sampling {
                Sampling::Same => (x, 1),
                Sampling::Down => (x, 2),
                Sampling::Up(h, w) => (
                    x.upsample_nearest2d(2 * side, 2 * side)?
                        .narrow(2, 0, h)?
                        .narrow(3, 0, w)?,
                    1,
                ),
            };
            let want = x.conv2d(&w, k / 2, stride, 1, 1)?.broadcast_add(&b)?;
            assert_eq!(ours.dims(), want.dims(), "side {side}");
            let err = (ours - want)?
                .abs()?
                .flatten_all()?
                .max(0)?
                .to_scalar::<f64>()?;
            assert!(err < 1e-12, "side {side}: {err}");
        }
        Ok(())
    }
}

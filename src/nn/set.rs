//! The set network of trans-dimensional models: a small pre-norm transformer over the
//! components of a padded set `x` `[B, N, d]` with a mask `[B, N]` (1 = present), with a time
//! and count embedding and three heads:
//! - `eps` `[B, N, d]`: the ε prediction of every component;
//! - `n0_logits` `[B, N]`: the classifier of the clean set's size (class k − 1 = k components);
//! - `ins_mean`, `ins_raw_std` `[B, d]`: the Gaussian insertion distribution of a new
//!   component (std = softplus(raw), applied by the caller).
//!
//! Masks are respected everywhere: absent components are never attended to and never enter
//! the pooled features, so their values cannot change any output at a present component or
//! any pooled head (the reference EGNN heads pool over all N slots; difc does not).
//! Permutation-equivariant in the components (the heads on pooled features are invariant).

use super::embed::{Embedding, TimeEmbedding};
use super::linear::{Activation, Linear};
use super::{NetError, Result};
use candle_core::{DType, Device, Tensor, Var};

/// The shape of a set network.
#[derive(Clone, Debug, PartialEq)]
pub struct SetNetConfig {
    /// Numbers per component (d).
    pub component: usize,
    /// Most components (N; also the number of n_0 classes).
    pub max: usize,
    pub width: usize,
    /// Transformer blocks.
    pub depth: usize,
    /// Attention heads (must divide `width`).
    pub heads: usize,
    /// Sinusoidal time-embedding size.
    pub embed_dim: usize,
    pub activation: Activation,
    pub seed: u64,
}

impl SetNetConfig {
    fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(NetError::Config(m));
        if self.component == 0 || self.max == 0 || self.width == 0 || self.depth == 0 {
            return bad("component size, max, width and depth must all be at least 1".into());
        }
        if self.heads == 0 || !self.width.is_multiple_of(self.heads) {
            return bad(format!(
                "{} attention heads do not divide the width {}",
                self.heads, self.width
            ));
        }
        if self.embed_dim < 2 || !self.embed_dim.is_multiple_of(2) {
            return bad(format!(
                "the time embedding size must be even and at least 2, not {}",
                self.embed_dim
            ));
        }
        Ok(())
    }
}

/// The heads of one pass.
pub struct SetOutput {
    pub eps: Tensor,
    pub n0_logits: Tensor,
    pub ins_mean: Tensor,
    pub ins_raw_std: Tensor,
}

/// Layer norm over the last axis with a learned gain and bias.
struct LayerNorm {
    gain: Var,
    bias: Var,
}

impl LayerNorm {
    fn new(width: usize, dtype: DType, device: &Device) -> Result<Self> {
        Ok(LayerNorm {
            gain: Var::from_tensor(&Tensor::ones(width, dtype, device)?)?,
            bias: Var::from_tensor(&Tensor::zeros(width, dtype, device)?)?,
        })
    }
    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let (g, b) = if train {
            (self.gain.as_tensor().clone(), self.bias.as_tensor().clone())
        } else {
            (
                self.gain.as_detached_tensor(),
                self.bias.as_detached_tensor(),
            )
        };
        // One fused op each way on the CPU (f32); the composite elsewhere.
        Ok(super::fused::layer_norm(x, &g, &b, 1e-5, train)?)
    }
    fn vars(&self, prefix: &str) -> Vec<(String, Var)> {
        vec![
            (format!("{prefix}.gain"), self.gain.clone()),
            (format!("{prefix}.bias"), self.bias.clone()),
        ]
    }
}

struct Block {
    ln1: LayerNorm,
    qkv: Linear,
    proj: Linear,
    ln2: LayerNorm,
    mlp_in: Linear,
    mlp_out: Linear,
}

/// The set transformer; see the module docs.
pub struct SetTransformer {
    config: SetNetConfig,
    embedding: Embedding,
    time_in: Linear,
    time_out: Linear,
    input: Linear,
    blocks: Vec<Block>,
    final_ln: LayerNorm,
    eps_head: Linear,
    n0_hidden: Linear,
    n0_out: Linear,
    ins_hidden: Linear,
    ins_out: Linear,
    device: Device,
    dtype: DType,
}

/// Added to the insertion head's raw std so that softplus(raw) starts near 1.
const RAW_STD_OFFSET: f64 = 0.55;

/// Large negative attention score of an absent key.
const MASKED: f64 = 1e9;

impl SetTransformer {
    /// Builds the network; layer k's weights come from `rng::stream(seed, Init, 0, k)` in the
    /// order the fields are declared.
    pub fn new(config: SetNetConfig, dtype: DType, device: &Device) -> Result<Self> {
        config.validate()?;
        let (w, d, n) = (config.width, config.component, config.max);
        let act = Some(config.activation);
        let mut k = 0u64;
        let mut lin = |fan_in: usize, fan_out: usize, scale: f64, act: Option<Activation>| {
            k += 1;
            Linear::init(config.seed, k, fan_in, fan_out, scale, act, dtype, device)
        };
        let e = config.embed_dim;
        let time_in = lin(e + 1, w, 1.0, act)?;
        let time_out = lin(w, w, 1.0, None)?;
        let input = lin(d, w, 1.0, None)?;
        let mut blocks = Vec::with_capacity(config.depth);
        for _ in 0..config.depth {
            blocks.push(Block {
                ln1: LayerNorm::new(w, dtype, device)?,
                qkv: lin(w, 3 * w, 1.0, None)?,
                proj: lin(w, w, 0.5, None)?,
                ln2: LayerNorm::new(w, dtype, device)?,
                mlp_in: lin(w, 2 * w, 1.0, act)?,
                mlp_out: lin(2 * w, w, 0.5, None)?,
            });
        }
        let eps_head = lin(w, d, 0.1, None)?;
        let n0_hidden = lin(2 * w, w, 1.0, act)?;
        let n0_out = lin(w, n, 0.1, None)?;
        let ins_hidden = lin(2 * w, w, 1.0, act)?;
        let ins_out = lin(w, 2 * d, 0.1, None)?;
        let embedding = Embedding::new(
            TimeEmbedding::Sinusoidal {
                size: e,
                time_scale: 1000.0,
            },
            config.seed,
            k + 1,
            dtype,
            device,
        )?;
        Ok(SetTransformer {
            final_ln: LayerNorm::new(w, dtype, device)?,
            config,
            embedding,
            time_in,
            time_out,
            input,
            blocks,
            eps_head,
            n0_hidden,
            n0_out,
            ins_hidden,
            ins_out,
            device: device.clone(),
            dtype,
        })
    }

    pub fn config(&self) -> &SetNetConfig {
        &self.config
    }

    /// Training pass: `x` `[B, N, d]`, `mask` `[B, N]` (1/0), `t` `[B]` network time.
    pub fn forward(&self, x: &Tensor, mask: &Tensor, t: &Tensor) -> Result<SetOutput> {
        self.run(x, mask, t, true)
    }

    /// Inference pass (no graph to the parameters).
    pub fn forward_eval(&self, x: &Tensor, mask: &Tensor, t: &Tensor) -> Result<SetOutput> {
        self.run(x, mask, t, false)
    }

    fn run(&self, x: &Tensor, mask: &Tensor, t: &Tensor, train: bool) -> Result<SetOutput> {
        let (w, d, n) = (self.config.width, self.config.component, self.config.max);
        let (b, nx, dx) = x.dims3()?;
        if nx != n || dx != d || mask.dims() != [b, n] || t.dims() != [b] {
            return Err(NetError::Shape(format!(
                "the set network takes x [B, {n}, {d}], mask [B, {n}], t [B]; got x {:?}, mask {:?}, t {:?}",
                x.dims(),
                mask.dims(),
                t.dims()
            )));
        }
        let lin = |l: &Linear, h: &Tensor| -> Result<Tensor> {
            if train {
                l.forward(h)
            } else {
                l.forward_eval(h)
            }
        };
        let mask = mask.to_dtype(self.dtype)?;
        let x = x.to_dtype(self.dtype)?;
        // Absent slots are zeroed first, so even non-finite padding cannot leak through a
        // multiplication by 0 (0·NaN = NaN).
        let present = mask.gt(0.5)?;
        let x = present
            .unsqueeze(2)?
            .broadcast_as((b, n, d))?
            .where_cond(&x, &x.zeros_like()?)?;
        // Time and count features [B, W].
        let count = (mask.sum_keepdim(1)? / n as f64)?;
        let te = self.embedding.forward(&t.to_dtype(self.dtype)?, train)?;
        let temb = lin(
            &self.time_out,
            &lin(&self.time_in, &Tensor::cat(&[&te, &count], 1)?)?,
        )?;
        // Components [B, N, W].
        let mut h = lin(&self.input, &x.reshape((b * n, d))?)?
            .reshape((b, n, w))?
            .broadcast_add(&temb.unsqueeze(1)?)?;
        let heads = self.config.heads;
        let hd = w / heads;
        // Attention bias: 0 for present keys, −MASKED for absent ones: [B, 1, 1, N].
        let key_bias = ((&mask - 1.0)? * MASKED)?.reshape((b, 1, 1, n))?;
        for blk in &self.blocks {
            let a = blk.ln1.forward(&h, train)?;
            let qkv = lin(&blk.qkv, &a.reshape((b * n, w))?)?.reshape((b, n, 3, heads, hd))?;
            let part = |i: usize| -> Result<Tensor> {
                Ok(qkv
                    .narrow(2, i, 1)?
                    .squeeze(2)?
                    .transpose(1, 2)?
                    .contiguous()?)
            };
            let (q, k, v) = (part(0)?, part(1)?, part(2)?);
            let scores = (q.matmul(&k.transpose(2, 3)?.contiguous()?)? / (hd as f64).sqrt())?
                .broadcast_add(&key_bias)?;
            // candle-nn's fused `softmax_last_dim` records no backward op (the gradient would
            // stop there and the query/key projections would never train), so training uses
            // the differentiable composite softmax and only inference the fused kernel.
            // Our fused softmax records its backward (candle-nn's `softmax_last_dim` does not,
            // which would leave the query and key projections untrained).
            let att = super::fused::softmax_last_dim(&scores, train)?;
            let o = att
                .matmul(&v)?
                .transpose(1, 2)?
                .contiguous()?
                .reshape((b * n, w))?;
            h = (h + lin(&blk.proj, &o)?.reshape((b, n, w))?)?;
            let m = blk.ln2.forward(&h, train)?.reshape((b * n, w))?;
            let m = lin(&blk.mlp_out, &lin(&blk.mlp_in, &m)?)?.reshape((b, n, w))?;
            h = (h + m)?;
        }
        let h = self.final_ln.forward(&h, train)?;
        let eps = lin(&self.eps_head, &h.reshape((b * n, w))?)?.reshape((b, n, d))?;
        // Masked mean over present components, with the time features.
        let m3 = mask.unsqueeze(2)?;
        let hz = m3
            .broadcast_as((b, n, w))?
            .gt(0.5)?
            .where_cond(&h, &h.zeros_like()?)?;
        let pooled = hz
            .sum(1)?
            .broadcast_div(&mask.sum_keepdim(1)?.clamp(1.0, f64::MAX)?)?;
        let feats = Tensor::cat(&[&pooled, &temb], 1)?;
        let n0_logits = lin(&self.n0_out, &lin(&self.n0_hidden, &feats)?)?;
        let ins = lin(&self.ins_out, &lin(&self.ins_hidden, &feats)?)?;
        let ins_mean = ins.narrow(1, 0, d)?;
        let ins_raw_std = (ins.narrow(1, d, d)? + RAW_STD_OFFSET)?;
        Ok(SetOutput {
            eps,
            n0_logits,
            ins_mean,
            ins_raw_std,
        })
    }

    fn named_linears(&self) -> Vec<(String, &Linear)> {
        let mut out: Vec<(String, &Linear)> = vec![
            ("time.0".into(), &self.time_in),
            ("time.1".into(), &self.time_out),
            ("input".into(), &self.input),
        ];
        for (i, blk) in self.blocks.iter().enumerate() {
            out.push((format!("blocks.{i}.qkv"), &blk.qkv));
            out.push((format!("blocks.{i}.proj"), &blk.proj));
            out.push((format!("blocks.{i}.mlp.0"), &blk.mlp_in));
            out.push((format!("blocks.{i}.mlp.1"), &blk.mlp_out));
        }
        out.push(("eps_head".into(), &self.eps_head));
        out.push(("n0.0".into(), &self.n0_hidden));
        out.push(("n0.1".into(), &self.n0_out));
        out.push(("insert.0".into(), &self.ins_hidden));
        out.push(("insert.1".into(), &self.ins_out));
        out
    }

    /// Trainable parameters, named (`blocks.0.qkv.weight`, `blocks.0.ln1.gain`, …).
    pub fn vars(&self) -> Vec<(String, Var)> {
        let mut out = Vec::new();
        for (name, l) in self.named_linears() {
            out.extend(l.vars(&name));
        }
        for (i, blk) in self.blocks.iter().enumerate() {
            out.extend(blk.ln1.vars(&format!("blocks.{i}.ln1")));
            out.extend(blk.ln2.vars(&format!("blocks.{i}.ln2")));
        }
        out.extend(self.final_ln.vars("final_ln"));
        out
    }

    /// Every tensor defining the network (parameters and the time-embedding buffer).
    pub fn weights(&self) -> Vec<(String, Tensor)> {
        let mut out: Vec<(String, Tensor)> = self
            .vars()
            .into_iter()
            .map(|(n, v)| (n, v.as_detached_tensor()))
            .collect();
        out.extend(self.embedding.weights());
        out
    }

    /// Overwrites the parameters from named tensors (a checkpoint, EMA weights); every
    /// parameter must be present with its shape.
    pub fn load_weights(&mut self, tensors: &[(String, Tensor)]) -> Result<()> {
        super::load_vars(
            self.vars(),
            tensors,
            &self.device,
            self.dtype,
            "width/depth/heads",
        )?;
        self.embedding.load_buffers(tensors)
    }

    /// Number of trainable numbers.
    pub fn parameter_count(&self) -> usize {
        self.vars().iter().map(|(_, v)| v.elem_count()).sum()
    }
}

/// The module contract of every set network (the set transformer; an EGNN for molecules):
/// padded sets `x` `[B, N, d]`, a mask `[B, N]` and network time `t` `[B]` in, the heads out;
/// named parameters for the optimizer, EMA and checkpoints. Absent components must never
/// change an output.
pub trait SetNet {
    fn config(&self) -> &SetNetConfig;
    /// Training pass (graph to the parameters).
    fn forward(&self, x: &Tensor, mask: &Tensor, t: &Tensor) -> Result<SetOutput>;
    /// Inference pass (no graph to the parameters).
    fn forward_eval(&self, x: &Tensor, mask: &Tensor, t: &Tensor) -> Result<SetOutput>;
    fn vars(&self) -> Vec<(String, Var)>;
    fn weights(&self) -> Vec<(String, Tensor)>;
    fn load_weights(&mut self, tensors: &[(String, Tensor)]) -> Result<()>;
    fn parameter_count(&self) -> usize {
        self.vars().iter().map(|(_, v)| v.elem_count()).sum()
    }
}

impl SetNet for SetTransformer {
    fn config(&self) -> &SetNetConfig {
        SetTransformer::config(self)
    }
    fn forward(&self, x: &Tensor, mask: &Tensor, t: &Tensor) -> Result<SetOutput> {
        SetTransformer::forward(self, x, mask, t)
    }
    fn forward_eval(&self, x: &Tensor, mask: &Tensor, t: &Tensor) -> Result<SetOutput> {
        SetTransformer::forward_eval(self, x, mask, t)
    }
    fn vars(&self) -> Vec<(String, Var)> {
        SetTransformer::vars(self)
    }
    fn weights(&self) -> Vec<(String, Tensor)> {
        SetTransformer::weights(self)
    }
    fn load_weights(&mut self, tensors: &[(String, Tensor)]) -> Result<()> {
        SetTransformer::load_weights(self, tensors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(seed: u64) -> SetNetConfig {
        SetNetConfig {
            component: 2,
            max: 5,
            width: 16,
            depth: 2,
            heads: 4,
            embed_dim: 8,
            activation: Activation::Gelu,
            seed,
        }
    }

    fn inputs(dtype: DType) -> Result<(Tensor, Tensor, Tensor)> {
        let dev = Device::Cpu;
        let x: Vec<f64> = (0..3 * 5 * 2)
            .map(|i| ((i * 7 % 11) as f64 - 5.0) / 4.0)
            .collect();
        let mask = vec![
            1.0, 1.0, 1.0, 0.0, 0.0, //
            1.0, 0.0, 0.0, 0.0, 0.0, //
            0.0, 1.0, 0.0, 1.0, 1.0,
        ];
        Ok((
            Tensor::from_vec(x, (3, 5, 2), &dev)?.to_dtype(dtype)?,
            Tensor::from_vec(mask, (3, 5), &dev)?.to_dtype(dtype)?,
            Tensor::new(&[0.1f64, 0.5, 0.9], &dev)?.to_dtype(dtype)?,
        ))
    }

    fn v3(t: &Tensor) -> Vec<Vec<Vec<f64>>> {
        t.to_dtype(DType::F64).unwrap().to_vec3().unwrap()
    }
    fn v2(t: &Tensor) -> Vec<Vec<f64>> {
        t.to_dtype(DType::F64).unwrap().to_vec2().unwrap()
    }

    #[test]
    fn shapes_and_single_component_rows_are_finite() -> Result<()> {
        let net = SetTransformer::new(config(1), DType::F32, &Device::Cpu)?;
        let (x, m, t) = inputs(DType::F32)?;
        let o = net.forward(&x, &m, &t)?;
        assert_eq!(o.eps.dims(), [3, 5, 2]);
        assert_eq!(o.n0_logits.dims(), [3, 5]);
        assert_eq!(o.ins_mean.dims(), [3, 2]);
        assert_eq!(o.ins_raw_std.dims(), [3, 2]);
        for row in v2(&o.n0_logits).iter().chain(&v2(&o.ins_raw_std)) {
            assert!(row.iter().all(|v| v.is_finite()));
        }
        assert!(v3(&o.eps).iter().flatten().flatten().all(|v| v.is_finite()));
        Ok(())
    }

    #[test]
    fn absent_slots_never_change_any_output() -> Result<()> {
        let net = SetTransformer::new(config(2), DType::F64, &Device::Cpu)?;
        let (x, m, t) = inputs(DType::F64)?;
        let a = net.forward_eval(&x, &m, &t)?;
        // Overwrite every absent slot with garbage, NaN included.
        let mut xs = v3(&x);
        let ms = v2(&m);
        for (i, row) in xs.iter_mut().enumerate() {
            for (j, comp) in row.iter_mut().enumerate() {
                if ms[i][j] == 0.0 {
                    comp[0] = if j % 2 == 0 { f64::NAN } else { 1e3 };
                    comp[1] = -7.5 * j as f64;
                }
            }
        }
        let flat: Vec<f64> = xs.into_iter().flatten().flatten().collect();
        let x2 = Tensor::from_vec(flat, (3, 5, 2), &Device::Cpu)?;
        let b = net.forward_eval(&x2, &m, &t)?;
        let (ea, eb) = (v3(&a.eps), v3(&b.eps));
        for i in 0..3 {
            for j in 0..5 {
                if ms[i][j] == 1.0 {
                    assert_eq!(ea[i][j], eb[i][j], "eps at present slot ({i}, {j})");
                }
            }
        }
        assert_eq!(v2(&a.n0_logits), v2(&b.n0_logits));
        assert_eq!(v2(&a.ins_mean), v2(&b.ins_mean));
        assert_eq!(v2(&a.ins_raw_std), v2(&b.ins_raw_std));
        Ok(())
    }

    #[test]
    fn permuting_components_permutes_eps_and_keeps_the_pooled_heads() -> Result<()> {
        let net = SetTransformer::new(config(3), DType::F64, &Device::Cpu)?;
        let (x, m, t) = inputs(DType::F64)?;
        let perm = [3usize, 0, 4, 2, 1];
        let idx = Tensor::new(&[3u32, 0, 4, 2, 1], &Device::Cpu)?;
        let (xp, mp) = (x.index_select(&idx, 1)?, m.index_select(&idx, 1)?);
        let a = net.forward_eval(&x, &m, &t)?;
        let b = net.forward_eval(&xp, &mp, &t)?;
        let (ea, eb, ms) = (v3(&a.eps), v3(&b.eps), v2(&m));
        for i in 0..3 {
            for (jp, &j) in perm.iter().enumerate() {
                if ms[i][j] == 1.0 {
                    for c in 0..2 {
                        assert!((ea[i][j][c] - eb[i][jp][c]).abs() < 1e-10);
                    }
                }
            }
        }
        for (ra, rb) in v2(&a.n0_logits).iter().zip(&v2(&b.n0_logits)) {
            for (u, v) in ra.iter().zip(rb) {
                assert!((u - v).abs() < 1e-10);
            }
        }
        Ok(())
    }

    #[test]
    fn the_count_changes_the_classifier() -> Result<()> {
        let net = SetTransformer::new(config(4), DType::F64, &Device::Cpu)?;
        let (x, _, t) = inputs(DType::F64)?;
        let two = Tensor::new(&[[1.0f64, 1.0, 0.0, 0.0, 0.0]; 3], &Device::Cpu)?;
        let three = Tensor::new(&[[1.0f64, 1.0, 1.0, 0.0, 0.0]; 3], &Device::Cpu)?;
        let a = v2(&net.forward_eval(&x, &two, &t)?.n0_logits);
        let b = v2(&net.forward_eval(&x, &three, &t)?.n0_logits);
        assert!(a[0].iter().zip(&b[0]).any(|(u, v)| (u - v).abs() > 1e-6));
        Ok(())
    }

    #[test]
    fn gradients_reach_every_variable_and_weights_round_trip() -> Result<()> {
        let net = SetTransformer::new(config(5), DType::F32, &Device::Cpu)?;
        let (x, m, t) = inputs(DType::F32)?;
        let o = net.forward(&x, &m, &t)?;
        let loss = (((o.eps.sqr()?.sum_all()? + o.n0_logits.sqr()?.sum_all()?)?
            + o.ins_mean.sqr()?.sum_all()?)?
            + o.ins_raw_std.sqr()?.sum_all()?)?;
        let grads = loss.backward()?;
        for (name, v) in net.vars() {
            let g = grads
                .get(v.as_tensor())
                .unwrap_or_else(|| panic!("no gradient for {name}"));
            let s = g.abs()?.sum_all()?.to_scalar::<f32>()?;
            assert!(s > 0.0, "zero gradient for {name}");
            // The query and key thirds of each attention projection must train too (a softmax
            // without a backward op leaves only the value third with a gradient).
            if name.ends_with("qkv.weight") {
                let w = net.config().width;
                let dim = g.dims().iter().position(|&n| n == 3 * w).expect("qkv dim");
                for (part, what) in [(0, "query"), (1, "key")] {
                    let gp = g
                        .narrow(dim, part * w, w)?
                        .abs()?
                        .sum_all()?
                        .to_scalar::<f32>()?;
                    assert!(gp > 0.0, "zero gradient for the {what} part of {name}");
                }
            }
        }
        let mut other = SetTransformer::new(config(6), DType::F32, &Device::Cpu)?;
        other.load_weights(&net.weights())?;
        let (a, b) = (
            net.forward_eval(&x, &m, &t)?,
            other.forward_eval(&x, &m, &t)?,
        );
        assert_eq!(v3(&a.eps), v3(&b.eps));
        let missing: Vec<(String, Tensor)> = net.weights().into_iter().skip(1).collect();
        assert!(other.load_weights(&missing).is_err());
        Ok(())
    }

    #[test]
    fn bad_configurations_are_errors() {
        let c = SetNetConfig {
            heads: 3,
            ..config(0)
        };
        assert!(SetTransformer::new(c, DType::F32, &Device::Cpu).is_err());
    }
}

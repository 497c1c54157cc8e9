//! An E(n)-equivariant graph network (EGNN; Satorras, Hoogeboom and Welling 2021) as a set
//! network, in the form EDM and the trans-dimensional jump-diffusion model use for QM9.
//!
//! A component of the padded set `x` `[B, N, d]` is split into its positions (the indices
//! `positions`, `0..3` for `of = vec(position = 3, features = 6), com = position`) and its
//! features `h` (every other index). With `temb` the time and count features (a sinusoidal
//! embedding of `t` and `n/N` through a two-layer MLP, as in the set transformer), `depth`
//! layers of width `width` update both over the fully connected graph of the present
//! components (pairs i ≠ j, both present):
//!
//! ```text
//! m_ij = φ_e(h_i, h_j, ‖x_i − x_j‖², ‖x⁰_i − x⁰_j‖², temb) · sigmoid(φ_a(m_ij))   (attention gate)
//! x_i ← x_i + Σ_j (x_i − x_j) / (‖x_i − x_j‖ + 1) · (15/depth)·tanh(φ_x(m_ij)) / (N − 1)
//! h_i ← h_i + φ_h(h_i, Σ_j m_ij / (N − 1))
//! ```
//!
//! with x⁰ the input positions. Sums over neighbours are divided by a constant, N − 1 (N =
//! `max`, the most neighbours a component can have): EDM normalises by a constant too (its
//! `normalization_factor`, 1 for QM9), but with 1 the features grow by ~×10 per layer at
//! initialisation (|h| ~ 5000 after 9 layers of width 256 on 29 atoms, and ε̂ ~ 200), while
//! N − 1 keeps them O(10) and the heads O(1); a constant, unlike the neighbour count, keeps the
//! set's size visible to the messages. The coordinate weight is bounded by `(15/depth)·tanh`
//! (EDM's `tanh = True`, `coords_range = 15` split over the layers).
//!
//! The first layer of φ_e is linear in its inputs, so it is computed per node (`W_a h_i`,
//! `W_b h_j`) and per pair only for the two distances, then added with broadcasting: no
//! `[B, N, N, 2W + …]` tensor is built.
//!
//! Heads (see [`SetOutput`]):
//! - `eps` positions: `x_out − x_in`, projected to zero mean over the present components
//!   (E(n)-equivariant, translation invariant); features: a linear head on the final `h`;
//!   absent slots are 0;
//! - `n0_logits`: an MLP on the masked mean of `h` concatenated with `temb` (invariant);
//! - `ins_mean`: positions `Σ_j w_j (x_out_j − x̄_out)` with per-component scalar weights
//!   `w_j = φ_w(h_j)` (a position in the set's centred frame, rotation equivariant and
//!   translation invariant); features from the pooled MLP;
//! - `ins_raw_std`: from the pooled MLP (invariant); one value shared by every position
//!   entry (an isotropic Gaussian, so the insertion density is rotation invariant).
//!
//! Masks are respected everywhere: absent slots are zeroed before anything else (so NaN
//! padding cannot leak through `0·NaN`), every message and every pooled sum is restricted to
//! present components. Permutation-equivariant in the components.

use std::ops::Range;

use super::embed::{Embedding, TimeEmbedding};
use super::linear::{Activation, Linear};
use super::set::{SetNet, SetNetConfig, SetOutput};
use super::{NetError, Result};
use candle_core::{DType, Device, Tensor, Var, D};

/// Added to the insertion head's raw std so that softplus(raw) starts near 1.
const RAW_STD_OFFSET: f64 = 0.55;

/// Bound of the per-pair coordinate weights of all layers together (EDM's `coords_range`).
const COORDS_RANGE: f64 = 15.0;

/// Added to `‖x_i − x_j‖` in the coordinate update (EDM's `norm_constant`).
const NORM_CONSTANT: f64 = 1.0;

/// Inside the square root of a pair distance, so that its gradient at 0 (the diagonal) is
/// finite.
const DIST_EPS: f64 = 1e-8;

struct Layer {
    /// `h ↦ [W_a h, W_b h]` (the node parts of φ_e's first layer), `W → 2W`.
    node: Linear,
    /// `(d², d⁰²) ↦` the pair part of φ_e's first layer (with its bias), `2 → W`.
    dist: Linear,
    /// `temb ↦` the time part of φ_e's first layer, `W → W`.
    time: Linear,
    /// φ_e's second layer, `W → W`, activated.
    msg: Linear,
    /// The attention gate `W → 1`.
    att: Linear,
    /// φ_x: `W → W` activated, then `W → 1`.
    coord_hidden: Linear,
    coord_out: Linear,
    /// φ_h: `2W → W` activated, then `W → W`.
    update_hidden: Linear,
    update_out: Linear,
}

/// The EGNN; see the module docs.
pub struct Egnn {
    config: SetNetConfig,
    positions: Range<usize>,
    embedding: Embedding,
    time_in: Linear,
    time_out: Linear,
    input: Linear,
    layers: Vec<Layer>,
    /// Feature ε (absent when every entry is a position).
    eps_head: Option<Linear>,
    n0_hidden: Linear,
    n0_out: Linear,
    ins_hidden: Linear,
    /// `W → 1 + 2F`: position raw std, feature means, feature raw stds.
    ins_out: Linear,
    /// φ_w: per-component weights of the inserted position, `W → 1`.
    ins_weight: Linear,
    device: Device,
    dtype: DType,
}

fn validate(config: &SetNetConfig, positions: &Range<usize>) -> Result<()> {
    let bad = |m: String| Err(NetError::Config(m));
    if config.component == 0 || config.max == 0 || config.width == 0 || config.depth == 0 {
        return bad("component size, max, width and depth must all be at least 1".into());
    }
    if positions.start >= positions.end || positions.end > config.component {
        return bad(format!(
            "the EGNN's positions {}..{} must be a non-empty range inside the component's {} entries",
            positions.start, positions.end, config.component
        ));
    }
    if config.embed_dim < 2 || !config.embed_dim.is_multiple_of(2) {
        return bad(format!(
            "the time embedding size must be even and at least 2, not {}",
            config.embed_dim
        ));
    }
    Ok(())
}

impl Egnn {
    /// Builds the network over components whose entries `positions` are coordinates (the rest
    /// are features; `config.heads` is not used). Layer k's weights come from
    /// `rng::stream(seed, Init, 0, k)` in the order the fields are declared.
    pub fn new(
        config: SetNetConfig,
        positions: Range<usize>,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        validate(&config, &positions)?;
        let (w, d, n) = (config.width, config.component, config.max);
        let f = d - positions.len();
        let act = Some(config.activation);
        let mut k = 0u64;
        let mut lin = |fan_in: usize, fan_out: usize, scale: f64, act: Option<Activation>| {
            k += 1;
            Linear::init(config.seed, k, fan_in, fan_out, scale, act, dtype, device)
        };
        let e = config.embed_dim;
        let time_in = lin(e + 1, w, 1.0, act)?;
        let time_out = lin(w, w, 1.0, None)?;
        let input = lin(f + w, w, 1.0, None)?;
        let mut layers = Vec::with_capacity(config.depth);
        for _ in 0..config.depth {
            layers.push(Layer {
                node: lin(w, 2 * w, 1.0, None)?,
                dist: lin(2, w, 1.0, None)?,
                time: lin(w, w, 1.0, None)?,
                msg: lin(w, w, 1.0, act)?,
                att: lin(w, 1, 1.0, None)?,
                coord_hidden: lin(w, w, 1.0, act)?,
                // Small: the coordinates barely move at initialisation (EDM: gain 0.001).
                coord_out: lin(w, 1, 0.01, None)?,
                update_hidden: lin(2 * w, w, 1.0, act)?,
                update_out: lin(w, w, 0.5, None)?,
            });
        }
        let eps_head = if f > 0 {
            Some(lin(w, f, 0.1, None)?)
        } else {
            None
        };
        let n0_hidden = lin(2 * w, w, 1.0, act)?;
        let n0_out = lin(w, n, 0.1, None)?;
        let ins_hidden = lin(2 * w, w, 1.0, act)?;
        let ins_out = lin(w, 1 + 2 * f, 0.1, None)?;
        let ins_weight = lin(w, 1, 0.1, None)?;
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
        Ok(Egnn {
            config,
            positions,
            embedding,
            time_in,
            time_out,
            input,
            layers,
            eps_head,
            n0_hidden,
            n0_out,
            ins_hidden,
            ins_out,
            ins_weight,
            device: device.clone(),
            dtype,
        })
    }

    pub fn config(&self) -> &SetNetConfig {
        &self.config
    }

    /// The component entries that are coordinates.
    pub fn positions(&self) -> Range<usize> {
        self.positions.clone()
    }

    /// Training pass: `x` `[B, N, d]`, `mask` `[B, N]` (1/0), `t` `[B]` network time.
    pub fn forward(&self, x: &Tensor, mask: &Tensor, t: &Tensor) -> Result<SetOutput> {
        self.run(x, mask, t, true)
    }

    /// Inference pass (no graph to the parameters).
    pub fn forward_eval(&self, x: &Tensor, mask: &Tensor, t: &Tensor) -> Result<SetOutput> {
        self.run(x, mask, t, false)
    }

    /// The feature entries of `x` `[B, N, d]` (every index outside the positions), `[B, N, F]`;
    /// `None` when there are none.
    fn features_of(&self, x: &Tensor) -> Result<Option<Tensor>> {
        let d = self.config.component;
        let Range { start, end } = self.positions;
        let mut parts = Vec::new();
        if start > 0 {
            parts.push(x.narrow(2, 0, start)?);
        }
        if end < d {
            parts.push(x.narrow(2, end, d - end)?);
        }
        Ok(match parts.len() {
            0 => None,
            1 => parts.pop(),
            _ => Some(Tensor::cat(&parts, 2)?),
        })
    }

    /// A component `[B, N, d]` from its positions `[B, N, P]` and features `[B, N, F]`.
    fn assemble(&self, pos: &Tensor, feat: Option<&Tensor>) -> Result<Tensor> {
        let Range { start, .. } = self.positions;
        let Some(feat) = feat else {
            return Ok(pos.clone());
        };
        let f = feat.dim(D::Minus1)?;
        let last = pos.rank() - 1;
        let mut parts = Vec::new();
        if start > 0 {
            parts.push(feat.narrow(last, 0, start)?);
        }
        parts.push(pos.clone());
        if start < f {
            parts.push(feat.narrow(last, start, f - start)?);
        }
        Ok(Tensor::cat(&parts, last)?)
    }

    fn run(&self, x: &Tensor, mask: &Tensor, t: &Tensor, train: bool) -> Result<SetOutput> {
        let (w, d, n) = (self.config.width, self.config.component, self.config.max);
        let p = self.positions.len();
        let f = d - p;
        let (b, nx, dx) = x.dims3()?;
        if nx != n || dx != d || mask.dims() != [b, n] || t.dims() != [b] {
            return Err(NetError::Shape(format!(
                "the EGNN takes x [B, {n}, {d}], mask [B, {n}], t [B]; got x {:?}, mask {:?}, t {:?}",
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
        // `l` on the last axis of any tensor (flattened to 2-D and back).
        let lin_nd = |l: &Linear, h: &Tensor| -> Result<Tensor> {
            let dims = h.dims().to_vec();
            let rows: usize = dims[..dims.len() - 1].iter().product();
            let y = lin(l, &h.reshape((rows, dims[dims.len() - 1]))?)?;
            let mut out = dims;
            let last = out.len() - 1;
            out[last] = y.dim(1)?;
            Ok(y.reshape(out)?)
        };
        let dt = self.dtype;
        let x = x.to_dtype(dt)?;
        // 0/1 presence, exactly (any mask > 0.5 counts as present).
        let present = mask.to_dtype(dt)?.gt(0.5)?;
        let mask = present.to_dtype(dt)?;
        // Absent slots are zeroed first, so even non-finite padding cannot leak through a
        // multiplication by 0 (0·NaN = NaN); after this every value is finite and the masks
        // may be applied by multiplication.
        let x = present
            .unsqueeze(2)?
            .broadcast_as((b, n, d))?
            .where_cond(&x, &x.zeros_like()?)?;
        let m3 = mask.unsqueeze(2)?; // [B, N, 1]
        let count = mask.sum_keepdim(1)?; // [B, 1]
        let count1 = count.clamp(1.0, f64::MAX)?;
        // Pairs i ≠ j, both present: [B, N, N, 1].
        let eye = Tensor::eye(n, dt, &self.device)?;
        let pair = mask
            .unsqueeze(2)?
            .broadcast_mul(&mask.unsqueeze(1)?)?
            .broadcast_mul(&eye.affine(-1.0, 1.0)?.unsqueeze(0)?)?
            .unsqueeze(3)?;
        // Time and count features [B, W].
        let te = self.embedding.forward(&t.to_dtype(dt)?, train)?;
        let temb = lin(
            &self.time_out,
            &lin(
                &self.time_in,
                &Tensor::cat(&[&te, &(&count / n as f64)?], 1)?,
            )?,
        )?;
        let pos_in = x.narrow(2, self.positions.start, p)?.contiguous()?;
        let feat_in = self.features_of(&x)?;
        let temb_n = temb.unsqueeze(1)?.broadcast_as((b, n, w))?;
        let h_in = match &feat_in {
            Some(fi) => Tensor::cat(&[fi, &temb_n], 2)?,
            None => temb_n.contiguous()?,
        };
        let mut h = lin_nd(&self.input, &h_in)?.broadcast_mul(&m3)?;
        // ‖x_i − x_j‖² [B, N, N, 1] (from the differences: no cancellation, never negative).
        let sq_dist = |pos: &Tensor| -> Result<Tensor> {
            let diff = pos.unsqueeze(2)?.broadcast_sub(&pos.unsqueeze(1)?)?; // [B, N, N, P]
            Ok(diff.sqr()?.sum_keepdim(3)?)
        };
        let d2_in = sq_dist(&pos_in)?;
        let mut pos = pos_in.clone();
        let act = self.config.activation;
        let range = COORDS_RANGE / self.layers.len() as f64;
        // Sums over neighbours are divided by the most neighbours a component can have.
        let norm_factor = (n.max(2) - 1) as f64;
        for l in &self.layers {
            let d2 = sq_dist(&pos)?;
            // φ_e's first layer, by parts: nodes i and j, the pair distances, the time.
            let nodes = lin_nd(&l.node, &h)?;
            // Node i's part [B, N, W] takes the time part (not a pair-sized add); j's is next.
            let tm = lin(&l.time, &temb)?.reshape((b, 1, w))?;
            let hi = nodes.narrow(2, 0, w)?.broadcast_add(&tm)?.unsqueeze(2)?; // [B, N, 1, W]
            let hj = nodes.narrow(2, w, w)?.unsqueeze(1)?; // [B, 1, N, W]
            let dist = lin_nd(&l.dist, &Tensor::cat(&[&d2, &d2_in], 3)?)?; // [B, N, N, W]
            let z = dist.broadcast_add(&hi)?.broadcast_add(&hj)?;
            let m = lin_nd(&l.msg, &act.apply(&z)?)?;
            // Attention gate σ(φ_a(m)) = (1 + tanh(φ_a(m)/2))/2, then the pair mask.
            let gate = lin_nd(&l.att, &m)?
                .affine(0.5, 0.0)?
                .tanh()?
                .affine(0.5, 0.5)?;
            // [B, N, N, W]
            let m = m.broadcast_mul(&(gate * &pair)?)?;
            // Coordinates.
            let cw = (lin_nd(&l.coord_out, &lin_nd(&l.coord_hidden, &m)?)?.tanh()? * range)?;
            let norm = ((d2 + DIST_EPS)?.sqrt()? + NORM_CONSTANT)?;
            // c_ij [B, N, N]. Σ_j (x_i − x_j) c_ij = x_i Σ_j c_ij − Σ_j c_ij x_j: a row sum and
            // a batched product instead of a [B, N, N, P] tensor summed over its middle axis.
            let c = (cw * &pair)?.broadcast_div(&norm)?.squeeze(3)?;
            let shift = (pos.broadcast_mul(&c.sum_keepdim(2)?)? - c.matmul(&pos)?)?;
            let shift = (shift / norm_factor)?;
            pos = (pos + shift)?.broadcast_mul(&m3)?;
            // Features.
            // Σ_j m_ij as a batched product with ones (faster in candle than a sum over the
            // middle axis).
            let agg = Tensor::ones((b * n, 1, n), dt, &self.device)?
                .matmul(&m.reshape((b * n, n, w))?)?
                .reshape((b, n, w))?;
            let agg = (agg / norm_factor)?; // [B, N, W]
            let u = lin_nd(
                &l.update_out,
                &lin_nd(&l.update_hidden, &Tensor::cat(&[&h, &agg], 2)?)?,
            )?;
            h = (h + u)?.broadcast_mul(&m3)?;
        }
        // Centre of the present components' positions [B, 1, P].
        let centre = |v: &Tensor| -> Result<Tensor> {
            let mean = v.sum_keepdim(1)?.broadcast_div(&count1.unsqueeze(2)?)?;
            Ok(v.broadcast_sub(&mean)?.broadcast_mul(&m3)?)
        };
        let eps_pos = centre(&(&pos - &pos_in)?)?;
        let eps_feat = match &self.eps_head {
            Some(head) => Some(lin_nd(head, &h)?.broadcast_mul(&m3)?),
            None => None,
        };
        let eps = self.assemble(&eps_pos, eps_feat.as_ref())?;
        // Pooled heads: masked mean of h (absent rows are 0) with the time features.
        let pooled = h.sum(1)?.broadcast_div(&count1)?;
        let feats = Tensor::cat(&[&pooled, &temb], 1)?;
        let n0_logits = lin(&self.n0_out, &lin(&self.n0_hidden, &feats)?)?;
        let ins = lin(&self.ins_out, &lin(&self.ins_hidden, &feats)?)?; // [B, 1 + 2F]
        let wj = lin_nd(&self.ins_weight, &h)?.broadcast_mul(&m3)?; // [B, N, 1]
        let ins_pos = centre(&pos)?.broadcast_mul(&wj)?.sum(1)?; // [B, P]
        let pos_std = ins.narrow(1, 0, 1)?.broadcast_as((b, p))?.contiguous()?;
        let (ins_mean, ins_raw_std) = if f > 0 {
            (
                self.assemble(&ins_pos, Some(&ins.narrow(1, 1, f)?))?,
                self.assemble(&pos_std, Some(&ins.narrow(1, 1 + f, f)?))?,
            )
        } else {
            (ins_pos, pos_std)
        };
        let ins_raw_std = (ins_raw_std + RAW_STD_OFFSET)?;
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
        for (i, l) in self.layers.iter().enumerate() {
            out.push((format!("layers.{i}.edge.node"), &l.node));
            out.push((format!("layers.{i}.edge.dist"), &l.dist));
            out.push((format!("layers.{i}.edge.time"), &l.time));
            out.push((format!("layers.{i}.edge.msg"), &l.msg));
            out.push((format!("layers.{i}.att"), &l.att));
            out.push((format!("layers.{i}.coord.0"), &l.coord_hidden));
            out.push((format!("layers.{i}.coord.1"), &l.coord_out));
            out.push((format!("layers.{i}.node.0"), &l.update_hidden));
            out.push((format!("layers.{i}.node.1"), &l.update_out));
        }
        if let Some(head) = &self.eps_head {
            out.push(("eps_head".into(), head));
        }
        out.push(("n0.0".into(), &self.n0_hidden));
        out.push(("n0.1".into(), &self.n0_out));
        out.push(("insert.0".into(), &self.ins_hidden));
        out.push(("insert.1".into(), &self.ins_out));
        out.push(("insert.weight".into(), &self.ins_weight));
        out
    }

    /// Trainable parameters, named (`layers.0.edge.msg.weight`, …).
    pub fn vars(&self) -> Vec<(String, Var)> {
        let mut out = Vec::new();
        for (name, l) in self.named_linears() {
            out.extend(l.vars(&name));
        }
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
            "width/depth",
        )?;
        self.embedding.load_buffers(tensors)
    }

    /// Number of trainable numbers.
    pub fn parameter_count(&self) -> usize {
        self.vars().iter().map(|(_, v)| v.elem_count()).sum()
    }
}

impl SetNet for Egnn {
    fn config(&self) -> &SetNetConfig {
        Egnn::config(self)
    }
    fn forward(&self, x: &Tensor, mask: &Tensor, t: &Tensor) -> Result<SetOutput> {
        Egnn::forward(self, x, mask, t)
    }
    fn forward_eval(&self, x: &Tensor, mask: &Tensor, t: &Tensor) -> Result<SetOutput> {
        Egnn::forward_eval(self, x, mask, t)
    }
    fn vars(&self) -> Vec<(String, Var)> {
        Egnn::vars(self)
    }
    fn weights(&self) -> Vec<(String, Tensor)> {
        Egnn::weights(self)
    }
    fn load_weights(&mut self, tensors: &[(String, Tensor)]) -> Result<()> {
        Egnn::load_weights(self, tensors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: usize = 3;
    const N: usize = 5;
    /// 3 positions and 2 features.
    const DIM: usize = 5;

    fn config(seed: u64) -> SetNetConfig {
        SetNetConfig {
            component: DIM,
            max: N,
            width: 16,
            depth: 2,
            heads: 1,
            embed_dim: 8,
            activation: Activation::Silu,
            seed,
        }
    }

    fn net(seed: u64, positions: Range<usize>, dtype: DType) -> Egnn {
        Egnn::new(config(seed), positions, dtype, &Device::Cpu).unwrap()
    }

    const MASK: [[f64; N]; B] = [
        [1.0, 1.0, 1.0, 0.0, 0.0],
        [1.0, 0.0, 0.0, 0.0, 0.0],
        [0.0, 1.0, 0.0, 1.0, 1.0],
    ];

    fn raw_x() -> Vec<Vec<Vec<f64>>> {
        (0..B)
            .map(|i| {
                (0..N)
                    .map(|j| {
                        (0..DIM)
                            .map(|c| (((i * 31 + j * 7 + c * 3) % 11) as f64 - 5.0) / 4.0)
                            .collect()
                    })
                    .collect()
            })
            .collect()
    }

    fn t3(v: &[Vec<Vec<f64>>], dtype: DType) -> Tensor {
        let flat: Vec<f64> = v.iter().flatten().flatten().copied().collect();
        Tensor::from_vec(flat, (v.len(), N, DIM), &Device::Cpu)
            .unwrap()
            .to_dtype(dtype)
            .unwrap()
    }

    fn mask(dtype: DType) -> Tensor {
        Tensor::new(&MASK, &Device::Cpu)
            .unwrap()
            .to_dtype(dtype)
            .unwrap()
    }

    fn times(dtype: DType) -> Tensor {
        Tensor::new(&[0.1f64, 0.5, 0.9], &Device::Cpu)
            .unwrap()
            .to_dtype(dtype)
            .unwrap()
    }

    fn v3(t: &Tensor) -> Vec<Vec<Vec<f64>>> {
        t.to_dtype(DType::F64).unwrap().to_vec3().unwrap()
    }
    fn v2(t: &Tensor) -> Vec<Vec<f64>> {
        t.to_dtype(DType::F64).unwrap().to_vec2().unwrap()
    }

    /// A rotation (with a reflection when `reflect`) of R³ about a skew axis.
    fn rotation(reflect: bool) -> [[f64; 3]; 3] {
        let (a, b, c) = (0.7f64, -1.3f64, 2.1f64);
        let rz = [
            [a.cos(), -a.sin(), 0.0],
            [a.sin(), a.cos(), 0.0],
            [0.0, 0.0, 1.0],
        ];
        let ry = [
            [b.cos(), 0.0, b.sin()],
            [0.0, 1.0, 0.0],
            [-b.sin(), 0.0, b.cos()],
        ];
        let rx = [
            [1.0, 0.0, 0.0],
            [0.0, c.cos(), -c.sin()],
            [0.0, c.sin(), c.cos()],
        ];
        let mul = |p: [[f64; 3]; 3], q: [[f64; 3]; 3]| {
            let mut r = [[0.0; 3]; 3];
            for i in 0..3 {
                for j in 0..3 {
                    r[i][j] = (0..3).map(|k| p[i][k] * q[k][j]).sum();
                }
            }
            r
        };
        let mut r = mul(rz, mul(ry, rx));
        if reflect {
            for row in &mut r {
                row[2] = -row[2];
            }
        }
        r
    }

    fn rotate(r: &[[f64; 3]; 3], v: &[f64]) -> Vec<f64> {
        (0..3)
            .map(|i| (0..3).map(|k| r[i][k] * v[k]).sum())
            .collect()
    }

    /// `x` with every component's positions (entries `pos`) rotated by `r` and shifted by `s`.
    fn transform(
        x: &[Vec<Vec<f64>>],
        pos: &Range<usize>,
        r: &[[f64; 3]; 3],
        s: [f64; 3],
    ) -> Vec<Vec<Vec<f64>>> {
        x.iter()
            .map(|row| {
                row.iter()
                    .map(|comp| {
                        let mut c = comp.clone();
                        let p = rotate(r, &comp[pos.clone()]);
                        for k in 0..3 {
                            c[pos.start + k] = p[k] + s[k];
                        }
                        c
                    })
                    .collect()
            })
            .collect()
    }

    fn close(a: f64, b: f64, tol: f64, what: &str) {
        assert!(
            (a - b).abs() <= tol * (1.0 + a.abs().max(b.abs())),
            "{what}: {a} vs {b}"
        );
    }

    /// E(3) equivariance for the positions at `pos` in `dtype` with tolerance `tol`.
    fn check_equivariance(pos: Range<usize>, dtype: DType, tol: f64) {
        let net = net(11, pos.clone(), dtype);
        let x = raw_x();
        let (m, t) = (mask(dtype), times(dtype));
        let a = net.forward_eval(&t3(&x, dtype), &m, &t).unwrap();
        for reflect in [false, true] {
            let r = rotation(reflect);
            let xr = transform(&x, &pos, &r, [3.0, -2.5, 7.25]);
            let b = net.forward_eval(&t3(&xr, dtype), &m, &t).unwrap();
            let (ea, eb) = (v3(&a.eps), v3(&b.eps));
            for i in 0..B {
                for j in 0..N {
                    if MASK[i][j] == 0.0 {
                        assert!(eb[i][j].iter().all(|v| *v == 0.0), "absent eps ({i}, {j})");
                        continue;
                    }
                    // Positions rotate (and do not move with the translation) ...
                    let want = rotate(&r, &ea[i][j][pos.clone()]);
                    for k in 0..3 {
                        close(eb[i][j][pos.start + k], want[k], tol, "position eps");
                    }
                    // ... features are invariant.
                    for c in (0..DIM).filter(|c| !pos.contains(c)) {
                        close(eb[i][j][c], ea[i][j][c], tol, "feature eps");
                    }
                }
                // The inserted position rotates; its features and every std are invariant.
                let (ma, mb) = (v2(&a.ins_mean), v2(&b.ins_mean));
                let want = rotate(&r, &ma[i][pos.clone()]);
                for k in 0..3 {
                    close(mb[i][pos.start + k], want[k], tol, "insertion position");
                }
                for c in (0..DIM).filter(|c| !pos.contains(c)) {
                    close(mb[i][c], ma[i][c], tol, "insertion feature mean");
                }
                let (sa, sb) = (v2(&a.ins_raw_std), v2(&b.ins_raw_std));
                for c in 0..DIM {
                    close(sb[i][c], sa[i][c], tol, "insertion std");
                }
                let (la, lb) = (v2(&a.n0_logits), v2(&b.n0_logits));
                for c in 0..N {
                    close(lb[i][c], la[i][c], tol, "n0 logits");
                }
            }
        }
        // The position ε has zero mean over the present components.
        for (i, row) in v3(&a.eps).iter().enumerate() {
            for k in pos.clone() {
                let s: f64 = (0..N)
                    .filter(|&j| MASK[i][j] == 1.0)
                    .map(|j| row[j][k])
                    .sum();
                assert!(s.abs() < 10.0 * tol, "position eps mean {s} in row {i}");
            }
        }
    }

    #[test]
    fn positions_are_e3_equivariant_and_the_rest_invariant_f64() {
        check_equivariance(0..3, DType::F64, 1e-10);
        check_equivariance(2..5, DType::F64, 1e-10);
    }

    #[test]
    fn positions_are_e3_equivariant_and_the_rest_invariant_f32() {
        // The fused f32 kernel: rounding of O(1) values over a few layers.
        check_equivariance(0..3, DType::F32, 1e-5);
    }

    #[test]
    fn shapes_and_finite_heads() -> Result<()> {
        let net = net(1, 0..3, DType::F32);
        let o = net.forward(
            &t3(&raw_x(), DType::F32),
            &mask(DType::F32),
            &times(DType::F32),
        )?;
        assert_eq!(o.eps.dims(), [B, N, DIM]);
        assert_eq!(o.n0_logits.dims(), [B, N]);
        assert_eq!(o.ins_mean.dims(), [B, DIM]);
        assert_eq!(o.ins_raw_std.dims(), [B, DIM]);
        for row in v2(&o.n0_logits).iter().chain(&v2(&o.ins_raw_std)) {
            assert!(row.iter().all(|v| v.is_finite()));
        }
        // One shared std for the three position entries (isotropic insertion).
        for row in v2(&o.ins_raw_std) {
            assert_eq!(row[0], row[1]);
            assert_eq!(row[1], row[2]);
        }
        assert!(v3(&o.eps).iter().flatten().flatten().all(|v| v.is_finite()));
        Ok(())
    }

    #[test]
    fn only_positions_is_fine() -> Result<()> {
        let net = net(2, 0..DIM, DType::F64);
        let o = net.forward(
            &t3(&raw_x(), DType::F64),
            &mask(DType::F64),
            &times(DType::F64),
        )?;
        assert_eq!(o.eps.dims(), [B, N, DIM]);
        assert_eq!(o.ins_mean.dims(), [B, DIM]);
        Ok(())
    }

    #[test]
    fn absent_slots_never_change_any_output_nan_included() -> Result<()> {
        for dtype in [DType::F64, DType::F32] {
            let net = net(2, 1..4, dtype);
            let (m, t) = (mask(dtype), times(dtype));
            let x = raw_x();
            let a = net.forward_eval(&t3(&x, dtype), &m, &t)?;
            let mut xs = x.clone();
            for (i, row) in xs.iter_mut().enumerate() {
                for (j, comp) in row.iter_mut().enumerate() {
                    if MASK[i][j] == 0.0 {
                        for (c, v) in comp.iter_mut().enumerate() {
                            *v = match (j + c) % 3 {
                                0 => f64::NAN,
                                1 => f64::INFINITY,
                                _ => -1e3 * c as f64,
                            };
                        }
                    }
                }
            }
            let b = net.forward_eval(&t3(&xs, dtype), &m, &t)?;
            assert_eq!(v3(&a.eps), v3(&b.eps), "eps ({dtype:?})");
            assert_eq!(v2(&a.n0_logits), v2(&b.n0_logits));
            assert_eq!(v2(&a.ins_mean), v2(&b.ins_mean));
            assert_eq!(v2(&a.ins_raw_std), v2(&b.ins_raw_std));
            assert!(v3(&b.eps).iter().flatten().flatten().all(|v| v.is_finite()));
        }
        Ok(())
    }

    #[test]
    fn permuting_components_permutes_eps_and_keeps_the_pooled_heads() -> Result<()> {
        let net = net(3, 0..3, DType::F64);
        let (x, m, t) = (
            t3(&raw_x(), DType::F64),
            mask(DType::F64),
            times(DType::F64),
        );
        let perm = [3usize, 0, 4, 2, 1];
        let idx = Tensor::new(&[3u32, 0, 4, 2, 1], &Device::Cpu)?;
        let (xp, mp) = (x.index_select(&idx, 1)?, m.index_select(&idx, 1)?);
        let a = net.forward_eval(&x, &m, &t)?;
        let b = net.forward_eval(&xp, &mp, &t)?;
        let (ea, eb) = (v3(&a.eps), v3(&b.eps));
        for i in 0..B {
            for (jp, &j) in perm.iter().enumerate() {
                for c in 0..DIM {
                    close(ea[i][j][c], eb[i][jp][c], 1e-10, "permuted eps");
                }
            }
        }
        for (ta, tb) in [
            (&a.n0_logits, &b.n0_logits),
            (&a.ins_mean, &b.ins_mean),
            (&a.ins_raw_std, &b.ins_raw_std),
        ] {
            for (ra, rb) in v2(ta).iter().zip(&v2(tb)) {
                for (u, v) in ra.iter().zip(rb) {
                    close(*u, *v, 1e-10, "pooled head");
                }
            }
        }
        Ok(())
    }

    #[test]
    fn the_count_changes_the_classifier() -> Result<()> {
        let net = net(4, 0..3, DType::F64);
        let (x, t) = (t3(&raw_x(), DType::F64), times(DType::F64));
        let two = Tensor::new(&[[1.0f64, 1.0, 0.0, 0.0, 0.0]; 3], &Device::Cpu)?;
        let three = Tensor::new(&[[1.0f64, 1.0, 1.0, 0.0, 0.0]; 3], &Device::Cpu)?;
        let a = v2(&net.forward_eval(&x, &two, &t)?.n0_logits);
        let b = v2(&net.forward_eval(&x, &three, &t)?.n0_logits);
        assert!(a[0].iter().zip(&b[0]).any(|(u, v)| (u - v).abs() > 1e-6));
        Ok(())
    }

    #[test]
    fn gradients_reach_every_variable_and_weights_round_trip() -> Result<()> {
        let net = net(5, 0..3, DType::F32);
        let (x, m, t) = (
            t3(&raw_x(), DType::F32),
            mask(DType::F32),
            times(DType::F32),
        );
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
            assert!(s > 0.0 && s.is_finite(), "gradient {s} for {name}");
        }
        assert_eq!(
            net.parameter_count(),
            net.vars()
                .iter()
                .map(|(_, v)| v.elem_count())
                .sum::<usize>()
        );
        let mut other = Egnn::new(config(6), 0..3, DType::F32, &Device::Cpu)?;
        let before = other.forward_eval(&x, &m, &t)?;
        assert_ne!(v3(&before.eps), v3(&net.forward_eval(&x, &m, &t)?.eps));
        other.load_weights(&net.weights())?;
        let (a, b) = (
            net.forward_eval(&x, &m, &t)?,
            other.forward_eval(&x, &m, &t)?,
        );
        assert_eq!(v3(&a.eps), v3(&b.eps));
        assert_eq!(v2(&a.n0_logits), v2(&b.n0_logits));
        assert_eq!(v2(&a.ins_mean), v2(&b.ins_mean));
        assert_eq!(v2(&a.ins_raw_std), v2(&b.ins_raw_std));
        let missing: Vec<(String, Tensor)> = net.weights().into_iter().skip(1).collect();
        assert!(other.load_weights(&missing).is_err());
        // A set transformer's checkpoint does not load into an EGNN.
        let st = super::super::SetTransformer::new(
            SetNetConfig {
                heads: 4,
                ..config(7)
            },
            DType::F32,
            &Device::Cpu,
        )?;
        assert!(other.load_weights(&st.weights()).is_err());
        Ok(())
    }

    #[test]
    fn bad_configurations_are_errors() {
        for pos in [0..0, 3..6, Range { start: 4, end: 2 }] {
            assert!(Egnn::new(config(0), pos, DType::F32, &Device::Cpu).is_err());
        }
        let c = SetNetConfig {
            embed_dim: 3,
            ..config(0)
        };
        assert!(Egnn::new(c, 0..3, DType::F32, &Device::Cpu).is_err());
        // `heads` is not used: any value is fine.
        let c = SetNetConfig {
            heads: 7,
            ..config(0)
        };
        assert!(Egnn::new(c, 0..3, DType::F32, &Device::Cpu).is_ok());
    }
}

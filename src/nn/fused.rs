//! Fused CPU kernels for layer norm and the last-axis softmax, with their backward passes.
//!
//! candle builds both from 5–9 elementwise and reduction ops each, and their backward from
//! twice as many; on the set transformer's small tensors ([B·N, 64] rows, [B, H, N, N] scores)
//! the per-op overhead dominates. candle-nn's own fused `softmax_last_dim` and `layer_norm`
//! record no backward op, so a gradient would silently stop there. These kernels are one op
//! each way: the forward keeps what the backward needs (x̂ and 1/σ per row for layer norm; the
//! output itself for softmax), and the backward is one pass over the rows.
//!
//! Every function here falls back to the plain candle composite on any other device or dtype
//! (CUDA, f64 reference checks), so the two paths compute the same maths; the tests compare
//! them, values and gradients.

use std::sync::Mutex;

use candle_core::{CpuStorage, CustomOp1, CustomOp3, DType, Layout, Shape, Tensor, D};

/// `(x − mean) / √(var + eps) · gain + bias` over the last axis of `x` (`gain`, `bias` of the
/// last axis' size). With `train` the op records its backward (to `x`, `gain` and `bias`).
pub fn layer_norm(
    x: &Tensor,
    gain: &Tensor,
    bias: &Tensor,
    eps: f64,
    train: bool,
) -> candle_core::Result<Tensor> {
    if !(x.device().is_cpu() && x.dtype() == DType::F32 && gain.dtype() == DType::F32) {
        return layer_norm_plain(x, gain, bias, eps);
    }
    let dims = x.dims().to_vec();
    let w = *dims.last().unwrap_or(&1);
    let rows = x.elem_count() / w.max(1);
    let x2 = x.contiguous()?.reshape((rows, w))?;
    let op = FusedLayerNorm {
        eps: eps as f32,
        saved: Mutex::new(None),
    };
    let y = if train {
        x2.apply_op3(gain, bias, op)?
    } else {
        x2.apply_op3_no_bwd(gain, bias, &op)?
    };
    y.reshape(dims)
}

/// The composite layer norm (any device and dtype).
pub fn layer_norm_plain(
    x: &Tensor,
    gain: &Tensor,
    bias: &Tensor,
    eps: f64,
) -> candle_core::Result<Tensor> {
    let mean = x.mean_keepdim(D::Minus1)?;
    let c = x.broadcast_sub(&mean)?;
    let var = c.sqr()?.mean_keepdim(D::Minus1)?;
    let y = c.broadcast_div(&(var + eps)?.sqrt()?)?;
    y.broadcast_mul(gain)?.broadcast_add(bias)
}

/// Softmax over the last axis. With `train` the op records its backward.
pub fn softmax_last_dim(x: &Tensor, train: bool) -> candle_core::Result<Tensor> {
    if !(x.device().is_cpu() && x.dtype() == DType::F32) {
        return candle_nn::ops::softmax(x, D::Minus1);
    }
    let x = x.contiguous()?;
    if train {
        x.apply_op1(FusedSoftmax)
    } else {
        x.apply_op1_no_bwd(&FusedSoftmax)
    }
}

/// The `[B·O, taps·C]` patch rows of `x` `[B, P, C]`: row (b, o) holds, for each tap, the
/// channels of position `index[o·taps + tap]`, or zeros where that entry is `P` (padding). With
/// `train` the op records its backward, a scatter-add of the rows back to the positions, one
/// thread per block of images (candle's `index_select` / `index_add` are single-threaded).
/// Falls back to `index_select` on `[x, 0]` elsewhere.
pub fn gather_patches(
    x: &Tensor,
    index: &std::sync::Arc<Vec<u32>>,
    taps: usize,
    train: bool,
) -> candle_core::Result<Tensor> {
    let (b, p, c) = x.dims3()?;
    let outputs = index.len() / taps.max(1);
    if !(x.device().is_cpu() && x.dtype() == DType::F32) {
        let idx = Tensor::from_vec(index.as_ref().clone(), index.len(), x.device())?;
        let zero = Tensor::zeros((b, 1, c), x.dtype(), x.device())?;
        return Tensor::cat(&[x, &zero], 1)?
            .index_select(&idx, 1)?
            .reshape((b * outputs, taps * c));
    }
    let op = GatherPatches {
        index: index.clone(),
        positions: p,
        channels: c,
        taps,
    };
    let x = x.contiguous()?;
    if train {
        x.apply_op1(op)
    } else {
        x.apply_op1_no_bwd(&op)
    }
}

struct GatherPatches {
    index: std::sync::Arc<Vec<u32>>,
    positions: usize,
    channels: usize,
    taps: usize,
}

/// Runs `f(image, chunk)` over `images` equal chunks of `out` on up to candle's thread count.
fn per_image<F>(out: &mut [f32], images: usize, f: F)
where
    F: Fn(usize, &mut [f32]) + Sync,
{
    let per = out.len() / images.max(1);
    if per == 0 {
        return;
    }
    let threads = candle_core::utils::get_num_threads()
        .clamp(1, 8)
        .min(images);
    if threads <= 1 || out.len() < 1 << 15 {
        for (i, chunk) in out.chunks_mut(per).enumerate() {
            f(i, chunk);
        }
        return;
    }
    let block = images.div_ceil(threads);
    let f = &f;
    std::thread::scope(|s| {
        for (k, chunk) in out.chunks_mut(block * per).enumerate() {
            s.spawn(move || {
                for (i, img) in chunk.chunks_mut(per).enumerate() {
                    f(k * block + i, img);
                }
            });
        }
    });
}

impl CustomOp1 for GatherPatches {
    fn name(&self) -> &'static str {
        "difc-gather-patches"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (b, p, c) = l.shape().dims3()?;
        if p != self.positions || c != self.channels {
            candle_core::bail!(
                "gather patches: built for [_, {}, {}], got {:?}",
                self.positions,
                self.channels,
                l.shape()
            );
        }
        let x = f32_slice(s, l, "input")?;
        let outputs = self.index.len() / self.taps.max(1);
        let mut out = vec![0f32; b * outputs * self.taps * c];
        let index = &self.index;
        per_image(&mut out, b, |img, rows| {
            let src = &x[img * p * c..(img + 1) * p * c];
            for (slot, dst) in index.iter().zip(rows.chunks_exact_mut(c)) {
                let q = *slot as usize;
                if q < p {
                    dst.copy_from_slice(&src[q * c..(q + 1) * c]);
                }
            }
        });
        Ok((
            CpuStorage::F32(out),
            Shape::from((b * outputs, self.taps * c)),
        ))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let (b, p, c) = x.dims3()?;
        let grad = grad.contiguous()?;
        let (gs, gl) = grad.storage_and_layout();
        let g = cpu_f32(&gs, gl, "gradient")?;
        let per_out = self.index.len() * c;
        let mut dx = vec![0f32; b * p * c];
        let index = &self.index;
        per_image(&mut dx, b, |img, acc| {
            let rows = &g[img * per_out..(img + 1) * per_out];
            for (slot, src) in index.iter().zip(rows.chunks_exact(c)) {
                let q = *slot as usize;
                if q < p {
                    for (a, v) in acc[q * c..(q + 1) * c].iter_mut().zip(src) {
                        *a += v;
                    }
                }
            }
        });
        Ok(Some(Tensor::from_vec(dx, (b, p, c), grad.device())?))
    }
}

/// What the layer-norm backward needs: x̂ (row-major `[rows, w]`) and 1/σ per row.
type Saved = (Vec<f32>, Vec<f32>);

struct FusedLayerNorm {
    eps: f32,
    saved: Mutex<Option<Saved>>,
}

fn f32_slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> candle_core::Result<&'a [f32]> {
    let data = match s {
        CpuStorage::F32(v) => v.as_slice(),
        _ => candle_core::bail!("fused kernel: {what} must be f32"),
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("fused kernel: {what} must be contiguous"),
    }
}

fn cpu_f32<'a>(
    t: &'a candle_core::Storage,
    l: &Layout,
    what: &str,
) -> candle_core::Result<&'a [f32]> {
    match t {
        candle_core::Storage::Cpu(s) => f32_slice(s, l, what),
        _ => candle_core::bail!("fused kernel: {what} is not on the CPU"),
    }
}

impl CustomOp3 for FusedLayerNorm {
    fn name(&self) -> &'static str {
        "difc-fused-layer-norm"
    }

    fn cpu_fwd(
        &self,
        sx: &CpuStorage,
        lx: &Layout,
        sg: &CpuStorage,
        lg: &Layout,
        sb: &CpuStorage,
        lb: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (rows, w) = lx.shape().dims2()?;
        if lg.shape().dims() != [w] || lb.shape().dims() != [w] {
            candle_core::bail!(
                "fused layer norm: gain {:?} and bias {:?} must be [{w}]",
                lg.shape(),
                lb.shape()
            );
        }
        let x = f32_slice(sx, lx, "input")?;
        let (g, b) = (f32_slice(sg, lg, "gain")?, f32_slice(sb, lb, "bias")?);
        let mut y = vec![0f32; rows * w];
        let mut xhat = vec![0f32; rows * w];
        let mut rstd = vec![0f32; rows];
        let inv_w = 1.0 / w as f32;
        for (r, ((xr, yr), hr)) in x
            .chunks_exact(w)
            .zip(y.chunks_exact_mut(w))
            .zip(xhat.chunks_exact_mut(w))
            .enumerate()
        {
            let mean = xr.iter().sum::<f32>() * inv_w;
            let var = xr.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() * inv_w;
            let s = 1.0 / (var + self.eps).sqrt();
            rstd[r] = s;
            for (((yv, hv), xv), (gv, bv)) in yr
                .iter_mut()
                .zip(hr.iter_mut())
                .zip(xr)
                .zip(g.iter().zip(b))
            {
                *hv = (xv - mean) * s;
                *yv = *hv * gv + bv;
            }
        }
        if let Ok(mut slot) = self.saved.lock() {
            *slot = Some((xhat, rstd));
        }
        Ok((CpuStorage::F32(y), Shape::from((rows, w))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gain: &Tensor,
        bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let (rows, w) = grad.dims2()?;
        let Some((xhat, rstd)) = self.saved.lock().ok().and_then(|mut s| s.take()) else {
            candle_core::bail!("fused layer norm: backward called twice or without forward");
        };
        let gain_c = gain.contiguous()?;
        let (gs, gl) = gain_c.storage_and_layout();
        let gv = cpu_f32(&gs, gl, "gain")?;
        let (ds, dl) = grad.storage_and_layout();
        let g = cpu_f32(&ds, dl, "gradient")?;
        let mut dx = vec![0f32; rows * w];
        let mut dgain = vec![0f32; w];
        let mut dbias = vec![0f32; w];
        let inv_w = 1.0 / w as f32;
        for (r, ((gr, hr), dr)) in g
            .chunks_exact(w)
            .zip(xhat.chunks_exact(w))
            .zip(dx.chunks_exact_mut(w))
            .enumerate()
        {
            // ĝ = g ⊙ gain; dx = (1/σ)(ĝ − mean(ĝ) − x̂ · mean(ĝ ⊙ x̂)).
            let (mut m1, mut m2) = (0f32, 0f32);
            for j in 0..w {
                let gh = gr[j] * gv[j];
                m1 += gh;
                m2 += gh * hr[j];
                dgain[j] += gr[j] * hr[j];
                dbias[j] += gr[j];
            }
            let (m1, m2) = (m1 * inv_w, m2 * inv_w);
            let s = rstd[r];
            for j in 0..w {
                dr[j] = s * (gr[j] * gv[j] - m1 - hr[j] * m2);
            }
        }
        let dev = grad.device();
        let dx = x
            .track_op()
            .then(|| Tensor::from_vec(dx, (rows, w), dev))
            .transpose()?;
        let dgain = gain
            .track_op()
            .then(|| Tensor::from_vec(dgain, w, dev))
            .transpose()?;
        let dbias = bias
            .track_op()
            .then(|| Tensor::from_vec(dbias, w, dev))
            .transpose()?;
        Ok((dx, dgain, dbias))
    }
}

struct FusedSoftmax;

impl CustomOp1 for FusedSoftmax {
    fn name(&self) -> &'static str {
        "difc-fused-softmax"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let n = *l.shape().dims().last().unwrap_or(&1);
        let x = f32_slice(s, l, "input")?;
        let mut y = vec![0f32; x.len()];
        for (xr, yr) in x.chunks_exact(n.max(1)).zip(y.chunks_exact_mut(n.max(1))) {
            let max = xr.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0f32;
            for (yv, xv) in yr.iter_mut().zip(xr) {
                *yv = (xv - max).exp();
                sum += *yv;
            }
            let inv = 1.0 / sum;
            yr.iter_mut().for_each(|v| *v *= inv);
        }
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        // dx = y ⊙ (g − Σ_j g_j y_j) per row.
        let grad = grad.contiguous()?;
        let res = res.contiguous()?;
        let n = *grad.dims().last().unwrap_or(&1);
        let (gs, gl) = grad.storage_and_layout();
        let g = cpu_f32(&gs, gl, "gradient")?;
        let (ys, yl) = res.storage_and_layout();
        let y = cpu_f32(&ys, yl, "output")?;
        let mut dx = vec![0f32; g.len()];
        for ((gr, yr), dr) in g
            .chunks_exact(n.max(1))
            .zip(y.chunks_exact(n.max(1)))
            .zip(dx.chunks_exact_mut(n.max(1)))
        {
            let dot: f32 = gr.iter().zip(yr).map(|(a, b)| a * b).sum();
            for ((d, gv), yv) in dr.iter_mut().zip(gr).zip(yr) {
                *d = yv * (gv - dot);
            }
        }
        Ok(Some(Tensor::from_vec(dx, grad.shape(), grad.device())?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn random(shape: &[usize], seed: u64) -> Tensor {
        let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 40) as f32 / (1u64 << 24) as f32 * 4.0 - 2.0
            })
            .collect();
        Tensor::from_vec(v, shape, &Device::Cpu).expect("tensor")
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .expect("sub")
            .abs()
            .expect("abs")
            .flatten_all()
            .expect("flat")
            .max(0)
            .expect("max")
            .to_scalar::<f32>()
            .expect("scalar")
    }

    /// Values and the gradients to x, gain and bias agree with the composite to f32 rounding,
    /// for a weighted sum as the loss (so the gradient is not uniform).
    #[test]
    fn fused_layer_norm_matches_the_composite_values_and_gradients() {
        let x = Var::from_tensor(&random(&[3, 5, 16], 1)).expect("var");
        let gain = Var::from_tensor(&random(&[16], 2)).expect("var");
        let bias = Var::from_tensor(&random(&[16], 3)).expect("var");
        let weights = random(&[3, 5, 16], 4);
        let run = |fused: bool| {
            let y = if fused {
                layer_norm(
                    x.as_tensor(),
                    gain.as_tensor(),
                    bias.as_tensor(),
                    1e-5,
                    true,
                )
            } else {
                layer_norm_plain(x.as_tensor(), gain.as_tensor(), bias.as_tensor(), 1e-5)
            }
            .expect("forward");
            let loss = (&y * &weights).expect("mul").sum_all().expect("sum");
            let grads = loss.backward().expect("backward");
            let g = |v: &Var| grads.get(v.as_tensor()).expect("grad").clone();
            (y, g(&x), g(&gain), g(&bias))
        };
        let (a, b) = (run(true), run(false));
        assert!(max_diff(&a.0, &b.0) < 1e-5, "values");
        assert!(max_diff(&a.1, &b.1) < 1e-4, "dx {}", max_diff(&a.1, &b.1));
        assert!(max_diff(&a.2, &b.2) < 1e-4, "dgain");
        assert!(max_diff(&a.3, &b.3) < 1e-4, "dbias");
    }

    /// The fused gather and its scatter-add backward against `index_select` on `[x, 0]`.
    #[test]
    fn fused_patch_gather_matches_index_select_values_and_gradients() {
        let (b, p, c, taps) = (3, 6, 4, 3);
        // 5 outputs × 3 taps, with padding entries (= p) and repeated positions.
        let index: Vec<u32> = vec![0, 1, 6, 2, 2, 3, 6, 6, 5, 4, 0, 1, 5, 5, 5];
        let arc = std::sync::Arc::new(index.clone());
        let x = Var::from_tensor(&random(&[b, p, c], 8)).expect("var");
        let weights = random(&[b * 5, taps * c], 9);
        let run = |fused: bool| {
            let y = if fused {
                gather_patches(x.as_tensor(), &arc, taps, true).expect("gather")
            } else {
                let idx = Tensor::from_vec(index.clone(), index.len(), &Device::Cpu).expect("idx");
                let zero = Tensor::zeros((b, 1, c), DType::F32, &Device::Cpu).expect("zero");
                Tensor::cat(&[x.as_tensor(), &zero], 1)
                    .and_then(|t| t.index_select(&idx, 1))
                    .and_then(|t| t.reshape((b * 5, taps * c)))
                    .expect("plain")
            };
            let loss = (&y * &weights).expect("mul").sum_all().expect("sum");
            let grads = loss.backward().expect("backward");
            (y, grads.get(x.as_tensor()).expect("grad").clone())
        };
        let (a, bb) = (run(true), run(false));
        assert_eq!(max_diff(&a.0, &bb.0), 0.0, "values");
        assert!(max_diff(&a.1, &bb.1) < 1e-6, "dx");
    }

    #[test]
    fn fused_softmax_matches_the_composite_values_and_gradients() {
        // Large negative entries, as the attention's masked keys.
        let x0 = (random(&[2, 3, 4, 8], 5) * 3.0).expect("scale");
        let mask = random(&[2, 3, 4, 8], 6).ge(1.5).expect("mask");
        let x0 = mask
            .where_cond(&(x0.ones_like().expect("ones") * -1e9).expect("big"), &x0)
            .expect("masked");
        let x = Var::from_tensor(&x0).expect("var");
        let weights = random(&[2, 3, 4, 8], 7);
        let run = |fused: bool| {
            let y = if fused {
                softmax_last_dim(x.as_tensor(), true)
            } else {
                candle_nn::ops::softmax(x.as_tensor(), D::Minus1)
            }
            .expect("forward");
            let loss = (&y * &weights).expect("mul").sum_all().expect("sum");
            let grads = loss.backward().expect("backward");
            (y, grads.get(x.as_tensor()).expect("grad").clone())
        };
        let (a, b) = (run(true), run(false));
        assert!(max_diff(&a.0, &b.0) < 1e-6, "values");
        assert!(max_diff(&a.1, &b.1) < 1e-5, "dx {}", max_diff(&a.1, &b.1));
    }
}

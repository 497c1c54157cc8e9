//! Optimisation pieces: AdamW with named, checkpointable state, global-norm gradient clipping,
//! an EMA of the weights, learning-rate schedules and a non-finite guard.
//!
//! candle's own `AdamW` keeps its moments private (so a run cannot be resumed exactly) and
//! updates each parameter with about ten separate tensor ops. Here state is keyed by parameter
//! *name* (stable across processes, unlike `VarMap` order) and, for f32 tensors on the CPU, every
//! update is a single pass over the raw slices. Other devices/dtypes use tensor ops with the same
//! formulas.

use std::collections::BTreeMap;

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Storage, Tensor, Var};

/// Errors from the optimiser, EMA, schedules and guards.
#[derive(Debug, thiserror::Error)]
pub enum OptimError {
    /// A hyper-parameter is out of range.
    #[error("invalid optimiser setting: {0}")]
    Config(String),
    /// Saved state does not fit the current parameters.
    #[error("cannot restore optimiser state: {0}")]
    State(String),
    /// A parameter the optimiser does not know about was passed to `step`.
    #[error(
        "parameter `{0}` has no optimiser state; build the optimiser from the same parameter list"
    )]
    UnknownParam(String),
    /// The loss or the gradient norm is NaN or infinite.
    #[error("non-finite {what} ({value}) at step {step}; lower the learning rate, enable gradient clipping, or check the data for NaN/Inf")]
    NonFinite {
        what: &'static str,
        value: f64,
        step: u64,
    },
    /// An error from candle itself.
    #[error("tensor operation failed: {0}")]
    Candle(#[from] candle_core::Error),
}

/// Result type of this module.
pub type Result<T> = std::result::Result<T, OptimError>;

/// Runs `f` on the contiguous f32 data of a CPU tensor; `None` if the tensor is elsewhere,
/// another dtype or strided (the caller then falls back to tensor ops).
fn with_cpu_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Option<R> {
    let (storage, layout) = t.storage_and_layout();
    let (a, b) = layout.contiguous_offsets()?;
    match &*storage {
        Storage::Cpu(c) => c.as_slice::<f32>().ok().map(|s| f(&s[a..b])),
        _ => None,
    }
}

fn from_f32(v: Vec<f32>, like: &Tensor) -> Result<Tensor> {
    Ok(Tensor::from_vec(v, like.shape(), like.device())?)
}

/// AdamW hyper-parameters (PyTorch defaults except `weight_decay = 0`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Decoupled weight decay (0 = plain Adam).
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

impl AdamWConfig {
    fn validate(&self) -> Result<()> {
        let in_unit = |b: f64| (0.0..1.0).contains(&b);
        if !in_unit(self.beta1) || !in_unit(self.beta2) {
            return Err(OptimError::Config(format!(
                "betas must lie in [0, 1), got ({}, {})",
                self.beta1, self.beta2
            )));
        }
        if self.eps.is_nan()
            || self.eps <= 0.0
            || self.weight_decay.is_nan()
            || self.weight_decay < 0.0
        {
            return Err(OptimError::Config(
                "eps must be > 0 and weight_decay ≥ 0".to_string(),
            ));
        }
        Ok(())
    }
}

/// Per-parameter AdamW state.
struct Moments {
    m: Tensor,
    v: Tensor,
    step: u64,
}

/// AdamW (Loshchilov & Hutter) with decoupled weight decay, matching `torch.optim.AdamW`.
pub struct AdamW {
    config: AdamWConfig,
    state: BTreeMap<String, Moments>,
}

const M_PREFIX: &str = "adamw.m.";
const V_PREFIX: &str = "adamw.v.";
const STEP_PREFIX: &str = "adamw.step.";

impl AdamW {
    /// Zero moments for every named parameter.
    pub fn new(config: AdamWConfig, vars: &[(String, Var)]) -> Result<Self> {
        config.validate()?;
        let mut state = BTreeMap::new();
        for (name, var) in vars {
            let m = var.as_tensor().zeros_like()?.detach();
            let v = var.as_tensor().zeros_like()?.detach();
            state.insert(name.clone(), Moments { m, v, step: 0 });
        }
        Ok(AdamW { config, state })
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &AdamWConfig {
        &self.config
    }

    /// One update with learning rate `lr`. Parameters without a gradient are left alone (and
    /// their step count does not advance), like PyTorch.
    pub fn step(&mut self, vars: &[(String, Var)], grads: &GradStore, lr: f64) -> Result<()> {
        self.step_scaled(vars, grads, lr, 1.0)
    }

    /// Like [`AdamW::step`] with every gradient multiplied by `grad_scale` first (this is how
    /// gradient clipping is applied without rewriting the gradient store).
    pub fn step_scaled(
        &mut self,
        vars: &[(String, Var)],
        grads: &GradStore,
        lr: f64,
        grad_scale: f64,
    ) -> Result<()> {
        for (name, var) in vars {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            let c = self.config;
            let st = self
                .state
                .get_mut(name)
                .ok_or_else(|| OptimError::UnknownParam(name.clone()))?;
            st.step += 1;
            let t = st.step as i32;
            let k = Coeffs {
                decay: 1.0 - lr * c.weight_decay,
                b1: c.beta1,
                b2: c.beta2,
                scale: grad_scale,
                step_size: lr / (1.0 - c.beta1.powi(t)),
                sqrt_bc2: (1.0 - c.beta2.powi(t)).sqrt(),
                eps: c.eps,
            };
            if !adamw_cpu_f32(var, g, st, &k)? {
                adamw_tensor_ops(var, g, st, &k)?;
            }
        }
        Ok(())
    }

    /// Moments and step counts as named tensors (`adamw.m.<param>`, `adamw.v.<param>`,
    /// `adamw.step.<param>` as a one-element i64 tensor), for a checkpoint.
    pub fn state_tensors(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out = Vec::with_capacity(3 * self.state.len());
        for (name, st) in &self.state {
            out.push((format!("{M_PREFIX}{name}"), st.m.clone()));
            out.push((format!("{V_PREFIX}{name}"), st.v.clone()));
            let step = Tensor::new(&[st.step as i64], &Device::Cpu)?;
            out.push((format!("{STEP_PREFIX}{name}"), step));
        }
        Ok(out)
    }

    /// Restores the state written by [`AdamW::state_tensors`]. Every parameter this optimiser
    /// was built for must be present with the same shape and dtype; extra tensors are ignored
    /// (a checkpoint also holds the weights).
    pub fn load_state(&mut self, tensors: &[(String, Tensor)]) -> Result<()> {
        let map: BTreeMap<&str, &Tensor> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let mut restored = BTreeMap::new();
        for (name, st) in &self.state {
            let m = take_like(&map, &format!("{M_PREFIX}{name}"), &st.m)?;
            let v = take_like(&map, &format!("{V_PREFIX}{name}"), &st.v)?;
            let key = format!("{STEP_PREFIX}{name}");
            let step = map
                .get(key.as_str())
                .ok_or_else(|| OptimError::State(format!("tensor `{key}` is missing")))?
                .flatten_all()?
                .to_dtype(DType::I64)?
                .to_vec1::<i64>()?;
            let step = match step.as_slice() {
                [s] if *s >= 0 => *s as u64,
                _ => return Err(OptimError::State(format!("`{key}` is not one step count"))),
            };
            restored.insert(name.clone(), Moments { m, v, step });
        }
        self.state = restored;
        Ok(())
    }
}

/// The tensor `name` from `map`, checked against the shape and dtype of `like` and moved to its
/// device.
fn take_like(map: &BTreeMap<&str, &Tensor>, name: &str, like: &Tensor) -> Result<Tensor> {
    let t = map.get(name).ok_or_else(|| {
        OptimError::State(format!(
            "tensor `{name}` is missing (checkpoint from another model or optimiser?)"
        ))
    })?;
    if t.dims() != like.dims() || t.dtype() != like.dtype() {
        return Err(OptimError::State(format!(
            "tensor `{name}` is {:?} {:?} but {:?} {:?} is expected",
            t.dtype(),
            t.dims(),
            like.dtype(),
            like.dims()
        )));
    }
    // A fresh copy: the restored state must not alias the caller's tensors.
    Ok(t.to_device(like.device())?.copy()?.detach())
}

/// Scalars of one AdamW update.
struct Coeffs {
    /// `1 − lr·weight_decay`.
    decay: f64,
    b1: f64,
    b2: f64,
    scale: f64,
    /// `lr / (1 − β1^t)`.
    step_size: f64,
    /// `√(1 − β2^t)`.
    sqrt_bc2: f64,
    eps: f64,
}

/// The fused CPU/f32 update; returns `false` when the tensors are not all CPU f32 contiguous.
fn adamw_cpu_f32(var: &Var, g: &Tensor, st: &mut Moments, k: &Coeffs) -> Result<bool> {
    let (decay, b1, b2, scale) = (k.decay as f32, k.b1 as f32, k.b2 as f32, k.scale as f32);
    let (step_size, sqrt_bc2, eps) = (k.step_size as f32, k.sqrt_bc2 as f32, k.eps as f32);
    let updated = with_cpu_f32(var.as_tensor(), |w| {
        with_cpu_f32(g, |g| {
            with_cpu_f32(&st.m, |m| {
                with_cpu_f32(&st.v, |v| {
                    let n = w.len();
                    let (mut w2, mut m2, mut v2) = (vec![0f32; n], vec![0f32; n], vec![0f32; n]);
                    for i in 0..n {
                        let gi = g[i] * scale;
                        let mi = b1 * m[i] + (1.0 - b1) * gi;
                        let vi = b2 * v[i] + (1.0 - b2) * gi * gi;
                        let denom = vi.sqrt() / sqrt_bc2 + eps;
                        w2[i] = w[i] * decay - step_size * (mi / denom);
                        m2[i] = mi;
                        v2[i] = vi;
                    }
                    (w2, m2, v2)
                })
            })
        })
    });
    let Some(Some(Some(Some((w2, m2, v2))))) = updated else {
        return Ok(false);
    };
    var.set(&from_f32(w2, var.as_tensor())?)?;
    st.m = from_f32(m2, &st.m)?;
    st.v = from_f32(v2, &st.v)?;
    Ok(true)
}

/// The same update with tensor ops (any device, f32/f64).
fn adamw_tensor_ops(var: &Var, g: &Tensor, st: &mut Moments, k: &Coeffs) -> Result<()> {
    let g = g.detach().affine(k.scale, 0.0)?;
    st.m = ((&st.m * k.b1)? + (&g * (1.0 - k.b1))?)?;
    st.v = ((&st.v * k.b2)? + (g.sqr()? * (1.0 - k.b2))?)?;
    let denom = ((st.v.sqrt()? / k.sqrt_bc2)? + k.eps)?;
    let w = var.as_detached_tensor();
    let new_w = ((&w * k.decay)? - ((&st.m / &denom)? * k.step_size)?)?;
    var.set(&new_w)?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Gradient clipping.

/// Global L2 norm of the gradients of `vars` (parameters without a gradient count as zero).
pub fn grad_norm(vars: &[(String, Var)], grads: &GradStore) -> Result<f64> {
    let mut sum = 0f64;
    for (_, var) in vars {
        let Some(g) = grads.get(var.as_tensor()) else {
            continue;
        };
        let fast = with_cpu_f32(g, |s| {
            s.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>()
        });
        sum += match fast {
            Some(s) => s,
            None => g
                .to_dtype(DType::F64)?
                .sqr()?
                .sum_all()?
                .to_scalar::<f64>()?,
        };
    }
    Ok(sum.sqrt())
}

/// Result of clipping: the norm before clipping and the factor applied.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Clip {
    pub norm: f64,
    pub scale: f64,
}

/// Factor that brings a gradient of norm `norm` down to `max_norm` (1 when already below), as
/// `torch.nn.utils.clip_grad_norm_` (with its 1e-6 guard).
pub fn clip_factor(norm: f64, max_norm: f64) -> f64 {
    let s = max_norm / (norm + 1e-6);
    if s < 1.0 {
        s
    } else {
        1.0
    }
}

/// Computes the global norm and the clip factor without touching the gradients; pass
/// `scale` to [`AdamW::step_scaled`] (cheapest).
pub fn clip_scale(vars: &[(String, Var)], grads: &GradStore, max_norm: f64) -> Result<Clip> {
    let norm = grad_norm(vars, grads)?;
    Ok(Clip {
        norm,
        scale: clip_factor(norm, max_norm),
    })
}

/// Clips in place: rescales every gradient in `grads` so the global norm is at most
/// `max_norm`.
pub fn clip_grad_norm(
    vars: &[(String, Var)],
    grads: &mut GradStore,
    max_norm: f64,
) -> Result<Clip> {
    let clip = clip_scale(vars, grads, max_norm)?;
    if clip.scale < 1.0 {
        for (_, var) in vars {
            if let Some(g) = grads.get(var.as_tensor()) {
                let scaled = g.affine(clip.scale, 0.0)?;
                grads.insert(var.as_tensor(), scaled);
            }
        }
    }
    Ok(clip)
}

// ---------------------------------------------------------------------------------------------
// EMA.

const EMA_PREFIX: &str = "ema.";

/// Exponential moving average of the weights: `shadow ← d·shadow + (1 − d)·w`, kept as detached
/// tensors (sample with these weights via `Mlp::load_weights`).
pub struct Ema {
    decay: f64,
    shadow: Vec<(String, Tensor)>,
}

impl Ema {
    /// Starts the average at the current weights.
    pub fn new(vars: &[(String, Var)], decay: f64) -> Result<Self> {
        if !(0.0..=1.0).contains(&decay) {
            return Err(OptimError::Config(format!(
                "EMA decay must lie in [0, 1], got {decay}"
            )));
        }
        let shadow = vars
            .iter()
            .map(|(n, v)| Ok((n.clone(), v.as_detached_tensor().copy()?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Ema { decay, shadow })
    }

    /// The decay factor.
    pub fn decay(&self) -> f64 {
        self.decay
    }

    /// Moves the average towards the current weights.
    /// Changes the decay used by the next updates (EMA warm-up).
    pub fn set_decay(&mut self, decay: f64) {
        self.decay = decay;
    }

    pub fn update(&mut self, vars: &[(String, Var)]) -> Result<()> {
        let d = self.decay;
        for (name, s) in self.shadow.iter_mut() {
            let var = vars
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v)
                .ok_or_else(|| OptimError::UnknownParam(name.clone()))?;
            let (df, cf) = (d as f32, (1.0 - d) as f32);
            let fast = with_cpu_f32(s, |sv| {
                with_cpu_f32(var.as_tensor(), |w| {
                    sv.iter()
                        .zip(w)
                        .map(|(a, b)| df * a + cf * b)
                        .collect::<Vec<f32>>()
                })
            });
            *s = match fast {
                Some(Some(v)) => from_f32(v, s)?,
                _ => ((&*s * d)? + (var.as_detached_tensor() * (1.0 - d))?)?,
            };
        }
        Ok(())
    }

    /// The averaged weights, by parameter name.
    pub fn shadow(&self) -> &[(String, Tensor)] {
        &self.shadow
    }

    /// Shadow weights named `ema.<param>` for a checkpoint.
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        self.shadow
            .iter()
            .map(|(n, t)| (format!("{EMA_PREFIX}{n}"), t.clone()))
            .collect()
    }

    /// Restores the shadow weights written by [`Ema::state_tensors`].
    pub fn load_state(&mut self, tensors: &[(String, Tensor)]) -> Result<()> {
        let map: BTreeMap<&str, &Tensor> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let mut restored = Vec::with_capacity(self.shadow.len());
        for (name, s) in &self.shadow {
            restored.push((
                name.clone(),
                take_like(&map, &format!("{EMA_PREFIX}{name}"), s)?,
            ));
        }
        self.shadow = restored;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Learning-rate schedule and guard.

/// Learning rate as a function of the (0-based) step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LrSchedule {
    /// The same rate at every step.
    Constant { lr: f64 },
    /// Linear warm-up from `peak/warmup_steps` to `peak` over `warmup_steps`, then cosine decay
    /// to `floor` at `total_steps` (and `floor` after).
    WarmupCosine {
        peak: f64,
        floor: f64,
        warmup_steps: u64,
        total_steps: u64,
    },
}

impl LrSchedule {
    /// Checks the rates are finite and non-negative and the step counts are consistent.
    pub fn validate(&self) -> Result<()> {
        let ok = |x: f64| x.is_finite() && x >= 0.0;
        match *self {
            LrSchedule::Constant { lr } if ok(lr) => Ok(()),
            LrSchedule::WarmupCosine {
                peak,
                floor,
                warmup_steps,
                total_steps,
            } if ok(peak) && ok(floor) && floor <= peak && warmup_steps <= total_steps => Ok(()),
            _ => Err(OptimError::Config(format!(
                "bad learning-rate schedule {self:?}: rates must be finite, ≥ 0, floor ≤ peak, warmup ≤ total steps"
            ))),
        }
    }

    /// Learning rate for step `step` (the update about to be made, counting from 0).
    pub fn lr_at(&self, step: u64) -> f64 {
        match *self {
            LrSchedule::Constant { lr } => lr,
            LrSchedule::WarmupCosine {
                peak,
                floor,
                warmup_steps,
                total_steps,
            } => {
                if step < warmup_steps {
                    return peak * (step + 1) as f64 / warmup_steps as f64;
                }
                let span = total_steps.saturating_sub(warmup_steps).max(1) as f64;
                let p = ((step - warmup_steps) as f64 / span).min(1.0);
                floor + (peak - floor) * 0.5 * (1.0 + (std::f64::consts::PI * p).cos())
            }
        }
    }
}

/// Errors unless the loss and the gradient norm are finite (call before `step`, so a bad batch
/// never reaches the weights).
pub fn check_finite(step: u64, loss: f64, grad_norm: f64) -> Result<()> {
    if !loss.is_finite() {
        return Err(OptimError::NonFinite {
            what: "loss",
            value: loss,
            step,
        });
    }
    if !grad_norm.is_finite() {
        return Err(OptimError::NonFinite {
            what: "gradient norm",
            value: grad_norm,
            step,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn var(vals: &[f64], dtype: DType) -> Result<Var> {
        let t = Tensor::from_vec(vals.to_vec(), vals.len(), &Device::Cpu)?.to_dtype(dtype)?;
        Ok(Var::from_tensor(&t)?)
    }

    fn vals(t: &Tensor) -> Result<Vec<f64>> {
        Ok(t.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?)
    }

    /// loss = Σ c_i w_i² → g = 2 c w.
    fn quad_grads(w: &Var, c: &[f64]) -> Result<GradStore> {
        let ct = Tensor::from_vec(c.to_vec(), c.len(), &Device::Cpu)?.to_dtype(w.dtype())?;
        Ok((w.as_tensor().sqr()? * ct)?.sum_all()?.backward()?)
    }

    #[test]
    fn adamw_two_steps_match_hand_computation() -> Result<()> {
        for dtype in [DType::F32, DType::F64] {
            let w0 = [1.0, -2.0, 0.5];
            let c = [1.0, 0.5, 3.0];
            let w = var(&w0, dtype)?;
            let vars = vec![("w".to_string(), w.clone())];
            let cfg = AdamWConfig {
                weight_decay: 0.1,
                ..Default::default()
            };
            let mut opt = AdamW::new(cfg, &vars)?;
            let (lr, b1, b2, eps, wd) = (0.01, 0.9, 0.999, 1e-8, 0.1);
            let (mut hw, mut hm, mut hv) = (w0.to_vec(), vec![0.0; 3], vec![0.0; 3]);
            for t in 1..=2 {
                opt.step(&vars, &quad_grads(&w, &c)?, lr)?;
                for i in 0..3 {
                    let g = 2.0 * c[i] * hw[i];
                    hm[i] = b1 * hm[i] + (1.0 - b1) * g;
                    hv[i] = b2 * hv[i] + (1.0 - b2) * g * g;
                    let mhat = hm[i] / (1.0 - f64::powi(b1, t));
                    let vhat = hv[i] / (1.0 - f64::powi(b2, t));
                    hw[i] = hw[i] * (1.0 - lr * wd) - lr * mhat / (vhat.sqrt() + eps);
                }
            }
            let got = vals(w.as_tensor())?;
            for i in 0..3 {
                assert!((got[i] - hw[i]).abs() < 1e-6, "{dtype:?} {got:?} vs {hw:?}");
            }
            // First Adam step moves each weight by ≈ lr (sign of the gradient).
            assert!((hw[0] - (1.0 * (1.0 - lr * wd) - 2.0 * lr)).abs() < 1e-3);
        }
        Ok(())
    }

    #[test]
    fn ema_update_value() -> Result<()> {
        for dtype in [DType::F32, DType::F64] {
            let w = var(&[1.0, 2.0], dtype)?;
            let vars = vec![("w".to_string(), w.clone())];
            let mut ema = Ema::new(&vars, 0.9)?;
            w.set(&Tensor::new(&[3.0f64, -2.0], &Device::Cpu)?.to_dtype(dtype)?)?;
            ema.update(&vars)?;
            let s = vals(&ema.shadow()[0].1)?;
            // 0.9·1 + 0.1·3 = 1.2; 0.9·2 + 0.1·(−2) = 1.6.
            assert!(
                (s[0] - 1.2).abs() < 1e-6 && (s[1] - 1.6).abs() < 1e-6,
                "{s:?}"
            );
        }
        Ok(())
    }

    #[test]
    fn clipping_scales_to_max_norm() -> Result<()> {
        for dtype in [DType::F32, DType::F64] {
            let a = var(&[3.0, 0.0], dtype)?; // g = 2·w = (6, 0)
            let b = var(&[0.0, 4.0], dtype)?; // g = (0, 8) → global norm 10
            let vars = vec![("a".to_string(), a.clone()), ("b".to_string(), b.clone())];
            let loss = (a.as_tensor().sqr()?.sum_all()? + b.as_tensor().sqr()?.sum_all()?)?;
            let mut grads = loss.backward()?;
            let clip = clip_grad_norm(&vars, &mut grads, 5.0)?;
            assert!((clip.norm - 10.0).abs() < 1e-5 && (clip.scale - 0.5).abs() < 1e-6);
            assert!((grad_norm(&vars, &grads)? - 5.0).abs() < 1e-5);
            let ga = grads.get(a.as_tensor()).map(vals).transpose()?;
            assert_eq!(ga.map(|v| (v[0] * 1e4).round()), Some(3.0e4));
            let unclipped = clip_grad_norm(&vars, &mut grads, 100.0)?;
            assert_eq!(unclipped.scale, 1.0);
        }
        Ok(())
    }

    #[test]
    fn schedule_values() -> Result<()> {
        let s = LrSchedule::WarmupCosine {
            peak: 1e-3,
            floor: 1e-5,
            warmup_steps: 10,
            total_steps: 110,
        };
        s.validate()?;
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
        assert!(close(s.lr_at(0), 1e-4));
        assert!(close(s.lr_at(9), 1e-3));
        assert!(close(s.lr_at(10), 1e-3));
        assert!(close(s.lr_at(60), 1e-5 + (1e-3 - 1e-5) * 0.5));
        assert!(close(s.lr_at(110), 1e-5));
        assert!(close(s.lr_at(5000), 1e-5));
        assert!(close(LrSchedule::Constant { lr: 0.3 }.lr_at(7), 0.3));
        assert!(LrSchedule::Constant { lr: -1.0 }.validate().is_err());
        Ok(())
    }

    #[test]
    fn guard_flags_non_finite_values() {
        assert!(check_finite(3, 0.5, 1.0).is_ok());
        assert!(matches!(
            check_finite(3, f64::NAN, 1.0),
            Err(OptimError::NonFinite { what: "loss", .. })
        ));
        assert!(matches!(
            check_finite(3, 0.5, f64::INFINITY),
            Err(OptimError::NonFinite { step: 3, .. })
        ));
    }

    /// Runs `steps` updates of a small least-squares problem from the given state.
    fn train(w: &Var, opt: &mut AdamW, ema: &mut Ema, from: u64, steps: u64) -> Result<()> {
        let vars = vec![("w".to_string(), w.clone())];
        for s in from..from + steps {
            let c: Vec<f64> = (0..4).map(|i| 1.0 + ((s + i) % 3) as f64).collect();
            let mut grads = quad_grads(w, &c)?;
            let clip = clip_grad_norm(&vars, &mut grads, 1.0)?;
            opt.step_scaled(&vars, &grads, 0.05, clip.scale)?;
            ema.update(&vars)?;
        }
        Ok(())
    }

    #[test]
    fn save_load_continue_is_bitwise_identical() -> Result<()> {
        let init = [0.3, -1.2, 2.0, 0.7];
        let w = var(&init, DType::F32)?;
        let vars = vec![("w".to_string(), w.clone())];
        let mut opt = AdamW::new(AdamWConfig::default(), &vars)?;
        let mut ema = Ema::new(&vars, 0.99)?;
        train(&w, &mut opt, &mut ema, 0, 10)?;
        // Snapshot through plain host vectors, as a checkpoint would.
        let copy = |ts: Vec<(String, Tensor)>| -> Result<Vec<(String, Tensor)>> {
            ts.into_iter().map(|(n, t)| Ok((n, t.copy()?))).collect()
        };
        let saved_opt = copy(opt.state_tensors()?)?;
        let saved_ema = copy(ema.state_tensors())?;
        let saved_w = w.as_tensor().copy()?;
        train(&w, &mut opt, &mut ema, 10, 10)?;

        let w2 = Var::from_tensor(&saved_w)?;
        let vars2 = vec![("w".to_string(), w2.clone())];
        let mut opt2 = AdamW::new(AdamWConfig::default(), &vars2)?;
        let mut ema2 = Ema::new(&vars2, 0.99)?;
        opt2.load_state(&saved_opt)?;
        ema2.load_state(&saved_ema)?;
        train(&w2, &mut opt2, &mut ema2, 10, 10)?;
        let bits = |t: &Tensor| -> Result<Vec<u32>> {
            Ok(t.to_vec1::<f32>()?.iter().map(|x| x.to_bits()).collect())
        };
        assert_eq!(bits(w.as_tensor())?, bits(w2.as_tensor())?);
        assert_eq!(bits(&ema.shadow()[0].1)?, bits(&ema2.shadow()[0].1)?);
        assert_ne!(bits(w.as_tensor())?, bits(&saved_w)?);
        // Missing state is a clear error.
        assert!(matches!(
            opt2.load_state(&saved_ema),
            Err(OptimError::State(_))
        ));
        Ok(())
    }
}

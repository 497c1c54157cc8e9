//! The solvers written in the Gaussian marginal alone, q(x_t | x_0) = N(α_t x_0 + c_t, σ_t² I):
//! they evaluate α_t, σ_t and c_t, and turn the network output into the data and noise
//! predictions x̂0 and ε̂, but never the drift a(t) or the diffusion g(t) of the implied SDE,
//! which are infinite where α_t → 0 (a cosine schedule or the rectified-flow interpolant at
//! t = 1). λ_t = log(α_t/σ_t) is the half log-SNR; a step goes from t to s = t − h.
//!
//! Written after k-diffusion's `sample_dpmpp_2m` and diffusers' `DDIMScheduler`, in our terms.

use super::sampler::{SamplerError, ScoreFn, StepContext};
use crate::rng::{stream, Purpose};
use rand::Rng;
use rand_distr::StandardNormal;

/// What the marginal solvers need from a family with a Gaussian marginal.
pub trait Denoiser {
    /// (α_t, c_t, σ_t).
    fn marginal_at(&self, t: f64) -> (f64, f64, f64);
    /// x̂0 and ε̂ from the network output `out` at the points `x` (all n × dim, row-major).
    fn predict(&self, out: &[f32], x: &[f64], t: f64, x0: &mut [f64], eps: &mut [f64]);
}

/// λ = log(α/σ): −∞ where α = 0, +∞ where σ = 0.
pub fn half_log_snr(alpha: f64, sigma: f64) -> f64 {
    (alpha.abs() / sigma).ln()
}

/// x̂0 and ε̂ at every row from one network evaluation.
fn predictions<D: Denoiser + ?Sized>(
    d: &D,
    net: &mut ScoreFn,
    x: &[f64],
    t: f64,
) -> Result<(Vec<f64>, Vec<f64>), SamplerError> {
    let xf: Vec<f32> = x.iter().map(|v| *v as f32).collect();
    let out = net(&xf, t).map_err(SamplerError::Network)?;
    if out.len() != x.len() {
        return Err(SamplerError::Network(format!(
            "the network returned {} numbers for {} inputs",
            out.len(),
            x.len()
        )));
    }
    let (mut x0, mut eps) = (vec![0f64; x.len()], vec![0f64; x.len()]);
    d.predict(&out, x, t, &mut x0, &mut eps);
    Ok((x0, eps))
}

/// DDIM (Song, Meng & Ermon 2021, eq. 12): x_s = α_s x̂0 + c_s + √(σ_s² − c²) ε̂ + c z, with
/// c = η σ_s √(1 − (α_t σ_s / (α_s σ_t))²), z ~ N(0, I) from stream (seed, Sample, k + 1, row).
/// η = 0 is deterministic; η = 1 is DDPM's posterior variance.
pub fn ddim<D: Denoiser + ?Sized>(
    d: &D,
    net: &mut ScoreFn,
    x: &mut [f64],
    dim: usize,
    ctx: &StepContext,
) -> Result<(), SamplerError> {
    let (x0, eps) = predictions(d, net, x, ctx.t)?;
    let (mt, _, st) = d.marginal_at(ctx.t);
    let (ms, cs, ss) = d.marginal_at(ctx.t - ctx.h);
    let ratio = if ms != 0.0 && st > 0.0 {
        (mt * ss / (ms * st)).min(1.0)
    } else {
        0.0
    };
    let noise = ctx.eta * ss * (1.0 - ratio * ratio).max(0.0).sqrt();
    let keep = (ss * ss - noise * noise).max(0.0).sqrt();
    for (i, row) in x.chunks_mut(dim).enumerate() {
        let mut rng = (noise > 0.0).then(|| stream(ctx.seed, Purpose::Sample, ctx.k as u64 + 1, i as u64));
        for (j, xj) in row.iter_mut().enumerate() {
            let at = i * dim + j;
            *xj = ms * x0[at] + cs + keep * eps[at];
            if let Some(rng) = rng.as_mut() {
                let z: f64 = rng.sample(StandardNormal);
                *xj += noise * z;
            }
        }
    }
    Ok(())
}

/// The exponential integrator of the probability-flow ODE in noise-prediction form with ε̂
/// frozen over the step (DPM-Solver-1, Lu et al. 2022, eq. 3.7):
/// x_s = (α_s/α_t)(x_t − c_t) + c_s − σ_s (e^h − 1) ε̂, h = λ_s − λ_t, written with
/// σ_s e^h = α_s σ_t / α_t. In exact arithmetic it is DDIM with η = 0.
pub fn exponential<D: Denoiser + ?Sized>(
    d: &D,
    net: &mut ScoreFn,
    x: &mut [f64],
    ctx: &StepContext,
) -> Result<(), SamplerError> {
    let (_, eps) = predictions(d, net, x, ctx.t)?;
    let (mt, ct, st) = d.marginal_at(ctx.t);
    let (ms, cs, ss) = d.marginal_at(ctx.t - ctx.h);
    let decay = ms / mt;
    let coef = ms * st / mt - ss;
    for (xj, ej) in x.iter_mut().zip(&eps) {
        *xj = decay * (*xj - ct) + cs - coef * ej;
    }
    Ok(())
}

/// DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2), in data-prediction form:
/// x_s = (σ_s/σ_t)(x_t − c_t − α_t D) + α_s D + c_s, where α_s − α_t σ_s/σ_t = α_s(1 − e^{−h}).
/// D = x̂0 on the first step; after it D = (1 + 1/(2r)) x̂0 − x̂0_prev/(2r) with
/// r = h_prev/h. First order also where r is not a positive finite number (σ_s = 0, or the
/// previous step started at α = 0) and on the last step of runs under 15 steps (diffusers'
/// `lower_order_final`). `ctx.history` carries (λ_t, x̂0) to the next step.
pub fn dpmpp_2m<D: Denoiser + ?Sized>(
    d: &D,
    net: &mut ScoreFn,
    x: &mut [f64],
    ctx: &mut StepContext,
) -> Result<(), SamplerError> {
    let (x0, _) = predictions(d, net, x, ctx.t)?;
    let (mt, ct, st) = d.marginal_at(ctx.t);
    let (ms, cs, ss) = d.marginal_at(ctx.t - ctx.h);
    let (lt, ls) = (half_log_snr(mt, st), half_log_snr(ms, ss));
    let h = ls - lt;
    let lower_final = ctx.is_last() && ctx.steps < 15;
    let prev = match &ctx.history {
        Some((lp, xp)) if !lower_final => {
            let r = (lt - lp) / h;
            (r.is_finite() && r > 0.0).then_some((r, xp))
        }
        _ => None,
    };
    let ratio = ss / st;
    for (j, xj) in x.iter_mut().enumerate() {
        let dj = match prev {
            Some((r, xp)) => (1.0 + 0.5 / r) * x0[j] - 0.5 / r * xp[j],
            None => x0[j],
        };
        *xj = ratio * (*xj - ct - mt * dj) + ms * dj + cs;
    }
    ctx.history = Some((lt, x0));
    Ok(())
}

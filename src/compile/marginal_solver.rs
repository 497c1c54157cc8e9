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
        let mut rng =
            (noise > 0.0).then(|| stream(ctx.seed, Purpose::Sample, ctx.k as u64 + 1, i as u64));
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

#[cfg(test)]
mod tests {
    use super::*;

    /// VP-like marginal with α = cos, σ = sin of (π/2)t, no offset, and an ε network.
    struct Cos;
    impl Denoiser for Cos {
        fn marginal_at(&self, t: f64) -> (f64, f64, f64) {
            let u = 0.5 * std::f64::consts::PI * t;
            (u.cos(), 0.0, u.sin())
        }
        fn predict(&self, out: &[f32], x: &[f64], t: f64, x0: &mut [f64], eps: &mut [f64]) {
            let (m, _, s) = self.marginal_at(t);
            for i in 0..out.len() {
                eps[i] = out[i] as f64;
                x0[i] = (x[i] - s * eps[i]) / m;
            }
        }
    }

    fn ctx(t: f64, h: f64, k: usize, steps: usize) -> StepContext {
        StepContext::single(t, h, 3, k, steps)
    }

    /// The network predicts ε̂ = 0.25 everywhere.
    fn net() -> impl FnMut(&[f32], f64) -> Result<Vec<f32>, String> {
        |x: &[f32], _t: f64| Ok(vec![0.25; x.len()])
    }

    #[test]
    fn ddim_step_is_the_hand_computed_update() {
        let (t, s) = (0.8f64, 0.5f64);
        let (at, _, bt) = Cos.marginal_at(t);
        let (as_, _, bs) = Cos.marginal_at(s);
        let x0 = (1.0 - bt * 0.25) / at;
        let want = as_ * x0 + bs * 0.25;
        let mut x = vec![1.0];
        ddim(&Cos, &mut net(), &mut x, 1, &ctx(t, t - s, 0, 4)).unwrap();
        assert!((x[0] - want).abs() < 1e-6, "{} vs {want}", x[0]);
    }

    #[test]
    fn ddim_with_eta_one_has_the_posterior_spread() {
        let (t, s) = (0.8, 0.5);
        let (at, _, bt) = Cos.marginal_at(t);
        let (as_, _, bs) = Cos.marginal_at(s);
        let ratio = at * bs / (as_ * bt);
        let c = bs * (1.0 - ratio * ratio).sqrt();
        let n = 20000;
        let mut x = vec![1.0; n];
        let mut cx = ctx(t, t - s, 0, 4);
        cx.eta = 1.0;
        ddim(&Cos, &mut net(), &mut x, 1, &cx).unwrap();
        let mean = x.iter().sum::<f64>() / n as f64;
        let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        let x0 = (1.0 - bt * 0.25) / at;
        let want_mean = as_ * x0 + (bs * bs - c * c).sqrt() * 0.25;
        assert!((mean - want_mean).abs() < 4.0 * c / (n as f64).sqrt());
        assert!(
            (var.sqrt() / c - 1.0).abs() < 0.03,
            "sd {} vs {c}",
            var.sqrt()
        );
    }

    #[test]
    fn exponential_step_is_the_noise_form_update_and_equals_ddim() {
        let (t, s) = (0.8, 0.5);
        let (at, _, bt) = Cos.marginal_at(t);
        let (as_, _, bs) = Cos.marginal_at(s);
        let h = half_log_snr(as_, bs) - half_log_snr(at, bt);
        let want = as_ / at * 1.0 - bs * h.exp_m1() * 0.25;
        let mut x = vec![1.0];
        exponential(&Cos, &mut net(), &mut x, &ctx(t, t - s, 0, 4)).unwrap();
        assert!((x[0] - want).abs() < 1e-9, "{} vs {want}", x[0]);
        let mut y = vec![1.0];
        ddim(&Cos, &mut net(), &mut y, 1, &ctx(t, t - s, 0, 4)).unwrap();
        assert!((x[0] - y[0]).abs() < 1e-6);
    }

    #[test]
    fn dpmpp_2m_second_step_is_the_hand_computed_update() {
        let ts = [0.9, 0.6, 0.3];
        let mut x = vec![1.0];
        let mut c = ctx(ts[0], ts[0] - ts[1], 0, 30);
        dpmpp_2m(&Cos, &mut net(), &mut x, &mut c).unwrap();
        // First step: first order, x_s = (σ_s/σ_t) x_t − α_s (e^{−h} − 1) x̂0.
        let (a0, _, b0) = Cos.marginal_at(ts[0]);
        let (a1, _, b1) = Cos.marginal_at(ts[1]);
        let (a2, _, b2) = Cos.marginal_at(ts[2]);
        let (l0, l1, l2) = (
            half_log_snr(a0, b0),
            half_log_snr(a1, b1),
            half_log_snr(a2, b2),
        );
        let d0 = (1.0 - b0 * 0.25) / a0;
        let x1 = b1 / b0 * 1.0 - a1 * ((-(l1 - l0)).exp() - 1.0) * d0;
        assert!((x[0] - x1).abs() < 1e-9);
        (c.t, c.h, c.k) = (ts[1], ts[1] - ts[2], 1);
        dpmpp_2m(&Cos, &mut net(), &mut x, &mut c).unwrap();
        let d1 = (x1 - b1 * 0.25) / a1;
        let (h, hp) = (l2 - l1, l1 - l0);
        let r = hp / h;
        let d = (1.0 + 0.5 / r) * d1 - 0.5 / r * d0;
        let x2 = b2 / b1 * x1 - a2 * ((-h).exp() - 1.0) * d;
        assert!((x[0] - x2).abs() < 1e-9, "{} vs {x2}", x[0]);
    }

    #[test]
    fn dpmpp_2m_lands_on_x0_where_sigma_is_zero() {
        let mut x = vec![1.0];
        let mut c = ctx(0.2, 0.2, 1, 2);
        c.history = Some((0.0, vec![5.0]));
        dpmpp_2m(&Cos, &mut net(), &mut x, &mut c).unwrap();
        let (a, _, b) = Cos.marginal_at(0.2);
        assert!((x[0] - (1.0 - b * 0.25) / a).abs() < 1e-9);
    }
}

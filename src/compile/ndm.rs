//! Neural Diffusion Models (Bartosh, Vetrov, Naesseth, arXiv 2310.08337): a learned transform
//! F_φ(x, t) inside the forward marginal, q(z_t | x) = N(α_t F_φ(x, t), σ_t² I).
//!
//! Training minimises the continuous-time negative ELBO (nats per datapoint, divided by D):
//! - L_diff = ∫ ½ SNR(t) γ'(t) ‖ΔF − Δ∂_tF / γ'(t)‖² dt over [t_min, T], with γ = −log SNR,
//!   ΔF = F(x, t) − F(x̂, t) and Δ∂_tF the same difference of the time derivatives, x̂ held fixed
//!   (`../shared/ndm_tdjd_verified.md` §A.2, verified against the discrete KL sum). The integral
//!   is estimated by importance sampling t uniformly in γ: t = γ⁻¹(u), weight Γ/γ'(t),
//!   Γ = γ(T) − γ(t_min), so the estimator is ½ Γ SNR(t) ‖…‖², well scaled at every t.
//! - L_rec = E −log N(x; z_{t_min}/α, σ²/α²) = ½ SNR(t_min)‖x − F(x, t_min)‖² + D/2 (1 + log 2π/SNR(t_min)):
//!   keeps F informative (without it F collapses to a constant and L_diff vanishes).
//! - L_prior = KL(N(α_T F(x, T), σ_T²) ‖ N(0, I)) in closed form.
//!
//! With no transform (F = identity) the same code computes the VDM continuous-time ELBO of the
//! Gaussian process with the same α_t, σ_t; the Gaussian family uses it for its NLL.
//!
//! ∂_tF comes from the module's time-tangent pass ([`crate::nn::Module::forward_with_time_tangent`]),
//! so backprop trains φ through both F and ∂_tF.

use super::family::{
    ExplainContext, Family, FamilyKind, LossError, Nets, SampleNets, TimeSpan, TrainBatch,
};
use super::gaussian::column;
use super::sampler::SamplerError;
use super::{Solver, TimeGrid};
use crate::ir::{Expr, Target, TransformForm};
use crate::rng::{stream, Purpose};
use candle_core::{Tensor, D};
use rand::Rng;
use rand_distr::StandardNormal;

/// α_t, σ_t and their time derivatives at one time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SchedulePoint {
    pub alpha: f64,
    pub sigma: f64,
    pub dalpha: f64,
    pub dsigma: f64,
}

impl SchedulePoint {
    pub fn snr(&self) -> f64 {
        (self.alpha / self.sigma).powi(2)
    }
    /// γ'(t) = d(−log SNR)/dt = 2σ'/σ − 2α'/α.
    pub fn gamma_rate(&self) -> f64 {
        2.0 * self.dsigma / self.sigma - 2.0 * self.dalpha / self.alpha
    }
    /// γ(t) = log σ² − log α².
    pub fn gamma(&self) -> f64 {
        2.0 * (self.sigma.ln() - self.alpha.ln())
    }
}

/// The noise schedule of the marginal: α_t, σ_t as expressions with their derivatives.
#[derive(Clone, Debug)]
pub struct Schedule {
    pub alpha: Expr,
    pub sigma: Expr,
    dalpha: Expr,
    dsigma: Expr,
}

impl Schedule {
    pub fn new(alpha: &Expr, sigma: &Expr) -> Schedule {
        use crate::ir::symbolic::{diff, simplify};
        Schedule {
            alpha: alpha.clone(),
            sigma: sigma.clone(),
            dalpha: simplify(&diff(alpha, crate::ir::Var::T)),
            dsigma: simplify(&diff(sigma, crate::ir::Var::T)),
        }
    }
    pub fn at(&self, t: f64) -> SchedulePoint {
        SchedulePoint {
            alpha: self.alpha.eval_t(t),
            sigma: self.sigma.eval_t(t),
            dalpha: self.dalpha.eval_t(t),
            dsigma: self.dsigma.eval_t(t),
        }
    }
}

/// γ(t) tabulated on [t_min, T] for drawing t uniformly in γ (and for log-SNR grids).
#[derive(Clone, Debug)]
pub struct GammaTable {
    t: Vec<f64>,
    gamma: Vec<f64>,
}

/// Why a schedule cannot be used by the NDM objective.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ScheduleError {
    #[error("at t = {t}: α = {alpha}, σ = {sigma}; the NDM objective needs α > 0 and σ > 0 on [t_min, T] (raise `loss.t_min` if σ = 0 at the start)")]
    NotPositive { t: f64, alpha: f64, sigma: f64 },
    #[error("the signal-to-noise ratio α²/σ² must decrease in t, but it does not at t = {t} (γ' = {rate})")]
    NotDecreasing { t: f64, rate: f64 },
}

impl GammaTable {
    const N: usize = 2048;

    pub fn new(s: &Schedule, t_min: f64, t1: f64) -> Result<GammaTable, ScheduleError> {
        let mut t = Vec::with_capacity(Self::N + 1);
        let mut gamma = Vec::with_capacity(Self::N + 1);
        for i in 0..=Self::N {
            let ti = t_min + (t1 - t_min) * i as f64 / Self::N as f64;
            let p = s.at(ti);
            let positive = |v: f64| v > 0.0 && v.is_finite();
            if !(positive(p.alpha) && positive(p.sigma)) {
                return Err(ScheduleError::NotPositive {
                    t: ti,
                    alpha: p.alpha,
                    sigma: p.sigma,
                });
            }
            let rate = p.gamma_rate();
            if !(rate.is_finite() && rate > 0.0) {
                return Err(ScheduleError::NotDecreasing { t: ti, rate });
            }
            t.push(ti);
            gamma.push(p.gamma());
        }
        Ok(GammaTable { t, gamma })
    }

    /// Γ = γ(T) − γ(t_min).
    pub fn span(&self) -> f64 {
        self.gamma[Self::N] - self.gamma[0]
    }

    /// t with γ(t) = γ(t_min) + u·Γ: bisection in the table, then Newton steps on the exact γ,
    /// kept inside the bracket (so the density of t is exactly γ'(t)/Γ up to rounding).
    pub fn inverse(&self, s: &Schedule, u: f64) -> f64 {
        let g = self.gamma[0] + u.clamp(0.0, 1.0) * self.span();
        let i = self.gamma.partition_point(|v| *v < g).clamp(1, Self::N);
        let (lo, hi) = (self.t[i - 1], self.t[i]);
        let (g0, g1) = (self.gamma[i - 1], self.gamma[i]);
        let mut t = if g1 > g0 {
            lo + (hi - lo) * (g - g0) / (g1 - g0)
        } else {
            lo
        };
        for _ in 0..3 {
            let p = s.at(t);
            let next = t - (p.gamma() - g) / p.gamma_rate();
            if !next.is_finite() {
                break;
            }
            t = next.clamp(lo, hi);
        }
        t
    }
}

/// How the reconstruction term L_rec = −E log p(x | z_{t_min}) reads the data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decoder {
    /// Continuous data: p(x | z) = N(x; z/α, σ²/α²) at t_min, a density: the bound is in nats
    /// per dimension of a density, not comparable with a discrete likelihood.
    Gaussian,
    /// Data on `levels` equally spaced values x_k = −1 + 2k/(levels − 1) of [−1, 1] (8-bit
    /// images: 256; the 8×8 digits: 17): p(x_d = x_k | z) ∝ exp(−½ SNR(t_min) (z_d/α − x_k)²)
    /// per coordinate (VDM's decoder), a probability, so the bound is a discrete negative
    /// log-likelihood (bits per dimension after dividing by ln 2), no dequantisation.
    Discrete { levels: usize },
}

/// A compiled Neural Diffusion Model (or, with `form = None`, the Gaussian process with the
/// same schedule seen through the same objective).
pub struct Ndm {
    time: TimeSpan,
    dim: usize,
    target: Target,
    decoder: Decoder,
    /// How F is built from the transform network; `None` is the identity (no network).
    form: Option<TransformForm>,
    schedule: Schedule,
    table: GammaTable,
}

/// Per-sample draws: times, the noise of z_t and (discrete decoder) the noise of z_{t_min}.
struct NdmDraws {
    t: Vec<f64>,
    eps: Vec<f32>,
    eps0: Vec<f32>,
}

/// The three ELBO terms of each sample of a batch, nats per datapoint, as `[B]` tensors.
pub struct ElboTerms {
    pub diff: Tensor,
    pub rec: Tensor,
    pub prior: Tensor,
}

impl ElboTerms {
    /// The per-sample negative ELBO (nats per datapoint).
    pub fn total(&self) -> Result<Tensor, candle_core::Error> {
        (&self.diff + &self.rec)?.add(&self.prior)
    }
}

impl Ndm {
    /// (t, ε) draws per held-out point in [`Self::nelbo_per_dim`].
    pub const ELBO_DRAWS: usize = 4;

    pub fn new(
        schedule: Schedule,
        target: Target,
        form: Option<TransformForm>,
        time: TimeSpan,
        dim: usize,
    ) -> Result<Ndm, ScheduleError> {
        let table = GammaTable::new(&schedule, time.t_min, time.t1)?;
        Ok(Ndm {
            time,
            dim,
            target,
            decoder: Decoder::Gaussian,
            form,
            schedule,
            table,
        })
    }

    pub fn form(&self) -> Option<TransformForm> {
        self.form
    }

    /// The same model with another reconstruction decoder (discrete data).
    pub fn with_decoder(mut self, decoder: Decoder) -> Self {
        self.decoder = decoder;
        self
    }

    pub fn decoder(&self) -> Decoder {
        self.decoder
    }

    /// F and ∂_tF of the rows `x` at per-row network times `tau` (`[R]`): one tangent pass.
    fn transform(
        &self,
        nets: &Nets,
        x: &Tensor,
        tau: &[f32],
    ) -> Result<(Tensor, Tensor), LossError> {
        let Some(form) = self.form else {
            return Ok((x.clone(), x.zeros_like()?));
        };
        let net = nets.transform.ok_or(LossError::MissingNet("transform"))?;
        let tt = Tensor::from_slice(tau, tau.len(), x.device())?;
        let (v, dv) = net.forward_with_time_tangent(x, &tt)?;
        let tc = column(tau, x)?;
        let rate = self.time.net_time_rate();
        // ∂_tF = ∂_τF · dτ/dt.
        let (f, df) = match form {
            TransformForm::Interpolate => {
                // F = x + τ (NN − x); ∂_τF = NN − x + τ ∂_τNN.
                let d = (&v - x)?;
                let f = (x + d.broadcast_mul(&tc)?)?;
                let df = (d + dv.broadcast_mul(&tc)?)?;
                (f, df)
            }
            TransformForm::Residual => {
                // F = x + τ NN; ∂_τF = NN + τ ∂_τNN.
                let f = (x + v.broadcast_mul(&tc)?)?;
                let df = (&v + dv.broadcast_mul(&tc)?)?;
                (f, df)
            }
            TransformForm::Identity => return Ok((x.clone(), x.zeros_like()?)),
        };
        Ok((f, (df * rate)?))
    }

    /// F of the rows `x` at per-row network times `tau`, without the tangent.
    fn transform_value(&self, nets: &Nets, x: &Tensor, tau: &[f32]) -> Result<Tensor, LossError> {
        let form = match self.form {
            None | Some(TransformForm::Identity) => return Ok(x.clone()),
            Some(f) => f,
        };
        let net = nets.transform.ok_or(LossError::MissingNet("transform"))?;
        let tt = Tensor::from_slice(tau, tau.len(), x.device())?;
        let v = net.forward(x, &tt)?;
        let tc = column(tau, x)?;
        Ok(match form {
            TransformForm::Interpolate => (x + (&v - x)?.broadcast_mul(&tc)?)?,
            TransformForm::Residual => (x + v.broadcast_mul(&tc)?)?,
            TransformForm::Identity => x.clone(),
        })
    }

    fn draws(&self, b: usize, per: usize, seed: u64, step: u64, purpose: Purpose) -> NdmDraws {
        let discrete = matches!(self.decoder, Decoder::Discrete { .. });
        let mut d = NdmDraws {
            t: Vec::with_capacity(b),
            eps: Vec::with_capacity(b * per),
            eps0: Vec::with_capacity(if discrete { b * per } else { 0 }),
        };
        for i in 0..b {
            let mut rng = stream(seed, purpose, step, i as u64);
            let u: f64 = rng.random();
            d.t.push(self.table.inverse(&self.schedule, u));
            for _ in 0..per {
                d.eps.push(rng.sample::<f64, _>(StandardNormal) as f32);
            }
            // Drawn after t and ε, so the continuous decoder's streams are unchanged.
            if discrete {
                for _ in 0..per {
                    d.eps0.push(rng.sample::<f64, _>(StandardNormal) as f32);
                }
            }
        }
        d
    }

    /// The ELBO terms of clean data `x0` (`[B, …]`) at the given times and noise (`eps` has
    /// x0's element count), with t drawn by the γ-uniform importance law (L_diff's weight
    /// Γ/γ'(t) is applied here).
    pub fn terms_at(
        &self,
        nets: &Nets,
        x0: &Tensor,
        t: &[f64],
        eps: &[f32],
    ) -> Result<ElboTerms, LossError> {
        self.terms_with(nets, x0, t, eps, &[])
    }

    /// [`Self::terms_at`] with the noise `eps0` of z_{t_min} (x0's element count) that the
    /// discrete decoder's L_rec averages over (unused by the Gaussian decoder, whose L_rec is
    /// in closed form).
    pub fn terms_with(
        &self,
        nets: &Nets,
        x0: &Tensor,
        t: &[f64],
        eps: &[f32],
        eps0: &[f32],
    ) -> Result<ElboTerms, LossError> {
        let b = x0.dim(0)?;
        let d = (x0.elem_count() / b.max(1)) as f64;
        let dev = x0.device();
        let tau: Vec<f32> = t.iter().map(|&t| self.time.net_time(t)).collect();
        let (t_min, t1) = (self.time.t_min, self.time.t1);
        let (p0, p1) = (self.schedule.at(t_min), self.schedule.at(t1));
        // F and ∂_tF of x at t (tangent pass); F of x at t_min and at T (plain pass, 2B rows).
        let (f_t, df_t) = self.transform(nets, x0, &tau)?;
        let ends = Tensor::cat(&[x0, x0], 0)?;
        let mut taus = vec![self.time.net_time(t_min); b];
        taus.extend(std::iter::repeat_n(self.time.net_time(t1), b));
        let f_ends = self.transform_value(nets, &ends, &taus)?;
        let f_0 = f_ends.narrow(0, 0, b)?;
        let f_1 = f_ends.narrow(0, b, b)?;

        let pts: Vec<SchedulePoint> = t.iter().map(|&t| self.schedule.at(t)).collect();
        let f32s = |f: &dyn Fn(&SchedulePoint) -> f64| -> Vec<f32> {
            pts.iter().map(|p| f(p) as f32).collect()
        };
        let a = column(&f32s(&|p| p.alpha), x0)?;
        let s = column(&f32s(&|p| p.sigma), x0)?;
        let eps = Tensor::from_slice(eps, x0.shape(), dev)?;
        let z = (f_t.broadcast_mul(&a)? + eps.broadcast_mul(&s)?)?;
        let tt = Tensor::from_slice(&tau, b, dev)?;
        let out = nets.score_net()?.forward(&z, &tt)?;
        let xhat = match self.target {
            Target::Eps => (z - out.broadcast_mul(&s)?)?.broadcast_div(&a)?,
            Target::X0 => out,
            Target::Score => {
                return Err(LossError::Target {
                    t: t.first().copied().unwrap_or(0.0),
                    what: "the NDM objective predicts ε or x̂, not the score".into(),
                })
            }
        };
        let (f_h, df_h) = self.transform(nets, &xhat, &tau)?;
        let inv_rate = column(&f32s(&|p| 1.0 / p.gamma_rate()), x0)?;
        let r = ((f_t - f_h)? - (df_t - df_h)?.broadcast_mul(&inv_rate)?)?;
        let span = self.table.span();
        let coef = f32s(&|p| 0.5 * span * p.snr());
        let coef = Tensor::from_slice(&coef, b, dev)?;
        let diff = (sum_rows(&r.sqr()?)? * coef)?;

        let snr0 = p0.snr();
        let rec = match self.decoder {
            Decoder::Gaussian => {
                let rec_const = 0.5 * d * (1.0 + (2.0 * std::f64::consts::PI / snr0).ln());
                ((sum_rows(&(x0 - &f_0)?.sqr()?)? * (0.5 * snr0))? + rec_const)?
            }
            Decoder::Discrete { levels } => {
                if eps0.len() != x0.elem_count() {
                    return Err(LossError::Target {
                        t: t_min,
                        what: format!(
                            "the discrete decoder needs {} noise values for z_t_min, got {}",
                            x0.elem_count(),
                            eps0.len()
                        ),
                    });
                }
                let eps0 = Tensor::from_slice(eps0, x0.shape(), dev)?.to_dtype(f_0.dtype())?;
                // z_{t_min}/α = F(x, t_min) + (σ/α) ε₀.
                let u = (&f_0 + (eps0 * (p0.sigma / p0.alpha))?)?;
                discrete_nll(&u, x0, levels, snr0)?
            }
        };
        let s1 = p1.sigma * p1.sigma;
        let prior_const = 0.5 * d * (s1 - 1.0 - s1.ln());
        let prior = ((sum_rows(&f_1.sqr()?)? * (0.5 * p1.alpha * p1.alpha))? + prior_const)?;
        Ok(ElboTerms { diff, rec, prior })
    }

    /// The ELBO terms of a batch with t and ε from the streams (seed, `purpose`, step, i).
    pub fn terms(
        &self,
        nets: &Nets,
        x0: &Tensor,
        seed: u64,
        step: u64,
        purpose: Purpose,
    ) -> Result<ElboTerms, LossError> {
        let b = x0.dim(0)?;
        let per = x0.elem_count() / b.max(1);
        let draws = self.draws(b, per, seed, step, purpose);
        self.terms_with(nets, x0, &draws.t, &draws.eps, &draws.eps0)
    }

    /// The per-sample negative ELBO of `x0` in nats per dimension, averaged over
    /// [`Self::ELBO_DRAWS`] (t, ε) draws per row (streams with `Purpose::Metric`), evaluated in
    /// chunks of 4096 rows.
    pub fn nelbo_per_dim(
        &self,
        nets: &Nets,
        x0: &Tensor,
        seed: u64,
    ) -> Result<Vec<f64>, LossError> {
        let n = x0.dim(0)?;
        let d = (x0.elem_count() / n.max(1)) as f64;
        let mut out = vec![0.0; n];
        for k in 0..Self::ELBO_DRAWS {
            let mut start = 0;
            while start < n {
                let len = 4096.min(n - start);
                let part = x0.narrow(0, start, len)?;
                let per = part.elem_count() / len;
                let key = (k * n + start) as u64;
                let draws = self.draws(len, per, seed, key, Purpose::Metric);
                let total = self
                    .terms_with(nets, &part, &draws.t, &draws.eps, &draws.eps0)?
                    .total()?;
                let total = total.to_dtype(candle_core::DType::F64)?.to_vec1::<f64>()?;
                for (o, v) in out[start..start + len].iter_mut().zip(total) {
                    *o += v / (d * Self::ELBO_DRAWS as f64);
                }
                start += len;
            }
        }
        Ok(out)
    }

    /// x̂ from the score network's output at the rows `z` (host f64).
    fn denoise(&self, out: &[f32], z: &[f64], p: &SchedulePoint, xhat: &mut [f64]) {
        for i in 0..z.len() {
            xhat[i] = match self.target {
                Target::Eps => (z[i] - p.sigma * out[i] as f64) / p.alpha,
                // (Score is refused when the family is built.)
                Target::X0 | Target::Score => out[i] as f64,
            };
        }
    }

    /// F(x̂, t) (and ∂_tF when `tangent`) on the host from the transform network.
    fn host_transform(
        &self,
        nets: &mut SampleNets,
        x: &[f64],
        t: f64,
        tangent: bool,
    ) -> Result<(Vec<f64>, Vec<f64>), SamplerError> {
        let Some(form) = self.form else {
            return Ok((x.to_vec(), vec![0.0; x.len()]));
        };
        let f = nets.transform.as_mut().ok_or_else(|| {
            SamplerError::Network("this process needs its transform network".into())
        })?;
        let xf: Vec<f32> = x.iter().map(|v| *v as f32).collect();
        let (v, dv) = f(&xf, t, tangent).map_err(SamplerError::Network)?;
        if v.len() != x.len() || (tangent && dv.len() != x.len()) {
            return Err(SamplerError::Network(format!(
                "the transform returned {} numbers for {} inputs",
                v.len(),
                x.len()
            )));
        }
        let tau = self.time.net_time(t) as f64;
        let rate = self.time.net_time_rate();
        let mut fx = vec![0.0; x.len()];
        let mut dfx = vec![0.0; if tangent { x.len() } else { 0 }];
        for i in 0..x.len() {
            let (vi, xi) = (v[i] as f64, x[i]);
            match form {
                TransformForm::Interpolate => {
                    fx[i] = xi + tau * (vi - xi);
                    if tangent {
                        dfx[i] = rate * (vi - xi + tau * dv[i] as f64);
                    }
                }
                TransformForm::Residual => {
                    fx[i] = xi + tau * vi;
                    if tangent {
                        dfx[i] = rate * (vi + tau * dv[i] as f64);
                    }
                }
                TransformForm::Identity => fx[i] = xi,
            }
        }
        Ok((fx, dfx))
    }

    fn predict(
        &self,
        nets: &mut SampleNets,
        z: &[f64],
        t: f64,
    ) -> Result<(Vec<f64>, SchedulePoint), SamplerError> {
        let p = self.schedule.at(t);
        let zf: Vec<f32> = z.iter().map(|v| *v as f32).collect();
        let out = (nets.score_fn()?)(&zf, t).map_err(SamplerError::Network)?;
        if out.len() != z.len() {
            return Err(SamplerError::Network(format!(
                "the network returned {} numbers for {} inputs",
                out.len(),
                z.len()
            )));
        }
        let mut xhat = vec![0.0; z.len()];
        self.denoise(&out, z, &p, &mut xhat);
        Ok((xhat, p))
    }

    /// The posterior step z_s ~ q(z_s | z_t, x̂) with s = t − h; at the last step (s = t_min)
    /// the sample is x̂ itself.
    #[allow(clippy::too_many_arguments)]
    fn ancestral(
        &self,
        nets: &mut SampleNets,
        z: &mut [f64],
        t: f64,
        h: f64,
        seed: u64,
        k: usize,
    ) -> Result<(), SamplerError> {
        let s = t - h;
        let (xhat, pt) = self.predict(nets, z, t)?;
        if s <= self.time.t_min + 1e-12 * (self.time.t1 - self.time.t0) {
            z.copy_from_slice(&xhat);
            return Ok(());
        }
        let ps = self.schedule.at(s);
        let (fs, _) = self.host_transform(nets, &xhat, s, false)?;
        let (ft, _) = self.host_transform(nets, &xhat, t, false)?;
        let (s2t, s2s) = (pt.sigma * pt.sigma, ps.sigma * ps.sigma);
        let ratio = pt.alpha / ps.alpha;
        let var_ts = (s2t - ratio * ratio * s2s).max(0.0);
        let var = var_ts * s2s / s2t;
        let c = (s2s - var).max(0.0).sqrt() / pt.sigma;
        let sd = var.sqrt();
        let d = self.dim;
        for (i, row) in z.chunks_mut(d).enumerate() {
            let mut rng = stream(seed, Purpose::Sample, 1 + k as u64, i as u64);
            for (j, zj) in row.iter_mut().enumerate() {
                let q = i * d + j;
                let xi: f64 = rng.sample(StandardNormal);
                *zj = ps.alpha * fs[q] + c * (*zj - pt.alpha * ft[q]) + sd * xi;
            }
        }
        Ok(())
    }

    /// Euler step of the generative ODE dz/dt = α'F + α∂_tF + (σ'/σ)(z − αF) at x̂ (or, with
    /// `noise`, of the reverse SDE with drift f − ½g²∇log q, g² = σ²γ').
    #[allow(clippy::too_many_arguments)]
    fn euler(
        &self,
        nets: &mut SampleNets,
        z: &mut [f64],
        t: f64,
        h: f64,
        seed: u64,
        k: usize,
        noise: bool,
    ) -> Result<(), SamplerError> {
        let (xhat, p) = self.predict(nets, z, t)?;
        let (f, df) = self.host_transform(nets, &xhat, t, true)?;
        let g2 = p.sigma * p.sigma * p.gamma_rate();
        let d = self.dim;
        for (i, row) in z.chunks_mut(d).enumerate() {
            let mut rng = noise.then(|| stream(seed, Purpose::Sample, 1 + k as u64, i as u64));
            for (j, zj) in row.iter_mut().enumerate() {
                let q = i * d + j;
                let mean = p.alpha * f[q];
                let mut v = p.dalpha * f[q] + p.alpha * df[q] + p.dsigma / p.sigma * (*zj - mean);
                if let Some(rng) = rng.as_mut() {
                    // The reverse SDE's drift f − ½g² s, s = (αF − z)/σ².
                    v -= 0.5 * g2 * (mean - *zj) / (p.sigma * p.sigma);
                    let xi: f64 = rng.sample(StandardNormal);
                    *zj += -h * v + (g2 * h).sqrt() * xi;
                } else {
                    *zj -= h * v;
                }
            }
        }
        Ok(())
    }
}

/// −log p(x | z) of the discrete decoder per row (`[B]`, nats): `u` = z/α and the data `x0`
/// (values on the grid x_k = −1 + 2k/(levels − 1)), both `[B, …]`; per coordinate
/// −log p = logsumexp_k(−½ snr (u − x_k)²) + ½ snr (u − x)². The data's own level need not
/// be looked up: its logit is −½ snr (u − x)² whatever k it is.
pub fn discrete_nll(
    u: &Tensor,
    x0: &Tensor,
    levels: usize,
    snr: f64,
) -> Result<Tensor, candle_core::Error> {
    let b = x0.dim(0)?;
    let u = u.flatten_from(1)?;
    let x = x0.flatten_from(1)?.to_dtype(u.dtype())?;
    let step = 2.0 / (levels.max(2) - 1) as f64;
    let grid: Vec<f64> = (0..levels).map(|k| -1.0 + step * k as f64).collect();
    let grid = Tensor::new(grid, u.device())?
        .to_dtype(u.dtype())?
        .reshape((1, 1, levels))?;
    let logits = (u.unsqueeze(2)?.broadcast_sub(&grid)?.sqr()? * (-0.5 * snr))?;
    let m = logits.max_keepdim(2)?.detach();
    let lse = (logits.broadcast_sub(&m)?.exp()?.sum_keepdim(2)?.log()? + m)?.squeeze(2)?;
    let own = ((&u - &x)?.sqr()? * (-0.5 * snr))?;
    let nll = (lse - own)?.sum(1)?;
    debug_assert_eq!(nll.dims(), [b]);
    Ok(nll)
}

/// Row sums of a `[B, …]` tensor as `[B]`.
fn sum_rows(x: &Tensor) -> Result<Tensor, candle_core::Error> {
    x.flatten_from(1)?.sum(D::Minus1)
}

impl Family for Ndm {
    fn kind(&self) -> FamilyKind {
        FamilyKind::NeuralDiffusion
    }
    fn time(&self) -> TimeSpan {
        self.time
    }
    fn dim(&self) -> usize {
        self.dim
    }

    fn loss(&self, nets: &Nets, batch: &TrainBatch) -> Result<Tensor, LossError> {
        let terms = self.terms(nets, batch.x0, batch.seed, batch.step, Purpose::TrainNoise)?;
        Ok((terms.total()?.mean_all()? / self.dim as f64)?)
    }

    fn time_grid(
        &self,
        grid: TimeGrid,
        steps: usize,
        t_end: f64,
    ) -> Result<Vec<f64>, SamplerError> {
        let gamma = |t: f64| self.schedule.at(t).gamma();
        super::sampler::gaussian_time_grid(grid, &gamma, self.time.t1, t_end, steps)
    }

    fn nelbo(&self, nets: &Nets, x0: &Tensor, seed: u64) -> Option<Result<Vec<f64>, LossError>> {
        Some(self.nelbo_per_dim(nets, x0, seed))
    }

    fn needs_transform(&self) -> bool {
        self.form.is_some()
    }

    fn decoder_noise(&self) -> Option<(usize, f64)> {
        let Decoder::Discrete { levels } = self.decoder else {
            return None;
        };
        let p = self.schedule.at(self.time.t_min);
        Some((levels, p.sigma / p.alpha))
    }

    fn apply_transform(
        &self,
        nets: &mut SampleNets,
        x: &[f64],
        t: f64,
    ) -> Option<Result<Vec<f64>, SamplerError>> {
        self.form?;
        Some(self.host_transform(nets, x, t, false).map(|(f, _)| f))
    }

    fn prior(&self, n: usize, seed: u64) -> Vec<f64> {
        let p = self.schedule.at(self.time.t1);
        // N(α_T F(x, T), σ_T²) with α_T F ≈ 0: the standard prior N(0, σ_T²) of the bound's KL.
        let mut out = vec![0f64; n * self.dim];
        for (i, row) in out.chunks_mut(self.dim).enumerate() {
            let mut rng = stream(seed, Purpose::Sample, 0, i as u64);
            for o in row {
                let z: f64 = rng.sample(StandardNormal);
                *o = p.sigma * z;
            }
        }
        out
    }

    fn solvers(&self) -> &'static [Solver] {
        &[Solver::Ancestral, Solver::OdeEuler, Solver::EulerMaruyama]
    }

    fn step(
        &self,
        solver: Solver,
        nets: &mut SampleNets,
        x: &mut [f64],
        t: f64,
        h: f64,
        seed: u64,
        k: usize,
    ) -> Result<(), SamplerError> {
        match solver {
            Solver::Ancestral => self.ancestral(nets, x, t, h, seed, k),
            Solver::OdeEuler => self.euler(nets, x, t, h, seed, k, false),
            Solver::EulerMaruyama => self.euler(nets, x, t, h, seed, k, true),
            other => Err(SamplerError::unsupported(other, self.solvers())),
        }
    }

    fn explain(&self, ctx: &ExplainContext) -> String {
        let (a, s) = (&self.schedule.alpha, &self.schedule.sigma);
        let mut out = String::new();
        let form = match self.form {
            Some(TransformForm::Interpolate) => {
                "F(x, t) = (1 − τ)·x + τ·NN_φ(x, τ),  τ = (t − t_0)/(T − t_0)   [F(x, t_0) = x]"
            }
            Some(TransformForm::Residual) => {
                "F(x, t) = x + τ·NN_φ(x, τ),  τ = (t − t_0)/(T − t_0)   [F(x, t_0) = x]"
            }
            Some(TransformForm::Identity) | None => {
                "F(x, t) = x   [no learned transform: the Gaussian process]"
            }
        };
        out += &format!("  transform   {form}\n");
        out += "  marginal    q(z_t | x) = N(α_t F(x, t), σ_t² I)\n";
        out += &format!("              α_t = {a}\n              σ_t = {s}\n");
        out += "              γ(t) = −log SNR(t) = log σ_t² − log α_t²\n";
        let tgt = match self.target {
            Target::Eps => "x̂ = (z_t − σ_t·net(z_t, t))/α_t   [ε-prediction]",
            Target::X0 | Target::Score => "x̂ = net(z_t, t)",
        };
        out += &format!("  prediction  {tgt}\n");
        out += "  loss        −ELBO/D = [L_rec + L_diff + L_prior]/D  (nats per dimension; unweighted: the ELBO trains φ)\n";
        out += "              L_diff = ∫ ½ SNR γ' ‖ΔF − Δ∂_tF/γ'‖² dt,  ΔF = F(x, t) − F(x̂, t),  ∂_tF by the module's time-tangent pass\n";
        out += &format!(
            "              t drawn uniformly in γ on [t_min, T] = [{}, {}]: weight Γ/γ'(t), Γ = {:.4}\n",
            self.time.t_min,
            self.time.t1,
            self.table.span()
        );
        match self.decoder {
            Decoder::Gaussian => out += "              L_rec = ½ SNR(t_min) ‖x − F(x, t_min)‖² + D/2 (1 + log 2π/SNR(t_min))   [Gaussian decoder N(z/α, σ²/α²)]\n",
            Decoder::Discrete { levels } => out += &format!(
                "              L_rec = −E log p(x | z_t_min),  p(x_d = x_k | z) ∝ exp(−½ SNR(t_min) (z_d/α − x_k)²)   [discrete decoder, {levels} levels x_k = −1 + 2k/{}; bits/dim = nats/dim ÷ ln 2]\n",
                levels - 1
            ),
        }
        out += "              L_prior = KL(N(α_T F(x, T), σ_T²) ‖ N(0, I))\n";
        let sampler = match ctx.solver {
            Solver::Ancestral => "z_s ~ q(z_s | z_t, x̂) = N(α_s F(x̂, s) + c (z_t − α_t F(x̂, t)), σ̃²), the last step returns x̂",
            Solver::OdeEuler => "Euler on dz/dt = α'F(x̂, t) + α ∂_tF(x̂, t) + (σ'/σ)(z − α F(x̂, t))",
            Solver::EulerMaruyama => "Euler–Maruyama on the reverse SDE, drift f − ½g²∇log q, g² = σ²γ'",
            Solver::OdeHeun
            | Solver::ExponentialOde
            | Solver::ExponentialSde
            | Solver::Ddim
            | Solver::DpmSolverPp2m
            | Solver::ExponentialOde2m => {
                "(not supported by this family)"
            }
        };
        out += &format!(
            "  sampler     {}: {sampler}; {} steps from T to t_min; prior N(0, σ_T² I)\n",
            ctx.solver.name(),
            ctx.steps
        );
        out
    }
}

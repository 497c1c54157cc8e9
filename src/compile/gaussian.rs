//! Gaussian processes: linear SDEs dx = (a(t) x + b(t)) dt + g(t) dW and explicit marginals
//! `mean = alpha(t)·x`, `std = sigma(t)`. q(x_t | x_0) = N(m_t x_0 + c_t, s_t² I); the network
//! regresses ε, x_0 or the score. The solvers that evaluate the SDE's drift are offered only
//! where it stays finite and tame on [t_min, T]; those written in m_t, s_t alone (DDIM,
//! DPM-Solver++(2M), the exponential ODE) wherever x̂0 and ε̂ can be formed (see
//! [`crate::ir::singular`]).

use super::family::{
    ExplainContext, Family, FamilyKind, LossError, Nets, SampleNets, TimeSpan, TrainBatch,
};
use super::marginal_solver::{self, Denoiser};
use super::sampler::{SamplerError, StepContext};
use super::solver::{self, Coefficients, LinearReverse};
use super::{Solver, TimeGrid};
use crate::ir::marginal::Marginal;
use crate::ir::{Expr, Target};
use crate::rng::{stream, Purpose};
use candle_core::Tensor;
use rand::Rng;
use rand_distr::StandardNormal;

/// The time weighting of a Gaussian family's loss.
#[derive(Clone, Debug, PartialEq)]
pub enum LossWeight {
    /// The spec's `weight(t)` (1 when a target other than the score declares none).
    Declared(Expr),
    /// s_t², the default of `target = score`: score_sde's λ(t) = σ_t² (Song et al. 2021,
    /// eq. 7), under which ‖net + ε/s_t‖² weighs every t like the ε loss. Unweighted, the
    /// 1/s_t² of small times dominates and a VE run never denoises.
    Variance,
}

impl LossWeight {
    /// The weighting `loss` asks of a Gaussian family.
    pub fn of(loss: &crate::ir::LossSpec) -> LossWeight {
        match (loss.weight_given, loss.target) {
            (false, Target::Score) => LossWeight::Variance,
            (true, _) | (false, Target::Eps | Target::X0) => {
                LossWeight::Declared(loss.weight.clone())
            }
        }
    }
}

pub struct Gaussian {
    pub marginal: Marginal,
    pub target: Target,
    time: TimeSpan,
    dim: usize,
    a: Expr,
    b: Expr,
    g: Expr,
    weight: LossWeight,
    /// The solvers offered (see [`Gaussian::offered`]).
    solvers: &'static [Solver],
    /// The same schedule seen as an NDM with F = identity: the VDM continuous-time ELBO, for
    /// the likelihood bound (where m_t, s_t have closed forms, c_t = 0 and the target is ε or x_0).
    elbo: Option<super::ndm::Ndm>,
    /// EDM's σ_data when the network is preconditioned (`loss { precondition = edm }`).
    precondition: Option<f64>,
}

/// EDM's preconditioning at one time, written in m_t, s_t so that it stays finite where
/// m_t = 0 (σ̃ = s_t/m_t = ∞): with q = s² + m²σ_d², the network input is c_in·(x − c) and
/// x̂0 = skip·(x − c) + out·F, where c_in = 1/√q, skip = σ_d² m / q (= c_skip/m) and
/// out = σ_d s/√q (= c_out).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EdmScaling {
    pub offset: f64,
    pub c_in: f64,
    pub skip: f64,
    pub out: f64,
}

impl EdmScaling {
    pub fn at(m: f64, c: f64, s: f64, sigma_data: f64) -> EdmScaling {
        let sd2 = sigma_data * sigma_data;
        let q = (s * s + m * m * sd2).max(1e-300);
        EdmScaling {
            offset: c,
            c_in: 1.0 / q.sqrt(),
            skip: sd2 * m / q,
            out: sigma_data * s / q.sqrt(),
        }
    }
}

impl Gaussian {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        marginal: Marginal,
        target: Target,
        time: TimeSpan,
        dim: usize,
        a: Expr,
        b: Expr,
        g: Expr,
        weight: LossWeight,
    ) -> Self {
        let solvers = Gaussian::offered(&marginal, target, &time, &a, &g);
        Gaussian {
            marginal,
            target,
            time,
            dim,
            a,
            b,
            g,
            weight,
            solvers,
            elbo: None,
            precondition: None,
        }
    }

    /// EDM's preconditioning (`loss { precondition = edm }`, checked to come with `target =
    /// x0`). The likelihood bound of [`Gaussian::with_elbo`] calls the bare network, so a
    /// preconditioned family reports none.
    pub fn with_precondition(mut self, loss: &crate::ir::LossSpec) -> Self {
        match loss.precondition {
            crate::ir::Precondition::None => {}
            crate::ir::Precondition::Edm => {
                self.precondition = Some(loss.sigma_data);
                self.elbo = None;
            }
        }
        self
    }

    /// The scaling of the network at time `t`, when it is preconditioned.
    pub fn edm_at(&self, t: f64) -> Option<EdmScaling> {
        let (m, c, s) = self.marginal.at(t);
        self.precondition.map(|sd| EdmScaling::at(m, c, s, sd))
    }

    /// The solvers that never meet an infinite coefficient on [t_min, T] (scanned at 2001
    /// times, both ends included): the drift-based ones where a(t) and g(t) are finite and
    /// |a(t)| (T − t_min) ≤ [`STIFF_DRIFT`](crate::ir::singular::STIFF_DRIFT); the marginal
    /// ones where m_t, s_t are finite, s_t > 0 above t_min and, for an ε or score network,
    /// m_T / s_T ≥ [`ZERO_SNR`](crate::ir::singular::ZERO_SNR) (x̂0 needs a signal to divide by);
    /// below it, DDIM and DPM-Solver++ with an x0 network.
    fn offered(
        marginal: &Marginal,
        target: Target,
        time: &TimeSpan,
        a: &Expr,
        g: &Expr,
    ) -> &'static [Solver] {
        use Solver::*;
        let (lo, hi) = (time.t_min, time.t1);
        let span = hi - lo;
        let mut drift_ok = true;
        let mut marginal_ok = true;
        let a_mid = a.eval_t(lo + 0.5 * span);
        for i in 0..=2000 {
            let t = lo + span * i as f64 / 2000.0;
            let (av, gv) = (a.eval_t(t), g.eval_t(t));
            drift_ok &= !crate::ir::singular::stiff_drift(av, a_mid, span) && gv.is_finite();
            let (m, c, s) = marginal.at(t);
            marginal_ok &= m.is_finite() && c.is_finite() && s.is_finite() && (t <= lo || s > 0.0);
        }
        let (m1, _, s1) = marginal.at(hi);
        let zero_snr = crate::ir::singular::zero_snr(m1, s1);
        let needs_signal = match target {
            Target::Eps | Target::Score => true,
            Target::X0 => false,
        };
        // The marginal solvers: all three; at zero SNR only the data-prediction forms (the
        // exponential ODE's noise form divides by α_t), and those only with an x0 network.
        let marginal_set = match (marginal_ok, zero_snr, needs_signal) {
            (false, _, _) | (true, true, true) => 0,
            (true, true, false) => 1,
            (true, false, _) => 2,
        };
        // The first solver of each list is the default of a spec that names none: Heun where
        // the drift is usable (the best 10-step sampler on both measured specs, within 0.01 of
        // the others at 100 steps; README solver table), else the marginal solvers.
        match (drift_ok, marginal_set) {
            (true, 2) => &[
                OdeHeun,
                OdeEuler,
                EulerMaruyama,
                ExponentialOde,
                ExponentialSde,
                Ddim,
                DpmSolverPp2m,
            ],
            (true, 1) => &[
                OdeHeun,
                OdeEuler,
                EulerMaruyama,
                ExponentialSde,
                Ddim,
                DpmSolverPp2m,
            ],
            (true, _) => &[OdeHeun, OdeEuler, EulerMaruyama, ExponentialSde],
            (false, 2) => &[ExponentialOde, Ddim, DpmSolverPp2m],
            (false, 1) => &[Ddim, DpmSolverPp2m],
            (false, _) => &[],
        }
    }

    /// Attaches the likelihood bound (see the `elbo` field); a schedule the bound cannot use
    /// (σ = 0 at t_min, a non-monotone SNR) leaves the family without one.
    pub fn with_elbo(mut self, decoder: super::ndm::Decoder) -> Self {
        let Some((m, c, s)) = self.marginal.formulas() else {
            return self;
        };
        if c.as_const() != Some(0.0) || !matches!(self.target, Target::Eps | Target::X0) {
            return self;
        }
        let schedule = super::ndm::Schedule::new(&m, &s);
        self.elbo = super::ndm::Ndm::new(schedule, self.target, None, self.time, self.dim)
            .ok()
            .map(|e| e.with_decoder(decoder));
        self
    }
}

/// Per-sample draws of one batch: times, network times, weights and the noise.
pub(super) struct Draws {
    pub t: Vec<f64>,
    pub net_t: Vec<f32>,
    pub weight: Vec<f32>,
    pub uniform_weight: bool,
}

impl Draws {
    /// t_i ~ U(t_min, T) from stream (seed, TrainNoise, step, i), then `fill(i, t_i, rng)`
    /// draws the rest of sample i's noise from the same stream.
    pub fn new(
        time: &TimeSpan,
        weight: &Expr,
        batch: usize,
        seed: u64,
        step: u64,
        fill: impl FnMut(usize, f64, &mut rand_chacha::ChaCha8Rng) -> Result<(), LossError>,
    ) -> Result<Draws, LossError> {
        Draws::weighted(time, |t| weight.eval_t(t), batch, seed, step, fill)
    }

    /// [`Draws::new`] with the weight w(t) given as a function.
    pub fn weighted(
        time: &TimeSpan,
        weight: impl Fn(f64) -> f64,
        batch: usize,
        seed: u64,
        step: u64,
        mut fill: impl FnMut(usize, f64, &mut rand_chacha::ChaCha8Rng) -> Result<(), LossError>,
    ) -> Result<Draws, LossError> {
        let mut d = Draws {
            t: Vec::with_capacity(batch),
            net_t: Vec::with_capacity(batch),
            weight: Vec::with_capacity(batch),
            uniform_weight: true,
        };
        for i in 0..batch {
            let mut rng = stream(seed, Purpose::TrainNoise, step, i as u64);
            let t = time.t_min + (time.t1 - time.t_min) * rng.random::<f64>();
            let w = weight(t);
            fill(i, t, &mut rng)?;
            d.t.push(t);
            d.net_t.push(time.net_time(t));
            d.weight.push(w as f32);
            d.uniform_weight &= w == 1.0;
        }
        Ok(d)
    }

    /// The weighted mean squared error between `out` and `target` (per coordinate).
    pub fn weighted_mse(&self, out: &Tensor, target: &Tensor) -> Result<Tensor, LossError> {
        let diff = (out - target)?;
        if self.uniform_weight {
            return Ok(diff.sqr()?.mean_all()?);
        }
        let sw: Vec<f32> = self.weight.iter().map(|w| w.max(0.0).sqrt()).collect();
        let sw = column(&sw, out)?;
        Ok(diff.broadcast_mul(&sw)?.sqr()?.mean_all()?)
    }
}

/// Per-sample scalars as a `[B, 1, …]` tensor that broadcasts against `like` (`[B, …]`).
pub(super) fn column(values: &[f32], like: &Tensor) -> Result<Tensor, LossError> {
    let mut shape = vec![1usize; like.rank()];
    shape[0] = values.len();
    Ok(Tensor::from_slice(values, shape, like.device())?)
}

impl LinearReverse for Gaussian {
    fn coefficients(&self, t: f64) -> Coefficients {
        let g = self.g.eval_t(t);
        Coefficients {
            a: self.a.eval_t(t),
            b: self.b.eval_t(t),
            k: 0.5 * g * g,
            g2: g * g,
        }
    }

    fn velocity(&self, out: &[f32], x: &[f32], t: f64, u: &mut [f64]) {
        let (m, c, s) = self.marginal.at(t);
        let s = s.max(1e-6);
        for i in 0..out.len() {
            u[i] = match self.target {
                Target::Eps => -(out[i] as f64) / s,
                Target::Score => out[i] as f64,
                Target::X0 => -(x[i] as f64 - m * out[i] as f64 - c) / (s * s),
            };
        }
    }
}

impl Denoiser for Gaussian {
    fn marginal_at(&self, t: f64) -> (f64, f64, f64) {
        self.marginal.at(t)
    }

    fn predict(&self, out: &[f32], x: &[f64], t: f64, x0: &mut [f64], eps: &mut [f64]) {
        let (m, c, s) = self.marginal.at(t);
        for i in 0..out.len() {
            let (o, xi) = (out[i] as f64, x[i]);
            (x0[i], eps[i]) = match self.target {
                Target::Eps => ((xi - c - s * o) / m, o),
                Target::X0 => (o, (xi - c - m * o) / s),
                Target::Score => ((xi - c + s * s * o) / m, -s * o),
            };
        }
    }
}

impl Family for Gaussian {
    fn kind(&self) -> FamilyKind {
        FamilyKind::Gaussian
    }
    fn time(&self) -> TimeSpan {
        self.time
    }
    fn dim(&self) -> usize {
        self.dim
    }
    fn gaussian_marginal(&self) -> Option<&Marginal> {
        Some(&self.marginal)
    }

    fn time_grid(
        &self,
        grid: TimeGrid,
        steps: usize,
        t_end: f64,
    ) -> Result<Vec<f64>, SamplerError> {
        let gamma = |t: f64| {
            let (m, _, s) = self.marginal.at(t);
            2.0 * (s.ln() - m.abs().ln())
        };
        super::sampler::gaussian_time_grid(grid, &gamma, self.time.t1, t_end, steps)
    }

    fn nelbo(&self, nets: &Nets, x0: &Tensor, seed: u64) -> Option<Result<Vec<f64>, LossError>> {
        self.elbo.as_ref().map(|e| e.nelbo_per_dim(nets, x0, seed))
    }

    fn loss(&self, nets: &Nets, batch: &TrainBatch) -> Result<Tensor, LossError> {
        let x0 = batch.x0;
        let b = x0.dim(0)?;
        let per = x0.elem_count() / b.max(1);
        let mut eps = vec![0f32; b * per];
        let (mut m, mut c, mut s) = (vec![0f32; b], vec![0f32; b], vec![0f32; b]);
        let weight = |t: f64| match &self.weight {
            LossWeight::Declared(w) => w.eval_t(t),
            LossWeight::Variance => self.marginal.at(t).2.powi(2),
        };
        let draws = Draws::weighted(
            &self.time,
            weight,
            b,
            batch.seed,
            batch.step,
            |i, t, rng| {
                let (mi, ci, si) = self.marginal.at(t);
                (m[i], c[i], s[i]) = (mi as f32, ci as f32, si as f32);
                for e in &mut eps[i * per..(i + 1) * per] {
                    *e = rng.sample::<f64, _>(StandardNormal) as f32;
                }
                Ok(())
            },
        )?;
        let eps = Tensor::from_vec(eps, x0.shape(), x0.device())?;
        let (m, c, s) = (column(&m, x0)?, column(&c, x0)?, column(&s, x0)?);
        let xt = x0
            .broadcast_mul(&m)?
            .broadcast_add(&c)?
            .add(&eps.broadcast_mul(&s)?)?;
        let t = Tensor::from_vec(draws.net_t.clone(), b, x0.device())?;
        if self.precondition.is_some() {
            // F regresses (x0 − skip·(x_t − c))/out from the input c_in·(x_t − c).
            let k: Vec<EdmScaling> = draws.t.iter().filter_map(|&ti| self.edm_at(ti)).collect();
            let col = |f: fn(&EdmScaling) -> f64| -> Result<Tensor, LossError> {
                let v: Vec<f32> = k.iter().map(|e| f(e) as f32).collect();
                column(&v, x0)
            };
            let (c_in, skip, out) = (col(|e| e.c_in)?, col(|e| e.skip)?, col(|e| e.out)?);
            let centred = xt.broadcast_sub(&c)?;
            let input = centred.broadcast_mul(&c_in)?;
            let target = x0
                .sub(&centred.broadcast_mul(&skip)?)?
                .broadcast_div(&out)?;
            let f = nets.score_net()?.forward(&input, &t)?;
            return draws.weighted_mse(&f, &target);
        }
        let target = match self.target {
            Target::Eps => eps,
            Target::X0 => x0.clone(),
            Target::Score => eps.broadcast_div(&s)?.neg()?,
        };
        let out = nets.score_net()?.forward(&xt, &t)?;
        draws.weighted_mse(&out, &target)
    }

    fn prior(&self, n: usize, seed: u64) -> Vec<f64> {
        let (_, c, s) = self.marginal.at(self.time.t1);
        let mut out = vec![0f64; n * self.dim];
        for (i, row) in out.chunks_mut(self.dim).enumerate() {
            let mut rng = stream(seed, Purpose::Sample, 0, i as u64);
            for o in row {
                let z: f64 = rng.sample(StandardNormal);
                *o = c + s * z;
            }
        }
        out
    }

    fn solvers(&self) -> &'static [Solver] {
        self.solvers
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
        let mut ctx = StepContext::single(t, h, seed, k, k + 2);
        self.step_with(solver, nets, x, &mut ctx)
    }

    fn step_with(
        &self,
        solver: Solver,
        nets: &mut SampleNets,
        x: &mut [f64],
        ctx: &mut StepContext,
    ) -> Result<(), SamplerError> {
        if !self.solvers.contains(&solver) {
            return Err(SamplerError::unsupported(solver, self.solvers));
        }
        let inner = nets.score_fn()?;
        // A preconditioned network is wrapped into the x̂0 denoiser the solvers expect.
        let mut edm_net;
        let net: &mut super::sampler::ScoreFn = match self.precondition {
            None => inner,
            Some(_) => {
                edm_net = |x: &[f32], t: f64| -> Result<Vec<f32>, String> {
                    let Some(e) = self.edm_at(t) else {
                        return inner(x, t);
                    };
                    let input: Vec<f32> = x
                        .iter()
                        .map(|v| ((*v as f64 - e.offset) * e.c_in) as f32)
                        .collect();
                    let f = inner(&input, t)?;
                    Ok(x.iter()
                        .zip(&f)
                        .map(|(v, o)| (e.skip * (*v as f64 - e.offset) + e.out * *o as f64) as f32)
                        .collect())
                };
                &mut edm_net
            }
        };
        let d = self.dim;
        let (t, h, seed, k) = (ctx.t, ctx.h, ctx.seed, ctx.k);
        match solver {
            Solver::OdeEuler => solver::ode_euler(self, net, x, t, h),
            // EDM (Karras et al. 2022, Algorithm 1): no correction on the last step, which
            // would evaluate the network at t_end.
            Solver::OdeHeun if ctx.is_last() => solver::ode_euler(self, net, x, t, h),
            Solver::OdeHeun => solver::ode_heun(self, net, x, t, h),
            Solver::EulerMaruyama => solver::euler_maruyama(self, net, x, d, t, h, seed, k),
            Solver::ExponentialOde => marginal_solver::exponential(self, net, x, ctx),
            Solver::ExponentialSde => solver::exponential(
                self,
                net,
                x,
                d,
                t,
                h,
                seed,
                k,
                Some(&solver::gaussian_exponential_noise),
            ),
            Solver::Ddim => marginal_solver::ddim(self, net, x, d, ctx),
            Solver::DpmSolverPp2m => marginal_solver::dpmpp_2m(self, net, x, ctx),
            // The posterior step is the NDM family's (a Gaussian process trains there with
            // `F = identity` only through its ELBO).
            Solver::Ancestral => Err(SamplerError::unsupported(solver, self.solvers())),
            // A Gaussian marginal's second-order multistep solver is DPM-Solver++(2M).
            Solver::ExponentialOde2m => Err(SamplerError::unsupported(solver, self.solvers())),
        }
    }

    fn explain(&self, ctx: &ExplainContext) -> String {
        let (a, b, g) = (&self.a, &self.b, &self.g);
        let mut s = String::new();
        s += &format!("  forward     dx = (a(t) x + b(t)) dt + g(t) dW,  a(t) = {a},  b(t) = {b},  g(t) = {g}\n");
        match self.marginal.formulas() {
            Some((m, c, sd)) => {
                s += "  marginal    q(x_t | x_0) = N(m_t x_0 + c_t, s_t² I)   [closed form]\n";
                s += &format!(
                    "              m_t = {m}\n              c_t = {c}\n              s_t = {sd}\n"
                );
            }
            None => {
                let (m1, c1, s1) = self.marginal.at(self.time.t1);
                s += "  marginal    q(x_t | x_0) = N(m_t x_0 + c_t, s_t² I)   [no closed form: tabulated at compile time, cubic Hermite]\n";
                s += &format!(
                    "              at t = {}: m = {m1:.6}, c = {c1:.6}, s = {s1:.6}\n",
                    self.time.t1
                );
            }
        }
        // The residual is written with its sign folded: `net + ε / s_t`, not `net − −ε / s_t`.
        let (tgt, residual, conv) = match self.target {
            Target::Eps => ("ε", "net(x_t, t) − ε", "∇log p(x_t) ≈ −net(x_t, t) / s_t"),
            Target::X0 => (
                "x_0",
                "net(x_t, t) − x_0",
                "∇log p(x_t) ≈ −(x_t − m_t net(x_t, t) − c_t) / s_t²",
            ),
            Target::Score => (
                "−ε / s_t",
                "net(x_t, t) + ε / s_t",
                "∇log p(x_t) ≈ net(x_t, t)",
            ),
        };
        s += &format!("  training    t ~ U(t_min, T), ε ~ N(0, I), x_t = m_t x_0 + c_t + s_t ε, target = {tgt}\n");
        let weight = match &self.weight {
            LossWeight::Declared(w) => w.to_string(),
            LossWeight::Variance => "s_t²   (the default for target = score: score_sde's σ_t² weighting; declare `loss { weight(t) = ... }` to change it)".to_string(),
        };
        match self.precondition {
            None => {
                s += &format!("  loss        E[ w(t) ‖{residual}‖² ] / D,  w(t) = {weight}\n");
                s += &format!("  score       {conv}\n");
            }
            Some(sd) => {
                s += &format!("  precondition EDM (Karras et al. 2022), σ_data = {sd}: q = s_t² + m_t² σ_data²,\n");
                s += "              F sees c_in (x_t − c_t), c_in = 1/√q;  x̂0 = skip (x_t − c_t) + c_out F,  skip = σ_data² m_t / q,  c_out = σ_data s_t / √q\n";
                s += &format!("  loss        E[ w(t) ‖F(c_in (x_t − c_t), t) − (x_0 − skip (x_t − c_t)) / c_out‖² ] / D  (EDM's λ(σ)‖x̂0 − x_0‖²),  w(t) = {weight}\n");
                s += "  score       ∇log p(x_t) ≈ −(x_t − m_t x̂0 − c_t) / s_t²\n";
            }
        }
        s += "  reverse ODE dx/dt = a(t) x + b(t) − ½ g(t)² ∇log p(x, t)   (probability flow)\n";
        s += "  reverse SDE dx = [a(t) x + b(t) − g(t)² ∇log p] dt + g(t) dW̄\n";
        s += &format!(
            "  sampler     {}, {} steps from t = T to t_min; prior N(c_T, s_T² I)\n",
            ctx.solver.name(),
            ctx.steps
        );
        let names: Vec<&str> = self.solvers.iter().map(|v| v.name()).collect();
        s += &format!(
            "  solvers     {}   (ddim, dpmpp_2m, exponential_ode use only m_t, s_t; grids: uniform, log_snr, edm, coarse_fine)\n",
            if names.is_empty() { "none: see the singular_end warning".to_string() } else { names.join(", ") }
        );
        s
    }
}

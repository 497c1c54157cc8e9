//! Jump processes: dx = −(θ/2) x dt + √gvar dW + dJ with compound-Poisson jumps. The
//! network regresses the generalized score S_c(Δ_t, t) of the increment Δ_t = x_t − e^{−θt/2} x_0;
//! the reverse dynamics are linear with k = 1. Which target is used (closed form or a
//! compile-time table) is the one thing that varies, behind [`JumpTarget`].

use super::family::{
    ExplainContext, Family, FamilyKind, LossError, Nets, SampleNets, TimeSpan, TrainBatch,
};
use super::gaussian::{column, Draws};
use super::jump::{score::JlScore, JdlTable, JumpError, JumpLaw, JumpSampler};
use super::sampler::{SamplerError, StepContext};
use super::solver::{self, Coefficients, LinearReverse};
use super::{Solver, TimeGrid};
use crate::ir::Expr;
use crate::rng::{stream, Purpose};
use candle_core::Tensor;
use rand_chacha::ChaCha8Rng;

/// The generalized-score target of a jump process.
pub trait JumpTarget: Send + Sync {
    fn kind(&self) -> FamilyKind;
    /// S_c(Δ, t) into `out` (length D); an error where the target is undefined (e.g. outside
    /// a table), never a silent reuse of another value.
    fn target(&self, delta: &[f64], t: f64, out: &mut [f64]) -> Result<(), JumpError>;
    /// How the target is computed, for `difc explain`.
    fn explain(&self) -> String;
}

impl JumpTarget for JlScore {
    fn kind(&self) -> FamilyKind {
        FamilyKind::JumpClosedForm
    }
    fn target(&self, delta: &[f64], t: f64, out: &mut [f64]) -> Result<(), JumpError> {
        self.score_target(delta, t, out)
    }
    fn explain(&self) -> String {
        "  target      generalized score S_c(Δ, t) = ∇𝒱_c / p_c (closed form, Bessel ratios):\n              m = 1: S_c = −λ (σ/√2) Δ̂ [ e^{−θt}/(1 − e^{−θt}) · K_{D/2}(u)/K_{D/2−1}(u) + u/2 ],  u = √2 |Δ| / σ\n              (binomial mixture of such terms for λ/θ = m > 1; Δ = 0, no jump yet: target 0)\n".to_string()
    }
}

impl JumpTarget for JdlTable {
    fn kind(&self) -> FamilyKind {
        FamilyKind::JumpTabulated
    }
    fn target(&self, delta: &[f64], t: f64, out: &mut [f64]) -> Result<(), JumpError> {
        self.score_target(delta, t, out)
    }
    fn explain(&self) -> String {
        let g = self.grid();
        format!(
            "  target      generalized score S_c(Δ, t) = (Δ/|Δ|)·∂_r G2(|Δ|, t) / G1(|Δ|, t): no closed form,\n              tabulated at compile time from its Hankel integrals ({} × {} grid on r ≤ {}, bilinear)\n",
            g.n_r, g.n_t, g.r_max
        )
    }
}

pub struct Jumps {
    pub sampler: JumpSampler,
    pub target: Box<dyn JumpTarget>,
    time: TimeSpan,
    dim: usize,
    weight: Expr,
}

impl Jumps {
    pub fn new(
        sampler: JumpSampler,
        target: Box<dyn JumpTarget>,
        time: TimeSpan,
        dim: usize,
        weight: Expr,
    ) -> Self {
        Jumps {
            sampler,
            target,
            time,
            dim,
            weight,
        }
    }

    /// The noise of one exponential-SDE step from t to t − h: the reverse jumps and Gaussian
    /// part.
    fn reverse_noise(&self, t: f64, h: f64, rng: &mut ChaCha8Rng, row: &mut [f64]) {
        let mut inc = vec![0.0; row.len()];
        if self.sampler.reverse_noise_at(t, h, rng, &mut inc).is_ok() {
            for (o, i) in row.iter_mut().zip(inc) {
                *o += i;
            }
        }
    }
}

impl LinearReverse for Jumps {
    fn coefficients(&self, _t: f64) -> Coefficients {
        let p = self.sampler.params();
        Coefficients {
            a: -0.5 * p.theta,
            b: 0.0,
            k: 1.0,
            g2: p.gvar,
        }
    }
    fn velocity(&self, out: &[f32], _x: &[f32], _t: f64, u: &mut [f64]) {
        for (u, o) in u.iter_mut().zip(out) {
            *u = *o as f64;
        }
    }
}

impl Family for Jumps {
    fn kind(&self) -> FamilyKind {
        self.target.kind()
    }
    fn time(&self) -> TimeSpan {
        self.time
    }
    fn dim(&self) -> usize {
        self.dim
    }

    fn loss(&self, nets: &Nets, batch: &TrainBatch) -> Result<Tensor, LossError> {
        let x0 = batch.x0;
        let b = x0.dim(0)?;
        let per = x0.elem_count() / b.max(1);
        let theta = self.sampler.params().theta;
        let mut delta = vec![0f64; per];
        let mut target = vec![0f64; per];
        let (mut xt_shift, mut tgt) = (vec![0f32; b * per], vec![0f32; b * per]);
        let mut decay = vec![0f32; b];
        let draws = Draws::new(
            &self.time,
            &self.weight,
            b,
            batch.seed,
            batch.step,
            |i, t, rng| {
                let fail = |e: JumpError| LossError::Target {
                    t,
                    what: e.to_string(),
                };
                self.sampler.increment(t, rng, &mut delta).map_err(fail)?;
                self.target.target(&delta, t, &mut target).map_err(fail)?;
                decay[i] = (-0.5 * theta * t).exp() as f32;
                for j in 0..per {
                    xt_shift[i * per + j] = delta[j] as f32;
                    tgt[i * per + j] = target[j] as f32;
                }
                Ok(())
            },
        )?;
        let delta = Tensor::from_vec(xt_shift, x0.shape(), x0.device())?;
        let target = Tensor::from_vec(tgt, x0.shape(), x0.device())?;
        let xt = x0.broadcast_mul(&column(&decay, x0)?)?.add(&delta)?;
        let t = Tensor::from_vec(draws.net_t.clone(), b, x0.device())?;
        let out = nets.score_net()?.forward(&xt, &t)?;
        draws.weighted_mse(&out, &target)
    }

    fn prior(&self, n: usize, seed: u64) -> Vec<f64> {
        let mut out = vec![0f64; n * self.dim];
        for (i, row) in out.chunks_mut(self.dim).enumerate() {
            let mut rng = stream(seed, Purpose::Sample, 0, i as u64);
            if self.sampler.prior(&mut rng, row).is_err() {
                row.fill(0.0);
            }
        }
        out
    }

    fn solvers(&self) -> &'static [Solver] {
        // The first is the default of a spec without `sample { solver }`: the multistep
        // exponential integrator, best measured at 25 and 100 steps (docs/jl_atom.md §5).
        &[
            Solver::ExponentialOde2m,
            Solver::ExponentialOde,
            Solver::ExponentialSde,
            Solver::OdeHeun,
            Solver::OdeEuler,
        ]
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
        let net = nets.score_fn()?;
        let d = self.dim;
        let (t, h, seed, k) = (ctx.t, ctx.h, ctx.seed, ctx.k);
        let noise = |h: f64, _c: &Coefficients, rng: &mut ChaCha8Rng, row: &mut [f64]| {
            self.reverse_noise(t, h, rng, row)
        };
        match solver {
            Solver::OdeEuler => solver::ode_euler(self, net, x, t, h),
            Solver::OdeHeun => solver::ode_heun(self, net, x, t, h),
            // Gaussian increments are the wrong noise for a jump process.
            Solver::EulerMaruyama => Err(SamplerError::unsupported(solver, self.solvers())),
            // The posterior step needs a Gaussian marginal.
            Solver::Ancestral => Err(SamplerError::unsupported(solver, self.solvers())),
            // DDIM and DPM-Solver++ are written in a Gaussian marginal's α_t, σ_t.
            Solver::Ddim | Solver::DpmSolverPp2m => {
                Err(SamplerError::unsupported(solver, self.solvers()))
            }
            Solver::ExponentialOde => solver::exponential(self, net, x, d, t, h, seed, k, None),
            Solver::ExponentialOde2m => {
                solver::exponential_2m(self, net, x, t, h, &mut ctx.history)
            }
            Solver::ExponentialSde => {
                solver::exponential(self, net, x, d, t, h, seed, k, Some(&noise))
            }
        }
    }

    /// The grids that need a −log SNR (`log_snr`, `edm`) use, for a jump process,
    /// γ = ln(e^{λt} − 1), the log-odds that at least one jump has happened (for λ = θ the same curve as the −log SNR of the Gaussian OU
    /// with rate θ). Near t = 0 it is geometric in t: the steps shrink with t where the flow
    /// pushes the last jumped mass into the no-jump atom with a velocity ∝ 1/t.
    fn time_grid(
        &self,
        grid: TimeGrid,
        steps: usize,
        t_end: f64,
    ) -> Result<Vec<f64>, SamplerError> {
        match self.sampler.varying_rate() {
            None => {
                let lambda = self.sampler.params().lambda;
                let gamma = move |t: f64| (lambda * t).exp_m1().ln();
                super::sampler::gaussian_time_grid(grid, &gamma, self.time.t1, t_end, steps)
            }
            Some(rate) => {
                // γ = ln(e^{Λ_t} − 1) with Λ_t = ∫_0^t λ.
                let gamma = move |t: f64| rate.cumulative(t).exp_m1().ln();
                super::sampler::gaussian_time_grid(grid, &gamma, self.time.t1, t_end, steps)
            }
        }
    }

    fn explain(&self, ctx: &ExplainContext) -> String {
        let jp = self.sampler.params();
        let mut s = String::new();
        let rate = match self.sampler.varying_rate() {
            None => format!("rate λ = {}", jp.lambda),
            Some(_) => "time-varying rate λ(t)".to_string(),
        };
        s += &format!(
            "  forward     dx = −(θ/2) x dt + √gvar dW + dJ,  θ = {}, gvar = {}, J compound Poisson with {rate}, amplitudes {}(σ² = {})\n",
            jp.theta, jp.gvar, jp.law.name(), jp.sigma2
        );
        s += "  marginal    x_t = e^{−θt/2} x_0 + Δ_t,  Δ_t = Σ_j A_j e^{−θ(t − τ_j)/2} (+ Gaussian part N(0, gvar(1 − e^{−θt})/θ))\n";
        let m = jp.lambda / jp.theta;
        if let Some(rate) = self.sampler.varying_rate() {
            s += &format!("  rate        {}\n", rate.description());
            s += &format!(
                "              Λ at t = {}: {:.4} expected jumps;  no jump on (0, t) with probability e^{{−Λ_t}}\n",
                self.time.t1,
                rate.cumulative(self.time.t1)
            );
            s += "              sampled with the Poisson count: N ~ Poisson(Λ_t), τ_j of density λ(s)/Λ_t on (0, t) (Λ inverted on 8192 cells)\n";
        } else if jp.law == JumpLaw::Laplace && (m - m.round()).abs() < 1e-9 {
            s += &format!("              sampled exactly: j ~ Binomial({}, 1 − e^{{−θt}}), Δ ~ Laplace(shape j) (atom Δ = 0 with probability e^{{−λt}})\n", m.round());
        } else {
            s += "              sampled with the Poisson count: N ~ Poisson(λt), τ_j ~ U(0, t)\n";
        }
        s += &self.target.explain();
        s += &format!(
            "  loss        E[ w(t) ‖net(x_t, t) − S_c(Δ_t, t)‖² ] / D,  w(t) = {}\n",
            ctx.weight
        );
        s += "  reverse ODE dx/dτ = (θ/2) x + S(x, T − τ)   (probability flow, τ = T − t)\n";
        s += "  exp. ODE    x ← e^{θh/2} x + (2/θ)(e^{θh/2} − 1) S_θ(x, t)\n";
        s += "  exp. SDE    x ← e^{θh/2} x + (4/θ)(e^{θh/2} − 1) S_θ(x, t) + Σ_{jumps in h} A_j e^{θ(h − u_j)/2} (+ √(gvar (e^{θh} − 1)/θ) z)\n";
        if self.sampler.varying_rate().is_some() {
            s += "              the jumps of a step t → t − h: N ~ Poisson(Λ_t − Λ_{t−h}) at forward times s of density λ(s), u = t − s\n";
        }
        s += &format!(
            "  sampler     {}, {} steps; prior {}\n",
            ctx.solver.name(),
            ctx.steps,
            match (self.sampler.varying_rate(), jp.law) {
                (Some(_), _) => "the increment Δ_T over the whole horizon (no stationary law)",
                (None, JumpLaw::Laplace) => "Laplace(shape λ/θ, σ²) (+ N(0, gvar/θ))",
                (None, JumpLaw::Gaussian) =>
                    "the stationary law, drawn as the increment over 2·9 ln 10/θ",
            }
        );
        s
    }
}

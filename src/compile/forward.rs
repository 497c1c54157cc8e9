//! The forward process as the trainer and samplers see it: how to draw x_t given x_0, the
//! regression target, how a network output becomes the reverse-time velocity, and the prior.

use super::jump::{score::JlParams, score::JlScore, JdlTable, JumpParams, JumpSampler, TableGrid};
use super::CompileError;
use crate::ir::marginal::Marginal;
use crate::ir::{self, Amplitude, Expr, Target};
use rand::Rng;
use rand_distr::StandardNormal;

/// Which family of forward process, with what it needs at run time.
pub enum ForwardKind {
    /// Linear SDE or explicit Gaussian marginal: q(x_t|x_0) = N(m x_0 + c, s² I).
    Gaussian { marginal: Marginal, target: Target },
    /// Pure-jump OU with Laplace jumps and integer λ/θ: closed-form generalized score.
    JumpClosedForm {
        sampler: JumpSampler,
        score: Box<JlScore>,
    },
    /// Jumps plus Gaussian noise (2-D): generalized score tabulated at compile time.
    JumpTabulated {
        sampler: JumpSampler,
        table: Box<JdlTable>,
    },
}

/// A compiled forward process.
pub struct Forward {
    pub kind: ForwardKind,
    pub dim: usize,
    pub t0: f64,
    pub t1: f64,
    /// Smallest training time (and default end of sampling).
    pub t_min: f64,
    a: Expr,
    b: Expr,
    g: Expr,
    weight: Expr,
    /// For the description printed by `difc explain`.
    pub summary: String,
}

/// One training example: the noised input and the regression target.
pub struct TrainExample {
    pub t: f64,
    pub weight: f64,
}

/// Refuses, before any data is loaded, the process families the compiler cannot train yet.
pub fn supported(p: &ir::Process) -> Result<(), CompileError> {
    let unsupported = |what: &str| {
        CompileError::new(
            p.loc,
            "difc::compile::unsupported",
            format!("training `{}` is not supported yet: {what}", p.name),
            "difc trains Gaussian processes (linear SDEs or explicit marginals) and OU processes with Laplace jumps",
        )
    };
    if p.delete.is_some() {
        return Err(unsupported("trans-dimensional deletions"));
    }
    if p.transform.is_some() {
        return Err(unsupported("learned transforms (Neural Diffusion Models)"));
    }
    Ok(())
}

impl Forward {
    pub fn new(p: &ir::Process, loss: &ir::LossSpec, dim: usize) -> Result<Forward, CompileError> {
        let (t0, t1) = p.time;
        supported(p)?;
        if let Some(m) = &p.explicit {
            let zero = Expr::Const(0.0);
            let marginal = Marginal::explicit(&m.alpha, &zero, &m.sigma, t0, t1).map_err(|e| {
                CompileError::new(
                    p.loc,
                    "difc::compile::marginal",
                    e.to_string(),
                    "check mean and std",
                )
            })?;
            // An explicit marginal has no SDE; its probability-flow ODE uses the implied linear
            // SDE: a = d log alpha / dt, g² = d sigma²/dt − 2 a sigma².
            let a = crate::ir::symbolic::simplify(&crate::ir::symbolic::diff(
                &m.alpha.clone().ln(),
                ir::Var::T,
            ));
            let s2 = m.sigma.clone() * m.sigma.clone();
            let g2 = crate::ir::symbolic::simplify(
                &(crate::ir::symbolic::diff(&s2, ir::Var::T) - Expr::c(2.0) * a.clone() * s2),
            );
            return Ok(Forward {
                kind: ForwardKind::Gaussian {
                    marginal,
                    target: loss.target,
                },
                dim,
                t0,
                t1,
                t_min: loss.t_min.max(t0),
                a,
                b: Expr::Const(0.0),
                g: g2.sqrt(),
                weight: loss.weight.clone(),
                summary: String::new(),
            });
        }
        let (a, b) = match &p.drift {
            Some(d) => (d.a.clone(), d.b.clone()),
            None => (Expr::Const(0.0), Expr::Const(0.0)),
        };
        let g = p.diffusion.clone().unwrap_or(Expr::Const(0.0));
        let marginal = Marginal::linear_sde(&a, &b, &g, t0, t1).map_err(|e| {
            CompileError::new(
                p.loc,
                "difc::compile::marginal",
                e.to_string(),
                "check drift and diffusion",
            )
        })?;
        let kind = match &p.jumps {
            None => ForwardKind::Gaussian {
                marginal,
                target: loss.target,
            },
            Some(j) => Self::jump_kind(p, j, &a, &b, &g, dim, loss)?,
        };
        Ok(Forward {
            kind,
            dim,
            t0,
            t1,
            t_min: loss.t_min.max(t0),
            a,
            b,
            g,
            weight: loss.weight.clone(),
            summary: String::new(),
        })
    }

    fn jump_kind(
        p: &ir::Process,
        j: &ir::Jumps,
        a: &Expr,
        b: &Expr,
        g: &Expr,
        dim: usize,
        loss: &ir::LossSpec,
    ) -> Result<ForwardKind, CompileError> {
        let err =
            |msg: String, help: &str| CompileError::new(j.loc, "difc::compile::jumps", msg, help);
        let theta = match (a.as_const(), b.as_const()) {
            (Some(a), Some(b)) if a < 0.0 && b == 0.0 => -2.0 * a,
            _ => {
                return Err(err(
                    "jump processes need the OU drift -theta/2 * x with a constant theta > 0"
                        .into(),
                    "write `drift(x, t) = -0.5 * theta * x`",
                ))
            }
        };
        let Some(lambda) = j.constant_rate else {
            return Err(err(
                "jump processes need a constant rate".into(),
                "write `rate(t) = 1.0`",
            ));
        };
        let Amplitude::Laplace { var, shape } = j.amplitude else {
            return Err(err(
                "only Laplace jump amplitudes have a derived score".into(),
                "write `amplitude ~ laplace(var = 1.0)`",
            ));
        };
        if (shape - 1.0).abs() > 1e-12 {
            return Err(err(
                format!("Laplace shape must be 1 for the derived score (found {shape})"),
                "drop `shape` or set `shape = 1`",
            ));
        }
        if loss.target != Target::Eps && loss.target != Target::Score {
            return Err(err(
                "jump processes regress the generalized score".into(),
                "use `loss { target = score }`",
            ));
        }
        let gvar = match g.as_const() {
            Some(v) => v * v,
            None => {
                return Err(err(
                    "the Gaussian part of a jump process must have constant diffusion".into(),
                    "write `diffusion(t) = sqrt(gvar)`",
                ))
            }
        };
        // The forward samplers below assume g² = gvar per unit time with the OU scaling of
        // the Baule model (dx = -θ/2 x dt + sqrt(gvar) dW + dJ).
        let params = JumpParams {
            dim,
            theta,
            lambda,
            sigma2: var,
            gvar,
        };
        let sampler = JumpSampler::new(params)
            .map_err(|e| err(e.to_string(), "check the jump parameters"))?;
        if gvar == 0.0 {
            let ratio = lambda / theta;
            if (ratio - ratio.round()).abs() > 1e-9 || ratio < 0.5 {
                return Err(err(
                    format!("the closed-form generalized score needs rate / theta to be a whole number ≥ 1, found {ratio}"),
                    "set `rate = theta * m` for a whole number m, or add Gaussian noise (`diffusion(t) = ...`) to use the tabulated score (2-D only)",
                ));
            }
            let mut sp = JlParams::new(dim, theta, lambda, var);
            sp.r_min = j.r_min;
            sp.t_min = j.t_min;
            let score =
                JlScore::new(sp).map_err(|e| err(e.to_string(), "check the jump parameters"))?;
            Ok(ForwardKind::JumpClosedForm {
                sampler,
                score: Box::new(score),
            })
        } else {
            if dim != 2 {
                return Err(err(
                    format!("the tabulated jump-diffusion score is only available for 2-D data (found {dim}-D)"),
                    "use the pure-jump model (no diffusion) with rate = m * theta, which has a closed form in any dimension",
                ));
            }
            let mut grid = TableGrid::paper();
            grid.t_max = grid.t_max.max(p.time.1);
            let table = JdlTable::build(&params, grid)
                .map_err(|e| err(e.to_string(), "check the jump parameters"))?;
            Ok(ForwardKind::JumpTabulated {
                sampler,
                table: Box::new(table),
            })
        }
    }

    /// Whether the network output is the generalized score of a jump process.
    pub fn is_jump(&self) -> bool {
        !matches!(self.kind, ForwardKind::Gaussian { .. })
    }

    /// The network's time input for forward time t: normalised to [0, 1].
    pub fn net_time(&self, t: f64) -> f32 {
        ((t - self.t0) / (self.t1 - self.t0)) as f32
    }

    /// Draws one training example for data point `x0` into `xt` and `target` (length D).
    /// `scratch` holds 2·D numbers, reused across calls so the batch loop does not allocate.
    pub fn draw<R: Rng + ?Sized>(
        &self,
        x0: &[f32],
        rng: &mut R,
        xt: &mut [f32],
        target: &mut [f32],
        scratch: &mut [f64],
    ) -> TrainExample {
        let t = self.t_min + (self.t1 - self.t_min) * rng.random::<f64>();
        let weight = self.weight.eval_t(t);
        match &self.kind {
            ForwardKind::Gaussian {
                marginal,
                target: kind,
            } => {
                let (m, c, s) = marginal.at(t);
                for d in 0..self.dim {
                    let eps: f64 = rng.sample(StandardNormal);
                    let x0d = x0[d] as f64;
                    xt[d] = (m * x0d + c + s * eps) as f32;
                    target[d] = match kind {
                        Target::Eps => eps,
                        Target::X0 => x0d,
                        Target::Score => -eps / s,
                    } as f32;
                }
            }
            ForwardKind::JumpClosedForm { sampler, score } => {
                let (delta, out) = scratch.split_at_mut(self.dim);
                self.draw_jump(sampler, x0, t, rng, xt, delta);
                // Lengths match by construction, so the only error (a length mismatch) cannot occur.
                let _ = score.score_target(delta, t, &mut out[..self.dim]);
                copy_f32(&out[..self.dim], target);
            }
            ForwardKind::JumpTabulated { sampler, table } => {
                let (delta, out) = scratch.split_at_mut(self.dim);
                self.draw_jump(sampler, x0, t, rng, xt, delta);
                let _ = table.score_target(delta, t, &mut out[..self.dim]);
                copy_f32(&out[..self.dim], target);
            }
        }
        TrainExample { t, weight }
    }

    /// x_t = x_0 e^{-θt/2} + Δ_t, with Δ_t written to `delta`.
    fn draw_jump<R: Rng + ?Sized>(
        &self,
        sampler: &JumpSampler,
        x0: &[f32],
        t: f64,
        rng: &mut R,
        xt: &mut [f32],
        delta: &mut [f64],
    ) {
        let decay = (-0.5 * sampler.params().theta * t).exp();
        if sampler.increment(t, rng, &mut delta[..self.dim]).is_err() {
            delta[..self.dim].iter_mut().for_each(|d| *d = 0.0);
        }
        for d in 0..self.dim {
            xt[d] = (x0[d] as f64 * decay + delta[d]) as f32;
        }
    }

    /// Converts a network output at (x, t) into the reverse-time quantity U of
    /// dx/dt = a x + b − k(t) U: the score ∇log p for Gaussian processes (k = g²/2), the
    /// generalized score for jump processes (k = 1).
    pub fn output_to_u(&self, out: &[f32], x: &[f32], t: f64, u: &mut [f64]) {
        match &self.kind {
            ForwardKind::Gaussian { marginal, target } => {
                let (m, c, s) = marginal.at(t);
                let s = s.max(1e-6);
                for i in 0..out.len() {
                    u[i] = match target {
                        Target::Eps => -(out[i] as f64) / s,
                        Target::Score => out[i] as f64,
                        Target::X0 => -(x[i] as f64 - m * out[i] as f64 - c) / (s * s),
                    };
                }
            }
            _ => {
                for i in 0..out.len() {
                    u[i] = out[i] as f64;
                }
            }
        }
    }

    /// Linear drift coefficients (a, b), the velocity factor k and the Gaussian noise g² at t.
    pub fn coefficients(&self, t: f64) -> (f64, f64, f64, f64) {
        let a = self.a.eval_t(t);
        let b = self.b.eval_t(t);
        let g = self.g.eval_t(t);
        let k = if self.is_jump() { 1.0 } else { 0.5 * g * g };
        (a, b, k, g * g)
    }

    /// Draws one prior sample at the horizon into `out`.
    pub fn prior<R: Rng + ?Sized>(&self, rng: &mut R, out: &mut [f64]) {
        match &self.kind {
            ForwardKind::Gaussian { marginal, .. } => {
                let (_, c, s) = marginal.at(self.t1);
                for o in out.iter_mut() {
                    let z: f64 = rng.sample(StandardNormal);
                    *o = c + s * z;
                }
            }
            ForwardKind::JumpClosedForm { sampler, .. }
            | ForwardKind::JumpTabulated { sampler, .. } => {
                if sampler.prior(rng, out).is_err() {
                    out.iter_mut().for_each(|o| *o = 0.0);
                }
            }
        }
    }

    /// Jumps of the reverse SDE over a step of length h (jump processes only), added to `out`.
    pub fn reverse_jumps<R: Rng + ?Sized>(&self, h: f64, rng: &mut R, out: &mut [f64]) {
        if let ForwardKind::JumpClosedForm { sampler, .. }
        | ForwardKind::JumpTabulated { sampler, .. } = &self.kind
        {
            let mut inc = vec![0.0; out.len()];
            if sampler.reverse_noise(h, rng, &mut inc).is_ok() {
                for (o, i) in out.iter_mut().zip(inc) {
                    *o += i;
                }
            }
        }
    }

    /// The marginal q(x_t|x_0) of a Gaussian process.
    pub fn marginal(&self) -> Option<&Marginal> {
        match &self.kind {
            ForwardKind::Gaussian { marginal, .. } => Some(marginal),
            _ => None,
        }
    }

    /// (a, b, g) as expressions, for `difc explain`.
    pub fn sde(&self) -> (&Expr, &Expr, &Expr) {
        (&self.a, &self.b, &self.g)
    }
}

/// Copies f64 values into an f32 slice.
fn copy_f32(from: &[f64], to: &mut [f32]) {
    for (t, f) in to.iter_mut().zip(from) {
        *t = *f as f32;
    }
}

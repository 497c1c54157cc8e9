//! Builds the family of a checked process: which forward-process family it belongs to and
//! everything that family needs at run time, derived from the declarations.

use super::cumulative::Cumulative;
use super::family::{Family, TimeSpan};
use super::gaussian::{Gaussian, LossWeight};
use super::jump::{
    rate::RATE_CELLS, score::JlParams, score::JlScore, JdlTable, JumpLaw, JumpParams, JumpSampler,
    RateProfile, TableGrid,
};
use super::jumps::{JumpTarget, Jumps};
use super::ndm::{Decoder, Ndm, Schedule};
use super::CompileError;
use crate::ir::marginal::Marginal;
use crate::ir::{self, Amplitude, DeleteKernel, Expr, Target};

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
        if !matches!(p.state, ir::StateSpace::Set { .. }) {
            return Err(unsupported("deletions on a state that is not a set"));
        }
        if p.jumps.is_some() || p.transform.is_some() {
            return Err(unsupported(
                "deletions together with jumps or a learned transform",
            ));
        }
    }
    if let Some(t) = &p.transform {
        if !p.explicit.as_ref().is_some_and(|m| m.through_transform) {
            return Err(CompileError::new(
                t.loc,
                "difc::compile::unsupported",
                format!(
                    "the learned transform `{}` is declared but the marginal does not use it",
                    t.name
                ),
                format!(
                    "write `mean(x, t) = alpha(t) * {}(x, t)` and `std(t) = sigma(t)`",
                    t.name
                ),
            ));
        }
        if p.jumps.is_some() {
            return Err(unsupported("a learned transform together with jumps"));
        }
    }
    Ok(())
}

/// The family of process `p` trained with `loss` on data of `dim` numbers per point.
pub fn build(
    p: &ir::Process,
    loss: &ir::LossSpec,
    dim: usize,
) -> Result<Box<dyn Family>, CompileError> {
    build_for(p, loss, dim, None)
}

/// [`build`] for data of `dim` numbers per point that, when `levels` is given, take that many
/// equally spaced values on [−1, 1] (images): the likelihood bound then uses the discrete
/// decoder.
pub fn build_for(
    p: &ir::Process,
    loss: &ir::LossSpec,
    dim: usize,
    levels: Option<usize>,
) -> Result<Box<dyn Family>, CompileError> {
    let decoder = match levels {
        Some(levels) => Decoder::Discrete { levels },
        None => Decoder::Gaussian,
    };
    {
        let (t0, t1) = p.time;
        supported(p)?;
        let time = TimeSpan {
            t0,
            t1,
            t_min: loss.t_min.max(t0),
        };
        if p.delete.is_some() || matches!(p.state, ir::StateSpace::Set { .. }) {
            return Ok(Box::new(transdim(p, loss)?));
        }
        if let (Some(m), Some(tr)) = (&p.explicit, &p.transform) {
            return ndm(p, m, tr, loss, time, dim, decoder);
        }
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
            let (a, g) = crate::ir::singular::implied_sde(&m.alpha, &m.sigma);
            return Ok(Box::new(
                Gaussian::new(
                    marginal,
                    loss.target,
                    time,
                    dim,
                    a,
                    Expr::Const(0.0),
                    g,
                    LossWeight::of(loss),
                )
                .with_elbo(decoder)
                .with_precondition(loss),
            ));
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
        match &p.jumps {
            None => Ok(Box::new(
                Gaussian::new(
                    marginal,
                    loss.target,
                    time,
                    dim,
                    a,
                    b,
                    g,
                    LossWeight::of(loss),
                )
                .with_elbo(decoder)
                .with_precondition(loss),
            )),
            Some(j) => {
                let (sampler, target) = jump_parts(p, j, &a, &b, &g, dim, loss)?;
                Ok(Box::new(Jumps::new(
                    sampler,
                    target,
                    time,
                    dim,
                    loss.weight.clone(),
                )))
            }
        }
    }
}

/// A Neural Diffusion Model: `mean(x, t) = alpha(t) * F(x, t)`, `std(t) = sigma(t)`.
fn ndm(
    p: &ir::Process,
    m: &ir::ExplicitMarginal,
    tr: &ir::Transform,
    loss: &ir::LossSpec,
    time: TimeSpan,
    dim: usize,
    decoder: Decoder,
) -> Result<Box<dyn Family>, CompileError> {
    let err = |msg: String, help: &str| CompileError::new(p.loc, "difc::compile::ndm", msg, help);
    if !matches!(loss.target, Target::Eps | Target::X0) {
        return Err(err(
            "Neural Diffusion Models predict the data (x̂) or the noise, not the score".into(),
            "use `loss { target = eps }` (the default) or `loss { target = x0 }`",
        ));
    }
    if loss.weight.as_const() != Some(1.0) {
        return Err(err(
            "a Neural Diffusion Model trains on its ELBO, so a loss weight w(t) does not apply (a reweighted loss lets the transform collapse)".into(),
            "drop `weight` from the `loss` block",
        ));
    }
    let schedule = Schedule::new(&m.alpha, &m.sigma);
    let form = (tr.form != ir::TransformForm::Identity).then_some(tr.form);
    let fam = Ndm::new(schedule, loss.target, form, time, dim).map_err(|e| {
        err(
            e.to_string(),
            "NDM needs 0 < α_t, 0 < σ_t and a decreasing α_t²/σ_t² on [t_min, T]",
        )
    })?;
    Ok(Box::new(fam.with_decoder(decoder)))
}

/// The forward sampler and generalized-score target of a jump process.
fn jump_parts(
    p: &ir::Process,
    j: &ir::Jumps,
    a: &Expr,
    b: &Expr,
    g: &Expr,
    dim: usize,
    loss: &ir::LossSpec,
) -> Result<(JumpSampler, Box<dyn JumpTarget>), CompileError> {
    {
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
        // A rate that depends on t is tabulated with its integral Λ_t over the horizon.
        let varying = match j.constant_rate {
            Some(_) => None,
            None => Some(
                rate_profile(&j.rate, p.time.1)
                    .map_err(|e| err(e.to_string(), "check the jump rate"))?,
            ),
        };
        let lambda = j.constant_rate.unwrap_or(0.0);
        let (law, var) = match j.amplitude {
            Amplitude::Laplace { var, shape } => {
                if (shape - 1.0).abs() > 1e-12 {
                    return Err(err(
                        format!("Laplace shape must be 1 for the derived score (found {shape})"),
                        "drop `shape` or set `shape = 1`",
                    ));
                }
                (JumpLaw::Laplace, var)
            }
            Amplitude::Gaussian { var } => (JumpLaw::Gaussian, var),
        };
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
            law,
            dim,
            theta,
            lambda,
            sigma2: var,
            gvar,
        };
        let sampler = match &varying {
            None => JumpSampler::new(params),
            Some(rate) => JumpSampler::with_rate(params, rate.clone()),
        }
        .map_err(|e| err(e.to_string(), "check the jump parameters"))?;
        if let Some(rate) = &varying {
            let total = rate.cumulative(p.time.1);
            if total > MAX_EXPECTED_JUMPS {
                return Err(err(
                    format!("the jump rate gives Λ_T = ∫_0^T λ(t) dt = {total:.4} expected jumps over the horizon, more than the {MAX_EXPECTED_JUMPS} a forward draw may simulate"),
                    "lower the rate or shorten the horizon",
                ));
            }
            if gvar == 0.0 {
                return Err(err(
                    "a time-varying jump rate has no closed-form generalized score, and the tabulated one needs Gaussian noise".into(),
                    "add `diffusion(t) = sqrt(gvar)` (the score is then tabulated, 2-D data only), or use a constant rate `rate(t) = m * theta` with the pure-jump closed form",
                ));
            }
        }
        if gvar == 0.0 && law == JumpLaw::Gaussian {
            return Err(err(
                "Gaussian jump amplitudes have no closed-form generalized score, and the tabulated one needs Gaussian noise".into(),
                "add `diffusion(t) = sqrt(gvar)` (the JDL model's form), or use `amplitude ~ laplace(var = ...)`",
            ));
        }
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
            Ok((sampler, Box::new(score)))
        } else {
            if dim != 2 {
                return Err(err(
                    format!("the tabulated jump-diffusion score is only available for 2-D data (found {dim}-D)"),
                    match varying {
                        None => "use the pure-jump model (no diffusion) with rate = m * theta, which has a closed form in any dimension",
                        Some(_) => "a time-varying rate always needs the tabulated score: use 2-D data, or a constant rate `rate(t) = m * theta` with the pure-jump model (closed form in any dimension)",
                    },
                ));
            }
            let mut grid = TableGrid::paper();
            grid.t_max = grid.t_max.max(p.time.1);
            if varying.is_none() {
                // The paper's r ≤ 20 is left by the Laplace tail once σ² > 1 (σ² = 2: r = 20.1
                // at step ≈ 3000 of a 6000-step run); the same spacing 0.05 further out.
                grid.r_max = grid.r_max.max(constant_radius_bound(&params).ceil());
                grid.n_r = ((grid.r_max / 0.05).round() as usize).min(800) + 1;
            }
            if let Some(rate) = &varying {
                // The rate is only defined up to the horizon, and the increments it makes may
                // be larger than the constant-rate grid's r ≤ 20.
                grid.t_max = p.time.1;
                // Spacing 0.05 as for the constant rate, coarser beyond 800 cells (the
                // table's cost grows with r_max²; it is bounded in `JdlTable::build_with_rate`).
                grid.r_max = grid.r_max.max(radius_bound(&params, rate).ceil());
                grid.n_r = ((grid.r_max / 0.05).round() as usize).min(800) + 1;
            }
            // The table must cover every training time: an out-of-table lookup is an error,
            // never a reused value.
            let t_train = loss.t_min.max(p.time.0);
            if t_train <= 0.0 {
                return Err(err(
                    "the tabulated score is singular at t = 0, so training must start later".into(),
                    "set `loss { t_min = 0.05 }` (any value > 0; smaller values build a larger table)",
                ));
            }
            grid.t_min = grid.t_min.min(t_train);
            let table = match &varying {
                None => JdlTable::build(&params, grid),
                Some(rate) => JdlTable::build_with_rate(&params, rate, grid),
            }
            .map_err(|e| err(e.to_string(), "check the jump parameters"))?;
            Ok((sampler, Box::new(table)))
        }
    }
}

/// Most jumps a forward draw may expect over the horizon (Λ_T): beyond, one training batch
/// would simulate millions of jumps.
const MAX_EXPECTED_JUMPS: f64 = 10_000.0;

/// λ(t) and Λ_t of a time-varying jump rate on [0, T], Λ in closed form where the IR can
/// integrate the rate, else by Simpson's rule.
fn rate_profile(rate: &Expr, horizon: f64) -> Result<RateProfile, super::jump::JumpError> {
    let cumulative = Cumulative::new(rate, 0.0, horizon);
    let h = horizon / RATE_CELLS as f64;
    let nodes = (0..=RATE_CELLS).map(|i| h * i as f64);
    let lam: Vec<f64> = nodes.clone().map(|t| rate.eval_t(t).max(0.0)).collect();
    let mut cum: Vec<f64> = nodes.map(|t| cumulative.at(t)).collect();
    cum[0] = 0.0;
    // Rounding in a closed form must not make Λ decrease.
    for i in 1..cum.len() {
        cum[i] = cum[i].max(cum[i - 1]);
    }
    let eq = if cumulative.is_closed() { " = " } else { "   " };
    let description = format!(
        "λ(t) = {rate};  Λ_t = ∫_0^t λ(s) ds{eq}{}",
        cumulative.describe()
    );
    RateProfile::from_nodes(horizon, lam, cum, description)
}

/// A radius the increments of a constant-rate process stay below, for the table's r-range: the
/// stationary law is Laplace(shape λ/θ, σ²) ⊕ N(0, gvar/θ), whose radial tail falls like
/// e^{−r/√b} (b = σ²/2) for Laplace amplitudes: 32√b leaves one draw outside with probability
/// ≈ e^{−32} ≈ 1e−14 (times a polynomial factor), widened by 6 Gaussian sd. Gaussian
/// amplitudes have a Gaussian tail: 8 rms radii.
fn constant_radius_bound(params: &JumpParams) -> f64 {
    let gauss = (params.gvar / params.theta).sqrt();
    match params.law {
        JumpLaw::Laplace => 32.0 * (0.5 * params.sigma2).sqrt() + 6.0 * gauss,
        JumpLaw::Gaussian => {
            let v = params.sigma2 * params.lambda / params.theta + params.gvar / params.theta;
            8.0 * (2.0 * v).sqrt()
        }
    }
}

/// A radius the increments of a time-varying rate stay below (for the table's r-range): eight
/// times the largest rms radius over the horizon, plus 20σ for the exponential tail of one
/// Laplace jump (e^{−20√2} ≈ 5e−13 per jump; a 6000-step run of batch 512 with 25 jumps per
/// draw then leaves the table with probability ≈ 4e−5).
fn radius_bound(params: &JumpParams, rate: &RateProfile) -> f64 {
    // Per-coordinate jump variance v(t) = σ² ∫_0^t λ(s) e^{−θ(t−s)} ds, stepped along the grid.
    let (n, horizon) = (RATE_CELLS, rate.horizon());
    let h = horizon / n as f64;
    let decay = (-params.theta * h).exp();
    let (mut v, mut v_max) = (0.0_f64, 0.0_f64);
    for i in 0..n {
        let mid = rate.rate(h * (i as f64 + 0.5));
        v = v * decay + params.sigma2 * mid * h;
        v_max = v_max.max(v);
    }
    let gauss = params.gvar / params.theta;
    let rms = (2.0 * (v_max + gauss)).sqrt();
    let tail = match params.law {
        JumpLaw::Laplace => 20.0 * params.sigma2.sqrt(),
        JumpLaw::Gaussian => 0.0,
    };
    8.0 * rms + tail
}

/// The trans-dimensional family: the Gaussian part per component (an SDE or an explicit
/// marginal) and the deletion rate, which must be the same for every n > 1 (simulation-free
/// counts need a state-independent rate; the checker already made it 0 at n = 1). A set
/// process without a `delete` block is the fixed-size model (EDM's recipe: the size is drawn
/// from the training data's histogram, then the components are denoised; λ⃗ ≡ 0).
pub fn transdim(
    p: &ir::Process,
    loss: &ir::LossSpec,
) -> Result<super::transdim::TransDim, CompileError> {
    supported(p)?;
    let (t0, t1) = p.time;
    let time = TimeSpan {
        t0,
        t1,
        t_min: loss.t_min.max(t0),
    };
    if let (None, ir::StateSpace::Set { max, component, .. }) = (&p.delete, &p.state) {
        target_is_eps(p, loss)?;
        let (marginal, a, b, g) = gaussian_parts(p)?;
        return Ok(super::transdim::TransDim::new(
            marginal,
            a,
            b,
            g,
            Expr::Const(0.0),
            DeleteKernel::Last,
            time,
            *max,
            *component,
            loss.transdim,
        )
        .with_com(p.state.com()));
    }
    let (Some(del), ir::StateSpace::Set { max, component, .. }) = (&p.delete, &p.state) else {
        return Err(CompileError::new(
            p.loc,
            "difc::compile::unsupported",
            format!("`{}` is not a set process with deletions", p.name),
            "declare `state = set(max = N, of = vec(d))`",
        ));
    };
    target_is_eps(p, loss)?;
    let (max, component) = (*max, *component);
    let (marginal, a, b, g) = gaussian_parts(p)?;
    let rate =
        crate::ir::symbolic::simplify(&del.rate.substitute_var(ir::Var::N, &Expr::Const(2.0)));
    for n in 3..=max {
        let other = del.rate.substitute_var(ir::Var::N, &Expr::Const(n as f64));
        for k in 0..=64 {
            let t = t0 + (t1 - t0) * k as f64 / 64.0;
            let (u, v) = (rate.eval_t(t), other.eval_t(t));
            if (u - v).abs() > 1e-12 * (1.0 + u.abs()) {
                return Err(CompileError::new(
                    del.loc,
                    "difc::compile::state_dependent_rate",
                    format!(
                        "the deletion rate depends on n beyond vanishing at n = 1: rate(t = {t}, n = 2) = {u} but rate(t = {t}, n = {n}) = {v}"
                    ),
                    "simulation-free training draws the number of deletions from a Poisson law, which needs the same rate for every n > 1; write the rate as `step(n - 1) * r(t)`",
                ));
            }
        }
    }
    Ok(super::transdim::TransDim::new(
        marginal,
        a,
        b,
        g,
        rate,
        del.kernel,
        time,
        max,
        component,
        loss.transdim,
    )
    .with_com(p.state.com()))
}

/// Set processes train the set network's ε head: any other target is refused.
fn target_is_eps(p: &ir::Process, loss: &ir::LossSpec) -> Result<(), CompileError> {
    if loss.target != ir::Target::Eps {
        return Err(CompileError::new(
            p.loc,
            "difc::compile::target",
            format!(
                "set processes train with `target = eps`, not `{}`",
                loss.target.name()
            ),
            "remove `target` from the `loss` block (ε prediction is what the set network's score head learns)",
        ));
    }
    Ok(())
}

/// The per-component Gaussian part of a process: its marginal and the linear SDE
/// dx = (a(t) x + b(t)) dt + g(t) dW (implied by an explicit marginal where one is declared).
fn gaussian_parts(p: &ir::Process) -> Result<(Marginal, Expr, Expr, Expr), CompileError> {
    let (t0, t1) = p.time;
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
        let (a, g) = crate::ir::singular::implied_sde(&m.alpha, &m.sigma);
        return Ok((marginal, a, Expr::Const(0.0), g));
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
    Ok((marginal, a, b, g))
}

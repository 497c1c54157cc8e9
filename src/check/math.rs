//! The mathematical checks: properties of a process that no general-purpose framework checks
//! for you. Each is decided by symbolic analysis where that is exact (affinity in x) and by
//! evaluating the expression on a dense grid of the time interval otherwise; each message
//! quotes the evidence (the time and the value).

use super::error as E;
use super::process::{amplitude_of, DeleteDef, Instance, JumpsDef, ProcessDef};
use crate::diag::{Diagnostic, Span};
use crate::ir::expr::Env;
use crate::ir::{self, symbolic, Expr, Loc, StateSpace, Var};
use std::collections::{BTreeMap, HashMap};

/// Grid points used to scan an expression over the time interval.
const GRID: usize = 2001;

/// Runs every mathematical check on an instantiated process; returns it when it passes.
pub fn check_instance(
    def: &ProcessDef,
    inst: Instance,
    params: BTreeMap<String, f64>,
    diags: &mut Vec<Diagnostic>,
) -> Option<ir::Process> {
    let file = def.loc.file;
    let before = diags.iter().filter(|d| d.is_error()).count();
    let (t0, t1) = check_interval(file, &inst.time, diags)?;
    let drift = inst
        .drift
        .as_ref()
        .and_then(|(e, span)| check_drift(file, e, *span, t0, t1, diags));
    if let Some((g, span)) = &inst.diffusion {
        check_time_only(file, g, *span, "diffusion", diags);
        scan_positive(file, g, *span, "diffusion(t)", t0, t1, true, diags);
    }
    let explicit = check_explicit(file, &inst, t0, t1, diags);
    let jumps = match (&def.jumps, &inst.jump_rate, &inst.amplitude) {
        (Some(j), Some(rate), Some(args)) => check_jumps(file, j, rate, args, t0, t1, diags),
        _ => None,
    };
    let delete = match (&def.delete, &inst.delete_rate) {
        (Some(d), Some(rate)) => check_delete(file, d, rate, &def.state, t0, t1, diags),
        _ => None,
    };
    let errors = diags.iter().filter(|d| d.is_error()).count();
    if errors > before {
        return None;
    }
    let process = ir::Process {
        name: def.name.clone(),
        loc: def.loc,
        params,
        time: (t0, t1),
        state: def.state.0.clone(),
        drift,
        diffusion: inst.diffusion.map(|(e, _)| e),
        explicit,
        jumps,
        delete,
        transform: def.transform.clone(),
    };
    warn_prior(&process, def, diags);
    Some(process)
}

fn eval_at(e: &Expr, t: f64, n: f64) -> f64 {
    let params = HashMap::new();
    e.eval(&Env::new(&params).with(Var::T, t).with(Var::N, n))
        .unwrap_or(f64::NAN)
}

/// Time points scanned by the checks: a uniform grid including both ends.
fn grid(t0: f64, t1: f64) -> impl Iterator<Item = f64> {
    (0..GRID).map(move |i| t0 + (t1 - t0) * i as f64 / (GRID - 1) as f64)
}

fn check_interval(
    file: crate::diag::FileId,
    time: &(Expr, Expr, Span),
    diags: &mut Vec<Diagnostic>,
) -> Option<(f64, f64)> {
    let (a, b, span) = time;
    let t0 = eval_at(a, 0.0, 1.0);
    let t1 = eval_at(b, 0.0, 1.0);
    if !t0.is_finite() || !t1.is_finite() {
        diags.push(E::non_finite_interval(file, *span, t0, t1));
        return None;
    }
    if t0 < 0.0 {
        diags.push(E::negative_start(file, *span, t0));
        return None;
    }
    if t1 <= t0 {
        diags.push(E::empty_interval(file, *span, t0, t1));
        return None;
    }
    Some((t0, t1))
}

fn check_time_only(
    file: crate::diag::FileId,
    e: &Expr,
    span: Span,
    part: &str,
    diags: &mut Vec<Diagnostic>,
) {
    if e.depends_on(Var::X) {
        diags.push(E::depends_on_state(file, span, part));
    }
}

fn check_drift(
    file: crate::diag::FileId,
    e: &Expr,
    span: Span,
    t0: f64,
    t1: f64,
    diags: &mut Vec<Diagnostic>,
) -> Option<ir::AffineDrift> {
    let Some((a, b)) = symbolic::affine_in_x(e) else {
        diags.push(E::non_affine_drift(file, span, &e.to_string()));
        return None;
    };
    let (a, b) = (symbolic::simplify(&a), symbolic::simplify(&b));
    for (coef, what) in [
        (&a, "the coefficient of x in drift"),
        (&b, "the constant part of drift"),
    ] {
        if let Some((t, v)) = grid(t0, t1)
            .map(|t| (t, eval_at(coef, t, 1.0)))
            .find(|(_, v)| !v.is_finite())
        {
            diags.push(E::not_finite_on_interval(file, span, what, t, v));
            return None;
        }
    }
    Some(ir::AffineDrift {
        full: e.clone(),
        a,
        b,
    })
}

/// Reports the worst point where `e` is not > 0 (or ≥ 0 when `strict` is false) on the interval;
/// with `strict`, the start t0 is excluded (noise may vanish at t = t0).
#[allow(clippy::too_many_arguments)]
fn scan_positive(
    file: crate::diag::FileId,
    e: &Expr,
    span: Span,
    what: &str,
    t0: f64,
    t1: f64,
    strict: bool,
    diags: &mut Vec<Diagnostic>,
) -> bool {
    scan_positive_at_n(file, e, span, what, t0, t1, strict, 1.0, diags)
}

#[allow(clippy::too_many_arguments)]
fn scan_positive_at_n(
    file: crate::diag::FileId,
    e: &Expr,
    span: Span,
    what: &str,
    t0: f64,
    t1: f64,
    strict: bool,
    n: f64,
    diags: &mut Vec<Diagnostic>,
) -> bool {
    let mut worst: Option<(f64, f64)> = None;
    for t in grid(t0, t1) {
        if strict && t == t0 {
            continue;
        }
        let v = eval_at(e, t, n);
        if !v.is_finite() {
            diags.push(E::not_finite_on_interval(file, span, what, t, v));
            return false;
        }
        let bad = if strict { v <= 0.0 } else { v < 0.0 };
        if bad && worst.is_none_or(|(_, w)| v < w) {
            worst = Some((t, v));
        }
    }
    match worst {
        Some((t, v)) if strict => {
            diags.push(E::not_positive(file, span, what, t, v));
            false
        }
        Some((t, v)) => {
            diags.push(E::negative_rate(file, span, what, t, v));
            false
        }
        None => true,
    }
}

fn check_explicit(
    file: crate::diag::FileId,
    inst: &Instance,
    t0: f64,
    t1: f64,
    diags: &mut Vec<Diagnostic>,
) -> Option<ir::ExplicitMarginal> {
    let ((mean, mean_span, through), (std, std_span)) = (inst.mean.as_ref()?, inst.std.as_ref()?);
    check_time_only(file, std, *std_span, "std", diags);
    scan_positive(file, std, *std_span, "std(t)", t0, t1, true, diags);
    let Some((alpha, offset)) = symbolic::affine_in_x(mean) else {
        diags.push(E::non_affine_mean(file, *mean_span));
        return None;
    };
    if symbolic::simplify(&offset) != Expr::Const(0.0) {
        diags.push(E::non_affine_mean(file, *mean_span));
        return None;
    }
    Some(ir::ExplicitMarginal {
        alpha: symbolic::simplify(&alpha),
        sigma: std.clone(),
        through_transform: *through,
    })
}

fn check_jumps(
    file: crate::diag::FileId,
    def: &JumpsDef,
    rate: &(Expr, Span),
    args: &[(String, Expr, Span)],
    t0: f64,
    t1: f64,
    diags: &mut Vec<Diagnostic>,
) -> Option<ir::Jumps> {
    let (rate_expr, rate_span) = rate;
    let rate_ok = scan_positive(
        file,
        rate_expr,
        *rate_span,
        "jump rate(t)",
        t0,
        t1,
        false,
        diags,
    );
    let mut values = BTreeMap::new();
    let mut ok = rate_ok;
    for (name, e, span) in args {
        if e.depends_on(Var::T) || e.depends_on(Var::X) {
            diags.push(E::amplitude_not_constant(file, *span, name));
            ok = false;
            continue;
        }
        let v = eval_at(e, 0.0, 1.0);
        if !(v.is_finite() && v > 0.0) {
            diags.push(E::invalid_amplitude(file, *span, &def.family, name, v));
            ok = false;
            continue;
        }
        values.insert(name.clone(), v);
    }
    if !ok {
        return None;
    }
    let constant_rate = (!rate_expr.depends_on(Var::T)).then(|| eval_at(rate_expr, t0, 1.0));
    Some(ir::Jumps {
        rate: rate_expr.clone(),
        constant_rate,
        amplitude: amplitude_of(&def.family, &values),
        r_min: def.r_min,
        t_min: def.t_min,
        loc: Loc {
            file,
            span: def.span,
        },
    })
}

fn check_delete(
    file: crate::diag::FileId,
    def: &DeleteDef,
    rate: &(Expr, Span),
    state: &(StateSpace, Span),
    t0: f64,
    t1: f64,
    diags: &mut Vec<Diagnostic>,
) -> Option<ir::Delete> {
    let (e, span) = rate;
    let StateSpace::Set { max, .. } = state.0 else {
        diags.push(E::delete_needs_set(file, def.span, state.1));
        return None;
    };
    for n in 2..=max {
        if !scan_positive_at_n(
            file,
            e,
            *span,
            &format!("deletion rate(t, n = {n})"),
            t0,
            t1,
            false,
            n as f64,
            diags,
        ) {
            return None;
        }
    }
    if let Some((t, v)) = grid(t0, t1)
        .map(|t| (t, eval_at(e, t, 1.0)))
        .find(|(_, v)| *v != 0.0)
    {
        diags.push(E::deletes_last_component(file, *span, t, v));
        return None;
    }
    Some(ir::Delete {
        rate: e.clone(),
        kernel: def.kernel,
        loc: Loc {
            file,
            span: def.span,
        },
    })
}

/// Warns when the forward process has not forgotten the data by the horizon, quoting the
/// measured signal-to-noise ratio (data assumed of unit scale).
fn warn_prior(p: &ir::Process, def: &ProcessDef, diags: &mut Vec<Diagnostic>) {
    let file = def.loc.file;
    let (t0, t1) = p.time;
    if let Some(m) = &p.explicit {
        let alpha = eval_at(&m.alpha, t1, 1.0);
        let sigma = eval_at(&m.sigma, t1, 1.0);
        let ratio = alpha.abs() / sigma;
        if ratio > PRIOR_TOLERANCE {
            diags.push(E::prior_not_reached(file, def.loc.span, t1, ratio));
        }
        return;
    }
    let (a, b, g) = match (&p.drift, &p.diffusion) {
        (Some(d), g) => (
            d.a.clone(),
            d.b.clone(),
            g.clone().unwrap_or(Expr::Const(0.0)),
        ),
        (None, Some(g)) => (Expr::Const(0.0), Expr::Const(0.0), g.clone()),
        (None, None) => return,
    };
    let Ok(marginal) = ir::marginal::Marginal::linear_sde(&a, &b, &g, t0, t1) else {
        return;
    };
    let (m, _, s) = marginal.at(t1);
    let mut noise_var = s * s;
    if let Some(j) = &p.jumps {
        noise_var += jump_variance(&marginal, j, t0, t1);
        let no_jump = (-integral(&j.rate, t0, t1)).exp();
        if no_jump > ATOM_TOLERANCE && p.diffusion.is_none() {
            diags.push(E::jumps_may_not_happen(file, j.loc.span, t1, no_jump));
        }
    }
    let ratio = m.abs() / noise_var.sqrt();
    if ratio > PRIOR_TOLERANCE || !ratio.is_finite() {
        diags.push(E::prior_not_reached(file, def.loc.span, t1, ratio));
    }
}

/// Signal-to-noise ratio at the horizon above which the prior is considered not reached.
const PRIOR_TOLERANCE: f64 = 0.05;
/// Probability of "no jump by the horizon" above which a pure-jump process is flagged.
const ATOM_TOLERANCE: f64 = 0.05;

/// Variance per coordinate of the accumulated jumps at t1: ∫ λ(u) E|A|²/D (m_t1/m_u)² du.
fn jump_variance(marginal: &ir::marginal::Marginal, j: &ir::Jumps, t0: f64, t1: f64) -> f64 {
    let per_jump = match j.amplitude {
        ir::Amplitude::Laplace { var, shape } => var * shape,
        ir::Amplitude::Gaussian { var } => var,
    };
    let (m1, _, _) = marginal.at(t1);
    let steps = 2000;
    let h = (t1 - t0) / steps as f64;
    (0..steps)
        .map(|i| {
            let u = t0 + (i as f64 + 0.5) * h;
            let (mu, _, _) = marginal.at(u);
            eval_at(&j.rate, u, 1.0) * per_jump * (m1 / mu).powi(2) * h
        })
        .sum()
}

/// Midpoint-rule integral of an expression of t.
fn integral(e: &Expr, t0: f64, t1: f64) -> f64 {
    let steps = 2000;
    let h = (t1 - t0) / steps as f64;
    (0..steps)
        .map(|i| eval_at(e, t0 + (i as f64 + 0.5) * h, 1.0) * h)
        .sum()
}

//! The mathematical checks: properties of a process that no general-purpose framework checks
//! for you. Each is decided by symbolic analysis where that is exact (affinity in x) and by
//! evaluating the expression on a dense grid of the time interval otherwise; each message
//! quotes the evidence (the time and the value).

use super::error as E;
use super::instance::{amplitude_of, Instance};
use super::process::{DeleteDef, JumpsDef, ProcessDef};
use crate::diag::{Diagnostic, Span};
use crate::ir::expr::Env;
use crate::ir::{self, symbolic, Expr, Loc, StateSpace, Var};
use std::collections::{BTreeMap, HashMap};

/// Grid points used to scan an expression over the time interval.
const GRID: usize = 2001;

/// Runs every mathematical check on an instantiated process; returns it when it passes.
///
/// A process with errors of its own (`def.broken`) is still checked part by part, so that all
/// of its problems are reported at once, but is never returned and gets no whole-process
/// warnings. Expressions that still mention a parameter (its default failed to evaluate) are
/// skipped: their value is unknown.
pub fn check_instance(
    def: &ProcessDef,
    inst: Instance,
    params: BTreeMap<String, f64>,
    diags: &mut Vec<Diagnostic>,
) -> Option<ir::Process> {
    let file = def.loc.file;
    let before = diags.iter().filter(|d| d.is_error()).count();
    let schedule_span = inst
        .mean
        .as_ref()
        .map(|m| m.1)
        .or(inst.drift.as_ref().map(|d| d.1))
        .unwrap_or(def.loc.span);
    let iv = check_interval(file, &inst.time, diags);
    let drift = inst
        .drift
        .as_ref()
        .and_then(|(e, span)| check_drift(file, e, *span, iv, diags));
    if let Some((g, span)) = &inst.diffusion {
        scan_positive(file, g, *span, "diffusion(t)", iv, true, diags);
    }
    let explicit = check_explicit(file, &inst, iv, diags);
    let jumps = match (&def.jumps, &inst.jump_rate, &inst.amplitude) {
        (Some(j), Some(rate), Some(args)) => check_jumps(file, j, rate, args, iv, diags),
        _ => None,
    };
    let delete = match (&def.delete, &inst.delete_rate) {
        (Some(d), Some(rate)) if !def.failed.contains("state") => {
            check_delete(file, d, rate, &def.state, iv, diags)
        }
        _ => None,
    };
    let errors = diags.iter().filter(|d| d.is_error()).count();
    let (t0, t1) = iv?;
    if errors > before || def.broken {
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
    super::singular::warn_singular_ends(&process, schedule_span, diags);
    Some(process)
}

fn eval_at(e: &Expr, t: f64, n: f64) -> f64 {
    let params = HashMap::new();
    e.eval(&Env::new(&params).with(Var::T, t).with(Var::N, n))
        .unwrap_or(f64::NAN)
}

/// Time points scanned by the checks: a uniform grid including both ends.
fn grid(iv: Interval) -> impl Iterator<Item = f64> {
    let (t0, t1) = iv.unwrap_or((0.0, 0.0));
    let points = if iv.is_some() { GRID } else { 0 };
    (0..points).map(move |i| t0 + (t1 - t0) * i as f64 / (GRID - 1) as f64)
}

/// The checked time interval `(t0, t1)`, or `None` when it is invalid (already reported):
/// the checks that scan it are then skipped, the others still run.
type Interval = Option<(f64, f64)>;

/// Whether an expression still mentions a parameter whose value is unknown (its default
/// failed to evaluate, already reported): such an expression cannot be checked.
fn unknown(e: &Expr) -> bool {
    !e.params().is_empty()
}

fn check_interval(
    file: crate::diag::FileId,
    time: &(Expr, Expr, Span),
    diags: &mut Vec<Diagnostic>,
) -> Option<(f64, f64)> {
    let (a, b, span) = time;
    if unknown(a) || unknown(b) {
        return None;
    }
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

fn check_drift(
    file: crate::diag::FileId,
    e: &Expr,
    span: Span,
    iv: Interval,
    diags: &mut Vec<Diagnostic>,
) -> Option<ir::AffineDrift> {
    let Some((a, b)) = symbolic::affine_in_x(e) else {
        diags.push(E::non_affine_drift(file, span, &e.to_string()));
        return None;
    };
    let (a, b) = (symbolic::simplify(&a), symbolic::simplify(&b));
    if unknown(&a) || unknown(&b) {
        return None;
    }
    for (coef, what) in [
        (&a, "the coefficient of x in drift"),
        (&b, "the constant part of drift"),
    ] {
        if let Some((t, v)) = grid(iv)
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
    iv: Interval,
    strict: bool,
    diags: &mut Vec<Diagnostic>,
) -> bool {
    scan_positive_at_n(file, e, span, what, iv, strict, 1.0, diags)
}

#[allow(clippy::too_many_arguments)]
fn scan_positive_at_n(
    file: crate::diag::FileId,
    e: &Expr,
    span: Span,
    what: &str,
    iv: Interval,
    strict: bool,
    n: f64,
    diags: &mut Vec<Diagnostic>,
) -> bool {
    if unknown(e) {
        return false;
    }
    let mut worst: Option<(f64, f64)> = None;
    for t in grid(iv) {
        let v = eval_at(e, t, n);
        if !v.is_finite() {
            diags.push(E::not_finite_on_interval(file, span, what, t, v));
            return false;
        }
        // Noise may vanish at the start (the marginal is the data there), not elsewhere.
        if strict && iv.is_some_and(|(t0, _)| t == t0) {
            continue;
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
    iv: Interval,
    diags: &mut Vec<Diagnostic>,
) -> Option<ir::ExplicitMarginal> {
    let ((mean, mean_span, through), (std, std_span)) = (inst.mean.as_ref()?, inst.std.as_ref()?);
    scan_positive(file, std, *std_span, "std(t)", iv, true, diags);
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
    iv: Interval,
    diags: &mut Vec<Diagnostic>,
) -> Option<ir::Jumps> {
    let (rate_expr, rate_span) = rate;
    let rate_ok = scan_positive(
        file,
        rate_expr,
        *rate_span,
        "jump rate(t)",
        iv,
        false,
        diags,
    );
    let mut values = BTreeMap::new();
    let mut ok = rate_ok;
    for (name, e, span) in args {
        // Amplitude arguments are lowered without `t` or `x` in scope: they are constants.
        if unknown(e) {
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
    let t0 = iv.map_or(0.0, |(t0, _)| t0);
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

/// The component counts n ≥ 2 at which a deletion rate is scanned: every n up to 64, then
/// about 64 geometrically spaced counts up to `max` (with `max − 1` and `max`), so that the
/// check costs the same for `set(max = 8)` and `set(max = 1e12)`.
fn component_counts(max: usize) -> Vec<usize> {
    const DENSE: usize = 64;
    const SPARSE: usize = 64;
    let mut out: Vec<usize> = (2..=max.min(DENSE)).collect();
    if max > DENSE {
        let ratio = (max as f64 / DENSE as f64).powf(1.0 / SPARSE as f64);
        let mut v = DENSE as f64;
        for _ in 0..SPARSE {
            v *= ratio;
            out.push((v.round() as usize).min(max));
        }
        out.push(max - 1);
        out.push(max);
        out.sort_unstable();
        out.dedup();
    }
    out
}

fn check_delete(
    file: crate::diag::FileId,
    def: &DeleteDef,
    rate: &(Expr, Span),
    state: &(StateSpace, Span),
    iv: Interval,
    diags: &mut Vec<Diagnostic>,
) -> Option<ir::Delete> {
    let (e, span) = rate;
    if unknown(e) {
        return None;
    }
    let StateSpace::Set { max, .. } = state.0 else {
        diags.push(E::delete_needs_set(file, def.span, state.1));
        return None;
    };
    let counts = if e.depends_on(Var::N) {
        component_counts(max)
    } else {
        vec![2.min(max)]
    };
    for n in counts {
        if !scan_positive_at_n(
            file,
            e,
            *span,
            &format!("deletion rate(t, n = {n})"),
            iv,
            false,
            n as f64,
            diags,
        ) {
            return None;
        }
    }
    if let Some((t, v)) = grid(iv)
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
    let zero = Expr::Const(0.0);
    let a = p.drift.as_ref().map_or(&zero, |d| &d.a);
    let g = p.diffusion.as_ref().unwrap_or(&zero);
    let jumps = p.jumps.as_ref().map(|j| {
        let per_jump = match j.amplitude {
            ir::Amplitude::Laplace { var, shape } => var * shape,
            ir::Amplitude::Gaussian { var } => var,
        };
        (&j.rate, per_jump)
    });
    let (m, noise_var) = horizon_moments(a, g, jumps, t0, t1);
    if let Some(j) = &p.jumps {
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
/// Midpoint-rule intervals of the horizon estimates: plenty for a warning threshold.
const STEPS: usize = 2000;

/// The mean factor m(t1) and the variance accumulated by t1 of
/// `dx = (a(t) x + b(t)) dt + g(t) dW + jumps` (jumps at rate λ with second moment `per_jump`
/// per coordinate): with A(u) = ∫_{t0}^{u} a, m(t1) = exp(A(t1)) and
/// Var = ∫ exp(2 (A(t1) − A(u))) (g(u)² + λ(u) per_jump) du, by the midpoint rule.
/// A cheap estimate (the marginal tables of the compiler are far more precise, and slower),
/// enough to decide a warning.
fn horizon_moments(
    a: &Expr,
    g: &Expr,
    jumps: Option<(&Expr, f64)>,
    t0: f64,
    t1: f64,
) -> (f64, f64) {
    let h = (t1 - t0) / STEPS as f64;
    let mids: Vec<f64> = (0..STEPS).map(|i| t0 + (i as f64 + 0.5) * h).collect();
    let slopes: Vec<f64> = mids.iter().map(|&u| eval_at(a, u, 1.0)).collect();
    let a_total: f64 = slopes.iter().sum::<f64>() * h;
    let mut a_before = 0.0;
    let mut var = 0.0;
    for (&u, &slope) in mids.iter().zip(&slopes) {
        // A(u) at the midpoint: everything before this interval plus half of it.
        let a_u = a_before + 0.5 * slope * h;
        a_before += slope * h;
        let g_u = eval_at(g, u, 1.0);
        let jump = jumps.map_or(0.0, |(rate, per_jump)| eval_at(rate, u, 1.0) * per_jump);
        var += (2.0 * (a_total - a_u)).exp() * (g_u * g_u + jump) * h;
    }
    (a_total.exp(), var)
}

/// Midpoint-rule integral of an expression of t.
fn integral(e: &Expr, t0: f64, t1: f64) -> f64 {
    let h = (t1 - t0) / STEPS as f64;
    (0..STEPS)
        .map(|i| eval_at(e, t0 + (i as f64 + 0.5) * h, 1.0) * h)
        .sum()
}

#[cfg(test)]
mod tests {
    #[test]
    fn component_counts_are_few_for_any_max() {
        assert_eq!(super::component_counts(1), Vec::<usize>::new());
        assert_eq!(super::component_counts(8), (2..=8).collect::<Vec<_>>());
        let huge = super::component_counts(1_000_000_000_000);
        assert!(huge.len() < 140, "{}", huge.len());
        assert!(huge.contains(&999_999_999_999) && huge.contains(&1_000_000_000_000));
        assert!(huge.windows(2).all(|w| w[0] < w[1]));
    }

    use super::*;

    #[test]
    fn horizon_moments_of_an_ou_process_match_the_closed_form() {
        // dx = -θ x dt + sqrt(2θ) dW from 0 to T: m = e^{-θT}, Var = 1 − e^{-2θT}.
        let theta = 1.5;
        let a = Expr::Const(-theta);
        let g = Expr::Const((2.0 * theta).sqrt());
        let (m, var) = horizon_moments(&a, &g, None, 0.0, 2.0);
        assert!((m - (-3.0f64).exp()).abs() < 1e-9, "m = {m}");
        assert!((var - (1.0 - (-6.0f64).exp())).abs() < 1e-5, "var = {var}");
    }

    #[test]
    fn horizon_moments_add_jump_variance() {
        // No drift, jumps at rate 2 with second moment 0.5 on [0, 3]: Var = 2 · 0.5 · 3.
        let zero = Expr::Const(0.0);
        let rate = Expr::Const(2.0);
        let (m, var) = horizon_moments(&zero, &zero, Some((&rate, 0.5)), 0.0, 3.0);
        assert_eq!(m, 1.0);
        assert!((var - 3.0).abs() < 1e-9, "var = {var}");
    }

    #[test]
    fn integral_of_a_linear_rate() {
        let rate = Expr::Var(Var::T);
        assert!((integral(&rate, 0.0, 2.0) - 2.0).abs() < 1e-9);
    }
}

//! The `singular_end` warning: the drift and diffusion a Gaussian process implies (for an
//! explicit marginal, a = d log α/dt and g² = dσ²/dt − 2aσ²), its signal-to-noise ratio and
//! the score scale 1/σ_t, evaluated at both ends of the time interval. The data end may have
//! σ = 0 (that is what `loss.t_min` is for); the thresholds are [`crate::ir::singular`]'s, the
//! ones the compiled family uses to decide which solvers it offers.

use super::error as E;
use crate::diag::{Diagnostic, Span};
use crate::ir::expr::Env;
use crate::ir::singular::{implied_sde, stiff_drift};
use crate::ir::{self, Expr, Var};
use std::collections::HashMap;

fn at(e: &Expr, t: f64) -> f64 {
    let params = HashMap::new();
    e.eval(&Env::new(&params).with(Var::T, t))
        .unwrap_or(f64::NAN)
}

/// Shortest readable form of a coefficient value.
fn num(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.3e}")
    } else {
        format!("{v}")
    }
}

/// Pushes one warning per singular end of a Gaussian process (no jumps, deletions or learned
/// transform); `span` is the mean/std (or drift) definition.
pub fn warn_singular_ends(p: &ir::Process, span: Span, diags: &mut Vec<Diagnostic>) {
    if p.jumps.is_some() || p.delete.is_some() || p.transform.is_some() {
        return;
    }
    let zero = Expr::Const(0.0);
    let (a, g, marginal) = match (&p.explicit, &p.drift) {
        (Some(m), _) => {
            let (a, g) = implied_sde(&m.alpha, &m.sigma);
            (a, g, Some((&m.alpha, &m.sigma)))
        }
        (None, Some(d)) => (d.a.clone(), p.diffusion.clone().unwrap_or(zero), None),
        (None, None) => return,
    };
    let (t0, t1) = p.time;
    let span_t = t1 - t0;
    let a_mid = at(&a, 0.5 * (t0 + t1));
    for (t, at_horizon) in [(t0, false), (t1, true)] {
        let (av, gv) = (at(&a, t), at(&g, t));
        let mut evidence = Vec::new();
        if stiff_drift(av, a_mid, span_t) {
            evidence.push(format!("the drift a(t) = {}", num(av)));
        }
        if !gv.is_finite() {
            evidence.push(format!("the diffusion g(t) = {}", num(gv)));
        }
        let mut zero_snr = false;
        if let (Some((alpha, sigma)), true) = (marginal, at_horizon) {
            let (al, si) = (at(alpha, t), at(sigma, t));
            if si.is_nan() || si <= 0.0 {
                evidence.push(format!("the score scale 1/σ_t = {}", num(1.0 / si)));
            }
            zero_snr = crate::ir::singular::zero_snr(al, si);
            if zero_snr && !evidence.is_empty() {
                evidence.push(format!("α_t = {}", num(al)));
            }
        }
        if evidence.is_empty() {
            continue;
        }
        let end = E::SingularEnd {
            t,
            evidence: evidence.join(", "),
            at_horizon,
            zero_snr,
        };
        diags.push(E::singular_end(p.loc.file, span, &p.name, &end));
    }
}

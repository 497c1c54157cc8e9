//! Instantiating a checked process: parameter values bound (defaults overridden by an
//! experiment's arguments) and substituted into its expressions, ready for the math checks.

use super::error as E;
use super::process::ProcessDef;
use crate::diag::{Diagnostic, Span};
use crate::ir::{Amplitude, Expr, Loc};
use std::collections::BTreeMap;

/// Parameter values for one instantiation: defaults overridden by the call's arguments.
pub fn bind_params(
    def: &ProcessDef,
    args: &[(String, f64, Span)],
    call: Loc,
    diags: &mut Vec<Diagnostic>,
) -> Option<BTreeMap<String, f64>> {
    let mut values = BTreeMap::new();
    let mut ok = true;
    for p in &def.params {
        let given = args
            .iter()
            .find(|(n, _, _)| *n == p.name)
            .map(|(_, v, _)| *v);
        match given.or(p.default) {
            Some(v) => {
                values.insert(p.name.clone(), v);
            }
            None => {
                diags.push(E::missing_param(
                    call.file, call.span, &def.name, &p.name, def.loc, p.span,
                ));
                ok = false;
            }
        }
    }
    ok.then_some(values)
}

/// Substitutes parameter values into a definition, giving a process ready for the math checks.
pub fn instantiate(def: &ProcessDef, values: &BTreeMap<String, f64>) -> Option<Instance> {
    let subst = |e: &Expr| -> Expr {
        let mut out = e.clone();
        for (name, v) in values {
            out = out.substitute_param(name, &Expr::Const(*v));
        }
        crate::ir::symbolic::simplify(&out)
    };
    let (t0, t1, time_span) = def.time.as_ref()?;
    Some(Instance {
        time: (subst(t0), subst(t1), *time_span),
        drift: def.drift.as_ref().map(|(e, s)| (subst(e), *s)),
        diffusion: def.diffusion.as_ref().map(|(e, s)| (subst(e), *s)),
        mean: def.mean.as_ref().map(|(e, s, tr)| (subst(e), *s, *tr)),
        std: def.std.as_ref().map(|(e, s)| (subst(e), *s)),
        jump_rate: def.jumps.as_ref().map(|j| (subst(&j.rate.0), j.rate.1)),
        amplitude: def.jumps.as_ref().map(|j| {
            j.amplitude_args
                .iter()
                .map(|(n, e, s)| (n.clone(), subst(e), *s))
                .collect()
        }),
        delete_rate: def.delete.as_ref().map(|d| (subst(&d.rate.0), d.rate.1)),
    })
}

/// A process definition with its parameters substituted, before the math checks.
pub struct Instance {
    pub time: (Expr, Expr, Span),
    pub drift: Option<(Expr, Span)>,
    pub diffusion: Option<(Expr, Span)>,
    pub mean: Option<(Expr, Span, bool)>,
    pub std: Option<(Expr, Span)>,
    pub jump_rate: Option<(Expr, Span)>,
    pub amplitude: Option<Vec<(String, Expr, Span)>>,
    pub delete_rate: Option<(Expr, Span)>,
}

/// Builds the amplitude law from checked, constant arguments.
pub fn amplitude_of(family: &str, args: &BTreeMap<String, f64>) -> Amplitude {
    let var = args.get("var").copied().unwrap_or(1.0);
    match family {
        "gaussian" => Amplitude::Gaussian { var },
        _ => Amplitude::Laplace {
            var,
            shape: args.get("shape").copied().unwrap_or(1.0),
        },
    }
}

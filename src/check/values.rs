//! Constant settings: numbers, integers and names written in a spec, validated with spans.

use super::error as E;
use super::lower::{lower, Scope};
use crate::diag::{Diagnostic, FileId};
use crate::ir::expr::Env;
use crate::syntax::ast::{self, ExprKind};
use std::collections::{BTreeMap, HashMap};

/// Evaluates a constant expression (numbers, `pi`, arithmetic and functions).
pub fn constant(
    file: FileId,
    e: &ast::Expr,
    what: &str,
    diags: &mut Vec<Diagnostic>,
) -> Option<f64> {
    let helpers = BTreeMap::new();
    let scope = Scope {
        file,
        params: &[],
        helpers: &helpers,
        vars: Vec::new(),
        transform: None,
        transform_elsewhere: None,
    };
    let lowered = lower(e, &scope, diags)?;
    let params = HashMap::new();
    let value = lowered.eval(&Env::new(&params)).ok()?;
    if value.is_finite() {
        Some(value)
    } else {
        diags.push(E::non_finite_constant(file, e.span, what, value));
        None
    }
}

/// A constant that must be > 0.
pub fn positive(
    file: FileId,
    e: &ast::Expr,
    what: &str,
    diags: &mut Vec<Diagnostic>,
) -> Option<f64> {
    let v = constant(file, e, what, diags)?;
    if v > 0.0 {
        Some(v)
    } else {
        diags.push(E::out_of_range(file, e.span, what, v, "> 0"));
        None
    }
}

/// A constant in `[lo, hi]` (`hi_open` makes the upper end exclusive).
pub fn in_range(
    file: FileId,
    e: &ast::Expr,
    what: &str,
    lo: f64,
    hi: f64,
    hi_open: bool,
    diags: &mut Vec<Diagnostic>,
) -> Option<f64> {
    let v = constant(file, e, what, diags)?;
    let ok = v >= lo && if hi_open { v < hi } else { v <= hi };
    if ok {
        Some(v)
    } else {
        let close = if hi_open { ")" } else { "]" };
        diags.push(E::out_of_range(
            file,
            e.span,
            what,
            v,
            &format!("in [{lo}, {hi}{close}"),
        ));
        None
    }
}

/// The largest whole-number setting accepted: far beyond any real step count or size, and
/// small enough that every whole number below it is exact in an f64.
const MAX_WHOLE: f64 = 1e15;

/// A whole number ≥ `min`.
pub fn int(
    file: FileId,
    e: &ast::Expr,
    what: &str,
    min: u64,
    diags: &mut Vec<Diagnostic>,
) -> Option<usize> {
    int_u64(file, e, what, min, diags).map(|v| v as usize)
}

/// A whole number ≥ `min`, as u64.
pub fn int_u64(
    file: FileId,
    e: &ast::Expr,
    what: &str,
    min: u64,
    diags: &mut Vec<Diagnostic>,
) -> Option<u64> {
    let v = constant(file, e, what, diags)?;
    if v.fract() != 0.0 {
        diags.push(E::not_integer(file, e.span, what, v));
        return None;
    }
    if v < min as f64 || v > MAX_WHOLE {
        diags.push(E::out_of_range(
            file,
            e.span,
            what,
            v,
            &format!("in [{min}, 1e15] (a whole number)"),
        ));
        return None;
    }
    Some(v as u64)
}

/// A bare name from a fixed list of choices.
pub fn choice(
    file: FileId,
    e: &ast::Expr,
    what: &str,
    choices: &[&str],
    diags: &mut Vec<Diagnostic>,
) -> Option<String> {
    let name = match &e.kind {
        ExprKind::Ident(n) | ExprKind::Str(n) => n.clone(),
        _ => {
            diags.push(E::bad_choice(file, e.span, what, choices));
            return None;
        }
    };
    if choices.contains(&name.as_str()) {
        Some(name)
    } else {
        diags.push(E::unknown_choice(file, e.span, what, &name, choices));
        None
    }
}

/// Positional or named whole-number arguments of a call like `image(1, 28, 28)`.
pub fn call_ints(
    file: FileId,
    callee: &ast::Ident,
    args: &[ast::Arg],
    names: &[&str],
    diags: &mut Vec<Diagnostic>,
) -> Option<Vec<usize>> {
    if args.len() != names.len() {
        diags.push(E::wrong_arity(
            file,
            callee.span,
            &callee.name,
            names.len(),
            args.len(),
        ));
        return None;
    }
    let mut out = Vec::new();
    for (a, name) in args.iter().zip(names) {
        out.push(int(
            file,
            &a.value,
            &format!("{} {name}", callee.name),
            1,
            diags,
        )?);
    }
    Some(out)
}

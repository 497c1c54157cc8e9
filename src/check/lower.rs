//! Syntax expressions → symbolic IR expressions: name resolution, helper inlining, arity.

use super::error as E;
use crate::diag::{Diagnostic, FileId};
use crate::ir::{Expr, Func, Var};
use crate::syntax::ast::{self, BinOp, ExprKind};
use std::collections::BTreeMap;

/// Most terms one expression may have once its helpers are inlined (real ones have < 1000).
pub const MAX_INLINED: usize = 10_000;

/// A user helper definition such as `beta(t) = beta_min + t * (beta_max - beta_min)`.
#[derive(Clone, Debug)]
pub struct Helper {
    pub formals: Vec<ast::Ident>,
    pub body: ast::Expr,
    pub span: crate::diag::Span,
}

/// What names mean inside one expression.
pub struct Scope<'a> {
    pub file: FileId,
    /// Process parameters, lowered to `Expr::Param`.
    pub params: &'a [String],
    pub helpers: &'a BTreeMap<String, Helper>,
    /// The definition's own arguments (`x`, `t`, `n`) and what they stand for.
    pub vars: Vec<(String, Var)>,
    /// The learned transform's name, where a call `F(x, t)` is allowed (NDM means).
    pub transform: Option<&'a str>,
    /// The process's learned transform where a call to it is not allowed (`std`, `drift`, …):
    /// named so that the error says where it belongs instead of "unknown function".
    pub transform_elsewhere: Option<&'a str>,
}

/// The helpers being inlined (innermost last), and those found too large to inline.
#[derive(Default)]
struct Stack {
    names: Vec<String>,
    too_large: std::collections::BTreeSet<String>,
    /// Lower `F(x, t)` to 0 instead of `x` (to find the terms of a mean outside F).
    transform_as_zero: bool,
}

/// Lowers one expression; pushes diagnostics and returns `None` on error.
pub fn lower(e: &ast::Expr, scope: &Scope, diags: &mut Vec<Diagnostic>) -> Option<Expr> {
    let mut stack = Stack::default();
    let mut uses_transform = false;
    lower_in(e, scope, diags, &mut stack, &mut uses_transform)
}

/// Lowers an expression where `F(x, t)` may appear; reports whether it did.
pub fn lower_with_transform(
    e: &ast::Expr,
    scope: &Scope,
    diags: &mut Vec<Diagnostic>,
) -> Option<(Expr, bool)> {
    let mut stack = Stack::default();
    let mut uses_transform = false;
    let lowered = lower_in(e, scope, diags, &mut stack, &mut uses_transform)?;
    if uses_transform {
        // The mean is read as α(t)·F(x, t): with F set to 0 nothing may remain, or a term such as
        // `beta(t) * x` would be folded into α.
        let mut zero = Stack {
            transform_as_zero: true,
            ..Stack::default()
        };
        let mut ignored = Vec::new();
        let mut used = false;
        let rest = lower_in(e, scope, &mut ignored, &mut zero, &mut used)?;
        let rest = crate::ir::symbolic::simplify(&rest);
        if rest.as_const() != Some(0.0) {
            let name = scope.transform.unwrap_or("F");
            diags.push(E::mean_outside_transform(
                scope.file,
                e.span,
                name,
                &rest.to_string(),
            ));
            return None;
        }
    }
    Some((lowered, uses_transform))
}

fn lower_in(
    e: &ast::Expr,
    scope: &Scope,
    diags: &mut Vec<Diagnostic>,
    stack: &mut Stack,
    uses_transform: &mut bool,
) -> Option<Expr> {
    match &e.kind {
        ExprKind::Number { value, text } => {
            if value.is_finite() {
                Some(Expr::Const(*value))
            } else {
                diags.push(E::number_overflow(scope.file, e.span, text));
                None
            }
        }
        ExprKind::Str(_) => {
            diags.push(E::expected_number(scope.file, e.span, "a string"));
            None
        }
        ExprKind::List(_) => {
            diags.push(E::expected_number(scope.file, e.span, "a list"));
            None
        }
        ExprKind::Ident(name) => lower_name(name, e, scope, diags),
        ExprKind::Neg(a) => Some(-lower_in(a, scope, diags, stack, uses_transform)?),
        ExprKind::Binary(op, a, b) => {
            let a = lower_in(a, scope, diags, stack, uses_transform);
            let b = lower_in(b, scope, diags, stack, uses_transform);
            let (a, b) = (Box::new(a?), Box::new(b?));
            Some(match op {
                BinOp::Add => Expr::Add(a, b),
                BinOp::Sub => Expr::Sub(a, b),
                BinOp::Mul => Expr::Mul(a, b),
                BinOp::Div => Expr::Div(a, b),
                BinOp::Pow => Expr::Pow(a, b),
            })
        }
        ExprKind::Call { callee, args } => {
            lower_call(e, callee, args, scope, diags, stack, uses_transform)
        }
    }
}

fn lower_name(
    name: &str,
    e: &ast::Expr,
    scope: &Scope,
    diags: &mut Vec<Diagnostic>,
) -> Option<Expr> {
    if let Some((_, var)) = scope.vars.iter().find(|(n, _)| n == name) {
        return Some(Expr::Var(*var));
    }
    if scope.params.iter().any(|p| p == name) {
        return Some(Expr::Param(name.to_string()));
    }
    if name == "pi" {
        return Some(Expr::Const(std::f64::consts::PI));
    }
    if scope.helpers.contains_key(name) || Func::from_name(name).is_some() {
        diags.push(E::function_as_value(scope.file, e.span, name));
        return None;
    }
    if matches!(name, "x" | "t" | "n") {
        let allowed: Vec<&str> = scope.vars.iter().map(|(n, _)| n.as_str()).collect();
        diags.push(E::variable_not_in_scope(scope.file, e.span, name, &allowed));
        return None;
    }
    let mut candidates: Vec<&str> = scope.vars.iter().map(|(n, _)| n.as_str()).collect();
    candidates.extend(scope.params.iter().map(String::as_str));
    diags.push(E::unknown_name(scope.file, e.span, name, &candidates));
    None
}

fn lower_call(
    e: &ast::Expr,
    callee: &ast::Ident,
    args: &[ast::Arg],
    scope: &Scope,
    diags: &mut Vec<Diagnostic>,
    stack: &mut Stack,
    uses_transform: &mut bool,
) -> Option<Expr> {
    if let Some(named) = args.iter().find_map(|a| a.name.as_ref()) {
        diags.push(E::named_arg_in_math(scope.file, named.span, &callee.name));
        return None;
    }
    if Some(callee.name.as_str()) == scope.transform_elsewhere
        && Some(callee.name.as_str()) != scope.transform
    {
        diags.push(E::transform_outside_mean(
            scope.file,
            callee.span,
            &callee.name,
        ));
        return None;
    }
    let mut lowered = Vec::with_capacity(args.len());
    let mut ok = true;
    for a in args {
        match lower_in(&a.value, scope, diags, stack, uses_transform) {
            Some(x) => lowered.push(x),
            None => ok = false,
        }
    }
    if Some(callee.name.as_str()) == scope.transform {
        // `F(x, t)`: the mean applies to the learned transform of the state.
        let expected = [Expr::Var(Var::X), Expr::Var(Var::T)];
        if ok && lowered.as_slice() != expected {
            diags.push(E::transform_args(scope.file, e.span, &callee.name));
            return None;
        }
        *uses_transform = true;
        let value = if stack.transform_as_zero {
            Expr::Const(0.0)
        } else {
            Expr::Var(Var::X)
        };
        return ok.then_some(value);
    }
    if let Some(helper) = scope.helpers.get(&callee.name) {
        if stack.too_large.contains(&callee.name) {
            return None; // reported where it first grew too large
        }
        if stack.names.contains(&callee.name) {
            diags.push(E::recursive_definition(
                scope.file,
                callee.span,
                &callee.name,
                helper.span,
            ));
            return None;
        }
        if helper.formals.len() != args.len() {
            diags.push(E::wrong_arity(
                scope.file,
                e.span,
                &callee.name,
                helper.formals.len(),
                args.len(),
            ));
            return None;
        }
        if !ok {
            return None;
        }
        // Lower the body with its formals as placeholders, then substitute the arguments.
        // Placeholders are unique per inlining depth so nested helpers cannot capture them.
        let level = stack.names.len();
        let placeholder = move |i: usize| format!("\u{0}arg{level}_{i}");
        let params: Vec<String> = scope
            .params
            .iter()
            .cloned()
            .chain((0..helper.formals.len()).map(placeholder))
            .collect();
        let inner = Scope {
            file: scope.file,
            params: &params,
            helpers: scope.helpers,
            vars: Vec::new(),
            transform: scope.transform,
            transform_elsewhere: scope.transform_elsewhere,
        };
        let body = rename_formals(&helper.body, &helper.formals, &placeholder);
        stack.names.push(callee.name.clone());
        let body = lower_in(&body, &inner, diags, stack, uses_transform);
        stack.names.pop();
        let mut body = body?;
        for (i, arg) in lowered.iter().enumerate() {
            body = body.substitute_param(&placeholder(i), arg);
            // Inlining copies a helper's body at every use: a chain of helpers that each use
            // the previous one twice doubles at every link. Refused at a bounded size, so
            // that checking stays fast whatever the chain.
            if body.size() > MAX_INLINED {
                // Reported once: further uses of it (already an error) are not re-inlined,
                // which keeps a failing chain linear instead of exponential.
                stack.too_large.insert(callee.name.clone());
                diags.push(E::definition_too_large(
                    scope.file,
                    e.span,
                    &callee.name,
                    helper.span,
                    MAX_INLINED,
                ));
                return None;
            }
        }
        return Some(body);
    }
    if let Some(f) = Func::from_name(&callee.name) {
        if f.arity() != args.len() {
            diags.push(E::wrong_arity(
                scope.file,
                e.span,
                &callee.name,
                f.arity(),
                args.len(),
            ));
            return None;
        }
        return ok.then_some(Expr::Call(f, lowered));
    }
    let mut candidates: Vec<&str> = scope.helpers.keys().map(String::as_str).collect();
    candidates.extend(Func::ALL.iter().copied());
    diags.push(E::unknown_function(
        scope.file,
        callee.span,
        &callee.name,
        &candidates,
    ));
    None
}

/// Replaces a helper's formal names by placeholder identifiers in its body.
fn rename_formals(
    body: &ast::Expr,
    formals: &[ast::Ident],
    placeholder: &dyn Fn(usize) -> String,
) -> ast::Expr {
    let mut out = body.clone();
    rename_in(&mut out, formals, placeholder);
    out
}

fn rename_in(e: &mut ast::Expr, formals: &[ast::Ident], placeholder: &dyn Fn(usize) -> String) {
    match &mut e.kind {
        ExprKind::Ident(name) => {
            if let Some(i) = formals.iter().position(|f| &f.name == name) {
                *name = placeholder(i);
            }
        }
        ExprKind::Neg(a) => rename_in(a, formals, placeholder),
        ExprKind::Binary(_, a, b) => {
            rename_in(a, formals, placeholder);
            rename_in(b, formals, placeholder);
        }
        ExprKind::Call { args, .. } => args
            .iter_mut()
            .for_each(|a| rename_in(&mut a.value, formals, placeholder)),
        ExprKind::List(items) => items
            .iter_mut()
            .for_each(|a| rename_in(a, formals, placeholder)),
        ExprKind::Number { .. } | ExprKind::Str(_) => {}
    }
}

//! `process` declarations: which statements a process body accepts, and its instantiation
//! with concrete parameter values.

use super::error as E;
use super::lower::{lower, lower_with_transform, Helper, Scope};
use super::state::check_state;
use super::values;
use crate::diag::{did_you_mean, Diagnostic, FileId, Span};
use crate::ir::{self, DeleteKernel, Expr, Loc, StateSpace, Var};
use crate::syntax::ast::{self, ExprKind, StmtKind};
use std::collections::{BTreeMap, BTreeSet};

/// Statements a process body understands (for did-you-mean).
pub const PROCESS_STATEMENTS: &[&str] = &[
    "time",
    "state",
    "drift",
    "diffusion",
    "mean",
    "std",
    "jumps",
    "delete",
    "transform",
];

/// A checked but not yet instantiated process: expressions still mention parameters.
#[derive(Clone, Debug)]
pub struct ProcessDef {
    pub name: String,
    pub loc: Loc,
    pub params: Vec<ParamDef>,
    pub time: Option<(Expr, Expr, Span)>,
    pub state: (StateSpace, Span),
    pub drift: Option<(Expr, Span)>,
    pub diffusion: Option<(Expr, Span)>,
    pub mean: Option<(Expr, Span, bool)>,
    pub std: Option<(Expr, Span)>,
    pub jumps: Option<JumpsDef>,
    pub delete: Option<DeleteDef>,
    pub transform: Option<ir::Transform>,
    /// Statements present in the body (`time`, `drift`, ...), whether or not they checked.
    pub declared: BTreeSet<String>,
    /// Statements present but with an error (already reported): checks that need them are
    /// skipped instead of reporting the same problem again in other words.
    pub failed: BTreeSet<String>,
    /// Some statement had an error: experiments using this process are not checked further
    /// (the error is already reported).
    pub broken: bool,
}

#[derive(Clone, Debug)]
pub struct ParamDef {
    pub name: String,
    pub default: Option<f64>,
    /// A default was written but did not evaluate (already reported).
    pub default_failed: bool,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub struct JumpsDef {
    pub rate: (Expr, Span),
    pub family: String,
    pub amplitude_args: Vec<(String, Expr, Span)>,
    pub r_min: f64,
    pub t_min: f64,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub struct DeleteDef {
    pub rate: (Expr, Span),
    pub kernel: DeleteKernel,
    pub span: Span,
}

/// Checks a process declaration's structure and lowers its expressions.
pub fn check_decl(
    file: FileId,
    decl: &ast::ProcessDecl,
    diags: &mut Vec<Diagnostic>,
) -> ProcessDef {
    let before = diags.len();
    let params = check_params(file, decl, diags);
    let param_names: Vec<String> = params.iter().map(|p| p.name.clone()).collect();
    let helpers = collect_helpers(file, &decl.body, &param_names, diags);
    let mut def = ProcessDef {
        name: decl.name.name.clone(),
        loc: Loc {
            file,
            span: decl.name.span,
        },
        params,
        time: None,
        state: (StateSpace::Vector(None), decl.name.span),
        drift: None,
        diffusion: None,
        mean: None,
        std: None,
        jumps: None,
        delete: None,
        transform: None,
        declared: BTreeSet::new(),
        failed: BTreeSet::new(),
        broken: false,
    };
    let mut seen: BTreeMap<String, Span> = BTreeMap::new();
    let transform_name = decl.body.stmts.iter().find_map(|s| match &s.kind {
        StmtKind::Def {
            transform: true,
            name,
            ..
        } => Some(name.name.clone()),
        _ => None,
    });
    for stmt in &decl.body.stmts {
        let head = stmt.kind.head();
        let key = match &stmt.kind {
            StmtKind::Def {
                transform: true, ..
            } => "transform".to_string(),
            _ => head.name.clone(),
        };
        let is_part = PROCESS_STATEMENTS.contains(&key.as_str());
        if is_part {
            if let Some(first) = seen.get(&key) {
                diags.push(E::duplicate_statement(file, head.span, &key, *first));
                continue;
            }
            seen.insert(key.clone(), head.span);
        }
        let errors_before = error_count(diags);
        let scope = |vars: &[(&str, Var)]| Scope {
            file,
            params: &param_names,
            helpers: &helpers,
            vars: vars.iter().map(|(n, v)| (n.to_string(), *v)).collect(),
            transform: None,
            transform_elsewhere: transform_name.as_deref(),
        };
        match (&stmt.kind, key.as_str()) {
            (StmtKind::Assign { value, .. }, "time") => {
                def.time = check_time(file, value, &scope(&[]), diags)
            }
            (StmtKind::Assign { value, .. }, "state") => {
                if let Some(s) = check_state(file, value, diags) {
                    def.state = (s, value.span);
                }
            }
            (StmtKind::Def { formals, body, .. }, "drift") => {
                if let Some(vars) = check_formals(file, "drift", formals, &["x", "t"], diags) {
                    def.drift = lower(body, &scope(&vars), diags).map(|e| (e, body.span));
                }
            }
            (StmtKind::Def { formals, body, .. }, "diffusion") => {
                if let Some(vars) = check_formals(file, "diffusion", formals, &["t"], diags) {
                    def.diffusion = lower(body, &scope(&vars), diags).map(|e| (e, body.span));
                }
            }
            (StmtKind::Def { formals, body, .. }, "mean") => {
                if let Some(vars) = check_formals(file, "mean", formals, &["x", "t"], diags) {
                    let mut sc = scope(&vars);
                    sc.transform = transform_name.as_deref();
                    def.mean =
                        lower_with_transform(body, &sc, diags).map(|(e, tr)| (e, body.span, tr));
                }
            }
            (StmtKind::Def { formals, body, .. }, "std") => {
                if let Some(vars) = check_formals(file, "std", formals, &["t"], diags) {
                    def.std = lower(body, &scope(&vars), diags).map(|e| (e, body.span));
                }
            }
            (StmtKind::Block { block, .. }, "jumps") => {
                def.jumps = check_jumps(file, block, &scope(&[]), &param_names, &helpers, diags)
            }
            (StmtKind::Block { block, .. }, "delete") => {
                def.delete = check_delete(file, block, &param_names, &helpers, diags)
            }
            (
                StmtKind::Def {
                    transform: true,
                    name,
                    formals,
                    body,
                },
                _,
            ) => {
                if check_formals(file, "transform", formals, &["x", "t"], diags).is_some() {
                    def.transform = check_transform(file, name, body, diags);
                }
            }
            (StmtKind::Def { .. }, _) if !is_part => {} // a helper, lowered where it is used
            (_, k) if is_part => diags.push(E::wrong_statement_form(file, stmt.span, k)),
            _ => diags.push(E::unknown_statement(
                file,
                head.span,
                &head.name,
                "process",
                PROCESS_STATEMENTS,
            )),
        }
        if is_part {
            def.declared.insert(key.clone());
            if error_count(diags) > errors_before {
                def.failed.insert(key);
            }
        }
    }
    if def.time.is_none() && !seen.contains_key("time") {
        diags.push(E::missing_part(
            file,
            decl.name.span,
            "time",
            "time = [0, 1]",
        ));
    }
    warn_unused_helpers(file, &decl.body, &helpers, diags);
    let errors_so_far = diags[before..].iter().any(Diagnostic::is_error);
    check_part_combinations(&def, errors_so_far, diags);
    def.broken = diags[before..].iter().any(Diagnostic::is_error);
    def
}

fn error_count(diags: &[Diagnostic]) -> usize {
    diags.iter().filter(|d| d.is_error()).count()
}

/// The first parameter name (and where) used in a parameter's default: defaults are numbers
/// fixed before any parameter has a value.
fn param_used<'a>(e: &'a ast::Expr, names: &[&str]) -> Option<(&'a str, Span)> {
    match &e.kind {
        ast::ExprKind::Ident(n) if names.contains(&n.as_str()) => Some((n.as_str(), e.span)),
        ast::ExprKind::Number { .. } | ast::ExprKind::Str(_) | ast::ExprKind::Ident(_) => None,
        ast::ExprKind::Neg(a) => param_used(a, names),
        ast::ExprKind::Binary(_, a, b) => param_used(a, names).or_else(|| param_used(b, names)),
        ast::ExprKind::Call { args, .. } => args.iter().find_map(|a| param_used(&a.value, names)),
        ast::ExprKind::List(items) => items.iter().find_map(|a| param_used(a, names)),
    }
}

fn check_params(
    file: FileId,
    decl: &ast::ProcessDecl,
    diags: &mut Vec<Diagnostic>,
) -> Vec<ParamDef> {
    let mut out: Vec<ParamDef> = Vec::new();
    for p in &decl.params {
        if let Some(prev) = out.iter().find(|q| q.name == p.name.name) {
            diags.push(E::duplicate_param(
                file,
                p.name.span,
                &p.name.name,
                prev.span,
            ));
            continue;
        }
        if matches!(p.name.name.as_str(), "x" | "t" | "n" | "pi") {
            diags.push(E::reserved_name(file, p.name.span, &p.name.name));
            continue;
        }
        let names: Vec<&str> = decl.params.iter().map(|q| q.name.name.as_str()).collect();
        let default = match p.default.as_ref() {
            Some(d) => match param_used(d, &names) {
                Some((used, span)) => {
                    diags.push(E::default_uses_param(file, span, &p.name.name, used));
                    None
                }
                None => values::constant(file, d, "parameter default", diags),
            },
            None => None,
        };
        out.push(ParamDef {
            name: p.name.name.clone(),
            default,
            default_failed: p.default.is_some() && default.is_none(),
            span: p.name.span,
        });
    }
    out
}

fn collect_helpers(
    file: FileId,
    body: &ast::Block,
    params: &[String],
    diags: &mut Vec<Diagnostic>,
) -> BTreeMap<String, Helper> {
    let mut helpers: BTreeMap<String, Helper> = BTreeMap::new();
    for stmt in &body.stmts {
        if let StmtKind::Def {
            transform: false,
            name,
            formals,
            body,
        } = &stmt.kind
        {
            if PROCESS_STATEMENTS.contains(&name.name.as_str()) {
                continue;
            }
            let hidden = if params.contains(&name.name) {
                Some("a parameter of this process")
            } else if crate::ir::Func::from_name(&name.name).is_some() {
                Some("a built-in function")
            } else {
                None
            };
            if let Some(what) = hidden {
                diags.push(E::shadowing(file, name.span, &name.name, what));
                continue;
            }
            if let Some(prev) = helpers.get(&name.name) {
                diags.push(E::duplicate_statement(
                    file, name.span, &name.name, prev.span,
                ));
                continue;
            }
            helpers.insert(
                name.name.clone(),
                Helper {
                    formals: formals.clone(),
                    body: body.clone(),
                    span: name.span,
                },
            );
        }
    }
    helpers
}

fn warn_unused_helpers(
    file: FileId,
    body: &ast::Block,
    helpers: &BTreeMap<String, Helper>,
    diags: &mut Vec<Diagnostic>,
) {
    for (name, helper) in helpers {
        let used = body.stmts.iter().any(|s| mentions(&s.kind, name));
        if used {
            continue;
        }
        // An unused definition named like a statement is a misspelt statement
        // (`difusion(t) = ...`), not a helper: say so instead of "unused".
        if did_you_mean(name, PROCESS_STATEMENTS.iter().copied()).is_some() {
            diags.push(E::unknown_statement(
                file,
                helper.span,
                name,
                "process",
                PROCESS_STATEMENTS,
            ));
        } else {
            diags.push(E::unused_helper(file, helper.span, name));
        }
    }
}

fn mentions(kind: &StmtKind, name: &str) -> bool {
    match kind {
        StmtKind::Def {
            body, name: own, ..
        } => own.name != name && expr_mentions(body, name),
        StmtKind::Dist { dist, .. } => expr_mentions(dist, name),
        StmtKind::Assign { value, .. } => expr_mentions(value, name),
        StmtKind::Block { block, .. } => block.stmts.iter().any(|s| mentions(&s.kind, name)),
    }
}

fn expr_mentions(e: &ast::Expr, name: &str) -> bool {
    match &e.kind {
        ExprKind::Ident(n) => n == name,
        ExprKind::Call { callee, args } => {
            callee.name == name || args.iter().any(|a| expr_mentions(&a.value, name))
        }
        ExprKind::Neg(a) => expr_mentions(a, name),
        ExprKind::Binary(_, a, b) => expr_mentions(a, name) || expr_mentions(b, name),
        ExprKind::List(items) => items.iter().any(|i| expr_mentions(i, name)),
        ExprKind::Number { .. } | ExprKind::Str(_) => false,
    }
}

/// Checks a definition's argument list against the variables it may use.
fn check_formals(
    file: FileId,
    part: &str,
    formals: &[ast::Ident],
    allowed: &[&'static str],
    diags: &mut Vec<Diagnostic>,
) -> Option<Vec<(&'static str, Var)>> {
    let mut vars = Vec::new();
    for f in formals {
        match allowed.iter().find(|a| **a == f.name) {
            Some(a) => vars.push((*a, var_of(a))),
            None => {
                diags.push(E::bad_formal(file, f.span, part, &f.name, allowed));
                return None;
            }
        }
    }
    Some(vars)
}

fn var_of(name: &str) -> Var {
    match name {
        "x" => Var::X,
        "n" => Var::N,
        _ => Var::T,
    }
}

fn check_time(
    file: FileId,
    value: &ast::Expr,
    scope: &Scope,
    diags: &mut Vec<Diagnostic>,
) -> Option<(Expr, Expr, Span)> {
    let ExprKind::List(items) = &value.kind else {
        diags.push(E::bad_time(file, value.span));
        return None;
    };
    if items.len() != 2 {
        diags.push(E::bad_time(file, value.span));
        return None;
    }
    let a = lower(&items[0], scope, diags);
    let b = lower(&items[1], scope, diags);
    Some((a?, b?, value.span))
}

fn check_jumps(
    file: FileId,
    block: &ast::Block,
    scope: &Scope,
    params: &[String],
    helpers: &BTreeMap<String, Helper>,
    diags: &mut Vec<Diagnostic>,
) -> Option<JumpsDef> {
    const KEYS: &[&str] = &["rate", "amplitude", "r_min", "t_min"];
    let mut rate = None;
    let mut amplitude = None;
    let mut amplitude_given = false;
    let mut r_min = 1e-4;
    let mut t_min = 1e-3;
    for stmt in &block.stmts {
        match &stmt.kind {
            StmtKind::Def {
                name,
                formals,
                body,
                ..
            } if name.name == "rate" => {
                let ctx = RateCtx {
                    file,
                    params,
                    helpers,
                };
                rate = ctx.lower_rate("jump rate", formals, body, &["t"], diags);
            }
            StmtKind::Dist { name, dist } if name.name == "amplitude" => {
                amplitude_given = true;
                amplitude = check_amplitude(file, dist, scope, diags);
            }
            StmtKind::Assign { key, value } if key.len() == 1 && key[0].name == "r_min" => {
                r_min = values::positive(file, value, "r_min", diags).unwrap_or(r_min);
            }
            StmtKind::Assign { key, value } if key.len() == 1 && key[0].name == "t_min" => {
                t_min = values::positive(file, value, "t_min", diags).unwrap_or(t_min);
            }
            other => reject_statement(file, other, stmt.span, "jumps", KEYS, diags),
        }
    }
    if rate.is_none() {
        diags.push(E::missing_part(file, block.span, "rate", "rate(t) = 1.0"));
    }
    if !amplitude_given {
        diags.push(E::missing_part(
            file,
            block.span,
            "amplitude",
            "amplitude ~ laplace(var = 1.0)",
        ));
    }
    let (family, amplitude_args, _) = amplitude?;
    Some(JumpsDef {
        rate: rate?,
        family,
        amplitude_args,
        r_min,
        t_min,
        span: block.span,
    })
}

/// Jump amplitude families and their parameters.
pub const FAMILIES: &[(&str, &[&str])] = &[("laplace", &["var", "shape"]), ("gaussian", &["var"])];

type AmplitudeParts = (String, Vec<(String, Expr, Span)>, Span);

fn check_amplitude(
    file: FileId,
    dist: &ast::Expr,
    scope: &Scope,
    diags: &mut Vec<Diagnostic>,
) -> Option<AmplitudeParts> {
    let ExprKind::Call { callee, args } = &dist.kind else {
        diags.push(E::bad_amplitude(file, dist.span));
        return None;
    };
    let names: Vec<&str> = FAMILIES.iter().map(|(n, _)| *n).collect();
    let Some((family, accepted)) = FAMILIES.iter().find(|(n, _)| *n == callee.name) else {
        diags.push(E::unknown_family(file, callee.span, &callee.name, &names));
        return None;
    };
    let mut out = Vec::new();
    let mut given = Vec::new();
    for (i, a) in args.iter().enumerate() {
        let name = match &a.name {
            Some(n) if accepted.contains(&n.name.as_str()) => n.name.clone(),
            Some(n) => {
                diags.push(E::unknown_argument(file, n.span, &n.name, family, accepted));
                continue;
            }
            None => match accepted.get(i) {
                Some(n) => n.to_string(),
                None => {
                    diags.push(E::too_many_args(file, a.value.span, family, accepted.len()));
                    continue;
                }
            },
        };
        given.push(name.clone());
        if let Some(e) = lower(&a.value, scope, diags) {
            out.push((name, e, a.value.span));
        }
    }
    if !given.iter().any(|n| n == "var") {
        diags.push(E::missing_argument(file, dist.span, family, "var"));
    }
    Some((family.to_string(), out, dist.span))
}

fn check_delete(
    file: FileId,
    block: &ast::Block,
    params: &[String],
    helpers: &BTreeMap<String, Helper>,
    diags: &mut Vec<Diagnostic>,
) -> Option<DeleteDef> {
    const KEYS: &[&str] = &["rate", "kernel"];
    let mut rate = None;
    let mut kernel = DeleteKernel::Uniform;
    for stmt in &block.stmts {
        match &stmt.kind {
            StmtKind::Def {
                name,
                formals,
                body,
                ..
            } if name.name == "rate" => {
                let ctx = RateCtx {
                    file,
                    params,
                    helpers,
                };
                rate = ctx.lower_rate("deletion rate", formals, body, &["t", "n"], diags);
            }
            StmtKind::Assign { key, value } if key.len() == 1 && key[0].name == "kernel" => {
                match value.as_ident() {
                    Some("uniform") => kernel = DeleteKernel::Uniform,
                    Some("last") => kernel = DeleteKernel::Last,
                    _ => diags.push(E::bad_choice(
                        file,
                        value.span,
                        "kernel",
                        &["uniform", "last"],
                    )),
                }
            }
            other => reject_statement(file, other, stmt.span, "delete", KEYS, diags),
        }
    }
    if rate.is_none() {
        diags.push(E::missing_part(
            file,
            block.span,
            "rate",
            "rate(t, n) = step(n - 1) * 1.0",
        ));
    }
    Some(DeleteDef {
        rate: rate?,
        kernel,
        span: block.span,
    })
}

fn check_transform(
    file: FileId,
    name: &ast::Ident,
    body: &ast::Expr,
    diags: &mut Vec<Diagnostic>,
) -> Option<ir::Transform> {
    let loc = Loc {
        file,
        span: name.span,
    };
    if body.as_ident() == Some("identity") {
        return Some(ir::Transform {
            name: name.name.clone(),
            network: super::experiment::default_network(),
            form: ir::TransformForm::Identity,
            loc,
        });
    }
    let args = match &body.kind {
        ExprKind::Call { callee, args } if callee.name == "learned" && !args.is_empty() => args,
        _ => {
            diags.push(E::bad_transform(file, body.span));
            return None;
        }
    };
    if args[0].name.is_some() {
        diags.push(E::bad_transform(file, body.span));
        return None;
    }
    let mut form = ir::TransformForm::Interpolate;
    let mut ok = true;
    for a in &args[1..] {
        let known = a.name.as_ref().is_some_and(|n| n.name == "form");
        if !known {
            diags.push(E::bad_transform(file, a.value.span));
            ok = false;
            continue;
        }
        match a.value.as_ident().and_then(ir::TransformForm::from_name) {
            Some(ir::TransformForm::Identity) | None => {
                diags.push(E::bad_transform_form(file, a.value.span));
                ok = false;
            }
            Some(f) => form = f,
        }
    }
    let network = super::experiment::check_network(file, &args[0].value, diags)?;
    ok.then(|| ir::Transform {
        name: name.name.clone(),
        network,
        form,
        loc,
    })
}

/// Whole-process rules (which parts go together). They use the statements as declared, so a
/// part with an error of its own is not reported again as missing.
fn check_part_combinations(def: &ProcessDef, has_errors: bool, diags: &mut Vec<Diagnostic>) {
    let file = def.loc.file;
    let sde = def
        .drift
        .as_ref()
        .map(|d| d.1)
        .or(def.diffusion.as_ref().map(|d| d.1));
    let explicit = def
        .mean
        .as_ref()
        .map(|m| m.1)
        .or(def.std.as_ref().map(|s| s.1));
    if let (Some(a), Some(b)) = (sde, explicit) {
        diags.push(E::conflicting_parts(file, b, a));
    }
    let has = |k: &str| def.declared.contains(k);
    match (&def.mean, &def.std) {
        (Some(m), None) if !has("std") => {
            diags.push(E::missing_part(file, m.1, "std", "std(t) = ..."))
        }
        (None, Some(s)) if !has("mean") => {
            diags.push(E::missing_part(file, s.1, "mean", "mean(x, t) = ..."))
        }
        _ => {}
    }
    // A missing drift means zero drift (VE); nothing to report. A process with other errors
    // may well have meant to add noise in the broken statement, so "no noise" waits; a
    // `mean` without `std` was reported as such above.
    let has_noise = ["diffusion", "std", "jumps", "delete", "mean"]
        .iter()
        .any(|k| has(k));
    if !has_noise && def.time.is_some() && !has_errors {
        diags.push(E::no_noise(file, def.loc.span));
    }
    // A `mean` with an error of its own may well use the transform: no warning then.
    let mean_unchecked = def.mean.is_none() && has("mean");
    if def.transform.is_some() && !mean_unchecked && def.mean.as_ref().is_none_or(|m| !m.2) {
        if let Some(t) = &def.transform {
            diags.push(E::unused_transform(file, t.loc.span, &t.name));
        }
    }
}

/// Reports a statement a block does not accept: a known key written in the wrong form, or an
/// unknown key (with a did-you-mean).
fn reject_statement(
    file: FileId,
    kind: &StmtKind,
    span: Span,
    block: &str,
    keys: &[&str],
    diags: &mut Vec<Diagnostic>,
) {
    let head = kind.head();
    if keys.contains(&head.name.as_str()) {
        diags.push(E::wrong_statement_form(file, span, &head.name));
    } else {
        diags.push(E::unknown_statement(
            file, head.span, &head.name, block, keys,
        ));
    }
}

/// What a `rate(...) = ...` definition inside a `jumps` or `delete` block can see.
struct RateCtx<'a> {
    file: FileId,
    params: &'a [String],
    helpers: &'a BTreeMap<String, Helper>,
}

impl RateCtx<'_> {
    /// Checks the rate's argument list against `allowed` and lowers its body.
    fn lower_rate(
        &self,
        what: &str,
        formals: &[ast::Ident],
        body: &ast::Expr,
        allowed: &[&'static str],
        diags: &mut Vec<Diagnostic>,
    ) -> Option<(Expr, Span)> {
        let vars = check_formals(self.file, what, formals, allowed, diags)?;
        let scope = Scope {
            file: self.file,
            params: self.params,
            helpers: self.helpers,
            vars: vars.iter().map(|(n, v)| (n.to_string(), *v)).collect(),
            transform: None,
            transform_elsewhere: None,
        };
        lower(body, &scope, diags).map(|e| (e, body.span))
    }
}

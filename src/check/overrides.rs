//! `--set block.key=value` overrides, applied to an experiment's syntax tree before checking
//! so that they are validated exactly like the spec itself.

use super::error as E;
use super::schema;
use crate::diag::{Diagnostic, FileId, Span};
use crate::syntax::ast::{self, Arg, ExprKind, Ident, Stmt, StmtKind};

/// One `--set` override, parsed. Its spans point into its own small source file.
#[derive(Clone, Debug)]
pub struct Override {
    pub file: FileId,
    pub block: Ident,
    pub key: Option<Ident>,
    pub value: ast::Expr,
}

/// Parses `block.key=value` (or `block=value`) held in `file`, whose text is exactly that.
pub fn parse_override(file: FileId, text: &str) -> Result<Override, Diagnostic> {
    let Some(eq) = text.find('=') else {
        return Err(E::override_syntax(file, Span::new(0, text.len())));
    };
    let key_text = &text[..eq];
    let mut parts = Vec::new();
    let mut offset = 0;
    for part in key_text.split('.') {
        let trimmed = part.trim();
        let start = offset + (part.len() - part.trim_start().len());
        if trimmed.is_empty()
            || !trimmed
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(E::override_syntax(file, Span::new(0, eq)));
        }
        parts.push(Ident {
            name: trimmed.to_string(),
            span: Span::new(start, start + trimmed.len()),
        });
        offset += part.len() + 1;
    }
    if parts.len() > 2 {
        return Err(E::override_syntax(file, Span::new(0, eq)));
    }
    let value_text = &text[eq + 1..];
    let mut value = crate::syntax::parse_expr(file, value_text)?;
    shift(&mut value, eq + 1);
    let mut parts = parts.into_iter();
    let block = parts
        .next()
        .ok_or_else(|| E::override_syntax(file, Span::new(0, eq)))?;
    Ok(Override {
        file,
        block,
        key: parts.next(),
        value,
    })
}

fn shift(e: &mut ast::Expr, by: usize) {
    e.span = e.span.shift(by);
    match &mut e.kind {
        ExprKind::Neg(a) => shift(a, by),
        ExprKind::Binary(_, a, b) => {
            shift(a, by);
            shift(b, by);
        }
        ExprKind::Call { callee, args } => {
            callee.span = callee.span.shift(by);
            for a in args {
                if let Some(n) = &mut a.name {
                    n.span = n.span.shift(by);
                }
                shift(&mut a.value, by);
            }
        }
        ExprKind::List(items) => items.iter_mut().for_each(|i| shift(i, by)),
        _ => {}
    }
}

/// Where an override's value went: inside the experiment its nodes carry `marker`, an empty
/// span no real node has; [`restore_spans`] sends diagnostics at the marker back to the
/// command line.
#[derive(Clone, Copy, Debug)]
pub struct Relocation {
    marker: Span,
    file: FileId,
    value: Span,
}

/// Applies every override to `decl`. Keys are checked here against the schema (in the
/// override's own file); an override with a bad key is reported and skipped. Values are
/// checked with the rest of the experiment; [`restore_spans`] then points their errors at
/// the command line.
pub fn apply(
    decl: &mut ast::ExperimentDecl,
    overrides: &[Override],
    diags: &mut Vec<Diagnostic>,
) -> Vec<Relocation> {
    let mut relocations = Vec::new();
    for (i, o) in overrides.iter().enumerate() {
        // Distinct empty spans inside the experiment's own text, one per override, keep
        // every diagnostic within the file's bounds even before its span is restored.
        let room = decl.span.len().max(1);
        let at = decl.span.start as usize + i % room;
        let marker = Span::new(at, at);
        if apply_one(decl, o, marker, diags) {
            relocations.push(Relocation {
                marker,
                file: o.file,
                value: o.value.span,
            });
        }
    }
    relocations
}

/// Points diagnostics (and their secondary labels) that sit at an override's marker at the
/// override's value on the command line instead.
pub fn restore_spans(diags: &mut [Diagnostic], root: FileId, relocations: &[Relocation]) {
    let find = |file: FileId, span: Span| {
        relocations
            .iter()
            .find(|r| file == root && span == r.marker)
    };
    for d in diags {
        if let Some(r) = find(d.file, d.span) {
            d.file = r.file;
            d.span = r.value;
        }
        for l in &mut d.extra_labels {
            if let Some(r) = find(l.file, l.span) {
                l.file = r.file;
                l.span = r.value;
            }
        }
    }
}

fn apply_one(
    decl: &mut ast::ExperimentDecl,
    o: &Override,
    marker: Span,
    diags: &mut Vec<Diagnostic>,
) -> bool {
    let block = o.block.name.as_str();
    if !schema::EXPERIMENT_KEYS.contains(&block) {
        diags.push(E::unknown_override(
            o.file,
            o.block.span,
            block,
            schema::EXPERIMENT_KEYS,
        ));
        return false;
    }
    let value = relocate(&o.value, marker);
    match (schema::block(block), &o.key) {
        (Some(settings), Some(key)) => {
            let Some(setting) = settings.iter().find(|s| s.key == key.name) else {
                diags.push(E::unknown_override(
                    o.file,
                    key.span,
                    &key.name,
                    &schema::keys(settings),
                ));
                return false;
            };
            if super::experiment::check_setting(o.file, block, setting, &o.value, diags).is_none() {
                return false;
            }
            set_in_block(decl, block, key, value);
            true
        }
        (Some(_), None) | (None, None)
            if block != "data" && block != "process" && block != "network" =>
        {
            if schema::block(block).is_some() {
                diags.push(E::override_needs_key(o.file, o.block.span, block));
                return false;
            }
            replace_statement(decl, block, value);
            true
        }
        (None, Some(key)) => set_call_arg(decl, block, key, value, o, diags),
        _ => {
            replace_statement(decl, block, value);
            true
        }
    }
}

/// A copy of an override's value whose every node carries `marker`.
fn relocate(value: &ast::Expr, marker: Span) -> ast::Expr {
    let mut v = value.clone();
    set_spans(&mut v, marker);
    v
}

fn set_spans(e: &mut ast::Expr, span: Span) {
    e.span = span;
    match &mut e.kind {
        ExprKind::Neg(a) => set_spans(a, span),
        ExprKind::Binary(_, a, b) => {
            set_spans(a, span);
            set_spans(b, span);
        }
        ExprKind::Call { callee, args } => {
            callee.span = span;
            for a in args {
                if let Some(n) = &mut a.name {
                    n.span = span;
                }
                set_spans(&mut a.value, span);
            }
        }
        ExprKind::List(items) => items.iter_mut().for_each(|i| set_spans(i, span)),
        _ => {}
    }
}

fn set_in_block(decl: &mut ast::ExperimentDecl, block: &str, key: &Ident, value: ast::Expr) {
    let assign = Stmt {
        kind: StmtKind::Assign {
            key: vec![Ident {
                name: key.name.clone(),
                span: value.span,
            }],
            value: value.clone(),
        },
        span: value.span,
    };
    for stmt in &mut decl.body.stmts {
        if let StmtKind::Block { name, block: body } = &mut stmt.kind {
            if name.name == block {
                body.stmts.retain(|s| !matches!(&s.kind, StmtKind::Assign { key: k, .. } if k[0].name == key.name));
                body.stmts.push(assign);
                return;
            }
        }
    }
    decl.body.stmts.push(Stmt {
        kind: StmtKind::Block {
            name: Ident {
                name: block.to_string(),
                span: value.span,
            },
            block: ast::Block {
                stmts: vec![assign],
                span: value.span,
            },
        },
        span: value.span,
    });
}

fn replace_statement(decl: &mut ast::ExperimentDecl, block: &str, value: ast::Expr) {
    decl.body.stmts.retain(|s| s.kind.head().name != block);
    decl.body.stmts.push(Stmt {
        kind: StmtKind::Assign {
            key: vec![Ident {
                name: block.to_string(),
                span: value.span,
            }],
            value: value.clone(),
        },
        span: value.span,
    });
}

/// `data.n=1000`, `process.sigma2=2`, `network.width=64`: sets a named argument of the call.
fn set_call_arg(
    decl: &mut ast::ExperimentDecl,
    block: &str,
    key: &Ident,
    value: ast::Expr,
    o: &Override,
    diags: &mut Vec<Diagnostic>,
) -> bool {
    let stmt = decl
        .body
        .stmts
        .iter_mut()
        .find(|s| s.kind.head().name == block);
    let Some(Stmt {
        kind: StmtKind::Assign { value: call, .. },
        ..
    }) = stmt
    else {
        if block == "network" {
            let call = ast::Expr {
                kind: ExprKind::Call {
                    callee: Ident {
                        name: "mlp".into(),
                        span: value.span,
                    },
                    args: vec![Arg {
                        name: Some(Ident {
                            name: key.name.clone(),
                            span: value.span,
                        }),
                        value: value.clone(),
                    }],
                },
                span: value.span,
            };
            replace_statement(decl, block, call);
            return true;
        }
        diags.push(E::override_without_target(o.file, o.block.span, block));
        return false;
    };
    if let ExprKind::Ident(name) = &call.kind {
        call.kind = ExprKind::Call {
            callee: Ident {
                name: name.clone(),
                span: call.span,
            },
            args: Vec::new(),
        };
    }
    let ExprKind::Call { args, .. } = &mut call.kind else {
        diags.push(E::override_without_target(o.file, o.block.span, block));
        return false;
    };
    args.retain(|a| a.name.as_ref().is_none_or(|n| n.name != key.name));
    args.push(Arg {
        name: Some(Ident {
            name: key.name.clone(),
            span: value.span,
        }),
        value,
    });
    true
}

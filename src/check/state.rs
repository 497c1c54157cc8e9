//! `state = …` of a process: `vec(d)`, `image(c, h, w)` or `set(max = N, of = vec(…))`, with
//! the named component parts of a set (`of = vec(position = 3, features = 6)`) and its
//! zero-centre-of-mass constraint (`com = position`).

use super::error as E;
use super::values;
use crate::diag::{Diagnostic, FileId, Span};
use crate::ir::{ComponentPart, StateSpace};
use crate::syntax::ast::{self, ExprKind};

/// A checked `vec(…)`: its size and, for the named form, its parts with their spans.
struct VecDecl {
    size: usize,
    parts: Vec<(ComponentPart, Span)>,
}

/// Checks a `state = …` value.
pub fn check_state(
    file: FileId,
    value: &ast::Expr,
    diags: &mut Vec<Diagnostic>,
) -> Option<StateSpace> {
    let ExprKind::Call { callee, args } = &value.kind else {
        diags.push(E::bad_state(
            file,
            value.span,
            "expected `vec(d)`, `image(c, h, w)` or `set(max = N, of = vec(d))`",
        ));
        return None;
    };
    match callee.name.as_str() {
        "vec" => {
            let args = without_com(file, args, &callee.name, false, diags);
            check_vec(file, callee, &args, diags).map(|v| StateSpace::Vector(Some(v.size)))
        }
        "image" => {
            let args = without_com(file, args, &callee.name, false, diags);
            values::call_ints(file, callee, &args, &["channels", "height", "width"], diags).map(
                |v| StateSpace::Image {
                    channels: v[0],
                    height: v[1],
                    width: v[2],
                },
            )
        }
        "set" => check_set(file, value.span, args, diags),
        other => {
            diags.push(E::unknown_state(file, callee.span, other));
            None
        }
    }
}

/// `args` without `com = …`, which is reported: only a set takes it (`in_set`: this `vec` is
/// the `of` of a set, so the fix is to move it one level up).
fn without_com(
    file: FileId,
    args: &[ast::Arg],
    callee: &str,
    in_set: bool,
    diags: &mut Vec<Diagnostic>,
) -> Vec<ast::Arg> {
    let mut kept = Vec::new();
    for a in args {
        match &a.name {
            Some(n) if n.name == "com" => diags.push(E::com_needs_set(
                file,
                n.span.to(a.value.span),
                callee,
                in_set,
            )),
            _ => kept.push(a.clone()),
        }
    }
    kept
}

/// `vec(d)`, `vec(dim = d)`, or the named form `vec(position = 3, features = 6)`.
fn check_vec(
    file: FileId,
    callee: &ast::Ident,
    args: &[ast::Arg],
    diags: &mut Vec<Diagnostic>,
) -> Option<VecDecl> {
    let plain = args.len() <= 1
        && args
            .iter()
            .all(|a| a.name.as_ref().is_none_or(|n| n.name == "dim"));
    if plain {
        let v = values::call_ints(file, callee, args, &["dim"], diags)?;
        return Some(VecDecl {
            size: v[0],
            parts: Vec::new(),
        });
    }
    let mut parts: Vec<(ComponentPart, Span)> = Vec::new();
    let mut ok = true;
    let mut start = 0;
    for a in args {
        let Some(name) = &a.name else {
            diags.push(E::bad_state(
                file,
                a.value.span,
                "name every part of the component: `vec(position = 3, features = 6)`",
            ));
            ok = false;
            continue;
        };
        let what = format!("size of part `{}`", name.name);
        let Some(size) = values::int(file, &a.value, &what, 1, diags) else {
            ok = false;
            continue;
        };
        if let Some((_, first)) = parts.iter().find(|(p, _)| p.name == name.name) {
            diags.push(E::duplicate_part(file, name.span, &name.name, *first));
            ok = false;
            continue;
        }
        parts.push((
            ComponentPart {
                name: name.name.clone(),
                range: start..start + size,
            },
            name.span,
        ));
        start += size;
    }
    ok.then_some(VecDecl { size: start, parts })
}

/// `set(max = N, of = vec(…), com = PART)`.
fn check_set(
    file: FileId,
    span: Span,
    args: &[ast::Arg],
    diags: &mut Vec<Diagnostic>,
) -> Option<StateSpace> {
    let mut max = None;
    let mut max_given = false;
    let mut component: Option<VecDecl> = None;
    let mut com: Option<(&str, Span)> = None;
    for a in args {
        let name = a.name.as_ref().map(|n| n.name.as_str());
        match name {
            Some("max") => {
                max_given = true;
                max = values::int(file, &a.value, "set max", 1, diags);
            }
            Some("of") => match &a.value.kind {
                ExprKind::Call { callee, args } if callee.name == "vec" => {
                    let args = without_com(file, args, "vec", true, diags);
                    component = check_vec(file, callee, &args, diags);
                }
                _ => {
                    if check_state(file, &a.value, diags).is_some() {
                        diags.push(E::bad_state(
                            file,
                            a.value.span,
                            "set components must be vectors: `of = vec(d)`",
                        ));
                    }
                }
            },
            Some("com") => match a.value.as_ident() {
                Some(part) => com = Some((part, a.value.span)),
                None => diags.push(E::bad_state(
                    file,
                    a.value.span,
                    "`com` names a part of the component: `com = position`",
                )),
            },
            _ => {
                diags.push(E::bad_state(
                    file,
                    a.value.span,
                    "`set` takes `max = N`, `of = vec(d)` and optionally `com = PART`",
                ));
            }
        }
    }
    let (Some(max), Some(component)) = (max, component) else {
        if !max_given {
            diags.push(E::bad_state(
                file,
                span,
                "`set` needs `max = N` (N ≥ 1) and `of = vec(d)`",
            ));
        }
        return None;
    };
    let parts: Vec<ComponentPart> = component.parts.into_iter().map(|(p, _)| p).collect();
    // An unknown part is reported and the constraint dropped, so that the rest of the
    // process and its experiments are still checked against the state.
    let com = com.and_then(|(name, span)| match parts.iter().find(|p| p.name == name) {
        Some(p) => Some(p.range.clone()),
        None => {
            let names: Vec<&str> = parts.iter().map(|p| p.name.as_str()).collect();
            diags.push(E::unknown_part(file, span, name, &names));
            None
        }
    });
    Some(StateSpace::Set {
        max,
        component: component.size,
        parts,
        com,
    })
}

#[cfg(test)]
mod tests {
    use crate::check::{add_source, check, Loader};
    use crate::diag::{Diagnostics, SourceMap};
    use crate::ir::{ComponentPart, StateSpace};
    use std::path::Path;

    /// No files: the specs below import nothing.
    struct NoFiles;

    impl Loader for NoFiles {
        fn read(&self, path: &Path) -> Result<Vec<u8>, String> {
            Err(format!("no file {}", path.display()))
        }
    }

    /// The state of a process declaring `state`, or the codes of the errors it draws.
    fn state_of(state: &str) -> Result<StateSpace, Vec<&'static str>> {
        let text = format!(
            "process p() {{\n  time = [0, 1]\n  state = {state}\n  drift(x, t) = -10 * x\n  diffusion(t) = sqrt(20)\n}}\n"
        );
        let mut sources = SourceMap::default();
        let mut pre = Diagnostics::default();
        let root = add_source(
            &mut sources,
            "t.diff".into(),
            None,
            text.into_bytes(),
            &mut pre,
        );
        let checked = check(&mut sources, &[root], &NoFiles, &[], None);
        let errors: Vec<&'static str> = checked
            .diagnostics
            .items
            .iter()
            .filter(|d| d.is_error())
            .map(|d| d.code)
            .collect();
        match checked.model {
            Some(m) if errors.is_empty() => Ok(m.processes[0].state.clone()),
            _ => Err(errors),
        }
    }

    fn part(name: &str, range: std::ops::Range<usize>) -> ComponentPart {
        ComponentPart {
            name: name.into(),
            range,
        }
    }

    #[test]
    fn named_parts_and_com_reach_the_ir() {
        let s = state_of("set(max = 29, of = vec(position = 3, features = 6), com = position)")
            .expect("checks");
        assert_eq!(
            s,
            StateSpace::Set {
                max: 29,
                component: 9,
                parts: vec![part("position", 0..3), part("features", 3..9)],
                com: Some(0..3),
            }
        );
        assert_eq!(
            s.describe(),
            "set(max = 29, of = vec(position = 3, features = 6), com = position)"
        );
        assert_eq!(s.dim(), Some(29 * 9));
        let s = state_of("set(max = 4, of = vec(features = 6, position = 3), com = position)")
            .expect("checks");
        assert_eq!(s.com(), Some(6..9));
        // Parts without a constraint are kept too.
        let s = state_of("set(max = 4, of = vec(a = 1, b = 2))").expect("checks");
        assert_eq!(s.parts(), &[part("a", 0..1), part("b", 1..3)]);
        assert_eq!(s.com(), None);
    }

    #[test]
    fn plain_vectors_are_unchanged() {
        let plain = StateSpace::Set {
            max: 8,
            component: 2,
            parts: Vec::new(),
            com: None,
        };
        assert_eq!(state_of("set(max = 8, of = vec(2))"), Ok(plain.clone()));
        assert_eq!(
            state_of("set(max = 8, of = vec(dim = 2))"),
            Ok(plain.clone())
        );
        assert_eq!(plain.describe(), "set(max = 8, of = vec(2))");
        assert_eq!(state_of("vec(4)"), Ok(StateSpace::Vector(Some(4))));
        assert_eq!(state_of("vec(dim = 4)"), Ok(StateSpace::Vector(Some(4))));
    }

    #[test]
    fn misuses_are_reported_with_their_codes() {
        for (state, code) in [
            (
                "set(max = 8, of = vec(a = 1, b = 2), com = c)",
                "difc::check::unknown_part",
            ),
            (
                "set(max = 8, of = vec(3), com = a)",
                "difc::check::unknown_part",
            ),
            (
                "set(max = 8, of = vec(a = 1, a = 2))",
                "difc::check::duplicate_definition",
            ),
            (
                "set(max = 8, of = vec(a = 1, b = 0))",
                "difc::check::out_of_range",
            ),
            ("set(max = 8, of = vec(a = 1, 2))", "difc::check::bad_state"),
            (
                "set(max = 8, of = vec(a = 2), com = 3)",
                "difc::check::bad_state",
            ),
            (
                "set(max = 8, of = vec(a = 2, com = a))",
                "difc::check::com_needs_set",
            ),
            ("vec(3, com = a)", "difc::check::com_needs_set"),
            ("image(1, 4, 4, com = a)", "difc::check::com_needs_set"),
        ] {
            assert_eq!(state_of(state), Err(vec![code]), "{state}");
        }
    }
}

//! The pipeline's layering, enforced: a stage may use the stages before it, never a later one.
//! syntax → check → ir → compile → run; `nn` (network modules) sits beside `compile`, below `run`.
//! (`run` itself may use the checker, e.g. to load specs in its tests.)

use std::path::Path;

/// Every `crate::<stage>` mentioned in the Rust files under `src/<dir>` (the first segment of
/// [`uses_paths`]).
fn uses(dir: &str) -> Vec<(String, String)> {
    uses_paths(dir)
        .into_iter()
        .map(|(at, p)| (at, p.split("::").next().unwrap_or("").to_string()))
        .collect()
}

fn assert_never_uses(dir: &str, forbidden: &[&str]) {
    let bad: Vec<String> = uses(dir)
        .into_iter()
        .filter(|(_, m)| forbidden.contains(&m.as_str()))
        .map(|(at, m)| format!("{at}: uses crate::{m}"))
        .collect();
    assert!(
        bad.is_empty(),
        "src/{dir} reaches into a stage it must not use:\n{}",
        bad.join("\n")
    );
}

#[test]
fn front_end_stages_never_use_the_back_end() {
    for dir in ["syntax", "ir", "compile", "nn"] {
        assert_never_uses(dir, &["run", "cli", "driver"]);
    }
    // Known exception, to be removed: the checker reads the data-generator catalogue and npy
    // headers from `run` (`run::data::{generator, GENERATORS, GeneratorSpec, MAX_VALUES,
    // MAX_SET_SIZE}`, `run::npy`) and validates set files as the run will
    // (`run::sets::SetData::from_padded_rows`). Nothing else of `run` may be used by it.
    let bad: Vec<String> = uses_paths("check")
        .into_iter()
        .filter(|(_, p)| {
            p.starts_with("run") && !ALLOWED_CHECK_RUN.iter().any(|a| p.starts_with(a))
        })
        .map(|(at, p)| format!("{at}: uses crate::{p}"))
        .collect();
    assert!(
        bad.is_empty(),
        "src/check reaches into run:\n{}",
        bad.join("\n")
    );
    assert_never_uses("check", &["cli", "driver"]);
}

const ALLOWED_CHECK_RUN: &[&str] = &[
    "run::data::generator",
    "run::data::GENERATORS",
    "run::data::MAX_VALUES",
    "run::data::GeneratorSpec",
    "run::data::MAX_SET_SIZE",
    "run::sets::SetData::from_padded_rows",
    "run::npy::",
];

/// Like [`uses`], with the whole path after `crate::`.
fn uses_paths(dir: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(dir)];
    while let Some(p) = stack.pop() {
        if p.is_dir() {
            for e in std::fs::read_dir(&p).expect("readable src") {
                stack.push(e.expect("entry").path());
            }
        } else if p.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&p).expect("utf-8 source");
            for (i, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                let mut rest = code;
                while let Some(k) = rest.find("crate::") {
                    let after = &rest[k + 7..];
                    let path: String = after
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                        .collect();
                    out.push((format!("{}:{}", p.display(), i + 1), path));
                    rest = after;
                }
            }
        }
    }
    out
}

#[test]
fn back_end_stages_never_use_the_front_end() {
    for dir in ["compile", "nn", "ir"] {
        assert_never_uses(dir, &["syntax", "check"]);
    }
}

#[test]
fn the_scan_sees_imports() {
    // The scanner itself must find what it looks for, or the tests above prove nothing.
    assert!(uses("compile").iter().any(|(_, m)| m == "ir"));
    assert!(uses_paths("check")
        .iter()
        .any(|(_, p)| p.starts_with("run::data::generator")));
}

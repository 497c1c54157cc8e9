//! Stage 2: syntax trees → checked model (IR). Resolves imports and names, checks arity,
//! shapes and settings, runs the mathematical checks, and reports every problem it finds.
//!
//! Invariant: no file IO except through [`Loader`]; every diagnostic carries a span.

mod error;
mod error_sets;
mod error_settings;
mod experiment;
mod instance;
mod load;
mod lower;
mod math;
mod overrides;
mod process;
pub mod resources;
mod schema;
mod sets;
mod singular;
mod state;
mod values;

pub use load::{add_source, normalize as normalize_path, FsLoader, Loader, STDLIB};
pub use overrides::{parse_override, Override};
pub use schema::{Kind, Setting, EXPERIMENT_KEYS, GRIDS, SOLVERS};

use crate::diag::{Diagnostic, Diagnostics, FileId, SourceMap};
use crate::ir::Model;
use crate::syntax::ast::Item;
use process::ProcessDef;
use std::collections::BTreeMap;

/// The result of checking: the model (when there are no errors) and all diagnostics.
pub struct Checked {
    pub model: Option<Model>,
    pub diagnostics: Diagnostics,
    /// Every experiment declared in the root files, in order (clean or not).
    pub experiment_names: Vec<String>,
}

/// Checks `roots` (already in `sources`) and everything they import. `overrides` apply to
/// experiment `only` when it is given, else to every experiment of the root files.
///
/// The model holds every process and every experiment that checked clean: an experiment's
/// own errors (tagged with its name, see [`crate::diag::Scope`]) do not drop the others. It
/// is `None` when some error concerns everyone (syntax, imports, a process declaration).
pub fn check(
    sources: &mut SourceMap,
    roots: &[FileId],
    loader: &dyn Loader,
    overrides: &[Override],
    only: Option<&str>,
) -> Checked {
    let mut diagnostics = Diagnostics::default();
    let mut loaded = load::load_all(sources, roots, loader, &mut diagnostics);
    let mut diags = Vec::new();
    let mut known = experiment::Processes::default();
    let mut model = Model::default();
    let mut experiment_names = Vec::new();
    for &file in &loaded.order {
        let Some(ast) = loaded.asts.get(&file) else {
            continue;
        };
        known
            .broken
            .extend(ast.broken.iter().map(|b| b.name.clone()));
        for item in &ast.items {
            let Item::Process(decl) = item else { continue };
            if let Some(prev) = known.defs.get(&decl.name.name) {
                diags.push(error::duplicate_process(
                    file,
                    decl.name.span,
                    &decl.name.name,
                    prev.loc,
                ));
                continue;
            }
            let def = process::check_decl(file, decl, &mut diags);
            if let Some(p) = instantiate_defaults(&def, &mut diags) {
                if !def.broken {
                    model.processes.push(p);
                }
            }
            known.defs.insert(def.name.clone(), def);
        }
    }
    // Without `--experiment`, `--set process.KEY=…` goes to the experiments whose process has
    // the parameter KEY (all of them when none has it, so that the typo is reported).
    let takes = |decl: &crate::syntax::ast::ExperimentDecl, o: &Override| -> bool {
        match (&o.block.name[..], &o.key) {
            ("process", Some(key)) => process_of(decl)
                .and_then(|p| known.defs.get(p))
                .is_none_or(|def| def.params.iter().any(|p| p.name == key.name)),
            _ => true,
        }
    };
    let wanted: Vec<bool> = overrides
        .iter()
        .map(|o| {
            roots.iter().any(|r| {
                loaded.asts.get(r).is_some_and(|ast| {
                    ast.items.iter().any(|i| match i {
                        Item::Experiment(decl) => {
                            only.is_none_or(|n| n == decl.name.name) && takes(decl, o)
                        }
                        _ => false,
                    })
                })
            })
        })
        .collect();
    for &root in roots {
        let base_dir = sources
            .get(root)
            .path
            .as_ref()
            .and_then(|p| p.parent().map(std::path::Path::to_path_buf));
        let Some(ast) = loaded.asts.get_mut(&root) else {
            continue;
        };
        let mut names: BTreeMap<String, crate::diag::Span> = BTreeMap::new();
        for item in ast.items.iter_mut() {
            let Item::Experiment(decl) = item else {
                continue;
            };
            if let Some(prev) = names.insert(decl.name.name.clone(), decl.name.span) {
                diags.push(error::duplicate_experiment(
                    root,
                    decl.name.span,
                    &decl.name.name,
                    prev,
                ));
                continue;
            }
            experiment_names.push(decl.name.name.clone());
            let before = diags.len();
            let selected = only.is_none_or(|n| n == decl.name.name);
            let relocations = if selected {
                let mine: Vec<Override> = overrides
                    .iter()
                    .zip(&wanted)
                    .filter(|(o, any)| !**any || takes(decl, o))
                    .map(|(o, _)| o.clone())
                    .collect();
                overrides::apply(decl, &mine, &mut diags)
            } else {
                Vec::new()
            };
            let after_overrides = diags.len();
            let checked =
                experiment::check(root, decl, &known, base_dir.clone(), loader, &mut diags);
            overrides::restore_spans(&mut diags[after_overrides..], root, &relocations);
            for d in &mut diags[before..] {
                d.scope = crate::diag::Scope {
                    everyone: false,
                    experiments: vec![decl.name.name.clone()],
                };
            }
            let own_errors = diags[before..].iter().any(Diagnostic::is_error);
            if let (Some(e), false) = (checked, own_errors) {
                model.experiments.push(e);
            }
        }
    }
    dedup(&mut diags);
    // Reading order: by file, then by position, so that a file's problems read top to bottom.
    // The sort is stable, so problems at the same place keep the order they were found in.
    diags.sort_by_key(|d| (d.file, d.span.start));
    diagnostics.extend(diags);
    let model = (!diagnostics
        .items
        .iter()
        .any(|d| d.is_error() && d.scope.everyone))
    .then_some(model);
    Checked {
        model,
        diagnostics,
        experiment_names,
    }
}

/// The name of the process an experiment uses (`process = NAME(…)` or `process = NAME`).
fn process_of(decl: &crate::syntax::ast::ExperimentDecl) -> Option<&str> {
    use crate::syntax::ast::{ExprKind, StmtKind};
    decl.body.stmts.iter().find_map(|s| match &s.kind {
        StmtKind::Assign { key, value } if key.len() == 1 && key[0].name == "process" => {
            match &value.kind {
                ExprKind::Call { callee, .. } => Some(callee.name.as_str()),
                ExprKind::Ident(name) => Some(name.as_str()),
                _ => None,
            }
        }
        _ => None,
    })
}

/// Instantiates a process with its default parameters, running the math checks. A process
/// with a parameter lacking a default is only checked when an experiment instantiates it.
///
/// A default that failed to evaluate (already reported) leaves its parameter symbolic: the
/// checks of expressions that do not mention it still run, so one bad default does not hide
/// the process's other problems.
fn instantiate_defaults(
    def: &ProcessDef,
    diags: &mut Vec<Diagnostic>,
) -> Option<crate::ir::Process> {
    if def
        .params
        .iter()
        .any(|p| p.default.is_none() && !p.default_failed)
    {
        return None;
    }
    let values = def
        .params
        .iter()
        .filter_map(|p| Some((p.name.clone(), p.default?)))
        .collect();
    let inst = instance::instantiate(def, &values)?;
    math::check_instance(def, inst, values, diags)
}

/// The same problem found twice (a process checked with its defaults and again through an
/// experiment using those defaults) is reported once, on behalf of everyone who found it.
fn dedup(diags: &mut Vec<Diagnostic>) {
    let mut first: std::collections::HashMap<_, usize> = std::collections::HashMap::new();
    let mut out: Vec<Diagnostic> = Vec::with_capacity(diags.len());
    for d in diags.drain(..) {
        let key = (d.code, d.file, d.span, d.message.clone());
        match first.get(&key) {
            Some(&i) => {
                let scope = d.scope;
                out[i].scope.merge(&scope);
            }
            None => {
                first.insert(key, out.len());
                out.push(d);
            }
        }
    }
    *diags = out;
}

//! The glue between the command line and the stages: load files, check them, render
//! diagnostics. Kept in the library so tests can drive it without a subprocess.

use crate::check::{self, Checked, Loader, Override};
use crate::diag::{render_human, render_json, Diagnostics, FileId, RenderOptions, SourceMap};
use std::path::{Path, PathBuf};

/// The embedded default spec, run by `difc run` without a file.
pub const DEFAULT_SPEC: (&str, &str) = (
    "specs/swiss_roll_vp.diff",
    include_str!("../specs/swiss_roll_vp.diff"),
);

/// How diagnostics are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Human,
    Json,
}

/// A failure before checking could start (unreadable file): exit code 2.
#[derive(Debug)]
pub struct IoFailure(pub String);

/// Everything a check produced, with the sources for rendering.
pub struct Session {
    pub sources: SourceMap,
    pub roots: Vec<FileId>,
    pub checked: Checked,
}

/// Reads and checks `paths` (an empty path list means the embedded default spec); the
/// overrides apply to every experiment.
pub fn check_paths(
    paths: &[PathBuf],
    overrides: &[String],
    loader: &dyn Loader,
) -> Result<Session, IoFailure> {
    check_paths_for(paths, overrides, loader, None)
}

/// Like [`check_paths`], with the overrides applied to experiment `only` alone when it is
/// given (`--experiment E`). Every experiment is still checked; the model keeps those that
/// are clean, so that one experiment's errors never block another (see [`Session::usable`]).
pub fn check_paths_for(
    paths: &[PathBuf],
    overrides: &[String],
    loader: &dyn Loader,
    only: Option<&str>,
) -> Result<Session, IoFailure> {
    let mut sources = SourceMap::default();
    let mut pre = Diagnostics::default();
    let mut roots = Vec::new();
    if paths.is_empty() {
        let (name, text) = DEFAULT_SPEC;
        roots.push(check::add_source(
            &mut sources,
            name.to_string(),
            None,
            text.as_bytes().to_vec(),
            &mut pre,
        ));
    }
    for path in paths {
        let bytes = loader
            .read(path)
            .map_err(|e| IoFailure(format!("cannot read `{}`: {e}", path.display())))?;
        let resolved = check_path_of(path);
        roots.push(check::add_source(
            &mut sources,
            path.display().to_string(),
            Some(resolved),
            bytes,
            &mut pre,
        ));
    }
    let mut parsed_overrides: Vec<Override> = Vec::new();
    for (i, text) in overrides.iter().enumerate() {
        let id = sources.add(crate::diag::SourceFile::new(
            format!("--set #{}", i + 1),
            None,
            text.clone(),
        ));
        match check::parse_override(id, text) {
            Ok(o) => parsed_overrides.push(o),
            // A malformed `--set` concerns the experiment it was meant for.
            Err(d) => pre.push(match only {
                Some(name) => d.for_experiment(name),
                None => d,
            }),
        }
    }
    let mut checked = check::check(&mut sources, &roots, loader, &parsed_overrides, only);
    let mut all = pre;
    all.extend(std::mem::take(&mut checked.diagnostics.items));
    if let Some(model) = &mut checked.model {
        all.extend(compile_diagnostics(model));
    }
    if all.items.iter().any(|d| d.is_error() && d.scope.everyone) {
        checked.model = None;
    }
    if let Some(model) = &mut checked.model {
        model.experiments.retain(|e| {
            !all.items
                .iter()
                .any(|d| d.is_error() && d.scope.concerns(&e.name))
        });
    }
    checked.diagnostics = all;
    Ok(Session {
        sources,
        roots,
        checked,
    })
}

/// What the compiler would refuse, reported at check time: an experiment the compiler cannot
/// train yet is a warning (the spec is valid), anything else an error with the span of the
/// declaration responsible. The data dimension is known for every checked experiment (data
/// files are judged by their header at check time). An experiment that names no solver gets
/// its family's first offered one here, so `run`, `sample` and `explain` use what was checked.
fn compile_diagnostics(model: &mut crate::ir::Model) -> Vec<crate::diag::Diagnostic> {
    let mut out: Vec<crate::diag::Diagnostic> = Vec::new();
    let declared = model.processes.iter().map(|p| (p, None));
    let used = model
        .experiments
        .iter()
        .map(|e| (&e.process, Some(e.name.as_str())));
    let mut seen: Vec<(crate::ir::Loc, usize)> = Vec::new();
    for (p, owner) in declared.chain(used) {
        let (Some(j), Some(_)) = (&p.jumps, &p.diffusion) else {
            continue;
        };
        let scope = crate::diag::Scope {
            everyone: owner.is_none(),
            experiments: owner.map(String::from).into_iter().collect(),
        };
        if let Some((_, i)) = seen.iter().find(|(loc, _)| *loc == j.loc) {
            out[*i].scope.merge(&scope);
            continue;
        }
        seen.push((j.loc, out.len()));
        let mut d = crate::diag::Diagnostic::warning(
            "difc::compile::tabulated_score",
            j.loc.file,
            j.loc.span,
            format!("`{}` has no closed-form generalized score: it is tabulated at compile time", p.name),
        )
        .with_label("jumps mixed with Gaussian noise")
        .with_help(match j.constant_rate {
            Some(_) => "the radial score is computed from its Hankel integrals on a 401 × 201 grid (r ≤ 20) and interpolated (2-D data only); safe to ignore, it is a note",
            None => "the radial score is computed from its Hankel integrals on a grid over the horizon, the time-varying rate integrated per grid node, and interpolated (2-D data only); safe to ignore, it is a note",
        });
        d.scope = scope;
        out.push(d);
    }
    for exp in &mut model.experiments {
        let Some(dim) = exp.data.dim else { continue };
        let compiled = crate::compile::compile(exp, dim);
        if let Ok(fwd) = &compiled {
            if !exp.sample.solver_given {
                if let Some(first) = fwd.solvers().first() {
                    exp.sample.solver = *first;
                    exp.resolved
                        .insert("sample.solver".into(), first.name().to_string());
                }
            }
            let solver = exp.sample.solver;
            if fwd.solvers().is_empty() {
                out.push(
                    crate::diag::Diagnostic::error(
                        "difc::compile::solver",
                        exp.loc.file,
                        exp.loc.span,
                        format!("experiment `{}`: process `{}` offers no solver for `target = {}` (see the singular_end warning)", exp.name, exp.process.name, exp.loss.target.name()),
                    )
                    .with_label("cannot be sampled")
                    .with_help("the singular_end warning says which solvers each target allows and how to change the schedule")
                    .for_experiment(&exp.name),
                );
            } else if !fwd.solvers().contains(&solver) {
                let why = crate::compile::SamplerError::unsupported(solver, fwd.solvers());
                out.push(
                    crate::diag::Diagnostic::error(
                        "difc::compile::solver",
                        exp.loc.file,
                        exp.loc.span,
                        format!("experiment `{}` samples process `{}` with a solver it does not support: {why}", exp.name, exp.process.name),
                    )
                    .with_label(format!("sample.solver = {}", solver.name()))
                    .with_help(match fwd.kind() {
                        crate::compile::FamilyKind::JumpClosedForm | crate::compile::FamilyKind::JumpTabulated =>
                            "jump processes need their own reverse noise: `exponential_sde` is the stochastic solver for them",
                        _ => "set `sample { solver = ... }` to one of the solvers listed",
                    })
                    .for_experiment(&exp.name),
                );
            }
            // Decoder noise far below the level spacing: the bound then pays for a network
            // that must learn x̂ ≈ round(z/α) (measured on the 17-level digits: σ/α = 0.0013,
            // 48× below the half-gap, costs 4 bpd against σ/α ≈ 0.08).
            if let Some((levels, noise)) = fwd.decoder_noise() {
                let half_gap = 1.0 / (levels.max(2) - 1) as f64;
                if noise > 0.0 && half_gap / noise > 10.0 {
                    let gamma = 2.0 * (half_gap / 3.0).ln();
                    let (ratio, target) = (half_gap / noise, half_gap / 3.0);
                    out.push(
                        crate::diag::Diagnostic::warning(
                            "difc::check::decoder_noise_below_levels",
                            exp.loc.file,
                            exp.loc.span,
                            format!(
                                "experiment `{}`: at t_min the noise σ/α = {noise:.4} is {ratio:.0}× below half the gap between the {levels} levels ({half_gap:.4})",
                                exp.name
                            ),
                        )
                        .with_label("discrete data, decoder at t_min")
                        .with_help(format!(
                            "the bound then pays for the network learning x̂ ≈ round(z/α) at tiny noise (on the 17-level digits: γ_min = −13.3 gives 6.7 bpd, −5 gives 2.7); start the schedule near σ/α ≈ {target:.4} (γ_min ≈ {gamma:.1} for a linear log-SNR), or raise `loss.t_min`; safe to ignore when the network resolves the levels"
                        ))
                        .for_experiment(&exp.name),
                    );
                }
            }
            let t_end = exp.sample.t_end.max(fwd.time().t_min);
            if let Err(why) = fwd.time_grid(exp.sample.grid, 2, t_end) {
                out.push(
                    crate::diag::Diagnostic::error(
                        "difc::compile::grid",
                        exp.loc.file,
                        exp.loc.span,
                        format!("experiment `{}` samples process `{}` on a time grid it cannot build: {why}", exp.name, exp.process.name),
                    )
                    .with_label(format!("sample.grid = {}", exp.sample.grid.name()))
                    .with_help("use `sample { grid = uniform }`")
                    .for_experiment(&exp.name),
                );
            }
        }
        // Every compile error is an error: `difc run` would refuse the experiment, so `check`
        // must not pass it (the promise: what `check` accepts, `run` trains).
        if let Err(e) = compiled {
            let d = e
                .to_diagnostic()
                .with_extra(
                    exp.loc.file,
                    exp.loc.span,
                    format!("compiled for experiment `{}`", exp.name),
                )
                .for_experiment(&exp.name);
            out.push(d);
        }
    }
    out
}

fn check_path_of(path: &Path) -> PathBuf {
    check::normalize_path(path)
}

impl Session {
    /// Whether experiment `name` is blocked: an error concerns everyone or it has its own.
    pub fn blocked(&self, name: &str) -> bool {
        self.checked.model.is_none()
            || self
                .checked
                .diagnostics
                .items
                .iter()
                .any(|d| d.is_error() && d.scope.concerns(name))
    }

    /// The checked experiment `name`, when it is not blocked.
    pub fn experiment(&self, name: &str) -> Option<&crate::ir::Experiment> {
        if self.blocked(name) {
            return None;
        }
        let model = self.checked.model.as_ref()?;
        model.experiments.iter().find(|e| e.name == name)
    }
}

/// Which diagnostics a command shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Show<'a> {
    /// Every diagnostic (`difc check`).
    All,
    /// Those of one experiment and those that concern everyone (`run`, `explain`).
    Experiment(&'a str),
    /// The errors that block one experiment and its own warnings (`difc sample`: the
    /// file's other warnings were shown when the run was trained).
    Blocking(&'a str),
}

impl Show<'_> {
    pub fn keeps(self, d: &crate::diag::Diagnostic) -> bool {
        match self {
            Show::All => true,
            Show::Experiment(name) => d.scope.concerns(name),
            Show::Blocking(name) => {
                if d.is_error() {
                    d.scope.concerns(name)
                } else {
                    d.scope.experiments.iter().any(|e| e == name)
                }
            }
        }
    }
}

/// Renders all diagnostics of a session, with a summary line for people.
pub fn render(session: &Session, format: Format, opts: RenderOptions) -> String {
    render_shown(session, format, opts, Show::All)
}

/// Renders the diagnostics `show` keeps, with a summary line for people.
pub fn render_shown(session: &Session, format: Format, opts: RenderOptions, show: Show) -> String {
    let mut out = String::new();
    let diags = crate::diag::Diagnostics {
        items: session
            .checked
            .diagnostics
            .items
            .iter()
            .filter(|d| show.keeps(d))
            .cloned()
            .collect(),
    };
    let diags = &diags;
    for d in &diags.items {
        match format {
            Format::Human => out.push_str(&render_human(d, &session.sources, opts)),
            Format::Json => {
                out.push_str(&render_json(d, &session.sources));
                out.push('\n');
            }
        }
    }
    if format == Format::Human && !diags.items.is_empty() {
        let (e, w) = (diags.error_count(), diags.warning_count());
        out.push_str(&format!(
            "{} error{}, {} warning{}\n",
            e,
            if e == 1 { "" } else { "s" },
            w,
            if w == 1 { "" } else { "s" }
        ));
    }
    out
}

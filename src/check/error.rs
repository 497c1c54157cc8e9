//! The wording of every checker diagnostic, in one place. Each function builds one diagnostic
//! with a stable code (`difc::check::…`), a label for what sits at the span and a one-sentence
//! help. Mathematical checks say in their help when it is safe to ignore them.

use crate::diag::{did_you_mean, list_names, suggest, Diagnostic, FileId, Span};
use crate::ir::Loc;

// The wording of experiment settings and `--set` overrides lives in `error_settings.rs`;
// it is re-exported here so that every message is reached as `error::…`.
pub use super::error_sets::*;
pub use super::error_settings::*;

type D = Diagnostic;

fn err(code: &'static str, file: FileId, span: Span, msg: String) -> D {
    D::error(code, file, span, msg)
}

fn fmt_num(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "∞".into()
        } else {
            "-∞".into()
        }
    } else if v.abs() >= 1e15 {
        // Beyond this, `{:.4}` writes every digit of the f64 (`1e99` as 100 digits).
        format!("{v:e}")
    } else {
        let s = format!("{:.4}", v);
        let s = s.trim_end_matches('0').trim_end_matches('.');
        if s.is_empty() || s == "-0" {
            format!("{v:.3e}")
        } else {
            s.to_string()
        }
    }
}

// ---- files and imports -------------------------------------------------------------------

pub fn not_utf8(file: FileId, span: Span) -> D {
    err(
        "difc::syntax::encoding",
        file,
        span,
        "file is not valid UTF-8".into(),
    )
    .with_label("invalid byte here")
    .with_help("save the spec as UTF-8 text")
}

pub fn empty_file(file: FileId) -> D {
    err(
        "difc::check::empty_file",
        file,
        Span::new(0, 0),
        "empty spec: nothing is declared".into(),
    )
    .with_label("no `use`, `process` or `experiment` in this file")
    .with_help("a spec declares at least one `process` or `experiment`; see specs/ for examples")
}

pub fn bad_module_path(file: FileId, span: Span, path: &str) -> D {
    err("difc::check::unknown_import", file, span, format!("cannot import `{path}`"))
        .with_label("not a stdlib module or a file")
        .with_help("import the standard library with `use stdlib.NAME`, other files with `use \"path/to/file.diff\"`")
}

pub fn unknown_stdlib(file: FileId, span: Span, name: &str, known: &[&str]) -> D {
    err(
        "difc::check::unknown_import",
        file,
        span,
        format!("the standard library has no module `{name}`"),
    )
    .with_label("unknown module")
    .with_help(suggest(name, known))
}

pub fn missing_import(file: FileId, span: Span, path: &str, why: &str) -> D {
    err(
        "difc::check::missing_file",
        file,
        span,
        format!("cannot read imported file `{path}`: {why}"),
    )
    .with_label("imported here")
    .with_help("paths in `use \"...\"` are relative to the importing file")
}

pub fn import_cycle(file: FileId, span: Span, chain: &[String]) -> D {
    err(
        "difc::check::import_cycle",
        file,
        span,
        format!("import cycle: {}", chain.join(" → ")),
    )
    .with_label("this import closes the cycle")
    .with_help("move the shared processes into a file that both import")
}

// ---- declarations ------------------------------------------------------------------------

pub fn duplicate_process(file: FileId, span: Span, name: &str, first: Loc) -> D {
    err(
        "difc::check::duplicate_definition",
        file,
        span,
        format!("process `{name}` is declared twice"),
    )
    .with_label("second declaration")
    .with_extra(first.file, first.span, "first declared here")
    .with_help("rename one of them")
}

pub fn duplicate_experiment(file: FileId, span: Span, name: &str, first: Span) -> D {
    err(
        "difc::check::duplicate_definition",
        file,
        span,
        format!("experiment `{name}` is declared twice"),
    )
    .with_label("second declaration")
    .with_extra(file, first, "first declared here")
    .with_help("rename one of them")
}

pub fn duplicate_param(file: FileId, span: Span, name: &str, first: Span) -> D {
    err(
        "difc::check::duplicate_definition",
        file,
        span,
        format!("parameter `{name}` is declared twice"),
    )
    .with_label("second declaration")
    .with_extra(file, first, "first declared here")
    .with_help("remove one of them")
}

pub fn reserved_name(file: FileId, span: Span, name: &str) -> D {
    err("difc::check::reserved_name", file, span, format!("`{name}` cannot be a parameter name"))
        .with_label("reserved")
        .with_help("`t`, `x` and `n` are the time, the state and the number of components, `pi` is π; pick another name")
}

pub fn shadowing(file: FileId, span: Span, name: &str, what: &str) -> D {
    err(
        "difc::check::reserved_name",
        file,
        span,
        format!("`{name}` is already {what}; a definition cannot take its name"),
    )
    .with_label("name already taken")
    .with_help(format!("rename the definition, e.g. `my_{name}`"))
}

pub fn duplicate_statement(file: FileId, span: Span, name: &str, first: Span) -> D {
    err(
        "difc::check::duplicate_statement",
        file,
        span,
        format!("`{name}` is given twice"),
    )
    .with_label("second definition")
    .with_extra(file, first, "first given here")
    .with_help("keep one of them")
}

pub fn unknown_statement(file: FileId, span: Span, name: &str, block: &str, known: &[&str]) -> D {
    let help = match did_you_mean(name, known.iter().copied()) {
        Some(c) => format!("did you mean `{c}`?"),
        None if block == "process" => format!(
            "a process accepts {}, and helper definitions like `beta(t) = ...`",
            list_names(known)
        ),
        None => format!("`{block}` accepts {}", list_names(known)),
    };
    err(
        "difc::check::unknown_statement",
        file,
        span,
        format!("unknown statement `{name}` in {block}"),
    )
    .with_label("not understood here")
    .with_help(help)
}

pub fn wrong_statement_form(file: FileId, span: Span, name: &str) -> D {
    let example = match name {
        "time" => "time = [0, 1]",
        "state" => "state = vec(2)",
        "drift" => "drift(x, t) = -0.5 * x",
        "diffusion" => "diffusion(t) = 1.0",
        "mean" => "mean(x, t) = alpha(t) * x",
        "std" => "std(t) = sigma(t)",
        "jumps" => "jumps { rate(t) = 1.0; amplitude ~ laplace(var = 1.0) }",
        "delete" => "delete { rate(t, n) = step(n - 1); kernel = uniform }",
        "rate" => "rate(t) = 1.0",
        "amplitude" => "amplitude ~ laplace(var = 1.0)",
        "train" => "train { steps = 4000, batch = 512 }",
        "sample" => "sample { n = 15000, solver = ode_heun, steps = 100 }",
        "loss" => "loss { target = eps }",
        "eval" => "eval { reference = 15000 }",
        "data" => "data = swiss_roll(n = 20000)",
        "process" => "process = vp()",
        "network" => "network = mlp(width = 128, depth = 4)",
        "metrics" => "metrics = [prd, mmd]",
        _ => "see specs/ for examples",
    };
    err(
        "difc::check::wrong_form",
        file,
        span,
        format!("`{name}` is written in the wrong form"),
    )
    .with_label("unexpected form")
    .with_help(format!("write it as `{example}`"))
}

pub fn missing_part(file: FileId, span: Span, part: &str, example: &str) -> D {
    err(
        "difc::check::missing_part",
        file,
        span,
        format!("missing `{part}`"),
    )
    .with_label(format!("needs `{part}`"))
    .with_help(format!("add `{example}`"))
}

pub fn bad_formal(file: FileId, span: Span, part: &str, name: &str, allowed: &[&str]) -> D {
    err(
        "difc::check::bad_argument_list",
        file,
        span,
        format!("{part} cannot depend on `{name}`"),
    )
    .with_label("not allowed here")
    .with_help(format!("{part} takes {}", list_names(allowed)))
}

pub fn bad_time(file: FileId, span: Span) -> D {
    err(
        "difc::check::bad_time",
        file,
        span,
        "the time interval must be a list of two numbers".into(),
    )
    .with_label("expected `[start, end]`")
    .with_help("write `time = [0, 1]`")
}

pub fn bad_state(file: FileId, span: Span, what: &str) -> D {
    err("difc::check::bad_state", file, span, "invalid state space".into())
        .with_label(what.to_string())
        .with_help("examples: `state = vec(2)`, `state = image(1, 28, 28)`, `state = set(max = 8, of = vec(2))`")
}

pub fn unknown_state(file: FileId, span: Span, name: &str) -> D {
    err(
        "difc::check::bad_state",
        file,
        span,
        format!("unknown state space `{name}`"),
    )
    .with_label("unknown")
    .with_help(suggest(name, &["vec", "image", "set"]))
}

pub fn bad_amplitude(file: FileId, span: Span) -> D {
    err(
        "difc::check::unknown_family",
        file,
        span,
        "a jump amplitude must be a distribution".into(),
    )
    .with_label("expected a distribution")
    .with_help("write `amplitude ~ laplace(var = 1.0)` or `amplitude ~ gaussian(var = 1.0)`")
}

pub fn unknown_family(file: FileId, span: Span, name: &str, known: &[&str]) -> D {
    err(
        "difc::check::unknown_family",
        file,
        span,
        format!("unknown amplitude distribution `{name}`"),
    )
    .with_label("unknown distribution")
    .with_help(suggest(name, known))
}

pub fn bad_transform(file: FileId, span: Span) -> D {
    err(
        "difc::check::bad_transform",
        file,
        span,
        "a transform must be `learned(network)`".into(),
    )
    .with_label("expected `learned(mlp(...))`, `learned(mlp(...), form = residual)` or `identity`")
    .with_help("write `transform F(x, t) = learned(mlp(width = 256, depth = 3))`")
}

pub fn bad_transform_form(file: FileId, span: Span) -> D {
    let forms: Vec<&str> = crate::ir::TransformForm::ALL
        .iter()
        .filter(|(f, _)| *f != crate::ir::TransformForm::Identity)
        .map(|(_, n)| *n)
        .collect();
    err(
        "difc::check::bad_transform",
        file,
        span,
        format!("unknown transform form; expected one of {}", forms.join(", ")),
    )
    .with_label("not a transform form")
    .with_help("`interpolate`: F = (1 − τ)·x + τ·NN(x, τ); `residual`: F = x + τ·NN(x, τ); both give F(x, 0) = x")
}

pub fn mean_outside_transform(file: FileId, span: Span, name: &str, rest: &str) -> D {
    err(
        "difc::check::mean_outside_transform",
        file,
        span,
        format!("a mean with a learned transform must be `alpha(t) * {name}(x, t)`; this one also has `{rest}` outside `{name}`"),
    )
    .with_label("terms outside the transform")
    .with_help(format!("fold every term into the transform (e.g. `mean(x, t) = alpha(t) * {name}(x, t)`); a Gaussian process without a transform writes `mean(x, t) = alpha(t) * x`"))
}

pub fn transform_args(file: FileId, span: Span, name: &str) -> D {
    err(
        "difc::check::bad_transform",
        file,
        span,
        format!("the transform must be applied as `{name}(x, t)`"),
    )
    .with_label("other arguments")
    .with_help("the learned transform acts on the state at the current time")
}

pub fn unused_transform(file: FileId, span: Span, name: &str) -> D {
    D::warning("difc::check::unused_transform", file, span, format!("transform `{name}` is never used"))
        .with_label("declared here")
        .with_help(format!("use it in the marginal mean, e.g. `mean(x, t) = alpha(t) * {name}(x, t)`; safe to ignore when you meant a plain Gaussian process"))
}

pub fn conflicting_parts(file: FileId, explicit: Span, sde: Span) -> D {
    err(
        "difc::check::conflicting_parts",
        file,
        explicit,
        "a process declares both an SDE and an explicit marginal".into(),
    )
    .with_label("explicit marginal")
    .with_extra(file, sde, "SDE part")
    .with_help("declare either `drift`/`diffusion` or `mean`/`std`, not both")
}

pub fn no_noise(file: FileId, span: Span) -> D {
    err(
        "difc::check::no_noise",
        file,
        span,
        "this process never adds noise".into(),
    )
    .with_label("no diffusion, std, jumps or deletions")
    .with_help("add `diffusion(t) = ...`, `std(t) = ...` or a `jumps { ... }` block")
}

pub fn unused_helper(file: FileId, span: Span, name: &str) -> D {
    D::warning(
        "difc::check::unused_definition",
        file,
        span,
        format!("`{name}` is defined but never used"),
    )
    .with_label("unused")
    .with_help("remove it, or check for a misspelt use; safe to ignore")
}

pub fn delete_needs_set(file: FileId, span: Span, state: Span) -> D {
    err(
        "difc::check::delete_needs_set",
        file,
        span,
        "deletions need a set state space".into(),
    )
    .with_label("deletes components")
    .with_extra(file, state, "the state declared here has a fixed dimension")
    .with_help("declare `state = set(max = N, of = vec(d))`")
}

// ---- expressions -------------------------------------------------------------------------

pub fn number_overflow(file: FileId, span: Span, text: &str) -> D {
    err(
        "difc::check::number_overflow",
        file,
        span,
        format!("number `{text}` is too large"),
    )
    .with_label("does not fit a 64-bit float")
    .with_help("numbers must be below about 1.8e308")
}

pub fn expected_number(file: FileId, span: Span, found: &str) -> D {
    err(
        "difc::check::type_mismatch",
        file,
        span,
        format!("expected a number, found {found}"),
    )
    .with_label("not a number")
    .with_help("write a numeric expression here, e.g. `0.5` or `exp(-t)`")
}

pub fn function_as_value(file: FileId, span: Span, name: &str) -> D {
    err(
        "difc::check::type_mismatch",
        file,
        span,
        format!("`{name}` is a function, not a value"),
    )
    .with_label("needs arguments")
    .with_help(format!("call it, e.g. `{name}(t)`"))
}

pub fn variable_not_in_scope(file: FileId, span: Span, name: &str, allowed: &[&str]) -> D {
    let meaning = match name {
        "x" => "the state",
        "t" => "the time",
        _ => "the number of components",
    };
    err("difc::check::not_in_scope", file, span, format!("`{name}` ({meaning}) is not an argument here"))
        .with_label("not in scope")
        .with_help(if allowed.is_empty() {
            format!("this value must be a constant: it cannot depend on `{name}`")
        } else {
            format!("this definition takes only {}; add `{name}` to its argument list if it really depends on it", list_names(allowed))
        })
}

pub fn unknown_name(file: FileId, span: Span, name: &str, candidates: &[&str]) -> D {
    let help = match did_you_mean(name, candidates.iter().copied()) {
        Some(c) => format!("did you mean `{c}`?"),
        None if candidates.is_empty() => {
            "declare it as a process parameter, e.g. `process p(name = 1.0)`".into()
        }
        None => format!("names in scope: {}", list_names(candidates)),
    };
    err(
        "difc::check::unknown_name",
        file,
        span,
        format!("unknown name `{name}`"),
    )
    .with_label("not defined")
    .with_help(help)
}

/// A parameter's default that refers to another parameter (`process p(a = 1, b = a)`).
pub fn default_uses_param(file: FileId, span: Span, param: &str, used: &str) -> D {
    err(
        "difc::check::default_uses_param",
        file,
        span,
        format!("the default of `{param}` refers to parameter `{used}`; defaults must be numbers"),
    )
    .with_label("a parameter, not a number")
    .with_help(format!(
        "write a number, e.g. `{param} = 1.0`, or use `{used}` in the body where `{param}` is used"
    ))
}

pub fn unknown_function(file: FileId, span: Span, name: &str, candidates: &[&str]) -> D {
    let help = match did_you_mean(name, candidates.iter().copied()) {
        Some(c) => format!("did you mean `{c}`?"),
        None => "define it in the process, e.g. `f(t) = ...`, or use a built-in such as `exp`, `log`, `sqrt`".into(),
    };
    err(
        "difc::check::unknown_function",
        file,
        span,
        format!("unknown function `{name}`"),
    )
    .with_label("not a built-in or a definition")
    .with_help(help)
}

/// A call of the learned transform outside the marginal mean (`std(t) = … F(x, t)`).
pub fn transform_outside_mean(file: FileId, span: Span, name: &str) -> D {
    err(
        "difc::check::transform_outside_mean",
        file,
        span,
        format!("the learned transform `{name}` can only appear in `mean(x, t)`"),
    )
    .with_label("not allowed here")
    .with_help(format!(
        "a Neural Diffusion Model's marginal is N(alpha(t) * {name}(x, t), sigma(t)^2): write `mean(x, t) = alpha(t) * {name}(x, t)` and a `std(t)` of t alone"
    ))
}

fn count(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

pub fn wrong_arity(file: FileId, span: Span, name: &str, expected: usize, found: usize) -> D {
    let verb = if found == 1 { "was" } else { "were" };
    err(
        "difc::check::wrong_arity",
        file,
        span,
        format!(
            "`{name}` takes {} but {found} {verb} given",
            count(expected, "argument")
        ),
    )
    .with_label(format!("called with {}", count(found, "argument")))
    .with_help(format!("pass exactly {}", count(expected, "argument")))
}

pub fn named_arg_in_math(file: FileId, span: Span, name: &str) -> D {
    err(
        "difc::check::named_argument",
        file,
        span,
        format!("`{name}` takes positional arguments"),
    )
    .with_label("named argument")
    .with_help("write the arguments in order without names")
}

pub fn recursive_definition(file: FileId, span: Span, name: &str, def: Span) -> D {
    err(
        "difc::check::recursive_definition",
        file,
        span,
        format!("`{name}` is defined in terms of itself"),
    )
    .with_label("recursive use")
    .with_extra(file, def, "defined here")
    .with_help("definitions are inlined formulas and cannot be recursive")
}

pub fn non_finite_constant(file: FileId, span: Span, what: &str, value: f64) -> D {
    err("difc::check::non_finite", file, span, format!("{what} evaluates to {}", fmt_num(value)))
        .with_label("not a finite number")
        .with_help("check for a division by zero, the logarithm or square root of a negative number, or an overflow")
}

pub fn out_of_range(file: FileId, span: Span, what: &str, value: f64, expected: &str) -> D {
    err(
        "difc::check::out_of_range",
        file,
        span,
        format!("{what} must be {expected}, found {}", fmt_num(value)),
    )
    .with_label("out of range")
    .with_help(format!("use a value {expected}"))
}

pub fn definition_too_large(file: FileId, span: Span, name: &str, defined: Span, max: usize) -> D {
    err(
        "difc::check::definition_too_large",
        file,
        span,
        format!("`{name}` grows beyond {max} terms once the helpers it uses are inlined"),
    )
    .with_label("inlined here")
    .with_extra(file, defined, "defined here")
    .with_help("helpers are formulas substituted at every use, so a helper that uses another one twice doubles its size; write the expression more directly, or use fewer nested helpers")
}

pub fn time_outside_interval(
    file: FileId,
    span: Span,
    what: &str,
    value: f64,
    process: &crate::ir::Process,
) -> D {
    let (t0, t1) = process.time;
    err(
        "difc::check::time_outside_interval",
        file,
        span,
        format!(
            "{what} = {} is outside the time interval [{}, {}) of process `{}`",
            fmt_num(value),
            fmt_num(t0),
            fmt_num(t1),
            process.name
        ),
    )
    .with_label("not a time of the process")
    .with_extra(process.loc.file, process.loc.span, "its time interval is declared here")
    .with_help(format!(
        "use a time in [{}, {}): t = {} is the data end, t = {} the noise end where sampling starts",
        fmt_num(t0),
        fmt_num(t1),
        fmt_num(t0),
        fmt_num(t1)
    ))
}

pub fn not_integer(file: FileId, span: Span, what: &str, value: f64) -> D {
    err(
        "difc::check::type_mismatch",
        file,
        span,
        format!("{what} must be a whole number, found {}", fmt_num(value)),
    )
    .with_label("not a whole number")
    .with_help(format!("write e.g. `{}`", value.round().max(1.0)))
}

pub fn bad_choice(file: FileId, span: Span, what: &str, choices: &[&str]) -> D {
    err(
        "difc::check::type_mismatch",
        file,
        span,
        format!("{what} must be a name"),
    )
    .with_label("expected a name")
    .with_help(format!("one of {}", list_names(choices)))
}

pub fn unknown_choice(file: FileId, span: Span, what: &str, name: &str, choices: &[&str]) -> D {
    err(
        "difc::check::unknown_choice",
        file,
        span,
        format!("unknown {what} `{name}`"),
    )
    .with_label("not a valid choice")
    .with_help(suggest(name, choices))
}

// ---- mathematical checks -----------------------------------------------------------------

pub fn non_finite_interval(file: FileId, span: Span, t0: f64, t1: f64) -> D {
    err(
        "difc::check::non_finite",
        file,
        span,
        format!(
            "the time interval [{}, {}] is not finite",
            fmt_num(t0),
            fmt_num(t1)
        ),
    )
    .with_label("not finite")
    .with_help("both ends must be finite numbers")
}

pub fn negative_start(file: FileId, span: Span, t0: f64) -> D {
    err(
        "difc::check::empty_interval",
        file,
        span,
        format!("the time interval starts before 0 (at {})", fmt_num(t0)),
    )
    .with_label("negative start")
    .with_help("forward time starts at the data, t = 0 (or later)")
}

pub fn empty_interval(file: FileId, span: Span, t0: f64, t1: f64) -> D {
    err(
        "difc::check::empty_interval",
        file,
        span,
        format!(
            "the time interval [{}, {}] is empty",
            fmt_num(t0),
            fmt_num(t1)
        ),
    )
    .with_label("end is not after start")
    .with_help("write `time = [start, end]` with end > start; this is never safe to ignore")
}

pub fn non_affine_drift(file: FileId, span: Span, drift: &str) -> D {
    err("difc::check::non_affine_drift", file, span, "the drift is not affine in x".into())
        .with_label(format!("`{drift}` is not of the form a(t) * x + b(t)"))
        .with_help("simulation-free training needs the closed-form marginal q(x_t | x_0), which exists only for drifts a(t) * x + b(t); safe to ignore only with a simulation-based objective, which difc does not have")
}

pub fn non_affine_mean(file: FileId, span: Span) -> D {
    err("difc::check::non_affine_drift", file, span, "the mean must be alpha(t) times the state".into())
        .with_label("not of the form alpha(t) * x")
        .with_help("write `mean(x, t) = alpha(t) * x` or `mean(x, t) = alpha(t) * F(x, t)` with a learned transform F")
}

pub fn not_finite_on_interval(file: FileId, span: Span, what: &str, t: f64, v: f64) -> D {
    err(
        "difc::check::non_finite",
        file,
        span,
        format!("{what} is {} at t = {}", fmt_num(v), fmt_num(t)),
    )
    .with_label("not finite on the time interval")
    .with_help(
        "check divisions and logarithms at the ends of the interval; this is never safe to ignore",
    )
}

pub fn not_positive(file: FileId, span: Span, what: &str, t: f64, v: f64) -> D {
    err("difc::check::nonpositive_noise", file, span, format!("{what} is not positive: it is {} at t = {}", fmt_num(v), fmt_num(t)))
        .with_label("must be > 0 for t after the start")
        .with_help("the noise scale must be positive for every t > start so that the marginal has a density; it may vanish only at the start. Never safe to ignore")
}

pub fn negative_rate(file: FileId, span: Span, what: &str, t: f64, v: f64) -> D {
    err("difc::check::negative_rate", file, span, format!("{what} is negative: it is {} at t = {}", fmt_num(v), fmt_num(t)))
        .with_label("must be ≥ 0 on the whole time interval")
        .with_help("a rate is an expected number of events per unit time and cannot be negative; clamp it with `max(..., 0)`. Never safe to ignore")
}

pub fn invalid_amplitude(file: FileId, span: Span, family: &str, name: &str, v: f64) -> D {
    let what = if name == "var" {
        "variance σ²"
    } else {
        "shape"
    };
    err("difc::check::invalid_amplitude", file, span, format!("{family} {what} must be > 0, found {}", fmt_num(v)))
        .with_label("not a valid parameter")
        .with_help(format!("give `{name}` a positive value; a {what} ≤ 0 defines no distribution. Never safe to ignore"))
}

pub fn deletes_last_component(file: FileId, span: Span, t: f64, v: f64) -> D {
    err("difc::check::deletes_last_component", file, span, format!("the deletion rate at n = 1 is {} at t = {}", fmt_num(v), fmt_num(t)))
        .with_label("would delete the last component")
        .with_help("the rate must be 0 when one component is left, e.g. multiply it by `step(n - 1)`. Never safe to ignore: an empty state has no reverse process")
}

pub fn jumps_may_not_happen(file: FileId, span: Span, t1: f64, p: f64) -> D {
    D::warning("difc::check::prior_not_reached", file, span, format!("with probability {} no jump has happened by t = {}", fmt_num(p), fmt_num(t1)))
        .with_label("rate too low for the horizon")
        .with_help("those samples still hold the data at the horizon; raise the rate or lengthen `time`. Safe to ignore when the sampler starts from the forward process itself")
}

/// Where a singular end was found: the time, the evidence as text, which end, and whether the
/// signal α_t/σ_t is gone there (an ε or score network then cannot give x̂0).
pub struct SingularEnd {
    pub t: f64,
    pub evidence: String,
    pub at_horizon: bool,
    pub zero_snr: bool,
}

pub fn singular_end(file: FileId, span: Span, process: &str, end: &SingularEnd) -> D {
    let t = fmt_num(end.t);
    let help = if end.at_horizon {
        let marginal = if end.zero_snr {
            "ddim and dpmpp_2m use only α_t and σ_t and, with α_t ≈ 0 there, need `loss { target = x0 }` (an ε or score network gives x̂0 = (x − σ ε̂)/α, its error multiplied by 1/α; exponential_ode divides by α_t too)"
        } else {
            "ddim, dpmpp_2m and exponential_ode use only α_t and σ_t"
        };
        let safe = if end.zero_snr {
            "you sample with ddim or dpmpp_2m and train with `target = x0`"
        } else {
            "you sample with ddim, dpmpp_2m or exponential_ode"
        };
        format!("the solvers that evaluate the drift or the diffusion (ode_euler, ode_heun, euler_maruyama, exponential_sde) are not offered for this process; {marginal}. To fix the spec, end the interval before α_t reaches 0 (`time = [0, T]` with α_T ≈ 0.01) or offset the schedule (cosine: `cos(0.5 * pi * t / (1 + s))` with s = 0.008 gives α_1 = 0.0125). Safe to ignore when {safe}")
    } else {
        "the solvers that evaluate the drift or the diffusion (ode_euler, ode_heun, euler_maruyama, exponential_sde) are not offered unless `loss.t_min` cuts this end off; ddim, dpmpp_2m and exponential_ode use only α_t and σ_t. To fix the spec, start the interval later or raise `loss.t_min`. Safe to ignore when `loss.t_min` is past the singular part, or you sample with ddim, dpmpp_2m or exponential_ode".to_string()
    };
    D::warning(
        "difc::check::singular_end",
        file,
        span,
        format!(
            "`{process}` has a singular coefficient at t = {t}: {}",
            end.evidence
        ),
    )
    .with_label(format!(
        "implies an infinite or huge coefficient at t = {t}"
    ))
    .with_help(help)
}

pub fn prior_not_reached(file: FileId, span: Span, t1: f64, ratio: f64) -> D {
    D::warning("difc::check::prior_not_reached", file, span, format!("the process does not reach its prior by t = {}: data scale / noise scale = {}", fmt_num(t1), fmt_num(ratio)))
        .with_label("still remembers the data at the horizon")
        .with_help("lengthen `time` or strengthen the noise so that the ratio is below 0.05 (data of unit scale). Safe to ignore when your data are much smaller than 1 or you sample from the true marginal at the horizon")
}

//! The wording of experiment and `--set` override diagnostics (the rest is in `error.rs`,
//! which re-exports these). Each function builds one diagnostic with a stable code, a label
//! for what sits at the span and a one-sentence help.

use crate::diag::{did_you_mean, suggest, Diagnostic, FileId, Span};
use crate::ir::Loc;

type D = Diagnostic;

fn err(code: &'static str, file: FileId, span: Span, msg: String) -> D {
    D::error(code, file, span, msg)
}

// ---- experiments -------------------------------------------------------------------------

pub fn unknown_setting(file: FileId, span: Span, block: &str, name: &str, keys: &[&str]) -> D {
    err(
        "difc::check::unknown_setting",
        file,
        span,
        format!("unknown setting `{name}` in `{block}`"),
    )
    .with_label("not a setting of this block")
    .with_help(suggest(name, keys))
}

pub fn unknown_argument(
    file: FileId,
    span: Span,
    name: &str,
    callee: &str,
    accepted: &[&str],
) -> D {
    err(
        "difc::check::unknown_argument",
        file,
        span,
        format!("`{callee}` has no parameter `{name}`"),
    )
    .with_label("unknown parameter")
    .with_help(suggest(name, accepted))
}

pub fn too_many_args(file: FileId, span: Span, callee: &str, max: usize) -> D {
    err(
        "difc::check::wrong_arity",
        file,
        span,
        format!("`{callee}` takes at most {max} argument(s)"),
    )
    .with_label("one too many")
    .with_help("remove the extra arguments or name them")
}

pub fn duplicate_argument(file: FileId, span: Span, name: &str) -> D {
    err(
        "difc::check::duplicate_statement",
        file,
        span,
        format!("parameter `{name}` is given twice"),
    )
    .with_label("given again")
    .with_help("keep one of them")
}

pub fn missing_argument(file: FileId, span: Span, callee: &str, name: &str) -> D {
    err(
        "difc::check::missing_argument",
        file,
        span,
        format!("`{callee}` needs `{name}`"),
    )
    .with_label(format!("missing `{name}`"))
    .with_help(format!("add `{name} = ...` to the call"))
}

pub fn missing_param(
    file: FileId,
    span: Span,
    process: &str,
    param: &str,
    def: Loc,
    param_span: Span,
) -> D {
    err(
        "difc::check::missing_argument",
        file,
        span,
        format!("process `{process}` needs a value for `{param}`"),
    )
    .with_label("no value for a parameter without default")
    .with_extra(def.file, param_span, "declared without a default here")
    .with_help(format!("pass it, e.g. `{process}({param} = 1.0)`"))
}

pub fn positional_setting(file: FileId, span: Span, callee: &str, example: &str) -> D {
    err(
        "difc::check::named_argument",
        file,
        span,
        format!("arguments of `{callee}` must be named"),
    )
    .with_label("positional argument")
    .with_help(format!("write `name = value`, e.g. `{callee}({example})`"))
}

pub fn bad_network(file: FileId, span: Span) -> D {
    err(
        "difc::check::type_mismatch",
        file,
        span,
        "a network must be `mlp(...)`, `set_transformer(...)` or `egnn(...)`".into(),
    )
    .with_label("not a network")
    .with_help("write `network = mlp(width = 128, depth = 4)`")
}

pub fn unknown_network(file: FileId, span: Span, name: &str) -> D {
    err(
        "difc::check::unknown_choice",
        file,
        span,
        format!("unknown network `{name}`"),
    )
    .with_label("unknown architecture")
    .with_help(suggest(name, crate::ir::registry::NETWORK_NAMES))
}

pub fn heads_do_not_divide_width(file: FileId, span: Span, width: usize, heads: usize) -> D {
    err(
        "difc::check::invalid_setting",
        file,
        span,
        format!("{heads} attention heads do not divide the width {width}"),
    )
    .with_label("heads")
    .with_help("choose `heads` so that `width` is a multiple of it, e.g. width = 64, heads = 4")
}

/// `egnn` on a set state that declares no coordinates (`com = NAME`).
pub fn egnn_needs_com(file: FileId, span: Span, state: &str) -> D {
    err(
        "difc::check::egnn_needs_com",
        file,
        span,
        format!("`egnn` needs coordinates, but the state `{state}` declares none"),
    )
    .with_label("`egnn`")
    .with_help(
        "name the coordinates of a component with `com = NAME`, e.g. `state = set(max = 29, \
         of = vec(position = 3, features = 6), com = position)`, or use \
         `network = set_transformer(width = 64, depth = 3, heads = 4)`",
    )
}

/// The network does not fit the process's state (an MLP on sets, a set transformer on vectors).
pub fn network_for_state(file: FileId, span: Span, network: &str, state: &str, want: &str) -> D {
    err(
        "difc::check::network_for_state",
        file,
        span,
        format!("`{network}` cannot model the state `{state}`"),
    )
    .with_label(format!("`{network}`"))
    .with_help(format!("write `network = {want}`"))
}

pub fn bad_data(file: FileId, span: Span) -> D {
    err(
        "difc::check::type_mismatch",
        file,
        span,
        "data must be a generator call or `npy(path = ...)`".into(),
    )
    .with_label("not a data source")
    .with_help("write e.g. `data = swiss_roll(n = 20000)` or `data = npy(path = \"points.npy\")`")
}

pub fn unknown_generator(file: FileId, span: Span, name: &str, known: &[&str]) -> D {
    err(
        "difc::check::unknown_generator",
        file,
        span,
        format!("unknown data source `{name}`"),
    )
    .with_label("not a built-in generator")
    .with_help(suggest(name, known))
}

pub fn bad_process_use(file: FileId, span: Span) -> D {
    err(
        "difc::check::type_mismatch",
        file,
        span,
        "`process` must name a process".into(),
    )
    .with_label("not a process")
    .with_help("write `process = vp()` or `process = jump_laplace(sigma2 = 1.0)`")
}

pub fn unknown_process(file: FileId, span: Span, name: &str, known: &[&str]) -> D {
    let help = match did_you_mean(name, known.iter().copied()) {
        Some(c) => format!("did you mean `{c}`?"),
        None => {
            "import it, e.g. `use stdlib.vp`, or declare it with `process NAME(...) { ... }`".into()
        }
    };
    err(
        "difc::check::unknown_process",
        file,
        span,
        format!("unknown process `{name}`"),
    )
    .with_label("not declared or imported")
    .with_help(help)
}

pub fn bad_metrics(file: FileId, span: Span) -> D {
    err(
        "difc::check::type_mismatch",
        file,
        span,
        "metrics must be a list".into(),
    )
    .with_label("not a list")
    .with_help("write `metrics = [prd, mmd, sliced_wasserstein]`")
}

pub fn dimension_mismatch(
    file: FileId,
    span: Span,
    data_dim: usize,
    state: &str,
    process: Loc,
) -> D {
    err(
        "difc::check::dimension_mismatch",
        file,
        span,
        format!("the data have {data_dim} coordinates but the process state is {state}"),
    )
    .with_label(format!("{data_dim}-dimensional data"))
    .with_extra(process.file, process.span, "process declared here")
    .with_help(
        "make the process's `state` match the data, or drop `state` to take the data's dimension",
    )
}

pub fn target_unsupported(
    file: FileId,
    span: Span,
    target: &str,
    process: &str,
    jumps: crate::ir::Loc,
) -> D {
    err(
        "difc::check::target_unsupported",
        file,
        span,
        format!("`{process}` is a jump process: it is trained on its generalized score, not on `{target}`"),
    )
    .with_label(format!("target = {target}"))
    .with_extra(jumps.file, jumps.span, "jumps declared here")
    .with_help("write `loss { target = score }`, or drop `target` (a jump process's default is `score`); `eps` and `x0` are targets of Gaussian processes")
}

pub fn precondition_unsupported(file: FileId, span: Span, process: &str, kind: &str) -> D {
    err(
        "difc::check::precondition_unsupported",
        file,
        span,
        format!("`precondition = edm` scales the network by a Gaussian marginal's m_t, s_t; `{process}` is {kind}"),
    )
    .with_label("precondition asked for here")
    .with_help("remove `precondition`; EDM's preconditioning applies to Gaussian processes (a linear SDE or an explicit `mean`/`std`)")
}

pub fn precondition_target(file: FileId, span: Span, target: &str) -> D {
    err(
        "difc::check::precondition_target",
        file,
        span,
        format!("`precondition = edm` predicts x_0 through c_skip and c_out, not `{target}`"),
    )
    .with_label(format!("target = {target}"))
    .with_help("write `loss { target = x0 }` or drop `target` (with `precondition = edm` the default target is x0)")
}

pub fn corrector_unsupported(file: FileId, span: Span, process: &str) -> D {
    err(
        "difc::check::corrector_unsupported",
        file,
        span,
        format!("`{process}` has no Langevin corrector: it is implemented for set processes (`state = set(…)`)"),
    )
    .with_label("corrector steps asked for here")
    .with_help("remove `corrector_steps`, or set it to 0")
}

/// A generator argument the generator itself refuses (a negative `noise`, a `weights` list of
/// the wrong length, a repeated argument), found by drawing a few points at check time.
pub fn bad_data_argument(file: FileId, span: Span, why: &str) -> D {
    err(
        "difc::check::data_argument",
        file,
        span,
        format!("the data generator refuses its arguments: {why}"),
    )
    .with_label("refused by the generator")
    .with_help("change the argument to a value the generator accepts (the message says which)")
}

/// `solver` is the solver the spec names (`None`: it names none).
pub fn eta_without_ddim(file: FileId, span: Span, solver: Option<&str>) -> D {
    err(
        "difc::check::eta_without_ddim",
        file,
        span,
        match solver {
            Some(solver) => {
                format!("`eta` is DDIM's noise level, and the solver `{solver}` has none")
            }
            None => "`eta` is DDIM's noise level, and no solver is named (the default is the process's first offered solver)".to_string(),
        },
    )
    .with_label("eta set here")
    .with_help("write `solver = ddim` to sample with η, or remove `eta`")
}

pub fn missing_data_file(file: FileId, span: Span, path: &str, why: &str) -> D {
    err(
        "difc::check::data_file",
        file,
        span,
        format!("cannot read data file `{path}`: {why}"),
    )
    .with_label("data file named here")
    .with_help("paths are relative to the spec's folder; save arrays with numpy.save(path, array)")
}

pub fn bad_data_file(file: FileId, span: Span, path: &str, why: &str) -> D {
    // NpyError messages start with the path already.
    let why = why
        .strip_prefix(path)
        .map_or(why, |w| w.trim_start_matches(':').trim_start());
    err(
        "difc::check::data_file",
        file,
        span,
        format!("cannot use data file `{path}`: {why}"),
    )
    .with_label("data file named here")
    .with_help(
        "save an (n, d) float32 or float64 array of n ≥ 4 points with numpy.save(path, array)",
    )
}

pub fn data_shape(file: FileId, span: Span, path: &str, shape: &[usize], state: &str) -> D {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shown = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let (msg, help) = if shape.len() == 2 {
        (
            format!(
                "data file `{path}` has {} columns but the process state is {state}",
                shape[1]
            ),
            "make the process's `state` match the data (or drop `state` to take the data's dimension), or save the data with the state's number of columns".to_string(),
        )
    } else {
        let flat: usize = shape[1..].iter().product();
        let structured = match shape[1..] {
            [n, d] => format!("; sets of up to {n} points of dimension {d} need `state = set(max = {n}, of = vec({d}))`"),
            [c, h, w] => format!("; images need `state = image({c}, {h}, {w})`"),
            _ => String::new(),
        };
        (
            format!(
                "data file `{path}` holds an array of shape {shown}, which is not a point of the process state {state}"
            ),
            format!(
                "N-D arrays are not flattened: if each point is a vector of {flat} numbers, save `array.reshape(len(array), -1)`{structured}"
            ),
        )
    };
    err("difc::check::data_shape", file, span, msg)
        .with_label(format!("shape {shown}"))
        .with_help(help)
}

// ---- command-line overrides --------------------------------------------------------------

pub fn override_syntax(file: FileId, span: Span) -> D {
    err(
        "difc::cli::bad_override",
        file,
        span,
        "an override must look like `block.key=value`".into(),
    )
    .with_label("cannot read this override")
    .with_help("e.g. `--set train.steps=1000` or `--set process.sigma2=2`")
}

pub fn unknown_override(file: FileId, span: Span, name: &str, keys: &[&str]) -> D {
    err(
        "difc::cli::unknown_key",
        file,
        span,
        format!("unknown key `{name}`"),
    )
    .with_label("not a setting")
    .with_help(suggest(name, keys))
}

pub fn override_needs_key(file: FileId, span: Span, block: &str) -> D {
    err(
        "difc::cli::bad_override",
        file,
        span,
        format!("`{block}` is a block; override one of its settings"),
    )
    .with_label("a block, not a value")
    .with_help(format!(
        "e.g. `--set {block}.{}=...`",
        super::schema::block(block).map_or("key", |s| s[0].key)
    ))
}

pub fn override_without_target(file: FileId, span: Span, block: &str) -> D {
    err(
        "difc::cli::bad_override",
        file,
        span,
        format!("the experiment has no `{block}` call to override"),
    )
    .with_label("nothing to override")
    .with_help(format!("give the whole value instead: `--set {block}=...`"))
}

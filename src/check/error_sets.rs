//! The wording of the diagnostics about set states: their component parts and centre-of-mass
//! constraint, and set data (generators and `.npy` files) against them. Re-exported by
//! `error.rs`, so that every message is reached as `error::…`.

use crate::diag::{list_names, suggest, Diagnostic, FileId, Span};
use crate::ir::Loc;

type D = Diagnostic;

fn err(code: &'static str, file: FileId, span: Span, msg: String) -> D {
    D::error(code, file, span, msg)
}

/// `(10, 8, 3)` as numpy prints a shape.
pub fn shape_text(shape: &[usize]) -> String {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    }
}

// ---- component parts and `com` -----------------------------------------------------------

pub fn duplicate_part(file: FileId, span: Span, name: &str, first: Span) -> D {
    err(
        "difc::check::duplicate_definition",
        file,
        span,
        format!("component part `{name}` is declared twice"),
    )
    .with_label("second declaration")
    .with_extra(file, first, "first declared here")
    .with_help("give each part of the component its own name")
}

pub fn unknown_part(file: FileId, span: Span, name: &str, parts: &[&str]) -> D {
    let help = if parts.is_empty() {
        "`com` names a part of the component: name the parts, e.g. `of = vec(position = 3, features = 6), com = position`".to_string()
    } else {
        suggest(name, parts)
    };
    let label = if parts.is_empty() {
        "the component has no named parts".to_string()
    } else {
        format!("not one of {}", list_names(parts))
    };
    err(
        "difc::check::unknown_part",
        file,
        span,
        format!("the set's component has no part `{name}`"),
    )
    .with_label(label)
    .with_help(help)
}

pub fn com_needs_set(file: FileId, span: Span, callee: &str, in_vec_of_set: bool) -> D {
    if in_vec_of_set {
        return err(
            "difc::check::com_needs_set",
            file,
            span,
            "`com` is an argument of `set`, not of its component `vec`".into(),
        )
        .with_label("inside `vec(...)`")
        .with_help("move it after `of`: `set(max = N, of = vec(position = 3, features = 6), com = position)`");
    }
    err(
        "difc::check::com_needs_set",
        file,
        span,
        format!("a zero centre of mass needs a set state, not `{callee}(...)`"),
    )
    .with_label("`com` on a state that is not a set")
    .with_help("the constraint applies to the components of a set: `state = set(max = N, of = vec(position = 3, features = 6), com = position)`")
}

// ---- set data against a set state --------------------------------------------------------

/// A generator drawing points for a set state, or sets for a vector or image state.
pub fn data_kind(
    file: FileId,
    span: Span,
    generator: &str,
    draws_sets: bool,
    state: &str,
    process: Loc,
) -> D {
    let (msg, label, help) = if draws_sets {
        (
            format!("`{generator}` draws sets but the process state is {state}"),
            "draws sets".to_string(),
            "a set generator needs `state = set(max = N, of = vec(d))` in the process; for a vector state draw points (e.g. `moons(n = 20000)`)".to_string(),
        )
    } else {
        (
            format!("`{generator}` draws points but the process state is {state}"),
            "draws points, not sets".to_string(),
            "a set state needs sets: `ring_sets(n = 20000, max = N)`, or `npy(path = …)` with an (n, N, d) array (NaN rows for absent components)".to_string(),
        )
    };
    err("difc::check::data_kind", file, span, msg)
        .with_label(label)
        .with_extra(process.file, process.span, "process declared here")
        .with_help(help)
}

/// Image data for a state of another kind or shape, or non-image data for an image state.
pub fn image_data(
    file: FileId,
    span: Span,
    generator: &str,
    image: Option<[usize; 3]>,
    state: &str,
    process: Loc,
) -> D {
    let (msg, label, help) = match image {
        Some([c, h, w]) => (
            format!("`{generator}` gives {c}×{h}×{w} images but the process state is {state}"),
            format!("{c}×{h}×{w} images"),
            format!("declare `state = image({c}, {h}, {w})` in the process, or leave `state` out and the data decide"),
        ),
        None => (
            format!("`{generator}` does not give images, but the process state is {state}"),
            "not images".to_string(),
            "an image state needs image data: `digits(n = 1437)`, `mnist(n = 50000)`, or `npy(path = …)` with an (n, c, h, w) array".to_string(),
        ),
    };
    err("difc::check::image_data", file, span, msg)
        .with_label(label)
        .with_extra(process.file, process.span, "process declared here")
        .with_help(help)
}

/// `npy(levels = L)` for a state that is not an image.
pub fn levels_not_image(file: FileId, span: Span, state: &str) -> D {
    err(
        "difc::check::image_data",
        file,
        span,
        format!("`levels` describes image data, but the process state is {state}"),
    )
    .with_label("grey levels of an image")
    .with_help("declare `state = image(c, h, w)` for (n, c, h, w) image data, or drop `levels`")
}

/// `npy(levels = L)` on a file with a value off the L-level grid.
pub fn data_levels(
    file: FileId,
    span: Span,
    path: &str,
    levels: usize,
    row: usize,
    value: f32,
) -> D {
    err(
        "difc::check::data_levels",
        file,
        span,
        format!(
            "data file `{path}` has a value off the {levels}-level grid x = −1 + 2k/{}: {value} in image {row}",
            levels - 1
        ),
    )
    .with_label(format!("declared to have {levels} levels"))
    .with_help(format!(
        "save integer levels k = 0…{} as `2 * k / {} - 1` (8-bit images: `2 * images / 255 - 1` with `levels = 256`), or drop `levels` for a continuous (Gaussian) decoder",
        levels - 1,
        levels - 1
    ))
}

/// A set generator whose `max` differs from the state's.
pub fn set_max_mismatch(
    file: FileId,
    span: Span,
    generator: &str,
    gen_max: usize,
    max: usize,
    process: Loc,
) -> D {
    err(
        "difc::check::set_max_mismatch",
        file,
        span,
        format!("`{generator}` draws sets of up to {gen_max} components but the state's `max` is {max}"),
    )
    .with_label(format!("max = {gen_max}"))
    .with_extra(process.file, process.span, "process declared here")
    .with_help(format!("a generator's `max` must equal the state's: write `{generator}(…, max = {max})` or `state = set(max = {gen_max}, …)`"))
}

/// Set data (a generator or a file) whose components are not the state's size.
pub fn set_component_size(
    file: FileId,
    span: Span,
    source: &str,
    found: usize,
    state: &str,
    want: usize,
) -> D {
    err(
        "difc::check::set_component_size",
        file,
        span,
        format!("{source} has components of {found} numbers but the process state is {state}"),
    )
    .with_label(format!("components of {found} numbers"))
    .with_help(format!(
        "declare `of = vec({found})` in the process's state, or give components of {want} numbers"
    ))
}

/// A `.npy` file whose shape is not `(n, N, d)` sets for a set state.
pub fn set_data_rank(
    file: FileId,
    span: Span,
    path: &str,
    shape: &[usize],
    state: &str,
    max: usize,
    component: usize,
) -> D {
    let shown = shape_text(shape);
    let flat = match shape {
        [_, cols] if cols % component == 0 && cols / component > 0 => format!(
            "; if each row holds {} components one after another, save `array.reshape(len(array), {}, {component})`",
            cols / component,
            cols / component
        ),
        _ => String::new(),
    };
    err(
        "difc::check::data_shape",
        file,
        span,
        format!("data file `{path}` holds an array of shape {shown}, not sets: the process state is {state}"),
    )
    .with_label(format!("shape {shown}, rank {}", shape.len()))
    .with_help(format!("save sets as an (n, N, {component}) array with NaN rows for absent components (numpy: `np.full((n, {max}, {component}), np.nan)`, then fill each set){flat}"))
}

/// A `.npy` file with sets of more present components than the state's `max`.
#[allow(clippy::too_many_arguments)]
pub fn set_too_large(
    file: FileId,
    span: Span,
    path: &str,
    over: usize,
    total: usize,
    largest: usize,
    row: usize,
    max: usize,
) -> D {
    err(
        "difc::check::set_too_large",
        file,
        span,
        format!("{over} of the {total} sets in data file `{path}` have more than max = {max} components (set {row} has {largest})"),
    )
    .with_label(format!("sets of up to {largest} components"))
    .with_help(format!("raise the state's `max` to {largest}, or drop the larger sets from the file (sets count from 0; absent components are all-NaN rows)"))
}

/// A set file too large to count its sets at check time, whose padding exceeds `max`.
pub fn set_size_unchecked(
    file: FileId,
    span: Span,
    path: &str,
    shape: &[usize],
    bytes: u64,
    limit: u64,
    max: usize,
) -> D {
    let mib = |b: u64| b.div_ceil(1 << 20);
    D::warning(
        "difc::check::set_size_unchecked",
        file,
        span,
        format!(
            "data file `{path}` holds sets padded to {} components, more than max = {max}, and is too large ({} MiB > {} MiB) to count them at check time: only its header was read",
            shape[1],
            mib(bytes),
            mib(limit)
        ),
    )
    .with_label(format!("shape {}", shape_text(shape)))
    .with_help(format!("`difc run` refuses the file if any set has more than {max} present components; save it padded to at most {max}, or raise `max` to {}, to be sure now", shape[1]))
}

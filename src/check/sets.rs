//! Data against a set state (`state = set(max = N, of = vec(d))`): set generators and `.npy`
//! files of NaN-padded sets, and point data given to a set state or sets to a vector state.

use super::error as E;
use crate::diag::{Diagnostic, FileId, Span};
use crate::ir::{self, StateSpace};
use crate::run::data::GeneratorSpec;
use crate::run::data::MAX_SET_SIZE;
use std::path::Path;

/// Set files up to this size are read by `difc check`, which counts the present components
/// of every set; only the header of a larger one is read.
pub const SET_COUNT_MAX_BYTES: u64 = 256 << 20;

/// Whether generator `spec` draws what the process's state holds: points for a vector or image
/// state, sets of the state's `max` and component size for a set state. `max_arg` is the
/// generator's `max = …` when written (its value and span).
pub fn generator_fits(
    file: FileId,
    span: Span,
    spec: &GeneratorSpec,
    max_arg: Option<(f64, Span)>,
    process: Option<&ir::Process>,
    diags: &mut Vec<Diagnostic>,
) -> bool {
    let Some(process) = process else {
        return true; // the process has errors of its own (reported); nothing to judge against
    };
    let state = &process.state;
    let describe = state.describe();
    if let Some(fits) = image_fits(file, span, spec, process, diags) {
        return fits;
    }
    let (draws, set) = match (spec.set_component(), state) {
        (None, StateSpace::Set { .. })
        | (Some(_), StateSpace::Vector(_) | StateSpace::Image { .. }) => {
            let sets = spec.set_component().is_some();
            diags.push(E::data_kind(
                file,
                span,
                spec.name,
                sets,
                &describe,
                process.loc,
            ));
            return false;
        }
        (None, _) => return true,
        (Some(draws), StateSpace::Set { max, component, .. }) => (draws, (*max, *component)),
    };
    let (max, component) = set;
    let mut ok = true;
    if draws != component {
        diags.push(E::set_component_size(
            file,
            span,
            &format!("`{}`", spec.name),
            draws,
            &describe,
            component,
        ));
        ok = false;
    }
    let (gen_max, max_span) = match max_arg {
        Some((v, arg_span)) => {
            if v.fract() != 0.0 || !(1.0..=MAX_SET_SIZE as f64).contains(&v) {
                diags.push(E::out_of_range(
                    file,
                    arg_span,
                    "data.max",
                    v,
                    &format!("in [1, {MAX_SET_SIZE}] (a whole number)"),
                ));
                return false;
            }
            (v as usize, arg_span)
        }
        None => {
            let default = spec
                .params
                .iter()
                .find(|p| p.name == "max")
                .and_then(|p| p.default)
                .and_then(|d| d.parse::<usize>().ok());
            match default {
                Some(d) => (d, span),
                None => return ok,
            }
        }
    };
    if gen_max != max {
        diags.push(E::set_max_mismatch(
            file,
            max_span,
            spec.name,
            gen_max,
            max,
            process.loc,
        ));
        ok = false;
    }
    ok
}

/// Image data against the state: `Some(fits)` when the generator draws images or the state is
/// an image (an image source fits `image(c, h, w)` of its own shape, or a process that leaves
/// `state` to the data; point and set generators do not fit an image state), `None` otherwise.
fn image_fits(
    file: FileId,
    span: Span,
    spec: &GeneratorSpec,
    process: &ir::Process,
    diags: &mut Vec<Diagnostic>,
) -> Option<bool> {
    let state = &process.state;
    let fits = match (spec.image_shape(), state) {
        (None, StateSpace::Image { .. }) => false,
        (None, StateSpace::Vector(_) | StateSpace::Set { .. }) => return None,
        (Some(_), StateSpace::Vector(None)) => true,
        (
            Some((shape, _)),
            StateSpace::Image {
                channels,
                height,
                width,
            },
        ) => shape == [*channels, *height, *width],
        (Some(_), StateSpace::Vector(Some(_)) | StateSpace::Set { .. }) => false,
    };
    if !fits {
        diags.push(E::image_data(
            file,
            span,
            spec.name,
            spec.image_shape().map(|(s, _)| s),
            &state.describe(),
            process.loc,
        ));
    }
    Some(fits)
}

/// Where a set file is read from, and what is known from its header.
pub struct SetFile<'a> {
    pub loader: &'a dyn super::Loader,
    pub full: &'a Path,
    /// The path as shown in messages.
    pub shown: &'a str,
    pub shape: &'a [usize],
    /// The file's length in bytes.
    pub len: u64,
}

/// The numbers per datapoint (`max · d`) of an `.npy` file of NaN-padded sets for a set state,
/// judged from its header (rank and component size) and, for files up to
/// [`SET_COUNT_MAX_BYTES`], from its values: every set is valid and has at most `max`
/// present components.
pub fn npy_set_dim(
    file: FileId,
    span: Span,
    f: &SetFile,
    state: &StateSpace,
    diags: &mut Vec<Diagnostic>,
) -> Option<usize> {
    let StateSpace::Set { max, component, .. } = *state else {
        return None;
    };
    let describe = state.describe();
    let [_, n_file, d] = *f.shape else {
        diags.push(E::set_data_rank(
            file, span, f.shown, f.shape, &describe, max, component,
        ));
        return None;
    };
    if d != component {
        let source = format!(
            "data file `{}` of shape {}",
            f.shown,
            E::shape_text(f.shape)
        );
        diags.push(E::set_component_size(
            file, span, &source, d, &describe, component,
        ));
        return None;
    }
    if n_file == 0 || d == 0 {
        diags.push(E::bad_data_file(
            file,
            span,
            f.shown,
            &format!("its sets have no components (shape {:?})", f.shape),
        ));
        return None;
    }
    if f.len > SET_COUNT_MAX_BYTES {
        if n_file > max {
            diags.push(E::set_size_unchecked(
                file,
                span,
                f.shown,
                f.shape,
                f.len,
                SET_COUNT_MAX_BYTES,
                max,
            ));
        }
        return Some(max * component);
    }
    let bad = |why: &dyn std::fmt::Display, diags: &mut Vec<Diagnostic>| {
        diags.push(E::bad_data_file(file, span, f.shown, &why.to_string()));
        None
    };
    let bytes = match f.loader.read(f.full) {
        Ok(b) => b,
        Err(why) => {
            diags.push(E::missing_data_file(file, span, f.shown, &why));
            return None;
        }
    };
    let arr = match crate::run::npy::parse_npy_nan_padded(&bytes, f.full) {
        Ok(a) => a,
        Err(e) => return bad(&e, diags),
    };
    drop(bytes);
    // `max = n_file` accepts every count, so that the sizes can be reported all at once.
    let sets = match crate::run::sets::SetData::from_padded_rows(&arr.data, n_file, d, n_file) {
        Ok(s) => s,
        Err(e) => return bad(&e, diags),
    };
    let over = sets.counts.iter().filter(|&&c| c > max).count();
    if over > 0 {
        let (row, largest) =
            sets.counts
                .iter()
                .copied()
                .enumerate()
                .fold(
                    (0, 0),
                    |best, (i, c)| if c > best.1 { (i, c) } else { best },
                );
        diags.push(E::set_too_large(
            file,
            span,
            f.shown,
            over,
            sets.len(),
            largest,
            row,
            max,
        ));
        return None;
    }
    Some(max * component)
}

/// `npy(path = …, levels = L)`: every value of an image file up to [`SET_COUNT_MAX_BYTES`]
/// lies on the L-level grid x_k = −1 + 2k/(L − 1) that the discrete decoder reads (larger
/// files are checked when `difc run` loads them).
pub fn npy_levels_fit(
    file: FileId,
    span: Span,
    loader: &dyn super::Loader,
    full: &Path,
    levels: usize,
    diags: &mut Vec<Diagnostic>,
) -> bool {
    let shown = full.display().to_string();
    let head = loader.read_head(full, crate::run::npy::HEADER_BYTES);
    if head.is_ok_and(|(_, len)| len > SET_COUNT_MAX_BYTES) {
        return true;
    }
    let arr = match loader
        .read(full)
        .map(|b| crate::run::npy::parse_npy(&b, full))
    {
        Ok(Ok(a)) => a,
        Ok(Err(e)) => {
            diags.push(E::bad_data_file(file, span, &shown, &e.to_string()));
            return false;
        }
        Err(why) => {
            diags.push(E::missing_data_file(file, span, &shown, &why));
            return false;
        }
    };
    match crate::ir::off_grid(&arr.data, levels) {
        None => true,
        Some((index, value)) => {
            let row = index / arr.cols.max(1);
            diags.push(E::data_levels(file, span, &shown, levels, row, value));
            false
        }
    }
}

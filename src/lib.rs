//! difc: declare a diffusion model's forward process; get training and sampling.
//!
//! The pipeline, one module per stage:
//! source (`.diff`) → [`syntax`] (tree with spans) → [`check`] (checked model, [`ir`]) →
//! `compile` (candle graphs: marginals, targets, samplers) → [`run`] (train, sample,
//! evaluate, write the run folder). [`diag`] renders every stage's errors.

// Diagnostics are the error type of the front end and carry their source labels; boxing them
// at every `?` would add noise for no measurable gain on a path taken once per spec.
#![allow(clippy::result_large_err)]

pub mod check;
pub mod cli;
pub mod compile;
pub mod diag;
pub mod driver;
pub mod ir;
pub mod nn;
pub mod rng;
pub mod run;
pub mod syntax;

/// An internal error: a bug in difc, not in the user's spec.
pub fn diag_bug(file: diag::FileId, span: diag::Span, what: &str) -> diag::Diagnostic {
    diag::Diagnostic::error(
        "difc::internal",
        file,
        span,
        format!("internal compiler error: {what}"),
    )
    .with_help(
        "this is a bug in difc, not in your spec; please report it with the file that triggers it",
    )
}

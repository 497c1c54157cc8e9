//! Stage 1: source text → syntax tree with spans (`grammar/diff.pest`, pest).
//!
//! Invariant: nothing semantic here, and nothing here knows about later stages.

pub mod ast;
mod messages;
mod numbers;
mod parse;

pub use parse::{depth, parse_expr, parse_file, MAX_EXPR_DEPTH, MAX_NESTING};

#[cfg(test)]
mod tests;

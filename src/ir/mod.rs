//! The checked model (IR) and its symbolic expression language.
//!
//! Invariant: no file IO and no candle here; the symbolic helpers return errors without spans
//! and the checker attaches them.

pub mod expr;
pub mod interval;
pub mod marginal;
pub mod model;
pub mod registry;
pub mod singular;
pub mod symbolic;

pub use expr::{Expr, Func, Var};
pub use model::*;
pub use registry::{
    ActivationKind, EmbeddingKind, MetricKind, NetworkKind, Precondition, Solver, Target, TimeGrid,
};

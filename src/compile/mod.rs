//! Stage 3: checked model → what training and sampling execute. From a process declaration
//! the compiler derives the simulation-free forward sampler q(x_t | x_0), the regression target
//! and the reverse-time samplers; nothing here is written per model.
//!
//! Invariant: this stage sees only [`crate::ir`] (never the syntax tree) and does no file IO.

mod cumulative;
mod family;
mod forward;
mod gaussian;
pub mod jump;
mod jumps;
pub mod marginal_solver;
pub mod ndm;
mod sampler;
pub mod solver;
pub mod transdim;

pub use family::{
    ExplainContext, Family, FamilyKind, LossError, Nets, SampleNets, SetFn, SetHeads, TimeSpan,
    TrainBatch, TransformFn,
};
pub use forward::{build, build_for, supported, transdim};
pub use sampler::{
    coarse_fine_grid, edm_grid, log_snr_grid, sample, sample_with, uniform_grid, SamplerError,
    ScoreFn, Solver, StepContext, TimeGrid,
};

/// A compiled forward process, whatever its family.
pub type Forward = dyn Family;

use crate::diag::Diagnostic;
use crate::ir::{self, Loc};

/// A problem found while compiling: the spec is valid but asks for something the compiler
/// cannot derive. Points at the declaration responsible.
#[derive(Debug, Clone)]
pub struct CompileError {
    pub loc: Loc,
    pub code: &'static str,
    pub message: String,
    pub help: String,
}

impl CompileError {
    pub fn new(
        loc: Loc,
        code: &'static str,
        message: impl Into<String>,
        help: impl Into<String>,
    ) -> Self {
        CompileError {
            loc,
            code,
            message: message.into(),
            help: help.into(),
        }
    }

    /// As a diagnostic for rendering with the spec's source.
    pub fn to_diagnostic(&self) -> Diagnostic {
        Diagnostic::error(
            self.code,
            self.loc.file,
            self.loc.span,
            self.message.clone(),
        )
        .with_label("declared here")
        .with_help(self.help.clone())
    }
}

/// Compiles an experiment's process for data of dimension `dim`.
pub fn compile(exp: &ir::Experiment, dim: usize) -> Result<Box<Forward>, CompileError> {
    if matches!(exp.process.state, ir::StateSpace::Set { .. }) {
        let fam = forward::transdim(&exp.process, &exp.loss)?;
        return Ok(Box::new(fam.with_corrector(exp.sample.corrector)));
    }
    build_for(&exp.process, &exp.loss, dim, exp.data.levels)
}

//! The reverse-time sampling loop, generic over the family: prior, then one family step per
//! point of the time grid (the steps themselves are in [`super::solver`] and the families).

use super::family::{Family, SampleNets};

pub use crate::ir::Solver;

/// Evaluates the network: inputs (n × D, row-major) at forward time t → outputs (n × D).
pub type ScoreFn<'a> = dyn FnMut(&[f32], f64) -> Result<Vec<f32>, String> + 'a;

#[derive(Debug, thiserror::Error)]
pub enum SamplerError {
    #[error("the network failed during sampling: {0}")]
    Network(String),
    #[error("`{solver}` cannot sample this process; use one of {supported}")]
    Unsupported {
        solver: &'static str,
        supported: String,
    },
    #[error("sampling diverged at t = {t:.4}: the state became NaN or infinite (try more steps or another solver)")]
    Diverged { t: f64 },
}

impl SamplerError {
    /// `solver` is not among the `supported` solvers of a family.
    pub fn unsupported(solver: Solver, supported: &[Solver]) -> SamplerError {
        let names: Vec<String> = supported
            .iter()
            .map(|s| format!("`{}`", s.name()))
            .collect();
        SamplerError::Unsupported {
            solver: solver.name(),
            supported: names.join(", "),
        }
    }
}

/// [`sample_with`] for the families that need only the score network.
#[allow(clippy::too_many_arguments)]
pub fn sample(
    fwd: &dyn Family,
    solver: Solver,
    steps: usize,
    n: usize,
    seed: u64,
    t_end: f64,
    net: &mut ScoreFn,
    progress: &mut dyn FnMut(usize),
) -> Result<Vec<f32>, SamplerError> {
    let mut nets = SampleNets {
        score: net,
        transform: None,
    };
    sample_with(fwd, solver, steps, n, seed, t_end, &mut nets, progress)
}

/// Draws `n` samples by integrating the reverse process of `fwd` from the horizon to `t_end`
/// in `steps` uniform steps. `progress` is called after each step.
#[allow(clippy::too_many_arguments)]
pub fn sample_with(
    fwd: &dyn Family,
    solver: Solver,
    steps: usize,
    n: usize,
    seed: u64,
    t_end: f64,
    nets: &mut SampleNets,
    progress: &mut dyn FnMut(usize),
) -> Result<Vec<f32>, SamplerError> {
    if !fwd.solvers().contains(&solver) {
        return Err(SamplerError::unsupported(solver, fwd.solvers()));
    }
    let time = fwd.time();
    let t_end = t_end.max(time.t_min);
    let mut x = fwd.prior(n, seed);
    let h = (time.t1 - t_end) / steps as f64;
    for k in 0..steps {
        let t = time.t1 - k as f64 * h;
        fwd.step(solver, nets, &mut x, t, h, seed, k)?;
        if x.iter().any(|v| !v.is_finite()) {
            return Err(SamplerError::Diverged { t: t - h });
        }
        progress(k + 1);
    }
    Ok(x.into_iter().map(|v| v as f32).collect())
}

//! The reverse-time sampling loop, generic over the family: prior, then one family step per
//! point of the time grid (the steps themselves are in [`super::solver`] and the families).

use super::family::{Family, SampleNets};

pub use crate::ir::{Solver, TimeGrid};

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
    #[error("cannot sample yet: {0}")]
    NotReady(String),
    #[error("the `{grid}` time grid is not available for this process: {why}")]
    Grid { grid: &'static str, why: String },
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
    let mut nets = SampleNets::score(net);
    sample_with(
        fwd,
        solver,
        TimeGrid::Uniform,
        steps,
        n,
        seed,
        t_end,
        &mut nets,
        progress,
    )
}

/// Draws `n` samples by integrating the reverse process of `fwd` from the horizon to `t_end`
/// in `steps` uniform steps. `progress` is called after each step.
#[allow(clippy::too_many_arguments)]
pub fn sample_with(
    fwd: &dyn Family,
    solver: Solver,
    grid: TimeGrid,
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
    let ts = fwd.time_grid(grid, steps, t_end)?;
    fwd.ready_to_sample()?;
    let mut x = fwd.prior(n, seed);
    for k in 0..steps {
        let (t, h) = (ts[k], ts[k] - ts[k + 1]);
        fwd.step(solver, nets, &mut x, t, h, seed, k)?;
        if !fwd.state_is_finite(&x) {
            return Err(SamplerError::Diverged { t: t - h });
        }
        progress(k + 1);
    }
    Ok(x.into_iter().map(|v| v as f32).collect())
}

/// The grid of a family with a Gaussian marginal whose γ = −log SNR is `gamma`: uniform, or
/// uniform in γ.
pub fn gaussian_time_grid(
    grid: TimeGrid,
    gamma: &dyn Fn(f64) -> f64,
    t1: f64,
    t_end: f64,
    steps: usize,
) -> Result<Vec<f64>, SamplerError> {
    match grid {
        TimeGrid::Uniform => Ok(uniform_grid(t1, t_end, steps)),
        TimeGrid::LogSnr => log_snr_grid(gamma, t1, t_end, steps),
        TimeGrid::CoarseFine => Ok(coarse_fine_grid(t1, t_end, steps)),
    }
}

/// `steps + 1` times from `t1` down to `t_end` in two uniform phases split at the midpoint
/// t_c of [t_end, t1]: C = max(1, round(steps / 51)) coarse steps above t_c and the other
/// F = steps − C below it, so that a coarse step is F/C ≈ 50 fine steps long. With fewer than
/// two steps it is the uniform grid.
pub fn coarse_fine_grid(t1: f64, t_end: f64, steps: usize) -> Vec<f64> {
    if steps < 2 {
        return uniform_grid(t1, t_end, steps);
    }
    let coarse = ((steps as f64 / 51.0).round() as usize).clamp(1, steps - 1);
    let fine = steps - coarse;
    let tc = 0.5 * (t1 + t_end);
    let mut out: Vec<f64> = uniform_grid(t1, tc, coarse);
    out.pop();
    out.extend(uniform_grid(tc, t_end, fine));
    out
}

/// `steps + 1` times from `t1` down to `t_end` in equal steps.
pub fn uniform_grid(t1: f64, t_end: f64, steps: usize) -> Vec<f64> {
    let h = (t1 - t_end) / steps as f64;
    (0..=steps)
        .map(|k| if k == steps { t_end } else { t1 - k as f64 * h })
        .collect()
}

/// `steps + 1` times from `t1` down to `t_end`, equally spaced in `gamma` (γ = −log SNR, which
/// must increase strictly with t on [t_end, t1]): γ is tabulated on 4096 intervals and inverted
/// by linear interpolation, then each time is refined by bisection on γ itself.
pub fn log_snr_grid(
    gamma: &dyn Fn(f64) -> f64,
    t1: f64,
    t_end: f64,
    steps: usize,
) -> Result<Vec<f64>, SamplerError> {
    let bad = |why: String| SamplerError::Grid {
        grid: TimeGrid::LogSnr.name(),
        why,
    };
    let n = 4096;
    let ts: Vec<f64> = (0..=n)
        .map(|i| t_end + (t1 - t_end) * i as f64 / n as f64)
        .collect();
    let gs: Vec<f64> = ts.iter().map(|&t| gamma(t)).collect();
    for (i, w) in gs.windows(2).enumerate() {
        if !(w[0].is_finite() && w[1].is_finite() && w[1] > w[0]) {
            return Err(bad(format!(
                "log SNR must decrease strictly in t and be finite on [t_end, T], but γ = −log SNR is {} at t = {} and {} at t = {}",
                w[0], ts[i], w[1], ts[i + 1]
            )));
        }
    }
    let (g0, g1) = (gs[0], gs[n]);
    let mut out = Vec::with_capacity(steps + 1);
    for k in 0..=steps {
        let g = g1 - (g1 - g0) * k as f64 / steps as f64;
        let i = gs.partition_point(|v| *v < g).clamp(1, n);
        let (mut lo, mut hi) = (ts[i - 1], ts[i]);
        for _ in 0..40 {
            let mid = 0.5 * (lo + hi);
            if gamma(mid) < g {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        out.push(0.5 * (lo + hi));
    }
    out[0] = t1;
    out[steps] = t_end;
    Ok(out)
}

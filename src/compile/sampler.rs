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
    #[error("`{solver}` cannot sample this process; {supported}")]
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
            supported: if names.is_empty() {
                "no solver can sample it as written (see the `singular_end` warning)".into()
            } else {
                format!("use one of {}", names.join(", "))
            },
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
        0.0,
        steps,
        n,
        seed,
        t_end,
        &mut nets,
        progress,
    )
}

/// One reverse step's place in the run and what a solver carries between steps.
pub struct StepContext {
    /// Forward time of the step's start; the step goes to t − h.
    pub t: f64,
    pub h: f64,
    pub seed: u64,
    /// The step's number (0 at the horizon) and the number of steps of the run.
    pub k: usize,
    pub steps: usize,
    /// DDIM's noise level η (`sample { eta = … }`; 0 = deterministic).
    pub eta: f64,
    /// Multistep solvers: the previous step's data prediction x̂0 and its λ = log(α/σ).
    pub history: Option<(f64, Vec<f64>)>,
}

impl StepContext {
    /// The context of a lone step `k` of `steps` (no history, η = 0).
    pub fn single(t: f64, h: f64, seed: u64, k: usize, steps: usize) -> StepContext {
        StepContext {
            t,
            h,
            seed,
            k,
            steps,
            eta: 0.0,
            history: None,
        }
    }

    /// Whether this is the run's last step.
    pub fn is_last(&self) -> bool {
        self.k + 1 == self.steps
    }
}

/// Draws `n` samples by integrating the reverse process of `fwd` from the horizon to `t_end`
/// in `steps` steps of `grid`; `eta` is DDIM's noise level. `progress` is called after each
/// step.
#[allow(clippy::too_many_arguments)]
pub fn sample_with(
    fwd: &dyn Family,
    solver: Solver,
    grid: TimeGrid,
    eta: f64,
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
    let mut ctx = StepContext::single(ts[0], 0.0, seed, 0, steps);
    ctx.eta = eta;
    for k in 0..steps {
        let (t, h) = (ts[k], ts[k] - ts[k + 1]);
        (ctx.t, ctx.h, ctx.k) = (t, h, k);
        fwd.step_with(solver, nets, &mut x, &mut ctx)?;
        if !fwd.state_is_finite(&x) {
            return Err(SamplerError::Diverged { t: t - h });
        }
        progress(k + 1);
    }
    Ok(x.into_iter().map(|v| v as f32).collect())
}

/// EDM's ρ (Karras et al. 2022).
const EDM_RHO: f64 = 7.0;

/// The grid of a family with a Gaussian marginal whose γ = −log SNR is `gamma`: uniform,
/// uniform in γ, coarse-fine, or EDM's ρ = 7 grid in σ̃ = e^{γ/2}.
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
        TimeGrid::Edm => edm_grid(gamma, t1, t_end, steps),
    }
}

/// `steps + 1` times from `t1` down to `t_end` with σ̃ = σ_t/α_t on EDM's ρ = 7 schedule:
/// σ̃_k = (σ̃_max^{1/ρ} + k/K (σ̃_min^{1/ρ} − σ̃_max^{1/ρ}))^ρ. σ̃_min may be 0 (σ = 0 at t_end);
/// σ̃_max must be finite (α_T > 0).
pub fn edm_grid(
    gamma: &dyn Fn(f64) -> f64,
    t1: f64,
    t_end: f64,
    steps: usize,
) -> Result<Vec<f64>, SamplerError> {
    let sigma = |t: f64| (0.5 * gamma(t)).exp();
    let (hi, lo) = (sigma(t1), sigma(t_end));
    if !hi.is_finite() || hi <= 0.0 {
        return Err(SamplerError::Grid {
            grid: TimeGrid::Edm.name(),
            why: format!(
                "σ_t/α_t must be finite at the horizon, but it is {hi} at t = {t1} (α_T = 0)"
            ),
        });
    }
    let (a, b) = (hi.powf(1.0 / EDM_RHO), lo.max(0.0).powf(1.0 / EDM_RHO));
    let targets: Vec<f64> = (0..=steps)
        .map(|k| 2.0 * EDM_RHO * (a + (b - a) * k as f64 / steps as f64).ln())
        .collect();
    invert_gamma(gamma, t1, t_end, &targets, TimeGrid::Edm)
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
    let (g0, g1) = (gamma(t_end), gamma(t1));
    let targets: Vec<f64> = (0..=steps)
        .map(|k| g1 - (g1 - g0) * k as f64 / steps as f64)
        .collect();
    invert_gamma(gamma, t1, t_end, &targets, TimeGrid::LogSnr)
}

/// The times where `gamma` takes the values `targets` (from `t1` down to `t_end`; the first
/// and last are `t1` and `t_end` themselves): γ is tabulated on 4096 intervals and inverted by
/// linear interpolation, then each time is refined by bisection on γ itself. γ must be finite
/// and increase strictly on (t_end, t1]; γ(t_end) may be −∞ (σ = 0 there) on the EDM grid.
fn invert_gamma(
    gamma: &dyn Fn(f64) -> f64,
    t1: f64,
    t_end: f64,
    targets: &[f64],
    grid: TimeGrid,
) -> Result<Vec<f64>, SamplerError> {
    let bad = |why: String| SamplerError::Grid {
        grid: grid.name(),
        why,
    };
    let n = 4096;
    let ts: Vec<f64> = (0..=n)
        .map(|i| t_end + (t1 - t_end) * i as f64 / n as f64)
        .collect();
    let gs: Vec<f64> = ts.iter().map(|&t| gamma(t)).collect();
    let open_end = matches!(grid, TimeGrid::Edm) && gs[0] == f64::NEG_INFINITY;
    for (i, w) in gs.windows(2).enumerate() {
        let first_ok = w[0].is_finite() || (i == 0 && open_end);
        if !(first_ok && w[1].is_finite() && w[1] > w[0]) {
            return Err(bad(format!(
                "log SNR must decrease strictly in t and be finite on [t_end, T], but γ = −log SNR is {} at t = {} and {} at t = {}",
                w[0], ts[i], w[1], ts[i + 1]
            )));
        }
    }
    let steps = targets.len() - 1;
    let mut out = Vec::with_capacity(steps + 1);
    for &g in targets {
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

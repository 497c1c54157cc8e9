//! Reverse-time samplers derived from the forward process: probability-flow ODE (Euler, Heun,
//! exponential integrator) and reverse SDE (Euler–Maruyama, exponential integrator with the
//! forward jump law). All work on host vectors and call the network through [`ScoreFn`] in
//! chunks; all randomness is per sample, so results do not depend on chunk sizes.
//!
//! The reverse dynamics are written once for every process as
//! dx/dt = a(t) x + b(t) − k(t) U(x, t) (ODE) and with 2k and noise (SDE), where U is the
//! score (Gaussian, k = g²/2) or the generalized score (jumps, k = 1).

use super::Forward;
use crate::rng::{stream, Purpose};
use rand::Rng;
use rand_distr::StandardNormal;

/// Available solvers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Solver {
    OdeEuler,
    OdeHeun,
    EulerMaruyama,
    ExponentialOde,
    ExponentialSde,
}

impl Solver {
    pub fn from_name(name: &str) -> Option<Solver> {
        Some(match name {
            "ode_euler" => Solver::OdeEuler,
            "ode_heun" => Solver::OdeHeun,
            "euler_maruyama" => Solver::EulerMaruyama,
            "exponential_ode" => Solver::ExponentialOde,
            "exponential_sde" => Solver::ExponentialSde,
            _ => return None,
        })
    }
    pub fn name(self) -> &'static str {
        match self {
            Solver::OdeEuler => "ode_euler",
            Solver::OdeHeun => "ode_heun",
            Solver::EulerMaruyama => "euler_maruyama",
            Solver::ExponentialOde => "exponential_ode",
            Solver::ExponentialSde => "exponential_sde",
        }
    }
    pub fn is_stochastic(self) -> bool {
        matches!(self, Solver::EulerMaruyama | Solver::ExponentialSde)
    }
}

/// Evaluates the network: inputs (n × D, row-major) at forward time t → outputs (n × D).
pub type ScoreFn<'a> = dyn FnMut(&[f32], f64) -> Result<Vec<f32>, String> + 'a;

#[derive(Debug, thiserror::Error)]
pub enum SamplerError {
    #[error("the network failed during sampling: {0}")]
    Network(String),
    #[error("{0} cannot sample a jump process; use `exponential_ode`, `exponential_sde`, `ode_euler` or `ode_heun`")]
    Unsupported(&'static str),
    #[error("sampling diverged at t = {t:.4}: the state became NaN or infinite (try more steps or another solver)")]
    Diverged { t: f64 },
}

/// (e^{x} − 1)/x, continuous at 0.
fn phi(x: f64) -> f64 {
    if x.abs() < 1e-12 {
        1.0
    } else {
        x.exp_m1() / x
    }
}

/// Draws `n` samples by integrating the reverse process from the horizon to `t_end` in
/// `steps` uniform steps. `progress` is called after each step.
#[allow(clippy::too_many_arguments)]
pub fn sample(
    fwd: &Forward,
    solver: Solver,
    steps: usize,
    n: usize,
    seed: u64,
    t_end: f64,
    net: &mut ScoreFn,
    progress: &mut dyn FnMut(usize),
) -> Result<Vec<f32>, SamplerError> {
    if fwd.is_jump() && solver == Solver::EulerMaruyama {
        return Err(SamplerError::Unsupported("euler_maruyama"));
    }
    let d = fwd.dim;
    let t_end = t_end.max(fwd.t_min);
    let mut x = vec![0f64; n * d];
    for i in 0..n {
        let mut rng = stream(seed, Purpose::Sample, 0, i as u64);
        fwd.prior(&mut rng, &mut x[i * d..(i + 1) * d]);
    }
    let h = (fwd.t1 - t_end) / steps as f64;
    let mut u = vec![0f64; n * d];
    for k in 0..steps {
        let t = fwd.t1 - k as f64 * h;
        let t_next = t - h;
        velocity_input(fwd, &x, t, net, &mut u)?;
        match solver {
            Solver::OdeEuler => {
                let (a, b, kk, _) = fwd.coefficients(t);
                for j in 0..x.len() {
                    x[j] -= h * (a * x[j] + b - kk * u[j]);
                }
            }
            Solver::OdeHeun => {
                let (a, b, kk, _) = fwd.coefficients(t);
                let drift0: Vec<f64> = (0..x.len()).map(|j| a * x[j] + b - kk * u[j]).collect();
                let x_pred: Vec<f64> = (0..x.len()).map(|j| x[j] - h * drift0[j]).collect();
                let mut u1 = vec![0f64; n * d];
                velocity_input(fwd, &x_pred, t_next, net, &mut u1)?;
                let (a1, b1, k1, _) = fwd.coefficients(t_next);
                for j in 0..x.len() {
                    let drift1 = a1 * x_pred[j] + b1 - k1 * u1[j];
                    x[j] -= 0.5 * h * (drift0[j] + drift1);
                }
            }
            Solver::EulerMaruyama => {
                let (a, b, kk, g2) = fwd.coefficients(t);
                for i in 0..n {
                    let mut rng = stream(seed, Purpose::Sample, k as u64 + 1, i as u64);
                    for j in i * d..(i + 1) * d {
                        let z: f64 = rng.sample(StandardNormal);
                        x[j] += -h * (a * x[j] + b - 2.0 * kk * u[j]) + (g2 * h).sqrt() * z;
                    }
                }
            }
            Solver::ExponentialOde | Solver::ExponentialSde => {
                // Linear part integrated exactly with coefficients frozen at the step's midpoint;
                // U frozen at the start (as in the reference exponential integrators).
                let (a, b, kk, g2) = fwd.coefficients(t - 0.5 * h);
                let decay = (-a * h).exp();
                let coef = h * phi(-a * h);
                let stochastic = solver == Solver::ExponentialSde;
                let factor = if stochastic { 2.0 } else { 1.0 };
                for i in 0..n {
                    let row = i * d..(i + 1) * d;
                    for j in row.clone() {
                        x[j] = decay * x[j] + coef * (-b + factor * kk * u[j]);
                    }
                    if stochastic {
                        let mut rng = stream(seed, Purpose::Sample, k as u64 + 1, i as u64);
                        if fwd.is_jump() {
                            fwd.reverse_jumps(h, &mut rng, &mut x[row]);
                        } else {
                            let var = g2 * h * phi(-2.0 * a * h);
                            for j in row {
                                let z: f64 = rng.sample(StandardNormal);
                                x[j] += var.sqrt() * z;
                            }
                        }
                    }
                }
            }
        }
        if x.iter().any(|v| !v.is_finite()) {
            return Err(SamplerError::Diverged { t: t_next });
        }
        progress(k + 1);
    }
    Ok(x.into_iter().map(|v| v as f32).collect())
}

/// U(x, t) for every row, from one network evaluation.
fn velocity_input(
    fwd: &Forward,
    x: &[f64],
    t: f64,
    net: &mut ScoreFn,
    u: &mut [f64],
) -> Result<(), SamplerError> {
    let xf: Vec<f32> = x.iter().map(|v| *v as f32).collect();
    let out = net(&xf, t).map_err(SamplerError::Network)?;
    fwd.output_to_u(&out, &xf, t, u);
    Ok(())
}

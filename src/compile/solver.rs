//! One small function per reverse-time solver, for the families whose reverse dynamics are
//! dx/dt = a(t) x + b(t) − k(t) U(x, t) (probability flow) and, with 2k, the reverse SDE.
//! U is what a family makes of the network output (the score for Gaussian processes with
//! k = g²/2, the generalized score for jump processes with k = 1). A family says which of
//! these it supports and supplies the stochastic part of the exponential SDE step.
//!
//! The state is held on the host in f64 (n rows of `dim` numbers); the network is called
//! through [`ScoreFn`] once per stage, and all randomness is per sample, so results do not
//! depend on how the network evaluation is chunked.

use super::sampler::{SamplerError, ScoreFn};
use crate::rng::{stream, Purpose};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

/// The reverse-dynamics coefficients at one time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Coefficients {
    pub a: f64,
    pub b: f64,
    /// Velocity factor: dx/dt = a x + b − k U.
    pub k: f64,
    /// Gaussian noise variance rate g².
    pub g2: f64,
}

/// What the generic solvers need from a family with linear reverse dynamics.
pub trait LinearReverse {
    fn coefficients(&self, t: f64) -> Coefficients;
    /// U(x, t) from the network output `out` at the points `x` (both n × dim, row-major).
    fn velocity(&self, out: &[f32], x: &[f32], t: f64, u: &mut [f64]);
}

/// (e^{x} − 1)/x, continuous at 0.
pub fn phi(x: f64) -> f64 {
    if x.abs() < 1e-12 {
        1.0
    } else {
        x.exp_m1() / x
    }
}

/// U at every row from one network evaluation.
pub fn velocity<L: LinearReverse + ?Sized>(
    l: &L,
    x: &[f64],
    t: f64,
    net: &mut ScoreFn,
    u: &mut [f64],
) -> Result<(), SamplerError> {
    let xf: Vec<f32> = x.iter().map(|v| *v as f32).collect();
    let out = net(&xf, t).map_err(SamplerError::Network)?;
    if out.len() != x.len() {
        return Err(SamplerError::Network(format!(
            "the network returned {} numbers for {} inputs",
            out.len(),
            x.len()
        )));
    }
    l.velocity(&out, &xf, t, u);
    Ok(())
}

/// Probability-flow ODE, explicit Euler.
pub fn ode_euler<L: LinearReverse + ?Sized>(
    l: &L,
    net: &mut ScoreFn,
    x: &mut [f64],
    t: f64,
    h: f64,
) -> Result<(), SamplerError> {
    let mut u = vec![0f64; x.len()];
    velocity(l, x, t, net, &mut u)?;
    let c = l.coefficients(t);
    for (xj, uj) in x.iter_mut().zip(&u) {
        *xj -= h * (c.a * *xj + c.b - c.k * uj);
    }
    Ok(())
}

/// Probability-flow ODE, Heun's second-order method.
pub fn ode_heun<L: LinearReverse + ?Sized>(
    l: &L,
    net: &mut ScoreFn,
    x: &mut [f64],
    t: f64,
    h: f64,
) -> Result<(), SamplerError> {
    let mut u = vec![0f64; x.len()];
    velocity(l, x, t, net, &mut u)?;
    let c0 = l.coefficients(t);
    let drift0: Vec<f64> = x
        .iter()
        .zip(&u)
        .map(|(xj, uj)| c0.a * xj + c0.b - c0.k * uj)
        .collect();
    let x_pred: Vec<f64> = x.iter().zip(&drift0).map(|(xj, d)| xj - h * d).collect();
    velocity(l, &x_pred, t - h, net, &mut u)?;
    let c1 = l.coefficients(t - h);
    for j in 0..x.len() {
        let drift1 = c1.a * x_pred[j] + c1.b - c1.k * u[j];
        x[j] -= 0.5 * h * (drift0[j] + drift1);
    }
    Ok(())
}

/// Reverse SDE, Euler–Maruyama with Gaussian noise (Gaussian families only).
#[allow(clippy::too_many_arguments)]
pub fn euler_maruyama<L: LinearReverse + ?Sized>(
    l: &L,
    net: &mut ScoreFn,
    x: &mut [f64],
    dim: usize,
    t: f64,
    h: f64,
    seed: u64,
    k: usize,
) -> Result<(), SamplerError> {
    let mut u = vec![0f64; x.len()];
    velocity(l, x, t, net, &mut u)?;
    let c = l.coefficients(t);
    for (i, (row, urow)) in x.chunks_mut(dim).zip(u.chunks(dim)).enumerate() {
        let mut rng = stream(seed, Purpose::Sample, k as u64 + 1, i as u64);
        for (xj, uj) in row.iter_mut().zip(urow) {
            let z: f64 = rng.sample(StandardNormal);
            *xj += -h * (c.a * *xj + c.b - 2.0 * c.k * uj) + (c.g2 * h).sqrt() * z;
        }
    }
    Ok(())
}

/// Exponential integrator: the linear part integrated exactly with coefficients frozen at the
/// step's midpoint, U frozen at the start (as in the reference exponential integrators).
/// With `noise = Some(f)` it is the reverse SDE (velocity doubled) and `f(h, c, rng, row)` adds
/// the family's noise of the step to each row; with `None` the probability-flow ODE.
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
pub fn exponential<L: LinearReverse + ?Sized>(
    l: &L,
    net: &mut ScoreFn,
    x: &mut [f64],
    dim: usize,
    t: f64,
    h: f64,
    seed: u64,
    k: usize,
    noise: Option<&dyn Fn(f64, &Coefficients, &mut ChaCha8Rng, &mut [f64])>,
) -> Result<(), SamplerError> {
    let mut u = vec![0f64; x.len()];
    velocity(l, x, t, net, &mut u)?;
    let c = l.coefficients(t - 0.5 * h);
    let decay = (-c.a * h).exp();
    let coef = h * phi(-c.a * h);
    let factor = if noise.is_some() { 2.0 } else { 1.0 };
    for (i, (row, urow)) in x.chunks_mut(dim).zip(u.chunks(dim)).enumerate() {
        for (xj, uj) in row.iter_mut().zip(urow) {
            *xj = decay * *xj + coef * (-c.b + factor * c.k * uj);
        }
        if let Some(add) = noise {
            let mut rng = stream(seed, Purpose::Sample, k as u64 + 1, i as u64);
            add(h, &c, &mut rng, row);
        }
    }
    Ok(())
}

/// φ₂(z) = (e^z − 1 − z)/z², the weight of the linear-in-time part of the nonlinear term.
pub fn phi2(z: f64) -> f64 {
    if z.abs() < 1e-4 {
        0.5 + z / 6.0 + z * z / 24.0
    } else {
        (z.exp_m1() - z) / (z * z)
    }
}

/// One step of the second-order multistep exponential integrator (exponential Adams–Bashforth
/// 2) of the probability-flow ODE in reverse time τ, dx/dτ = −a x + N(τ) with N = −b + k·U:
///
///   x ← e^{−ah} x + h φ₁(−ah) N_n + h² φ₂(−ah) (N_n − N_{n−1}) / h_{n−1},
///
/// the exact integral of e^{−a(h−s)} times the line through the last two values of N. It costs
/// one network evaluation per step, as [`exponential`]; without a previous step (the first one)
/// it is [`exponential`]'s first-order update. `history` carries (h_n, N_n) to the next step.
pub fn exponential_2m<L: LinearReverse + ?Sized>(
    l: &L,
    net: &mut ScoreFn,
    x: &mut [f64],
    t: f64,
    h: f64,
    history: &mut Option<(f64, Vec<f64>)>,
) -> Result<(), SamplerError> {
    let mut n = vec![0f64; x.len()];
    velocity(l, x, t, net, &mut n)?;
    let c = l.coefficients(t - 0.5 * h);
    for v in n.iter_mut() {
        *v = -c.b + c.k * *v;
    }
    let z = -c.a * h;
    let (decay, w1, w2) = (z.exp(), h * phi(z), h * h * phi2(z));
    match history.as_ref() {
        Some((h_prev, n_prev)) if *h_prev > 0.0 && n_prev.len() == n.len() => {
            for ((xi, ni), pi) in x.iter_mut().zip(&n).zip(n_prev) {
                *xi = decay * *xi + w1 * ni + w2 * (ni - pi) / h_prev;
            }
        }
        _ => {
            for (xi, ni) in x.iter_mut().zip(&n) {
                *xi = decay * *xi + w1 * ni;
            }
        }
    }
    *history = Some((h, n));
    Ok(())
}

/// The Gaussian noise of an exponential SDE step: N(0, g² h φ(−2ah) I).
pub fn gaussian_exponential_noise(h: f64, c: &Coefficients, rng: &mut ChaCha8Rng, row: &mut [f64]) {
    let sd = (c.g2 * h * phi(-2.0 * c.a * h)).sqrt();
    for xj in row {
        let z: f64 = rng.sample(StandardNormal);
        *xj += sd * z;
    }
}

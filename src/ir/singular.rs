//! Where a Gaussian schedule's coefficients blow up: the implied linear SDE of an explicit
//! marginal, and the two thresholds that `check` (the `singular_end` warning) and the compiled
//! Gaussian family (which solvers it offers) share, so that they always agree.

use super::expr::{Expr, Var};
use super::symbolic::{diff, simplify};

/// A drift rate |a(t)| above this many e-folds per length of the time interval makes the
/// solvers that evaluate the drift (Euler, Heun, Euler–Maruyama, the drift-based exponential
/// SDE) blow up at any usual step count: one of 1000 uniform steps then has |a h| > 1.
pub const STIFF_DRIFT: f64 = 1e3;

/// α_t/σ_t at the horizon below which the signal is treated as gone: an ε or score network
/// then gives x̂0 = (x − c − σ ε̂)/α with its error multiplied by more than 1/ZERO_SNR.
pub const ZERO_SNR: f64 = 1e-4;

/// The linear SDE implied by the explicit marginal N(α_t x_0, σ_t² I):
/// a = d log α / dt and g = √(d σ²/dt − 2 a σ²).
pub fn implied_sde(alpha: &Expr, sigma: &Expr) -> (Expr, Expr) {
    let a = simplify(&diff(&alpha.clone().ln(), Var::T));
    let s2 = sigma.clone() * sigma.clone();
    let g2 = simplify(&(diff(&s2, Var::T) - Expr::c(2.0) * a.clone() * s2));
    (a, g2.sqrt())
}

/// How much larger than at the middle of the interval the drift rate must be, on top of
/// [`STIFF_DRIFT`], to count as singular: a constant rate on a long interval (an OU with
/// horizon 30 000) is stiff for coarse uniform steps but not singular, and its marginal is
/// exact.
pub const SINGULAR_RATIO: f64 = 100.0;

/// Whether the drift rate `a` (at one time) is singular for the drift-based solvers on an
/// interval of length `span`, where `a_mid` is the rate at the interval's middle: infinite, or
/// both too large for the interval and far above its typical value.
pub fn stiff_drift(a: f64, a_mid: f64, span: f64) -> bool {
    !a.is_finite() || (a.abs() * span > STIFF_DRIFT && a.abs() > SINGULAR_RATIO * a_mid.abs())
}

/// Whether the signal is gone at a time with marginal α, σ (α/σ below [`ZERO_SNR`] or undefined).
pub fn zero_snr(alpha: f64, sigma: f64) -> bool {
    let r = alpha.abs() / sigma;
    r.is_nan() || r < ZERO_SNR
}

//! Numerical core of the jump-diffusion models with Laplace jumps (Baule, arXiv 2503.06558).
//!
//! Forward process in D dimensions: dx = −(θ/2) x dt + √gvar dW + dL, where L is compound
//! Poisson with rate λ and isotropic multivariate-Laplace amplitudes A = √(σ² Z) G,
//! Z ~ Gamma(shape 1, scale 1), G ~ N(0, I_D). Then x_t = x_0 e^{−θt/2} + Δ_t.
//! *JL* is the pure-jump model (gvar = 0), *JDL* adds the Gaussian part.
//!
//! * [`bessel`]: ln K_ν(x) for any order (needed for D up to thousands).
//! * [`score`]: closed-form generalized-score target of JL when m = λ/θ is an integer.
//! * [`table`]: radial score table for JDL (D = 2) by Hankel transforms, bilinear lookup.
//! * [`sample`]: simulation-free samplers for Δ_t, the prior and the reverse-SDE jump increment.
//! * [`rate`]: a time-varying jump rate λ(t) with its integral Λ_t (tabulated, invertible).
//! * this file: shared parameters, errors and the exponential-integrator coefficients.

pub mod bessel;
pub mod rate;
pub mod sample;
pub mod score;
pub mod table;

pub use bessel::{bessel_k_ratio, log_bessel_k};
pub use rate::RateProfile;
pub use sample::{Increment, JumpSampler};
pub use score::{JlParams, JlScore};
pub use table::{ein, JdlTable, TableGrid};

/// Errors of the jump-process numerics. Messages say what is wrong and how to fix it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JumpError {
    /// A model parameter is out of its domain.
    #[error("jump model parameter `{name}` = {value} is invalid: {requirement}")]
    InvalidParameter {
        /// Parameter name as in the spec.
        name: &'static str,
        /// The offending value.
        value: f64,
        /// What the value must satisfy.
        requirement: &'static str,
    },
    /// The closed-form JL target needs λ/θ to be a positive integer.
    #[error(
        "the closed-form JL score needs rate/theta to be a positive integer, got {ratio}; \
         choose rate = m·theta (m = 1, 2, …) or use the tabulated score"
    )]
    NonIntegerRateRatio {
        /// λ/θ as given.
        ratio: f64,
    },
    /// A vector or batch has the wrong length.
    #[error(
        "{what} has length {got}, expected {expected} (check the model dimension and batch size)"
    )]
    LengthMismatch {
        /// Which buffer.
        what: &'static str,
        /// Its length.
        got: usize,
        /// The length needed.
        expected: usize,
    },
    /// A table lookup outside the tabulated range.
    #[error(
        "score table queried at {axis} = {value}, outside its range [{lo}, {hi}]; \
         widen the table grid in the spec"
    )]
    OutOfTable {
        /// `"r"` or `"t"`.
        axis: &'static str,
        /// The requested coordinate.
        value: f64,
        /// Lower end of the grid.
        lo: f64,
        /// Upper end of the grid.
        hi: f64,
    },
    /// The time-varying rate's u-integrals would take too long to build the table.
    #[error(
        "the score table for a time-varying jump rate needs {evaluations} quadrature terms \
         (limit {limit}): the integrals are resolved on panels of 1/theta over the whole horizon, \
         so shorten the horizon or lower theta·horizon"
    )]
    RateQuadratureTooCostly {
        /// Terms required.
        evaluations: usize,
        /// Maximum allowed.
        limit: usize,
    },
    /// The table for a time-varying rate would need too many Bessel evaluations (its radii
    /// grow with the increments the rate makes).
    #[error(
        "the score table for a time-varying jump rate needs {radii} radii (r ≤ {r_max}) × {nodes} \
         frequencies = {evaluations} Bessel evaluations (limit {limit}); lower the jump variance \
         or the rate, so that the increments stay smaller"
    )]
    RateTableTooLarge {
        /// Radii of the grid.
        radii: usize,
        /// Largest tabulated radius.
        r_max: f64,
        /// Quadrature nodes in k.
        nodes: usize,
        /// radii × nodes.
        evaluations: usize,
        /// Maximum allowed.
        limit: usize,
    },
    /// The table would need too many quadrature nodes (Gaussian part too weak at the smallest t).
    #[error(
        "the score table needs {nodes} quadrature nodes (limit {limit}): the Gaussian part is too \
         weak at t = {t_min}; raise the table's smallest time or the Gaussian variance rate"
    )]
    TableTooCostly {
        /// Nodes required.
        nodes: usize,
        /// Maximum allowed.
        limit: usize,
        /// Smallest tabulated time.
        t_min: f64,
    },
}

/// The law of one jump's amplitude A (per-coordinate variance scale σ²).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JumpLaw {
    /// Isotropic Laplace of shape 1: A = √(σ² Z) G, Z ~ Exp(1); φ_A(k) = 1/(1 + σ²|k|²/2).
    Laplace,
    /// Isotropic Gaussian N(0, σ² I); φ_A(k) = e^{−σ²|k|²/2}.
    Gaussian,
}

impl JumpLaw {
    /// φ_A(k) as a function of s = σ²|k|²/2.
    pub fn char_fn(self, s: f64) -> f64 {
        match self {
            JumpLaw::Laplace => 1.0 / (1.0 + s),
            JumpLaw::Gaussian => (-s).exp(),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            JumpLaw::Laplace => "Laplace",
            JumpLaw::Gaussian => "Gaussian",
        }
    }
}

/// Parameters of the forward process shared by the samplers and the table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JumpParams {
    /// The amplitude law.
    pub law: JumpLaw,
    /// Dimension D of the state.
    pub dim: usize,
    /// OU rate θ > 0 (drift −θx/2).
    pub theta: f64,
    /// Jump rate λ ≥ 0.
    pub lambda: f64,
    /// Laplace variance parameter σ² > 0 (per-coordinate jump variance for shape 1).
    pub sigma2: f64,
    /// Gaussian variance rate gvar ≥ 0 (0 for the pure-jump JL model).
    pub gvar: f64,
}

impl JumpParams {
    /// Checks every parameter's domain.
    pub fn validate(&self) -> Result<(), JumpError> {
        if self.dim == 0 {
            return Err(invalid("dim", 0.0, "must be at least 1"));
        }
        positive("theta", self.theta)?;
        positive("sigma2", self.sigma2)?;
        non_negative("rate", self.lambda)?;
        non_negative("gvar", self.gvar)
    }

    /// λ/θ, the stationary Laplace shape.
    pub fn shape_ratio(&self) -> f64 {
        self.lambda / self.theta
    }
}

pub(crate) fn invalid(name: &'static str, value: f64, requirement: &'static str) -> JumpError {
    JumpError::InvalidParameter {
        name,
        value,
        requirement,
    }
}

pub(crate) fn positive(name: &'static str, value: f64) -> Result<(), JumpError> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(invalid(name, value, "must be finite and > 0"))
    }
}

pub(crate) fn non_negative(name: &'static str, value: f64) -> Result<(), JumpError> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(invalid(name, value, "must be finite and >= 0"))
    }
}

/// `Some(m)` when `ratio` is within 1e−9 (relative) of a positive integer m.
pub(crate) fn integer_ratio(ratio: f64) -> Option<u32> {
    let m = ratio.round();
    if m >= 1.0 && m <= u32::MAX as f64 && (ratio - m).abs() <= 1e-9 * m {
        Some(m as u32)
    } else {
        None
    }
}

/// (e^{a} − 1)/a, continuous at a = 0 (where it is 1).
fn expm1_over(a: f64) -> f64 {
    if a.abs() < 1e-300 {
        1.0
    } else {
        a.exp_m1() / a
    }
}

/// Coefficients of one exponential-integrator step of the probability-flow ODE.
///
/// Reverse time τ = T − t, the ODE is dx/dτ = (θ/2) x + S(x, T − τ) (drift −f + g²S with
/// f = −θx/2, g = 1). Integrating the linear part exactly over a step h with S frozen gives
/// x ← a·x + c·S with a = e^{θh/2} and c = ∫_0^h e^{θ(h−s)/2} ds = (2/θ)(e^{θh/2} − 1)
/// (→ h as θ → 0). θ = 1 gives the paper's x ← e^{h/2}x + 2(e^{h/2} − 1)S. Returns (a, c).
pub fn ode_step_coeffs(theta: f64, h: f64) -> (f64, f64) {
    let half = 0.5 * theta * h;
    (half.exp(), h * expm1_over(half))
}

/// Coefficients of one exponential-integrator step of the generative SDE.
///
/// The SDE drift is (θ/2)x + 2S, so x ← a·x + c·S + noise with a = e^{θh/2},
/// c = (4/θ)(e^{θh/2} − 1). The Gaussian noise of variance rate gvar contributes
/// N(0, gvar·v·I) with v = ∫_0^h e^{θ(h−s)} ds = (e^{θh} − 1)/θ; jumps at times u ∈ (0, h) are
/// scaled by e^{θ(h−u)/2} (see [`sample::JumpSampler::reverse_jump_increment`]).
/// Returns (a, c, v).
pub fn sde_step_coeffs(theta: f64, h: f64) -> (f64, f64, f64) {
    let half = 0.5 * theta * h;
    (
        half.exp(),
        2.0 * h * expm1_over(half),
        h * expm1_over(theta * h),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integrator_coefficients_match_hand_computation() {
        // θ = 1, h = 0.1: e^{0.05} = 1.0512710963760241, 2(e^{0.05} − 1) = 0.10254219275204825,
        // e^{0.1} − 1 = 0.10517091807564763.
        let (a, c) = ode_step_coeffs(1.0, 0.1);
        assert!((a - 1.0512710963760241).abs() < 1e-15);
        assert!((c - 0.10254219275204825).abs() < 1e-15);
        let (a2, c2, v) = sde_step_coeffs(1.0, 0.1);
        assert_eq!(a2, a);
        assert!((c2 - 2.0 * 0.10254219275204825).abs() < 1e-15);
        assert!((v - 0.10517091807564763).abs() < 1e-15);
        // θ = 2, h = 0.25: a = e^{0.25}, c = (2/2)(e^{0.25} − 1), v = (e^{0.5} − 1)/2.
        let (a, c) = ode_step_coeffs(2.0, 0.25);
        assert!((a - 1.2840254166877414).abs() < 1e-15);
        assert!((c - 0.2840254166877414).abs() < 1e-15);
        let (_, _, v) = sde_step_coeffs(2.0, 0.25);
        assert!((v - 0.324360635350064).abs() < 1e-15);
        // θ → 0: plain Euler, c = h.
        assert_eq!(ode_step_coeffs(0.0, 0.3), (1.0, 0.3));
    }

    #[test]
    fn ode_step_is_exact_for_constant_score() {
        // dx/dτ = θx/2 + S with constant S has x(h) = e^{θh/2}x0 + (2S/θ)(e^{θh/2} − 1);
        // check against a fine RK4 integration.
        let (theta, h, x0, s) = (0.7, 0.4, 1.3, -0.9);
        let f = |x: f64| 0.5 * theta * x + s;
        let mut x = x0;
        let n = 1000;
        let dt = h / n as f64;
        for _ in 0..n {
            let k1 = f(x);
            let k2 = f(x + 0.5 * dt * k1);
            let k3 = f(x + 0.5 * dt * k2);
            let k4 = f(x + dt * k3);
            x += dt / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4);
        }
        let (a, c) = ode_step_coeffs(theta, h);
        assert!((a * x0 + c * s - x).abs() < 1e-13);
    }

    #[test]
    fn params_are_validated() {
        let ok = JumpParams {
            law: JumpLaw::Laplace,
            dim: 2,
            theta: 1.0,
            lambda: 1.0,
            sigma2: 2.0,
            gvar: 0.0,
        };
        assert!(ok.validate().is_ok());
        assert!(JumpParams { theta: 0.0, ..ok }.validate().is_err());
        assert!(JumpParams { dim: 0, ..ok }.validate().is_err());
        assert!(JumpParams { gvar: -1.0, ..ok }.validate().is_err());
        assert_eq!(integer_ratio(2.0000000001), Some(2));
        assert_eq!(integer_ratio(1.5), None);
        assert_eq!(integer_ratio(0.0), None);
    }
}

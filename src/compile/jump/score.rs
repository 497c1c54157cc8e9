//! Closed-form generalized-score target of the pure-jump Laplace (JL) model.
//!
//! Model: drift −θx/2, jump rate λ = m·θ with integer m ≥ 1, Laplace amplitudes of shape 1 and
//! variance parameter σ² (b = σ²/2), no Gaussian part. With E = e^{−θt} the increment
//! Δ = x_t − x_0 e^{−θt/2} has characteristic function [E + (1 − E)/(1 + b|k|²)]^m, i.e. the
//! binomial mixture Σ_j w_j·Laplace_j with w_j = C(m,j) E^{m−j} (1 − E)^j (shape 0 = atom at 0).
//! The potential 𝒱̂ = ψ/|k|²·p̂ with ψ = λb|k|²/(1 + b|k|²) gives 𝒱_c = λb Σ_{j=0}^m w_j f_{j+1},
//! where f_s(y) = C_s (u/2)^{s−D/2} K_{s−D/2}(u), u = |y|/√b, C_s = 2/(Γ(s)(4πb)^{D/2}), and
//! ∇f_s = −(1/√b) C_s (u/2)^{s−D/2} K_{s−1−D/2}(u) Δ̂. The target is ∇𝒱_c / p_ac:
//!
//! S_c(Δ, t) = −λ√b Δ̂ · [Σ_{j=0}^m w_j C_{j+1} (u/2)^{j+1−D/2} K_{j−D/2}(u)]
//!                     / [Σ_{j=1}^m w_j C_j (u/2)^{j−D/2} K_{j−D/2}(u)].
//!
//! Both sums are evaluated by log-sum-exp over ln K from [`super::bessel`], so nothing
//! overflows for D = 784 or for tiny/huge r. For m = 1 this is
//! S_c = −λ√b Δ̂ [E/(1−E) · K_{D/2}(u)/K_{D/2−1}(u) + u/2]; as t → ∞ it tends to −θΔ/2.
//!
//! The atom (Δ = 0, no jump yet, probability E^m) gets target 0 exactly: ∇𝒱_c has no atom, and
//! keeping those samples in the regression makes its mean ∇𝒱/p with p counting the atom.

use super::bessel::{log_bessel_k, log_sum_exp};
use super::{integer_ratio, positive, JumpError};

/// Default radius clamp r_min: the target is evaluated at max(|Δ|, r_min). It only guards
/// against the K_{D/2}/K_{D/2−1} ~ 1/r singularity at Δ → 0 (probability ~ r_min^D of being hit).
pub const DEFAULT_R_MIN: f64 = 1e-6;

/// Default time clamp t_min: the target is evaluated at max(t, t_min). Near t = 0 the target
/// grows like 1/(θt); 1e−4 keeps it finite (≈ 1e4·√b) while lying far below any sensible
/// sampler step.
pub const DEFAULT_T_MIN: f64 = 1e-4;

/// Parameters of the closed-form JL target.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JlParams {
    /// Dimension D.
    pub dim: usize,
    /// OU rate θ > 0.
    pub theta: f64,
    /// Jump rate λ; must be m·θ for an integer m ≥ 1.
    pub lambda: f64,
    /// Laplace variance parameter σ² > 0.
    pub sigma2: f64,
    /// Radius clamp (see [`DEFAULT_R_MIN`]).
    pub r_min: f64,
    /// Time clamp (see [`DEFAULT_T_MIN`]).
    pub t_min: f64,
}

impl JlParams {
    /// Parameters with the default clamps.
    pub fn new(dim: usize, theta: f64, lambda: f64, sigma2: f64) -> Self {
        Self {
            dim,
            theta,
            lambda,
            sigma2,
            r_min: DEFAULT_R_MIN,
            t_min: DEFAULT_T_MIN,
        }
    }
}

/// A validated JL target with its constant log-factors precomputed.
#[derive(Debug, Clone)]
pub struct JlScore {
    params: JlParams,
    m: u32,
    /// ln C(m, j) for j = 0..=m.
    log_binom: Vec<f64>,
    /// ln(2/Γ(s)) for s = 0..=m+1 (index s; entry 0 unused). The common (4πb)^{−D/2} cancels.
    log_c: Vec<f64>,
    sqrt_b: f64,
}

impl JlScore {
    /// Validates the parameters (λ/θ must be a positive integer) and precomputes constants.
    pub fn new(params: JlParams) -> Result<Self, JumpError> {
        if params.dim == 0 {
            return Err(super::invalid("dim", 0.0, "must be at least 1"));
        }
        positive("theta", params.theta)?;
        positive("rate", params.lambda)?;
        positive("sigma2", params.sigma2)?;
        positive("r_min", params.r_min)?;
        positive("t_min", params.t_min)?;
        let ratio = params.lambda / params.theta;
        let m = integer_ratio(ratio).ok_or(JumpError::NonIntegerRateRatio { ratio })?;
        let lg = |x: f64| libm::lgamma(x);
        let mf = m as f64;
        let log_binom = (0..=m)
            .map(|j| lg(mf + 1.0) - lg(j as f64 + 1.0) - lg(mf - j as f64 + 1.0))
            .collect();
        let log_c = (0..=m + 1)
            .map(|s| {
                if s == 0 {
                    f64::NEG_INFINITY
                } else {
                    std::f64::consts::LN_2 - lg(s as f64)
                }
            })
            .collect();
        Ok(Self {
            params,
            m,
            log_binom,
            log_c,
            sqrt_b: (0.5 * params.sigma2).sqrt(),
        })
    }

    /// The parameters this target was built from.
    pub fn params(&self) -> &JlParams {
        &self.params
    }

    /// Signed radial component of S_c at radius r and time t (S_c = radial · Δ/|Δ|); always ≤ 0.
    /// r and t are clamped from below to r_min and t_min.
    pub fn radial(&self, r: f64, t: f64) -> f64 {
        let p = &self.params;
        let r = r.max(p.r_min);
        let t = t.max(p.t_min);
        let u = r / self.sqrt_b;
        let ln_half_u = (0.5 * u).ln();
        let half_d = 0.5 * p.dim as f64;
        let ln_e = -p.theta * t;
        let ln_1me = (-(-p.theta * t).exp_m1()).ln();
        let m = self.m as usize;
        let mut num = Vec::with_capacity(m + 1);
        let mut den = Vec::with_capacity(m);
        for j in 0..=m {
            let jf = j as f64;
            let log_w = self.log_binom[j] + (m - j) as f64 * ln_e + jf * ln_1me;
            let log_k = log_bessel_k(jf - half_d, u);
            num.push(log_w + self.log_c[j + 1] + (jf + 1.0 - half_d) * ln_half_u + log_k);
            if j >= 1 {
                den.push(log_w + self.log_c[j] + (jf - half_d) * ln_half_u + log_k);
            }
        }
        -p.lambda * self.sqrt_b * (log_sum_exp(&num) - log_sum_exp(&den)).exp()
    }

    /// Writes S_c(Δ, t) into `out` (length D). Δ = 0 exactly (no jump yet) gives 0.
    pub fn score_target(&self, delta: &[f64], t: f64, out: &mut [f64]) -> Result<(), JumpError> {
        let d = self.params.dim;
        check_len("delta", delta.len(), d)?;
        check_len("out", out.len(), d)?;
        let r = delta.iter().map(|v| v * v).sum::<f64>().sqrt();
        if r == 0.0 {
            out.fill(0.0);
            return Ok(());
        }
        let scale = self.radial(r, t) / r;
        for (o, v) in out.iter_mut().zip(delta) {
            *o = scale * v;
        }
        Ok(())
    }

    /// Batched [`Self::score_target`]: `deltas` and `out` are row-major (rows × D), `ts` has one
    /// time per row.
    pub fn score_targets(
        &self,
        deltas: &[f64],
        ts: &[f64],
        out: &mut [f64],
    ) -> Result<(), JumpError> {
        let d = self.params.dim;
        let rows = ts.len();
        check_len("deltas", deltas.len(), rows * d)?;
        check_len("out", out.len(), rows * d)?;
        for ((delta, o), &t) in deltas.chunks_exact(d).zip(out.chunks_exact_mut(d)).zip(ts) {
            self.score_target(delta, t, o)?;
        }
        Ok(())
    }
}

/// One-shot convenience: validates `p` and writes S_c(Δ, t) into `out`.
pub fn score_target(p: &JlParams, delta: &[f64], t: f64, out: &mut [f64]) -> Result<(), JumpError> {
    JlScore::new(*p)?.score_target(delta, t, out)
}

fn check_len(what: &'static str, got: usize, expected: usize) -> Result<(), JumpError> {
    if got == expected {
        Ok(())
    } else {
        Err(JumpError::LengthMismatch {
            what,
            got,
            expected,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::bessel::tests_support::log_k_integral;
    use super::*;

    /// ln ∫_0^∞ N_D(r; σ²z) z^{extra} Gamma(z; s, 1) dz by the trapezoid rule in v = ln z.
    /// Bessel-free oracle: f_s(r) is extra = 0; |∇f_s| is (r/σ²)·(extra = −1).
    fn log_mixture(dim: usize, sigma2: f64, s: f64, r: f64, extra: f64) -> f64 {
        let hd = 0.5 * dim as f64;
        let a = r * r / (2.0 * sigma2);
        let g = |v: f64| {
            -hd * (2.0 * std::f64::consts::PI * sigma2).ln() - a * (-v).exp() + (s - hd + extra) * v
                - v.exp()
                - libm::lgamma(s)
        };
        // g is concave: g'(v) = −D/2 + s + extra + a e^{−v} − e^v; bisect for its root.
        let dg = |v: f64| -hd + s + extra + a * (-v).exp() - v.exp();
        let (mut lo, mut hi) = (-700.0, 700.0);
        for _ in 0..200 {
            let mid = 0.5 * (lo + hi);
            if dg(mid) > 0.0 {
                lo = mid
            } else {
                hi = mid
            }
        }
        let v0 = 0.5 * (lo + hi);
        let curv = a * (-v0).exp() + v0.exp();
        let h = (1.0 / curv.sqrt()).min(1.0) / 30.0;
        let peak = g(v0);
        let mut sum = 1.0;
        for dir in [-1.0, 1.0] {
            let mut k = 1.0;
            loop {
                let e = g(v0 + dir * k * h) - peak;
                sum += e.exp();
                if e < -70.0 {
                    break;
                }
                k += 1.0;
            }
        }
        peak + (h * sum).ln()
    }

    /// S_c radial from the scale-mixture oracle (no Bessel functions at all).
    fn radial_oracle(dim: usize, theta: f64, m: u32, sigma2: f64, r: f64, t: f64) -> f64 {
        let lambda = m as f64 * theta;
        let b = 0.5 * sigma2;
        let e = (-theta * t).exp();
        let log_w = |j: u32| {
            let (mf, jf) = (m as f64, j as f64);
            libm::lgamma(mf + 1.0) - libm::lgamma(jf + 1.0) - libm::lgamma(mf - jf + 1.0)
                + (mf - jf) * e.ln()
                + jf * (1.0 - e).ln()
        };
        let den: Vec<f64> = (1..=m)
            .map(|j| log_w(j) + log_mixture(dim, sigma2, j as f64, r, 0.0))
            .collect();
        let num: Vec<f64> = (0..=m)
            .map(|j| log_w(j) + log_mixture(dim, sigma2, j as f64 + 1.0, r, -1.0))
            .collect();
        -lambda * b * (r / sigma2) * (log_sum_exp(&num) - log_sum_exp(&den)).exp()
    }

    #[test]
    fn matches_scale_mixture_quadrature() {
        let mut worst = 0.0_f64;
        for dim in [1, 2, 3, 5] {
            for m in [1, 2] {
                for (theta, sigma2) in [(1.0, 2.0), (0.5, 0.7)] {
                    let s =
                        JlScore::new(JlParams::new(dim, theta, m as f64 * theta, sigma2)).unwrap();
                    for r in [0.01, 0.3, 1.0, 4.0, 25.0] {
                        for t in [0.01, 0.5, 2.0, 9.0] {
                            let want = radial_oracle(dim, theta, m, sigma2, r, t);
                            let got = s.radial(r, t);
                            let rel = (got - want).abs() / want.abs();
                            worst = worst.max(rel);
                            assert!(rel < 1e-6, "D={dim} m={m} r={r} t={t}: {got} vs {want}");
                        }
                    }
                }
            }
        }
        eprintln!(
            "JL score vs scale-mixture oracle, D = 1,2,3,5: worst relative error {worst:.2e}"
        );
        assert!(worst < 1e-9, "worst relative error {worst}");
    }

    #[test]
    fn high_dimension_matches_integral_oracles() {
        // D = 784: formula with ln K from the integral representation, and the mixture oracle.
        let (dim, theta, sigma2) = (784, 1.0, 2.0);
        let hd = dim as f64 / 2.0;
        for m in [1_u32, 3] {
            let s = JlScore::new(JlParams::new(dim, theta, m as f64 * theta, sigma2)).unwrap();
            for r in [0.5, 10.0, 40.0, 300.0] {
                for t in [0.05, 1.0, 6.0] {
                    let got = s.radial(r, t);
                    assert!(got.is_finite() && got < 0.0);
                    let want = radial_oracle(dim, theta, m, sigma2, r, t);
                    assert!(
                        ((got - want) / want).abs() < 1e-8,
                        "m={m} r={r} t={t}: {got} vs {want}"
                    );
                    if m == 1 {
                        let u = r;
                        let e = (-theta * t).exp();
                        let ratio = (log_k_integral(hd, u) - log_k_integral(hd - 1.0, u)).exp();
                        let closed = -theta * (e / (1.0 - e) * ratio + u / 2.0);
                        assert!(((got - closed) / closed).abs() < 1e-10, "r={r} t={t}");
                    }
                }
            }
        }
    }

    #[test]
    fn paper_case_and_limits() {
        // D = 2, σ² = 2, λ = θ = 1: S = −[e^{−t}/(1−e^{−t}) K_1(r)/K_0(r) + r/2] at r = t = 1.
        let s = JlScore::new(JlParams::new(2, 1.0, 1.0, 2.0)).unwrap();
        let e = (-1.0_f64).exp();
        let want = -(e / (1.0 - e) * 0.6019072301972346 / 0.42102443824070834 + 0.5);
        assert!((s.radial(1.0, 1.0) - want).abs() < 1e-14);
        // Stationarity: t → ∞ ⇒ S → −θΔ/2 (here also m = 2, D = 3, θ = 0.8).
        let s = JlScore::new(JlParams::new(3, 0.8, 1.6, 1.0)).unwrap();
        let delta = [0.3, -1.2, 0.5];
        let mut out = [0.0; 3];
        s.score_target(&delta, 60.0, &mut out).unwrap();
        for (o, d) in out.iter().zip(delta) {
            assert!((o + 0.4 * d).abs() < 1e-12);
        }
        // The atom: no jump yet ⇒ target exactly 0.
        s.score_target(&[0.0; 3], 0.5, &mut out).unwrap();
        assert_eq!(out, [0.0; 3]);
        // Clamps keep everything finite.
        assert!(s.radial(0.0, 0.0).is_finite());
        assert!(s.radial(1e9, 1e-12).is_finite());
    }

    #[test]
    fn validation_and_batch() {
        assert!(matches!(
            JlScore::new(JlParams::new(2, 1.0, 1.5, 2.0)),
            Err(JumpError::NonIntegerRateRatio { .. })
        ));
        let s = JlScore::new(JlParams::new(2, 1.0, 1.0, 2.0)).unwrap();
        let deltas = [1.0, 0.0, 0.0, 2.0];
        let mut out = [0.0; 4];
        s.score_targets(&deltas, &[1.0, 2.0], &mut out).unwrap();
        assert!((out[0] - s.radial(1.0, 1.0)).abs() < 1e-15 && out[1] == 0.0);
        assert!((out[3] - s.radial(2.0, 2.0)).abs() < 1e-15 && out[2] == 0.0);
        assert!(matches!(
            s.score_targets(&deltas, &[1.0], &mut out),
            Err(JumpError::LengthMismatch { .. })
        ));
    }
}

//! Modified Bessel function of the second kind, K_ν(x), in log space.
//!
//! The JL generalized score needs K_ν of order ν = j − D/2 for dimensions up to thousands
//! (D = 784 gives K_391), with arguments from tiny to large. K_ν(x) ~ ½Γ(ν)(2/x)^ν overflows f64
//! long before that, so everything here returns `ln K_ν(x)`. Three methods cover the range:
//!
//! * half-integer order below [`DEBYE_MIN_ORDER`]: the finite closed form
//!   K_{n+½}(x) = √(π/(2x)) e^{−x} Σ_{k=0}^{n} (n+k)! / (k!(n−k)!) (2x)^{−k}, summed in log space;
//! * order at least [`DEBYE_MIN_ORDER`]: the uniform asymptotic (Debye) expansion, DLMF 10.41.4,
//!   with the correction polynomials U_1..U_6 (worst-case relative error about 1e−13 at ν = 50,
//!   smaller for larger ν, uniformly in x);
//! * everything else: the exponentially scaled K of `complex-bessel` (AMOS), ln(eˣK) − x. If that
//!   library reports an error (overflow for tiny x, precision loss for huge x) the value falls back
//!   to the Debye expansion, the small-argument limit or the large-argument Hankel series.
//!
//! K is even in its order (K_{−ν} = K_ν), so only |ν| is used.

use complex_bessel::besselk_scaled;

/// Orders at or above this use the Debye expansion; below it, exact methods are used.
pub const DEBYE_MIN_ORDER: f64 = 50.0;

/// Correction polynomials U_k(p) of the Debye expansion as (power, coefficient) pairs,
/// generated from the recurrence U_{k+1} = ½p²(1−p²)U_k' + ⅛∫_0^p (1−5s²)U_k(s) ds.
const DEBYE_U: [&[(i32, f64)]; 6] = [
    &[(1, 1.0 / 8.0), (3, -5.0 / 24.0)],
    &[(2, 9.0 / 128.0), (4, -77.0 / 192.0), (6, 385.0 / 1152.0)],
    &[
        (3, 75.0 / 1024.0),
        (5, -4563.0 / 5120.0),
        (7, 17017.0 / 9216.0),
        (9, -85085.0 / 82944.0),
    ],
    &[
        (4, 3675.0 / 32768.0),
        (6, -96833.0 / 40960.0),
        (8, 144001.0 / 16384.0),
        (10, -7436429.0 / 663552.0),
        (12, 37182145.0 / 7962624.0),
    ],
    &[
        (5, 59535.0 / 262144.0),
        (7, -67608983.0 / 9175040.0),
        (9, 250881631.0 / 5898240.0),
        (11, -108313205.0 / 1179648.0),
        (13, 5391411025.0 / 63700992.0),
        (15, -5391411025.0 / 191102976.0),
    ],
    &[
        (6, 2401245.0 / 4194304.0),
        (8, -388895895.0 / 14680064.0),
        (10, 1441372804469.0 / 6606028800.0),
        (12, -33010308331.0 / 47185920.0),
        (14, 4445922195.0 / 4194304.0),
        (16, -1169936192425.0 / 1528823808.0),
        (18, 5849680962125.0 / 27518828544.0),
    ],
];

/// Euler–Mascheroni constant, for the small-argument limit of K_0.
const EULER_GAMMA: f64 = 0.577_215_664_901_532_9;

/// `ln K_ν(x)` for any real order ν and x > 0.
///
/// Returns `+∞` for x = 0 (K diverges there) and NaN for x < 0 or non-finite input, so callers
/// that clamp their radius away from zero (as the score targets do) never see either.
pub fn log_bessel_k(nu: f64, x: f64) -> f64 {
    let nu = nu.abs();
    if nu.is_nan() || x.is_nan() || x < 0.0 || nu.is_infinite() {
        return f64::NAN;
    }
    if x == 0.0 {
        return f64::INFINITY;
    }
    if x.is_infinite() {
        return f64::NEG_INFINITY;
    }
    if nu >= DEBYE_MIN_ORDER {
        return log_k_debye(nu, x);
    }
    if let Some(n) = half_integer_index(nu) {
        return log_k_half_integer(n, x);
    }
    match besselk_scaled(nu, x.into()) {
        Ok(v) if v.re.is_finite() && v.re > 0.0 => v.re.ln() - x,
        _ => log_k_fallback(nu, x),
    }
}

/// The ratio K_ν(x) / K_{ν−1}(x), computed as a difference of logarithms so that it stays
/// finite when both factors overflow or underflow (large ν, tiny or huge x).
pub fn bessel_k_ratio(nu: f64, x: f64) -> f64 {
    (log_bessel_k(nu, x) - log_bessel_k(nu - 1.0, x)).exp()
}

/// `Some(n)` when ν = n + ½ exactly (ν ≥ 0), for the closed form.
fn half_integer_index(nu: f64) -> Option<u32> {
    let n = nu - 0.5;
    if n >= 0.0 && n.fract() == 0.0 && n < DEBYE_MIN_ORDER {
        Some(n as u32)
    } else {
        None
    }
}

/// Closed form for half-integer order n + ½; all terms are positive, so the log-sum-exp is exact
/// up to rounding.
fn log_k_half_integer(n: u32, x: f64) -> f64 {
    let ln_2x = (2.0 * x).ln();
    let mut log_term = 0.0_f64;
    let mut terms = Vec::with_capacity(n as usize + 1);
    terms.push(0.0);
    for k in 0..n {
        let (k, n) = (k as f64, n as f64);
        // a_{k+1} / a_k = (n+k+1)(n−k) / ((k+1) · 2x)
        log_term += ((n + k + 1.0) * (n - k) / (k + 1.0)).ln() - ln_2x;
        terms.push(log_term);
    }
    0.5 * (std::f64::consts::PI / (2.0 * x)).ln() - x + log_sum_exp(&terms)
}

/// Uniform asymptotic expansion in ν (DLMF 10.41.4), valid uniformly in x > 0 for large ν.
fn log_k_debye(nu: f64, x: f64) -> f64 {
    let root = nu.hypot(x); // ν·√(1 + z²), z = x/ν
    let p = nu / root;
    // ν·η = ν√(1+z²) + ν·ln(z / (1 + √(1+z²))) = root + ν·ln(x / (ν + root))
    let nu_eta = root + nu * (x.ln() - (nu + root).ln());
    let mut series = 1.0;
    let mut inv_pow = 1.0;
    let mut sign = 1.0;
    for poly in DEBYE_U.iter() {
        inv_pow /= nu;
        sign = -sign;
        let u: f64 = poly.iter().map(|&(k, c)| c * p.powi(k)).sum();
        series += sign * u * inv_pow;
    }
    // ¼ln(1+z²) = ½ln(root/ν)
    0.5 * (std::f64::consts::PI / (2.0 * nu)).ln() - nu_eta - 0.5 * (root / nu).ln() + series.ln()
}

/// Used only when complex-bessel returns an error for ν < [`DEBYE_MIN_ORDER`].
fn log_k_fallback(nu: f64, x: f64) -> f64 {
    if x > 50.0 + nu * nu {
        return log_k_large_x(nu, x);
    }
    if nu >= 2.0 {
        // Debye still gives ~1e−7 relative accuracy at ν = 2 and improves quickly with ν.
        return log_k_debye(nu, x);
    }
    if nu == 0.0 {
        // K_0(x) ≈ −ln(x/2) − γ for x → 0.
        return (-(0.5 * x).ln() - EULER_GAMMA).ln();
    }
    // K_ν(x) ≈ ½Γ(ν)(2/x)^ν for x → 0, ν > 0.
    (0.5_f64).ln() + libm::lgamma(nu) + nu * (2.0 / x).ln()
}

/// Hankel's large-argument expansion, ln of √(π/(2x)) e^{−x} Σ_k a_k(ν)/x^k, truncated at its
/// smallest term.
fn log_k_large_x(nu: f64, x: f64) -> f64 {
    let mu = 4.0 * nu * nu;
    let mut term = 1.0_f64;
    let mut sum = 1.0_f64;
    for k in 1..30 {
        let kf = k as f64;
        let next = term * (mu - (2.0 * kf - 1.0).powi(2)) / (kf * 8.0 * x);
        if next.abs() >= term.abs() {
            break;
        }
        term = next;
        sum += term;
    }
    0.5 * (std::f64::consts::PI / (2.0 * x)).ln() - x + sum.ln()
}

/// ln Σ exp(v_i), stable for any magnitudes; −∞ for an empty slice.
pub fn log_sum_exp(values: &[f64]) -> f64 {
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !max.is_finite() {
        return max;
    }
    max + values.iter().map(|v| (v - max).exp()).sum::<f64>().ln()
}

#[cfg(test)]
pub(crate) mod tests_support {
    /// Independent oracle: ln ∫_0^∞ e^{−x cosh s} cosh(νs) ds by the trapezoid rule, which is
    /// spectrally accurate here because the integrand is even in s and decays double-exponentially.
    pub(crate) fn log_k_integral(nu: f64, x: f64) -> f64 {
        let log_g = |s: f64| -> f64 {
            let ns = nu * s;
            // ln cosh(νs) without overflow
            let log_cosh = ns.abs() + (0.5 * (1.0 + (-2.0 * ns.abs()).exp())).ln();
            -x * s.cosh() + log_cosh
        };
        // Peak where x sinh s ≈ ν tanh(νs) ≈ ν; its width is (x² + ν²)^{-1/4}.
        let s_peak = (nu / x).asinh();
        let width = (x * x + nu * nu).powf(-0.25).min(1.0);
        let h = width / 40.0;
        let peak = log_g(s_peak).max(log_g(0.0));
        let mut sum = 0.5 * (log_g(0.0) - peak).exp();
        let mut s = h;
        loop {
            let v = log_g(s) - peak;
            sum += v.exp();
            if s > s_peak && v < -60.0 {
                break;
            }
            s += h;
        }
        peak + (h * sum).ln()
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::log_k_integral;
    use super::*;

    fn rel(a: f64, b: f64) -> f64 {
        (a - b).abs() / b.abs().max(1e-300)
    }

    #[test]
    fn known_values() {
        assert!(rel(log_bessel_k(0.0, 1.0).exp(), 0.42102443824070834) < 1e-14);
        let cases = [
            (391.0, 500.0, -356.7765802059279),
            (391.0, 5.0, 1581.7206051818792),
            (1535.0, 100.0, 3716.172016457395),
            (2.5, 50.0, -51.6708198067879),
            (10.0, 0.1, 42.06572526210593),
        ];
        for (nu, x, want) in cases {
            let got = log_bessel_k(nu, x);
            assert!(
                (got - want).abs() < 1e-13 * want.abs().max(1.0),
                "nu={nu} x={x}: {got} vs {want}"
            );
        }
    }

    #[test]
    fn matches_integral_representation() {
        let orders = [
            0.0, 0.3, 1.0, 1.5, 7.5, 19.7, 49.9, 50.0, 120.0, 391.0, 1535.0,
        ];
        let args = [1e-3, 0.05, 1.0, 5.0, 37.0, 100.0, 500.0];
        let mut worst = 0.0_f64;
        for nu in orders {
            for x in args {
                let want = log_k_integral(nu, x);
                let got = log_bessel_k(nu, x);
                // absolute error in ln K = relative error in K
                let err = (got - want).abs() / want.abs().max(1.0).sqrt().max(1.0);
                worst = worst.max((got - want).abs());
                assert!(err < 1e-11, "nu={nu} x={x}: {got} vs {want}");
            }
        }
        eprintln!("ln K vs integral representation: worst absolute ln-K error {worst:.2e}");
        assert!(worst < 1e-10, "worst ln-K error {worst}");
    }

    #[test]
    fn recurrence_holds_in_log_space() {
        // K_{ν+1} = K_{ν−1} + (2ν/x) K_ν, checked across method boundaries.
        for nu in [0.5, 1.0, 2.3, 20.0, 48.6, 49.5, 50.5, 391.0, 1535.0] {
            for x in [0.01, 0.7, 3.0, 40.0, 800.0] {
                let lhs = log_bessel_k(nu + 1.0, x);
                let rhs = log_sum_exp(&[
                    log_bessel_k(nu - 1.0, x),
                    (2.0 * nu / x).ln() + log_bessel_k(nu, x),
                ]);
                assert!(
                    (lhs - rhs).abs() < 1e-12 * lhs.abs().max(1.0),
                    "nu={nu} x={x}: {lhs} vs {rhs}"
                );
            }
        }
    }

    #[test]
    fn even_in_order_and_ratio_consistent() {
        for nu in [0.25, 1.0, 3.5, 391.0] {
            assert_eq!(log_bessel_k(-nu, 2.0), log_bessel_k(nu, 2.0));
        }
        // K_{1/2} = K_{−1/2} ⇒ ratio exactly 1 (the D = 1 score case).
        assert!((bessel_k_ratio(0.5, 3.0) - 1.0).abs() < 1e-15);
        // K_1(1)/K_0(1) from known values.
        assert!(
            rel(
                bessel_k_ratio(1.0, 1.0),
                0.6019072301972346 / 0.42102443824070834
            ) < 1e-14
        );
    }

    #[test]
    fn half_integer_closed_form_matches_amos() {
        for n in [0_u32, 1, 3, 10, 30] {
            for x in [0.2, 2.0, 25.0] {
                let nu = n as f64 + 0.5;
                let amos = besselk_scaled(nu, x.into()).map(|v| v.re.ln() - x);
                if let Ok(want) = amos {
                    assert!((log_k_half_integer(n, x) - want).abs() < 1e-13 * want.abs().max(1.0));
                }
            }
        }
    }

    #[test]
    fn fallbacks_are_sane() {
        // Hankel series vs AMOS at large x.
        let want = log_bessel_k(2.3, 900.0);
        assert!((log_k_large_x(2.3, 900.0) - want).abs() < 1e-13 * want.abs());
        // Debye at the switch-over order vs AMOS.
        let amos = besselk_scaled(49.9_f64, 3.0.into()).map(|v| v.re.ln() - 3.0);
        if let Ok(a) = amos {
            assert!((log_k_debye(49.9, 3.0) - a).abs() < 1e-12 * a.abs());
        }
        assert!(log_bessel_k(0.0, 1e-300).is_finite());
        assert_eq!(log_bessel_k(1.0, 0.0), f64::INFINITY);
        assert!(log_bessel_k(1.0, -1.0).is_nan());
    }
}

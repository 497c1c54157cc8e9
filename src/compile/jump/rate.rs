//! A time-varying jump rate λ(t) on [0, T] and its integral Λ_t = ∫_0^t λ(s) ds.
//!
//! The jump count of the forward process on (0, t) is Poisson(Λ_t) and, given the count, the
//! jump times are i.i.d. with density λ(s)/Λ_t on (0, t): they are drawn by inverting Λ,
//! s = Λ^{−1}(Λ_a + U (Λ_b − Λ_a)) for the times in (a, b). Both λ and Λ are held on a uniform
//! grid of [`RATE_CELLS`] cells (Λ from a closed form at the nodes where the IR could integrate
//! the rate, from Simpson's rule otherwise, decided by the caller), linear in between; the
//! inverse is exact for that piecewise-linear Λ.

use super::{invalid, JumpError};

/// Cells of the rate grid on [0, T].
pub const RATE_CELLS: usize = 8192;

/// λ(t) and Λ_t on [0, T], tabulated.
#[derive(Debug, Clone, PartialEq)]
pub struct RateProfile {
    /// Horizon T (the grid's end).
    horizon: f64,
    /// λ at the nodes t_i = i·T/n.
    rate: Vec<f64>,
    /// Λ at the nodes (non-decreasing, Λ_0 = 0).
    cumulative: Vec<f64>,
    /// How Λ was obtained and what λ is, for `difc explain`.
    description: String,
}

impl RateProfile {
    /// A profile from λ and Λ sampled at the `n + 1` nodes i·T/n (n ≥ 1). λ must be finite and
    /// ≥ 0, Λ finite, starting at 0 and non-decreasing.
    pub fn from_nodes(
        horizon: f64,
        rate: Vec<f64>,
        cumulative: Vec<f64>,
        description: String,
    ) -> Result<Self, JumpError> {
        super::positive("horizon", horizon)?;
        if rate.len() < 2 || rate.len() != cumulative.len() {
            return Err(JumpError::LengthMismatch {
                what: "rate nodes",
                got: rate.len().min(cumulative.len()),
                expected: rate.len().max(2),
            });
        }
        if let Some(&r) = rate.iter().find(|r| !(r.is_finite() && **r >= 0.0)) {
            return Err(invalid("rate", r, "must be finite and >= 0 on [0, T]"));
        }
        if cumulative[0] != 0.0 {
            return Err(invalid(
                "cumulative rate",
                cumulative[0],
                "must be 0 at t = 0",
            ));
        }
        for w in cumulative.windows(2) {
            if !(w[1].is_finite() && w[1] >= w[0]) {
                return Err(invalid(
                    "cumulative rate",
                    w[1],
                    "must be finite and non-decreasing",
                ));
            }
        }
        Ok(Self {
            horizon,
            rate,
            cumulative,
            description,
        })
    }

    /// λ tabulated from a closure, with Λ by Simpson's rule on each of the [`RATE_CELLS`] cells
    /// (for rates without a closed-form integral).
    pub fn from_fn(
        horizon: f64,
        rate: impl Fn(f64) -> f64,
        description: String,
    ) -> Result<Self, JumpError> {
        let n = RATE_CELLS;
        let h = horizon / n as f64;
        let lam: Vec<f64> = (0..=n).map(|i| rate(h * i as f64)).collect();
        let mut cum = Vec::with_capacity(n + 1);
        let mut acc = 0.0;
        cum.push(0.0);
        for i in 0..n {
            let a = h * i as f64;
            acc += h / 6.0 * (lam[i] + 4.0 * rate(a + 0.5 * h) + lam[i + 1]);
            cum.push(acc);
        }
        Self::from_nodes(horizon, lam, cum, description)
    }

    /// The horizon T.
    pub fn horizon(&self) -> f64 {
        self.horizon
    }

    /// What λ and Λ are (one line).
    pub fn description(&self) -> &str {
        &self.description
    }

    fn cells(&self) -> usize {
        self.rate.len() - 1
    }

    /// (cell index, fraction) of t, clamped into [0, T].
    fn locate(&self, t: f64) -> (usize, f64) {
        let n = self.cells();
        let u = (t / self.horizon * n as f64).clamp(0.0, n as f64);
        let i = (u.floor() as usize).min(n - 1);
        (i, u - i as f64)
    }

    /// λ(t), linear between the nodes (t clamped into [0, T]).
    pub fn rate(&self, t: f64) -> f64 {
        let (i, w) = self.locate(t);
        self.rate[i] * (1.0 - w) + self.rate[i + 1] * w
    }

    /// Λ_t, linear between the nodes (t clamped into [0, T]).
    pub fn cumulative(&self, t: f64) -> f64 {
        let (i, w) = self.locate(t);
        self.cumulative[i] * (1.0 - w) + self.cumulative[i + 1] * w
    }

    /// Largest λ on the grid.
    pub fn max_rate(&self) -> f64 {
        self.rate.iter().cloned().fold(0.0, f64::max)
    }

    /// The time s with Λ_s = `level` (0 ≤ level ≤ Λ_T): the inverse of the piecewise-linear Λ.
    /// On a flat stretch (λ = 0) it returns the stretch's start.
    pub fn inverse(&self, level: f64) -> f64 {
        let c = &self.cumulative;
        let n = self.cells();
        // First node with Λ ≥ level.
        let j = c.partition_point(|&v| v < level).clamp(1, n);
        let (a, b) = (c[j - 1], c[j]);
        let w = if b > a {
            ((level - a) / (b - a)).clamp(0.0, 1.0)
        } else {
            0.0
        };
        self.horizon * ((j - 1) as f64 + w) / n as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_rate_integrates_and_inverts() {
        let p = RateProfile::from_fn(5.0, |t| 2.0 * t, "2t".into()).unwrap();
        for t in [0.0, 0.3, 1.7, 5.0] {
            assert!((p.cumulative(t) - t * t).abs() < 1e-6, "Λ({t})");
            assert!((p.rate(t) - 2.0 * t).abs() < 1e-12);
            assert!((p.inverse(t * t) - t).abs() < 1e-3, "Λ⁻¹({})", t * t);
        }
        assert_eq!(p.max_rate(), 10.0);
        assert!(RateProfile::from_fn(1.0, |t| 1.0 - 2.0 * t, "".into()).is_err());
    }
}

//! Maximum mean discrepancy: unbiased RBF MMD² and DLPM's biased multi-bandwidth variant
//! (data.md §4.3), both blockwise without an n×n matrix.

use rand::Rng;

use super::{parallel_map, sq_dist, thread_count, MetricError, Points};
use crate::rng::{stream, Purpose};

/// Kernel bandwidth for [`mmd_rbf`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Bandwidth {
    /// σ = median pairwise distance of a pooled subsample of this many points.
    Median { subsample: usize },
    /// A fixed σ > 0.
    Fixed(f64),
}

/// Options for [`mmd_rbf`].
#[derive(Clone, Debug)]
pub struct MmdOptions {
    pub bandwidth: Bandwidth,
    pub seed: u64,
    /// Worker threads (0 = all cores).
    pub threads: usize,
}

impl Default for MmdOptions {
    fn default() -> Self {
        MmdOptions {
            bandwidth: Bandwidth::Median { subsample: 1000 },
            seed: 0,
            threads: 0,
        }
    }
}

/// Result of [`mmd_rbf`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MmdResult {
    /// Unbiased MMD² estimate (can be slightly negative when the distributions agree).
    pub mmd2: f64,
    /// The bandwidth σ used.
    pub sigma: f64,
}

/// Unbiased MMD² with k(x, y) = exp(−‖x − y‖² / (2σ²)) (Gretton et al.), computed blockwise in
/// O((m + n)²) time and O(m + n) memory.
pub fn mmd_rbf(
    x: &[f64],
    y: &[f64],
    dim: usize,
    opts: &MmdOptions,
) -> Result<MmdResult, MetricError> {
    let xs = Points::new("first sample", x, dim, 2)?;
    let ys = Points::new("second sample", y, dim, 2)?;
    let sigma = match opts.bandwidth {
        Bandwidth::Fixed(s) if s.is_finite() && s > 0.0 => s,
        Bandwidth::Fixed(s) => {
            return Err(MetricError::BadOption {
                option: "bandwidth",
                expected: "a finite number > 0",
                got: s.to_string(),
            })
        }
        Bandwidth::Median { subsample } => median_distance(xs, ys, subsample.max(2), opts.seed)?,
    };
    let gamma = 1.0 / (2.0 * sigma * sigma);
    let kernel = |d2: f64| (-gamma * d2).exp();
    let threads = thread_count(opts.threads);
    let (m, n) = (xs.n as f64, ys.n as f64);
    let kxx = pair_sum(xs, xs, true, threads, kernel);
    let kyy = pair_sum(ys, ys, true, threads, kernel);
    let kxy = pair_sum(xs, ys, false, threads, kernel);
    // `pair_sum` over one set counts each unordered pair once; the U-statistic uses both orders.
    let mmd2 = 2.0 * kxx / (m * (m - 1.0)) + 2.0 * kyy / (n * (n - 1.0)) - 2.0 * kxy / (m * n);
    Ok(MmdResult { mmd2, sigma })
}

/// DLPM's 2-D `MMD_loss`: biased MMD with the sum of five Gaussian kernels exp(−‖a − b‖²/h_i),
/// h_i = (base/4)·2^i, base = mean squared distance over distinct pairs of the pooled sample.
///
/// DLPM requires equal sizes; with unequal sizes this uses the standard V-statistic weights.
pub fn mmd_dlpm(x: &[f64], y: &[f64], dim: usize, threads: usize) -> Result<f64, MetricError> {
    let xs = Points::new("first sample", x, dim, 1)?;
    let ys = Points::new("second sample", y, dim, 1)?;
    let pooled_n = (xs.n + ys.n) as f64;
    // Σ_{a,b} ‖z_a − z_b‖² = 2N Σ‖z_a‖² − 2‖Σ z_a‖², so base needs no pair loop.
    let sq_norms: f64 = x.iter().chain(y).map(|v| v * v).sum();
    let sum_sq: f64 = (0..dim)
        .map(|c| {
            let s: f64 = x
                .iter()
                .skip(c)
                .step_by(dim)
                .chain(y.iter().skip(c).step_by(dim))
                .sum();
            s * s
        })
        .sum();
    let base = (2.0 * pooled_n * sq_norms - 2.0 * sum_sq) / (pooled_n * pooled_n - pooled_n);
    // Also catches NaN: only a positive base gives usable bandwidths.
    if base.is_nan() || base <= 0.0 {
        return Err(MetricError::ZeroBandwidth);
    }
    let widest = base / 4.0 * 16.0;
    // exp(−d/h_{i−1}) = exp(−d/h_i)², so one exp gives all five kernels.
    let kernel = |d2: f64| {
        let mut e = (-d2 / widest).exp();
        let mut total = e;
        for _ in 0..4 {
            e *= e;
            total += e;
        }
        total
    };
    let threads = thread_count(threads);
    let (m, n) = (xs.n as f64, ys.n as f64);
    let diag = kernel(0.0);
    let kxx = 2.0 * pair_sum(xs, xs, true, threads, kernel) + m * diag;
    let kyy = 2.0 * pair_sum(ys, ys, true, threads, kernel) + n * diag;
    let kxy = pair_sum(xs, ys, false, threads, kernel);
    Ok(kxx / (m * m) + kyy / (n * n) - 2.0 * kxy / (m * n))
}

/// Σ k(‖a_i − b_j‖²) over all (i, j), or over i < j when `same` (a and b are one set).
/// Row sums are added in row order so the result does not depend on `threads`.
fn pair_sum(
    a: Points,
    b: Points,
    same: bool,
    threads: usize,
    kernel: impl Fn(f64) -> f64 + Sync,
) -> f64 {
    let row_sums = parallel_map(a.n, threads, |i| {
        let x = a.row(i);
        let start = if same { i + 1 } else { 0 };
        (start..b.n)
            .map(|j| kernel(sq_dist(x, b.row(j))))
            .sum::<f64>()
    });
    row_sums.iter().sum()
}

/// Median pairwise distance of a random pooled subsample (without replacement).
pub(super) fn median_distance(
    xs: Points,
    ys: Points,
    subsample: usize,
    seed: u64,
) -> Result<f64, MetricError> {
    let total = xs.n + ys.n;
    let mut index: Vec<usize> = (0..total).collect();
    let take = subsample.min(total);
    let mut rng = stream(seed, Purpose::Metric, 0, u64::MAX);
    // Partial Fisher–Yates: the first `take` entries become a uniform subsample.
    for i in 0..take {
        let j = rng.random_range(i..total);
        index.swap(i, j);
    }
    let row = |k: usize| {
        if k < xs.n {
            xs.row(k)
        } else {
            ys.row(k - xs.n)
        }
    };
    let mut dists = Vec::with_capacity(take * (take - 1) / 2);
    for (a, &i) in index[..take].iter().enumerate() {
        for &j in &index[a + 1..take] {
            dists.push(sq_dist(row(i), row(j)));
        }
    }
    let mid = dists.len() / 2;
    let (_, median, _) = dists.select_nth_unstable_by(mid, f64::total_cmp);
    let sigma = median.sqrt();
    if sigma > 0.0 {
        Ok(sigma)
    } else {
        Err(MetricError::ZeroBandwidth)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::blob;
    use super::*;

    #[test]
    fn mmd_of_equal_distributions_is_near_zero() {
        let x = blob(1500, 20, 2, 0.0, 1.0);
        let y = blob(1500, 21, 2, 0.0, 1.0);
        let r = mmd_rbf(&x, &y, 2, &MmdOptions::default()).unwrap();
        // Median distance of two N(0, I₂) points is 2·sqrt(ln 2) ≈ 1.665.
        assert!((r.sigma - 1.665).abs() < 0.08, "sigma {}", r.sigma);
        assert!(r.mmd2.abs() < 2e-3, "mmd2 {}", r.mmd2);
    }

    #[test]
    fn mmd_of_a_mean_shift_matches_the_closed_form() {
        // X ~ N(0, s²), Y ~ N(μ, s²), RBF σ: MMD² = 2·sqrt(σ²/(σ² + 2s²))·(1 − exp(−μ²/(2(σ² + 2s²)))).
        let (mu, s, sigma) = (1.0, 1.0, 1.0f64);
        let v = sigma * sigma + 2.0 * s * s;
        let want = 2.0 * (sigma * sigma / v).sqrt() * (1.0 - (-mu * mu / (2.0 * v)).exp());
        let x = blob(3000, 30, 1, 0.0, s);
        let y = blob(3000, 31, 1, mu, s);
        let opts = MmdOptions {
            bandwidth: Bandwidth::Fixed(sigma),
            ..MmdOptions::default()
        };
        let got = mmd_rbf(&x, &y, 1, &opts).unwrap().mmd2;
        assert!((got - want).abs() < 0.015, "{got} vs {want}");
        let single = mmd_rbf(
            &x,
            &y,
            1,
            &MmdOptions {
                threads: 1,
                ..opts.clone()
            },
        )
        .unwrap()
        .mmd2;
        assert_eq!(got, single);
    }

    #[test]
    fn mmd_dlpm_matches_a_hand_computed_pair() {
        // Z = {0, 1}: base = (1 + 1)/(4 − 2) = 1, h_i = 2^i/4, K(1) = Σ exp(−4/2^i).
        let k1: f64 = (0..5).map(|i| (-4.0 / 2f64.powi(i)).exp()).sum();
        let got = mmd_dlpm(&[0.0], &[1.0], 1, 1).unwrap();
        assert!((got - (10.0 - 2.0 * k1)).abs() < 1e-12, "{got}");
        assert_eq!(
            mmd_dlpm(&[2.0], &[2.0], 1, 1),
            Err(MetricError::ZeroBandwidth)
        );
        let x = blob(800, 40, 2, 0.0, 1.0);
        assert!(mmd_dlpm(&x, &x, 2, 0).unwrap().abs() < 1e-12);
    }
}

//! Sliced Wasserstein distance with exact 1-D optimal transport per projection (data.md §4.4).

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

use super::{check_at_least, parallel_map, thread_count, MetricError, Points};
use crate::rng::{stream, Purpose};

/// Options for [`sliced_wasserstein`].
#[derive(Clone, Debug)]
pub struct SlicedOptions {
    /// Order p ≥ 1 (1 and 2 are the usual choices).
    pub p: f64,
    /// Number of random directions L.
    pub projections: usize,
    pub seed: u64,
    /// Worker threads (0 = all cores).
    pub threads: usize,
}

impl Default for SlicedOptions {
    fn default() -> Self {
        SlicedOptions {
            p: 2.0,
            projections: 200,
            seed: 0,
            threads: 0,
        }
    }
}

/// Sliced Wasserstein distance SW_p = (mean over L uniform directions θ of W_p^p(θᵀX, θᵀY))^{1/p}.
pub fn sliced_wasserstein(
    x: &[f64],
    y: &[f64],
    dim: usize,
    opts: &SlicedOptions,
) -> Result<f64, MetricError> {
    let xs = Points::new("first sample", x, dim, 1)?;
    let ys = Points::new("second sample", y, dim, 1)?;
    if !(opts.p >= 1.0 && opts.p.is_finite()) {
        return Err(MetricError::BadOption {
            option: "p",
            expected: "a finite number ≥ 1",
            got: opts.p.to_string(),
        });
    }
    check_at_least("projections", opts.projections, 1)?;
    let costs = parallel_map(opts.projections, thread_count(opts.threads), |l| {
        let theta = random_direction(&mut stream(opts.seed, Purpose::Metric, 1, l as u64), dim);
        let project = |pts: Points| -> Vec<f64> {
            (0..pts.n)
                .map(|i| pts.row(i).iter().zip(&theta).map(|(a, b)| a * b).sum())
                .collect()
        };
        let (mut px, mut py) = (project(xs), project(ys));
        px.sort_unstable_by(f64::total_cmp);
        py.sort_unstable_by(f64::total_cmp);
        wasserstein_1d_sorted_pow(&px, &py, opts.p)
    });
    let mean = costs.iter().sum::<f64>() / opts.projections as f64;
    Ok(mean.powf(1.0 / opts.p))
}

/// A uniform direction on the unit sphere S^{dim−1} (normalised Gaussian).
fn random_direction(rng: &mut ChaCha8Rng, dim: usize) -> Vec<f64> {
    loop {
        let v: Vec<f64> = (0..dim).map(|_| rng.sample(StandardNormal)).collect();
        let norm = v.iter().map(|a| a * a).sum::<f64>().sqrt();
        // A zero Gaussian vector has probability 0; redraw rather than divide by it.
        if norm > 1e-300 {
            return v.into_iter().map(|a| a / norm).collect();
        }
    }
}

/// Exact W_p between two 1-D empirical distributions (any sizes ≥ 1).
pub fn wasserstein_1d(x: &[f64], y: &[f64], p: f64) -> f64 {
    let mut a = x.to_vec();
    let mut b = y.to_vec();
    a.sort_unstable_by(f64::total_cmp);
    b.sort_unstable_by(f64::total_cmp);
    wasserstein_1d_sorted_pow(&a, &b, p).powf(1.0 / p)
}

/// W_p^p = ∫₀¹ |F⁻¹(u) − G⁻¹(u)|^p du for sorted samples: both quantile functions are step
/// functions, so the integral is a sum over the merged breakpoints {i/m} ∪ {j/n}.
fn wasserstein_1d_sorted_pow(a: &[f64], b: &[f64], p: f64) -> f64 {
    let (m, n) = (a.len(), b.len());
    if m == 0 || n == 0 {
        return 0.0;
    }
    let cost = |d: f64| if p == 1.0 { d.abs() } else { d.abs().powf(p) };
    if m == n {
        return a.iter().zip(b).map(|(u, v)| cost(u - v)).sum::<f64>() / m as f64;
    }
    let (mut i, mut j, mut prev, mut total) = (0usize, 0usize, 0.0f64, 0.0f64);
    while i < m && j < n {
        // Compare the next breakpoints (i+1)/m and (j+1)/n exactly in integers.
        let (ea, eb) = ((i as u128 + 1) * n as u128, (j as u128 + 1) * m as u128);
        let next = if ea <= eb {
            (i + 1) as f64 / m as f64
        } else {
            (j + 1) as f64 / n as f64
        };
        total += (next - prev) * cost(a[i] - b[j]);
        prev = next;
        if ea <= eb {
            i += 1;
        }
        if eb <= ea {
            j += 1;
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::super::test_util::blob;
    use super::*;

    #[test]
    fn sliced_wasserstein_matches_analytic_values() {
        // 1-D: a shift by c gives W_p = |c| for every p, whatever the projection sign.
        let x = blob(500, 50, 1, 0.0, 1.0);
        let shifted: Vec<f64> = x.iter().map(|v| v + 0.7).collect();
        for p in [1.0, 2.0] {
            let opts = SlicedOptions {
                p,
                projections: 5,
                ..SlicedOptions::default()
            };
            let w = sliced_wasserstein(&x, &shifted, 1, &opts).unwrap();
            assert!((w - 0.7).abs() < 1e-12, "{w}");
        }
        // 2-D point masses at distance |v| = 5: SW_1 = (2/π)|v|, SW_2 = |v|/√2.
        let a = [0.0, 0.0, 0.0, 0.0];
        let b = [3.0, 4.0, 3.0, 4.0, 3.0, 4.0];
        let mc = |p| SlicedOptions {
            p,
            projections: 20_000,
            seed: 3,
            threads: 0,
        };
        let w1 = sliced_wasserstein(&a, &b, 2, &mc(1.0)).unwrap();
        let w2 = sliced_wasserstein(&a, &b, 2, &mc(2.0)).unwrap();
        assert!((w1 - 10.0 / std::f64::consts::PI).abs() < 0.03, "{w1}");
        assert!((w2 - 5.0 / 2f64.sqrt()).abs() < 0.03, "{w2}");
    }

    #[test]
    fn wasserstein_1d_handles_unequal_sizes() {
        // Quantile functions differ by ½ on u ∈ [1/3, 2/3): W_1 = 1/6, W_2² = 1/12.
        assert!((wasserstein_1d(&[1.0, 0.0], &[0.0, 0.5, 1.0], 1.0) - 1.0 / 6.0).abs() < 1e-12);
        let w2 = wasserstein_1d(&[0.0, 1.0], &[1.0, 0.5, 0.0], 2.0);
        assert!((w2 - (1.0f64 / 12.0).sqrt()).abs() < 1e-12);
        assert_eq!(wasserstein_1d(&[2.0], &[5.0, 5.0, 5.0], 1.0), 3.0);
    }
}

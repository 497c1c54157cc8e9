//! Precision and recall for distributions (Sajjadi et al. 2018), as in compare_gan's
//! `prd_score.py` with DLPM's cluster-count rule (data.md §4.1).

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::{check_at_least, parallel_map, sq_dist, thread_count, MetricError, Points};
use crate::rng::{stream, Purpose};

/// Options for [`prd`]; `Default` gives the compare_gan defaults with DLPM's cluster rule.
#[derive(Clone, Debug)]
pub struct PrdOptions {
    /// Clusters per run; `None` = 100 if the eval set has more than 2500 points, else 20 (DLPM).
    pub num_clusters: Option<usize>,
    /// Points on the PRD curve (compare_gan 1001, DLPM 201).
    pub num_angles: usize,
    /// Independent clusterings whose curves are averaged.
    pub num_runs: usize,
    /// Cap on Lloyd iterations per clustering.
    pub max_iters: usize,
    pub seed: u64,
    /// Worker threads (0 = all cores).
    pub threads: usize,
}

impl Default for PrdOptions {
    fn default() -> Self {
        PrdOptions {
            num_clusters: None,
            num_angles: 1001,
            num_runs: 10,
            max_iters: 100,
            seed: 0,
            threads: 0,
        }
    }
}

/// The averaged PRD curve and its summaries.
#[derive(Clone, Debug)]
pub struct PrdResult {
    /// α(λ_j), averaged over runs, for increasing angles.
    pub precision: Vec<f64>,
    /// β(λ_j), averaged over runs.
    pub recall: Vec<f64>,
    /// max_j F_1 on the averaged curve.
    pub max_f1: f64,
    /// max_j F_8 (tracks recall).
    pub max_f8: f64,
    /// max_j F_{1/8} (tracks precision).
    pub max_f1_8: f64,
    /// Harmonic mean of `max_f8` and `max_f1_8` (DLPM's `f_1_pr`).
    pub f1_pr: f64,
    /// Clusters used per run.
    pub num_clusters: usize,
}

/// PRD of `eval` (generated) against `reference` (real), both `(·, dim)` row-major.
///
/// Each run clusters the union with k-means++ and Lloyd, histograms both sets over the
/// clusters and computes the curve with [`prd_curve`]; curves are averaged over runs.
/// compare_gan insists on equal sizes; histograms are normalised, so unequal sizes are accepted
/// here, but equal sizes remain the comparable setting.
pub fn prd(
    eval: &[f64],
    reference: &[f64],
    dim: usize,
    opts: &PrdOptions,
) -> Result<PrdResult, MetricError> {
    let e = Points::new("eval set", eval, dim, 1)?;
    let r = Points::new("reference set", reference, dim, 1)?;
    let k = opts
        .num_clusters
        .unwrap_or(if e.n > 2500 { 100 } else { 20 });
    if k == 0 || k > e.n + r.n {
        return Err(MetricError::BadOption {
            option: "num_clusters",
            expected: "between 1 and the total number of points",
            got: k.to_string(),
        });
    }
    check_at_least("num_angles", opts.num_angles, 2)?;
    check_at_least("num_runs", opts.num_runs, 1)?;
    check_at_least("max_iters", opts.max_iters, 1)?;
    let union: Vec<f64> = eval.iter().chain(reference).copied().collect();
    let all = Points {
        data: &union,
        dim,
        n: e.n + r.n,
    };
    let curves = parallel_map(opts.num_runs, thread_count(opts.threads), |run| {
        let mut rng = stream(opts.seed, Purpose::Metric, run as u64, 0);
        let labels = kmeans(all, k, opts.max_iters, &mut rng);
        let q = histogram(&labels[..e.n], k);
        let p = histogram(&labels[e.n..], k);
        prd_curve(&p, &q, opts.num_angles)
    });
    let runs = opts.num_runs as f64;
    let mut precision = vec![0.0; opts.num_angles];
    let mut recall = vec![0.0; opts.num_angles];
    for (pr, rc) in &curves {
        for j in 0..opts.num_angles {
            precision[j] += pr[j] / runs;
            recall[j] += rc[j] / runs;
        }
    }
    let max_f1 = max_f_beta(&precision, &recall, 1.0);
    let max_f8 = max_f_beta(&precision, &recall, 8.0);
    let max_f1_8 = max_f_beta(&precision, &recall, 1.0 / 8.0);
    let f1_pr = 2.0 * max_f8 * max_f1_8 / (max_f8 + max_f1_8 + 1e-10);
    Ok(PrdResult {
        precision,
        recall,
        max_f1,
        max_f8,
        max_f1_8,
        f1_pr,
        num_clusters: k,
    })
}

fn histogram(labels: &[u32], k: usize) -> Vec<f64> {
    let mut h = vec![0.0; k];
    for &l in labels {
        h[l as usize] += 1.0;
    }
    let total = labels.len().max(1) as f64;
    h.iter_mut().for_each(|v| *v /= total);
    h
}

/// PRD curve of an eval histogram `q` against a reference histogram `p` (each sums to 1).
///
/// For θ_j = linspace(ε, π/2 − ε, num_angles), λ_j = tan θ_j: precision α_j = Σ_i min(λ_j p_i, q_i),
/// recall β_j = α_j / λ_j, both clipped to [0, 1]. Returns `(precision, recall)`.
pub fn prd_curve(p: &[f64], q: &[f64], num_angles: usize) -> (Vec<f64>, Vec<f64>) {
    const EPS: f64 = 1e-10;
    let span = std::f64::consts::FRAC_PI_2 - 2.0 * EPS;
    let steps = num_angles.saturating_sub(1).max(1) as f64;
    (0..num_angles)
        .map(|j| {
            let slope = (EPS + span * j as f64 / steps).tan();
            let alpha: f64 = p.iter().zip(q).map(|(pi, qi)| (slope * pi).min(*qi)).sum();
            (alpha.clamp(0.0, 1.0), (alpha / slope).clamp(0.0, 1.0))
        })
        .unzip()
}

/// max_j F_β(α_j, β_j) with F_β(p, r) = (1 + β²)·p·r / (β²·p + r + 1e-10) (compare_gan's form).
pub fn max_f_beta(precision: &[f64], recall: &[f64], beta: f64) -> f64 {
    let b2 = beta * beta;
    precision
        .iter()
        .zip(recall)
        .map(|(p, r)| (1.0 + b2) * p * r / (b2 * p + r + 1e-10))
        .fold(0.0, f64::max)
}

/// k-means++ seeding followed by Lloyd iterations; returns a cluster label per point.
fn kmeans(pts: Points, k: usize, max_iters: usize, rng: &mut ChaCha8Rng) -> Vec<u32> {
    let dim = pts.dim;
    let mut centres = kmeans_pp(pts, k, rng);
    let mut labels = vec![0u32; pts.n];
    // Stop once centres barely move: sklearn's rule, tol 1e-4 × mean per-coordinate variance.
    let tol = 1e-4 * mean_variance(pts);
    let mut sums = vec![0.0; k * dim];
    let mut counts = vec![0usize; k];
    for iter in 0..max_iters {
        let changed = assign(pts, &centres, &mut labels);
        if changed == 0 && iter > 0 {
            break;
        }
        sums.iter_mut().for_each(|s| *s = 0.0);
        counts.iter_mut().for_each(|c| *c = 0);
        for (i, &l) in labels.iter().enumerate() {
            let l = l as usize;
            counts[l] += 1;
            for (s, x) in sums[l * dim..(l + 1) * dim].iter_mut().zip(pts.row(i)) {
                *s += x;
            }
        }
        let mut shift = 0.0;
        for c in 0..k {
            // An empty cluster keeps its centre; it may win points back next iteration.
            if counts[c] == 0 {
                continue;
            }
            let centre = &mut centres[c * dim..(c + 1) * dim];
            for (m, s) in centre.iter_mut().zip(&sums[c * dim..(c + 1) * dim]) {
                let new = s / counts[c] as f64;
                shift += (new - *m) * (new - *m);
                *m = new;
            }
        }
        if shift <= tol {
            assign(pts, &centres, &mut labels);
            break;
        }
    }
    labels
}

/// Sets each label to its nearest centre; returns how many labels changed.
fn assign(pts: Points, centres: &[f64], labels: &mut [u32]) -> usize {
    let mut changed = 0;
    for (i, label) in labels.iter_mut().enumerate() {
        let x = pts.row(i);
        let mut best = (f64::INFINITY, 0u32);
        for (c, centre) in centres.chunks_exact(pts.dim).enumerate() {
            let d = sq_dist(x, centre);
            if d < best.0 {
                best = (d, c as u32);
            }
        }
        if *label != best.1 {
            changed += 1;
            *label = best.1;
        }
    }
    changed
}

fn mean_variance(pts: Points) -> f64 {
    let n = pts.n as f64;
    (0..pts.dim)
        .map(|c| {
            let col = || pts.data.iter().skip(c).step_by(pts.dim);
            let mean = col().sum::<f64>() / n;
            col().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n
        })
        .sum::<f64>()
        / pts.dim as f64
}

/// k-means++: first centre uniform, each next one drawn ∝ squared distance to the nearest chosen.
fn kmeans_pp(pts: Points, k: usize, rng: &mut ChaCha8Rng) -> Vec<f64> {
    let mut centres = Vec::with_capacity(k * pts.dim);
    let first = rng.random_range(0..pts.n);
    centres.extend_from_slice(pts.row(first));
    let mut d2: Vec<f64> = (0..pts.n)
        .map(|i| sq_dist(pts.row(i), pts.row(first)))
        .collect();
    for _ in 1..k {
        let total: f64 = d2.iter().sum();
        let pick = if total > 0.0 {
            let mut u = rng.random::<f64>() * total;
            let mut chosen = pts.n - 1;
            for (i, &d) in d2.iter().enumerate() {
                if u < d {
                    chosen = i;
                    break;
                }
                u -= d;
            }
            chosen
        } else {
            // Every point coincides with a centre already: any choice is as good.
            rng.random_range(0..pts.n)
        };
        let c = pts.row(pick);
        centres.extend_from_slice(c);
        for (i, d) in d2.iter_mut().enumerate() {
            *d = d.min(sq_dist(pts.row(i), c));
        }
    }
    centres
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{blob, sample};
    use super::*;
    use crate::run::data::ParamValue;

    #[test]
    fn prd_curve_matches_a_hand_computed_two_cluster_case() {
        // p = (½, ½), q = (1, 0): α(λ) = min(λ/2, 1), β(λ) = min(½, 1/λ); F1 peaks at λ = 2 with 2/3.
        let (pr, rc) = prd_curve(&[0.5, 0.5], &[1.0, 0.0], 1001);
        for (j, (a, b)) in pr.iter().zip(&rc).enumerate() {
            let lambda = (1e-10 + (std::f64::consts::FRAC_PI_2 - 2e-10) * j as f64 / 1000.0).tan();
            assert!((a - (lambda / 2.0).min(1.0)).abs() < 1e-9);
            assert!((b - (1.0 / lambda).min(0.5)).abs() < 1e-9);
        }
        assert!((max_f_beta(&pr, &rc, 1.0) - 2.0 / 3.0).abs() < 1e-3);
        // F_8 ≈ recall-weighted: max is at β = ½ with α = 1: 65·½/(64 + ½) ≈ 0.5039.
        assert!((max_f_beta(&pr, &rc, 8.0) - 65.0 * 0.5 / 64.5).abs() < 1e-3);
        assert!((max_f_beta(&pr, &rc, 0.125) - 1.015625 * 0.5 / (0.015625 + 0.5)).abs() < 1e-3);
    }

    #[test]
    fn prd_of_identical_sets_is_one_and_of_disjoint_sets_is_zero() {
        let x = blob(2000, 1, 2, 0.0, 1.0);
        let opts = PrdOptions {
            num_runs: 3,
            ..PrdOptions::default()
        };
        let same = prd(&x, &x, 2, &opts).unwrap();
        assert!(same.max_f1 > 0.999 && same.max_f8 > 0.999 && same.max_f1_8 > 0.999);
        assert_eq!(same.num_clusters, 20);
        let far = blob(2000, 2, 2, 100.0, 1.0);
        let apart = prd(&x, &far, 2, &opts).unwrap();
        assert!(
            apart.max_f1 < 1e-6 && apart.f1_pr < 1e-6,
            "{}",
            apart.max_f1
        );
    }

    #[test]
    fn prd_is_reproducible_and_thread_independent() {
        let x = sample("moons", 1500, 3, &[]);
        let y = sample("moons", 1500, 4, &[("noise", ParamValue::Number(0.3))]);
        let one = PrdOptions {
            threads: 1,
            num_runs: 4,
            ..PrdOptions::default()
        };
        let a = prd(&x, &y, 2, &one).unwrap();
        let b = prd(&x, &y, 2, &PrdOptions { threads: 3, ..one }).unwrap();
        assert_eq!(a.precision, b.precision);
        assert!(a.max_f1 > 0.3 && a.max_f1 < 0.99, "{}", a.max_f1);
    }

    #[test]
    fn prd_sanity_on_swiss_roll() {
        // Smaller than the 15 000-point evaluation to keep the suite fast; still > 2500 ⇒ 100 clusters.
        // At 5000 points a fresh sample scores ≈ 0.89 (≈ 0.95 at 15 000: histogram noise shrinks).
        let real = sample("swiss_roll", 5000, 10, &[]);
        let fresh = sample("swiss_roll", 5000, 11, &[]);
        let opts = PrdOptions::default();
        let good = prd(&fresh, &real, 2, &opts).unwrap();
        let bad = prd(&blob(5000, 12, 2, 0.0, 1.0), &real, 2, &opts).unwrap();
        assert_eq!(good.num_clusters, 100);
        assert!(good.max_f1 > 0.85, "fresh {}", good.max_f1);
        assert!(bad.max_f1 > 0.3 && bad.max_f1 < 0.75, "blob {}", bad.max_f1);
    }

    #[test]
    fn prd_rejects_bad_input() {
        let x = [0.0, 1.0, f64::NAN, 2.0];
        let e = prd(&x, &x, 2, &PrdOptions::default()).unwrap_err();
        assert!(matches!(
            e,
            MetricError::NonFinite {
                name: "eval set",
                row: 1,
                col: 0,
                ..
            }
        ));
        assert!(matches!(
            prd(&[0.0; 3], &[0.0; 4], 2, &PrdOptions::default()),
            Err(MetricError::Ragged { .. })
        ));
        let too_many = PrdOptions {
            num_clusters: Some(9),
            ..PrdOptions::default()
        };
        assert!(matches!(
            prd(&[0.0; 4], &[1.0; 4], 1, &too_many),
            Err(MetricError::BadOption { .. })
        ));
    }
}

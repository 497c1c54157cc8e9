//! Sample-quality metrics for point clouds (data.md §4, papers.md §2.10).
//!
//! Every function takes point sets as flat row-major `f64` slices of shape `(n, dim)`:
//! - [`prd`]: precision/recall for distributions (Sajjadi et al. 2018) with maxF1, F_8, F_{1/8};
//! - [`mmd_rbf`]: unbiased MMD² with a Gaussian kernel; [`mmd_dlpm`]: DLPM's biased multi-bandwidth MMD;
//! - [`sliced_wasserstein`]: Monte-Carlo sliced W_p with exact 1-D transport per projection;
//! - [`msle`] / [`msle_integral`]: tail errors of log-quantiles (DLPM discrete / JL v1 continuous).
//!
//! All randomness comes from `crate::rng` with [`Purpose::Metric`], and results do not depend on
//! the number of threads.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

use crate::rng::{stream, Purpose};

/// Errors from metric inputs and options.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MetricError {
    #[error("{name}: dimension must be at least 1")]
    ZeroDim { name: &'static str },
    #[error("{name}: {len} values is not a whole number of {dim}-dimensional points")]
    Ragged {
        name: &'static str,
        len: usize,
        dim: usize,
    },
    #[error("{name}: needs at least {min} points, got {n}")]
    TooFew {
        name: &'static str,
        n: usize,
        min: usize,
    },
    #[error("{name}: value {value} at row {row}, column {col} is not finite")]
    NonFinite {
        name: &'static str,
        row: usize,
        col: usize,
        value: f64,
    },
    #[error("option `{option}` must be {expected}; got {got}")]
    BadOption {
        option: &'static str,
        expected: &'static str,
        got: String,
    },
    #[error("all points coincide, so the kernel bandwidth would be 0; pass a fixed bandwidth")]
    ZeroBandwidth,
    #[error("{which} quantile at level {level} of coordinate {coord} is {value} ≤ 0, so its log is undefined; MSLE needs positive upper tails (shift the data or choose other levels)")]
    NonPositiveQuantile {
        which: &'static str,
        coord: usize,
        level: f64,
        value: f64,
    },
}

/// A validated `(n, dim)` view.
#[derive(Clone, Copy)]
struct Points<'a> {
    data: &'a [f64],
    dim: usize,
    n: usize,
}

impl<'a> Points<'a> {
    fn new(
        name: &'static str,
        data: &'a [f64],
        dim: usize,
        min: usize,
    ) -> Result<Self, MetricError> {
        if dim == 0 {
            return Err(MetricError::ZeroDim { name });
        }
        if data.len() % dim != 0 {
            return Err(MetricError::Ragged {
                name,
                len: data.len(),
                dim,
            });
        }
        let n = data.len() / dim;
        if n < min {
            return Err(MetricError::TooFew { name, n, min });
        }
        if let Some(k) = data.iter().position(|v| !v.is_finite()) {
            return Err(MetricError::NonFinite {
                name,
                row: k / dim,
                col: k % dim,
                value: data[k],
            });
        }
        Ok(Points { data, dim, n })
    }

    fn row(&self, i: usize) -> &'a [f64] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }
}

fn sq_dist(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// Number of worker threads: `requested`, or the machine's parallelism when 0.
fn thread_count(requested: usize) -> usize {
    if requested > 0 {
        requested
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }
}

/// Runs `job(i)` for `i in 0..count` on up to `threads` threads; results in index order.
fn parallel_map<T: Send>(count: usize, threads: usize, job: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let threads = threads.clamp(1, count.max(1));
    if threads == 1 {
        return (0..count).map(&job).collect();
    }
    let mut slots: Vec<Option<T>> = (0..count).map(|_| None).collect();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let job = &job;
                // Interleaved indices balance triangular workloads (row i of a pair sum costs n − i).
                scope.spawn(move || {
                    (t..count)
                        .step_by(threads)
                        .map(|i| (i, job(i)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for handle in handles {
            match handle.join() {
                Ok(results) => {
                    for (i, r) in results {
                        slots[i] = Some(r);
                    }
                }
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
    });
    slots.into_iter().flatten().collect()
}

// ---------------------------------------------------------------------------------------------
// PRD
// ---------------------------------------------------------------------------------------------

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

fn check_at_least(option: &'static str, value: usize, min: usize) -> Result<(), MetricError> {
    if value >= min {
        Ok(())
    } else {
        Err(MetricError::BadOption {
            option,
            expected: if min == 1 { "at least 1" } else { "at least 2" },
            got: value.to_string(),
        })
    }
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

// ---------------------------------------------------------------------------------------------
// MMD
// ---------------------------------------------------------------------------------------------

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
    if !(base > 0.0) {
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
fn median_distance(
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

// ---------------------------------------------------------------------------------------------
// Sliced Wasserstein
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// MSLE (tail error of log-quantiles)
// ---------------------------------------------------------------------------------------------

/// Which coordinates [`msle`] uses.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum MsleAggregate {
    /// Only coordinate 0 (DLPM's default `1d_projection`).
    FirstCoordinate,
    /// Mean over coordinates.
    Mean,
    /// Sum over coordinates.
    Sum,
}

/// Quantile levels of DLPM/bem `evaluate/msle.py`.
pub const DLPM_MSLE_LEVELS: [f64; 14] = [
    1e-4, 5e-4, 1e-3, 5e-3, 0.01, 0.05, 0.1, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9995, 0.9999,
];

/// Options for [`msle`]; `Default` is DLPM's (levels above ξ = 0.975, first coordinate).
#[derive(Clone, Debug)]
pub struct MsleOptions {
    pub levels: Vec<f64>,
    /// Only levels strictly above `xi` are used.
    pub xi: f64,
    pub aggregate: MsleAggregate,
}

impl Default for MsleOptions {
    fn default() -> Self {
        MsleOptions {
            levels: DLPM_MSLE_LEVELS.to_vec(),
            xi: 0.975,
            aggregate: MsleAggregate::FirstCoordinate,
        }
    }
}

/// Empirical quantile of sorted values with linear interpolation (numpy/torch default).
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    let Some(&last) = sorted.last() else {
        return f64::NAN;
    };
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    if lo >= sorted.len() - 1 {
        return last;
    }
    sorted[lo] + (pos - lo as f64) * (sorted[hi] - sorted[lo])
}

/// DLPM's discrete MSLE: mean over levels q > ξ of (log Q_gen(q) − log Q_data(q))², per
/// coordinate, aggregated as `opts.aggregate` says.
pub fn msle(
    generated: &[f64],
    data: &[f64],
    dim: usize,
    opts: &MsleOptions,
) -> Result<f64, MetricError> {
    let levels: Vec<f64> = opts
        .levels
        .iter()
        .copied()
        .filter(|&q| q > opts.xi)
        .collect();
    if levels.is_empty() || levels.iter().any(|q| !(0.0..=1.0).contains(q)) {
        return Err(MetricError::BadOption {
            option: "levels",
            expected: "levels in [0, 1], at least one above xi",
            got: format!("{:?} with xi = {}", opts.levels, opts.xi),
        });
    }
    let per_coord = log_quantile_errors(generated, data, dim, &levels)?;
    let coords: Vec<f64> = per_coord
        .iter()
        .map(|errs| errs.iter().sum::<f64>() / levels.len() as f64)
        .collect();
    Ok(match opts.aggregate {
        MsleAggregate::FirstCoordinate => coords[0],
        MsleAggregate::Mean => coords.iter().sum::<f64>() / coords.len() as f64,
        MsleAggregate::Sum => coords.iter().sum(),
    })
}

/// JL v1's continuous MSLE: ½ ∫_{q0}^{1} ‖log Q_gen(q) − log Q_data(q)‖² dq over all coordinates,
/// by the midpoint rule with `steps` cells.
pub fn msle_integral(
    generated: &[f64],
    data: &[f64],
    dim: usize,
    q0: f64,
    steps: usize,
) -> Result<f64, MetricError> {
    if !(0.0..1.0).contains(&q0) || steps == 0 {
        return Err(MetricError::BadOption {
            option: "q0/steps",
            expected: "q0 in [0, 1) and steps ≥ 1",
            got: format!("q0 = {q0}, steps = {steps}"),
        });
    }
    let h = (1.0 - q0) / steps as f64;
    let levels: Vec<f64> = (0..steps).map(|s| q0 + (s as f64 + 0.5) * h).collect();
    let per_coord = log_quantile_errors(generated, data, dim, &levels)?;
    Ok(0.5 * h * per_coord.iter().flatten().sum::<f64>())
}

/// (log Q_gen(q) − log Q_data(q))² for every coordinate (outer) and level (inner).
fn log_quantile_errors(
    generated: &[f64],
    data: &[f64],
    dim: usize,
    levels: &[f64],
) -> Result<Vec<Vec<f64>>, MetricError> {
    let g = Points::new("generated sample", generated, dim, 1)?;
    let d = Points::new("data sample", data, dim, 1)?;
    let column = |pts: Points, c: usize| {
        let mut v: Vec<f64> = pts.data.iter().skip(c).step_by(dim).copied().collect();
        v.sort_unstable_by(f64::total_cmp);
        v
    };
    let log_q = |which: &'static str, sorted: &[f64], coord: usize, level: f64| {
        let value = quantile_sorted(sorted, level);
        if value > 0.0 {
            Ok(value.ln())
        } else {
            Err(MetricError::NonPositiveQuantile {
                which,
                coord,
                level,
                value,
            })
        }
    };
    (0..dim)
        .map(|c| {
            let (gs, ds) = (column(g, c), column(d, c));
            levels
                .iter()
                .map(|&q| {
                    let diff = log_q("generated", &gs, c, q)? - log_q("data", &ds, c, q)?;
                    Ok(diff * diff)
                })
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::data::{generate, ParamValue};
    use super::*;

    /// `n` points of a generator, as f64.
    fn sample(name: &str, n: usize, seed: u64, args: &[(&str, ParamValue)]) -> Vec<f64> {
        let args: Vec<_> = args
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        generate(name, n, seed, &args).unwrap().to_f64()
    }

    fn blob(n: usize, seed: u64, dim: usize, mean: f64, std: f64) -> Vec<f64> {
        let args = [
            ("dim", ParamValue::Number(dim as f64)),
            ("mean", ParamValue::Number(mean)),
            ("std", ParamValue::Number(std)),
        ];
        sample("gaussian", n, seed, &args)
    }

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
        let real = sample("swiss_roll", 5000, 10, &[]);
        let fresh = sample("swiss_roll", 5000, 11, &[]);
        let opts = PrdOptions::default();
        let good = prd(&fresh, &real, 2, &opts).unwrap();
        let bad = prd(&blob(5000, 12, 2, 0.0, 1.0), &real, 2, &opts).unwrap();
        assert_eq!(good.num_clusters, 100);
        assert!(good.max_f1 > 0.9, "fresh {}", good.max_f1);
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

    #[test]
    fn quantiles_interpolate_like_numpy() {
        let s = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile_sorted(&s, 0.5), 2.5);
        assert!((quantile_sorted(&s, 0.9) - 3.7).abs() < 1e-12);
        assert_eq!(quantile_sorted(&s, 1.0), 4.0);
        assert_eq!(quantile_sorted(&s, 0.0), 1.0);
    }

    #[test]
    fn msle_of_a_scaled_sample_is_log_scale_squared() {
        // Positive scaling commutes with linearly interpolated quantiles: log Q shifts by ln c.
        let data = blob(5000, 60, 2, 0.0, 1.0);
        let scaled: Vec<f64> = data.iter().map(|v| 3.0 * v).collect();
        let want = 3f64.ln().powi(2);
        let opts = MsleOptions::default();
        assert!((msle(&scaled, &data, 2, &opts).unwrap() - want).abs() < 1e-12);
        assert_eq!(msle(&data, &data, 2, &opts).unwrap(), 0.0);
        let sum = MsleOptions {
            aggregate: MsleAggregate::Sum,
            ..MsleOptions::default()
        };
        assert!((msle(&scaled, &data, 2, &sum).unwrap() - 2.0 * want).abs() < 1e-12);
        // Continuous version: ½ · (1 − 0.95) · 2 coordinates · (ln 3)².
        let integral = msle_integral(&scaled, &data, 2, 0.95, 200).unwrap();
        assert!((integral - 0.05 * want).abs() < 1e-12, "{integral}");
        let negative: Vec<f64> = data.iter().map(|v| -v.abs() - 1.0).collect();
        assert!(matches!(
            msle(&negative, &data, 2, &opts),
            Err(MetricError::NonPositiveQuantile {
                which: "generated",
                coord: 0,
                ..
            })
        ));
    }
}

//! Sample-quality metrics for point clouds (data.md §4, papers.md §2.10).
//!
//! Every function takes point sets as flat row-major `f64` slices of shape `(n, dim)`:
//! - [`prd`]: precision/recall for distributions (Sajjadi et al. 2018) with maxF1, F_8, F_{1/8};
//! - [`knn_metrics`]: k-NN precision and recall (Kynkäänniemi et al. 2019) and density and
//!   coverage (Naeem et al. 2020);
//! - [`mode_metrics`]: fraction of samples near a known mode and the TV distance of the mode
//!   weights, for data from a known Gaussian mixture;
//! - [`mmd_rbf`]: unbiased MMD² with a Gaussian kernel; [`mmd_dlpm`]: DLPM's biased multi-bandwidth MMD;
//! - [`sliced_wasserstein`]: Monte-Carlo sliced W_p with exact 1-D transport per projection;
//! - [`msle`] / [`msle_integral`]: tail errors of log-quantiles (DLPM discrete / JL v1 continuous);
//! - [`count_tv`] / [`per_count_mmd`]: for sets (trans-dimensional data), the TV distance of
//!   the size histograms and an MMD per set size on a permutation-invariant representation;
//! - [`histogram_bpd`]: bits per dimension of discrete images under a per-pixel histogram
//!   (the baseline a likelihood model must beat), with [`level_indices`] to map values back to
//!   their levels;
//! - [`stability`] / [`stability_of`]: EDM's atom and molecule stability of QM9-like molecules
//!   (bonds from distances, valence check).
//!
//! All randomness comes from `crate::rng` with `Purpose::Metric`, and results do not depend on
//! the number of threads.

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
    #[error("value {value} at position {index} is not one of the {levels} levels −1 + 2k/({levels} − 1)")]
    OffGrid {
        index: usize,
        value: f32,
        levels: usize,
    },
    #[error("{name}: level {level} at position {index} is not below levels = {levels}")]
    LevelOutOfRange {
        name: &'static str,
        index: usize,
        level: u16,
        levels: usize,
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
        if !data.len().is_multiple_of(dim) {
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

#[cfg(test)]
#[path = "metrics/calibration.rs"]
mod calibration;
#[path = "metrics/images.rs"]
mod images;
#[path = "metrics/knn.rs"]
mod knn;
#[path = "metrics/mmd.rs"]
mod mmd;
#[path = "metrics/modes.rs"]
mod modes;
#[path = "metrics/msle.rs"]
mod msle;
#[path = "metrics/prd.rs"]
mod prd;
#[path = "metrics/sets.rs"]
mod sets;
#[path = "metrics/stability.rs"]
mod stability;
#[path = "metrics/wasserstein.rs"]
mod wasserstein;

pub use images::{histogram_bpd, level_indices};
pub use knn::{knn_metrics, KnnOptions, KnnResult};
pub use mmd::{mmd_dlpm, mmd_rbf, Bandwidth, MmdOptions, MmdResult};
pub use modes::{mode_metrics, ModeResult, MODE_RADIUS_STDS};
pub use msle::{
    msle, msle_integral, quantile_sorted, MsleAggregate, MsleOptions, DLPM_MSLE_LEVELS,
};
pub use prd::{max_f_beta, prd, prd_curve, PrdOptions, PrdResult};
pub use sets::{canonical_sets, count_tv, per_count_mmd, CountMmd};
pub use stability::{
    bond_order, bond_sums, decode_atom, stability, stability_of, stable_atoms, Atom, Stability,
    VALENCE,
};
pub use wasserstein::{sliced_wasserstein, wasserstein_1d, SlicedOptions};

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

/// Point sets for the submodules' tests.
#[cfg(test)]
mod test_util {
    use crate::run::data::{generate, ParamValue};

    /// `n` points of a generator, as f64.
    pub fn sample(name: &str, n: usize, seed: u64, args: &[(&str, ParamValue)]) -> Vec<f64> {
        let args: Vec<_> = args
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        generate(name, n, seed, &args).unwrap().to_f64()
    }

    pub fn blob(n: usize, seed: u64, dim: usize, mean: f64, std: f64) -> Vec<f64> {
        let args = [
            ("dim", ParamValue::Number(dim as f64)),
            ("mean", ParamValue::Number(mean)),
            ("std", ParamValue::Number(std)),
        ];
        sample("gaussian", n, seed, &args)
    }
}

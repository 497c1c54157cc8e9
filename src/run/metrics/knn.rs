//! k-nearest-neighbour support metrics: improved precision and recall (Kynkäänniemi et al. 2019)
//! and density and coverage (Naeem et al. 2020).
//!
//! Each point `p` of a set `S` gets a ball `B(p, NND_k(p))`, the closed ball whose radius is the
//! distance from `p` to its k-th nearest *other* point of `S` (other by index: a duplicate of `p`
//! counts as a neighbour at distance 0). With real points `X_1..X_N` (the reference) and generated
//! points `Y_1..Y_M` (the eval set):
//! - precision = (1/M) Σ_j 1[∃ i: Y_j ∈ B(X_i, NND_k(X_i))] — generated points on the real support;
//! - recall = (1/N) Σ_i 1[∃ j: X_i ∈ B(Y_j, NND_k(Y_j))] — real points on the generated support;
//! - density = (1/(kM)) Σ_j Σ_i 1[Y_j ∈ B(X_i, NND_k(X_i))] — like precision, but counts how many
//!   real balls hold each generated point, so it rewards samples in dense real regions and is
//!   not inflated by real outliers; it is ≈ 1 for matching distributions and may exceed 1;
//! - coverage = (1/N) Σ_i 1[∃ j: Y_j ∈ B(X_i, NND_k(X_i))] — real balls that hold a sample; like
//!   recall, but with the real radii, so a generated outlier cannot inflate it.
//!
//! "In the ball" means distance ≤ radius (closed balls). The k-NN search is exact and brute
//! force (O((N + M)²·dim)); sets larger than [`KnnOptions::max_points`] are first subsampled
//! uniformly without replacement, with a stream of `crate::rng` (`Purpose::Metric`).

use rand::Rng;

use super::{check_at_least, parallel_map, sq_dist, thread_count, MetricError, Points};
use crate::rng::{stream, Purpose};

/// Options for [`knn_metrics`]; `Default` gives k = 5 as in both papers.
#[derive(Clone, Debug)]
pub struct KnnOptions {
    /// Neighbour rank that sets each ball's radius.
    pub k: usize,
    /// Largest set used as is; a bigger set is replaced by a uniform subsample of this size.
    /// The default, 20 000, keeps 15 000 against 15 000 exact (≈ 1 s on 2 cores in release).
    pub max_points: usize,
    /// Seed of the subsampling streams (unused when no set is subsampled).
    pub seed: u64,
    /// Worker threads (0 = all cores).
    pub threads: usize,
}

impl Default for KnnOptions {
    fn default() -> Self {
        KnnOptions {
            k: 5,
            max_points: 20_000,
            seed: 0,
            threads: 0,
        }
    }
}

/// The four k-NN metrics, and the set sizes they were computed on.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KnnResult {
    pub precision: f64,
    pub recall: f64,
    pub density: f64,
    pub coverage: f64,
    /// Generated points used (M, after any subsampling).
    pub n_eval: usize,
    /// Real points used (N, after any subsampling).
    pub n_reference: usize,
}

/// Precision, recall, density and coverage of `eval` (generated) against `reference` (real),
/// both `(·, dim)` row-major; see the module docs for the definitions.
pub fn knn_metrics(
    eval: &[f64],
    reference: &[f64],
    dim: usize,
    opts: &KnnOptions,
) -> Result<KnnResult, MetricError> {
    check_at_least("k", opts.k, 1)?;
    let k = opts.k;
    if opts.max_points <= k {
        return Err(MetricError::BadOption {
            option: "max_points",
            expected: "more than k",
            got: opts.max_points.to_string(),
        });
    }
    let e = Points::new("eval set", eval, dim, k + 1)?;
    let r = Points::new("reference set", reference, dim, k + 1)?;
    let e_sub = subsample(e, opts.max_points, opts.seed, 0);
    let r_sub = subsample(r, opts.max_points, opts.seed, 1);
    let e = e_sub.as_ref().map_or(e, |v| Points {
        data: v,
        dim,
        n: v.len() / dim,
    });
    let r = r_sub.as_ref().map_or(r, |v| Points {
        data: v,
        dim,
        n: v.len() / dim,
    });
    let threads = thread_count(opts.threads);
    let real_radii = kth_neighbour_sq(r, k, threads);
    let fake_radii = kth_neighbour_sq(e, k, threads);
    let cross = cross_counts(r, e, &real_radii, &fake_radii, threads);
    let (n, m) = (r.n as f64, e.n as f64);
    let in_real = cross.in_real_ball.iter().filter(|&&b| b).count();
    let recalled = cross.in_fake_ball.iter().filter(|&&b| b).count();
    let pairs: usize = cross.fakes_per_real_ball.iter().sum();
    let covered = cross.fakes_per_real_ball.iter().filter(|&&c| c > 0).count();
    Ok(KnnResult {
        precision: in_real as f64 / m,
        recall: recalled as f64 / n,
        density: pairs as f64 / (k as f64 * m),
        coverage: covered as f64 / n,
        n_eval: e.n,
        n_reference: r.n,
    })
}

/// A uniform subsample of `max` rows (partial Fisher–Yates on stream `which`), in the original
/// row order, or `None` when the set is small enough.
fn subsample(p: Points, max: usize, seed: u64, which: u64) -> Option<Vec<f64>> {
    if p.n <= max {
        return None;
    }
    let mut index: Vec<usize> = (0..p.n).collect();
    let mut rng = stream(seed, Purpose::Metric, 1, which);
    for i in 0..max {
        let j = rng.random_range(i..p.n);
        index.swap(i, j);
    }
    let mut keep = index[..max].to_vec();
    keep.sort_unstable();
    Some(keep.iter().flat_map(|&i| p.row(i)).copied().collect())
}

/// Squared distance from each point to its k-th nearest other point of the same set.
fn kth_neighbour_sq(p: Points, k: usize, threads: usize) -> Vec<f64> {
    parallel_map(p.n, threads, |i| {
        let x = p.row(i);
        // The k smallest squared distances so far, ascending.
        let mut best = vec![f64::INFINITY; k];
        for j in (0..p.n).filter(|&j| j != i) {
            let d = sq_dist(x, p.row(j));
            if d < best[k - 1] {
                let at = best.partition_point(|&b| b <= d);
                best.copy_within(at..k - 1, at + 1);
                best[at] = d;
            }
        }
        best[k - 1]
    })
}

/// What one pass over all (real, generated) pairs finds.
struct Cross {
    /// Per generated point: inside at least one real ball.
    in_real_ball: Vec<bool>,
    /// Per real point: inside at least one generated ball.
    in_fake_ball: Vec<bool>,
    /// Per real point: generated points inside its ball.
    fakes_per_real_ball: Vec<usize>,
}

/// One pass over all pairs, in blocks of real rows; the block results are counts and flags, so
/// merging them (sums and ORs) gives the same answer for any number of threads.
fn cross_counts(
    real: Points,
    fake: Points,
    real_radii: &[f64],
    fake_radii: &[f64],
    threads: usize,
) -> Cross {
    const BLOCKS: usize = 64;
    let block = real.n.div_ceil(BLOCKS);
    let blocks = real.n.div_ceil(block);
    let parts = parallel_map(blocks, threads, |b| {
        let rows = b * block..((b + 1) * block).min(real.n);
        let mut in_real_ball = vec![false; fake.n];
        let mut in_fake_ball = Vec::with_capacity(rows.len());
        let mut counts = Vec::with_capacity(rows.len());
        for i in rows {
            let x = real.row(i);
            let radius = real_radii[i];
            let mut count = 0;
            let mut recalled = false;
            for (j, inside) in in_real_ball.iter_mut().enumerate() {
                let d = sq_dist(x, fake.row(j));
                if d <= radius {
                    count += 1;
                    *inside = true;
                }
                recalled |= d <= fake_radii[j];
            }
            counts.push(count);
            in_fake_ball.push(recalled);
        }
        (in_real_ball, in_fake_ball, counts)
    });
    let mut cross = Cross {
        in_real_ball: vec![false; fake.n],
        in_fake_ball: Vec::with_capacity(real.n),
        fakes_per_real_ball: Vec::with_capacity(real.n),
    };
    for (inside, recalled, counts) in parts {
        for (acc, b) in cross.in_real_ball.iter_mut().zip(inside) {
            *acc |= b;
        }
        cross.in_fake_ball.extend(recalled);
        cross.fakes_per_real_ball.extend(counts);
    }
    cross
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(k: usize) -> KnnOptions {
        KnnOptions {
            k,
            ..KnnOptions::default()
        }
    }

    /// Real {0, 1, 3, 7} and generated {0.5, 2.5, 20} on a line.
    const REAL: [f64; 4] = [0.0, 1.0, 3.0, 7.0];
    const FAKE: [f64; 3] = [0.5, 2.5, 20.0];

    #[test]
    fn knn_metrics_match_a_hand_count_with_k_1() {
        // Real radii (nearest other real point): 0 → 1, 1 → 1, 3 → 2, 7 → 4, so the real balls
        // are [−1, 1], [0, 2], [1, 5], [3, 11]. Generated radii: 0.5 → 2, 2.5 → 2, 20 → 17.5.
        // Precision: 0.5 ∈ [−1, 1]; 2.5 ∈ [1, 5]; 20 in no ball → 2/3.
        // Recall: 0, 1 within 2 of 0.5; 3 within 2 of 2.5; 7 within 17.5 of 20 (the generated
        // outlier's big ball) → 4/4.
        // Density: 0.5 lies in 2 real balls, 2.5 in 1, 20 in none → 3 / (1·3) = 1.
        // Coverage: the balls of 0, 1 and 3 hold a sample, that of 7 does not → 3/4.
        let r = knn_metrics(&FAKE, &REAL, 1, &opts(1)).unwrap();
        assert_eq!(r.precision, 2.0 / 3.0);
        assert_eq!(r.recall, 1.0);
        assert_eq!(r.density, 1.0);
        assert_eq!(r.coverage, 0.75);
        assert_eq!((r.n_eval, r.n_reference), (3, 4));
    }

    #[test]
    fn knn_metrics_match_a_hand_count_with_k_2() {
        // Second-nearest radii. Real: 0 → 3, 1 → 2, 3 → 3, 7 → 6, balls [−3, 3], [−1, 3], [0, 6],
        // [1, 13]. Generated: 0.5 → 19.5, 2.5 → 17.5, 20 → 19.5.
        // Precision: 0.5 and 2.5 are inside, 20 is 13 > 6 from 7 → 2/3. Recall: every real point
        // is within 19.5 of 0.5 → 1.
        // Density: 0.5 lies in the balls of 0, 1, 3 (6.5 > 6 from 7): 3; 2.5 in all four: 4;
        // 20 in none → 7 / (2·3) = 7/6 (density is not capped at 1). Coverage: every real ball
        // holds 2.5 → 1.
        let r = knn_metrics(&FAKE, &REAL, 1, &opts(2)).unwrap();
        assert_eq!(r.precision, 2.0 / 3.0);
        assert_eq!(r.recall, 1.0);
        assert_eq!(r.density, 7.0 / 6.0);
        assert_eq!(r.coverage, 1.0);
    }

    #[test]
    fn knn_balls_are_closed_and_work_in_two_dimensions() {
        // Real (0, 0), (3, 4): each ball has radius 5. Generated (6, 8) is exactly 5 from (3, 4),
        // so it is inside (closed ball); (0, 20) is 16.3 from (3, 4), outside. Generated radii are
        // both √(36 + 144) = 13.4: (0, 0) is 10 from (6, 8), inside; (3, 4) too.
        let real = [0.0, 0.0, 3.0, 4.0];
        let fake = [6.0, 8.0, 0.0, 20.0];
        let r = knn_metrics(&fake, &real, 2, &opts(1)).unwrap();
        assert_eq!(r.precision, 0.5);
        assert_eq!(r.recall, 1.0);
        assert_eq!(r.density, 0.5);
        assert_eq!(r.coverage, 0.5);
    }

    #[test]
    fn duplicates_are_neighbours_at_distance_zero() {
        // Real {0, 0, 5}: the two zeros have radius 0 and the 5 has radius 5 (k = 1). A sample at
        // 0 lies in all three balls; one at 1e-9 only in the ball of 5.
        let real = [0.0, 0.0, 5.0];
        let r = knn_metrics(&[0.0, 1e-9], &real, 1, &opts(1)).unwrap();
        assert_eq!(r.precision, 1.0);
        assert_eq!(r.density, 4.0 / 2.0);
        assert_eq!(r.coverage, 1.0);
    }

    #[test]
    fn a_set_scores_perfectly_against_itself() {
        let x = super::super::test_util::blob(500, 3, 3, 0.0, 1.0);
        let r = knn_metrics(&x, &x, 3, &KnnOptions::default()).unwrap();
        assert_eq!((r.precision, r.recall, r.coverage), (1.0, 1.0, 1.0));
        // Each point lies in its own ball plus, on average, k others' (each ball holds k others).
        assert!((r.density - 6.0 / 5.0).abs() < 1e-12, "{}", r.density);
    }

    #[test]
    fn knn_metrics_validate_inputs() {
        let five = [0.0, 1.0, 2.0, 3.0, 4.0];
        let six = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0];
        let d = KnnOptions::default();
        assert!(matches!(
            knn_metrics(&five, &six, 1, &d),
            Err(MetricError::TooFew { min: 6, n: 5, .. })
        ));
        assert!(knn_metrics(&six, &six, 1, &d).is_ok());
        assert!(matches!(
            knn_metrics(&six, &six, 1, &opts(0)),
            Err(MetricError::BadOption { option: "k", .. })
        ));
        let capped = KnnOptions {
            max_points: 5,
            ..d.clone()
        };
        assert!(matches!(
            knn_metrics(&six, &six, 1, &capped),
            Err(MetricError::BadOption {
                option: "max_points",
                ..
            })
        ));
        assert!(matches!(
            knn_metrics(&[0.0, f64::NAN, 1.0, 2.0, 3.0, 4.0], &six, 1, &d),
            Err(MetricError::NonFinite { row: 1, .. })
        ));
    }

    #[test]
    fn knn_metrics_do_not_depend_on_threads_and_subsampling_is_seeded() {
        let x = super::super::test_util::blob(700, 5, 2, 0.0, 1.0);
        let y = super::super::test_util::blob(600, 6, 2, 0.3, 1.2);
        let with = |threads, max_points, seed| {
            let o = KnnOptions {
                threads,
                max_points,
                seed,
                ..KnnOptions::default()
            };
            knn_metrics(&x, &y, 2, &o).unwrap()
        };
        assert_eq!(with(1, 20_000, 0), with(3, 20_000, 0));
        let sub = with(2, 400, 7);
        assert_eq!((sub.n_eval, sub.n_reference), (400, 400));
        assert_eq!(sub, with(1, 400, 7));
        assert_ne!(sub, with(1, 400, 8));
    }
}

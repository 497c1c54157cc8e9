//! Metrics for sets (trans-dimensional data): how well the generated set sizes match the data
//! ([`count_tv`]), and, for each size k, how well the generated sets of k components match the
//! data's ([`per_count_mmd`]).
//!
//! A set has no order, so a set of k components is compared through a canonical vector: its
//! components sorted lexicographically (first coordinate, then the second, …) and laid end to
//! end, k·d numbers. Two orderings of one set give the same vector, so the MMD on these vectors
//! is a distance between laws of sets.

use super::mmd::{median_distance, mmd_rbf, Bandwidth, MmdOptions};
use super::{MetricError, Points};
use crate::run::sets::SetData;

/// Points of the reference used for the median-heuristic bandwidth.
const BANDWIDTH_SUBSAMPLE: usize = 1000;

/// ½ Σ_k |p_k − q_k|: the total-variation distance of two size histograms (entry k − 1 = the
/// fraction of sets with k components). A histogram shorter than the other counts as 0 beyond
/// its end.
pub fn count_tv(gen: &[f64], reference: &[f64]) -> f64 {
    let len = gen.len().max(reference.len());
    let at = |h: &[f64], i: usize| h.get(i).copied().unwrap_or(0.0);
    0.5 * (0..len)
        .map(|i| (at(gen, i) - at(reference, i)).abs())
        .sum::<f64>()
}

/// The MMD of the sets of one size.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CountMmd {
    /// The set size k.
    pub count: usize,
    /// Generated sets of size k.
    pub n_gen: usize,
    /// Sets of size k from the second reference used for `mmd_data` (at most `n_gen`).
    pub n_data: usize,
    /// Unbiased MMD² between generated and reference sets of size k.
    pub mmd: f64,
    /// The same estimate between two independent data samples (the noise floor `mmd` should
    /// be compared with).
    pub mmd_data: f64,
    /// The RBF bandwidth σ both estimates use.
    pub sigma: f64,
}

/// The sets of `sets` with exactly `k` components as canonical vectors (components sorted
/// lexicographically), flat row-major `(count, k · component)` in `f64`.
pub fn canonical_sets(sets: &SetData, k: usize) -> Vec<f64> {
    let d = sets.component;
    let mut out = Vec::new();
    for set in sets.with_count(k) {
        let mut comps: Vec<&[f32]> = set.chunks_exact(d.max(1)).collect();
        comps.sort_by(|a, b| {
            a.iter()
                .zip(b.iter())
                .map(|(x, y)| x.total_cmp(y))
                .find(|o| o.is_ne())
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        out.extend(comps.iter().flat_map(|c| c.iter().map(|&v| f64::from(v))));
    }
    out
}

/// For each size k with at least `min_sets` sets (2 at least) in `gen` and in both references:
/// `mmd` = MMD²(gen_k, ref_a_k) and `mmd_data` = MMD²(ref_b_k, ref_a_k), on canonical vectors
/// ([`canonical_sets`]), with the unbiased RBF estimator of [`mmd_rbf`].
///
/// Both estimates share one bandwidth: σ = the median pairwise distance of (a subsample of
/// 1000 of) ref_a_k, so they are on one scale. ref_b_k is cut to its first `n_gen` sets when
/// larger (the sets are independent, so these are a uniform subsample), making the two
/// estimates equally noisy. Sizes are listed in increasing order; sizes below the threshold
/// are left out.
pub fn per_count_mmd(
    gen: &SetData,
    ref_a: &SetData,
    ref_b: &SetData,
    min_sets: usize,
) -> Result<Vec<CountMmd>, MetricError> {
    let min_sets = min_sets.max(2);
    let d = gen.component;
    for (name, s) in [("reference", ref_a), ("second reference", ref_b)] {
        if s.component != d {
            return Err(MetricError::BadOption {
                option: name,
                expected: "sets with the generated sets' component size",
                got: format!("component size {} (generated: {d})", s.component),
            });
        }
    }
    let max = gen.max.max(ref_a.max).max(ref_b.max);
    let mut out = Vec::new();
    for k in 1..=max {
        let dim = k * d;
        let (g, a, b) = (
            canonical_sets(gen, k),
            canonical_sets(ref_a, k),
            canonical_sets(ref_b, k),
        );
        let (n_gen, n_a, n_b) = (g.len() / dim, a.len() / dim, b.len() / dim);
        if n_gen < min_sets || n_a < min_sets || n_b < min_sets {
            continue;
        }
        let n_data = n_b.min(n_gen);
        let b = &b[..n_data * dim];
        let ref_points = Points::new("reference sets", &a, dim, 2)?;
        let none = Points::new("no points", &[], dim, 0)?;
        let sigma = median_distance(ref_points, none, BANDWIDTH_SUBSAMPLE, 0)?;
        let opts = MmdOptions {
            bandwidth: Bandwidth::Fixed(sigma),
            ..MmdOptions::default()
        };
        out.push(CountMmd {
            count: k,
            n_gen,
            n_data,
            mmd: mmd_rbf(&g, &a, dim, &opts)?.mmd2,
            mmd_data: mmd_rbf(b, &a, dim, &opts)?.mmd2,
            sigma,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::data::{generate, ParamValue};

    fn rings(n: usize, seed: u64, extra: &[(&str, ParamValue)]) -> SetData {
        let args: Vec<(String, ParamValue)> = extra
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        let d = generate("ring_sets", n, seed, &args).unwrap();
        SetData::from_dataset(&d, 2, 8).unwrap()
    }

    /// The same sets with the order of every set's components reversed.
    fn reversed(s: &SetData) -> SetData {
        let mut out = s.clone();
        for i in 0..s.len() {
            let start = i * s.max * s.component;
            let k = s.counts[i];
            for (j, c) in s.set(i).chunks(s.component).rev().enumerate() {
                let at = start + j * s.component;
                out.values[at..at + s.component].copy_from_slice(c);
            }
            assert_eq!(out.set(i).len(), k * s.component);
        }
        out
    }

    #[test]
    fn count_tv_of_known_histograms() {
        // ½ (0.25 + 0.25 + 0.5) = 0.5.
        assert_eq!(count_tv(&[0.5, 0.5, 0.0], &[0.25, 0.25, 0.5]), 0.5);
        assert_eq!(count_tv(&[0.2, 0.8], &[0.2, 0.8]), 0.0);
        // Disjoint supports, different lengths: 1.
        assert_eq!(count_tv(&[1.0], &[0.0, 1.0]), 1.0);
        let a = rings(2000, 1, &[]).count_histogram();
        let uniform = rings(2000, 1, &[("counts", ParamValue::Text("uniform".into()))]);
        // Skewed (9 − k)/36 against uniform 1/8: ½ Σ |(9 − k)/36 − 1/8| = 2/9.
        let exact: Vec<f64> = (1..=8).map(|k| (9 - k) as f64 / 36.0).collect();
        assert!((count_tv(&exact, &[0.125; 8]) - 2.0 / 9.0).abs() < 1e-12);
        let tv = count_tv(&a, &uniform.count_histogram());
        assert!((tv - 2.0 / 9.0).abs() < 0.05, "{tv}");
    }

    #[test]
    fn canonical_vectors_do_not_depend_on_component_order() {
        let s = rings(600, 2, &[]);
        let r = reversed(&s);
        assert_ne!(s.values, r.values);
        for k in 1..=8 {
            assert_eq!(canonical_sets(&s, k), canonical_sets(&r, k), "k = {k}");
        }
        // Sorted by the first coordinate, then the second.
        let hand = SetData::from_padded_rows(&[1.0, 5.0, 0.0, 9.0, 1.0, 2.0], 3, 2, 3).unwrap();
        assert_eq!(canonical_sets(&hand, 3), vec![0.0, 9.0, 1.0, 2.0, 1.0, 5.0]);
        // So the MMD of a sample against its permuted copy is the MMD against itself, ≈ 0.
        let (a, b) = (rings(3000, 3, &[]), rings(3000, 4, &[]));
        let same = per_count_mmd(&s, &a, &b, 20).unwrap();
        let permuted = per_count_mmd(&r, &a, &b, 20).unwrap();
        assert_eq!(same, permuted);
        let self_vs_copy = per_count_mmd(&s, &r, &s, 20).unwrap();
        for c in &self_vs_copy {
            // Unbiased MMD² of a sample against itself is −O(1/n).
            assert!(c.mmd.abs() < 4.0 / c.n_gen as f64, "{c:?}");
            assert_eq!(c.mmd, c.mmd_data);
        }
    }

    #[test]
    fn doubled_radius_is_far_above_the_data_floor() {
        let (a, b) = (rings(4000, 5, &[]), rings(4000, 6, &[]));
        let good = rings(2000, 7, &[]);
        let wide = rings(2000, 7, &[("radius", ParamValue::Number(2.0))]);
        let near = per_count_mmd(&good, &a, &b, 50).unwrap();
        let far = per_count_mmd(&wide, &a, &b, 50).unwrap();
        assert!(!far.is_empty());
        assert_eq!(
            near.iter().map(|c| c.count).collect::<Vec<_>>(),
            far.iter().map(|c| c.count).collect::<Vec<_>>()
        );
        for (n, f) in near.iter().zip(&far) {
            assert_eq!(n.mmd_data, f.mmd_data, "same data, same floor");
            assert!(n.n_data <= n.n_gen && n.n_data > 0);
            assert!(
                f.mmd > 0.1 && f.mmd > 20.0 * f.mmd_data.abs(),
                "k = {}: {f:?}",
                f.count
            );
            assert!(n.mmd.abs() < 0.05, "k = {}: {n:?}", n.count);
        }
    }

    #[test]
    fn sizes_with_too_few_sets_are_skipped() {
        // p(k) ∝ 9 − k: of 400 sets about 11 have k = 8 and 22 have k = 7, 89 have k = 1.
        let (g, a, b) = (rings(400, 8, &[]), rings(400, 9, &[]), rings(400, 10, &[]));
        let out = per_count_mmd(&g, &a, &b, 40).unwrap();
        let ks: Vec<usize> = out.iter().map(|c| c.count).collect();
        assert!(ks.contains(&1) && !ks.contains(&8), "{ks:?}");
        for c in &out {
            let least = [&g, &a, &b]
                .iter()
                .map(|s| s.with_count(c.count).len())
                .min()
                .unwrap();
            assert!(least >= 40);
        }
        assert!(per_count_mmd(&g, &a, &b, 1000).unwrap().is_empty());
        // A reference of another component size is refused, not mixed up.
        let other = SetData::from_padded_rows(&[1.0, 2.0, 3.0], 1, 3, 8).unwrap();
        assert!(per_count_mmd(&g, &other, &b, 2).is_err());
    }
}

//! Mode metrics for data drawn from a known isotropic Gaussian mixture (the grid GMM and the
//! 8 Gaussians; their components come from [`crate::run::data::known_modes`]).
//!
//! With components of std σ, centres `c_m` and weights `w_m`:
//! - `mode_fraction` = fraction of samples within [`MODE_RADIUS_STDS`]·σ = 3σ (Euclidean distance,
//!   closed) of some centre. Data from the mixture itself score P(χ²_d ≤ 9): 1 − e^{−4.5} ≈ 0.9889
//!   in 2-D, when the 3σ balls do not overlap.
//! - `mode_weight_tv` = ½ Σ_m |ŵ_m − w_m|, where ŵ_m is the share of mode `m` among the samples
//!   within 3σ of a centre, each assigned to its nearest centre (lowest index on a tie).
//!
//! Normalising over the on-mode samples keeps the two metrics about different failures:
//! `mode_fraction` sees mass between or beyond the modes (blur, bridges), `mode_weight_tv` sees
//! dropped or mis-weighted modes, whatever the fraction of off-mode samples. A sample set with no
//! point near any mode has no empirical weights; its `mode_weight_tv` is reported as 1, the
//! largest value, so that failure can never look good.

use super::{MetricError, Points};
use crate::run::data::Modes;

/// Radius of a mode, in component standard deviations.
pub const MODE_RADIUS_STDS: f64 = 3.0;

/// Result of [`mode_metrics`].
#[derive(Clone, Debug, PartialEq)]
pub struct ModeResult {
    /// Fraction of samples within 3σ of some centre.
    pub mode_fraction: f64,
    /// Total-variation distance between the on-mode samples' mode shares and the true weights.
    pub mode_weight_tv: f64,
    /// Samples within 3σ assigned to each mode (nearest centre).
    pub counts: Vec<usize>,
}

/// `mode_fraction` and `mode_weight_tv` of `eval` (`(·, dim)` row-major) for the mixture `modes`;
/// see the module docs.
pub fn mode_metrics(eval: &[f64], dim: usize, modes: &Modes) -> Result<ModeResult, MetricError> {
    let e = Points::new("eval set", eval, dim, 1)?;
    let centres = Points::new("mode centres", &modes.centres, modes.dim, 1)?;
    if centres.dim != dim {
        return Err(MetricError::BadOption {
            option: "modes",
            expected: "centres of the samples' dimension",
            got: format!("{}-D centres for {dim}-D samples", centres.dim),
        });
    }
    let total: f64 = modes.weights.iter().sum();
    if modes.weights.len() != centres.n
        || modes.weights.iter().any(|w| !w.is_finite() || *w < 0.0)
        || !(total > 0.0 && total.is_finite())
    {
        return Err(MetricError::BadOption {
            option: "modes",
            expected: "one finite weight ≥ 0 per centre, with a positive sum",
            got: format!("{:?}", modes.weights),
        });
    }
    if !(modes.std.is_finite() && modes.std >= 0.0) {
        return Err(MetricError::BadOption {
            option: "modes",
            expected: "a finite std ≥ 0",
            got: modes.std.to_string(),
        });
    }
    let radius = MODE_RADIUS_STDS * modes.std;
    let radius_sq = radius * radius;
    let mut counts = vec![0usize; centres.n];
    for i in 0..e.n {
        let x = e.row(i);
        let (nearest, d) = (0..centres.n)
            .map(|m| (m, super::sq_dist(x, centres.row(m))))
            .fold(
                (0, f64::INFINITY),
                |best, c| if c.1 < best.1 { c } else { best },
            );
        if d <= radius_sq {
            counts[nearest] += 1;
        }
    }
    let on_mode: usize = counts.iter().sum();
    let mode_weight_tv = if on_mode == 0 {
        1.0
    } else {
        0.5 * counts
            .iter()
            .zip(&modes.weights)
            .map(|(&c, &w)| (c as f64 / on_mode as f64 - w / total).abs())
            .sum::<f64>()
    };
    Ok(ModeResult {
        mode_fraction: on_mode as f64 / e.n as f64,
        mode_weight_tv,
        counts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_modes(weights: [f64; 2]) -> Modes {
        Modes {
            dim: 2,
            centres: vec![0.0, 0.0, 10.0, 0.0],
            std: 1.0,
            weights: weights.to_vec(),
        }
    }

    /// Six samples around modes at (0, 0) and (10, 0) with σ = 1 (radius 3).
    const SAMPLES: [f64; 12] = [
        0.0, 0.0, // mode 0, distance 0
        1.0, 1.0, // mode 0, distance √2
        3.0, 0.0, // mode 0, distance exactly 3: inside (closed ball)
        5.0, 0.0, // 5 from both: off-mode
        10.0, 2.0, // mode 1, distance 2
        0.0, -4.0, // 4 from mode 0: off-mode
    ];

    #[test]
    fn mode_metrics_match_a_hand_count() {
        // On-mode: 4 of 6 → 2/3; shares (3/4, 1/4).
        let r = mode_metrics(&SAMPLES, 2, &two_modes([0.75, 0.25])).unwrap();
        assert_eq!(r.mode_fraction, 2.0 / 3.0);
        assert_eq!(r.counts, vec![3, 1]);
        assert_eq!(r.mode_weight_tv, 0.0);
        // Against (1/2, 1/2): ½(|3/4 − 1/2| + |1/4 − 1/2|) = 1/4; weights need not sum to 1.
        let r = mode_metrics(&SAMPLES, 2, &two_modes([2.0, 2.0])).unwrap();
        assert_eq!(r.mode_weight_tv, 0.25);
        // A dropped mode: all on-mode samples in mode 0 against (1/4, 3/4) → ½(3/4 + 3/4) = 3/4.
        let r = mode_metrics(&SAMPLES[..6], 2, &two_modes([0.25, 0.75])).unwrap();
        assert_eq!((r.mode_fraction, r.mode_weight_tv), (1.0, 0.75));
    }

    #[test]
    fn no_sample_near_a_mode_scores_the_worst_tv() {
        let r = mode_metrics(&[5.0, 0.0, 0.0, -4.0], 2, &two_modes([0.5, 0.5])).unwrap();
        assert_eq!((r.mode_fraction, r.mode_weight_tv), (0.0, 1.0));
    }

    #[test]
    fn samples_go_to_the_nearest_of_overlapping_modes() {
        // σ = 1 balls of radius 3 around 0 and 4 overlap on [1, 3]; 2.5 goes to 4, 2 (a tie) to 0.
        let modes = Modes {
            dim: 1,
            centres: vec![0.0, 4.0],
            std: 1.0,
            weights: vec![0.5, 0.5],
        };
        let r = mode_metrics(&[2.5, 2.0, 1.0], 1, &modes).unwrap();
        assert_eq!(r.counts, vec![2, 1]);
    }

    #[test]
    fn mode_metrics_validate_inputs() {
        let bad_weights = Modes {
            weights: vec![1.0],
            ..two_modes([0.5, 0.5])
        };
        assert!(matches!(
            mode_metrics(&SAMPLES, 2, &bad_weights),
            Err(MetricError::BadOption { .. })
        ));
        assert!(mode_metrics(&SAMPLES, 2, &two_modes([0.0, 0.0])).is_err());
        assert!(mode_metrics(&SAMPLES[..3], 3, &two_modes([0.5, 0.5])).is_err());
        assert!(matches!(
            mode_metrics(&[], 2, &two_modes([0.5, 0.5])),
            Err(MetricError::TooFew { .. })
        ));
    }
}

//! Tail error of log-quantiles (MSLE): DLPM/bem's discrete variant and JL v1's integral
//! (papers.md §2.10).

use super::{MetricError, Points};

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
    use super::super::test_util::blob;
    use super::*;

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

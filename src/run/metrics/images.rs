//! Discrete image data: mapping values back to their levels, and the per-pixel histogram
//! baseline for bits per dimension.
//!
//! Image data take `levels` values per pixel, x_k = −1 + 2k/(levels − 1) (`run::images`).
//! [`histogram_bpd`] is the simplest likelihood model of such data: every pixel independent,
//! with its own categorical law fitted on the training images by counting, plus one
//! (Laplace smoothing, so that a level never seen in training keeps a positive probability):
//!
//! p_j(k) = (count_j(k) + 1) / (N_train + levels),
//!
//! and bits per dimension of a test image x = −Σ_j log₂ p_j(x_j) / dim. Any model that learns
//! dependencies between pixels should beat it; a diffusion model's bits/dim are comparable
//! when it uses the same discretisation (a decoder over the same `levels`).

use super::MetricError;

/// Level indices of `values` on the grid of `levels` values −1 + 2k/(levels − 1): the nearest
/// level, refused when a value is off the grid by more than 0.1 % of the grid spacing (data
/// values are exact up to f32 rounding; samples must be quantised first).
pub fn level_indices(values: &[f32], levels: usize) -> Result<Vec<u16>, MetricError> {
    if !(2..=usize::from(u16::MAX) + 1).contains(&levels) {
        return Err(MetricError::BadOption {
            option: "levels",
            expected: "a whole number in 2..=65536",
            got: levels.to_string(),
        });
    }
    let step = 2.0 / (levels - 1) as f64;
    values
        .iter()
        .enumerate()
        .map(|(index, &v)| {
            let x = f64::from(v);
            let k = ((x + 1.0) / step).round();
            let on_grid = x.is_finite()
                && (0.0..levels as f64).contains(&k)
                && (x - (-1.0 + k * step)).abs() <= 1e-3 * step;
            if on_grid {
                Ok(k as u16)
            } else {
                Err(MetricError::OffGrid {
                    index,
                    value: v,
                    levels,
                })
            }
        })
        .collect()
}

/// Bits per dimension of the `test` images under a per-pixel independent categorical model
/// fitted on the `train` images with add-one smoothing (see the module docs). Both are flat
/// level indices, `dim` per image, each below `levels`. Returns the mean over test images and
/// its standard error (sample std over images / √n).
pub fn histogram_bpd(
    train: &[u16],
    test: &[u16],
    dim: usize,
    levels: usize,
) -> Result<(f64, f64), MetricError> {
    const NAME: &str = "histogram_bpd";
    if dim == 0 {
        return Err(MetricError::ZeroDim { name: NAME });
    }
    super::check_at_least("levels", levels, 2)?;
    for (data, min) in [(train, 1), (test, 2)] {
        if data.len() % dim != 0 {
            return Err(MetricError::Ragged {
                name: NAME,
                len: data.len(),
                dim,
            });
        }
        if data.len() / dim < min {
            return Err(MetricError::TooFew {
                name: NAME,
                n: data.len() / dim,
                min,
            });
        }
        if let Some(index) = data.iter().position(|&k| usize::from(k) >= levels) {
            return Err(MetricError::LevelOutOfRange {
                name: NAME,
                index,
                level: data[index],
                levels,
            });
        }
    }
    let mut counts = vec![0u32; dim * levels];
    for image in train.chunks_exact(dim) {
        for (j, &k) in image.iter().enumerate() {
            counts[j * levels + usize::from(k)] += 1;
        }
    }
    let n_train = (train.len() / dim) as f64;
    let log_norm = (n_train + levels as f64).log2();
    let bits: Vec<f64> = test
        .chunks_exact(dim)
        .map(|image| {
            let nll: f64 = image
                .iter()
                .enumerate()
                .map(|(j, &k)| {
                    log_norm - (f64::from(counts[j * levels + usize::from(k)]) + 1.0).log2()
                })
                .sum();
            nll / dim as f64
        })
        .collect();
    let n = bits.len() as f64;
    let mean = bits.iter().sum::<f64>() / n;
    let var = bits.iter().map(|b| (b - mean).powi(2)).sum::<f64>() / (n - 1.0);
    Ok((mean, (var / n).sqrt()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_come_back_from_their_values() {
        let values: Vec<f32> = (0..17).map(|k| -1.0 + 2.0 * k as f32 / 16.0).collect();
        let k = level_indices(&values, 17).unwrap();
        assert_eq!(k, (0..17).collect::<Vec<u16>>());
        let bytes: Vec<f32> = (0..256)
            .map(|k| crate::run::images::level_value(k, 256))
            .collect();
        assert_eq!(
            level_indices(&bytes, 256).unwrap(),
            (0..256).collect::<Vec<u16>>()
        );
        // Off the grid, out of [−1, 1], or not finite: refused with the position.
        for bad in [0.01, 1.2, -1.2, f32::NAN, f32::INFINITY] {
            let e = level_indices(&[0.0, bad], 17).unwrap_err();
            assert!(
                matches!(
                    e,
                    MetricError::OffGrid {
                        index: 1,
                        levels: 17,
                        ..
                    }
                ),
                "{bad}: {e}"
            );
        }
        assert!(level_indices(&[0.0], 1).is_err());
    }

    /// Two pixels, two levels, three training images (0,0), (0,1), (1,1): pixel 0 has counts
    /// (2, 1) → p = (3/5, 2/5); pixel 1 has (1, 2) → p = (2/5, 3/5).
    #[test]
    fn a_hand_computed_case() {
        let train = [0, 0, 0, 1, 1, 1];
        let test = [0, 1, 1, 0];
        let (mean, stderr) = histogram_bpd(&train, &test, 2, 2).unwrap();
        // Test (0, 1): −(log₂ 3/5 + log₂ 3/5)/2; test (1, 0): −(log₂ 2/5 + log₂ 2/5)/2.
        let a = -(0.6f64).log2();
        let b = -(0.4f64).log2();
        assert!((mean - (a + b) / 2.0).abs() < 1e-12, "{mean}");
        // Two values a and b: sample std |a − b|/√2, standard error |a − b|/2.
        assert!((stderr - (a - b).abs() / 2.0).abs() < 1e-12, "{stderr}");
        // One training image (0, 1, 2, 3) of four levels: a seen level has p = 2/5, an unseen
        // one 1/5 (smoothing), whatever the pixel.
        let (mean, _) = histogram_bpd(&[0, 1, 2, 3], &[0, 1, 2, 3, 3, 2, 1, 0], 4, 4).unwrap();
        let want = (-(0.4f64).log2() - (0.2f64).log2()) / 2.0;
        assert!((mean - want).abs() < 1e-12, "{mean} vs {want}");
    }

    #[test]
    fn bad_inputs_are_refused() {
        assert!(matches!(
            histogram_bpd(&[0, 1, 2], &[0, 1], 2, 4),
            Err(MetricError::Ragged { .. })
        ));
        assert!(matches!(
            histogram_bpd(&[0, 1], &[0, 1], 2, 4),
            Err(MetricError::TooFew { n: 1, min: 2, .. })
        ));
        assert!(matches!(
            histogram_bpd(&[0, 9], &[0, 1, 1, 1], 2, 4),
            Err(MetricError::LevelOutOfRange {
                index: 1,
                level: 9,
                ..
            })
        ));
        assert!(histogram_bpd(&[0], &[0, 0], 0, 4).is_err());
    }

    /// The baseline on the real 8×8 digits (the scikit-learn wheel, fetched once into the data
    /// cache): train on the 1437-image split, evaluate on the 360 test images.
    #[test]
    fn digits_histogram_baseline() {
        use crate::run::images::{shared, DIGITS};
        let set = shared(&DIGITS).unwrap();
        let values = |split: &str, n: usize| set.split_values(split, n).unwrap();
        let train = level_indices(&values("train", 1437), 17).unwrap();
        let test = level_indices(&values("test", 360), 17).unwrap();
        let (bpd, stderr) = histogram_bpd(&train, &test, 64, 17).unwrap();
        eprintln!("digits histogram baseline: {bpd:.4} ± {stderr:.4} bits/dim");
        assert!((2.3..2.6).contains(&bpd), "{bpd} ± {stderr}");
        assert!(stderr > 0.0 && stderr < 0.05, "{stderr}");
    }
}

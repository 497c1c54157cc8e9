//! Set-valued data for trans-dimensional models (`state = set(max = N, of = vec(d))`).
//!
//! A set is n ≤ N components of d numbers each. Sets travel through the flat
//! [`Dataset`](super::data::Dataset) as rows of N·d numbers, component-major
//! (`row[j*d..(j+1)*d]` is component j), with absent components all-NaN; `.npy` files hold
//! `(n, N_file, d)` float arrays padded the same way (N_file ≤ N). [`SetData`] is the validated,
//! compacted form: each set's present components first, its count beside it.

use std::path::{Path, PathBuf};

use super::data::Dataset;
use super::npy::{read_npy_nan_padded, write_npy_f32, NpyError};

/// Sets of up to `max` components of `component` numbers each, validated and compacted.
#[derive(Clone, Debug, PartialEq)]
pub struct SetData {
    /// Largest number of components a set may have (the state's N).
    pub max: usize,
    /// Numbers per component (the state's d).
    pub component: usize,
    /// Components of each set, each in `1..=max`.
    pub counts: Vec<usize>,
    /// `len · max · component` numbers: set i occupies `i·max·component ..`, its `counts[i]`
    /// present components first, zeros after.
    pub values: Vec<f32>,
}

/// Why rows or a file are not valid set data. Rows count from 0, as numpy indexes them.
#[derive(Debug, thiserror::Error)]
pub enum SetDataError {
    #[error("sets need at least one component of at least one number (got max = {max}, component size {component})")]
    ZeroSize { max: usize, component: usize },
    #[error(
        "{len} numbers are not a whole number of sets of {n_file} components × {component} numbers"
    )]
    Ragged {
        len: usize,
        n_file: usize,
        component: usize,
    },
    #[error("set {row}, component {index}: {missing} of its {component} numbers are NaN and the others are not; an absent component is NaN in every number, a present one in none")]
    PartlyMissing {
        row: usize,
        index: usize,
        missing: usize,
        component: usize,
    },
    #[error("set {row} has no component (every number is NaN); a set needs at least one")]
    NoComponent { row: usize },
    #[error("set {row} has {count} components but the state allows max = {max}")]
    TooMany {
        row: usize,
        count: usize,
        max: usize,
    },
    #[error("set {row}, component {index}: value {value} is not finite; only NaN (marking an absent component) is allowed")]
    NonFinite {
        row: usize,
        index: usize,
        value: f32,
    },
    #[error(transparent)]
    Npy(#[from] NpyError),
    #[error("{path}: shape {shape:?} is not an array of sets; save sets of up to {max} components of {component} numbers as an (n, N, {component}) array with N ≤ {max} and NaN for absent components")]
    Shape {
        path: PathBuf,
        shape: Vec<usize>,
        max: usize,
        component: usize,
    },
    #[error("{path}: {source}")]
    InFile {
        path: PathBuf,
        source: Box<SetDataError>,
    },
}

impl SetData {
    /// Number of sets.
    pub fn len(&self) -> usize {
        self.counts.len()
    }

    /// True when there are no sets.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// Numbers one set occupies in [`Self::values`] (`max · component`).
    fn stride(&self) -> usize {
        self.max * self.component
    }

    /// The `counts[i] · component` present numbers of set i (panics if `i ≥ len()`, like
    /// slice indexing).
    pub fn set(&self, i: usize) -> &[f32] {
        let start = i * self.stride();
        &self.values[start..start + self.counts[i] * self.component]
    }

    /// Validates NaN-padded flat rows of `n_file · component` numbers (component-major) and
    /// compacts each set's present components to the front. `n_file` may exceed `max` as long
    /// as no set has more than `max` present components.
    pub fn from_padded_rows(
        rows: &[f32],
        n_file: usize,
        component: usize,
        max: usize,
    ) -> Result<SetData, SetDataError> {
        if max == 0 || component == 0 || n_file == 0 {
            return Err(SetDataError::ZeroSize { max, component });
        }
        let row_len = n_file * component;
        if !rows.len().is_multiple_of(row_len) {
            return Err(SetDataError::Ragged {
                len: rows.len(),
                n_file,
                component,
            });
        }
        let n = rows.len() / row_len;
        let mut counts = Vec::with_capacity(n);
        let mut values = Vec::with_capacity(n * max * component);
        for (row, set) in rows.chunks_exact(row_len).enumerate() {
            let start = values.len();
            let mut count = 0;
            for (index, c) in set.chunks_exact(component).enumerate() {
                let missing = c.iter().filter(|v| v.is_nan()).count();
                if missing == component {
                    continue;
                }
                if missing > 0 {
                    return Err(SetDataError::PartlyMissing {
                        row,
                        index,
                        missing,
                        component,
                    });
                }
                if let Some(&value) = c.iter().find(|v| v.is_infinite()) {
                    return Err(SetDataError::NonFinite { row, index, value });
                }
                count += 1;
                if count > max {
                    let count = set
                        .chunks_exact(component)
                        .filter(|c| !c.iter().all(|v| v.is_nan()))
                        .count();
                    return Err(SetDataError::TooMany { row, count, max });
                }
                values.extend_from_slice(c);
            }
            if count == 0 {
                return Err(SetDataError::NoComponent { row });
            }
            values.resize(start + max * component, 0.0);
            counts.push(count);
        }
        Ok(SetData {
            max,
            component,
            counts,
            values,
        })
    }

    /// Sets from a flat data set whose rows are `n_file · component` NaN-padded numbers (the
    /// layout a set generator produces).
    pub fn from_dataset(
        data: &Dataset,
        component: usize,
        max: usize,
    ) -> Result<SetData, SetDataError> {
        if component == 0 || !data.dim.is_multiple_of(component) {
            return Err(SetDataError::Ragged {
                len: data.dim,
                n_file: 1,
                component,
            });
        }
        SetData::from_padded_rows(&data.rows, data.dim / component, component, max)
    }

    /// Reads an `(n, N_file, component)` `.npy` file with NaN padding (N_file may be below
    /// `max`; a 2-D `(n, component)` array is read as sets of one component).
    pub fn load_npy(
        path: impl AsRef<Path>,
        max: usize,
        component: usize,
    ) -> Result<SetData, SetDataError> {
        let path = path.as_ref();
        let array = read_npy_nan_padded(path)?;
        let n_file = match array.shape[1..] {
            [n_file, d] if d == component && n_file >= 1 => n_file,
            [d] if d == component => 1,
            _ => {
                return Err(SetDataError::Shape {
                    path: path.to_path_buf(),
                    shape: array.shape,
                    max,
                    component,
                })
            }
        };
        if array.rows == 0 {
            return Err(NpyError::Empty {
                path: path.to_path_buf(),
                shape: array.shape,
            }
            .into());
        }
        SetData::from_padded_rows(&array.data, n_file, component, max).map_err(|e| {
            SetDataError::InFile {
                path: path.to_path_buf(),
                source: Box::new(e),
            }
        })
    }

    /// `len · max · component` numbers with NaN for absent components: the layout of a
    /// [`Dataset`] row and of an `(n, max, component)` `samples.npy`.
    pub fn to_padded(&self) -> Vec<f32> {
        let mut out = self.values.clone();
        for (i, &k) in self.counts.iter().enumerate() {
            let start = i * self.stride();
            out[start + k * self.component..start + self.stride()].fill(f32::NAN);
        }
        out
    }

    /// The sets as a flat data set of `max · component` numbers per row, NaN padded.
    pub fn to_dataset(&self) -> Dataset {
        Dataset {
            dim: self.stride(),
            rows: self.to_padded(),
        }
    }

    /// Fraction of sets with k components, at index k − 1 (length `max`; all zeros when empty).
    pub fn count_histogram(&self) -> Vec<f64> {
        let mut hist = vec![0.0; self.max];
        for &k in &self.counts {
            // Counts are in 1..=max by construction; anything else is left out, not a panic.
            if let Some(h) = k.checked_sub(1).and_then(|i| hist.get_mut(i)) {
                *h += 1.0;
            }
        }
        let n = self.len().max(1) as f64;
        hist.iter_mut().for_each(|h| *h /= n);
        hist
    }

    /// The sets with exactly `k` components, in order.
    pub fn with_count(&self, k: usize) -> Vec<&[f32]> {
        (0..self.len())
            .filter(|&i| self.counts[i] == k)
            .map(|i| self.set(i))
            .collect()
    }

    /// The first `n` sets and the rest (`n` is clamped to `len()`).
    pub fn split_at(&self, n: usize) -> (SetData, SetData) {
        let n = n.min(self.len());
        let cut = n * self.stride();
        let part = |counts: &[usize], values: &[f32]| SetData {
            max: self.max,
            component: self.component,
            counts: counts.to_vec(),
            values: values.to_vec(),
        };
        (
            part(&self.counts[..n], &self.values[..cut]),
            part(&self.counts[n..], &self.values[cut..]),
        )
    }
}

/// Writes `sets` as a float32 `(n, max, component)` `.npy` file with NaN for absent components,
/// atomically.
pub fn write_sets_npy(path: impl AsRef<Path>, sets: &SetData) -> Result<(), NpyError> {
    write_npy_f32(
        path,
        &[sets.len(), sets.max, sets.component],
        &sets.to_padded(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::data::{generate, ParamValue};

    const N: f32 = f32::NAN;

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    #[test]
    fn padded_rows_are_compacted_and_padded_back() {
        // Three sets of up to 3 components in 2-D; absent components anywhere in a row.
        let rows = [
            1.0, 2.0, N, N, 3.0, 4.0, // 2 components, a gap in the middle
            N, N, N, N, 5.0, 6.0, // 1 component, last
            7.0, 8.0, 9.0, 10.0, 11.0, 12.0, // full
        ];
        let s = SetData::from_padded_rows(&rows, 3, 2, 3).unwrap();
        assert_eq!((s.len(), s.counts.clone()), (3, vec![2, 1, 3]));
        assert_eq!(s.set(0), &[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(s.set(1), &[5.0, 6.0]);
        assert_eq!(s.set(2), &[7.0, 8.0, 9.0, 10.0, 11.0, 12.0]);
        assert_eq!(&s.values[4..6], &[0.0, 0.0]);
        let back = [
            1.0, 2.0, 3.0, 4.0, N, N, 5.0, 6.0, N, N, N, N, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0,
        ];
        assert_eq!(bits(&s.to_padded()), bits(&back));
        let h = s.count_histogram();
        assert_eq!(h, vec![1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0]);
        assert_eq!(s.with_count(2), vec![&[1.0f32, 2.0, 3.0, 4.0][..]]);
        assert!(s.with_count(4).is_empty());
        let (a, b) = s.split_at(1);
        assert_eq!((a.counts, b.counts.clone()), (vec![2], vec![1, 3]));
        assert_eq!(b.set(1), s.set(2));
        let (all, none) = s.split_at(10);
        assert_eq!((all.len(), none.len(), none.is_empty()), (3, 0, true));
        // Fewer file components than the state's max: padded up to max.
        let narrow = SetData::from_padded_rows(&[1.0, 2.0, N, N], 2, 2, 4).unwrap();
        assert_eq!((narrow.counts.clone(), narrow.values.len()), (vec![1], 8));
        assert_eq!(narrow.count_histogram(), vec![1.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn bad_rows_are_named() {
        let partly = SetData::from_padded_rows(&[1.0, 2.0, 3.0, N, 0.0, 0.0], 1, 2, 3);
        match partly {
            Err(
                e @ SetDataError::PartlyMissing {
                    row: 1, index: 0, ..
                },
            ) => {
                assert!(e.to_string().contains("set 1, component 0"), "{e}");
            }
            other => panic!("{other:?}"),
        }
        let empty = SetData::from_padded_rows(&[1.0, 2.0, N, N, N, N, N, N], 2, 2, 2);
        assert!(matches!(empty, Err(SetDataError::NoComponent { row: 1 })));
        let many = SetData::from_padded_rows(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 3, 2, 2);
        match many {
            Err(
                e @ SetDataError::TooMany {
                    row: 0,
                    count: 3,
                    max: 2,
                },
            ) => {
                assert!(e.to_string().contains("allows max = 2"), "{e}");
            }
            other => panic!("{other:?}"),
        }
        let inf = SetData::from_padded_rows(&[1.0, f32::INFINITY], 1, 2, 2);
        assert!(matches!(
            inf,
            Err(SetDataError::NonFinite {
                row: 0,
                index: 0,
                ..
            })
        ));
        let ragged = SetData::from_padded_rows(&[1.0, 2.0, 3.0], 1, 2, 2);
        assert!(matches!(ragged, Err(SetDataError::Ragged { len: 3, .. })));
        assert!(matches!(
            SetData::from_padded_rows(&[1.0], 1, 1, 0),
            Err(SetDataError::ZeroSize { .. })
        ));
    }

    #[test]
    fn npy_round_trip_keeps_the_padding() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sets.npy");
        let args = [("max".to_string(), ParamValue::Number(5.0))];
        let d = generate("ring_sets", 40, 3, &args).unwrap();
        let s = SetData::from_dataset(&d, 2, 5).unwrap();
        assert_eq!(bits(&s.to_dataset().rows), bits(&d.rows));
        write_sets_npy(&path, &s).unwrap();
        let back = SetData::load_npy(&path, 5, 2).unwrap();
        assert_eq!(back, s);
        // A file with fewer components than the state allows is padded up; more is refused
        // only when a set really has more.
        let wider = SetData::load_npy(&path, 7, 2).unwrap();
        assert_eq!((wider.counts.clone(), wider.max), (s.counts.clone(), 7));
        assert!(matches!(
            SetData::load_npy(&path, 5, 3),
            Err(SetDataError::Shape { .. })
        ));
        write_npy_f32(&path, &[1, 2, 2], &[1.0, 2.0, 3.0, N]).unwrap();
        match SetData::load_npy(&path, 5, 2) {
            Err(e @ SetDataError::InFile { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains("sets.npy: set 0, component 1"), "{msg}");
            }
            other => panic!("{other:?}"),
        }
    }
}

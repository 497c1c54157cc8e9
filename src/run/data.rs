//! Built-in data sources: seeded 2-D toy generators, a Gaussian blob, and ring-shaped point
//! sets for trans-dimensional models.
//!
//! A `.diff` file writes `data = swiss_roll(n = 20000, noise = 0.5)`; the front end looks the name
//! up with [`generator`], and [`GeneratorSpec::generate`] validates the arguments and draws the
//! points. Point `i` uses its own stream `rng::stream(seed, Purpose::Data, 0, i)`, so the first `m`
//! points of a data set of size `n > m` are exactly the data set of size `m` (the one exception,
//! swiss roll's default `standardize = "sample"`, applies an affine map computed from all points;
//! see [`SWISS_ROLL_PARAMS`]).
//!
//! Formulas follow `/work/shared/data.md` §3 (sklearn / FFJORD / DLPM conventions); where those
//! use evenly spaced or shuffled values (sklearn moons, circles), we draw the position along the
//! curve uniformly instead, which has the same distribution and keeps points independent of `n`.
//!
//! A generator of sets ([`Output::Sets`], e.g. `ring_sets`) produces the same flat [`Dataset`]:
//! row `i` holds set `i` as `max · component` numbers, component-major, its present components
//! first and the absent ones all-NaN (`run::sets::SetData` reads and validates such rows).
//!
//! An image source ([`Output::Images`]: `digits`, `mnist`, `mnist5k`, see `run::images`) gives
//! row `i` = image `i` as `channels · height · width` numbers, row-major over `(C, H, W)`, each
//! on the grid x_k = −1 + 2k/(levels − 1) of its `levels` values.

use std::f64::consts::PI;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

use super::npy::{read_npy, write_npy_f32, NpyError};
use crate::rng::{stream, Purpose};

/// Most values (points × dimension) one generator call may produce: 2 GB of `f32`.
pub const MAX_VALUES: usize = 500_000_000;

/// A data set stored flat and row-major: row `i` is `rows[i * dim .. (i + 1) * dim]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// Number of coordinates per point (≥ 1).
    pub dim: usize,
    /// `n * dim` values, row-major.
    pub rows: Vec<f32>,
}

impl Dataset {
    /// Number of points.
    pub fn len(&self) -> usize {
        self.rows.len().checked_div(self.dim).unwrap_or(0)
    }

    /// True when the data set holds no points.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Point `i` (panics if `i >= len()`, like slice indexing).
    pub fn row(&self, i: usize) -> &[f32] {
        &self.rows[i * self.dim..(i + 1) * self.dim]
    }

    /// Loads a data set from a `.npy` file: an `(n, d, …)` array becomes `n` points of
    /// `d·…` coordinates, a 1-D array `n` one-dimensional points.
    pub fn load_npy(path: impl AsRef<std::path::Path>) -> Result<Dataset, NpyError> {
        let array = read_npy(path.as_ref())?;
        if array.rows == 0 || array.cols == 0 {
            return Err(NpyError::Empty {
                path: path.as_ref().to_path_buf(),
                shape: array.shape,
            });
        }
        Ok(Dataset {
            dim: array.cols,
            rows: array.data,
        })
    }

    /// Saves the points as a float32 `(n, dim)` `.npy` file (atomically).
    pub fn save_npy(&self, path: impl AsRef<std::path::Path>) -> Result<(), NpyError> {
        write_npy_f32(path, &[self.len(), self.dim], &self.rows)
    }

    /// The values widened to `f64` (the layout the metrics take).
    pub fn to_f64(&self) -> Vec<f64> {
        self.rows.iter().map(|&v| f64::from(v)).collect()
    }
}

/// Errors from looking up or running a generator.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DataError {
    #[error("unknown data generator `{name}`; available generators: {}", GENERATORS.join(", "))]
    UnknownGenerator { name: String },
    #[error("`{generator}` with n = {n} would produce {values} values, more than the limit {MAX_VALUES}; use fewer points")]
    TooLarge {
        generator: &'static str,
        n: usize,
        values: usize,
    },
    #[error("`{generator}` has no parameter `{param}`; valid parameters: {valid}")]
    UnknownParam {
        generator: &'static str,
        param: String,
        valid: String,
    },
    #[error("parameter `{param}` of `{generator}` is given twice; keep one of them")]
    DuplicateParam {
        generator: &'static str,
        param: String,
    },
    #[error("`{generator}` needs the parameter `{param}` (e.g. `{generator}({param} = 20000)`)")]
    MissingParam {
        generator: &'static str,
        param: &'static str,
    },
    #[error("`{generator}`: {message}")]
    Source {
        generator: &'static str,
        message: String,
    },
    #[error("parameter `{param}` of `{generator}` must be {expected}; got {got}")]
    BadValue {
        generator: &'static str,
        param: &'static str,
        expected: String,
        got: String,
    },
}

/// A value written for a generator parameter.
#[derive(Clone, Debug, PartialEq)]
pub enum ParamValue {
    /// A number, e.g. `noise = 0.5`.
    Number(f64),
    /// A list of numbers, e.g. `weights = [0.2, 0.8]`.
    List(Vec<f64>),
    /// A word or string, e.g. `standardize = "population"`.
    Text(String),
}

impl std::fmt::Display for ParamValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParamValue::Number(v) => write!(f, "{v}"),
            ParamValue::List(v) => write!(f, "{v:?}"),
            ParamValue::Text(s) => write!(f, "\"{s}\""),
        }
    }
}

/// One parameter a generator accepts, with its default (`None` = required).
#[derive(Clone, Copy, Debug)]
pub struct ParamSpec {
    pub name: &'static str,
    /// Default written as it would appear in a `.diff` file; `None` for a required parameter.
    pub default: Option<&'static str>,
    pub doc: &'static str,
}

/// Sampling function: validated arguments, number of points, seed.
type SampleFn = fn(&Args, usize, u64) -> Result<Dataset, DataError>;

/// Mixture components of a generator whose law is a known isotropic Gaussian mixture.
type ModesFn = fn(&Args) -> Result<Modes, DataError>;

/// What a generator draws: points, or sets of points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// Points of a fixed dimension (2, or the `dim` parameter).
    Points,
    /// Sets of up to `max` components (the generator's `max` parameter), each `component`
    /// numbers, as NaN-padded rows of `max · component` numbers.
    Sets { component: usize },
    /// Images of `channels × height × width` pixels, rows `(C, H, W)` row-major, each pixel one
    /// of `levels` equally spaced values −1 + 2k/(levels − 1) on [−1, 1].
    Images {
        channels: usize,
        height: usize,
        width: usize,
        levels: usize,
    },
}

/// Largest `max` a set generator accepts (a set state this large is far beyond any use).
pub const MAX_SET_SIZE: usize = 4096;

/// A registered generator: its name, documentation, parameters and sampler.
pub struct GeneratorSpec {
    pub name: &'static str,
    pub doc: &'static str,
    /// Accepted parameters besides `n` (the number of points, always required).
    pub params: &'static [ParamSpec],
    /// Points or sets; the checker matches it against the process's state.
    pub output: Output,
    /// True for a fixed real data set read through the data cache (`run::fetch`, e.g. `qm9`):
    /// its rows do not depend on the seed, and its first use may download it.
    pub real_data: bool,
    /// An image data set's splits and their sizes (empty for every other source), so that
    /// `difc check` can refuse more images than a split holds without reading any file.
    pub splits: &'static [(&'static str, usize)],
    sample: SampleFn,
    /// `Some` for the generators whose data are a mixture of isotropic Gaussians with known
    /// centres, std and weights (the mode metrics need them).
    modes: Option<ModesFn>,
}

/// The components of an isotropic Gaussian mixture: the law a mode-aware generator samples.
///
/// The generator draws from exactly these numbers (its sampler reads them, or the same
/// constants), so the mode metrics and the data cannot drift apart.
#[derive(Clone, Debug, PartialEq)]
pub struct Modes {
    /// Coordinates per centre.
    pub dim: usize,
    /// Centres, flat row-major `(count, dim)`.
    pub centres: Vec<f64>,
    /// Standard deviation of every coordinate of every component.
    pub std: f64,
    /// Component probabilities, one per centre, summing to 1.
    pub weights: Vec<f64>,
}

impl Modes {
    /// Number of components.
    pub fn len(&self) -> usize {
        self.weights.len()
    }

    /// True when there are no components (never for a built-in generator).
    pub fn is_empty(&self) -> bool {
        self.weights.is_empty()
    }

    /// Centre `m`.
    pub fn centre(&self, m: usize) -> &[f64] {
        &self.centres[m * self.dim..(m + 1) * self.dim]
    }
}

/// Names of all built-in generators.
pub const GENERATORS: &[&str] = &[
    "swiss_roll",
    "grid_gmm",
    "moons",
    "eight_gaussians",
    "checkerboard",
    "circles",
    "gaussian",
    "ring_sets",
    "qm9",
    "digits",
    "mnist",
    "mnist5k",
];

/// Component weights of DLPM's deliberately unbalanced 3×3 grid (row-major over `(i, j)`).
pub const DLPM_UNBALANCED_3X3: [f64; 9] = [0.01, 0.1, 0.3, 0.2, 0.02, 0.15, 0.02, 0.15, 0.05];

const fn p(name: &'static str, default: &'static str, doc: &'static str) -> ParamSpec {
    ParamSpec {
        name,
        default: Some(default),
        doc,
    }
}

/// Swiss roll parameters. `standardize`: `"sample"` (DLPM: subtract one scalar mean and divide by
/// one population std computed over all 2n coordinates of this sample), `"population"` (the same
/// map with the exact mean and std of the distribution, so points do not depend on `n`), or
/// `"none"` (raw sklearn coordinates, roughly [−10, 13]²). The result is then multiplied by `scale`.
pub const SWISS_ROLL_PARAMS: &[ParamSpec] = &[
    p(
        "noise",
        "0.5",
        "std of the Gaussian noise added to x and z (sklearn units)",
    ),
    p(
        "standardize",
        "\"sample\"",
        "\"sample\" (DLPM), \"population\" or \"none\"",
    ),
    p("scale", "1.0", "factor applied after standardisation"),
];
const GRID_GMM_PARAMS: &[ParamSpec] = &[
    p("k", "3", "grid side: k×k components on [−1, 1]²"),
    p("std", "0.1", "isotropic std of every component"),
    p(
        "weights",
        "\"uniform\"",
        "k² weights (row-major), \"uniform\" or \"dlpm_unbalanced\" (3×3)",
    ),
];
const MOONS_PARAMS: &[ParamSpec] = &[
    p("noise", "0.1", "std of the Gaussian noise (sklearn units)"),
    p(
        "scale",
        "2.0",
        "output = scale·(x − (0.5, 0.25)); 2 ≈ FFJORD's layout",
    ),
];
const EIGHT_GAUSSIANS_PARAMS: &[ParamSpec] = &[
    p("radius", "4.0", "distance of the centres from the origin"),
    p("std", "0.5", "std of each component"),
    p("scale", "0.7072", "final factor (FFJORD divides by 1.414)"),
];
const CHECKERBOARD_PARAMS: &[ParamSpec] = &[p("scale", "2.0", "side of one square (8 squares)")];
const CIRCLES_PARAMS: &[ParamSpec] = &[
    p("factor", "0.5", "inner radius / outer radius, in (0, 1)"),
    p(
        "noise",
        "0.08",
        "std of the Gaussian noise (unit-circle units)",
    ),
    p("scale", "3.0", "final factor (FFJORD uses 3)"),
];
const GAUSSIAN_PARAMS: &[ParamSpec] = &[
    p("dim", "2", "number of coordinates"),
    p("mean", "0.0", "a number or a list of `dim` numbers"),
    p(
        "std",
        "1.0",
        "a positive number or a list of `dim` positive numbers",
    ),
];

/// Ring sets: set `i` draws its size k from the count law, a start angle θ₀ ~ U(0, 2π), and
/// component j (0 ≤ j < k) at angle a_j = θ₀ + 2πj/k + jitter·N(0, 1), at the point
/// radius·(1 + noise·N(0, 1))·(cos a_j, sin a_j) + radius·noise·N(0, 1)·(−sin a_j, cos a_j)
/// (radial and tangential jitter of std radius·noise). Draw order: k, θ₀, then per component
/// the angle, radial and tangential normals.
const RING_SETS_PARAMS: &[ParamSpec] = &[
    p(
        "max",
        "8",
        "largest set size; must equal the state's `set(max = …)`",
    ),
    p("radius", "1.0", "radius of the ring"),
    p(
        "noise",
        "0.05",
        "radial and tangential jitter std, as a fraction of the radius",
    ),
    p("jitter", "0.15", "angle jitter std, in radians"),
    p(
        "counts",
        "\"skewed\"",
        "law of the set size k: \"skewed\" (p(k) ∝ max + 1 − k), \"uniform\", or a list of `max` weights",
    ),
];

/// QM9 molecules (`run::qm9`): the first n molecules of a cormorant split, each a set of atoms
/// of 9 numbers (centred position in Å, one-hot over H, C, N, O, F × 4, atomic number / 10).
/// The seed is not used. A run takes `data.n` training molecules and the next
/// `eval.reference` ones of the same split as its reference.
const QM9_PARAMS: &[ParamSpec] = &[
    p(
        "split",
        "\"train\"",
        "cormorant split: \"train\" (100000 molecules), \"valid\" (17748) or \"test\" (13083)",
    ),
    p(
        "max",
        "29",
        "largest set size, at least 29 (QM9's largest molecule); must equal the state's `set(max = …)`",
    ),
];

/// The 8×8 digits (`run::images::DIGITS`): the first n images of a fixed 80/20 split, numpy's
/// `RandomState(0).permutation(1797)` cut after 1437. The seed is not used.
const DIGITS_PARAMS: &[ParamSpec] = &[p(
    "split",
    "\"train\"",
    "\"train\" (1437 images) or \"test\" (360)",
)];
/// Full MNIST (`run::images::MNIST`): the first n images of a split, in file order.
const MNIST_PARAMS: &[ParamSpec] = &[p(
    "split",
    "\"train\"",
    "\"train\" (50000 images), \"valid\" (10000) or \"test\" (10000)",
)];
/// 5000 MNIST images (`run::images::MNIST5K`), split 4000/1000 by numpy's seed-0 permutation.
const MNIST5K_PARAMS: &[ParamSpec] = &[p(
    "split",
    "\"train\"",
    "\"train\" (4000 images) or \"test\" (1000)",
)];

/// The registry row's output for an image source.
const fn images(s: &super::images::Source) -> Output {
    Output::Images {
        channels: s.channels,
        height: s.height,
        width: s.width,
        levels: s.levels,
    }
}

static REGISTRY: &[GeneratorSpec] = &[
    GeneratorSpec {
        name: "swiss_roll",
        doc: "2-D swiss roll (sklearn make_swiss_roll, columns x and z)",
        params: SWISS_ROLL_PARAMS,
        output: Output::Points,
        real_data: false,
        splits: &[],
        sample: swiss_roll,
        modes: None,
    },
    GeneratorSpec {
        name: "grid_gmm",
        doc: "k×k grid of Gaussians on [−1, 1]² (DLPM sample_grid_gmm)",
        params: GRID_GMM_PARAMS,
        output: Output::Points,
        real_data: false,
        splits: &[],
        sample: grid_gmm,
        modes: Some(grid_modes),
    },
    GeneratorSpec {
        name: "moons",
        doc: "two interleaved half circles (sklearn make_moons)",
        params: MOONS_PARAMS,
        output: Output::Points,
        real_data: false,
        splits: &[],
        sample: moons,
        modes: None,
    },
    GeneratorSpec {
        name: "eight_gaussians",
        doc: "8 Gaussians on a circle (FFJORD)",
        params: EIGHT_GAUSSIANS_PARAMS,
        output: Output::Points,
        real_data: false,
        splits: &[],
        sample: eight_gaussians,
        modes: Some(eight_gaussians_modes),
    },
    GeneratorSpec {
        name: "checkerboard",
        doc: "uniform on 8 squares of a 4×4 checkerboard (FFJORD)",
        params: CHECKERBOARD_PARAMS,
        output: Output::Points,
        real_data: false,
        splits: &[],
        sample: checkerboard,
        modes: None,
    },
    GeneratorSpec {
        name: "circles",
        doc: "two concentric noisy circles (sklearn make_circles, FFJORD scaling)",
        params: CIRCLES_PARAMS,
        output: Output::Points,
        real_data: false,
        splits: &[],
        sample: circles,
        modes: None,
    },
    GeneratorSpec {
        name: "gaussian",
        doc: "axis-aligned Gaussian blob in any dimension",
        params: GAUSSIAN_PARAMS,
        output: Output::Points,
        real_data: false,
        splits: &[],
        sample: gaussian,
        modes: None,
    },
    GeneratorSpec {
        name: "ring_sets",
        doc: "sets of k points on a noisy ring, k from a skewed law on 1..max (trans-dimensional)",
        params: RING_SETS_PARAMS,
        output: Output::Sets { component: 2 },
        real_data: false,
        splits: &[],
        sample: ring_sets,
        modes: None,
    },
    GeneratorSpec {
        name: "qm9",
        doc: "QM9 molecules with hydrogens as sets of up to 29 atoms (EDM conventions; downloaded once into the data cache)",
        params: QM9_PARAMS,
        output: Output::Sets {
            component: super::qm9::COMPONENT,
        },
        real_data: true,
        splits: &[],
        sample: qm9,
        modes: None,
    },
    GeneratorSpec {
        name: "digits",
        doc: "sklearn's 8×8 handwritten digits, 17 grey levels, 1797 images split 1437/360 (downloaded once into the data cache)",
        params: DIGITS_PARAMS,
        output: images(&super::images::DIGITS),
        real_data: true,
        splits: super::images::DIGITS.splits,
        sample: digits,
        modes: None,
    },
    GeneratorSpec {
        name: "mnist",
        doc: "MNIST 28×28, 256 grey levels, split 50000/10000/10000 (a 20 MB wheel, downloaded once into the data cache)",
        params: MNIST_PARAMS,
        output: images(&super::images::MNIST),
        real_data: true,
        splits: super::images::MNIST.splits,
        sample: mnist,
        modes: None,
    },
    GeneratorSpec {
        name: "mnist5k",
        doc: "5000 MNIST training images (500 per digit), 256 grey levels, split 4000/1000 (downloaded once into the data cache)",
        params: MNIST5K_PARAMS,
        output: images(&super::images::MNIST5K),
        real_data: true,
        splits: super::images::MNIST5K.splits,
        sample: mnist5k,
        modes: None,
    },
];

/// The generator called `name`, if any.
pub fn generator(name: &str) -> Option<&'static GeneratorSpec> {
    REGISTRY.iter().find(|g| g.name == name)
}

/// The mixture components of generator `name` with `args` (without `n`): `Ok(None)` for a
/// generator whose law is not a known Gaussian mixture, an error for an unknown name or bad
/// arguments.
pub fn known_modes(name: &str, args: &[(String, ParamValue)]) -> Result<Option<Modes>, DataError> {
    let spec = generator(name).ok_or_else(|| DataError::UnknownGenerator {
        name: name.to_string(),
    })?;
    spec.modes(args)
}

/// Looks up `name` and draws `n` points (`args` must not contain `n`).
pub fn generate(
    name: &str,
    n: usize,
    seed: u64,
    args: &[(String, ParamValue)],
) -> Result<Dataset, DataError> {
    let spec = generator(name).ok_or_else(|| DataError::UnknownGenerator {
        name: name.to_string(),
    })?;
    spec.generate(n, seed, args)
}

impl GeneratorSpec {
    /// Validates `args` against [`Self::params`] and draws `n` points.
    pub fn generate(
        &self,
        n: usize,
        seed: u64,
        args: &[(String, ParamValue)],
    ) -> Result<Dataset, DataError> {
        let args = Args::resolve(self, args)?;
        let dim = match self.output {
            // Only the blob has a `dim` parameter; every other point generator is 2-D.
            Output::Points => match args.get("dim") {
                ParamValue::Number(d) if *d >= 1.0 => *d as usize,
                _ => 2,
            },
            Output::Sets { component } => args.whole("max", 1, MAX_SET_SIZE)? * component,
            Output::Images {
                channels,
                height,
                width,
                ..
            } => channels * height * width,
        };
        let values = n.saturating_mul(dim);
        if values > MAX_VALUES {
            return Err(DataError::TooLarge {
                generator: self.name,
                n,
                values,
            });
        }
        (self.sample)(&args, n, seed)
    }

    /// The numbers per set component when this generator draws sets, `None` for points.
    pub fn set_component(&self) -> Option<usize> {
        match self.output {
            Output::Sets { component } => Some(component),
            Output::Points | Output::Images { .. } => None,
        }
    }

    /// The split held out for the metrics and the bound when training on `split`: `test`,
    /// or `train` when the spec trains on `test` (one rule for `check` and `run`).
    pub fn held_out_split(&self, split: &str) -> &'static str {
        if split == "test" {
            "train"
        } else {
            "test"
        }
    }

    /// `(channels, height, width)` and the number of levels when this generator gives images.
    pub fn image_shape(&self) -> Option<([usize; 3], usize)> {
        match self.output {
            Output::Images {
                channels,
                height,
                width,
                levels,
            } => Some(([channels, height, width], levels)),
            Output::Points | Output::Sets { .. } => None,
        }
    }

    /// The mixture components for `args` (which may contain `n`; it is ignored), or `None`
    /// when this generator's law is not a known Gaussian mixture.
    pub fn modes(&self, args: &[(String, ParamValue)]) -> Result<Option<Modes>, DataError> {
        let Some(modes) = self.modes else {
            return Ok(None);
        };
        let rest: Vec<_> = args.iter().filter(|(k, _)| k != "n").cloned().collect();
        let args = Args::resolve(self, &rest)?;
        modes(&args).map(Some)
    }

    /// Like [`Self::generate`], but `n` is one of `args` (as written in `swiss_roll(n = 20000)`).
    pub fn generate_with_n(
        &self,
        seed: u64,
        args: &[(String, ParamValue)],
    ) -> Result<Dataset, DataError> {
        let mut n = None;
        let mut rest = Vec::with_capacity(args.len());
        for (name, value) in args {
            if name != "n" {
                rest.push((name.clone(), value.clone()));
            } else if n.is_some() {
                return Err(DataError::DuplicateParam {
                    generator: self.name,
                    param: "n".into(),
                });
            } else {
                n = Some(self.count(value)?);
            }
        }
        let n = n.ok_or(DataError::MissingParam {
            generator: self.name,
            param: "n",
        })?;
        self.generate(n, seed, &rest)
    }

    /// Validates the arguments of a spec's call, as written (`n` among them), the way drawing
    /// does: by drawing at most 16 points (for `difc check`; only for generators that are pure
    /// computation, not for real data sets). On refusal, the parameter the generator names
    /// (when it names one) and its message.
    pub fn check_args(
        &self,
        args: &[(String, crate::ir::Value)],
    ) -> Result<(), (Option<&'static str>, String)> {
        let few: Vec<(String, ParamValue)> = args
            .iter()
            .map(|(k, v)| {
                let v = match (k.as_str(), v) {
                    ("n", crate::ir::Value::Number(n)) => {
                        ParamValue::Number(n.clamp(1.0, 16.0).floor())
                    }
                    (_, crate::ir::Value::Number(x)) => ParamValue::Number(*x),
                    (_, crate::ir::Value::List(l)) => ParamValue::List(l.clone()),
                    (_, crate::ir::Value::Text(t)) => ParamValue::Text(t.clone()),
                };
                (k.clone(), v)
            })
            .collect();
        match self.generate_with_n(0, &few) {
            Ok(_) => Ok(()),
            Err(e) => {
                let param = match &e {
                    DataError::BadValue { param, .. } => Some(*param),
                    DataError::DuplicateParam { .. }
                    | DataError::UnknownGenerator { .. }
                    | DataError::TooLarge { .. }
                    | DataError::UnknownParam { .. }
                    | DataError::MissingParam { .. }
                    | DataError::Source { .. } => None,
                };
                Err((param, e.to_string()))
            }
        }
    }

    fn count(&self, value: &ParamValue) -> Result<usize, DataError> {
        match value {
            ParamValue::Number(v) if *v >= 1.0 && v.fract() == 0.0 && *v <= MAX_VALUES as f64 => {
                Ok(*v as usize)
            }
            other => Err(DataError::BadValue {
                generator: self.name,
                param: "n",
                expected: "a positive whole number of points".into(),
                got: other.to_string(),
            }),
        }
    }

    fn valid_names(&self) -> String {
        let mut names: Vec<String> = vec!["n".into()];
        for p in self.params {
            names.push(format!(
                "{} (default {})",
                p.name,
                p.default.unwrap_or("required")
            ));
        }
        names.join(", ")
    }
}

/// Arguments checked against a generator's parameter list, with defaults filled in.
pub struct Args {
    generator: &'static str,
    values: Vec<(&'static str, ParamValue)>,
}

impl Args {
    fn resolve(spec: &GeneratorSpec, given: &[(String, ParamValue)]) -> Result<Args, DataError> {
        let mut values: Vec<(&'static str, Option<ParamValue>)> =
            spec.params.iter().map(|p| (p.name, None)).collect();
        for (name, value) in given {
            let slot = values.iter_mut().find(|(n, _)| *n == name.as_str());
            let Some((_, slot)) = slot else {
                return Err(DataError::UnknownParam {
                    generator: spec.name,
                    param: name.clone(),
                    valid: spec.valid_names(),
                });
            };
            if slot.is_some() {
                return Err(DataError::DuplicateParam {
                    generator: spec.name,
                    param: name.clone(),
                });
            }
            *slot = Some(value.clone());
        }
        let mut resolved = Vec::with_capacity(values.len());
        for (param, (name, value)) in spec.params.iter().zip(values) {
            let value = match (value, param.default) {
                (Some(v), _) => v,
                (None, Some(default)) => parse_default(default),
                (None, None) => {
                    return Err(DataError::MissingParam {
                        generator: spec.name,
                        param: param.name,
                    })
                }
            };
            resolved.push((name, value));
        }
        Ok(Args {
            generator: spec.name,
            values: resolved,
        })
    }

    fn get(&self, name: &'static str) -> &ParamValue {
        // Every name asked for by a sampler is in its own parameter list, so the lookup succeeds;
        // the fallback only keeps this total.
        const MISSING: ParamValue = ParamValue::Number(f64::NAN);
        self.values
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(&MISSING, |(_, v)| v)
    }

    fn bad(&self, param: &'static str, expected: &str) -> DataError {
        DataError::BadValue {
            generator: self.generator,
            param,
            expected: expected.into(),
            got: self.get(param).to_string(),
        }
    }

    /// A finite number satisfying `ok`; `expected` describes the accepted range.
    fn number(
        &self,
        name: &'static str,
        expected: &str,
        ok: impl Fn(f64) -> bool,
    ) -> Result<f64, DataError> {
        match self.get(name) {
            ParamValue::Number(v) if v.is_finite() && ok(*v) => Ok(*v),
            _ => Err(self.bad(name, expected)),
        }
    }

    fn non_negative(&self, name: &'static str) -> Result<f64, DataError> {
        self.number(name, "a number ≥ 0", |v| v >= 0.0)
    }

    fn positive(&self, name: &'static str) -> Result<f64, DataError> {
        self.number(name, "a number > 0", |v| v > 0.0)
    }

    fn whole(&self, name: &'static str, min: usize, max: usize) -> Result<usize, DataError> {
        let expected = format!("a whole number in {min}..={max}");
        let v = self.number(name, &expected, |v| {
            v.fract() == 0.0 && v >= min as f64 && v <= max as f64
        })?;
        Ok(v as usize)
    }

    /// A number repeated `len` times, or a list of exactly `len` finite numbers satisfying `ok`.
    fn per_coordinate(
        &self,
        name: &'static str,
        len: usize,
        expected: &str,
        ok: impl Fn(f64) -> bool,
    ) -> Result<Vec<f64>, DataError> {
        let good = |v: &f64| v.is_finite() && ok(*v);
        match self.get(name) {
            ParamValue::Number(v) if good(v) => Ok(vec![*v; len]),
            ParamValue::List(vs) if vs.len() == len && vs.iter().all(good) => Ok(vs.clone()),
            _ => Err(self.bad(name, &format!("{expected}, or a list of {len} of them"))),
        }
    }

    fn text(&self, name: &'static str, choices: &[&str]) -> Result<usize, DataError> {
        let expected = || {
            let quoted: Vec<String> = choices.iter().map(|c| format!("\"{c}\"")).collect();
            format!("one of {}", quoted.join(", "))
        };
        match self.get(name) {
            ParamValue::Text(s) => choices
                .iter()
                .position(|c| c == s)
                .ok_or_else(|| self.bad(name, &expected())),
            _ => Err(self.bad(name, &expected())),
        }
    }
}

/// Turns a default as written in a [`ParamSpec`] into a value (numbers or quoted words only).
fn parse_default(text: &str) -> ParamValue {
    match text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        Some(word) => ParamValue::Text(word.to_string()),
        None => ParamValue::Number(text.parse().unwrap_or(f64::NAN)),
    }
}

/// Draws `n` points of dimension `dim`; `point` fills one row from that point's own stream.
fn per_point(
    n: usize,
    dim: usize,
    seed: u64,
    point: impl Fn(&mut ChaCha8Rng, &mut [f64]),
) -> Dataset {
    let mut rows = Vec::with_capacity(n * dim);
    let mut buf = vec![0.0; dim];
    for i in 0..n {
        let mut rng = stream(seed, Purpose::Data, 0, i as u64);
        point(&mut rng, &mut buf);
        rows.extend(buf.iter().map(|&v| v as f32));
    }
    Dataset { dim, rows }
}

fn normal(rng: &mut ChaCha8Rng) -> f64 {
    rng.sample(StandardNormal)
}

/// Exact mean and population std of one pooled coordinate of the raw 2-D swiss roll.
///
/// With t ~ U(1.5π, 4.5π): E(t cos t) = 2, E(t sin t) = 2/(3π), E(t²) = 9.75π², so the pooled
/// mean is 1 + 1/(3π) and the pooled variance E(t²)/2 + noise² − mean².
pub fn swiss_roll_population_stats(noise: f64) -> (f64, f64) {
    let mean = 1.0 + 1.0 / (3.0 * PI);
    let var = 9.75 * PI * PI / 2.0 + noise * noise - mean * mean;
    (mean, var.sqrt())
}

fn swiss_roll(args: &Args, n: usize, seed: u64) -> Result<Dataset, DataError> {
    let noise = args.non_negative("noise")?;
    let mode = args.text("standardize", &["sample", "population", "none"])?;
    let scale = args.number("scale", "a non-zero number", |v| v != 0.0)?;
    let raw = per_point(n, 2, seed, |rng, out| {
        let t = 1.5 * PI * (1.0 + 2.0 * rng.random::<f64>());
        out[0] = t * t.cos() + noise * normal(rng);
        out[1] = t * t.sin() + noise * normal(rng);
    });
    let (mean, std) = match mode {
        0 => sample_stats(&raw.rows),
        1 => swiss_roll_population_stats(noise),
        _ => (0.0, 1.0),
    };
    let (mean, std) = (mean as f32, std as f32);
    let scale = scale as f32;
    let rows = raw.rows.iter().map(|&v| (v - mean) / std * scale).collect();
    Ok(Dataset { dim: 2, rows })
}

/// One scalar mean and population (ddof = 0) std over all values, as DLPM standardises.
fn sample_stats(values: &[f32]) -> (f64, f64) {
    let m = values.len().max(1) as f64;
    let mean = values.iter().map(|&v| f64::from(v)).sum::<f64>() / m;
    let var = values
        .iter()
        .map(|&v| (f64::from(v) - mean).powi(2))
        .sum::<f64>()
        / m;
    // A single point with no noise has zero spread; keep the data finite rather than divide by 0.
    (mean, if var > 0.0 { var.sqrt() } else { 1.0 })
}

/// The k×k grid's components: centres on {−1, …, 1}² (row-major over `(i, j)`, `i` the first
/// coordinate), the common std and the normalised weights.
fn grid_modes(args: &Args) -> Result<Modes, DataError> {
    let k = args.whole("k", 1, 1000)?;
    let std = args.non_negative("std")?;
    let weights = grid_weights(args, k)?;
    let coord = |i: usize| {
        if k == 1 {
            0.0
        } else {
            2.0 * i as f64 / (k - 1) as f64 - 1.0
        }
    };
    let centres = (0..k * k)
        .flat_map(|c| [coord(c / k), coord(c % k)])
        .collect();
    Ok(Modes {
        dim: 2,
        centres,
        std,
        weights,
    })
}

fn grid_gmm(args: &Args, n: usize, seed: u64) -> Result<Dataset, DataError> {
    let modes = grid_modes(args)?;
    let cumulative = cumulative_weights(&modes.weights);
    let last = modes.len() - 1;
    Ok(per_point(n, 2, seed, |rng, out| {
        let u: f64 = rng.random();
        let c = modes.centre(cumulative.partition_point(|&w| w <= u).min(last));
        out[0] = c[0] + modes.std * normal(rng);
        out[1] = c[1] + modes.std * normal(rng);
    }))
}

fn grid_weights(args: &Args, k: usize) -> Result<Vec<f64>, DataError> {
    let expected = format!(
        "\"uniform\", \"dlpm_unbalanced\" (k = 3) or a list of {} weights ≥ 0 with a positive sum",
        k * k
    );
    let weights = match args.get("weights") {
        ParamValue::Text(s) if s == "uniform" => vec![1.0; k * k],
        ParamValue::Text(s) if s == "dlpm_unbalanced" && k == 3 => DLPM_UNBALANCED_3X3.to_vec(),
        ParamValue::List(w) if w.len() == k * k && w.iter().all(|v| v.is_finite() && *v >= 0.0) => {
            w.clone()
        }
        _ => return Err(args.bad("weights", &expected)),
    };
    let total: f64 = weights.iter().sum();
    if total <= 0.0 {
        return Err(args.bad("weights", &expected));
    }
    Ok(weights.iter().map(|w| w / total).collect())
}

/// Running sums of normalised weights (last entry forced to 1 against rounding).
fn cumulative_weights(weights: &[f64]) -> Vec<f64> {
    let mut acc = 0.0;
    let mut out: Vec<f64> = weights
        .iter()
        .map(|w| {
            acc += w;
            acc
        })
        .collect();
    if let Some(last) = out.last_mut() {
        *last = 1.0;
    }
    out
}

fn moons(args: &Args, n: usize, seed: u64) -> Result<Dataset, DataError> {
    let noise = args.non_negative("noise")?;
    let scale = args.number("scale", "a non-zero number", |v| v != 0.0)?;
    Ok(per_point(n, 2, seed, |rng, out| {
        let inner = rng.random::<bool>();
        let s = PI * rng.random::<f64>();
        let (x, y) = if inner {
            (1.0 - s.cos(), 0.5 - s.sin())
        } else {
            (s.cos(), s.sin())
        };
        out[0] = scale * (x + noise * normal(rng) - 0.5);
        out[1] = scale * (y + noise * normal(rng) - 0.25);
    }))
}

/// Unit directions of the 8 Gaussians' centres, in FFJORD's order (component `m` of the draw).
const EIGHT_DIRECTIONS: [(f64, f64); 8] = {
    let h = std::f64::consts::FRAC_1_SQRT_2;
    [
        (1.0, 0.0),
        (-1.0, 0.0),
        (0.0, 1.0),
        (0.0, -1.0),
        (h, h),
        (h, -h),
        (-h, h),
        (-h, -h),
    ]
};

/// The 8 Gaussians' components after scaling: centres `scale·radius·direction`, std
/// `|scale|·std`, equal weights.
fn eight_gaussians_modes(args: &Args) -> Result<Modes, DataError> {
    let (radius, std, scale) = eight_gaussians_args(args)?;
    let centres = EIGHT_DIRECTIONS
        .iter()
        .flat_map(|(cx, cy)| [scale * radius * cx, scale * radius * cy])
        .collect();
    Ok(Modes {
        dim: 2,
        centres,
        std: scale.abs() * std,
        weights: vec![1.0 / 8.0; 8],
    })
}

fn eight_gaussians_args(args: &Args) -> Result<(f64, f64, f64), DataError> {
    let radius = args.non_negative("radius")?;
    let std = args.non_negative("std")?;
    let scale = args.number("scale", "a non-zero number", |v| v != 0.0)?;
    Ok((radius, std, scale))
}

fn eight_gaussians(args: &Args, n: usize, seed: u64) -> Result<Dataset, DataError> {
    let (radius, std, scale) = eight_gaussians_args(args)?;
    Ok(per_point(n, 2, seed, |rng, out| {
        // FFJORD's draw order: two normals, then the component.
        let (ex, ey) = (normal(rng), normal(rng));
        let (cx, cy) = EIGHT_DIRECTIONS[rng.random_range(0..8)];
        out[0] = scale * (radius * cx + std * ex);
        out[1] = scale * (radius * cy + std * ey);
    }))
}

fn checkerboard(args: &Args, n: usize, seed: u64) -> Result<Dataset, DataError> {
    let scale = args.positive("scale")?;
    Ok(per_point(n, 2, seed, |rng, out| {
        let x1 = 4.0 * rng.random::<f64>() - 2.0;
        let lift = if rng.random::<bool>() { 2.0 } else { 0.0 };
        let x2 = rng.random::<f64>() - lift + x1.floor().rem_euclid(2.0);
        out[0] = scale * x1;
        out[1] = scale * x2;
    }))
}

fn circles(args: &Args, n: usize, seed: u64) -> Result<Dataset, DataError> {
    let factor = args.number("factor", "a number in (0, 1)", |v| v > 0.0 && v < 1.0)?;
    let noise = args.non_negative("noise")?;
    let scale = args.number("scale", "a non-zero number", |v| v != 0.0)?;
    Ok(per_point(n, 2, seed, |rng, out| {
        let r = if rng.random::<bool>() { factor } else { 1.0 };
        let s = 2.0 * PI * rng.random::<f64>();
        out[0] = scale * (r * s.cos() + noise * normal(rng));
        out[1] = scale * (r * s.sin() + noise * normal(rng));
    }))
}

fn gaussian(args: &Args, n: usize, seed: u64) -> Result<Dataset, DataError> {
    let dim = args.whole("dim", 1, 1 << 20)?;
    let mean = args.per_coordinate("mean", dim, "a finite number", |_| true)?;
    let std = args.per_coordinate("std", dim, "a number ≥ 0", |v| v >= 0.0)?;
    Ok(per_point(n, dim, seed, |rng, out| {
        for ((o, m), s) in out.iter_mut().zip(&mean).zip(&std) {
            *o = m + s * normal(rng);
        }
    }))
}

/// The normalised law of the set size k = 1..=max (entry k − 1).
fn ring_counts(args: &Args, max: usize) -> Result<Vec<f64>, DataError> {
    let expected = format!(
        "\"skewed\", \"uniform\" or a list of {max} weights ≥ 0 (for k = 1..{max}) with a positive sum"
    );
    let weights: Vec<f64> = match args.get("counts") {
        ParamValue::Text(s) if s == "skewed" => (1..=max).map(|k| (max + 1 - k) as f64).collect(),
        ParamValue::Text(s) if s == "uniform" => vec![1.0; max],
        ParamValue::List(w) if w.len() == max && w.iter().all(|v| v.is_finite() && *v >= 0.0) => {
            w.clone()
        }
        ParamValue::Text(_) | ParamValue::List(_) | ParamValue::Number(_) => {
            return Err(args.bad("counts", &expected))
        }
    };
    let total: f64 = weights.iter().sum();
    if total <= 0.0 {
        return Err(args.bad("counts", &expected));
    }
    Ok(weights.iter().map(|w| w / total).collect())
}

fn ring_sets(args: &Args, n: usize, seed: u64) -> Result<Dataset, DataError> {
    let max = args.whole("max", 1, MAX_SET_SIZE)?;
    let radius = args.positive("radius")?;
    let noise = args.non_negative("noise")?;
    let jitter = args.non_negative("jitter")?;
    let cumulative = cumulative_weights(&ring_counts(args, max)?);
    let dim = max * 2;
    let mut rows = Vec::with_capacity(n * dim);
    for i in 0..n {
        let mut rng = stream(seed, Purpose::Data, 0, i as u64);
        let u: f64 = rng.random();
        let k = cumulative.partition_point(|&w| w <= u).min(max - 1) + 1;
        let theta0 = 2.0 * PI * rng.random::<f64>();
        for j in 0..k {
            let a = theta0 + 2.0 * PI * j as f64 / k as f64 + jitter * normal(&mut rng);
            let r = radius * (1.0 + noise * normal(&mut rng));
            let t = radius * noise * normal(&mut rng);
            let (sin, cos) = a.sin_cos();
            rows.push((r * cos - t * sin) as f32);
            rows.push((r * sin + t * cos) as f32);
        }
        rows.resize((i + 1) * dim, f32::NAN);
    }
    Ok(Dataset { dim, rows })
}

/// The first `n` molecules of a QM9 split (see [`QM9_PARAMS`]); the seed is not used.
fn qm9(args: &Args, n: usize, _seed: u64) -> Result<Dataset, DataError> {
    use super::qm9::{shared, Qm9Error, Split, MAX_ATOMS};
    let split = Split::ALL[args.text("split", &Split::NAMES)?];
    let max = args.whole("max", MAX_ATOMS, MAX_SET_SIZE)?;
    let source = |e: Qm9Error| DataError::Source {
        generator: "qm9",
        message: e.to_string(),
    };
    let data = shared().map_err(source)?;
    let sets = data.split_sets(split, n, max).map_err(source)?;
    Ok(sets.to_dataset())
}

/// The first `n` images of a split of `source` as values on its level grid; the seed is not
/// used.
fn image_split(
    source: &super::images::Source,
    args: &Args,
    n: usize,
) -> Result<Dataset, DataError> {
    let names: Vec<&str> = source.splits.iter().map(|(name, _)| *name).collect();
    let split = names[args.text("split", &names)?];
    let fail = |e: super::images::ImageError| DataError::Source {
        generator: args.generator,
        message: e.to_string(),
    };
    let set = super::images::shared(source).map_err(fail)?;
    let rows = set.split_values(split, n).map_err(fail)?;
    Ok(Dataset {
        dim: set.dim(),
        rows,
    })
}

fn digits(args: &Args, n: usize, _seed: u64) -> Result<Dataset, DataError> {
    image_split(&super::images::DIGITS, args, n)
}

fn mnist(args: &Args, n: usize, _seed: u64) -> Result<Dataset, DataError> {
    image_split(&super::images::MNIST, args, n)
}

fn mnist5k(args: &Args, n: usize, _seed: u64) -> Result<Dataset, DataError> {
    image_split(&super::images::MNIST5K, args, n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(name: &str, v: f64) -> (String, ParamValue) {
        (name.to_string(), ParamValue::Number(v))
    }

    fn mean_std(values: impl Iterator<Item = f64> + Clone) -> (f64, f64) {
        let n = values.clone().count() as f64;
        let mean = values.clone().sum::<f64>() / n;
        let var = values.map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        (mean, var.sqrt())
    }

    #[test]
    fn registry_lists_every_generator_and_rejects_unknown_names() {
        for name in GENERATORS {
            assert!(generator(name).is_some(), "{name} missing");
        }
        assert_eq!(GENERATORS.len(), REGISTRY.len());
        let err = generate("swis_roll", 10, 0, &[]).unwrap_err();
        assert!(err.to_string().contains("swiss_roll, grid_gmm"));
    }

    #[test]
    fn unknown_parameter_error_lists_valid_ones() {
        let err = generate("swiss_roll", 10, 0, &[num("nois", 0.1)]).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("no parameter `nois`"), "{msg}");
        assert!(msg.contains("noise (default 0.5)"), "{msg}");
        assert!(msg.contains("standardize"), "{msg}");
    }

    #[test]
    fn bad_values_and_duplicates_are_rejected() {
        let neg = generate("grid_gmm", 10, 0, &[num("std", -1.0)]).unwrap_err();
        assert!(matches!(neg, DataError::BadValue { param: "std", .. }));
        let k = generate("grid_gmm", 10, 0, &[num("k", 2.5)]).unwrap_err();
        assert!(matches!(k, DataError::BadValue { param: "k", .. }));
        let w = generate(
            "grid_gmm",
            10,
            0,
            &[("weights".into(), ParamValue::List(vec![1.0; 4]))],
        )
        .unwrap_err();
        assert!(w.to_string().contains("list of 9 weights"), "{w}");
        let dup = generate("moons", 10, 0, &[num("noise", 0.1), num("noise", 0.2)]);
        assert!(matches!(dup, Err(DataError::DuplicateParam { .. })));
    }

    #[test]
    fn n_can_be_written_among_the_arguments() {
        let spec = generator("moons").unwrap();
        let d = spec.generate_with_n(3, &[num("n", 7.0)]).unwrap();
        assert_eq!(d.len(), 7);
        assert_eq!(d, spec.generate(7, 3, &[]).unwrap());
        assert!(matches!(
            spec.generate_with_n(3, &[]),
            Err(DataError::MissingParam { param: "n", .. })
        ));
        assert!(spec.generate_with_n(3, &[num("n", 0.5)]).is_err());
    }

    #[test]
    fn points_do_not_depend_on_n_and_seeds_differ() {
        // Real data sets are seed-independent by design (and may need the network).
        let drawn = GENERATORS
            .iter()
            .filter(|name| generator(name).is_some_and(|g| !g.real_data));
        for name in drawn {
            let args = if *name == "swiss_roll" {
                vec![(
                    "standardize".to_string(),
                    ParamValue::Text("population".into()),
                )]
            } else {
                vec![]
            };
            let small = generate(name, 5, 11, &args).unwrap();
            let big = generate(name, 50, 11, &args).unwrap();
            // NaN (the padding of sets) never equals itself: compare the bits.
            let bits = |d: &Dataset| d.rows.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&small)[..], bits(&big)[..small.rows.len()], "{name}");
            let other = generate(name, 5, 12, &args).unwrap();
            assert_ne!(bits(&small), bits(&other), "{name}");
            let sets = generator(name)
                .and_then(GeneratorSpec::set_component)
                .is_some();
            assert!(big
                .rows
                .iter()
                .all(|v| v.is_finite() || (sets && v.is_nan())));
        }
    }

    #[test]
    fn oversized_requests_fail_before_allocating() {
        let e = generate("gaussian", 1_000_000, 0, &[num("dim", 1000.0)]).unwrap_err();
        assert!(matches!(
            e,
            DataError::TooLarge {
                values: 1_000_000_000,
                ..
            }
        ));
    }

    #[test]
    fn npy_save_and_load_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.npy");
        let d = generate("circles", 100, 9, &[]).unwrap();
        d.save_npy(&path).unwrap();
        assert_eq!(Dataset::load_npy(&path).unwrap(), d);
        write_npy_f32(&path, &[0, 2], &[]).unwrap();
        assert!(matches!(
            Dataset::load_npy(&path),
            Err(NpyError::Empty { .. })
        ));
    }

    #[test]
    fn swiss_roll_sample_standardisation_gives_zero_mean_unit_std() {
        let d = generate("swiss_roll", 4000, 1, &[]).unwrap();
        let (m, s) = mean_std(d.rows.iter().map(|&v| f64::from(v)));
        assert!(m.abs() < 1e-5 && (s - 1.0).abs() < 1e-5, "{m} {s}");
    }

    #[test]
    fn swiss_roll_population_stats_match_a_large_sample() {
        let raw = [("standardize".to_string(), ParamValue::Text("none".into()))];
        let d = generate("swiss_roll", 200_000, 2, &raw).unwrap();
        let (m, s) = mean_std(d.rows.iter().map(|&v| f64::from(v)));
        let (pm, ps) = swiss_roll_population_stats(0.5);
        assert!((m - pm).abs() < 0.03, "mean {m} vs {pm}");
        assert!((s - ps).abs() < 0.02, "std {s} vs {ps}");
        // Raw coordinates lie on the roll: radius t in [1.5π, 4.5π] up to noise.
        let r_max = d
            .rows
            .chunks(2)
            .map(|r| f64::from(r[0]).hypot(f64::from(r[1])));
        assert!(r_max.fold(0.0, f64::max) < 4.5 * PI + 3.0);
    }

    #[test]
    fn grid_gmm_frequencies_follow_the_weights() {
        let w = [(
            "weights".to_string(),
            ParamValue::Text("dlpm_unbalanced".into()),
        )];
        let d = generate("grid_gmm", 40_000, 4, &w).unwrap();
        let mut counts = [0usize; 9];
        for r in d.rows.chunks(2) {
            // Nearest mean on the {−1, 0, 1} grid; std 0.1 makes this unambiguous.
            let i = (f64::from(r[0]).round() + 1.0) as usize;
            let j = (f64::from(r[1]).round() + 1.0) as usize;
            counts[i * 3 + j] += 1;
        }
        for (c, w) in counts.iter().zip(DLPM_UNBALANCED_3X3) {
            let f = *c as f64 / 40_000.0;
            assert!(
                (f - w).abs() < 4.0 * (w * (1.0 - w) / 40_000.0).sqrt() + 1e-3,
                "{f} vs {w}"
            );
        }
    }

    #[test]
    fn known_modes_are_the_components_the_generators_draw_from() {
        let w = [(
            "weights".to_string(),
            ParamValue::List(vec![1.0, 3.0, 0.0, 4.0]),
        )];
        let grid = known_modes("grid_gmm", &[num("k", 2.0), num("std", 0.05), w[0].clone()])
            .unwrap()
            .unwrap();
        assert_eq!(
            grid.centres,
            vec![-1.0, -1.0, -1.0, 1.0, 1.0, -1.0, 1.0, 1.0]
        );
        assert_eq!(
            (grid.std, grid.weights.clone()),
            (0.05, vec![0.125, 0.375, 0.0, 0.5])
        );
        // Every point of the generator lies near one of these centres, with these frequencies.
        let args = [num("k", 2.0), num("std", 0.05), w[0].clone()];
        let d = generate("grid_gmm", 8000, 3, &args).unwrap();
        let mut counts = [0usize; 4];
        for r in d.rows.chunks(2) {
            let m = (0..4)
                .find(|&m| {
                    let c = grid.centre(m);
                    (f64::from(r[0]) - c[0]).hypot(f64::from(r[1]) - c[1]) < 0.5
                })
                .expect("near a centre");
            counts[m] += 1;
        }
        for (c, w) in counts.iter().zip(&grid.weights) {
            let f = *c as f64 / 8000.0;
            assert!(
                (f - w).abs() < 4.0 * (w * (1.0 - w) / 8000.0).sqrt() + 1e-9,
                "{counts:?}"
            );
        }
        // `n` may be among the arguments; non-mixtures have no modes.
        let eight = generator("eight_gaussians").unwrap();
        let modes = eight
            .modes(&[num("n", 5.0), num("scale", -2.0)])
            .unwrap()
            .unwrap();
        assert_eq!((modes.len(), modes.std), (8, 1.0));
        assert_eq!(modes.centre(0), &[-8.0, 0.0]);
        assert!(modes.weights.iter().all(|&w| w == 0.125));
        let d = generate("eight_gaussians", 4000, 4, &[num("scale", -2.0)]).unwrap();
        let off = d
            .rows
            .chunks(2)
            .map(|r| {
                (0..8)
                    .map(|m| {
                        let c = modes.centre(m);
                        (f64::from(r[0]) - c[0]).hypot(f64::from(r[1]) - c[1])
                    })
                    .fold(f64::INFINITY, f64::min)
            })
            .filter(|&dist| dist > 3.0 * modes.std)
            .count();
        // P(χ²₂ > 9) = e^{−4.5} = 1.1 %: 44 expected of 4000, sd 6.6.
        assert!((20..70).contains(&off), "{off}");
        assert_eq!(known_modes("swiss_roll", &[]), Ok(None));
        assert!(known_modes("grid_gmm", &[num("k", 0.0)]).is_err());
        assert!(known_modes("nope", &[]).is_err());
    }

    #[test]
    fn ring_sets_follow_the_count_law_and_lie_on_the_ring() {
        use crate::run::sets::SetData;
        let spec = generator("ring_sets").unwrap();
        assert_eq!(spec.set_component(), Some(2));
        assert_eq!(generator("moons").unwrap().set_component(), None);
        let n = 20_000;
        let d = generate("ring_sets", n, 5, &[]).unwrap();
        assert_eq!(d.dim, 16);
        let sets = SetData::from_dataset(&d, 2, 8).unwrap();
        // p(k) ∝ 9 − k on 1..8: 8/36, 7/36, …, 1/36.
        for (k, f) in sets.count_histogram().iter().enumerate() {
            let want = (8 - k) as f64 / 36.0;
            let sd = (want * (1.0 - want) / n as f64).sqrt();
            assert!((f - want).abs() < 4.0 * sd, "k = {}: {f} vs {want}", k + 1);
        }
        // Noiseless: components on the unit ring, evenly spaced.
        let exact = [num("noise", 0.0), num("jitter", 0.0), num("radius", 2.0)];
        let d = generate("ring_sets", 300, 6, &exact).unwrap();
        let sets = SetData::from_dataset(&d, 2, 8).unwrap();
        for i in 0..sets.len() {
            let s = sets.set(i);
            let k = sets.counts[i];
            for c in s.chunks(2) {
                assert!((f64::from(c[0]).hypot(f64::from(c[1])) - 2.0).abs() < 1e-5);
            }
            if k >= 2 {
                // Neighbouring components are 2π/k apart: chord 2·r·sin(π/k).
                let chord = f64::from(s[0] - s[2]).hypot(f64::from(s[1] - s[3]));
                let want = 4.0 * (PI / k as f64).sin();
                assert!((chord - want).abs() < 1e-4, "{chord} vs {want}");
            }
        }
        // A list of weights and a smaller max; the MAX_VALUES check sees max·2 numbers a set.
        let only_three = [
            num("max", 3.0),
            ("counts".into(), ParamValue::List(vec![0.0, 0.0, 1.0])),
        ];
        let d = generate("ring_sets", 50, 7, &only_three).unwrap();
        let sets = SetData::from_dataset(&d, 2, 3).unwrap();
        assert!(sets.counts.iter().all(|&k| k == 3));
        let e = generate("ring_sets", 400_000_000, 0, &[]).unwrap_err();
        assert!(matches!(e, DataError::TooLarge { .. }), "{e}");
    }

    #[test]
    fn ring_sets_refuse_bad_counts_and_sizes() {
        let short = [("counts".into(), ParamValue::List(vec![1.0, 2.0]))];
        let e = generate("ring_sets", 5, 0, &short).unwrap_err();
        assert!(e.to_string().contains("a list of 8 weights"), "{e}");
        let word = [("counts".into(), ParamValue::Text("skewd".into()))];
        assert!(matches!(
            generate("ring_sets", 5, 0, &word),
            Err(DataError::BadValue {
                param: "counts",
                ..
            })
        ));
        let zero = [("counts".into(), ParamValue::List(vec![0.0; 8]))];
        assert!(generate("ring_sets", 5, 0, &zero).is_err());
        for bad in [0.0, 2.5, 5000.0] {
            assert!(matches!(
                generate("ring_sets", 5, 0, &[num("max", bad)]),
                Err(DataError::BadValue { param: "max", .. })
            ));
        }
        assert!(generate("ring_sets", 5, 0, &[num("radius", 0.0)]).is_err());
    }

    #[test]
    fn checkerboard_points_lie_on_dark_squares() {
        let d = generate("checkerboard", 2000, 5, &[num("scale", 1.0)]).unwrap();
        for r in d.rows.chunks(2) {
            let (x, y) = (f64::from(r[0]), f64::from(r[1]));
            assert!((-2.0..2.0).contains(&x) && (-2.0..2.0).contains(&y));
            assert_eq!((x.floor() + y.floor()).rem_euclid(2.0), 0.0, "({x}, {y})");
        }
    }

    #[test]
    fn noiseless_circles_and_moons_lie_on_their_curves() {
        let c = generate("circles", 500, 6, &[num("noise", 0.0), num("scale", 1.0)]).unwrap();
        for r in c.rows.chunks(2) {
            let radius = f64::from(r[0]).hypot(f64::from(r[1]));
            assert!((radius - 1.0).abs() < 1e-5 || (radius - 0.5).abs() < 1e-5);
        }
        let m = generate("moons", 500, 6, &[num("noise", 0.0), num("scale", 1.0)]).unwrap();
        for r in m.rows.chunks(2) {
            let (x, y) = (f64::from(r[0]) + 0.5, f64::from(r[1]) + 0.25);
            let outer = (x.hypot(y) - 1.0).abs() < 1e-5 && y >= -1e-6;
            let inner = ((x - 1.0).hypot(y - 0.5) - 1.0).abs() < 1e-5 && y <= 0.5 + 1e-6;
            assert!(outer || inner, "({x}, {y})");
        }
    }

    #[test]
    fn eight_gaussians_and_blob_moments() {
        let e = generate("eight_gaussians", 20_000, 7, &[num("std", 0.0)]).unwrap();
        for r in e.rows.chunks(2) {
            let radius = f64::from(r[0]).hypot(f64::from(r[1]));
            assert!((radius - 4.0 * 0.7072).abs() < 1e-4);
        }
        let args = [
            num("dim", 3.0),
            ("mean".to_string(), ParamValue::List(vec![1.0, -2.0, 0.0])),
            num("std", 2.0),
        ];
        let g = generate("gaussian", 20_000, 8, &args).unwrap();
        assert_eq!(g.dim, 3);
        for (k, want) in [1.0, -2.0, 0.0].iter().enumerate() {
            let (m, s) = mean_std(g.rows.iter().skip(k).step_by(3).map(|&v| f64::from(v)));
            assert!(
                (m - want).abs() < 0.06 && (s - 2.0).abs() < 0.05,
                "{k}: {m} {s}"
            );
        }
    }

    #[test]
    fn qm9_refuses_bad_options_before_loading_anything() {
        let text = |k: &str, v: &str| (k.to_string(), ParamValue::Text(v.into()));
        let e = generate("qm9", 10, 0, &[text("split", "training")]).unwrap_err();
        assert!(
            e.to_string()
                .contains("must be one of \"train\", \"valid\", \"test\""),
            "{e}"
        );
        let e = generate("qm9", 10, 0, &[num("max", 28.0)]).unwrap_err();
        assert!(e.to_string().contains("in 29..=4096"), "{e}");
        let spec = generator("qm9").unwrap();
        assert_eq!((spec.set_component(), spec.real_data), (Some(9), true));
    }

    #[test]
    #[ignore = "needs the network (or a filled data cache): downloads the 104 MB qm9pack wheel"]
    fn qm9_rows_are_the_split_head_as_padded_sets() {
        use crate::run::qm9::{shared, Split};
        let valid = [("split".to_string(), ParamValue::Text("valid".into()))];
        let d = generate("qm9", 40, 0, &valid).unwrap();
        assert_eq!((d.len(), d.dim), (40, 29 * 9));
        // NaN padding never equals itself: compare the bits.
        let bits = |d: &Dataset| d.rows.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        let other_seed = generate("qm9", 40, 99, &valid).unwrap();
        assert_eq!(bits(&d), bits(&other_seed), "the seed must not matter");
        let sets = crate::run::sets::SetData::from_dataset(&d, 9, 29).unwrap();
        let q = shared().unwrap();
        let first = q.split(Split::Valid)[0];
        assert_eq!(sets.set(0), &first.features()[..]);
        let wide = generate("qm9", 3, 0, &[num("max", 32.0)]).unwrap();
        assert_eq!(wide.dim, 32 * 9);
    }

    #[test]
    fn image_sources_refuse_bad_splits_before_loading_anything() {
        let text = |k: &str, v: &str| (k.to_string(), ParamValue::Text(v.into()));
        let e = generate("digits", 10, 0, &[text("split", "valid")]).unwrap_err();
        assert!(
            e.to_string().contains("must be one of \"train\", \"test\""),
            "{e}"
        );
        let e = generate("mnist", 10, 0, &[text("split", "training")]).unwrap_err();
        assert!(
            e.to_string()
                .contains("must be one of \"train\", \"valid\", \"test\""),
            "{e}"
        );
        let e = generate("mnist5k", 10, 0, &[num("max", 3.0)]).unwrap_err();
        assert!(matches!(e, DataError::UnknownParam { .. }), "{e}");
        for (name, shape, levels) in [
            ("digits", [1, 8, 8], 17),
            ("mnist", [1, 28, 28], 256),
            ("mnist5k", [1, 28, 28], 256),
        ] {
            let spec = generator(name).unwrap();
            assert_eq!(spec.image_shape(), Some((shape, levels)), "{name}");
            assert_eq!((spec.set_component(), spec.real_data), (None, true));
        }
        assert_eq!(generator("moons").unwrap().image_shape(), None);
    }

    /// Needs the scikit-learn wheel (9 MB, fetched once into the data cache; CI reaches PyPI).
    #[test]
    fn digits_rows_are_the_split_head_on_the_17_level_grid() {
        let test = [("split".to_string(), ParamValue::Text("test".into()))];
        let d = generate("digits", 360, 0, &test).unwrap();
        assert_eq!((d.len(), d.dim), (360, 64));
        assert_eq!(
            d,
            generate("digits", 360, 99, &test).unwrap(),
            "the seed must not matter"
        );
        let head = generate("digits", 5, 0, &test).unwrap();
        assert_eq!(head.rows[..], d.rows[..5 * 64]);
        let grid: Vec<f32> = (0..17).map(|k| -1.0 + 2.0 * k as f32 / 16.0).collect();
        assert!(d.rows.iter().all(|v| grid.contains(v)));
        // The whole train split (split disjointness is tested in run::images).
        let train = generate("digits", 1437, 0, &[]).unwrap();
        assert_eq!(train.len(), 1437);
        let e = generate("digits", 1438, 0, &[]).unwrap_err();
        assert!(
            e.to_string()
                .contains("`digits` split `train` has 1437 images; 1438 were asked for"),
            "{e}"
        );
    }
}

//! Every run-time error path, accounted for (issue 10: "if `difc check` accepts a spec, `difc
//! run` works on it"). Each variant of each error enum of the stages after `check` (`compile`,
//! `run`, `nn`, `ir`) is listed in [`PATHS`] with why a checked spec cannot reach it, or what
//! does: a check-time diagnostic with a golden spec, a genuine IO or numeric fault, a usage
//! error of the command line (exit 2, tested in `tests/run_cli.rs`), a wrapper of another
//! listed enum, or a compiler bug (an invariant the checker establishes).
//!
//! The variants are read from the sources, so a new variant (or a new error enum) fails this
//! test until it is listed; a golden named here must exist and show the code named with it;
//! and every `difc::compile::*` code has a golden, since the checker reports every compile
//! error (`driver::compile_diagnostics`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Why a run-time error path is acceptable.
#[derive(Clone, Copy, Debug)]
enum Cause {
    /// `check` refuses what leads here: `(golden spec in specs/bad or specs/warn, its code)`.
    Golden(&'static [(&'static str, &'static str)]),
    /// A genuine IO fault: disk, network, permissions, a file damaged after the check.
    Io(&'static str),
    /// A numeric fault while training or sampling (divergence, NaN in the data's values).
    Numeric(&'static str),
    /// A command-line or folder usage error (exit 2), not a property of the spec.
    Usage(&'static str),
    /// Carries another enum's error, whose variants are listed on their own.
    Wraps(&'static str),
    /// Not reachable from a checked spec; reaching it is a compiler bug.
    Bug(&'static str),
}

use Cause::*;

/// The error enums after `check`, by file. A `pub enum …Error` in `src/{compile,run,nn,ir}`
/// that is missing here fails [`every_error_enum_is_listed`].
const ENUMS: &[(&str, &str)] = &[
    ("src/run/experiment.rs", "RunError"),
    ("src/run/train.rs", "TrainError"),
    ("src/compile/sampler.rs", "SamplerError"),
    ("src/compile/family.rs", "LossError"),
    ("src/compile/ndm.rs", "ScheduleError"),
    ("src/compile/jump/mod.rs", "JumpError"),
    ("src/ir/marginal.rs", "MarginalError"),
    ("src/ir/expr.rs", "EvalError"),
    ("src/nn/mod.rs", "NetError"),
    ("src/run/data.rs", "DataError"),
    ("src/run/npy.rs", "NpyError"),
    ("src/run/sets.rs", "SetDataError"),
    ("src/run/images.rs", "ImageError"),
    ("src/run/qm9.rs", "Qm9Error"),
    ("src/run/fetch.rs", "FetchError"),
    ("src/run/pickle.rs", "PickleError"),
    ("src/run/checkpoint.rs", "CheckpointError"),
    ("src/run/optim.rs", "OptimError"),
    ("src/run/metrics.rs", "MetricError"),
    ("src/run/plot.rs", "PlotError"),
    ("src/run/sweep.rs", "SweepError"),
];

const DATA_FILE: &[(&str, &str)] = &[("missing_data_file", "difc::check::data_file")];
const DATA_ARG: &[(&str, &str)] = &[("bad_data_argument", "difc::check::data_argument")];
const DAMAGED_CACHE: &str = "a downloaded file in the data cache is damaged (its sha256 is pinned, so only a corrupted cache or disk gets here)";
const DEVICE: &str =
    "a tensor backend fault (out of memory, a CUDA error); shapes follow the checked spec";
const CHECKPOINT: &str =
    "a checkpoint damaged or written by another difc version (on --resume a usage error, exit 2)";

/// Every variant, `Enum::Variant`, with its cause.
const PATHS: &[(&str, Cause)] = &[
    // run/experiment.rs
    ("RunError::Data", Wraps("the data loaders' errors (DataError, NpyError, SetDataError, ImageError, Qm9Error), and load_data's repeat of the check-time header checks")),
    ("RunError::Output", Io("writing a run file (config.yaml, loss.csv, samples.npy, a PNG) failed: exit 2")),
    ("RunError::Resume", Usage("a folder --resume cannot continue, or a damaged checkpoint in it")),
    ("RunError::Folder", Usage("an --out that is a file, not empty and not a run, unwritable, or already a finished run")),
    ("RunError::Train", Wraps("TrainError")),
    ("RunError::Sample", Wraps("SamplerError")),
    ("RunError::Other", Wraps("compile errors (every one a check-time diagnostic: see every_compile_code_has_a_golden), MetricError, PlotError, LossError of the likelihood bound, device transfers")),
    // run/train.rs
    ("TrainError::Diverged", Numeric("the loss or a gradient became non-finite; the last good checkpoint is kept")),
    ("TrainError::Net", Wraps("NetError")),
    ("TrainError::Optim", Wraps("OptimError")),
    ("TrainError::Candle", Io(DEVICE)),
    ("TrainError::Loss", Wraps("LossError")),
    ("TrainError::Checkpoint", Io(CHECKPOINT)),
    // compile/sampler.rs
    ("SamplerError::Network", Io(DEVICE)),
    ("SamplerError::Unsupported", Golden(&[("jump_with_gaussian_solver", "difc::compile::solver"), ("no_solver_for_target", "difc::compile::solver")])),
    ("SamplerError::NotReady", Bug("a set family sampled before it saw the training data's sizes (the run observes them first)")),
    ("SamplerError::Grid", Golden(&[("log_snr_grid_without_signal", "difc::compile::grid")])),
    ("SamplerError::Diverged", Numeric("the sampled state became NaN or infinite (a badly trained network or too few steps)")),
    // compile/family.rs
    ("LossError::Candle", Io(DEVICE)),
    ("LossError::Net", Wraps("NetError")),
    ("LossError::Target", Numeric("a generalized-score target could not be evaluated at one drawn time (the table covers every training time, checked at compile time)")),
    ("LossError::MissingNet", Bug("the trainer builds the networks each family asks for")),
    // compile/ndm.rs
    ("ScheduleError::NotPositive", Golden(&[("ndm_snr_increasing", "difc::compile::ndm")])),
    ("ScheduleError::NotDecreasing", Golden(&[("ndm_snr_increasing", "difc::compile::ndm")])),
    // compile/jump/mod.rs
    ("JumpError::InvalidParameter", Golden(&[("zero_amplitude_variance", "difc::check::invalid_amplitude")])),
    ("JumpError::NonIntegerRateRatio", Golden(&[("non_integer_rate_ratio", "difc::compile::jumps")])),
    ("JumpError::LengthMismatch", Bug("buffers are sized by the family from the data dimension")),
    ("JumpError::OutOfTable", Bug("the score table is built to cover every training and sampling time")),
    ("JumpError::TableTooCostly", Golden(&[("non_integer_rate_ratio", "difc::compile::jumps")])),
    ("JumpError::RateQuadratureTooCostly", Golden(&[("time_varying_rate_long_horizon", "difc::compile::jumps")])),
    ("JumpError::RateTableTooLarge", Golden(&[("time_varying_rate_large_jumps", "difc::compile::jumps")])),
    // ir/marginal.rs
    ("MarginalError::BadRange", Golden(&[("empty_time_interval", "difc::check::empty_interval")])),
    ("MarginalError::NotTimeOnly", Golden(&[("diffusion_mentions_x", "difc::check::not_in_scope")])),
    ("MarginalError::NotFinite", Golden(&[("diffusion_infinite_at_start", "difc::check::non_finite")])),
    ("MarginalError::NotConverged", Golden(&[("marginal_table_not_converged", "difc::compile::marginal")])),
    // ir/expr.rs
    ("EvalError::UnknownParam", Bug("the checker resolves every name and substitutes the parameters")),
    ("EvalError::Arity", Golden(&[("wrong_arity_builtin", "difc::check::wrong_arity")])),
    // nn/mod.rs
    ("NetError::Config", Golden(&[("heads_do_not_divide_width", "difc::check::invalid_setting")])),
    ("NetError::Shape", Bug("the network's input shape is the checked state's")),
    ("NetError::Weights", Io(CHECKPOINT)),
    ("NetError::Candle", Io(DEVICE)),
    // run/data.rs
    ("DataError::UnknownGenerator", Golden(&[("unknown_generator", "difc::check::unknown_generator")])),
    ("DataError::TooLarge", Golden(&[("huge_data_count", "difc::check::out_of_range")])),
    ("DataError::UnknownParam", Golden(&[("unknown_data_argument", "difc::check::unknown_argument")])),
    ("DataError::DuplicateParam", Golden(DATA_ARG)),
    ("DataError::MissingParam", Golden(&[("data_without_n", "difc::check::missing_argument")])),
    ("DataError::Source", Golden(DATA_ARG)),
    ("DataError::BadValue", Golden(DATA_ARG)),
    // run/npy.rs: check reads every data file's header (Loader::read_head).
    ("NpyError::Io", Io("the data file became unreadable after the check")),
    ("NpyError::BadMagic", Golden(DATA_FILE)),
    ("NpyError::BadVersion", Golden(DATA_FILE)),
    ("NpyError::TruncatedHeader", Golden(DATA_FILE)),
    ("NpyError::BadHeader", Golden(DATA_FILE)),
    ("NpyError::BadDtype", Golden(DATA_FILE)),
    ("NpyError::ScalarArray", Golden(DATA_FILE)),
    ("NpyError::Overflow", Golden(DATA_FILE)),
    ("NpyError::SizeMismatch", Golden(DATA_FILE)),
    ("NpyError::NonFinite", Numeric("a NaN or Inf among the data file's values: check reads the header only (files may be large)")),
    ("NpyError::Empty", Golden(DATA_FILE)),
    ("NpyError::ShapeMismatch", Golden(&[("data_columns_mismatch", "difc::check::data_shape")])),
    // run/sets.rs
    ("SetDataError::ZeroSize", Golden(&[("set_max_zero", "difc::check::out_of_range")])),
    ("SetDataError::Ragged", Golden(&[("set_component_size", "difc::check::set_component_size")])),
    ("SetDataError::PartlyMissing", Numeric("a set component with some of its numbers NaN: a fault in the file's values")),
    ("SetDataError::NoComponent", Numeric("a set with every number NaN: a fault in the file's values")),
    ("SetDataError::TooMany", Golden(&[("set_too_large", "difc::check::set_too_large")])),
    ("SetDataError::NonFinite", Numeric("an Inf among a set file's values")),
    ("SetDataError::Npy", Wraps("NpyError")),
    ("SetDataError::Shape", Golden(&[("set_data_not_sets", "difc::check::data_shape")])),
    ("SetDataError::InFile", Wraps("SetDataError, with the file named")),
    // run/images.rs
    ("ImageError::Fetch", Io("downloading or caching the image data set failed")),
    ("ImageError::Read", Io(DAMAGED_CACHE)),
    ("ImageError::Pickle", Io(DAMAGED_CACHE)),
    ("ImageError::Contents", Io(DAMAGED_CACHE)),
    ("ImageError::NoSplit", Golden(&[("image_split_too_small", "difc::check::out_of_range")])),
    ("ImageError::TooFew", Golden(&[("image_split_too_small", "difc::check::out_of_range")])),
    // run/qm9.rs
    ("Qm9Error::Fetch", Io("downloading or caching QM9 failed")),
    ("Qm9Error::Csv", Io(DAMAGED_CACHE)),
    ("Qm9Error::Field", Io(DAMAGED_CACHE)),
    ("Qm9Error::Contents", Io(DAMAGED_CACHE)),
    ("Qm9Error::TooFew", Io("QM9's split sizes are known only once it is read; a run asking for more molecules than a split holds stops before training")),
    ("Qm9Error::Sets", Wraps("SetDataError (QM9's molecules as sets)")),
    // run/fetch.rs
    ("FetchError::NoCacheDir", Usage("no cache folder: DIFC_DATA, XDG_CACHE_HOME and HOME are all unset")),
    ("FetchError::Io", Io("the data cache cannot be written")),
    ("FetchError::Network", Io("the registry cannot be reached")),
    ("FetchError::BadIndex", Io("the registry answered with something else than its JSON")),
    ("FetchError::NotListed", Io("the registry no longer lists the pinned file")),
    ("FetchError::Checksum", Io(DAMAGED_CACHE)),
    ("FetchError::Zip", Io(DAMAGED_CACHE)),
    ("FetchError::NoMember", Io(DAMAGED_CACHE)),
    // run/pickle.rs
    ("PickleError::Truncated", Io(DAMAGED_CACHE)),
    ("PickleError::Unsupported", Io(DAMAGED_CACHE)),
    ("PickleError::Malformed", Io(DAMAGED_CACHE)),
    ("PickleError::NoStop", Io(DAMAGED_CACHE)),
    ("PickleError::Structure", Io(DAMAGED_CACHE)),
    // run/checkpoint.rs
    ("CheckpointError::Io", Io("reading or writing the checkpoint failed")),
    ("CheckpointError::Corrupt", Io(CHECKPOINT)),
    ("CheckpointError::UnsupportedDtype", Bug("the trainer saves f32/f64/i64 tensors only")),
    ("CheckpointError::Missing", Io(CHECKPOINT)),
    ("CheckpointError::Mismatch", Io(CHECKPOINT)),
    ("CheckpointError::Duplicate", Bug("the networks' variables carry distinct prefixes")),
    ("CheckpointError::Candle", Io(DEVICE)),
    // run/optim.rs
    ("OptimError::Config", Golden(&[("out_of_range_setting", "difc::check::out_of_range")])),
    ("OptimError::State", Io(CHECKPOINT)),
    ("OptimError::UnknownParam", Bug("the optimizer is built over the networks' own variables")),
    ("OptimError::NonFinite", Numeric("a non-finite gradient or update (training diverges)")),
    ("OptimError::Candle", Io(DEVICE)),
    // run/metrics.rs
    ("MetricError::ZeroDim", Golden(&[("zero_column_data", "difc::check::data_file")])),
    ("MetricError::Ragged", Bug("samples and reference are whole rows of the checked dimension")),
    ("MetricError::TooFew", Golden(&[("knn_too_few_samples", "difc::check::out_of_range")])),
    ("MetricError::NonFinite", Numeric("a non-finite sample (the sampler stops on NaN first)")),
    ("MetricError::BadOption", Golden(&[("prd_clusters_over_points", "difc::check::out_of_range")])),
    ("MetricError::OffGrid", Golden(&[("image_levels_off_grid", "difc::check::data_levels")])),
    ("MetricError::LevelOutOfRange", Bug("levels are computed from values checked to lie on the grid")),
    ("MetricError::ZeroBandwidth", Numeric("every sample coincides (a collapsed model)")),
    ("MetricError::NonPositiveQuantile", Numeric("MSLE's upper tail quantile of the samples is ≤ 0")),
    // run/plot.rs
    ("PlotError::NoData", Bug("a run plots at least one sample and one loss row (n ≥ 1, steps ≥ 1)")),
    ("PlotError::Font", Bug("the font is embedded in the binary")),
    ("PlotError::Draw", Io("the PNG encoder or the file failed")),
    ("PlotError::Io", Io("writing the PNG failed")),
    // run/sweep.rs
    ("SweepError::Syntax", Usage("a malformed --sweep")),
    ("SweepError::EmptyValue", Usage("a --sweep with an empty value")),
    ("SweepError::Duplicate", Usage("a key swept twice")),
    ("SweepError::AlsoSet", Usage("a key both swept and --set")),
    ("SweepError::Read", Io("a sweep point's files cannot be read")),
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The variants of `pub enum NAME` in `text`: lines indented by exactly four spaces that start
/// with a capital letter, up to the enum's closing brace.
fn variants(text: &str, name: &str) -> Vec<String> {
    let head = format!("pub enum {name} {{");
    let Some(start) = text.find(&head) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for line in text[start + head.len()..].lines() {
        if line.starts_with('}') {
            break;
        }
        let Some(rest) = line.strip_prefix("    ") else {
            continue;
        };
        if rest.starts_with(|c: char| c.is_ascii_uppercase()) {
            out.push(
                rest.chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect(),
            );
        }
    }
    out
}

/// Every `.rs` file below `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.map(|e| e.path()).unwrap_or_default();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_error_enum_is_listed() {
    let mut files = Vec::new();
    for dir in ["src/compile", "src/run", "src/nn", "src/ir"] {
        rust_files(&root().join(dir), &mut files);
    }
    let listed: BTreeSet<&str> = ENUMS.iter().map(|(_, e)| *e).collect();
    let mut missing = Vec::new();
    for f in &files {
        for line in read(f).lines() {
            let Some(rest) = line.trim_start().strip_prefix("pub enum ") else {
                continue;
            };
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if name.ends_with("Error") && !listed.contains(name.as_str()) {
                missing.push(format!("{name} ({})", f.display()));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "error enums missing from ENUMS and PATHS: {missing:?}"
    );
}

#[test]
fn every_run_time_error_variant_has_a_cause() {
    let mut in_source: BTreeSet<String> = BTreeSet::new();
    for (file, name) in ENUMS {
        let found = variants(&read(&root().join(file)), name);
        assert!(!found.is_empty(), "no `pub enum {name}` in {file}");
        in_source.extend(found.into_iter().map(|v| format!("{name}::{v}")));
    }
    let mut listed: BTreeMap<&str, Cause> = BTreeMap::new();
    for (path, cause) in PATHS {
        assert!(listed.insert(path, *cause).is_none(), "{path} listed twice");
    }
    let missing: Vec<&String> = in_source
        .iter()
        .filter(|v| !listed.contains_key(v.as_str()))
        .collect();
    let stale: Vec<&&str> = listed.keys().filter(|k| !in_source.contains(**k)).collect();
    assert!(
        missing.is_empty(),
        "run-time error paths without a cause (add them to PATHS: a golden spec with its check-time diagnostic, or the IO / numeric / usage reason): {missing:?}"
    );
    assert!(
        stale.is_empty(),
        "PATHS lists variants that no longer exist: {stale:?}"
    );
    for (path, cause) in PATHS {
        let reason = match cause {
            Golden(goldens) => {
                assert!(!goldens.is_empty(), "{path}: no golden");
                for (spec, code) in *goldens {
                    let stderr = ["specs/bad", "specs/warn"]
                        .iter()
                        .map(|d| root().join(d).join(format!("{spec}.stderr")))
                        .find(|p| p.is_file())
                        .unwrap_or_else(|| panic!("{path}: no golden `{spec}`"));
                    assert!(
                        read(&stderr).contains(code),
                        "{path}: golden `{spec}` does not show `{code}`"
                    );
                }
                continue;
            }
            // A wrapper names the listed enum(s) it carries.
            Wraps(r) => {
                assert!(
                    ENUMS.iter().any(|(_, e)| r.contains(e)),
                    "{path}: wraps no listed enum ({r:?})"
                );
                r
            }
            Io(r) | Numeric(r) | Usage(r) | Bug(r) => r,
        };
        assert!(reason.len() >= 8, "{path}: say why ({reason:?})");
    }
}

/// The checker reports every compile error (and the compiler's warnings) with its code, so
/// each `difc::compile::*` code has a golden that shows it.
#[test]
fn every_compile_code_has_a_golden() {
    let mut files = Vec::new();
    rust_files(&root().join("src/compile"), &mut files);
    let mut codes = BTreeSet::new();
    for f in files
        .iter()
        .chain(std::iter::once(&root().join("src/driver.rs")))
    {
        let text = read(f);
        for (i, _) in text.match_indices("\"difc::compile::") {
            let code: String = text[i + 1..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            codes.insert(code);
        }
    }
    assert!(codes.len() >= 5, "found only {codes:?}");
    let mut goldens = String::new();
    for dir in ["specs/bad", "specs/warn"] {
        for entry in std::fs::read_dir(root().join(dir)).expect("list goldens") {
            let path = entry.map(|e| e.path()).unwrap_or_default();
            if path.extension().is_some_and(|x| x == "stderr") {
                goldens += &read(&path);
            }
        }
    }
    let missing: Vec<&String> = codes
        .iter()
        .filter(|c| !goldens.contains(&format!("{c}\n")))
        .collect();
    assert!(
        missing.is_empty(),
        "compile codes without a golden: {missing:?}"
    );
}

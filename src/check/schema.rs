//! Every setting an experiment accepts, with its type and default: the single source of truth
//! for checking specs, for `--set` overrides and for the resolved `config.yaml`.

/// The type of a setting.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    /// A whole number ≥ min.
    Int(u64),
    /// A number in [lo, hi] (hi exclusive when the flag is set).
    Float(f64, f64, bool),
    /// A number > 0.
    Positive,
    /// One of a fixed set of names.
    Choice(&'static [&'static str]),
}

/// One setting of a block.
#[derive(Clone, Copy, Debug)]
pub struct Setting {
    pub key: &'static str,
    pub kind: Kind,
    pub default: &'static str,
    pub doc: &'static str,
}

const fn s(key: &'static str, kind: Kind, default: &'static str, doc: &'static str) -> Setting {
    Setting {
        key,
        kind,
        default,
        doc,
    }
}

// The choice lists are the registries' names (crate::ir::registry): one row per name.
pub const SOLVERS: &[&str] = crate::ir::registry::SOLVER_NAMES;
pub const GRIDS: &[&str] = crate::ir::registry::GRID_NAMES;
pub const ACTIVATIONS: &[&str] = crate::ir::registry::ACTIVATION_NAMES;
pub const EMBEDDINGS: &[&str] = crate::ir::registry::EMBEDDING_NAMES;
/// Metric names for `metrics = [...]`: `knn` writes precision, recall, density and coverage;
/// `modes` writes mode_fraction and mode_weight_tv (only for data with known modes).
pub const METRICS: &[&str] = crate::ir::registry::METRIC_NAMES;
pub const TARGETS: &[&str] = crate::ir::registry::TARGET_NAMES;
pub const PRECONDITIONS: &[&str] = crate::ir::registry::PRECONDITION_NAMES;

pub const TRAIN: &[Setting] = &[
    s("steps", Kind::Int(1), "4000", "optimizer steps"),
    s("batch", Kind::Int(1), "512", "batch size"),
    s("lr", Kind::Positive, "0.002", "peak learning rate"),
    s(
        "lr_min",
        Kind::Float(0.0, 1.0, false),
        "0.0001",
        "learning rate at the end of the cosine decay",
    ),
    s("warmup", Kind::Int(0), "100", "linear warm-up steps"),
    s(
        "schedule",
        Kind::Choice(&["cosine", "constant"]),
        "cosine",
        "learning-rate schedule",
    ),
    s(
        "weight_decay",
        Kind::Float(0.0, 1.0, false),
        "0",
        "AdamW weight decay",
    ),
    s(
        "ema",
        Kind::Float(0.0, 1.0, true),
        "0.999",
        "EMA decay of the weights",
    ),
    s(
        "clip",
        Kind::Float(0.0, 1e12, false),
        "1.0",
        "max gradient norm (0 = off)",
    ),
    s("seed", Kind::Int(0), "0", "seed of all randomness"),
    s(
        "log_every",
        Kind::Int(1),
        "100",
        "steps between loss.csv rows",
    ),
    s(
        "checkpoint_every",
        Kind::Int(1),
        "1000",
        "steps between checkpoints",
    ),
];

pub const SAMPLE: &[Setting] = &[
    s("n", Kind::Int(1), "15000", "number of samples"),
    s(
        "solver",
        Kind::Choice(SOLVERS),
        "ode_heun",
        "reverse-time solver (not written: the process family's first offered one, chosen after compiling; `difc explain` names it)",
    ),
    s("steps", Kind::Int(1), "100", "solver steps"),
    s("seed", Kind::Int(0), "1", "seed of the sampler"),
    s(
        "grid",
        Kind::Choice(GRIDS),
        "uniform",
        "time grid of the sampler: uniform in t, uniform in log-SNR, edm (Karras et al.'s ρ = 7 in σ/α), or coarse_fine (a coarse upper half, fine below)",
    ),
    s(
        "eta",
        Kind::Float(0.0, 1.0, false),
        "0",
        "DDIM's noise level η (`solver = ddim` only): 0 deterministic, 1 DDPM's posterior noise",
    ),
    s(
        "t_end",
        Kind::Float(0.0, 1e12, false),
        "0",
        "forward time at which sampling stops",
    ),
    s(
        "corrector_steps",
        Kind::Int(0),
        "0",
        "Langevin corrector steps after each predictor step (trans-dimensional processes)",
    ),
    s(
        "corrector_snr",
        Kind::Positive,
        "0.3",
        "signal-to-noise ratio that sets the Langevin step size",
    ),
    s(
        "corrector_t_lo",
        Kind::Float(0.0, 1e12, false),
        "0.003",
        "the corrector runs at times in (corrector_t_lo, corrector_t_hi)",
    ),
    s(
        "corrector_t_hi",
        Kind::Float(0.0, 1e12, false),
        "0.1",
        "the corrector runs at times in (corrector_t_lo, corrector_t_hi)",
    ),
];

pub const EVAL: &[Setting] = &[
    s(
        "reference",
        Kind::Int(1),
        "15000",
        "fresh data points the metrics compare against",
    ),
    s(
        "clusters",
        Kind::Int(2),
        "100",
        "k-means clusters of the PRD metric",
    ),
    s(
        "runs",
        Kind::Int(1),
        "10",
        "clusterings averaged by the PRD metric",
    ),
];

pub const LOSS: &[Setting] = &[
    s(
        "target",
        Kind::Choice(TARGETS),
        "eps",
        "what the network predicts",
    ),
    s(
        "t_min",
        Kind::Float(0.0, 1.0, false),
        "0.001",
        "smallest training time",
    ),
    s(
        "precondition",
        Kind::Choice(PRECONDITIONS),
        "none",
        "network input/output scaling: none, or edm (Karras et al. 2022; needs target = x0)",
    ),
    s(
        "sigma_data",
        Kind::Positive,
        "0.5",
        "the data's standard deviation, for precondition = edm",
    ),
    s(
        "score_weight",
        Kind::Float(0.0, 1e6, false),
        "1",
        "trans-dimensional ELBO: weight of the score term",
    ),
    s(
        "rate_weight",
        Kind::Float(0.0, 1e6, false),
        "1",
        "trans-dimensional ELBO: weight of the birth-rate term",
    ),
    s(
        "insert_weight",
        Kind::Float(0.0, 1e6, false),
        "1",
        "trans-dimensional ELBO: weight of the insertion term",
    ),
    s(
        "ce_weight",
        Kind::Float(0.0, 1e6, false),
        "1",
        "trans-dimensional ELBO: weight of the n_0 classifier's cross-entropy",
    ),
];

pub const NETWORK: &[Setting] = &[
    s("width", Kind::Int(1), "128", "hidden width"),
    s("depth", Kind::Int(1), "4", "hidden layers"),
    s(
        "activation",
        Kind::Choice(ACTIVATIONS),
        "gelu",
        "activation",
    ),
    s(
        "embedding",
        Kind::Choice(EMBEDDINGS),
        "sinusoidal",
        "time embedding",
    ),
    s("embed_dim", Kind::Int(2), "32", "time-embedding size"),
    s(
        "heads",
        Kind::Int(1),
        "4",
        "attention heads (set_transformer; must divide width)",
    ),
    s(
        "attention",
        Kind::Choice(&["true", "false"]),
        "true",
        "self-attention at the lowest resolution (unet)",
    ),
];

/// Statements an experiment accepts.
pub const EXPERIMENT_KEYS: &[&str] = &[
    "data", "process", "network", "loss", "train", "sample", "eval", "metrics",
];

/// The settings of a block statement (`train { .. }` etc.).
pub fn block(name: &str) -> Option<&'static [Setting]> {
    match name {
        "train" => Some(TRAIN),
        "sample" => Some(SAMPLE),
        "eval" => Some(EVAL),
        "loss" => Some(LOSS),
        _ => None,
    }
}

pub fn keys(settings: &[Setting]) -> Vec<&'static str> {
    settings.iter().map(|s| s.key).collect()
}

//! The checked model: what the checker hands to the compiler. Every name is resolved, every
//! parameter substituted, every number validated; spans are kept so that later stages can
//! still point at the spec.

use super::expr::Expr;
use crate::diag::{FileId, Span};
use std::collections::BTreeMap;

/// A source location carried into the IR.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Loc {
    pub file: FileId,
    pub span: Span,
}

/// The state space a process acts on.
#[derive(Clone, Debug, PartialEq)]
pub enum StateSpace {
    /// Vectors of a dimension fixed by the data (`None` = take it from the data).
    Vector(Option<usize>),
    /// Images `channels × height × width`.
    Image {
        channels: usize,
        height: usize,
        width: usize,
    },
    /// Sets of up to `max` components, each a vector of `component` numbers.
    Set {
        max: usize,
        component: usize,
        /// The named blocks of a component, in order, covering `0..component`
        /// (`of = vec(position = 3, features = 6)`); empty for a plain `of = vec(d)`.
        parts: Vec<ComponentPart>,
        /// The component indices whose mean over the present components is constrained to 0
        /// (`com = position` gives `0..3` above): the sum over the set of `x[j][com]` is zero
        /// for every sample of the data and of the model. `None`: no constraint.
        com: Option<std::ops::Range<usize>>,
    },
}

/// A named block of a set component: `position = 3` in `of = vec(position = 3, features = 6)`.
#[derive(Clone, Debug, PartialEq)]
pub struct ComponentPart {
    pub name: String,
    /// The indices of the component it occupies (`0..3` for `position` above).
    pub range: std::ops::Range<usize>,
}

impl StateSpace {
    /// Numbers per datapoint when known from the declaration alone.
    pub fn dim(&self) -> Option<usize> {
        match self {
            StateSpace::Vector(d) => *d,
            StateSpace::Image {
                channels,
                height,
                width,
            } => Some(channels * height * width),
            StateSpace::Set { max, component, .. } => Some(max * component),
        }
    }
    /// The shape of one datapoint as tensors carry it: `[c, h, w]` for an image, `[d]` for a
    /// vector of `d` numbers (`dim` when the state leaves it to the data), `[max · component]`
    /// for a set (the set family reads its padded rows flat).
    pub fn point_shape(&self, dim: usize) -> Vec<usize> {
        match self {
            StateSpace::Image {
                channels,
                height,
                width,
            } => vec![*channels, *height, *width],
            StateSpace::Vector(d) => vec![d.unwrap_or(dim)],
            StateSpace::Set { max, component, .. } => vec![max * component],
        }
    }

    pub fn describe(&self) -> String {
        match self {
            StateSpace::Vector(Some(d)) => format!("vec({d})"),
            StateSpace::Vector(None) => "vec (dimension of the data)".into(),
            StateSpace::Image {
                channels,
                height,
                width,
            } => format!("image({channels}, {height}, {width})"),
            StateSpace::Set {
                max,
                component,
                parts,
                com,
            } => {
                let of = if parts.is_empty() {
                    component.to_string()
                } else {
                    let named: Vec<String> = parts
                        .iter()
                        .map(|p| format!("{} = {}", p.name, p.range.len()))
                        .collect();
                    named.join(", ")
                };
                match com.as_ref().and_then(|r| self.part_at(r)) {
                    Some(name) => format!("set(max = {max}, of = vec({of}), com = {name})"),
                    None => format!("set(max = {max}, of = vec({of}))"),
                }
            }
        }
    }

    /// The named component parts of a set state (empty for other states and plain `vec(d)`).
    pub fn parts(&self) -> &[ComponentPart] {
        match self {
            StateSpace::Set { parts, .. } => parts,
            _ => &[],
        }
    }

    /// The zero-centre-of-mass indices of a set state's components, if it has the constraint.
    pub fn com(&self) -> Option<std::ops::Range<usize>> {
        match self {
            StateSpace::Set { com, .. } => com.clone(),
            _ => None,
        }
    }

    /// The name of the part occupying exactly `range`, if there is one.
    fn part_at(&self, range: &std::ops::Range<usize>) -> Option<&str> {
        self.parts()
            .iter()
            .find(|p| p.range == *range)
            .map(|p| p.name.as_str())
    }
}

/// A drift that is affine in the state: `a(t)·x + b(t)`.
#[derive(Clone, Debug, PartialEq)]
pub struct AffineDrift {
    pub full: Expr,
    pub a: Expr,
    pub b: Expr,
}

/// The law of one jump's amplitude.
#[derive(Clone, Debug, PartialEq)]
pub enum Amplitude {
    /// Multivariate Laplace as a Gaussian scale mixture: `sqrt(var·Z)·G`, `Z ~ Gamma(shape, 1)`.
    Laplace { var: f64, shape: f64 },
    /// Isotropic Gaussian with variance `var`.
    Gaussian { var: f64 },
}

/// Compound-Poisson jumps.
#[derive(Clone, Debug, PartialEq)]
pub struct Jumps {
    pub rate: Expr,
    /// `Some(λ)` when the rate does not depend on t.
    pub constant_rate: Option<f64>,
    pub amplitude: Amplitude,
    /// Clamps of the generalized-score target near its singularities.
    pub r_min: f64,
    pub t_min: f64,
    pub loc: Loc,
}

/// Which component a deletion removes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeleteKernel {
    Uniform,
    Last,
}

/// Dimension-deleting jumps (trans-dimensional models).
#[derive(Clone, Debug, PartialEq)]
pub struct Delete {
    /// Rate as a function of t and n (number of components).
    pub rate: Expr,
    pub kernel: DeleteKernel,
    pub loc: Loc,
}

/// A learned transform applied before the noise (Neural Diffusion Models).
#[derive(Clone, Debug, PartialEq)]
pub struct Transform {
    pub name: String,
    pub network: NetworkSpec,
    /// How the network output makes F, so that F(x, t_0) = x by construction.
    pub form: TransformForm,
    pub loc: Loc,
}

/// How a learned transform is built from its network NN(x, τ), τ = (t − t_0)/(t_1 − t_0).
/// Both forms give F(x, t_0) = x exactly, which keeps the Gaussian decoder at t_min valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransformForm {
    /// F = (1 − τ)·x + τ·NN(x, τ) (the default): F moves from the data to the network's
    /// output over the horizon.
    Interpolate,
    /// F = x + τ·NN(x, τ): the network learns a correction that grows with time.
    Residual,
    /// F = x, no network (`transform F(x, t) = identity`): the Gaussian process with the same
    /// schedule, trained and evaluated through the same NDM objective (VDM's continuous ELBO).
    Identity,
}

impl TransformForm {
    /// Every form, with its name in the language (`learned(mlp(...), form = NAME)`).
    pub const ALL: &'static [(TransformForm, &'static str)] = &[
        (TransformForm::Interpolate, "interpolate"),
        (TransformForm::Residual, "residual"),
        (TransformForm::Identity, "identity"),
    ];
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(f, _)| *f == self)
            .map(|(_, n)| *n)
            .unwrap_or("interpolate")
    }
    pub fn from_name(name: &str) -> Option<TransformForm> {
        Self::ALL.iter().find(|(_, n)| *n == name).map(|(f, _)| *f)
    }
}

/// Marginal declared directly: `mean = alpha(t)·x` (or `alpha(t)·F(x, t)`), `std = sigma(t)`.
#[derive(Clone, Debug, PartialEq)]
pub struct ExplicitMarginal {
    pub alpha: Expr,
    pub sigma: Expr,
    /// True when the mean applies to the learned transform `F(x, t)` instead of `x`.
    pub through_transform: bool,
}

/// A forward process with all parameters substituted.
#[derive(Clone, Debug, PartialEq)]
pub struct Process {
    pub name: String,
    pub loc: Loc,
    pub params: BTreeMap<String, f64>,
    pub time: (f64, f64),
    pub state: StateSpace,
    pub drift: Option<AffineDrift>,
    pub diffusion: Option<Expr>,
    pub explicit: Option<ExplicitMarginal>,
    pub jumps: Option<Jumps>,
    pub delete: Option<Delete>,
    pub transform: Option<Transform>,
}

impl Process {
    pub fn horizon(&self) -> f64 {
        self.time.1
    }
    /// A Gaussian (linear SDE or explicit marginal) process without jumps or deletions.
    pub fn is_gaussian(&self) -> bool {
        self.jumps.is_none() && self.delete.is_none()
    }
}

/// Network architectures the compiler can build.
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkSpec {
    pub kind: super::NetworkKind,
    pub width: usize,
    /// Attention heads (set transformer).
    pub heads: usize,
    pub depth: usize,
    pub activation: super::ActivationKind,
    pub embedding: super::EmbeddingKind,
    pub embed_dim: usize,
    /// Self-attention at the lowest resolution (U-Net).
    pub attention: bool,
}

/// The training objective.
#[derive(Clone, Debug, PartialEq)]
pub struct LossSpec {
    pub target: super::Target,
    /// Time weighting w(t) multiplying the squared error (1 when not declared).
    pub weight: Expr,
    /// Whether the spec declares `weight(t)`. When it does not, a Gaussian process with
    /// `target = score` is weighted by s_t² (score_sde's λ(t) = σ_t², which keeps the small-σ
    /// end from dominating the loss), and everything else by `weight` = 1.
    pub weight_given: bool,
    pub t_min: f64,
    /// The network's input/output scaling (`precondition`), and EDM's σ_data (`sigma_data`,
    /// the data's standard deviation; used by `Precondition::Edm`).
    pub precondition: super::Precondition,
    pub sigma_data: f64,
    /// Weights of the trans-dimensional ELBO's terms.
    pub transdim: ElboWeights,
}

/// Weights of the trans-dimensional ELBO's terms (`loss { score_weight = …, rate_weight = …,
/// insert_weight = …, ce_weight = … }`); the paper's released configuration uses 1 for all.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ElboWeights {
    pub score: f64,
    pub rate: f64,
    pub insert: f64,
    pub ce: f64,
}

impl Default for ElboWeights {
    fn default() -> Self {
        ElboWeights {
            score: 1.0,
            rate: 1.0,
            insert: 1.0,
            ce: 1.0,
        }
    }
}

/// Where the data come from.
#[derive(Clone, Debug, PartialEq)]
pub enum DataSource {
    /// A built-in generator (swiss_roll, grid_gmm, ...) with its parameters.
    Generator {
        name: String,
        args: Vec<(String, Value)>,
    },
    /// A user `.npy` file (path relative to the spec file, resolved by the runner).
    Npy {
        path: String,
        base_dir: Option<std::path::PathBuf>,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct DataSpec {
    pub source: DataSource,
    /// Number of training points.
    pub n: usize,
    /// Dimension when known without reading files.
    pub dim: Option<usize>,
    /// For discrete data (8-bit images, the 17-level 8×8 digits): the number of equally spaced
    /// values on [−1, 1] each coordinate takes, x_k = −1 + 2k/(levels − 1). Likelihood models
    /// then use a discrete decoder and report bits per dimension.
    pub levels: Option<usize>,
    /// Points in the data file (`npy`), read from its header at check time; `None` for a
    /// generator.
    pub rows: Option<usize>,
    pub loc: Loc,
}

/// The first value of `values` (index, value) that is not on the `levels`-level grid
/// x_k = −1 + 2k/(levels − 1) (to 10⁻³ of a step), or `None` when all are.
pub fn off_grid(values: &[f32], levels: usize) -> Option<(usize, f32)> {
    let steps = (levels.max(2) - 1) as f64;
    values.iter().copied().enumerate().find(|&(_, v)| {
        let k = (f64::from(v) + 1.0) * steps / 2.0;
        !(k > -1e-3 && k < steps + 1e-3 && (k - k.round()).abs() < 1e-3)
    })
}

/// Optimisation settings.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainSpec {
    pub steps: u64,
    pub batch: usize,
    pub lr: f64,
    pub lr_min: f64,
    pub warmup: u64,
    pub schedule: String,
    pub weight_decay: f64,
    pub ema: f64,
    pub clip: f64,
    pub seed: u64,
    pub log_every: u64,
    pub checkpoint_every: u64,
}

/// Sampling settings.
#[derive(Clone, Debug, PartialEq)]
pub struct SampleSpec {
    pub n: usize,
    /// The reverse-time solver. When the spec names none (`solver_given` false), the driver
    /// sets it after compiling to the process family's first offered solver, so that a spec
    /// `check` accepts always samples with a solver its family has.
    pub solver: super::Solver,
    /// Whether the spec (or a `--set`) names the solver.
    pub solver_given: bool,
    pub grid: super::TimeGrid,
    /// DDIM's noise level η (0 = deterministic, 1 = DDPM's posterior noise); `ddim` only.
    pub eta: f64,
    pub steps: usize,
    pub seed: u64,
    /// Forward time at which the reverse sampler stops (0 = run to the data).
    pub t_end: f64,
    /// Langevin corrector steps after each predictor step (trans-dimensional processes).
    pub corrector: Corrector,
}

/// The Langevin corrector of a predictor–corrector sampler (`sample { corrector_steps = …,
/// corrector_snr = …, corrector_t_lo = …, corrector_t_hi = … }`): after each predictor step that
/// lands at a time in (t_lo, t_hi), `steps` Langevin updates x ← x + ε ŝ + √(2ε) z with
/// ε = 2 (snr ⟨‖z‖⟩ / ⟨‖ŝ‖⟩)² (per-set norms averaged over the batch). `steps = 0` turns it
/// off.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Corrector {
    pub steps: usize,
    pub snr: f64,
    pub t_lo: f64,
    pub t_hi: f64,
}

impl Corrector {
    pub const OFF: Corrector = Corrector {
        steps: 0,
        snr: 0.3,
        t_lo: 0.0,
        t_hi: 0.0,
    };
}

/// Evaluation settings.
#[derive(Clone, Debug, PartialEq)]
pub struct EvalSpec {
    pub metrics: Vec<super::MetricKind>,
    /// Fresh reference points the metrics compare against.
    pub reference: usize,
    pub clusters: usize,
    pub runs: usize,
}

/// One experiment, fully resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct Experiment {
    pub name: String,
    pub loc: Loc,
    pub data: DataSpec,
    pub process: Process,
    pub network: NetworkSpec,
    pub loss: LossSpec,
    pub train: TrainSpec,
    pub sample: SampleSpec,
    pub eval: EvalSpec,
    /// Every setting as `block.key → value text`, for config.yaml.
    pub resolved: BTreeMap<String, String>,
}

/// A checked compilation unit.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Model {
    /// Every declared process instantiated with its default parameters.
    pub processes: Vec<Process>,
    pub experiments: Vec<Experiment>,
}

/// A literal setting value (generator arguments keep lists and words).
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Number(f64),
    List(Vec<f64>),
    Text(String),
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Number(v) => write!(f, "{v}"),
            Value::List(v) => {
                let items: Vec<String> = v.iter().map(|x| x.to_string()).collect();
                write!(f, "[{}]", items.join(", "))
            }
            Value::Text(s) => write!(f, "{s}"),
        }
    }
}

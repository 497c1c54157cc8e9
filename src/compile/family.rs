//! The one contract every forward-process family answers (score_sde's `SDE` class is the
//! model): how a batch is noised and what the loss is, what the prior is, which reverse-time
//! solvers it supports and how each takes a step, and how it describes itself.
//!
//! Everything downstream (trainer, sampler, `difc explain`, `difc sample`) is generic over
//! this trait; a new family is one module implementing it plus one arm in [`super::compile`].

use super::sampler::{SamplerError, ScoreFn, StepContext};
use super::{Solver, TimeGrid};
use crate::nn::{Module, SetNet};
use candle_core::Tensor;

/// Which family a compiled process belongs to (for tests, `explain` and error messages).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FamilyKind {
    /// Linear SDE or explicit Gaussian marginal.
    Gaussian,
    /// Pure-jump OU with Laplace jumps: closed-form generalized score.
    JumpClosedForm,
    /// Jumps (with or without Gaussian noise): generalized score tabulated at compile time.
    JumpTabulated,
    /// A learned transform inside a Gaussian marginal (Neural Diffusion Models).
    NeuralDiffusion,
    /// Sets of varying size: component-wise Gaussian diffusion plus deletions (Campbell et al.).
    TransDimensional,
}

/// The forward time interval and the training / sampling cut-off.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TimeSpan {
    pub t0: f64,
    pub t1: f64,
    /// Smallest training time (and default end of sampling).
    pub t_min: f64,
}

impl TimeSpan {
    /// The network's time input for forward time t: normalised to [0, 1].
    pub fn net_time(&self, t: f64) -> f32 {
        ((t - self.t0) / (self.t1 - self.t0)) as f32
    }
    /// d(net time)/dt, for chain rules through the network's time input.
    pub fn net_time_rate(&self) -> f64 {
        1.0 / (self.t1 - self.t0)
    }
}

/// The networks of an experiment, by role. The fixed-dimension families use `score` (the
/// network the spec's `network` declares); NDM adds the learned `transform`; the
/// trans-dimensional family uses the multi-head `set` network instead of `score`.
pub struct Nets<'a> {
    pub score: Option<&'a dyn Module>,
    pub transform: Option<&'a dyn Module>,
    pub set: Option<&'a dyn SetNet>,
}

impl<'a> Nets<'a> {
    /// Only the score network.
    pub fn score(score: &'a dyn Module) -> Nets<'a> {
        Nets {
            score: Some(score),
            transform: None,
            set: None,
        }
    }

    /// Only the set network (trans-dimensional processes).
    pub fn set(set: &'a dyn SetNet) -> Nets<'a> {
        Nets {
            score: None,
            transform: None,
            set: Some(set),
        }
    }

    /// The score network, or the error a family without one reports.
    pub fn score_net(&self) -> Result<&'a dyn Module, LossError> {
        self.score.ok_or(LossError::MissingNet("score"))
    }
}

/// A learned transform during sampling: rows (n × D) at forward time t → the network's output
/// NN(x, τ) and, when asked (`true`), ∂NN/∂τ; the family makes F from them.
pub type TransformFn<'a> =
    dyn FnMut(&[f32], f64, bool) -> Result<(Vec<f32>, Vec<f32>), String> + 'a;

/// The heads of the set network on host rows (trans-dimensional sampling): for n NaN-padded
/// rows of `max × component` numbers, `eps` (n × max × component), `n0_logits` (n × max),
/// and the insertion Gaussian's `ins_mean` and `ins_std` (n × component, std > 0).
pub struct SetHeads {
    pub eps: Vec<f32>,
    pub n0_logits: Vec<f32>,
    pub ins_mean: Vec<f32>,
    pub ins_std: Vec<f32>,
}

/// The set network during sampling: NaN-padded rows (absent components all NaN) at forward
/// time t → its heads.
pub type SetFn<'a> = dyn FnMut(&[f32], f64) -> Result<SetHeads, String> + 'a;

/// The trained networks as the sampler calls them (host rows in, host rows out).
pub struct SampleNets<'a, 'b> {
    pub score: Option<&'a mut ScoreFn<'b>>,
    pub transform: Option<&'a mut TransformFn<'b>>,
    pub set: Option<&'a mut SetFn<'b>>,
}

impl<'a, 'b> SampleNets<'a, 'b> {
    /// Only the score network.
    pub fn score(score: &'a mut ScoreFn<'b>) -> Self {
        SampleNets {
            score: Some(score),
            transform: None,
            set: None,
        }
    }

    /// The score network, or the error a family without one reports.
    pub fn score_fn(&mut self) -> Result<&mut ScoreFn<'b>, SamplerError> {
        match self.score.as_deref_mut() {
            Some(f) => Ok(f),
            None => Err(SamplerError::Network(
                "this process samples with a score network, and none was given".into(),
            )),
        }
    }
}

/// One training batch: the clean data `x0` (shape `[B, …]`, structure kept) and the random
/// streams it is noised from, keyed by (seed, step, index in the batch).
pub struct TrainBatch<'a> {
    pub x0: &'a Tensor,
    pub seed: u64,
    pub step: u64,
}

/// What `difc explain` needs from the experiment around a process.
pub struct ExplainContext {
    pub solver: Solver,
    pub steps: usize,
    /// The loss weighting w(t) as text.
    pub weight: String,
    /// The set network, as text (`set transformer`, `EGNN …`); unused by vector families.
    pub network: String,
}

/// Why a loss could not be built.
#[derive(Debug, thiserror::Error)]
pub enum LossError {
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error(transparent)]
    Net(#[from] crate::nn::NetError),
    #[error("the training target could not be computed at t = {t}: {what}")]
    Target { t: f64, what: String },
    #[error("this process needs a `{0}` network, and none was given")]
    MissingNet(&'static str),
}

/// A compiled forward process.
pub trait Family: Send + Sync {
    fn kind(&self) -> FamilyKind;
    fn time(&self) -> TimeSpan;
    /// Numbers per datapoint (the product of the state's shape).
    fn dim(&self) -> usize;

    /// The training loss of one batch as a candle graph: noise drawn from the seeded per-sample
    /// streams, the networks called on the noised state, a scalar whose backward pass reaches
    /// every network variable.
    fn loss(&self, nets: &Nets, batch: &TrainBatch) -> Result<Tensor, LossError>;

    /// `n` prior samples at the horizon (row-major, `n × dim`); sample i from stream
    /// (seed, Sample, 0, i).
    fn prior(&self, n: usize, seed: u64) -> Vec<f64>;

    /// The solvers this family can take a reverse step with.
    fn solvers(&self) -> &'static [Solver];

    /// One reverse step of `solver` from forward time t to t − h; `x` holds n rows of `dim`
    /// numbers. `k` numbers the step (for the per-sample noise streams).
    #[allow(clippy::too_many_arguments)]
    fn step(
        &self,
        solver: Solver,
        nets: &mut SampleNets,
        x: &mut [f64],
        t: f64,
        h: f64,
        seed: u64,
        k: usize,
    ) -> Result<(), SamplerError>;

    /// One reverse step with its place in the run (`ctx`: the step number, the run's length,
    /// DDIM's η, the multistep history). The sampling loop calls this; families whose solvers
    /// need none of it keep the default, [`Family::step`].
    fn step_with(
        &self,
        solver: Solver,
        nets: &mut SampleNets,
        x: &mut [f64],
        ctx: &mut StepContext,
    ) -> Result<(), SamplerError> {
        self.step(solver, nets, x, ctx.t, ctx.h, ctx.seed, ctx.k)
    }

    /// The `steps + 1` times of the reverse grid, from the horizon down to `t_end`. Every family
    /// has the uniform and coarse-fine grids; those with a Gaussian marginal also the log-SNR
    /// and EDM grids.
    fn time_grid(
        &self,
        grid: TimeGrid,
        steps: usize,
        t_end: f64,
    ) -> Result<Vec<f64>, SamplerError> {
        match grid {
            TimeGrid::Uniform => Ok(super::sampler::uniform_grid(self.time().t1, t_end, steps)),
            TimeGrid::CoarseFine => Ok(super::sampler::coarse_fine_grid(
                self.time().t1,
                t_end,
                steps,
            )),
            TimeGrid::LogSnr | TimeGrid::Edm => Err(SamplerError::Grid {
                grid: grid.name(),
                why: "the process has no Gaussian marginal, so no signal-to-noise ratio".into(),
            }),
        }
    }

    /// The derived equations, as the lines `difc explain` prints under the process header.
    fn explain(&self, ctx: &ExplainContext) -> String;

    /// The per-sample negative ELBO of `x0` in nats per dimension (one time and noise draw
    /// per row, from the `Metric` streams of `seed`), where the family has a likelihood bound.
    fn nelbo(&self, _nets: &Nets, _x0: &Tensor, _seed: u64) -> Option<Result<Vec<f64>, LossError>> {
        None
    }

    /// F(x, t) of host rows `x` (n × dim) through the learned transform, where the family has
    /// one (for the transform plot).
    fn apply_transform(
        &self,
        _nets: &mut SampleNets,
        _x: &[f64],
        _t: f64,
    ) -> Option<Result<Vec<f64>, SamplerError>> {
        None
    }

    /// Whether the family trains a learned transform network besides the score network.
    fn needs_transform(&self) -> bool {
        false
    }

    /// For a likelihood family with a discrete decoder: its number of levels and σ/α at
    /// t_min, the decoder's noise in data units (`check` compares it with the level spacing).
    fn decoder_noise(&self) -> Option<(usize, f64)> {
        None
    }

    /// q(x_t | x_0) = N(m_t x_0 + c_t, s_t² I) where the family has one.
    fn gaussian_marginal(&self) -> Option<&crate::ir::marginal::Marginal> {
        None
    }

    /// Lets a family record statistics of the training data (rows of `dim`) that its sampler
    /// needs: the fixed-size set model draws its sizes from the data's histogram. Called before
    /// training and before sampling from a checkpoint.
    fn observe_data(&self, _x0: &[f32]) {}

    /// Whether the family can draw its prior now (`observe_data` may be needed first).
    fn ready_to_sample(&self) -> Result<(), SamplerError> {
        Ok(())
    }

    /// Whether a sampler state (n rows of `dim`) is still finite. Families whose rows carry
    /// NaN padding (absent set components) say which NaNs are padding.
    fn state_is_finite(&self, x: &[f64]) -> bool {
        x.iter().all(|v| v.is_finite())
    }

    /// The network's time input for forward time t.
    fn net_time(&self, t: f64) -> f32 {
        self.time().net_time(t)
    }
}

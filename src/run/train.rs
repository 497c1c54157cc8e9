//! The training loop: batches drawn from the compiled forward process, our own AdamW with
//! clipping, warm-up/cosine schedule and EMA, a NaN/Inf guard, and atomic checkpoints that
//! make a killed run resumable bit for bit.

use super::checkpoint;
use super::optim::{self, AdamW, AdamWConfig, Ema, LrSchedule};
use crate::compile::{Forward, LossError, Nets, TrainBatch};
use crate::ir;
use crate::nn::{
    Activation, Egnn, Mlp, MlpConfig, Module, SetNet, SetNetConfig, SetTransformer, TimeEmbedding,
    UNet, UNetConfig,
};
use crate::rng::{stream, Purpose};
use candle_core::{DType, Device, Tensor, Var};
use rand::Rng;
use std::collections::BTreeMap;
use std::path::Path;

/// Why training stopped early.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("training diverged at step {step}: {what} is {value}; the last good checkpoint is kept (lower `train.lr`, raise `train.clip` protection, or check the data scale)")]
    Diverged {
        step: u64,
        what: &'static str,
        value: f64,
    },
    #[error("network error: {0}")]
    Net(#[from] crate::nn::NetError),
    #[error("optimizer error: {0}")]
    Optim(#[from] optim::OptimError),
    #[error("tensor error: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("loss error: {0}")]
    Loss(#[from] LossError),
    #[error("checkpoint error: {0}")]
    Checkpoint(String),
}

/// Name of the checkpoint tensor holding the logged (step, loss) rows.
const LOSS_LOG: &str = "train.loss_log";

/// Checkpoint prefix of the learned transform's tensors (NDM). The score network keeps
/// unprefixed names, so checkpoints of single-network runs read as before.
pub const TRANSFORM_PREFIX: &str = "transform.";

/// Checkpoint prefix of the set network's tensors (trans-dimensional processes).
pub const SET_PREFIX: &str = "set.";

/// Everything that evolves during training; saved whole in a checkpoint.
pub struct TrainState {
    /// The score (or denoiser) network: the experiment's `network` on vector and image states.
    pub net: Option<Box<dyn Module>>,
    /// The multi-head set network: the experiment's `network` on set states
    /// (trans-dimensional processes).
    pub set: Option<Box<dyn SetNet>>,
    /// The process's learned transform F(x, t) (NDM), when it declares one.
    pub transform: Option<Box<dyn Module>>,
    /// The union of every network's variables (transform and set variables prefixed), which the
    /// optimizer and the EMA step together.
    pub vars: Vec<(String, Var)>,
    pub opt: AdamW,
    pub ema: Ema,
    /// Number of optimizer steps done.
    pub step: u64,
    /// (step, loss) rows logged so far.
    pub losses: Vec<(u64, f64)>,
}

/// Builds the network `spec` describes for a state of `dim` numbers per datapoint (`state`
/// gives their layout: an image's channels and size). Set networks have their own builder,
/// [`build_set_net`].
pub fn build_net(
    spec: &ir::NetworkSpec,
    state: &ir::StateSpace,
    dim: usize,
    seed: u64,
    device: &Device,
) -> Result<Box<dyn Module>, TrainError> {
    match spec.kind {
        ir::NetworkKind::Mlp => Ok(Box::new(build_mlp(spec, dim, seed, device)?)),
        ir::NetworkKind::Unet => match *state {
            ir::StateSpace::Image {
                channels,
                height,
                width,
            } => {
                let mut config = UNetConfig::new(channels, height, width, seed);
                config.base = spec.width;
                config.levels = spec.depth;
                config.attention = spec.attention;
                // GroupNorm groups: the largest of 8, 4, 2, 1 that divides the channels.
                config.groups = [8, 4, 2, 1]
                    .into_iter()
                    .find(|g| spec.width.is_multiple_of(*g))
                    .unwrap_or(1);
                config.time_embedding = time_embedding(spec);
                Ok(Box::new(UNet::new(config, DType::F32, device)?))
            }
            ir::StateSpace::Vector(_) | ir::StateSpace::Set { .. } => {
                Err(TrainError::Net(crate::nn::NetError::Config(format!(
                    "`unet` models images; the state {} takes `mlp`",
                    state.describe()
                ))))
            }
        },
        ir::NetworkKind::SetTransformer | ir::NetworkKind::Egnn => {
            Err(TrainError::Net(crate::nn::NetError::Config(format!(
                "`{}` is a set network; the state {} takes `mlp`",
                spec.kind.name(),
                state.describe()
            ))))
        }
    }
}

/// The MLP of `spec` on `dim`-number rows.
pub fn build_mlp(
    spec: &ir::NetworkSpec,
    dim: usize,
    seed: u64,
    device: &Device,
) -> Result<Mlp, TrainError> {
    let activation = activation(spec.activation);
    let time_embedding = time_embedding(spec);
    let config = MlpConfig {
        dim,
        width: spec.width,
        depth: spec.depth,
        activation,
        time_embedding,
        last_layer_scale: 1.0,
        seed,
    };
    Ok(Mlp::new(config, DType::F32, device)?)
}

impl TrainState {
    /// A fresh state (step 0) for an experiment.
    pub fn new(
        exp: &ir::Experiment,
        dim: usize,
        device: &Device,
    ) -> Result<TrainState, TrainError> {
        let (net, set) = match exp.network.kind {
            ir::NetworkKind::Mlp | ir::NetworkKind::Unet => (
                Some(build_net(
                    &exp.network,
                    &exp.process.state,
                    dim,
                    exp.train.seed,
                    device,
                )?),
                None,
            ),
            ir::NetworkKind::SetTransformer | ir::NetworkKind::Egnn => (
                None,
                Some(build_set_net(
                    &exp.network,
                    &exp.process.state,
                    exp.train.seed,
                    device,
                )?),
            ),
        };
        let transform = match &exp.process.transform {
            Some(t) if t.form != ir::TransformForm::Identity => Some(build_net(
                &t.network,
                &exp.process.state,
                dim,
                exp.train.seed.wrapping_add(TRANSFORM_SEED_OFFSET),
                device,
            )?),
            _ => None,
        };
        let vars = all_vars(net.as_deref(), transform.as_deref(), set.as_deref());
        let opt = AdamW::new(
            AdamWConfig {
                weight_decay: exp.train.weight_decay,
                ..AdamWConfig::default()
            },
            &vars,
        )?;
        let ema = Ema::new(&vars, exp.train.ema)?;
        Ok(TrainState {
            net,
            set,
            transform,
            vars,
            opt,
            ema,
            step: 0,
            losses: Vec::new(),
        })
    }

    /// Writes the state to `path` atomically.
    pub fn save(&self, path: &Path, meta: &BTreeMap<String, String>) -> Result<(), TrainError> {
        let mut tensors: Vec<(String, Tensor)> = all_weights(
            self.net.as_deref(),
            self.transform.as_deref(),
            self.set.as_deref(),
        );
        tensors.extend(self.ema.state_tensors());
        tensors.extend(self.opt.state_tensors()?);
        let log: Vec<f64> = self
            .losses
            .iter()
            .flat_map(|(s, l)| [*s as f64, *l])
            .collect();
        if !log.is_empty() {
            tensors.push((
                LOSS_LOG.into(),
                Tensor::from_vec(log, (self.losses.len(), 2), &Device::Cpu)?,
            ));
        }
        let mut meta = meta.clone();
        meta.insert("step".into(), self.step.to_string());
        checkpoint::save_atomic(path, &tensors, &meta)
            .map_err(|e| TrainError::Checkpoint(e.to_string()))
    }

    /// Restores a state saved by [`TrainState::save`]; returns its metadata.
    pub fn load(
        &mut self,
        path: &Path,
        device: &Device,
    ) -> Result<BTreeMap<String, String>, TrainError> {
        let (tensors, meta) =
            checkpoint::load(path, device).map_err(|e| TrainError::Checkpoint(e.to_string()))?;
        load_all(
            self.net.as_mut(),
            self.transform.as_mut(),
            self.set.as_mut(),
            &tensors,
        )?;
        self.vars = all_vars(
            self.net.as_deref(),
            self.transform.as_deref(),
            self.set.as_deref(),
        );
        self.ema.load_state(&tensors)?;
        self.opt.load_state(&tensors)?;
        self.losses = match tensors.iter().find(|(n, _)| n == LOSS_LOG) {
            Some((_, t)) => t
                .to_dtype(DType::F64)?
                .to_vec2::<f64>()?
                .into_iter()
                .map(|row| (row[0] as u64, row[1]))
                .collect(),
            None => Vec::new(),
        };
        self.step = meta
            .get("step")
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| TrainError::Checkpoint("the checkpoint has no step count".into()))?;
        Ok(meta)
    }

    /// A network holding the EMA weights (what sampling uses).
    pub fn ema_net(
        &self,
        exp: &ir::Experiment,
        dim: usize,
        device: &Device,
    ) -> Result<Box<dyn Module>, TrainError> {
        let Some(cur) = &self.net else {
            return Err(TrainError::Checkpoint(
                "this experiment has no score network (it trains a set network)".into(),
            ));
        };
        let mut net = build_net(
            &exp.network,
            &exp.process.state,
            dim,
            exp.train.seed,
            device,
        )?;
        net.load_weights(&cur.weights())?;
        net.load_weights(self.ema.shadow())?;
        Ok(net)
    }

    /// The set network holding its EMA weights, when the experiment has one.
    pub fn ema_set(
        &self,
        exp: &ir::Experiment,
        device: &Device,
    ) -> Result<Option<Box<dyn SetNet>>, TrainError> {
        let Some(cur) = &self.set else {
            return Ok(None);
        };
        let mut net = build_set_net(&exp.network, &exp.process.state, exp.train.seed, device)?;
        net.load_weights(&cur.weights())?;
        net.load_weights(&strip_prefix(self.ema.shadow(), SET_PREFIX))?;
        Ok(Some(net))
    }

    /// The learned transform holding its EMA weights, when the process has one.
    pub fn ema_transform(
        &self,
        exp: &ir::Experiment,
        dim: usize,
        device: &Device,
    ) -> Result<Option<Box<dyn Module>>, TrainError> {
        let (Some(tr), Some(cur)) = (&exp.process.transform, &self.transform) else {
            // No transform, or `identity` (which has no network).
            return Ok(None);
        };
        let mut net = build_net(&tr.network, &exp.process.state, dim, exp.train.seed, device)?;
        net.load_weights(&cur.weights())?;
        net.load_weights(&strip_prefix(self.ema.shadow(), TRANSFORM_PREFIX))?;
        Ok(Some(net))
    }

    /// The current (not EMA) networks by role, for a loss.
    pub fn nets(&self) -> Nets<'_> {
        Nets {
            score: self.net.as_deref(),
            transform: self.transform.as_deref(),
            set: self.set.as_deref(),
        }
    }
}

/// The transform's initialisation seed is the training seed plus this (so it differs from the
/// score network's).
const TRANSFORM_SEED_OFFSET: u64 = 0x5eed_7a45;

fn prefixed<T: Clone>(items: Vec<(String, T)>, prefix: &str) -> Vec<(String, T)> {
    items
        .into_iter()
        .map(|(n, v)| (format!("{prefix}{n}"), v))
        .collect()
}

/// The tensors whose names start with `prefix`, with the prefix removed.
fn strip_prefix(items: &[(String, Tensor)], prefix: &str) -> Vec<(String, Tensor)> {
    items
        .iter()
        .filter_map(|(n, v)| n.strip_prefix(prefix).map(|s| (s.to_string(), v.clone())))
        .collect()
}

fn all_vars(
    net: Option<&dyn Module>,
    transform: Option<&dyn Module>,
    set: Option<&dyn SetNet>,
) -> Vec<(String, Var)> {
    let mut vars = net.map(|n| n.vars()).unwrap_or_default();
    if let Some(t) = transform {
        vars.extend(prefixed(t.vars(), TRANSFORM_PREFIX));
    }
    if let Some(s) = set {
        vars.extend(prefixed(s.vars(), SET_PREFIX));
    }
    vars
}

fn all_weights(
    net: Option<&dyn Module>,
    transform: Option<&dyn Module>,
    set: Option<&dyn SetNet>,
) -> Vec<(String, Tensor)> {
    let mut w = net.map(|n| n.weights()).unwrap_or_default();
    if let Some(t) = transform {
        w.extend(prefixed(t.weights(), TRANSFORM_PREFIX));
    }
    if let Some(s) = set {
        w.extend(prefixed(s.weights(), SET_PREFIX));
    }
    w
}

fn load_all(
    net: Option<&mut Box<dyn Module>>,
    transform: Option<&mut Box<dyn Module>>,
    set: Option<&mut Box<dyn SetNet>>,
    tensors: &[(String, Tensor)],
) -> Result<(), TrainError> {
    if let Some(net) = net {
        let own: Vec<_> = tensors
            .iter()
            .filter(|(n, _)| !n.starts_with(TRANSFORM_PREFIX) && !n.starts_with(SET_PREFIX))
            .cloned()
            .collect();
        net.load_weights(&own)?;
    }
    if let Some(t) = transform {
        t.load_weights(&strip_prefix(tensors, TRANSFORM_PREFIX))?;
    }
    if let Some(s) = set {
        s.load_weights(&strip_prefix(tensors, SET_PREFIX))?;
    }
    Ok(())
}

/// Builds the set network of a set state `set(max = N, of = vec(d))`.
pub fn build_set_net(
    spec: &ir::NetworkSpec,
    state: &ir::StateSpace,
    seed: u64,
    device: &Device,
) -> Result<Box<dyn SetNet>, TrainError> {
    let ir::StateSpace::Set { max, component, .. } = *state else {
        return Err(TrainError::Net(crate::nn::NetError::Config(format!(
            "a set network needs a set state, not `{}`",
            state.describe()
        ))));
    };
    let config = SetNetConfig {
        component,
        max,
        width: spec.width,
        depth: spec.depth,
        heads: spec.heads,
        embed_dim: spec.embed_dim,
        activation: activation(spec.activation),
        seed,
    };
    let net: Box<dyn SetNet> = match spec.kind {
        ir::NetworkKind::SetTransformer => {
            Box::new(SetTransformer::new(config, DType::F32, device)?)
        }
        ir::NetworkKind::Egnn => {
            let Some(positions) = state.com() else {
                return Err(TrainError::Net(crate::nn::NetError::Config(format!(
                    "`egnn` needs the coordinates of the set's components: declare them with \
                     `com = NAME` in `{}`",
                    state.describe()
                ))));
            };
            Box::new(Egnn::new(config, positions, DType::F32, device)?)
        }
        ir::NetworkKind::Mlp | ir::NetworkKind::Unet => {
            return Err(TrainError::Net(crate::nn::NetError::Config(format!(
                "`{}` is not a set network: use `set_transformer` or `egnn`",
                spec.kind.name()
            ))))
        }
    };
    Ok(net)
}

/// The time embedding `spec` declares.
fn time_embedding(spec: &ir::NetworkSpec) -> TimeEmbedding {
    match spec.embedding {
        ir::EmbeddingKind::Fourier => TimeEmbedding::RandomFourier {
            size: spec.embed_dim,
            scale: 16.0,
        },
        ir::EmbeddingKind::Linear => TimeEmbedding::Linear {
            size: spec.embed_dim,
        },
        ir::EmbeddingKind::Sinusoidal => TimeEmbedding::Sinusoidal {
            size: spec.embed_dim,
            time_scale: 1000.0,
        },
    }
}

fn activation(kind: ir::ActivationKind) -> Activation {
    match kind {
        ir::ActivationKind::Gelu => Activation::Gelu,
        ir::ActivationKind::Silu => Activation::Silu,
        ir::ActivationKind::Relu => Activation::Relu,
        ir::ActivationKind::Tanh => Activation::Tanh,
    }
}

/// The learning-rate schedule of the spec.
pub fn schedule(t: &ir::TrainSpec) -> LrSchedule {
    if t.schedule == "constant" {
        LrSchedule::Constant { lr: t.lr }
    } else {
        LrSchedule::WarmupCosine {
            peak: t.lr,
            floor: t.lr_min.min(t.lr),
            warmup_steps: t.warmup.min(t.steps),
            total_steps: t.steps,
        }
    }
}

/// The clean data of step `step`'s batch: which rows depend only on (seed, step, position in
/// the batch).
pub fn batch_x0(data: &Tensor, batch: usize, seed: u64, step: u64) -> Result<Tensor, TrainError> {
    let n = data.dim(0)?;
    let mut pick = stream(seed, Purpose::Split, step, 0);
    let idx: Vec<u32> = (0..batch).map(|_| pick.random_range(0..n) as u32).collect();
    let idx = Tensor::from_vec(idx, batch, data.device())?;
    Ok(data.index_select(&idx, 0)?)
}

/// The loss of step `step` as a graph node.
pub fn batch_loss(
    fwd: &Forward,
    nets: &Nets,
    data: &Tensor,
    batch: usize,
    seed: u64,
    step: u64,
) -> Result<Tensor, TrainError> {
    let x0 = batch_x0(data, batch, seed, step)?;
    Ok(fwd.loss(
        nets,
        &TrainBatch {
            x0: &x0,
            seed,
            step,
        },
    )?)
}

/// One optimizer step (batch, loss, backward, guard, clipping, AdamW, EMA); returns the loss.
/// Does not advance `state.step`.
pub fn train_step(
    exp: &ir::Experiment,
    fwd: &Forward,
    data: &Tensor,
    state: &mut TrainState,
    sched: &LrSchedule,
) -> Result<f64, TrainError> {
    train_step_guarded(exp, fwd, data, state, sched, &mut |_| Ok(()))
}

/// [`train_step`] with `validated(state)` called once the loss and gradients of the current
/// weights are known to be finite, before they are updated: the moment a checkpoint of them
/// is known to be good. After the update the weights themselves are checked.
pub fn train_step_guarded(
    exp: &ir::Experiment,
    fwd: &Forward,
    data: &Tensor,
    state: &mut TrainState,
    sched: &LrSchedule,
    validated: &mut dyn FnMut(&TrainState) -> Result<(), TrainError>,
) -> Result<f64, TrainError> {
    let spec = &exp.train;
    let step = state.step;
    let loss = batch_loss(fwd, &state.nets(), data, spec.batch, spec.seed, step)?;
    let loss_value = loss.to_scalar::<f32>()? as f64;
    let grads = loss.backward()?;
    let norm = optim::grad_norm(&state.vars, &grads)?;
    if let Err(optim::OptimError::NonFinite { what, value, step }) =
        optim::check_finite(step, loss_value, norm)
    {
        return Err(TrainError::Diverged { step, what, value });
    }
    validated(state)?;
    let scale = if spec.clip > 0.0 {
        optim::clip_factor(norm, spec.clip)
    } else {
        1.0
    };
    state
        .opt
        .step_scaled(&state.vars, &grads, sched.lr_at(step), scale)?;
    // EMA warm-up: average over the steps seen so far until the declared decay is reached,
    // so short runs do not sample from weights that are mostly the initialisation.
    state
        .ema
        .set_decay(spec.ema.min((1.0 + step as f64) / (10.0 + step as f64)));
    state.ema.update(&state.vars)?;
    // A sum over each parameter is non-finite when any entry is (or when they are so large
    // that they overflow, which is divergence too).
    for (_, v) in &state.vars {
        let total = v
            .as_tensor()
            .sum_all()?
            .to_dtype(candle_core::DType::F64)?
            .to_scalar::<f64>()?;
        if !total.is_finite() {
            return Err(TrainError::Diverged {
                step,
                what: "weights after the update",
                value: total,
            });
        }
    }
    Ok(loss_value)
}

/// Runs training from `state.step` to the spec's step count. `on_step(step, loss)` is called
/// after each step; `on_checkpoint(state)` at each checkpoint boundary and at the end.
pub fn train(
    exp: &ir::Experiment,
    fwd: &Forward,
    data: &Tensor,
    state: &mut TrainState,
    on_step: &mut dyn FnMut(u64, f64),
    on_checkpoint: &mut dyn FnMut(&TrainState) -> Result<(), TrainError>,
) -> Result<(), TrainError> {
    let spec = &exp.train;
    let sched = schedule(spec);
    // A checkpoint is written only once its weights are known to be good: when the next step
    // has found their loss and gradients finite (or, after the last step, one more loss). So
    // a diverging run keeps the checkpoint from before the divergence, never the diverged
    // weights. A fresh run also checkpoints its initial weights that way.
    let mut pending = state.step == 0;
    while state.step < spec.steps {
        let mut write = |s: &TrainState| -> Result<(), TrainError> {
            if pending {
                pending = false;
                on_checkpoint(s)?;
            }
            Ok(())
        };
        let loss_value = train_step_guarded(exp, fwd, data, state, &sched, &mut write)?;
        state.step += 1;
        if state.step.is_multiple_of(spec.log_every) || state.step == spec.steps || state.step == 1
        {
            state.losses.push((state.step, loss_value));
        }
        on_step(state.step, loss_value);
        if state.step.is_multiple_of(spec.checkpoint_every) || state.step == spec.steps {
            pending = true;
        }
    }
    if pending {
        let loss = batch_loss(fwd, &state.nets(), data, spec.batch, spec.seed, state.step)?
            .to_scalar::<f32>()? as f64;
        if !loss.is_finite() {
            return Err(TrainError::Diverged {
                step: state.step,
                what: "loss",
                value: loss,
            });
        }
        on_checkpoint(state)?;
    }
    Ok(())
}

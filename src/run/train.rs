//! The training loop: batches drawn from the compiled forward process, our own AdamW with
//! clipping, warm-up/cosine schedule and EMA, a NaN/Inf guard, and atomic checkpoints that
//! make a killed run resumable bit for bit.

use super::checkpoint;
use super::net::{Activation, Mlp, MlpConfig, TimeEmbedding};
use super::optim::{self, AdamW, AdamWConfig, Ema, LrSchedule};
use crate::compile::Forward;
use crate::ir;
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
    Net(#[from] super::net::NetError),
    #[error("optimizer error: {0}")]
    Optim(#[from] optim::OptimError),
    #[error("tensor error: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("checkpoint error: {0}")]
    Checkpoint(String),
}

/// Name of the checkpoint tensor holding the logged (step, loss) rows.
const LOSS_LOG: &str = "train.loss_log";

/// Everything that evolves during training; saved whole in a checkpoint.
pub struct TrainState {
    pub net: Mlp,
    pub vars: Vec<(String, Var)>,
    pub opt: AdamW,
    pub ema: Ema,
    /// Number of optimizer steps done.
    pub step: u64,
    /// (step, loss) rows logged so far.
    pub losses: Vec<(u64, f64)>,
}

/// Builds the network described by the spec.
pub fn build_net(
    spec: &ir::NetworkSpec,
    dim: usize,
    seed: u64,
    device: &Device,
) -> Result<Mlp, TrainError> {
    let activation = match spec.activation.as_str() {
        "silu" => Activation::Silu,
        "relu" => Activation::Relu,
        "tanh" => Activation::Tanh,
        _ => Activation::Gelu,
    };
    let time_embedding = match spec.embedding.as_str() {
        "fourier" => TimeEmbedding::RandomFourier {
            size: spec.embed_dim,
            scale: 16.0,
        },
        _ => TimeEmbedding::Sinusoidal {
            size: spec.embed_dim,
            time_scale: 1000.0,
        },
    };
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
        let net = build_net(&exp.network, dim, exp.train.seed, device)?;
        let vars = net.vars();
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
            vars,
            opt,
            ema,
            step: 0,
            losses: Vec::new(),
        })
    }

    /// Writes the state to `path` atomically.
    pub fn save(&self, path: &Path, meta: &BTreeMap<String, String>) -> Result<(), TrainError> {
        let mut tensors: Vec<(String, Tensor)> = self.net.weights();
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
        self.net.load_weights(&tensors)?;
        self.vars = self.net.vars();
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
        spec: &ir::NetworkSpec,
        dim: usize,
        seed: u64,
        device: &Device,
    ) -> Result<Mlp, TrainError> {
        let mut net = build_net(spec, dim, seed, device)?;
        net.load_weights(&self.net.weights())?;
        net.load_weights(self.ema.shadow())?;
        Ok(net)
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

/// One training batch built on the host from per-sample random streams.
pub struct Batch {
    pub xt: Vec<f32>,
    pub t: Vec<f32>,
    pub target: Vec<f32>,
    pub weight: Vec<f32>,
    pub uniform_weight: bool,
}

/// Draws the batch of step `step`: which data points, their times and noise depend only on
/// (seed, step, position in the batch).
pub fn make_batch(
    fwd: &Forward,
    data: &[f32],
    dim: usize,
    batch: usize,
    seed: u64,
    step: u64,
) -> Batch {
    let n = data.len() / dim;
    let mut pick = stream(seed, Purpose::Split, step, 0);
    let mut b = Batch {
        xt: vec![0.0; batch * dim],
        t: vec![0.0; batch],
        target: vec![0.0; batch * dim],
        weight: vec![1.0; batch],
        uniform_weight: true,
    };
    let mut scratch = vec![0.0f64; 2 * dim];
    for i in 0..batch {
        let idx = pick.random_range(0..n);
        let x0 = &data[idx * dim..(idx + 1) * dim];
        let mut rng = stream(seed, Purpose::TrainNoise, step, i as u64);
        let ex = fwd.draw(
            x0,
            &mut rng,
            &mut b.xt[i * dim..(i + 1) * dim],
            &mut b.target[i * dim..(i + 1) * dim],
            &mut scratch,
        );
        b.t[i] = fwd.net_time(ex.t);
        b.weight[i] = ex.weight as f32;
        if ex.weight != 1.0 {
            b.uniform_weight = false;
        }
    }
    b
}

/// The weighted mean squared error of a batch (per coordinate), as a graph node.
pub fn batch_loss(net: &Mlp, b: &Batch, dim: usize, device: &Device) -> Result<Tensor, TrainError> {
    let bs = b.t.len();
    let xt = Tensor::from_slice(&b.xt, (bs, dim), device)?;
    let t = Tensor::from_slice(&b.t, bs, device)?;
    let target = Tensor::from_slice(&b.target, (bs, dim), device)?;
    let out = net.forward(&xt, &t)?;
    let diff = (out - target)?;
    let loss = if b.uniform_weight {
        diff.sqr()?.mean_all()?
    } else {
        let sw: Vec<f32> = b.weight.iter().map(|w| w.max(0.0).sqrt()).collect();
        let sw = Tensor::from_slice(&sw, (bs, 1), device)?;
        diff.broadcast_mul(&sw)?.sqr()?.mean_all()?
    };
    Ok(loss)
}

/// One optimizer step (batch, loss, backward, guard, clipping, AdamW, EMA); returns the loss.
/// Does not advance `state.step`.
pub fn train_step(
    exp: &ir::Experiment,
    fwd: &Forward,
    data: &[f32],
    dim: usize,
    device: &Device,
    state: &mut TrainState,
    sched: &LrSchedule,
) -> Result<f64, TrainError> {
    let spec = &exp.train;
    let step = state.step;
    let batch = make_batch(fwd, data, dim, spec.batch, spec.seed, step);
    let loss = batch_loss(&state.net, &batch, dim, device)?;
    let loss_value = loss.to_scalar::<f32>()? as f64;
    let grads = loss.backward()?;
    let norm = optim::grad_norm(&state.vars, &grads)?;
    if let Err(optim::OptimError::NonFinite { what, value, step }) =
        optim::check_finite(step, loss_value, norm)
    {
        return Err(TrainError::Diverged { step, what, value });
    }
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
    Ok(loss_value)
}

/// Runs training from `state.step` to the spec's step count. `on_step(step, loss)` is called
/// after each step; `on_checkpoint(state)` at each checkpoint boundary and at the end.
pub fn train(
    exp: &ir::Experiment,
    fwd: &Forward,
    data: &[f32],
    dim: usize,
    device: &Device,
    state: &mut TrainState,
    on_step: &mut dyn FnMut(u64, f64),
    on_checkpoint: &mut dyn FnMut(&TrainState) -> Result<(), TrainError>,
) -> Result<(), TrainError> {
    let spec = &exp.train;
    let sched = schedule(spec);
    while state.step < spec.steps {
        let loss_value = train_step(exp, fwd, data, dim, device, state, &sched)?;
        state.step += 1;
        if state.step % spec.log_every == 0 || state.step == spec.steps || state.step == 1 {
            state.losses.push((state.step, loss_value));
        }
        on_step(state.step, loss_value);
        if state.step % spec.checkpoint_every == 0 || state.step == spec.steps {
            on_checkpoint(state)?;
        }
    }
    Ok(())
}

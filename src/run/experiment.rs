//! `difc run`: one experiment from data to metrics, leaving a complete run folder:
//! config.yaml, loss.csv, checkpoint.safetensors, samples.npy, reference.npy, metrics.yaml,
//! samples.png and loss.png. Resumable: a killed run continues from its last checkpoint and
//! ends with the same checkpoint, bit for bit, as an uninterrupted run.

use super::data::{self, ParamValue};
use super::progress::Progress;
use super::train::{self, TrainError, TrainState};
use super::{checkpoint, metrics, npy, plot};
use crate::compile::{self, Forward, SampleNets, Solver};
use crate::ir::{self, DataSource, MetricKind, Value};
use candle_core::Device;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The files a complete run folder holds (a contract: scripts rely on these names).
pub const RUN_FILES: [&str; 9] = [
    "config.yaml",
    "loss.csv",
    "checkpoint.safetensors",
    "samples.npy",
    "reference.npy",
    "metrics.yaml",
    "samples.png",
    "loss.png",
    "transform.png",
];

/// Errors of a run; every one says what to do.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Data(String),
    /// Writing a run file failed (disk full, permissions): an IO error.
    #[error("{0}")]
    Output(String),
    /// `--resume` cannot continue the folder (missing, not a run, another spec, a damaged
    /// checkpoint): a usage error, exit 2.
    #[error("{0}")]
    Resume(String),
    /// The output folder cannot be used (a file, not empty, unwritable, or a finished run):
    /// a usage error, exit 2.
    #[error("{0}")]
    Folder(String),
    #[error(transparent)]
    Train(#[from] TrainError),
    #[error("sampling failed: {0}")]
    Sample(#[from] compile::SamplerError),
    #[error("{0}")]
    Other(String),
}

pub(super) fn other<E: std::fmt::Display>(what: &str) -> impl Fn(E) -> RunError + '_ {
    move |e| RunError::Other(format!("{what}: {e}"))
}

/// Options of `difc run` beyond the spec.
pub struct RunOptions {
    pub out: PathBuf,
    pub resume: bool,
    pub device: Device,
    /// The spec file and overrides, recorded so `difc sample` can rebuild the experiment.
    pub spec_path: Option<PathBuf>,
    pub overrides: Vec<String>,
}

/// Training and reference data.
pub struct Data {
    pub train: Vec<f32>,
    pub reference: Vec<f32>,
    pub dim: usize,
    /// The shape of one point (`[dim]`, or `[c, h, w]` for images): tensors keep it.
    pub point: Vec<usize>,
}

/// `rows` (n × the product of `point`) as an `[n, point…]` tensor on `device`.
pub fn rows_tensor(
    rows: &[f32],
    point: &[usize],
    device: &Device,
) -> Result<candle_core::Tensor, RunError> {
    let per: usize = point.iter().product::<usize>().max(1);
    let mut shape = vec![rows.len() / per];
    shape.extend_from_slice(point);
    candle_core::Tensor::from_slice(rows, shape, device)
        .map_err(other("cannot move the data to the device"))
}

impl Data {
    /// The training rows as an `[N, point…]` tensor on `device` (`[N, C, H, W]` for images).
    pub fn train_tensor(&self, device: &Device) -> Result<candle_core::Tensor, RunError> {
        rows_tensor(&self.train, &self.point, device)
    }
    pub fn n_train(&self) -> usize {
        self.train.len() / self.dim
    }
}

/// A spec's generator arguments in the form the generators take.
fn generator_args(args: &[(String, Value)]) -> Vec<(String, ParamValue)> {
    args.iter()
        .map(|(k, v)| {
            let v = match v {
                Value::Number(x) => ParamValue::Number(*x),
                Value::List(l) => ParamValue::List(l.clone()),
                Value::Text(t) => ParamValue::Text(t.clone()),
            };
            (k.clone(), v)
        })
        .collect()
}

/// The mixture components of the experiment's data, when its generator has known modes.
pub fn data_modes(exp: &ir::Experiment) -> Option<data::Modes> {
    match &exp.data.source {
        DataSource::Generator { name, args } => data::known_modes(name, &generator_args(args))
            .ok()
            .flatten(),
        DataSource::Npy { .. } => None,
    }
}

/// Loads or generates the experiment's data: `n` training points and a fresh, held-out
/// reference set for the metrics.
pub fn load_data(exp: &ir::Experiment) -> Result<Data, RunError> {
    match &exp.data.source {
        DataSource::Generator { name, args } => {
            let args = generator_args(args);
            let n = exp.data.n;
            let n_ref = exp.eval.reference;
            if data::generator(name).is_some_and(|g| g.image_shape().is_some()) {
                return held_out_images(exp, name, &args, n, n_ref);
            }
            let all = data::generate(name, n + n_ref, exp.train.seed, &args)
                .map_err(|e| RunError::Data(e.to_string()))?;
            let split = n * all.dim;
            Ok(Data {
                train: all.rows[..split].to_vec(),
                reference: all.rows[split..].to_vec(),
                dim: all.dim,
                point: exp.process.state.point_shape(all.dim),
            })
        }
        DataSource::Npy { path, base_dir } => {
            let full = base_dir
                .as_ref()
                .map_or_else(|| PathBuf::from(path), |b| b.join(path));
            let bad = |e: &dyn std::fmt::Display| {
                RunError::Data(format!("cannot use data file `{}`: {e}", full.display()))
            };
            let arr = match exp.process.state {
                // Sets: (n, N_file, d) with NaN padding, validated and padded to `max`.
                ir::StateSpace::Set { max, component, .. } => {
                    let sets = super::sets::SetData::load_npy(&full, max, component)
                        .map_err(|e| bad(&e))?;
                    npy::NpyArray {
                        shape: vec![sets.len(), max, component],
                        rows: sets.len(),
                        cols: max * component,
                        data: sets.to_padded(),
                    }
                }
                _ => npy::read_npy(&full).map_err(|e| bad(&e))?,
            };
            if let Some(levels) = exp.data.levels {
                // `check` reads files up to 256 MiB; larger ones are checked here.
                if let Some((i, v)) = ir::off_grid(&arr.data, levels) {
                    return Err(RunError::Data(format!(
                        "data file `{}` has a value off the {levels}-level grid x = −1 + 2k/{}: {v} in image {}",
                        full.display(),
                        levels - 1,
                        i / arr.cols.max(1)
                    )));
                }
            }
            let (rows, dim) = (arr.rows, arr.cols);
            if rows < 4 {
                return Err(RunError::Data(format!(
                    "data file `{}` has only {rows} rows; at least 4 are needed",
                    full.display()
                )));
            }
            if let Some(want) = exp.process.state.dim() {
                if want != dim {
                    return Err(RunError::Data(format!(
                        "data file `{}` has {dim} columns but the process state is {}: reshape the data or change `state`",
                        full.display(),
                        exp.process.state.describe()
                    )));
                }
            }
            let n_ref = exp.eval.reference.min(rows / 10).max(1);
            let n_train = if exp.data.n > 0 {
                exp.data.n.min(rows - n_ref)
            } else {
                rows - n_ref
            };
            Ok(Data {
                train: arr.data[..n_train * dim].to_vec(),
                reference: arr.data[(rows - n_ref) * dim..].to_vec(),
                dim,
                point: exp.process.state.point_shape(dim),
            })
        }
    }
}

/// A real image data set: `n` training images from the spec's split and the first `n_ref` of
/// the held-out split as the reference (`test`; `train` when the spec trains on `test`), so the
/// likelihood bound and the sample metrics are measured on images the model never saw.
fn held_out_images(
    exp: &ir::Experiment,
    name: &str,
    args: &[(String, ParamValue)],
    n: usize,
    n_ref: usize,
) -> Result<Data, RunError> {
    let split = args
        .iter()
        .find_map(|(k, v)| match (k.as_str(), v) {
            ("split", ParamValue::Text(s)) => Some(s.as_str()),
            _ => None,
        })
        .unwrap_or("train");
    let held_out = data::generator(name).map_or("test", |g| g.held_out_split(split));
    let mut ref_args: Vec<(String, ParamValue)> =
        args.iter().filter(|(k, _)| k != "split").cloned().collect();
    ref_args.push(("split".into(), ParamValue::Text(held_out.into())));
    let fail = |e: data::DataError| RunError::Data(e.to_string());
    let train = data::generate(name, n, exp.train.seed, args).map_err(fail)?;
    let reference = data::generate(name, n_ref, exp.train.seed, &ref_args).map_err(fail)?;
    Ok(Data {
        point: exp.process.state.point_shape(train.dim),
        dim: train.dim,
        train: train.rows,
        reference: reference.rows,
    })
}

/// A stable 64-bit hash (FNV-1a) of the resolved settings, stored in checkpoints.
pub fn config_hash(exp: &ir::Experiment) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (k, v) in &exp.resolved {
        if k.starts_with("sample.") || k.starts_with("eval.") || k == "metrics" {
            continue; // sampling and evaluation may change between resumes
        }
        for b in k.bytes().chain([b'=']).chain(v.bytes()).chain([b'\n']) {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

/// The config.yaml text: every resolved setting, the seed, the version and the time convention.
pub fn config_yaml(exp: &ir::Experiment, opts: &RunOptions, dim: usize) -> String {
    let mut map = serde_yaml::Mapping::new();
    let s = |v: &str| serde_yaml::Value::String(v.to_string());
    map.insert(s("difc_version"), s(env!("CARGO_PKG_VERSION")));
    map.insert(s("experiment"), s(&exp.name));
    if let Some(p) = &opts.spec_path {
        map.insert(s("spec"), s(&p.display().to_string()));
    }
    map.insert(
        s("overrides"),
        serde_yaml::Value::Sequence(opts.overrides.iter().map(|o| s(o)).collect()),
    );
    map.insert(s("seed"), serde_yaml::Value::Number(exp.train.seed.into()));
    map.insert(s("config_hash"), s(&config_hash(exp)));
    map.insert(
        s("data_dim"),
        serde_yaml::Value::Number((dim as u64).into()),
    );
    map.insert(
        s("time_convention"),
        s(&format!(
            "forward time t in [{}, {}]: t = {} is data, t = {} is noise",
            exp.process.time.0, exp.process.time.1, exp.process.time.0, exp.process.time.1
        )),
    );
    let mut settings = serde_yaml::Mapping::new();
    for (k, v) in &exp.resolved {
        let value = match v.parse::<f64>() {
            Ok(x) if v.parse::<i64>().is_ok() => serde_yaml::Value::Number((x as i64).into()),
            Ok(x) => serde_yaml::Value::Number(x.into()),
            Err(_) => s(v),
        };
        settings.insert(s(k), value);
    }
    map.insert(s("settings"), serde_yaml::Value::Mapping(settings));
    serde_yaml::to_string(&map).unwrap_or_default()
}

/// Why a folder is not a run folder that `--resume` or `difc sample` can read.
#[derive(Debug, thiserror::Error)]
pub enum NotARun {
    #[error("`{0}` does not exist")]
    Missing(PathBuf),
    #[error("`{0}` is a file, not a run folder")]
    File(PathBuf),
    #[error("`{0}` holds no difc run (no config.yaml)")]
    NoConfig(PathBuf),
    #[error("cannot read `{path}`: {why}")]
    Unreadable { path: PathBuf, why: String },
    #[error("`{path}` is not the config.yaml of a difc run ({why})")]
    NotDifc { path: PathBuf, why: String },
}

/// The `config.yaml` of the run folder `dir`, checked to be one difc wrote (a mapping with
/// `difc_version`, `experiment` and `config_hash`).
pub fn read_run_config(dir: &Path) -> Result<serde_yaml::Value, NotARun> {
    if !dir.exists() {
        return Err(NotARun::Missing(dir.to_path_buf()));
    }
    if !dir.is_dir() {
        return Err(NotARun::File(dir.to_path_buf()));
    }
    let path = dir.join("config.yaml");
    if !path.exists() {
        return Err(NotARun::NoConfig(dir.to_path_buf()));
    }
    let text = std::fs::read_to_string(&path).map_err(|e| NotARun::Unreadable {
        path: path.clone(),
        why: e.to_string(),
    })?;
    let config: serde_yaml::Value = serde_yaml::from_str(&text).map_err(|e| NotARun::NotDifc {
        path: path.clone(),
        why: e.to_string(),
    })?;
    for key in ["difc_version", "experiment", "config_hash"] {
        if config.get(key).and_then(|v| v.as_str()).is_none() {
            return Err(NotARun::NotDifc {
                path,
                why: format!("no `{key}`"),
            });
        }
    }
    Ok(config)
}

/// Prepares the output folder: refuses to overwrite a previous run unless resuming, and checks
/// that a resumed folder belongs to the same spec.
fn prepare_folder(exp: &ir::Experiment, opts: &RunOptions) -> Result<(), RunError> {
    let out = &opts.out;
    let config = out.join("config.yaml");
    if opts.resume {
        let old = read_run_config(out).map_err(|e| {
            let fix = match e {
                NotARun::Missing(_) | NotARun::NoConfig(_) => {
                    "; run without --resume to start a run there"
                }
                NotARun::File(_) | NotARun::Unreadable { .. } | NotARun::NotDifc { .. } => {
                    "; pass --out with the folder of the run to continue"
                }
            };
            RunError::Resume(format!("cannot resume: {e}{fix}"))
        })?;
        let old_hash = old
            .get("config_hash")
            .and_then(|v| v.as_str())
            .unwrap_or("");
        if old_hash != config_hash(exp) {
            let old_settings = old
                .get("settings")
                .and_then(|v| v.as_mapping())
                .cloned()
                .unwrap_or_default();
            let mut differing = Vec::new();
            for (k, v) in &exp.resolved {
                let before = old_settings.get(serde_yaml::Value::String(k.clone()));
                let before = before.map(|b| {
                    serde_yaml::to_string(b)
                        .unwrap_or_default()
                        .trim()
                        .to_string()
                });
                if before.as_deref() != Some(v.as_str())
                    && !k.starts_with("sample.")
                    && !k.starts_with("eval.")
                    && k != "metrics"
                {
                    differing.push(format!(
                        "{k}: {} → {v}",
                        before.unwrap_or_else(|| "(absent)".into())
                    ));
                }
            }
            let old_name = old
                .get("experiment")
                .and_then(|v| v.as_str())
                .unwrap_or("?");
            return Err(RunError::Resume(format!(
                "cannot resume: `{}` holds a run of another spec (experiment `{old_name}`; differing settings: {}); use another --out or drop --resume",
                out.display(),
                if differing.is_empty() { "unknown".into() } else { differing.join(", ") }
            )));
        }
        return Ok(());
    }
    if out.exists() && !out.is_dir() {
        return Err(RunError::Folder(format!(
            "`{}` is a file, not a folder; pass --out with a new or empty folder",
            out.display()
        )));
    }
    if config.exists() && out.join("checkpoint.safetensors").exists() {
        return Err(RunError::Folder(format!(
            "`{}` already holds a run; pass --resume to continue it, or --out DIR to start a new one elsewhere",
            out.display()
        )));
    }
    // A folder with a config.yaml but no checkpoint holds a run that stopped before its first
    // checkpoint: nothing to keep, so it is started over rather than blocking a re-run.
    if !config.exists() && out.is_dir() {
        let mut entries = std::fs::read_dir(out).map_err(|e| {
            RunError::Folder(format!(
                "cannot read output folder `{}`: {e}",
                out.display()
            ))
        })?;
        if entries.next().is_some() {
            return Err(RunError::Folder(format!(
                "`{}` is not empty and holds no difc run (no config.yaml); difc will not write \
                 its files (samples.npy, metrics.yaml, ...) over yours: pass --out with a new or empty folder",
                out.display()
            )));
        }
    }
    std::fs::create_dir_all(out).map_err(|e| {
        RunError::Folder(format!(
            "cannot create output folder `{}`: {e}",
            out.display()
        ))
    })?;
    let probe = out.join(".difc_write_test");
    std::fs::write(&probe, b"")
        .and_then(|()| std::fs::remove_file(&probe))
        .map_err(|e| {
            RunError::Folder(format!(
                "cannot write into output folder `{}`: {e}",
                out.display()
            ))
        })?;
    Ok(())
}

pub(super) fn write_text(path: &Path, text: &str) -> Result<(), RunError> {
    checkpoint::write_atomic(path, text.as_bytes())
        .map_err(|e| RunError::Output(format!("cannot write `{}`: {e}", path.display())))
}

fn loss_csv(losses: &[(u64, f64)]) -> String {
    let mut s = String::from("step,loss\n");
    for (step, loss) in losses {
        let _ = writeln!(s, "{step},{loss}");
    }
    s
}

/// What a finished run produced.
pub struct RunSummary {
    pub out: PathBuf,
    pub metrics: BTreeMap<String, f64>,
    pub train_seconds: f64,
    pub sample_seconds: f64,
}

/// Runs one experiment end to end.
pub fn run(exp: &ir::Experiment, opts: &RunOptions) -> Result<RunSummary, RunError> {
    // The folder first: a usage error (a folder `--resume` cannot continue, one that is not
    // ours) is reported before any data is loaded or made.
    prepare_folder(exp, opts)?;
    let data = load_data(exp)?;
    let dim = data.dim;
    let fwd = compile::compile(exp, dim)
        .map_err(|e| RunError::Other(format!("{}: {}", e.message, e.help)))?;
    fwd.observe_data(&data.train);
    let out = &opts.out;
    write_text(&out.join("config.yaml"), &config_yaml(exp, opts, dim))?;
    let ckpt = out.join("checkpoint.safetensors");
    let mut state = TrainState::new(exp, dim, &opts.device)?;
    if opts.resume && ckpt.exists() {
        state.load(&ckpt, &opts.device).map_err(|e| {
            RunError::Resume(format!(
                "cannot resume: {e} (delete `{}` to start the run over)",
                ckpt.display()
            ))
        })?;
        eprintln!("resuming `{}` from step {}", exp.name, state.step);
    }
    let meta: BTreeMap<String, String> = [
        (
            "difc_version".to_string(),
            env!("CARGO_PKG_VERSION").to_string(),
        ),
        ("config_hash".to_string(), config_hash(exp)),
        ("seed".to_string(), exp.train.seed.to_string()),
        ("experiment".to_string(), exp.name.clone()),
    ]
    .into();
    let started = std::time::Instant::now();
    let mut bar = Progress::new("train", exp.train.steps, state.step);
    let mut on_step = |step: u64, loss: f64| bar.update(step, &format!("loss {loss:.4}"));
    let mut on_ckpt = |s: &TrainState| -> Result<(), TrainError> {
        s.save(&ckpt, &meta)?;
        checkpoint::write_atomic(&out.join("loss.csv"), loss_csv(&s.losses).as_bytes())
            .map_err(|e| TrainError::Checkpoint(e.to_string()))
    };
    let train_data = data.train_tensor(&opts.device)?;
    train::train(
        exp,
        &*fwd,
        &train_data,
        &mut state,
        &mut on_step,
        &mut on_ckpt,
    )?;
    bar.finish();
    let train_seconds = started.elapsed().as_secs_f64();

    if let Some(set) = state.ema_set(exp, &opts.device)? {
        let started = std::time::Instant::now();
        let metrics = super::transdim::outputs(exp, &*fwd, &*set, &data, opts)?;
        let sample_seconds = started.elapsed().as_secs_f64();
        loss_plot(exp, &state, out)?;
        return Ok(RunSummary {
            out: out.clone(),
            metrics,
            train_seconds,
            sample_seconds,
        });
    }
    let net = state.ema_net(exp, dim, &opts.device)?;
    let transform = state.ema_transform(exp, dim, &opts.device)?;
    let solver = exp.sample.solver;
    let started = std::time::Instant::now();
    let samples = draw(
        &*fwd,
        &*net,
        transform.as_deref(),
        solver,
        exp.sample.grid,
        exp.sample.eta,
        exp.sample.steps,
        exp.sample.n,
        exp.sample.seed,
        exp.sample.t_end,
        &opts.device,
    )?;
    let sample_seconds = started.elapsed().as_secs_f64();
    save_points(&out.join("samples.npy"), &samples, &data.point)?;
    save_points(&out.join("reference.npy"), &data.reference, &data.point)?;
    let mut metrics = evaluate(exp, &samples, &data.reference, dim)?;
    metrics.extend(likelihood(
        exp,
        &*fwd,
        &*net,
        transform.as_deref(),
        &data,
        exp.sample.seed,
        &opts.device,
    )?);
    if let Some(tr) = transform.as_deref() {
        metrics.extend(transform_shift(
            &*fwd,
            &*net,
            tr,
            &data.reference,
            dim,
            &opts.device,
        )?);
    }
    write_text(&out.join("metrics.yaml"), &metrics_yaml(&metrics))?;
    if let ir::StateSpace::Image { .. } = exp.process.state {
        image_outputs(
            exp,
            &*fwd,
            &*net,
            transform.as_deref(),
            &samples,
            &data,
            opts,
        )?;
    } else if dim >= 2 {
        let pairs = |v: &[f32]| -> Vec<[f32; 2]> { v.chunks(dim).map(|r| [r[0], r[1]]).collect() };
        let title = if dim == 2 {
            format!("{} — samples over data", exp.name)
        } else {
            format!("{} — first two coordinates", exp.name)
        };
        plot::scatter_png(
            &out.join("samples.png"),
            &pairs(&samples),
            &pairs(&data.reference),
            &title,
        )
        .map_err(other("cannot draw samples.png"))?;
    }
    if let (Some(tr), true, false) = (
        transform.as_deref(),
        dim >= 2,
        matches!(exp.process.state, ir::StateSpace::Image { .. }),
    ) {
        transform_plot(
            exp,
            &*fwd,
            &*net,
            tr,
            &data.reference,
            dim,
            &opts.device,
            out,
        )?;
    }
    loss_plot(exp, &state, out)?;
    Ok(RunSummary {
        out: out.clone(),
        metrics,
        train_seconds,
        sample_seconds,
    })
}

/// `loss.png`: the logged training loss.
fn loss_plot(exp: &ir::Experiment, state: &TrainState, out: &Path) -> Result<(), RunError> {
    let (steps, losses): (Vec<u64>, Vec<f64>) = state.losses.iter().copied().unzip();
    plot::loss_png(
        &out.join("loss.png"),
        &steps,
        &losses,
        &format!("{} — training loss", exp.name),
    )
    .map_err(other("cannot draw loss.png"))
}

/// Draws samples with the trained networks (the score network and, for NDM, the learned
/// transform), evaluating them in chunks.
#[allow(clippy::too_many_arguments)]
pub fn draw(
    fwd: &Forward,
    net: &dyn crate::nn::Module,
    transform: Option<&dyn crate::nn::Module>,
    solver: Solver,
    grid: compile::TimeGrid,
    eta: f64,
    steps: usize,
    n: usize,
    seed: u64,
    t_end: f64,
    device: &Device,
) -> Result<Vec<f32>, RunError> {
    let dim = fwd.dim();
    let time = |t: f64| fwd.net_time(t);
    let mut eval = |x: &[f32], t: f64| super::threads::eval_parallel(net, x, dim, time(t), device);
    let mut eval_f = |x: &[f32], t: f64, tangent: bool| match transform {
        Some(f) => super::threads::eval_transform(f, x, dim, time(t), tangent, device),
        None => Err("this process has no transform network".to_string()),
    };
    let mut nets = SampleNets {
        score: Some(&mut eval),
        transform: transform
            .is_some()
            .then_some(&mut eval_f as &mut compile::TransformFn),
        set: None,
    };
    let mut bar = Progress::new("sample", steps as u64, 0);
    let mut progress = |k: usize| bar.update(k as u64, "");
    let samples = compile::sample_with(
        fwd,
        solver,
        grid,
        eta,
        steps,
        n,
        seed,
        t_end,
        &mut nets,
        &mut progress,
    )?;
    bar.finish();
    Ok(samples)
}

/// The negative ELBO of the held-out reference data, where the family has a likelihood bound:
/// `nll_nats_per_dim` (mean over the points, each averaged over a few time and noise draws) and
/// its standard error `nll_nats_per_dim_stderr` (over the points). Continuous data: a density
/// bound in nats per dimension, no dequantisation. Discrete data (`data.levels`, images): the
/// bound is a discrete negative log-likelihood, also written as `bpd` and `bpd_stderr` (bits
/// per dimension = nats ÷ ln 2).
pub fn likelihood(
    exp: &ir::Experiment,
    fwd: &Forward,
    net: &dyn crate::nn::Module,
    transform: Option<&dyn crate::nn::Module>,
    data: &Data,
    seed: u64,
    device: &Device,
) -> Result<BTreeMap<String, f64>, RunError> {
    let mut out = BTreeMap::new();
    let n = data.reference.len() / data.dim.max(1);
    if n < 2 {
        return Ok(out);
    }
    let x0 = rows_tensor(&data.reference, &data.point, device)?;
    let nets = compile::Nets {
        score: Some(net),
        transform,
        set: None,
    };
    let Some(values) = fwd.nelbo(&nets, &x0, seed) else {
        return Ok(out);
    };
    let values = values.map_err(other("the likelihood bound"))?;
    let (mean, stderr) = mean_stderr(&values);
    out.insert("nll_nats_per_dim".into(), mean);
    out.insert("nll_nats_per_dim_stderr".into(), stderr);
    if exp.data.levels.is_some() {
        let ln2 = std::f64::consts::LN_2;
        out.insert("bpd".into(), mean / ln2);
        out.insert("bpd_stderr".into(), stderr / ln2);
    }
    Ok(out)
}

/// Image states: `samples.png` (a grid of the first 64 samples), `reference.png` (held-out
/// data) and, for NDM, `transform.png` (F(x, t) of eight held-out images at five times).
#[allow(clippy::too_many_arguments)]
fn image_outputs(
    exp: &ir::Experiment,
    fwd: &Forward,
    net: &dyn crate::nn::Module,
    transform: Option<&dyn crate::nn::Module>,
    samples: &[f32],
    data: &Data,
    opts: &RunOptions,
) -> Result<(), RunError> {
    let ir::StateSpace::Image {
        channels,
        height,
        width,
    } = exp.process.state
    else {
        return Ok(());
    };
    let dim = data.dim;
    let grid = plot::ImageGrid {
        channels,
        height,
        width,
        cols: 8,
        headers: &[],
    };
    let first = |v: &[f32], k: usize| v[..(k * dim).min(v.len())].to_vec();
    let out = &opts.out;
    plot::image_grid_png(
        &out.join("samples.png"),
        &first(samples, 64),
        &grid,
        &format!("{} — samples", exp.name),
    )
    .map_err(other("cannot draw samples.png"))?;
    plot::image_grid_png(
        &out.join("reference.png"),
        &first(&data.reference, 64),
        &grid,
        &format!("{} — held-out data", exp.name),
    )
    .map_err(other("cannot draw reference.png"))?;
    let Some(tr) = transform else {
        return Ok(());
    };
    let rows = (data.reference.len() / dim).min(8);
    let x: Vec<f64> = data.reference[..rows * dim]
        .iter()
        .map(|v| *v as f64)
        .collect();
    let span = fwd.time();
    let times: Vec<f64> = (0..5)
        .map(|k| span.t0 + (span.t1 - span.t0) * k as f64 / 4.0)
        .collect();
    let mut panels = Vec::with_capacity(times.len());
    {
        let time = |t: f64| fwd.net_time(t);
        let device = &opts.device;
        let mut eval =
            |x: &[f32], t: f64| super::threads::eval_parallel(net, x, dim, time(t), device);
        let mut eval_f = |x: &[f32], t: f64, tangent: bool| {
            super::threads::eval_transform(tr, x, dim, time(t), tangent, device)
        };
        let mut nets = SampleNets {
            score: Some(&mut eval),
            transform: Some(&mut eval_f),
            set: None,
        };
        for &t in &times {
            let Some(f) = fwd.apply_transform(&mut nets, &x, t) else {
                return Ok(());
            };
            panels.push(f.map_err(other("the transform plot"))?);
        }
    }
    // Row r = held-out image r, column k = F(x, t_k).
    let mut tiles = Vec::with_capacity(rows * times.len() * dim);
    for r in 0..rows {
        for p in &panels {
            tiles.extend(p[r * dim..(r + 1) * dim].iter().map(|v| *v as f32));
        }
    }
    let headers: Vec<String> = times.iter().map(|t| format!("t = {t:.2}")).collect();
    plot::image_grid_png(
        &out.join("transform.png"),
        &tiles,
        &plot::ImageGrid {
            cols: times.len(),
            headers: &headers,
            ..grid
        },
        &format!("{} — learned F(x, t)", exp.name),
    )
    .map_err(other("cannot draw transform.png"))
}

/// `transform.png`: the learned transform F(x, t) of up to 4000 held-out points at five times
/// across the horizon (first two coordinates).
#[allow(clippy::too_many_arguments)]
fn transform_plot(
    exp: &ir::Experiment,
    fwd: &Forward,
    net: &dyn crate::nn::Module,
    transform: &dyn crate::nn::Module,
    reference: &[f32],
    dim: usize,
    device: &Device,
    out: &Path,
) -> Result<(), RunError> {
    let span = fwd.time();
    let times: Vec<f64> = (0..5)
        .map(|k| span.t0 + (span.t1 - span.t0) * k as f64 / 4.0)
        .collect();
    let Some((_, fs)) = transform_of_held_out(fwd, net, transform, reference, dim, device, &times)?
    else {
        return Ok(());
    };
    let panels: Vec<(String, Vec<[f32; 2]>)> = times
        .iter()
        .zip(fs)
        .map(|(t, f)| {
            let pts = f.chunks(dim).map(|r| [r[0] as f32, r[1] as f32]).collect();
            (format!("F(x, t = {t:.2})"), pts)
        })
        .collect();
    plot::transform_png(
        &out.join("transform.png"),
        &panels,
        &format!("{} — learned transform F(x, t) of held-out data", exp.name),
    )
    .map_err(other("cannot draw transform.png"))
}

/// Held-out points (rows of `dim`) and F(x, t) of them at each time asked.
type HeldOutTransform = (Vec<f64>, Vec<Vec<f64>>);

/// F(x, t) of up to 4000 held-out points `x` at each of `times`: `(x, [F(x, t) per time])`, or
/// `None` for a family without a transform.
fn transform_of_held_out(
    fwd: &Forward,
    net: &dyn crate::nn::Module,
    transform: &dyn crate::nn::Module,
    reference: &[f32],
    dim: usize,
    device: &Device,
    times: &[f64],
) -> Result<Option<HeldOutTransform>, RunError> {
    let rows = (reference.len() / dim).min(4000);
    let x: Vec<f64> = reference[..rows * dim].iter().map(|v| *v as f64).collect();
    let time = |t: f64| fwd.net_time(t);
    let mut eval = |x: &[f32], t: f64| super::threads::eval_parallel(net, x, dim, time(t), device);
    let mut eval_f = |x: &[f32], t: f64, tangent: bool| {
        super::threads::eval_transform(transform, x, dim, time(t), tangent, device)
    };
    let mut nets = SampleNets {
        score: Some(&mut eval),
        transform: Some(&mut eval_f),
        set: None,
    };
    let mut out = Vec::with_capacity(times.len());
    for &t in times {
        let Some(f) = fwd.apply_transform(&mut nets, &x, t) else {
            return Ok(None);
        };
        out.push(f.map_err(other("the learned transform of held-out data"))?);
    }
    Ok(Some((x, out)))
}

/// How far the learned transform moves held-out data half-way through the horizon:
/// `transform_shift` is the root mean square of F(x, t_½) − x per coordinate (up to 4000
/// points), `transform_shift_relative` the same divided by the data's own RMS. Zero for
/// F = identity; a learned F that merely rescales x shows up as a relative shift of |1 − c|.
/// `transform_spread_relative` is the spread of F(x, t½) over the points relative to the data's
/// (1 for the identity, 0 for a transform that has collapsed to a constant).
fn transform_shift(
    fwd: &Forward,
    net: &dyn crate::nn::Module,
    transform: &dyn crate::nn::Module,
    reference: &[f32],
    dim: usize,
    device: &Device,
) -> Result<BTreeMap<String, f64>, RunError> {
    let span = fwd.time();
    let mut out = BTreeMap::new();
    let half = [0.5 * (span.t0 + span.t1)];
    let Some((x, mut fs)) =
        transform_of_held_out(fwd, net, transform, reference, dim, device, &half)?
    else {
        return Ok(out);
    };
    let f = fs.remove(0);
    let n = x.len().max(1) as f64;
    let shift = (f.iter().zip(&x).map(|(a, b)| (a - b).powi(2)).sum::<f64>() / n).sqrt();
    let scale = (x.iter().map(|v| v * v).sum::<f64>() / n).sqrt();
    out.insert("transform_shift".to_string(), shift);
    if scale > 0.0 {
        out.insert("transform_shift_relative".to_string(), shift / scale);
    }
    // Collapse: F(·, t½) of different points that no longer differ. The spread is the RMS
    // distance to the mean point, relative to the data's own.
    let spread = |v: &[f64]| {
        let rows = v.len() / dim;
        let mut mean = vec![0f64; dim];
        for r in v.chunks(dim) {
            mean.iter_mut()
                .zip(r)
                .for_each(|(m, x)| *m += x / rows as f64);
        }
        let ss: f64 = v
            .chunks(dim)
            .flat_map(|r| r.iter().zip(&mean).map(|(x, m)| (x - m).powi(2)))
            .sum();
        (ss / v.len().max(1) as f64).sqrt()
    };
    let data_spread = spread(&x);
    if data_spread > 0.0 {
        out.insert(
            "transform_spread_relative".to_string(),
            spread(&f) / data_spread,
        );
    }
    Ok(out)
}

/// Mean and standard error of the mean.
pub fn mean_stderr(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (mean, (var / n).sqrt())
}

/// Points as a float32 `(n, point…)` `.npy` file: `(n, d)`, or `(n, c, h, w)` for images.
pub(super) fn save_points(path: &Path, values: &[f32], point: &[usize]) -> Result<(), RunError> {
    let per: usize = point.iter().product::<usize>().max(1);
    let mut shape = vec![values.len() / per];
    shape.extend_from_slice(point);
    npy::write_npy_f32(path, &shape, values)
        .map_err(|e| RunError::Output(format!("cannot write `{}`: {e}", path.display())))
}

/// Computes the metrics listed in the spec (samples against the held-out reference).
pub fn evaluate(
    exp: &ir::Experiment,
    samples: &[f32],
    reference: &[f32],
    dim: usize,
) -> Result<BTreeMap<String, f64>, RunError> {
    let x: Vec<f64> = samples.iter().map(|v| *v as f64).collect();
    let y: Vec<f64> = reference.iter().map(|v| *v as f64).collect();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut out = BTreeMap::new();
    for m in &exp.eval.metrics {
        match m {
            MetricKind::Prd => {
                let opts = metrics::PrdOptions {
                    num_clusters: Some(exp.eval.clusters),
                    num_runs: exp.eval.runs,
                    threads,
                    ..metrics::PrdOptions::default()
                };
                let r = metrics::prd(&x, &y, dim, &opts).map_err(other("PRD"))?;
                out.insert("prd_max_f1".into(), r.max_f1);
                out.insert("prd_f8".into(), r.max_f8);
                out.insert("prd_f1_8".into(), r.max_f1_8);
            }
            MetricKind::Mmd => {
                let opts = metrics::MmdOptions {
                    threads,
                    ..metrics::MmdOptions::default()
                };
                let r = metrics::mmd_rbf(&x, &y, dim, &opts).map_err(other("MMD"))?;
                out.insert("mmd2".into(), r.mmd2);
                out.insert("mmd_bandwidth".into(), r.sigma);
                // DLPM's multi-bandwidth (biased) MMD, the variant the jump-diffusion papers report.
                out.insert(
                    "mmd_dlpm".into(),
                    metrics::mmd_dlpm(&x, &y, dim, threads).map_err(other("MMD"))?,
                );
            }
            MetricKind::Knn => {
                let opts = metrics::KnnOptions {
                    threads,
                    ..metrics::KnnOptions::default()
                };
                let r = metrics::knn_metrics(&x, &y, dim, &opts).map_err(other("k-NN metrics"))?;
                out.insert("precision".into(), r.precision);
                out.insert("recall".into(), r.recall);
                out.insert("density".into(), r.density);
                out.insert("coverage".into(), r.coverage);
            }
            MetricKind::Modes => match data_modes(exp) {
                Some(modes) => {
                    let r = metrics::mode_metrics(&x, dim, &modes)
                        .map_err(other("mode metrics"))?;
                    out.insert("mode_fraction".into(), r.mode_fraction);
                    out.insert("mode_weight_tv".into(), r.mode_weight_tv);
                }
                None => eprintln!(
                    "note: mode metrics not computed: the data have no known modes (only grid_gmm and eight_gaussians do)"
                ),
            },
            MetricKind::SlicedWasserstein => {
                let opts = metrics::SlicedOptions {
                    threads,
                    ..metrics::SlicedOptions::default()
                };
                let r = metrics::sliced_wasserstein(&x, &y, dim, &opts)
                    .map_err(other("sliced Wasserstein"))?;
                out.insert("sliced_wasserstein".into(), r);
            }
            MetricKind::Msle => {
                let r = metrics::msle(&x, &y, dim, &metrics::MsleOptions::default());
                match r {
                    Ok(v) => {
                        out.insert("msle".into(), v);
                    }
                    Err(e) => eprintln!("note: MSLE not computed: {e}"),
                }
            }
        }
    }
    Ok(out)
}

pub(super) fn metrics_yaml(m: &BTreeMap<String, f64>) -> String {
    let mut s = String::new();
    for (k, v) in m {
        let _ = writeln!(s, "{k}: {v}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::FsLoader;

    fn experiment(spec: &str) -> ir::Experiment {
        let paths = [PathBuf::from(spec)];
        let session = crate::driver::check_paths(&paths, &[], &FsLoader).expect("spec readable");
        let model = session.checked.model.expect("spec checks");
        model
            .experiments
            .into_iter()
            .next()
            .expect("one experiment")
    }

    fn points(name: &str, args: &[(String, ParamValue)], n: usize, seed: u64) -> Vec<f32> {
        data::generate(name, n, seed, args).unwrap().rows
    }

    #[test]
    fn evaluate_writes_the_knn_and_mode_metrics_for_a_mixture() {
        let exp = experiment("specs/gauss_gmm.diff");
        let DataSource::Generator { args, .. } = &exp.data.source else {
            panic!("gauss_gmm uses a generator");
        };
        let args = generator_args(args);
        let reference = points("grid_gmm", &args, 600, 1);
        let samples = points("grid_gmm", &args, 600, 2);
        let m = evaluate(&exp, &samples, &reference, 2).unwrap();
        for key in [
            "prd_max_f1",
            "precision",
            "recall",
            "density",
            "coverage",
            "mode_fraction",
            "mode_weight_tv",
        ] {
            assert!(m.contains_key(key), "{key} missing from {m:?}");
        }
        // Data against data: the binomial sd of mode_fraction at n = 600 is 0.004 around 0.989.
        assert!(m["mode_fraction"] > 0.96 && m["precision"] > 0.9, "{m:?}");
        assert!(metrics_yaml(&m).contains("\nmode_weight_tv: "));
    }

    #[test]
    fn mode_metrics_are_skipped_without_known_modes() {
        let exp = experiment("specs/swiss_roll_vp.diff");
        assert!(data_modes(&exp).is_none());
        let mut exp = exp;
        exp.eval.metrics = vec![MetricKind::Knn, MetricKind::Modes];
        let args = [(
            "standardize".to_string(),
            ParamValue::Text("population".into()),
        )];
        let reference = points("swiss_roll", &args, 300, 1);
        let samples = points("swiss_roll", &args, 300, 2);
        let m = evaluate(&exp, &samples, &reference, 2).unwrap();
        let keys: Vec<&str> = m.keys().map(String::as_str).collect();
        assert_eq!(keys, ["coverage", "density", "precision", "recall"]);
    }
}

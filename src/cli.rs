//! The `run`, `sample` and `explain` commands (the thin `main.rs` parses arguments).

use crate::check::FsLoader;
use crate::compile::{self, Forward, Solver};
use crate::diag::{did_you_mean, RenderOptions};
use crate::driver::{self, Format, Session, Show};
use crate::ir;
use crate::run::experiment::{self, RunOptions};
use crate::run::train::TrainState;
use candle_core::Device;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn render_options() -> RenderOptions {
    let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    RenderOptions { color, width: 100 }
}

fn fail(code: u8, msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(code)
}

/// Checks spec files (none = the embedded default) for a command about one experiment:
/// picks it (`--experiment`, or the file's only one), prints the diagnostics `show` keeps for
/// it, and returns the session with the experiment's name. Overrides apply to it alone when
/// it was named. Errors of the file's other experiments neither show nor block.
fn checked(
    paths: &[PathBuf],
    set: &[String],
    experiment: Option<&str>,
    sample: bool,
) -> Result<(Session, String), ExitCode> {
    let session =
        driver::check_paths_for(paths, set, &FsLoader, experiment).map_err(|e| fail(2, e.0))?;
    let names = &session.checked.experiment_names;
    let picked = match experiment {
        Some(n) if names.iter().any(|e| e == n) => Ok(n.to_string()),
        Some(n) => {
            let hint = did_you_mean(n, names.iter().map(String::as_str))
                .map_or(String::new(), |c| format!("; did you mean `{c}`?"));
            let has = if names.is_empty() {
                "it declares none".to_string()
            } else {
                format!("it has {}", names.join(", "))
            };
            Err(format!("no experiment `{n}` in the spec ({has}){hint}"))
        }
        None => match names.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err("the spec declares no experiment; add `experiment NAME { data = ..., process = ... }`".to_string()),
            _ => Err(format!("the spec has several experiments ({}); choose one with --experiment NAME", names.join(", "))),
        },
    };
    let show = match (&picked, sample) {
        (Ok(name), false) => Show::Experiment(name),
        (Ok(name), true) => Show::Blocking(name),
        (Err(_), _) => Show::All,
    };
    eprint!(
        "{}",
        driver::render_shown(&session, Format::Human, render_options(), show)
    );
    let name = picked.map_err(|msg| fail(1, msg))?;
    if session.experiment(&name).is_none() {
        return Err(ExitCode::from(1));
    }
    Ok((session, name))
}

/// The experiment `checked` picked.
fn picked<'a>(session: &'a Session, name: &str) -> Result<&'a ir::Experiment, ExitCode> {
    session
        .experiment(name)
        .ok_or_else(|| fail(1, format!("experiment `{name}` did not check")))
}

fn device(cuda: bool) -> Result<Device, ExitCode> {
    if !cuda {
        return Ok(Device::Cpu);
    }
    Device::new_cuda(0).map_err(|e| fail(2, format!("cannot use CUDA: {e} (build with `--features cuda` on a machine with an NVIDIA GPU)")))
}

/// `difc run`.
pub fn cmd_run(
    file: Option<PathBuf>,
    experiment: Option<String>,
    set: Vec<String>,
    out: Option<PathBuf>,
    resume: bool,
    cuda: bool,
) -> ExitCode {
    cmd_run_sweep(file, experiment, set, Vec::new(), out, resume, cuda)
}

/// `difc run`, with `--sweep KEY=V1,V2` arguments (none: a single run).
pub fn cmd_run_sweep(
    file: Option<PathBuf>,
    experiment: Option<String>,
    set: Vec<String>,
    sweep: Vec<String>,
    out: Option<PathBuf>,
    resume: bool,
    cuda: bool,
) -> ExitCode {
    if !sweep.is_empty() {
        return cmd_sweep(file, experiment, set, sweep, out, cuda);
    }
    let paths: Vec<PathBuf> = file.iter().cloned().collect();
    let (session, name) = match checked(&paths, &set, experiment.as_deref(), false) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let exp = match picked(&session, &name) {
        Ok(e) => e,
        Err(code) => return code,
    };
    let precheck = match exp.data.dim {
        Some(dim) => compile::compile(exp, dim).map(|_| ()),
        None => compile::supported(&exp.process),
    };
    {
        if let Err(e) = precheck {
            let d = e.to_diagnostic();
            eprint!(
                "{}",
                crate::diag::render_human(&d, &session.sources, render_options())
            );
            return ExitCode::from(1);
        }
    }
    let device = match device(cuda) {
        Ok(d) => d,
        Err(code) => return code,
    };
    let out = out.unwrap_or_else(|| PathBuf::from("runs").join(&exp.name));
    let spec_path = file
        .as_ref()
        .map(|f| std::fs::canonicalize(f).unwrap_or_else(|_| f.clone()));
    let opts = RunOptions {
        out,
        resume,
        device,
        spec_path,
        overrides: set,
    };
    match experiment::run(exp, &opts) {
        Ok(summary) => {
            println!(
                "run `{}` finished: training {:.1} s, sampling {:.1} s",
                exp.name, summary.train_seconds, summary.sample_seconds
            );
            for (k, v) in &summary.metrics {
                println!("  {k:<20} {v:.5}");
            }
            println!("outputs in {}/", summary.out.display());
            for f in experiment::RUN_FILES {
                if summary.out.join(f).exists() {
                    println!("  {f}");
                }
            }
            ExitCode::SUCCESS
        }
        Err(
            e @ (experiment::RunError::Folder(_)
            | experiment::RunError::Resume(_)
            | experiment::RunError::Output(_)),
        ) => fail(2, e),
        Err(e) => fail(1, e),
    }
}

/// `difc sample`: new samples from a finished run.
#[allow(clippy::too_many_arguments)]
pub fn cmd_sample(
    run_dir: &Path,
    solver: Option<String>,
    steps: Option<u64>,
    n: Option<u64>,
    seed: Option<u64>,
    grid: Option<String>,
    eta: Option<f64>,
    t_end: Option<f64>,
    out: Option<PathBuf>,
) -> ExitCode {
    // A folder that is not a run is a usage error (exit 2), like any other bad argument.
    let config = match experiment::read_run_config(run_dir) {
        Ok(c) => c,
        Err(e) => {
            return fail(
                2,
                format!("{e}; `difc sample` takes the folder of a finished `difc run`"),
            )
        }
    };
    let spec = config
        .get("spec")
        .and_then(|v| v.as_str())
        .map(PathBuf::from);
    let overrides: Vec<String> = config
        .get("overrides")
        .and_then(|v| v.as_sequence())
        .map(|s| {
            s.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let name = config
        .get("experiment")
        .and_then(|v| v.as_str())
        .map(String::from);
    let paths: Vec<PathBuf> = spec.iter().cloned().collect();
    let (session, name) = match checked(&paths, &overrides, name.as_deref(), true) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let exp = match picked(&session, &name) {
        Ok(e) => e,
        Err(code) => return code,
    };
    let hash = config
        .get("config_hash")
        .and_then(|v| v.as_str())
        .unwrap_or("");
    if hash != experiment::config_hash(exp) {
        return fail(1, "the spec changed since this run was trained; sample from a matching spec or train again");
    }
    let dim = config.get("data_dim").and_then(|v| v.as_u64()).unwrap_or(2) as usize;
    if let Some(n) = n {
        use crate::check::{resources, Loader};
        let (need, limit) = (
            resources::estimate_sampling(exp, dim, n as usize),
            FsLoader.memory_limit(),
        );
        if need > limit as f64 {
            return fail(
                2,
                format!(
                    "--n {n}: drawing {n} samples needs about {} of memory, more than the limit of {}; draw fewer (several runs with other --seed values), or raise the limit with DIFC_MAX_MEMORY",
                    resources::bytes(need),
                    resources::bytes(limit as f64)
                ),
            );
        }
    }
    let solver_name = solver.unwrap_or_else(|| exp.sample.solver.name().to_string());
    let Some(solver) = Solver::from_name(&solver_name) else {
        let hint = did_you_mean(&solver_name, crate::check::SOLVERS.iter().copied())
            .map_or(String::new(), |c| format!("; did you mean `{c}`?"));
        return fail(2, format!("unknown solver `{solver_name}`{hint}"));
    };
    let grid = match grid {
        None => exp.sample.grid,
        Some(g) => match compile::TimeGrid::from_name(&g) {
            Some(g) => g,
            None => {
                let hint = did_you_mean(&g, crate::check::GRIDS.iter().copied())
                    .map_or(String::new(), |c| format!("; did you mean `{c}`?"));
                return fail(
                    2,
                    format!(
                        "unknown time grid `{g}` (expected one of {}){hint}",
                        crate::check::GRIDS.join(", ")
                    ),
                );
            }
        },
    };
    let steps = steps.map_or(exp.sample.steps, |s| s as usize);
    let n = n.map_or(exp.sample.n, |n| n as usize);
    let seed = seed.unwrap_or(exp.sample.seed);
    // Whole numbers ≥ 1 are ensured by the argument parser (and the schema for the spec's).
    if steps == 0 || n == 0 {
        return fail(2, "--steps and --n must be at least 1");
    }
    let eta = eta.unwrap_or(exp.sample.eta);
    if !(0.0..=1.0).contains(&eta) {
        return fail(2, format!("--eta {eta}: DDIM's η must be in [0, 1]"));
    }
    if eta != 0.0 && solver != Solver::Ddim {
        return fail(
            2,
            format!("--eta {eta}: η is DDIM's noise level and `{}` has none; pass `--solver ddim` or drop --eta", solver.name()),
        );
    }
    let t_end = t_end.unwrap_or(exp.sample.t_end);
    let (t0, horizon) = exp.process.time;
    if !(t_end.is_finite() && t0 <= t_end && t_end < horizon) {
        return fail(
            2,
            format!(
                "--t-end {t_end} is outside the time interval of process `{}`: sampling runs from t = {horizon} (noise) down to t_end, so it must be in [{t0}, {horizon}) (t = {t0} is data)",
                exp.process.name
            ),
        );
    }
    let fwd = match compile::compile(exp, dim) {
        Ok(f) => f,
        Err(e) => return fail(1, e.message),
    };
    // A solver this process has no step for is a bad option, refused before any work.
    if !fwd.solvers().contains(&solver) {
        let names: Vec<String> = fwd
            .solvers()
            .iter()
            .map(|s| format!("`{}`", s.name()))
            .collect();
        return fail(
            2,
            format!(
                "--solver {}: process `{}` cannot be sampled with it; use one of {}",
                solver.name(),
                exp.process.name,
                names.join(", ")
            ),
        );
    }
    let device = Device::Cpu;
    let mut state = match TrainState::new(exp, dim, &device) {
        Ok(s) => s,
        Err(e) => return fail(1, e),
    };
    let ckpt = run_dir.join("checkpoint.safetensors");
    if let Err(e) = state.load(&ckpt, &device) {
        return fail(1, format!("cannot load `{}`: {e}", ckpt.display()));
    }
    if let ir::StateSpace::Set { max, component, .. } = exp.process.state {
        return sample_sets(
            exp, &*fwd, &state, run_dir, out, solver, grid, steps, n, seed, t_end, max, component,
        );
    }
    let net = match state.ema_net(exp, dim, &device) {
        Ok(n) => n,
        Err(e) => return fail(1, e),
    };
    let transform = match state.ema_transform(exp, dim, &device) {
        Ok(t) => t,
        Err(e) => return fail(1, e),
    };
    let samples = match experiment::draw(
        &*fwd,
        &*net,
        transform.as_deref(),
        solver,
        grid,
        eta,
        steps,
        n,
        seed,
        t_end,
        &device,
    ) {
        Ok(s) => s,
        Err(e) => return fail(1, e),
    };
    let out = out.unwrap_or_else(|| {
        let grid = match grid {
            compile::TimeGrid::Uniform => String::new(),
            other => format!("_{}", other.name()),
        };
        run_dir.join(format!("samples_{}_{}{grid}.npy", solver.name(), steps))
    });
    let mut shape = vec![samples.len() / dim];
    shape.extend(exp.process.state.point_shape(dim));
    if let Err(e) = crate::run::npy::write_npy_f32(&out, &shape, &samples) {
        return fail(1, format!("cannot write `{}`: {e}", out.display()));
    }
    let reference = crate::run::data::Dataset::load_npy(run_dir.join("reference.npy")).ok();
    if let ir::StateSpace::Image {
        channels,
        height,
        width,
    } = exp.process.state
    {
        let png = out.with_extension("png");
        let grid = crate::run::plot::ImageGrid {
            channels,
            height,
            width,
            cols: 8,
            headers: &[],
        };
        let first = &samples[..(64 * dim).min(samples.len())];
        let title = format!("{} — {}, {steps} steps", exp.name, solver.name());
        match crate::run::plot::image_grid_png(&png, first, &grid, &title) {
            Ok(()) => println!("plot written to {}", png.display()),
            Err(e) => eprintln!("warning: no plot: {e}"),
        }
    } else if dim >= 2 {
        // The picture next to the array: samples over the run's reference data.
        let png = out.with_extension("png");
        let pts = |v: &[f32]| crate::run::plot::rows_to_points(v, dim);
        let refs = reference.as_ref().map_or(Vec::new(), |r| pts(&r.rows));
        let title = format!(
            "{} — {} samples, {}, {steps} steps",
            exp.name,
            samples.len() / dim,
            solver.name()
        );
        match crate::run::plot::scatter_png(&png, &pts(&samples), &refs, &title) {
            Ok(()) => println!("plot written to {}", png.display()),
            Err(e) => eprintln!("warning: no plot: {e}"),
        }
    }
    println!(
        "{} samples ({}, {} steps) written to {}",
        samples.len() / dim,
        solver.name(),
        steps,
        out.display()
    );
    if let Some(reference) = reference {
        match experiment::evaluate(exp, &samples, &reference.rows, dim) {
            Ok(m) => {
                let mut yaml = format!(
                    "solver: {}\nsteps: {steps}\nn: {}\nseed: {seed}\n",
                    solver.name(),
                    samples.len() / dim
                );
                for (k, v) in &m {
                    println!("  {k:<20} {v:.5}");
                    yaml += &format!("{k}: {v}\n");
                }
                let path = out.with_file_name(format!(
                    "metrics_{}.yaml",
                    out.file_stem()
                        .and_then(|s| s.to_str())
                        .unwrap_or("samples")
                        .trim_start_matches("samples_")
                ));
                if let Err(e) = crate::run::checkpoint::write_atomic(&path, yaml.as_bytes()) {
                    eprintln!("warning: cannot write `{}`: {e}", path.display());
                } else {
                    println!("metrics written to {}", path.display());
                }
            }
            Err(e) => eprintln!("warning: metrics not computed: {e}"),
        }
    }
    ExitCode::SUCCESS
}

/// `difc explain`: every experiment (those with errors are named and skipped, exit 1) and
/// every process no experiment uses, or only `--experiment E`.
pub fn cmd_explain(files: &[PathBuf], experiment: Option<String>, set: &[String]) -> ExitCode {
    let session = match &experiment {
        Some(name) => match checked(files, set, Some(name), false) {
            Ok((s, _)) => s,
            Err(code) => return code,
        },
        None => {
            let s = match driver::check_paths(files, set, &FsLoader) {
                Ok(s) => s,
                Err(e) => return fail(2, e.0),
            };
            eprint!("{}", driver::render(&s, Format::Human, render_options()));
            s
        }
    };
    let Some(model) = &session.checked.model else {
        return ExitCode::from(1);
    };
    let mut printed = false;
    let mut skipped = Vec::new();
    for name in &session.checked.experiment_names {
        if experiment.as_ref().is_some_and(|n| n != name) {
            continue;
        }
        let Some(exp) = session.experiment(name) else {
            skipped.push(name.clone());
            continue;
        };
        printed = true;
        let dim = exp.data.dim.unwrap_or(2);
        match exp.process.state {
            ir::StateSpace::Set { max, component, .. } => println!(
                "experiment {} — data: sets of 1..{max} components of {component} numbers",
                exp.name
            ),
            ir::StateSpace::Image {
                channels,
                height,
                width,
            } => {
                let levels = exp
                    .data
                    .levels
                    .map_or(String::new(), |l| format!(", {l} levels per pixel"));
                println!(
                    "experiment {} — data: {channels}×{height}×{width} images{levels}",
                    exp.name
                )
            }
            ir::StateSpace::Vector(_) => println!("experiment {} — data {}-D", exp.name, dim),
        }
        match compile::compile(exp, dim) {
            Ok(fwd) => print!("{}", explain(&exp.process, &*fwd, Some(exp))),
            Err(e) => println!("  cannot compile: {} ({})", e.message, e.help),
        }
        println!();
    }
    if experiment.is_none() {
        for p in &model.processes {
            if model.experiments.iter().any(|e| e.process.name == p.name) {
                continue;
            }
            printed = true;
            let loss = ir::LossSpec {
                target: ir::Target::Eps,
                weight: ir::Expr::Const(1.0),
                weight_given: false,
                t_min: 1e-3,
                precondition: ir::Precondition::None,
                sigma_data: 0.5,
                transdim: ir::ElboWeights::default(),
            };
            let dim = p.state.dim().unwrap_or(2);
            let wrapper_loss = if p.jumps.is_some() {
                ir::LossSpec {
                    target: ir::Target::Score,
                    ..loss
                }
            } else {
                loss
            };
            match compile::build(p, &wrapper_loss, dim) {
                Ok(fwd) => print!("{}", explain(p, &*fwd, None)),
                Err(e) => println!("process {}: {}\n  {}", p.name, e.message, e.help),
            }
            println!();
        }
    }
    if !skipped.is_empty() {
        let list: Vec<String> = skipped.iter().map(|n| format!("`{n}`")).collect();
        return fail(
            1,
            format!(
                "not explained (errors above): experiment {}",
                list.join(", ")
            ),
        );
    }
    if !printed {
        return fail(1, "nothing to explain (no matching experiment or process)");
    }
    ExitCode::SUCCESS
}

/// The derived equations of one process, as text.
pub fn explain(p: &ir::Process, fwd: &Forward, exp: Option<&ir::Experiment>) -> String {
    let mut s = String::new();
    // Numbers go through `format_const`: a parameter computed from others prints without
    // its rounding noise (`0.3`, not `0.30000000000000004`).
    let num = ir::expr::format_const;
    let params: Vec<String> = p
        .params
        .iter()
        .map(|(k, v)| format!("{k} = {}", num(*v)))
        .collect();
    s += &format!("process {}({})\n", p.name, params.join(", "));
    let (t0, t1) = (num(p.time.0), num(p.time.1));
    s += &format!("  time        t ∈ [{t0}, {t1}]; t = {t0} is data, t = {t1} is noise\n");
    s += &explain_state(&p.state);
    let ctx = compile::ExplainContext {
        solver: exp.map_or_else(
            || fwd.solvers().first().copied().unwrap_or(Solver::OdeHeun),
            |e| e.sample.solver,
        ),
        steps: exp.map_or(100, |e| e.sample.steps),
        weight: exp.map_or("1".to_string(), |e| e.loss.weight.to_string()),
        network: match exp.map(|e| e.network.kind) {
            Some(ir::NetworkKind::Egnn) => match p.state.com() {
                Some(r) => format!(
                    "EGNN (E({})-equivariant in the coordinates x[{}..{}], invariant in the rest)",
                    r.len(),
                    r.start,
                    r.end
                ),
                None => "EGNN".to_string(),
            },
            // A process explained without an experiment shows the default set network.
            Some(ir::NetworkKind::SetTransformer) | None => "set transformer".to_string(),
            Some(ir::NetworkKind::Mlp) => "mlp".to_string(),
            Some(ir::NetworkKind::Unet) => "U-Net".to_string(),
        },
    };
    s += &fwd.explain(&ctx);
    if exp.is_none_or(|e| !e.sample.solver_given) && !fwd.solvers().is_empty() {
        s += &format!(
            "  default     no `sample {{ solver = … }}`: {}, the first solver this process offers\n",
            ctx.solver.name()
        );
    }
    s
}

/// The state line of `difc explain` for a set state with named parts or a centre-of-mass
/// constraint (other states print nothing here: the data line already says their size).
fn explain_state(state: &ir::StateSpace) -> String {
    let parts = state.parts();
    let com = state.com();
    if parts.is_empty() && com.is_none() {
        return String::new();
    }
    let mut s = format!("  state       {}\n", state.describe());
    let listed: Vec<String> = parts
        .iter()
        .map(|p| format!("{} = x[{}..{}]", p.name, p.range.start, p.range.end))
        .collect();
    s += &format!("  parts       {}\n", listed.join(", "));
    if let Some(r) = com {
        s += &format!(
            "  constraint  zero centre of mass: Σ_j x_j[{}..{}] = 0 over the present components j\n",
            r.start, r.end
        );
    }
    s
}

/// `difc run SPEC --sweep KEY=V1,V2 …`: every combination into `<out>/sweep/…`, then
/// `sweep.csv` and `sweep.md` (see [`crate::run::sweep`]). Finished combinations are skipped
/// and a killed one is resumed, so rerunning the same command continues a sweep.
fn cmd_sweep(
    file: Option<PathBuf>,
    experiment: Option<String>,
    set: Vec<String>,
    sweep_args: Vec<String>,
    out: Option<PathBuf>,
    cuda: bool,
) -> ExitCode {
    use crate::run::sweep::{self, Status};
    let axes = match sweep::parse(&sweep_args, &set) {
        Ok(a) => a,
        Err(e) => return fail(2, e),
    };
    let paths: Vec<PathBuf> = file.iter().cloned().collect();
    let combos = sweep::product(&axes);
    // Check every combination before any training: a bad value fails the sweep up front. The
    // first point's diagnostics are printed (the warnings are shared by every point).
    let mut sessions = Vec::with_capacity(combos.len());
    let mut name = String::new();
    for (i, combo) in combos.iter().enumerate() {
        let mut s = set.clone();
        s.extend(combo.iter().map(|(k, v)| format!("{k}={v}")));
        let session = if i == 0 {
            match checked(&paths, &s, experiment.as_deref(), false) {
                Ok((session, n)) => {
                    name = n;
                    session
                }
                Err(code) => return code,
            }
        } else {
            match driver::check_paths_for(&paths, &s, &FsLoader, Some(&name)) {
                Ok(session) => session,
                Err(e) => return fail(2, e.0),
            }
        };
        if session.experiment(&name).is_none() {
            eprint!(
                "{}",
                driver::render_shown(
                    &session,
                    Format::Human,
                    render_options(),
                    Show::Experiment(&name)
                )
            );
            let what: Vec<String> = combo.iter().map(|(k, v)| format!("{k}={v}")).collect();
            return fail(
                1,
                format!("the sweep point {} does not check", what.join(", ")),
            );
        }
        sessions.push((s, session));
    }
    let device = match device(cuda) {
        Ok(d) => d,
        Err(code) => return code,
    };
    let base = out.unwrap_or_else(|| PathBuf::from("runs").join(&name));
    let spec_path = file
        .as_ref()
        .map(|f| std::fs::canonicalize(f).unwrap_or_else(|_| f.clone()));
    let mut failed = Vec::new();
    for (i, (combo, (s, session))) in combos.iter().zip(&sessions).enumerate() {
        let dir = sweep::folder(&base, combo);
        let what: Vec<String> = combo.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let what = what.join(", ");
        let status = sweep::status(&dir);
        if status == Status::Done {
            eprintln!(
                "sweep [{}/{}] {what}: finished earlier, kept",
                i + 1,
                combos.len()
            );
            continue;
        }
        eprintln!("sweep [{}/{}] {what}", i + 1, combos.len());
        let exp = match picked(session, &name) {
            Ok(e) => e,
            Err(code) => return code,
        };
        if let Some(dim) = exp.data.dim {
            if let Err(e) = compile::compile(exp, dim) {
                let d = e.to_diagnostic();
                eprint!(
                    "{}",
                    crate::diag::render_human(&d, &session.sources, render_options())
                );
                return ExitCode::from(1);
            }
        }
        let opts = RunOptions {
            out: dir,
            resume: status == Status::Partial,
            device: device.clone(),
            spec_path: spec_path.clone(),
            overrides: s.clone(),
        };
        if let Err(e) = experiment::run(exp, &opts) {
            eprintln!("error: sweep point {what}: {e}");
            failed.push(what);
        }
    }
    let mut rows = Vec::new();
    for combo in &combos {
        let dir = sweep::folder(&base, combo);
        if sweep::status(&dir) == Status::Done {
            match sweep::read_metrics(&dir) {
                Ok(metrics) => rows.push(sweep::Row {
                    combo: combo.clone(),
                    metrics,
                }),
                Err(e) => return fail(1, e),
            }
        }
    }
    let sweep_dir = base.join("sweep");
    let write = |file: &str, text: String| {
        crate::run::checkpoint::write_atomic(&sweep_dir.join(file), text.as_bytes()).map_err(|e| {
            fail(
                1,
                format!("cannot write `{}`: {e}", sweep_dir.join(file).display()),
            )
        })
    };
    if let Err(code) = write("sweep.csv", sweep::csv(&rows)) {
        return code;
    }
    let md = sweep::markdown(&rows, &format!("{name}: {}", sweep_args.join(" ")));
    if let Err(code) = write("sweep.md", md.clone()) {
        return code;
    }
    println!("{md}");
    println!(
        "sweep of {} runs in {}/ (sweep.csv, sweep.md)",
        rows.len(),
        sweep_dir.display()
    );
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        fail(
            1,
            format!(
                "{} sweep point(s) failed: {}",
                failed.len(),
                failed.join("; ")
            ),
        )
    }
}

/// `difc sample` for a trans-dimensional experiment: `(n, N, d)` NaN-padded sets, the set
/// plots and the count metrics against the run's reference sets.
#[allow(clippy::too_many_arguments)]
fn sample_sets(
    exp: &ir::Experiment,
    fwd: &Forward,
    state: &TrainState,
    run_dir: &std::path::Path,
    out: Option<PathBuf>,
    solver: Solver,
    grid: compile::TimeGrid,
    steps: usize,
    n: usize,
    seed: u64,
    t_end: f64,
    max: usize,
    component: usize,
) -> ExitCode {
    use crate::run::sets::SetData;
    let device = Device::Cpu;
    let net = match state.ema_set(exp, &device) {
        Ok(Some(net)) => net,
        Ok(None) => return fail(1, "the checkpoint holds no set network"),
        Err(e) => return fail(1, e),
    };
    if fwd.ready_to_sample().is_err() {
        // The fixed-size model draws sizes from the training data: load it again.
        match crate::run::experiment::load_data(exp) {
            Ok(data) => fwd.observe_data(&data.train),
            Err(e) => return fail(1, format!("cannot load the training data: {e}")),
        }
    }
    let rows = match crate::run::transdim::draw_sets(
        fwd, &*net, solver, grid, steps, n, seed, t_end, &device,
    ) {
        Ok(r) => r,
        Err(e) => return fail(1, e),
    };
    let gen = match SetData::from_padded_rows(&rows, max, component, max) {
        Ok(g) => g,
        Err(e) => return fail(1, format!("the generated sets: {e}")),
    };
    let out =
        out.unwrap_or_else(|| run_dir.join(format!("samples_{}_{}.npy", solver.name(), steps)));
    if let Err(e) = crate::run::sets::write_sets_npy(&out, &gen) {
        return fail(1, format!("cannot write `{}`: {e}", out.display()));
    }
    println!(
        "{} sets ({}, {steps} steps) written to {}",
        gen.len(),
        solver.name(),
        out.display()
    );
    let reference = SetData::load_npy(run_dir.join("reference.npy"), max, component).ok();
    let title = format!("{} — {} sets, {steps} steps", exp.name, gen.len());
    match crate::run::transdim::plots(&out.with_extension("png"), &gen, reference.as_ref(), &title)
    {
        Ok(()) => println!("plots written next to it"),
        Err(e) => eprintln!("warning: no plot: {e}"),
    }
    if let Some(reference) = reference {
        let (a, b) = reference.split_at(reference.len() / 2);
        match crate::run::transdim::set_metrics(&gen, &a, &b, &reference) {
            Ok(m) => {
                let mut yaml = format!(
                    "solver: {}\nsteps: {steps}\nn: {}\nseed: {seed}\n",
                    solver.name(),
                    gen.len()
                );
                for (k, v) in &m {
                    println!("  {k:<24} {v:.5}");
                    yaml += &format!("{k}: {v}\n");
                }
                let path = out.with_extension("yaml");
                let path = path.with_file_name(format!(
                    "metrics_{}",
                    path.file_name()
                        .and_then(|s| s.to_str())
                        .unwrap_or("samples.yaml")
                        .trim_start_matches("samples_")
                ));
                if let Err(e) = crate::run::checkpoint::write_atomic(&path, yaml.as_bytes()) {
                    eprintln!("warning: cannot write `{}`: {e}", path.display());
                } else {
                    println!("metrics written to {}", path.display());
                }
            }
            Err(e) => eprintln!("warning: metrics not computed: {e}"),
        }
    }
    ExitCode::SUCCESS
}

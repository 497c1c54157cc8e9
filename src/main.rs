//! The `difc` command line: `check`, `run`, `sample`, `explain`.

use clap::{Parser, Subcommand, ValueEnum};
use difc::check::FsLoader;
use difc::diag::RenderOptions;
use difc::driver::{self, Format, Session, Show};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "difc",
    version,
    about = "Declare a diffusion model's forward process; train, sample and evaluate it."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum FormatArg {
    Human,
    Json,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum DeviceArg {
    Cpu,
    Cuda,
}

#[derive(Subcommand)]
enum Command {
    /// Check specs and report every problem (exit 0: clean, 1: errors, 2: usage or IO).
    Check {
        /// Spec files to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Output format of the diagnostics.
        #[arg(long, value_enum, default_value = "human")]
        format: FormatArg,
        /// Check with an override applied, e.g. `--set train.steps=1000` (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Only this experiment: overrides apply to it alone, and only its problems (and those
        /// of the whole file) are reported.
        #[arg(long)]
        experiment: Option<String>,
    },
    /// Train, sample and evaluate an experiment; writes runs/<experiment>/ (or --out).
    /// Without FILE, runs the embedded default (VP diffusion on the swiss roll).
    Run {
        /// The spec file (default: the embedded specs/swiss_roll_vp.diff).
        file: Option<PathBuf>,
        /// Which experiment of the file to run (needed when it has several).
        #[arg(long)]
        experiment: Option<String>,
        /// Override a setting, e.g. `--set train.steps=1000` (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Run the product of values, e.g. `--sweep train.seed=0,1,2` (repeatable; any `--set`
        /// key): runs go to <out>/sweep/, with sweep.csv and sweep.md (mean ± sd over seeds).
        /// Rerunning the same sweep continues it.
        #[arg(long = "sweep", value_name = "KEY=V1,V2,...")]
        sweep: Vec<String>,
        /// Output folder (default: runs/<experiment>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Continue an interrupted run in the output folder.
        #[arg(long)]
        resume: bool,
        /// Where tensors live.
        #[arg(long, value_enum, default_value = "cpu")]
        device: DeviceArg,
    },
    /// Draw new samples from a finished run's checkpoint.
    Sample {
        /// The run folder (holds config.yaml and checkpoint.safetensors).
        run_dir: PathBuf,
        /// Solver (one of the registry's names; default: the spec's `sample.solver`).
        #[arg(long, help = solver_help())]
        solver: Option<String>,
        /// Number of solver steps (≥ 1).
        #[arg(long, value_parser = whole_number)]
        steps: Option<u64>,
        /// Number of samples (≥ 1).
        #[arg(long, value_parser = whole_number)]
        n: Option<u64>,
        /// Seed of the sampler.
        #[arg(long)]
        seed: Option<u64>,
        /// Time grid: uniform, log_snr, edm or coarse_fine (default: the spec's `sample.grid`).
        #[arg(long)]
        grid: Option<String>,
        /// DDIM's noise level η in [0, 1] (`--solver ddim` only; default: the spec's `sample.eta`).
        #[arg(long)]
        eta: Option<f64>,
        /// Forward time at which sampling stops (default: the spec's `sample.t_end`).
        #[arg(long, allow_negative_numbers = true)]
        t_end: Option<f64>,
        /// Output file (default: RUN_DIR/samples_<solver>_<steps>.npy, `_log_snr` added on that grid).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Print what difc derives from each process: marginal, training target, loss, sampler.
    Explain {
        /// Spec files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Only this experiment.
        #[arg(long)]
        experiment: Option<String>,
        /// Explain with an override applied, e.g. `--set process.beta_max=10` (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
}

/// A whole number ≥ 1 written as digits or in scientific notation (`1e4`).
fn whole_number(text: &str) -> Result<u64, String> {
    let v: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a number"))?;
    if !v.is_finite() || v.fract() != 0.0 {
        return Err(format!("`{text}` is not a whole number"));
    }
    if v < 1.0 {
        return Err(format!("must be at least 1, found {text}"));
    }
    if v > 1e15 {
        return Err(format!("must be at most 1e15, found {text}"));
    }
    Ok(v as u64)
}

/// A closed pipe (`difc explain spec.diff | head -1`) ends the process quietly, as it does
/// for other Unix tools, instead of a panic in `println!`.
fn quiet_on_broken_pipe() {
    #[cfg(unix)]
    {
        extern "C" {
            fn signal(signum: i32, handler: usize) -> usize;
        }
        const SIGPIPE: i32 = 13;
        const SIG_DFL: usize = 0;
        // SAFETY: restoring the default disposition of SIGPIPE, before any thread starts.
        unsafe {
            signal(SIGPIPE, SIG_DFL);
        }
    }
}

fn main() -> ExitCode {
    quiet_on_broken_pipe();
    difc::run::threads::configure();
    let cli = Cli::parse();
    if let Ok(v) = std::env::var("DIFC_MAX_MEMORY") {
        if difc::check::resources::parse_bytes(&v).is_none() {
            eprintln!("error: DIFC_MAX_MEMORY=`{v}` is not a size; write e.g. `64GiB`, `512MiB` or a number of bytes");
            return ExitCode::from(2);
        }
    }
    match cli.command {
        Command::Check {
            files,
            format,
            set,
            experiment,
        } => cmd_check(&files, format, &set, experiment.as_deref()),
        Command::Run {
            file,
            experiment,
            set,
            sweep,
            out,
            resume,
            device,
        } => difc::cli::cmd_run_sweep(
            file,
            experiment,
            set,
            sweep,
            out,
            resume,
            device == DeviceArg::Cuda,
        ),
        Command::Sample {
            run_dir,
            solver,
            steps,
            n,
            seed,
            grid,
            eta,
            t_end,
            out,
        } => difc::cli::cmd_sample(&run_dir, solver, steps, n, seed, grid, eta, t_end, out),
        Command::Explain {
            files,
            experiment,
            set,
        } => difc::cli::cmd_explain(&files, experiment, &set),
    }
}

fn render_options() -> RenderOptions {
    let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    RenderOptions { color, width: 100 }
}

fn cmd_check(
    files: &[PathBuf],
    format: FormatArg,
    set: &[String],
    experiment: Option<&str>,
) -> ExitCode {
    let session: Session = match driver::check_paths_for(files, set, &FsLoader, experiment) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {}", e.0);
            return ExitCode::from(2);
        }
    };
    let format = match format {
        FormatArg::Human => Format::Human,
        FormatArg::Json => Format::Json,
    };
    let show = experiment.map_or(Show::All, Show::Experiment);
    let text = driver::render_shown(&session, format, render_options(), show);
    match format {
        Format::Json => {
            let _ = std::io::stdout().write_all(text.as_bytes());
        }
        Format::Human => {
            let _ = std::io::stderr().write_all(text.as_bytes());
        }
    }
    let failed = match experiment {
        None => session.checked.diagnostics.has_errors(),
        Some(name) => {
            if !session.checked.experiment_names.iter().any(|e| e == name) {
                let names = session.checked.experiment_names.join(", ");
                eprintln!("error: no experiment `{name}` in the spec (it has {names})");
                return ExitCode::from(2);
            }
            session.blocked(name)
        }
    };
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// `difc sample --solver`'s help, listed from the solver registry so that it cannot go stale.
fn solver_help() -> String {
    format!(
        "Solver ({}; default: the spec's `sample.solver`)",
        difc::ir::registry::SOLVER_NAMES.join(", ")
    )
}

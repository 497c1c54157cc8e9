//! The `difc` command line: `check`, `run`, `sample`, `explain`.

use clap::{Parser, Subcommand, ValueEnum};
use difc::check::FsLoader;
use difc::diag::RenderOptions;
use difc::driver::{self, Format, Session};
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
        /// Solver (ode_euler, ode_heun, euler_maruyama, exponential_ode, exponential_sde).
        #[arg(long)]
        solver: Option<String>,
        /// Number of solver steps.
        #[arg(long)]
        steps: Option<usize>,
        /// Number of samples.
        #[arg(long)]
        n: Option<usize>,
        /// Seed of the sampler.
        #[arg(long)]
        seed: Option<u64>,
        /// Forward time at which sampling stops (default: the spec's `sample.t_end`).
        #[arg(long)]
        t_end: Option<f64>,
        /// Output file (default: RUN_DIR/samples_<solver>_<steps>.npy).
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
    },
}

fn main() -> ExitCode {
    difc::run::threads::configure();
    let cli = Cli::parse();
    match cli.command {
        Command::Check { files, format, set } => cmd_check(&files, format, &set),
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
            t_end,
            out,
        } => difc::cli::cmd_sample(&run_dir, solver, steps, n, seed, t_end, out),
        Command::Explain { files, experiment } => difc::cli::cmd_explain(&files, experiment),
    }
}

fn render_options() -> RenderOptions {
    let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    RenderOptions { color, width: 100 }
}

fn cmd_check(files: &[PathBuf], format: FormatArg, set: &[String]) -> ExitCode {
    let session: Session = match driver::check_paths(files, set, &FsLoader) {
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
    let text = driver::render(&session, format, render_options());
    match format {
        Format::Json => {
            let _ = std::io::stdout().write_all(text.as_bytes());
        }
        Format::Human => {
            let _ = std::io::stderr().write_all(text.as_bytes());
        }
    }
    if session.checked.diagnostics.has_errors() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

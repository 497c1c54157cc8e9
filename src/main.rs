//! The `difc` command line.

use clap::{Parser, Subcommand, ValueEnum};
use difc::check::FsLoader;
use difc::diag::RenderOptions;
use difc::driver::{self, Format};
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
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { files, format } => cmd_check(&files, format),
    }
}

fn render_options() -> RenderOptions {
    let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    RenderOptions { color, width: 100 }
}

fn cmd_check(files: &[PathBuf], format: FormatArg) -> ExitCode {
    let session = match driver::check_paths(files, &[], &FsLoader) {
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

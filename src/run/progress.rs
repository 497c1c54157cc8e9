//! Progress of long work: an indicatif bar on a terminal, plain periodic lines otherwise
//! (CI logs, files), so nobody watches a silent process.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// A progress report for `total` units of work.
pub struct Progress {
    label: &'static str,
    total: u64,
    bar: Option<ProgressBar>,
    last_line: Instant,
    started: Instant,
}

/// Seconds between plain log lines when stderr is not a terminal.
const LINE_EVERY: Duration = Duration::from_secs(10);

impl Progress {
    pub fn new(label: &'static str, total: u64, start: u64) -> Progress {
        let quiet = std::env::var_os("DIFC_QUIET").is_some();
        let bar = (std::io::stderr().is_terminal() && !quiet).then(|| {
            let bar = ProgressBar::new(total);
            let style = ProgressStyle::with_template(
                "{prefix:>6} [{bar:40}] {pos}/{len} {msg} ({elapsed} elapsed, eta {eta})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            bar.set_prefix(label);
            bar.set_position(start);
            bar
        });
        Progress {
            label,
            total,
            bar,
            last_line: Instant::now(),
            started: Instant::now(),
        }
    }

    pub fn update(&mut self, pos: u64, msg: &str) {
        match &self.bar {
            Some(bar) => {
                bar.set_position(pos);
                if !msg.is_empty() {
                    bar.set_message(msg.to_string());
                }
            }
            None => {
                if std::env::var_os("DIFC_QUIET").is_none()
                    && (self.last_line.elapsed() >= LINE_EVERY || pos == self.total)
                {
                    self.last_line = Instant::now();
                    eprintln!(
                        "{}: {pos}/{} {msg} ({:.0} s)",
                        self.label,
                        self.total,
                        self.started.elapsed().as_secs_f64()
                    );
                }
            }
        }
    }

    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

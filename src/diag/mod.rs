//! Diagnostics shared by every stage: source spans, the source map, and the rendering of
//! errors and warnings (miette graphical output for people, JSON lines for editors).
//!
//! Invariant: a stage never formats text for the terminal itself; it returns [`Diagnostic`]s
//! and the CLI decides how to show them.

mod render;
mod source;

pub use render::{render_human, render_json, RenderOptions};
pub use source::{FileId, SourceFile, SourceMap, Span};

/// How bad a diagnostic is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Warning,
    Error,
}

/// One secondary location shown with a diagnostic.
#[derive(Clone, Debug, PartialEq)]
pub struct Label {
    pub file: FileId,
    pub span: Span,
    pub text: String,
}

/// An error or warning about a spec, pointing at its source.
#[derive(Clone, Debug, PartialEq)]
pub struct Diagnostic {
    pub severity: Severity,
    /// Stable code, e.g. `difc::check::negative_rate`; documented in docs/diagnostics.md.
    pub code: &'static str,
    pub message: String,
    pub file: FileId,
    pub span: Span,
    /// What sits at the primary span.
    pub label: String,
    pub extra_labels: Vec<Label>,
    pub help: Option<String>,
    /// Whose problem this is: `Everyone` (syntax, imports, a process declaration) blocks every
    /// experiment; otherwise only the experiments whose check or compilation found it.
    pub scope: Scope,
}

/// Which experiments a diagnostic concerns.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Scope {
    /// True when the problem is not one experiment's: it blocks every experiment.
    pub everyone: bool,
    /// The experiments whose check or compilation found it (more than one after merging).
    pub experiments: Vec<String>,
}

impl Scope {
    /// Whether the diagnostic concerns experiment `name` (directly or as everyone's).
    pub fn concerns(&self, name: &str) -> bool {
        self.everyone || self.experiments.iter().any(|e| e == name)
    }
    /// The union of two scopes (the same problem found for both).
    pub fn merge(&mut self, other: &Scope) {
        self.everyone |= other.everyone;
        for e in &other.experiments {
            if !self.experiments.contains(e) {
                self.experiments.push(e.clone());
            }
        }
    }
}

impl Diagnostic {
    /// A new error at `span` of `file`.
    pub fn error(code: &'static str, file: FileId, span: Span, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            code,
            message: message.into(),
            file,
            span,
            label: String::new(),
            extra_labels: Vec::new(),
            help: None,
            scope: Scope {
                everyone: true,
                experiments: Vec::new(),
            },
        }
    }

    /// A new warning at `span` of `file`.
    pub fn warning(
        code: &'static str,
        file: FileId,
        span: Span,
        message: impl Into<String>,
    ) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(code, file, span, message)
        }
    }

    /// Sets the text shown under the primary span.
    pub fn with_label(mut self, text: impl Into<String>) -> Self {
        self.label = text.into();
        self
    }

    /// Adds a secondary location.
    pub fn with_extra(mut self, file: FileId, span: Span, text: impl Into<String>) -> Self {
        self.extra_labels.push(Label {
            file,
            span,
            text: text.into(),
        });
        self
    }

    /// Sets the one-sentence fix.
    pub fn with_help(mut self, text: impl Into<String>) -> Self {
        self.help = Some(text.into());
        self
    }

    /// Marks the diagnostic as experiment `name`'s own problem.
    pub fn for_experiment(mut self, name: &str) -> Self {
        self.scope = Scope {
            everyone: false,
            experiments: vec![name.to_string()],
        };
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// A list of diagnostics collected by a stage; stages keep going after an error so that
/// one run reports everything that is wrong.
#[derive(Debug, Default)]
pub struct Diagnostics {
    pub items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn push(&mut self, d: Diagnostic) {
        self.items.push(d);
    }
    pub fn has_errors(&self) -> bool {
        self.items.iter().any(Diagnostic::is_error)
    }
    pub fn error_count(&self) -> usize {
        self.items.iter().filter(|d| d.is_error()).count()
    }
    pub fn warning_count(&self) -> usize {
        self.items.len() - self.error_count()
    }
    pub fn extend(&mut self, other: impl IntoIterator<Item = Diagnostic>) {
        self.items.extend(other);
    }
}

/// "did you mean `x`?" drawn from `candidates`, or `None` when nothing is close.
pub fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    let mut best: Option<(f64, &str)> = None;
    for c in candidates {
        let score = strsim::jaro_winkler(name, c);
        // Edits allowed grow with the length: `fid` is not a typo of `prd`, but
        // `sampel` is one of `sample`.
        let max_edits = (name.len().max(c.len()) / 4).max(1);
        let close = score > 0.8 || strsim::levenshtein(name, c) <= max_edits;
        if close && best.is_none_or(|(s, _)| score > s) {
            best = Some((score, c));
        }
    }
    best.map(|(_, c)| c.to_string())
}

/// "did you mean `x`?" or "expected one of `a`, `b`, `c`".
pub fn suggest(name: &str, candidates: &[&str]) -> String {
    match did_you_mean(name, candidates.iter().copied()) {
        Some(c) => format!("did you mean `{c}`?"),
        None => format!("expected one of {}", list_names(candidates)),
    }
}

/// `a`, `b` and `c` as one phrase.
pub fn list_names(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    match quoted.len() {
        0 => "nothing".to_string(),
        1 => quoted[0].clone(),
        n => format!("{} or {}", quoted[..n - 1].join(", "), quoted[n - 1]),
    }
}

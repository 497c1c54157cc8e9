//! Turning [`Diagnostic`]s into text: miette's graphical report for people, one JSON object
//! per line for editors.

use super::{Diagnostic, Severity, SourceMap};
use miette::{GraphicalReportHandler, GraphicalTheme, LabeledSpan, NamedSource, SourceSpan};
use std::fmt;

/// How to draw human-readable diagnostics.
#[derive(Clone, Copy, Debug)]
pub struct RenderOptions {
    pub color: bool,
    pub width: usize,
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions {
            color: false,
            width: 100,
        }
    }
}

/// A miette view of one of our diagnostics, with its source attached.
#[derive(Debug)]
struct View {
    /// `None` for a note about another file, which repeats no code.
    code: Option<&'static str>,
    message: String,
    severity: miette::Severity,
    help: Option<String>,
    source: NamedSource<String>,
    labels: Vec<LabeledSpan>,
    related: Vec<View>,
}

impl fmt::Display for View {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for View {}

impl miette::Diagnostic for View {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.code.map(|c| Box::new(c) as Box<dyn fmt::Display + 'a>)
    }
    fn severity(&self) -> Option<miette::Severity> {
        Some(self.severity)
    }
    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h.as_str()) as Box<dyn fmt::Display>)
    }
    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        Some(&self.source)
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        Some(Box::new(self.labels.iter().cloned()))
    }
    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn miette::Diagnostic> + 'a>> {
        if self.related.is_empty() {
            None
        } else {
            Some(Box::new(
                self.related.iter().map(|v| v as &dyn miette::Diagnostic),
            ))
        }
    }
}

fn source_span(span: super::Span) -> SourceSpan {
    (span.start as usize, span.len()).into()
}

fn label(text: &str, span: super::Span, primary: bool) -> LabeledSpan {
    let text = (!text.is_empty()).then(|| text.to_string());
    if primary {
        LabeledSpan::new_primary_with_span(text, source_span(span))
    } else {
        LabeledSpan::new_with_span(text, source_span(span))
    }
}

fn view(d: &Diagnostic, sources: &SourceMap) -> View {
    let file = sources.get(d.file);
    let mut labels = vec![label(&d.label, d.span, true)];
    let mut related = Vec::new();
    for extra in &d.extra_labels {
        if extra.file == d.file {
            labels.push(label(&extra.text, extra.span, false));
        } else {
            let other = sources.get(extra.file);
            // miette shows one source per report: a location in another file becomes a
            // related note ("Advice"), without repeating the code.
            related.push(View {
                code: None,
                message: extra.text.clone(),
                severity: miette::Severity::Advice,
                help: None,
                source: NamedSource::new(other.name.clone(), printable(&other.text)),
                labels: vec![label("", extra.span, true)],
                related: Vec::new(),
            });
        }
    }
    View {
        code: Some(d.code),
        message: d.message.clone(),
        severity: match d.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
        },
        help: d.help.clone(),
        source: NamedSource::new(file.name.clone(), printable(&file.text)),
        labels,
        related,
    }
}

/// The source as shown in excerpts: control characters (other than line breaks and tabs)
/// become `?`, one per byte, so spans still line up and a binary file never sends escape
/// sequences to the terminal.
fn printable(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let keep = !c.is_control() || matches!(c, '\n' | '\t' | '\r');
            let (ch, n) = if keep { (c, 1) } else { ('?', c.len_utf8()) };
            std::iter::repeat_n(ch, n)
        })
        .collect()
}

/// Renders one diagnostic as miette's graphical report.
pub fn render_human(d: &Diagnostic, sources: &SourceMap, opts: RenderOptions) -> String {
    let theme = if opts.color {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::unicode_nocolor()
    };
    let handler = GraphicalReportHandler::new_themed(theme)
        .with_width(opts.width)
        .with_context_lines(1)
        .with_show_related_as_nested(true);
    let mut out = String::new();
    let v = view(d, sources);
    if handler.render_report(&mut out, &v).is_err() {
        // Rendering only fails on a formatter error; fall back to the plain message.
        out = format!("{}: {}\n", d.code, d.message);
    }
    // A blank line between reports keeps consecutive diagnostics apart.
    out.push('\n');
    out
}

/// One JSON object (a single line) describing a diagnostic, for editors.
pub fn render_json(d: &Diagnostic, sources: &SourceMap) -> String {
    let file = sources.get(d.file);
    let (line, column) = file.line_col(d.span.start as usize);
    let (end_line, end_column) = file.line_col(d.span.end as usize);
    let value = serde_json::json!({
        "file": file.name,
        "line": line,
        "column": column,
        "end_line": end_line,
        "end_column": end_column,
        "severity": match d.severity { Severity::Error => "error", Severity::Warning => "warning" },
        "code": d.code,
        "message": d.message,
        "label": d.label,
        "help": d.help,
    });
    value.to_string()
}

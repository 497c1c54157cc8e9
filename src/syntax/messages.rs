//! Turning a pest failure into a syntax error a person can act on: the expected tokens in user
//! words, the bracket that was never closed, the string that was never terminated, and one
//! sentence on how to fix it. Every rule that pest can report has a name here (a test walks
//! all rules).

use super::parse::Rule;
use crate::diag::{Diagnostic, FileId, Span};

/// The name of a rule as users should read it; `None` for rules never shown.
pub fn rule_name(rule: Rule) -> Option<&'static str> {
    Some(match rule {
        Rule::EOI => "end of file",
        Rule::chunk | Rule::use_decl | Rule::process_decl | Rule::experiment_decl => {
            "`use`, `process` or `experiment`"
        }
        Rule::kw_use => "`use`",
        Rule::kw_process => "`process`",
        Rule::kw_experiment => "`experiment`",
        Rule::kw_transform => "`transform`",
        Rule::module_path => "a module path like `stdlib.vp`",
        Rule::params => "a parameter list `(name = value, ...)`",
        Rule::param => "a parameter",
        Rule::block => "a block `{ ... }`",
        Rule::transform_def
        | Rule::func_def
        | Rule::dist_stmt
        | Rule::block_stmt
        | Rule::assign_stmt => "a statement",
        Rule::formals => "an argument list like `(x, t)`",
        Rule::dotted => "a key",
        Rule::expr
        | Rule::product
        | Rule::unary
        | Rule::power
        | Rule::paren
        | Rule::call
        | Rule::list
        | Rule::arg
        | Rule::named_arg => "an expression",
        Rule::add_op => "an operator",
        Rule::mul_op => "an operator",
        Rule::neg => "`-`",
        Rule::number => "a number",
        Rule::string | Rule::string_inner => "a string",
        Rule::ident => "a name",
        Rule::item => "`use`, `process` or `experiment`",
        Rule::stmt => "a statement",
        Rule::atom => "an expression",
        Rule::WHITESPACE | Rule::COMMENT | Rule::ident_char => return None,
    })
}

const TOP_LEVEL: &str = "`use`, `process` or `experiment`";
const CODE: &str = "difc::syntax::error";

/// Where a parse failed: the whole file, the chunk that was being parsed, the absolute
/// offset of the failure and what the grammar expected there (user words).
pub struct Failure<'a> {
    pub file: FileId,
    pub text: &'a str,
    pub chunk: (usize, usize),
    pub at: usize,
    pub expected: Vec<&'static str>,
}

/// A bracket opened and not yet closed, with its absolute offset.
#[derive(Clone, Copy, Debug)]
struct Open {
    ch: char,
    at: usize,
    /// `(` right after a name: a call, whose arguments are separated by `,`.
    call: bool,
}

/// The brackets still open at `end` (scanning from `start`, skipping comments and strings),
/// and the first closing bracket that matched nothing, if any.
fn open_brackets(text: &str, start: usize, end: usize) -> Vec<Open> {
    let bytes = text.as_bytes();
    let mut stack: Vec<Open> = Vec::new();
    let mut i = start;
    while i < end {
        match bytes[i] {
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while i < end && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i < end && !(bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/')) {
                    i += 1;
                }
                i += 1;
            }
            b'"' => {
                i += 1;
                while i < end && bytes[i] != b'"' && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            c @ (b'(' | b'[' | b'{') => {
                let before = text[start..i].trim_end();
                let call = c == b'('
                    && before
                        .chars()
                        .next_back()
                        .is_some_and(|p| p.is_ascii_alphanumeric() || p == '_');
                stack.push(Open {
                    ch: c as char,
                    at: i,
                    call,
                });
            }
            c @ (b')' | b']' | b'}') if stack.last().is_some_and(|o| closer(o.ch) == c as char) => {
                stack.pop();
            }
            _ => {}
        }
        i += 1;
    }
    stack
}

fn closer(open: char) -> char {
    match open {
        '(' => ')',
        '[' => ']',
        _ => '}',
    }
}

fn opener(close: char) -> char {
    match close {
        ')' => '(',
        ']' => '[',
        _ => '{',
    }
}

/// A short description of the text at the error position and its length in bytes.
pub fn describe_found(rest: &str) -> (String, usize) {
    let Some(c) = rest.chars().next() else {
        return ("end of file".to_string(), 0);
    };
    if c.is_ascii_alphanumeric() || c == '_' || c == '.' {
        let word: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '.')
            .collect();
        let len = word.len();
        return (format!("`{word}`"), len);
    }
    let shown = match c {
        '\n' => "end of line".to_string(),
        '"' => "a string".to_string(),
        c if c.is_control() => format!("control character U+{:04X}", c as u32),
        c if invisible_name(c).is_some() => {
            format!(
                "U+{:04X} ({})",
                c as u32,
                invisible_name(c).unwrap_or_default()
            )
        }
        c => format!("`{c}`"),
    };
    (shown, c.len_utf8())
}

/// Characters that print as nothing or as a plain space, named so the user can find them.
fn invisible_name(c: char) -> Option<&'static str> {
    Some(match c {
        '\u{FEFF}' => "byte-order mark",
        '\u{00A0}' => "no-break space",
        '\u{00AD}' => "soft hyphen",
        '\u{200B}' => "zero-width space",
        '\u{200C}' => "zero-width non-joiner",
        '\u{200D}' => "zero-width joiner",
        '\u{2060}' => "word joiner",
        '\u{202F}' => "narrow no-break space",
        '\u{2000}'..='\u{200A}' => "typographic space",
        '\u{3000}' => "ideographic space",
        '\u{200E}' | '\u{200F}' => "text direction mark",
        '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' => "text direction control",
        _ => return None,
    })
}

/// Look-alike characters people paste from papers, with what difc writes instead.
fn ascii_for(c: char) -> Option<&'static str> {
    Some(match c {
        '×' | '·' | '⋅' | '∗' => "*",
        '÷' | '∕' => "/",
        '−' | '–' | '—' => "-",
        '²' => "^2",
        '³' => "^3",
        '“' | '”' | '„' => "\"",
        '‘' | '’' => "\"",
        '√' => "sqrt(...)",
        'π' => "pi",
        _ => return None,
    })
}

/// 1-based line of a byte offset.
fn line_of(text: &str, at: usize) -> usize {
    text[..at.min(text.len())].matches('\n').count() + 1
}

/// Builds the syntax error for a failure.
pub fn explain(f: Failure) -> Diagnostic {
    let rest = &f.text[f.at..];
    let before = f.text[f.chunk.0..f.at].trim_end();
    let before_end = f.chunk.0 + before.len();
    let crosses_line = f.text[before_end..f.at].contains('\n') && !before.is_empty();
    let open = open_brackets(f.text, f.chunk.0, f.at);
    let found_char = rest.chars().next();

    if found_char == Some('"') && !rest[1..].lines().next().unwrap_or("").contains('"') {
        return unterminated_string(&f, rest);
    }
    if let Some(c @ (')' | ']' | '}')) = found_char {
        if !open.iter().any(|o| closer(o.ch) == c) {
            return unmatched_closer(&f, c);
        }
    }
    let inner = open.last().filter(|o| o.ch != '{');
    let at_item_end = f.at >= f.chunk.1;
    if let Some(o) = open.last() {
        // The text ends (or the next item starts, or a line starts with a new statement)
        // while a bracket is still open: name that bracket.
        let closing_other =
            matches!(found_char, Some(')' | ']' | '}')) && found_char != Some(closer(o.ch));
        if at_item_end || closing_other || (crosses_line && inner.is_some()) {
            return unclosed(&f, *o, before_end);
        }
    }

    let expected = augment(&f.expected, inner.copied(), open.last().copied());
    if expected == ["end of file"] {
        return stray_top_level(&f, rest);
    }
    let (found, found_len) = describe_found(rest);
    let what = if expected.is_empty() {
        "unexpected input".to_string()
    } else {
        format!("expected {}", join_or(&expected))
    };
    let message = format!("syntax error: {what}, found {found}");
    // pest reports the failure after skipping whitespace; when that lands on a later line,
    // point just after the previous token instead, where the user must add something.
    let (span, label) = if crosses_line && found_char != Some('=') {
        (
            Span::new(before_end, before_end),
            format!("{what} after this"),
        )
    } else {
        (Span::new(f.at, f.at + found_len), what.clone())
    };
    let mut d = Diagnostic::error(CODE, f.file, span, message).with_label(label);
    let help = help_for(&expected, before, rest, inner.copied());
    if let Some(op) = trailing_operator(&f, before) {
        d = d.with_extra(
            f.file,
            Span::new(op, op + 1),
            "the expression continues after this operator",
        );
    }
    d.with_help(help)
}

/// Adds what pest cannot name (punctuation) to the expected tokens, from the bracket context.
fn augment(expected: &[&'static str], inner: Option<Open>, top: Option<Open>) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = expected.to_vec();
    // `transform` and a name at the start of a statement: say "a statement".
    if out.contains(&"`transform`") && out.contains(&"a name") {
        out.retain(|e| *e != "`transform`" && *e != "a name");
        out.push("a statement");
    }
    if out.contains(&"an operator") {
        match inner {
            Some(o) if o.ch == '[' => out.extend(["`,`", "`]`"]),
            Some(o) if o.call => out.extend(["`,`", "`)`"]),
            Some(_) => out.push("`)`"),
            None if top.is_some() && out.contains(&"a statement") => out.push("`}`"),
            None => {}
        }
    }
    if out.contains(&"a block `{ ... }`") && out.contains(&"an argument list like `(x, t)`") {
        out.push("`=`");
    }
    out.sort_unstable();
    out.dedup();
    out
}

fn unterminated_string(f: &Failure, rest: &str) -> Diagnostic {
    let line_len = rest.find('\n').unwrap_or(rest.len());
    Diagnostic::error(
        CODE,
        f.file,
        Span::new(f.at, f.at + line_len),
        "syntax error: unterminated string",
    )
    .with_label("this string has no closing `\"`")
    .with_help("close the string with `\"` on the same line, e.g. `use \"other.diff\"`")
}

fn unmatched_closer(f: &Failure, c: char) -> Diagnostic {
    Diagnostic::error(
        CODE,
        f.file,
        Span::new(f.at, f.at + 1),
        format!("syntax error: unmatched `{c}`"),
    )
    .with_label(format!("no `{}` to close", opener(c)))
    .with_help(format!(
        "remove this `{c}`, or add the missing `{}` before it",
        opener(c)
    ))
}

fn unclosed(f: &Failure, o: Open, before_end: usize) -> Diagnostic {
    let close = closer(o.ch);
    let (found, _) = describe_found(&f.text[f.at..]);
    let line = line_of(f.text, o.at);
    let at = if before_end > f.chunk.0 {
        before_end
    } else {
        f.at
    };
    Diagnostic::error(
        CODE,
        f.file,
        Span::new(at, at),
        format!("syntax error: `{}` is never closed", o.ch),
    )
    .with_label(format!("expected `{close}` here, found {found}"))
    .with_extra(f.file, Span::new(o.at, o.at + 1), "opened here")
    .with_help(format!(
        "add `{close}` to close the `{}` opened on line {line}",
        o.ch
    ))
}

fn stray_top_level(f: &Failure, rest: &str) -> Diagnostic {
    let (found, len) = describe_found(rest);
    Diagnostic::error(
        CODE,
        f.file,
        Span::new(f.at, f.at + len),
        format!("syntax error: expected {TOP_LEVEL}, found {found}"),
    )
    .with_label("outside any process or experiment")
    .with_help(
        "a file holds `use` imports, `process NAME(...) { ... }` and `experiment NAME { ... }`; \
         settings and definitions go inside those blocks",
    )
}

/// When the failure is the `=` of a statement and the line above ends with an operator, the
/// expression of that line ran on into this statement: the offset of that operator.
fn trailing_operator(f: &Failure, before: &str) -> Option<usize> {
    if !f.text[f.at..].starts_with('=') {
        return None;
    }
    let line_start = f.text[..f.at].rfind('\n')?;
    if line_start < f.chunk.0 || f.chunk.0 + before.len() < line_start {
        return None;
    }
    let prev = f.text[f.chunk.0..line_start].trim_end();
    prev.ends_with(['+', '-', '*', '/', '^'])
        .then(|| f.chunk.0 + prev.len() - 1)
}

/// One sentence on how to fix a syntax error, chosen from what was expected and found.
fn help_for(expected: &[&str], before: &str, rest: &str, inner: Option<Open>) -> String {
    let found = rest.chars().next();
    let expects = |s: &str| expected.contains(&s);
    if let Some(name) = found.and_then(invisible_name) {
        return format!(
            "the text holds an invisible {name} here (often pasted from a web page or a PDF); \
             delete it or replace it with a plain space"
        );
    }
    if found.is_some_and(|c| c.is_control() && c != '\n') {
        return "the file holds a control character here; is it a text file?".to_string();
    }
    if let Some(ascii) = found.and_then(ascii_for) {
        let c = found.unwrap_or(' ');
        return format!("`{c}` is not part of the language; write `{ascii}` instead");
    }
    if found == Some('*') && expects("an expression") && before.ends_with('*') {
        return "write powers as `x^2`, not `x**2`".to_string();
    }
    if found == Some('.')
        && rest[1..].starts_with(|c: char| c.is_ascii_digit())
        && before.ends_with(|c: char| c.is_ascii_digit())
    {
        return "a number has at most one decimal point, e.g. `10.5`".to_string();
    }
    if expects("an expression") && before.ends_with('=') {
        if found == Some('=') {
            return "there is one `=` too many here; a definition is `name = value` or \
                    `f(t) = expression`"
                .to_string();
        }
        let key: String = before[..before.len() - 1]
            .trim_end()
            .chars()
            .rev()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '.' || *c == ')')
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        if found == Some('{') && !key.is_empty() && !key.contains(['.', ')']) {
            return format!("a block takes no `=`: write `{key} {{ ... }}` without `=`");
        }
        let key = if key.is_empty() {
            "the key".to_string()
        } else {
            format!("`{key}`")
        };
        return format!("write a value after `=`: {key} needs one, e.g. `= 1.0`");
    }
    if found == Some('=')
        && !expects("an expression")
        && (before.ends_with(['+', '-', '*', '/', '^']) || expects("an operator"))
    {
        return "the expression on the line above continues onto this line: remove the \
                operator that ends it, or complete it"
            .to_string();
    }
    if let Some(o) = inner {
        if expects("an operator")
            && found.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '(' || c == '.')
        {
            let sep = if o.ch == '[' || o.call {
                "`,`"
            } else {
                "an operator"
            };
            return format!("two values follow each other here; separate them with {sep}");
        }
    }
    if expects(TOP_LEVEL) {
        return "a file holds `use` imports, `process NAME(...) { ... }` and `experiment NAME { ... }`"
            .to_string();
    }
    if expects("a name") && (before.ends_with("process") || before.ends_with("experiment")) {
        return "give it a name, e.g. `process my_process(theta = 1.0) { ... }`".to_string();
    }
    if expects("a block `{ ... }`") && !expects("`=`") {
        return "a process or experiment body goes between braces: `process vp() { ... }`"
            .to_string();
    }
    if expects("`=`") {
        return "a statement is `key = value`, `f(t) = expression`, `name ~ distribution(...)` or \
                `block { ... }`"
            .to_string();
    }
    if expects("an expression") {
        return "an expression is a number, a name, a call like `exp(-t)`, or operators \
                `+ - * / ^` between them"
            .to_string();
    }
    if expects("a name") {
        return "names start with a letter or `_` and continue with letters, digits or `_`"
            .to_string();
    }
    "compare the statement with the examples in specs/".to_string()
}

fn join_or(items: &[&str]) -> String {
    match items.len() {
        0 => String::new(),
        1 => items[0].to_string(),
        n => format!("{} or {}", items[..n - 1].join(", "), items[n - 1]),
    }
}

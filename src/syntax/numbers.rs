//! Number literals the grammar does not accept but users write (`10_000`, `0x2A`, `2e-`):
//! found before pest runs, so the message names the literal instead of a token pest
//! stumbled on later.

use super::parse::trivia_end;
use crate::diag::{Diagnostic, FileId, Span};

/// The first malformed number literal in `text` (outside comments and strings), as a
/// diagnostic at `offset + position`.
pub fn check_numbers(file: FileId, text: &str, offset: usize) -> Option<Diagnostic> {
    let bytes = text.as_bytes();
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut i = 0;
    while i < bytes.len() {
        if let Some(last) = trivia_end(bytes, i) {
            i = last + 1;
            continue;
        }
        match bytes[i] {
            b if b.is_ascii_digit() && (i == 0 || !ident(bytes[i - 1]) && bytes[i - 1] != b'.') => {
                let start = i;
                let end = (i..bytes.len())
                    .find(|&j| !(ident(bytes[j]) || bytes[j] == b'.' || signed_exponent(bytes, j)))
                    .unwrap_or(bytes.len());
                if let Some(d) = judge(file, &text[start..end], offset + start) {
                    return Some(d);
                }
                i = end;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// A `+`/`-` right after the `e` of a literal's exponent (`2e-3`).
fn signed_exponent(bytes: &[u8], j: usize) -> bool {
    matches!(bytes[j], b'+' | b'-')
        && j >= 2
        && matches!(bytes[j - 1], b'e' | b'E')
        && bytes[j - 2].is_ascii_digit() | (bytes[j - 2] == b'.')
}

fn judge(file: FileId, lit: &str, at: usize) -> Option<Diagnostic> {
    let err = |message: String, help: String| {
        Some(
            Diagnostic::error(
                "difc::syntax::error",
                file,
                Span::new(at, at + lit.len()),
                message,
            )
            .with_label("this number")
            .with_help(help),
        )
    };
    if lit.len() > 1 && (lit.starts_with("0x") || lit.starts_with("0X")) {
        return err(
            format!("syntax error: hexadecimal numbers like `{lit}` are not supported"),
            "write the number in decimal, e.g. `0x2A` is `42`".to_string(),
        );
    }
    let mantissa_end = lit
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_'))
        .unwrap_or(lit.len());
    if lit[..mantissa_end].contains('_') {
        let plain: String = lit.chars().filter(|&c| c != '_').collect();
        return err(
            format!("syntax error: digit separators `_` are not supported in `{lit}`"),
            format!("write the number without `_`: `{plain}`"),
        );
    }
    let exponent = &lit[mantissa_end..];
    if let Some(after_e) = exponent.strip_prefix(['e', 'E']) {
        let digits = after_e.strip_prefix(['+', '-']).unwrap_or(after_e);
        let signed = digits.len() < after_e.len();
        if (signed || after_e.is_empty()) && !digits.starts_with(|c: char| c.is_ascii_digit()) {
            return err(
                format!("syntax error: the exponent of `{lit}` has no digits"),
                "write digits after `e`, e.g. `2e-3` for 0.002".to_string(),
            );
        }
    }
    None
}

//! Source text → syntax tree. Parsing never gives up on the whole file: the text is split
//! into top-level chunks, each parsed on its own, so every broken item gets its own error.

use super::ast::*;
use super::messages::{explain, rule_name, Failure};
use super::numbers::check_numbers;
use crate::diag::{Diagnostic, FileId, Span};
use pest::iterators::Pair;
use pest::Parser as _;

#[derive(pest_derive::Parser)]
#[grammar = "../grammar/diff.pest"]
pub(crate) struct DiffParser;

/// Deepest nesting of brackets accepted; deeper input is rejected before pest sees it, so
/// no input can overflow the parser's stack.
pub const MAX_NESTING: usize = 64;
/// Deepest expression tree accepted (long operator chains make deep trees too).
pub const MAX_EXPR_DEPTH: usize = 256;

/// Parses one file. Returns the items that parsed and one diagnostic per broken item.
pub fn parse_file(file: FileId, text: &str) -> (File, Vec<Diagnostic>) {
    let mut items = Vec::new();
    let mut broken = Vec::new();
    let mut diags = Vec::new();
    let comments = block_comments(text);
    for (start, end) in split_chunks(text, &comments) {
        let chunk = &text[start..end];
        let unclosed = comments
            .unclosed
            .filter(|&at| (start..end).contains(&at))
            .map(|at| unclosed_comment(file, at));
        let result = match unclosed
            .or_else(|| check_nesting(file, chunk, start))
            .or_else(|| check_numbers(file, chunk, start))
        {
            Some(d) => Err(d),
            None => parse_chunk(file, text, (start, end)),
        };
        match result {
            Ok(Some(item)) => items.push(item),
            Ok(None) => {}
            Err(d) => {
                broken.extend(item_name(chunk, start));
                diags.push(d);
            }
        }
    }
    (File { items, broken }, diags)
}

/// The name declared by a chunk that failed to parse (`process NAME` or `experiment NAME`),
/// so that later stages do not report it as undeclared.
fn item_name(chunk: &str, offset: usize) -> Option<Ident> {
    let trimmed = chunk.trim_start();
    let lead = chunk.len() - trimmed.len();
    let rest = ["process", "experiment"]
        .iter()
        .find_map(|kw| trimmed.strip_prefix(kw))?;
    let after = rest.trim_start();
    let name: String = after
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    if name.is_empty() || !name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        return None;
    }
    let start = offset + lead + (trimmed.len() - after.len());
    Some(Ident {
        span: Span::new(start, start + name.len()),
        name,
    })
}

/// Parses a single expression (used for `--set key=value` overrides).
pub fn parse_expr(file: FileId, text: &str) -> Result<Expr, Diagnostic> {
    if let Some(d) = check_nesting(file, text, 0).or_else(|| check_numbers(file, text, 0)) {
        return Err(d);
    }
    let mut pairs = DiffParser::parse(Rule::expr, text)
        .map_err(|e| syntax_error(file, text, (0, text.len()), e))?;
    let pair = pairs.next().ok_or_else(|| {
        Diagnostic::error(
            "difc::syntax::error",
            file,
            Span::new(0, text.len()),
            "expected a value",
        )
    })?;
    let end = pair.as_span().end();
    if end != text.len() {
        return Err(Diagnostic::error(
            "difc::syntax::error",
            file,
            Span::new(end, text.len()),
            "unexpected text after the value",
        )
        .with_label("not part of the value"));
    }
    Builder { file, offset: 0 }.expr(pair)
}

/// Where the block comments of a file lie, found by the same rules as the grammar's
/// `COMMENT` (a `/*` inside a `//` comment or a string opens nothing).
struct BlockComments {
    /// Byte ranges `[start, end)` of the closed `/* ... */` comments.
    closed: Vec<(usize, usize)>,
    /// The offset of a `/*` that is never closed (the comment runs to the end of the file).
    unclosed: Option<usize>,
}

impl BlockComments {
    fn contains(&self, at: usize) -> bool {
        self.closed.iter().any(|&(s, e)| s < at && at < e) || self.unclosed.is_some_and(|s| s < at)
    }
}

fn block_comments(text: &str) -> BlockComments {
    let bytes = text.as_bytes();
    let mut closed = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                let start = i;
                i += 2;
                while i < bytes.len() && !(bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/')) {
                    i += 1;
                }
                if i >= bytes.len() {
                    return BlockComments {
                        closed,
                        unclosed: Some(start),
                    };
                }
                i += 2;
                closed.push((start, i));
                continue;
            }
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    BlockComments {
        closed,
        unclosed: None,
    }
}

fn unclosed_comment(file: FileId, at: usize) -> Diagnostic {
    Diagnostic::error(
        "difc::syntax::unclosed_comment",
        file,
        Span::new(at, at + 2),
        "unclosed block comment",
    )
    .with_label("this `/*` has no matching `*/`")
    .with_help(
        "end the comment with `*/`, or use `//` for a comment that runs to the end of the line",
    )
}

/// Byte ranges of the top-level items: a new chunk starts at each line whose first word is
/// `use`, `process` or `experiment` followed by a name, unless that line lies inside a block
/// comment.
///
/// A byte-order mark at the very start of the file (some Windows editors write one) is
/// skipped: the first chunk starts after it. Anywhere else it is an error naming it.
fn split_chunks(text: &str, comments: &BlockComments) -> Vec<(usize, usize)> {
    let bom = if text.starts_with('\u{FEFF}') {
        '\u{FEFF}'.len_utf8()
    } else {
        0
    };
    let mut starts = vec![bom];
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if offset > 0 && starts_item(trimmed) && !comments.contains(offset + indent) {
            starts.push(offset + indent);
        }
        offset += line.len();
    }
    starts.dedup();
    let mut chunks: Vec<(usize, usize)> = starts.windows(2).map(|w| (w[0], w[1])).collect();
    chunks.push((*starts.last().unwrap_or(&0), text.len()));
    chunks
}

fn starts_item(line: &str) -> bool {
    ["use", "process", "experiment"].iter().any(|kw| {
        line.strip_prefix(kw).is_some_and(|rest| {
            let after = rest.trim_start();
            rest.len() > after.len()
                && after
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '"')
        })
    })
}

/// If a comment (`//`, `/* */`) or a string starts at byte `i`, the index of its last byte
/// (past the end for an unclosed one), so a scanner resumes after it; `None` otherwise. The
/// pre-pest scanners (nesting, number literals) skip what this finds.
pub(super) fn trivia_end(bytes: &[u8], mut i: usize) -> Option<usize> {
    match bytes[i] {
        b'/' if bytes.get(i + 1) == Some(&b'/') => {
            while i < bytes.len() && bytes[i] != b'\n' {
                i += 1;
            }
        }
        b'/' if bytes.get(i + 1) == Some(&b'*') => {
            i += 2;
            while i < bytes.len() && !(bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/')) {
                i += 1;
            }
            i += 1;
        }
        b'"' => {
            i += 1;
            while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                i += 1;
            }
        }
        _ => return None,
    }
    Some(i)
}

/// Rejects bracket nesting deeper than [`MAX_NESTING`], skipping comments and strings.
fn check_nesting(file: FileId, text: &str, offset: usize) -> Option<Diagnostic> {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        if let Some(last) = trivia_end(bytes, i) {
            i = last + 1;
            continue;
        }
        match bytes[i] {
            b'(' | b'[' | b'{' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Some(
                        Diagnostic::error(
                            "difc::syntax::too_deep",
                            file,
                            Span::new(offset + i, offset + i + 1),
                            format!("brackets nested more than {MAX_NESTING} levels deep"),
                        )
                        .with_label("this bracket is too deep")
                        .with_help(
                            "split the expression into named helper definitions, e.g. `a(t) = ...`",
                        ),
                    );
                }
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    None
}

fn parse_chunk(
    file: FileId,
    text: &str,
    (offset, end): (usize, usize),
) -> Result<Option<Item>, Diagnostic> {
    let chunk = &text[offset..end];
    let mut pairs = DiffParser::parse(Rule::chunk, chunk)
        .map_err(|e| syntax_error(file, text, (offset, end), e))?;
    let Some(chunk_pair) = pairs.next() else {
        return Ok(None);
    };
    let builder = Builder { file, offset };
    for pair in chunk_pair.into_inner() {
        match pair.as_rule() {
            Rule::use_decl => return builder.use_decl(pair).map(Some),
            Rule::process_decl => return builder.process(pair).map(Some),
            Rule::experiment_decl => return builder.experiment(pair).map(Some),
            _ => {}
        }
    }
    Ok(None)
}

/// Converts a pest error into our diagnostic, with the expected tokens in user words.
/// `chunk` is the byte range of the text pest was given (the whole file, or one item).
fn syntax_error(
    file: FileId,
    text: &str,
    chunk: (usize, usize),
    err: pest::error::Error<Rule>,
) -> Diagnostic {
    use pest::error::{ErrorVariant, InputLocation};
    let pos = match err.location {
        InputLocation::Pos(p) => p,
        InputLocation::Span((s, _)) => s,
    };
    let mut expected: Vec<&'static str> = match &err.variant {
        ErrorVariant::ParsingError { positives, .. } => {
            positives.iter().filter_map(|r| rule_name(*r)).collect()
        }
        ErrorVariant::CustomError { .. } => Vec::new(),
    };
    expected.sort_unstable();
    expected.dedup();
    explain(Failure {
        file,
        text,
        chunk,
        at: (chunk.0 + pos).min(chunk.1),
        expected,
    })
}

/// Builds AST nodes from pest pairs, shifting spans by the chunk's offset.
struct Builder {
    file: FileId,
    offset: usize,
}

type Res<T> = Result<T, Diagnostic>;

impl Builder {
    fn span(&self, pair: &Pair<Rule>) -> Span {
        let s = pair.as_span();
        Span::new(s.start() + self.offset, s.end() + self.offset)
    }

    fn ident(&self, pair: Pair<Rule>) -> Ident {
        Ident {
            name: pair.as_str().to_string(),
            span: self.span(&pair),
        }
    }

    fn use_decl(&self, pair: Pair<Rule>) -> Res<Item> {
        let span = self.span(&pair);
        let mut target = None;
        for p in pair.into_inner() {
            match p.as_rule() {
                Rule::string => {
                    let s = self.span(&p);
                    let text = p
                        .into_inner()
                        .next()
                        .map(|i| i.as_str().to_string())
                        .unwrap_or_default();
                    target = Some(UseTarget::File(text, s));
                }
                Rule::module_path => {
                    target = Some(UseTarget::Module(
                        p.into_inner().map(|i| self.ident(i)).collect(),
                    ));
                }
                _ => {}
            }
        }
        let target = target.ok_or_else(|| self.bug(span, "use without target"))?;
        let end = match &target {
            UseTarget::File(_, s) => s.end,
            UseTarget::Module(parts) => parts.last().map_or(span.end, |p| p.span.end),
        };
        let span = Span {
            start: span.start,
            end,
        };
        Ok(Item::Use(UseDecl { target, span }))
    }

    fn process(&self, pair: Pair<Rule>) -> Res<Item> {
        let span = self.span(&pair);
        let mut name = None;
        let mut params = Vec::new();
        let mut body = None;
        for p in pair.into_inner() {
            match p.as_rule() {
                Rule::ident => name = Some(self.ident(p)),
                Rule::params => {
                    for param in p.into_inner() {
                        params.push(self.param(param)?);
                    }
                }
                Rule::block => body = Some(self.block(p)?),
                _ => {}
            }
        }
        match (name, body) {
            (Some(name), Some(body)) => Ok(Item::Process(ProcessDecl {
                name,
                params,
                body,
                span,
            })),
            _ => Err(self.bug(span, "process without name or body")),
        }
    }

    fn param(&self, pair: Pair<Rule>) -> Res<Param> {
        let span = self.span(&pair);
        let mut inner = pair.into_inner();
        let name = inner
            .next()
            .map(|p| self.ident(p))
            .ok_or_else(|| self.bug(span, "param"))?;
        let default = inner.next().map(|p| self.expr(p)).transpose()?;
        let end = default.as_ref().map_or(name.span.end, |d| d.span.end);
        Ok(Param {
            span: Span {
                start: span.start,
                end,
            },
            name,
            default,
        })
    }

    fn experiment(&self, pair: Pair<Rule>) -> Res<Item> {
        let span = self.span(&pair);
        let mut name = None;
        let mut body = None;
        for p in pair.into_inner() {
            match p.as_rule() {
                Rule::ident => name = Some(self.ident(p)),
                Rule::block => body = Some(self.block(p)?),
                _ => {}
            }
        }
        match (name, body) {
            (Some(name), Some(body)) => Ok(Item::Experiment(ExperimentDecl { name, body, span })),
            _ => Err(self.bug(span, "experiment without name or body")),
        }
    }

    fn block(&self, pair: Pair<Rule>) -> Res<Block> {
        let span = self.span(&pair);
        let stmts = pair
            .into_inner()
            .map(|p| self.stmt(p))
            .collect::<Res<Vec<_>>>()?;
        Ok(Block { stmts, span })
    }

    fn stmt(&self, pair: Pair<Rule>) -> Res<Stmt> {
        let span = self.span(&pair);
        let rule = pair.as_rule();
        let mut inner = pair.into_inner().peekable();
        let kind = match rule {
            Rule::transform_def | Rule::func_def => {
                if rule == Rule::transform_def {
                    inner.next(); // the `transform` keyword
                }
                let name = self.ident(inner.next().ok_or_else(|| self.bug(span, "def name"))?);
                let formals = inner
                    .next()
                    .ok_or_else(|| self.bug(span, "def formals"))?
                    .into_inner()
                    .map(|p| self.ident(p))
                    .collect();
                let body = self.expr(inner.next().ok_or_else(|| self.bug(span, "def body"))?)?;
                StmtKind::Def {
                    transform: rule == Rule::transform_def,
                    name,
                    formals,
                    body,
                }
            }
            Rule::dist_stmt => {
                let name = self.ident(inner.next().ok_or_else(|| self.bug(span, "dist name"))?);
                let dist = self.expr(inner.next().ok_or_else(|| self.bug(span, "dist"))?)?;
                StmtKind::Dist { name, dist }
            }
            Rule::block_stmt => {
                let name = self.ident(inner.next().ok_or_else(|| self.bug(span, "block name"))?);
                let block = self.block(inner.next().ok_or_else(|| self.bug(span, "block"))?)?;
                StmtKind::Block { name, block }
            }
            Rule::assign_stmt => {
                let key = inner
                    .next()
                    .ok_or_else(|| self.bug(span, "key"))?
                    .into_inner()
                    .map(|p| self.ident(p))
                    .collect();
                let value = self.expr(inner.next().ok_or_else(|| self.bug(span, "value"))?)?;
                StmtKind::Assign { key, value }
            }
            other => return Err(self.bug(span, &format!("unexpected statement rule {other:?}"))),
        };
        // pest's span of a statement runs on over the whitespace after it; end it at its
        // last part so that labels do not spill onto the next line.
        let end = match &kind {
            StmtKind::Def { body, .. } => body.span.end,
            StmtKind::Dist { dist, .. } => dist.span.end,
            StmtKind::Block { block, .. } => block.span.end,
            StmtKind::Assign { value, .. } => value.span.end,
        };
        let span = Span {
            start: span.start,
            end: end.max(span.start),
        };
        Ok(Stmt { kind, span })
    }

    fn expr(&self, pair: Pair<Rule>) -> Res<Expr> {
        let span = self.span(&pair);
        match pair.as_rule() {
            Rule::expr | Rule::product => {
                let mut inner = pair.into_inner();
                let first = inner.next().ok_or_else(|| self.bug(span, "empty chain"))?;
                let mut acc = self.expr(first)?;
                while let (Some(op), Some(rhs)) = (inner.next(), inner.next()) {
                    let op = match op.as_str() {
                        "+" => BinOp::Add,
                        "-" => BinOp::Sub,
                        "*" => BinOp::Mul,
                        _ => BinOp::Div,
                    };
                    let rhs = self.expr(rhs)?;
                    acc = self.binary(op, acc, rhs)?;
                }
                Ok(acc)
            }
            Rule::unary => {
                let mut negs = Vec::new();
                let mut operand = None;
                for p in pair.into_inner() {
                    match p.as_rule() {
                        Rule::neg => negs.push(self.span(&p)),
                        _ => operand = Some(self.expr(p)?),
                    }
                }
                let mut e = operand.ok_or_else(|| self.bug(span, "unary operand"))?;
                for neg in negs.into_iter().rev() {
                    e = self.negate(neg, e)?;
                }
                Ok(e)
            }
            Rule::power => {
                // Collect `a ^ -b ^ c` operands with their minus signs, then fold from the
                // right: exponentiation is right-associative.
                let mut operands: Vec<Expr> = Vec::new();
                let mut pending_negs: Vec<Span> = Vec::new();
                for p in pair.into_inner() {
                    match p.as_rule() {
                        Rule::neg => pending_negs.push(self.span(&p)),
                        _ => {
                            let mut e = self.expr(p)?;
                            for neg in pending_negs.drain(..).rev() {
                                e = self.negate(neg, e)?;
                            }
                            operands.push(e);
                        }
                    }
                }
                let mut acc = operands
                    .pop()
                    .ok_or_else(|| self.bug(span, "power operand"))?;
                while let Some(base) = operands.pop() {
                    acc = self.binary(BinOp::Pow, base, acc)?;
                }
                Ok(acc)
            }
            Rule::paren => {
                let inner = pair
                    .into_inner()
                    .next()
                    .ok_or_else(|| self.bug(span, "paren"))?;
                let mut e = self.expr(inner)?;
                e.span = span;
                Ok(e)
            }
            Rule::number => {
                let text = pair.as_str().to_string();
                let value = text.parse::<f64>().map_err(|_| self.bug(span, "number"))?;
                Ok(Expr {
                    kind: ExprKind::Number { value, text },
                    span,
                })
            }
            Rule::string => {
                let text = pair
                    .into_inner()
                    .next()
                    .map(|p| p.as_str().to_string())
                    .unwrap_or_default();
                Ok(Expr {
                    kind: ExprKind::Str(text),
                    span,
                })
            }
            Rule::ident => Ok(Expr {
                kind: ExprKind::Ident(pair.as_str().to_string()),
                span,
            }),
            Rule::list => {
                let items = pair
                    .into_inner()
                    .map(|p| self.expr(p))
                    .collect::<Res<Vec<_>>>()?;
                let e = Expr {
                    kind: ExprKind::List(items),
                    span,
                };
                self.check_depth(&e)?;
                Ok(e)
            }
            Rule::call => {
                let mut inner = pair.into_inner();
                let callee = self.ident(inner.next().ok_or_else(|| self.bug(span, "callee"))?);
                let mut args = Vec::new();
                for arg in inner {
                    let a = arg
                        .into_inner()
                        .next()
                        .ok_or_else(|| self.bug(span, "arg"))?;
                    if a.as_rule() == Rule::named_arg {
                        let mut parts = a.into_inner();
                        let name =
                            self.ident(parts.next().ok_or_else(|| self.bug(span, "arg name"))?);
                        let value =
                            self.expr(parts.next().ok_or_else(|| self.bug(span, "arg value"))?)?;
                        args.push(Arg {
                            name: Some(name),
                            value,
                        });
                    } else {
                        args.push(Arg {
                            name: None,
                            value: self.expr(a)?,
                        });
                    }
                }
                let e = Expr {
                    kind: ExprKind::Call { callee, args },
                    span,
                };
                self.check_depth(&e)?;
                Ok(e)
            }
            other => Err(self.bug(span, &format!("unexpected expression rule {other:?}"))),
        }
    }

    fn negate(&self, neg: Span, e: Expr) -> Res<Expr> {
        let e = Expr {
            span: neg.to(e.span),
            kind: ExprKind::Neg(Box::new(e)),
        };
        self.check_depth(&e)?;
        Ok(e)
    }

    fn binary(&self, op: BinOp, lhs: Expr, rhs: Expr) -> Res<Expr> {
        let e = Expr {
            span: lhs.span.to(rhs.span),
            kind: ExprKind::Binary(op, Box::new(lhs), Box::new(rhs)),
        };
        self.check_depth(&e)?;
        Ok(e)
    }

    /// Rejects trees deeper than [`MAX_EXPR_DEPTH`] as they are built, so later recursive
    /// passes (checking, lowering, dropping) stay within the stack.
    fn check_depth(&self, e: &Expr) -> Res<()> {
        if depth(e) > MAX_EXPR_DEPTH {
            return Err(Diagnostic::error(
                "difc::syntax::too_deep",
                self.file,
                e.span,
                format!("expression more than {MAX_EXPR_DEPTH} operations deep"),
            )
            .with_label("this expression is too deep")
            .with_help("split it into named helper definitions, e.g. `a(t) = ...`"));
        }
        Ok(())
    }

    fn bug(&self, span: Span, what: &str) -> Diagnostic {
        crate::diag_bug(self.file, span, &format!("parser: {what}"))
    }
}

/// Depth of an expression tree. Children were depth-checked when built, so recursion here is
/// bounded by [`MAX_EXPR_DEPTH`].
pub fn depth(e: &Expr) -> usize {
    1 + match &e.kind {
        ExprKind::Number { .. } | ExprKind::Str(_) | ExprKind::Ident(_) => 0,
        ExprKind::Neg(a) => depth(a),
        ExprKind::Binary(_, a, b) => depth(a).max(depth(b)),
        ExprKind::Call { args, .. } => args.iter().map(|a| depth(&a.value)).max().unwrap_or(0),
        ExprKind::List(items) => items.iter().map(depth).max().unwrap_or(0),
    }
}

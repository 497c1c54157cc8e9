//! The syntax tree: a faithful, thin picture of the source with a span on every node.
//! Nothing semantic lives here: which statements a block accepts is the checker's business.

use crate::diag::Span;

/// A name with its location.
#[derive(Clone, Debug, PartialEq)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

/// A parsed file.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct File {
    pub items: Vec<Item>,
    /// Names of processes and experiments whose declaration failed to parse (already
    /// reported), so that uses of them are not reported again as unknown.
    pub broken: Vec<Ident>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    Use(UseDecl),
    Process(ProcessDecl),
    Experiment(ExperimentDecl),
}

/// `use stdlib.vp` or `use "other.diff"`.
#[derive(Clone, Debug, PartialEq)]
pub struct UseDecl {
    pub target: UseTarget,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum UseTarget {
    /// `stdlib.vp`: dotted module path.
    Module(Vec<Ident>),
    /// `"relative/file.diff"`.
    File(String, Span),
}

/// `process NAME(params) { ... }`.
#[derive(Clone, Debug, PartialEq)]
pub struct ProcessDecl {
    pub name: Ident,
    pub params: Vec<Param>,
    pub body: Block,
    pub span: Span,
}

/// `name = default` in a process header.
#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    pub name: Ident,
    pub default: Option<Expr>,
    pub span: Span,
}

/// `experiment NAME { ... }`.
#[derive(Clone, Debug, PartialEq)]
pub struct ExperimentDecl {
    pub name: Ident,
    pub body: Block,
    pub span: Span,
}

/// `{ stmt* }`.
#[derive(Clone, Debug, PartialEq)]
pub struct Block {
    pub stmts: Vec<Stmt>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Stmt {
    pub kind: StmtKind,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum StmtKind {
    /// `name(a, b) = expr`, or `transform name(a, b) = expr` when `transform` is set.
    Def {
        transform: bool,
        name: Ident,
        formals: Vec<Ident>,
        body: Expr,
    },
    /// `name ~ distribution(...)`.
    Dist { name: Ident, dist: Expr },
    /// `name { ... }`.
    Block { name: Ident, block: Block },
    /// `a.b = expr`.
    Assign { key: Vec<Ident>, value: Expr },
}

impl StmtKind {
    /// The statement's leading name (for `a.b = ..`, the first part).
    pub fn head(&self) -> &Ident {
        match self {
            StmtKind::Def { name, .. }
            | StmtKind::Dist { name, .. }
            | StmtKind::Block { name, .. } => name,
            StmtKind::Assign { key, .. } => &key[0],
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
}

impl BinOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Pow => "^",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum ExprKind {
    /// A numeric literal; `text` keeps the source spelling for messages.
    Number {
        value: f64,
        text: String,
    },
    Str(String),
    Ident(String),
    Neg(Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    Call {
        callee: Ident,
        args: Vec<Arg>,
    },
    List(Vec<Expr>),
}

/// A call argument, positional or named.
#[derive(Clone, Debug, PartialEq)]
pub struct Arg {
    pub name: Option<Ident>,
    pub value: Expr,
}

impl Expr {
    /// The identifier this expression is, if it is a bare name.
    pub fn as_ident(&self) -> Option<&str> {
        match &self.kind {
            ExprKind::Ident(n) => Some(n),
            _ => None,
        }
    }
}

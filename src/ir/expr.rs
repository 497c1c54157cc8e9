//! Scalar expressions of the IR: the coefficients of a forward process (`beta(t)`,
//! drifts, rates, ...) after parsing, as a small tree that can be evaluated,
//! printed, differentiated and integrated (see `super::symbolic`).

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::ops;

use thiserror::Error;

/// A scalar expression in the time `t`, the state component `x` and the number
/// of components `n`, possibly with named parameters not yet substituted.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    /// A numeric constant.
    Const(f64),
    /// One of the free variables `t`, `x` (the state, elementwise), `n`.
    Var(Var),
    /// A named parameter not yet substituted.
    Param(String),
    /// Unary minus.
    Neg(Box<Expr>),
    /// Sum.
    Add(Box<Expr>, Box<Expr>),
    /// Difference.
    Sub(Box<Expr>, Box<Expr>),
    /// Product.
    Mul(Box<Expr>, Box<Expr>),
    /// Quotient.
    Div(Box<Expr>, Box<Expr>),
    /// Power `base ^ exponent`.
    Pow(Box<Expr>, Box<Expr>),
    /// A built-in function applied to its arguments.
    Call(Func, Vec<Expr>),
}

/// The free variables an expression may mention.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Var {
    /// Diffusion time.
    T,
    /// The state, elementwise.
    X,
    /// The number of components (dimension) of the state.
    N,
}

impl Var {
    /// The name the variable has in source text.
    pub fn name(self) -> &'static str {
        match self {
            Var::T => "t",
            Var::X => "x",
            Var::N => "n",
        }
    }
}

/// Built-in functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Func {
    Exp,
    Log,
    Sqrt,
    Sin,
    Cos,
    Tan,
    Tanh,
    Sinh,
    Cosh,
    Abs,
    Min,
    Max,
    Sigmoid,
    Softplus,
    Log1p,
    Expm1,
    /// Heaviside step: 1 if the argument is > 0, else 0.
    Step,
    Atan,
}

/// Every function with its source name, in one table so that the name lists
/// and the lookups cannot drift apart.
const FUNC_TABLE: [(Func, &str); 18] = [
    (Func::Exp, "exp"),
    (Func::Log, "log"),
    (Func::Sqrt, "sqrt"),
    (Func::Sin, "sin"),
    (Func::Cos, "cos"),
    (Func::Tan, "tan"),
    (Func::Tanh, "tanh"),
    (Func::Sinh, "sinh"),
    (Func::Cosh, "cosh"),
    (Func::Abs, "abs"),
    (Func::Min, "min"),
    (Func::Max, "max"),
    (Func::Sigmoid, "sigmoid"),
    (Func::Softplus, "softplus"),
    (Func::Log1p, "log1p"),
    (Func::Expm1, "expm1"),
    (Func::Step, "step"),
    (Func::Atan, "atan"),
];

impl Func {
    /// The names of all built-in functions (for "did you mean" suggestions).
    pub const ALL: [&'static str; 18] = [
        "exp", "log", "sqrt", "sin", "cos", "tan", "tanh", "sinh", "cosh", "abs", "min", "max",
        "sigmoid", "softplus", "log1p", "expm1", "step", "atan",
    ];

    /// Looks a function up by its source name.
    pub fn from_name(name: &str) -> Option<Func> {
        FUNC_TABLE.iter().find(|(_, n)| *n == name).map(|(f, _)| *f)
    }

    /// The source name of the function.
    pub fn name(self) -> &'static str {
        FUNC_TABLE
            .iter()
            .find(|(f, _)| *f == self)
            .map_or("?", |(_, n)| n)
    }

    /// Number of arguments the function takes.
    pub fn arity(self) -> usize {
        match self {
            Func::Min | Func::Max => 2,
            _ => 1,
        }
    }

    /// Applies the function to already evaluated arguments (`args.len()` must
    /// equal the arity; a missing argument reads as NaN).
    pub fn apply(self, args: &[f64]) -> f64 {
        let a = args.first().copied().unwrap_or(f64::NAN);
        let b = args.get(1).copied().unwrap_or(f64::NAN);
        match self {
            Func::Exp => a.exp(),
            Func::Log => a.ln(),
            Func::Sqrt => a.sqrt(),
            Func::Sin => a.sin(),
            Func::Cos => a.cos(),
            Func::Tan => a.tan(),
            Func::Tanh => a.tanh(),
            Func::Sinh => a.sinh(),
            Func::Cosh => a.cosh(),
            Func::Abs => a.abs(),
            // f64::min/max silently drop a NaN operand; a NaN must propagate so
            // that the checker sees it.
            Func::Min if a.is_nan() || b.is_nan() => f64::NAN,
            Func::Max if a.is_nan() || b.is_nan() => f64::NAN,
            Func::Min => a.min(b),
            Func::Max => a.max(b),
            Func::Sigmoid => sigmoid(a),
            Func::Softplus => softplus(a),
            Func::Log1p => a.ln_1p(),
            Func::Expm1 => a.exp_m1(),
            Func::Step if a.is_nan() => f64::NAN,
            Func::Step => f64::from(u8::from(a > 0.0)),
            Func::Atan => a.atan(),
        }
    }
}

/// Logistic function, written so that neither branch overflows.
pub fn sigmoid(a: f64) -> f64 {
    if a >= 0.0 {
        1.0 / (1.0 + (-a).exp())
    } else {
        let e = a.exp();
        e / (1.0 + e)
    }
}

/// `log(1 + exp(a))` without overflow for large `a` nor underflow for very negative `a`.
pub fn softplus(a: f64) -> f64 {
    a.max(0.0) + (-a.abs()).exp().ln_1p()
}

/// Values of the free variables and parameters for evaluation.
#[derive(Clone, Copy, Debug)]
pub struct Env<'a> {
    pub t: f64,
    pub x: f64,
    pub n: f64,
    pub params: &'a HashMap<String, f64>,
}

impl<'a> Env<'a> {
    /// An environment with `t = x = 0`, `n = 1` and the given parameters.
    pub fn new(params: &'a HashMap<String, f64>) -> Self {
        Env {
            t: 0.0,
            x: 0.0,
            n: 1.0,
            params,
        }
    }

    /// The same environment with another value of `var`.
    pub fn with(mut self, var: Var, value: f64) -> Self {
        match var {
            Var::T => self.t = value,
            Var::X => self.x = value,
            Var::N => self.n = value,
        }
        self
    }

    /// The value of `var`.
    pub fn get(&self, var: Var) -> f64 {
        match var {
            Var::T => self.t,
            Var::X => self.x,
            Var::N => self.n,
        }
    }
}

/// Why an expression could not be evaluated.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum EvalError {
    #[error(
        "unknown parameter `{0}`: declare it in the `params` block or give it on the command line"
    )]
    UnknownParam(String),
    #[error("function `{name}` takes {expected} argument(s) but was given {found}")]
    Arity {
        name: &'static str,
        expected: usize,
        found: usize,
    },
}

impl Expr {
    /// A constant.
    pub fn c(v: f64) -> Expr {
        Expr::Const(v)
    }
    /// The time variable `t`.
    pub fn t() -> Expr {
        Expr::Var(Var::T)
    }
    /// The state variable `x`.
    pub fn x() -> Expr {
        Expr::Var(Var::X)
    }
    /// The dimension variable `n`.
    pub fn n() -> Expr {
        Expr::Var(Var::N)
    }
    /// A named parameter.
    pub fn param(name: &str) -> Expr {
        Expr::Param(name.to_string())
    }
    /// `f(arg)` for a one-argument function.
    pub fn call1(f: Func, arg: Expr) -> Expr {
        Expr::Call(f, vec![arg])
    }
    /// `self ^ exponent`.
    pub fn pow(self, exponent: Expr) -> Expr {
        Expr::Pow(Box::new(self), Box::new(exponent))
    }
    /// `exp(self)`.
    pub fn exp(self) -> Expr {
        Expr::call1(Func::Exp, self)
    }
    /// `log(self)`.
    pub fn ln(self) -> Expr {
        Expr::call1(Func::Log, self)
    }
    /// `sqrt(self)`.
    pub fn sqrt(self) -> Expr {
        Expr::call1(Func::Sqrt, self)
    }

    /// The constant value, if this node is a constant.
    pub fn as_const(&self) -> Option<f64> {
        match self {
            Expr::Const(v) => Some(*v),
            _ => None,
        }
    }

    /// The direct children of this node.
    pub fn children(&self) -> Vec<&Expr> {
        match self {
            Expr::Const(_) | Expr::Var(_) | Expr::Param(_) => Vec::new(),
            Expr::Neg(a) => vec![a],
            Expr::Add(a, b)
            | Expr::Sub(a, b)
            | Expr::Mul(a, b)
            | Expr::Div(a, b)
            | Expr::Pow(a, b) => vec![a, b],
            Expr::Call(_, args) => args.iter().collect(),
        }
    }

    /// Rebuilds this node with every child replaced by `f(child)`.
    pub fn map_children(&self, f: &mut impl FnMut(&Expr) -> Expr) -> Expr {
        let mut g = |e: &Expr| Box::new(f(e));
        match self {
            Expr::Const(_) | Expr::Var(_) | Expr::Param(_) => self.clone(),
            Expr::Neg(a) => Expr::Neg(g(a)),
            Expr::Add(a, b) => Expr::Add(g(a), g(b)),
            Expr::Sub(a, b) => Expr::Sub(g(a), g(b)),
            Expr::Mul(a, b) => Expr::Mul(g(a), g(b)),
            Expr::Div(a, b) => Expr::Div(g(a), g(b)),
            Expr::Pow(a, b) => Expr::Pow(g(a), g(b)),
            Expr::Call(func, args) => Expr::Call(*func, args.iter().map(|a| *g(a)).collect()),
        }
    }

    /// Evaluates the expression. NaN and infinite results are returned as
    /// values: the caller decides whether they are errors.
    pub fn eval(&self, env: &Env) -> Result<f64, EvalError> {
        Ok(match self {
            Expr::Const(v) => *v,
            Expr::Var(v) => env.get(*v),
            Expr::Param(name) => *env
                .params
                .get(name)
                .ok_or_else(|| EvalError::UnknownParam(name.clone()))?,
            Expr::Neg(a) => -a.eval(env)?,
            Expr::Add(a, b) => a.eval(env)? + b.eval(env)?,
            Expr::Sub(a, b) => a.eval(env)? - b.eval(env)?,
            Expr::Mul(a, b) => a.eval(env)? * b.eval(env)?,
            Expr::Div(a, b) => a.eval(env)? / b.eval(env)?,
            Expr::Pow(a, b) => a.eval(env)?.powf(b.eval(env)?),
            Expr::Call(f, args) => {
                if args.len() != f.arity() {
                    return Err(EvalError::Arity {
                        name: f.name(),
                        expected: f.arity(),
                        found: args.len(),
                    });
                }
                let mut vals = [0.0; 2];
                for (slot, a) in vals.iter_mut().zip(args) {
                    *slot = a.eval(env)?;
                }
                f.apply(&vals[..args.len()])
            }
        })
    }

    /// Evaluates an expression that mentions only `t` (and no parameters);
    /// anything else reads as NaN. Used for coefficient functions after
    /// parameter substitution.
    pub fn eval_t(&self, t: f64) -> f64 {
        let params = HashMap::new();
        self.eval(&Env::new(&params).with(Var::T, t))
            .unwrap_or(f64::NAN)
    }

    /// Whether the expression mentions `var`.
    pub fn depends_on(&self, var: Var) -> bool {
        match self {
            Expr::Var(v) => *v == var,
            _ => self.children().iter().any(|c| c.depends_on(var)),
        }
    }

    /// Names of the parameters the expression mentions.
    pub fn params(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        self.collect_params(&mut out);
        out
    }

    fn collect_params(&self, out: &mut BTreeSet<String>) {
        if let Expr::Param(name) = self {
            out.insert(name.clone());
        }
        for c in self.children() {
            c.collect_params(out);
        }
    }

    /// Replaces every occurrence of parameter `name` by `value`.
    pub fn substitute_param(&self, name: &str, value: &Expr) -> Expr {
        match self {
            Expr::Param(p) if p == name => value.clone(),
            _ => self.map_children(&mut |c| c.substitute_param(name, value)),
        }
    }

    /// Replaces every occurrence of variable `var` by `value`.
    pub fn substitute_var(&self, var: Var, value: &Expr) -> Expr {
        match self {
            Expr::Var(v) if *v == var => value.clone(),
            _ => self.map_children(&mut |c| c.substitute_var(var, value)),
        }
    }

    /// Height of the tree (a leaf has depth 1).
    pub fn depth(&self) -> usize {
        1 + self.children().iter().map(|c| c.depth()).max().unwrap_or(0)
    }

    /// Number of nodes in the tree.
    pub fn size(&self) -> usize {
        1 + self.children().iter().map(|c| c.size()).sum::<usize>()
    }
}

impl From<f64> for Expr {
    fn from(v: f64) -> Expr {
        Expr::Const(v)
    }
}

macro_rules! binary_op {
    ($trait:ident, $method:ident, $variant:ident) => {
        impl ops::$trait for Expr {
            type Output = Expr;
            fn $method(self, rhs: Expr) -> Expr {
                Expr::$variant(Box::new(self), Box::new(rhs))
            }
        }
        impl ops::$trait<f64> for Expr {
            type Output = Expr;
            fn $method(self, rhs: f64) -> Expr {
                Expr::$variant(Box::new(self), Box::new(Expr::Const(rhs)))
            }
        }
        impl ops::$trait<Expr> for f64 {
            type Output = Expr;
            fn $method(self, rhs: Expr) -> Expr {
                Expr::$variant(Box::new(Expr::Const(self)), Box::new(rhs))
            }
        }
    };
}

binary_op!(Add, add, Add);
binary_op!(Sub, sub, Sub);
binary_op!(Mul, mul, Mul);
binary_op!(Div, div, Div);

impl ops::Neg for Expr {
    type Output = Expr;
    fn neg(self) -> Expr {
        Expr::Neg(Box::new(self))
    }
}

// ---------------------------------------------------------------------------
// Printing

/// Binding strength used to decide where parentheses are needed.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Prec {
    Sum = 1,
    Product = 2,
    Unary = 3,
    Power = 4,
    Atom = 5,
}

fn prec(e: &Expr) -> Prec {
    let (negated, e) = strip_unit(e);
    if negated {
        return Prec::Unary;
    }
    match e {
        Expr::Const(v) if v.is_sign_negative() && *v != 0.0 => Prec::Unary,
        Expr::Const(_) | Expr::Var(_) | Expr::Param(_) | Expr::Call(..) => Prec::Atom,
        Expr::Neg(_) => Prec::Unary,
        Expr::Add(..) | Expr::Sub(..) => Prec::Sum,
        Expr::Mul(..) | Expr::Div(..) => Prec::Product,
        Expr::Pow(..) => Prec::Power,
    }
}

/// Formats a constant with the shortest text that reads back to the same
/// value, switching to exponent notation for very large or small magnitudes.
/// Rounding noise of derived constants is dropped first (see [`denoise`]):
/// `0.1 * 5` prints as `0.5`, not `0.5000000000000001`.
pub fn format_const(v: f64) -> String {
    let v = denoise(v);
    let a = v.abs();
    if v.is_nan() {
        "nan".to_string()
    } else if v.is_infinite() {
        if v > 0.0 { "inf" } else { "-inf" }.to_string()
    } else if a == 0.0 {
        // `-0` (from folding `-(0)`) reads as a sign error in `explain`.
        "0".to_string()
    } else if (1e-4..1e15).contains(&a) {
        format!("{v}")
    } else {
        format!("{v:e}")
    }
}

/// Significant digits a printed constant keeps when its tail is rounding noise.
const PRINT_DIGITS: usize = 12;

/// `v` rounded to [`PRINT_DIGITS`] significant digits when that drops a tail of
/// rounding noise, i.e. when the rounded value needs at most `PRINT_DIGITS - 2`
/// digits (`0.05000000000000001`, `9.999999999999999e-5`, `1.0000000000000002`);
/// otherwise `v` itself, so that a constant with genuinely many digits
/// (`1.5583296892806513`) is printed in full.
fn denoise(v: f64) -> f64 {
    if !v.is_finite() || v == 0.0 {
        return v;
    }
    let rounded: f64 = format!("{v:.*e}", PRINT_DIGITS - 1).parse().unwrap_or(v);
    let text = format!("{rounded:e}");
    let mantissa = text.split('e').next().unwrap_or("");
    let digits = mantissa.chars().filter(char::is_ascii_digit).count();
    if digits <= PRINT_DIGITS - 2 {
        rounded
    } else {
        v
    }
}

/// Whether `c` prints as 1 (after dropping rounding noise): `1 * a` prints as `a`.
fn is_unit(c: f64) -> bool {
    denoise(c) == 1.0
}

/// `e` without leading factors that print as ±1 (`1 * a`, `-1 * a`), and whether an odd
/// number of them were `-1`: `-1.0000000000000002 * expm1(u)` prints as `-expm1(u)`.
fn strip_unit(e: &Expr) -> (bool, &Expr) {
    let (mut negated, mut e) = (false, e);
    while let Expr::Mul(a, b) = e {
        match **a {
            Expr::Const(c) if is_unit(c) => e = b,
            Expr::Const(c) if is_unit(-c) => {
                negated = !negated;
                e = b;
            }
            _ => break,
        }
    }
    (negated, e)
}

/// Whether `e` prints with a leading sign: a negative constant, a negation, or a product or
/// quotient whose first factor has one. Such a right operand of `+` or `-` is folded into the
/// operator (`a + (-b)` prints as `a - b`, `a - (-0.5 * t)` as `a + 0.5 * t`).
fn has_sign(e: &Expr) -> bool {
    let (negated, e) = strip_unit(e);
    negated
        || match e {
            Expr::Const(c) => c.is_sign_negative() && *c != 0.0,
            Expr::Neg(_) => true,
            Expr::Mul(a, _) | Expr::Div(a, _) => has_sign(a),
            Expr::Var(_)
            | Expr::Param(_)
            | Expr::Add(..)
            | Expr::Sub(..)
            | Expr::Pow(..)
            | Expr::Call(..) => false,
        }
}

/// Writes `e`, for which [`has_sign`] holds, without its leading sign, as the right operand
/// of an operator of strength `min`.
fn write_unsigned(f: &mut fmt::Formatter<'_>, e: &Expr, min: Prec) -> fmt::Result {
    let (negated, e) = strip_unit(e);
    if negated {
        return write_right(f, e, min);
    }
    match e {
        Expr::Const(c) => f.write_str(&format_const(-c)),
        Expr::Neg(a) => write_right(f, a, min),
        Expr::Mul(a, b) | Expr::Div(a, b) => {
            write_unsigned(f, a, Prec::Product)?;
            f.write_str(if matches!(e, Expr::Mul(..)) {
                " * "
            } else {
                " / "
            })?;
            write_right(f, b, Prec::Power)
        }
        Expr::Var(_)
        | Expr::Param(_)
        | Expr::Add(..)
        | Expr::Sub(..)
        | Expr::Pow(..)
        | Expr::Call(..) => write_right(f, e, min),
    }
}

/// Writes `a OP b` for `OP` = `+` (`minus` false) or `-`, folding a sign of `b` into the
/// operator.
fn write_sum(f: &mut fmt::Formatter<'_>, a: &Expr, b: &Expr, minus: bool) -> fmt::Result {
    write_operand(f, a, Prec::Sum)?;
    if has_sign(b) {
        f.write_str(if minus { " + " } else { " - " })?;
        write_unsigned(f, b, Prec::Product)
    } else {
        f.write_str(if minus { " - " } else { " + " })?;
        write_right(f, b, Prec::Product)
    }
}

/// Writes `e`, in parentheses if it binds less tightly than `min`.
fn write_operand(f: &mut fmt::Formatter<'_>, e: &Expr, min: Prec) -> fmt::Result {
    if prec(e) < min {
        write!(f, "({e})")
    } else {
        write!(f, "{e}")
    }
}

/// Writes the right operand of a binary operator: like [`write_operand`], but
/// a leading sign is always parenthesised (`a + (-b)`, `a * (-b)`).
fn write_right(f: &mut fmt::Formatter<'_>, e: &Expr, min: Prec) -> fmt::Result {
    if prec(e) < min || prec(e) == Prec::Unary {
        write!(f, "({e})")
    } else {
        write!(f, "{e}")
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (negated, e) = strip_unit(self);
        if negated {
            f.write_str("-")?;
            let min = if prec(e) == Prec::Unary {
                Prec::Power
            } else {
                Prec::Product
            };
            return write_operand(f, e, min);
        }
        match e {
            Expr::Const(v) => f.write_str(&format_const(*v)),
            Expr::Var(v) => f.write_str(v.name()),
            Expr::Param(p) => f.write_str(p),
            Expr::Neg(a) => {
                f.write_str("-")?;
                // A sign in front of a sign or a sum needs parentheses: `-(-x)`, `-(a + b)`.
                let min = if prec(a) == Prec::Unary {
                    Prec::Power
                } else {
                    Prec::Product
                };
                write_operand(f, a, min)
            }
            Expr::Add(a, b) => write_sum(f, a, b, false),
            Expr::Sub(a, b) => write_sum(f, a, b, true),
            Expr::Mul(a, b) | Expr::Div(a, b) => {
                write_operand(f, a, Prec::Product)?;
                f.write_str(if matches!(e, Expr::Mul(..)) {
                    " * "
                } else {
                    " / "
                })?;
                // Right operands bind tighter than the operator: `a / (b * c)`, `a * (-b)`.
                write_right(f, b, Prec::Power)
            }
            Expr::Pow(a, b) => {
                write_operand(f, a, Prec::Atom)?;
                f.write_str("^")?;
                // Parenthesise compound exponents so that no reader has to know
                // the associativity of `^`: `x^(-1)`, `r^(2 * t)`.
                write_right(f, b, Prec::Atom)
            }
            Expr::Call(func, args) => {
                write!(f, "{}(", func.name())?;
                for (i, a) in args.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{a}")?;
                }
                f.write_str(")")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beta() -> Expr {
        0.1 + 19.9 * Expr::t()
    }

    #[test]
    fn display_is_readable_with_minimal_parentheses() {
        assert_eq!(beta().to_string(), "0.1 + 19.9 * t");
        assert_eq!(
            (-0.5 * beta() * Expr::x()).to_string(),
            "-0.5 * (0.1 + 19.9 * t) * x"
        );
        assert_eq!((-0.5 * Expr::t()).exp().to_string(), "exp(-0.5 * t)");
        assert_eq!(Expr::x().pow(Expr::c(2.0)).to_string(), "x^2");
        assert_eq!((Expr::t() - (Expr::x() - 1.0)).to_string(), "t - (x - 1)");
        assert_eq!((Expr::t() / (Expr::x() * 2.0)).to_string(), "t / (x * 2)");
        assert_eq!((Expr::x() * -Expr::t()).to_string(), "x * (-t)");
        assert_eq!((-(-Expr::t())).to_string(), "-(-t)");
        assert_eq!(Expr::c(-2.0).pow(Expr::t()).to_string(), "(-2)^t");
        assert_eq!(Expr::t().pow(Expr::c(-1.0)).to_string(), "t^(-1)");
        assert_eq!(
            Expr::Call(Func::Min, vec![Expr::t(), Expr::c(1e-20)]).to_string(),
            "min(t, 1e-20)"
        );
    }

    #[test]
    fn display_folds_signs_and_drops_rounding_noise() {
        let t = Expr::t;
        assert_eq!((t() + Expr::c(-0.5)).to_string(), "t - 0.5");
        assert_eq!((t() - Expr::c(-0.5) * t()).to_string(), "t + 0.5 * t");
        assert_eq!((t() + -Expr::x()).to_string(), "t - x");
        assert_eq!((t() - -(Expr::x() + 1.0)).to_string(), "t + (x + 1)");
        assert_eq!((t() + Expr::c(-2.0) / t()).to_string(), "t - 2 / t");
        let expm1 = Expr::call1(Func::Expm1, -20.0 * t());
        assert_eq!(
            (Expr::c(-1.0000000000000002) * expm1.clone()).to_string(),
            "-expm1(-20 * t)"
        );
        assert_eq!(
            (1.0 - Expr::c(-1.0000000000000002) * expm1).to_string(),
            "1 + expm1(-20 * t)"
        );
        assert_eq!(
            (Expr::c(1.0000000000000002) * (t() + 1.0) * Expr::x()).to_string(),
            "(t + 1) * x"
        );
        assert_eq!(Expr::c(0.1 * 5.0 + 1e-16).to_string(), "0.5");
        assert_eq!(Expr::c(0.05000000000000001).to_string(), "0.05");
        assert_eq!(Expr::c(9.999999999999999e-5).to_string(), "0.0001");
        assert_eq!(Expr::c(-0.30000000000000004).to_string(), "-0.3");
        assert_eq!(Expr::c(1e20 + 1e5).to_string(), "1e20");
        // Constants with many genuine digits are printed in full.
        assert_eq!(
            Expr::c(1.5583296892806513).to_string(),
            "1.5583296892806513"
        );
        assert_eq!(
            Expr::c(0.0412727348049926).to_string(),
            "0.0412727348049926"
        );
        assert_eq!(
            Expr::c(17.034386382832476).to_string(),
            "17.034386382832476"
        );
    }

    #[test]
    fn eval_matches_hand_computation() {
        let mut params = HashMap::new();
        params.insert("k".to_string(), 3.0);
        let env = Env::new(&params).with(Var::T, 0.5).with(Var::X, 2.0);
        let e = Expr::param("k") * Expr::x().pow(Expr::c(2.0)) - Expr::t().exp();
        assert!((e.eval(&env).unwrap() - (12.0 - 0.5f64.exp())).abs() < 1e-15);
        let unknown = Expr::param("q").eval(&env);
        assert_eq!(unknown, Err(EvalError::UnknownParam("q".into())));
        let bad = Expr::Call(Func::Min, vec![Expr::t()]).eval(&env);
        assert!(matches!(bad, Err(EvalError::Arity { .. })));
        assert!((Expr::c(1.0) / 0.0).eval(&env).unwrap().is_infinite());
    }

    #[test]
    fn functions_are_numerically_safe() {
        assert_eq!(Func::Step.apply(&[0.0]), 0.0);
        assert_eq!(Func::Step.apply(&[1e-300]), 1.0);
        assert!((softplus(1000.0) - 1000.0).abs() < 1e-12);
        assert!(softplus(-1000.0) >= 0.0);
        assert_eq!(sigmoid(-1000.0), 0.0);
        assert!(Func::Max.apply(&[f64::NAN, 1.0]).is_nan());
        for name in Func::ALL {
            let f = Func::from_name(name).unwrap();
            assert_eq!(f.name(), name);
        }
        assert_eq!(Func::from_name("exq"), None);
    }

    #[test]
    fn structural_queries() {
        let e = Expr::param("a") * Expr::t() + Expr::param("b");
        assert!(e.depends_on(Var::T) && !e.depends_on(Var::X));
        assert_eq!(e.params().into_iter().collect::<Vec<_>>(), vec!["a", "b"]);
        let s = e
            .substitute_param("a", &Expr::c(2.0))
            .substitute_var(Var::T, &Expr::c(3.0));
        let params = HashMap::from([("b".to_string(), 1.0)]);
        assert_eq!(s.eval(&Env::new(&params)).unwrap(), 7.0);
        assert_eq!(e.depth(), 3);
    }

    #[test]
    fn deep_trees_do_not_overflow_the_stack() {
        let mut e = Expr::t();
        for i in 0..2000 {
            e = if i % 2 == 0 { e + 1.0 } else { (-e).exp() };
        }
        assert_eq!(e.depth(), 3001);
        assert!(e.to_string().len() > 2000);
        assert!(e.eval_t(0.1).is_finite());
        drop(e);
    }
}

//! Symbolic algebra on [`Expr`]: simplification, differentiation, closed-form
//! antiderivatives in `t`, polynomial normal forms and affine decomposition in `x`.
//!
//! Everything here must keep the value of an expression wherever the input is
//! defined (finite); rewrites such as `x / x -> 1` that only change values at
//! points where the input is undefined are allowed.

use super::expr::{Expr, Func, Var};

/// Largest polynomial degree we expand to; beyond that, callers tabulate.
const MAX_DEGREE: usize = 64;
/// Largest integer power of a sum that [`expand`] multiplies out.
const MAX_EXPAND_POWER: f64 = 8.0;
/// Largest number of terms [`expand`] creates before giving up on a product.
const MAX_TERMS: usize = 256;

// ---------------------------------------------------------------------------
// Normal forms used by `simplify`: a sum is a constant plus coefficients times
// products of powers; exponentials inside a product are merged.

/// A product `coeff * Π base^exponent * exp(Σ exp_args)`.
#[derive(Clone, Debug, Default)]
struct Product {
    coeff: f64,
    factors: Vec<(Expr, f64)>,
    exp_args: Vec<Expr>,
}

/// A sum `constant + Σ coeff * monomial`, monomials given by their factors.
#[derive(Clone, Debug, Default)]
struct Sum {
    constant: f64,
    terms: Vec<(f64, Vec<(Expr, f64)>)>,
}

impl Product {
    fn one() -> Product {
        Product {
            coeff: 1.0,
            ..Product::default()
        }
    }

    /// Adds the factor `base^k`, merging it with an equal base.
    fn push(&mut self, base: Expr, k: f64) {
        match self.factors.iter_mut().find(|(b, _)| *b == base) {
            Some((_, e)) => *e += k,
            None => self.factors.push((base, k)),
        }
    }

    /// Multiplies in an already simplified expression raised to `k`.
    fn add_simplified(&mut self, s: Expr, k: f64) {
        match s {
            Expr::Const(c) if c != 0.0 || k > 0.0 => {
                let v = c.powf(k);
                if v.is_finite() {
                    self.coeff *= v;
                } else {
                    self.push(Expr::Const(c), k);
                }
            }
            Expr::Mul(a, b) => {
                self.add_simplified(*a, k);
                self.add_simplified(*b, k);
            }
            Expr::Div(a, b) => {
                self.add_simplified(*a, k);
                self.add_simplified(*b, -k);
            }
            Expr::Neg(a) => {
                // (-a)^k: the sign survives odd integer powers only.
                if k.rem_euclid(2.0) == 1.0 {
                    self.coeff = -self.coeff;
                }
                self.add_simplified(*a, k);
            }
            Expr::Pow(base, e) if e.as_const().is_some() => {
                let j = e.as_const().unwrap_or(1.0);
                self.push(*base, j * k);
            }
            Expr::Call(Func::Exp, mut args) if args.len() == 1 => {
                let u = args.pop().unwrap_or(Expr::Const(0.0));
                self.exp_args
                    .push(if k == 1.0 { u } else { Expr::Const(k) * u });
            }
            other => self.push(other, k),
        }
    }

    /// Collects an unsimplified product tree.
    fn collect(&mut self, e: &Expr, k: f64) {
        match e {
            Expr::Mul(a, b) => {
                self.collect(a, k);
                self.collect(b, k);
            }
            Expr::Div(a, b) => {
                self.collect(a, k);
                self.collect(b, -k);
            }
            Expr::Neg(a) => {
                self.coeff = -self.coeff;
                self.collect(a, k);
            }
            other => self.add_simplified(simplify_once(other), k),
        }
    }

    /// Merges the exponentials, drops trivial factors and sorts the rest into
    /// a canonical order (t-only factors first, `x` last, then by text).
    fn finish(mut self) -> Product {
        if !self.exp_args.is_empty() {
            let arg = self
                .exp_args
                .drain(..)
                .reduce(|a, b| a + b)
                .unwrap_or(Expr::Const(0.0));
            match simplify_once(&arg) {
                Expr::Const(c) if c.exp().is_finite() => self.coeff *= c.exp(),
                u => self.factors.push((u.exp(), 1.0)),
            }
        }
        self.factors.retain(|(_, k)| *k != 0.0);
        let mut keyed: Vec<_> = self
            .factors
            .drain(..)
            .map(|(b, k)| ((b.depends_on(Var::X), b.to_string()), (b, k)))
            .collect();
        keyed.sort_by(|a, b| a.0.cmp(&b.0));
        self.factors = keyed.into_iter().map(|(_, f)| f).collect();
        self
    }
}

/// The sum `f` of a product `c * f`: numeric coefficients are distributed
/// over a lone sum (`2 * (t + 1)` becomes `2 + 2 * t`) so like terms meet.
fn single_sum_factor(p: &Product) -> Option<Expr> {
    match p.factors.as_slice() {
        [(f @ (Expr::Add(..) | Expr::Sub(..)), k)] if *k == 1.0 => Some(f.clone()),
        _ => None,
    }
}

/// Builds a finished product, distributing its coefficient over a lone sum.
fn build_distributed(p: Product) -> Expr {
    match single_sum_factor(&p) {
        Some(sum) => {
            let mut s = Sum::default();
            s.add_simplified(sum, p.coeff);
            s.build()
        }
        None => build_product(p.coeff, &p.factors),
    }
}

/// The factor `base^k` as an expression.
fn power_expr(base: &Expr, k: f64) -> Expr {
    if k == 1.0 {
        base.clone()
    } else {
        base.clone().pow(Expr::Const(k))
    }
}

/// Builds `coeff * Π base^k` as `c * f1 * f2 / (g1 * g2)`.
fn build_product(coeff: f64, factors: &[(Expr, f64)]) -> Expr {
    if coeff == 0.0 || factors.is_empty() {
        return Expr::Const(coeff);
    }
    let product = |fs: Vec<Expr>| fs.into_iter().reduce(|a, b| a * b);
    let sign_only = coeff == 1.0 || coeff == -1.0;
    // The coefficient leads the numerator so it prints as `c * f1 * f2`.
    let lead = (!sign_only).then_some(Expr::Const(coeff));
    let num: Vec<Expr> = lead
        .into_iter()
        .chain(
            factors
                .iter()
                .filter(|(_, k)| *k > 0.0)
                .map(|(b, k)| power_expr(b, *k)),
        )
        .collect();
    let den = product(
        factors
            .iter()
            .filter(|(_, k)| *k < 0.0)
            .map(|(b, k)| power_expr(b, -k))
            .collect(),
    );
    let Some(num) = product(num) else {
        return Expr::Const(coeff) / den.unwrap_or(Expr::Const(1.0));
    };
    let top = match den {
        Some(d) => num / d,
        None => num,
    };
    if coeff == -1.0 {
        -top
    } else {
        top
    }
}

impl Sum {
    /// Adds `sign * s` for an already simplified `s`.
    fn add_simplified(&mut self, s: Expr, sign: f64) {
        match s {
            Expr::Add(a, b) => {
                self.add_simplified(*a, sign);
                self.add_simplified(*b, sign);
            }
            Expr::Sub(a, b) => {
                self.add_simplified(*a, sign);
                self.add_simplified(*b, -sign);
            }
            Expr::Neg(a) => self.add_simplified(*a, -sign),
            Expr::Const(c) => self.constant += sign * c,
            other => {
                let mut p = Product::one();
                p.add_simplified(other, 1.0);
                let p = p.finish();
                match single_sum_factor(&p) {
                    Some(sum) => self.add_simplified(sum, sign * p.coeff),
                    None => self.push(sign * p.coeff, p.factors),
                }
            }
        }
    }

    fn push(&mut self, coeff: f64, factors: Vec<(Expr, f64)>) {
        if factors.is_empty() {
            self.constant += coeff;
            return;
        }
        match self.terms.iter_mut().find(|(_, f)| *f == factors) {
            Some((c, _)) => *c += coeff,
            None => self.terms.push((coeff, factors)),
        }
    }

    /// Collects an unsimplified sum tree.
    fn collect(&mut self, e: &Expr, sign: f64) {
        match e {
            Expr::Add(a, b) => {
                self.collect(a, sign);
                self.collect(b, sign);
            }
            Expr::Sub(a, b) => {
                self.collect(a, sign);
                self.collect(b, -sign);
            }
            Expr::Neg(a) => self.collect(a, -sign),
            other => self.add_simplified(simplify_once(other), sign),
        }
    }

    /// Rewrites `c - c * exp(u)` as `-c * expm1(u)`, which is both shorter and
    /// accurate for small `u` (e.g. the VP variance `1 - exp(-B(t))`).
    fn use_expm1(&mut self) {
        if self.constant == 0.0 {
            return;
        }
        let c = self.constant;
        let hit = self.terms.iter_mut().find(|(k, f)| {
            *k == -c && f.len() == 1 && f[0].1 == 1.0 && matches!(f[0].0, Expr::Call(Func::Exp, _))
        });
        if let Some((_, f)) = hit {
            if let Expr::Call(_, args) = &f[0].0 {
                f[0].0 = Expr::Call(Func::Expm1, args.clone());
                self.constant = 0.0;
            }
        }
    }

    fn build(mut self) -> Expr {
        self.terms.retain(|(k, _)| *k != 0.0);
        self.use_expm1();
        let mut acc = (self.constant != 0.0).then_some(Expr::Const(self.constant));
        for (k, f) in &self.terms {
            acc = Some(match acc {
                None => build_product(*k, f),
                Some(a) if *k < 0.0 => a - build_product(-k, f),
                Some(a) => a + build_product(*k, f),
            });
        }
        acc.unwrap_or(Expr::Const(0.0))
    }
}

/// Folds a constant result, unless it is not finite (a NaN or infinity is left
/// symbolic so that the checker reports the expression that produced it).
fn fold(e: &Expr) -> Option<f64> {
    let v = e.eval_t(0.0);
    v.is_finite().then_some(v)
}

fn simplify_pow(a: Expr, b: Expr) -> Expr {
    if let (Expr::Const(_), Expr::Const(_)) = (&a, &b) {
        if let Some(v) = fold(&a.clone().pow(b.clone())) {
            return Expr::Const(v);
        }
    }
    match (&a, b.as_const()) {
        (_, Some(1.0)) => return a,
        // powf(x, 0) and powf(1, y) are 1 for every x, y (NaN included).
        (_, Some(0.0)) => return Expr::Const(1.0),
        (Expr::Const(c), _) if *c == 1.0 => return Expr::Const(1.0),
        (Expr::Call(Func::Exp, args), _) if args.len() == 1 => {
            return simplify_once(&(b * args[0].clone()).exp());
        }
        _ => {}
    }
    let Some(k) = b.as_const() else {
        return a.pow(b);
    };
    if k.fract() != 0.0 || k.abs() > MAX_DEGREE as f64 {
        return a.pow(b);
    }
    // Integer powers distribute over products and compose with inner powers.
    match a {
        Expr::Mul(..) | Expr::Div(..) | Expr::Neg(..) => {
            let mut p = Product::one();
            p.add_simplified(a, k);
            build_distributed(p.finish())
        }
        Expr::Pow(base, e) => simplify_pow(*base, simplify_once(&(*e * k))),
        Expr::Call(Func::Sqrt, args) if k % 2.0 == 0.0 && args.len() == 1 => {
            simplify_pow(args[0].clone(), Expr::Const(k / 2.0))
        }
        other => other.pow(b),
    }
}

fn simplify_call(f: Func, args: Vec<Expr>) -> Expr {
    let call = Expr::Call(f, args);
    if let Expr::Call(_, args) = &call {
        if args.iter().all(|a| a.as_const().is_some()) {
            if let Some(v) = fold(&call) {
                return Expr::Const(v);
            }
        }
    }
    call
}

/// One bottom-up pass; a single pass already reaches the normal form in
/// practice, [`simplify`] iterates to be sure.
fn simplify_once(e: &Expr) -> Expr {
    match e {
        Expr::Const(_) | Expr::Var(_) | Expr::Param(_) => e.clone(),
        Expr::Add(..) | Expr::Sub(..) | Expr::Neg(..) => {
            let mut s = Sum::default();
            s.collect(e, 1.0);
            s.build()
        }
        Expr::Mul(..) | Expr::Div(..) => {
            let mut p = Product::one();
            p.collect(e, 1.0);
            build_distributed(p.finish())
        }
        Expr::Pow(a, b) => simplify_pow(simplify_once(a), simplify_once(b)),
        Expr::Call(f, args) => simplify_call(*f, args.iter().map(simplify_once).collect()),
    }
}

/// Simplifies an expression: folds constants (also through functions), applies
/// the 0/1 identities, combines like terms and numeric coefficients (so
/// `x - x` is `0`), merges powers and exponentials of a product and flattens
/// sums and products. Idempotent; keeps the value wherever `e` is defined.
pub fn simplify(e: &Expr) -> Expr {
    let mut cur = simplify_once(e);
    for _ in 0..4 {
        let next = simplify_once(&cur);
        if next == cur {
            break;
        }
        cur = next;
    }
    cur
}

// ---------------------------------------------------------------------------
// Differentiation

/// The derivative of `e` with respect to `var`, simplified.
///
/// Conventions at kinks: `step' = 0`, `abs'(u) = u / abs(u)`, and `min`/`max`
/// select the derivative of the active argument through `step`.
pub fn diff(e: &Expr, var: Var) -> Expr {
    simplify(&raw_diff(e, var))
}

fn raw_diff(e: &Expr, var: Var) -> Expr {
    let d = |e: &Expr| raw_diff(e, var);
    match e {
        Expr::Const(_) | Expr::Param(_) => Expr::Const(0.0),
        Expr::Var(v) => Expr::Const(if *v == var { 1.0 } else { 0.0 }),
        Expr::Neg(a) => -d(a),
        Expr::Add(a, b) => d(a) + d(b),
        Expr::Sub(a, b) => d(a) - d(b),
        Expr::Mul(a, b) => d(a) * (**b).clone() + (**a).clone() * d(b),
        Expr::Div(a, b) => {
            (d(a) * (**b).clone() - (**a).clone() * d(b)) / (**b).clone().pow(Expr::Const(2.0))
        }
        Expr::Pow(a, b) => {
            let (a, b) = ((**a).clone(), (**b).clone());
            if !b.depends_on(var) {
                b.clone() * a.clone().pow(b - 1.0) * d(&a)
            } else {
                // d(a^b) = a^b (b' ln a + b a' / a)
                a.clone().pow(b.clone()) * (d(&b) * a.clone().ln() + b * d(&a) / a)
            }
        }
        Expr::Call(f, args) => diff_call(*f, args, var),
    }
}

fn diff_call(f: Func, args: &[Expr], var: Var) -> Expr {
    let u = args.first().cloned().unwrap_or(Expr::Const(f64::NAN));
    let du = raw_diff(&u, var);
    let call = |g: Func, a: Expr| Expr::call1(g, a);
    let outer = match f {
        Func::Exp | Func::Expm1 => u.exp(),
        Func::Log => 1.0 / u,
        Func::Sqrt => 0.5 / u.sqrt(),
        Func::Sin => call(Func::Cos, u),
        Func::Cos => -call(Func::Sin, u),
        Func::Tan => 1.0 / call(Func::Cos, u).pow(Expr::Const(2.0)),
        Func::Tanh => 1.0 - call(Func::Tanh, u).pow(Expr::Const(2.0)),
        Func::Sinh => call(Func::Cosh, u),
        Func::Cosh => call(Func::Sinh, u),
        Func::Abs => u.clone() / call(Func::Abs, u),
        Func::Sigmoid => call(Func::Sigmoid, u.clone()) * (1.0 - call(Func::Sigmoid, u)),
        Func::Softplus => call(Func::Sigmoid, u),
        Func::Log1p => 1.0 / (1.0 + u),
        Func::Step => Expr::Const(0.0),
        Func::Atan => 1.0 / (1.0 + u.pow(Expr::Const(2.0))),
        Func::Min | Func::Max => {
            let v = args.get(1).cloned().unwrap_or(Expr::Const(f64::NAN));
            let dv = raw_diff(&v, var);
            // min picks u where u < v; max picks u where u > v; ties take v.
            let pick_u = if f == Func::Min {
                call(Func::Step, v - u)
            } else {
                call(Func::Step, u - v)
            };
            return pick_u.clone() * du + (1.0 - pick_u) * dv;
        }
    };
    outer * du
}

// ---------------------------------------------------------------------------
// Polynomials

/// Coefficients `[c0, c1, ...]` of `e` as a polynomial in `var` (after
/// expansion), or `None` if it is not a polynomial with numeric coefficients.
pub fn as_polynomial(e: &Expr, var: Var) -> Option<Vec<f64>> {
    let p = match e {
        Expr::Const(c) => vec![*c],
        Expr::Var(v) if *v == var => vec![0.0, 1.0],
        Expr::Var(_) | Expr::Param(_) => return None,
        Expr::Neg(a) => poly_scale(&as_polynomial(a, var)?, -1.0),
        Expr::Add(a, b) => poly_add(&as_polynomial(a, var)?, &as_polynomial(b, var)?, 1.0),
        Expr::Sub(a, b) => poly_add(&as_polynomial(a, var)?, &as_polynomial(b, var)?, -1.0),
        Expr::Mul(a, b) => poly_mul(&as_polynomial(a, var)?, &as_polynomial(b, var)?)?,
        Expr::Div(a, b) => match as_polynomial(b, var)?.as_slice() {
            [c] if *c != 0.0 => poly_scale(&as_polynomial(a, var)?, 1.0 / c),
            _ => return None,
        },
        Expr::Pow(a, b) => {
            let k = as_polynomial(b, var)?;
            let base = as_polynomial(a, var)?;
            match (k.as_slice(), base.as_slice()) {
                ([c], [b0]) => vec![b0.powf(*c)],
                ([k], _) if k.fract() == 0.0 && *k >= 0.0 && *k <= MAX_DEGREE as f64 => {
                    let mut acc = vec![1.0];
                    for _ in 0..(*k as usize) {
                        acc = poly_mul(&acc, &base)?;
                    }
                    acc
                }
                _ => return None,
            }
        }
        Expr::Call(..) => {
            if e.depends_on(Var::T) || e.depends_on(Var::X) || e.depends_on(Var::N) {
                return None;
            }
            if !e.params().is_empty() {
                return None;
            }
            vec![e.eval_t(0.0)]
        }
    };
    Some(trim(p))
}

fn trim(mut p: Vec<f64>) -> Vec<f64> {
    while p.len() > 1 && p.last() == Some(&0.0) {
        p.pop();
    }
    p
}

fn poly_scale(p: &[f64], s: f64) -> Vec<f64> {
    p.iter().map(|c| c * s).collect()
}

fn poly_add(p: &[f64], q: &[f64], sign: f64) -> Vec<f64> {
    (0..p.len().max(q.len()))
        .map(|i| p.get(i).copied().unwrap_or(0.0) + sign * q.get(i).copied().unwrap_or(0.0))
        .collect()
}

fn poly_mul(p: &[f64], q: &[f64]) -> Option<Vec<f64>> {
    if p.len() + q.len() > MAX_DEGREE + 2 {
        return None;
    }
    let mut out = vec![0.0; p.len() + q.len() - 1];
    for (i, a) in p.iter().enumerate() {
        for (j, b) in q.iter().enumerate() {
            out[i + j] += a * b;
        }
    }
    Some(out)
}

/// The polynomial `Σ c_i var^i` as an expression (simplified).
pub fn poly_expr(p: &[f64], var: Var) -> Expr {
    let terms = p
        .iter()
        .enumerate()
        .filter(|(_, c)| **c != 0.0)
        .map(|(i, c)| {
            let v = Expr::Var(var);
            let power = if i == 1 {
                v
            } else {
                v.pow(Expr::Const(i as f64))
            };
            if i == 0 {
                Expr::Const(*c)
            } else {
                Expr::Const(*c) * power
            }
        });
    simplify(&terms.reduce(|a, b| a + b).unwrap_or(Expr::Const(0.0)))
}

// ---------------------------------------------------------------------------
// Expansion and integration

/// Multiplies out products of sums and small integer powers of sums (and reads
/// `expm1(u)` as `exp(u) - 1`), so that each term can be integrated alone.
pub fn expand(e: &Expr) -> Expr {
    let terms = expand_terms(&simplify(e));
    simplify(
        &terms
            .into_iter()
            .reduce(|a, b| a + b)
            .unwrap_or(Expr::Const(0.0)),
    )
}

fn expand_terms(e: &Expr) -> Vec<Expr> {
    let cross = |a: Vec<Expr>, b: Vec<Expr>| -> Option<Vec<Expr>> {
        if a.len() * b.len() > MAX_TERMS {
            return None;
        }
        Some(
            a.iter()
                .flat_map(|x| b.iter().map(move |y| x.clone() * y.clone()))
                .collect(),
        )
    };
    match e {
        Expr::Add(a, b) => [expand_terms(a), expand_terms(b)].concat(),
        Expr::Sub(a, b) => {
            let neg = expand_terms(b).into_iter().map(|t| -t);
            expand_terms(a).into_iter().chain(neg).collect()
        }
        Expr::Neg(a) => expand_terms(a).into_iter().map(|t| -t).collect(),
        Expr::Mul(a, b) => {
            cross(expand_terms(a), expand_terms(b)).unwrap_or_else(|| vec![e.clone()])
        }
        Expr::Div(a, b) => expand_terms(a)
            .into_iter()
            .map(|t| t / (**b).clone())
            .collect(),
        Expr::Pow(a, b) => match b.as_const() {
            Some(k) if k.fract() == 0.0 && (2.0..=MAX_EXPAND_POWER).contains(&k) => {
                let base = expand_terms(a);
                let mut acc = base.clone();
                for _ in 1..(k as usize) {
                    match cross(acc, base.clone()) {
                        Some(next) => acc = next,
                        None => return vec![e.clone()],
                    }
                }
                acc
            }
            _ => vec![e.clone()],
        },
        Expr::Call(Func::Expm1, args) if args.len() == 1 => {
            vec![args[0].clone().exp(), Expr::Const(-1.0)]
        }
        _ => vec![e.clone()],
    }
}

/// A closed-form antiderivative `F` of `e` in `t` with `F(0) = 0`, or `None`
/// when `e` is not of a supported shape (the caller then tabulates).
///
/// Supported (termwise after expansion): polynomials in `t`; polynomial times
/// `exp(a t + b)` or `r^(a t + b)`; `c * step(a t + b)`; and `P(t) exp(Q(t))`
/// where `P = k Q'` (e.g. `beta(t) exp(∫ beta)` of the VP schedule).
pub fn integrate_t(e: &Expr) -> Option<Expr> {
    if e.depends_on(Var::X) {
        return None;
    }
    // Collect the expanded terms directly: `Sum::build` would fold `c - c exp(u)`
    // back into `expm1`, which the termwise rules below do not read.
    let mut sum = Sum::default();
    for term in expand_terms(&simplify(e)) {
        sum.add_simplified(simplify(&term), 1.0);
    }
    let mut total = Expr::Const(sum.constant) * Expr::t();
    // Terms `c t^j exp(Q)` sharing one exponent Q are integrated together:
    // `beta(t) exp(B(t))` only has a closed form as a whole, not termwise.
    let mut groups: Vec<(Expr, Vec<f64>)> = Vec::new();
    for (k, factors) in &sum.terms {
        match poly_times_exp(factors) {
            Some((q, p)) => match groups.iter_mut().find(|(g, _)| *g == q) {
                Some((_, acc)) => *acc = poly_add(acc, &poly_scale(&p, *k), 1.0),
                None => groups.push((q, poly_scale(&p, *k))),
            },
            None => total = total + Expr::Const(*k) * integrate_monomial(factors)?,
        }
    }
    for (q, p) in groups {
        let p = trim(p);
        let part = match as_polynomial(&q, Var::T) {
            Some(lin) if lin.len() <= 2 => integrate_poly_exp(&p, &lin),
            _ => integrate_chain_rule(&poly_expr(&p, Var::T), &q)?,
        };
        total = total + part;
    }
    Some(simplify(&total))
}

/// `(Q, P)` when the monomial is `P(t) exp(Q(t))` with a numeric polynomial `P`.
fn poly_times_exp(factors: &[(Expr, f64)]) -> Option<(Expr, Vec<f64>)> {
    let s = split_monomial(factors);
    let scale = simplify(&s.scale).as_const()?;
    let p = as_polynomial(&simplify(&s.rest), Var::T)?;
    match (s.exponent, s.steps.is_empty()) {
        (Some(q), true) => Some((simplify(&q), poly_scale(&p, scale))),
        _ => None,
    }
}

/// `∫_0^t p` for a polynomial `p`.
fn poly_integral(p: &[f64]) -> Vec<f64> {
    std::iter::once(0.0)
        .chain(p.iter().enumerate().map(|(i, c)| c / (i as f64 + 1.0)))
        .collect()
}

/// A monomial split into its t-free multiplier, exponent, step and the rest.
struct Split {
    scale: Expr,
    exponent: Option<Expr>,
    steps: Vec<Expr>,
    rest: Expr,
}

fn split_monomial(factors: &[(Expr, f64)]) -> Split {
    let mut s = Split {
        scale: Expr::Const(1.0),
        exponent: None,
        steps: Vec::new(),
        rest: Expr::Const(1.0),
    };
    let add_exp = |s: &mut Split, u: Expr| {
        s.exponent = Some(match s.exponent.take() {
            Some(q) => q + u,
            None => u,
        });
    };
    for (base, k) in factors {
        match base {
            _ if !base.depends_on(Var::T) => s.scale = s.scale.clone() * power_expr(base, *k),
            Expr::Call(Func::Exp, args) if args.len() == 1 => {
                add_exp(&mut s, Expr::Const(*k) * args[0].clone())
            }
            Expr::Pow(r, u) if r.as_const().is_some_and(|r| r > 0.0) => {
                let ln_r = r.as_const().map_or(0.0, f64::ln);
                add_exp(&mut s, Expr::Const(*k * ln_r) * (**u).clone())
            }
            Expr::Call(Func::Step, args) if args.len() == 1 && *k == 1.0 => {
                s.steps.push(args[0].clone())
            }
            _ => s.rest = s.rest.clone() * power_expr(base, *k),
        }
    }
    s
}

fn integrate_monomial(factors: &[(Expr, f64)]) -> Option<Expr> {
    let s = split_monomial(factors);
    let p = as_polynomial(&simplify(&s.rest), Var::T);
    let body = match (&s.exponent, s.steps.as_slice(), p) {
        (None, [], Some(p)) => poly_expr(&poly_integral(&p), Var::T),
        (None, [arg], Some(p)) if p.len() == 1 => Expr::Const(p[0]) * integrate_step(arg)?,
        (Some(q), [], p) => {
            let q = simplify(q);
            match (as_polynomial(&q, Var::T), p) {
                (Some(lin), Some(p)) if lin.len() <= 2 => integrate_poly_exp(&p, &lin),
                _ => integrate_chain_rule(&s.rest, &q)?,
            }
        }
        _ => return None,
    };
    Some(s.scale * body)
}

/// `∫_0^t P(s) exp(a s + b) ds` for polynomial `P`: `R(t) e^{at+b} - R(0) e^b`
/// with `R' + a R = P`, solved from the top coefficient down.
fn integrate_poly_exp(p: &[f64], lin: &[f64]) -> Expr {
    let b = lin[0];
    let a = lin.get(1).copied().unwrap_or(0.0);
    if a == 0.0 {
        return Expr::Const(b.exp()) * poly_expr(&poly_integral(p), Var::T);
    }
    let mut r = vec![0.0; p.len()];
    for j in (0..p.len()).rev() {
        let next = if j + 1 < p.len() {
            (j + 1) as f64 * r[j + 1]
        } else {
            0.0
        };
        r[j] = (p[j] - next) / a;
    }
    if r.len() == 1 {
        // k e^b (e^{at} - 1), written with expm1 to stay accurate near t = 0.
        return Expr::Const(r[0] * b.exp()) * Expr::call1(Func::Expm1, a * Expr::t());
    }
    let q = poly_expr(lin, Var::T);
    poly_expr(&r, Var::T) * q.exp() - Expr::Const(r[0] * b.exp())
}

/// `∫_0^t P exp(Q)` by the chain rule: `k (exp(Q(t)) - exp(Q(0)))` when `P = k Q'`, or,
/// splitting `Q = L + N` into its polynomial terms `L` and the rest `N`, when
/// `P exp(L) = k N'`: the exponential schedules, where `β = b r^t` gives
/// `β exp(±∫β) = b e^{t ln r} exp(±b (r^t − 1)/ln r)`.
fn integrate_chain_rule(p: &Expr, q: &Expr) -> Option<Expr> {
    integrate_chain_rule_whole(p, q).or_else(|| integrate_chain_rule_split(p, q))
}

/// `∫_0^t P exp(Q)` when `P = k Q'`.
fn integrate_chain_rule_whole(p: &Expr, q: &Expr) -> Option<Expr> {
    let dq = diff(q, Var::T);
    let k = match (
        as_polynomial(&simplify(p), Var::T),
        as_polynomial(&dq, Var::T),
    ) {
        (Some(pp), Some(dp)) => proportional(&pp, &dp)?,
        _ => simplify(&(p.clone() / dq)).as_const()?,
    };
    let q0 = simplify(&q.substitute_var(Var::T, &Expr::Const(0.0))).as_const()?;
    // k e^{Q(0)} expm1(Q - Q(0)): accurate near t = 0, unlike a difference.
    let shifted = simplify(&(q.clone() - q0));
    Some(Expr::Const(k * q0.exp()) * Expr::call1(Func::Expm1, shifted))
}

/// `∫_0^t P exp(L + N)` when `P exp(L) = k N'`, with `L` the polynomial terms of `Q`.
fn integrate_chain_rule_split(p: &Expr, q: &Expr) -> Option<Expr> {
    let (mut lin, mut rest) = (Expr::Const(0.0), Expr::Const(0.0));
    for term in expand_terms(&simplify(q)) {
        let term = simplify(&term);
        if as_polynomial(&term, Var::T).is_some() {
            lin = lin + term;
        } else {
            rest = rest + term;
        }
    }
    let (lin, rest) = (simplify(&lin), simplify(&rest));
    if !rest.depends_on(Var::T) {
        return None;
    }
    let k = constant_ratio(&simplify(&(p.clone() * lin.exp())), &diff(&rest, Var::T))?;
    let n0 = simplify(&rest.substitute_var(Var::T, &Expr::Const(0.0))).as_const()?;
    if !n0.is_finite() {
        return None;
    }
    let shifted = simplify(&(rest - n0));
    Some(Expr::Const(k * n0.exp()) * Expr::call1(Func::Expm1, shifted))
}

/// `k` with `num = k den` as functions of `t`, when the two are proportional. Expressions
/// in exponentials of `t` have no polynomial normal form to compare, so the ratio is
/// compared at [`RATIO_PROBES`] times (those where both sides are finite and `den ≠ 0`, at
/// least four of them); a closed form built on it is cross-checked against the numerical
/// table by the marginal, like every other closed form.
fn constant_ratio(num: &Expr, den: &Expr) -> Option<f64> {
    let ratios: Vec<f64> = RATIO_PROBES
        .iter()
        .filter_map(|&t| {
            let (n, d) = (num.eval_t(t), den.eval_t(t));
            let r = n / d;
            (n.is_finite() && d.is_finite() && d != 0.0 && r.is_finite()).then_some(r)
        })
        .collect();
    let k = *ratios.first()?;
    let agree = ratios.iter().all(|r| (r - k).abs() <= 1e-10 * k.abs());
    (ratios.len() >= 4 && agree && k != 0.0).then_some(k)
}

/// The times at which [`constant_ratio`] compares two expressions: spread over `[0, 3]`
/// and irregular, so that no periodic or polynomial coincidence passes.
const RATIO_PROBES: [f64; 10] = [
    0.0, 0.0913, 0.2371, 0.3819, 0.5, 0.6637, 0.8452, 1.0, 1.618, 2.9,
];

/// `k` with `p = k q` (coefficientwise, to rounding), if any.
fn proportional(p: &[f64], q: &[f64]) -> Option<f64> {
    let lead = q.iter().rposition(|c| *c != 0.0)?;
    let k = p.get(lead).copied().unwrap_or(0.0) / q[lead];
    let scale = p.iter().chain(q).fold(0.0f64, |m, c| m.max(c.abs()));
    let ok = (0..p.len().max(q.len())).all(|i| {
        let (pi, qi) = (
            p.get(i).copied().unwrap_or(0.0),
            q.get(i).copied().unwrap_or(0.0),
        );
        (pi - k * qi).abs() <= 1e-12 * scale * (1.0 + k.abs())
    });
    (ok && k != 0.0).then_some(k)
}

/// `∫_0^t step(a s + b) ds` for a linear argument; the jump is at `s = -b / a`.
fn integrate_step(arg: &Expr) -> Option<Expr> {
    let lin = as_polynomial(&simplify(arg), Var::T)?;
    let (b, a) = (lin[0], lin.get(1).copied().unwrap_or(0.0));
    if lin.len() > 2 {
        return None;
    }
    if a == 0.0 {
        return Some(Expr::Const(if b > 0.0 { 1.0 } else { 0.0 }) * Expr::t());
    }
    let at = -b / a;
    // ∫_0^t 1{s > at} ds = max(t - at, 0) - max(-at, 0)
    let ramp = Expr::Call(Func::Max, vec![Expr::t() - at, Expr::Const(0.0)]);
    let up = ramp - Expr::Const((-at).max(0.0));
    Some(simplify(&if a > 0.0 { up } else { Expr::t() - up }))
}

/// `(a, b)` with `e = a * x + b` and `a`, `b` free of `x`; `None` if `e` is not
/// affine in `x` (e.g. `x^2`, `sin(x)`, `x * x`).
pub fn affine_in_x(e: &Expr) -> Option<(Expr, Expr)> {
    let (a, b) = affine_raw(e)?;
    Some((simplify(&a), simplify(&b)))
}

fn affine_raw(e: &Expr) -> Option<(Expr, Expr)> {
    if !e.depends_on(Var::X) {
        return Some((Expr::Const(0.0), e.clone()));
    }
    Some(match e {
        Expr::Var(Var::X) => (Expr::Const(1.0), Expr::Const(0.0)),
        Expr::Neg(p) => {
            let (a, b) = affine_raw(p)?;
            (-a, -b)
        }
        Expr::Add(p, q) | Expr::Sub(p, q) => {
            let ((a1, b1), (a2, b2)) = (affine_raw(p)?, affine_raw(q)?);
            if matches!(e, Expr::Add(..)) {
                (a1 + a2, b1 + b2)
            } else {
                (a1 - a2, b1 - b2)
            }
        }
        Expr::Mul(p, q) if !p.depends_on(Var::X) => {
            let (a, b) = affine_raw(q)?;
            ((**p).clone() * a, (**p).clone() * b)
        }
        Expr::Mul(p, q) if !q.depends_on(Var::X) => {
            let (a, b) = affine_raw(p)?;
            (a * (**q).clone(), b * (**q).clone())
        }
        Expr::Div(p, q) if !q.depends_on(Var::X) => {
            let (a, b) = affine_raw(p)?;
            (a / (**q).clone(), b / (**q).clone())
        }
        Expr::Pow(p, k) if k.as_const() == Some(1.0) => affine_raw(p)?,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::expr::Env;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn t() -> Expr {
        Expr::t()
    }
    fn x() -> Expr {
        Expr::x()
    }
    fn beta() -> Expr {
        0.1 + 19.9 * t()
    }
    fn at(e: &Expr, tv: f64, xv: f64) -> f64 {
        let p = HashMap::new();
        e.eval(&Env::new(&p).with(Var::T, tv).with(Var::X, xv))
            .unwrap_or(f64::NAN)
    }
    /// Composite Simpson on [0, t] with many panels: an independent reference.
    fn simpson(e: &Expr, t1: f64) -> f64 {
        let n = 20_000;
        let h = t1 / n as f64;
        let s: f64 = (0..=n)
            .map(|i| {
                let w = if i == 0 || i == n {
                    1.0
                } else if i % 2 == 1 {
                    4.0
                } else {
                    2.0
                };
                w * e.eval_t(i as f64 * h)
            })
            .sum();
        s * h / 3.0
    }
    fn check_antiderivative(e: &Expr, tol: f64) -> Expr {
        let f = integrate_t(e).unwrap_or_else(|| panic!("no closed form for {e}"));
        assert_eq!(f.eval_t(0.0), 0.0, "F(0) for {f}");
        for tv in [0.13, 0.5, 0.77, 1.0] {
            let (got, want) = (f.eval_t(tv), simpson(e, tv));
            assert!(
                (got - want).abs() <= tol * (1.0 + want.abs()),
                "{e}: F = {f} at {tv}: {got} vs {want}"
            );
        }
        f
    }

    #[test]
    fn simplify_hand_cases() {
        let cases: Vec<(Expr, &str)> = vec![
            (x() - x(), "0"),
            (2.0 * t() + 3.0 * t(), "5 * t"),
            (0.0 * x() + 1.0 * t(), "t"),
            ((t() + 0.0) * 1.0, "t"),
            (Expr::c(0.0).exp() + Expr::c(4.0).sqrt(), "3"),
            (x() * x(), "x^2"),
            (x() / x(), "1"),
            (2.0 * (3.0 * x()), "6 * x"),
            (-0.5 * beta() * x(), "-0.5 * (0.1 + 19.9 * t) * x"),
            (x() * (-0.5) * beta(), "-0.5 * (0.1 + 19.9 * t) * x"),
            (1.0 - (-t()).exp(), "-expm1(-t)"),
            (t().exp() * (-t()).exp(), "1"),
            (((2.0 * t()).sqrt()).pow(Expr::c(2.0)), "2 * t"),
            ((t() * 3.0).pow(Expr::c(2.0)), "9 * t^2"),
            (t() / (2.0 * x()), "0.5 * t / x"),
            (-(-t()), "t"),
            (Expr::c(2.0) - t() - (x() - t()), "2 - x"),
        ];
        for (e, want) in cases {
            let s = simplify(&e);
            assert_eq!(s.to_string(), want, "simplify({e})");
            assert_eq!(simplify(&s), s, "idempotent on {e}");
        }
        // Non-finite constants stay visible instead of folding to NaN.
        assert_eq!(simplify(&Expr::c(-1.0).ln()).to_string(), "log(-1)");
    }

    #[test]
    fn deep_expressions_are_handled() {
        // The parser allows depth 256; alternate node kinds so nothing flattens away.
        // simplify handles depth 300 in ~35 ms; diff of a deep tanh chain is
        // quadratic in size (~4 s at 300), so the derivative is checked at 90.
        let mut e = t();
        for i in 0..300 {
            e = match i % 3 {
                0 => e * 1.01 + t(),
                1 => Expr::call1(Func::Tanh, e),
                _ => e - 0.5 * x(),
            };
        }
        let s = simplify(&e);
        assert!((at(&s, 0.3, 0.2) - at(&e, 0.3, 0.2)).abs() < 1e-12);
        let mut e = t();
        for i in 0..90 {
            e = if i % 2 == 0 {
                e * 1.01 + t()
            } else {
                Expr::call1(Func::Tanh, e)
            };
        }
        let d = diff(&e, Var::T);
        let fd = (at(&e, 0.3 + 1e-6, 0.0) - at(&e, 0.3 - 1e-6, 0.0)) / 2e-6;
        assert!((at(&d, 0.3, 0.0) - fd).abs() < 1e-6 * (1.0 + fd.abs()));
    }

    #[test]
    fn diff_hand_cases() {
        let d = diff(&t().pow(Expr::c(3.0)), Var::T);
        assert!((at(&d, 2.0, 0.0) - 12.0).abs() < 1e-12);
        let g = (-0.5 * t() * t()).exp();
        let dg = diff(&g, Var::T);
        assert!((at(&dg, 0.7, 0.0) - (-0.7 * (-0.245f64).exp())).abs() < 1e-14);
        assert_eq!(diff(&(beta() * x()), Var::X).to_string(), "0.1 + 19.9 * t");
        let m = Expr::Call(Func::Min, vec![t() * t(), t()]);
        let dm = diff(&m, Var::T);
        assert_eq!((at(&dm, 0.5, 0.0), at(&dm, 2.0, 0.0)), (1.0, 1.0));
        let m = Expr::Call(Func::Max, vec![t() * t(), t()]);
        assert_eq!(at(&diff(&m, Var::T), 2.0, 0.0), 4.0);
        let a = Expr::call1(Func::Abs, t() - 1.0);
        assert_eq!(at(&diff(&a, Var::T), 0.5, 0.0), -1.0);
        assert_eq!(diff(&Expr::call1(Func::Step, t()), Var::T), Expr::c(0.0));
    }

    #[test]
    fn polynomials_and_affine_parts() {
        assert_eq!(
            as_polynomial(&(t() + 1.0).pow(Expr::c(2.0)), Var::T),
            Some(vec![1.0, 2.0, 1.0])
        );
        assert_eq!(
            as_polynomial(&(t() / 2.0 - t() * 0.5), Var::T),
            Some(vec![0.0])
        );
        assert_eq!(as_polynomial(&t().exp(), Var::T), None);
        assert_eq!(as_polynomial(&(1.0 / t()), Var::T), None);
        let (a, b) = affine_in_x(&(-0.5 * beta() * x() + t() * 2.0 - x() / 4.0)).unwrap();
        assert!((at(&a, 0.5, 0.0) - (-0.5 * (0.1 + 19.9 * 0.5) - 0.25)).abs() < 1e-14);
        assert!(!a.depends_on(Var::X) && !b.depends_on(Var::X));
        assert_eq!(b.to_string(), "2 * t");
        assert!(affine_in_x(&x().pow(Expr::c(2.0))).is_none());
        assert!(affine_in_x(&Expr::call1(Func::Sin, x())).is_none());
        assert!(affine_in_x(&(x() * x())).is_none());
    }

    #[test]
    fn closed_form_integrals() {
        let f = check_antiderivative(&beta(), 1e-12);
        assert_eq!(f.to_string(), "0.1 * t + 9.95 * t^2");
        let big_b = 0.1 * t() + 9.95 * t() * t();
        // VP: ∫ beta exp(B) = exp(B) - 1.
        let f = check_antiderivative(&(beta() * big_b.clone().exp()), 1e-10);
        assert_eq!(f.to_string(), "expm1(0.1 * t + 9.95 * t^2)");
        check_antiderivative(
            &(beta() * (-2.0 * big_b.clone()).exp() * big_b.exp()),
            1e-10,
        );
        check_antiderivative(&(t() * (2.0 * t() - 1.0).exp() + 3.0), 1e-11);
        check_antiderivative(&Expr::c(5.0).pow(2.0 * t()), 1e-11);
        check_antiderivative(&(t() * (1.0 + t()).pow(Expr::c(3.0))), 1e-12);
        let f = check_antiderivative(&(2.0 * Expr::call1(Func::Step, t() - 0.3)), 1e-4);
        assert!((f.eval_t(1.0) - 1.4).abs() < 1e-15);
        check_antiderivative(&Expr::call1(Func::Step, 0.5 - t()), 1e-4);
        check_antiderivative(&Expr::call1(Func::Step, t() + 0.5), 1e-4);
        check_antiderivative(&(1.0 - (-t()).exp()), 1e-12);
        // Exponential schedules: β = 0.1 · 200^t (and e^{5.3 t}), with ∫β and the chain-rule
        // integrands β exp(±∫β) and β exp(-2∫β) that the linear-SDE marginal needs.
        let r = Expr::c(200.0).pow(t());
        let b = 0.1 * r.clone();
        let big_b = check_antiderivative(&b, 1e-12);
        for k in [1.0, -1.0, -2.0, 2.0] {
            check_antiderivative(&(b.clone() * (k * big_b.clone()).exp()), 1e-9);
        }
        let e = 0.1 * (5.3 * t()).exp();
        let big_e = check_antiderivative(&e, 1e-12);
        check_antiderivative(&(e * (-2.0 * big_e).exp()), 1e-9);
        // Not proportional: the chain rule does not apply.
        assert!(integrate_t(&(t() * r.clone() * (0.1 * r).exp())).is_none());
        assert!(integrate_t(&Expr::call1(Func::Sin, t())).is_none());
        assert!(integrate_t(&(-t() * t()).exp()).is_none());
        assert!(integrate_t(&x()).is_none());
    }

    /// Random expressions in t and x over safe-ish constants.
    fn arb_expr(smooth: bool) -> impl Strategy<Value = Expr> {
        let leaf = prop_oneof![
            (0.1f64..3.0).prop_map(Expr::Const),
            Just(Expr::t()),
            Just(Expr::x()),
        ];
        leaf.prop_recursive(5, 40, 2, move |inner| {
            let funcs: Vec<Func> = if smooth {
                vec![
                    Func::Exp,
                    Func::Sin,
                    Func::Cos,
                    Func::Tanh,
                    Func::Sigmoid,
                    Func::Softplus,
                    Func::Atan,
                ]
            } else {
                super::super::expr::Func::ALL
                    .iter()
                    .filter_map(|n| Func::from_name(n))
                    .collect()
            };
            prop_oneof![
                (inner.clone(), inner.clone()).prop_map(|(a, b)| a + b),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| a - b),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| a * b),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| a / b),
                inner.clone().prop_map(|a| -a),
                (inner.clone(), 0u8..4).prop_map(|(a, k)| a.pow(Expr::c(f64::from(k)))),
                (
                    inner.clone(),
                    inner.clone(),
                    proptest::sample::select(funcs)
                )
                    .prop_map(|(a, b, f)| if f.arity() == 2 {
                        Expr::Call(f, vec![a, b])
                    } else {
                        Expr::call1(f, a)
                    }),
            ]
        })
    }

    /// Largest magnitude of any subexpression: the scale of rounding errors.
    fn scale(e: &Expr, tv: f64, xv: f64) -> f64 {
        e.children()
            .iter()
            .fold(at(e, tv, xv).abs(), |m, c| m.max(scale(c, tv, xv)))
    }

    proptest! {
        #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]
        #[test]
        fn simplify_keeps_values(e in arb_expr(false), tv in 0.05f64..2.0, xv in -2.0f64..2.0) {
            let s = simplify(&e);
            prop_assert_eq!(simplify(&s), s.clone());
            let (v, w) = (at(&e, tv, xv), at(&s, tv, xv));
            if v.is_finite() {
                let tol = 1e-9 * (1.0 + scale(&e, tv, xv));
                prop_assert!((v - w).abs() <= tol, "{} -> {}: {} vs {}", e, s, v, w);
            }
        }

        #[test]
        fn diff_matches_finite_differences(e in arb_expr(true), tv in 0.05f64..2.0, xv in -2.0f64..2.0) {
            let d = at(&diff(&e, Var::T), tv, xv);
            let fd = |h: f64| (at(&e, tv + h, xv) - at(&e, tv - h, xv)) / (2.0 * h);
            let (f1, f2) = (fd(1e-4), fd(5e-5));
            // Skip points where the difference quotient has not converged (poles).
            prop_assume!(f1.is_finite() && (f1 - f2).abs() <= 1e-6 * (1.0 + f1.abs()));
            prop_assert!((d - f2).abs() <= 1e-5 * (1.0 + f2.abs() + scale(&e, tv, xv) * 1e-3), "{}: {} vs {}", e, d, f2);
        }
    }
}

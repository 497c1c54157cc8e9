//! The Gaussian marginal `q(x_t | x_0) = N(m_t x_0 + c_t, s_t² I)` of a linear
//! SDE `dx = (a(t) x + b(t)) dt + g(t) dW` on `[t0, t1]`:
//!
//! `m_t = exp(∫ a)`, `c_t = m_t ∫ b / m`, `s_t² = m_t² ∫ g² / m²` (integrals from `t0`).
//!
//! A closed form is derived with [`integrate_t`] when one exists (and is
//! checked against the table); otherwise the ODEs `m' = a m`, `c' = a c + b`,
//! `(s²)' = 2 a s² + g²` are integrated exactly-per-step on a fine grid
//! (Gauss–Legendre quadrature of the variation-of-constants formula) and
//! interpolated with cubic Hermite polynomials using the ODE derivatives.

use super::expr::{Expr, Var};
use super::symbolic::{expand, integrate_t, simplify};
use thiserror::Error;

/// Why a marginal could not be built.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum MarginalError {
    #[error("the time range [{t0}, {t1}] is empty or not finite: write `time = [start, end]` with start < end")]
    BadRange { t0: f64, t1: f64 },
    #[error("{part} = `{expr}` depends on {var}: for a Gaussian marginal in closed form it may depend only on t")]
    NotTimeOnly {
        part: &'static str,
        expr: String,
        var: &'static str,
    },
    #[error("{part} is {value} at t = {t}: it must be finite on the whole time range")]
    NotFinite {
        part: &'static str,
        t: f64,
        value: f64,
    },
    #[error("the marginal table did not reach accuracy (estimated error {error:.1e}): the coefficients change too abruptly; smooth them (e.g. replace step by sigmoid with a steep slope)")]
    NotConverged { error: f64 },
}

/// Nodes and weights of 8-point Gauss–Legendre quadrature on [-1, 1].
const GL_NODES: [f64; 8] = [
    -0.960_289_856_497_536_3,
    -0.796_666_477_413_626_7,
    -0.525_532_409_916_329,
    -0.183_434_642_495_649_8,
    0.183_434_642_495_649_8,
    0.525_532_409_916_329,
    0.796_666_477_413_626_7,
    0.960_289_856_497_536_3,
];
const GL_WEIGHTS: [f64; 8] = [
    0.101_228_536_290_376_3,
    0.222_381_034_453_374_5,
    0.313_706_645_877_887_3,
    0.362_683_783_378_362,
    0.362_683_783_378_362,
    0.313_706_645_877_887_3,
    0.222_381_034_453_374_5,
    0.101_228_536_290_376_3,
];

/// Relative accuracy the table aims for.
const TABLE_TOL: f64 = 1e-11;
/// Estimated table error above which we refuse to build a marginal. Smooth
/// coefficients reach [`TABLE_TOL`]; a jump (e.g. `step`) limits the table
/// to first order in the step size, about 1e-5 at the finest grid.
const TABLE_MAX_ERROR: f64 = 1e-4;
const MIN_INTERVALS: usize = 256;
const MAX_INTERVALS: usize = 1 << 16;
/// Points at which coefficients are checked for finiteness and the closed
/// form is compared with the table.
const CHECK_POINTS: usize = 1001;

/// The marginal of a Gaussian process, as a function of time.
#[derive(Clone, Debug)]
pub struct Marginal {
    t0: f64,
    t1: f64,
    kind: Kind,
}

#[derive(Clone, Debug)]
enum Kind {
    /// Closed form derived from the SDE; `var` is `s²`.
    Closed { m: Expr, c: Expr, var: Expr },
    /// Declared directly by the process.
    Explicit { alpha: Expr, c: Expr, sigma: Expr },
    /// Tabulated from the SDE.
    Table(Table),
}

impl Marginal {
    /// The marginal of `dx = (a(t) x + b(t)) dt + g(t) dW` started at `t0`,
    /// for `t` in `[t0, t1]`. `a`, `b`, `g` must depend on `t` only.
    pub fn linear_sde(
        a: &Expr,
        b: &Expr,
        g: &Expr,
        t0: f64,
        t1: f64,
    ) -> Result<Marginal, MarginalError> {
        check_range(t0, t1)?;
        for (part, e) in [
            ("the drift slope a(t)", a),
            ("the drift offset b(t)", b),
            ("the diffusion g(t)", g),
        ] {
            check_time_only(part, e, t0, t1)?;
        }
        let closed = closed_form(a, b, g, t0);
        let kind = match (Table::build(a, b, g, t0, t1), closed) {
            (Ok(table), Some((m, c, var))) if agrees(&m, &c, &var, &table) => {
                Kind::Closed { m, c, var }
            }
            (Ok(table), _) => Kind::Table(table),
            // The table is only a cross-check of a closed form: over a long horizon (a
            // constant-coefficient OU run to t = 30000) it cannot reach its accuracy on the
            // finest grid, yet the closed form is exact.
            (Err(_), Some((m, c, var))) if finite_on(&[&m, &c, &var], t0, t1) => {
                Kind::Closed { m, c, var }
            }
            (Err(e), _) => return Err(e),
        };
        Ok(Marginal { t0, t1, kind })
    }

    /// A marginal declared directly: mean `alpha(t) x_0 + c(t)`, standard
    /// deviation `sigma(t)`.
    pub fn explicit(
        alpha: &Expr,
        c: &Expr,
        sigma: &Expr,
        t0: f64,
        t1: f64,
    ) -> Result<Marginal, MarginalError> {
        check_range(t0, t1)?;
        for (part, e) in [
            ("the mean scale alpha(t)", alpha),
            ("the mean offset", c),
            ("the standard deviation sigma(t)", sigma),
        ] {
            check_time_only(part, e, t0, t1)?;
        }
        let kind = Kind::Explicit {
            alpha: simplify(alpha),
            c: simplify(c),
            sigma: simplify(sigma),
        };
        Ok(Marginal { t0, t1, kind })
    }

    /// `(m_t, c_t, s_t)` at time `t` (clamped to the time range).
    pub fn at(&self, t: f64) -> (f64, f64, f64) {
        let t = t.clamp(self.t0, self.t1);
        match &self.kind {
            Kind::Closed { m, c, var } => (m.eval_t(t), c.eval_t(t), var.eval_t(t).max(0.0).sqrt()),
            Kind::Explicit { alpha, c, sigma } => (alpha.eval_t(t), c.eval_t(t), sigma.eval_t(t)),
            Kind::Table(table) => table.at(t),
        }
    }

    /// Whether the marginal is an exact formula (derived or declared) rather
    /// than an interpolated table.
    pub fn is_closed_form(&self) -> bool {
        !matches!(self.kind, Kind::Table(_))
    }

    /// The formulas `(m_t, c_t, s_t)` in `t`, when the marginal has a closed form.
    pub fn formulas(&self) -> Option<(Expr, Expr, Expr)> {
        match &self.kind {
            Kind::Closed { m, c, var } => {
                Some((m.clone(), c.clone(), simplify(&var.clone().sqrt())))
            }
            Kind::Explicit { alpha, c, sigma } => Some((alpha.clone(), c.clone(), sigma.clone())),
            Kind::Table(_) => None,
        }
    }

    /// Estimated relative error of the interpolated table (`None` for a
    /// closed form). Above about 1e-9 a coefficient is not smooth.
    pub fn table_error(&self) -> Option<f64> {
        match &self.kind {
            Kind::Table(t) => Some(t.error),
            _ => None,
        }
    }

    /// The time range `[t0, t1]`.
    pub fn range(&self) -> (f64, f64) {
        (self.t0, self.t1)
    }
}

fn check_range(t0: f64, t1: f64) -> Result<(), MarginalError> {
    if t0.is_finite() && t1.is_finite() && t0 < t1 {
        Ok(())
    } else {
        Err(MarginalError::BadRange { t0, t1 })
    }
}

/// Checks that `e` mentions no variable but `t`, no parameter, and is finite
/// on a grid over the range.
fn check_time_only(part: &'static str, e: &Expr, t0: f64, t1: f64) -> Result<(), MarginalError> {
    let other = [Var::X, Var::N].into_iter().find(|v| e.depends_on(*v));
    let var = match (other, e.params().into_iter().next()) {
        (Some(v), _) => Some(v.name()),
        (None, Some(_)) => Some("a parameter that was not substituted"),
        (None, None) => None,
    };
    if let Some(var) = var {
        return Err(MarginalError::NotTimeOnly {
            part,
            expr: e.to_string(),
            var,
        });
    }
    for i in 0..CHECK_POINTS {
        let t = t0 + (t1 - t0) * (i as f64 / (CHECK_POINTS - 1) as f64);
        let value = e.eval_t(t);
        if !value.is_finite() {
            return Err(MarginalError::NotFinite { part, t, value });
        }
    }
    Ok(())
}

/// `F(t) - F(t0)` for a closed-form antiderivative `F` of `e`.
fn integral_from(e: &Expr, t0: f64) -> Option<Expr> {
    if simplify(e) == Expr::Const(0.0) {
        return Some(Expr::Const(0.0));
    }
    let f = integrate_t(e)?;
    let f0 = f.eval_t(t0);
    f0.is_finite().then(|| simplify(&(f - f0)))
}

/// Closed forms `(m, c, s²)` when every integral has one.
fn closed_form(a: &Expr, b: &Expr, g: &Expr, t0: f64) -> Option<(Expr, Expr, Expr)> {
    let big_a = integral_from(a, t0)?;
    let m = simplify(&big_a.clone().exp());
    let c_int = integral_from(&(b.clone() * (-big_a.clone()).exp()), t0)?;
    let c = tidy(m.clone() * c_int, t0);
    let g2 = g.clone().pow(Expr::Const(2.0));
    let v_int = integral_from(&(g2 * (-2.0 * big_a.clone()).exp()), t0)?;
    let var = tidy((2.0 * big_a).exp() * v_int, t0);
    Some((m, c, var))
}

/// The expanded form of a product `m^k * ∫ ...` when it evaluates like the
/// product itself: expanding often cancels exponentials into a short formula
/// (`exp(-B) expm1(B)` becomes `-expm1(-B)`), but when several terms cancel
/// near `t0` (sub-VP: `1 - 2 e^{-B} + e^{-2B}`) it loses relative accuracy
/// there, and the product form is kept.
fn tidy(product: Expr, t0: f64) -> Expr {
    let product = simplify(&product);
    let expanded = expand(&product);
    let near = (1..=12).map(|k| t0 + 10f64.powi(-k));
    let probes = near.chain((0..=20).map(|i| t0 + 0.05 * i as f64));
    let same = probes.into_iter().all(|t| {
        let (p, e) = (product.eval_t(t), expanded.eval_t(t));
        (p - e).abs() <= 1e-12 * p.abs() || !p.is_finite()
    });
    if same {
        expanded
    } else {
        product
    }
}

/// Whether a closed form matches the table: guards against a closed form
/// that is right on paper but loses accuracy in floating point (or a bug).
/// Whether each expression is finite at [`CHECK_POINTS`] points of `[t0, t1]`.
fn finite_on(es: &[&Expr], t0: f64, t1: f64) -> bool {
    (0..CHECK_POINTS).all(|i| {
        let t = (t0 + (t1 - t0) * (i as f64 / (CHECK_POINTS - 1) as f64)).min(t1);
        es.iter().all(|e| e.eval_t(t).is_finite())
    })
}

fn agrees(m: &Expr, c: &Expr, var: &Expr, table: &Table) -> bool {
    let tol = (100.0 * table.error).max(1e-8);
    let (t0, t1) = (table.t0, table.t0 + table.h * table.len() as f64);
    (0..=200).all(|i| {
        let t = (t0 + (t1 - t0) * (i as f64 / 200.0)).min(t1);
        let (tm, tc, ts) = table.at(t);
        let close =
            |x: f64, y: f64, scale: f64| (x - y).abs() <= tol * (scale + x.abs().max(y.abs()));
        close(m.eval_t(t), tm, 0.0)
            && close(c.eval_t(t), tc, table.c_scale)
            && close(var.eval_t(t), ts * ts, table.v_scale)
    })
}

/// Cubic Hermite interpolation on `u` in [0, 1] of values `y0`, `y1` with
/// derivatives `d0`, `d1` (per unit time) over a step `h`.
fn hermite(u: f64, h: f64, y0: f64, d0: f64, y1: f64, d1: f64) -> f64 {
    let (u2, u3) = (u * u, u * u * u);
    (2.0 * u3 - 3.0 * u2 + 1.0) * y0
        + (u3 - 2.0 * u2 + u) * h * d0
        + (3.0 * u2 - 2.0 * u3) * y1
        + (u3 - u2) * h * d1
}

/// Values and exact ODE derivatives on a uniform grid.
#[derive(Clone, Debug)]
struct Table {
    t0: f64,
    h: f64,
    /// `log m` and its derivative `a`.
    log_m: Vec<f64>,
    a: Vec<f64>,
    c: Vec<f64>,
    dc: Vec<f64>,
    v: Vec<f64>,
    dv: Vec<f64>,
    /// Scales for relative error checks.
    c_scale: f64,
    v_scale: f64,
    /// Estimated relative interpolation error.
    error: f64,
}

impl Table {
    /// Builds tables of doubling resolution until two consecutive ones agree
    /// to [`TABLE_TOL`]; returns the finer one.
    fn build(a: &Expr, b: &Expr, g: &Expr, t0: f64, t1: f64) -> Result<Table, MarginalError> {
        let weights = lagrange_tail_weights();
        let mut n = MIN_INTERVALS;
        let mut coarse = Table::integrate(a, b, g, t0, t1, n, &weights);
        loop {
            n *= 2;
            let mut fine = Table::integrate(a, b, g, t0, t1, n, &weights);
            fine.error = coarse.distance(&fine);
            if fine.error <= TABLE_TOL || n >= MAX_INTERVALS {
                if fine.error > TABLE_MAX_ERROR || !fine.error.is_finite() {
                    return Err(MarginalError::NotConverged { error: fine.error });
                }
                return Ok(fine);
            }
            coarse = fine;
        }
    }

    fn len(&self) -> usize {
        self.log_m.len() - 1
    }

    /// One pass over `n` intervals. On each interval the variation-of-constants
    /// formula is exact up to quadrature: with `E(s) = ∫_s^{t_{i+1}} a`,
    /// `c_{i+1} = e^{ΔA} c_i + ∫ b(s) e^{E(s)} ds` and
    /// `v_{i+1} = e^{2ΔA} v_i + ∫ g(s)² e^{2E(s)} ds`. Unlike RK4, this stays
    /// accurate for stiff drifts.
    fn integrate(
        a: &Expr,
        b: &Expr,
        g: &Expr,
        t0: f64,
        t1: f64,
        n: usize,
        tail: &[[f64; 8]; 8],
    ) -> Table {
        let h = (t1 - t0) / n as f64;
        let mut t = Table {
            t0,
            h,
            log_m: vec![0.0; n + 1],
            a: vec![0.0; n + 1],
            c: vec![0.0; n + 1],
            dc: vec![0.0; n + 1],
            v: vec![0.0; n + 1],
            dv: vec![0.0; n + 1],
            c_scale: 0.0,
            v_scale: 0.0,
            error: 0.0,
        };
        for i in 0..n {
            let start = t0 + h * i as f64;
            let nodes = GL_NODES.map(|x| start + 0.5 * h * (1.0 + x));
            let (av, bv, gv) = (
                nodes.map(|s| a.eval_t(s)),
                nodes.map(|s| b.eval_t(s)),
                nodes.map(|s| g.eval_t(s)),
            );
            let delta_a: f64 =
                0.5 * h * GL_WEIGHTS.iter().zip(&av).map(|(w, x)| w * x).sum::<f64>();
            let (mut c_inc, mut v_inc) = (0.0, 0.0);
            for j in 0..8 {
                // E(s_j) from the degree-7 interpolant of a on this interval.
                let e: f64 = 0.5 * h * (0..8).map(|k| tail[j][k] * av[k]).sum::<f64>();
                c_inc += GL_WEIGHTS[j] * bv[j] * e.exp();
                v_inc += GL_WEIGHTS[j] * gv[j] * gv[j] * (2.0 * e).exp();
            }
            t.log_m[i + 1] = t.log_m[i] + delta_a;
            t.c[i + 1] = delta_a.exp() * t.c[i] + 0.5 * h * c_inc;
            t.v[i + 1] = (2.0 * delta_a).exp() * t.v[i] + 0.5 * h * v_inc;
        }
        for i in 0..=n {
            let s = if i == n { t1 } else { t0 + h * i as f64 };
            let (av, bv, gv) = (a.eval_t(s), b.eval_t(s), g.eval_t(s));
            t.a[i] = av;
            t.dc[i] = av * t.c[i] + bv;
            t.dv[i] = 2.0 * av * t.v[i] + gv * gv;
        }
        t.c_scale = t.c.iter().fold(0.0, |m: f64, x| m.max(x.abs()));
        t.v_scale = t.v.iter().fold(0.0, |m: f64, x| m.max(x.abs()));
        t
    }

    /// Largest relative difference between this table's interpolation and a
    /// finer table's values at the nodes this one does not have.
    fn distance(&self, fine: &Table) -> f64 {
        let rel = |x: f64, y: f64, scale: f64| (x - y).abs() / (scale + f64::MIN_POSITIVE);
        (0..fine.len())
            .filter(|i| i % 2 == 1)
            .map(|i| {
                let t = fine.t0 + fine.h * i as f64;
                let (lm, c, v) = self.raw_at(t);
                // log m is compared absolutely: that is the relative error of m.
                (lm - fine.log_m[i])
                    .abs()
                    .max(rel(c, fine.c[i], fine.c_scale))
                    .max(rel(v, fine.v[i], fine.v_scale))
            })
            .fold(0.0, f64::max)
    }

    /// Interpolated `(log m, c, s²)`.
    fn raw_at(&self, t: f64) -> (f64, f64, f64) {
        let x = ((t - self.t0) / self.h).max(0.0);
        let i = (x.floor() as usize).min(self.len() - 1);
        let u = (x - i as f64).clamp(0.0, 1.0);
        let interp = |y: &[f64], d: &[f64]| hermite(u, self.h, y[i], d[i], y[i + 1], d[i + 1]);
        (
            interp(&self.log_m, &self.a),
            interp(&self.c, &self.dc),
            interp(&self.v, &self.dv),
        )
    }

    fn at(&self, t: f64) -> (f64, f64, f64) {
        let (lm, c, v) = self.raw_at(t);
        (lm.exp(), c, v.max(0.0).sqrt())
    }
}

/// `W[j][k] = ∫_{ξ_j}^{1} L_k(ξ) dξ` for the Lagrange basis `L_k` on the
/// Gauss–Legendre nodes: integrates the interpolant of `a` from a node to
/// the end of the interval. 8-point Gauss on `[ξ_j, 1]` is exact for the
/// degree-7 basis polynomials.
fn lagrange_tail_weights() -> [[f64; 8]; 8] {
    let basis = |k: usize, x: f64| {
        (0..8)
            .filter(|&m| m != k)
            .map(|m| (x - GL_NODES[m]) / (GL_NODES[k] - GL_NODES[m]))
            .product::<f64>()
    };
    let mut w = [[0.0; 8]; 8];
    for (j, row) in w.iter_mut().enumerate() {
        let (lo, half) = (GL_NODES[j], 0.5 * (1.0 - GL_NODES[j]));
        for (k, cell) in row.iter_mut().enumerate() {
            *cell = half
                * GL_NODES
                    .iter()
                    .zip(&GL_WEIGHTS)
                    .map(|(x, wq)| wq * basis(k, lo + half * (1.0 + x)))
                    .sum::<f64>();
        }
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::expr::Func;

    fn t() -> Expr {
        Expr::t()
    }
    fn beta() -> Expr {
        0.1 + 19.9 * t()
    }
    const TIMES: [f64; 7] = [0.0, 1e-4, 0.01, 0.2, 0.5, 0.77, 1.0];

    /// Asserts `(m, c, s)` against references with a relative tolerance.
    fn assert_close(mg: &Marginal, reference: impl Fn(f64) -> (f64, f64, f64), tol: f64) {
        for &tv in &TIMES {
            let got = mg.at(tv);
            let want = reference(tv);
            for (x, y) in [(got.0, want.0), (got.1, want.1), (got.2, want.2)] {
                assert!(
                    (x - y).abs() <= tol * (1e-3 + y.abs()),
                    "t = {tv}: {got:?} vs {want:?}"
                );
            }
        }
    }

    /// A constant-coefficient OU over a long horizon: the table cannot reach its accuracy on
    /// the finest grid, but the closed form is exact and is used.
    #[test]
    fn long_horizon_ou_uses_its_closed_form() {
        let mg = Marginal::linear_sde(
            &Expr::c(-1.0),
            &Expr::c(0.0),
            &Expr::c(2f64.sqrt()),
            0.0,
            30000.0,
        )
        .unwrap();
        assert!(mg.is_closed_form());
        let (m, _, s) = mg.at(1.0);
        assert!(
            (m - (-1f64).exp()).abs() < 1e-12 && (s - (1.0 - (-2f64).exp()).sqrt()).abs() < 1e-12
        );
    }

    #[test]
    fn vp_closed_form() {
        let mg = Marginal::linear_sde(&(-0.5 * beta()), &Expr::c(0.0), &beta().sqrt(), 0.0, 1.0)
            .unwrap();
        assert!(mg.is_closed_form());
        assert_close(
            &mg,
            |t| {
                let m = (-0.25 * t * t * 19.9 - 0.5 * t * 0.1).exp();
                (m, 0.0, (1.0 - m * m).sqrt())
            },
            1e-12,
        );
        let (m, c, s) = mg.formulas().unwrap();
        assert_eq!(m.to_string(), "exp(-0.05 * t - 4.975 * t^2)");
        assert_eq!(c, Expr::c(0.0));
        assert_eq!(s.to_string(), "sqrt(-expm1(-0.1 * t - 9.95 * t^2))");
    }

    #[test]
    fn ve_closed_form() {
        let (lo, hi) = (0.01f64, 50.0f64);
        let r = hi / lo;
        let g = lo * Expr::c(r).pow(t()) * Expr::c(2.0 * r.ln()).sqrt();
        let mg = Marginal::linear_sde(&Expr::c(0.0), &Expr::c(0.0), &g, 0.0, 1.0).unwrap();
        assert!(mg.is_closed_form());
        assert_close(
            &mg,
            |t| (1.0, 0.0, lo * (r.powf(2.0 * t) - 1.0).sqrt()),
            1e-12,
        );
    }

    /// β(t) = 0.1 · 200^t: ∫β = 0.1 (200^t − 1) / ln 200 is elementary, and so are the
    /// integrands β exp(−2∫β) of the variance (chain rule), on a shifted start too.
    #[test]
    fn geometric_vp_closed_form() {
        let r = 200f64;
        let beta = 0.1 * Expr::c(r).pow(t());
        let big = |t: f64| 0.1 * (r.powf(t) - 1.0) / r.ln();
        for t0 in [0.0, 0.25] {
            let mg = Marginal::linear_sde(
                &(-0.5 * beta.clone()),
                &Expr::c(0.0),
                &beta.clone().sqrt(),
                t0,
                1.0,
            )
            .unwrap();
            assert!(mg.is_closed_form(), "t0 = {t0}");
            assert_close(
                &mg,
                |t| {
                    // `at` clamps times below the start.
                    let m = (-0.5 * (big(t.max(t0)) - big(t0))).exp();
                    (m, 0.0, (1.0 - m * m).sqrt())
                },
                1e-11,
            );
        }
    }

    #[test]
    fn sub_vp_closed_form() {
        let b_expr = 0.1 * t() + 9.95 * t() * t();
        let g = (beta() * (1.0 - (-2.0 * b_expr).exp())).sqrt();
        let mg = Marginal::linear_sde(&(-0.5 * beta()), &Expr::c(0.0), &g, 0.0, 1.0).unwrap();
        assert!(mg.is_closed_form());
        assert_close(
            &mg,
            |t| {
                let bb = 0.1 * t + 9.95 * t * t;
                ((-0.5 * bb).exp(), 0.0, 1.0 - (-bb).exp())
            },
            1e-11,
        );
    }

    #[test]
    fn ou_with_offset_closed_form_and_shifted_start() {
        let (theta, mu, sigma) = (2.0, 1.5, 0.7);
        let g = Expr::c(sigma * (2.0f64 * theta).sqrt());
        let mg =
            Marginal::linear_sde(&Expr::c(-theta), &Expr::c(theta * mu), &g, 0.0, 1.0).unwrap();
        assert!(mg.is_closed_form());
        let reference = |t: f64| {
            let m = (-theta * t).exp();
            (m, mu * (1.0 - m), sigma * (1.0 - m * m).sqrt())
        };
        assert_close(&mg, reference, 1e-12);
        // Starting at t0 = 0.3 measures every integral from there.
        let mg =
            Marginal::linear_sde(&Expr::c(-theta), &Expr::c(theta * mu), &g, 0.3, 1.3).unwrap();
        assert!(mg.is_closed_form());
        for &tv in &TIMES {
            let (got, want) = (mg.at(tv + 0.3), reference(tv));
            assert!((got.0 - want.0).abs() < 1e-14 && (got.1 - want.1).abs() < 1e-14);
            assert!((got.2 - want.2).abs() <= 1e-12 * want.2, "{got:?} {want:?}");
        }
    }

    /// Adaptive Simpson to 1e-12: an independent reference for the table.
    fn simpson(f: &dyn Fn(f64) -> f64, a: f64, b: f64) -> f64 {
        #[allow(clippy::too_many_arguments)]
        fn rec(
            f: &dyn Fn(f64) -> f64,
            a: f64,
            b: f64,
            fa: f64,
            fm: f64,
            fb: f64,
            whole: f64,
            tol: f64,
            depth: u32,
        ) -> f64 {
            let m = 0.5 * (a + b);
            let (lm, rm) = (0.5 * (a + m), 0.5 * (m + b));
            let (flm, frm) = (f(lm), f(rm));
            let left = (m - a) / 6.0 * (fa + 4.0 * flm + fm);
            let right = (b - m) / 6.0 * (fm + 4.0 * frm + fb);
            if depth == 0 || (left + right - whole).abs() <= 15.0 * tol {
                return left + right + (left + right - whole) / 15.0;
            }
            rec(f, a, m, fa, flm, fm, left, tol / 2.0, depth - 1)
                + rec(f, m, b, fm, frm, fb, right, tol / 2.0, depth - 1)
        }
        let (fa, fm, fb) = (f(a), f(0.5 * (a + b)), f(b));
        rec(
            f,
            a,
            b,
            fa,
            fm,
            fb,
            (b - a) / 6.0 * (fa + 4.0 * fm + fb),
            1e-12,
            40,
        )
    }

    #[test]
    fn custom_schedule_uses_the_table() {
        // beta(t) = 1 + sin(3t)^2 has no closed form by our rules.
        let beta = 1.0 + Expr::call1(Func::Sin, 3.0 * t()).pow(Expr::c(2.0));
        let b = 0.3 * Expr::call1(Func::Cos, t());
        let mg = Marginal::linear_sde(&(-0.5 * beta.clone()), &b, &beta.sqrt(), 0.0, 1.0).unwrap();
        assert!(!mg.is_closed_form() && mg.formulas().is_none());
        assert!(mg.table_error().is_some_and(|e| e < 1e-10));
        // ∫_0^t beta = 1.5 t - sin(6t) / 12, by hand.
        let big = |t: f64| 1.5 * t - (6.0 * t).sin() / 12.0;
        let reference = |t: f64| {
            let log_m = -0.5 * big(t);
            let c = simpson(&|s| 0.3 * s.cos() * (log_m + 0.5 * big(s)).exp(), 0.0, t);
            let v = simpson(
                &|s| (1.0 + (3.0 * s).sin().powi(2)) * (2.0 * log_m + big(s)).exp(),
                0.0,
                t,
            );
            (log_m.exp(), c, v.sqrt())
        };
        assert_close(&mg, reference, 1e-9);
        // For this process s² = 1 - m² exactly (variance preserving).
        let (m, _, s) = mg.at(0.63);
        assert!((s * s + m * m - 1.0).abs() < 1e-11);
    }

    #[test]
    fn stiff_table_is_accurate() {
        // Table directly, stiff OU: a = -200.
        let g = Expr::c(20.0);
        let table = Table::build(&Expr::c(-200.0), &Expr::c(200.0), &g, 0.0, 1.0).unwrap();
        for &tv in &TIMES {
            let (m, c, s) = table.at(tv);
            let em = (-200.0 * tv).exp();
            assert!((m - em).abs() <= 1e-9 * em + 1e-300, "{tv}: {m} vs {em}");
            assert!((c - (1.0 - em)).abs() < 1e-9);
            assert!((s - (1.0 - em * em).sqrt()).abs() < 1e-9);
        }
    }

    #[test]
    fn discontinuous_drift_still_builds() {
        // a = -step(t - 0.5): exp(2 max(t - 0.5, 0)) has no closed-form
        // integral by our rules, and the jump limits the table to ~1e-5.
        let a = -Expr::call1(Func::Step, t() - 0.5);
        let mg = Marginal::linear_sde(&a, &Expr::c(0.0), &Expr::c(1.0), 0.0, 1.0).unwrap();
        assert!(!mg.is_closed_form());
        assert!(mg.table_error().is_some_and(|e| e < 1e-4));
        let (m, _, s) = mg.at(0.8);
        assert!((m - (-0.3f64).exp()).abs() < 1e-5);
        // s² = e^{-0.6} (0.5 + ∫_0.5^0.8 e^{2(u - 0.5)} du) = 0.5 e^{-0.6} + (1 - e^{-0.6}) / 2 = 0.5.
        assert!((s * s - 0.5).abs() < 1e-5, "{s}");
    }

    #[test]
    fn explicit_marginal() {
        let half_pi = std::f64::consts::FRAC_PI_2;
        let alpha = Expr::call1(Func::Cos, half_pi * t());
        let sigma = Expr::call1(Func::Sin, half_pi * t());
        let mg = Marginal::explicit(&alpha, &Expr::c(0.0), &sigma, 0.0, 1.0).unwrap();
        assert!(mg.is_closed_form());
        assert_close(
            &mg,
            |t| ((half_pi * t).cos(), 0.0, (half_pi * t).sin()),
            1e-15,
        );
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let zero = Expr::c(0.0);
        let e = Marginal::linear_sde(&Expr::x(), &zero, &Expr::c(1.0), 0.0, 1.0).unwrap_err();
        assert!(
            matches!(e, MarginalError::NotTimeOnly { var: "x", .. }),
            "{e}"
        );
        let e = Marginal::linear_sde(&zero, &zero, &(t() - 0.5).sqrt(), 0.0, 1.0).unwrap_err();
        assert!(
            matches!(e, MarginalError::NotFinite { t, .. } if t < 0.5),
            "{e}"
        );
        let e = Marginal::linear_sde(&zero, &zero, &Expr::param("s"), 0.0, 1.0).unwrap_err();
        assert!(e.to_string().contains("not substituted"));
        let e = Marginal::explicit(&zero, &zero, &zero, 1.0, 1.0).unwrap_err();
        assert_eq!(e, MarginalError::BadRange { t0: 1.0, t1: 1.0 });
    }
}

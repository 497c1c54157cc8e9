//! Interval arithmetic over one variable, to *prove* properties of coefficient
//! functions on a whole time range (e.g. a jump rate is never negative), and a
//! dense-grid search that finds the worst counterexample when a proof fails.

use super::expr::{Env, EvalError, Expr, Func, Var};
use std::f64::consts::{FRAC_PI_2, PI, TAU};

/// A closed interval `[lo, hi]` of reals.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Interval {
    pub lo: f64,
    pub hi: f64,
}

/// Relative widening applied after every rounded operation. libm functions
/// are accurate to a few ulp, so 1e-15 (about 4.5 ulp) keeps bounds outward.
const WIDEN_REL: f64 = 1e-15;
/// Number of equal pieces [`bound_on`] splits the range into, to limit the
/// overestimation that comes from evaluating each occurrence of `t` separately.
const PIECES: usize = 64;
/// Budget of interval evaluations for [`proves_at_least`].
const PROOF_BUDGET: usize = 20_000;
/// Grid size of [`find_violation`].
const GRID: usize = 2001;

impl Interval {
    /// A single point.
    pub fn point(v: f64) -> Interval {
        Interval { lo: v, hi: v }
    }

    /// `[lo, hi]`, or `None` if it is empty or has a NaN end.
    fn new(lo: f64, hi: f64) -> Option<Interval> {
        (lo <= hi).then_some(Interval { lo, hi })
    }

    /// Rounding slack of a computed value: relative, plus the smallest normal
    /// number for results that may have underflowed; none for a value known
    /// to be exact (so that e.g. `t * (1 - t)` on `[0, h]` is proved `>= 0`).
    fn pad(v: f64, exact: bool) -> f64 {
        if exact {
            0.0
        } else {
            v.abs() * WIDEN_REL + f64::MIN_POSITIVE
        }
    }

    fn contains(self, v: f64) -> bool {
        self.lo <= v && v <= self.hi
    }

    /// The hull of `f` at the endpoints, for `f` nondecreasing on the interval.
    /// Our functions with `f(0) = 0` return exactly 0 there.
    fn monotone(self, f: impl Fn(f64) -> f64) -> Option<Interval> {
        let at = |v: f64| (f(v), v == 0.0 && f(v) == 0.0);
        Interval::hull(&[at(self.lo), at(self.hi)])
    }

    /// The outward-padded hull of computed values, each flagged with whether
    /// it is exact.
    fn hull(values: &[(f64, bool)]) -> Option<Interval> {
        if values.iter().any(|(v, _)| v.is_nan()) {
            return None;
        }
        let lo = values
            .iter()
            .map(|&(v, z)| v - Self::pad(v, z))
            .fold(f64::INFINITY, f64::min);
        let hi = values
            .iter()
            .map(|&(v, z)| v + Self::pad(v, z))
            .fold(f64::NEG_INFINITY, f64::max);
        Interval::new(lo, hi)
    }

    fn add(self, o: Interval) -> Option<Interval> {
        // A sum with a zero operand, or one that comes out as zero, is exact.
        let sum = |a: f64, b: f64| (a + b, a == 0.0 || b == 0.0 || a + b == 0.0);
        Interval::hull(&[sum(self.lo, o.lo), sum(self.hi, o.hi)])
    }

    fn neg(self) -> Interval {
        Interval {
            lo: -self.hi,
            hi: -self.lo,
        }
    }

    fn mul(self, o: Interval) -> Option<Interval> {
        let prod = |a: f64, b: f64| (a * b, a == 0.0 || b == 0.0);
        Interval::hull(&[
            prod(self.lo, o.lo),
            prod(self.lo, o.hi),
            prod(self.hi, o.lo),
            prod(self.hi, o.hi),
        ])
    }

    fn recip(self) -> Option<Interval> {
        if self.contains(0.0) {
            return None;
        }
        Interval::hull(&[(1.0 / self.lo, false), (1.0 / self.hi, false)])
    }

    fn abs(self) -> Interval {
        if self.contains(0.0) {
            Interval {
                lo: 0.0,
                hi: self.hi.max(-self.lo),
            }
        } else if self.lo > 0.0 {
            self
        } else {
            self.neg()
        }
    }

    fn powi(self, k: f64) -> Option<Interval> {
        if k < 0.0 {
            return self.powi(-k)?.recip();
        }
        if k % 2.0 == 0.0 {
            // Even powers are increasing in |x|.
            let a = self.abs();
            return a.monotone(|v| v.powf(k));
        }
        self.monotone(|v| v.powf(k))
    }

    fn pow(self, e: Interval) -> Option<Interval> {
        if e.lo == e.hi && e.lo.fract() == 0.0 {
            return self.powi(e.lo);
        }
        if self.lo > 0.0 {
            return e.mul(self.monotone(f64::ln)?)?.monotone(f64::exp);
        }
        if self.lo >= 0.0 && e.lo == e.hi && e.lo > 0.0 {
            return self.monotone(|v| v.powf(e.lo));
        }
        None
    }

    /// Whether `anchor + period * k` lies in the interval for some integer k
    /// (with slack, so that rounding of the anchor can only add extrema).
    fn hits(self, anchor: f64, period: f64) -> bool {
        let slack = 1e-9 * (1.0 + self.lo.abs() + self.hi.abs());
        let k = ((self.lo - slack - anchor) / period).ceil();
        anchor + period * k <= self.hi + slack
    }

    /// Range of a function with period 2π, maximum at `peak`, minimum at `peak + π`.
    fn periodic(self, f: fn(f64) -> f64, peak: f64) -> Option<Interval> {
        if self.hi - self.lo >= TAU {
            return Interval::new(-1.0, 1.0);
        }
        let at = |v: f64| (f(v), v == 0.0 && f(v) == 0.0);
        let ends = Interval::hull(&[at(self.lo), at(self.hi)])?;
        let hi = if self.hits(peak, TAU) { 1.0 } else { ends.hi };
        let lo = if self.hits(peak + PI, TAU) {
            -1.0
        } else {
            ends.lo
        };
        Interval::new(lo.max(-1.0), hi.min(1.0))
    }
}

fn apply(f: Func, a: Interval, b: Option<Interval>) -> Option<Interval> {
    match f {
        Func::Exp => a.monotone(f64::exp),
        Func::Log if a.lo > 0.0 => a.monotone(f64::ln),
        Func::Sqrt if a.lo >= 0.0 => a.monotone(f64::sqrt),
        Func::Log1p if a.lo > -1.0 => a.monotone(f64::ln_1p),
        Func::Log | Func::Sqrt | Func::Log1p => None,
        Func::Expm1 => a.monotone(f64::exp_m1),
        Func::Tanh => a.monotone(f64::tanh),
        Func::Sinh => a.monotone(f64::sinh),
        Func::Atan => a.monotone(f64::atan),
        Func::Sigmoid => a.monotone(super::expr::sigmoid),
        Func::Softplus => a.monotone(super::expr::softplus),
        // Exact at the ends: no rounding to cover.
        Func::Step => Interval::new(Func::Step.apply(&[a.lo]), Func::Step.apply(&[a.hi])),
        Func::Abs => Some(a.abs()),
        Func::Cosh => a.abs().monotone(f64::cosh),
        Func::Sin => a.periodic(f64::sin, FRAC_PI_2),
        Func::Cos => a.periodic(f64::cos, 0.0),
        Func::Tan if a.hi - a.lo < PI && !a.hits(FRAC_PI_2, PI) => a.monotone(f64::tan),
        Func::Tan => None,
        Func::Min => {
            let b = b?;
            Interval::new(a.lo.min(b.lo), a.hi.min(b.hi))
        }
        Func::Max => {
            let b = b?;
            Interval::new(a.lo.max(b.lo), a.hi.max(b.hi))
        }
    }
}

/// Guaranteed enclosure of `e` when `var` ranges over `range` and every other
/// variable and parameter takes its value from `env`; `None` if `e` may be
/// undefined somewhere in the range (division by an interval holding 0, log of
/// a non-positive number, a pole of tan, an unknown parameter, ...).
pub fn eval_interval(e: &Expr, var: Var, range: Interval, env: &Env) -> Option<Interval> {
    let go = |e: &Expr| eval_interval(e, var, range, env);
    let iv = match e {
        Expr::Const(c) => Interval::point(*c),
        Expr::Var(v) if *v == var => range,
        Expr::Var(v) => Interval::point(env.get(*v)),
        Expr::Param(p) => Interval::point(*env.params.get(p)?),
        Expr::Neg(a) => go(a)?.neg(),
        Expr::Add(a, b) => go(a)?.add(go(b)?)?,
        Expr::Sub(a, b) => go(a)?.add(go(b)?.neg())?,
        Expr::Mul(a, b) => go(a)?.mul(go(b)?)?,
        Expr::Div(a, b) => go(a)?.mul(go(b)?.recip()?)?,
        Expr::Pow(a, b) => go(a)?.pow(go(b)?)?,
        Expr::Call(f, args) => {
            if args.len() != f.arity() {
                return None;
            }
            let a = go(args.first()?)?;
            let b = match args.get(1) {
                Some(b) => Some(go(b)?),
                None => None,
            };
            apply(*f, a, b)?
        }
    };
    // Infinite or NaN bounds prove nothing.
    (iv.lo.is_finite() && iv.hi.is_finite()).then_some(iv)
}

/// The `i`-th of `n` pieces of `[lo, hi]`; neighbours share their endpoint
/// exactly, so the pieces cover the range without gaps.
fn piece(lo: f64, hi: f64, i: usize, n: usize) -> Interval {
    let at = |j: usize| {
        if j == n {
            hi
        } else {
            lo + (hi - lo) * (j as f64 / n as f64)
        }
    };
    Interval {
        lo: at(i),
        hi: at(i + 1),
    }
}

/// Guaranteed (outward) bounds `(min, max)` of `e` for `var` in `[lo, hi]`,
/// evaluated on 64 pieces to keep the overestimate small. `None` when no
/// finite bound can be proved (see [`eval_interval`]).
pub fn bound_on(e: &Expr, var: Var, lo: f64, hi: f64, env: &Env) -> Option<(f64, f64)> {
    if lo.is_nan() || hi.is_nan() || lo > hi {
        return None;
    }
    let mut out: Option<Interval> = None;
    for i in 0..PIECES {
        let iv = eval_interval(e, var, piece(lo, hi, i, PIECES), env)?;
        out = Some(match out {
            Some(o) => Interval::new(o.lo.min(iv.lo), o.hi.max(iv.hi))?,
            None => iv,
        });
    }
    out.map(|iv| (iv.lo, iv.hi))
}

/// Proves `e >= threshold` for every `var` in `[lo, hi]` by bisecting until
/// each piece's interval bound is at least `threshold`. `false` means "not
/// proved" (a counterexample exists, or the budget ran out).
pub fn proves_at_least(e: &Expr, var: Var, lo: f64, hi: f64, threshold: f64, env: &Env) -> bool {
    if lo.is_nan() || hi.is_nan() || lo > hi {
        return false;
    }
    let min_width = (hi - lo) * 1e-9;
    let mut stack = vec![Interval { lo, hi }];
    let mut budget = PROOF_BUDGET;
    while let Some(r) = stack.pop() {
        if budget == 0 {
            return false;
        }
        budget -= 1;
        match eval_interval(e, var, r, env) {
            Some(iv) if iv.lo >= threshold => continue,
            Some(iv) if iv.hi < threshold => return false,
            _ if r.hi - r.lo <= min_width => return false,
            _ => {
                let mid = 0.5 * (r.lo + r.hi);
                stack.push(Interval { lo: r.lo, hi: mid });
                stack.push(Interval { lo: mid, hi: r.hi });
            }
        }
    }
    true
}

/// A requirement on the value of an expression.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Constraint {
    /// `value >= c`.
    AtLeast(f64),
    /// `value > c`.
    Above(f64),
    /// `value <= c`.
    AtMost(f64),
    /// The value is finite (no NaN or infinity).
    Finite,
}

impl Constraint {
    /// How badly `v` violates the constraint (`None` if it holds). Non-finite
    /// values are the worst violations.
    pub fn violation(self, v: f64) -> Option<f64> {
        if !v.is_finite() {
            return Some(f64::INFINITY);
        }
        match self {
            Constraint::AtLeast(c) => (v < c).then_some(c - v),
            Constraint::Above(c) => (v <= c).then_some(c - v),
            Constraint::AtMost(c) => (v > c).then_some(v - c),
            Constraint::Finite => None,
        }
    }
}

/// Searches `[lo, hi]` for the worst violation of `constraint` by `e` as a
/// function of `var` (other values from `env`): a grid of 2001 points
/// including both ends, then a golden-section refinement around the worst
/// grid point. Returns `(point, value)`, or `None` if no violation was found.
pub fn find_violation(
    e: &Expr,
    var: Var,
    constraint: Constraint,
    lo: f64,
    hi: f64,
    env: &Env,
) -> Result<Option<(f64, f64)>, EvalError> {
    let value = |v: f64| e.eval(&env.with(var, v));
    let at = |i: usize| piece(lo, hi, i, GRID - 1).lo;
    let mut worst: Option<(usize, f64, f64)> = None;
    for i in 0..GRID {
        let v = value(at(i))?;
        if let Some(sev) = constraint.violation(v) {
            if worst.is_none_or(|(_, s, _)| sev > s) {
                worst = Some((i, sev, v));
            }
        }
    }
    let Some((i, sev, v)) = worst else {
        return Ok(None);
    };
    let refined = refine(
        &value,
        constraint,
        at(i.saturating_sub(1)),
        at((i + 1).min(GRID - 1)),
    )?;
    let (t, v) = Some(refined)
        .filter(|(_, rv)| constraint.violation(*rv).is_some_and(|s| s > sev))
        .unwrap_or((at(i), v));
    Ok(Some((t, v)))
}

/// Golden-section search for the largest violation on `[a, b]`.
fn refine(
    value: &dyn Fn(f64) -> Result<f64, EvalError>,
    c: Constraint,
    mut a: f64,
    mut b: f64,
) -> Result<(f64, f64), EvalError> {
    const INV_PHI: f64 = 0.618_033_988_749_894_9;
    let sev = |v: f64| c.violation(v).unwrap_or(f64::NEG_INFINITY);
    for _ in 0..60 {
        let (x1, x2) = (b - INV_PHI * (b - a), a + INV_PHI * (b - a));
        if sev(value(x1)?) >= sev(value(x2)?) {
            b = x2;
        } else {
            a = x1;
        }
    }
    let m = 0.5 * (a + b);
    Ok((m, value(m)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn t() -> Expr {
        Expr::t()
    }

    #[test]
    fn bounds_enclose_and_are_tight_enough() {
        let params = HashMap::new();
        let env = Env::new(&params);
        let beta = 0.1 + 19.9 * t();
        let (lo, hi) = bound_on(&beta, Var::T, 0.0, 1.0, &env).unwrap();
        assert!((0.0999999..=0.1).contains(&lo) && (20.0..20.00001).contains(&hi));
        // Dependency problem: t * (1 - t) is bounded per piece, so the
        // overestimate shrinks with the piece width.
        let (lo, hi) = bound_on(&(t() * (1.0 - t())), Var::T, 0.0, 1.0, &env).unwrap();
        assert!(
            (-0.02..=0.0).contains(&lo) && (0.25..0.27).contains(&hi),
            "{lo} {hi}"
        );
        let (lo, hi) =
            bound_on(&Expr::call1(Func::Sin, 3.0 * t()), Var::T, 0.0, 1.0, &env).unwrap();
        assert!(lo <= 0.0 && lo > -1e-9 && hi == 1.0);
        let (lo, hi) = bound_on(&Expr::call1(Func::Cos, t()), Var::T, -0.5, 4.0, &env).unwrap();
        assert!(lo == -1.0 && hi == 1.0);
        assert!(bound_on(&(1.0 / (t() - 0.5)), Var::T, 0.0, 1.0, &env).is_none());
        assert!(bound_on(&t().ln(), Var::T, 0.0, 1.0, &env).is_none());
        assert!(bound_on(&Expr::param("k"), Var::T, 0.0, 1.0, &env).is_none());
    }

    #[test]
    fn bounds_hold_at_sampled_points() {
        let params = HashMap::from([("k".to_string(), 2.5)]);
        let env = Env::new(&params).with(Var::X, 0.3);
        let exprs = [
            (Expr::param("k") * t()).exp() * Expr::call1(Func::Tanh, Expr::x() - t()),
            Expr::call1(Func::Softplus, t() * 4.0 - 2.0) / (1.0 + t() * t()),
            t().pow(Expr::c(3.0)) - Expr::call1(Func::Abs, t() - 0.2).sqrt(),
            Expr::Call(Func::Min, vec![Expr::call1(Func::Step, t() - 0.5), t()]),
            Expr::c(2.0).pow(t()) * Expr::call1(Func::Atan, t() * 7.0),
        ];
        for e in &exprs {
            let (lo, hi) = bound_on(e, Var::T, -1.0, 1.5, &env).unwrap();
            for i in 0..=1000 {
                let v = e
                    .eval(&env.with(Var::T, -1.0 + 2.5 * i as f64 / 1000.0))
                    .unwrap();
                assert!(lo <= v && v <= hi, "{e}: {v} outside [{lo}, {hi}]");
            }
        }
    }

    #[test]
    fn proofs_and_counterexamples() {
        let params = HashMap::new();
        let env = Env::new(&params);
        // Non-negative on [0, 1] but touching 0: bisection still proves >= 0.
        let rate = t() * (1.0 - t());
        assert!(proves_at_least(&rate, Var::T, 0.0, 1.0, 0.0, &env));
        let sin2 = 1.0 + Expr::call1(Func::Sin, 3.0 * t()).pow(Expr::c(2.0));
        assert!(proves_at_least(&sin2, Var::T, 0.0, 1.0, 1.0, &env));
        let bad = 0.53 - t();
        assert!(!proves_at_least(&bad, Var::T, 0.0, 1.0, 0.0, &env));
        // Minimum of sin(2 pi t) - 0.2 on [0, 1] is at t = 0.75: -1.2.
        let e = Expr::call1(Func::Sin, 2.0 * std::f64::consts::PI * t()) - 0.2;
        let (at, v) = find_violation(&e, Var::T, Constraint::AtLeast(0.0), 0.0, 1.0, &env)
            .unwrap()
            .unwrap();
        assert!(
            (at - 0.75).abs() < 1e-6 && (v + 1.2).abs() < 1e-12,
            "{at} {v}"
        );
        let ok = find_violation(&rate, Var::T, Constraint::AtLeast(0.0), 0.0, 1.0, &env).unwrap();
        assert_eq!(ok, None);
        let nan = find_violation(
            &(t() - 0.5).sqrt(),
            Var::T,
            Constraint::Finite,
            0.0,
            1.0,
            &env,
        );
        assert!(nan.unwrap().is_some_and(|(at, v)| at < 0.5 && v.is_nan()));
        let unknown = find_violation(
            &Expr::param("q"),
            Var::T,
            Constraint::Finite,
            0.0,
            1.0,
            &env,
        );
        assert!(unknown.is_err());
    }

    fn arb_expr() -> impl proptest::strategy::Strategy<Value = Expr> {
        use proptest::prelude::*;
        let leaf = prop_oneof![(-3.0f64..3.0).prop_map(Expr::Const), Just(Expr::t())];
        leaf.prop_recursive(4, 24, 2, |inner| {
            let funcs: Vec<Func> = Func::ALL
                .iter()
                .filter_map(|n| Func::from_name(n))
                .collect();
            prop_oneof![
                (inner.clone(), inner.clone()).prop_map(|(a, b)| a + b),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| a - b),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| a * b),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| a / b),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| a.pow(b)),
                (inner.clone(), -2i8..4).prop_map(|(a, k)| a.pow(Expr::c(f64::from(k)))),
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

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            failure_persistence: None,
            ..proptest::prelude::ProptestConfig::default()
        })]
        /// Whenever a bound is claimed, every sampled value lies inside it.
        #[test]
        fn bounds_are_guaranteed(e in arb_expr(), lo in -2.0f64..2.0, w in 0.0f64..2.0) {
            let params = HashMap::new();
            let env = Env::new(&params);
            if let Some((blo, bhi)) = bound_on(&e, Var::T, lo, lo + w, &env) {
                for i in 0..=200 {
                    let tv = lo + w * (i as f64 / 200.0);
                    let v = e.eval(&env.with(Var::T, tv)).unwrap();
                    proptest::prop_assert!(blo <= v && v <= bhi, "{} at {}: {} not in [{}, {}]", e, tv, v, blo, bhi);
                }
            }
        }
    }
}

//! Λ_t = ∫_{t_0}^t λ(s) ds of an event rate given as an expression of t: the deletion rate of
//! the trans-dimensional family and the jump rate of a jump process. A closed form where the
//! IR's integrator finds one (checked against a quadrature), else Simpson's rule on a table.

use crate::ir::Expr;

/// Λ_t = ∫_{t_0}^t λ(s) ds.
#[derive(Clone, Debug)]
pub(crate) enum Cumulative {
    /// An antiderivative F with F(0) = 0: Λ_t = F(t) − F(t_0).
    Closed { f: Expr, at_t0: f64 },
    /// Values on a uniform grid of `values.len() − 1` intervals over [t_0, t_1].
    Table { t0: f64, h: f64, values: Vec<f64> },
}

impl Cumulative {
    pub(crate) fn new(rate: &Expr, t0: f64, t1: f64) -> Cumulative {
        if let Some(f) = crate::ir::symbolic::integrate_t(rate) {
            let at_t0 = f.eval_t(t0);
            // The closed form must agree with a quadrature of the rate (guards the integrator).
            let table = Cumulative::table(rate, t0, t1);
            let agrees = (0..=16).all(|k| {
                let t = t0 + (t1 - t0) * k as f64 / 16.0;
                let (a, b) = (f.eval_t(t) - at_t0, table.at(t));
                (a - b).abs() <= 1e-4 * (1.0 + b.abs())
            });
            if agrees {
                return Cumulative::Closed { f, at_t0 };
            }
            return table;
        }
        Cumulative::table(rate, t0, t1)
    }

    /// Composite Simpson on each of 8192 intervals (rates with steps are integrated to about
    /// the interval width, 1e-4 of the horizon at worst).
    fn table(rate: &Expr, t0: f64, t1: f64) -> Cumulative {
        let n = 8192;
        let h = (t1 - t0) / n as f64;
        let mut values = Vec::with_capacity(n + 1);
        let mut acc = 0.0;
        values.push(0.0);
        for i in 0..n {
            let a = t0 + h * i as f64;
            let r = |t: f64| rate.eval_t(t).max(0.0);
            acc += h / 6.0 * (r(a) + 4.0 * r(a + 0.5 * h) + r(a + h));
            values.push(acc);
        }
        Cumulative::Table { t0, h, values }
    }

    pub(crate) fn at(&self, t: f64) -> f64 {
        match self {
            Cumulative::Closed { f, at_t0 } => (f.eval_t(t) - at_t0).max(0.0),
            Cumulative::Table { t0, h, values } => {
                let u = ((t - t0) / h).max(0.0);
                let i = (u.floor() as usize).min(values.len() - 2);
                let w = (u - i as f64).min(1.0);
                values[i] * (1.0 - w) + values[i + 1] * w
            }
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        matches!(self, Cumulative::Closed { .. })
    }

    /// One line for `difc explain`: the closed form, or how Λ is tabulated.
    pub(crate) fn describe(&self) -> String {
        match self {
            Cumulative::Closed { f, at_t0 } => {
                // The sign of the shift is folded into the operator (no `− -0.5`).
                let shift = if *at_t0 == 0.0 {
                    String::new()
                } else if *at_t0 < 0.0 {
                    format!(" + {}", Expr::Const(-at_t0))
                } else {
                    format!(" − {}", Expr::Const(*at_t0))
                };
                format!("{f}{shift}   [closed form]")
            }
            Cumulative::Table { .. } => {
                "[no closed form: tabulated, Simpson on 8192 intervals]".to_string()
            }
        }
    }
}

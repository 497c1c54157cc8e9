//! The derived samplers against a case with a known exact score: Gaussian data under each
//! Gaussian stdlib process. With the analytic ε-prediction plugged in for the network, every
//! solver must reproduce the data's mean and covariance.

mod common;

use difc::compile::{self, Solver};
use nalgebra::{Matrix2, Vector2};

const MU: [f64; 2] = [1.5, -0.5];
const SIGMA0: f64 = 0.3;

fn spec(process: &str, import: &str) -> String {
    format!(
        "use stdlib.{import}\nexperiment e {{\n  data = gaussian(n = 100, mean = [1.5, -0.5], std = 0.3)\n  process = {process}\n  loss {{ target = eps, t_min = 0.001 }}\n}}\n"
    )
}

/// Mean and covariance of row-major 2-D samples.
fn moments(x: &[f32]) -> (Vector2<f64>, Matrix2<f64>) {
    let n = x.len() / 2;
    let mut mean = Vector2::zeros();
    for i in 0..n {
        mean += Vector2::new(x[2 * i] as f64, x[2 * i + 1] as f64);
    }
    mean /= n as f64;
    let mut cov = Matrix2::zeros();
    for i in 0..n {
        let d = Vector2::new(x[2 * i] as f64, x[2 * i + 1] as f64) - mean;
        cov += d * d.transpose();
    }
    (mean, cov / (n as f64 - 1.0))
}

fn check(process: &str, import: &str, solver: Solver, steps: usize, tol_mean: f64, tol_cov: f64) {
    check_target(process, import, "eps", solver, steps, tol_mean, tol_cov);
}

/// Like [`check`] with the network predicting `target` (eps, x0 or score).
fn check_target(
    process: &str,
    import: &str,
    target: &str,
    solver: Solver,
    steps: usize,
    tol_mean: f64,
    tol_cov: f64,
) {
    let exp = common::experiment(
        &spec(process, import).replace("target = eps", &format!("target = {target}")),
    );
    let fwd = compile::compile(&exp, 2).expect("compiles");
    let marginal = fwd.gaussian_marginal().expect("Gaussian").clone();
    // Exact ε-prediction for data N(μ, σ0² I): ε̂ = s (x − m μ − c) / (m² σ0² + s²).
    let mut exact = |x: &[f32], t: f64| -> Result<Vec<f32>, String> {
        let (m, c, s) = marginal.at(t);
        let var = m * m * SIGMA0 * SIGMA0 + s * s;
        Ok(x.iter()
            .enumerate()
            .map(|(i, v)| {
                let r = *v as f64 - m * MU[i % 2] - c;
                let out = match target {
                    "x0" => MU[i % 2] + m * SIGMA0 * SIGMA0 * r / var,
                    "score" => -r / var,
                    _ => s * r / var,
                };
                out as f32
            })
            .collect())
    };
    let samples = compile::sample(&*fwd, solver, steps, 4000, 7, 0.0, &mut exact, &mut |_| {})
        .expect("samples");
    let (mean, cov) = moments(&samples);
    let want_cov = Matrix2::identity() * SIGMA0 * SIGMA0;
    let mean_err = (mean - Vector2::new(MU[0], MU[1])).norm();
    let cov_err = (cov - want_cov).norm();
    assert!(
        mean_err < tol_mean,
        "{process} {solver:?}: mean {mean:?} (error {mean_err})"
    );
    assert!(
        cov_err < tol_cov,
        "{process} {solver:?}: covariance {cov:?} (error {cov_err})"
    );
}

#[test]
fn vp_ode_heun_recovers_gaussian_data() {
    check("vp()", "vp", Solver::OdeHeun, 200, 0.03, 0.02);
}

#[test]
fn vp_euler_maruyama_recovers_gaussian_data() {
    check("vp()", "vp", Solver::EulerMaruyama, 500, 0.04, 0.03);
}

#[test]
fn vp_exponential_integrators_recover_gaussian_data() {
    check("vp()", "vp", Solver::ExponentialOde, 200, 0.03, 0.02);
    check("vp()", "vp", Solver::ExponentialSde, 500, 0.04, 0.03);
}

#[test]
fn subvp_and_ve_recover_gaussian_data() {
    check("subvp()", "subvp", Solver::OdeHeun, 200, 0.03, 0.02);
    check("ve()", "ve", Solver::OdeHeun, 400, 0.04, 0.03);
}

#[test]
fn ou_exponential_ode_recovers_gaussian_data() {
    check("ou()", "ou", Solver::ExponentialOde, 1000, 0.03, 0.02);
}

#[test]
fn sampling_is_deterministic_and_independent_of_chunking() {
    let exp = common::experiment(&spec("vp()", "vp"));
    let fwd = compile::compile(&exp, 2).expect("compiles");
    let mut zero = |x: &[f32], _t: f64| -> Result<Vec<f32>, String> { Ok(vec![0.0; x.len()]) };
    let mut draw = |n: usize| {
        compile::sample(
            &*fwd,
            Solver::EulerMaruyama,
            20,
            n,
            3,
            0.0,
            &mut zero,
            &mut |_| {},
        )
        .expect("samples")
    };
    let (a, b, c) = (draw(100), draw(100), draw(50));
    assert_eq!(a, b);
    // The first 50 samples do not depend on how many are drawn.
    assert_eq!(&a[..100], &c[..]);
}

#[test]
fn x0_and_score_parameterisations_sample_the_same_law() {
    check_target("vp()", "vp", "x0", Solver::OdeHeun, 200, 0.03, 0.02);
    check_target("vp()", "vp", "score", Solver::OdeHeun, 200, 0.03, 0.02);
}

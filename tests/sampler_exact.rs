//! The derived samplers against a case with a known exact score: Gaussian data under each
//! Gaussian stdlib process. With the analytic ε-prediction plugged in for the network, every
//! solver must reproduce the data's mean and covariance.

mod common;

use difc::compile::{self, SampleNets, Solver, TimeGrid};
use difc::ir::Target;
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

/// Nichol's cosine with the offset at the noise end (specs/cosine.diff).
const COSINE: &str = "process cosine(s = 0.008) {\n  time = [0, 1]\n  mean(x, t) = cos(0.5 * pi * t / (1 + s)) * x\n  std(t) = sin(0.5 * pi * t / (1 + s))\n}\n";
/// The cosine without an offset: α_1 = 6e-17.
const COSINE_RAW: &str = "process cosine() {\n  time = [0, 1]\n  mean(x, t) = cos(0.5 * pi * t) * x\n  std(t) = sin(0.5 * pi * t)\n}\n";
/// The rectified-flow interpolant: α_1 = 0, σ_0 = 0.
const RECTIFIED: &str =
    "process rectified_flow() {\n  time = [0, 1]\n  mean(x, t) = (1 - t) * x\n  std(t) = t\n}\n";

/// A Gaussian-data experiment on `process` (declared or imported by `header`).
fn experiment_on(header: &str, process: &str, target: &str) -> difc::ir::Experiment {
    common::experiment(&format!(
        "{header}\nexperiment e {{\n  data = gaussian(n = 100, mean = [1.5, -0.5], std = 0.3)\n  process = {process}\n  loss {{ target = {target}, t_min = 0.001 }}\n  sample {{ solver = ddim }}\n}}\n"
    ))
}

/// Mean and covariance errors of 4000 samples drawn with the exact network output for `target`.
fn errors(
    exp: &difc::ir::Experiment,
    solver: Solver,
    grid: TimeGrid,
    eta: f64,
    steps: usize,
) -> (f64, f64) {
    let target = exp.loss.target;
    let fwd = compile::compile(exp, 2).expect("compiles");
    let marginal = fwd.gaussian_marginal().expect("Gaussian").clone();
    let mut exact = |x: &[f32], t: f64| -> Result<Vec<f32>, String> {
        let (m, c, s) = marginal.at(t);
        let var = m * m * SIGMA0 * SIGMA0 + s * s;
        Ok(x.iter()
            .enumerate()
            .map(|(i, v)| {
                let r = *v as f64 - m * MU[i % 2] - c;
                let out = match target {
                    Target::X0 => MU[i % 2] + m * SIGMA0 * SIGMA0 * r / var,
                    Target::Score => -r / var,
                    Target::Eps => s * r / var,
                };
                out as f32
            })
            .collect())
    };
    let mut nets = SampleNets::score(&mut exact);
    let samples = compile::sample_with(
        &*fwd,
        solver,
        grid,
        eta,
        steps,
        4000,
        7,
        0.0,
        &mut nets,
        &mut |_| {},
    )
    .unwrap_or_else(|e| panic!("{solver:?} on {grid:?}: {e}"));
    assert!(samples.iter().all(|v| v.is_finite()));
    let (mean, cov) = moments(&samples);
    let want_cov = Matrix2::identity() * SIGMA0 * SIGMA0;
    (
        (mean - Vector2::new(MU[0], MU[1])).norm(),
        (cov - want_cov).norm(),
    )
}

#[test]
fn every_offered_solver_recovers_gaussian_data_on_every_schedule() {
    let cases = [
        ("use stdlib.vp", "vp()", "eps"),
        ("use stdlib.vp", "vp()", "score"),
        (COSINE, "cosine()", "eps"),
        (COSINE, "cosine()", "x0"),
        (COSINE_RAW, "cosine()", "x0"),
        (RECTIFIED, "rectified_flow()", "x0"),
    ];
    for (header, process, target) in cases {
        let exp = experiment_on(header, process, target);
        let fwd = compile::compile(&exp, 2).expect("compiles");
        assert!(fwd.solvers().contains(&Solver::DpmSolverPp2m));
        for &solver in fwd.solvers() {
            let steps = if solver.is_stochastic() { 500 } else { 200 };
            let (me, ce) = errors(&exp, solver, TimeGrid::Uniform, 0.0, steps);
            assert!(
                me < 0.04 && ce < 0.03,
                "{process} ({target}) {solver:?}: mean error {me}, covariance error {ce}"
            );
        }
    }
}

#[test]
fn singular_schedules_offer_only_the_marginal_solvers() {
    // At α_T = 0 the data-prediction forms only (the exponential ODE divides by α_t).
    let data_forms = [Solver::Ddim, Solver::DpmSolverPp2m];
    for (header, process, target, want) in [
        (COSINE_RAW, "cosine()", Target::X0, &data_forms[..]),
        (RECTIFIED, "rectified_flow()", Target::X0, &data_forms[..]),
        // An ε network at α_T = 0 cannot give x̂0: nothing is offered (check refuses it).
        (COSINE_RAW, "cosine()", Target::Eps, &[][..]),
    ] {
        let mut exp = experiment_on(header, process, "x0");
        exp.loss.target = target;
        let fwd = compile::compile(&exp, 2).expect("compiles");
        assert_eq!(fwd.solvers(), want, "{process} ({target:?})");
    }
}

#[test]
fn ddim_with_eta_and_the_snr_grids_recover_gaussian_data() {
    let vp = experiment_on("use stdlib.vp", "vp()", "eps");
    let (me, ce) = errors(&vp, Solver::Ddim, TimeGrid::Uniform, 1.0, 500);
    assert!(me < 0.04 && ce < 0.03, "ddim η = 1: {me}, {ce}");
    let cosine = experiment_on(COSINE, "cosine()", "eps");
    for exp in [&vp, &cosine] {
        for grid in [TimeGrid::LogSnr, TimeGrid::Edm] {
            for solver in [Solver::DpmSolverPp2m, Solver::Ddim, Solver::OdeHeun] {
                let (me, ce) = errors(exp, solver, grid, 0.0, 50);
                assert!(me < 0.04 && ce < 0.03, "{solver:?} on {grid:?}: {me}, {ce}");
            }
        }
    }
}

#[test]
fn dpmpp_2m_at_few_steps_beats_euler() {
    // On DPM-Solver's grid (uniform in λ). Measured: at 10 steps dpmpp_2m 0.006 + 0.006,
    // ode_euler 0.015 + 0.050 (mean + covariance errors).
    let vp = experiment_on("use stdlib.vp", "vp()", "eps");
    for steps in [5, 10] {
        let (me, ce) = errors(&vp, Solver::DpmSolverPp2m, TimeGrid::LogSnr, 0.0, steps);
        let (ee, ec) = errors(&vp, Solver::OdeEuler, TimeGrid::LogSnr, 0.0, steps);
        assert!(
            me + ce < 0.5 * (ee + ec),
            "{steps} steps: dpmpp_2m {me} + {ce}, ode_euler {ee} + {ec}"
        );
    }
}

#[test]
fn the_edm_grid_is_rho_7_in_sigma_over_alpha() {
    use difc::compile::edm_grid;
    // γ = 2 log σ̃ with σ̃ = t/(1 − t) · 10: σ̃ = 0 at t = 0.
    let sig = |t: f64| 10.0 * t / (1.0 - 0.5 * t);
    let g = |t: f64| 2.0 * sig(t).ln();
    let ts = edm_grid(&g, 1.0, 0.0, 8).expect("grid");
    assert_eq!((ts[0], ts[8]), (1.0, 0.0));
    let (a, b) = (sig(1.0).powf(1.0 / 7.0), 0.0);
    for (k, t) in ts.iter().enumerate().take(8) {
        let want = (a + (b - a) * k as f64 / 8.0).powf(7.0);
        assert!(
            (sig(*t) / want - 1.0).abs() < 1e-6,
            "k = {k}: {} vs {want}",
            sig(*t)
        );
    }
    // α_T = 0 (σ̃ infinite at the horizon) has no EDM grid.
    assert!(edm_grid(&|t: f64| 2.0 * (t / (1.0 - t)).ln(), 1.0, 0.0, 4).is_err());
}

//! The generator identity: a test of the jump-process score targets with power.
//!
//! For the forward process dX = −(θ/2)X dt + g dW + dJ (jumps at rate λ with amplitude law μ)
//! and its generalized score S (the probability-flow velocity is v = −θx/2 − S), the law p_t
//! of X_t satisfies two expressions for d/dt E[φ(X_t)] of a smooth bounded test function φ:
//! the continuity equation gives E[∇φ·v] and the Kolmogorov forward equation gives E[Lφ] with
//! Lφ = −(θ/2)x·∇φ + (g²/2)Δφ + λE_J[φ(x + J) − φ(x)]. The drift terms cancel, leaving
//!
//!   E[ ∇φ(X)·S(X, t) + (g²/2)Δφ(X) + λ(φ(X + J) − φ(X)) ] = 0,   X ~ p_t, J ~ μ independent.
//!
//! (The no-jump atom of a pure-jump model carries S = 0 and adds nothing: ∇𝒱 has no atom.)
//! The left side is a mean of i.i.d. terms with finite variance (∇φ vanishes where S has its
//! 1/(r ln 1/r) singularity), so with n forward draws its z-score is N(0, 1) for the true
//! score and drifts like √n for a wrong one. Unlike the probability-flow test, no ODE runs, so
//! there is no discretization bias and no atom that the flow cannot land: the statistic tests
//! the score function itself.

use difc::compile::jump::{JlParams, JlScore, JumpLaw, JumpParams, JumpSampler};
use difc::rng::{stream, Purpose};
use rand::Rng;
use rand_distr::StandardNormal;

/// A candidate score: `score(Δ, t, out)` writes S(Δ, t).
type Score<'a> = dyn FnMut(&[f64], f64, &mut [f64]) + 'a;

/// A Gaussian bump test function φ(Δ) = exp(−|Δ − c|²/(2ℓ²)).
#[derive(Clone, Copy)]
struct Bump {
    centre: [f64; 2],
    width: f64,
}

impl Bump {
    fn value(&self, d: &[f64]) -> f64 {
        let q: f64 = d
            .iter()
            .zip(&self.centre)
            .map(|(a, c)| (a - c) * (a - c))
            .sum();
        (-0.5 * q / (self.width * self.width)).exp()
    }
    /// (∇φ, Δφ) at `d`.
    fn grad_lap(&self, d: &[f64]) -> ([f64; 2], f64) {
        let l2 = self.width * self.width;
        let phi = self.value(d);
        let y = [d[0] - self.centre[0], d[1] - self.centre[1]];
        let q = y[0] * y[0] + y[1] * y[1];
        (
            [-y[0] / l2 * phi, -y[1] / l2 * phi],
            (q / (l2 * l2) - 2.0 / l2) * phi,
        )
    }
}

/// One jump amplitude J ~ μ.
fn jump(law: JumpLaw, sigma2: f64, rng: &mut impl Rng, out: &mut [f64]) {
    match law {
        JumpLaw::Laplace => {
            difc::compile::jump::sample::laplace_into(rng, 1.0, sigma2, out).expect("laplace")
        }
        JumpLaw::Gaussian => {
            for o in out.iter_mut() {
                let g: f64 = rng.sample(StandardNormal);
                *o = sigma2.sqrt() * g;
            }
        }
    }
}

/// The z-score of the generator identity at time `t` for `n` forward draws of point data at
/// 0 (the increment Δ), with `score(Δ, t, out)` the candidate score and `jumps` fresh
/// amplitudes per draw averaged in the jump term.
fn identity_z(
    p: &JumpParams,
    score: &mut Score<'_>,
    phi: Bump,
    t: f64,
    n: usize,
    seed: u64,
) -> f64 {
    const JUMPS: usize = 16;
    let sampler = JumpSampler::new(*p).expect("sampler");
    let (mut sum, mut sum2) = (0.0, 0.0);
    let mut x = [0f64; 2];
    let mut s = [0f64; 2];
    let mut j = [0f64; 2];
    for i in 0..n {
        let mut rng = stream(seed, Purpose::Test, 1, i as u64);
        sampler.increment(t, &mut rng, &mut x).expect("increment");
        score(&x, t, &mut s);
        let (grad, lap) = phi.grad_lap(&x);
        let here = phi.value(&x);
        let mut jumped = 0.0;
        for _ in 0..JUMPS {
            jump(p.law, p.sigma2, &mut rng, &mut j);
            jumped += phi.value(&[x[0] + j[0], x[1] + j[1]]) - here;
        }
        let y =
            grad[0] * s[0] + grad[1] * s[1] + 0.5 * p.gvar * lap + p.lambda * jumped / JUMPS as f64;
        sum += y;
        sum2 += y * y;
    }
    let mean = sum / n as f64;
    let var = (sum2 / n as f64 - mean * mean).max(1e-300);
    mean / (var / n as f64).sqrt()
}

/// JL with θ = λ = σ² = 1 (b = 1/2), D = 2: S = −Δ/2 − √b Δ̂ E/(1−E)·K₁/K₀ (m = 1). The
/// broken variants drop or double the Bessel term, or drop the linear term.
type Variant = fn(f64, f64) -> f64;
const VARIANTS: [(&str, Variant); 4] = [
    ("exact", |s, _d| s),
    ("bessel term dropped", |_s, d| -0.5 * d),
    ("bessel term doubled", |s, d| 2.0 * s + 0.5 * d),
    ("linear term dropped", |s, d| s + 0.5 * d),
];

fn jl_params() -> JumpParams {
    JumpParams {
        law: JumpLaw::Laplace,
        dim: 2,
        theta: 1.0,
        lambda: 1.0,
        sigma2: 1.0,
        gvar: 0.0,
    }
}

fn jl_score(variant: Variant) -> impl FnMut(&[f64], f64, &mut [f64]) {
    let score = JlScore::new(JlParams::new(2, 1.0, 1.0, 1.0)).expect("score");
    move |d: &[f64], t: f64, out: &mut [f64]| {
        score.score_target(d, t, out).expect("score");
        for (o, di) in out.iter_mut().zip(d) {
            *o = variant(*o, *di);
        }
    }
}

/// Rejection threshold on |z|. Each check takes the largest |z| over [`TIMES`]; for the true
/// score that exceeds 3.5 with probability ≤ 3 × 4.7e−4 = 0.14 % (Bonferroni, z ~ N(0, 1)).
const Z_CRIT: f64 = 3.5;
/// The times of the identity checks: early (large Bessel term), middle, late.
const TIMES: [f64; 3] = [0.3, 1.0, 3.0];
/// Forward draws per check.
const N: usize = 20_000;
const PHI: Bump = Bump {
    centre: [0.0, 0.0],
    width: 1.0,
};

/// The largest |z| over [`TIMES`] of the identity for process `p` and candidate `score`.
fn max_abs_z(p: &JumpParams, score: &mut Score<'_>, n: usize, seed: u64) -> f64 {
    TIMES
        .iter()
        .map(|&t| identity_z(p, score, PHI, t, n, seed).abs())
        .fold(0.0, f64::max)
}

/// The closed-form JL score (m = λ/θ = 1 and 2) satisfies the identity; each broken variant
/// of it fails. Measured z at seed 1, n = 20 000, ℓ = 1 (t = 0.3, 1, 3): exact −0.2, −0.1,
/// −1.6; Bessel term dropped −185, −73, −12; doubled 33, 43, 8.9; linear term dropped −11,
/// −68, −152. Rates over 200 seeds: `identity_test_rates`.
#[test]
fn jl_score_satisfies_the_generator_identity_and_broken_variants_fail() {
    let p = jl_params();
    for (name, v) in VARIANTS {
        let z = max_abs_z(&p, &mut jl_score(v), N, 1);
        println!("{name}: max |z| {z:.1}");
        if name == "exact" {
            assert!(z < Z_CRIT, "the exact score fails the identity: |z| = {z}");
        } else {
            assert!(z > Z_CRIT, "{name} passes the identity: |z| = {z}");
        }
    }
    // m = 2 (λ = 2θ): the binomial mixture of two Laplace shapes.
    let p2 = JumpParams {
        lambda: 2.0,
        ..jl_params()
    };
    let mut exact2 = {
        let score = JlScore::new(JlParams::new(2, 1.0, 2.0, 1.0)).expect("score");
        move |d: &[f64], t: f64, out: &mut [f64]| score.score_target(d, t, out).expect("score")
    };
    let z = max_abs_z(&p2, &mut exact2, N, 1);
    assert!(z < Z_CRIT, "m = 2: the exact score fails: |z| = {z}");
}

/// The tabulated targets (JDL: Laplace amplitudes, and Gaussian amplitudes; gvar = 1, σ² = 2,
/// λ = θ = 1) satisfy the identity, so the Hankel quadrature and the bilinear interpolation
/// are right to within the test's resolution; tables built for a wrong rate, Gaussian variance
/// or jump variance fail. Measured z at n = 20 000 (t = 0.3, 1, 3), Laplace: true −0.0, 0.1,
/// 0.3; rate 2: 13.9, 5.3, 0.5; gvar 0.5: 20.2, 6.6, 1.0; σ² 1.5: −5.1, −2.9, −0.2 (Gaussian
/// amplitudes alike). The σ² error is the smallest, so this test uses 4× the draws.
#[test]
fn tabulated_scores_satisfy_the_generator_identity_and_wrong_tables_fail() {
    use difc::compile::jump::{JdlTable, TableGrid};
    for law in [JumpLaw::Laplace, JumpLaw::Gaussian] {
        let p = JumpParams {
            law,
            dim: 2,
            theta: 1.0,
            lambda: 1.0,
            sigma2: 2.0,
            gvar: 1.0,
        };
        for (name, q) in [
            ("true", p),
            ("rate 2", JumpParams { lambda: 2.0, ..p }),
            ("gvar 0.5", JumpParams { gvar: 0.5, ..p }),
            ("sigma2 1.5", JumpParams { sigma2: 1.5, ..p }),
        ] {
            let table = JdlTable::build(&q, TableGrid::paper()).expect("table");
            let mut s = |d: &[f64], t: f64, out: &mut [f64]| {
                table.score_target(d, t, out).expect("in the table")
            };
            let z = max_abs_z(&p, &mut s, 4 * N, 2);
            println!("{law:?} {name}: max |z| {z:.1}");
            if name == "true" {
                assert!(z < Z_CRIT, "{law:?}: the true table fails: |z| = {z}");
            } else {
                assert!(z > Z_CRIT, "{law:?}: the {name} table passes: |z| = {z}");
            }
        }
    }
}

/// The test's error rates over 200 seeds (n = 20 000 each): the exact score must pass in
/// ≥ 99 % of seeds and each broken variant fail in ≥ 99 %. Run with
/// `cargo test --release --test jump_score_identity -- --ignored --nocapture`.
/// Measured (seeds 1000–1199): exact rejected in 0/200 (max |z| 0.23–2.79); Bessel term
/// dropped 200/200 (|z| 177–189), doubled 200/200 (40–45), linear term dropped 200/200
/// (148–154). 56 s.
#[test]
#[ignore]
fn identity_test_rates() {
    const SEEDS: u64 = 200;
    let p = jl_params();
    for (name, v) in VARIANTS {
        let zs: Vec<f64> = (0..SEEDS)
            .map(|seed| max_abs_z(&p, &mut jl_score(v), N, 1000 + seed))
            .collect();
        let rejected = zs.iter().filter(|&&z| z > Z_CRIT).count();
        let min = zs.iter().cloned().fold(f64::MAX, f64::min);
        let max = zs.iter().cloned().fold(0.0, f64::max);
        println!("{name}: rejected in {rejected}/{SEEDS} seeds, max |z| from {min:.2} to {max:.2}");
        let rate = rejected as f64 / SEEDS as f64;
        if name == "exact" {
            assert!(rate <= 0.01, "{name}: false rejection rate {rate}");
        } else {
            assert!(rate >= 0.99, "{name}: power {rate}");
        }
    }
}

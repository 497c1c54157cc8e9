//! The family contract against independent host-side computations: the Gaussian loss graph
//! equals the weighted MSE recomputed by hand from the same random streams, for every target
//! (a score target weighted by s_t² unless the spec declares a weight);
//! the jump loss regresses the closed-form score of the increment drawn from the same stream.

mod common;

use candle_core::{Device, Tensor};
use difc::compile::{self, TrainBatch};
use difc::rng::{stream, Purpose};
use difc::run::train;
use rand::Rng;
use rand_distr::StandardNormal;

fn spec(process: &str, import: &str, target: &str) -> String {
    format!(
        "use stdlib.{import}\nexperiment e {{\n  data = swiss_roll(n = 500)\n  process = {process}\n  network = mlp(width = 16, depth = 2)\n  loss {{ target = {target} }}\n  train {{ steps = 10, batch = 32 }}\n  eval {{ reference = 100 }}\n}}\n"
    )
}

/// x0 rows with a known pattern.
fn x0(b: usize) -> Tensor {
    let v: Vec<f32> = (0..b * 2)
        .map(|i| ((i * 37 % 11) as f32 - 5.0) / 3.0)
        .collect();
    Tensor::from_vec(v, (b, 2), &Device::Cpu).expect("x0")
}

/// The family's training loss graph on `x` for (seed, step), as a number.
fn graph_loss(
    fwd: &dyn compile::Family,
    state: &train::TrainState,
    x: &Tensor,
    seed: u64,
    step: u64,
) -> f64 {
    fwd.loss(&state.nets(), &TrainBatch { x0: x, seed, step })
        .expect("loss")
        .to_scalar::<f32>()
        .expect("scalar") as f64
}

/// One row's Gaussian training draws, redone by hand: t ~ U(t_min, T), then ε per coordinate,
/// from the stream (seed, TrainNoise, step, row); (m, c, s) of the marginal at t and the
/// network's normalised time.
struct Draw {
    tn: f32,
    m: f64,
    c: f64,
    s: f64,
    eps: Vec<f64>,
}

fn gaussian_draws(
    fwd: &dyn compile::Family,
    rows: usize,
    dim: usize,
    seed: u64,
    step: u64,
) -> Vec<Draw> {
    let marginal = fwd.gaussian_marginal().expect("Gaussian").clone();
    let time = fwd.time();
    (0..rows)
        .map(|i| {
            let mut rng = stream(seed, Purpose::TrainNoise, step, i as u64);
            let t = time.t_min + (time.t1 - time.t_min) * rng.random::<f64>();
            let (m, c, s) = marginal.at(t);
            let eps = (0..dim)
                .map(|_| rng.sample::<f64, _>(StandardNormal) as f32 as f64)
                .collect();
            let tn = ((t - time.t0) / (time.t1 - time.t0)) as f32;
            Draw { tn, m, c, s, eps }
        })
        .collect()
}

/// The score network on `input` ([b, 2] row-major) at normalised times `tn`, flattened.
fn score_net(state: &train::TrainState, input: Vec<f32>, tn: Vec<f32>) -> Vec<f32> {
    let b = tn.len();
    let input = Tensor::from_vec(input, (b, 2), &Device::Cpu).expect("input");
    let tn = Tensor::from_vec(tn, b, &Device::Cpu).expect("t");
    state
        .net
        .as_ref()
        .expect("score net")
        .forward_eval(&input, &tn)
        .expect("net")
        .flatten_all()
        .expect("flat")
        .to_vec1()
        .expect("vec")
}

#[test]
fn gaussian_loss_graph_matches_a_host_recomputation_for_every_target() {
    // (target, the spec's `loss` block body after the target): a score target is weighted by
    // s_t² (score_sde) unless a weight is declared.
    for (target, declared) in [
        ("eps", ""),
        ("x0", ""),
        ("score", ""),
        ("score", "\n    weight(t) = 1"),
    ] {
        let text = spec("vp()", "vp", target).replace(
            &format!("target = {target} }}"),
            &format!("target = {target}{declared} }}"),
        );
        let exp = common::experiment(&text);
        let weighted = target == "score" && declared.is_empty();
        assert_eq!(
            exp.resolved.get("loss.weight").map(String::as_str),
            Some(if weighted { "s_t^2" } else { "1" })
        );
        let fwd = compile::compile(&exp, 2).expect("compiles");
        let state = train::TrainState::new(&exp, 2, &Device::Cpu).expect("state");
        let (b, seed, step) = (32, 3, 7);
        let x = x0(b);
        let loss = graph_loss(&*fwd, &state, &x, seed, step);

        // The same draws by hand, and the weighted MSE against the asked-for target.
        let rows = x.to_vec2::<f32>().expect("rows");
        let draws = gaussian_draws(&*fwd, b, 2, seed, step);
        let (mut xt, mut tgt, mut w) = (Vec::new(), Vec::new(), Vec::new());
        for (row, d) in rows.iter().zip(&draws) {
            for (&x0, &e) in row.iter().zip(&d.eps) {
                w.push(if weighted { d.s * d.s } else { 1.0 });
                xt.push((d.m * x0 as f64 + d.c + d.s * e) as f32);
                tgt.push(match target {
                    "eps" => e,
                    "x0" => x0 as f64,
                    _ => -e / d.s,
                });
            }
        }
        let out = score_net(&state, xt, draws.iter().map(|d| d.tn).collect());
        let want: f64 = out
            .iter()
            .zip(&tgt)
            .zip(&w)
            .map(|((o, t), w)| w * (*o as f64 - t).powi(2))
            .sum::<f64>()
            / tgt.len() as f64;
        let rel = (loss - want).abs() / want;
        assert!(
            rel < 1e-4,
            "{target}{declared}: graph loss {loss} vs host {want}"
        );
        // A wrong target (say ε where x0 was asked) must be told apart.
        assert!(want > 1e-3, "{target}: degenerate check");
    }
}

#[test]
fn jump_loss_regresses_the_closed_form_score_of_the_drawn_increment() {
    use difc::compile::jump::score::{JlParams, JlScore};
    use difc::compile::jump::{JumpLaw, JumpParams, JumpSampler};
    let exp = common::experiment(&spec("jump_laplace()", "jump_laplace", "score"));
    let fwd = compile::compile(&exp, 2).expect("compiles");
    let state = train::TrainState::new(&exp, 2, &Device::Cpu).expect("state");
    let (b, seed, step) = (32, 5, 2);
    let x = x0(b);
    let loss = graph_loss(&*fwd, &state, &x, seed, step);
    let p = &exp.process;
    let theta = 1.0;
    let lambda = p
        .jumps
        .as_ref()
        .and_then(|j| j.constant_rate)
        .expect("rate");
    let sampler = JumpSampler::new(JumpParams {
        law: JumpLaw::Laplace,
        dim: 2,
        theta,
        lambda,
        sigma2: 1.0,
        gvar: 0.0,
    })
    .expect("sampler");
    let mut sp = JlParams::new(2, theta, lambda, 1.0);
    let j = p.jumps.as_ref().expect("jumps");
    sp.r_min = j.r_min;
    sp.t_min = j.t_min;
    let score = JlScore::new(sp).expect("score");
    let time = fwd.time();
    let rows = x.to_vec2::<f32>().expect("rows");
    let (mut xt, mut tgt, mut tn, mut w) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (i, row) in rows.iter().enumerate() {
        let mut rng = stream(seed, Purpose::TrainNoise, step, i as u64);
        let t = time.t_min + (time.t1 - time.t_min) * rng.random::<f64>();
        let mut delta = [0.0; 2];
        sampler
            .increment(t, &mut rng, &mut delta)
            .expect("increment");
        let mut s = [0.0; 2];
        score.score_target(&delta, t, &mut s).expect("target");
        let decay = (-0.5 * theta * t).exp();
        for d in 0..2 {
            xt.push((row[d] as f64 * decay + delta[d]) as f32);
            tgt.push(s[d]);
        }
        w.push(exp.loss.weight.eval_t(t));
        tn.push(((t - time.t0) / (time.t1 - time.t0)) as f32);
    }
    let xt = Tensor::from_vec(xt, (b, 2), &Device::Cpu).expect("xt");
    let tn = Tensor::from_vec(tn, b, &Device::Cpu).expect("t");
    let out: Vec<f32> = state
        .net
        .as_ref()
        .expect("score net")
        .forward_eval(&xt, &tn)
        .expect("net")
        .flatten_all()
        .expect("flat")
        .to_vec1()
        .expect("vec");
    let want: f64 = out
        .iter()
        .zip(&tgt)
        .enumerate()
        .map(|(k, (o, t))| w[k / 2].max(0.0) * (*o as f64 - t).powi(2))
        .sum::<f64>()
        / tgt.len() as f64;
    let rel = (loss - want).abs() / want;
    assert!(rel < 1e-4, "graph loss {loss} vs host {want}");
}

/// `loss { precondition = edm }` against EDM's formulas in its own variables (Karras et al.
/// 2022, Table 1: σ̃ = s_t/m_t, x̃ = (x_t − c_t)/m_t, c_in = 1/√(σ̃² + σ_d²), c_skip =
/// σ_d²/(σ̃² + σ_d²), c_out = σ̃σ_d/√(σ̃² + σ_d²)): the graph's loss is the mean of
/// (F(c_in x̃, t) − (x0 − c_skip x̃)/c_out)², and the target defaults to x0.
#[test]
fn edm_preconditioned_loss_matches_karras_formulas() {
    let text = spec("vp()", "vp", "x0").replace(
        "loss { target = x0 }",
        "loss { precondition = edm, sigma_data = 0.7 }",
    );
    let exp = common::experiment(&text);
    assert_eq!(exp.loss.target, difc::ir::Target::X0);
    let sd = 0.7;
    let fwd = compile::compile(&exp, 2).expect("compiles");
    let state = train::TrainState::new(&exp, 2, &Device::Cpu).expect("state");
    let (b, seed, step) = (32, 4, 9);
    let x = x0(b);
    let loss = graph_loss(&*fwd, &state, &x, seed, step);
    let rows = x.to_vec2::<f32>().expect("rows");
    let draws = gaussian_draws(&*fwd, b, 2, seed, step);
    let (mut input, mut tgt) = (Vec::new(), Vec::new());
    for (row, d) in rows.iter().zip(&draws) {
        let sigma = d.s / d.m;
        let q = sigma * sigma + sd * sd;
        let (c_in, c_skip, c_out) = (1.0 / q.sqrt(), sd * sd / q, sigma * sd / q.sqrt());
        for (&x0, &e) in row.iter().zip(&d.eps) {
            let xt = (d.m * x0 as f64 + d.c + d.s * e) as f32 as f64;
            let xs = (xt - d.c) / d.m;
            input.push((c_in * xs) as f32);
            tgt.push((x0 as f64 - c_skip * xs) / c_out);
        }
    }
    let out = score_net(&state, input, draws.iter().map(|d| d.tn).collect());
    let want = out
        .iter()
        .zip(&tgt)
        .map(|(o, t)| (*o as f64 - t).powi(2))
        .sum::<f64>()
        / tgt.len() as f64;
    assert!(
        (loss - want).abs() / want < 1e-4,
        "graph loss {loss} vs host {want}"
    );
}

//! The trans-dimensional family against independent references:
//! - the step schedule's scale c and Λ_t of the paper (QM9: c = 35.5079, Λ_1 = 32.057);
//! - Λ_t in closed form and tabulated, against hand-integrated formulas;
//! - the birth-rate ratios p(n+1 | n_0)/p(n | n_0) at n = 1 (absorbing) and n > 1 against
//!   direct Poisson sums computed here by another method (running products, not log-gamma);
//! - the simulation-free counts of `prepare` against a direct simulation of the deletion
//!   process (thinning of a Poisson process with the time-varying rate, one deletion at a time,
//!   never below one component), and the uniform kernel's choice of survivors;
//! - the noised batch: x_t = m_t x_0 + s_t ε on the survivors, Y = X_t without its last component.

mod common;

use difc::compile::transdim::{
    birth_log_ratios, log_birth_rate, step_rate_scale, TransDim, LOG_ZERO,
};
use difc::rng::{stream, Purpose};
use rand::Rng;

/// A checked process (no experiment) compiled as a trans-dimensional family.
fn family(src: &str) -> Result<TransDim, difc::compile::CompileError> {
    common::set_family(src)
}

fn vp_sets(max: usize, rate: &str) -> String {
    format!(
        "process p(beta_min = 0.1, beta_max = 20.0) {{
            time = [0, 1]
            state = set(max = {max}, of = vec(2))
            beta(t) = beta_min + t * (beta_max - beta_min)
            drift(x, t) = -0.5 * beta(t) * x
            diffusion(t) = sqrt(beta(t))
            delete {{
                rate(t, n) = {rate}
                kernel = uniform
            }}
        }}"
    )
}

#[test]
fn qm9_step_schedule_scale_and_cumulative_rate() {
    let c = step_rate_scale(29, 0.1, 0.7);
    assert!((c - 35.5079).abs() < 5e-4, "c_step = {c}");
    // const schedule (t_cut = 0): c = μ itself, 31.957.
    let c_const = step_rate_scale(29, 0.0, 0.7);
    assert!((c_const - 31.957).abs() < 5e-4, "c_const = {c_const}");
    let f = family(&vp_sets(
        29,
        &format!("step(n - 1) * ({c} * step(t - 0.1) + 0.1)"),
    ))
    .expect("compiles");
    assert!(
        f.cumulative_is_closed(),
        "the step schedule integrates in closed form"
    );
    assert!(
        (f.cumulative_rate(1.0) - 32.057).abs() < 5e-4,
        "Λ_1 = {}",
        f.cumulative_rate(1.0)
    );
    for t in [0.0, 0.05, 0.1, 0.2, 0.55, 0.9, 1.0] {
        let want = c * (t - 0.1f64).max(0.0) + 0.1 * t;
        let got = f.cumulative_rate(t);
        assert!((got - want).abs() < 1e-9, "Λ({t}) = {got}, want {want}");
        let rate = if t > 0.1 { c + 0.1 } else { 0.1 };
        assert!((f.forward_rate(t) - rate).abs() < 1e-12, "λ({t})");
    }
}

#[test]
fn cumulative_rate_without_closed_form_is_tabulated_accurately() {
    // √(1 + t) is outside the integrator's shapes: Λ_t = (2/3)((1 + t)^{3/2} − 1).
    let f = family(&vp_sets(8, "step(n - 1) * 3 * sqrt(1 + t)")).expect("compiles");
    assert!(!f.cumulative_is_closed());
    for t in [0.0, 0.013, 0.3, 0.77, 1.0] {
        let want = 3.0 * (2.0 / 3.0) * ((1.0f64 + t).powf(1.5) - 1.0);
        let got = f.cumulative_rate(t);
        assert!((got - want).abs() < 1e-8, "Λ({t}) = {got}, want {want}");
    }
}

#[test]
fn a_rate_that_depends_on_n_is_refused() {
    let err = family(&vp_sets(8, "step(n - 1) * n"))
        .err()
        .expect("a state-dependent rate must not compile");
    assert_eq!(err.code, "difc::compile::state_dependent_rate");
}

/// Poisson pmf by running products (independent of the family's log-space code).
fn pmf(k: usize, lambda: f64) -> f64 {
    let mut p = (-lambda).exp();
    for j in 1..=k {
        p *= lambda / j as f64;
    }
    p
}

/// p(n_t = n | n_0) of the clamped count, by direct sums.
fn p_count(n: usize, n0: usize, lambda: f64) -> f64 {
    if n == 0 || n > n0 {
        return 0.0;
    }
    if n == 1 {
        // P(K ≥ n0 − 1), summed upwards (no cancellation at small Λ).
        (n0 - 1..n0 + 200).map(|k| pmf(k, lambda)).sum::<f64>()
    } else {
        pmf(n0 - n, lambda)
    }
}

#[test]
fn birth_ratios_match_direct_sums_at_one_and_more_components() {
    let max = 12;
    for lambda in [0.05, 0.7, 3.0, 9.5] {
        for n in 1..max {
            let got = birth_log_ratios(n, lambda, max);
            for n0 in 1..=max {
                let want = p_count(n + 1, n0, lambda) / p_count(n, n0, lambda);
                let g = got[n0 - 1];
                if n0 <= n {
                    assert_eq!(g, LOG_ZERO, "n = {n}, n0 = {n0}: impossible");
                    continue;
                }
                let rel = (g.exp() - want).abs() / want;
                assert!(
                    rel < 1e-9,
                    "Λ = {lambda}, n = {n}, n0 = {n0}: ratio {} vs direct {want}",
                    g.exp()
                );
            }
        }
    }
    // n > 1 reduces to (n0 − n)/Λ: a hand value.
    let r = birth_log_ratios(3, 2.0, 8);
    assert!((r[6].exp() - 2.0).abs() < 1e-12, "(7 − 3)/2 = 2");
}

#[test]
fn birth_rate_is_the_classifier_average_of_the_ratios() {
    let (rate, lambda, max) = (4.0, 1.3, 6);
    let logits: Vec<f32> = vec![0.3, -1.0, 0.8, 0.1, -0.4, 1.2];
    for n in 1..=max {
        // softmax over n0 ≥ n, then λ Σ ratio · p.
        let w: Vec<f64> = (1..=max)
            .map(|n0| {
                if n0 >= n {
                    (logits[n0 - 1] as f64).exp()
                } else {
                    0.0
                }
            })
            .collect();
        let z: f64 = w.iter().sum();
        let want: f64 = rate
            * (1..=max)
                .filter(|&n0| n0 > n)
                .map(|n0| w[n0 - 1] / z * p_count(n + 1, n0, lambda) / p_count(n, n0, lambda))
                .sum::<f64>();
        let got = log_birth_rate(rate, lambda, n, &logits).exp();
        if n == max {
            assert!(got < 1e-100, "no birth beyond max: {got}");
        } else {
            assert!((got - want).abs() < 1e-6 * want, "n = {n}: {got} vs {want}");
        }
    }
}

/// n_t by simulating deletions one at a time: thinning of a Poisson process with rate
/// λ(s) ≤ λ_max, a deletion only while more than one component is left.
fn simulate_count(
    n0: usize,
    t: f64,
    rate: &dyn Fn(f64) -> f64,
    lmax: f64,
    rng: &mut impl Rng,
) -> usize {
    let (mut s, mut n) = (0.0, n0);
    loop {
        let u: f64 = rng.random();
        s += -(1.0 - u).ln() / lmax;
        if s > t {
            return n;
        }
        let v: f64 = rng.random();
        if v < rate(s) / lmax && n > 1 {
            n -= 1;
        }
    }
}

/// A batch of identical clean sets of `n0` components: NaN-padded rows.
fn batch_of(n0: usize, max: usize, copies: usize) -> Vec<f32> {
    let mut row = vec![f32::NAN; max * 2];
    for j in 0..n0 {
        row[2 * j] = j as f32;
        row[2 * j + 1] = -(j as f32) * 0.5;
    }
    row.iter()
        .copied()
        .cycle()
        .take(row.len() * copies)
        .collect()
}

#[test]
fn simulation_free_counts_match_a_simulated_deletion_process() {
    let (max, n0, c) = (8, 6, 6.0);
    let f = family(&vp_sets(
        max,
        &format!("step(n - 1) * ({c} * step(t - 0.1) + 0.1)"),
    ))
    .expect("compiles");
    let copies = 6000;
    let x0 = batch_of(n0, max, copies);
    let p = f.prepare(&x0, 11, 3).expect("prepared");
    // Bin the times into two windows and compare the count histograms with a direct
    // simulation at each sample's own time.
    let mut rng = stream(5, Purpose::Test, 0, 0);
    let rate = |s: f64| if s > 0.1 { c + 0.1 } else { 0.1 };
    let (mut got, mut sim) = (vec![0.0; max + 1], vec![0.0; max + 1]);
    for (i, &t) in p.t.iter().enumerate() {
        got[p.nt[i]] += 1.0;
        sim[simulate_count(n0, t, &rate, c + 0.1, &mut rng)] += 1.0;
        assert!(p.nt[i] >= 1 && p.nt[i] <= n0);
    }
    // Two independent multinomial samples of 6000: each bin's difference has sd ≤ √(2·6000·¼) ≈ 55.
    for k in 1..=n0 {
        let d: f64 = got[k] - sim[k];
        assert!(
            d.abs() < 5.0 * 55.0,
            "count {k}: {} vs simulated {}",
            got[k],
            sim[k]
        );
    }
    // A broken clamp (counts below 1) or a wrong Λ would move far more than that: e.g. the mass
    // at n = 1 is large here.
    assert!(
        got[1] > 1000.0,
        "absorbing count 1 carries mass: {}",
        got[1]
    );
}

#[test]
fn noised_batch_is_consistent_and_the_uniform_kernel_picks_survivors_uniformly() {
    let (max, n0) = (8, 5);
    let f = family(&vp_sets(max, "step(n - 1) * (3 * step(t - 0.1) + 0.1)")).expect("compiles");
    let copies = 4000;
    let x0 = batch_of(n0, max, copies);
    let p = f.prepare(&x0, 2, 9).expect("prepared");
    let d = 2;
    let row = max * d;
    let mut survived = vec![0.0f64; n0];
    let mut kept_total = 0.0f64;
    for i in 0..copies {
        let nt = p.nt[i];
        let (m, c, s) = f.marginal_at(p.t[i]);
        for slot in 0..max {
            let present = p.mask[i * max + slot] == 1.0;
            assert_eq!(present, slot < nt, "survivors first");
            if !present {
                continue;
            }
            // Which clean component is this? x_t − s ε = m x_0 + c identifies it.
            let v0 =
                (p.xt[i * row + slot * d] as f64 - s * p.eps[i * row + slot * d] as f64 - c) / m;
            let j = v0.round() as usize;
            assert!(
                (v0 - j as f64).abs() < 1e-3 * (1.0 / m).max(1.0),
                "x_t = m x_0 + s ε"
            );
            let w0 = (p.xt[i * row + slot * d + 1] as f64
                - s * p.eps[i * row + slot * d + 1] as f64
                - c)
                / m;
            assert!(
                (w0 + 0.5 * j as f64).abs() < 1e-3 * (1.0 / m).max(1.0),
                "both coordinates from the same component"
            );
            survived[j] += 1.0;
            kept_total += 1.0;
        }
        // Y drops the last survivor, and `deleted` is that survivor.
        let ny = if nt > 1 { nt - 1 } else { 1 };
        for slot in 0..max {
            assert_eq!(p.mask_y[i * max + slot] == 1.0, slot < ny);
        }
        if nt > 1 {
            let last = &p.xt[i * row + (nt - 1) * d..i * row + nt * d];
            assert_eq!(&p.deleted[i * d..(i + 1) * d], last);
            assert_eq!(
                &p.y[i * row..i * row + ny * d],
                &p.xt[i * row..i * row + ny * d]
            );
        }
    }
    // Uniform kernel: every clean component survives equally often (±5 sd of a binomial share).
    for (j, s) in survived.iter().enumerate() {
        let share = s / kept_total;
        let sd = (0.2 * 0.8 / kept_total).sqrt();
        assert!(
            (share - 0.2).abs() < 5.0 * sd,
            "component {j} survives {share:.3} of the time"
        );
    }
}

fn softplus(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

/// The two-pass ELBO of a hand-sized batch (sets of 1, 3 and 4 components, N = 4), recomputed
/// here on the host in f64 from the two network passes and the direct Poisson sums.
#[test]
fn two_pass_elbo_matches_an_independent_host_computation() {
    use candle_core::{DType, Device, Tensor};
    use difc::nn::{Activation, SetNetConfig, SetTransformer};
    let (max, d) = (4, 2);
    let f = family(&vp_sets(max, "step(n - 1) * (3 * step(t - 0.1) + 0.1)")).expect("compiles");
    let net = SetTransformer::new(
        SetNetConfig {
            component: d,
            max,
            width: 16,
            depth: 2,
            heads: 2,
            embed_dim: 8,
            activation: Activation::Silu,
            seed: 3,
        },
        DType::F32,
        &Device::Cpu,
    )
    .expect("net");
    let nan = f32::NAN;
    let x0: Vec<f32> = vec![
        0.5, -0.2, nan, nan, nan, nan, nan, nan, // 1 component
        1.0, 0.0, -1.0, 0.3, 0.2, 0.9, nan, nan, // 3
        0.1, 0.1, -0.4, 0.8, 0.6, -0.6, 1.2, 0.0, // 4
    ];
    // Several steps, so that deletions, n_t = 1 and n_t = N all occur somewhere.
    let mut seen_deleted = false;
    for step in 0..6 {
        let p = f.prepare(&x0, 7, step).expect("prepared");
        let terms = f.terms(&net, &p, &Device::Cpu).expect("terms");
        let host = |t: &Tensor| t.to_dtype(DType::F64).unwrap().to_vec1::<f64>().unwrap();
        let (score, rate, insert, ce) = (
            host(&terms.score),
            host(&terms.rate),
            host(&terms.insert),
            host(&terms.ce),
        );
        let dev = Device::Cpu;
        let tt =
            Tensor::from_vec(p.t.iter().map(|&t| t as f32).collect::<Vec<_>>(), 3, &dev).unwrap();
        let pass = |x: &[f32], m: &[f32]| {
            net.forward_eval(
                &Tensor::from_slice(x, (3, max, d), &dev).unwrap(),
                &Tensor::from_slice(m, (3, max), &dev).unwrap(),
                &tt,
            )
            .unwrap()
        };
        let (ox, oy) = (pass(&p.xt, &p.mask), pass(&p.y, &p.mask_y));
        let v2 = |t: &Tensor| t.to_dtype(DType::F64).unwrap().to_vec2::<f64>().unwrap();
        let eps_hat: Vec<f64> = ox
            .eps
            .flatten_all()
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap()
            .to_vec1()
            .unwrap();
        let (lx, ly) = (v2(&ox.n0_logits), v2(&oy.n0_logits));
        let (mu, raw) = (v2(&oy.ins_mean), v2(&oy.ins_raw_std));
        for i in 0..3 {
            let (nt, n0, lam, fr) = (p.nt[i], p.n0[i], p.lambda[i], p.rate[i]);
            // Score.
            let mut sc = 0.0;
            for j in 0..max * d {
                let m = p.mask[i * max + j / d] as f64;
                sc += 0.5 * m * (eps_hat[i * max * d + j] - p.eps[i * max * d + j] as f64).powi(2);
            }
            // Birth rate at a state of n components from logits: λ Σ_{n0' > n} ratio · softmax.
            let birth = |n: usize, logits: &[f64]| -> f64 {
                let z: f64 = (n..=max).map(|k| logits[k - 1].exp()).sum();
                fr * (n + 1..=max)
                    .map(|k| logits[k - 1].exp() / z * p_count(n + 1, k, lam) / p_count(n, k, lam))
                    .sum::<f64>()
            };
            let mut r = 0.0;
            if nt < max {
                r += birth(nt, &lx[i]);
            }
            let mut ins = 0.0;
            if nt > 1 {
                seen_deleted = true;
                r -= fr * birth(nt - 1, &ly[i]).ln();
                for c in 0..d {
                    let s = softplus(raw[i][c]);
                    let y = p.deleted[i * d + c] as f64;
                    ins += s.ln() + 0.5 * ((y - mu[i][c]) / s).powi(2);
                }
                ins *= fr;
            }
            let zx: f64 = lx[i].iter().map(|v| v.exp()).sum();
            let c = -(lx[i][n0 - 1].exp() / zx).ln();
            let close = |a: f64, b: f64| (a - b).abs() <= 1e-4 * (1.0 + b.abs());
            assert!(
                close(score[i], sc),
                "step {step} set {i}: score {} vs {sc}",
                score[i]
            );
            assert!(
                close(rate[i], r),
                "step {step} set {i} (n_t = {nt}): rate {} vs {r}",
                rate[i]
            );
            assert!(
                close(insert[i], ins),
                "step {step} set {i}: insert {} vs {ins}",
                insert[i]
            );
            assert!(close(ce[i], c), "step {step} set {i}: ce {} vs {c}", ce[i]);
        }
        // The combined loss: (1/(N·d)) Σ of the terms with unit weights.
        let total = host(&f.combine(&terms).expect("combine"));
        for i in 0..3 {
            let want = (score[i] + rate[i] + insert[i] + ce[i]) / (max * d) as f64;
            assert!((total[i] - want).abs() < 1e-5 * (1.0 + want.abs()));
        }
    }
    assert!(seen_deleted, "some set lost a component");
}

/// A short trans-dimensional training through `difc run`'s code path, checked on its result:
/// the component-count law must be learned (count_tv below 0.15; the untrained network gives
/// about 0.3 and a 100-step one 0.31) and sets of 1–3 points must lie on the ring (per-count
/// biased MMD within 4× of data against data). Measured here: see the eprintln.
#[test]
fn a_short_transdim_run_learns_the_count_law_and_the_ring() {
    let spec = "use stdlib.transdim\nexperiment e {\n  data = ring_sets(n = 8000, max = 8)\n  process = transdim(c = 10.126)\n  network = set_transformer(width = 32, depth = 2, heads = 4)\n  train { steps = 800, batch = 128, lr = 0.002, warmup = 50, checkpoint_every = 800 }\n  sample { n = 600, solver = euler_maruyama, steps = 200 }\n  eval { reference = 1200 }\n}\n";
    let exp = common::experiment(spec);
    let dir = tempfile::tempdir().expect("tmp");
    let opts = difc::run::experiment::RunOptions {
        out: dir.path().join("run"),
        resume: false,
        device: candle_core::Device::Cpu,
        spec_path: None,
        overrides: Vec::new(),
    };
    let summary = difc::run::experiment::run(&exp, &opts).expect("runs");
    let m = &summary.metrics;
    eprintln!("transdim short run: {m:?}");
    assert!(m["count_tv"] < 0.15, "count_tv {}", m["count_tv"]);
    for k in 1..=3 {
        let (g, d) = (
            m[&format!("mmd_count_{k}")],
            m[&format!("mmd_data_count_{k}")],
        );
        assert!(g < 4.0 * d.max(0.02), "k = {k}: MMD {g} vs data {d}");
    }
    let samples = difc::run::sets::SetData::load_npy(opts.out.join("samples.npy"), 8, 2)
        .expect("samples.npy reads as NaN-padded sets");
    assert_eq!(samples.len(), 600);
    for f in [
        "samples.png",
        "counts.png",
        "reference.png",
        "loss.png",
        "metrics.yaml",
    ] {
        assert!(opts.out.join(f).exists(), "{f}");
    }
}

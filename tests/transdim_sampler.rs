//! The trans-dimensional sampler's options against references computed here:
//! - the `coarse_fine` grid reproduces the reference sampler's `dt_schedule = 'C'` steps;
//! - the fixed-size model (a set process without deletions) draws its sizes from the observed
//!   data histogram, refuses to sample before it saw data, never inserts, and trains on the
//!   noised data without deletions;
//! - the Langevin corrector, given the exact score of a known marginal, relaxes a set of points
//!   started far away to that marginal (mean and variance within their sampling noise plus the
//!   discretisation bias of the unadjusted Langevin step).

mod common;

use difc::compile::transdim::TransDim;
use difc::compile::{coarse_fine_grid, Family, SampleNets, SetHeads, Solver};
use difc::ir::Corrector;

/// The first process of `src`, compiled as a set family.
fn family(src: &str) -> TransDim {
    common::set_family(src).expect("compiles")
}

/// The per-point VP SDE on sets of up to `max` points of 2 numbers, without deletions.
fn fixed_vp(max: usize) -> TransDim {
    family(&format!(
        "process p(beta_min = 0.1, beta_max = 20.0) {{
            time = [0, 1]
            state = set(max = {max}, of = vec(2))
            beta(t) = beta_min + t * (beta_max - beta_min)
            drift(x, t) = -0.5 * beta(t) * x
            diffusion(t) = sqrt(beta(t))
        }}"
    ))
}

/// NaN-padded rows with the given sizes (component values 0.5).
fn rows_of(sizes: &[usize], max: usize) -> Vec<f32> {
    let mut out = vec![f32::NAN; sizes.len() * max * 2];
    for (i, &n) in sizes.iter().enumerate() {
        for v in &mut out[i * max * 2..i * max * 2 + n * 2] {
            *v = 0.5;
        }
    }
    out
}

fn sizes_of(x: &[f64], max: usize) -> Vec<usize> {
    x.chunks(max * 2)
        .map(|r| r.chunks(2).filter(|c| !c[0].is_nan()).count())
        .collect()
}

#[test]
fn coarse_fine_grid_has_the_reference_steps() {
    let g = coarse_fine_grid(1.0, 0.0, 510);
    assert_eq!(g.len(), 511);
    assert_eq!((g[0], g[510]), (1.0, 0.0));
    for k in 0..510 {
        let h = g[k] - g[k + 1];
        let want = if k < 10 { 0.05 } else { 0.001 };
        assert!((h - want).abs() < 1e-12, "step {k}: {h} vs {want}");
    }
    // Another horizon and count: C = round(100/51) = 2 coarse steps over the upper half.
    let g = coarse_fine_grid(2.0, 0.2, 100);
    assert!((g[2] - 1.1).abs() < 1e-12 && (g[100] - 0.2).abs() < 1e-12);
    assert!(((g[0] - g[1]) / (g[2] - g[3]) - 49.0).abs() < 1e-9);
    assert_eq!(coarse_fine_grid(1.0, 0.0, 1), vec![1.0, 0.0]);
}

#[test]
fn fixed_size_model_draws_sizes_from_the_data_and_never_inserts() {
    let max = 6;
    let fam = fixed_vp(max);
    assert!(fam.is_fixed_size());
    let err = fam.ready_to_sample().expect_err("no data observed yet");
    assert!(err.to_string().contains("histogram"), "{err}");
    // Data: sizes 1, 3, 5 with frequencies 0.1, 0.6, 0.3.
    let sizes: Vec<usize> = (0..1000)
        .map(|i| match i % 10 {
            0 => 1,
            1..=6 => 3,
            _ => 5,
        })
        .collect();
    fam.observe_data(&rows_of(&sizes, max));
    fam.ready_to_sample().expect("ready after observing data");
    let law = fam.count_law().expect("law");
    assert_eq!(law.len(), max);
    for (k, want) in [(1, 0.1), (3, 0.6), (5, 0.3), (2, 0.0), (6, 0.0)] {
        assert!((law[k - 1] - want).abs() < 1e-12, "P({k}) = {}", law[k - 1]);
    }
    // Prior sizes: multinomial frequencies within 4.5 standard deviations.
    let n = 20000;
    let x = fam.prior(n, 7);
    let drawn = sizes_of(&x, max);
    for (k, p) in [(1usize, 0.1f64), (3, 0.6), (5, 0.3)] {
        let f = drawn.iter().filter(|&&s| s == k).count() as f64 / n as f64;
        let sd = (p * (1.0 - p) / n as f64).sqrt();
        assert!((f - p).abs() < 4.5 * sd, "size {k}: {f} vs {p}");
    }
    assert!(drawn.iter().all(|&s| [1, 3, 5].contains(&s)));
    // Sampling steps never change a size, even with a classifier sure that n_0 = max.
    let mut net = |rows: &[f32], _t: f64| -> Result<SetHeads, String> {
        let b = rows.len() / (max * 2);
        let mut logits = vec![-20.0f32; b * max];
        for i in 0..b {
            logits[i * max + max - 1] = 20.0;
        }
        Ok(SetHeads {
            eps: vec![0.0; rows.len()],
            n0_logits: logits,
            ins_mean: vec![0.0; b * 2],
            ins_std: vec![1.0; b * 2],
        })
    };
    let mut nets = SampleNets {
        score: None,
        transform: None,
        set: Some(&mut net),
    };
    let mut x = fam.prior(500, 3);
    let before = sizes_of(&x, max);
    for k in 0..20 {
        let t = 1.0 - k as f64 * 0.05;
        fam.step(Solver::EulerMaruyama, &mut nets, &mut x, t, 0.05, 3, k)
            .expect("step");
    }
    assert_eq!(sizes_of(&x, max), before);
    // Training batches keep every component (Λ ≡ 0).
    let p = fam.prepare(&rows_of(&sizes, max), 1, 0).expect("prepare");
    assert_eq!(p.nt, p.n0);
    assert!(p.lambda.iter().all(|&l| l == 0.0));
}

/// With x_0 ~ N(0, I) per point, the VP marginal is N(0, I) at every t, whose exact ε̂ is
/// s_t x. Points started at 3 must relax to mean 0 and variance 1 under the corrector alone.
#[test]
fn langevin_corrector_with_the_exact_score_relaxes_to_the_marginal() {
    let max = 2;
    let fam = fixed_vp(max).with_corrector(Corrector {
        steps: 400,
        snr: 0.16,
        t_lo: 0.0,
        t_hi: 1.0,
    });
    fam.observe_data(&rows_of(&[1, 1, 1, 1], max));
    let n = 4000;
    let mut x = vec![f64::NAN; n * max * 2];
    for r in x.chunks_mut(max * 2) {
        r[0] = 3.0;
        r[1] = 3.0;
    }
    let t = 0.5;
    let s_t = fam.marginal_at(t).2;
    let mut net = |rows: &[f32], _t: f64| -> Result<SetHeads, String> {
        let b = rows.len() / (max * 2);
        Ok(SetHeads {
            eps: rows.iter().map(|v| s_t as f32 * v).collect(),
            n0_logits: vec![0.0; b * max],
            ins_mean: vec![0.0; b * 2],
            ins_std: vec![1.0; b * 2],
        })
    };
    let mut nets = SampleNets {
        score: None,
        transform: None,
        set: Some(&mut net),
    };
    // A predictor step of negligible length, then the 400 corrector steps at t − h ≈ t.
    fam.step(Solver::EulerMaruyama, &mut nets, &mut x, t, 1e-9, 11, 0)
        .expect("step");
    let v: Vec<f64> = x.iter().copied().filter(|v| !v.is_nan()).collect();
    assert_eq!(v.len(), n * 2);
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let var = v.iter().map(|a| (a - mean) * (a - mean)).sum::<f64>() / v.len() as f64;
    // Sampling noise: sd(mean) ≈ 0.011, sd(var) ≈ 0.016; the unadjusted step's stationary
    // variance is about 1/(1 − ε/2) ≈ 1.03 for ε ≈ 0.05.
    assert!(mean.abs() < 0.06, "mean {mean}");
    assert!((var - 1.0).abs() < 0.09, "variance {var}");
}

/// The centre-of-mass constraint on entries 0..1 of 2-D components: every noised batch, its Y
/// and the sampler keep those entries at zero mean over the present components, the noise is
/// projected, the untouched entry 1 is not centred, and the deleted component keeps its offset
/// to the others.
#[test]
fn centre_of_mass_constraint_holds_in_training_batches_and_sampling() {
    let max = 5;
    let src = "process p(beta_min = 0.1, beta_max = 20.0) {
            time = [0, 1]
            state = set(max = 5, of = vec(2))
            beta(t) = beta_min + t * (beta_max - beta_min)
            drift(x, t) = -0.5 * beta(t) * x
            diffusion(t) = sqrt(beta(t))
            delete {
                rate(t, n) = step(n - 1) * 3.0
                kernel = uniform
            }
        }";
    let fam = family(src).with_com(Some(0..1));
    let sizes: Vec<usize> = (0..400).map(|i| 1 + i % max).collect();
    let mut rows = rows_of(&sizes, max);
    for (i, v) in rows.iter_mut().enumerate() {
        if !v.is_nan() {
            *v = ((i * 37 % 17) as f32 - 8.0) / 3.0;
        }
    }
    let p = fam.prepare(&rows, 3, 1).expect("prepare");
    let row = max * 2;
    let mean0 = |v: &[f32], n: usize| (0..n).map(|j| v[j * 2] as f64).sum::<f64>() / n as f64;
    let mut uncentred = 0;
    for i in 0..p.batch {
        let (nt, xt) = (p.nt[i], &p.xt[i * row..(i + 1) * row]);
        assert!(mean0(xt, nt).abs() < 1e-5, "x_t centre {}", mean0(xt, nt));
        assert!(mean0(&p.eps[i * row..(i + 1) * row], nt).abs() < 1e-5);
        let ny = if nt > 1 { nt - 1 } else { 1 };
        let y = &p.y[i * row..(i + 1) * row];
        assert!(mean0(y, ny).abs() < 1e-5);
        if nt > 1 {
            let del = p.deleted[i * 2];
            let want = xt[(nt - 1) * 2] - xt[0];
            assert!(
                ((del - y[0]) - want).abs() < 1e-4,
                "offset {} vs {want}",
                del - y[0]
            );
        }
        if nt > 1 && (0..nt).map(|j| xt[j * 2 + 1] as f64).sum::<f64>().abs() > 1e-3 {
            uncentred += 1;
        }
    }
    assert!(uncentred > p.batch / 2, "entry 1 must not be centred");
    // The prior and a few sampler steps (births included) keep the centre at 0.
    let mut net = |rows: &[f32], _t: f64| -> Result<SetHeads, String> {
        let b = rows.len() / row;
        Ok(SetHeads {
            eps: rows
                .iter()
                .map(|v| if v.is_nan() { 0.0 } else { 0.3 * v + 0.1 })
                .collect(),
            n0_logits: vec![0.0; b * max],
            ins_mean: vec![1.5; b * 2],
            ins_std: vec![0.5; b * 2],
        })
    };
    let mut nets = SampleNets {
        score: None,
        transform: None,
        set: Some(&mut net),
    };
    let mut x = fam.prior(300, 2);
    for k in 0..40 {
        let t = 1.0 - k as f64 * 0.025;
        fam.step(Solver::EulerMaruyama, &mut nets, &mut x, t, 0.025, 2, k)
            .expect("step");
    }
    let sizes = sizes_of(&x, max);
    assert!(sizes.iter().any(|&n| n > 1), "some births happened");
    for (r, &n) in x.chunks(row).zip(&sizes) {
        let m: f64 = (0..n).map(|j| r[j * 2]).sum::<f64>() / n as f64;
        assert!(m.abs() < 1e-9, "sampler centre {m}");
    }
}

/// `com = position` declared in the spec reaches the compiled family: noised batches are
/// centred on the position entries only.
#[test]
fn com_declared_in_the_spec_centres_the_named_part() {
    let fam = family(
        "process p() {
            time = [0, 1]
            state = set(max = 4, of = vec(position = 2, charge = 1), com = position)
            drift(x, t) = -0.5 * (0.1 + 19.9 * t) * x
            diffusion(t) = sqrt(0.1 + 19.9 * t)
            delete {
                rate(t, n) = step(n - 1) * 2.0
                kernel = uniform
            }
        }",
    );
    let rows: Vec<f32> = (0..200 * 12)
        .map(|i| ((i * 13 % 7) as f32 - 2.0) * 0.7)
        .collect();
    let p = fam.prepare(&rows, 5, 0).expect("prepare");
    let mut charge_off = 0;
    for i in 0..p.batch {
        let n = p.nt[i];
        let x = &p.xt[i * 12..(i + 1) * 12];
        for k in 0..3 {
            let m: f64 = (0..n).map(|j| x[j * 3 + k] as f64).sum::<f64>() / n as f64;
            if k < 2 {
                assert!(m.abs() < 1e-5, "position entry {k}: mean {m}");
            } else if m.abs() > 1e-3 {
                charge_off += 1;
            }
        }
    }
    assert!(charge_off > p.batch / 2, "the charge entry is not centred");
}

/// `difc run` and then `difc sample` of a fixed-size set model: both draw the sizes from the
/// training histogram (the sample command loads the data again to get it), so the generated
/// size law is the data's up to sampling noise (TV of 400 vs 400 sets over 8 sizes: ≈ 0.05 on
/// average, rarely above 0.12), and the fixed-size model never reports a size it did not see.
#[test]
fn fixed_size_run_and_sample_draw_sizes_from_the_data() {
    let dir = tempfile::tempdir().expect("tmp");
    let spec = dir.path().join("fixed.diff");
    std::fs::write(
        &spec,
        "use stdlib.transdim\nexperiment e {\n  data = ring_sets(n = 2000, max = 8)\n  process = fixed_size_vp()\n  network = set_transformer(width = 16, depth = 1, heads = 2)\n  train { steps = 30, batch = 32 }\n  sample { n = 400, solver = euler_maruyama, steps = 20 }\n  eval { reference = 800 }\n}\n",
    )
    .expect("write");
    let out = dir.path().join("run");
    let o = common::difc()
        .arg("run")
        .arg(&spec)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = common::difc()
        .arg("sample")
        .arg(&out)
        .arg("--n")
        .arg("400")
        .arg("--steps")
        .arg("10")
        .output()
        .expect("samples");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "{text}");
    for file in ["metrics.yaml", "metrics_euler_maruyama_10.yaml"] {
        let m: serde_yaml::Value =
            serde_yaml::from_str(&std::fs::read_to_string(out.join(file)).expect(file))
                .expect("yaml");
        let tv = m["count_tv"].as_f64().expect("count_tv");
        assert!(tv < 0.15, "{file}: count_tv {tv}");
    }
}

//! The trans-dimensional end of `difc run`: sampling with the set network, and the set outputs
//! (`samples.npy` as float32 `(n, N, d)` with NaN for absent components, the component-count
//! metrics, the count histogram and point-set plots).

use super::experiment::RunError;
use super::progress::Progress;
use super::sets::SetData;
use crate::compile::{self, Forward, SampleNets, SetHeads};
use crate::nn::SetNet;
use candle_core::{DType, Device, Tensor};
use std::collections::BTreeMap;

/// Rows per network call while sampling.
const CHUNK: usize = 2048;

/// The set network's heads on NaN-padded host rows (n × max·d) at network time `t`.
pub fn set_heads(
    net: &dyn SetNet,
    rows: &[f32],
    t: f32,
    device: &Device,
) -> Result<SetHeads, String> {
    let (max, d) = (net.config().max, net.config().component);
    let row = max * d;
    let n = rows.len() / row;
    let mut heads = SetHeads {
        eps: Vec::with_capacity(n * row),
        n0_logits: Vec::with_capacity(n * max),
        ins_mean: Vec::with_capacity(n * d),
        ins_std: Vec::with_capacity(n * d),
    };
    let e = |e: candle_core::Error| e.to_string();
    for part in rows.chunks(CHUNK * row) {
        let m = part.len() / row;
        let mut x = Vec::with_capacity(part.len());
        let mut mask = Vec::with_capacity(m * max);
        for comp in part.chunks(d) {
            let present = !comp[0].is_nan();
            mask.push(f32::from(u8::from(present)));
            x.extend(comp.iter().map(|v| if present { *v } else { 0.0 }));
        }
        let xt = Tensor::from_vec(x, (m, max, d), device).map_err(e)?;
        let mt = Tensor::from_vec(mask, (m, max), device).map_err(e)?;
        let tt = Tensor::full(t, m, device).map_err(e)?;
        let out = net.forward_eval(&xt, &mt, &tt).map_err(|e| e.to_string())?;
        let host = |t: &Tensor| -> Result<Vec<f32>, String> {
            t.to_dtype(DType::F32)
                .and_then(|t| t.flatten_all())
                .and_then(|t| t.to_vec1::<f32>())
                .map_err(|e| e.to_string())
        };
        heads.eps.extend(host(&out.eps)?);
        heads.n0_logits.extend(host(&out.n0_logits)?);
        heads.ins_mean.extend(host(&out.ins_mean)?);
        heads
            .ins_std
            .extend(host(&out.ins_raw_std)?.into_iter().map(softplus));
    }
    Ok(heads)
}

fn softplus(x: f32) -> f32 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

/// Draws `n` sets with the set network: NaN-padded rows (n × max·d).
#[allow(clippy::too_many_arguments)]
pub fn draw_sets(
    fwd: &Forward,
    net: &dyn SetNet,
    solver: compile::Solver,
    grid: compile::TimeGrid,
    steps: usize,
    n: usize,
    seed: u64,
    t_end: f64,
    device: &Device,
) -> Result<Vec<f32>, RunError> {
    let mut eval = |x: &[f32], t: f64| set_heads(net, x, fwd.net_time(t), device);
    let mut nets = SampleNets {
        score: None,
        transform: None,
        set: Some(&mut eval),
    };
    let mut bar = Progress::new("sample", steps as u64, 0);
    let mut progress = |k: usize| bar.update(k as u64, "");
    let samples = compile::sample_with(
        fwd,
        solver,
        grid,
        0.0,
        steps,
        n,
        seed,
        t_end,
        &mut nets,
        &mut progress,
    )?;
    bar.finish();
    Ok(samples)
}

/// Number of present components of each NaN-padded row.
pub fn counts(rows: &[f32], max: usize, d: usize) -> Vec<usize> {
    rows.chunks(max * d)
        .map(|r| r.chunks(d).filter(|c| !c[0].is_nan()).count())
        .collect()
}

/// Samples, saves and evaluates a trained set model: `samples.npy` and `reference.npy` as
/// `(n, N, d)` float32 with NaN padding, `metrics.yaml` with the count metrics, `counts.png`
/// and `samples.png`.
pub fn outputs(
    exp: &crate::ir::Experiment,
    fwd: &Forward,
    net: &dyn SetNet,
    data: &super::experiment::Data,
    opts: &super::experiment::RunOptions,
) -> Result<std::collections::BTreeMap<String, f64>, RunError> {
    use super::experiment::{metrics_yaml, write_text};
    let (max, d) = (net.config().max, net.config().component);
    let row = max * d;
    let samples = draw_sets(
        fwd,
        net,
        exp.sample.solver,
        exp.sample.grid,
        exp.sample.steps,
        exp.sample.n,
        exp.sample.seed,
        exp.sample.t_end,
        &opts.device,
    )?;
    let out = &opts.out;
    let save = |name: &str, v: &[f32]| {
        super::npy::write_npy_f32(out.join(name), &[v.len() / row, max, d], v).map_err(|e| {
            RunError::Output(format!("cannot write `{}`: {e}", out.join(name).display()))
        })
    };
    save("samples.npy", &samples)?;
    save("reference.npy", &data.reference)?;
    let as_sets = |rows: &[f32], what: &str| {
        SetData::from_padded_rows(rows, max, d, max)
            .map_err(|e| RunError::Other(format!("{what}: {e}")))
    };
    let gen = as_sets(&samples, "the generated sets")?;
    let reference = as_sets(&data.reference, "the reference sets")?;
    let (ref_a, ref_b) = reference.split_at(reference.len() / 2);
    let mut metrics = set_metrics(&gen, &ref_a, &ref_b, &reference)?;
    if matches!(&exp.data.source, crate::ir::DataSource::Generator { name, .. } if name == "qm9") {
        // Molecules: EDM's atom and molecule stability (bond-length tables), pooled over atoms.
        for (set, suffix) in [(&gen, ""), (&reference, "_data")] {
            let st = super::metrics::stability(set)
                .map_err(|e| RunError::Other(format!("stability: {e}")))?;
            metrics.insert(format!("atom_stable{suffix}"), st.atom_stable);
            metrics.insert(format!("mol_stable{suffix}"), st.mol_stable);
        }
    }
    metrics.insert("count_mean".to_string(), mean_count(&gen));
    metrics.insert("count_mean_data".to_string(), mean_count(&reference));
    write_text(&out.join("metrics.yaml"), &metrics_yaml(&metrics))?;
    super::plot::sets_png(
        &out.join("samples.png"),
        &gen,
        16,
        &format!("{} — generated sets", exp.name),
    )
    .map_err(|e| RunError::Output(format!("cannot draw samples.png: {e}")))?;
    super::plot::sets_png(
        &out.join("reference.png"),
        &reference,
        16,
        &format!("{} — data sets", exp.name),
    )
    .map_err(|e| RunError::Output(format!("cannot draw reference.png: {e}")))?;
    super::plot::counts_png(
        &out.join("counts.png"),
        &gen.count_histogram(),
        &reference.count_histogram(),
        &format!("{} — component counts, generated vs data", exp.name),
    )
    .map_err(|e| RunError::Output(format!("cannot draw counts.png: {e}")))?;
    Ok(metrics)
}

/// Sets of one size need at least this many generated and reference sets for their MMD.
const MIN_SETS_PER_COUNT: usize = 50;

fn mean_count(s: &SetData) -> f64 {
    s.counts.iter().sum::<usize>() as f64 / s.len().max(1) as f64
}

/// `count_tv` (generated vs held-out size histograms, next to `count_tv_data`, the two reference
/// halves) and, per size k with enough sets: the unbiased `mmd2_count_k` (generated vs
/// reference half A) next to `mmd2_data_count_k` (half B vs half A), with
/// `mmd2_count_max_excess`; the biased `mmd_count_k` next to `mmd_data_count_k`, its expected
/// value for a perfect sampler at the same sample sizes, and `mmd_count_max_ratio`, the
/// largest ratio of the two.
pub fn set_metrics(
    gen: &SetData,
    ref_a: &SetData,
    ref_b: &SetData,
    reference: &SetData,
) -> Result<BTreeMap<String, f64>, RunError> {
    let mut m = BTreeMap::new();
    m.insert(
        "count_tv".to_string(),
        super::metrics::count_tv(&gen.count_histogram(), &reference.count_histogram()),
    );
    // The sampling floor: the same distance between the two halves of the reference.
    m.insert(
        "count_tv_data".to_string(),
        super::metrics::count_tv(&ref_a.count_histogram(), &ref_b.count_histogram()),
    );
    let per = super::metrics::per_count_mmd(gen, ref_a, ref_b, MIN_SETS_PER_COUNT)
        .map_err(|e| RunError::Other(format!("per-count MMD: {e}")))?;
    let mut excess = f64::NEG_INFINITY;
    let mut ratio = f64::NEG_INFINITY;
    for c in &per {
        m.insert(format!("mmd2_count_{}", c.count), c.mmd);
        m.insert(format!("mmd2_data_count_{}", c.count), c.mmd_data);
        excess = excess.max(c.mmd - c.mmd_data);
        // The biased (V-statistic) MMD, which is positive even for data against data, so the
        // two can be compared as a ratio: generated vs half A, and half B (cut to the same
        // number of sets) vs half A, same bandwidth.
        let dim = c.count * gen.component;
        let g = super::metrics::canonical_sets(gen, c.count);
        let a = super::metrics::canonical_sets(ref_a, c.count);
        let b = super::metrics::canonical_sets(ref_b, c.count);
        let b = &b[..c.n_data * dim];
        let v = biased_mmd(&g, &a, dim, c.sigma);
        let v_split = biased_mmd(b, &a, dim, c.sigma);
        // The floor a perfect sampler would reach with these sample sizes, in expectation:
        // E MMD_b² = (1/n_gen + 1/n_A)(1 − E k(x, x')) for two independent samples of the same
        // law, with E k(x, x') estimated on every reference set of this size. One split of the
        // reference (`mmd_split_count_k`) varies by a factor of 2–3 from split to split.
        let all = super::metrics::canonical_sets(reference, c.count);
        let (n_gen, n_a) = (g.len() / dim, a.len() / dim);
        let v_data = ((1.0 / n_gen as f64 + 1.0 / n_a as f64)
            * (1.0 - mean_off_diagonal_kernel(&all, dim, c.sigma)))
        .max(0.0)
        .sqrt();
        m.insert(format!("mmd_count_{}", c.count), v);
        m.insert(format!("mmd_data_count_{}", c.count), v_data);
        m.insert(format!("mmd_split_count_{}", c.count), v_split);
        ratio = ratio.max(v / v_data.max(1e-12));
    }
    if excess.is_finite() {
        m.insert("mmd2_count_max_excess".to_string(), excess);
        m.insert("mmd_count_max_ratio".to_string(), ratio);
    }
    Ok(m)
}

/// The mean of the RBF kernel exp(−‖x − y‖² / (2σ²)) over distinct pairs of the rows of `x`.
pub fn mean_off_diagonal_kernel(x: &[f64], dim: usize, sigma: f64) -> f64 {
    let rows: Vec<&[f64]> = x.chunks(dim).collect();
    let n = rows.len();
    if n < 2 {
        return 0.0;
    }
    let mut s = 0.0;
    for i in 0..n {
        for j in i + 1..n {
            let d2: f64 = rows[i]
                .iter()
                .zip(rows[j])
                .map(|(u, v)| (u - v) * (u - v))
                .sum();
            s += (-d2 / (2.0 * sigma * sigma)).exp();
        }
    }
    2.0 * s / (n * (n - 1)) as f64
}

/// √(biased MMD²) with the RBF kernel exp(−‖x − y‖² / (2σ²)) (diagonal terms included).
pub fn biased_mmd(x: &[f64], y: &[f64], dim: usize, sigma: f64) -> f64 {
    let k = |a: &[f64], b: &[f64]| {
        let d2: f64 = a.iter().zip(b).map(|(u, v)| (u - v) * (u - v)).sum();
        (-d2 / (2.0 * sigma * sigma)).exp()
    };
    let mean = |p: &[f64], q: &[f64]| {
        let mut s = 0.0;
        for a in p.chunks(dim) {
            for b in q.chunks(dim) {
                s += k(a, b);
            }
        }
        s / ((p.len() / dim) * (q.len() / dim)).max(1) as f64
    };
    (mean(x, x) + mean(y, y) - 2.0 * mean(x, y)).max(0.0).sqrt()
}

/// `counts.png` (generated vs data size histograms) and the sets grid at `png`, next to
/// each other (`png` with `_counts` appended for the histogram).
pub fn plots(
    png: &std::path::Path,
    gen: &SetData,
    reference: Option<&SetData>,
    title: &str,
) -> Result<(), String> {
    super::plot::sets_png(png, gen, 16, title).map_err(|e| e.to_string())?;
    if let Some(r) = reference {
        let stem = png
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("samples");
        let counts = png.with_file_name(format!("{stem}_counts.png"));
        super::plot::counts_png(
            &counts,
            &gen.count_histogram(),
            &r.count_histogram(),
            &format!("{title} — component counts"),
        )
        .map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;
    use rand_distr::StandardNormal;

    fn gaussian(n: usize, dim: usize, shift: f64, seed: u64) -> Vec<f64> {
        let mut rng = crate::rng::stream(seed, crate::rng::Purpose::Test, 0, 0);
        (0..n * dim)
            .map(|_| shift + rng.sample::<f64, _>(StandardNormal))
            .collect()
    }

    /// The expected biased MMD of two independent samples of one law matches the average of
    /// the statistic over many draws (within 3 %), and a shifted law lands far above it.
    #[test]
    fn expected_biased_mmd_floor_matches_repeated_draws() {
        let (dim, n, m, sigma) = (4, 150, 120, 2.0);
        let big = gaussian(3000, dim, 0.0, 1);
        let mu = mean_off_diagonal_kernel(&big, dim, sigma);
        // E k(x, x') for x, x' ~ N(0, I_4): (σ² / (σ² + 2))^{d/2} = (4/6)^2.
        assert!((mu - (4.0f64 / 6.0).powi(2)).abs() < 0.01, "E k = {mu}");
        let floor2 = (1.0 / n as f64 + 1.0 / m as f64) * (1.0 - mu);
        let draws = 200;
        let mean2: f64 = (0..draws)
            .map(|i| {
                let x = gaussian(n, dim, 0.0, 100 + i);
                let y = gaussian(m, dim, 0.0, 10_000 + i);
                biased_mmd(&x, &y, dim, sigma).powi(2)
            })
            .sum::<f64>()
            / draws as f64;
        assert!(
            (mean2 / floor2 - 1.0).abs() < 0.03,
            "mean MMD² {mean2} vs floor² {floor2}"
        );
        let x = gaussian(n, dim, 0.5, 7);
        let y = gaussian(m, dim, 0.0, 8);
        assert!(biased_mmd(&x, &y, dim, sigma) > 3.0 * floor2.sqrt());
    }
}

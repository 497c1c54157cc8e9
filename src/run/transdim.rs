//! The trans-dimensional end of `difc run`: sampling with the set network, and the set outputs
//! (`samples.npy` as float32 `(n, N, d)` with NaN for absent components, the component-count
//! metrics, the count histogram and point-set plots).

use super::experiment::RunError;
use super::progress::Progress;
use crate::compile::{self, Forward, SampleNets, SetHeads};
use crate::nn::SetTransformer;
use candle_core::{DType, Device, Tensor};

/// Rows per network call while sampling.
const CHUNK: usize = 2048;

/// The set network's heads on NaN-padded host rows (n × max·d) at network time `t`.
pub fn set_heads(
    net: &SetTransformer,
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
    net: &SetTransformer,
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
    net: &SetTransformer,
    data: &super::experiment::Data,
    opts: &super::experiment::RunOptions,
) -> Result<std::collections::BTreeMap<String, f64>, RunError> {
    use super::experiment::{metrics_yaml, other, write_text};
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
    let hist = |rows: &[f32]| -> Vec<f64> {
        let c = counts(rows, max, d);
        let mut h = vec![0.0; max];
        for k in &c {
            h[k.saturating_sub(1).min(max - 1)] += 1.0 / c.len().max(1) as f64;
        }
        h
    };
    let (gen_hist, ref_hist) = (hist(&samples), hist(&data.reference));
    let mut metrics = std::collections::BTreeMap::new();
    let tv = 0.5
        * gen_hist
            .iter()
            .zip(&ref_hist)
            .map(|(a, b)| (a - b).abs())
            .sum::<f64>();
    metrics.insert("count_tv".to_string(), tv);
    let mean = |h: &[f64]| {
        h.iter()
            .enumerate()
            .map(|(k, p)| (k + 1) as f64 * p)
            .sum::<f64>()
    };
    metrics.insert("count_mean".to_string(), mean(&gen_hist));
    metrics.insert("count_mean_data".to_string(), mean(&ref_hist));
    write_text(&out.join("metrics.yaml"), &metrics_yaml(&metrics))?;
    let _ = other::<String>;
    Ok(metrics)
}

//! Threading policy. The networks difc trains are small: a batch-512 MLP step is dominated by
//! synchronisation when candle's matrix products are split across rayon threads (measured:
//! 3.4 ms single-threaded vs 14 ms with 2 threads on a loaded 2-core machine). So difc runs
//! candle single-threaded and parallelises where the work is independent: sampling evaluates
//! disjoint chunks of samples on separate threads, and the metrics use their own threads.
//! Setting RAYON_NUM_THREADS overrides the candle part.

use crate::nn::Module;
use candle_core::{Device, Tensor};

/// Rows per network call inside one thread (fits the caches; measured fastest 4–16k).
const CHUNK: usize = 4096;

/// Makes candle single-threaded unless the user chose otherwise. Call at start-up, before any
/// tensor work.
pub fn configure() {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        // SAFETY-free in edition 2021; called before any other thread exists.
        std::env::set_var("RAYON_NUM_THREADS", "1");
    }
}

/// Worker threads for independent work.
pub fn workers() -> usize {
    std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .max(1)
}

/// Evaluates the network on `x` (rows × dim) at network time `t`, splitting the rows across
/// worker threads on the CPU. Each row's result does not depend on the split.
pub fn eval_parallel(
    net: &dyn Module,
    x: &[f32],
    dim: usize,
    t: f32,
    device: &Device,
) -> Result<Vec<f32>, String> {
    let rows = x.len() / dim;
    let eval = |part: &[f32]| -> Result<Vec<f32>, String> {
        let n = part.len() / dim;
        let xt = Tensor::from_slice(part, (n, dim), device).map_err(|e| e.to_string())?;
        let tt = Tensor::full(t, n, device).map_err(|e| e.to_string())?;
        let mut out = Vec::with_capacity(part.len());
        let mut start = 0;
        while start < n {
            let len = CHUNK.min(n - start);
            let o = net
                .forward_eval(
                    &xt.narrow(0, start, len).map_err(|e| e.to_string())?,
                    &tt.narrow(0, start, len).map_err(|e| e.to_string())?,
                )
                .map_err(|e| e.to_string())?;
            out.extend(
                o.flatten_all()
                    .and_then(|o| o.to_vec1::<f32>())
                    .map_err(|e| e.to_string())?,
            );
            start += len;
        }
        Ok(out)
    };
    let threads = if device.is_cpu() {
        workers().min(rows / CHUNK).max(1)
    } else {
        1
    };
    if threads == 1 {
        return eval(x);
    }
    // Split on chunk boundaries so every row is evaluated in the same chunk layout.
    let chunks_per_thread = rows.div_ceil(CHUNK).div_ceil(threads);
    let span = chunks_per_thread * CHUNK * dim;
    let results: Vec<Result<Vec<f32>, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = x
            .chunks(span)
            .map(|part| s.spawn(move || eval(part)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("a sampling thread panicked".to_string()))
            })
            .collect()
    });
    let mut out = Vec::with_capacity(x.len());
    for r in results {
        out.extend(r?);
    }
    Ok(out)
}

/// The transform network NN(x, τ) at every row, and ∂NN/∂τ when `tangent` (else empty), in
/// chunks of the same size as [`eval_parallel`].
pub fn eval_transform(
    net: &dyn Module,
    x: &[f32],
    dim: usize,
    t: f32,
    tangent: bool,
    device: &Device,
) -> Result<(Vec<f32>, Vec<f32>), String> {
    if !tangent {
        return Ok((eval_parallel(net, x, dim, t, device)?, Vec::new()));
    }
    let e = |e: crate::nn::NetError| e.to_string();
    let c = |e: candle_core::Error| e.to_string();
    let mut value = Vec::with_capacity(x.len());
    let mut deriv = Vec::with_capacity(x.len());
    for part in x.chunks(CHUNK * dim) {
        let n = part.len() / dim;
        let xt = Tensor::from_slice(part, (n, dim), device).map_err(c)?;
        let tt = Tensor::full(t, n, device).map_err(c)?;
        let (v, dv) = net.forward_with_time_tangent(&xt, &tt).map_err(e)?;
        value.extend(
            v.flatten_all()
                .and_then(|v| v.to_vec1::<f32>())
                .map_err(c)?,
        );
        deriv.extend(
            dv.flatten_all()
                .and_then(|v| v.to_vec1::<f32>())
                .map_err(c)?,
        );
    }
    Ok((value, deriv))
}

//! The networks' time tangent (`Module::forward_with_time_tangent`) against finite differences,
//! the gradients of losses built from it, the fused and plain kernels against each other, and
//! the learned linear time embedding.

use candle_core::{DType, Device, Tensor, Var};
use difc::nn::{Activation, Mlp, MlpConfig, Module, TimeEmbedding};
use difc::rng::{stream, Purpose};
use rand::Rng;

type R<T> = Result<T, Box<dyn std::error::Error>>;

const ACTIVATIONS: [Activation; 4] = [
    Activation::Gelu,
    Activation::Silu,
    Activation::Relu,
    Activation::Tanh,
];

/// Every embedding, at the frequencies difc trains with (sinusoidal ω up to 1000).
const EMBEDDINGS: [TimeEmbedding; 3] = [
    TimeEmbedding::Sinusoidal {
        size: 8,
        time_scale: 1000.0,
    },
    TimeEmbedding::RandomFourier {
        size: 8,
        scale: 16.0,
    },
    TimeEmbedding::Linear { size: 8 },
];

const DIM: usize = 3;

fn config(activation: Activation, time_embedding: TimeEmbedding, seed: u64) -> MlpConfig {
    MlpConfig {
        dim: DIM,
        width: 16,
        depth: 2,
        activation,
        time_embedding,
        last_layer_scale: 1.0,
        seed,
    }
}

/// `x` `[b, DIM]` standard normal, `t` `[b]` uniform in [0.05, 0.95], in f64.
fn batch(b: usize, seed: u64) -> R<(Tensor, Tensor)> {
    let mut rng = stream(seed, Purpose::Test, 0, 0);
    let xs: Vec<f64> = (0..b * DIM)
        .map(|_| rng.sample(rand_distr::StandardNormal))
        .collect();
    let ts: Vec<f64> = (0..b).map(|_| 0.05 + 0.9 * rng.random::<f64>()).collect();
    Ok((
        Tensor::from_vec(xs, (b, DIM), &Device::Cpu)?,
        Tensor::from_vec(ts, b, &Device::Cpu)?,
    ))
}

/// ‖a − b‖₂ / ‖b‖₂ over all entries, in f64.
fn rel_err(a: &Tensor, b: &Tensor) -> R<f64> {
    let (a, b) = (a.to_dtype(DType::F64)?, b.to_dtype(DType::F64)?);
    let num = (&a - &b)?.sqr()?.sum_all()?.to_scalar::<f64>()?.sqrt();
    let den = b.sqr()?.sum_all()?.to_scalar::<f64>()?.sqrt();
    Ok(num / den)
}

/// ∂f/∂t by the 4-point central stencil (error O(h⁴)), f evaluated in f64.
fn time_fd(net: &dyn Module, x: &Tensor, t: &Tensor, h: f64) -> R<Tensor> {
    let f = |k: f64| net.forward_eval(x, &t.affine(1.0, k * h)?);
    let d1 = (f(1.0)? - f(-1.0)?)?;
    let d2 = (f(2.0)? - f(-2.0)?)?;
    Ok(((d1 * 8.0)? - d2)?.affine(1.0 / (12.0 * h), 0.0)?)
}

/// f64: relative error ≤ 1e-8 for every activation and embedding; the value is the forward's.
#[test]
fn tangent_matches_central_differences_f64() -> R<()> {
    let (x, t) = batch(16, 1)?;
    for act in ACTIVATIONS {
        for emb in EMBEDDINGS {
            let net = Mlp::new(config(act, emb, 2), DType::F64, &Device::Cpu)?;
            let (y, y_dot) = net.forward_with_time_tangent(&x, &t)?;
            assert!(
                rel_err(&y, &net.forward_eval(&x, &t)?)? < 1e-14,
                "{act:?} {emb:?} value"
            );
            let fd = time_fd(&net, &x, &t, 1e-6)?;
            let e = rel_err(&y_dot, &fd)?;
            assert!(e <= 1e-8, "{act:?} {emb:?}: tangent relative error {e:e}");
        }
    }
    Ok(())
}

/// f32 (the fused-kernel network): the tangent within 1e-4 of central differences of the same
/// weights evaluated in f64 at the same (f32) times.
#[test]
fn tangent_matches_central_differences_f32() -> R<()> {
    let (x, t) = batch(64, 3)?;
    let (x32, t32) = (x.to_dtype(DType::F32)?, t.to_dtype(DType::F32)?);
    for act in ACTIVATIONS {
        for emb in EMBEDDINGS {
            let net32 = Mlp::new(config(act, emb, 4), DType::F32, &Device::Cpu)?;
            let mut net64 = Mlp::new(config(act, emb, 4), DType::F64, &Device::Cpu)?;
            net64.load_weights(&net32.weights())?;
            let (_, y_dot) = net32.forward_with_time_tangent(&x32, &t32)?;
            assert_eq!(y_dot.dtype(), DType::F32);
            let fd = time_fd(&net64, &x, &t32.to_dtype(DType::F64)?, 1e-7)?;
            let e = rel_err(&y_dot, &fd)?;
            assert!(
                e <= 1e-4,
                "{act:?} {emb:?}: f32 tangent relative error {e:e}"
            );
        }
    }
    Ok(())
}

/// The loss on the tangent used by the gradient checks.
fn tangent_loss(net: &Mlp, x: &Tensor, t: &Tensor) -> R<Tensor> {
    let (y, y_dot) = net.forward_with_time_tangent(x, t)?;
    Ok((y_dot.sqr()?.sum_all()? + (y * &y_dot)?.sum_all()?)?)
}

/// A few entries of every parameter: the first, the last and one in the middle.
fn probes(net: &Mlp) -> Vec<(String, Var, usize)> {
    let mut out = Vec::new();
    for (name, var) in net.vars() {
        let n = var.elem_count();
        for i in [0, n / 2, n - 1] {
            out.push((name.clone(), var.clone(), i));
        }
    }
    out
}

fn with_entry(var: &Var, i: usize, delta: f64) -> R<Tensor> {
    let mut v = var.as_tensor().flatten_all()?.to_vec1::<f64>()?;
    v[i] += delta;
    Ok(Tensor::from_vec(v, var.shape(), var.device())?)
}

/// Gradients (by backprop) of `Σ ẏ² + Σ y·ẏ` with respect to the weights, against 4-point
/// finite differences of the same loss in f64. They differ if `act'(z)` in the tangent is not a
/// differentiable expression of the weights.
#[test]
fn tangent_loss_gradients_match_finite_differences() -> R<()> {
    let (x, t) = batch(8, 5)?;
    let cases = ACTIVATIONS
        .iter()
        .map(|&a| (a, EMBEDDINGS[0]))
        .chain(EMBEDDINGS[1..].iter().map(|&e| (Activation::Gelu, e)));
    for (act, emb) in cases {
        let net = Mlp::new(config(act, emb, 6), DType::F64, &Device::Cpu)?;
        let grads = tangent_loss(&net, &x, &t)?.backward()?;
        let (mut got, mut want) = (Vec::new(), Vec::new());
        for (name, var, i) in probes(&net) {
            let g = grads
                .get(var.as_tensor())
                .ok_or_else(|| format!("{act:?} {emb:?}: no gradient for {name}"))?;
            got.push(g.flatten_all()?.to_vec1::<f64>()?[i]);
            let orig = var.as_tensor().copy()?;
            let h = 1e-4;
            let at = |k: f64| -> R<f64> {
                var.set(&with_entry(&var, i, k * h)?)?;
                let l = tangent_loss(&net, &x, &t)?.to_scalar::<f64>()?;
                var.set(&orig)?;
                Ok(l)
            };
            let fd = (8.0 * (at(1.0)? - at(-1.0)?) - (at(2.0)? - at(-2.0)?)) / (12.0 * h);
            want.push(fd);
        }
        let (g, w) = (
            Tensor::new(got.as_slice(), &Device::Cpu)?,
            Tensor::new(want.as_slice(), &Device::Cpu)?,
        );
        let e = rel_err(&g, &w)?;
        assert!(e <= 1e-7, "{act:?} {emb:?}: gradient relative error {e:e}");
    }
    Ok(())
}

/// f32: the fused and plain kernels give the same values and gradients, and the tangent pass
/// gives the same value.
#[test]
fn fused_and_plain_paths_agree_f32() -> R<()> {
    let (x, t) = batch(256, 7)?;
    let (x, t) = (x.to_dtype(DType::F32)?, t.to_dtype(DType::F32)?);
    for act in ACTIVATIONS {
        for emb in EMBEDDINGS {
            let fused = Mlp::new(config(act, emb, 8), DType::F32, &Device::Cpu)?;
            let plain = Mlp::new(config(act, emb, 8), DType::F32, &Device::Cpu)?.with_plain_ops();
            let (yf, yp) = (fused.forward(&x, &t)?, plain.forward(&x, &t)?);
            assert!(rel_err(&yf, &yp)? < 1e-5, "{act:?} {emb:?} value");
            let (yt, _) = fused.forward_with_time_tangent(&x, &t)?;
            assert!(
                rel_err(&yt, &yp)? < 1e-5,
                "{act:?} {emb:?} tangent-pass value"
            );
            let gf = yf.sqr()?.sum_all()?.backward()?;
            let gp = yp.sqr()?.sum_all()?.backward()?;
            for ((name, vf), (_, vp)) in fused.vars().iter().zip(plain.vars()) {
                let a = gf.get(vf.as_tensor()).ok_or("no fused gradient")?;
                let b = gp.get(vp.as_tensor()).ok_or("no plain gradient")?;
                let e = rel_err(a, b)?;
                assert!(e < 1e-4, "{act:?} {emb:?} grad {name}: {e:e}");
            }
        }
    }
    Ok(())
}

/// The linear embedding has its two parameters, gradients reach them, and a few steps of
/// gradient descent on a time-dependent target move them and lower the loss.
#[test]
fn linear_embedding_trains() -> R<()> {
    let net = Mlp::new(
        config(Activation::Gelu, TimeEmbedding::Linear { size: 4 }, 9),
        DType::F32,
        &Device::Cpu,
    )?;
    let names: Vec<String> = net.vars().into_iter().map(|(n, _)| n).collect();
    assert!(names.contains(&"time_embed.weight".to_string()));
    assert!(names.contains(&"time_embed.bias".to_string()));
    let w = net
        .vars()
        .into_iter()
        .find(|(n, _)| n == "time_embed.weight")
        .ok_or("weight")?
        .1;
    assert_eq!(w.dims(), [4, 1]);
    let w0 = w.as_tensor().copy()?;
    let (x, t) = batch(256, 11)?;
    let (x, t) = (x.to_dtype(DType::F32)?, t.to_dtype(DType::F32)?);
    // Target: a function of t alone, which only the embedding can supply.
    let target = t
        .affine(2.0, -1.0)?
        .unsqueeze(1)?
        .broadcast_as((256, DIM))?;
    let loss =
        |net: &Mlp| -> R<Tensor> { Ok((net.forward(&x, &t)? - &target)?.sqr()?.mean_all()?) };
    let first = loss(&net)?.to_scalar::<f32>()?;
    for _ in 0..200 {
        let g = loss(&net)?.backward()?;
        let gw = g
            .get(w.as_tensor())
            .ok_or("no gradient reaches time_embed.weight")?;
        assert!(gw.abs()?.sum_all()?.to_scalar::<f32>()? > 0.0);
        for (_, v) in net.vars() {
            let gv = g.get(v.as_tensor()).ok_or("missing gradient")?;
            v.set(&(v.as_tensor() - gv.affine(0.2, 0.0)?)?)?;
        }
    }
    let last = loss(&net)?.to_scalar::<f32>()?;
    assert!(last < 0.5 * first, "loss {first} → {last}");
    assert!(
        rel_err(w.as_tensor(), &w0)? > 1e-3,
        "time_embed.weight did not move"
    );
    // Checkpoint round trip: the parameters are part of the weights.
    let mut other = Mlp::new(
        config(Activation::Gelu, TimeEmbedding::Linear { size: 4 }, 10),
        DType::F32,
        &Device::Cpu,
    )?;
    other.load_weights(&net.weights())?;
    assert_eq!(
        rel_err(&other.forward_eval(&x, &t)?, &net.forward_eval(&x, &t)?)?,
        0.0
    );
    Ok(())
}

/// `embedding = linear` in a spec builds the linear embedding (it used to train as sinusoidal).
#[test]
fn spec_embedding_linear_builds_the_linear_embedding() -> R<()> {
    let spec = difc::ir::NetworkSpec {
        kind: difc::ir::NetworkKind::Mlp,
        heads: 1,
        width: 8,
        depth: 1,
        activation: difc::ir::ActivationKind::Gelu,
        embedding: difc::ir::EmbeddingKind::Linear,
        embed_dim: 6,
        attention: false,
    };
    let net = difc::run::train::build_mlp(&spec, 2, 0, &Device::Cpu)?;
    assert_eq!(
        net.config().time_embedding,
        TimeEmbedding::Linear { size: 6 }
    );
    assert!(net.weights().iter().any(|(n, _)| n == "time_embed.weight"));
    assert!(!net.weights().iter().any(|(n, _)| n == difc::nn::FREQS_NAME));
    Ok(())
}

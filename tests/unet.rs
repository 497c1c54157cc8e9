//! The U-Net (`difc::nn::UNet`): shapes for rows and images at 8×8 and 28×28 (odd 7×7 level),
//! the time tangent against finite differences in f64 and f32, gradients of a loss on value and
//! tangent reaching every parameter, seeded init, checkpoints, and configuration errors.

use candle_core::{DType, Device, Tensor};
use difc::nn::{Module, NetError, TimeEmbedding, UNet, UNetConfig};
use difc::rng::{stream, Purpose};
use rand::Rng;

type R<T> = Result<T, Box<dyn std::error::Error>>;

/// A small network: base 8, 4 groups, attention, one block per level.
fn small(channels: usize, side: usize, levels: usize, seed: u64) -> UNetConfig {
    UNetConfig {
        base: 8,
        levels,
        groups: 4,
        ..UNetConfig::new(channels, side, side, seed)
    }
}

/// `x` `[b, d]` standard normal, `t` `[b]` uniform in [0.05, 0.95], in f64.
fn batch(b: usize, d: usize, seed: u64) -> R<(Tensor, Tensor)> {
    let mut rng = stream(seed, Purpose::Test, 0, 0);
    let xs: Vec<f64> = (0..b * d)
        .map(|_| rng.sample(rand_distr::StandardNormal))
        .collect();
    let ts: Vec<f64> = (0..b).map(|_| 0.05 + 0.9 * rng.random::<f64>()).collect();
    Ok((
        Tensor::from_vec(xs, (b, d), &Device::Cpu)?,
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

fn max_abs_diff(a: &Tensor, b: &Tensor) -> R<f64> {
    let d = (a.to_dtype(DType::F64)? - b.to_dtype(DType::F64)?)?;
    Ok(d.abs()?.flatten_all()?.max(0)?.to_scalar::<f64>()?)
}

/// ∂F/∂t by the 4-point central stencil (error O(h⁴)).
fn time_fd(net: &dyn Module, x: &Tensor, t: &Tensor, h: f64) -> R<Tensor> {
    let f = |k: f64| net.forward_eval(x, &t.affine(1.0, k * h)?);
    let d1 = (f(1.0)? - f(-1.0)?)?;
    let d2 = (f(2.0)? - f(-2.0)?)?;
    Ok(((d1 * 8.0)? - d2)?.affine(1.0 / (12.0 * h), 0.0)?)
}

#[test]
fn output_has_the_input_shape_for_rows_and_images() -> R<()> {
    for (c, side, levels) in [(1, 8, 2), (3, 8, 2), (1, 28, 3), (3, 28, 3)] {
        let net = UNet::new(small(c, side, levels, 1), DType::F32, &Device::Cpu)?;
        let d = c * side * side;
        let (rows, t) = batch(2, d, 3)?;
        let (rows, t) = (rows.to_dtype(DType::F32)?, t.to_dtype(DType::F32)?);
        let img = rows.reshape((2, c, side, side))?;
        for x in [&rows, &img] {
            let y = net.forward(x, &t)?;
            assert_eq!(y.dims(), x.dims(), "{c}×{side}×{side} forward");
            assert_eq!(net.forward_eval(x, &t)?.dims(), x.dims());
            let (v, dv) = net.forward_with_time_tangent(x, &t)?;
            assert_eq!((v.dims(), dv.dims()), (x.dims(), x.dims()));
        }
        // Rows are images flattened in (C, H, W) order.
        let a = net.forward_eval(&rows, &t)?;
        let b = net.forward_eval(&img, &t)?.reshape((2, d))?;
        assert_eq!(max_abs_diff(&a, &b)?, 0.0);
        assert!(matches!(
            net.forward(&rows.narrow(1, 0, d - 1)?, &t),
            Err(NetError::Shape(_))
        ));
        assert!(matches!(
            net.forward(&rows, &t.narrow(0, 0, 1)?),
            Err(NetError::Shape(_))
        ));
    }
    Ok(())
}

/// The configurations of the tangent checks: 8×8 (two levels), and 28×28 (three levels, a 7×7
/// one), each with attention, a sinusoidal and a learned linear embedding.
fn tangent_cases() -> Vec<(UNetConfig, usize)> {
    let mut out = Vec::new();
    for (c, side, levels) in [(1, 8, 2), (2, 28, 3)] {
        for emb in [
            TimeEmbedding::Sinusoidal {
                size: 16,
                time_scale: 1000.0,
            },
            TimeEmbedding::Linear { size: 8 },
        ] {
            let mut cfg = small(c, side, levels, 5);
            cfg.time_embedding = emb;
            out.push((cfg, c * side * side));
        }
    }
    out
}

/// f64: relative error ≤ 1e-8; the value equals the inference pass.
#[test]
fn tangent_matches_central_differences_f64() -> R<()> {
    for (cfg, d) in tangent_cases() {
        let net = UNet::new(cfg.clone(), DType::F64, &Device::Cpu)?;
        let (x, t) = batch(3, d, 7)?;
        let (y, y_dot) = net.forward_with_time_tangent(&x, &t)?;
        assert!(rel_err(&y, &net.forward_eval(&x, &t)?)? < 1e-13, "{cfg:?}");
        let fd = time_fd(&net, &x, &t, 1e-5)?;
        let e = rel_err(&y_dot, &fd)?;
        assert!(e <= 1e-8, "{cfg:?}: tangent relative error {e:e}");
    }
    Ok(())
}

/// f32: the tangent within 1e-4 of central differences of the same weights in f64.
#[test]
fn tangent_matches_central_differences_f32() -> R<()> {
    for (cfg, d) in tangent_cases() {
        let net32 = UNet::new(cfg.clone(), DType::F32, &Device::Cpu)?;
        let mut net64 = UNet::new(cfg.clone(), DType::F64, &Device::Cpu)?;
        net64.load_weights(&net32.weights())?;
        let (x, t) = batch(4, d, 9)?;
        let (x32, t32) = (x.to_dtype(DType::F32)?, t.to_dtype(DType::F32)?);
        let (y, y_dot) = net32.forward_with_time_tangent(&x32, &t32)?;
        assert_eq!(y_dot.dtype(), DType::F32);
        let t64 = t32.to_dtype(DType::F64)?;
        assert!(rel_err(&y, &net64.forward_eval(&x, &t64)?)? < 1e-5);
        let fd = time_fd(&net64, &x, &t64, 1e-5)?;
        let e = rel_err(&y_dot, &fd)?;
        assert!(e <= 1e-4, "{cfg:?}: f32 tangent relative error {e:e}");
    }
    Ok(())
}

/// Backprop of Σ value + Σ tangent reaches every parameter with a finite, nonzero gradient (a
/// branch whose backward is missing, like candle-nn's `softmax_last_dim`, fails this).
#[test]
fn loss_on_value_and_tangent_trains_every_parameter() -> R<()> {
    for dtype in [DType::F32, DType::F64] {
        let mut cfg = small(1, 28, 3, 2);
        cfg.blocks = 2;
        cfg.time_embedding = TimeEmbedding::Linear { size: 8 };
        let net = UNet::new(cfg, dtype, &Device::Cpu)?;
        let (x, t) = batch(2, 784, 4)?;
        let (x, t) = (x.to_dtype(dtype)?, t.to_dtype(dtype)?);
        let (y, y_dot) = net.forward_with_time_tangent(&x, &t)?;
        let grads = (y.sum_all()? + y_dot.sum_all()?)?.backward()?;
        let vars = net.vars();
        assert!(vars.iter().any(|(n, _)| n == "mid.attn.qkv.weight"));
        assert!(vars.iter().any(|(n, _)| n == "time_embed.weight"));
        for (name, var) in vars {
            let g = grads
                .get(var.as_tensor())
                .unwrap_or_else(|| panic!("{dtype:?}: no gradient for {name}"));
            let g = g.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
            assert!(
                g.iter().all(|v| v.is_finite()),
                "{dtype:?} {name}: not finite"
            );
            assert!(
                g.iter().any(|v| *v != 0.0),
                "{dtype:?} {name}: zero gradient"
            );
        }
    }
    Ok(())
}

/// `var`'s values with entry `i` moved by `delta`.
fn nudged(var: &candle_core::Var, i: usize, delta: f64) -> R<Tensor> {
    let mut v = var.as_tensor().flatten_all()?.to_vec1::<f64>()?;
    v[i] += delta;
    Ok(Tensor::from_vec(v, var.shape(), var.device())?)
}

/// Backprop gradients of `Σ ẏ² + Σ y·ẏ` against 4-point finite differences (f64) at three
/// entries of every parameter (for `qkv.weight`: a query, a key and a value row). This catches
/// a branch whose backward is missing even where another path still reaches the parameter (a
/// detached softmax leaves the keys and queries a gradient through the tangent's Ṡ).
#[test]
fn tangent_loss_gradients_match_finite_differences() -> R<()> {
    let mut cfg = small(1, 8, 2, 8);
    cfg.time_embedding = TimeEmbedding::Linear { size: 8 };
    let net = UNet::new(cfg, DType::F64, &Device::Cpu)?;
    let (x, t) = batch(2, 64, 10)?;
    let loss = || -> R<Tensor> {
        let (y, y_dot) = net.forward_with_time_tangent(&x, &t)?;
        Ok((y_dot.sqr()?.sum_all()? + (y * &y_dot)?.sum_all()?)?)
    };
    let grads = loss()?.backward()?;
    let h = 1e-5;
    for (name, var) in net.vars() {
        let g = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("no gradient for {name}"))
            .flatten_all()?
            .to_vec1::<f64>()?;
        let n = var.elem_count();
        for i in [0, n / 2, n - 1] {
            let original = var.as_tensor().copy()?;
            let at = |k: f64| -> R<f64> {
                var.set(&nudged(&var, i, k * h)?)?;
                let l = loss()?.to_scalar::<f64>()?;
                var.set(&original)?;
                Ok(l)
            };
            let fd = (8.0 * (at(1.0)? - at(-1.0)?) - (at(2.0)? - at(-2.0)?)) / (12.0 * h);
            let tol = 1e-6 * fd.abs().max(1.0);
            assert!(
                (g[i] - fd).abs() <= tol,
                "{name}[{i}]: backprop {} vs {fd}",
                g[i]
            );
        }
    }
    Ok(())
}

#[test]
fn init_is_seeded_and_names_are_stable() -> R<()> {
    let a = UNet::new(small(1, 8, 2, 3), DType::F32, &Device::Cpu)?;
    let b = UNet::new(small(1, 8, 2, 3), DType::F32, &Device::Cpu)?;
    let c = UNet::new(small(1, 8, 2, 4), DType::F32, &Device::Cpu)?;
    let names: Vec<String> = a.weights().into_iter().map(|(n, _)| n).collect();
    for want in [
        "time.lin1.weight",
        "in.conv.weight",
        "down.0.res.0.conv1.weight",
        "down.0.res.0.norm1.weight",
        "down.0.down.conv.weight",
        "mid.attn.qkv.weight",
        "up.0.up.conv.weight",
        "up.1.res.0.skip.weight",
        "out.conv.weight",
        "time_embed.freqs",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} missing: {names:?}");
    }
    let mut differ = 0;
    for (((name, va), (_, vb)), (_, vc)) in a.vars().iter().zip(b.vars()).zip(c.vars()) {
        assert_eq!(max_abs_diff(va.as_tensor(), vb.as_tensor())?, 0.0, "{name}");
        if max_abs_diff(va.as_tensor(), vc.as_tensor())? > 0.0 {
            differ += 1;
        }
    }
    // Every convolution and linear layer (weights and biases) depends on the seed; GroupNorm
    // starts at (1, 0) for any seed.
    let random = a.vars().iter().filter(|(n, _)| !n.contains("norm")).count();
    assert_eq!(differ, random);
    Ok(())
}

#[test]
fn weights_round_trip_and_mismatches_are_reported() -> R<()> {
    let a = UNet::new(small(1, 28, 3, 1), DType::F32, &Device::Cpu)?;
    let mut b = UNet::new(small(1, 28, 3, 2), DType::F32, &Device::Cpu)?;
    let (x, t) = batch(2, 784, 5)?;
    let (x, t) = (x.to_dtype(DType::F32)?, t.to_dtype(DType::F32)?);
    assert!(max_abs_diff(&a.forward_eval(&x, &t)?, &b.forward_eval(&x, &t)?)? > 0.0);
    b.load_weights(&a.weights())?;
    assert_eq!(
        max_abs_diff(&a.forward_eval(&x, &t)?, &b.forward_eval(&x, &t)?)?,
        0.0
    );
    let (ya, da) = a.forward_with_time_tangent(&x, &t)?;
    let (yb, db) = b.forward_with_time_tangent(&x, &t)?;
    assert_eq!(max_abs_diff(&ya, &yb)?, 0.0);
    assert_eq!(max_abs_diff(&da, &db)?, 0.0);

    let mut wide = UNet::new(
        UNetConfig {
            base: 16,
            ..small(1, 28, 3, 1)
        },
        DType::F32,
        &Device::Cpu,
    )?;
    match wide.load_weights(&a.weights()) {
        Err(NetError::Weights(m)) => {
            assert!(m.contains("time.lin1.weight") && m.contains("shape"), "{m}")
        }
        other => panic!("expected a weights error, got {other:?}"),
    }
    let mut missing = a.weights();
    missing.retain(|(n, _)| n != "mid.attn.proj.bias");
    match b.load_weights(&missing) {
        Err(NetError::Weights(m)) => assert!(m.contains("mid.attn.proj.bias"), "{m}"),
        other => panic!("expected a weights error, got {other:?}"),
    }
    Ok(())
}

/// The training and inference passes give the same values (the tangent pass's value to
/// rounding: it runs plain ops where the others may run the fused kernel).
#[test]
fn forward_and_forward_eval_agree() -> R<()> {
    for dtype in [DType::F32, DType::F64] {
        let net = UNet::new(small(1, 28, 3, 6), dtype, &Device::Cpu)?;
        let (x, t) = batch(3, 784, 6)?;
        let (x, t) = (x.to_dtype(dtype)?, t.to_dtype(dtype)?);
        let y = net.forward(&x, &t)?;
        assert_eq!(
            max_abs_diff(&y, &net.forward_eval(&x, &t)?)?,
            0.0,
            "{dtype:?}"
        );
        let (v, _) = net.forward_with_time_tangent(&x, &t)?;
        assert!(rel_err(&v, &y)? < 1e-5, "{dtype:?}");
    }
    Ok(())
}

#[test]
fn bad_configurations_are_rejected() -> R<()> {
    let check = |cfg: UNetConfig, want: &str| match UNet::new(cfg, DType::F32, &Device::Cpu) {
        Err(NetError::Config(m)) => assert!(m.contains(want), "{m:?} lacks {want:?}"),
        Err(e) => panic!("expected a config error about {want}, got {e}"),
        Ok(_) => panic!("expected a config error about {want}"),
    };
    check(
        UNetConfig {
            groups: 3,
            ..small(1, 8, 2, 0)
        },
        "groups do not divide",
    );
    for field in [
        "channels", "height", "width", "base", "levels", "blocks", "groups",
    ] {
        let mut cfg = small(1, 8, 2, 0);
        match field {
            "channels" => cfg.channels = 0,
            "height" => cfg.height = 0,
            "width" => cfg.width = 0,
            "base" => cfg.base = 0,
            "levels" => cfg.levels = 0,
            "blocks" => cfg.blocks = 0,
            _ => cfg.groups = 0,
        }
        check(cfg, &format!("`{field}` must be at least 1"));
    }
    check(
        UNetConfig {
            levels: 5,
            ..small(1, 8, 2, 0)
        },
        "too many",
    );
    check(
        UNetConfig {
            time_embedding: TimeEmbedding::Sinusoidal {
                size: 7,
                time_scale: 1.0,
            },
            ..small(1, 8, 2, 0)
        },
        "even",
    );
    check(
        UNetConfig {
            last_layer_scale: f64::NAN,
            ..small(1, 8, 2, 0)
        },
        "last_layer_scale",
    );
    assert!(matches!(
        UNet::new(small(1, 8, 2, 0), DType::BF16, &Device::Cpu),
        Err(NetError::Config(_))
    ));
    Ok(())
}

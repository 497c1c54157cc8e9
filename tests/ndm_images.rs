//! NDM and its Gaussian counterpart (VDM, F = identity) on the 8×8 digits, through `difc run`'s
//! code path, with the discrete 17-level decoder: the *result* is checked, not only that it ran.
//!
//! The digits come from the scikit-learn wheel (fetched on first use into the data cache, sha256
//! checked; `.ci/run` has registry access). Both models share the x̂ network, the schedule, the
//! steps and the seed. Measured here (1500 steps, seeds 0/1/2): NDM 2.519 / 2.510 / 2.556 bpd
//! (± 0.059 each, the standard error over time samples), VDM 2.879 / 2.883 / 2.893 (± 0.053).
//! The gap (≈ 0.36 bpd) is ≈ 4.5 combined standard errors and its sign held on every seed, so the
//! test asks for 3. A model that learned nothing sits at the uniform bound log2(17) = 4.09; a
//! per-pixel histogram of the training digits scores 2.42 (`metrics::images`).

mod common;

use candle_core::Device;

const PROCESS: &str = "process p(gamma_min = -5.0, gamma_max = 6.0) {
  time = [0, 1]
  gamma(t) = gamma_min + t * (gamma_max - gamma_min)
  alpha(t) = sqrt(1 / (1 + exp(gamma(t))))
  sigma(t) = sqrt(1 / (1 + exp(-gamma(t))))
  transform F(x, t) = TRANSFORM
  mean(x, t) = alpha(t) * F(x, t)
  std(t) = sigma(t)
}
experiment e {
  data = digits(n = 1437)
  process = p()
  network = mlp(width = 256, depth = 2)
  train { steps = 1500, batch = 128, lr = 0.002, checkpoint_every = 1500 }
  sample { n = 64, solver = ancestral, steps = 50 }
  metrics = [mmd]
}
";

struct Outcome {
    metrics: std::collections::BTreeMap<String, f64>,
    bpd: f64,
    se: f64,
    first_loss: f64,
    last_losses: f64,
}

fn train(transform: &str, dir: &std::path::Path) -> Outcome {
    let exp = common::experiment(&PROCESS.replace("TRANSFORM", transform));
    assert_eq!(exp.data.levels, Some(17));
    let opts = difc::run::experiment::RunOptions {
        out: dir.to_path_buf(),
        resume: false,
        device: Device::Cpu,
        spec_path: None,
        overrides: Vec::new(),
    };
    let summary = difc::run::experiment::run(&exp, &opts).expect("runs");
    let samples = difc::run::npy::read_npy(dir.join("samples.npy")).expect("samples.npy");
    assert_eq!(
        samples.shape,
        vec![64, 1, 8, 8],
        "samples keep the image shape"
    );
    let reference = difc::run::npy::read_npy(dir.join("reference.npy")).expect("reference");
    assert_eq!(
        reference.shape,
        vec![360, 1, 8, 8],
        "the whole held-out split"
    );
    assert!(dir.join("samples.png").exists());
    let csv = std::fs::read_to_string(dir.join("loss.csv")).expect("loss.csv");
    let losses: Vec<f64> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap().parse().unwrap())
        .collect();
    let tail = &losses[losses.len() - losses.len() / 3..];
    Outcome {
        metrics: summary.metrics.clone(),
        bpd: summary.metrics["bpd"],
        se: summary.metrics["bpd_stderr"],
        first_loss: losses[0],
        last_losses: tail.iter().sum::<f64>() / tail.len() as f64,
    }
}

#[test]
fn ndm_on_digits_beats_its_gaussian_counterpart_in_bits_per_dim() {
    let dir = tempfile::tempdir().expect("tmp");
    let vdm = train("identity", &dir.path().join("vdm"));
    let ndm = train(
        "learned(mlp(width = 128, depth = 3))",
        &dir.path().join("ndm"),
    );
    eprintln!(
        "digits, 1500 steps: NDM {:.3} ± {:.3} bpd, VDM {:.3} ± {:.3} bpd",
        ndm.bpd, ndm.se, vdm.bpd, vdm.se
    );
    let uniform = 17f64.log2();
    for (name, o) in [("VDM", &vdm), ("NDM", &ndm)] {
        assert!(o.se > 0.0 && o.se < 0.15, "{name} standard error {}", o.se);
        assert!(
            o.bpd + 3.0 * o.se < uniform - 0.5,
            "{name}: {:.3} ± {:.3} bpd is not clearly below the uniform {uniform:.2}",
            o.bpd,
            o.se
        );
        // The training loss is the negative ELBO in nats per dimension: it must fall.
        assert!(
            o.last_losses < 0.6 * o.first_loss,
            "{name} loss {} → {}",
            o.first_loss,
            o.last_losses
        );
    }
    let combined = (ndm.se.powi(2) + vdm.se.powi(2)).sqrt();
    assert!(
        ndm.bpd + 3.0 * combined < vdm.bpd,
        "NDM {:.3} is not 3 standard errors ({combined:.3}) below VDM {:.3}",
        ndm.bpd,
        vdm.bpd
    );
    // The learned transform is not the identity and has not collapsed to a constant: at
    // t = 0.5 it moves the digits by a fair fraction of their scale, and F of different digits
    // still differ (measured: shift 1.08 and spread 0.61 of the data's at 1500 steps).
    let (shift, spread) = (
        ndm.metrics["transform_shift_relative"],
        ndm.metrics["transform_spread_relative"],
    );
    eprintln!("NDM transform at t = 0.5: relative shift {shift:.3}, spread {spread:.3}");
    assert!(shift > 0.05, "F(x, 0.5) ≈ x: relative shift {shift}");
    assert!(spread > 0.2 && spread < 5.0, "F(x, 0.5) spread {spread}");
    assert!(!vdm.metrics.contains_key("transform_shift"));
    // NDM plots its learned transform: rows of held-out digits, columns of t.
    assert!(dir.path().join("ndm/transform.png").exists());
    assert!(!dir.path().join("vdm/transform.png").exists());
}

/// A user's `(n, c, h, w)` file with `npy(levels = 17)` gets the discrete decoder and a `bpd`
/// that brackets the data's known entropy: half the pixels are always level 0, the other half
/// uniform over the 17 levels, so the true entropy is ½·log2(17) = 2.04 bits per dimension. A
/// valid bound may not go below it (beyond its error bar) and a trained model must be clearly
/// below the uniform 4.09. Measured: 2.47 ± 0.15 at 1500 steps.
#[test]
fn npy_images_with_levels_get_a_discrete_bound_above_their_entropy() {
    let dir = tempfile::tempdir().expect("tmp");
    let (n, levels) = (400usize, 17usize);
    let mut s = 0x853c_49e6_748f_ea9bu64;
    let mut values = Vec::with_capacity(n * 16);
    for _ in 0..n {
        for px in 0..16 {
            s = s
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let k = if px < 8 {
                0
            } else {
                (s >> 33) as usize % levels
            };
            values.push(difc::run::images::level_value(k, levels));
        }
    }
    difc::run::npy::write_npy_f32(dir.path().join("img.npy"), &[n, 1, 4, 4], &values).expect("npy");
    let spec = "process p() {\n  time = [0, 1]\n  state = image(1, 4, 4)\n  gamma(t) = -5 + 11 * t\n  alpha(t) = sqrt(1 / (1 + exp(gamma(t))))\n  sigma(t) = sqrt(1 / (1 + exp(-gamma(t))))\n  transform F(x, t) = identity\n  mean(x, t) = alpha(t) * F(x, t)\n  std(t) = sigma(t)\n}\nexperiment e {\n  data = npy(path = \"img.npy\", levels = 17)\n  process = p()\n  network = mlp(width = 128, depth = 2)\n  train { steps = 1500, batch = 128, lr = 0.002 }\n  sample { n = 64, solver = ancestral, steps = 50 }\n  eval { reference = 40 }\n}\n";
    std::fs::write(dir.path().join("lv.diff"), spec).expect("spec");
    let out = common::difc()
        .args(["run", "lv.diff", "--out", "run"])
        .current_dir(dir.path())
        .output()
        .expect("difc runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml = std::fs::read_to_string(dir.path().join("run/metrics.yaml")).expect("metrics");
    let get = |key: &str| -> f64 {
        yaml.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}: ")))
            .unwrap_or_else(|| panic!("no {key} in\n{yaml}"))
            .parse()
            .expect("number")
    };
    let (bpd, se) = (get("bpd"), get("bpd_stderr"));
    let entropy = 0.5 * (levels as f64).log2();
    eprintln!("npy levels = 17: {bpd:.3} ± {se:.3} bpd, entropy {entropy:.3}");
    assert!(
        bpd + 3.0 * se > entropy,
        "bound {bpd} ± {se} below the entropy {entropy}"
    );
    assert!(
        bpd + 3.0 * se < (levels as f64).log2(),
        "bound {bpd} ± {se} not below uniform"
    );
    let samples = difc::run::npy::read_npy(dir.path().join("run/samples.npy")).expect("npy");
    assert_eq!(samples.shape, vec![64, 1, 4, 4]);
}

//! Benchmarks (`cargo bench`): checking the stdlib; one training step of a 4×128 GELU MLP on
//! batch 512, 2-D data, for the Gaussian (VP), the jump (JL), VDM and NDM (3×128 transform); the 25-step ODE sampler
//! on 100 000 points for both; one training step of the trans-dimensional set transformer, and
//! of the EGNN on synthetic QM9-shaped molecules; one forward-with-tangent and backward of the
//! U-Net on 28×28 and 8×8 images; one NDM and one VDM training step with U-Nets on 28×28.
//! `cargo test --release --benches` runs each once as a smoke test.

use candle_core::Device;
use criterion::{criterion_group, criterion_main, Criterion};
use difc::check::Loader;
use difc::compile::{self, Solver};
use difc::run::experiment;
use difc::run::train::{self, TrainState};
use std::path::{Path, PathBuf};
use std::time::Duration;

struct OneFile(String);

impl Loader for OneFile {
    fn read(&self, _: &Path) -> Result<Vec<u8>, String> {
        Ok(self.0.as_bytes().to_vec())
    }
}

fn experiment_of(process: &str, import: &str, target: &str) -> difc::ir::Experiment {
    // NDM processes sample with the posterior step (the default ODE solver is not theirs).
    let sample = if import == "ndm" {
        " sample { solver = ancestral }\n"
    } else {
        ""
    };
    let src = format!(
        "use stdlib.{import}\nexperiment e {{\n data = swiss_roll(n = 20000)\n process = {process}\n network = mlp(width = 128, depth = 4, activation = gelu)\n loss {{ target = {target} }}\n train {{ batch = 512 }}\n{sample} eval {{ reference = 100 }}\n}}\n"
    );
    let s = difc::driver::check_paths(&[PathBuf::from("bench.diff")], &[], &OneFile(src))
        .expect("spec");
    s.checked.model.expect("checks").experiments.remove(0)
}

fn check_stdlib(c: &mut Criterion) {
    difc::run::threads::configure();
    let paths: Vec<PathBuf> = std::fs::read_dir("stdlib")
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    c.bench_function("check stdlib (8 files)", |b| {
        b.iter(|| {
            let s = difc::driver::check_paths(&paths, &[], &difc::check::FsLoader)
                .expect("stdlib readable");
            assert!(s.checked.model.is_some());
        })
    });
}

fn train_steps(c: &mut Criterion) {
    let device = Device::Cpu;
    for (name, process, import, target) in [
        ("vp", "vp()", "vp", "eps"),
        ("jl", "jump_laplace()", "jump_laplace", "score"),
        // The NDM objective with F = identity (VDM) and with a learned 3×128 transform.
        ("vdm", "vdm()", "ndm", "eps"),
        ("ndm", "ndm_vdm()", "ndm", "eps"),
    ] {
        let exp = experiment_of(process, import, target);
        let data = experiment::load_data(&exp).expect("data");
        let fwd = compile::compile(&exp, 2).expect("compiles");
        let train_data = data.train_tensor(&device).expect("data tensor");
        let mut state = TrainState::new(&exp, 2, &device).expect("state");
        let sched = train::schedule(&exp.train);
        c.bench_function(
            &format!("train step {name} (4x128 MLP, batch 512, 2-D)"),
            |b| {
                b.iter(|| {
                    train::train_step(&exp, &*fwd, &train_data, &mut state, &sched).expect("step");
                    state.step += 1;
                })
            },
        );
    }
}

fn samplers(c: &mut Criterion) {
    let device = Device::Cpu;
    let mut group = c.benchmark_group("sampler");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    for (name, process, import, target, solver) in [
        ("vp ode_euler", "vp()", "vp", "eps", Solver::OdeEuler),
        (
            "jl exponential_ode",
            "jump_laplace()",
            "jump_laplace",
            "score",
            Solver::ExponentialOde,
        ),
    ] {
        let exp = experiment_of(process, import, target);
        let fwd = compile::compile(&exp, 2).expect("compiles");
        let state = TrainState::new(&exp, 2, &device).expect("state");
        let net = state.ema_net(&exp, 2, &device).expect("net");
        group.bench_function(format!("{name}, 25 steps, 100k points"), |b| {
            b.iter(|| {
                experiment::draw(
                    &*fwd,
                    &*net,
                    None,
                    solver,
                    difc::compile::TimeGrid::Uniform,
                    0.0,
                    25,
                    100_000,
                    1,
                    0.0,
                    &device,
                )
                .expect("samples")
            })
        });
    }
    group.finish();
}

/// One training step of the trans-dimensional model of `specs/transdim_rings.diff`: the set
/// transformer (width 64, 3 blocks, 4 heads) on batch 128 of sets of up to 8 points, two
/// network passes (X_t and Y), the ELBO, AdamW, clipping and EMA
/// (`scripts/bench_pytorch_set.py` is the PyTorch side).
fn train_step_transdim(c: &mut Criterion) {
    let device = Device::Cpu;
    let src = "use stdlib.transdim\nexperiment e {\n data = ring_sets(n = 20000, max = 8)\n process = transdim()\n network = set_transformer(width = 64, depth = 3, heads = 4)\n train { batch = 128, lr = 0.001 }\n sample { solver = euler_maruyama }\n eval { reference = 100 }\n}\n";
    let s = difc::driver::check_paths(
        &[PathBuf::from("bench.diff")],
        &[],
        &OneFile(src.to_string()),
    )
    .expect("spec");
    let exp = s.checked.model.expect("checks").experiments.remove(0);
    let data = experiment::load_data(&exp).expect("data");
    let fwd = compile::compile(&exp, data.dim).expect("compiles");
    let train_data = data.train_tensor(&device).expect("data tensor");
    let mut state = TrainState::new(&exp, data.dim, &device).expect("state");
    let sched = train::schedule(&exp.train);
    c.bench_function(
        "train step transdim (set transformer 64x3, 4 heads, batch 128, sets of <= 8 2-D points)",
        |b| {
            b.iter(|| {
                train::train_step(&exp, &*fwd, &train_data, &mut state, &sched).expect("step");
                state.step += 1;
            })
        },
    );
}

/// Serves `.npy` files from disk and the one spec from memory.
struct SpecAndFiles(String);

impl Loader for SpecAndFiles {
    fn read(&self, path: &Path) -> Result<Vec<u8>, String> {
        if path.extension().is_some_and(|e| e == "npy") {
            std::fs::read(path).map_err(|e| e.to_string())
        } else {
            Ok(self.0.as_bytes().to_vec())
        }
    }
}

/// The first experiment of the in-memory spec `src` (its `.npy` files read from disk).
fn checked_with_files(src: String) -> difc::ir::Experiment {
    let s = difc::driver::check_paths(&[PathBuf::from("bench.diff")], &[], &SpecAndFiles(src))
        .expect("spec");
    let text = difc::driver::render(&s, difc::driver::Format::Human, Default::default());
    s.checked
        .model
        .and_then(|mut m| (!m.experiments.is_empty()).then(|| m.experiments.remove(0)))
        .unwrap_or_else(|| panic!("spec has errors:\n{text}"))
}

/// Molecules of QM9's shape (no QM9 download): `n` sets of 9–29 atoms, 3 centred Gaussian
/// coordinates (scale 1.5 Å) and 6 features (5 one-hot types ×4, a charge /10), NaN-padded to 29.
fn synthetic_molecules(n: usize) -> PathBuf {
    let (max, c) = (29usize, 9usize);
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    let mut u = move || {
        s = s
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (s >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut values = vec![f32::NAN; n * max * c];
    for i in 0..n {
        let atoms = 9 + ((u() + u()) * 10.5) as usize; // 9..=29, peaked near 19
        let mut pos: Vec<[f64; 3]> = (0..atoms)
            .map(|_| {
                let g = |u: &mut dyn FnMut() -> f64| (u() + u() + u() - 1.5) * 1.5 * 2.0;
                [g(&mut u), g(&mut u), g(&mut u)]
            })
            .collect();
        for k in 0..3 {
            let m = pos.iter().map(|p| p[k]).sum::<f64>() / atoms as f64;
            pos.iter_mut().for_each(|p| p[k] -= m);
        }
        for (j, p) in pos.iter().enumerate() {
            let row = &mut values[(i * max + j) * c..(i * max + j + 1) * c];
            let kind = (u() * 5.0) as usize;
            for k in 0..3 {
                row[k] = p[k] as f32;
            }
            for t in 0..5 {
                row[3 + t] = if t == kind { 4.0 } else { 0.0 };
            }
            row[8] = [1.0, 6.0, 7.0, 8.0, 9.0][kind] / 10.0;
        }
    }
    let dir = std::env::temp_dir().join(format!("difc_bench_egnn_{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("molecules.npy");
    difc::run::npy::write_npy_f32(&path, &[n, max, c], &values).expect("write npy");
    path
}

/// One training step of the trans-dimensional QM9 process (`stdlib.transdim_qm9`: sets of up
/// to 29 atoms, 3 coordinates centred, 6 features) with the EGNN (width 64, 3 layers, SiLU) on
/// batch 32 of synthetic QM9-shaped molecules: two network passes, the ELBO, AdamW, EMA.
fn train_step_transdim_egnn(c: &mut Criterion) {
    let device = Device::Cpu;
    let npy = synthetic_molecules(2000);
    let src = format!("use stdlib.transdim\nexperiment e {{\n data = npy(path = \"{}\")\n process = transdim_qm9()\n network = egnn(width = 64, depth = 3, activation = silu)\n train {{ batch = 32, lr = 0.0001 }}\n sample {{ solver = euler_maruyama }}\n eval {{ reference = 100 }}\n}}\n", npy.display());
    let exp = checked_with_files(src);
    let data = experiment::load_data(&exp).expect("data");
    let fwd = compile::compile(&exp, data.dim).expect("compiles");
    let train_data = data.train_tensor(&device).expect("data tensor");
    let mut state = TrainState::new(&exp, data.dim, &device).expect("state");
    let sched = train::schedule(&exp.train);
    let mut group = c.benchmark_group("transdim egnn");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function(
        "train step transdim_qm9 (egnn 64x3, batch 32, synthetic QM9-shaped sets of <= 29 atoms)",
        |b| {
            b.iter(|| {
                train::train_step(&exp, &*fwd, &train_data, &mut state, &sched).expect("step");
                state.step += 1;
            })
        },
    );
    group.finish();
    let _ = std::fs::remove_dir_all(npy.parent().expect("temp dir"));
}

/// One forward-with-time-tangent pass and backward of the U-Net (base 32, attention at the
/// lowest level): `mean((F − a)²) + mean((∂F/∂t − b)²)` on random images and targets, on
/// 1×28×28 images with 3 levels (batch 32) and 8×8 with 2 levels (batch 128). No optimiser
/// step: this times the network (`scripts/bench_pytorch.py --unet` is the PyTorch side).
fn train_step_unet(c: &mut Criterion) {
    use candle_core::{DType, Tensor};
    use difc::nn::{Module, UNet, UNetConfig};
    use rand::Rng;
    let device = Device::Cpu;
    let mut group = c.benchmark_group("unet");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    for (name, side, levels, batch) in [("28x28", 28, 3, 32), ("8x8", 8, 2, 128)] {
        let config = UNetConfig {
            base: 32,
            levels,
            ..UNetConfig::new(1, side, side, 0)
        };
        let net = UNet::new(config, DType::F32, &device).expect("unet");
        let mut rng = difc::rng::stream(0, difc::rng::Purpose::Test, 0, 0);
        let mut normal = |n: usize| -> Tensor {
            let v: Vec<f32> = (0..n)
                .map(|_| rng.sample(rand_distr::StandardNormal))
                .collect();
            Tensor::from_vec(v, (n / (side * side), side * side), &device).expect("tensor")
        };
        let d = batch * side * side;
        let (x, a, b) = (normal(d), normal(d), normal(d));
        let t = Tensor::from_vec(
            (0..batch)
                .map(|i| (i as f32 + 0.5) / batch as f32)
                .collect(),
            batch,
            &device,
        )
        .expect("t");
        group.bench_function(
            format!(
                "train step unet {name} (base 32, {levels} levels, attention, batch {batch}, value + tangent)"
            ),
            |bench| {
                bench.iter(|| {
                    let (y, y_dot) = net.forward_with_time_tangent(&x, &t).expect("forward");
                    let loss = ((y - &a).expect("y").sqr().expect("sq").mean_all().expect("m")
                        + (y_dot - &b).expect("y").sqr().expect("sq").mean_all().expect("m"))
                    .expect("loss");
                    loss.backward().expect("backward")
                })
            },
        );
    }
    group.finish();
}

/// One NDM (learned U-Net transform) and one VDM (F = identity) training step on 1×28×28
/// images of MNIST's shape (synthetic values in [−1, 1], no download), batch 32, through the
/// family's loss: the x̂ U-Net (base 32, 3 levels, attention), for NDM also the transform U-Net
/// with its time tangent on x and on x̂, the ELBO, AdamW and EMA
/// (`scripts/bench_pytorch.py --ndm-unet` is the PyTorch side).
fn train_step_ndm_unet(c: &mut Criterion) {
    let device = Device::Cpu;
    let (n, side) = (256usize, 28usize);
    let mut s = 0x2545_f491_4f6c_dd1du64;
    let values: Vec<f32> = (0..n * side * side)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    let dir = std::env::temp_dir().join(format!("difc_bench_unet_{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let npy = dir.join("images.npy");
    difc::run::npy::write_npy_f32(&npy, &[n, 1, side, side], &values).expect("write npy");
    let mut group = c.benchmark_group("ndm unet");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    for (name, transform) in [
        ("ndm", "learned(unet(width = 32, depth = 3))"),
        ("vdm", "identity"),
    ] {
        let src = format!("process p() {{\n time = [0, 1]\n state = image(1, 28, 28)\n gamma(t) = -13.3 + 19.3 * t\n alpha(t) = sqrt(1 / (1 + exp(gamma(t))))\n sigma(t) = sqrt(1 / (1 + exp(-gamma(t))))\n transform F(x, t) = {transform}\n mean(x, t) = alpha(t) * F(x, t)\n std(t) = sigma(t)\n}}\nexperiment e {{\n data = npy(path = \"{}\")\n process = p()\n network = unet(width = 32, depth = 3)\n train {{ batch = 32, lr = 0.0002 }}\n sample {{ solver = ancestral }}\n eval {{ reference = 16 }}\n}}\n", npy.display());
        let exp = checked_with_files(src);
        let data = experiment::load_data(&exp).expect("data");
        let fwd = compile::compile(&exp, data.dim).expect("compiles");
        let train_data = data.train_tensor(&device).expect("data tensor");
        let mut state = TrainState::new(&exp, data.dim, &device).expect("state");
        let sched = train::schedule(&exp.train);
        group.bench_function(
            format!("train step {name} unet 28x28 (base 32, 3 levels, attention, batch 32)"),
            |b| {
                b.iter(|| {
                    train::train_step(&exp, &*fwd, &train_data, &mut state, &sched).expect("step");
                    state.step += 1;
                })
            },
        );
    }
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(
    benches,
    check_stdlib,
    train_steps,
    train_step_transdim,
    train_step_transdim_egnn,
    train_step_unet,
    train_step_ndm_unet,
    samplers
);
criterion_main!(benches);

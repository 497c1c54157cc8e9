//! End-to-end runs through the `difc` binary: the run folder, resume after SIGKILL (bit for
//! bit), the NaN guard, `difc sample`, and clear errors on bad input.

mod common;

use common::difc;
use std::path::{Path, PathBuf};
use std::process::Output;

/// Small settings so a run takes a few seconds.
const SMALL: &[&str] = &[
    "train.steps=120",
    "train.batch=64",
    "train.checkpoint_every=10",
    "train.log_every=10",
    "network.width=32",
    "network.depth=2",
    "sample.n=300",
    "sample.steps=10",
    "eval.reference=300",
    "eval.clusters=10",
    "eval.runs=2",
];

fn spec_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("specs")
        .join(name)
}

fn run(args: &[&str], out: &Path, extra: &[&str]) -> Output {
    let mut cmd = difc();
    cmd.arg("run").args(args).arg("--out").arg(out);
    for s in SMALL.iter().chain(extra) {
        cmd.arg("--set").arg(s);
    }
    cmd.output().expect("difc runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

#[test]
fn a_run_leaves_a_complete_folder() {
    let dir = tmp();
    let out = dir.path().join("run");
    let o = run(
        &[spec_path("swiss_roll_vp.diff").to_str().unwrap_or_default()],
        &out,
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    for f in [
        "config.yaml",
        "loss.csv",
        "checkpoint.safetensors",
        "samples.npy",
        "reference.npy",
        "metrics.yaml",
        "samples.png",
        "loss.png",
    ] {
        assert!(out.join(f).is_file(), "missing {f}");
    }
    let samples = difc::run::npy::read_npy(out.join("samples.npy")).expect("samples readable");
    assert_eq!((samples.rows, samples.cols), (300, 2));
    let metrics: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(out.join("metrics.yaml")).unwrap_or_default(),
    )
    .expect("yaml");
    let f1 = metrics
        .get("prd_max_f1")
        .and_then(|v| v.as_f64())
        .expect("prd_max_f1 present");
    assert!((0.0..=1.0).contains(&f1));
    for key in ["precision", "recall", "coverage"] {
        let v = metrics.get(key).and_then(|v| v.as_f64());
        assert!(v.is_some_and(|v| (0.0..=1.0).contains(&v)), "{key}: {v:?}");
    }
    assert!(metrics.get("density").and_then(|v| v.as_f64()).is_some());
    // The swiss roll has no known modes, so no mode metrics.
    assert!(metrics.get("mode_fraction").is_none());
    let config = std::fs::read_to_string(out.join("config.yaml")).unwrap_or_default();
    assert!(
        config.contains("train.steps: 120")
            && config.contains("difc_version")
            && config.contains("seed: 0"),
        "{config}"
    );
    let loss = std::fs::read_to_string(out.join("loss.csv")).unwrap_or_default();
    assert!(loss.starts_with("step,loss\n") && loss.lines().count() > 5);
    // A second run into the same folder is refused rather than overwriting it: a usage
    // error, exit 2.
    let again = run(
        &[spec_path("swiss_roll_vp.diff").to_str().unwrap_or_default()],
        &out,
        &[],
    );
    assert_eq!(again.status.code(), Some(2), "{}", text(&again));
    assert!(text(&again).contains("--resume"), "{}", text(&again));
    // New samples from the checkpoint with another solver.
    let s = difc()
        .arg("sample")
        .arg(&out)
        .args(["--solver", "euler_maruyama", "--steps", "20", "--n", "50"])
        .output()
        .expect("sample");
    assert!(s.status.success(), "{}", text(&s));
    let extra =
        difc::run::npy::read_npy(out.join("samples_euler_maruyama_20.npy")).expect("new samples");
    assert_eq!(extra.rows, 50);
}

#[cfg(unix)]
#[test]
fn resume_after_sigkill_gives_the_same_checkpoint_bit_for_bit() {
    resume_after_sigkill("swiss_roll_vp.diff");
}

#[cfg(unix)]
#[test]
fn resume_after_sigkill_is_bit_identical_for_a_jump_process_too() {
    resume_after_sigkill("jl_swiss_roll.diff");
}

#[cfg(unix)]
fn resume_after_sigkill(spec_name: &str) {
    let dir = tmp();
    let spec = spec_path(spec_name);
    let spec = spec.to_str().unwrap_or_default();
    let extra = ["train.steps=1500", "train.checkpoint_every=100"];
    let whole = dir.path().join("whole");
    let o = run(&[spec], &whole, &extra);
    assert!(o.status.success(), "{}", text(&o));

    let cut = dir.path().join("cut");
    let mut resumed = false;
    // Kill twice: once soon after the first checkpoint appears, once after a later checkpoint
    // of the resumed run (polling the file, so the test does not depend on machine speed).
    for round in 0..2 {
        let mut cmd = difc();
        cmd.arg("run").arg(spec).arg("--out").arg(&cut);
        if cut.join("config.yaml").exists() {
            cmd.arg("--resume");
            resumed = true;
        }
        for s in SMALL.iter().chain(&extra) {
            cmd.arg("--set").arg(s);
        }
        let ckpt = cut.join("checkpoint.safetensors");
        let before = std::fs::metadata(&ckpt).and_then(|m| m.modified()).ok();
        let mut child = cmd.spawn().expect("spawn");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let now = std::fs::metadata(&ckpt).and_then(|m| m.modified()).ok();
            if now.is_some() && now != before || std::time::Instant::now() > deadline {
                break;
            }
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        std::thread::sleep(std::time::Duration::from_millis(5 + 10 * round));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
    }
    // The kills must have landed before the run completed, or this test proves nothing.
    assert!(
        resumed && !cut.join("metrics.yaml").exists(),
        "the run was not interrupted"
    );
    let mut cmd = difc();
    cmd.arg("run")
        .arg(spec)
        .arg("--out")
        .arg(&cut)
        .arg("--resume");
    for s in SMALL.iter().chain(&extra) {
        cmd.arg("--set").arg(s);
    }
    let o = cmd.output().expect("resume");
    assert!(o.status.success(), "{}", text(&o));
    for f in ["checkpoint.safetensors", "loss.csv", "samples.npy"] {
        let a = std::fs::read(whole.join(f)).expect("whole");
        let b = std::fs::read(cut.join(f)).expect("cut");
        assert!(
            a == b,
            "{f} differs between the uninterrupted and the resumed run"
        );
    }
}

#[test]
fn divergence_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint() {
    let dir = tmp();
    let out = dir.path().join("nan");
    let o = run(
        &[spec_path("swiss_roll_vp.diff").to_str().unwrap_or_default()],
        &out,
        &[
            "train.lr=1e30",
            "train.warmup=0",
            "train.clip=0",
            "train.checkpoint_every=1",
            "train.schedule=constant",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("diverged"), "{}", text(&o));
    assert!(
        out.join("checkpoint.safetensors").is_file(),
        "last good checkpoint kept"
    );
    assert!(
        !out.join("metrics.yaml").exists(),
        "nothing written as if complete"
    );
    // The kept checkpoint is from before the divergence, and its weights are finite and of
    // the size of an initialisation (the diverged update made them ±1e30).
    let said = text(&o);
    let at: u64 = said
        .split("diverged at step ")
        .nth(1)
        .and_then(|r| r.split(':').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no step in: {said}"));
    let (tensors, meta) = difc::run::checkpoint::load(
        &out.join("checkpoint.safetensors"),
        &candle_core::Device::Cpu,
    )
    .expect("loads");
    let step: u64 = meta["step"].parse().expect("step");
    assert!(step < at, "checkpoint of step {step}, divergence at {at}");
    for (name, t) in &tensors {
        let v: Vec<f32> = t
            .flatten_all()
            .and_then(|t| t.to_dtype(candle_core::DType::F32))
            .and_then(|t| t.to_vec1())
            .expect("values");
        let big = v.iter().fold(0f32, |m, x| m.max(x.abs()));
        assert!(big.is_finite() && big < 1e6, "{name}: max |w| = {big}");
    }
}

fn user_spec(dir: &Path, data: &str, state: &str) -> PathBuf {
    let spec = dir.join("user.diff");
    std::fs::write(
        &spec,
        format!(
            "process p() {{\n  time = [0, 1]\n  {state}\n  drift(x, t) = -0.5 * (0.1 + 19.9 * t) * x\n  diffusion(t) = sqrt(0.1 + 19.9 * t)\n}}\nexperiment e {{\n  data = npy(path = \"{data}\")\n  process = p()\n}}\n"
        ),
    )
    .expect("write spec");
    spec
}

fn expect_error(o: &Output, needle: &str) {
    assert_eq!(o.status.code(), Some(1), "{}", text(o));
    assert!(
        text(o).contains(needle),
        "expected `{needle}` in:\n{}",
        text(o)
    );
    assert!(!text(o).contains("panicked"), "{}", text(o));
}

#[test]
fn bad_data_files_give_clear_errors() {
    let dir = tmp();
    let d = dir.path();
    let out = d.join("out");
    // Missing file.
    let spec = user_spec(d, "missing.npy", "");
    expect_error(
        &run(&[spec.to_str().unwrap_or_default()], &out, &[]),
        "missing.npy",
    );
    // Wrong shape: 3 columns for a 2-D state.
    difc::run::npy::write_npy_f32(d.join("three.npy"), &[100, 3], &vec![0.5; 300]).expect("write");
    let spec = user_spec(d, "three.npy", "state = vec(2)");
    expect_error(
        &run(&[spec.to_str().unwrap_or_default()], &out, &[]),
        "3 columns",
    );
    // Wrong dtype (complex64).
    let mut bytes = npy_header("<c8", "(10, 2)");
    bytes.extend(vec![0u8; 160]);
    std::fs::write(d.join("complex.npy"), &bytes).expect("write");
    let spec = user_spec(d, "complex.npy", "");
    expect_error(&run(&[spec.to_str().unwrap_or_default()], &out, &[]), "c8");
    // Truncated file / header claiming far more data than the file holds.
    let mut bytes = npy_header("<f4", "(1000000000000, 2)");
    bytes.extend(vec![0u8; 64]);
    std::fs::write(d.join("huge.npy"), &bytes).expect("write");
    let spec = user_spec(d, "huge.npy", "");
    expect_error(
        &run(&[spec.to_str().unwrap_or_default()], &out, &[]),
        "huge.npy",
    );
    // NaN in the data.
    let mut vals = vec![0.25f32; 200];
    vals[7] = f32::NAN;
    difc::run::npy::write_npy_f32(d.join("nan.npy"), &[100, 2], &vals).expect("write");
    let spec = user_spec(d, "nan.npy", "");
    expect_error(&run(&[spec.to_str().unwrap_or_default()], &out, &[]), "NaN");
    assert!(!out.join("metrics.yaml").exists());
}

fn npy_header(descr: &str, shape: &str) -> Vec<u8> {
    let mut dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + dict.len() + 1) % 64 != 0 {
        dict.push(' ');
    }
    dict.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((dict.len() as u16).to_le_bytes());
    out.extend(dict.as_bytes());
    out
}

#[test]
fn bad_overrides_and_folders_give_clear_errors() {
    let dir = tmp();
    let spec = spec_path("swiss_roll_vp.diff");
    let spec = spec.to_str().unwrap_or_default();
    // Unknown key, with a suggestion.
    expect_error(
        &run(&[spec], &dir.path().join("a"), &["train.stepz=10"]),
        "did you mean `steps`?",
    );
    // Wrong type.
    expect_error(
        &run(&[spec], &dir.path().join("b"), &["train.steps=1.5"]),
        "whole number",
    );
    expect_error(
        &run(&[spec], &dir.path().join("b"), &["sample.solver=rk45"]),
        "unknown sample.solver",
    );
    // Unwritable output folder (a path below a regular file).
    let file = dir.path().join("file");
    std::fs::write(&file, "x").expect("write");
    // An output folder that cannot be made is a usage error (exit 2), like `--out FILE`.
    let o = run(&[spec], &file.join("sub"), &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("cannot create output folder"),
        "{}",
        text(&o)
    );
    // Resuming a folder that holds a run of another spec.
    let first = dir.path().join("first");
    let o = run(&[spec], &first, &["train.steps=20"]);
    assert!(o.status.success(), "{}", text(&o));
    let mut cmd = difc();
    cmd.arg("run")
        .arg(spec_path("gauss_gmm.diff"))
        .arg("--out")
        .arg(&first)
        .arg("--resume");
    for s in SMALL.iter().chain(&["train.steps=20"]) {
        cmd.arg("--set").arg(s);
    }
    // A folder `--resume` cannot continue is a usage error, exit 2.
    let o = cmd.output().expect("runs");
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("another spec"), "{}", text(&o));
}

/// `--resume` on a folder it cannot continue, and `difc sample` on a folder that is not a
/// run, are usage errors: exit 2 with a message naming the folder, nothing trained or
/// written, no panic.
#[test]
fn resume_and_sample_refuse_folders_that_are_not_their_run() {
    let dir = tmp();
    let d = dir.path();
    let spec = spec_path("swiss_roll_vp.diff");
    let spec = spec.to_str().unwrap_or_default();
    let resume = |out: &Path| run(&[spec, "--resume"], out, &["train.steps=20"]);
    let sample = |out: &Path| {
        difc()
            .arg("sample")
            .arg(out)
            .output()
            .expect("difc sample runs")
    };
    let usage = |o: &Output, needle: &str| {
        assert_eq!(o.status.code(), Some(2), "{}", text(o));
        assert!(
            text(o).contains(needle),
            "expected `{needle}` in:\n{}",
            text(o)
        );
        assert!(!text(o).contains("panicked"), "{}", text(o));
    };
    let missing = d.join("missing");
    usage(&resume(&missing), "does not exist");
    usage(&sample(&missing), "does not exist");
    assert!(!missing.exists());

    let theirs = d.join("theirs");
    std::fs::create_dir_all(&theirs).expect("mkdir");
    std::fs::write(theirs.join("notes.txt"), b"mine").expect("write");
    usage(&resume(&theirs), "holds no difc run");
    usage(&sample(&theirs), "holds no difc run");
    assert!(!theirs.join("config.yaml").exists());

    let file = theirs.join("notes.txt");
    usage(&resume(&file), "is a file");
    usage(&sample(&file), "is a file");

    let foreign = d.join("foreign");
    std::fs::create_dir_all(&foreign).expect("mkdir");
    for text in ["name: my other tool\n", "::: [ not yaml\n"] {
        std::fs::write(foreign.join("config.yaml"), text).expect("write");
        usage(&resume(&foreign), "not the config.yaml of a difc run");
        usage(&sample(&foreign), "not the config.yaml of a difc run");
    }

    // A run of this spec whose checkpoint was damaged afterwards.
    let damaged = d.join("damaged");
    let o = run(&[spec], &damaged, &["train.steps=20"]);
    assert!(o.status.success(), "{}", text(&o));
    std::fs::write(damaged.join("checkpoint.safetensors"), b"not a checkpoint").expect("write");
    usage(&resume(&damaged), "delete");
}

/// Three experiments: `a` trains in a second; `b` draws a warning of its own (its prior is
/// not reached); `c` cannot sample (a Gaussian solver on a jump process): a compile error.
const TWO_EXPERIMENTS: &str = "use stdlib.vp\nuse stdlib.jump_laplace\n\
experiment a {\n  data = swiss_roll(n = 2000)\n  process = vp()\n}\n\
experiment b {\n  data = swiss_roll(n = 2000)\n  process = vp(beta_max = 2)\n}\n\
experiment c {\n  data = swiss_roll(n = 2000)\n  process = jump_laplace()\n  sample { solver = euler_maruyama }\n}\n";

#[test]
fn sample_refuses_bad_options_and_shows_only_its_own_experiment() {
    let dir = tmp();
    let spec = dir.path().join("two.diff");
    std::fs::write(&spec, TWO_EXPERIMENTS).expect("write spec");
    let out = dir.path().join("a");
    // `c`'s error and `b`'s warning neither block nor show in a run of `a`.
    let o = run(
        &[spec.to_str().unwrap_or_default(), "--experiment", "a"],
        &out,
        &["train.steps=20"],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        !text(&o).contains("experiment `c`") && !text(&o).contains("prior_not_reached"),
        "{}",
        text(&o)
    );
    let sample = |args: &[&str]| {
        difc()
            .arg("sample")
            .arg(&out)
            .args(args)
            .output()
            .expect("difc sample runs")
    };
    for (args, needle) in [
        (&["--steps", "0"][..], "must be at least 1"),
        (&["--n", "0"][..], "must be at least 1"),
        (&["--n", "2.5"][..], "not a whole number"),
        (&["--t-end", "1"][..], "must be in [0, 1)"),
        (&["--t-end", "7.5"][..], "outside the time interval"),
        (&["--t-end", "-0.5"][..], "must be in [0, 1)"),
        (&["--n", "1e12"][..], "more than the limit"),
        (&["--solver", "ancestral"][..], "cannot be sampled with it"),
    ] {
        let o = sample(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
        assert!(
            text(&o).contains(needle),
            "{args:?}: expected `{needle}` in:\n{}",
            text(&o)
        );
        assert!(!text(&o).contains("panicked"), "{}", text(&o));
    }
    // `--n 1e2` is a whole number in scientific notation; no other experiment's warning is
    // re-printed.
    let o = sample(&["--n", "1e2", "--steps", "3"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        !text(&o).contains("prior_not_reached") && !text(&o).contains("warning"),
        "{}",
        text(&o)
    );
    let extra = difc::run::npy::read_npy(out.join("samples_ode_heun_3.npy")).expect("samples");
    assert_eq!(extra.rows, 100);
}

/// `--out` never writes into a folder it does not own: a non-empty folder without a difc run
/// and a path that is a file are refused with exit 2 (the user's files untouched), and a
/// folder left by a run that stopped before its first checkpoint does not block a re-run.
#[test]
fn out_folder_is_refused_unless_it_is_ours() {
    let dir = tmp();
    let spec = spec_path("swiss_roll_vp.diff");
    let spec = spec.to_str().unwrap_or_default();
    let mine = dir.path().join("mine");
    std::fs::create_dir_all(&mine).expect("mkdir");
    std::fs::write(mine.join("samples.npy"), b"my own samples").expect("write");
    let o = run(&[spec], &mine, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("not empty"), "{}", text(&o));
    assert_eq!(
        std::fs::read(mine.join("samples.npy")).unwrap_or_default(),
        b"my own samples"
    );
    assert!(!mine.join("config.yaml").exists());

    let file = dir.path().join("a_file");
    std::fs::write(&file, b"x").expect("write");
    let o = run(&[spec], &file, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("is a file"), "{}", text(&o));

    // What a run that failed before its first checkpoint leaves: a config.yaml alone.
    let stopped = dir.path().join("stopped");
    std::fs::create_dir_all(&stopped).expect("mkdir");
    std::fs::write(stopped.join("config.yaml"), b"experiment: swiss_roll_vp\n").expect("write");
    let o = run(&[spec], &stopped, &["train.steps=20"]);
    assert!(o.status.success(), "{}", text(&o));
}

/// A spec that names no solver samples with its family's first offered one, so what `check`
/// accepts, `run` and `sample` complete: the rectified flow (only ddim and dpmpp_2m apply)
/// and a set process (Euler–Maruyama only) without their `solver` lines.
#[test]
fn a_spec_without_a_solver_samples_with_its_family_default() {
    let dir = tmp();
    let source = std::fs::read_to_string(spec_path("rectified_flow.diff")).expect("spec");
    let rf = dir.path().join("rf.diff");
    std::fs::write(&rf, source.replace("solver = ddim, ", "")).expect("write");
    let out = dir.path().join("rf");
    let o = run(
        &[rf.to_str().unwrap_or_default()],
        &out,
        &["train.steps=20"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let config = std::fs::read_to_string(out.join("config.yaml")).unwrap_or_default();
    assert!(config.contains("sample.solver: ddim"), "{config}");
    let o = difc()
        .arg("sample")
        .arg(&out)
        .args(["--steps", "3"])
        .output()
        .expect("difc sample runs");
    assert!(o.status.success(), "{}", text(&o));
    assert!(out.join("samples_ddim_3.npy").is_file());
    let o = difc()
        .arg("explain")
        .arg(&rf)
        .output()
        .expect("difc explain runs");
    assert!(
        text(&o).contains("ddim, the first solver this process offers"),
        "{}",
        text(&o)
    );

    let source = std::fs::read_to_string(spec_path("transdim_points.diff")).expect("spec");
    let points = spec_path("point_sets.npy");
    let sets = dir.path().join("sets.diff");
    std::fs::write(
        &sets,
        source
            .replace(", solver = euler_maruyama", "")
            .replace("point_sets.npy", points.to_str().unwrap_or_default()),
    )
    .expect("write");
    let o = difc()
        .arg("check")
        .arg(&sets)
        .output()
        .expect("difc check runs");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

//! Issue 10's acceptance for the singular schedules: the cosine and rectified-flow specs train
//! and sample with every solver their compiled family offers (what `check` allows), with finite
//! samples and PRD maxF1 within 0.05 of the default VP spec sampled with the same solver, all on
//! the same short budget. About 40 s on 2 cores, so it runs in CI. Measured (seed 0): cosine
//! 0.907–0.942 over its seven solvers, rectified flow 0.897 (ddim) / 0.875 (dpmpp_2m), VP
//! 0.920–0.932.

mod common;

use common::difc;
use std::path::{Path, PathBuf};

/// Budget overrides shared by the three specs.
const BUDGET: &[&str] = &[
    "train.steps=3000",
    "sample.n=3000",
    "eval.reference=3000",
    "eval.clusters=20",
    "eval.runs=5",
];

fn spec(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("specs")
        .join(name)
}

/// The solvers the compiled family of the spec's experiment offers.
fn offered(name: &str) -> Vec<difc::compile::Solver> {
    let text = std::fs::read_to_string(spec(name)).expect("spec");
    let exp = common::experiment(&text);
    let fwd = difc::compile::compile(&exp, 2).expect("compiles");
    fwd.solvers().to_vec()
}

/// Trains `name` into `out` on the short budget.
fn train(name: &str, out: &Path) {
    let mut cmd = difc();
    cmd.arg("run").arg(spec(name)).arg("--out").arg(out);
    for s in BUDGET {
        cmd.arg("--set").arg(s);
    }
    let o = cmd.output().expect("runs");
    assert!(
        o.status.success(),
        "{name}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Samples the run with `solver` at 25 steps; returns maxF1 after checking the samples are finite.
fn sample(run: &Path, solver: &str) -> f64 {
    let out = run.join(format!("s_{solver}.npy"));
    let o = difc()
        .args(["sample", run.to_str().expect("path"), "--solver", solver])
        .args([
            "--steps",
            "25",
            "--n",
            "3000",
            "--out",
            out.to_str().expect("path"),
        ])
        .output()
        .expect("samples");
    assert!(
        o.status.success(),
        "{solver}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let x = difc::run::npy::read_npy(&out).expect("npy").data;
    assert!(
        x.iter().all(|v| v.is_finite()),
        "{solver}: non-finite samples"
    );
    let text =
        std::fs::read_to_string(run.join(format!("metrics_s_{solver}.yaml"))).expect("metrics");
    let v: serde_yaml::Value = serde_yaml::from_str(&text).expect("yaml");
    v.get("prd_max_f1")
        .and_then(|x| x.as_f64())
        .expect("prd_max_f1")
}

#[test]
fn cosine_and_rectified_flow_sample_with_every_offered_solver_as_well_as_vp() {
    let dir = tempfile::tempdir().expect("tmp");
    let vp = dir.path().join("vp");
    train("swiss_roll_vp.diff", &vp);
    for name in ["cosine.diff", "rectified_flow.diff"] {
        let run = dir.path().join(name);
        train(name, &run);
        let solvers = offered(name);
        assert!(!solvers.is_empty(), "{name} offers no solver");
        for s in solvers {
            let (f1, f1_vp) = (sample(&run, s.name()), sample(&vp, s.name()));
            println!("{name} {}: maxF1 {f1:.3} (VP {f1_vp:.3})", s.name());
            assert!(
                f1 >= f1_vp - 0.05,
                "{name} {}: maxF1 {f1} vs VP {f1_vp}",
                s.name()
            );
        }
    }
}

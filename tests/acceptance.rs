//! The acceptance runs of the papers' settings. Long (minutes each on 2 cores), so opt-in:
//! `cargo test --release --test acceptance -- --ignored --nocapture`.

mod common;

use common::difc;
use difc::run::{data, metrics};
use std::path::Path;

fn metric(out: &Path, key: &str) -> f64 {
    let text = std::fs::read_to_string(out.join("metrics.yaml")).unwrap_or_default();
    let v: serde_yaml::Value = serde_yaml::from_str(&text).expect("metrics.yaml");
    v.get(key)
        .and_then(|x| x.as_f64())
        .unwrap_or_else(|| panic!("{key} missing in {text}"))
}

/// Data-vs-data figures at the same sample size: two fresh swiss-roll sets.
fn data_floor(n: usize) -> (f64, f64) {
    let a = data::generate("swiss_roll", n, 101, &[])
        .expect("data")
        .to_f64();
    let b = data::generate("swiss_roll", n, 202, &[])
        .expect("data")
        .to_f64();
    let prd = metrics::prd(
        &a,
        &b,
        2,
        &metrics::PrdOptions {
            num_clusters: Some(100),
            ..Default::default()
        },
    )
    .expect("prd");
    let mmd = metrics::mmd_dlpm(&a, &b, 2, 2).expect("mmd");
    (prd.max_f1, mmd)
}

#[test]
#[ignore = "trains for a few minutes; run with --ignored"]
fn swiss_roll_vp_default_reaches_the_paper_quality() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("run");
    let spec = Path::new(env!("CARGO_MANIFEST_DIR")).join("specs/swiss_roll_vp.diff");
    let started = std::time::Instant::now();
    let o = difc()
        .arg("run")
        .arg(&spec)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let seconds = started.elapsed().as_secs_f64();
    let f1 = metric(&out, "prd_max_f1");
    let mmd = metric(&out, "mmd_dlpm");
    let (f1_data, mmd_data) = data_floor(15_000);
    println!("swiss_roll_vp: {seconds:.0} s, maxF1 {f1:.3} (data vs data {f1_data:.3}), DLPM MMD {mmd:.2e} (data vs data {mmd_data:.2e})");
    assert!(f1 >= 0.85, "maxF1 {f1}");
    assert!(
        mmd <= 3.0 * mmd_data,
        "MMD {mmd} vs data-vs-data {mmd_data}"
    );
}

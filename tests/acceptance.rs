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

/// Data-vs-data figures at the same sample size, averaged over three pairs of fresh swiss-roll
/// sets (one pair alone varies by about ±25% in MMD from seed to seed).
fn data_floor(n: usize) -> (f64, f64) {
    let pairs = [(101, 202), (303, 404), (505, 606)];
    let (mut f1, mut mmd) = (0.0, 0.0);
    for (sa, sb) in pairs {
        let a = data::generate("swiss_roll", n, sa, &[])
            .expect("data")
            .to_f64();
        let b = data::generate("swiss_roll", n, sb, &[])
            .expect("data")
            .to_f64();
        let opts = metrics::PrdOptions {
            num_clusters: Some(100),
            ..Default::default()
        };
        f1 += metrics::prd(&a, &b, 2, &opts).expect("prd").max_f1 / pairs.len() as f64;
        mmd += metrics::mmd_dlpm(&a, &b, 2, 2).expect("mmd") / pairs.len() as f64;
    }
    (f1, mmd)
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

/// Trains a spec into `out` and returns its PRD maxF1 (the spec's own sampler: ODE, 25 steps).
fn max_f1_of(spec: &str, out: &Path) -> f64 {
    let spec = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("specs")
        .join(spec);
    let o = difc()
        .arg("run")
        .arg(&spec)
        .arg("--out")
        .arg(out)
        .output()
        .expect("runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    metric(out, "prd_max_f1")
}

#[test]
#[ignore = "trains four models (about 3 minutes on 2 cores); run with --ignored"]
fn jl_ode_at_25_steps_reaches_the_paper_quality_and_beats_the_gaussian_model() {
    let dir = tempfile::tempdir().expect("tmp");
    let jl_roll = max_f1_of("jl_swiss_roll.diff", &dir.path().join("jl_roll"));
    let gauss_roll = max_f1_of("gauss_swiss_roll.diff", &dir.path().join("gauss_roll"));
    let jl_gmm = max_f1_of("jl_gmm.diff", &dir.path().join("jl_gmm"));
    let gauss_gmm = max_f1_of("gauss_gmm.diff", &dir.path().join("gauss_gmm"));
    println!("maxF1 at 25 ODE steps: swiss roll JL {jl_roll:.3} vs Gaussian {gauss_roll:.3}; GMM JL {jl_gmm:.3} vs Gaussian {gauss_gmm:.3}");
    assert!(jl_roll >= 0.66, "JL swiss roll {jl_roll}");
    assert!(jl_gmm >= 0.55, "JL GMM {jl_gmm}");
    assert!(jl_roll > gauss_roll && jl_gmm > gauss_gmm);
}

/// Issue 9's landing goal (docs/jl_atom.md §5): `specs/jl_gmm_long.diff` puts ≥ 90 % of its
/// samples within 3σ of a GMM mode at 25 steps of `exponential_ode_2m`, with mode-weight TV
/// ≤ 0.1. Measured over training seeds 0, 1, 2: 0.911, 0.910, 0.913 (TV 0.034 ± 0.004).
#[test]
#[ignore = "trains 24 000 steps (about 2 minutes on 2 cores); run with --ignored"]
fn jl_gmm_long_lands_its_samples_on_the_modes_at_25_steps() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("jl_gmm_long");
    let _ = max_f1_of("jl_gmm_long.diff", &out);
    let (fraction, tv) = (
        metric(&out, "mode_fraction"),
        metric(&out, "mode_weight_tv"),
    );
    println!("jl_gmm_long at 25 steps: mode_fraction {fraction:.3}, mode_weight_tv {tv:.3}");
    assert!(fraction >= 0.90, "mode_fraction {fraction}");
    assert!(tv <= 0.1, "mode_weight_tv {tv}");
}

/// Issue 11's goals for the synthetic family at the default settings (about 10 minutes on 2
/// cores): the size law within TV 0.05 of the held-out data, and every size's sample quality
/// within 3× of data against data (biased per-size MMD, same bandwidth and sample sizes).
/// The fixed-size baseline (sizes from the training histogram, then the points) runs beside it;
/// its numbers are printed for the comparison, not asserted.
#[test]
#[ignore = "trains two set models (about 20 minutes on 2 cores); run with --ignored"]
fn transdim_rings_default_learns_the_size_law_and_the_sets() {
    let dir = tempfile::tempdir().expect("tmp");
    let run = |spec: &str, out: &Path| {
        let spec = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("specs")
            .join(spec);
        let started = std::time::Instant::now();
        let o = difc()
            .arg("run")
            .arg(&spec)
            .arg("--out")
            .arg(out)
            .output()
            .expect("runs");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        started.elapsed().as_secs_f64()
    };
    let td = dir.path().join("transdim");
    let fx = dir.path().join("fixed");
    let s_td = run("transdim_rings.diff", &td);
    let s_fx = run("fixed_size_rings.diff", &fx);
    for (name, out, s) in [("transdim", &td, s_td), ("fixed-size", &fx, s_fx)] {
        let ratios: Vec<String> = (1..=8)
            .filter_map(|k| {
                let text = std::fs::read_to_string(out.join("metrics.yaml")).ok()?;
                let v: serde_yaml::Value = serde_yaml::from_str(&text).ok()?;
                let g = v.get(format!("mmd_count_{k}"))?.as_f64()?;
                let d = v.get(format!("mmd_data_count_{k}"))?.as_f64()?;
                Some(format!("{k}: {:.2}", g / d))
            })
            .collect();
        println!(
            "{name}: {s:.0} s, count_tv {:.3} (data vs data {:.3}), per-size MMD ratio [{}], max {:.2}",
            metric(out, "count_tv"),
            metric(out, "count_tv_data"),
            ratios.join(", "),
            metric(out, "mmd_count_max_ratio"),
        );
    }
    assert!(metric(&td, "count_tv") <= 0.05);
    assert!(metric(&td, "mmd_count_max_ratio") <= 3.0);
}

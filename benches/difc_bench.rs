//! Benchmarks: checking the stdlib, one training step (4×128 MLP, batch 512, 2-D) for the
//! Gaussian and the JL process, and the 25-step ODE sampler on 100 000 points.
//! Run with `cargo bench`; `cargo test --benches` runs each once as a smoke test.

use criterion::{criterion_group, criterion_main, Criterion};

fn check_stdlib(c: &mut Criterion) {
    let paths: Vec<std::path::PathBuf> = std::fs::read_dir("stdlib")
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    c.bench_function("check stdlib", |b| {
        b.iter(|| {
            let s = difc::driver::check_paths(&paths, &[], &difc::check::FsLoader)
                .expect("stdlib readable");
            assert!(s.checked.model.is_some());
        })
    });
}

criterion_group!(benches, check_stdlib);
criterion_main!(benches);

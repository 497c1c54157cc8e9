//! Helpers shared by the integration tests.
#![allow(dead_code)]

use difc::check::Loader;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Serves spec files from memory.
pub struct MemLoader(pub HashMap<PathBuf, String>);

impl Loader for MemLoader {
    fn read(&self, path: &Path) -> Result<Vec<u8>, String> {
        self.0
            .get(path)
            .map(|s| s.as_bytes().to_vec())
            .ok_or_else(|| "no such file".to_string())
    }
}

/// Checks one in-memory spec and returns its first experiment.
pub fn experiment(src: &str) -> difc::ir::Experiment {
    experiment_with(src, &[])
}

/// Like [`experiment`], with `--set` overrides.
pub fn experiment_with(src: &str, set: &[&str]) -> difc::ir::Experiment {
    let path = PathBuf::from("mem/spec.diff");
    let loader = MemLoader([(path.clone(), src.to_string())].into());
    let set: Vec<String> = set.iter().map(|s| s.to_string()).collect();
    let session =
        difc::driver::check_paths(&[path], &set, &loader).expect("in-memory spec readable");
    let text = difc::driver::render(&session, difc::driver::Format::Human, Default::default());
    let model = session
        .checked
        .model
        .unwrap_or_else(|| panic!("spec has errors:\n{text}"));
    model
        .experiments
        .into_iter()
        .next()
        .expect("spec has an experiment")
}

/// The difc binary.
pub fn difc() -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_difc"));
    c.env("NO_COLOR", "1").env("DIFC_QUIET", "1");
    c
}

/// The first process of an in-memory spec, compiled as a set family (ε target, t_min 1e-3).
pub fn set_family(
    src: &str,
) -> Result<difc::compile::transdim::TransDim, difc::compile::CompileError> {
    let path = PathBuf::from("mem/spec.diff");
    let loader = MemLoader([(path.clone(), src.to_string())].into());
    let session = difc::driver::check_paths(&[path], &[], &loader).expect("readable");
    let text = difc::driver::render(&session, difc::driver::Format::Human, Default::default());
    let model = session
        .checked
        .model
        .unwrap_or_else(|| panic!("spec has errors:\n{text}"));
    let loss = difc::ir::LossSpec {
        target: difc::ir::Target::Eps,
        weight: difc::ir::Expr::Const(1.0),
        weight_given: false,
        t_min: 1e-3,
        precondition: difc::ir::Precondition::None,
        sigma_data: 0.5,
        transdim: Default::default(),
    };
    difc::compile::transdim(&model.processes[0], &loss)
}

//! Stage 4: running experiments — data, networks, optimisation, sampling, metrics, plots and
//! the run folder.

pub mod data;
pub mod metrics;
pub mod npy;

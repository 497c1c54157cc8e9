//! Stage 4: running experiments — data, networks, optimisation, sampling, metrics, plots and
//! the run folder.

pub mod checkpoint;
pub mod data;
pub mod experiment;
pub mod fetch;
pub mod images;
pub mod metrics;
pub mod npy;
pub mod optim;
pub mod pickle;
pub mod plot;
pub mod progress;
pub mod qm9;
pub mod sets;
pub mod sweep;
pub mod threads;
pub mod train;
pub mod transdim;

//! TEMPORARY (lead): placeholder until the runtime helper delivers plot.rs.
use std::path::Path;
pub fn scatter_png(
    _path: &Path,
    _samples: &[f32],
    _reference: &[f32],
    _dim: usize,
    _title: &str,
) -> Result<(), String> {
    Ok(())
}
pub fn loss_png(_path: &Path, _steps: &[u64], _losses: &[f64], _title: &str) -> Result<(), String> {
    Ok(())
}

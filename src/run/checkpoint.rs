//! Checkpoints as safetensors files with a string→string metadata map, written atomically.
//!
//! Atomic means: the bytes go to `<path>.tmp`, which is fsynced, renamed over `<path>`, and the
//! directory is fsynced, so a crash leaves either the old file or the new one, never half of one.
//! Loading reads the whole file and lets the `safetensors` crate validate the header and every
//! offset, so a truncated or corrupt file is an error, not a panic.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

/// Errors from writing or reading checkpoints.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// A file-system operation failed.
    #[error("{action} `{path}` failed: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not a valid safetensors file (truncated, corrupt, or not a checkpoint).
    #[error("`{path}` is not a readable checkpoint ({detail}); it may be truncated or from an interrupted copy — use another checkpoint or retrain")]
    Corrupt { path: PathBuf, detail: String },
    /// A tensor dtype that checkpoints do not store.
    #[error("tensor `{name}` has dtype {dtype:?}, which checkpoints do not support (use f32, f64, i64, u32 or u8)")]
    UnsupportedDtype { name: String, dtype: String },
    /// An expected tensor is absent.
    #[error(
        "checkpoint has no tensor `{name}`; was it written by a different model or difc version?"
    )]
    Missing { name: String },
    /// A tensor has the wrong shape or dtype.
    #[error("checkpoint tensor `{name}` is {found}, expected {expected}; the model configuration differs from the one that wrote the checkpoint")]
    Mismatch {
        name: String,
        found: String,
        expected: String,
    },
    /// Two tensors with the same name were given to `save_atomic`.
    #[error("tensor name `{0}` appears twice; checkpoint names must be unique")]
    Duplicate(String),
    /// An error from candle itself.
    #[error("tensor operation failed: {0}")]
    Candle(#[from] candle_core::Error),
}

/// Result type of this module.
pub type Result<T> = std::result::Result<T, CheckpointError>;

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError {
    let path = path.to_path_buf();
    move |source| CheckpointError::Io {
        action,
        path,
        source,
    }
}

/// `<path>.tmp` next to `path`.
fn temp_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Writes `bytes` to `path` atomically (temp file, fsync, rename, fsync of the directory).
/// Use it for small text outputs (yaml, csv) too.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temp_path(path);
    {
        let mut f = File::create(&tmp).map_err(io_err("creating", &tmp))?;
        f.write_all(bytes).map_err(io_err("writing", &tmp))?;
        f.sync_all().map_err(io_err("syncing", &tmp))?;
    }
    fs::rename(&tmp, path).map_err(io_err("renaming into place", path))?;
    sync_parent_dir(path)
}

/// Makes the rename durable. Only meaningful (and possible) on Unix.
fn sync_parent_dir(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err("syncing directory", &dir))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Raw little-endian bytes of a tensor plus its safetensors dtype.
fn tensor_bytes(name: &str, t: &Tensor) -> Result<(Dtype, Vec<u8>)> {
    let flat = t.to_device(&Device::Cpu)?.flatten_all()?;
    fn le<T: candle_core::WithDType, const N: usize>(
        t: &Tensor,
        f: fn(T) -> [u8; N],
    ) -> Result<Vec<u8>> {
        Ok(t.to_vec1::<T>()?.into_iter().flat_map(f).collect())
    }
    Ok(match t.dtype() {
        DType::F32 => (Dtype::F32, le::<f32, 4>(&flat, f32::to_le_bytes)?),
        DType::F64 => (Dtype::F64, le::<f64, 8>(&flat, f64::to_le_bytes)?),
        DType::I64 => (Dtype::I64, le::<i64, 8>(&flat, i64::to_le_bytes)?),
        DType::U32 => (Dtype::U32, le::<u32, 4>(&flat, u32::to_le_bytes)?),
        DType::U8 => (Dtype::U8, flat.to_vec1::<u8>()?),
        other => {
            return Err(CheckpointError::UnsupportedDtype {
                name: name.to_string(),
                dtype: format!("{other:?}"),
            })
        }
    })
}

/// Saves named tensors (from any device) and a metadata map (e.g. step, seed, difc version,
/// spec hash, RNG counters) to `path` atomically.
pub fn save_atomic(
    path: &Path,
    tensors: &[(String, Tensor)],
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    let mut buffers = BTreeMap::new();
    for (name, t) in tensors {
        if buffers.contains_key(name) {
            return Err(CheckpointError::Duplicate(name.clone()));
        }
        buffers.insert(name.clone(), (tensor_bytes(name, t)?, t.dims().to_vec()));
    }
    let mut views = Vec::with_capacity(buffers.len());
    for (name, ((dtype, bytes), shape)) in &buffers {
        let view = TensorView::new(*dtype, shape.clone(), bytes).map_err(|e| {
            CheckpointError::Corrupt {
                path: path.to_path_buf(),
                detail: format!("tensor `{name}`: {e}"),
            }
        })?;
        views.push((name.as_str(), view));
    }
    // safetensors keeps metadata in a HashMap whose order changes from run to run; packing the
    // sorted map into one JSON string makes the file identical for identical states.
    let packed = serde_json::to_string(metadata).unwrap_or_default();
    let meta: HashMap<String, String> = [(META_KEY.to_string(), packed)].into();
    let bytes = safetensors::tensor::serialize(views, Some(meta)).map_err(|e| {
        CheckpointError::Corrupt {
            path: path.to_path_buf(),
            detail: format!("serialising: {e}"),
        }
    })?;
    write_atomic(path, &bytes)
}

/// The single metadata entry holding difc's sorted metadata as JSON.
const META_KEY: &str = "difc";

/// A loaded checkpoint: tensors sorted by name, and the metadata map.
pub type Loaded = (Vec<(String, Tensor)>, BTreeMap<String, String>);

/// Loads every tensor (sorted by name) onto `device`, and the metadata map.
pub fn load(path: &Path, device: &Device) -> Result<Loaded> {
    let bytes = fs::read(path).map_err(io_err("reading", path))?;
    let corrupt = |e: safetensors::SafeTensorError| CheckpointError::Corrupt {
        path: path.to_path_buf(),
        detail: e.to_string(),
    };
    let (_, header) = SafeTensors::read_metadata(&bytes).map_err(corrupt)?;
    let raw = header.metadata().clone().unwrap_or_default();
    let metadata: BTreeMap<String, String> = match raw.get(META_KEY) {
        Some(packed) => serde_json::from_str(packed).map_err(|e| CheckpointError::Corrupt {
            path: path.to_path_buf(),
            detail: format!("metadata: {e}"),
        })?,
        None => raw.into_iter().collect(),
    };
    let st = SafeTensors::deserialize(&bytes).map_err(corrupt)?;
    let mut out = Vec::new();
    for (name, view) in st.tensors() {
        out.push((name.clone(), view_to_tensor(path, &name, &view, device)?));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok((out, metadata))
}

/// Decodes one stored tensor.
fn view_to_tensor(path: &Path, name: &str, v: &TensorView<'_>, device: &Device) -> Result<Tensor> {
    let shape = v.shape().to_vec();
    let data = v.data();
    fn dec<T: candle_core::WithDType, const N: usize>(
        data: &[u8],
        shape: Vec<usize>,
        device: &Device,
        f: fn([u8; N]) -> T,
    ) -> Result<Tensor> {
        let vals: Vec<T> = data
            .chunks_exact(N)
            .map(|c| {
                let mut a = [0u8; N];
                a.copy_from_slice(c);
                f(a)
            })
            .collect();
        Ok(Tensor::from_vec(vals, shape, device)?)
    }
    match v.dtype() {
        Dtype::F32 => dec(data, shape, device, f32::from_le_bytes),
        Dtype::F64 => dec(data, shape, device, f64::from_le_bytes),
        Dtype::I64 => dec(data, shape, device, i64::from_le_bytes),
        Dtype::U32 => dec(data, shape, device, u32::from_le_bytes),
        Dtype::U8 => Ok(Tensor::from_vec(data.to_vec(), shape, device)?),
        other => Err(CheckpointError::Corrupt {
            path: path.to_path_buf(),
            detail: format!("tensor `{name}` has unsupported dtype {other:?}"),
        }),
    }
}

/// The tensor `name` from a loaded checkpoint, checked to have `dims` and `dtype`.
pub fn require<'a>(
    loaded: &'a [(String, Tensor)],
    name: &str,
    dims: &[usize],
    dtype: DType,
) -> Result<&'a Tensor> {
    let t = loaded
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, t)| t)
        .ok_or_else(|| CheckpointError::Missing {
            name: name.to_string(),
        })?;
    if t.dims() != dims || t.dtype() != dtype {
        return Err(CheckpointError::Mismatch {
            name: name.to_string(),
            found: format!("{:?} {:?}", t.dtype(), t.dims()),
            expected: format!("{dtype:?} {dims:?}"),
        });
    }
    Ok(t)
}

/// Checks that `loaded` holds every tensor of `expected` with the same shape and dtype (e.g.
/// the current model's weights and optimiser state before restoring them).
pub fn check_matches(loaded: &[(String, Tensor)], expected: &[(String, Tensor)]) -> Result<()> {
    for (name, t) in expected {
        require(loaded, name, t.dims(), t.dtype())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::{Mlp, MlpConfig};
    use crate::run::optim::{AdamW, AdamWConfig};

    fn sample_tensors() -> Result<Vec<(String, Tensor)>> {
        let dev = Device::Cpu;
        Ok(vec![
            (
                "a".into(),
                Tensor::new(&[[1.5f32, -2.0], [3.25, 1e-30]], &dev)?,
            ),
            ("b".into(), Tensor::new(&[0.1f64, 1.0 / 3.0], &dev)?),
            ("step".into(), Tensor::new(&[42i64], &dev)?),
        ])
    }

    #[test]
    fn roundtrip_is_bitwise_with_metadata() -> Result<()> {
        let dir = tempfile::tempdir().map_err(io_err("creating", Path::new("tmp")))?;
        let path = dir.path().join("ckpt.safetensors");
        let mut meta = BTreeMap::new();
        meta.insert("step".to_string(), "42".to_string());
        meta.insert("seed".to_string(), "7".to_string());
        let ts = sample_tensors()?;
        save_atomic(&path, &ts, &meta)?;
        assert!(!temp_path(&path).exists());
        let (back, meta2) = load(&path, &Device::Cpu)?;
        assert_eq!(meta, meta2);
        assert_eq!(back.len(), 3);
        let a = require(&back, "a", &[2, 2], DType::F32)?;
        assert_eq!(
            a.to_vec2::<f32>()?,
            vec![vec![1.5, -2.0], vec![3.25, 1e-30]]
        );
        let b = require(&back, "b", &[2], DType::F64)?;
        assert_eq!(b.to_vec1::<f64>()?[1].to_bits(), (1.0f64 / 3.0).to_bits());
        check_matches(&back, &ts)?;
        // Overwriting an existing checkpoint works (rename over it).
        save_atomic(&path, &ts[..1], &BTreeMap::new())?;
        assert_eq!(load(&path, &Device::Cpu)?.0.len(), 1);
        Ok(())
    }

    #[test]
    fn validation_errors_are_clear() -> Result<()> {
        let ts = sample_tensors()?;
        assert!(matches!(
            require(&ts, "zzz", &[1], DType::F32),
            Err(CheckpointError::Missing { .. })
        ));
        let err = require(&ts, "a", &[4], DType::F32);
        assert!(matches!(err, Err(CheckpointError::Mismatch { .. })));
        assert!(matches!(
            require(&ts, "a", &[2, 2], DType::F64),
            Err(CheckpointError::Mismatch { .. })
        ));
        let dup = vec![ts[0].clone(), ts[0].clone()];
        let dir = tempfile::tempdir().map_err(io_err("creating", Path::new("tmp")))?;
        assert!(matches!(
            save_atomic(&dir.path().join("d"), &dup, &BTreeMap::new()),
            Err(CheckpointError::Duplicate(_))
        ));
        Ok(())
    }

    #[test]
    fn truncated_or_garbage_files_are_errors() -> Result<()> {
        let dir = tempfile::tempdir().map_err(io_err("creating", Path::new("tmp")))?;
        let path = dir.path().join("c.safetensors");
        save_atomic(&path, &sample_tensors()?, &BTreeMap::new())?;
        let bytes = fs::read(&path).map_err(io_err("reading", &path))?;
        for cut in [0, 4, 8, 20, bytes.len() / 2, bytes.len() - 1] {
            let p = dir.path().join(format!("cut{cut}"));
            write_atomic(&p, &bytes[..cut])?;
            assert!(
                matches!(load(&p, &Device::Cpu), Err(CheckpointError::Corrupt { .. })),
                "cut at {cut}"
            );
        }
        let p = dir.path().join("garbage");
        write_atomic(&p, b"\xff\xff\xff\xff\xff\xff\xff\x7fnot a header")?;
        assert!(matches!(
            load(&p, &Device::Cpu),
            Err(CheckpointError::Corrupt { .. })
        ));
        assert!(matches!(
            load(&dir.path().join("absent"), &Device::Cpu),
            Err(CheckpointError::Io { .. })
        ));
        Ok(())
    }

    /// Weights + AdamW state through a file restore training exactly.
    #[test]
    fn model_and_optimizer_restore_through_file(
    ) -> std::result::Result<(), Box<dyn std::error::Error>> {
        let dev = Device::Cpu;
        let net = Mlp::new(MlpConfig::new(2, 8, 2, 5), DType::F32, &dev)?;
        let vars = net.vars();
        let mut opt = AdamW::new(AdamWConfig::default(), &vars)?;
        let x = Tensor::new(&[[0.5f32, -1.0], [2.0, 0.3]], &dev)?;
        let t = Tensor::new(&[0.2f32, 0.9], &dev)?;
        let step =
            |net: &Mlp, opt: &mut AdamW| -> std::result::Result<(), Box<dyn std::error::Error>> {
                let g = net.forward(&x, &t)?.sqr()?.sum_all()?.backward()?;
                opt.step(&net.vars(), &g, 1e-2)?;
                Ok(())
            };
        step(&net, &mut opt)?;
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("m.safetensors");
        let mut all = net.weights();
        all.extend(opt.state_tensors()?);
        save_atomic(&path, &all, &BTreeMap::new())?;
        step(&net, &mut opt)?;

        let (loaded, _) = load(&path, &dev)?;
        check_matches(&loaded, &all)?;
        let mut net2 = Mlp::new(MlpConfig::new(2, 8, 2, 99), DType::F32, &dev)?;
        net2.load_weights(&loaded)?;
        let mut opt2 = AdamW::new(AdamWConfig::default(), &net2.vars())?;
        opt2.load_state(&loaded)?;
        step(&net2, &mut opt2)?;
        for ((_, a), (_, b)) in net.weights().iter().zip(net2.weights()) {
            let (a, b) = (
                a.flatten_all()?.to_vec1::<f32>()?,
                b.flatten_all()?.to_vec1::<f32>()?,
            );
            assert_eq!(a, b);
        }
        Ok(())
    }
}

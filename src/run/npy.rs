//! Reading and writing NumPy `.npy` files.
//!
//! The reader accepts what users are likely to hand us — float32/float64 and integer arrays,
//! either byte order, C or Fortran order, format versions 1–3 — and returns `f32` values in
//! C order viewed as `(rows, cols)`: a 1-D array of length n is `(n, 1)`, an N-D array
//! `(s0, s1, …)` is `(s0, s1·s2·…)`. It checks the byte count the header declares against the
//! file size *before* allocating, so a corrupt header cannot request gigabytes, and it rejects
//! NaN/Inf values naming the first bad entry. The writer emits version-1 (or 2 for huge headers)
//! little-endian float32 files atomically (temp file + rename).

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// File signature: `\x93NUMPY`.
const MAGIC: &[u8; 6] = b"\x93NUMPY";
/// Accepted dtype strings, for error messages.
const ACCEPTED: &str = "float32 ('<f4'), float64 ('<f8'), int8/16/32/64 ('|i1', '<i2', '<i4', \
                        '<i8'), uint8/16/32/64 ('|u1', '<u2', '<u4', '<u8'), either byte order";
/// Headers longer than this are certainly not NumPy's (real ones are < 200 bytes).
const MAX_HEADER: usize = 1 << 20;

/// Errors reading or writing `.npy` files.
#[derive(Debug, thiserror::Error)]
pub enum NpyError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a .npy file (it does not start with the bytes \\x93NUMPY); save arrays with numpy.save")]
    BadMagic { path: PathBuf },
    #[error("{path}: unsupported .npy format version {major}.{minor}; expected 1.0, 2.0 or 3.0")]
    BadVersion { path: PathBuf, major: u8, minor: u8 },
    #[error("{path}: file ends inside the header ({detail}); the file is truncated")]
    TruncatedHeader { path: PathBuf, detail: String },
    #[error("{path}: cannot parse the .npy header: {detail} (header: {header})")]
    BadHeader {
        path: PathBuf,
        detail: String,
        header: String,
    },
    #[error("{path}: dtype '{found}' is not supported; accepted: {ACCEPTED}. Convert with arr.astype('float32') before saving")]
    BadDtype { path: PathBuf, found: String },
    #[error(
        "{path}: shape {shape:?} needs at least one dimension (a 0-d scalar is not a data set)"
    )]
    ScalarArray { path: PathBuf, shape: Vec<usize> },
    #[error("{path}: shape {shape:?} is too large to address")]
    Overflow { path: PathBuf, shape: Vec<usize> },
    #[error("{path}: header declares shape {shape:?} = {expected} data bytes but the file holds {actual}; the file is {}", if actual < expected { "truncated" } else { "followed by unexpected bytes" })]
    SizeMismatch {
        path: PathBuf,
        shape: Vec<usize>,
        expected: u64,
        actual: u64,
    },
    #[error("{path}: value {value} at row {row}, column {col} is not finite; remove or replace NaN/Inf entries")]
    NonFinite {
        path: PathBuf,
        row: usize,
        col: usize,
        value: f64,
    },
    #[error("{path}: array of shape {shape:?} holds no points")]
    Empty { path: PathBuf, shape: Vec<usize> },
    #[error(
        "cannot write {path}: shape {shape:?} holds {expected} values but {actual} were given"
    )]
    ShapeMismatch {
        path: PathBuf,
        shape: Vec<usize>,
        expected: usize,
        actual: usize,
    },
}

/// An array read from a `.npy` file, as `f32` in C order.
#[derive(Clone, Debug, PartialEq)]
pub struct NpyArray {
    /// The shape as stored in the file.
    pub shape: Vec<usize>,
    /// First dimension.
    pub rows: usize,
    /// Product of the remaining dimensions (1 for a 1-D array).
    pub cols: usize,
    /// `rows * cols` values, row-major.
    pub data: Vec<f32>,
}

/// Element type and byte order declared in the header.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Dtype {
    kind: u8, // b'f', b'i' or b'u'
    size: usize,
    little: bool,
}

/// The parsed header dictionary.
#[derive(Debug, PartialEq)]
struct Header {
    dtype: Dtype,
    fortran: bool,
    shape: Vec<usize>,
}

/// Reads a `.npy` file; see the module documentation for what is accepted.
pub fn read_npy(path: impl AsRef<Path>) -> Result<NpyArray, NpyError> {
    read_npy_checked(path.as_ref(), false)
}

/// Like [`read_npy`], but NaN entries are kept (infinities are still refused): the padding of
/// set data, `(n, N, d)` arrays whose absent components are all-NaN (see `run::sets`).
pub fn read_npy_nan_padded(path: impl AsRef<Path>) -> Result<NpyArray, NpyError> {
    read_npy_checked(path.as_ref(), true)
}

fn read_npy_checked(path: &Path, allow_nan: bool) -> Result<NpyArray, NpyError> {
    let io = |source| NpyError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(io)?;
    let file_len = file.metadata().map_err(io)?.len();
    read_from(&mut file, file_len, path, allow_nan)
}

/// Like [`read_npy_nan_padded`], from the bytes of a file already read (`path` is for the
/// messages): how `difc check`, which reads files through its loader, looks at set data.
pub fn parse_npy_nan_padded(bytes: &[u8], path: &Path) -> Result<NpyArray, NpyError> {
    let mut reader = bytes;
    read_from(&mut reader, bytes.len() as u64, path, true)
}

/// Like [`read_npy`], from the bytes of a file already read (`path` is for the messages).
pub fn parse_npy(bytes: &[u8], path: &Path) -> Result<NpyArray, NpyError> {
    let mut reader = bytes;
    read_from(&mut reader, bytes.len() as u64, path, false)
}

/// Reads a whole `.npy` of `file_len` bytes from `file`.
fn read_from(
    file: &mut impl Read,
    file_len: u64,
    path: &Path,
    allow_nan: bool,
) -> Result<NpyArray, NpyError> {
    let io = |source| NpyError::Io {
        path: path.to_path_buf(),
        source,
    };
    let (header, header_len) = read_header(file, path, file_len)?;
    let count = checked_count(&header, header_len, file_len, path)?;
    let values = read_values(file, count, header.dtype).map_err(io)?;
    let values = if header.fortran {
        fortran_to_c(&values, &header.shape)
    } else {
        values
    };
    let rows = header.shape[0];
    let cols = header.shape[1..].iter().product();
    check_finite(&values, cols, path, allow_nan)?;
    Ok(NpyArray {
        shape: header.shape,
        rows,
        cols,
        data: values,
    })
}

/// The shape a `.npy` file declares, from the first bytes of the file (`head`, which must hold
/// the whole header: 1 MiB + 12 bytes suffice) and its length, with every check [`read_npy`]
/// makes before reading values (magic, version, dtype, shape against the file size). Used by
/// `difc check`, which never reads the data themselves.
pub fn read_npy_header(head: &[u8], file_len: u64, path: &Path) -> Result<Vec<usize>, NpyError> {
    let mut reader = head;
    let (header, header_len) = read_header(&mut reader, path, file_len)?;
    checked_count(&header, header_len, file_len, path)?;
    Ok(header.shape)
}

/// Bytes of a file's start that hold any header [`read_npy_header`] accepts.
pub const HEADER_BYTES: usize = MAX_HEADER + 12;

/// The element count of `header`, checked against the data bytes the file holds.
fn checked_count(
    header: &Header,
    header_len: usize,
    file_len: u64,
    path: &Path,
) -> Result<usize, NpyError> {
    let count = element_count(&header.shape).ok_or_else(|| NpyError::Overflow {
        path: path.to_path_buf(),
        shape: header.shape.clone(),
    })?;
    let expected = (count as u64)
        .checked_mul(header.dtype.size as u64)
        .ok_or_else(|| NpyError::Overflow {
            path: path.to_path_buf(),
            shape: header.shape.clone(),
        })?;
    let actual = file_len.saturating_sub(header_len as u64);
    // Compare before allocating: a corrupt header must not make us reserve its claimed size.
    if expected != actual {
        return Err(NpyError::SizeMismatch {
            path: path.to_path_buf(),
            shape: header.shape.clone(),
            expected,
            actual,
        });
    }
    Ok(count)
}

/// Reads magic, version and header; returns the header and the offset where data start.
fn read_header(
    file: &mut impl Read,
    path: &Path,
    file_len: u64,
) -> Result<(Header, usize), NpyError> {
    let truncated = |detail: &str| NpyError::TruncatedHeader {
        path: path.to_path_buf(),
        detail: detail.to_string(),
    };
    let mut prefix = [0u8; 8];
    if file_len < 8 {
        let mut start = vec![0u8; file_len as usize];
        file.read_exact(&mut start).map_err(|source| NpyError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        if !MAGIC.starts_with(&start) || start.is_empty() {
            return Err(NpyError::BadMagic {
                path: path.to_path_buf(),
            });
        }
        return Err(truncated("less than 8 bytes"));
    }
    file.read_exact(&mut prefix)
        .map_err(|source| NpyError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    if &prefix[..6] != MAGIC {
        return Err(NpyError::BadMagic {
            path: path.to_path_buf(),
        });
    }
    let (major, minor) = (prefix[6], prefix[7]);
    let len_bytes = match (major, minor) {
        (1, 0) => 2,
        (2, 0) | (3, 0) => 4,
        _ => {
            return Err(NpyError::BadVersion {
                path: path.to_path_buf(),
                major,
                minor,
            })
        }
    };
    let mut len_buf = [0u8; 4];
    file.read_exact(&mut len_buf[..len_bytes])
        .map_err(|_| truncated("in the header length"))?;
    let header_len = u32::from_le_bytes(len_buf) as usize;
    let data_start = 8 + len_bytes + header_len;
    if header_len > MAX_HEADER {
        return Err(NpyError::BadHeader {
            path: path.to_path_buf(),
            detail: format!("declared header length {header_len} is implausibly large"),
            header: String::new(),
        });
    }
    if data_start as u64 > file_len {
        return Err(truncated(&format!(
            "header declares {header_len} bytes, file has {}",
            file_len - (8 + len_bytes) as u64
        )));
    }
    let mut raw = vec![0u8; header_len];
    file.read_exact(&mut raw)
        .map_err(|_| truncated("in the header text"))?;
    // Versions 1 and 2 are latin-1, version 3 UTF-8; the dict itself is ASCII in both.
    let text: String = if major == 3 {
        String::from_utf8_lossy(&raw).into_owned()
    } else {
        raw.iter().map(|&b| b as char).collect()
    };
    let header = parse_header(&text).map_err(|detail| NpyError::BadHeader {
        path: path.to_path_buf(),
        detail,
        header: text.trim_end().to_string(),
    })?;
    let header = header.finish(path)?;
    Ok((header, data_start))
}

/// Header fields as found, before the dtype and shape are checked.
struct RawHeader {
    descr: String,
    fortran: bool,
    shape: Vec<usize>,
}

impl RawHeader {
    fn finish(self, path: &Path) -> Result<Header, NpyError> {
        let dtype = parse_dtype(&self.descr).ok_or_else(|| NpyError::BadDtype {
            path: path.to_path_buf(),
            found: self.descr.clone(),
        })?;
        if self.shape.is_empty() {
            return Err(NpyError::ScalarArray {
                path: path.to_path_buf(),
                shape: self.shape,
            });
        }
        Ok(Header {
            dtype,
            fortran: self.fortran,
            shape: self.shape,
        })
    }
}

/// Parses NumPy's header dict: `{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }`.
fn parse_header(text: &str) -> Result<RawHeader, String> {
    let mut p = Parser {
        s: text.as_bytes(),
        i: 0,
    };
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    p.expect(b'{')?;
    loop {
        p.skip_ws();
        if p.eat(b'}') {
            break;
        }
        let key = p.string()?;
        p.expect(b':')?;
        match key.as_str() {
            "descr" => {
                p.skip_ws();
                if p.peek() == Some(b'[') {
                    return Err(
                        "structured (record) dtypes are not supported; save a plain numeric array"
                            .into(),
                    );
                }
                descr = Some(p.string()?)
            }
            "fortran_order" => fortran = Some(p.boolean()?),
            "shape" => shape = Some(p.tuple()?),
            other => return Err(format!("unexpected key '{other}'")),
        }
        p.skip_ws();
        if !p.eat(b',') {
            p.expect(b'}')?;
            break;
        }
    }
    Ok(RawHeader {
        descr: descr.ok_or("missing key 'descr'")?,
        fortran: fortran.ok_or("missing key 'fortran_order'")?,
        shape: shape.ok_or("missing key 'shape'")?,
    })
}

/// A tiny cursor over the Python-literal header.
struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.skip_ws();
        let hit = self.peek() == Some(c);
        if hit {
            self.i += 1;
        }
        hit
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(format!("expected '{}' at byte {}", c as char, self.i))
        }
    }

    fn string(&mut self) -> Result<String, String> {
        self.skip_ws();
        let quote = match self.peek() {
            Some(q @ (b'\'' | b'"')) => q,
            _ => return Err(format!("expected a quoted string at byte {}", self.i)),
        };
        let start = self.i + 1;
        let len = self.s[start..]
            .iter()
            .position(|&c| c == quote)
            .ok_or("unterminated string")?;
        self.i = start + len + 1;
        Ok(String::from_utf8_lossy(&self.s[start..start + len]).into_owned())
    }

    fn boolean(&mut self) -> Result<bool, String> {
        self.skip_ws();
        for (word, value) in [("True", true), ("False", false)] {
            if self.s[self.i..].starts_with(word.as_bytes()) {
                self.i += word.len();
                return Ok(value);
            }
        }
        Err(format!("expected True or False at byte {}", self.i))
    }

    fn tuple(&mut self) -> Result<Vec<usize>, String> {
        self.expect(b'(')?;
        let mut dims = Vec::new();
        loop {
            if self.eat(b')') {
                return Ok(dims);
            }
            dims.push(self.integer()?);
            if !self.eat(b',') {
                self.expect(b')')?;
                return Ok(dims);
            }
        }
    }

    fn integer(&mut self) -> Result<usize, String> {
        self.skip_ws();
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        // Python 2 era files may write long integers as `3L`.
        let digits = std::str::from_utf8(&self.s[start..self.i]).unwrap_or("");
        if self.peek() == Some(b'L') {
            self.i += 1;
        }
        digits
            .parse()
            .map_err(|_| format!("expected a non-negative dimension at byte {start}"))
    }
}

/// Maps a NumPy type string to a supported dtype.
fn parse_dtype(descr: &str) -> Option<Dtype> {
    let bytes = descr.as_bytes();
    if bytes.len() < 3 {
        return None;
    }
    let little = match bytes[0] {
        b'<' => true,
        b'>' => false,
        b'=' => cfg!(target_endian = "little"),
        // '|' means "byte order not applicable": only valid for one-byte types.
        b'|' => true,
        _ => return None,
    };
    let kind = bytes[1];
    let size: usize = descr[2..].parse().ok()?;
    let ok = match kind {
        b'f' => size == 4 || size == 8,
        b'i' | b'u' => matches!(size, 1 | 2 | 4 | 8),
        _ => false,
    };
    (ok && (bytes[0] != b'|' || size == 1)).then_some(Dtype { kind, size, little })
}

fn element_count(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

/// Reads and decodes `count` elements in bounded chunks, so peak memory is the `f32` result
/// plus one chunk rather than the raw bytes as well.
fn read_values(file: &mut impl Read, count: usize, dt: Dtype) -> std::io::Result<Vec<f32>> {
    const CHUNK_ELEMENTS: usize = 1 << 17;
    let mut values = Vec::with_capacity(count);
    let mut buf = vec![0u8; CHUNK_ELEMENTS.min(count) * dt.size];
    let mut left = count;
    while left > 0 {
        let take = left.min(CHUNK_ELEMENTS);
        let bytes = &mut buf[..take * dt.size];
        file.read_exact(bytes)?;
        values.extend(decode(bytes, dt));
        left -= take;
    }
    Ok(values)
}

/// Converts raw element bytes to `f32` (integers and doubles are rounded to nearest `f32`).
fn decode(bytes: &[u8], dt: Dtype) -> impl Iterator<Item = f32> + '_ {
    bytes.chunks_exact(dt.size).map(move |chunk| {
        let mut b = [0u8; 8];
        b[..dt.size].copy_from_slice(chunk);
        if !dt.little {
            b[..dt.size].reverse();
        }
        let bits = u64::from_le_bytes(b);
        match (dt.kind, dt.size) {
            (b'f', 4) => f32::from_bits(bits as u32),
            (b'f', _) => f64::from_bits(bits) as f32,
            (b'u', _) => bits as f32,
            // Sign-extend from the element width.
            (_, size) => {
                let shift = 64 - 8 * size as u32;
                (((bits << shift) as i64) >> shift) as f32
            }
        }
    })
}

/// Reorders Fortran-order (first index fastest) values into C order (last index fastest).
fn fortran_to_c(values: &[f32], shape: &[usize]) -> Vec<f32> {
    let mut strides = vec![1usize; shape.len()];
    for k in 1..shape.len() {
        strides[k] = strides[k - 1] * shape[k - 1];
    }
    let mut out = Vec::with_capacity(values.len());
    let mut index = vec![0usize; shape.len()];
    for _ in 0..values.len() {
        let offset: usize = index.iter().zip(&strides).map(|(i, s)| i * s).sum();
        out.push(values[offset]);
        // Advance the C-order multi-index: last axis fastest.
        for k in (0..shape.len()).rev() {
            index[k] += 1;
            if index[k] < shape[k] {
                break;
            }
            index[k] = 0;
        }
    }
    out
}

fn check_finite(values: &[f32], cols: usize, path: &Path, allow_nan: bool) -> Result<(), NpyError> {
    match values
        .iter()
        .position(|v| !(v.is_finite() || (allow_nan && v.is_nan())))
    {
        None => Ok(()),
        Some(k) => Err(NpyError::NonFinite {
            path: path.to_path_buf(),
            row: k / cols.max(1),
            col: k % cols.max(1),
            value: f64::from(values[k]),
        }),
    }
}

/// Builds the padded header for a little-endian float32 C-order array of `shape`.
fn header_bytes(shape: &[usize]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_text = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_text}, }}");
    // Version 1 stores the header length in 2 bytes; fall back to version 2 when it won't fit.
    let (version, len_bytes) = if dict.len() + 1 + 10 < 65536 {
        (1u8, 2)
    } else {
        (2u8, 4)
    };
    let prefix = 6 + 2 + len_bytes;
    // NumPy pads with spaces so that prefix + header (ending in '\n') is a multiple of 64.
    let total = (prefix + dict.len() + 1).div_ceil(64) * 64;
    let header_len = total - prefix;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[version, 0]);
    if version == 1 {
        out.extend_from_slice(&(header_len as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&(header_len as u32).to_le_bytes());
    }
    out.extend_from_slice(dict.as_bytes());
    out.resize(total - 1, b' ');
    out.push(b'\n');
    out
}

/// Writes `data` (C order) as a float32 `.npy` array of `shape`, atomically: the bytes go to a
/// temporary file beside `path`, which is then renamed over it.
pub fn write_npy_f32(
    path: impl AsRef<Path>,
    shape: &[usize],
    data: &[f32],
) -> Result<(), NpyError> {
    let path = path.as_ref();
    let expected = element_count(shape).ok_or_else(|| NpyError::Overflow {
        path: path.to_path_buf(),
        shape: shape.to_vec(),
    })?;
    if expected != data.len() {
        return Err(NpyError::ShapeMismatch {
            path: path.to_path_buf(),
            shape: shape.to_vec(),
            expected,
            actual: data.len(),
        });
    }
    let mut bytes = header_bytes(shape);
    bytes.reserve(data.len() * 4);
    for v in data {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    let tmp = temp_path(path);
    let io = |source| NpyError::Io {
        path: path.to_path_buf(),
        source,
    };
    let written = File::create(&tmp)
        .and_then(|mut f| f.write_all(&bytes).and_then(|_| f.sync_all()))
        .and_then(|_| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        // Best effort: do not leave a half-written temp file behind.
        let _ = std::fs::remove_file(&tmp);
        return Err(io(e));
    }
    Ok(())
}

/// `dir/.name.tmp-<pid>` beside `path`, so the rename stays on one file system.
fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "array.npy".into());
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_raw(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> PathBuf {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    /// A hand-made file: header dict text and raw data bytes (version 1).
    fn npy_bytes(dict: &str, data: &[u8]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&[1, 0]);
        let h = format!("{dict}\n");
        out.extend_from_slice(&(h.len() as u16).to_le_bytes());
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn round_trip_and_header_layout() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.npy");
        let data: Vec<f32> = (0..24).map(|v| v as f32 * 0.5 - 3.0).collect();
        write_npy_f32(&p, &[2, 3, 4], &data).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + header_len) % 64, 0);
        assert_eq!(bytes[10 + header_len - 1], b'\n');
        assert!(std::str::from_utf8(&bytes[10..10 + header_len])
            .unwrap()
            .starts_with("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 4), }"));
        let a = read_npy(&p).unwrap();
        assert_eq!((a.shape.clone(), a.rows, a.cols), (vec![2, 3, 4], 2, 12));
        assert_eq!(a.data, data);
        write_npy_f32(&p, &[5], &[1.0; 5]).unwrap();
        let b = read_npy(&p).unwrap();
        assert_eq!((b.rows, b.cols), (5, 1));
        // No temp file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        let bad = write_npy_f32(&p, &[2, 2], &[1.0; 3]).unwrap_err();
        assert!(matches!(
            bad,
            NpyError::ShapeMismatch {
                expected: 4,
                actual: 3,
                ..
            }
        ));
    }

    #[test]
    fn reads_f8_ints_big_endian_and_fortran_order() {
        let dir = tempfile::tempdir().unwrap();
        let f8: Vec<u8> = [1.5f64, -2.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let p = write_raw(
            &dir,
            "f8.npy",
            &npy_bytes(
                "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }",
                &f8,
            ),
        );
        assert_eq!(read_npy(&p).unwrap().data, vec![1.5, -2.0]);
        let be: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0]
            .iter()
            .flat_map(|v| v.to_be_bytes())
            .collect();
        let p = write_raw(
            &dir,
            "be.npy",
            &npy_bytes(
                "{'descr': '>f4', 'fortran_order': False, 'shape': (2, 2)}",
                &be,
            ),
        );
        assert_eq!(read_npy(&p).unwrap().data, vec![1.0, 2.0, 3.0, 4.0]);
        let i8s: Vec<u8> = [-3i64, 7].iter().flat_map(|v| v.to_le_bytes()).collect();
        let p = write_raw(
            &dir,
            "i8.npy",
            &npy_bytes(
                "{'descr': '<i8', 'fortran_order': False, 'shape': (1, 2), }",
                &i8s,
            ),
        );
        assert_eq!(read_npy(&p).unwrap().data, vec![-3.0, 7.0]);
        let p = write_raw(
            &dir,
            "u1.npy",
            &npy_bytes(
                "{'descr': '|u1', 'fortran_order': False, 'shape': (3,), }",
                &[0, 128, 255],
            ),
        );
        assert_eq!(read_npy(&p).unwrap().data, vec![0.0, 128.0, 255.0]);
        // Fortran order: a 2×3 matrix [[1,2,3],[4,5,6]] stored column by column.
        let f: Vec<u8> = [1.0f32, 4.0, 2.0, 5.0, 3.0, 6.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let p = write_raw(
            &dir,
            "f.npy",
            &npy_bytes(
                "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }",
                &f,
            ),
        );
        assert_eq!(
            read_npy(&p).unwrap().data,
            vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
        );
    }

    #[test]
    fn rejects_bad_files_with_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = write_raw(&dir, "x.npy", b"PK\x03\x04 not numpy");
        assert!(matches!(read_npy(&p), Err(NpyError::BadMagic { .. })));
        let p = write_raw(&dir, "short.npy", b"\x93NUM");
        assert!(matches!(
            read_npy(&p),
            Err(NpyError::TruncatedHeader { .. })
        ));
        let mut v9 = npy_bytes(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }",
            &[0; 4],
        );
        v9[6] = 9;
        let p = write_raw(&dir, "v9.npy", &v9);
        assert!(matches!(
            read_npy(&p),
            Err(NpyError::BadVersion { major: 9, .. })
        ));
        // A header claiming 10^12 rows must fail on the size check, not on allocation.
        let huge = npy_bytes(
            "{'descr': '<f8', 'fortran_order': False, 'shape': (1000000000000, 2), }",
            &[0; 16],
        );
        let p = write_raw(&dir, "huge.npy", &huge);
        let e = read_npy(&p).unwrap_err();
        assert!(e.to_string().contains("truncated"), "{e}");
        let over = npy_bytes("{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4294967296), }", &[]);
        let p = write_raw(&dir, "over.npy", &over);
        assert!(matches!(read_npy(&p), Err(NpyError::Overflow { .. })));
        let p = write_raw(
            &dir,
            "obj.npy",
            &npy_bytes(
                "{'descr': '|O', 'fortran_order': False, 'shape': (1,), }",
                &[0; 8],
            ),
        );
        let e = read_npy(&p).unwrap_err().to_string();
        assert!(e.contains("'|O'") && e.contains("float32"), "{e}");
        let p = write_raw(
            &dir,
            "c.npy",
            &npy_bytes(
                "{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }",
                &[0; 8],
            ),
        );
        assert!(matches!(read_npy(&p), Err(NpyError::BadDtype { .. })));
        let p = write_raw(
            &dir,
            "rec.npy",
            &npy_bytes(
                "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }",
                &[0; 4],
            ),
        );
        assert!(read_npy(&p).unwrap_err().to_string().contains("structured"));
        let p = write_raw(
            &dir,
            "s.npy",
            &npy_bytes(
                "{'descr': '<f4', 'fortran_order': False, 'shape': (), }",
                &[0; 4],
            ),
        );
        assert!(matches!(read_npy(&p), Err(NpyError::ScalarArray { .. })));
        let p = write_raw(
            &dir,
            "trail.npy",
            &npy_bytes(
                "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }",
                &[0; 6],
            ),
        );
        assert!(read_npy(&p)
            .unwrap_err()
            .to_string()
            .contains("unexpected bytes"));
        let p = write_raw(
            &dir,
            "hdr.npy",
            &npy_bytes(
                "{'descr': '<f4', 'fortran_order': Maybe, 'shape': (1,), }",
                &[0; 4],
            ),
        );
        assert!(matches!(read_npy(&p), Err(NpyError::BadHeader { .. })));
    }

    #[test]
    fn non_finite_values_name_row_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("nan.npy");
        write_npy_f32(&p, &[3, 2], &[0.0, 1.0, 2.0, 3.0, 4.0, f32::NAN]).unwrap();
        match read_npy(&p) {
            Err(NpyError::NonFinite { row: 2, col: 1, .. }) => {}
            other => panic!("unexpected {other:?}"),
        }
        // A float64 too large for float32 becomes Inf and is reported too.
        let big: Vec<u8> = [1.0f64, 1e300]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let p = write_raw(
            &dir,
            "big.npy",
            &npy_bytes(
                "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }",
                &big,
            ),
        );
        assert!(matches!(
            read_npy(&p),
            Err(NpyError::NonFinite { row: 1, col: 0, .. })
        ));
        // The set reader keeps NaN padding but still refuses infinities.
        assert!(matches!(
            read_npy_nan_padded(&p),
            Err(NpyError::NonFinite { row: 1, col: 0, .. })
        ));
        let p = dir.path().join("padded.npy");
        write_npy_f32(&p, &[2, 2, 1], &[1.0, f32::NAN, 2.0, 3.0]).unwrap();
        let a = read_npy_nan_padded(&p).unwrap();
        assert_eq!((a.shape, a.rows, a.cols), (vec![2, 2, 1], 2, 2));
        assert!(a.data[1].is_nan() && a.data[3] == 3.0);
        assert!(matches!(read_npy(&p), Err(NpyError::NonFinite { .. })));
    }

    #[test]
    fn large_arrays_are_read_across_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big.npy");
        let data: Vec<f32> = (0..300_001).map(|v| v as f32).collect();
        write_npy_f32(&p, &[300_001], &data).unwrap();
        assert_eq!(read_npy(&p).unwrap().data, data);
    }

    #[test]
    fn header_padding_is_a_multiple_of_64_for_many_shapes() {
        for shape in [vec![1], vec![7, 2], vec![123456789, 3, 4, 5], vec![0, 2]] {
            let h = header_bytes(&shape);
            assert_eq!(h.len() % 64, 0);
            assert_eq!(*h.last().unwrap(), b'\n');
        }
    }
}

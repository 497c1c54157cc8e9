//! A reader for the one kind of Python pickle difc loads: numpy arrays in nested tuples,
//! written by Python 2 with pickle protocol 2, as in the classic `mnist.pkl.gz`
//! (data.md §1.1).
//!
//! [`parse`] runs the pickle virtual machine over the opcodes such a file uses and builds a
//! [`Value`] tree without calling anything: a `GLOBAL` stays a name, a `REDUCE` stays a
//! call, a `BUILD` stays an object with its state. Byte strings are ranges of the input
//! buffer, so the array payloads (hundreds of MB) are never copied. [`ndarray`] then
//! recognises numpy's pickled form of an array:
//!
//! ```text
//! BUILD(REDUCE(numpy.core.multiarray._reconstruct, (numpy.ndarray, (0,), b'b')),
//!       (1, shape, dtype, is_fortran, raw bytes))
//! dtype = BUILD(REDUCE(numpy.dtype, (b'f4', 0, 1)), (3, b'<', None, None, None, -1, -1, 0))
//! ```
//!
//! Anything else, an opcode outside the supported set included, is an error that names the
//! opcode and its byte offset; nothing is guessed. Pickles written by Python 3 store bytes as
//! `_codecs.encode(str, 'latin1')` calls and are refused the same way.

use std::ops::Range;

/// A value built by the pickle machine (nothing is evaluated).
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// A byte string (`str` in Python 2, `bytes` in 3): a range of the input buffer.
    Bytes(Range<usize>),
    Tuple(Vec<Value>),
    /// `module.name`, as named by a `GLOBAL` opcode.
    Global {
        module: String,
        name: String,
    },
    /// `callable(*args)`, from `REDUCE`.
    Call {
        callable: Box<Value>,
        args: Box<Value>,
    },
    /// `obj.__setstate__(state)`, from `BUILD`.
    Build {
        obj: Box<Value>,
        state: Box<Value>,
    },
}

impl Value {
    /// A short description for error messages.
    fn kind(&self) -> String {
        match self {
            Value::None => "None".into(),
            Value::Bool(b) => format!("the boolean {b}"),
            Value::Int(i) => format!("the integer {i}"),
            Value::Bytes(r) => format!("a byte string of {} bytes", r.len()),
            Value::Tuple(t) => format!("a tuple of {}", t.len()),
            Value::Global { module, name } => format!("the name {module}.{name}"),
            Value::Call { .. } => "a call".into(),
            Value::Build { .. } => "an object with a state".into(),
        }
    }

    /// The items of a tuple of exactly `len` items.
    pub fn tuple(&self, len: usize, what: &str) -> Result<&[Value], PickleError> {
        match self {
            Value::Tuple(items) if items.len() == len => Ok(items),
            other => Err(PickleError::Structure(format!(
                "{what}: expected a tuple of {len}, found {}",
                other.kind()
            ))),
        }
    }
}

/// Why a pickle could not be read.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PickleError {
    #[error("the pickle ends inside opcode `{op}` at byte {offset}")]
    Truncated { op: char, offset: usize },
    #[error("unsupported pickle opcode {byte:#04x} ({shown}) at byte {offset}; this reader knows only the opcodes of numpy arrays pickled by Python 2 with protocol 2")]
    Unsupported {
        byte: u8,
        shown: String,
        offset: usize,
    },
    #[error("malformed pickle at byte {offset} (opcode `{op}`): {message}")]
    Malformed {
        op: char,
        offset: usize,
        message: String,
    },
    #[error("the pickle ends without a STOP opcode")]
    NoStop,
    #[error("unexpected pickle contents: {0}")]
    Structure(String),
}

/// One entry of the machine's stack.
enum Item {
    Mark,
    Value(Value),
}

/// Runs the pickle in `buf` and returns the value on top of the stack at `STOP`.
pub fn parse(buf: &[u8]) -> Result<Value, PickleError> {
    let mut stack: Vec<Item> = Vec::new();
    let mut memo: Vec<Option<Value>> = Vec::new();
    let mut pos = 0usize;
    while pos < buf.len() {
        let offset = pos;
        let byte = buf[pos];
        let op = byte as char;
        pos += 1;
        let truncated = || PickleError::Truncated { op, offset };
        let malformed = |message: &str| PickleError::Malformed {
            op,
            offset,
            message: message.to_string(),
        };
        // The next `k` bytes (as a range of `buf`), consumed.
        let mut take = |k: usize| -> Result<Range<usize>, PickleError> {
            let end = pos.checked_add(k).filter(|&e| e <= buf.len());
            let end = end.ok_or_else(truncated)?;
            let range = pos..end;
            pos = end;
            Ok(range)
        };
        let u32_at = |r: Range<usize>| {
            u32::from_le_bytes([
                buf[r.start],
                buf[r.start + 1],
                buf[r.start + 2],
                buf[r.start + 3],
            ])
        };
        let value = match byte {
            0x80 => {
                // PROTO: the protocol number; the opcodes themselves decide what is read.
                let v = buf[take(1)?.start];
                if v > 5 {
                    return Err(malformed(&format!("protocol {v} does not exist")));
                }
                None
            }
            b'.' => {
                return match stack.pop() {
                    Some(Item::Value(v)) if stack.is_empty() => Ok(v),
                    Some(Item::Value(_)) => Err(malformed("values left on the stack at STOP")),
                    _ => Err(malformed("no value to return")),
                };
            }
            b'c' => {
                let mut line = || -> Result<String, PickleError> {
                    let rest = &buf[pos..];
                    let end = rest
                        .iter()
                        .position(|&b| b == b'\n')
                        .ok_or_else(truncated)?;
                    let text = std::str::from_utf8(&rest[..end])
                        .map_err(|_| malformed("a GLOBAL name that is not UTF-8"))?;
                    pos += end + 1;
                    Ok(text.to_string())
                };
                let module = line()?;
                let name = line()?;
                Some(Value::Global { module, name })
            }
            b'K' => Some(Value::Int(i64::from(buf[take(1)?.start]))),
            b'M' => {
                let b = take(2)?.start;
                Some(Value::Int(i64::from(u16::from_le_bytes([
                    buf[b],
                    buf[b + 1],
                ]))))
            }
            b'J' => Some(Value::Int(i64::from(u32_at(take(4)?) as i32))),
            b'N' => Some(Value::None),
            0x88 => Some(Value::Bool(true)),
            0x89 => Some(Value::Bool(false)),
            // SHORT_BINSTRING, SHORT_BINBYTES: a 1-byte length.
            b'U' | b'C' => {
                let len = usize::from(buf[take(1)?.start]);
                Some(Value::Bytes(take(len)?))
            }
            // BINSTRING (signed length), BINBYTES: a 4-byte little-endian length.
            b'T' | b'B' => {
                let len = u32_at(take(4)?);
                if byte == b'T' && len > i32::MAX as u32 {
                    return Err(malformed("a negative string length"));
                }
                Some(Value::Bytes(take(len as usize)?))
            }
            b'(' => {
                stack.push(Item::Mark);
                None
            }
            b')' => Some(Value::Tuple(Vec::new())),
            b't' => {
                let mark = stack
                    .iter()
                    .rposition(|i| matches!(i, Item::Mark))
                    .ok_or_else(|| malformed("TUPLE without a MARK"))?;
                let items = stack
                    .drain(mark + 1..)
                    .map(|i| match i {
                        Item::Value(v) => v,
                        Item::Mark => Value::None, // unreachable: `mark` is the last one
                    })
                    .collect();
                stack.pop();
                Some(Value::Tuple(items))
            }
            0x85..=0x87 => {
                let k = usize::from(byte - 0x84);
                let mut items = pop_values(&mut stack, k)
                    .ok_or_else(|| malformed(&format!("TUPLE{k} needs {k} values on the stack")))?;
                items.reverse();
                Some(Value::Tuple(items))
            }
            b'R' | b'b' => {
                let mut two = pop_values(&mut stack, 2)
                    .ok_or_else(|| malformed("needs two values on the stack"))?;
                let (first, second) = match (two.pop(), two.pop()) {
                    (Some(a), Some(b)) => (a, b),
                    _ => return Err(malformed("needs two values on the stack")),
                };
                Some(if byte == b'R' {
                    Value::Call {
                        callable: Box::new(first),
                        args: Box::new(second),
                    }
                } else {
                    // BUILD sets the state of the object in place: memo entries that hold it
                    // (`mnist.pkl.gz` memoizes its float32 dtype before building it and refers
                    // to it again for the later arrays) see the built object too.
                    let built = Value::Build {
                        obj: Box::new(first.clone()),
                        state: Box::new(second),
                    };
                    for slot in memo.iter_mut().flatten() {
                        if *slot == first {
                            *slot = built.clone();
                        }
                    }
                    built
                })
            }
            b'q' | b'r' => {
                let index = if byte == b'q' {
                    usize::from(buf[take(1)?.start])
                } else {
                    u32_at(take(4)?) as usize
                };
                let Some(Item::Value(top)) = stack.last() else {
                    return Err(malformed("nothing to memoize"));
                };
                if index > memo.len() + 1024 {
                    return Err(malformed(&format!(
                        "memo index {index} is far out of order"
                    )));
                }
                if memo.len() <= index {
                    memo.resize(index + 1, None);
                }
                memo[index] = Some(top.clone());
                None
            }
            b'h' | b'j' => {
                let index = if byte == b'h' {
                    usize::from(buf[take(1)?.start])
                } else {
                    u32_at(take(4)?) as usize
                };
                let v = memo.get(index).cloned().flatten();
                Some(v.ok_or_else(|| malformed(&format!("memo entry {index} is not set")))?)
            }
            _ => {
                return Err(PickleError::Unsupported {
                    byte,
                    shown: if byte.is_ascii_graphic() {
                        format!("`{op}`")
                    } else {
                        "not printable".into()
                    },
                    offset,
                })
            }
        };
        if let Some(v) = value {
            stack.push(Item::Value(v));
        }
    }
    Err(PickleError::NoStop)
}

/// The top `k` stack entries, top first, if they are all values (not marks).
fn pop_values(stack: &mut Vec<Item>, k: usize) -> Option<Vec<Value>> {
    if stack.len() < k
        || stack[stack.len() - k..]
            .iter()
            .any(|i| matches!(i, Item::Mark))
    {
        return None;
    }
    let mut out = Vec::with_capacity(k);
    for _ in 0..k {
        match stack.pop() {
            Some(Item::Value(v)) => out.push(v),
            _ => return None,
        }
    }
    Some(out)
}

/// A numpy array found in a pickle: its dtype, shape and raw bytes (C order).
#[derive(Clone, Debug, PartialEq)]
pub struct Array {
    /// numpy's type string with the byte order: `<f4`, `<i8`, `|u1`, ….
    pub descr: String,
    pub shape: Vec<usize>,
    /// The raw values: a range of the pickle's buffer, `shape.product() · itemsize` bytes.
    pub data: Range<usize>,
}

impl Array {
    /// Number of values.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// True for an array without values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn global_is(v: &Value, modules: &[&str], want: &str) -> bool {
    matches!(v, Value::Global { module, name } if modules.contains(&module.as_str()) && name == want)
}

fn int(v: &Value, what: &str) -> Result<i64, PickleError> {
    match v {
        Value::Int(i) => Ok(*i),
        Value::Bool(b) => Ok(i64::from(*b)),
        other => Err(PickleError::Structure(format!(
            "{what}: expected an integer, found {}",
            other.kind()
        ))),
    }
}

fn bytes<'a>(v: &Value, buf: &'a [u8], what: &str) -> Result<&'a [u8], PickleError> {
    match v {
        Value::Bytes(r) => Ok(&buf[r.clone()]),
        other => Err(PickleError::Structure(format!(
            "{what}: expected a byte string, found {}",
            other.kind()
        ))),
    }
}

/// Reads `v` (a value of the pickle in `buf`) as a little-endian C-order numpy array.
pub fn ndarray(v: &Value, buf: &[u8]) -> Result<Array, PickleError> {
    let not_array = |why: &str| PickleError::Structure(format!("not a numpy array: {why}"));
    let Value::Build { obj, state } = v else {
        return Err(not_array(&format!("found {}", v.kind())));
    };
    let Value::Call { callable, args } = obj.as_ref() else {
        return Err(not_array("its object is not made by a call"));
    };
    let multiarray = ["numpy.core.multiarray", "numpy._core.multiarray"];
    if !global_is(callable, &multiarray, "_reconstruct") {
        return Err(not_array("it is not made by numpy's _reconstruct"));
    }
    let args = args.tuple(3, "the arguments of _reconstruct")?;
    if !global_is(&args[0], &["numpy"], "ndarray") {
        return Err(not_array("_reconstruct does not make a numpy.ndarray"));
    }
    let state = state.tuple(5, "the state of an array")?;
    let shape = match &state[1] {
        Value::Tuple(dims) => dims
            .iter()
            .map(|d| {
                let d = int(d, "an array dimension")?;
                usize::try_from(d)
                    .map_err(|_| PickleError::Structure(format!("negative array dimension {d}")))
            })
            .collect::<Result<Vec<usize>, _>>()?,
        other => return Err(not_array(&format!("its shape is {}", other.kind()))),
    };
    let descr = dtype(&state[2], buf)?;
    if int(&state[3], "the array's Fortran-order flag")? != 0 {
        return Err(not_array("it is stored in Fortran order"));
    }
    let data = match &state[4] {
        Value::Bytes(r) => r.clone(),
        other => return Err(not_array(&format!("its data are {}", other.kind()))),
    };
    let itemsize: usize = descr[2..].parse().unwrap_or(0);
    let want = shape
        .iter()
        .try_fold(itemsize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| PickleError::Structure(format!("array shape {shape:?} is too large")))?;
    if data.len() != want {
        return Err(PickleError::Structure(format!(
            "an array of shape {shape:?} and dtype {descr} needs {want} bytes, but holds {}",
            data.len()
        )));
    }
    Ok(Array { descr, shape, data })
}

/// numpy's pickled dtype → `<f4`-style type string (little-endian or byte-sized only).
fn dtype(v: &Value, buf: &[u8]) -> Result<String, PickleError> {
    let bad = |why: String| PickleError::Structure(format!("not a numpy dtype: {why}"));
    let Value::Build { obj, state } = v else {
        return Err(bad(format!("found {}", v.kind())));
    };
    let Value::Call { callable, args } = obj.as_ref() else {
        return Err(bad("its object is not made by a call".into()));
    };
    if !global_is(callable, &["numpy"], "dtype") {
        return Err(bad("it is not made by numpy.dtype".into()));
    }
    let args = args.tuple(3, "the arguments of numpy.dtype")?;
    let code = bytes(&args[0], buf, "the dtype's type code")?;
    let code = std::str::from_utf8(code).map_err(|_| bad("a type code that is not text".into()))?;
    let known = code.len() >= 2
        && matches!(code.as_bytes()[0], b'f' | b'i' | b'u')
        && code[1..]
            .parse::<usize>()
            .is_ok_and(|s| [1, 2, 4, 8].contains(&s));
    if !known {
        return Err(bad(format!(
            "type code `{code}` is not a plain number type (f4, i8, u1, …)"
        )));
    }
    let state = match state.as_ref() {
        Value::Tuple(items) if items.len() >= 2 => items,
        other => return Err(bad(format!("its state is {}", other.kind()))),
    };
    let order = bytes(&state[1], buf, "the dtype's byte order")?;
    let size1 = code.ends_with('1');
    match order {
        b"<" => {}
        b"|" if size1 => {}
        b"=" if cfg!(target_endian = "little") => {}
        other => {
            return Err(bad(format!(
                "byte order `{}` of type `{code}` (only little-endian data are read)",
                String::from_utf8_lossy(other)
            )))
        }
    }
    Ok(format!("{}{code}", if size1 { '|' } else { '<' }))
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// Writes pickles with the opcodes Python 2's `cPickle.dump(obj, f, 2)` uses for numpy
    /// arrays, in the same order as `mnist.pkl.gz` (checked with `pickletools.dis`, and loaded
    /// back with numpy's `pickle.load(f, encoding="latin1")`).
    #[derive(Default)]
    pub struct Writer {
        pub out: Vec<u8>,
        memo: u32,
        /// Type code and memo index of each dtype written.
        dtypes: Vec<(String, u32)>,
    }

    impl Writer {
        pub fn new() -> Writer {
            Writer {
                out: vec![0x80, 2],
                memo: 0,
                dtypes: Vec::new(),
            }
        }

        fn put(&mut self) {
            match u8::try_from(self.memo) {
                Ok(m) => self.out.extend([b'q', m]),
                Err(_) => {
                    self.out.push(b'r');
                    self.out.extend(self.memo.to_le_bytes());
                }
            }
            self.memo += 1;
        }

        fn get(&mut self, index: u32) {
            match u8::try_from(index) {
                Ok(m) => self.out.extend([b'h', m]),
                Err(_) => {
                    self.out.push(b'j');
                    self.out.extend(index.to_le_bytes());
                }
            }
        }

        fn global(&mut self, module: &str, name: &str) {
            self.out.push(b'c');
            self.out.extend(format!("{module}\n{name}\n").bytes());
            self.put();
        }

        fn int(&mut self, v: i64) {
            match v {
                0..=255 => self.out.extend([b'K', v as u8]),
                256..=65535 => {
                    self.out.push(b'M');
                    self.out.extend((v as u16).to_le_bytes());
                }
                _ => {
                    self.out.push(b'J');
                    self.out.extend((v as i32).to_le_bytes());
                }
            }
        }

        fn short_str(&mut self, s: &[u8]) {
            self.out.extend([b'U', s.len() as u8]);
            self.out.extend(s);
            self.put();
        }

        /// `numpy.core.multiarray._reconstruct(ndarray, (0,), 'b')` then its state.
        pub fn array(&mut self, code: &str, shape: &[usize], data: &[u8]) {
            self.global("numpy.core.multiarray", "_reconstruct");
            self.global("numpy", "ndarray");
            self.int(0);
            self.out.push(0x85);
            self.put();
            self.short_str(b"b");
            self.out.push(0x87);
            self.put();
            self.out.push(b'R');
            self.put();
            self.out.push(b'(');
            self.int(1);
            self.out.push(b'(');
            shape.iter().for_each(|&d| self.int(d as i64));
            self.out.push(b't');
            self.put();
            match self.dtypes.iter().find(|(c, _)| c == code) {
                // The same dtype again: cPickle refers to the memoized (built) object.
                Some(&(_, index)) => self.get(index),
                None => {
                    self.global("numpy", "dtype");
                    self.short_str(code.as_bytes());
                    self.int(0);
                    self.int(1);
                    self.out.push(0x87);
                    self.put();
                    self.out.push(b'R');
                    self.dtypes.push((code.to_string(), self.memo));
                    self.put();
                    self.out.push(b'(');
                    self.int(3);
                    self.short_str(b"<");
                    self.out.extend(b"NNN");
                    self.int(-1);
                    self.int(-1);
                    self.int(0);
                    self.out.push(b't');
                    self.put();
                    self.out.push(b'b');
                }
            }
            self.out.push(0x89);
            self.out.push(b'T');
            self.out.extend((data.len() as u32).to_le_bytes());
            self.out.extend(data);
            self.put();
            self.out.push(b't');
            self.put();
            self.out.push(b'b');
        }

        pub fn tuple2(&mut self) {
            self.out.push(0x86);
            self.put();
        }

        pub fn tuple3(&mut self) {
            self.out.push(0x87);
            self.put();
        }

        pub fn stop(mut self) -> Vec<u8> {
            self.out.push(b'.');
            self.out
        }
    }

    fn f32_bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn arrays_in_tuples_are_found_with_their_bytes() {
        let x = f32_bytes(&[0.0, 1.0 / 256.0, 255.0 / 256.0, 0.5, 0.25, 0.125]);
        let y: Vec<u8> = [7i64, -1].iter().flat_map(|v| v.to_le_bytes()).collect();
        let mut w = Writer::new();
        w.array("f4", &[2, 3], &x);
        w.array("i8", &[2], &y);
        w.tuple2();
        let buf = w.stop();
        let v = parse(&buf).unwrap();
        let pair = v.tuple(2, "top").unwrap();
        let a = ndarray(&pair[0], &buf).unwrap();
        assert_eq!((a.descr.as_str(), a.shape.clone()), ("<f4", vec![2, 3]));
        assert_eq!(&buf[a.data.clone()], &x[..]);
        let b = ndarray(&pair[1], &buf).unwrap();
        assert_eq!(
            (b.descr.as_str(), b.shape.clone(), b.len()),
            ("<i8", vec![2], 2)
        );
        assert_eq!(&buf[b.data], &y[..]);
    }

    /// The real `mnist.pkl.gz` writes its float32 dtype once and refers to the memoized
    /// object for the validation and test images: the reference must see the built dtype.
    #[test]
    fn a_memoized_dtype_used_again_is_the_built_one() {
        let x = f32_bytes(&[0.5, 0.25]);
        let y: Vec<u8> = 3i64.to_le_bytes().to_vec();
        let mut w = Writer::new();
        for _ in 0..2 {
            w.array("f4", &[2], &x);
            w.array("i8", &[1], &y);
            w.tuple2();
        }
        w.tuple2();
        let buf = w.stop();
        assert!(buf.iter().filter(|&&b| b == b'h').count() >= 2);
        let v = parse(&buf).unwrap();
        let sets = v.tuple(2, "top").unwrap();
        for set in sets {
            let pair = set.tuple(2, "set").unwrap();
            let a = ndarray(&pair[0], &buf).unwrap();
            assert_eq!((a.descr.as_str(), a.shape.clone()), ("<f4", vec![2]));
            assert_eq!(&buf[a.data], &x[..]);
            let b = ndarray(&pair[1], &buf).unwrap();
            assert_eq!(b.descr, "<i8");
        }
    }

    #[test]
    fn memo_entries_are_shared_and_plain_values_parse() {
        // (None, True, False, 70000, -3, (), b'ab', b'ab') with a BINPUT/BINGET pair.
        let mut buf = vec![0x80, 2, b'(', b'N', 0x88, 0x89, b'J'];
        buf.extend(70000i32.to_le_bytes());
        buf.push(b'J');
        buf.extend((-3i32).to_le_bytes());
        buf.extend([b')', b'U', 2, b'a', b'b', b'q', 0, b'h', 0, b't', b'.']);
        let v = parse(&buf).unwrap();
        let items = v.tuple(8, "top").unwrap();
        assert_eq!(items[0], Value::None);
        assert_eq!(items[1..3], [Value::Bool(true), Value::Bool(false)]);
        assert_eq!(items[3..5], [Value::Int(70000), Value::Int(-3)]);
        assert_eq!(items[5], Value::Tuple(vec![]));
        assert_eq!(items[6], Value::Bytes(19..21));
        assert_eq!(items[6], items[7]);
    }

    #[test]
    fn bad_pickles_are_refused_with_the_offset() {
        let mut w = Writer::new();
        w.array("f4", &[2], &f32_bytes(&[1.0, 2.0]));
        let good = w.stop();
        // Cut anywhere: a clear error, never a panic.
        for cut in 0..good.len() {
            let e = parse(&good[..cut]).unwrap_err();
            assert!(
                matches!(
                    e,
                    PickleError::Truncated { .. }
                        | PickleError::NoStop
                        | PickleError::Malformed { .. }
                ),
                "{cut}: {e}"
            );
        }
        // A Python 3 pickle of bytes (BINUNICODE, opcode `X`) is refused by name.
        let e = parse(&[0x80, 2, b'X', 1, 0, 0, 0, b'b', b'.']).unwrap_err();
        assert_eq!(
            e,
            PickleError::Unsupported {
                byte: b'X',
                shown: "`X`".into(),
                offset: 2
            }
        );
        assert!(e.to_string().contains("at byte 2"), "{e}");
        let e = parse(&[0x80, 2, b'h', 3, b'.']).unwrap_err();
        assert!(e.to_string().contains("memo entry 3 is not set"), "{e}");
        let e = parse(&[0x80, 2, b'K', 1, 0x86, b'.']).unwrap_err();
        assert!(e.to_string().contains("TUPLE2 needs 2 values"), "{e}");
        let e = parse(&[0x80, 2, b'K', 1, b'K', 2, b'.']).unwrap_err();
        assert!(e.to_string().contains("values left on the stack"), "{e}");
    }

    #[test]
    fn arrays_whose_size_or_dtype_is_wrong_are_refused() {
        let mut w = Writer::new();
        w.array("f4", &[3], &f32_bytes(&[1.0, 2.0]));
        let buf = w.stop();
        let e = ndarray(&parse(&buf).unwrap(), &buf).unwrap_err();
        assert!(e.to_string().contains("needs 12 bytes, but holds 8"), "{e}");
        let mut w = Writer::new();
        w.array("c16", &[1], &[0; 16]);
        let buf = w.stop();
        let e = ndarray(&parse(&buf).unwrap(), &buf).unwrap_err();
        assert!(e.to_string().contains("type code `c16`"), "{e}");
        let e = ndarray(&Value::Int(3), &[]).unwrap_err();
        assert!(e.to_string().contains("not a numpy array"), "{e}");
    }
}

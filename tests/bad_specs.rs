//! Golden tests of the checker's diagnostics: every `specs/bad/*.diff` holds one mistake and
//! `specs/bad/<name>.stderr` holds exactly what `difc check` prints for it (no colour, width
//! 100) followed by `[exit N]`.
//!
//! `DIFC_BLESS=1 cargo test --release --test bad_specs` rewrites the goldens; review the diff
//! with git before committing them.
//!
//! A spec may carry `// --set block.key=value` lines: those overrides are passed to the
//! checker as if given on the command line (the only way to reach the `difc::cli::*` codes).

use difc::check::{FsLoader, Loader};
use difc::diag::RenderOptions;
use difc::driver::{self, Format};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const BAD_DIR: &str = "specs/bad";
/// Specs that are valid but draw warnings (exit 0), golden-tested the same way.
const WARN_DIR: &str = "specs/warn";

/// The generated case: brackets nested this deep must give `difc::syntax::too_deep`, not a
/// stack overflow. It is built in memory (a 200 kB file is not worth committing).
const DEEP_NAME: &str = "specs/bad/deeply_nested_brackets.diff";
const DEEP_LEVELS: usize = 100_000;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `specs/bad/*.diff` and `specs/warn/*.diff`, sorted, as paths relative to the crate root.
fn cases() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for rel in [BAD_DIR, WARN_DIR] {
        let dir = root().join(rel);
        out.extend(
            std::fs::read_dir(&dir)
                .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "diff"))
                .filter_map(|p| p.file_name().map(|n| Path::new(rel).join(n))),
        );
    }
    out.sort();
    out
}

/// The `// --set ...` overrides written in a spec.
fn overrides_in(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("// --set "))
        .map(|s| s.trim().to_string())
        .collect()
}

/// The 10⁵-deep spec: ten brackets per line so that the rendered excerpt stays short.
fn deep_spec() -> String {
    let mut s = String::from(
        "// brackets nested 100000 deep: rejected with a clear error, no stack overflow\n\
         process deep() {\n    time = [0, 1]\n    diffusion(t) =\n",
    );
    for _ in 0..DEEP_LEVELS / 10 {
        s.push_str("((((((((((\n");
    }
    s.push('1');
    for _ in 0..DEEP_LEVELS / 10 {
        s.push_str("))))))))))\n");
    }
    s.push_str("}\n");
    s
}

/// The generated data file: a `.npy` of `HUGE_SHAPE` float32 sets, larger than `difc check`
/// reads (it must warn that it judged the file by its header). Only its header exists: the
/// loader reports the length the shape implies.
const HUGE_NAME: &str = "specs/warn/data/huge_sets.npy";
const HUGE_SHAPE: [usize; 3] = [10_000_000, 16, 2];

/// The version-1 header of a little-endian float32 C-order `.npy` of `HUGE_SHAPE`.
fn huge_header() -> Vec<u8> {
    let [n, k, d] = HUGE_SHAPE;
    let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({n}, {k}, {d}), }}");
    let total = (10 + dict.len() + 1).div_ceil(64) * 64;
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&((total - 10) as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out.resize(total - 1, b' ');
    out.push(b'\n');
    out
}

/// Serves the generated spec and data file from memory and everything else from disk.
struct WithDeep;

impl Loader for WithDeep {
    fn read(&self, path: &Path) -> Result<Vec<u8>, String> {
        if path == Path::new(DEEP_NAME) {
            Ok(deep_spec().into_bytes())
        } else if path == Path::new(HUGE_NAME) {
            Err("generated in memory by the test: only its header can be read".into())
        } else {
            FsLoader.read(path)
        }
    }

    fn read_head(&self, path: &Path, max: usize) -> Result<(Vec<u8>, u64), String> {
        if path == Path::new(HUGE_NAME) {
            let head = huge_header();
            let data = HUGE_SHAPE.iter().product::<usize>() * 4;
            let len = (head.len() + data) as u64;
            Ok((head.into_iter().take(max).collect(), len))
        } else {
            FsLoader.read_head(path, max)
        }
    }
}

/// What `difc check <path>` prints, plus the exit status line.
fn render(path: &Path, overrides: &[String]) -> String {
    let session = driver::check_paths(&[path.to_path_buf()], overrides, &WithDeep)
        .unwrap_or_else(|e| panic!("{}: {}", path.display(), e.0));
    let opts = RenderOptions {
        color: false,
        width: 100,
    };
    let mut out = driver::render(&session, Format::Human, opts);
    let exit = i32::from(session.checked.diagnostics.has_errors());
    out.push_str(&format!("[exit {exit}]\n"));
    out
}

fn golden_of(path: &Path) -> PathBuf {
    root().join(path.with_extension("stderr"))
}

/// Compares (or, with `DIFC_BLESS=1`, rewrites) one golden; returns a report on mismatch.
fn compare(path: &Path, actual: &str) -> Option<String> {
    let golden = golden_of(path);
    if std::env::var_os("DIFC_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(&golden, actual)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", golden.display()));
        return None;
    }
    let expected = match std::fs::read_to_string(&golden) {
        Ok(s) => s,
        Err(_) => {
            return Some(format!(
                "{}: no golden file {}; create it with DIFC_BLESS=1\n--- actual ---\n{actual}",
                path.display(),
                golden.display()
            ))
        }
    };
    (expected != actual).then(|| {
        format!(
            "{}: output differs from {} (- expected, + actual):\n{}",
            path.display(),
            golden.display(),
            line_diff(&expected, actual)
        )
    })
}

/// A minimal line diff (longest common subsequence), enough to see what changed.
fn line_diff(expected: &str, actual: &str) -> String {
    let a: Vec<&str> = expected.lines().collect();
    let b: Vec<&str> = actual.lines().collect();
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, String::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            out.push_str(&format!("  {}\n", a[i]));
            i += 1;
            j += 1;
        } else if j < b.len() && (i == a.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
            out.push_str(&format!("+ {}\n", b[j]));
            j += 1;
        } else {
            out.push_str(&format!("- {}\n", a[i]));
            i += 1;
        }
    }
    out
}

fn set_root_dir() {
    // Paths are shown relative (`specs/bad/x.diff`), as a user running from the repo sees them.
    std::env::set_current_dir(root()).unwrap_or_else(|e| panic!("cannot enter crate root: {e}"));
}

#[test]
fn bad_specs_match_their_goldens() {
    set_root_dir();
    let mut failures = Vec::new();
    let mut all = cases();
    all.push(PathBuf::from(DEEP_NAME));
    for path in &all {
        let text = std::fs::read(path).unwrap_or_default();
        let text = String::from_utf8_lossy(&text);
        let overrides = overrides_in(&text);
        let actual = render(path, &overrides);
        if let Some(report) = compare(path, &actual) {
            failures.push(report);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} bad specs differ from their goldens \
         (DIFC_BLESS=1 cargo test --release --test bad_specs rewrites them):\n\n{}",
        failures.len(),
        all.len(),
        failures.join("\n")
    );
}

#[test]
fn every_bad_spec_says_what_it_tests_and_fails() {
    set_root_dir();
    for path in cases() {
        let bytes = std::fs::read(&path).unwrap_or_default();
        assert!(
            bytes.is_empty() || bytes.starts_with(b"//"),
            "{}: the first line must be a `//` comment saying what the spec tests",
            path.display()
        );
        let golden = std::fs::read_to_string(golden_of(&path)).unwrap_or_default();
        if path.starts_with(BAD_DIR) {
            assert!(golden.contains("[exit 1]"), "{}: every spec in specs/bad must fail (exit 1); warnings-only cases go to specs/warn", path.display());
        } else {
            assert!(
                golden.contains("[exit 0]") && golden.contains("warning"),
                "{}: a spec in specs/warn must pass with a warning",
                path.display()
            );
        }
    }
}

#[test]
fn no_golden_without_its_spec() {
    set_root_dir();
    let specs: BTreeSet<PathBuf> = cases()
        .into_iter()
        .chain(std::iter::once(PathBuf::from(DEEP_NAME)))
        .map(|p| p.with_extension("stderr"))
        .collect();
    for dir in [BAD_DIR, WARN_DIR] {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = Path::new(dir).join(entry.file_name());
            if p.extension().is_some_and(|x| x == "stderr") {
                assert!(specs.contains(&p), "{}: golden without a spec", p.display());
            }
        }
    }
}

/// Every diagnostic code the front end can emit, found by scanning its sources.
/// Compiler codes that guard inputs the checker already refuses, so no spec reaches them:
/// `marginal` (an empty or non-finite time range, coefficients that depend on x or are not
/// finite — all `difc::check` errors first; a table that does not converge needs a
/// pathological coefficient) and `tabulated_score` (the JDL table of parameters the checker has
/// validated).
const UNREACHABLE_FROM_A_SPEC: &[&str] =
    &["difc::compile::marginal", "difc::compile::tabulated_score"];

fn emitted_codes() -> BTreeSet<String> {
    let mut files = vec![
        root().join("src/check/error.rs"),
        root().join("src/check/load.rs"),
    ];
    for dir in ["src/syntax", "src/check", "src/compile"] {
        for entry in std::fs::read_dir(root().join(dir))
            .into_iter()
            .flatten()
            .flatten()
        {
            files.push(entry.path());
        }
    }
    let mut codes = BTreeSet::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        let mut rest = text.as_str();
        while let Some(i) = rest.find("\"difc::") {
            let code: String = rest[i + 1..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            codes.insert(code);
            rest = &rest[i + 1..];
        }
    }
    codes
}

#[test]
fn every_diagnostic_code_has_a_bad_spec() {
    set_root_dir();
    let mut goldens = String::new();
    for path in cases()
        .into_iter()
        .chain(std::iter::once(PathBuf::from(DEEP_NAME)))
    {
        goldens.push_str(&std::fs::read_to_string(golden_of(&path)).unwrap_or_default());
    }
    let codes = emitted_codes();
    assert!(
        codes.len() > 30,
        "found only {} codes: {codes:?}",
        codes.len()
    );
    let missing: Vec<&String> = codes
        .iter()
        .filter(|c| !UNREACHABLE_FROM_A_SPEC.contains(&c.as_str()))
        .filter(|c| !goldens.contains(&format!("{c}\n")) && !goldens.contains(&format!("{c} ")))
        .collect();
    assert!(
        missing.is_empty(),
        "diagnostic codes without a bad spec in specs/bad/ (add one per code): {missing:?}"
    );
}

#[test]
fn deep_spec_is_really_deep() {
    let text = deep_spec();
    let opening_lines = text.lines().filter(|l| *l == "((((((((((").count();
    assert_eq!(opening_lines * 10, DEEP_LEVELS);
}

#[test]
fn every_diagnostic_code_is_documented() {
    let docs = std::fs::read_to_string(root().join("docs/diagnostics.md"))
        .unwrap_or_else(|e| panic!("cannot read docs/diagnostics.md: {e}"));
    let missing: Vec<String> = emitted_codes()
        .into_iter()
        .filter(|c| !docs.contains(&format!("`{c}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "codes missing from docs/diagnostics.md: {missing:?}"
    );
}

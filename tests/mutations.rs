//! Robustness of the front end: random mutations of the stdlib and the example specs
//! (deleted, inserted, duplicated and swapped bytes or tokens, truncation, deep brackets,
//! invalid UTF-8) must never panic or hang the checker, and every diagnostic must point
//! inside its file.

use difc::check::Loader;
use difc::diag::{Diagnostic, RenderOptions, SourceMap};
use difc::driver::{self, Format};
use proptest::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Longest a single check may take before the test calls it a hang.
const TIME_LIMIT: Duration = Duration::from_secs(10);
/// The path the mutated spec is served under.
const MUTANT: &str = "mutant/spec.diff";

/// The seed corpus: every stdlib file and example spec.
fn corpus() -> Vec<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in ["stdlib", "specs"] {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(root.join(dir))
            .unwrap_or_else(|e| panic!("cannot list {dir}: {e}"))
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "diff"))
            .collect();
        paths.sort();
        for p in paths {
            files.push(std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())));
        }
    }
    assert!(files.len() >= 10, "corpus too small: {}", files.len());
    files
}

/// Tokens worth inserting: keywords, punctuation, operators and troublemakers.
const TOKENS: &[&str] = &[
    "process",
    "experiment",
    "use",
    "transform",
    "time",
    "state",
    "drift",
    "diffusion",
    "mean",
    "std",
    "jumps",
    "delete",
    "rate",
    "amplitude",
    "x",
    "t",
    "n",
    "pi",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    ",",
    ";",
    "=",
    "~",
    "+",
    "-",
    "*",
    "/",
    "^",
    "**",
    ".",
    "\"",
    "//",
    "/*",
    "*/",
    "\n",
    "0",
    "1e400",
    "-1e308",
    "0/0",
    "1e-320",
    "sqrt(-1)",
    "log(0)",
    "stdlib.",
    "\u{0}",
    "×",
    "é",
    "learned(mlp())",
    "set(max = 0, of = vec(2))",
    "vec(0)",
    "step(n - 1)",
    "laplace(var = 0)",
];

#[derive(Clone, Debug)]
enum Mutation {
    Delete {
        at: usize,
        len: usize,
    },
    InsertBytes {
        at: usize,
        bytes: Vec<u8>,
    },
    InsertToken {
        at: usize,
        token: usize,
    },
    Duplicate {
        at: usize,
        len: usize,
        to: usize,
    },
    Swap {
        a: usize,
        b: usize,
        len: usize,
    },
    Truncate {
        at: usize,
    },
    DeepBrackets {
        at: usize,
        depth: usize,
        kind: usize,
    },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let pos = any::<usize>();
    prop_oneof![
        (pos, 1..40usize).prop_map(|(at, len)| Mutation::Delete { at, len }),
        (pos, proptest::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(at, bytes)| Mutation::InsertBytes { at, bytes }),
        (pos, 0..TOKENS.len()).prop_map(|(at, token)| Mutation::InsertToken { at, token }),
        (pos, 1..80usize, any::<usize>()).prop_map(|(at, len, to)| Mutation::Duplicate {
            at,
            len,
            to
        }),
        (pos, any::<usize>(), 1..20usize).prop_map(|(a, b, len)| Mutation::Swap { a, b, len }),
        pos.prop_map(|at| Mutation::Truncate { at }),
        (pos, 1..3000usize, 0..3usize).prop_map(|(at, depth, kind)| Mutation::DeepBrackets {
            at,
            depth,
            kind
        }),
    ]
}

fn apply(text: &mut Vec<u8>, m: &Mutation) {
    let n = text.len().max(1);
    match m {
        Mutation::Delete { at, len } => {
            let start = at % n;
            let end = (start + len).min(text.len());
            if start < end {
                text.drain(start..end);
            }
        }
        Mutation::InsertBytes { at, bytes } => {
            let at = (at % (text.len() + 1)).min(text.len());
            text.splice(at..at, bytes.iter().copied());
        }
        Mutation::InsertToken { at, token } => {
            let at = (at % (text.len() + 1)).min(text.len());
            text.splice(at..at, TOKENS[*token].bytes());
        }
        Mutation::Duplicate { at, len, to } => {
            let start = at % n;
            let end = (start + len).min(text.len());
            let piece: Vec<u8> = text.get(start..end).unwrap_or(&[]).to_vec();
            let to = to % (text.len() + 1);
            text.splice(to..to, piece);
        }
        Mutation::Swap { a, b, len } => {
            let (a, b) = (a % n, b % n);
            let (lo, hi) = (a.min(b), a.max(b));
            let len = (*len).min(hi - lo).min(text.len().saturating_sub(hi));
            for i in 0..len {
                text.swap(lo + i, hi + i);
            }
        }
        Mutation::Truncate { at } => text.truncate(at % n),
        Mutation::DeepBrackets { at, depth, kind } => {
            let at = (at % (text.len() + 1)).min(text.len());
            let (open, close) = [("(", ")"), ("[", "]"), ("-(", ")")][*kind];
            let mut s = open.repeat(*depth);
            s.push('t');
            s.push_str(&close.repeat(*depth));
            text.splice(at..at, s.bytes());
        }
    }
}

/// Serves the mutant from memory; other files do not exist.
struct Mem(Vec<u8>);

impl Loader for Mem {
    fn read(&self, path: &Path) -> Result<Vec<u8>, String> {
        if path == Path::new(MUTANT) {
            Ok(self.0.clone())
        } else {
            Err("not found".into())
        }
    }
}

fn span_problem(d: &Diagnostic, sources: &SourceMap) -> Option<String> {
    let spans =
        std::iter::once((d.file, d.span)).chain(d.extra_labels.iter().map(|l| (l.file, l.span)));
    for (file, span) in spans {
        let text = &sources.get(file).text;
        let (s, e) = (span.start as usize, span.end as usize);
        if s > e || e > text.len() || !text.is_char_boundary(s) || !text.is_char_boundary(e) {
            return Some(format!(
                "{}: span {s}..{e} outside `{}` ({} bytes)",
                d.code,
                sources.get(file).name,
                text.len()
            ));
        }
    }
    None
}

/// Checks and renders one mutant in a thread; `Err` on a panic, a hang or a bad span.
fn check_mutant(bytes: Vec<u8>, overrides: Vec<String>) -> Result<(), String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let result = std::panic::catch_unwind(move || {
            let session = driver::check_paths(&[PathBuf::from(MUTANT)], &overrides, &Mem(bytes))
                .map_err(|e| format!("IO failure on an in-memory file: {}", e.0))?;
            for d in &session.checked.diagnostics.items {
                if let Some(p) = span_problem(d, &session.sources) {
                    return Err(p);
                }
            }
            let opts = RenderOptions {
                color: false,
                width: 100,
            };
            driver::render(&session, Format::Human, opts);
            driver::render(&session, Format::Json, opts);
            Ok(())
        });
        let _ = tx.send(result.unwrap_or_else(|_| Err("the checker panicked".into())));
    });
    let start = Instant::now();
    match rx.recv_timeout(TIME_LIMIT) {
        Ok(r) => r,
        Err(_) => Err(format!("no answer after {:?}", start.elapsed())),
    }
}

fn cases() -> u32 {
    std::env::var("DIFC_MUTATION_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300)
}

proptest! {
    // 300 cases keep the test to a few seconds; DIFC_MUTATION_CASES=20000 digs deeper.
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn mutated_specs_never_crash(
        file in any::<prop::sample::Index>(),
        mutations in proptest::collection::vec(mutation(), 1..6),
    ) {
        let corpus = corpus();
        let mut text = corpus[file.index(corpus.len())].clone();
        for m in &mutations {
            apply(&mut text, m);
        }
        let shown = String::from_utf8_lossy(&text).into_owned();
        if let Err(e) = check_mutant(text, Vec::new()) {
            prop_assert!(false, "{e}\n--- mutant ---\n{shown}");
        }
    }

    #[test]
    fn random_overrides_never_crash(
        key in "(train|sample|data|process|network|loss|metrics|eval|x)(\\.[a-z_]{1,8})?",
        value in "[-+*/^()\\[\\]a-z0-9._, =\"]{0,24}",
    ) {
        let spec = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("specs/swiss_roll_vp.diff"))
            .unwrap_or_default();
        let o = format!("{key}={value}");
        if let Err(e) = check_mutant(spec, vec![o.clone()]) {
            prop_assert!(false, "{e}\n--- override --- {o}");
        }
    }
}

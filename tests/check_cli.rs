//! `difc check` as a user runs it: the built binary, exit codes, human and JSON output.

use std::path::Path;
use std::process::{Command, Output};

fn difc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_difc"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("NO_COLOR", "1")
        .output()
        .unwrap_or_else(|e| panic!("cannot run difc: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Every `.diff` file directly in `dir` (relative to the crate root), sorted.
fn diff_files(dir: &str) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out: Vec<String> = std::fs::read_dir(root.join(dir))
        .unwrap_or_else(|e| panic!("cannot list {dir}: {e}"))
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.ends_with(".diff").then(|| format!("{dir}/{name}"))
        })
        .collect();
    out.sort();
    out
}

#[test]
fn stdlib_and_specs_check_clean() {
    let mut files = diff_files("stdlib");
    files.extend(diff_files("specs"));
    assert!(
        files.len() >= 10,
        "expected the stdlib and specs, found {files:?}"
    );
    let args: Vec<&str> = std::iter::once("check")
        .chain(files.iter().map(String::as_str))
        .collect();
    let out = difc(&args);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", text(&out.stderr));
    // Warnings (e.g. "not supported yet" from the compiler) are allowed, errors are not.
    assert!(
        !text(&out.stderr).contains("  × "),
        "unexpected errors:\n{}",
        text(&out.stderr)
    );
}

#[test]
fn a_bad_spec_exits_1_with_its_location() {
    let out = difc(&["check", "specs/bad/negative_jump_rate.diff"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("specs/bad/negative_jump_rate.diff:6:19"),
        "no file:line:column in:\n{err}"
    );
    assert!(err.contains("difc::check::negative_rate"), "{err}");
    assert!(
        !err.contains('\u{1b}'),
        "NO_COLOR output has escape codes:\n{err}"
    );
}

#[test]
fn warnings_alone_exit_0() {
    let out = difc(&["check", "specs/warn/prior_not_reached.diff"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("difc::check::prior_not_reached"));
}

#[test]
fn a_missing_file_exits_2() {
    let out = difc(&["check", "specs/bad/there_is_no_such_file.diff"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("there_is_no_such_file.diff"), "{err}");
}

#[test]
fn json_prints_one_object_per_diagnostic() {
    let out = difc(&[
        "check",
        "--format",
        "json",
        "specs/bad/several_experiment_errors.diff",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 5, "one line per diagnostic:\n{stdout}");
    let mut codes = Vec::new();
    for line in lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert_eq!(v["file"], "specs/bad/several_experiment_errors.diff");
        assert!(v["line"].as_u64().is_some_and(|l| l >= 1), "{line}");
        assert!(v["column"].as_u64().is_some_and(|c| c >= 1), "{line}");
        assert_eq!(v["severity"], "error");
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()));
        codes.push(v["code"].as_str().unwrap_or("").to_string());
    }
    assert_eq!(
        codes,
        [
            "difc::check::unknown_generator",
            "difc::check::unknown_argument",
            "difc::check::out_of_range",
            "difc::check::unknown_setting",
            "difc::check::unknown_choice",
        ]
    );
    // The first diagnostic: `moonz` on line 5, column 15.
    let first: serde_json::Value =
        serde_json::from_str(stdout.lines().next().unwrap_or("{}")).unwrap_or_default();
    assert_eq!(
        (first["line"].as_u64(), first["column"].as_u64()),
        (Some(5), Some(15))
    );
}

#[test]
fn json_of_a_clean_spec_is_empty() {
    let out = difc(&["check", "--format", "json", "specs/swiss_roll_vp.diff"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).trim().is_empty(), "{}", text(&out.stdout));
}

#[test]
fn help_describes_check() {
    let out = difc(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("check"), "{}", text(&out.stdout));
    let out = difc(&["check", "--help"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        text(&out.stdout).contains("--format"),
        "{}",
        text(&out.stdout)
    );
}

/// `a` and `c` are clean VP experiments; `b` is a jump process (no `beta_max` parameter) that
/// cannot be sampled with its solver: a compile error of its own.
const SWEEP: &str = "use stdlib.vp\nuse stdlib.jump_laplace\n\
experiment a {\n  data = swiss_roll(n = 2000)\n  process = vp()\n}\n\
experiment b {\n  data = swiss_roll(n = 2000)\n  process = jump_laplace()\n  sample { solver = euler_maruyama }\n}\n\
experiment c {\n  data = swiss_roll(n = 2000)\n  process = vp(beta_max = 10)\n}\n";

fn sweep_file() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("sweep.diff");
    std::fs::write(&path, SWEEP).expect("write spec");
    let path = path.to_string_lossy().into_owned();
    (dir, path)
}

#[test]
fn overrides_and_errors_stay_in_their_experiment() {
    let (_dir, spec) = sweep_file();
    // The whole file: `b`'s error fails it.
    let out = difc(&["check", &spec]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("experiment `b`"));
    // `--experiment a`: `b`'s error is not `a`'s, and `--set process.beta_max` reaches `a`
    // alone (`jump_laplace` has no such parameter).
    let out = difc(&[
        "check",
        &spec,
        "--experiment",
        "a",
        "--set",
        "process.beta_max=5",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        !text(&out.stderr).contains("experiment `b`"),
        "{}",
        text(&out.stderr)
    );
    // An override meant for `a` that is bad for it is reported.
    let out = difc(&[
        "check",
        &spec,
        "--experiment",
        "a",
        "--set",
        "process.beta_max=-5",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    // Without `--experiment`, `process.beta_max` goes to the experiments that have it: no
    // "unknown argument" for `b`, and only `b`'s own error remains.
    let out = difc(&["check", &spec, "--set", "process.beta_max=5"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(!err.contains("unknown_argument"), "{err}");
    assert!(err.contains("1 error"), "{err}");
    // A key no experiment's process has is still an error.
    let out = difc(&["check", &spec, "--set", "process.betamax=5"]);
    assert!(
        text(&out.stderr).contains("unknown_argument"),
        "{}",
        text(&out.stderr)
    );
    // explain: `a` alone works; the whole file explains `a` and `c` and names `b`.
    let out = difc(&[
        "explain",
        &spec,
        "--experiment",
        "a",
        "--set",
        "process.beta_max=5",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("experiment a"));
    assert!(
        text(&out.stdout).contains("beta_max = 5"),
        "{}",
        text(&out.stdout)
    );
    let out = difc(&["explain", &spec]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("experiment a") && text(&out.stdout).contains("experiment c")
    );
    assert!(
        text(&out.stderr).contains("not explained"),
        "{}",
        text(&out.stderr)
    );
    // An unknown experiment name is a usage error with the names it could be.
    let out = difc(&["check", &spec, "--experiment", "z"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("a, b, c"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn data_files_are_judged_by_their_header_and_explain_shows_their_dimension() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let spec = |state: &str, data: &str| {
        let path = d.join("spec.diff");
        std::fs::write(
            &path,
            format!("process p() {{\n  time = [0, 1]\n  {state}\n  drift(x, t) = -0.5 * (0.1 + 19.9 * t) * x\n  diffusion(t) = sqrt(0.1 + 19.9 * t)\n}}\nexperiment e {{\n  data = npy(path = \"{data}\")\n  process = p()\n}}\n"),
        )
        .expect("write spec");
        path.to_string_lossy().into_owned()
    };
    difc::run::npy::write_npy_f32(d.join("five.npy"), &[50, 5], &[0.5; 250]).expect("write");
    difc::run::npy::write_npy_f32(d.join("cube.npy"), &[50, 4, 3], &[0.5; 600]).expect("write");
    difc::run::npy::write_npy_f32(d.join("line.npy"), &[50], &[0.5; 50]).expect("write");
    let out = difc(&["explain", &spec("", "five.npy")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("data 5-D"),
        "{}",
        text(&out.stdout)
    );
    let out = difc(&["explain", &spec("", "line.npy")]);
    assert!(
        text(&out.stdout).contains("data 1-D"),
        "{}",
        text(&out.stdout)
    );
    for (state, data, needle) in [
        ("", "missing.npy", "cannot read data file"),
        ("state = vec(2)", "five.npy", "has 5 columns"),
        ("", "cube.npy", "shape (50, 4, 3)"),
        ("state = vec(12)", "cube.npy", "not flattened"),
    ] {
        let out = difc(&["check", &spec(state, data)]);
        assert_eq!(out.status.code(), Some(1), "{data}: {}", text(&out.stderr));
        assert!(
            text(&out.stderr).contains(needle),
            "{data}: {}",
            text(&out.stderr)
        );
    }
    // A set state takes (n, N, d) sets.
    let out = difc(&[
        "check",
        &spec("state = set(max = 4, of = vec(3))", "cube.npy"),
    ]);
    assert!(
        !text(&out.stderr).contains("data_shape"),
        "{}",
        text(&out.stderr)
    );
}

/// A set state with named component parts and a zero-centre-of-mass constraint (QM9's
/// shape: 3 coordinates and 6 features per atom, up to 29 atoms) checks, and `explain` shows
/// the parts and the constraint. The data file is read and its sets counted; one padded beyond
/// `max` is refused when a set really is too large and accepted when none is.
#[test]
fn a_set_state_with_com_checks_and_explain_shows_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let (n, max, c) = (20usize, 29usize, 9usize);
    // Set i has 2 + i atoms; absent atoms are all-NaN rows.
    let mut values = vec![f32::NAN; n * max * c];
    for i in 0..n {
        for j in 0..2 + i {
            for k in 0..c {
                values[(i * max + j) * c + k] = (i + j + k) as f32 * 0.1;
            }
        }
    }
    difc::run::npy::write_npy_f32(d.join("molecules.npy"), &[n, max, c], &values).expect("write");
    let spec = |max: usize| {
        let path = d.join(format!("molecules_{max}.diff"));
        std::fs::write(
            &path,
            format!("// sets of atoms: 3 coordinates centred on the set's mean, 6 features\nprocess atoms() {{\n  time = [0, 1]\n  state = set(max = {max}, of = vec(position = 3, features = 6), com = position)\n  beta(t) = 0.1 + 19.9 * t\n  drift(x, t) = -0.5 * beta(t) * x\n  diffusion(t) = sqrt(beta(t))\n  delete {{\n    rate(t, n) = step(n - 1) * (10 * step(t - 0.1) + 0.1)\n    kernel = uniform\n  }}\n}}\nexperiment molecules {{\n  data = npy(path = \"molecules.npy\")\n  process = atoms()\n  network = set_transformer(width = 64, depth = 2, heads = 4)\n  sample {{ solver = euler_maruyama }}\n}}\n"),
        )
        .expect("write spec");
        path.to_string_lossy().into_owned()
    };
    let out = difc(&["check", &spec(29)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(!text(&out.stderr).contains("  × "), "{}", text(&out.stderr));
    let out = difc(&["explain", &spec(29)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    for needle in [
        "set(max = 29, of = vec(position = 3, features = 6), com = position)",
        "position = x[0..3], features = x[3..9]",
        "zero centre of mass: Σ_j x_j[0..3] = 0",
    ] {
        assert!(shown.contains(needle), "{needle}:\n{shown}");
    }
    // The file is padded to 29 atoms: with max = 21 every set fits (the largest has 21), with
    // max = 20 the last one does not.
    let out = difc(&["check", &spec(21)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = difc(&["check", &spec(20)]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("difc::check::set_too_large") && err.contains("1 of the 20 sets"),
        "{err}"
    );
}

/// `difc explain spec | head -1`: a reader that went away ends difc quietly (as SIGPIPE ends
/// other Unix tools), without a panic message.
#[cfg(unix)]
#[test]
fn a_closed_stdout_ends_quietly() {
    for args in [
        &["explain", "specs/swiss_roll_vp.diff"][..],
        &[
            "check",
            "--format",
            "json",
            "specs/bad/several_experiment_errors.diff",
        ][..],
        &["--help"][..],
    ] {
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let out = Command::new(env!("CARGO_BIN_EXE_difc"))
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdout(writer)
            .output()
            .expect("difc runs");
        let err = text(&out.stderr);
        assert!(
            !err.contains("panicked") && !err.contains("Broken pipe"),
            "{args:?}: {err}"
        );
        assert_ne!(out.status.code(), Some(101), "{args:?}: {err}");
    }
}

/// A constant-coefficient OU is valid for any horizon: its marginal has a closed form, so a
/// long `time` range is not refused as "coefficients change too abruptly".
#[test]
fn a_long_horizon_ou_checks_clean() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("long_ou.diff");
    std::fs::write(
        &spec,
        "process ou(theta = 1.0) {\n    time = [0, 30000]\n    drift(x, t) = -theta * x\n    \
         diffusion(t) = sqrt(2 * theta)\n}\n\nexperiment e {\n    data    = moons(n = 2000)\n    \
         process = ou()\n    network = mlp(width = 32, depth = 2)\n    train { steps = 3 }\n}\n",
    )
    .unwrap();
    let out = difc(&["check", spec.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

/// A block comment may hold lines that look like items (`process q`) and operators.
#[test]
fn block_comments_in_a_body_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("comments.diff");
    std::fs::write(
        &spec,
        "\u{FEFF}process p {\n    time = [0, 1]\n    /*\nprocess q\n    */\n    /* drift(x, t) = -x */\n    \
         drift(x, t) = -10 * x\n    diffusion(t) = sqrt(20)\n}\n",
    )
    .unwrap();
    let out = difc(&["check", spec.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

/// `difc explain` on every stdlib and specs file, and on specs that derive constants by
/// arithmetic or train a score: signs folded (no `− −ε`, `+ -0.5`), numbers without rounding
/// noise (`0.05`, not `0.05000000000000001`), and exponential schedules in closed form.
#[test]
fn explain_prints_folded_signs_and_round_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let extra = [
        (
            "score_ve.diff",
            "use stdlib.ve\nexperiment e {\n    data = moons(n = 2000)\n    process = ve()\n    \
             loss { target = score }\n}\n",
        ),
        (
            "weak_ou.diff",
            "process weak() {\n    time = [0, 1]\n    drift(x, t) = -0.1 * x\n    \
             diffusion(t) = 0.1\n}\n",
        ),
        (
            "exp_rate.diff",
            "process e() {\n    time = [0, 1]\n    drift(x, t) = -0.5 * 0.1 * exp(5.3 * t) * x\n    \
             diffusion(t) = sqrt(0.1 * exp(5.3 * t))\n}\n",
        ),
    ];
    let mut files = diff_files("stdlib");
    files.extend(diff_files("specs"));
    for (name, text) in extra {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        files.push(path.to_string_lossy().into_owned());
    }
    for f in &files {
        let out = difc(&["explain", f]);
        let shown = text(&out.stdout);
        for bad in [
            "− −", "- -", "+ -", "+ −", "− -", "- −", "0000000", "999999",
        ] {
            assert!(!shown.contains(bad), "{f}: `{bad}` in\n{shown}");
        }
    }
    for f in ["specs/geometric_vp.diff", &files[files.len() - 1]] {
        let shown = text(&difc(&["explain", f]).stdout);
        assert!(
            shown.contains("[closed form]") && !shown.contains("no closed form"),
            "{f}:\n{shown}"
        );
    }
    let score = text(&difc(&["explain", &files[files.len() - 3]]).stdout);
    assert!(score.contains("‖net(x_t, t) + ε / s_t‖²"), "{score}");
    let weak = text(&difc(&["explain", &files[files.len() - 2]]).stdout);
    assert!(
        weak.contains("s_t = sqrt(-0.05 * expm1(-0.2 * t))"),
        "{weak}"
    );
}

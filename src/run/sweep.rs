//! `difc run SPEC --sweep KEY=V1,V2 …`: the product of the swept values, one run folder per
//! combination under `<out>/sweep/`, and the summary files `sweep.csv` (one row per run) and
//! `sweep.md` (each metric's mean ± standard deviation over the swept seeds, one row per
//! combination of the other swept keys).
//!
//! A killed sweep resumes where it stopped: a folder with `metrics.yaml` is finished and is
//! skipped, a folder with only `config.yaml` is resumed from its checkpoint, and the summary is
//! rebuilt from every finished folder.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Why a sweep cannot be set up or summarised.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SweepError {
    #[error("`--sweep {0}`: expected KEY=V1,V2,… (for example `--sweep train.seed=0,1,2`)")]
    Syntax(String),
    #[error("`--sweep {key}` has an empty value in `{values}`")]
    EmptyValue { key: String, values: String },
    #[error("`{0}` is swept twice; give all its values in one `--sweep`")]
    Duplicate(String),
    #[error("`{0}` is both swept and set with `--set`; drop one of them")]
    AlsoSet(String),
    #[error("cannot read `{path}`: {what}")]
    Read { path: PathBuf, what: String },
}

/// One swept key and its values, in the order given.
#[derive(Clone, Debug, PartialEq)]
pub struct Axis {
    pub key: String,
    pub values: Vec<String>,
}

/// Parses the `--sweep` arguments; `set` are the `--set` arguments (a key may not be in both).
pub fn parse(args: &[String], set: &[String]) -> Result<Vec<Axis>, SweepError> {
    let mut axes: Vec<Axis> = Vec::new();
    for a in args {
        let Some((key, values)) = a.split_once('=') else {
            return Err(SweepError::Syntax(a.clone()));
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(SweepError::Syntax(a.clone()));
        }
        let vals: Vec<String> = values.split(',').map(|v| v.trim().to_string()).collect();
        if vals.iter().any(|v| v.is_empty()) {
            return Err(SweepError::EmptyValue {
                key: key.into(),
                values: values.into(),
            });
        }
        if axes.iter().any(|x| x.key == key) {
            return Err(SweepError::Duplicate(key.into()));
        }
        if set
            .iter()
            .any(|s| s.split_once('=').is_some_and(|(k, _)| k.trim() == key))
        {
            return Err(SweepError::AlsoSet(key.into()));
        }
        axes.push(Axis {
            key: key.into(),
            values: vals,
        });
    }
    Ok(axes)
}

/// Every combination of the axes' values (the first axis varies slowest), as (key, value).
pub fn product(axes: &[Axis]) -> Vec<Vec<(String, String)>> {
    let mut out: Vec<Vec<(String, String)>> = vec![Vec::new()];
    for axis in axes {
        let mut next = Vec::with_capacity(out.len() * axis.values.len());
        for combo in &out {
            for v in &axis.values {
                let mut c = combo.clone();
                c.push((axis.key.clone(), v.clone()));
                next.push(c);
            }
        }
        out = next;
    }
    out
}

/// The run folder of one combination: `<base>/sweep/k1=v1,k2=v2` (characters other than
/// letters, digits and `._-=,` become `_`).
pub fn folder(base: &Path, combo: &[(String, String)]) -> PathBuf {
    let name: Vec<String> = combo.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let name: String = name
        .join(",")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-=,".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    base.join("sweep").join(name)
}

/// Where a combination's run stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Nothing there yet.
    New,
    /// Started and killed: resume it.
    Partial,
    /// `metrics.yaml` written.
    Done,
}

pub fn status(dir: &Path) -> Status {
    if dir.join("metrics.yaml").exists() {
        Status::Done
    } else if dir.join("config.yaml").exists() {
        Status::Partial
    } else {
        Status::New
    }
}

/// The numeric entries of a run's `metrics.yaml`.
pub fn read_metrics(dir: &Path) -> Result<BTreeMap<String, f64>, SweepError> {
    let path = dir.join("metrics.yaml");
    let read = |what: String| SweepError::Read {
        path: path.clone(),
        what,
    };
    let text = std::fs::read_to_string(&path).map_err(|e| read(e.to_string()))?;
    let map: BTreeMap<String, serde_yaml::Value> =
        serde_yaml::from_str(&text).map_err(|e| read(e.to_string()))?;
    Ok(map
        .into_iter()
        .filter_map(|(k, v)| v.as_f64().map(|x| (k, x)))
        .collect())
}

/// Whether a swept key is a seed (its runs are repeats, averaged in the table).
pub fn is_seed(key: &str) -> bool {
    key == "seed" || key.ends_with(".seed")
}

/// One finished run of the sweep.
pub struct Row {
    pub combo: Vec<(String, String)>,
    pub metrics: BTreeMap<String, f64>,
}

/// `sweep.csv`: the swept keys, then every metric any run reported (empty where a run lacks it).
pub fn csv(rows: &[Row]) -> String {
    let keys: Vec<&str> = rows
        .first()
        .map(|r| r.combo.iter().map(|(k, _)| k.as_str()).collect())
        .unwrap_or_default();
    let metrics = metric_names(rows);
    let mut s = String::new();
    let header: Vec<&str> = keys
        .iter()
        .copied()
        .chain(metrics.iter().map(|m| m.as_str()))
        .collect();
    let _ = writeln!(s, "{}", header.join(","));
    for r in rows {
        let mut cells: Vec<String> = r.combo.iter().map(|(_, v)| v.clone()).collect();
        for m in &metrics {
            cells.push(r.metrics.get(m).map_or(String::new(), |v| v.to_string()));
        }
        let _ = writeln!(s, "{}", cells.join(","));
    }
    s
}

fn metric_names(rows: &[Row]) -> Vec<String> {
    let mut names: Vec<String> = rows
        .iter()
        .flat_map(|r| r.metrics.keys().cloned())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Mean and sample standard deviation (0 for a single value).
pub fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    if v.len() < 2 {
        return (mean, 0.0);
    }
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

/// A number with 4 significant digits (scientific below 1e-3).
fn fmt(v: f64) -> String {
    if v != 0.0 && v.abs() < 1e-3 {
        format!("{v:.3e}")
    } else {
        format!("{v:.4}")
    }
}

/// `sweep.md`: one row per combination of the non-seed keys, each metric as mean ± sd over
/// the seeds, with the number of runs n.
pub fn markdown(rows: &[Row], title: &str) -> String {
    let metrics = metric_names(rows);
    let group_keys: Vec<String> = rows
        .first()
        .map(|r| {
            r.combo
                .iter()
                .filter(|(k, _)| !is_seed(k))
                .map(|(k, _)| k.clone())
                .collect()
        })
        .unwrap_or_default();
    let seed_keys: Vec<String> = rows
        .first()
        .map(|r| {
            r.combo
                .iter()
                .filter(|(k, _)| is_seed(k))
                .map(|(k, _)| k.clone())
                .collect()
        })
        .unwrap_or_default();
    let mut groups: Vec<(Vec<String>, Vec<&Row>)> = Vec::new();
    for r in rows {
        let key: Vec<String> = r
            .combo
            .iter()
            .filter(|(k, _)| !is_seed(k))
            .map(|(_, v)| v.clone())
            .collect();
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, g)) => g.push(r),
            None => groups.push((key, vec![r])),
        }
    }
    let mut s = format!("# {title}\n\n");
    if seed_keys.is_empty() {
        s += "No seed is swept, so each cell is a single run (± 0).\n\n";
    } else {
        let _ = writeln!(
            s,
            "Mean ± standard deviation over the runs of the swept {} (n runs per row).\n",
            seed_keys.join(", ")
        );
    }
    let mut header: Vec<String> = group_keys.clone();
    header.push("n".into());
    header.extend(metrics.iter().cloned());
    let _ = writeln!(s, "| {} |", header.join(" | "));
    let _ = writeln!(s, "|{}", "---|".repeat(header.len()));
    for (key, g) in &groups {
        let mut cells = key.clone();
        cells.push(g.len().to_string());
        for m in &metrics {
            let v: Vec<f64> = g.iter().filter_map(|r| r.metrics.get(m).copied()).collect();
            if v.is_empty() {
                cells.push("–".into());
            } else {
                let (mean, sd) = mean_sd(&v);
                cells.push(format!("{} ± {}", fmt(mean), fmt(sd)));
            }
        }
        let _ = writeln!(s, "| {} |", cells.join(" | "));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_and_refuses_bad_sweeps() {
        let axes = parse(&strings(&["train.seed=0,1,2", "sample.steps=25, 100"]), &[]).unwrap();
        assert_eq!(axes[0].values, strings(&["0", "1", "2"]));
        assert_eq!(axes[1].values, strings(&["25", "100"]));
        assert!(matches!(
            parse(&strings(&["train.seed"]), &[]),
            Err(SweepError::Syntax(_))
        ));
        assert!(matches!(
            parse(&strings(&["train.seed=0,,1"]), &[]),
            Err(SweepError::EmptyValue { .. })
        ));
        assert!(matches!(
            parse(&strings(&["a=1", "a=2"]), &[]),
            Err(SweepError::Duplicate(_))
        ));
        assert!(matches!(
            parse(&strings(&["train.seed=1,2"]), &strings(&["train.seed=3"])),
            Err(SweepError::AlsoSet(_))
        ));
    }

    #[test]
    fn the_product_has_every_combination_in_order() {
        let axes = parse(&strings(&["a=1,2", "b=x,y,z"]), &[]).unwrap();
        let p = product(&axes);
        assert_eq!(p.len(), 6);
        assert_eq!(
            p[0],
            vec![("a".into(), "1".into()), ("b".into(), "x".into())]
        );
        assert_eq!(
            p[5],
            vec![("a".into(), "2".into()), ("b".into(), "z".into())]
        );
        let f = folder(Path::new("runs/e"), &p[1]);
        assert_eq!(f, Path::new("runs/e/sweep/a=1,b=y"));
        assert_eq!(
            folder(Path::new("r"), &[("k".into(), "a/b c".into())]),
            Path::new("r/sweep/k=a_b_c")
        );
    }

    #[test]
    fn the_table_averages_over_seeds_only() {
        let row = |seed: &str, steps: &str, v: f64| Row {
            combo: vec![
                ("train.seed".into(), seed.into()),
                ("sample.steps".into(), steps.into()),
            ],
            metrics: [("m".to_string(), v)].into(),
        };
        let rows = vec![
            row("0", "25", 1.0),
            row("0", "100", 10.0),
            row("1", "25", 3.0),
            row("1", "100", 14.0),
        ];
        let md = markdown(&rows, "t");
        // steps 25: mean 2, sd √2; steps 100: mean 12, sd 2√2.
        assert!(md.contains("| 25 | 2 | 2.0000 ± 1.4142 |"), "{md}");
        assert!(md.contains("| 100 | 2 | 12.0000 ± 2.8284 |"), "{md}");
        let csv = csv(&rows);
        assert_eq!(csv.lines().next(), Some("train.seed,sample.steps,m"));
        assert_eq!(csv.lines().nth(2), Some("0,100,10"));
        assert_eq!(mean_sd(&[5.0]), (5.0, 0.0));
    }

    #[test]
    fn status_follows_the_files() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(status(dir.path()), Status::New);
        std::fs::write(dir.path().join("config.yaml"), "x: 1\n").unwrap();
        assert_eq!(status(dir.path()), Status::Partial);
        std::fs::write(dir.path().join("metrics.yaml"), "a: 0.5\nb: 2\nname: x\n").unwrap();
        assert_eq!(status(dir.path()), Status::Done);
        let m = read_metrics(dir.path()).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m["a"], 0.5);
    }
}

//! Resource limits: from the spec alone, an estimate of the memory a run will need (network
//! and optimizer state, one training batch, the data, the samples), refused above the limit
//! with the part that dominates it, so that no spec `check` accepts aborts on an allocation.
//!
//! The estimate is deliberately generous (every buffer the trainer and sampler hold at once,
//! rounded up); it only has to separate "fits easily" from "cannot possibly fit".

use crate::diag::{Diagnostic, FileId, Span};
use crate::ir;

/// The memory limit when the machine's own cannot be read: 8 GiB.
pub const DEFAULT_LIMIT: u64 = 8 << 30;

/// Rows the sampler evaluates per network call and thread (`run::threads`), times a generous
/// thread count: the sampler's activations never exceed this many rows.
const SAMPLE_ROWS_AT_ONCE: f64 = 4096.0 * 16.0;

/// One contributor to the estimate, with where the spec sets its size.
struct Part {
    what: String,
    bytes: f64,
    span: Span,
    fix: &'static str,
}

/// Where the sizes are written (the experiment's name when a size is a default).
pub struct Spans {
    pub experiment: Span,
    pub batch: Option<Span>,
    pub width: Option<Span>,
    pub sample_n: Option<Span>,
    pub data_n: Option<Span>,
    pub reference: Option<Span>,
}

/// The parts of the estimate for `exp` with data of `dim` numbers per point, in bytes.
fn parts(exp: &ir::Experiment, dim: usize, spans: &Spans) -> Vec<Part> {
    let d = dim.max(1) as f64;
    let w = exp.network.width as f64;
    let depth = exp.network.depth.max(1) as f64;
    let e = exp.network.embed_dim as f64;
    let at = |s: Option<Span>| s.unwrap_or(spans.experiment);
    // Layers: (d + e) → w, (depth − 1) × (w → w), w → d, with biases.
    let params = (d + e) * w + w + (depth - 1.0) * (w * w + w) + w * d + d;
    // f32 weights, gradients, two AdamW moments, the EMA copy and one checkpoint copy.
    let network = params * 4.0 * 6.0;
    // Per row of a batch: every hidden activation kept for the backward pass, with its
    // pre-activation and gradient (f32), plus the input, noise and target rows.
    let mut per_row = 4.0 * (3.0 * w * depth + 4.0 * (d + e));
    // The EGNN's messages live on the pairs of components: per layer about a dozen
    // `[N, N, W]` tensors (values, stored derivatives, gradients), for the two passes
    // (X_t and Y) of the trans-dimensional loss.
    if let (ir::NetworkKind::Egnn, ir::StateSpace::Set { max, .. }) =
        (exp.network.kind, &exp.process.state)
    {
        let pairs = (*max as f64).powi(2);
        per_row += 4.0 * 12.0 * pairs * w * depth * 2.0;
    }
    let batch = exp.train.batch as f64 * per_row;
    let n = exp.sample.n as f64;
    // The state in f64 with the solver's buffers and the f32/f64 copies for the metrics,
    // plus the network's activations on the rows evaluated at once.
    let samples = n * d * 8.0 * 6.0 + n.min(SAMPLE_ROWS_AT_ONCE) * w * 4.0 * 3.0;
    let data = exp.data.n as f64 * d * 8.0;
    let reference = exp.eval.reference as f64 * d * 8.0;
    vec![
        Part {
            what: format!(
                "the network (width {}, depth {}) with its optimizer state",
                exp.network.width, exp.network.depth
            ),
            bytes: network,
            span: at(spans.width),
            fix: "lower `network.width` or `network.depth`",
        },
        Part {
            what: format!("one training batch of {} points", exp.train.batch),
            bytes: batch,
            span: at(spans.batch),
            fix: "lower `train.batch` (or `network.width`)",
        },
        Part {
            what: format!("{} samples", exp.sample.n),
            bytes: samples,
            span: at(spans.sample_n),
            fix: "lower `sample.n`",
        },
        Part {
            what: format!("{} data points", exp.data.n),
            bytes: data,
            span: at(spans.data_n),
            fix: "lower the data's `n`",
        },
        Part {
            what: format!("{} reference points", exp.eval.reference),
            bytes: reference,
            span: at(spans.reference),
            fix: "lower `eval.reference`",
        },
    ]
}

/// The estimated memory of a run of `exp`, in bytes.
pub fn estimate(exp: &ir::Experiment, dim: usize) -> f64 {
    let spans = Spans {
        experiment: Span::default(),
        batch: None,
        width: None,
        sample_n: None,
        data_n: None,
        reference: None,
    };
    parts(exp, dim, &spans).iter().map(|p| p.bytes).sum()
}

/// The estimated memory of drawing `n` samples of `dim` numbers from a trained `exp`
/// (`difc sample --n`), in bytes: the network and the samples.
pub fn estimate_sampling(exp: &ir::Experiment, dim: usize, n: usize) -> f64 {
    let mut exp = exp.clone();
    exp.sample.n = n;
    exp.train.batch = 0;
    exp.data.n = 0;
    exp.eval.reference = 0;
    estimate(&exp, dim)
}

/// Refuses `exp` when its estimate exceeds `limit` bytes, at the span of the largest part.
pub fn check(
    file: FileId,
    exp: &ir::Experiment,
    dim: usize,
    spans: &Spans,
    limit: u64,
    diags: &mut Vec<Diagnostic>,
) {
    let parts = parts(exp, dim, spans);
    let total: f64 = parts.iter().map(|p| p.bytes).sum();
    if total <= limit as f64 {
        return;
    }
    let Some(worst) = parts.iter().max_by(|a, b| a.bytes.total_cmp(&b.bytes)) else {
        return;
    };
    diags.push(
        Diagnostic::error(
            "difc::check::too_much_memory",
            file,
            worst.span,
            format!(
                "experiment `{}` needs about {} of memory, more than the limit of {}",
                exp.name,
                bytes(total),
                bytes(limit as f64)
            ),
        )
        .with_label(format!("{}: about {}", worst.what, bytes(worst.bytes)))
        .with_help(format!(
            "{}; if this machine really has the memory, raise the limit with DIFC_MAX_MEMORY (e.g. DIFC_MAX_MEMORY=64GiB)",
            worst.fix
        )),
    );
}

/// A size in bytes as people read it: `512 MiB`, `3.6 TiB`.
pub fn bytes(b: f64) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut v = b.max(0.0);
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit + 1 == UNITS.len() && v >= 1024.0 {
        return format!("{v:.1e} {}", UNITS[unit]);
    }
    if v >= 100.0 || unit == 0 {
        format!("{v:.0} {}", UNITS[unit])
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// A size written by people: `8GiB`, `512 MiB`, `16G`, `1e10` (bytes).
pub fn parse_bytes(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t
        .find(|c: char| c.is_ascii_alphabetic() && c != 'e' && c != 'E')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let v: f64 = num.trim().parse().ok()?;
    let scale = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024f64.powi(2),
        "g" | "gb" | "gib" => 1024f64.powi(3),
        "t" | "tb" | "tib" => 1024f64.powi(4),
        _ => return None,
    };
    let b = v * scale;
    (1.0..1.8e19).contains(&b).then_some(b as u64)
}

/// The machine's memory as the kernel reports it (`MemTotal` of /proc/meminfo), if readable.
pub fn machine_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_and_print() {
        assert_eq!(parse_bytes("8GiB"), Some(8 << 30));
        assert_eq!(parse_bytes("512 MiB"), Some(512 << 20));
        assert_eq!(parse_bytes("1e10"), Some(10_000_000_000));
        assert_eq!(parse_bytes("lots"), None);
        assert_eq!(parse_bytes("-1G"), None);
        assert_eq!(bytes((8u64 << 30) as f64), "8.0 GiB");
        assert_eq!(bytes(3.6 * 1024f64.powi(4)), "3.6 TiB");
        assert_eq!(bytes(1e30), "8.7e11 EiB");
    }
}

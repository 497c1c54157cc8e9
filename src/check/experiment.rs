//! `experiment` blocks: data, process, network, loss, train, sample, eval and metrics, each
//! checked against the schema in [`super::schema`].

use super::error as E;
use super::instance::{bind_params, instantiate};
use super::process::ProcessDef;
use super::schema::{self, Kind, Setting};
use super::{math, resources, values};
use crate::diag::{Diagnostic, FileId, Span};
use crate::ir::{self, DataSource, Loc, StateSpace, Value};
use crate::syntax::ast::{self, ExprKind, StmtKind};
use std::collections::{BTreeMap, BTreeSet};

/// Every process an experiment may use.
#[derive(Default)]
pub struct Processes {
    pub defs: BTreeMap<String, ProcessDef>,
    /// Names of process declarations that failed to parse (already reported).
    pub broken: BTreeSet<String>,
}

/// Checks one experiment against the known processes.
pub fn check(
    file: FileId,
    decl: &ast::ExperimentDecl,
    processes: &Processes,
    base_dir: Option<std::path::PathBuf>,
    loader: &dyn super::Loader,
    diags: &mut Vec<Diagnostic>,
) -> Option<ir::Experiment> {
    let errors_before = diags.iter().filter(|d| d.is_error()).count();
    let mut stmts: BTreeMap<&str, &ast::Stmt> = BTreeMap::new();
    for stmt in &decl.body.stmts {
        let head = stmt.kind.head();
        if !schema::EXPERIMENT_KEYS.contains(&head.name.as_str()) {
            diags.push(E::unknown_statement(
                file,
                head.span,
                &head.name,
                "experiment",
                schema::EXPERIMENT_KEYS,
            ));
            continue;
        }
        if let Some(first) = stmts.get(head.name.as_str()) {
            diags.push(E::duplicate_statement(
                file,
                head.span,
                &head.name,
                first.kind.head().span,
            ));
            continue;
        }
        stmts.insert(head.name.as_str(), stmt);
    }
    let mut resolved = BTreeMap::new();
    // The process first: the data file's shape is judged against its state.
    let process = match stmts.get("process") {
        Some(s) => assigned(file, s, "process", diags)
            .and_then(|v| check_process_use(file, v, processes, &mut resolved, diags)),
        None => {
            diags.push(E::missing_part(
                file,
                decl.name.span,
                "process",
                "process = vp()",
            ));
            None
        }
    };
    let data = match stmts.get("data") {
        Some(s) => assigned(file, s, "data", diags).and_then(|v| {
            let source = DataFiles { loader, base_dir };
            check_data(file, v, &source, process.as_ref(), &mut resolved, diags)
        }),
        None => {
            diags.push(E::missing_part(
                file,
                decl.name.span,
                "data",
                "data = swiss_roll(n = 20000)",
            ));
            None
        }
    };
    // A process that leaves `state` to the data takes an image source's shape, so that the
    // networks, samples and plots see images.
    let process = match (process, &data) {
        (Some(mut p), Some(d)) => {
            if let (StateSpace::Vector(None), DataSource::Generator { name, .. }) =
                (&p.state, &d.source)
            {
                if let Some(([channels, height, width], _)) =
                    crate::run::data::generator(name).and_then(|g| g.image_shape())
                {
                    p.state = StateSpace::Image {
                        channels,
                        height,
                        width,
                    };
                }
            }
            Some(p)
        }
        (p, _) => p,
    };
    let network = match stmts.get("network") {
        Some(s) => assigned(file, s, "network", diags).and_then(|v| check_network(file, v, diags)),
        None => Some(default_network()),
    };
    let train = settings(
        file,
        stmts.get("train").copied(),
        "train",
        schema::TRAIN,
        &mut resolved,
        diags,
    );
    let sample = settings(
        file,
        stmts.get("sample").copied(),
        "sample",
        schema::SAMPLE,
        &mut resolved,
        diags,
    );
    let eval = settings(
        file,
        stmts.get("eval").copied(),
        "eval",
        schema::EVAL,
        &mut resolved,
        diags,
    );
    let loss_settings = settings(
        file,
        stmts.get("loss").copied(),
        "loss",
        schema::LOSS,
        &mut resolved,
        diags,
    );
    let weight = loss_weight(file, stmts.get("loss").copied(), diags);
    let metrics = match stmts.get("metrics") {
        Some(s) => assigned(file, s, "metrics", diags).and_then(|v| check_metrics(file, v, diags)),
        None => Some(vec![
            ir::MetricKind::Prd,
            ir::MetricKind::Mmd,
            ir::MetricKind::SlicedWasserstein,
            ir::MetricKind::Knn,
            ir::MetricKind::Modes,
        ]),
    };
    if let (Some(d), Some(p)) = (&data, &process) {
        check_dimensions(file, d, p, diags);
    }
    if let Some(p) = &process {
        check_times(file, &stmts, &sample, &loss_settings, p, diags);
    }
    if let Some(n) = &network {
        for (k, v) in [
            ("width", n.width.to_string()),
            ("depth", n.depth.to_string()),
            ("activation", n.activation.name().to_string()),
            ("embedding", n.embedding.name().to_string()),
            ("embed_dim", n.embed_dim.to_string()),
        ] {
            resolved.insert(format!("network.{k}"), v);
        }
    }
    if let Some(m) = &metrics {
        let names: Vec<&str> = m.iter().map(|k| k.name()).collect();
        resolved.insert("metrics".into(), format!("[{}]", names.join(", ")));
    }
    let network = match (network, &process) {
        (Some(net), Some(p)) => check_network_fits(file, &stmts, net, p, diags),
        (net, _) => net,
    };
    if let Some(p) = &process {
        check_transform_network(p, diags);
    }
    let mut loss_settings = loss_settings;
    if let (Some(p), Some(l)) = (&process, &mut loss_settings) {
        check_target(file, &stmts, l, p, &mut resolved, diags);
    }
    let errors_after = diags.iter().filter(|d| d.is_error()).count();
    if errors_after > errors_before {
        return None;
    }
    let (train, sample, eval, loss_settings) = (train?, sample?, eval?, loss_settings?);
    let num = |m: &BTreeMap<String, String>, k: &str| {
        m.get(k).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
    };
    let span = decl.name.span;
    let target = match loss_settings.get("target") {
        Some(name) => registered(file, span, "target", name, ir::Target::from_name, diags)?,
        None => ir::Target::Eps,
    };
    let precondition = match loss_settings.get("precondition") {
        Some(name) => registered(
            file,
            span,
            "precondition",
            name,
            ir::Precondition::from_name,
            diags,
        )?,
        None => ir::Precondition::None,
    };
    let solver = match sample.get("solver") {
        Some(name) => registered(file, span, "solver", name, ir::Solver::from_name, diags)?,
        None => ir::Solver::OdeHeun,
    };
    let grid = match sample.get("grid") {
        Some(name) => registered(file, span, "grid", name, ir::TimeGrid::from_name, diags)?,
        None => ir::TimeGrid::Uniform,
    };
    // The default weight of a score target on a Gaussian process is s_t² (see
    // `ir::LossSpec::weight_given`); the compiler applies it, this records it.
    let weight_text = match (&weight, target, process.as_ref().map(|p| p.jumps.is_some())) {
        (Some(w), _, _) => w.to_string(),
        (None, ir::Target::Score, Some(false)) => "s_t^2".into(),
        (None, _, _) => "1".into(),
    };
    resolved.insert("loss.weight".into(), weight_text);
    let mut exp = ir::Experiment {
        name: decl.name.name.clone(),
        loc: Loc {
            file,
            span: decl.name.span,
        },
        data: data?,
        process: process?,
        network: network?,
        loss: ir::LossSpec {
            target,
            weight_given: weight.is_some(),
            weight: weight.unwrap_or(ir::Expr::Const(1.0)),
            t_min: num(&loss_settings, "t_min"),
            precondition,
            sigma_data: num(&loss_settings, "sigma_data"),
            transdim: ir::ElboWeights {
                score: weight_setting(&loss_settings, "score_weight"),
                rate: weight_setting(&loss_settings, "rate_weight"),
                insert: weight_setting(&loss_settings, "insert_weight"),
                ce: weight_setting(&loss_settings, "ce_weight"),
            },
        },
        train: ir::TrainSpec {
            steps: num(&train, "steps") as u64,
            batch: num(&train, "batch") as usize,
            lr: num(&train, "lr"),
            lr_min: num(&train, "lr_min"),
            warmup: num(&train, "warmup") as u64,
            schedule: train.get("schedule").cloned().unwrap_or_default(),
            weight_decay: num(&train, "weight_decay"),
            ema: num(&train, "ema"),
            clip: num(&train, "clip"),
            seed: num(&train, "seed") as u64,
            log_every: num(&train, "log_every") as u64,
            checkpoint_every: num(&train, "checkpoint_every") as u64,
        },
        sample: ir::SampleSpec {
            n: num(&sample, "n") as usize,
            solver,
            solver_given: written(&stmts, "sample", "solver").is_some(),
            grid,
            eta: num(&sample, "eta"),
            steps: num(&sample, "steps") as usize,
            seed: num(&sample, "seed") as u64,
            t_end: num(&sample, "t_end"),
            corrector: ir::Corrector {
                steps: num(&sample, "corrector_steps") as usize,
                snr: num(&sample, "corrector_snr"),
                t_lo: num(&sample, "corrector_t_lo"),
                t_hi: num(&sample, "corrector_t_hi"),
            },
        },
        eval: ir::EvalSpec {
            metrics: metrics?,
            reference: num(&eval, "reference") as usize,
            clusters: num(&eval, "clusters") as usize,
            runs: num(&eval, "runs") as usize,
        },
        resolved,
    };
    if exp.sample.corrector.steps > 0 && !matches!(exp.process.state, StateSpace::Set { .. }) {
        let span = written(&stmts, "sample", "corrector_steps").map_or(span, |e| e.span);
        diags.push(E::corrector_unsupported(file, span, &exp.process.name));
        return None;
    }
    // η belongs to DDIM alone, so a spec that sets it names the solver too (the default
    // solver is the process's first offered one, which is not always ddim).
    if exp.sample.eta != 0.0 && (!exp.sample.solver_given || exp.sample.solver != ir::Solver::Ddim)
    {
        let span = written(&stmts, "sample", "eta").map_or(span, |e| e.span);
        let solver = exp.sample.solver_given.then(|| exp.sample.solver.name());
        diags.push(E::eta_without_ddim(file, span, solver));
        return None;
    }
    if !split_sizes_fit(file, &mut exp, &stmts, span, diags) {
        return None;
    }
    // A data file keeps a tenth of its points (at most `eval.reference`) for the metrics.
    if let Some(rows) = exp.data.rows {
        let held_out = exp.eval.reference.min(rows / 10).max(1);
        if held_out != exp.eval.reference {
            exp.eval.reference = held_out;
            exp.resolved
                .insert("eval.reference".into(), held_out.to_string());
        }
    }
    if !metric_sizes_fit(file, &mut exp, &stmts, span, diags) {
        return None;
    }
    let spans = resources::Spans {
        experiment: decl.name.span,
        batch: written(&stmts, "train", "batch").map(|e| e.span),
        width: call_arg(&stmts, "network", "width"),
        sample_n: written(&stmts, "sample", "n").map(|e| e.span),
        data_n: call_arg(&stmts, "data", "n"),
        reference: written(&stmts, "eval", "reference").map(|e| e.span),
    };
    let dim = exp.data.dim.or(exp.process.state.dim()).unwrap_or(1);
    let before = diags.len();
    resources::check(file, &exp, dim, &spans, loader.memory_limit(), diags);
    (diags.len() == before).then_some(exp)
}

/// The metrics need enough points: PRD clusters the samples and the reference together
/// (`eval.clusters` ≤ their total), the k-NN metrics need k + 1 = 6 points in each set.
/// Written metrics that cannot be computed are errors; default ones are left out (a small
/// data file keeps only a few reference points), and `metrics` in config.yaml says which ran.
fn metric_sizes_fit(
    file: FileId,
    exp: &mut ir::Experiment,
    stmts: &BTreeMap<&str, &ast::Stmt>,
    span: Span,
    diags: &mut Vec<Diagnostic>,
) -> bool {
    let (n, reference) = (exp.sample.n, exp.eval.reference);
    if !stmts.contains_key("metrics") {
        let clusters = exp.eval.clusters;
        let before = exp.eval.metrics.len();
        exp.eval.metrics.retain(|m| match m {
            ir::MetricKind::Prd => clusters <= n + reference,
            ir::MetricKind::Knn => n.min(reference) >= 6,
            ir::MetricKind::Mmd
            | ir::MetricKind::SlicedWasserstein
            | ir::MetricKind::Msle
            | ir::MetricKind::Modes => true,
        });
        if exp.eval.metrics.len() != before {
            let names: Vec<&str> = exp.eval.metrics.iter().map(|m| m.name()).collect();
            exp.resolved
                .insert("metrics".into(), format!("[{}]", names.join(", ")));
        }
        return true;
    }
    let mut ok = true;
    for m in &exp.eval.metrics {
        match m {
            ir::MetricKind::Prd if exp.eval.clusters > n + reference => {
                let at = written(stmts, "eval", "clusters")
                    .or_else(|| written(stmts, "sample", "n"))
                    .map_or(span, |e| e.span);
                diags.push(E::out_of_range(
                    file,
                    at,
                    "eval.clusters",
                    exp.eval.clusters as f64,
                    &format!(
                        "at most {} (PRD clusters the {n} samples and {reference} reference points together; raise `sample.n` or lower `eval.clusters`)",
                        n + reference
                    ),
                ));
                ok = false;
            }
            ir::MetricKind::Knn if n.min(reference) < 6 => {
                let (what, value) = if n < 6 {
                    ("sample.n", n)
                } else {
                    ("eval.reference", reference)
                };
                let at = written(stmts, "sample", "n")
                    .filter(|_| n < 6)
                    .or_else(|| written(stmts, "eval", "reference"))
                    .map_or(span, |e| e.span);
                diags.push(E::out_of_range(
                    file,
                    at,
                    what,
                    value as f64,
                    "at least 6 for the k-NN metrics (k = 5 neighbours besides the point itself)",
                ));
                ok = false;
            }
            ir::MetricKind::Prd
            | ir::MetricKind::Knn
            | ir::MetricKind::Mmd
            | ir::MetricKind::SlicedWasserstein
            | ir::MetricKind::Msle
            | ir::MetricKind::Modes => {}
        }
    }
    ok
}

/// An image data set with splits: `data.n` images of the training split and `eval.reference`
/// of the held-out one (`test`, or `train` when training on `test`) must exist, so that the run
/// does not stop after loading the data.
fn split_sizes_fit(
    file: FileId,
    exp: &mut ir::Experiment,
    stmts: &BTreeMap<&str, &ast::Stmt>,
    span: Span,
    diags: &mut Vec<Diagnostic>,
) -> bool {
    let DataSource::Generator { name, args } = &exp.data.source else {
        return true;
    };
    let Some(spec) = crate::run::data::generator(name) else {
        return true;
    };
    if spec.splits.is_empty() {
        return true;
    }
    let split = args
        .iter()
        .find_map(|(k, v)| match (k.as_str(), v) {
            ("split", Value::Text(s)) => Some(s.as_str()),
            _ => None,
        })
        .unwrap_or("train");
    let held_out = spec.held_out_split(split);
    let size = |s: &str| spec.splits.iter().find(|(n, _)| *n == s).map(|(_, k)| *k);
    // Unless written, the reference is the whole held-out split.
    if written(stmts, "eval", "reference").is_none() {
        if let Some(have) = size(held_out) {
            exp.eval.reference = have;
            exp.resolved
                .insert("eval.reference".into(), have.to_string());
        }
    }
    let mut ok = true;
    for (what, want, have, at) in [
        (
            "data.n",
            exp.data.n,
            size(split),
            call_arg(stmts, "data", "n"),
        ),
        (
            "eval.reference",
            exp.eval.reference,
            size(held_out),
            written(stmts, "eval", "reference").map(|e| e.span),
        ),
    ] {
        // An unknown split name is reported by the generator's own argument check.
        let Some(have) = have else { continue };
        if want > have {
            let from = if what == "data.n" { split } else { held_out };
            diags.push(E::out_of_range(
                file,
                at.unwrap_or(span),
                what,
                want as f64,
                &format!("at most {have} (the `{from}` split of `{name}` holds {have} images)"),
            ));
            ok = false;
        }
    }
    ok
}

/// The span of argument `key` of the call assigned to `stmt` (`network = mlp(width = …)`).
fn call_arg(stmts: &BTreeMap<&str, &ast::Stmt>, stmt: &str, key: &str) -> Option<Span> {
    let StmtKind::Assign { value, .. } = &stmts.get(stmt)?.kind else {
        return None;
    };
    let ExprKind::Call { args, .. } = &value.kind else {
        return None;
    };
    args.iter()
        .find(|a| a.name.as_ref().is_some_and(|n| n.name == key))
        .map(|a| a.value.span)
}

/// The value of `key = value`, or an error when the statement has another form.
fn assigned<'a>(
    file: FileId,
    stmt: &'a ast::Stmt,
    key: &str,
    diags: &mut Vec<Diagnostic>,
) -> Option<&'a ast::Expr> {
    match &stmt.kind {
        StmtKind::Assign { key: k, value } if k.len() == 1 => Some(value),
        _ => {
            diags.push(E::wrong_statement_form(file, stmt.span, key));
            None
        }
    }
}

/// Checks a settings block against its schema; returns every key's value as text (defaults
/// filled in) and records them in `resolved`.
fn settings(
    file: FileId,
    stmt: Option<&ast::Stmt>,
    block: &str,
    schema: &[Setting],
    resolved: &mut BTreeMap<String, String>,
    diags: &mut Vec<Diagnostic>,
) -> Option<BTreeMap<String, String>> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    let mut ok = true;
    if let Some(stmt) = stmt {
        let StmtKind::Block { block: body, .. } = &stmt.kind else {
            diags.push(E::wrong_statement_form(file, stmt.span, block));
            return None;
        };
        let mut seen: BTreeMap<String, Span> = BTreeMap::new();
        for s in &body.stmts {
            match &s.kind {
                StmtKind::Def { name, .. } if block == "loss" && name.name == "weight" => {}
                StmtKind::Assign { key, value } if key.len() == 1 => {
                    let k = &key[0];
                    let Some(setting) = schema.iter().find(|x| x.key == k.name) else {
                        diags.push(E::unknown_setting(
                            file,
                            k.span,
                            block,
                            &k.name,
                            &schema::keys(schema),
                        ));
                        ok = false;
                        continue;
                    };
                    if let Some(first) = seen.insert(k.name.clone(), k.span) {
                        diags.push(E::duplicate_statement(file, k.span, &k.name, first));
                        ok = false;
                        continue;
                    }
                    match check_setting(file, block, setting, value, diags) {
                        Some(v) => {
                            out.insert(k.name.clone(), v);
                        }
                        None => ok = false,
                    }
                }
                other => {
                    let head = other.head();
                    diags.push(E::unknown_setting(
                        file,
                        head.span,
                        block,
                        &head.name,
                        &schema::keys(schema),
                    ));
                    ok = false;
                }
            }
        }
    }
    for setting in schema {
        out.entry(setting.key.to_string())
            .or_insert_with(|| setting.default.to_string());
    }
    for (k, v) in &out {
        resolved.insert(format!("{block}.{k}"), v.clone());
    }
    ok.then_some(out)
}

/// Checks one setting's value against its kind; returns it as text.
pub fn check_setting(
    file: FileId,
    block: &str,
    setting: &Setting,
    value: &ast::Expr,
    diags: &mut Vec<Diagnostic>,
) -> Option<String> {
    let what = format!("{block}.{}", setting.key);
    match setting.kind {
        Kind::Int(min) => values::int_u64(file, value, &what, min, diags).map(|v| v.to_string()),
        Kind::Float(lo, hi, open) => {
            values::in_range(file, value, &what, lo, hi, open, diags).map(|v| v.to_string())
        }
        Kind::Positive => values::positive(file, value, &what, diags).map(|v| v.to_string()),
        Kind::Choice(choices) => values::choice(file, value, &what, choices, diags),
    }
}

fn loss_weight(
    file: FileId,
    stmt: Option<&ast::Stmt>,
    diags: &mut Vec<Diagnostic>,
) -> Option<ir::Expr> {
    let StmtKind::Block { block, .. } = &stmt?.kind else {
        return None;
    };
    block.stmts.iter().find_map(|s| match &s.kind {
        StmtKind::Def {
            name,
            formals,
            body,
            ..
        } if name.name == "weight" => {
            if formals.len() != 1 || formals[0].name != "t" {
                diags.push(E::bad_formal(
                    file,
                    name.span,
                    "weight",
                    &formals.first().map_or(String::new(), |f| f.name.clone()),
                    &["t"],
                ));
                return None;
            }
            let helpers = BTreeMap::new();
            let scope = super::lower::Scope {
                file,
                params: &[],
                helpers: &helpers,
                vars: vec![("t".into(), ir::Var::T)],
                transform: None,
                transform_elsewhere: None,
            };
            super::lower::lower(body, &scope, diags)
        }
        _ => None,
    })
}

/// The network must fit the state: sets take `set_transformer` or `egnn` (which needs the
/// state's `com = NAME` for its coordinates), everything else `mlp`. With
/// no `network` statement a set process gets the default set transformer.
fn check_network_fits(
    file: FileId,
    stmts: &BTreeMap<&str, &ast::Stmt>,
    net: ir::NetworkSpec,
    process: &ir::Process,
    diags: &mut Vec<Diagnostic>,
) -> Option<ir::NetworkSpec> {
    let is_set = matches!(process.state, ir::StateSpace::Set { .. });
    let is_image = matches!(process.state, ir::StateSpace::Image { .. });
    let want = if is_set {
        ir::NetworkKind::SetTransformer
    } else {
        ir::NetworkKind::Mlp
    };
    match stmts.get("network") {
        // Images take the MLP (on the flat pixels) or the U-Net.
        Some(_) if is_image && net.kind == ir::NetworkKind::Unet => Some(net),
        None => Some(ir::NetworkSpec { kind: want, ..net }),
        // The EGNN takes its coordinates from the state's `com = NAME`.
        Some(stmt) if is_set && net.kind == ir::NetworkKind::Egnn => {
            if process.state.com().is_some() {
                Some(net)
            } else {
                diags.push(E::egnn_needs_com(
                    file,
                    stmt.span,
                    &process.state.describe(),
                ));
                None
            }
        }
        Some(_) if net.kind == want => Some(net),
        Some(stmt) => {
            let example = match want {
                ir::NetworkKind::SetTransformer | ir::NetworkKind::Egnn => {
                    "set_transformer(width = 64, depth = 3, heads = 4)"
                }
                ir::NetworkKind::Mlp | ir::NetworkKind::Unet if is_image => {
                    "unet(width = 32, depth = 2)` or `network = mlp(width = 256, depth = 3)"
                }
                ir::NetworkKind::Mlp | ir::NetworkKind::Unet => "mlp(width = 128, depth = 4)",
            };
            diags.push(E::network_for_state(
                file,
                stmt.span,
                net.kind.name(),
                &process.state.describe(),
                example,
            ));
            None
        }
    }
}

/// A learned transform's network must fit the state: the MLP (any vector or image state) or,
/// for images, the U-Net; set networks model sets, which have no transform.
fn check_transform_network(process: &ir::Process, diags: &mut Vec<Diagnostic>) {
    let Some(t) = &process.transform else {
        return;
    };
    if t.form == ir::TransformForm::Identity {
        return;
    }
    let fits = match (t.network.kind, &process.state) {
        (ir::NetworkKind::Mlp, ir::StateSpace::Vector(_) | ir::StateSpace::Image { .. }) => true,
        (ir::NetworkKind::Unet, ir::StateSpace::Image { .. }) => true,
        (ir::NetworkKind::Mlp | ir::NetworkKind::Unet, ir::StateSpace::Set { .. })
        | (ir::NetworkKind::Unet, ir::StateSpace::Vector(_))
        | (ir::NetworkKind::SetTransformer | ir::NetworkKind::Egnn, _) => false,
    };
    if !fits {
        let want = match process.state {
            ir::StateSpace::Image { .. } => "learned(unet(width = 32, depth = 2))",
            ir::StateSpace::Vector(_) | ir::StateSpace::Set { .. } => {
                "learned(mlp(width = 128, depth = 3))"
            }
        };
        diags.push(E::network_for_state(
            t.loc.file,
            t.loc.span,
            t.network.kind.name(),
            &process.state.describe(),
            want,
        ));
    }
}

/// A trans-dimensional ELBO weight from the `loss` block (1 when not given).
fn weight_setting(settings: &BTreeMap<String, String>, key: &str) -> f64 {
    settings
        .get(key)
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(1.0)
}

/// The span of the argument called `key` in a call's arguments.
fn arg_span(args: &[ast::Arg], key: &str) -> Option<crate::diag::Span> {
    args.iter()
        .find(|a| a.name.as_ref().is_some_and(|n| n.name == key))
        .map(|a| a.value.span)
}

pub(crate) fn default_network() -> ir::NetworkSpec {
    ir::NetworkSpec {
        kind: ir::NetworkKind::Mlp,
        width: 128,
        heads: 4,
        depth: 4,
        activation: ir::ActivationKind::Gelu,
        embedding: ir::EmbeddingKind::Sinusoidal,
        embed_dim: 32,
        attention: true,
    }
}

/// `mlp(width = 128, depth = 4, activation = gelu, ...)`.
pub fn check_network(
    file: FileId,
    value: &ast::Expr,
    diags: &mut Vec<Diagnostic>,
) -> Option<ir::NetworkSpec> {
    let (callee, args) = match &value.kind {
        ExprKind::Call { callee, args } => (callee, args.as_slice()),
        ExprKind::Ident(_) => return check_network_name(file, value, diags),
        _ => {
            diags.push(E::bad_network(file, value.span));
            return None;
        }
    };
    let Some(kind) = ir::NetworkKind::from_name(&callee.name) else {
        diags.push(E::unknown_network(file, callee.span, &callee.name));
        return None;
    };
    let mut settings = BTreeMap::new();
    let mut ok = true;
    for a in args {
        let Some(name) = &a.name else {
            // One report per call: the fix (naming the arguments) is the same for all.
            if ok {
                diags.push(E::positional_setting(
                    file,
                    a.value.span,
                    kind.name(),
                    "width = 128",
                ));
            }
            ok = false;
            continue;
        };
        let Some(setting) = schema::NETWORK.iter().find(|s| s.key == name.name) else {
            diags.push(E::unknown_argument(
                file,
                name.span,
                &name.name,
                kind.name(),
                &schema::keys(schema::NETWORK),
            ));
            ok = false;
            continue;
        };
        match check_setting(file, "network", setting, &a.value, diags) {
            Some(v) => {
                settings.insert(setting.key, v);
            }
            None => ok = false,
        }
    }
    if !ok {
        return None;
    }
    let get = |k: &str| -> String {
        // The U-Net's own defaults: 32 channels on 2 resolutions (a small image network).
        let unet_default = match (kind, k) {
            (ir::NetworkKind::Unet, "width") => Some("32".to_string()),
            (ir::NetworkKind::Unet, "depth") => Some("2".to_string()),
            _ => None,
        };
        settings
            .get(k)
            .cloned()
            .or(unet_default)
            .or_else(|| {
                schema::NETWORK
                    .iter()
                    .find(|s| s.key == k)
                    .map(|s| s.default.to_string())
            })
            .unwrap_or_default()
    };
    let span = value.span;
    let activation = registered(
        file,
        span,
        "activation",
        &get("activation"),
        ir::ActivationKind::from_name,
        diags,
    )?;
    let embedding = registered(
        file,
        span,
        "embedding",
        &get("embedding"),
        ir::EmbeddingKind::from_name,
        diags,
    )?;
    let width = get("width").parse().unwrap_or(128);
    let heads = get("heads").parse().unwrap_or(4);
    if kind == ir::NetworkKind::SetTransformer && width % heads != 0 {
        diags.push(E::heads_do_not_divide_width(
            file,
            arg_span(args, "heads").unwrap_or(span),
            width,
            heads,
        ));
        return None;
    }
    Some(ir::NetworkSpec {
        kind,
        width,
        heads,
        depth: get("depth").parse().unwrap_or(4),
        activation,
        embedding,
        embed_dim: get("embed_dim").parse().unwrap_or(32),
        attention: get("attention") != "false",
    })
}

fn check_network_name(
    file: FileId,
    value: &ast::Expr,
    diags: &mut Vec<Diagnostic>,
) -> Option<ir::NetworkSpec> {
    match value.as_ident() {
        Some(name) if ir::NetworkKind::from_name(name).is_some() => Some(ir::NetworkSpec {
            kind: ir::NetworkKind::from_name(name).unwrap_or(ir::NetworkKind::Mlp),
            ..default_network()
        }),
        Some(other) => {
            diags.push(E::unknown_network(file, value.span, other));
            None
        }
        None => None,
    }
}

/// Where data files are read from: the spec's folder, through the checker's loader.
struct DataFiles<'a> {
    loader: &'a dyn super::Loader,
    base_dir: Option<std::path::PathBuf>,
}

fn check_data(
    file: FileId,
    value: &ast::Expr,
    files: &DataFiles,
    process: Option<&ir::Process>,
    resolved: &mut BTreeMap<String, String>,
    diags: &mut Vec<Diagnostic>,
) -> Option<ir::DataSpec> {
    let state = process.map(|p| &p.state);
    let base_dir = files.base_dir.clone();
    let ExprKind::Call { callee, args } = &value.kind else {
        diags.push(E::bad_data(file, value.span));
        return None;
    };
    let loc = Loc {
        file,
        span: value.span,
    };
    let mut literal_args = Vec::new();
    let mut ok = true;
    let mut positional_reported = false;
    for a in args {
        let Some(name) = &a.name else {
            // One report per call: the fix (naming the arguments) is the same for all.
            if !positional_reported {
                diags.push(E::positional_setting(
                    file,
                    a.value.span,
                    &callee.name,
                    "n = 20000",
                ));
            }
            positional_reported = true;
            ok = false;
            continue;
        };
        match literal(file, &a.value, diags) {
            Some(v) => literal_args.push((name.name.clone(), v, name.span, a.value.span)),
            None => ok = false,
        }
    }
    let n_arg = literal_args.iter().find(|(k, ..)| k == "n");
    let n = match n_arg {
        Some((_, Value::Number(v), _, span)) => {
            if v.fract() != 0.0 || *v < 2.0 {
                diags.push(E::out_of_range(
                    file,
                    *span,
                    "data.n",
                    *v,
                    "≥ 2 (a whole number)",
                ));
                ok = false;
            }
            *v as usize
        }
        Some((_, _, _, span)) => {
            diags.push(E::expected_number(file, *span, "not a number"));
            ok = false;
            0
        }
        None if callee.name == "npy" => 0,
        None => {
            diags.push(E::missing_argument(file, value.span, &callee.name, "n"));
            ok = false;
            0
        }
    };
    for (k, v, ..) in &literal_args {
        resolved.insert(format!("data.{k}"), v.to_string());
    }
    resolved.insert("data.source".into(), callee.name.clone());
    if callee.name == "npy" {
        let path = literal_args
            .iter()
            .find_map(|(k, v, _, span)| match (k.as_str(), v) {
                ("path", Value::Text(p)) => Some((p.clone(), *span)),
                _ => None,
            });
        for (k, _, span, _) in &literal_args {
            if !["path", "n", "levels"].contains(&k.as_str()) {
                diags.push(E::unknown_argument(
                    file,
                    *span,
                    k,
                    "npy",
                    &["path", "n", "levels"],
                ));
                ok = false;
            }
        }
        // `levels = L`: image values on the grid −1 + 2k/(L − 1), read by the discrete decoder.
        let levels = match literal_args.iter().find(|(k, ..)| k == "levels") {
            None => None,
            Some((_, Value::Number(v), _, vspan)) => {
                match state {
                    Some(StateSpace::Image { .. }) => {
                        if v.fract() != 0.0 || !(2.0..=1024.0).contains(v) {
                            diags.push(E::out_of_range(
                                file,
                                *vspan,
                                "data.levels",
                                *v,
                                "a whole number from 2 to 1024",
                            ));
                            ok = false;
                        }
                    }
                    Some(other) => {
                        diags.push(E::levels_not_image(file, *vspan, &other.describe()));
                        ok = false;
                    }
                    // The process has errors of its own.
                    None => ok = false,
                }
                Some(*v as usize)
            }
            Some((_, _, _, vspan)) => {
                diags.push(E::expected_number(file, *vspan, "not a number"));
                ok = false;
                None
            }
        };
        let Some((path, path_span)) = path else {
            diags.push(E::missing_argument(file, value.span, "npy", "path"));
            return None;
        };
        if !ok {
            return None;
        }
        let dim = npy_dim(file, path_span, &path, files, state, diags)?;
        if let Some(l) = levels {
            let full = base_dir
                .as_ref()
                .map_or_else(|| std::path::PathBuf::from(&path), |b| b.join(&path));
            if !super::sets::npy_levels_fit(file, path_span, files.loader, &full, l, diags) {
                return None;
            }
        }
        let full = base_dir
            .as_ref()
            .map_or_else(|| std::path::PathBuf::from(&path), |b| b.join(&path));
        let rows = files
            .loader
            .read_head(&full, crate::run::npy::HEADER_BYTES)
            .ok()
            .and_then(|(head, len)| crate::run::npy::read_npy_header(&head, len, &full).ok())
            .and_then(|shape| shape.first().copied());
        return Some(ir::DataSpec {
            source: DataSource::Npy { path, base_dir },
            n,
            dim: Some(dim),
            levels,
            rows,
            loc,
        });
    }
    let Some(spec) = crate::run::data::generator(&callee.name) else {
        let mut names: Vec<&str> = crate::run::data::GENERATORS.to_vec();
        names.push("npy");
        diags.push(E::unknown_generator(
            file,
            callee.span,
            &callee.name,
            &names,
        ));
        return None;
    };
    let accepted: Vec<&str> = std::iter::once("n")
        .chain(spec.params.iter().map(|p| p.name))
        .collect();
    for (k, _, span, _) in &literal_args {
        if !accepted.contains(&k.as_str()) {
            diags.push(E::unknown_argument(file, *span, k, &callee.name, &accepted));
            ok = false;
        }
    }
    // The generator's own validation of its argument values, by drawing a few points (the
    // toy generators are pure computation; the real data sets, read through the cache, are
    // judged at run time). A repeated argument is refused here too. At most 16 points of at
    // most 4096 numbers: bounded time and memory whatever the spec asks for.
    // A `dim` out of its range is reported on its own below.
    let small = literal_args.iter().all(|(k, v, ..)| match (k.as_str(), v) {
        ("dim", Value::Number(d)) => d.fract() == 0.0 && (1.0..=4096.0).contains(d),
        ("max", Value::Number(m)) => *m <= 4096.0,
        _ => true,
    });
    if ok && small && !spec.real_data && spec.splits.is_empty() {
        let written: Vec<(String, Value)> = literal_args
            .iter()
            .map(|(k, v, ..)| (k.clone(), v.clone()))
            .collect();
        if let Err((param, why)) = spec.check_args(&written) {
            let span = param
                .and_then(|p| literal_args.iter().rev().find(|(k, ..)| k == p))
                .map_or(value.span, |(_, _, _, span)| *span);
            diags.push(E::bad_data_argument(file, span, &why));
            ok = false;
        }
    }
    let max_arg = literal_args
        .iter()
        .find_map(|(k, v, _, span)| match (k.as_str(), v) {
            ("max", Value::Number(m)) => Some((*m, *span)),
            _ => None,
        });
    if ok && !super::sets::generator_fits(file, callee.span, spec, max_arg, process, diags) {
        ok = false;
    }
    let dim = match literal_args.iter().find(|(k, ..)| k == "dim") {
        Some((_, Value::Number(d), _, span)) => {
            // The generator's own bound (`run::data`), refused here rather than at run time.
            if d.fract() != 0.0 || *d < 1.0 || *d > (1u64 << 20) as f64 {
                diags.push(E::out_of_range(
                    file,
                    *span,
                    "data.dim",
                    *d,
                    "in [1, 1048576] (a whole number)",
                ));
                ok = false;
            }
            Some(*d as usize)
        }
        // A set generator's rows are padded sets: max × component numbers (its max matches
        // the state's, checked above), which the memory estimate needs.
        _ => match (spec.set_component(), spec.image_shape(), state) {
            (Some(c), _, Some(StateSpace::Set { max, .. })) => Some(max * c),
            (_, Some(([c, h, w], _)), _) => Some(c * h * w),
            _ => Some(2),
        },
    };
    let levels = spec.image_shape().map(|(_, levels)| levels);
    if let (Some(d), Some((_, _, _, span))) = (dim, n_arg) {
        let cap = crate::run::data::MAX_VALUES;
        if ok && n.saturating_mul(d.max(1)) > cap {
            diags.push(E::out_of_range(
                file,
                *span,
                "data.n",
                n as f64,
                &format!(
                    "at most {} for {d}-D data (a generator draws at most {cap} numbers)",
                    cap / d.max(1)
                ),
            ));
            ok = false;
        }
    }
    ok.then(|| ir::DataSpec {
        rows: None,
        source: DataSource::Generator {
            name: callee.name.clone(),
            args: literal_args
                .into_iter()
                .filter(|(k, ..)| k != "n")
                .map(|(k, v, ..)| (k, v))
                .collect(),
        },
        n,
        dim,
        levels,
        loc,
    })
}

/// The numbers per point of the `.npy` file at `path` (relative to the spec's folder), from
/// its header, judged against the process's `state`: `(n,)` is 1-D, `(n, d)` is d-D;
/// `(n, N, d)` only for `state = set(max, of = vec(d))` (see [`super::sets::npy_set_dim`],
/// which also reads the sets of files that are not too large) and `(n, c, h, w)` only for a
/// matching `image` state; an N-D array is never flattened silently.
fn npy_dim(
    file: FileId,
    span: Span,
    path: &str,
    files: &DataFiles,
    state: Option<&StateSpace>,
    diags: &mut Vec<Diagnostic>,
) -> Option<usize> {
    let full = files
        .base_dir
        .as_ref()
        .map_or_else(|| std::path::PathBuf::from(path), |b| b.join(path));
    let shown = full.display().to_string();
    let head = files.loader.read_head(&full, crate::run::npy::HEADER_BYTES);
    let read = head.map(|(head, len)| (crate::run::npy::read_npy_header(&head, len, &full), len));
    let (shape, len) = match read {
        Ok((Ok(shape), len)) => (shape, len),
        Ok((Err(e), _)) => {
            diags.push(E::bad_data_file(file, span, &shown, &e.to_string()));
            return None;
        }
        Err(why) => {
            diags.push(E::missing_data_file(file, span, &shown, &why));
            return None;
        }
    };
    let rows = shape[0];
    if rows < 4 {
        diags.push(E::bad_data_file(
            file,
            span,
            &shown,
            &format!("it holds {rows} points (shape {shape:?}); at least 4 are needed"),
        ));
        return None;
    }
    if let Some(set @ StateSpace::Set { .. }) = state {
        let f = super::sets::SetFile {
            loader: files.loader,
            full: &full,
            shown: &shown,
            shape: &shape,
            len,
        };
        return super::sets::npy_set_dim(file, span, &f, set, diags);
    }
    let point = &shape[1..];
    if state.is_none() && point.len() > 1 {
        return None; // the process has errors of its own (reported); nothing to judge against
    }
    let fits = match (point, state) {
        ([], _) => Some(1),
        ([d], Some(StateSpace::Vector(Some(want)))) if d != want => None,
        ([d], _) => Some(*d),
        (
            [c, h, w],
            Some(StateSpace::Image {
                channels,
                height,
                width,
            }),
        ) if (c, h, w) == (channels, height, width) => Some(c * h * w),
        _ => None,
    };
    match fits {
        Some(0) => {
            diags.push(E::bad_data_file(
                file,
                span,
                &shown,
                &format!("its points have no coordinates (shape {shape:?})"),
            ));
            None
        }
        Some(d) => Some(d),
        None => {
            let state = state.map_or("unknown".to_string(), StateSpace::describe);
            diags.push(E::data_shape(file, span, &shown, &shape, &state));
            None
        }
    }
}

/// A literal argument: a constant number, a list of constants, or a word/string.
fn literal(file: FileId, e: &ast::Expr, diags: &mut Vec<Diagnostic>) -> Option<Value> {
    match &e.kind {
        ExprKind::Str(s) | ExprKind::Ident(s) if s != "pi" => Some(Value::Text(s.clone())),
        ExprKind::List(items) => {
            let mut out = Vec::new();
            for i in items {
                out.push(values::constant(file, i, "list element", diags)?);
            }
            Some(Value::List(out))
        }
        _ => values::constant(file, e, "argument", diags).map(Value::Number),
    }
}

fn check_process_use(
    file: FileId,
    value: &ast::Expr,
    processes: &Processes,
    resolved: &mut BTreeMap<String, String>,
    diags: &mut Vec<Diagnostic>,
) -> Option<ir::Process> {
    let (callee, args): (&ast::Ident, &[ast::Arg]) = match &value.kind {
        ExprKind::Call { callee, args } => (callee, args),
        ExprKind::Ident(name) => {
            // `process = vp` is accepted as `vp()`.
            let ident = ast::Ident {
                name: name.clone(),
                span: value.span,
            };
            return check_process_call(file, &ident, &[], value.span, processes, resolved, diags);
        }
        _ => {
            diags.push(E::bad_process_use(file, value.span));
            return None;
        }
    };
    check_process_call(file, callee, args, value.span, processes, resolved, diags)
}

fn check_process_call(
    file: FileId,
    callee: &ast::Ident,
    args: &[ast::Arg],
    span: Span,
    processes: &Processes,
    resolved: &mut BTreeMap<String, String>,
    diags: &mut Vec<Diagnostic>,
) -> Option<ir::Process> {
    let Some(def) = processes.defs.get(&callee.name) else {
        // A process whose declaration did not parse was reported there already.
        if !processes.broken.contains(&callee.name) {
            let names: Vec<&str> = processes.defs.keys().map(String::as_str).collect();
            diags.push(E::unknown_process(file, callee.span, &callee.name, &names));
        }
        return None;
    };
    let names: Vec<&str> = def.params.iter().map(|p| p.name.as_str()).collect();
    let mut bound: Vec<(String, f64, Span)> = Vec::new();
    let mut ok = true;
    for (i, a) in args.iter().enumerate() {
        let name = match &a.name {
            Some(n) if names.contains(&n.name.as_str()) => n.name.clone(),
            Some(n) => {
                diags.push(E::unknown_argument(
                    file,
                    n.span,
                    &n.name,
                    &callee.name,
                    &names,
                ));
                ok = false;
                continue;
            }
            None => match names.get(i) {
                Some(n) => n.to_string(),
                None => {
                    diags.push(E::too_many_args(
                        file,
                        a.value.span,
                        &callee.name,
                        names.len(),
                    ));
                    ok = false;
                    continue;
                }
            },
        };
        if bound.iter().any(|(n, ..)| *n == name) {
            diags.push(E::duplicate_argument(file, a.value.span, &name));
            ok = false;
            continue;
        }
        match values::constant(file, &a.value, &format!("parameter `{name}`"), diags) {
            Some(v) => bound.push((name, v, a.value.span)),
            None => ok = false,
        }
    }
    // A broken process had its errors reported at its declaration; the call's own arguments
    // are checked above all the same.
    if !ok || def.broken {
        return None;
    }
    let call = Loc { file, span };
    let params = bind_params(def, &bound, call, diags)?;
    resolved.insert("process.name".into(), def.name.clone());
    for (k, v) in &params {
        resolved.insert(format!("process.{k}"), v.to_string());
    }
    let inst = instantiate(def, &params)?;
    let mut local = Vec::new();
    let process = math::check_instance(def, inst, params, &mut local);
    let from_args = !bound.is_empty();
    for d in local {
        // Problems caused by this experiment's arguments also point at the call, and at
        // arguments set on the command line (their nodes have empty spans, see overrides).
        let mut d = if from_args && (d.file != file || d.is_error()) {
            d.with_extra(file, span, "with the parameters given here")
        } else {
            d
        };
        if from_args {
            for (name, _, arg_span) in bound.iter().filter(|b| b.2.is_empty()) {
                d = d.with_extra(file, *arg_span, format!("`{name}` set here"));
            }
        }
        diags.push(d);
    }
    process
}

/// The registry row of a name that passed its choice list.
fn registered<T>(
    file: FileId,
    span: Span,
    what: &str,
    name: &str,
    from_name: fn(&str) -> Option<T>,
    diags: &mut Vec<Diagnostic>,
) -> Option<T> {
    let row = from_name(name);
    if row.is_none() {
        // The choice lists are the registries' names, so this is a bug in difc.
        diags.push(crate::diag_bug(
            file,
            span,
            &format!("{what} `{name}` is accepted but not registered"),
        ));
    }
    row
}

fn check_metrics(
    file: FileId,
    value: &ast::Expr,
    diags: &mut Vec<Diagnostic>,
) -> Option<Vec<ir::MetricKind>> {
    let ExprKind::List(items) = &value.kind else {
        diags.push(E::bad_metrics(file, value.span));
        return None;
    };
    let mut out = Vec::new();
    for item in items {
        let name = values::choice(file, item, "metric", schema::METRICS, diags)?;
        out.push(registered(
            file,
            item.span,
            "metric",
            &name,
            ir::MetricKind::from_name,
            diags,
        )?);
    }
    Some(out)
}

/// The training targets a process's family trains: a jump process regresses its generalized
/// score only (`compile::jumps`), so `eps` and `x0` are refused where they are written and
/// its default target is `score`; Gaussian processes train all three.
fn check_target(
    file: FileId,
    stmts: &BTreeMap<&str, &ast::Stmt>,
    loss: &mut BTreeMap<String, String>,
    process: &ir::Process,
    resolved: &mut BTreeMap<String, String>,
    diags: &mut Vec<Diagnostic>,
) {
    if loss.get("precondition").map(String::as_str) == Some("edm") {
        check_precondition(file, stmts, loss, process, resolved, diags);
    }
    let Some(jumps) = &process.jumps else {
        return;
    };
    match written(stmts, "loss", "target") {
        Some(expr) => {
            let target = loss.get("target").cloned().unwrap_or_default();
            if target != "score" {
                diags.push(E::target_unsupported(
                    file,
                    expr.span,
                    &target,
                    &process.name,
                    jumps.loc,
                ));
            }
        }
        None => {
            loss.insert("target".into(), "score".into());
            resolved.insert("loss.target".into(), "score".into());
        }
    }
}

/// `precondition = edm` scales a Gaussian marginal's network and predicts x_0: it is refused
/// on other processes and with another written target, and makes `x0` the default target.
fn check_precondition(
    file: FileId,
    stmts: &BTreeMap<&str, &ast::Stmt>,
    loss: &mut BTreeMap<String, String>,
    process: &ir::Process,
    resolved: &mut BTreeMap<String, String>,
    diags: &mut Vec<Diagnostic>,
) {
    let Some(at) = written(stmts, "loss", "precondition") else {
        return;
    };
    let kind = if process.jumps.is_some() {
        Some("a jump process")
    } else if process.delete.is_some() {
        Some("a trans-dimensional process")
    } else if process.transform.is_some() {
        Some("a Neural Diffusion Model (its transform has its own objective)")
    } else if matches!(process.state, ir::StateSpace::Set { .. }) {
        Some("a set process")
    } else {
        None
    };
    if let Some(kind) = kind {
        diags.push(E::precondition_unsupported(
            file,
            at.span,
            &process.name,
            kind,
        ));
        return;
    }
    match written(stmts, "loss", "target") {
        Some(expr) if loss.get("target").map(String::as_str) != Some("x0") => {
            let target = loss.get("target").cloned().unwrap_or_default();
            diags.push(E::precondition_target(file, expr.span, &target));
        }
        Some(_) => {}
        None => {
            loss.insert("target".into(), "x0".into());
            resolved.insert("loss.target".into(), "x0".into());
        }
    }
}

/// The value written for `block.key`, when the spec (or a `--set`) wrote one.
fn written<'a>(
    stmts: &BTreeMap<&str, &'a ast::Stmt>,
    block: &str,
    key: &str,
) -> Option<&'a ast::Expr> {
    let StmtKind::Block { block: body, .. } = &stmts.get(block)?.kind else {
        return None;
    };
    body.stmts.iter().find_map(|s| match &s.kind {
        StmtKind::Assign { key: k, value } if k.len() == 1 && k[0].name == key => Some(value),
        _ => None,
    })
}

/// `sample.t_end` and `loss.t_min` are times of the process: inside its interval, below the
/// horizon (sampling from the horizon down to it, training on times above it).
fn check_times(
    file: FileId,
    stmts: &BTreeMap<&str, &ast::Stmt>,
    sample: &Option<BTreeMap<String, String>>,
    loss: &Option<BTreeMap<String, String>>,
    process: &ir::Process,
    diags: &mut Vec<Diagnostic>,
) {
    let (t0, t1) = process.time;
    for (block, key, values) in [("sample", "t_end", sample), ("loss", "t_min", loss)] {
        let Some(v) = values
            .as_ref()
            .and_then(|m| m.get(key))
            .and_then(|v| v.parse::<f64>().ok())
        else {
            continue;
        };
        let Some(expr) = written(stmts, block, key) else {
            continue;
        };
        if v < t0 || v >= t1 {
            diags.push(E::time_outside_interval(
                file,
                expr.span,
                &format!("{block}.{key}"),
                v,
                process,
            ));
        }
    }
}

fn check_dimensions(
    file: FileId,
    data: &ir::DataSpec,
    process: &ir::Process,
    diags: &mut Vec<Diagnostic>,
) {
    let (Some(data_dim), Some(state_dim)) = (data.dim, process.state.dim()) else {
        return;
    };
    if data_dim != state_dim {
        if let StateSpace::Set { .. } = process.state {
            return;
        }
        diags.push(E::dimension_mismatch(
            file,
            data.loc.span,
            data_dim,
            &process.state.describe(),
            process.loc,
        ));
    }
}

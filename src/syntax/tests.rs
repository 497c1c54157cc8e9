use super::ast::*;
use super::*;
use crate::diag::FileId;

fn parse_ok(src: &str) -> File {
    let (file, diags) = parse_file(FileId(0), src);
    assert!(diags.is_empty(), "unexpected diagnostics: {diags:#?}");
    file
}

fn first_expr(src: &str) -> Expr {
    parse_expr(FileId(0), src).expect("expression parses")
}

fn show(e: &Expr) -> String {
    match &e.kind {
        ExprKind::Number { text, .. } => text.clone(),
        ExprKind::Str(s) => format!("{s:?}"),
        ExprKind::Ident(n) => n.clone(),
        ExprKind::Neg(a) => format!("(-{})", show(a)),
        ExprKind::Binary(op, a, b) => format!("({} {} {})", show(a), op.symbol(), show(b)),
        ExprKind::Call { callee, args } => {
            let args: Vec<String> = args
                .iter()
                .map(|a| match &a.name {
                    Some(n) => format!("{}={}", n.name, show(&a.value)),
                    None => show(&a.value),
                })
                .collect();
            format!("{}({})", callee.name, args.join(", "))
        }
        ExprKind::List(items) => format!(
            "[{}]",
            items.iter().map(show).collect::<Vec<_>>().join(", ")
        ),
    }
}

#[test]
fn precedence_and_associativity() {
    assert_eq!(show(&first_expr("1 + 2 * 3")), "(1 + (2 * 3))");
    assert_eq!(show(&first_expr("1 - 2 - 3")), "((1 - 2) - 3)");
    assert_eq!(show(&first_expr("2 ^ 3 ^ 2")), "(2 ^ (3 ^ 2))");
    assert_eq!(show(&first_expr("-x ^ 2")), "(-(x ^ 2))");
    assert_eq!(show(&first_expr("2 ^ -t")), "(2 ^ (-t))");
    assert_eq!(show(&first_expr("a / b * c")), "((a / b) * c)");
    assert_eq!(show(&first_expr("1.5e-3 + .5")), "(1.5e-3 + .5)");
    assert_eq!(show(&first_expr("f(a = 1, 2)")), "f(a=1, 2)");
    assert_eq!(show(&first_expr("[0, T,]")), "[0, T]");
}

#[test]
fn spans_cover_the_source() {
    let e = first_expr("exp(-0.5 * t)");
    assert_eq!((e.span.start, e.span.end), (0, 13));
    let ExprKind::Call { args, .. } = &e.kind else {
        panic!("call expected")
    };
    assert_eq!((args[0].value.span.start, args[0].value.span.end), (4, 12));
}

#[test]
fn items_and_statements() {
    let f = parse_ok(
        "use stdlib.vp\nuse \"other.diff\"\n// comment\nprocess p(a = 1, b) {\n  time = [0, 1]\n  beta(t) = a + t\n  jumps { rate(t) = 1; amplitude ~ laplace(var = 2) }\n  transform F(x, t) = learned(mlp(width = 8))\n}\nexperiment e { train { steps = 10, batch = 4 } process = p(b = 2) }\n",
    );
    assert_eq!(f.items.len(), 4);
    let Item::Process(p) = &f.items[2] else {
        panic!("process expected")
    };
    assert_eq!(p.params.len(), 2);
    assert_eq!(p.body.stmts.len(), 4);
    assert!(matches!(
        p.body.stmts[3].kind,
        StmtKind::Def {
            transform: true,
            ..
        }
    ));
    let Item::Experiment(e) = &f.items[3] else {
        panic!("experiment expected")
    };
    assert!(matches!(e.body.stmts[1].kind, StmtKind::Assign { .. }));
}

#[test]
fn every_broken_item_is_reported() {
    let src = "process a() {\n  time = \n}\nprocess b() { time = [0, 1] }\nexperiment c {\n  data = (1 +\n}\n";
    let (file, diags) = parse_file(FileId(0), src);
    assert_eq!(diags.len(), 2, "{diags:#?}");
    assert_eq!(file.items.len(), 1);
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let deep = format!(
        "process p() {{ x = {}1{} }}",
        "(".repeat(100_000),
        ")".repeat(100_000)
    );
    let (_, diags) = parse_file(FileId(0), &deep);
    assert_eq!(diags[0].code, "difc::syntax::too_deep");
    let chain = format!("process p() {{ x = {}1 }}", "1 + ".repeat(100_000));
    let (_, diags) = parse_file(FileId(0), &chain);
    assert_eq!(diags[0].code, "difc::syntax::too_deep");
    let negs = format!("process p() {{ x = {}1 }}", "-".repeat(100_000));
    let (_, diags) = parse_file(FileId(0), &negs);
    assert_eq!(diags[0].code, "difc::syntax::too_deep");
}

#[test]
fn block_comments_hide_item_keywords_and_operators() {
    let file = parse_ok(
        "process p {\n    time = [0, 1]\n    /*\nprocess q\n    */\n    /* drift(x, t) = -x */\n    drift(x, t) = -x // process r\n    diffusion(t) = 1\n}\n",
    );
    assert_eq!(file.items.len(), 1);
}

#[test]
fn unclosed_block_comment_is_reported_at_its_start() {
    let src = "process p {\n    time = [0, 1]\n    /* drift(x, t) = -x\n}\n";
    let (_, diags) = parse_file(FileId(0), src);
    assert_eq!(diags.len(), 1, "{diags:#?}");
    assert_eq!(diags[0].code, "difc::syntax::unclosed_comment");
    assert_eq!(diags[0].message, "unclosed block comment");
}

#[test]
fn leading_byte_order_mark_is_skipped() {
    let file = parse_ok("\u{FEFF}process p {\n    time = [0, 1]\n}\n");
    assert_eq!(file.items.len(), 1);
}

#[test]
fn malformed_number_literals_say_what_is_wrong() {
    for (lit, words) in [
        ("10_000", "digit separators"),
        ("0x2A", "hexadecimal"),
        ("2e-", "exponent"),
        ("1.5e", "exponent"),
    ] {
        let err = parse_expr(FileId(0), lit).expect_err(lit);
        assert!(err.message.contains(words), "{lit}: {}", err.message);
    }
    for ok in ["10000", "2e-3", "1.5E+2", "x_1 + 2", "exp(-t)", ".5"] {
        assert!(parse_expr(FileId(0), ok).is_ok(), "{ok}");
    }
}

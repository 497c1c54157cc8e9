//! User words for grammar rules and hand-written help for syntax errors. Every rule that pest
//! can report must have a name here (a test walks all rules).

use super::parse::Rule;

/// The name of a rule as users should read it; `None` for rules never shown.
pub fn rule_name(rule: Rule) -> Option<&'static str> {
    Some(match rule {
        Rule::EOI => "end of file",
        Rule::chunk | Rule::use_decl | Rule::process_decl | Rule::experiment_decl => {
            "`use`, `process` or `experiment`"
        }
        Rule::kw_use => "`use`",
        Rule::kw_process => "`process`",
        Rule::kw_experiment => "`experiment`",
        Rule::kw_transform => "`transform`",
        Rule::module_path => "a module path like `stdlib.vp`",
        Rule::params => "a parameter list `(name = value, ...)`",
        Rule::param => "a parameter",
        Rule::block => "a block `{ ... }`",
        Rule::transform_def
        | Rule::func_def
        | Rule::dist_stmt
        | Rule::block_stmt
        | Rule::assign_stmt => "a statement",
        Rule::formals => "an argument list like `(x, t)`",
        Rule::dotted => "a key",
        Rule::expr
        | Rule::product
        | Rule::unary
        | Rule::power
        | Rule::paren
        | Rule::call
        | Rule::list
        | Rule::arg
        | Rule::named_arg => "an expression",
        Rule::add_op => "an operator",
        Rule::mul_op => "an operator",
        Rule::neg => "`-`",
        Rule::number => "a number",
        Rule::string | Rule::string_inner => "a string",
        Rule::ident => "a name",
        Rule::item => "`use`, `process` or `experiment`",
        Rule::stmt => "a statement",
        Rule::atom => "an expression",
        Rule::WHITESPACE | Rule::COMMENT | Rule::ident_char => return None,
    })
}

/// A short description of the text at the error position and its length in bytes.
pub fn describe_found(rest: &str) -> (String, usize) {
    let Some(c) = rest.chars().next() else {
        return ("end of file".to_string(), 0);
    };
    if c.is_ascii_alphanumeric() || c == '_' || c == '.' {
        let word: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '.')
            .collect();
        let len = word.len();
        return (format!("`{word}`"), len);
    }
    let shown = match c {
        '\n' => "end of line".to_string(),
        '"' => "a string".to_string(),
        c if c.is_control() => format!("control character U+{:04X}", c as u32),
        c => format!("`{c}`"),
    };
    (shown, c.len_utf8())
}

/// One sentence on how to fix a syntax error, chosen from what was expected and found.
pub fn help_for(expected: &[&str], rest: &str) -> String {
    let found = rest.chars().next();
    let expects = |s: &str| expected.contains(&s);
    if found == Some('}') && expects("an expression") {
        return "every definition needs a value after `=`, e.g. `sigma2 = 1.0`".to_string();
    }
    if expects("`use`, `process` or `experiment`") {
        return "a file holds `use` imports, `process NAME(...) { ... }` and `experiment NAME { ... }`"
            .to_string();
    }
    if expects("a block `{ ... }`") {
        return "a process or experiment body goes between braces: `process vp() { ... }`"
            .to_string();
    }
    if found == Some('=') && expects("an expression") {
        return "there is one `=` too many here; a definition is `name = value` or `f(t) = expression`"
            .to_string();
    }
    if found == Some('*') && expects("an expression") {
        return "write powers as `x^2`, not `x**2`".to_string();
    }
    if expects("an expression") {
        return "an expression is a number, a name, a call like `exp(-t)`, or operators `+ - * / ^` between them"
            .to_string();
    }
    if expects("a name") {
        return "names start with a letter or `_` and continue with letters, digits or `_`"
            .to_string();
    }
    "check the statement against the examples in specs/ and the README".to_string()
}

//! Loading a spec and everything it imports: `use stdlib.NAME` (embedded) and
//! `use "relative/file.diff"`, with cycle detection. File access goes through [`Loader`], so
//! the checker itself does no IO.

use super::error as E;
use crate::diag::{Diagnostics, FileId, SourceFile, SourceMap, Span};
use crate::syntax::ast::{self, Item, UseTarget};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The standard library, embedded so that difc works from any directory.
pub const STDLIB: &[(&str, &str)] = &[
    ("vp", include_str!("../../stdlib/vp.diff")),
    ("ve", include_str!("../../stdlib/ve.diff")),
    ("subvp", include_str!("../../stdlib/subvp.diff")),
    ("ou", include_str!("../../stdlib/ou.diff")),
    (
        "jump_laplace",
        include_str!("../../stdlib/jump_laplace.diff"),
    ),
    ("jdl", include_str!("../../stdlib/jdl.diff")),
    ("ndm", include_str!("../../stdlib/ndm.diff")),
    ("transdim", include_str!("../../stdlib/transdim.diff")),
];

/// The checker's window on the machine: reads files, and says how much memory a run may use.
pub trait Loader {
    /// The bytes of `path`, or a message saying why not.
    fn read(&self, path: &Path) -> Result<Vec<u8>, String>;

    /// At most the first `max` bytes of `path` and the file's length in bytes (data files:
    /// the checker reads their headers only).
    fn read_head(&self, path: &Path, max: usize) -> Result<(Vec<u8>, u64), String> {
        let mut bytes = self.read(path)?;
        let len = bytes.len() as u64;
        bytes.truncate(max);
        Ok((bytes, len))
    }

    /// The memory a run may use, in bytes (specs estimated above it are refused). The
    /// default is [`super::resources::DEFAULT_LIMIT`], so tests do not depend on the machine.
    fn memory_limit(&self) -> u64 {
        super::resources::DEFAULT_LIMIT
    }
}

/// Reads from the file system.
pub struct FsLoader;

impl Loader for FsLoader {
    fn read(&self, path: &Path) -> Result<Vec<u8>, String> {
        std::fs::read(path).map_err(|e| e.to_string())
    }

    fn read_head(&self, path: &Path, max: usize) -> Result<(Vec<u8>, u64), String> {
        use std::io::Read;
        let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
        let meta = file.metadata().map_err(|e| e.to_string())?;
        if meta.is_dir() {
            return Err("it is a folder, not a file".into());
        }
        let mut head = Vec::new();
        file.take(max as u64)
            .read_to_end(&mut head)
            .map_err(|e| e.to_string())?;
        Ok((head, meta.len()))
    }

    /// `DIFC_MAX_MEMORY` when set (e.g. `64GiB`), else the machine's memory, else 8 GiB.
    fn memory_limit(&self) -> u64 {
        std::env::var("DIFC_MAX_MEMORY")
            .ok()
            .and_then(|v| super::resources::parse_bytes(&v))
            .or_else(super::resources::machine_memory)
            .unwrap_or(super::resources::DEFAULT_LIMIT)
    }
}

/// Every file of a compilation with its syntax tree and the files it imports.
#[derive(Default)]
pub struct Loaded {
    pub asts: HashMap<FileId, ast::File>,
    /// Files in the order their items should be checked (imports first).
    pub order: Vec<FileId>,
}

/// Adds a file's text to the source map, reporting invalid UTF-8 at the first bad byte.
pub fn add_source(
    sources: &mut SourceMap,
    name: String,
    path: Option<PathBuf>,
    bytes: Vec<u8>,
    diags: &mut Diagnostics,
) -> FileId {
    match String::from_utf8(bytes) {
        Ok(text) => sources.add(SourceFile::new(name, path, text)),
        Err(err) => {
            let at = err.utf8_error().valid_up_to();
            let text = String::from_utf8_lossy(err.as_bytes()).into_owned();
            let id = sources.add(SourceFile::new(name, path, text));
            // In the lossy text the bad byte became U+FFFD (3 bytes) at the same offset.
            diags.push(E::not_utf8(id, Span::new(at, at + 3)));
            id
        }
    }
}

/// Parses `root` and, transitively, everything it imports.
pub fn load_all(
    sources: &mut SourceMap,
    roots: &[FileId],
    loader: &dyn Loader,
    diags: &mut Diagnostics,
) -> Loaded {
    let mut loaded = Loaded::default();
    let mut stack = Vec::new();
    for &root in roots {
        visit(sources, root, loader, diags, &mut loaded, &mut stack);
    }
    loaded
}

fn visit(
    sources: &mut SourceMap,
    file: FileId,
    loader: &dyn Loader,
    diags: &mut Diagnostics,
    loaded: &mut Loaded,
    stack: &mut Vec<FileId>,
) {
    if loaded.asts.contains_key(&file) {
        return;
    }
    let (ast, parse_diags) = crate::syntax::parse_file(file, &sources.get(file).text);
    // A file of only comments declares nothing either; a file whose items failed to parse
    // has its syntax errors instead.
    if ast.items.is_empty() && parse_diags.is_empty() {
        diags.push(E::empty_file(file));
    }
    diags.extend(parse_diags);
    let uses: Vec<ast::UseDecl> = ast
        .items
        .iter()
        .filter_map(|i| match i {
            Item::Use(u) => Some(u.clone()),
            _ => None,
        })
        .collect();
    loaded.asts.insert(file, ast);
    stack.push(file);
    for u in uses {
        if let Some(target) = resolve_use(sources, file, &u, loader, diags) {
            if let Some(pos) = stack.iter().position(|f| *f == target) {
                let mut names: Vec<String> = stack[pos..]
                    .iter()
                    .map(|f| sources.get(*f).name.clone())
                    .collect();
                names.push(sources.get(target).name.clone());
                diags.push(E::import_cycle(file, u.span, &names));
                continue;
            }
            visit(sources, target, loader, diags, loaded, stack);
        }
    }
    stack.pop();
    loaded.order.push(file);
}

/// Finds (loading if needed) the file a `use` names.
fn resolve_use(
    sources: &mut SourceMap,
    from: FileId,
    u: &ast::UseDecl,
    loader: &dyn Loader,
    diags: &mut Diagnostics,
) -> Option<FileId> {
    match &u.target {
        UseTarget::Module(parts) => {
            let names: Vec<&str> = parts.iter().map(|p| p.name.as_str()).collect();
            if names.len() != 2 || names[0] != "stdlib" {
                diags.push(E::bad_module_path(from, u.span, &names.join(".")));
                return None;
            }
            let module = names[1];
            let Some((_, text)) = STDLIB.iter().find(|(n, _)| *n == module) else {
                let known: Vec<&str> = STDLIB.iter().map(|(n, _)| *n).collect();
                diags.push(E::unknown_stdlib(from, parts[1].span, module, &known));
                return None;
            };
            let name = format!("stdlib/{module}.diff");
            if let Some(id) = sources.find_name(&name) {
                return Some(id);
            }
            Some(add_source(
                sources,
                name,
                None,
                text.as_bytes().to_vec(),
                diags,
            ))
        }
        UseTarget::File(rel, span) => {
            let base = sources
                .get(from)
                .path
                .as_ref()
                .and_then(|p| p.parent().map(Path::to_path_buf))
                .unwrap_or_default();
            let path = normalize(&base.join(rel));
            if let Some(id) = sources.find_path(&path) {
                return Some(id);
            }
            match loader.read(&path) {
                Ok(bytes) => {
                    let name = path.display().to_string();
                    Some(add_source(sources, name, Some(path), bytes, diags))
                }
                Err(why) => {
                    diags.push(E::missing_import(
                        from,
                        *span,
                        &path.display().to_string(),
                        &why,
                    ));
                    None
                }
            }
        }
    }
}

/// Removes `.` and `a/..` components so the same file is recognised by one path.
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

//! Imports run down the data path: every `crate::` reference in `src/`
//! names a module on a lower layer than the module it appears in (or the
//! same module). The layers, top to bottom, are the table in `src/lib.rs`'s
//! module doc; this test holds the code to it and prints the import graph
//! it found (`cargo test --test layering -- --nocapture`).
// Test code: an unwrap is an assertion, and helpers are `pub` for the
// files that share them.
#![allow(clippy::unwrap_used, unreachable_pub)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level modules by layer, top first. A module may use modules on
/// later lines only; modules on one line may not use each other.
const LAYERS: &[&[&str]] = &[
    &["cli"],
    &["demo"],
    &["app"],
    &["admin"],
    &["server"],
    &["proxy"],
    &["auth", "resume"],
    &["body"],
    &["upstream"],
    &["cluster"],
    &["telemetry"],
    &["usage"],
    &["dialect"],
    &["sse", "timer"],
    &["config"],
    &["error", "json", "shutdown"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`src/proxy/mod.rs` -> `proxy`).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_owned()
}

/// `crate::NAME` references in code: comment lines (doc links included)
/// are left out, and so are test-only files and modules.
fn crate_refs(text: &str) -> BTreeSet<String> {
    let mut refs = BTreeSet::new();
    let mut lines = text.lines().map(str::trim_start).peekable();
    while let Some(code) = lines.next() {
        if code.starts_with("//") {
            continue;
        }
        if code.starts_with("#[cfg(test)]") {
            // An inline test module runs to the end of the file (clippy's
            // items_after_test_module); any other test-only item is one line.
            match lines.next() {
                Some(next) if next.starts_with("mod ") && next.ends_with('{') => break,
                _ => continue,
            }
        }
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let name: String = rest[at + 7..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            refs.insert(name);
            rest = &rest[at + 7..];
        }
    }
    refs
}

fn is_test_file(file: &Path) -> bool {
    file.file_name().is_some_and(|n| n == "tests.rs")
        || file.components().any(|c| c.as_os_str() == "tests")
}

#[test]
fn imports_run_down_the_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut wrong = Vec::new();
    for file in &files {
        let module = module_of(&src, file);
        if matches!(module.as_str(), "lib" | "main") || is_test_file(file) {
            continue;
        }
        let from = layer_of(&module)
            .unwrap_or_else(|| panic!("module `{module}` is in no layer of LAYERS"));
        let text = std::fs::read_to_string(file).unwrap();
        for used in crate_refs(&text) {
            if used == module {
                continue;
            }
            graph
                .entry(module.clone())
                .or_default()
                .insert(used.clone());
            let Some(to) = layer_of(&used) else {
                wrong.push(format!("{}: crate::{used} is in no layer", file.display()));
                continue;
            };
            if to <= from {
                wrong.push(format!(
                    "{}: `{module}` (layer {from}) uses `{used}` (layer {to}), against the data path",
                    file.display()
                ));
            }
        }
    }
    for (module, uses) in &graph {
        println!(
            "{module} -> {}",
            uses.iter().cloned().collect::<Vec<_>>().join(" ")
        );
    }
    assert!(
        wrong.is_empty(),
        "imports against the layers:\n{}",
        wrong.join("\n")
    );
}

/// Inside `upstream/`, the HTTP/1.1 connection code knows nothing of the
/// pool: the pool hands a connection in and takes it back through a
/// check-in handle.
#[test]
fn the_h1_codec_does_not_reach_into_the_pool() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/upstream/h1");
    let mut files = Vec::new();
    rust_files(&dir, &mut files);
    for file in files.iter().filter(|f| !is_test_file(f)) {
        let text = std::fs::read_to_string(file).unwrap();
        for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
            assert!(
                !line.contains("pool::") && !line.contains("super::super::pool"),
                "{}: the h1 codec names the pool: {line}",
                file.display()
            );
        }
    }
}

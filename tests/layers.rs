//! The layers of `src/` import downwards only: `core` uses neither `operator`
//! nor `commands`, and `operator` does not use `commands`. Also, `core` does
//! no I/O: it names no client, runtime, file system or network API.
//!
//! Paths are read from the source text: every `crate::<layer>` (in `use`
//! lists, `crate::{<layer>::…}` groups, and paths in code), and every
//! `super::` chain that climbs out of the layer's folder.

use std::{
    fs,
    path::{Path, PathBuf},
};

/// Every `.rs` file below `dir`.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// The source of a layer: its module file and everything in its folder.
fn layer(name: &str) -> Vec<PathBuf> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = vec![src.join(format!("{name}.rs"))];
    files.extend(sources(&src.join(name)));
    files
}

/// The text of a file without its comments, so prose may name the layers.
fn code(path: &Path) -> String {
    strip_comments(&fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("//") {
            rest = after.find('\n').map_or("", |end| &after[end..]);
        } else if let Some(after) = rest.strip_prefix("/*") {
            rest = after.find("*/").map_or("", |end| &after[end + 2..]);
        } else {
            let c = rest.chars().next().unwrap();
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// The crate-relative paths a file names: `crate::a::b` as `a::b`, and each
/// item of a `crate::{a::b, c}` group.
fn crate_paths(code: &str) -> Vec<String> {
    let compact: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    let mut paths = Vec::new();
    for (at, _) in compact.match_indices("crate::") {
        let rest = &compact[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let end = group
                .char_indices()
                .find(|&(_, c)| {
                    depth += match c {
                        '{' => 1,
                        '}' => -1,
                        _ => 0,
                    };
                    depth == 0
                })
                .map_or(group.len(), |(i, _)| i);
            let mut depth = 0;
            let mut item = String::new();
            for c in group[..end].chars().chain([',']) {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        // A trailing comma leaves nothing after it.
                        if !item.is_empty() {
                            paths.push(std::mem::take(&mut item));
                        }
                        continue;
                    }
                    _ => {}
                }
                item.push(c);
            }
        } else {
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(rest.len());
            paths.push(rest[..end].to_string());
        }
    }
    paths
}

/// How deep a file sits below `src/<layer>/` (0 for `src/<layer>.rs` and
/// the files directly in its folder, whose `super` is the layer itself).
fn depth_in_layer(path: &Path, layer: &str) -> usize {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    match path.strip_prefix(src.join(layer)) {
        // src/<layer>/a.rs is module <layer>::a: `super` is the layer.
        Ok(relative) => relative.components().count(),
        // src/<layer>.rs is the layer itself: `super` is the crate.
        Err(_) => 0,
    }
}

/// Where a file's imports break the rule: each path it names in `forbidden`
/// layers, directly or by climbing out with `super`.
fn violations(layer_name: &str, forbidden: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for file in layer(layer_name) {
        let code = code(&file);
        for path in crate_paths(&code) {
            let first = path.split("::").next().unwrap_or_default();
            if forbidden.contains(&first) {
                found.push(format!("{}: crate::{path}", file.display()));
            }
        }
        // `super::` repeated more times than the file is deep leaves the layer.
        let compact: String = code.chars().filter(|c| !c.is_whitespace()).collect();
        let depth = depth_in_layer(&file, layer_name);
        for (at, _) in compact.match_indices("super::") {
            let before = &compact[..at];
            if before.ends_with("super::") {
                continue;
            }
            let climbs = compact.as_bytes()[at..]
                .chunks(7)
                .take_while(|chunk| *chunk == b"super::")
                .count();
            if climbs > depth {
                found.push(format!(
                    "{}: {} climbs out of `{layer_name}`",
                    file.display(),
                    "super::".repeat(climbs)
                ));
            }
        }
    }
    found
}

#[test]
fn the_core_uses_neither_the_operator_nor_the_commands() {
    let found = violations("core", &["operator", "commands"]);
    assert!(
        found.is_empty(),
        "the core imports a layer above it:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_operator_does_not_use_the_commands() {
    let found = violations("operator", &["commands"]);
    assert!(
        found.is_empty(),
        "the operator imports the commands:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_core_does_no_io() {
    // What would let the core reach the network, the file system, a clock,
    // the environment or an async runtime.
    const IO: [&str; 12] = [
        "kube::Client",
        "kube::Api",
        "kube::runtime",
        "kube::{Api",
        "kube::{Client",
        "tokio",
        "std::fs",
        "std::net",
        "std::env",
        "std::process",
        "Timestamp::now",
        "SystemTime",
    ];
    let mut found = Vec::new();
    for file in layer("core") {
        let compact: String = code(&file).chars().filter(|c| !c.is_whitespace()).collect();
        for io in IO {
            if compact.contains(io) {
                found.push(format!("{}: {io}", file.display()));
            }
        }
    }
    assert!(found.is_empty(), "the core does I/O:\n{}", found.join("\n"));
}

#[test]
fn the_check_sees_each_form_of_path() {
    let source = "use crate::{\n    core::api,\n    operator::metrics::{A, B},\n};\nfn f() { crate::commands::cli::main() }";
    assert_eq!(
        crate_paths(source),
        [
            "core::api",
            "operator::metrics::{A,B}",
            "commands::cli::main"
        ]
    );
    let stripped = strip_comments("// crate::operator\nlet a = 1; /* crate::commands */");
    assert_eq!(stripped.trim(), "let a = 1;");
}

//! The folders of `runtime/src` import in one direction: each layer below may use only the
//! layers before it, never one beside it or after it. A `crate::<module>` path anywhere in a
//! module's files (a `use`, or a path written inline) counts as an import.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// Lowest first. Modules in one layer do not import each other.
const LAYERS: &[&[&str]] = &[
    &["config"],
    &["connector"],
    &["status", "redact", "pem", "tls_failure"],
    &["http_client"],
    &["logging", "kafka", "wasm", "format"],
    &["task", "kit"],
    &["worker"],
    &["admin"],
];

fn rank(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every `crate::name` in `text`, with its line number.
fn crate_paths(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            let before = rest[..at].chars().next_back();
            rest = &rest[at + "crate::".len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue; // e.g. `wasmconnect_crate::`
            }
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_' || c.is_ascii_digit())
                .collect();
            if !name.is_empty() {
                found.push((n + 1, name));
            }
        }
    }
    found
}

#[test]
fn folders_import_in_one_direction() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut wrong = Vec::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    for file in files {
        let relative = file.strip_prefix(&src).unwrap();
        let first = relative
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let module = first.trim_end_matches(".rs").to_string();
        if module == "lib" || module == "main" {
            continue; // the roots: they wire everything
        }
        let Some(own) = rank(&module) else {
            wrong.push(format!(
                "{}: module `{module}` has no layer in LAYERS",
                relative.display()
            ));
            continue;
        };
        *seen.entry(module.clone()).or_default() += 1;
        for (line, used) in crate_paths(&fs::read_to_string(&file).unwrap()) {
            if used == module {
                continue;
            }
            match rank(&used) {
                Some(theirs) if theirs < own => {}
                Some(_) => wrong.push(format!(
                    "{}:{line}: `{module}` imports `{used}`, which is not below it",
                    relative.display()
                )),
                None => wrong.push(format!(
                    "{}:{line}: `{module}` imports `{used}`, which has no layer in LAYERS",
                    relative.display()
                )),
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layers:\n{}",
        wrong.join("\n")
    );
    for layer in LAYERS {
        for module in *layer {
            assert!(
                seen.contains_key(*module),
                "LAYERS names `{module}`, which src/ lacks"
            );
        }
    }
}

#[test]
fn an_upward_import_is_found() {
    let found = crate_paths("use crate::worker::Call; let x = crate::task::f(); my_crate::no");
    assert_eq!(
        found,
        vec![(1, "worker".to_string()), (1, "task".to_string())]
    );
}

/// Past this many lines a file of `runtime/src` says at its top why it is one file.
const LONG_FILE: usize = 620;

#[test]
fn no_file_is_long_without_saying_why() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let long: Vec<String> = files
        .iter()
        .filter_map(|file| {
            let text = fs::read_to_string(file).unwrap();
            let lines = text.lines().count();
            let head: String = text.lines().take(12).collect::<Vec<_>>().join("\n");
            (lines > LONG_FILE && !head.contains("One file because")).then(|| {
                format!(
                    "{}: {lines} lines",
                    file.strip_prefix(&src).unwrap().display()
                )
            })
        })
        .collect();
    assert!(
        long.is_empty(),
        "files past {LONG_FILE} lines whose top does not say \"One file because ...\":\n{}",
        long.join("\n")
    );
}

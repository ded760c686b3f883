//! `wasmconnect plugin inspect`: what a plugin file is, in a few lines an author can read.

use std::fmt::Write;
use std::path::Path;

use crate::connector::spec::ConfigKey;
use crate::wasm::{CONTRACT_PACKAGE, CONTRACT_VERSION, Inspection};

/// The inspection as text: file, kind and contract, whether this runtime loads it, the
/// imports it needs (the contract's first, then WASI's), its other exports and its config
/// keys.
pub fn render(path: &Path, inspection: &Inspection) -> String {
    let mut out = String::new();
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let _ = writeln!(
        out,
        "plugin:    {} ({} KiB)",
        path.display(),
        size.div_ceil(1024)
    );
    match &inspection.description {
        Some(d) => {
            let _ = writeln!(out, "kind:      {}", d.kind);
            let _ = writeln!(
                out,
                "contract:  {CONTRACT_PACKAGE}@{} (this runtime implements {CONTRACT_VERSION})",
                d.version
            );
        }
        None => {
            let _ = writeln!(out, "kind:      none (not a wasmconnect plugin)");
        }
    }
    let _ = match &inspection.loads {
        Ok(()) => writeln!(out, "loads:     yes"),
        Err(why) => writeln!(out, "loads:     no: it {why}"),
    };
    let (ours, others): (Vec<&String>, Vec<&String>) = inspection
        .imports
        .iter()
        .partition(|i| i.starts_with(CONTRACT_PACKAGE));
    let _ = writeln!(out, "imports:");
    for import in ours.iter().chain(&others) {
        let _ = writeln!(out, "  {import}");
    }
    let _ = writeln!(out, "exports:");
    for export in &inspection.exports {
        let _ = writeln!(out, "  {export}");
    }
    match &inspection.spec {
        None => {
            let _ = writeln!(out, "config:    not described by the plugin");
        }
        Some(keys) if keys.is_empty() => {
            let _ = writeln!(out, "config:    no keys");
        }
        Some(keys) => {
            let _ = writeln!(out, "config:");
            let width = keys.iter().map(|k| k.name.len()).max().unwrap_or(0);
            for key in keys {
                let _ = writeln!(out, "  {:width$}  {}", key.name, summary(key));
                let _ = writeln!(out, "  {:width$}  {}", "", key.doc);
            }
        }
    }
    out
}

/// `a string, required, one of insert|upsert, default "insert", secret`.
fn summary(key: &ConfigKey) -> String {
    let mut parts = vec![key.value_type.in_words().to_owned()];
    if key.required {
        parts.push("required".into());
    }
    if !key.choices.is_empty() {
        parts.push(format!("one of {}", key.choices.join("|")));
    }
    if let Some(default) = &key.default {
        parts.push(format!("default {default}"));
    }
    if key.secret {
        parts.push("secret".into());
    }
    parts.join(", ")
}

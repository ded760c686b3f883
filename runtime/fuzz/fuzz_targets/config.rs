//! Any text as `connectors.yaml`: parsing, interpolation, validation and locating never panic,
//! and a refusal always says at least one thing, at a line of the file (or 0 when it has no
//! place).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use wasmconnect::config::{self, ConfigError};

fuzz_target!(|text: &str| {
    let lookup = |name: &str| (name == "SET").then(|| "value".to_owned());
    match config::parse(Path::new("fuzz.yaml"), text, &lookup) {
        Ok(_) => {}
        Err(ConfigError::Invalid { diagnostics, .. }) => {
            assert!(!diagnostics.is_empty(), "a refusal with no reason");
            // YAML (1.1, as the parser reads it) also breaks lines at a lone CR, NEL, LS and
            // PS; counting CRLF twice only makes the bound looser.
            let lines = 1 + text
                .chars()
                .filter(|c| matches!(c, '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}'))
                .count();
            for d in &diagnostics {
                assert!(d.line <= lines + 1, "{d} is past the end ({lines} lines)");
                assert!(!d.message.is_empty());
            }
        }
        Err(e) => panic!("parse reads no file, yet: {e}"),
    }
});

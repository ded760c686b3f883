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
            // YAML breaks lines at LF, CRLF and a lone CR.
            let lines = text
                .replace("\r\n", "\n")
                .replace('\r', "\n")
                .lines()
                .count();
            for d in &diagnostics {
                assert!(d.line <= lines + 1, "{d} is past the end ({lines} lines)");
                assert!(!d.message.is_empty());
            }
        }
        Err(e) => panic!("parse reads no file, yet: {e}"),
    }
});

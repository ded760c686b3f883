//! `${VAR}` substitution on any text: never panics, keeps every line on its number, leaves
//! text without `${` alone, and places each problem on a line of the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wasmconnect::config::substitute;

fuzz_target!(|text: &str| {
    let lookup = |name: &str| match name {
        "SET" => Some("value".to_owned()),
        "EMPTY" => Some(String::new()),
        "MULTI" => Some("two\nlines".to_owned()),
        _ => None,
    };
    let breaks = text.matches('\n').count();
    let lines = breaks + 1;
    match substitute(text, &lookup) {
        Ok(out) => {
            assert_eq!(out.matches('\n').count(), breaks, "lines moved");
            if !text.contains("${") {
                assert_eq!(out, text);
            }
        }
        Err(problems) => {
            assert!(!problems.is_empty());
            for p in &problems {
                assert!(
                    (1..=lines).contains(&p.line),
                    "{p} is not a line of the input"
                );
            }
        }
    }
});

//! source-postgres-cdc's pgoutput parser: any bytes from the server are a message or an error
//! naming what is malformed, never a panic; and a message that parses parses the same again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use source_postgres_cdc::pgoutput::parse;

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = parse(data) {
        assert_eq!(parse(data).ok(), Some(message));
    }
});

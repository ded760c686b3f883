//! What a plugin tells Kafka Connect users: the connector classes it stands in for and how
//! their keys map onto its own, declared with [`kafka_connect!`](crate::kafka_connect) as a
//! custom section of the `.wasm` (`wasmconnect:kafka-connect`). The host reads it without
//! compiling the plugin, so `GET /connector-plugins` lists the classes and a config naming
//! one finds its plugin as cheaply as by file name.
//!
//! The declaration is JSON: for each Kafka Connect class the plugin stands in for (a
//! `connector.class`, or a transform's `type`), how that class's keys map onto the plugin's:
//!
//! ```json
//! {"classes": {
//!   "io.confluent.connect.jdbc.JdbcSinkConnector": {
//!     "database": "database",
//!     "keys": {
//!       "table.name.format": "table",
//!       "headers": {"key": "headers", "entries": {"separator": "|", "assign": ":"}},
//!       "batch.max.size": {"runtime": "batch.max_records"}
//!     },
//!     "settings": [
//!       {"key": "pk.mode", "accepted": ["record_value", "none"],
//!        "because": "key columns are read from the value"}
//!     ],
//!     "defaults": {"mode": "insert"}
//!   }
//! }}
//! ```
//!
//! - `keys`: a Kafka Connect key and what it is. A string names the plugin's key; its string
//!   value is converted to the type the plugin's config spec declares for that key (a
//!   comma list for a list). `{"key", "entries"}` is a plugin key whose mapping Kafka Connect
//!   writes as text (`NAME:VALUE|NAME:VALUE`). `{"key", "entry"}` names one entry of the
//!   plugin key's mapping, its value `{"value": JSON}` or `{"value_of": "other.key"}` (the
//!   text of another Kafka Connect key, which is then declared `{"part_of": "this.key"}`):
//!   InsertField's `topic.field` and `static.field` with `static.value`. `{"runtime"}` is a
//!   connector setting of the runtime, by its native path (`batch.max_records`), for a
//!   connector's own keys only.
//! - `settings`: Kafka Connect keys with no counterpart, accepted (and dropped) when their
//!   value is one of `accepted` (compared without case), refused with `because` otherwise
//!   (always, when `accepted` is left out).
//! - `defaults`: plugin keys the class implies (JSON values), set unless the config sets them.
//! - `database`: the plugin key that names a granted database. `connection.url` (a `jdbc:`
//!   URL or a native one, with `connection.user` and `connection.password`) then defines the
//!   connector's own database (`databases.connection` of its native config), granted to it,
//!   and `connection` goes under that key.
//!
//! A key the declaration does not name goes to the plugin under its own name, as for a plugin
//! found by file name. A plugin whose declaration does not parse is not listed, and naming
//! its file says why.

/// The name of the custom section holding the declaration.
pub const SECTION: &str = "wasmconnect:kafka-connect";

/// `json`'s bytes as an array, for the custom section (a `const fn`, so the section is built at
/// compile time).
#[doc(hidden)]
pub const fn section_bytes<const N: usize>(json: &str) -> [u8; N] {
    let bytes = json.as_bytes();
    let mut out = [0u8; N];
    let mut i = 0;
    while i < N {
        out[i] = bytes[i];
        i += 1;
    }
    out
}

/// Declares the Kafka Connect classes and keys the plugin answers to (the format is in the
/// [module documentation](crate::kafka_connect)). Takes a `&'static str` constant; use it
/// once, beside the export macro. Like the export macros, it expands to nothing outside
/// `wasm32`; keep the constant to check it in a native test.
///
/// ```
/// const KAFKA_CONNECT: &str =
///     r#"{"classes": {"com.example.OrdersSink": {"keys": {"table.name": "table"}}}}"#;
/// wasmconnect_sdk::kafka_connect!(KAFKA_CONNECT);
/// # let parsed: serde_json::Value = serde_json::from_str(KAFKA_CONNECT).unwrap();
/// # assert_eq!(parsed["classes"]["com.example.OrdersSink"]["keys"]["table.name"], "table");
/// ```
#[macro_export]
macro_rules! kafka_connect {
    ($json:expr) => {
        #[cfg(target_arch = "wasm32")]
        #[unsafe(link_section = "wasmconnect:kafka-connect")]
        #[used]
        static __WASMCONNECT_KAFKA_CONNECT: [u8; $json.len()] =
            $crate::kafka_connect::section_bytes($json);
    };
}

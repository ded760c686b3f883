//! Where the binaries and plugins under test are. The test command builds them first; a missing
//! one is an error that says how to build it, never a skipped test.

use std::path::PathBuf;

use anyhow::{Context, bail};

/// The cargo target directory the tests were built into.
pub fn target_dir() -> anyhow::Result<PathBuf> {
    if let Ok(dir) = std::env::var("CARGO_TARGET_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let exe = std::env::current_exe().context("locating the test binary")?;
    // target/<profile>/deps/it-<hash>, or target/<profile>/<bin> for a bin.
    let in_deps = exe
        .parent()
        .and_then(|p| p.file_name())
        .is_some_and(|n| n == "deps");
    exe.ancestors()
        .nth(if in_deps { 3 } else { 2 })
        .map(PathBuf::from)
        .context("test binary is not inside a cargo target directory")
}

fn existing(path: PathBuf, how: &str) -> anyhow::Result<PathBuf> {
    if !path.exists() {
        bail!("{} does not exist: {how}", path.display());
    }
    Ok(path)
}

/// The `wasmconnect` binary (`WASMCONNECT_BIN` overrides).
pub fn wasmconnect_bin() -> anyhow::Result<PathBuf> {
    if let Ok(bin) = std::env::var("WASMCONNECT_BIN") {
        return existing(PathBuf::from(bin), "WASMCONNECT_BIN points nowhere");
    }
    // A test binary is target/<profile>/deps/<name>; a bin (the benchmarks) is
    // target/<profile>/<name>.
    let exe = std::env::current_exe()?;
    let beside = exe.with_file_name("wasmconnect");
    if beside.exists() {
        return Ok(beside);
    }
    let profile_dir = exe
        .ancestors()
        .nth(2)
        .context("locating the profile directory")?;
    existing(
        profile_dir.join("wasmconnect"),
        "build it with `cargo build -p wasmconnect` (the README test command does)",
    )
}

/// A plugin built with `cargo build --profile plugin --target wasm32-wasip2 -p <crate>`.
pub fn plugin(crate_name: &str) -> anyhow::Result<PathBuf> {
    let file = format!("{}.wasm", crate_name.replace('-', "_"));
    existing(
        target_dir()?.join("wasm32-wasip2/plugin").join(file),
        &format!(
            "build it with `cargo build --profile plugin --target wasm32-wasip2 -p {crate_name}` (the README test command does)"
        ),
    )
}

/// The tansu binary the test command installed (`WASMCONNECT_TANSU` overrides).
pub fn tansu() -> anyhow::Result<PathBuf> {
    installed("WASMCONNECT_TANSU", "tansu-0.6.0/bin/tansu", "test broker")
}

/// kafka-connect-py's `kc` command, as the test command installed it (`WASMCONNECT_KC`).
pub fn kc() -> anyhow::Result<PathBuf> {
    installed(
        "WASMCONNECT_KC",
        "kafka-connect-py-1.0.0/bin/kc",
        "kafka-connect-py's kc",
    )
}

/// The Python of the virtualenv holding confluent-kafka and its Schema Registry serializers,
/// as the test command installed it (`WASMCONNECT_CONFLUENT_PYTHON`).
pub fn confluent_python() -> anyhow::Result<PathBuf> {
    installed(
        "WASMCONNECT_CONFLUENT_PYTHON",
        "confluent-kafka-2.16.1/bin/python",
        "confluent-kafka's virtualenv",
    )
}

/// schemathesis's `st` command, as the test command installed it (`WASMCONNECT_SCHEMATHESIS`).
pub fn schemathesis() -> anyhow::Result<PathBuf> {
    installed(
        "WASMCONNECT_SCHEMATHESIS",
        "schemathesis-4.32.5/bin/st",
        "schemathesis",
    )
}

/// A tool the test command installs under `~/.cache/wasmconnect` (`cached`), or where the
/// environment variable `variable` says; an error naming `what` when it is not there.
fn installed(variable: &str, cached: &str, what: &str) -> anyhow::Result<PathBuf> {
    let path = match std::env::var(variable) {
        Ok(path) => PathBuf::from(path),
        Err(_) => PathBuf::from(std::env::var("HOME").unwrap_or_default())
            .join(".cache/wasmconnect")
            .join(cached),
    };
    if !path.exists() {
        bail!(
            "{what} {} is missing: the README test command installs it",
            path.display()
        );
    }
    Ok(path)
}

/// The repository's root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

//! `wasmconnect validate`: offline, exit code 1, file:line:column.

use std::process::Command;

use wasmconnect_tests::paths;

fn validate(config: &str) -> anyhow::Result<(i32, String, String)> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("connectors.yaml");
    std::fs::write(&path, config)?;
    let out = Command::new(paths::wasmconnect_bin()?)
        .arg("validate")
        .arg(&path)
        .output()?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).replace(&path.display().to_string(), "FILE"),
    ))
}

fn good(plugin: &str) -> String {
    format!(
        "kafka:
  bootstrap_servers: 127.0.0.1:1
databases:
  main:
    url: postgres://u:p@127.0.0.1:1/db
connectors:
  - name: a
    kind: sink
    plugin: {plugin}
    topics: [t]
    grants:
      databases: [main]
    config:
      database: main
      table: t
"
    )
}

#[test]
fn a_valid_config_passes_without_any_service_running() -> anyhow::Result<()> {
    let plugin = paths::plugin("sink-sql")?;
    let (code, stdout, stderr) = validate(&good(&plugin.display().to_string()))?;
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("ok (1 connectors)"), "{stdout}");
    Ok(())
}

#[test]
fn every_error_is_reported_with_file_line_and_column() -> anyhow::Result<()> {
    let plugin = paths::plugin("sink-sql")?.display().to_string();
    let broken = good(&plugin)
        .replace("topics: [t]", "topics: [t]\n    batch: { max_records: -5 }")
        .replace("127.0.0.1:1/db", "127.0.0.1:1/${MISSING_DB_NAME}");
    let (code, _, stderr) = validate(&broken)?;
    assert_eq!(code, 1);
    assert!(
        stderr.contains("FILE:5:37: environment variable MISSING_DB_NAME is not set"),
        "{stderr}"
    );

    let (code, _, stderr) = validate(&good(&plugin).replace(
        "topics: [t]",
        "topics: [t]\n    batch: { max_records: 0 }\n    grants2: {}",
    ))?;
    assert_eq!(code, 1);
    assert!(
        stderr.contains("FILE:12:5: connectors[0]: unknown field `grants2`"),
        "{stderr}"
    );

    let (code, _, stderr) =
        validate(&good(&plugin).replace("databases: [main]", "databases: [main, other]"))?;
    assert_eq!(code, 1);
    assert!(
        stderr.contains("FILE:12:25: connectors[0].grants.databases[1]: grants database \"other\""),
        "{stderr}"
    );
    Ok(())
}

#[test]
fn a_plugin_that_is_missing_or_not_a_component_is_named() -> anyhow::Result<()> {
    let (code, _, stderr) = validate(&good("/nonexistent/plugin.wasm"))?;
    assert_eq!(code, 1);
    assert!(
        stderr.contains("connector \"a\": plugin /nonexistent/plugin.wasm: cannot read"),
        "{stderr}"
    );

    let dir = tempfile::tempdir()?;
    let core = dir.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0")?;
    let (code, _, stderr) = validate(&good(&core.display().to_string()))?;
    assert_eq!(code, 1);
    assert!(
        stderr.contains("is a core WebAssembly module, not a component"),
        "{stderr}"
    );
    Ok(())
}

#[test]
fn the_shipped_connectors_yaml_is_valid() -> anyhow::Result<()> {
    let out = Command::new(paths::wasmconnect_bin()?)
        .current_dir(paths::repo_root())
        .args(["validate", "connectors.yaml"])
        .env_remove("DATABASE_URL")
        .env_remove("KAFKA_BOOTSTRAP_SERVERS")
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

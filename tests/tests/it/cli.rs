//! `wasmconnect validate`: offline, exit code 1, file:line:column. A good file passes; the corpus
//! of bad files under tests/cases/config each fails with the message kept beside it.

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

/// Every `tests/cases/config/NAME.yaml` fails validation with exit code 1 and exactly the
/// messages in `NAME.expected`, each naming the file, line and column. `${PLUGINS}` in a case
/// is the directory of the built plugins (and is written back as `${PLUGINS}` in messages).
/// `UPDATE_EXPECTED=1` rewrites the expected files from what the runtime says now.
#[test]
fn every_bad_config_of_the_corpus_fails_with_its_expected_messages() -> anyhow::Result<()> {
    let cases = paths::repo_root().join("tests/cases/config");
    let plugins = paths::plugin("sink-sql")?
        .parent()
        .expect("a plugin's directory")
        .display()
        .to_string();
    let update = std::env::var_os("UPDATE_EXPECTED").is_some();
    let mut names: Vec<String> = std::fs::read_dir(&cases)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|name| name.strip_suffix(".yaml").map(str::to_owned))
        .collect();
    names.sort();
    assert!(names.len() >= 20, "the corpus is at {}", cases.display());
    let mut mismatches = Vec::new();
    for name in &names {
        let out = Command::new(paths::wasmconnect_bin()?)
            .current_dir(&cases)
            .args(["validate", &format!("{name}.yaml")])
            .env("PLUGINS", &plugins)
            .output()?;
        let stderr = String::from_utf8_lossy(&out.stderr).replace(&plugins, "${PLUGINS}");
        assert_eq!(out.status.code(), Some(1), "{name}: {stderr}");
        for line in stderr.lines() {
            let location = line.strip_prefix(&format!("{name}.yaml:"));
            let numbers: Vec<usize> = location
                .into_iter()
                .flat_map(|l| l.splitn(3, ':').take(2))
                .filter_map(|n| n.parse().ok())
                .collect();
            assert!(
                numbers.len() == 2 && numbers[0] > 0,
                "{name}: `{line}` does not start with {name}.yaml:LINE:COLUMN"
            );
        }
        let expected_file = cases.join(format!("{name}.expected"));
        if update {
            std::fs::write(&expected_file, stderr.as_bytes())?;
        } else if std::fs::read_to_string(&expected_file)? != stderr {
            mismatches.push(format!("{name}:\n  expected: {}\n  got:      {stderr}", {
                std::fs::read_to_string(&expected_file)?
            }));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    assert!(
        !cases.join("data").exists(),
        "validate wrote into the directory of the config it checked"
    );
    Ok(())
}

//! The plugin author's kit: `wasmconnect plugin new` creates a crate of each kind that is
//! formatted, passes its own unit test, builds into a component and passes its `wasmconnect
//! test` case on the first try; `plugin inspect` describes it; the daemon runs the scaffolded
//! sink end to end. `wasmconnect test` runs the shipped plugins' cases, and says exactly
//! where a case and a plugin part.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use wasmconnect_tests::{Daemon, paths, unique, wait_until};

use crate::common::{Pipeline, config, json, sink};

const WAIT: Duration = Duration::from_secs(60);

/// Runs `program args` in `dir`; its output when it fails.
fn run(dir: &Path, program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        // One target directory for every scaffolded crate, kept between runs: the SDK and
        // its dependencies build once.
        .env("CARGO_TARGET_DIR", scaffold_target()?)
        .output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    anyhow::ensure!(
        out.status.success(),
        "`{program} {}` in {} failed:\n{text}",
        args.join(" "),
        dir.display()
    );
    Ok(text)
}

fn scaffold_target() -> anyhow::Result<PathBuf> {
    Ok(paths::target_dir()?.join("scaffold"))
}

/// Scaffolds `name` of `kind` in `dir`, checks it as its author would and returns its
/// component.
fn scaffold(dir: &Path, name: &str, kind: &str) -> anyhow::Result<PathBuf> {
    let bin = paths::wasmconnect_bin()?;
    let bin = bin.to_str().unwrap_or_default();
    let created = run(dir, bin, &["plugin", "new", name, "--kind", kind])?;
    assert!(created.contains("created"), "{created}");
    let root = dir.join(name);
    run(&root, "cargo", &["fmt", "--check"])?;
    let tested = run(&root, "cargo", &["test"])?;
    assert!(tested.contains("1 passed"), "{tested}");
    run(
        &root,
        "cargo",
        &["build", "--release", "--target", "wasm32-wasip2"],
    )?;
    let wasm = scaffold_target()?
        .join("wasm32-wasip2/release")
        .join(format!("{}.wasm", name.replace('-', "_")));
    let inspected = run(
        dir,
        bin,
        &["plugin", "inspect", wasm.to_str().unwrap_or_default()],
    )?;
    assert!(
        inspected.contains(&format!("kind:      {kind}")),
        "{inspected}"
    );
    assert!(inspected.contains("loads:     yes"), "{inspected}");
    assert!(inspected.contains("config:\n"), "{inspected}");
    Ok(wasm)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scaffolded_plugin_of_each_kind_builds_and_the_sink_runs() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let source = scaffold(dir.path(), "scaffolded-source", "source")?;
    let transform = scaffold(dir.path(), "scaffolded-transform", "transform")?;
    let sink_wasm = scaffold(dir.path(), "scaffolded-sink", "sink")?;
    for wasm in [&source, &transform] {
        assert!(wasm.is_file());
    }
    let again = Command::new(paths::wasmconnect_bin()?)
        .args(["plugin", "new", "scaffolded-sink", "--kind", "sink"])
        .current_dir(dir.path())
        .output()?;
    assert_eq!(
        again.status.code(),
        Some(1),
        "an existing crate is never overwritten"
    );
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));

    // The scaffolded sink, as it is, behind the scaffolded transform: values become rows.
    let p = Pipeline::new("scaffolded", 1, "value text").await?;
    let name = unique("scaffolded");
    let connector = format!(
        "{}    transforms:\n      - plugin: {}\n        config: {{ field: via, value: scaffold }}\n",
        sink(
            &name,
            &p.topic,
            &sink_wasm,
            &["main"],
            &format!("database: main\ntable: {}", p.table)
        ),
        transform.display()
    );
    let daemon = Daemon::start(&config(&p.broker, &p.pg, &connector))?;
    three_rows_arrive(&p, &daemon, "scaffold").await
}

/// Produces three JSON values to the pipeline's topic and waits for three rows of its table
/// whose value has `"via"` set to `via`: proof that the plugin under test wrote them.
async fn three_rows_arrive(p: &Pipeline, daemon: &Daemon, via: &str) -> anyhow::Result<()> {
    let records: Vec<_> = (1..=3)
        .map(|id| (None, json(serde_json::json!({ "id": id }))))
        .collect();
    p.broker.produce(&p.topic, &records).await?;
    let count = format!(
        "SELECT count(*) FROM {} WHERE value::jsonb->>'via' = '{via}'",
        p.table
    );
    wait_until(&format!("3 rows via {via}"), WAIT, || async {
        let rows = p.pg.count(&count).await?;
        Ok(if rows == 3 {
            Ok(())
        } else {
            Err(format!("{rows} rows"))
        })
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}\n{}", daemon.log().join("\n")))
}

/// `wasmconnect test` on `cases` with `plugin`: exit code and output.
fn wasmconnect_test(cases: &Path, plugin: &Path) -> anyhow::Result<(i32, String)> {
    let out = Command::new(paths::wasmconnect_bin()?)
        .arg("test")
        .arg(cases)
        .arg("--plugin")
        .arg(plugin)
        .output()?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    ))
}

#[test]
fn the_shipped_plugins_pass_their_cases_and_a_broken_case_names_the_difference()
-> anyhow::Result<()> {
    let root = paths::repo_root();
    for (plugin, cases) in [("sink-sql", 1), ("sink-http", 1), ("source-http", 1)] {
        let dir = root.join("plugins").join(plugin).join("fixtures");
        let (code, out) = wasmconnect_test(&dir, &paths::plugin(plugin)?)?;
        assert_eq!(code, 0, "{plugin}: {out}");
        assert!(
            out.contains(&format!("test cases: {cases} passed, 0 failed")),
            "{plugin}: {out}"
        );
    }

    // The sink-http case with one byte of the expected body changed, and a reply the plugin
    // never gets to: both are reported, with where they part.
    let case = std::fs::read_to_string(root.join("plugins/sink-http/fixtures/bisect.yaml"))?;
    let broken = case.replacen("body: [{ id: 1 }]", "body: [{ id: 7 }]", 1);
    assert_ne!(case, broken);
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("broken.yaml"), broken)?;
    let (code, out) = wasmconnect_test(dir.path(), &paths::plugin("sink-http")?)?;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FAIL"), "{out}");
    assert!(
        out.contains("steps[0]: call 2: http.body[0].id is 1, the case expects 7"),
        "{out}"
    );
    assert!(out.contains("test cases: 0 passed, 1 failed"), "{out}");

    // Mistakes in a case are refused where they are written, before anything runs: a reply
    // key no reply has, an error kind the capability lacks, a config key the plugin's spec
    // does not list (with `validate`'s words).
    for (from, to, said) in [
        (
            "reply: { status: 200 }",
            "reply: { staus: 200 }",
            "broken.yaml:19:18: steps[0].calls[1].reply: unknown field `staus`",
        ),
        (
            "reply: { status: 200 }",
            "reply: { error: { refused: down } }",
            "broken.yaml:19:27: steps[0].calls[1].reply.error.refused: not an error of http: \
             one of access_denied, invalid_request, timeout, too_large, unavailable",
        ),
        (
            "  url: http://api.example/orders/{topic}",
            "  urll: http://api.example/orders/{topic}",
            "broken.yaml:5:3: config.urll: is not a key of plugin sink_http; did you mean \"url\"?",
        ),
    ] {
        let broken = case.replacen(from, to, 1);
        assert_ne!(case, broken);
        std::fs::write(dir.path().join("broken.yaml"), broken)?;
        let (code, out) = wasmconnect_test(dir.path(), &paths::plugin("sink-http")?)?;
        assert_eq!(code, 1, "{out}");
        assert!(out.contains(said), "{said}\n{out}");
    }

    // `exact: true` on a call: what the plugin sends beyond the case is a difference too.
    let exact = case.replacen(
        "      - http: { body: [{ id: 1 }] }\n",
        "      - http: { body: [{ id: 1 }] }\n        exact: true\n",
        1,
    );
    assert_ne!(case, exact);
    std::fs::write(dir.path().join("broken.yaml"), exact)?;
    let (code, out) = wasmconnect_test(dir.path(), &paths::plugin("sink-http")?)?;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("steps[0]: call 2: http.headers is {")
            && out.contains("which the case does not give (exact: true)"),
        "{out}"
    );

    // A record the source returns unlike the case's: named by its path.
    let case = std::fs::read_to_string(root.join("plugins/source-http/fixtures/pages.yaml"))?;
    let broken = case.replacen(
        r#"{ key: "2", value: { id: 2 } }"#,
        r#"{ key: "2", value: { id: 9 } }"#,
        1,
    );
    assert_ne!(case, broken);
    std::fs::write(dir.path().join("broken.yaml"), broken)?;
    let (code, out) = wasmconnect_test(dir.path(), &paths::plugin("source-http")?)?;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("steps[0]: records[1].value.id is 2, the case expects 9"),
        "{out}"
    );
    Ok(())
}

/// The Python sink (tests/fixtures/sink-python, built by componentize-py in the test command):
/// the same WIT contract from another language. It passes its offline case, its config spec
/// (Python's own words) checks a config, and the daemon runs it against the test broker and
/// PostgreSQL.
#[tokio::test(flavor = "multi_thread")]
async fn a_python_plugin_describes_its_config_passes_its_case_and_moves_records()
-> anyhow::Result<()> {
    let wasm = paths::plugin("sink-python")?;
    let cases = paths::repo_root().join("tests/fixtures/sink-python/fixtures");
    let (code, out) = wasmconnect_test(&cases, &wasm)?;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("test cases: 1 passed, 0 failed"), "{out}");

    let p = Pipeline::new("python", 1, "value text").await?;
    let name = unique("python");
    let entry = |table: &str| {
        sink(
            &name,
            &p.topic,
            &wasm,
            &["main"],
            &format!("database: main\ntable: {table}"),
        )
    };
    let dir = tempfile::tempdir()?;
    let bad = dir.path().join("connectors.yaml");
    let text = config(&p.broker, &p.pg, &entry("5")).replace("{admin}", "127.0.0.1:0");
    std::fs::write(&bad, text)?;
    let checked = Command::new(paths::wasmconnect_bin()?)
        .arg("validate")
        .arg(&bad)
        .output()?;
    let stderr = String::from_utf8_lossy(&checked.stderr);
    assert_eq!(checked.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "config.table: connector \"{name}\": expected a string, got 5 (sink_python: The \
             table rows go to; it needs a text column value)"
                .replace("{name}", &name)
                .as_str()
        ),
        "{stderr}"
    );

    let daemon = Daemon::start(&config(&p.broker, &p.pg, &entry(&p.table)))?;
    three_rows_arrive(&p, &daemon, "python").await
}

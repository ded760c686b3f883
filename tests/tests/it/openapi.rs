//! The admin API against its OpenAPI description (`/openapi.json`): schemathesis (PyPI)
//! generates requests from the description, valid and invalid, for a bounded number of
//! examples per operation, and checks that none gets a server error and every answer matches
//! the description (status, content type, body schema); the daemon answers after it.

use std::process::Command;
use std::time::Duration;

use reqwest::StatusCode;
use wasmconnect_tests::{Daemon, paths, unique};

use crate::common::{Pipeline, config, sink};

#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_no_server_error_and_every_answer_matches_the_description()
-> anyhow::Result<()> {
    let p = Pipeline::new("openapi", 1, "id bigint").await?;
    let name = unique("openapi");
    let connector = sink(
        &name,
        &p.topic,
        &paths::plugin("sink-sql")?,
        &["main"],
        &format!("database: main\ntable: {}", p.table),
    );
    let daemon = Daemon::start(&config(&p.broker, &p.pg, &connector))?;
    daemon
        .wait_task_state(&name, "RUNNING", Duration::from_secs(60))
        .await?;
    let base = format!("http://{}", daemon.admin);

    let output = Command::new(paths::schemathesis()?)
        .current_dir(daemon.dir())
        .args(["run", &format!("{base}/openapi.json")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,\
             response_schema_conformance,response_headers_conformance",
            "--phases",
            "examples,coverage,fuzzing",
            "--max-examples",
            "10",
            "--seed",
            "20261204",
            "--generation-database",
            "none",
            "--request-timeout",
            "30",
            "--workers",
            "1",
            "--no-color",
        ])
        .output()?;
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "schemathesis found problems:\n{report}"
    );
    // Every operation the description lists was tried (schemathesis leaves out the one
    // serving the description it was loaded from).
    let described: usize = serde_json::from_str::<serde_json::Value>(include_str!(
        "../../../runtime/src/admin/openapi.json"
    ))?["paths"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(_, item)| {
            ["get", "post", "put", "patch", "delete"]
                .iter()
                .filter(|m| item.get(**m).is_some())
                .count()
        })
        .sum();
    let all = described - 1;
    assert!(
        report.contains(&format!("{all} selected / {all} total"))
            && report.contains(&format!("Tested: {all}")),
        "schemathesis did not test all {all} operations:\n{report}"
    );

    // Nothing it sent wedged or crashed the daemon: it answers, and the connector still runs.
    let live = reqwest::get(format!("{base}/health/live")).await?;
    assert_eq!(live.status(), StatusCode::OK);
    let status = daemon.status(&name).await?;
    assert_eq!(status["tasks"][0]["state"], "RUNNING", "{status}");
    Ok(())
}

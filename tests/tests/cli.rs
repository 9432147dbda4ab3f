//! End to end: the `hookd` command-line client against a real control plane and dispatcher.

use std::{process::Command, time::Duration};

use anyhow::Context;
use hookd_tests::{Cluster, Receiver, hookd_binary, wait_until};

/// Runs `hookd <args> --server <control> --output json` and parses its stdout.
fn hookd_json(cluster: &Cluster, args: &[&str]) -> anyhow::Result<serde_json::Value> {
    let output = Command::new(hookd_binary()?)
        .args(args)
        .args(["--server", &cluster.control.grpc_url(), "--output", "json"])
        .output()?;
    anyhow::ensure!(
        output.status.success(),
        "hookd {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).with_context(|| {
        format!("hookd {args:?} printed no JSON: {}", String::from_utf8_lossy(&output.stdout))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_manages_webhooks_publishes_events_and_shows_history() -> anyhow::Result<()> {
    let cluster = Cluster::start(1, "")?;
    let receiver = Receiver::ok()?;
    let url = receiver.url("/cli");

    let created = hookd_json(
        &cluster,
        &[
            "webhook",
            "create",
            "--name",
            "from-cli",
            "--url",
            &url,
            "--event-type",
            "contact-created",
            "--active",
        ],
    )?;
    let id = created["id"].as_str().context("id")?.to_owned();
    assert_eq!(created["name"], "from-cli");
    assert_eq!(created["active"], true);

    let listed = hookd_json(&cluster, &["webhook", "list"])?;
    assert_eq!(listed["webhooks"][0]["id"], id.as_str(), "{listed}");
    let got = hookd_json(&cluster, &["webhook", "get", &id])?;
    assert_eq!(got["url"], url.as_str());

    let published = hookd_json(
        &cluster,
        &[
            "event",
            "publish",
            "--type",
            "contact-created",
            "--id",
            "cli-evt-1",
            "--data",
            r#"{"n":7}"#,
        ],
    )?;
    assert_eq!(published["event_id"], "cli-evt-1");
    let request = receiver.wait_for(1, Duration::from_secs(20)).await?;
    assert_eq!(request[0].json()?["data"], serde_json::json!({"n": 7}));

    let delivery_id = wait_until("the CLI shows the delivery", Duration::from_secs(20), || async {
        let list = hookd_json(&cluster, &["delivery", "list", "--webhook", &id])?;
        Ok(list["deliveries"]
            .as_array()
            .and_then(|d| d.first())
            .filter(|d| d["status"] == "delivered")
            .and_then(|d| d["id"].as_str().map(str::to_owned)))
    })
    .await?;
    let delivery = hookd_json(&cluster, &["delivery", "get", &delivery_id])?;
    assert_eq!(delivery["attempts"][0]["http_status"], 200);

    // Errors are clear and exit non-zero.
    let output = Command::new(hookd_binary()?)
        .args(["webhook", "create", "--name", "bad", "--url", "/relative", "--event-type", "x"])
        .args(["--server", &cluster.control.grpc_url()])
        .output()?;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("url") && stderr.contains("InvalidArgument"), "{stderr}");

    hookd_json(&cluster, &["webhook", "delete", &id])?;
    let listed = hookd_json(&cluster, &["webhook", "list"])?;
    assert_eq!(listed["webhooks"].as_array().map(Vec::len), Some(0));
    Ok(())
}

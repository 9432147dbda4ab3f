//! End to end: the `hookd` command-line client against a real control plane and dispatcher.

use std::{process::Command, time::Duration};

use anyhow::Context;
use hookd_tests::{Cluster, OWNER_TOKEN, Receiver, TENANT, hookd_binary, wait_until};

/// Runs `hookd <args> --server <control> --output json` as the default tenant's owner and
/// parses its stdout.
fn hookd_json(cluster: &Cluster, args: &[&str]) -> anyhow::Result<serde_json::Value> {
    hookd_json_as(cluster, OWNER_TOKEN, args)
}

/// Like [`hookd_json`] with `token` in the child's `HOOKD_TOKEN` (never this process' own
/// environment: tests run in parallel threads).
fn hookd_json_as(
    cluster: &Cluster,
    token: &str,
    args: &[&str],
) -> anyhow::Result<serde_json::Value> {
    let output = Command::new(hookd_binary()?)
        .args(args)
        .args(["--server", &cluster.control.grpc_url(), "--output", "json"])
        .env("HOOKD_TOKEN", token)
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
    // The endpoint options and counts are in the JSON even when left at their defaults.
    assert_eq!(got["method"], "POST", "{got}");
    assert_eq!(got["format"], "envelope", "{got}");
    assert_eq!(got["auth"]["type"], "none", "{got}");
    assert_eq!(got["stats"]["triggered"], 0, "{got}");

    // The table, reached through the `--addr` alias, with the token from the environment.
    let output = Command::new(hookd_binary()?)
        .args(["webhook", "list", "--addr", &cluster.control.grpc_url(), "--output", "table"])
        .env("HOOKD_TOKEN", OWNER_TOKEN)
        .output()?;
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    for column in ["NAME", "ID", "STATUS", "METHOD", "EVENT TYPES", "LAST ATTEMPT", "TRIGGERED"] {
        assert!(table.contains(column), "{column} missing from\n{table}");
    }
    assert!(table.contains("from-cli") && table.contains("active"), "{table}");

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
        .env("HOOKD_TOKEN", OWNER_TOKEN)
        .output()?;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("url") && stderr.contains("InvalidArgument"), "{stderr}");

    hookd_json(&cluster, &["webhook", "delete", &id])?;
    let listed = hookd_json(&cluster, &["webhook", "list"])?;
    assert_eq!(listed["webhooks"].as_array().map(Vec::len), Some(0));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_manages_roles_and_tokens() -> anyhow::Result<()> {
    let cluster = Cluster::start(0, "")?;
    let me = hookd_json(&cluster, &["access", "whoami"])?;
    assert_eq!(me["tenant"], TENANT, "{me}");
    assert_eq!(me["role"], "owner", "{me}");

    let role = hookd_json(
        &cluster,
        &["access", "role", "create", "publisher", "--permission", "events.publish"],
    )?;
    assert_eq!(role["permissions"], serde_json::json!(["events.publish"]), "{role}");
    let roles = hookd_json(&cluster, &["access", "role", "list"])?;
    let names: Vec<&str> = roles["roles"]
        .as_array()
        .context("roles")?
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(names, ["owner", "viewer", "publisher"], "{roles}");
    let role = hookd_json(
        &cluster,
        &["access", "role", "update", "publisher", "-p", "events.publish", "-p", "webhooks.read"],
    )?;
    assert_eq!(role["permissions"].as_array().map(Vec::len), Some(2), "{role}");

    let created = hookd_json(
        &cluster,
        &["access", "token", "create", "--name", "ci", "--role", "publisher"],
    )?;
    let secret = created["secret"].as_str().context("secret")?.to_owned();
    let token_id = created["id"].as_str().context("id")?.to_owned();
    assert!(
        secret.starts_with("hkd_")
            && secret.ends_with(created["last_four"].as_str().context("last four")?)
    );
    let listed = hookd_json(&cluster, &["access", "token", "list"])?;
    assert!(listed.to_string().contains(&token_id), "{listed}");
    assert!(!listed.to_string().contains(&secret), "a listing never shows a token's value");
    let me = hookd_json_as(&cluster, &secret, &["access", "whoami"])?;
    assert_eq!(me["role"], "publisher", "{me}");

    // In use: not deletable until the token is revoked; then the token is refused.
    assert!(hookd_json(&cluster, &["access", "role", "delete", "publisher"]).is_err());
    hookd_json(&cluster, &["access", "token", "revoke", &token_id])?;
    let refused = hookd_json_as(&cluster, &secret, &["access", "whoami"]).expect_err("revoked");
    assert!(format!("{refused:#}").contains("Unauthenticated"), "{refused:#}");
    hookd_json(&cluster, &["access", "role", "delete", "publisher"])?;
    Ok(())
}

/// Runs `hookd <args>` against an address where nothing listens: every case below must fail
/// on its arguments before any connection is tried.
fn hookd_fails(args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<(i32, String)> {
    let output = Command::new(hookd_binary()?)
        .args(args)
        .args(["--server", "http://127.0.0.1:1"])
        .envs(env.iter().copied())
        .output()?;
    let code = output.status.code().context("killed by a signal")?;
    anyhow::ensure!(code != 0, "hookd {args:?} succeeded");
    Ok((code, String::from_utf8_lossy(&output.stderr).into_owned()))
}

#[test]
fn usage_errors_are_clear_and_caught_before_connecting() -> anyhow::Result<()> {
    let create = ["webhook", "create", "--name", "n", "--url", "http://x", "--event-type", "t"];
    let with = |extra: &[&'static str]| -> Vec<&str> {
        create.iter().copied().chain(extra.iter().copied()).collect()
    };

    // clap's usage errors exit 2 and name the argument.
    let (code, err) = hookd_fails(&with(&["--auth-header", "x-secret s3cret"]), &[])?;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--auth-header") && err.contains("Name: value"), "{err}");
    let (code, err) = hookd_fails(&with(&["--header", ": nameless"]), &[])?;
    assert!(code == 2 && err.contains("--header"), "{err}");
    let (code, err) = hookd_fails(&with(&["--bearer", "a", "--basic", "u:p"]), &[])?;
    assert!(code == 2 && err.contains("cannot be used with"), "{err}");
    let (code, err) = hookd_fails(&with(&["--api-key-in-query"]), &[])?;
    assert!(code == 2 && err.contains("--api-key"), "{err}");
    let (code, err) = hookd_fails(&with(&["--method", "options"]), &[])?;
    assert!(code == 2 && err.contains("post"), "{err}");
    let (code, err) = hookd_fails(
        &["credential", "create", "--name", "c", "--token-url", "http://t", "--client-id", "i"]
            .into_iter()
            .chain(["--param", "novalue"])
            .collect::<Vec<_>>(),
        &[],
    )?;
    assert!(code == 2 && err.contains("key=value"), "{err}");

    // Checked by the client itself: exit 1 with the reason, still before any call.
    let (code, err) = hookd_fails(&with(&["--bearer-env", "HOOKD_TEST_UNSET_VAR"]), &[])?;
    assert!(code == 1 && err.contains("HOOKD_TEST_UNSET_VAR is not set"), "{err}");
    let (code, err) = hookd_fails(&with(&["--basic-env", "BASIC"]), &[("BASIC", "no-colon")])?;
    assert!(code == 1 && err.contains("USER:PASS"), "{err}");
    let (code, err) = hookd_fails(&["webhook", "update", "wh_1"], &[])?;
    assert!(code == 1 && err.contains("nothing to change"), "{err}");
    let (code, err) =
        hookd_fails(&["event-type", "create", "--name", "t", "--schema", "@/no/such.json"], &[])?;
    assert!(code == 1 && err.contains("/no/such.json"), "{err}");
    let (code, err) =
        hookd_fails(&["event-type", "create", "--name", "t", "--schema", "[1]"], &[])?;
    assert!(code == 1 && err.contains("JSON object"), "{err}");
    let (code, err) =
        hookd_fails(&["webhook", "test", "wh_1", "--event-type", "t", "--data", "{"], &[])?;
    assert!(code == 1 && err.contains("--data"), "{err}");

    // And a connection failure says where it tried.
    let (code, err) = hookd_fails(&["webhook", "list"], &[])?;
    assert!(code == 1 && err.contains("127.0.0.1:1"), "{err}");
    Ok(())
}

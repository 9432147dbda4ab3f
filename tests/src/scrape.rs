//! Prometheus endpoints as the tests see them: a scrape over HTTP, `promtool check metrics`
//! on its text, and sample lookup by name and labels.

use std::{
    io::Write as _,
    path::PathBuf,
    process::{Command, Stdio},
};

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};

/// The `promtool` binary: `$HOOKD_PROMTOOL`, else `<workspace>/.tools/bin/promtool`
/// (installed by `make tools`), else `promtool` from `PATH`.
pub fn promtool_binary() -> PathBuf {
    crate::process::tool_binary("HOOKD_PROMTOOL", "promtool")
}

/// `GET url`: the body of a 200 answer in the text exposition format.
pub async fn scrape(url: &str) -> anyhow::Result<String> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let response = client.get(url.parse()?).await.with_context(|| format!("GET {url}"))?;
    anyhow::ensure!(response.status() == 200, "GET {url}: {}", response.status());
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    anyhow::ensure!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    let body = response.into_body().collect().await?.to_bytes();
    Ok(String::from_utf8(body.to_vec())?)
}

/// `GET url`: the body of a 200 answer as text (a monitoring endpoint's JSON, say).
pub async fn get_text(url: &str) -> anyhow::Result<String> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let response = client.get(url.parse()?).await.with_context(|| format!("GET {url}"))?;
    anyhow::ensure!(response.status() == 200, "GET {url}: {}", response.status());
    let body = response.into_body().collect().await?.to_bytes();
    Ok(String::from_utf8(body.to_vec())?)
}

/// Runs `promtool check metrics` on `text`; its complaints are the error.
pub fn promtool_check(text: &str) -> anyhow::Result<()> {
    let binary = promtool_binary();
    let mut child = Command::new(&binary)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {} (run `make tools`)", binary.display()))?;
    child.stdin.take().context("no stdin")?.write_all(text.as_bytes())?;
    let out = child.wait_with_output()?;
    anyhow::ensure!(
        out.status.success(),
        "promtool check metrics failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// The value of the sample written exactly `series` (`name` or `name{a="b"}`), if present.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

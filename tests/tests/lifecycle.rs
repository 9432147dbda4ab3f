//! End to end, with real processes: graceful shutdown loses nothing and holds up nothing (a
//! dispatcher's SIGTERM hands its queued work to another dispatcher at once, a control plane's
//! SIGTERM commits every result it accepted), and readiness follows NATS.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use async_nats::jetstream;
use hookd_proto::v1;
use hookd_tests::{
    Cluster, ReceivedRequest, Receiver, Response, publish_many_to_nats, publish_to_nats, responder,
    wait_until,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

const DELIVERED: i32 = v1::DeliveryStatus::Delivered as i32;
/// An ack wait far longer than these tests take, so what they see cannot be JetStream's
/// redelivery after it, only the hand-back they check (the default is 15 s).
const LONG_ACK_WAIT_SECS: u64 = 60;

fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:04}")).collect()
}

fn event_id(request: &ReceivedRequest) -> anyhow::Result<String> {
    request.json()?["meta"]["eventId"]
        .as_str()
        .map(str::to_owned)
        .context("request body without meta.eventId")
}

/// How many requests the receiver got for each event.
fn copies(receiver: &Receiver) -> anyhow::Result<HashMap<String, usize>> {
    let mut copies = HashMap::new();
    for request in receiver.requests() {
        *copies.entry(event_id(&request)?).or_default() += 1;
    }
    Ok(copies)
}

/// Every delivery of a webhook (one page is enough for these tests).
async fn deliveries(cluster: &Cluster, webhook_id: &str) -> anyhow::Result<Vec<v1::Delivery>> {
    let request = v1::ListDeliveriesRequest {
        webhook_id: webhook_id.to_owned(),
        page_size: 500,
        ..Default::default()
    };
    Ok(cluster.deliveries().await?.list_deliveries(request).await?.into_inner().deliveries)
}

/// Waits until the webhook has `n` deliveries, each delivered after exactly one attempt.
async fn wait_delivered_once(
    cluster: &Cluster,
    webhook_id: &str,
    n: usize,
    timeout: Duration,
) -> anyhow::Result<Vec<v1::Delivery>> {
    wait_until(&format!("{n} deliveries delivered with one attempt"), timeout, || async {
        let all = deliveries(cluster, webhook_id).await?;
        let done = all.iter().filter(|d| d.status == DELIVERED && d.attempt_count == 1).count();
        if all.len() == n && done == n {
            return Ok(Some(all));
        }
        anyhow::bail!("{} deliveries listed, {done} delivered with one attempt", all.len())
    })
    .await
}

fn log_of(process: &hookd_tests::HookdProcess) -> anyhow::Result<String> {
    Ok(std::fs::read_to_string(process.log_path())?)
}

// ---------------------------------------------------------------------------------------------

/// A dispatcher with a slow endpoint holds many jobs: two attempts at a time, the rest waiting
/// for the endpoint or still in its client's buffer. On SIGTERM it finishes the attempts in
/// progress and hands every other job back at once; a second dispatcher delivers them long
/// before `ack_wait` (60 s) would have returned them. Nothing is lost and nothing is sent twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_hands_queued_jobs_to_another_dispatcher_and_repeats_no_attempt()
-> anyhow::Result<()> {
    const EVENTS: usize = 50;
    const SLOW: Duration = Duration::from_secs(2);
    const GRACE_SECS: u64 = 8;
    let mut cluster = Cluster::start(
        1,
        &format!(
            "max_in_flight = 8\nendpoint_concurrency = 2\nendpoint_queue = 100\n\
             shutdown_grace_secs = {GRACE_SECS}\nshutdown_flush_secs = 5\n\
             ack_wait_secs = {LONG_ACK_WAIT_SECS}"
        ),
    )?;
    // Slow until the first dispatcher is told to stop; attempts already started stay slow.
    let slow = Arc::new(AtomicBool::new(true));
    let receiver = Receiver::start(responder({
        let slow = slow.clone();
        move |_, _| {
            let delay = if slow.load(Ordering::SeqCst) { SLOW } else { Duration::ZERO };
            Response::ok().with_delay(delay)
        }
    }))?;
    let webhook = cluster.create_webhook("slow", receiver.url("/slow"), &["slow-type"]).await?;
    let js = jetstream::new(cluster.nats.client().await?);
    let expected = ids("evt-term", EVENTS);
    publish_many_to_nats(js, "slow-type".into(), expected, 16).await?;

    // Attempts are in progress at the first dispatcher and more jobs wait behind them.
    receiver.wait_for(2, Duration::from_secs(30)).await?;
    cluster.add_dispatcher()?;
    slow.store(false, Ordering::SeqCst);
    let in_progress = receiver.count();
    let terminated_at = Instant::now();
    let status = cluster.dispatchers[0].terminate()?;
    let shutdown = terminated_at.elapsed();
    let first_log = log_of(&cluster.dispatchers[0])?;
    println!(
        "dispatcher 0 exited ({status}) {:.2} s after SIGTERM, {in_progress} requests had arrived",
        shutdown.as_secs_f64()
    );
    assert!(status.success(), "dispatcher exit status {status}");
    // An attempt started just before the signal takes SLOW, and its result is reported before
    // the exit; waiting for the grace period would mean a job was held instead of handed back.
    assert!(
        shutdown < Duration::from_secs(GRACE_SECS),
        "dispatcher took {shutdown:?} to stop, grace period {GRACE_SECS} s"
    );
    assert!(first_log.contains("dispatcher stopped"), "no clean stop in the log");
    for line in
        first_log.lines().filter(|l| l.contains("stage stopping") || l.contains("handing back"))
    {
        println!("dispatcher 0: {line}");
    }
    assert!(
        !first_log.contains("after the grace period"),
        "an attempt was abandoned at the grace period"
    );

    // Handed-back jobs come back at once; ack_wait is 60 s.
    let all = wait_delivered_once(&cluster, &webhook.id, EVENTS, Duration::from_secs(25)).await?;
    let delivered_in = terminated_at.elapsed();
    println!(
        "all {EVENTS} delivered and recorded {:.2} s after SIGTERM",
        delivered_in.as_secs_f64()
    );
    let second_attempts = log_of(&cluster.dispatchers[1])?.matches("attempt made").count();
    let first_attempts = first_log.matches("attempt made").count();
    println!("attempts: dispatcher 0 {first_attempts}, dispatcher 1 {second_attempts}");
    assert!(second_attempts > 0, "the second dispatcher delivered nothing");
    assert_eq!(first_attempts + second_attempts, EVENTS, "every job is attempted exactly once");

    let copies = copies(&receiver)?;
    assert_eq!(copies.len(), EVENTS, "every event arrived");
    let repeated: Vec<_> = copies.iter().filter(|(_, n)| **n > 1).collect();
    assert!(repeated.is_empty(), "attempts repeated after the hand-over: {repeated:?}");
    for delivery in &all {
        let full = cluster
            .deliveries()
            .await?
            .get_delivery(v1::GetDeliveryRequest { id: delivery.id.clone() })
            .await?
            .into_inner()
            .delivery
            .context("no delivery in the answer")?;
        let numbers: Vec<u32> = full.attempts.iter().map(|a| a.number).collect();
        assert_eq!(numbers, [1], "{}: a handed-back job keeps its attempt number", delivery.id);
    }
    Ok(())
}

/// An attempt still running when the grace period ends is handed back (NAK), so another
/// dispatcher makes it at once instead of after `ack_wait` (60 s); the exit stays within the
/// grace period plus the report flush bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_outlasting_the_grace_period_is_handed_back() -> anyhow::Result<()> {
    const GRACE_SECS: u64 = 1;
    const FLUSH_SECS: u64 = 2;
    let mut cluster = Cluster::start(
        1,
        &format!(
            "attempt_timeout_secs = 20\nshutdown_grace_secs = {GRACE_SECS}\n\
             shutdown_flush_secs = {FLUSH_SECS}\nack_wait_secs = {LONG_ACK_WAIT_SECS}"
        ),
    )?;
    // The first request hangs far beyond the grace period; the retry is answered at once.
    let receiver = Receiver::start(responder(|_, index| {
        let delay = if index == 0 { Duration::from_secs(15) } else { Duration::ZERO };
        Response::ok().with_delay(delay)
    }))?;
    let webhook = cluster.create_webhook("hang", receiver.url("/hang"), &["hang"]).await?;
    publish_to_nats(&jetstream::new(cluster.nats.client().await?), "hang", "evt-hang").await?;
    receiver.wait_for(1, Duration::from_secs(30)).await?;
    cluster.add_dispatcher()?;

    let terminated_at = Instant::now();
    let status = cluster.dispatchers[0].terminate()?;
    let shutdown = terminated_at.elapsed();
    println!("dispatcher 0 exited ({status}) {:.2} s after SIGTERM", shutdown.as_secs_f64());
    assert!(status.success(), "dispatcher exit status {status}");
    assert!(
        shutdown < Duration::from_secs(GRACE_SECS + FLUSH_SECS + 2),
        "dispatcher took {shutdown:?} to stop"
    );
    let log = log_of(&cluster.dispatchers[0])?;
    assert!(log.contains("after the grace period"), "nothing was abandoned at the grace period");

    let delivery = cluster.settled_delivery(&webhook.id, Duration::from_secs(20)).await?;
    let delivered_in = terminated_at.elapsed();
    println!(
        "delivered by the other dispatcher {:.2} s after SIGTERM, attempts {:?}",
        delivered_in.as_secs_f64(),
        delivery.attempts.iter().map(|a| (a.number, a.http_status)).collect::<Vec<_>>()
    );
    assert_eq!(delivery.status, DELIVERED);
    assert!(delivered_in < Duration::from_secs(20), "the abandoned job waited for ack_wait");
    // The abandoned attempt did reach the endpoint: it is repeated, once.
    assert_eq!(receiver.count(), 2);
    Ok(())
}

/// SIGTERM to the control plane while a dispatcher is reporting results: the calls in progress
/// finish and their results are committed before the exit, the rest wait in the dispatcher and
/// are stored by the next control plane. Every attempt is in the history, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_sigterm_while_results_are_reported_loses_none() -> anyhow::Result<()> {
    const EVENTS: usize = 300;
    let mut cluster = Cluster::start(1, "")?;
    let receiver =
        Receiver::start(responder(|_, _| Response::ok().with_delay(Duration::from_millis(10))))?;
    let webhook = cluster.create_webhook("steady", receiver.url("/steady"), &["steady"]).await?;
    let js = jetstream::new(cluster.nats.client().await?);
    let expected = ids("evt-control", EVENTS);
    let publisher = tokio::spawn(publish_many_to_nats(js, "steady".into(), expected, 16));

    receiver.wait_for(50, Duration::from_secs(30)).await?;
    let terminated_at = Instant::now();
    let status = cluster.control.terminate()?;
    let shutdown = terminated_at.elapsed();
    let log = log_of(&cluster.control)?;
    println!("control plane exited ({status}) {:.2} s after SIGTERM", shutdown.as_secs_f64());
    assert!(status.success(), "control plane exit status {status}");
    assert!(shutdown < Duration::from_secs(5), "control plane took {shutdown:?} to stop");
    assert!(log.contains("control plane stopped"), "no clean stop in the log");
    assert!(!log.contains("still uncommitted"), "results left uncommitted");
    publisher.await.context("publisher task")??;

    cluster.restart_control()?;
    let all = wait_delivered_once(&cluster, &webhook.id, EVENTS, Duration::from_secs(60)).await?;
    assert_eq!(all.len(), EVENTS);
    let copies = copies(&receiver)?;
    assert_eq!(copies.len(), EVENTS, "every event arrived");
    assert!(copies.values().all(|n| *n == 1), "an HTTP call was repeated");
    Ok(())
}

async fn health_status(channel: &tonic::transport::Channel, service: &str) -> anyhow::Result<i32> {
    let answer = HealthClient::new(channel.clone())
        .check(HealthCheckRequest { service: service.into() })
        .await?
        .into_inner();
    Ok(answer.status)
}

/// The status line's code of `GET path` on a dispatcher's health listener.
async fn http_status(addr: std::net::SocketAddr, path: &str) -> anyhow::Result<u16> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await?;
    let text = String::from_utf8_lossy(&answer);
    text.split_whitespace().nth(1).and_then(|code| code.parse().ok()).context("no status line")
}

/// Waits until the control plane's overall and WebhookService health and the dispatcher's
/// `/readyz` all say `serving`.
async fn wait_readiness(cluster: &Cluster, serving: bool, timeout: Duration) -> anyhow::Result<()> {
    let (want, want_http) = if serving {
        (ServingStatus::Serving as i32, 200)
    } else {
        (ServingStatus::NotServing as i32, 503)
    };
    let dispatcher = cluster.dispatchers[0].addr();
    let what = format!("readiness to be {}", if serving { "serving" } else { "not serving" });
    wait_until(&what, timeout, || async {
        let channel = cluster.channel().await?;
        let overall = health_status(&channel, "").await?;
        let webhooks = health_status(&channel, "hookd.v1.WebhookService").await?;
        let readyz = http_status(dispatcher, "/readyz").await?;
        if overall == want && webhooks == want && readyz == want_http {
            return Ok(Some(()));
        }
        anyhow::bail!("health {overall}, WebhookService {webhooks}, /readyz {readyz}")
    })
    .await
}

/// Readiness follows NATS: NOT_SERVING (and `/readyz` 503) soon after nats-server stops,
/// SERVING again once it is back on the same port, and deliveries resume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_nats_down_and_back() -> anyhow::Result<()> {
    let mut cluster =
        Cluster::start_with_env(1, "", &[("HOOKD_READINESS_INTERVAL_SECS", "1")], &[])?;
    let receiver = Receiver::ok()?;
    let webhook = cluster.create_webhook("ready", receiver.url("/ready"), &["ready"]).await?;
    wait_readiness(&cluster, true, Duration::from_secs(10)).await?;
    assert_eq!(http_status(cluster.dispatchers[0].addr(), "/healthz").await?, 200);

    cluster.nats.stop()?;
    let stopped_at = Instant::now();
    wait_readiness(&cluster, false, Duration::from_secs(10)).await?;
    println!("not serving {:.2} s after nats-server stopped", stopped_at.elapsed().as_secs_f64());
    // Alive all the same: an orchestrator must not restart a process for an outage elsewhere.
    assert_eq!(http_status(cluster.dispatchers[0].addr(), "/healthz").await?, 200);

    cluster.nats.restart()?;
    let restarted_at = Instant::now();
    wait_readiness(&cluster, true, Duration::from_secs(30)).await?;
    println!("serving {:.2} s after nats-server restarted", restarted_at.elapsed().as_secs_f64());

    publish_to_nats(&jetstream::new(cluster.nats.client().await?), "ready", "evt-after-outage")
        .await?;
    let delivery = cluster.settled_delivery(&webhook.id, Duration::from_secs(30)).await?;
    assert_eq!(delivery.status, DELIVERED);
    Ok(())
}

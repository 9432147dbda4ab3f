//! End to end, with real processes, under failure and load: a dispatcher crash, a control plane
//! outage, a dead endpoint with many retries, how answers are classified, and retry timing.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use async_nats::jetstream;
use hookd_proto::v1;
use hookd_tests::{
    Cluster, ReceivedRequest, Receiver, Response, publish_many_to_nats, publish_to_nats, responder,
    wait_until,
};

/// The latency measurement runs alone: the other tests of this file load the same two cores
/// and would measure themselves, not hookd. They share this lock; that one takes it whole.
static ALONE: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

const DELIVERED: i32 = v1::DeliveryStatus::Delivered as i32;
const PENDING: i32 = v1::DeliveryStatus::Pending as i32;
const FAILED: i32 = v1::DeliveryStatus::Failed as i32;

async fn jetstream(cluster: &Cluster) -> anyhow::Result<jetstream::Context> {
    Ok(jetstream::new(cluster.nats.client().await?))
}

fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:05}")).collect()
}

fn event_id(request: &ReceivedRequest) -> anyhow::Result<String> {
    request.json()?["meta"]["eventId"]
        .as_str()
        .map(str::to_owned)
        .context("request body without meta.eventId")
}

fn webhook_id_header(request: &ReceivedRequest) -> anyhow::Result<String> {
    request.header("webhook-id").map(str::to_owned).context("request without webhook-id")
}

/// Every copy of each event the receiver got: event id → the `webhook-id` of each copy, in
/// arrival order. Fed incrementally so polling a large receiver stays cheap.
#[derive(Default)]
struct Tally {
    seen: usize,
    copies: HashMap<String, Vec<String>>,
}

impl Tally {
    fn update(&mut self, receiver: &Receiver) -> anyhow::Result<()> {
        let requests = receiver.requests();
        for request in &requests[self.seen.min(requests.len())..] {
            self.copies.entry(event_id(request)?).or_default().push(webhook_id_header(request)?);
        }
        self.seen = requests.len();
        Ok(())
    }

    /// Copies beyond the first, summed over all events.
    fn extra_copies(&self) -> usize {
        self.copies.values().map(|c| c.len() - 1).sum()
    }

    fn duplicated_events(&self) -> usize {
        self.copies.values().filter(|c| c.len() > 1).count()
    }
}

/// Waits until the receiver got every one of `expected` at least once; returns the tally.
async fn wait_all_arrived(
    receiver: &Receiver,
    expected: &[String],
    timeout: Duration,
) -> anyhow::Result<Tally> {
    let tally = RefCell::new(Tally::default());
    wait_until(&format!("all {} events at the receiver", expected.len()), timeout, || {
        let tally = &tally;
        async move {
            let mut tally = tally.borrow_mut();
            tally.update(receiver)?;
            let missing = expected.iter().filter(|id| !tally.copies.contains_key(*id)).count();
            if missing == 0 {
                return Ok(Some(()));
            }
            anyhow::bail!("{missing} events not yet received ({} requests)", receiver.count())
        }
    })
    .await?;
    Ok(tally.into_inner())
}

/// Every delivery of a webhook, paging through ListDeliveries 500 at a time.
async fn list_all(cluster: &Cluster, webhook_id: &str) -> anyhow::Result<Vec<v1::Delivery>> {
    let mut client = cluster.deliveries().await?;
    let mut all: HashMap<String, v1::Delivery> = HashMap::new();
    let mut page_token = String::new();
    // Bounded: 100 pages of 500 is far more than any test here creates.
    for _ in 0..100 {
        // No status or time filter.
        let request = v1::ListDeliveriesRequest {
            webhook_id: webhook_id.to_owned(),
            page_size: 500,
            page_token: page_token.clone(),
            ..Default::default()
        };
        let page = client.list_deliveries(request).await?.into_inner();
        for delivery in page.deliveries {
            all.insert(delivery.id.clone(), delivery);
        }
        if page.next_page_token.is_empty() {
            return Ok(all.into_values().collect());
        }
        page_token = page.next_page_token;
    }
    anyhow::bail!("ListDeliveries of {webhook_id} did not end within 100 pages")
}

async fn get_delivery(cluster: &Cluster, id: &str) -> anyhow::Result<v1::Delivery> {
    cluster
        .deliveries()
        .await?
        .get_delivery(v1::GetDeliveryRequest { id: id.to_owned() })
        .await?
        .into_inner()
        .delivery
        .context("no delivery in the answer")
}

/// Waits until the webhook has exactly `n` deliveries and none is pending; returns them.
async fn wait_settled(
    cluster: &Cluster,
    webhook_id: &str,
    n: usize,
    timeout: Duration,
) -> anyhow::Result<Vec<v1::Delivery>> {
    wait_until(&format!("{n} settled deliveries of {webhook_id}"), timeout, || async {
        let deliveries = list_all(cluster, webhook_id).await?;
        let pending = deliveries.iter().filter(|d| d.status == PENDING).count();
        if deliveries.len() == n && pending == 0 {
            return Ok(Some(deliveries));
        }
        anyhow::bail!("{} deliveries listed, {pending} pending", deliveries.len())
    })
    .await
}

/// Waits until the delivery consumer has nothing left: no job waiting, none unacknowledged
/// (so redeliveries of a killed dispatcher's jobs have happened and been handled).
async fn wait_deliveries_drained(cluster: &Cluster, timeout: Duration) -> anyhow::Result<()> {
    hookd_tests::bench::wait_deliveries_settled(&jetstream(cluster).await?, timeout).await
}

/// A port on loopback where nothing listens (bound by the kernel, then released).
fn dead_url(path: &str) -> anyhow::Result<String> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    let addr = listener.local_addr()?;
    drop(listener);
    Ok(format!("http://{addr}{path}"))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    // Nearest rank.
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

// ---------------------------------------------------------------------------------------------

const LOAD_EVENTS: usize = 2000;
/// Per dispatcher: the delivery stage's jobs held at once.
const LOAD_MAX_IN_FLIGHT: usize = 64;
/// First attempts the fan-out makes itself at once (half its default concurrency, 64).
const INLINE_IN_FLIGHT: usize = 32;
/// The most HTTP calls a killed dispatcher can have made without their acknowledgement,
/// hence the bound on duplicates.
const MOST_UNACKNOWLEDGED: usize = LOAD_MAX_IN_FLIGHT + INLINE_IN_FLIGHT;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_dispatcher_mid_load_loses_no_delivery() -> anyhow::Result<()> {
    let _shared = ALONE.read().await;
    let test_started = Instant::now();
    let mut cluster = Cluster::start(
        2,
        &format!(
            "max_in_flight = {LOAD_MAX_IN_FLIGHT}\nattempt_timeout_secs = 2\n\
             retry_schedule_secs = [1, 2, 3]"
        ),
    )?;
    let receiver =
        Receiver::start(responder(|_, _| Response::ok().with_delay(Duration::from_millis(50))))?;
    let webhook = cluster.create_webhook("load", receiver.url("/load"), &["load-test"]).await?;

    let expected = ids("evt-load", LOAD_EVENTS);
    let publisher = tokio::spawn(publish_many_to_nats(
        jetstream(&cluster).await?,
        "load-test".into(),
        expected.clone(),
        32,
    ));
    receiver.wait_for(300, Duration::from_secs(60)).await?;
    let at_kill = receiver.count();
    let killed_at = Instant::now();
    cluster.dispatchers[0].kill()?;
    publisher.await.context("publisher task")??;
    println!("killed dispatcher 0 after {at_kill} requests had arrived");

    let tally = wait_all_arrived(&receiver, &expected, Duration::from_secs(120)).await?;
    let all_arrived = killed_at.elapsed();
    // The killed dispatcher's unacknowledged jobs come back after ack_wait; let them finish
    // before counting duplicates, so every duplicate there will be is counted.
    wait_deliveries_drained(&cluster, Duration::from_secs(60)).await?;
    let mut tally = tally;
    tally.update(&receiver)?;

    let extra = tally.extra_copies();
    println!(
        "all {LOAD_EVENTS} events arrived {:.1} s after the kill; {} requests in all, {} events \
         duplicated, {extra} extra copies (bound {MOST_UNACKNOWLEDGED})",
        all_arrived.as_secs_f64(),
        receiver.count(),
        tally.duplicated_events(),
    );
    // The killed dispatcher's messages come back after the default ack_wait (15 s), not
    // after a minute: every message in progress is progress-acked, so the wait can be short.
    assert!(
        all_arrived < Duration::from_secs(30),
        "the last delivery came {:.1} s after the kill; its messages should come back within \
         the 15 s ack_wait",
        all_arrived.as_secs_f64()
    );
    assert_eq!(tally.copies.len(), LOAD_EVENTS, "only the published events arrive");
    for (event, copies) in &tally.copies {
        assert!(
            copies.iter().all(|c| *c == copies[0]),
            "{event}: copies carry different webhook-id headers: {copies:?}"
        );
    }

    let deliveries =
        wait_until("every delivery recorded as delivered", Duration::from_secs(60), || async {
            let deliveries = list_all(&cluster, &webhook.id).await?;
            let delivered = deliveries.iter().filter(|d| d.status == DELIVERED).count();
            if deliveries.len() == LOAD_EVENTS && delivered == LOAD_EVENTS {
                return Ok(Some(deliveries));
            }
            anyhow::bail!("{} deliveries listed, {delivered} delivered", deliveries.len())
        })
        .await?;
    let listed: HashSet<&str> = deliveries.iter().map(|d| d.id.as_str()).collect();
    let sent: HashSet<&str> = tally.copies.values().map(|c| c[0].as_str()).collect();
    assert_eq!(listed, sent, "the history lists exactly the deliveries the endpoint got");
    let events: HashSet<&str> = deliveries.iter().map(|d| d.event_id.as_str()).collect();
    assert_eq!(events.len(), LOAD_EVENTS);
    println!("test took {:.1} s", test_started.elapsed().as_secs_f64());
    // Last, so that a run failing here has already proved that nothing was lost.
    assert!(
        extra <= MOST_UNACKNOWLEDGED,
        "{extra} duplicate deliveries, more than the killed dispatcher's {MOST_UNACKNOWLEDGED} in flight"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_dispatchers_share_the_work_and_deliver_each_event_once() -> anyhow::Result<()> {
    let _shared = ALONE.read().await;
    const EVENTS: usize = 1000;
    let cluster = Cluster::start(2, "max_in_flight = 64")?;
    let receiver =
        Receiver::start(responder(|_, _| Response::ok().with_delay(Duration::from_millis(5))))?;
    let webhook = cluster.create_webhook("shared", receiver.url("/"), &["shared"]).await?;
    let expected = ids("evt-shared", EVENTS);
    publish_many_to_nats(jetstream(&cluster).await?, "shared".into(), expected.clone(), 32).await?;
    let mut tally = wait_all_arrived(&receiver, &expected, Duration::from_secs(60)).await?;
    wait_deliveries_drained(&cluster, Duration::from_secs(30)).await?;
    tally.update(&receiver)?;
    assert_eq!(tally.extra_copies(), 0, "with nothing failing, each delivery is made once");
    // Both processes took part: each logged attempts of its own.
    let mut shares = Vec::new();
    for dispatcher in &cluster.dispatchers {
        let log = std::fs::read_to_string(dispatcher.log_path())?;
        shares.push(log.matches("attempt made").count());
    }
    println!("attempts per dispatcher: {shares:?}");
    assert_eq!(shares.iter().sum::<usize>(), EVENTS);
    assert!(shares.iter().all(|s| *s > 0), "one dispatcher did nothing: {shares:?}");
    let deliveries = list_all(&cluster, &webhook.id).await?;
    assert_eq!(deliveries.iter().filter(|d| d.status == DELIVERED).count(), EVENTS);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_outage_loses_no_result_and_repeats_no_call() -> anyhow::Result<()> {
    let _shared = ALONE.read().await;
    const EVENTS: usize = 200;
    const OUTAGE: Duration = Duration::from_secs(20);
    let test_started = Instant::now();
    // ack_wait well below the outage: only progress acks keep JetStream from redelivering
    // the jobs whose results cannot be stored.
    let mut cluster = Cluster::start(
        1,
        "ack_wait_secs = 10\nattempt_timeout_secs = 2\nretry_schedule_secs = [1, 2, 3]",
    )?;
    let receiver =
        Receiver::start(responder(|_, _| Response::ok().with_delay(Duration::from_millis(20))))?;
    let webhook =
        cluster.create_webhook("outage", receiver.url("/outage"), &["outage-test"]).await?;
    let js = jetstream(&cluster).await?;

    let expected = ids("evt-outage", EVENTS);
    let (before, during) = expected.split_at(EVENTS / 2);
    let publisher =
        tokio::spawn(publish_many_to_nats(js.clone(), "outage-test".into(), before.to_vec(), 8));
    receiver.wait_for(30, Duration::from_secs(30)).await?;
    cluster.control.kill()?;
    let killed_at = Instant::now();
    let at_kill = receiver.count();
    publisher.await.context("publisher task")??;
    // The control plane's gRPC is down: producers publish to NATS directly.
    publish_many_to_nats(js.clone(), "outage-test".into(), during.to_vec(), 8).await?;

    // The outage itself lasts a fixed time; this sleep is the scenario, not a wait for a
    // condition.
    tokio::time::sleep(OUTAGE.saturating_sub(killed_at.elapsed())).await;
    let during_outage = receiver.count();
    let old_control = cluster.restart_control()?;
    println!(
        "control plane killed after {at_kill} requests; {during_outage} requests by the end of \
         the {}-s outage; restarted on {}",
        OUTAGE.as_secs(),
        cluster.control.addr()
    );
    drop(old_control);
    let restarted_at = Instant::now();
    // Otherwise the scenario proved nothing: results must have been held during the outage.
    assert!(during_outage > at_kill, "no HTTP call was made while the control plane was down");

    let tally = wait_all_arrived(&receiver, &expected, Duration::from_secs(60)).await?;
    let deliveries = wait_until(
        "every delivery recorded as delivered with one attempt",
        Duration::from_secs(60),
        || async {
            let deliveries = list_all(&cluster, &webhook.id).await?;
            let done =
                deliveries.iter().filter(|d| d.status == DELIVERED && d.attempt_count == 1).count();
            if deliveries.len() == EVENTS && done == EVENTS {
                return Ok(Some(deliveries));
            }
            anyhow::bail!("{} deliveries listed, {done} delivered with 1 attempt", deliveries.len())
        },
    )
    .await?;
    println!("all results stored {:.1} s after the restart", restarted_at.elapsed().as_secs_f64());
    wait_deliveries_drained(&cluster, Duration::from_secs(30)).await?;
    let mut tally = tally;
    tally.update(&receiver)?;
    assert_eq!(
        tally.extra_copies(),
        0,
        "HTTP calls repeated: {:?}",
        tally.copies.iter().filter(|(_, c)| c.len() > 1).collect::<Vec<_>>()
    );
    assert_eq!(receiver.count(), EVENTS);
    for delivery in &deliveries {
        let full = get_delivery(&cluster, &delivery.id).await?;
        assert_eq!(full.attempts.len(), 1, "{}: {:?}", delivery.id, full.attempts);
        let attempt = &full.attempts[0];
        assert!(attempt.success && attempt.http_status == 200, "{attempt:?}");
    }
    println!("test took {:.1} s", test_started.elapsed().as_secs_f64());
    Ok(())
}

/// Publishes `n` events of `event_type` one every 100 ms and returns each one's latency, from
/// just before its publish to its arrival at `receiver`.
async fn measure_latencies(
    js: &jetstream::Context,
    receiver: &Receiver,
    event_type: &str,
    prefix: &str,
    n: usize,
) -> anyhow::Result<Vec<Duration>> {
    let already = receiver.count();
    let mut published = HashMap::new();
    let mut pace = tokio::time::interval(Duration::from_millis(100));
    for id in ids(prefix, n) {
        pace.tick().await;
        published.insert(id.clone(), Instant::now());
        publish_to_nats(js, event_type, &id).await?;
    }
    let requests = receiver.wait_for(already + n, Duration::from_secs(60)).await?;
    let mut latencies = Vec::with_capacity(n);
    for request in &requests[already..] {
        let id = event_id(request)?;
        let sent = published.remove(&id).with_context(|| format!("unexpected or repeated {id}"))?;
        latencies.push(request.received_at.saturating_duration_since(sent));
    }
    anyhow::ensure!(published.is_empty(), "not received: {:?}", published.keys());
    latencies.sort();
    Ok(latencies)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_endpoint_with_many_pending_retries_does_not_slow_a_healthy_one() -> anyhow::Result<()>
{
    let _alone = ALONE.write().await;
    const DEAD_EVENTS: usize = 2000;
    const LIVE_EVENTS: usize = 50;
    // A healthy delivery is one fan-out plus one HTTP call; on an idle cluster that is a few
    // milliseconds. A second leaves room for a 2-core machine busy with the dead endpoint's
    // retries (each a connect attempt plus a reported result), while a live job queued behind
    // the ~2000 retried jobs would take several seconds.
    const P99_BOUND: Duration = Duration::from_secs(1);
    let test_started = Instant::now();
    let cluster = Cluster::start(1, "retry_schedule_secs = [1, 1, 1, 1, 1, 1, 1, 1]")?;
    let live = Receiver::ok()?;
    let dead = cluster.create_webhook("dead", dead_url("/dead")?, &["dead-type"]).await?;
    cluster.create_webhook("live", live.url("/live"), &["live-type"]).await?;
    let js = jetstream(&cluster).await?;

    let baseline = measure_latencies(&js, &live, "live-type", "evt-live-base", LIVE_EVENTS).await?;

    let load_started = Instant::now();
    publish_many_to_nats(js.clone(), "dead-type".into(), ids("evt-dead", DEAD_EVENTS), 64).await?;
    let first_attempts =
        wait_until("a first attempt at every dead delivery", Duration::from_secs(90), || async {
            let deliveries = list_all(&cluster, &dead.id).await?;
            if deliveries.len() == DEAD_EVENTS {
                return Ok(Some(deliveries));
            }
            anyhow::bail!("{} dead deliveries recorded", deliveries.len())
        })
        .await?;
    let pending_before = first_attempts.iter().filter(|d| d.status == PENDING).count();
    let attempts_before: u32 = first_attempts.iter().map(|d| d.attempt_count).sum();
    println!(
        "dead load: {DEAD_EVENTS} deliveries recorded {:.1} s after publishing began, {pending_before} \
         pending, {attempts_before} attempts so far",
        load_started.elapsed().as_secs_f64()
    );
    assert!(pending_before >= DEAD_EVENTS / 2, "the dead load is mostly over already");

    let measure_started = Instant::now();
    let loaded = measure_latencies(&js, &live, "live-type", "evt-live-load", LIVE_EVENTS).await?;
    let window = measure_started.elapsed();
    let after = list_all(&cluster, &dead.id).await?;
    let pending_after = after.iter().filter(|d| d.status == PENDING).count();
    let attempts_after: u32 = after.iter().map(|d| d.attempt_count).sum();

    let report = |name: &str, l: &[Duration]| {
        println!(
            "{name}: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            ms(percentile(l, 0.5)),
            ms(percentile(l, 0.9)),
            ms(percentile(l, 0.99)),
            ms(l[l.len() - 1])
        );
    };
    report("baseline latency", &baseline);
    report("latency under dead load", &loaded);
    println!(
        "during the {:.1}-s measurement the dead endpoint got {} attempts; {pending_after} dead \
         deliveries still pending after it",
        window.as_secs_f64(),
        attempts_after - attempts_before
    );
    assert!(
        attempts_after > attempts_before,
        "the dead endpoint was not being retried while measuring"
    );
    let p99 = percentile(&loaded, 0.99);
    assert!(
        p99 < P99_BOUND,
        "p99 latency of the healthy webhook under dead load is {p99:?} (baseline p99 {:?})",
        percentile(&baseline, 0.99)
    );
    println!("test took {:.1} s", test_started.elapsed().as_secs_f64());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_are_classified() -> anyhow::Result<()> {
    let _shared = ALONE.read().await;
    let test_started = Instant::now();
    let cluster = Cluster::start(1, "retry_schedule_secs = []\nattempt_timeout_secs = 1")?;
    let base: Arc<OnceLock<String>> = Arc::new(OnceLock::new());
    let receiver = Receiver::start(responder({
        let base = base.clone();
        move |request, _| match request.path.as_str() {
            "/redirect" => Response::status(302).with_header(
                "location",
                format!("{}/redirect-target", base.get().map_or("", String::as_str)),
            ),
            "/throttled" => Response::status(429).with_body("slow down"),
            "/slow" => Response::ok().with_delay(Duration::from_secs(3)),
            "/no-content" => Response::status(204),
            _ => Response::ok(),
        }
    }))?;
    base.set(receiver.url("")).map_err(|_| anyhow::anyhow!("base set twice"))?;

    let cases = [
        ("redirect", receiver.url("/redirect")),
        ("throttled", receiver.url("/throttled")),
        ("slow", receiver.url("/slow")),
        ("refused", dead_url("/refused")?),
        ("no-content", receiver.url("/no-content")),
    ];
    let js = jetstream(&cluster).await?;
    let mut webhooks = HashMap::new();
    for (name, url) in &cases {
        let webhook = cluster.create_webhook(name, url.clone(), &[name]).await?;
        publish_to_nats(&js, name, &format!("evt-{name}")).await?;
        webhooks.insert(*name, webhook);
    }
    let mut attempts = HashMap::new();
    for (name, _) in &cases {
        let listed = wait_settled(&cluster, &webhooks[name].id, 1, Duration::from_secs(30)).await?;
        let delivery = get_delivery(&cluster, &listed[0].id).await?;
        assert_eq!(delivery.attempts.len(), 1, "{name}: {:?}", delivery.attempts);
        let a = &delivery.attempts[0];
        println!(
            "{name}: status {}, http_status {}, latency {} ms, error {:?}",
            delivery.status, a.http_status, a.latency_ms, a.error
        );
        attempts.insert(*name, (delivery.status, delivery.attempts[0].clone()));
    }

    let (status, a) = &attempts["redirect"];
    assert_eq!((*status, a.success, a.http_status), (FAILED, false, 302), "{a:?}");
    assert!(a.error.contains("redirect"), "{a:?}");
    let (status, a) = &attempts["throttled"];
    assert_eq!((*status, a.success, a.http_status), (FAILED, false, 429), "{a:?}");
    assert!(a.error.contains("429"), "{a:?}");
    let (status, a) = &attempts["slow"];
    assert_eq!((*status, a.success, a.http_status), (FAILED, false, 0), "{a:?}");
    assert!(a.error.contains("no answer"), "{a:?}");
    assert!(a.latency_ms >= 900 && a.latency_ms < 2500, "timeout after 1 s: {a:?}");
    let (status, a) = &attempts["refused"];
    assert_eq!((*status, a.success, a.http_status), (FAILED, false, 0), "{a:?}");
    assert!(a.error.contains("connect"), "{a:?}");
    let (status, a) = &attempts["no-content"];
    assert_eq!((*status, a.success, a.http_status), (DELIVERED, true, 204), "{a:?}");
    assert!(a.error.is_empty(), "{a:?}");

    // Every attempt has been recorded, so a followed redirect would have arrived by now.
    let paths: Vec<String> = receiver.requests().iter().map(|r| r.path.clone()).collect();
    assert!(!paths.iter().any(|p| p == "/redirect-target"), "redirect followed: {paths:?}");
    for path in ["/redirect", "/throttled", "/slow", "/no-content"] {
        assert_eq!(paths.iter().filter(|p| *p == path).count(), 1, "{path}: {paths:?}");
    }
    println!("test took {:.1} s", test_started.elapsed().as_secs_f64());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_endpoint_is_retried_on_schedule_then_succeeds() -> anyhow::Result<()> {
    let _shared = ALONE.read().await;
    const TOLERANCE: Duration = Duration::from_millis(500);
    let test_started = Instant::now();
    let cluster = Cluster::start(1, "retry_schedule_secs = [1, 2, 3]")?;
    let receiver = Receiver::start(responder(|_, index| {
        if index < 2 { Response::status(500).with_body("broken") } else { Response::ok() }
    }))?;
    let webhook = cluster.create_webhook("flaky", receiver.url("/flaky"), &["flaky"]).await?;
    publish_to_nats(&jetstream(&cluster).await?, "flaky", "evt-flaky").await?;

    let requests = receiver.wait_for(3, Duration::from_secs(30)).await?;
    let delivery_id = webhook_id_header(&requests[0])?;
    for request in &requests {
        assert_eq!(webhook_id_header(request)?, delivery_id, "webhook-id stable across retries");
        assert_eq!(event_id(request)?, "evt-flaky");
    }
    let scheduled = [Duration::from_secs(1), Duration::from_secs(2)];
    for (i, expected) in scheduled.iter().enumerate() {
        let gap = requests[i + 1].received_at.duration_since(requests[i].received_at);
        let error = gap.as_secs_f64() - expected.as_secs_f64();
        println!(
            "retry {}: gap {:.0} ms, scheduled {:.0} ms, error {:+.0} ms",
            i + 1,
            ms(gap),
            ms(*expected),
            error * 1000.0
        );
        assert!(
            error.abs() <= TOLERANCE.as_secs_f64(),
            "retry {} came {gap:?} after the previous attempt, scheduled {expected:?}",
            i + 1
        );
    }

    let listed = wait_settled(&cluster, &webhook.id, 1, Duration::from_secs(20)).await?;
    assert_eq!(listed[0].id, delivery_id);
    let delivery = get_delivery(&cluster, &delivery_id).await?;
    assert_eq!(delivery.status, DELIVERED);
    let summary: Vec<(u32, u32, bool)> =
        delivery.attempts.iter().map(|a| (a.number, a.http_status, a.success)).collect();
    assert_eq!(summary, [(1, 500, false), (2, 500, false), (3, 200, true)]);
    assert_eq!(receiver.count(), 3);
    println!("test took {:.1} s", test_started.elapsed().as_secs_f64());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn always_failing_endpoint_ends_failed_without_more_calls() -> anyhow::Result<()> {
    let _shared = ALONE.read().await;
    let test_started = Instant::now();
    let cluster = Cluster::start(1, "retry_schedule_secs = [1, 1]")?;
    let receiver = Receiver::start(responder(|_, _| Response::status(500)))?;
    let webhook = cluster.create_webhook("broken", receiver.url("/broken"), &["broken"]).await?;
    publish_to_nats(&jetstream(&cluster).await?, "broken", "evt-broken").await?;

    receiver.wait_for(3, Duration::from_secs(30)).await?;
    let listed = wait_settled(&cluster, &webhook.id, 1, Duration::from_secs(20)).await?;
    assert_eq!(listed[0].status, FAILED);
    // Proving that nothing more happens needs a fixed wait: three times the retry delay.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(receiver.count(), 3, "no call after the last scheduled retry");

    let delivery = get_delivery(&cluster, &listed[0].id).await?;
    assert_eq!(delivery.status, FAILED);
    assert_eq!(delivery.attempt_count, 3);
    assert!(delivery.next_attempt_at.is_none(), "{:?}", delivery.next_attempt_at);
    let summary: Vec<(u32, u32, bool)> =
        delivery.attempts.iter().map(|a| (a.number, a.http_status, a.success)).collect();
    assert_eq!(summary, [(1, 500, false), (2, 500, false), (3, 500, false)]);
    println!("test took {:.1} s", test_started.elapsed().as_secs_f64());
    Ok(())
}

/// An attempt report as a dispatcher's fan-out sends it for the first attempt it made itself.
fn first_attempt_report(
    webhook: &v1::Webhook,
    event_id: &str,
    event_time: chrono::DateTime<chrono::Utc>,
    success: bool,
    next_attempt_at: Option<chrono::DateTime<chrono::Utc>>,
) -> v1::AttemptReport {
    let delivery_id = hookd_core::DeliveryId::for_event(
        &hookd_core::EventId::from(event_id),
        event_time,
        &hookd_core::WebhookId::from(webhook.id.as_str()),
    )
    .to_string();
    let status = if success { DELIVERED } else { PENDING };
    v1::AttemptReport {
        delivery_id,
        webhook_id: webhook.id.clone(),
        event_id: event_id.to_owned(),
        event_type: "resume".to_owned(),
        payload: "{}".to_owned(),
        event: format!(r#"{{"id":"{event_id}","type":"resume","data":{{}}}}"#),
        tenant: hookd_tests::TENANT.to_owned(),
        attempt: Some(v1::Attempt {
            number: 1,
            started_at: Some(hookd_proto::convert::timestamp(chrono::Utc::now())),
            http_status: if success { 200 } else { 500 },
            latency_ms: 1,
            success,
            ..Default::default()
        }),
        status,
        next_attempt_at: next_attempt_at.map(hookd_proto::convert::timestamp),
        traceparent: String::new(),
    }
}

/// The fan-out makes a delivery's first attempt itself, which leaves no job behind. When the
/// event comes back (its acknowledgement lost to a NATS leader change, say), the repeated
/// fan-out must neither call again under attempt number 1 (the history would keep one of the
/// two calls) nor call at all for a delivery that is over. The first run is played here by
/// the test: it takes the event from the fan-out's consumer, reports what "its" attempts did
/// over the dispatcher API, and hands the event back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_event_continues_each_delivery_where_its_first_fan_out_left_off()
-> anyhow::Result<()> {
    use futures::StreamExt;
    let _shared = ALONE.read().await;
    let mut cluster = Cluster::start(1, "")?;
    let receiver = Receiver::ok()?;
    let over = cluster.create_webhook("over", receiver.url("/over"), &["resume"]).await?;
    let retry = cluster.create_webhook("retry", receiver.url("/retry"), &["resume"]).await?;
    let start = cluster.create_webhook("start", receiver.url("/start"), &["resume"]).await?;
    // The consumer exists (the dispatcher made it); with no dispatcher, the test takes the event.
    for mut dispatcher in cluster.dispatchers.drain(..) {
        dispatcher.terminate()?;
    }
    let event_id = "evt-resume-1";
    let js = jetstream(&cluster).await?;
    // Without a timestamp: the fan-out then takes the time JetStream stored the event, the
    // same for both runs, so both derive the same delivery ids.
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", event_id);
    let body = serde_json::json!({"id": event_id, "type": "resume", "data": {}});
    js.publish_with_headers(
        format!("hookd.events.{}.resume", hookd_tests::TENANT),
        headers,
        body.to_string().into(),
    )
    .await?
    .await?;
    let consumer: jetstream::consumer::PullConsumer = js
        .get_stream("HOOKD_EVENTS")
        .await?
        .get_consumer("hookd-fanout")
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut batch =
        consumer.fetch().max_messages(1).expires(Duration::from_secs(10)).messages().await?;
    let msg = batch
        .next()
        .await
        .context("the event from the fan-out's consumer")?
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let info = msg.info().map_err(|e| anyhow::anyhow!("{e}"))?;
    assert_eq!(info.delivered, 1);
    // Delivery ids are derived from the event's id and timestamp: here, its stored time.
    let event_time = chrono::DateTime::from_timestamp_nanos(i64::try_from(
        info.published.unix_timestamp_nanos(),
    )?);

    let mut dispatch = v1::dispatch_service_client::DispatchServiceClient::new(
        cluster.authed(Some(hookd_tests::DISPATCHER_TOKEN)).await?,
    );
    let due = chrono::Utc::now() + chrono::Duration::seconds(1);
    let answer = dispatch
        .report_attempts(v1::ReportAttemptsRequest {
            reports: vec![
                first_attempt_report(&over, event_id, event_time, true, None),
                first_attempt_report(&retry, event_id, event_time, false, Some(due)),
            ],
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(answer.recorded, 2);
    // The first run stops before acknowledging (and before scheduling the retry).
    msg.ack_with(jetstream::AckKind::Nak(None)).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    cluster.add_dispatcher()?;

    let retried = cluster
        .first_delivery_when(
            &retry.id,
            "the retried delivery delivered",
            Duration::from_secs(30),
            |d| d.status == DELIVERED,
        )
        .await?;
    let numbers: Vec<u32> = retried.attempts.iter().map(|a| a.number).collect();
    assert_eq!(numbers, [1, 2], "the retry continues under the next number");
    let started = cluster.settled_delivery(&start.id, Duration::from_secs(30)).await?;
    assert_eq!(started.attempts.len(), 1);
    assert_eq!(started.status, DELIVERED);
    // Every job the repeated fan-out wrote has been worked off: a call for the delivery that
    // was over would have been made by now.
    let deliveries: jetstream::consumer::PullConsumer = js
        .get_stream("HOOKD_DELIVERIES")
        .await?
        .get_consumer("hookd-delivery")
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let events = consumer;
    wait_until("both consumers drained", Duration::from_secs(30), || {
        let (mut deliveries, mut events) = (deliveries.clone(), events.clone());
        async move {
            let (d, e) = (deliveries.info().await?.clone(), events.info().await?.clone());
            Ok((d.num_pending
                + d.num_ack_pending as u64
                + e.num_pending
                + e.num_ack_pending as u64
                == 0)
                .then_some(()))
        }
    })
    .await?;
    let paths: Vec<String> = receiver.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(
        paths.iter().filter(|p| *p == "/over").count(),
        0,
        "a delivery that was over is not made again: {paths:?}"
    );
    assert_eq!(paths.iter().filter(|p| *p == "/retry").count(), 1, "{paths:?}");
    assert_eq!(paths.iter().filter(|p| *p == "/start").count(), 1, "{paths:?}");
    let over_delivery = cluster.settled_delivery(&over.id, Duration::from_secs(5)).await?;
    assert_eq!(over_delivery.attempts.len(), 1);
    Ok(())
}

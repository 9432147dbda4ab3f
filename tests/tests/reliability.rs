//! Reliability at scale, end to end with real processes: a three-server NATS cluster losing
//! the leader of the deliveries stream and then the meta leader under steady load; a single
//! NATS server killed and restarted on its store; a control plane killed while dispatchers
//! report to it, and Postgres restarted under load; and streams too full to take more.
//!
//! Each test loads the machine's two cores on its own, so they run one at a time.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream;
use hookd_proto::v1::{self, delivery_service_client::DeliveryServiceClient};
use hookd_tests::{
    Arrivals, Authed, Cluster, HookdProcess, NatsOptions, OWNER_TOKEN, Published, Receiver,
    Response, SteadyLoad, authed, publish_steadily, responder, wait_until,
};
use tonic::transport::Channel;

static ALONE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const DELIVERED: i32 = v1::DeliveryStatus::Delivered as i32;
/// hookd's streams, as the control plane names them.
const EVENTS_STREAM: &str = "HOOKD_EVENTS";
const DELIVERIES_STREAM: &str = "HOOKD_DELIVERIES";

/// Dispatcher settings of these tests: attempts time out after 2 s, so `ack_wait` may be 10 s
/// (it must exceed the attempt timeout by 5 s). A settlement lost with a NATS server comes
/// back after `ack_wait`; at the default 60 s these tests would mostly wait.
const DISPATCHER: &str = "ack_wait_secs = 10\nattempt_timeout_secs = 2\n";

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// A client of `control`'s `DeliveryService` as the owner of the default tenant.
async fn deliveries_at(control: &HookdProcess) -> anyhow::Result<DeliveryServiceClient<Authed>> {
    let channel = Channel::from_shared(control.grpc_url())?.connect().await?;
    Ok(DeliveryServiceClient::new(authed(channel, Some(OWNER_TOKEN))))
}

/// Every delivery of a webhook, paging through `ListDeliveries` 500 at a time.
async fn list_all(
    client: &mut DeliveryServiceClient<Authed>,
    webhook_id: &str,
) -> anyhow::Result<Vec<v1::Delivery>> {
    let mut all = HashMap::new();
    let mut page_token = String::new();
    // Bounded: 100 pages of 500 is far more than any test here creates.
    for _ in 0..100 {
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

/// Waits until every acknowledged event has arrived at the receiver; returns what arrived.
async fn wait_arrived(
    receiver: &Receiver,
    published: &Published,
    timeout: Duration,
) -> anyhow::Result<Arrivals> {
    let arrivals = std::cell::RefCell::new(Arrivals::default());
    let what = format!("all {} acknowledged events at the receiver", published.acked.len());
    wait_until(&what, timeout, || {
        let arrivals = &arrivals;
        async move {
            let mut arrivals = arrivals.borrow_mut();
            arrivals.update(receiver)?;
            let missing = arrivals.missing(published.acked.keys()).len();
            if missing == 0 {
                return Ok(Some(()));
            }
            anyhow::bail!("{missing} acknowledged events not received yet")
        }
    })
    .await?;
    Ok(arrivals.into_inner())
}

/// Waits until the delivery consumer holds nothing (so redeliveries have happened).
async fn wait_drained(js: &jetstream::Context, timeout: Duration) -> anyhow::Result<()> {
    hookd_tests::bench::wait_deliveries_settled(js, timeout).await
}

/// What the history says against what the endpoint got.
struct History {
    /// Deliveries listed (all delivered).
    deliveries: usize,
    /// Deliveries with fewer recorded attempts than HTTP requests made: a request repeated
    /// under an attempt number already recorded (attempts are stored idempotently on
    /// (delivery id, number), so the repeat is taken for a resent report). (id, requests,
    /// attempts recorded)
    repeated_numbers: Vec<(String, usize, u32)>,
    /// Attempts recorded beyond the requests the endpoint saw: attempts that failed before
    /// a request arrived (connect or timeout errors on a busy machine).
    unseen_attempts: usize,
}

/// Waits until the history lists exactly the deliveries the endpoint got, all delivered,
/// and compares each one's recorded attempts with the requests the endpoint received.
async fn check_history(
    client: &mut DeliveryServiceClient<Authed>,
    webhook_ids: &[String],
    arrivals: &Arrivals,
    timeout: Duration,
) -> anyhow::Result<History> {
    let requests = arrivals.requests_per_delivery();
    let listed = wait_until("every delivery recorded as delivered", timeout, || {
        let mut client = client.clone();
        let requests = &requests;
        async move {
            let mut listed = Vec::new();
            for id in webhook_ids {
                listed.extend(list_all(&mut client, id).await?);
            }
            let delivered = listed.iter().filter(|d| d.status == DELIVERED).count();
            if listed.len() == requests.len() && delivered == listed.len() {
                return Ok(Some(listed));
            }
            anyhow::bail!(
                "{} deliveries listed, {delivered} delivered, {} received",
                listed.len(),
                requests.len()
            )
        }
    })
    .await?;
    let mut history =
        History { deliveries: listed.len(), repeated_numbers: Vec::new(), unseen_attempts: 0 };
    for delivery in &listed {
        let made = requests.get(delivery.id.as_str()).copied().unwrap_or(0);
        let recorded = delivery.attempt_count as usize;
        if recorded < made {
            history.repeated_numbers.push((delivery.id.clone(), made, delivery.attempt_count));
        } else if recorded > made {
            history.unseen_attempts += recorded - made;
            if history.unseen_attempts <= 3 {
                let full = client
                    .get_delivery(v1::GetDeliveryRequest { id: delivery.id.clone() })
                    .await?
                    .into_inner()
                    .delivery
                    .context("no delivery in the answer")?;
                let attempts: Vec<(u32, u32, &str)> = full
                    .attempts
                    .iter()
                    .map(|a| (a.number, a.http_status, a.error.as_str()))
                    .collect();
                println!("{}: {made} requests seen, attempts {attempts:?}", delivery.id);
            }
        }
    }
    Ok(history)
}

/// Creates one active webhook per event type, each at its own path of `receiver`.
async fn webhooks_per_type(
    cluster: &Cluster,
    receiver: &Receiver,
    types: &[String],
) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::new();
    for event_type in types {
        let url = receiver.url(&format!("/{event_type}"));
        ids.push(cluster.create_webhook(event_type, url, &[event_type.as_str()]).await?.id);
    }
    Ok(ids)
}

fn types(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_nats_server_restarted_on_its_store_loses_no_acknowledged_event_with_sync_always()
-> anyhow::Result<()> {
    let _alone = ALONE.lock().await;
    let outcome =
        single_server_restart(NatsOptions { sync_always: true, ..Default::default() }).await?;
    println!("sync_interval: always: {outcome}");
    Ok(())
}

/// A process kill leaves what the server wrote in the operating system's page cache, which
/// the restarted server reads back: the default fsync interval loses nothing to it either.
/// What only `sync_interval: always` protects against is the loss of the machine (power, a
/// kernel crash), which no test here can cause.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_nats_server_restarted_on_its_store_loses_no_acknowledged_event_with_the_default_fsync_too()
-> anyhow::Result<()> {
    let _alone = ALONE.lock().await;
    let outcome = single_server_restart(NatsOptions::default()).await?;
    println!("default fsync interval (2 min): {outcome}");
    Ok(())
}

/// What a restart of the only NATS server did.
struct RestartOutcome {
    acked: usize,
    unacked: usize,
    retries: usize,
    publish_pause: Duration,
    delivery_pause: Duration,
    duplicates: usize,
    repeated_numbers: usize,
}

impl std::fmt::Display for RestartOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} events acknowledged, every one delivered ({} given up by the producer, {} \
             publishes retried); producers held up {:.1} s, deliveries paused {:.1} s; {} \
             extra copies, {} of them under an attempt number already recorded",
            self.acked,
            self.unacked,
            self.retries,
            secs(self.publish_pause),
            secs(self.delivery_pause),
            self.duplicates,
            self.repeated_numbers
        )
    }
}

/// Publishes steadily, kills the only nats-server (SIGKILL) a few seconds in, starts it again
/// on the same store two seconds later, and checks that every event the producer got an ack
/// for is delivered and recorded.
async fn single_server_restart(options: NatsOptions) -> anyhow::Result<RestartOutcome> {
    const EVENTS: usize = 3000;
    const OUTAGE: Duration = Duration::from_secs(2);
    let mut cluster = Cluster::builder()
        .nats_options(options.clone())
        .dispatchers(1)
        .dispatcher_extra(DISPATCHER)
        .start()?;
    let varz = cluster.nats.server(0).monitor("varz").await?;
    assert_eq!(
        varz["jetstream"]["config"]["sync_always"].as_bool().unwrap_or(false),
        options.sync_always,
        "the server runs with the fsync setting under test"
    );
    let receiver = Receiver::ok()?;
    let event_types = types("restart", 2);
    let webhooks = webhooks_per_type(&cluster, &receiver, &event_types).await?;
    let load = SteadyLoad {
        prefix: "evt-restart".into(),
        count: EVENTS,
        event_types,
        rate: 300.0,
        in_flight: 64,
        give_up_after: Duration::from_secs(30),
    };
    let js = jetstream::new(cluster.nats.client().await?);
    let producer = tokio::spawn(publish_steadily(js.clone(), load));
    receiver.wait_for(600, Duration::from_secs(30)).await?;
    let killed_at = Instant::now();
    cluster.nats.kill(0)?;
    // The outage lasts a fixed time: this sleep is the scenario.
    tokio::time::sleep(OUTAGE).await;
    cluster.nats.restart_server(0)?;
    let restarted_at = Instant::now();
    println!("nats-server killed, restarted after {:.1} s", secs(restarted_at - killed_at));
    let published = producer.await.context("producer task")?;
    let arrivals = wait_arrived(&receiver, &published, Duration::from_secs(90)).await?;
    wait_drained(&js, Duration::from_secs(60)).await?;
    let mut arrivals = arrivals;
    arrivals.update(&receiver)?;
    assert!(arrivals.inconsistent().is_empty(), "copies with different webhook-id headers");
    let window_end = restarted_at + Duration::from_secs(20);
    let outcome = RestartOutcome {
        acked: published.acked.len(),
        unacked: published.unacked.len(),
        retries: published.retries,
        publish_pause: published.longest_gap(killed_at, window_end),
        delivery_pause: arrivals.longest_gap(killed_at, window_end),
        duplicates: arrivals.extra_copies(),
        repeated_numbers: 0,
    };
    let mut client = deliveries_at(&cluster.control).await?;
    let history = check_history(&mut client, &webhooks, &arrivals, Duration::from_secs(60)).await?;
    let outcome = RestartOutcome { repeated_numbers: history.repeated_numbers.len(), ..outcome };
    // Only events the producer sent arrive.
    let sent: HashSet<String> = (0..EVENTS).map(|n| format!("evt-restart-{n:05}")).collect();
    assert!(arrivals.events().iter().all(|e| sent.contains(*e)));
    Ok(outcome)
}

// ---------------------------------------------------------------------------------------------

/// What killing one NATS server of the cluster did to the load.
struct Kill {
    what: String,
    server: usize,
    at: Instant,
    restarted_at: Instant,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_server_nats_cluster_losing_its_leaders_loses_no_acknowledged_event()
-> anyhow::Result<()> {
    let _alone = ALONE.lock().await;
    const EVENTS: usize = 10_000;
    /// How long each killed server stays down: the scenario, not a wait for a condition.
    const DOWN: Duration = Duration::from_secs(5);
    let test_started = Instant::now();
    let mut cluster =
        Cluster::builder().nats_cluster(3).dispatchers(2).dispatcher_extra(DISPATCHER).start()?;
    let js = jetstream::new(cluster.nats.client().await?);
    for name in [EVENTS_STREAM, DELIVERIES_STREAM] {
        let info = js.get_stream(name).await?.info().await?.clone();
        assert_eq!(info.config.num_replicas, 3, "{name} is replicated on every server");
    }
    let receiver = Receiver::ok()?;
    let event_types = types("cluster", 4);
    let webhooks = webhooks_per_type(&cluster, &receiver, &event_types).await?;
    let load = SteadyLoad {
        prefix: "evt-cluster".into(),
        count: EVENTS,
        event_types,
        rate: 250.0,
        in_flight: 128,
        give_up_after: Duration::from_secs(60),
    };
    let producer = tokio::spawn(publish_steadily(js.clone(), load));

    let mut kills = Vec::new();
    for (what, after) in [("leader of HOOKD_DELIVERIES", 2000), ("JetStream meta leader", 5000)] {
        receiver.wait_for(after, Duration::from_secs(90)).await?;
        let server = if kills.is_empty() {
            cluster.nats.stream_leader(DELIVERIES_STREAM).await?
        } else {
            cluster.nats.meta_leader().await?
        };
        let at = Instant::now();
        cluster.nats.kill(server)?;
        tokio::time::sleep(DOWN).await;
        cluster.nats.restart_server(server)?;
        let restarted_at = Instant::now();
        cluster.nats.wait_ready(Duration::from_secs(30)).await?;
        println!(
            "killed n{} ({what}) after {after} deliveries; restarted {:.1} s later, cluster whole \
             again after {:.1} s",
            server + 1,
            secs(restarted_at - at),
            secs(at.elapsed())
        );
        kills.push(Kill { what: what.to_owned(), server, at, restarted_at });
    }
    let published = producer.await.context("producer task")?;
    let mut arrivals = wait_arrived(&receiver, &published, Duration::from_secs(120)).await?;
    wait_drained(&js, Duration::from_secs(60)).await?;
    arrivals.update(&receiver)?;

    for kill in &kills {
        // Until the next kill, or 20 s: how long deliveries and producers stood still.
        let until = kill.restarted_at + Duration::from_secs(15);
        println!(
            "pause after killing n{} ({}): deliveries {:.1} s, producers {:.1} s",
            kill.server + 1,
            kill.what,
            secs(arrivals.longest_gap(kill.at, until)),
            secs(published.longest_gap(kill.at, until)),
        );
    }
    let inconsistent = arrivals.inconsistent();
    assert!(inconsistent.is_empty(), "copies with different webhook-id headers: {inconsistent:?}");
    let mut client = deliveries_at(&cluster.control).await?;
    let history = check_history(&mut client, &webhooks, &arrivals, Duration::from_secs(60)).await?;
    println!(
        "{} of {EVENTS} events acknowledged ({} given up, {} publishes retried), every one \
         delivered; {} deliveries in the history, {} extra copies, {} under an attempt number \
         already recorded, {} recorded attempts that never reached the endpoint; test took \
         {:.1} s",
        published.acked.len(),
        published.unacked.len(),
        published.retries,
        history.deliveries,
        arrivals.extra_copies(),
        history.repeated_numbers.len(),
        history.unseen_attempts,
        secs(test_started.elapsed())
    );
    assert!(
        history.repeated_numbers.is_empty(),
        "HTTP calls made again under an attempt number already recorded, so missing from the \
         history (id, calls, attempts recorded): {:?}",
        &history.repeated_numbers[..history.repeated_numbers.len().min(10)]
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------

/// The control plane a dispatcher reports to, from its start-up line.
fn control_plane_of(dispatcher: &HookdProcess) -> anyhow::Result<String> {
    let log = std::fs::read_to_string(dispatcher.log_path())?;
    let line = log
        .lines()
        .find(|l| l.contains("dispatcher started"))
        .context("no start-up line in the dispatcher's log")?;
    let url = line
        .split("control_plane=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .with_context(|| format!("no control_plane in {line:?}"))?;
    Ok(url.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_plane_killed_under_load_loses_no_result_and_repeats_no_call()
-> anyhow::Result<()> {
    let _alone = ALONE.lock().await;
    const EVENTS: usize = 3000;
    let test_started = Instant::now();
    let mut cluster = Cluster::builder().postgres().dispatcher_extra(DISPATCHER).start()?;
    let mut replica = cluster.add_control()?;
    let both = format!("{},{}", cluster.control.grpc_url(), replica.grpc_url());
    for _ in 0..2 {
        cluster.add_dispatcher_for(&both)?;
    }
    let receiver =
        Receiver::start(responder(|_, _| Response::ok().with_delay(Duration::from_millis(5))))?;
    let event_types = types("failover", 2);
    let webhooks = webhooks_per_type(&cluster, &receiver, &event_types).await?;
    let js = jetstream::new(cluster.nats.client().await?);
    let load = SteadyLoad {
        prefix: "evt-failover".into(),
        count: EVENTS,
        event_types,
        rate: 200.0,
        in_flight: 64,
        give_up_after: Duration::from_secs(30),
    };
    let producer = tokio::spawn(publish_steadily(js.clone(), load));
    receiver.wait_for(600, Duration::from_secs(60)).await?;

    // Kill the replica the first dispatcher reports to (the other may use either).
    let used = control_plane_of(&cluster.dispatchers[0])?;
    let killed_main = used == cluster.control.grpc_url();
    let killed_at = Instant::now();
    let killed_wall = chrono::Utc::now();
    if killed_main {
        cluster.control.kill()?;
    } else {
        replica.kill()?;
    }
    let live = if killed_main { &replica } else { &cluster.control };
    println!("killed the control plane at {used}; {} deliveries so far", receiver.count());

    let published = producer.await.context("producer task")?;
    let mut arrivals = wait_arrived(&receiver, &published, Duration::from_secs(60)).await?;
    let mut client = deliveries_at(live).await?;
    let all_stored_at = wait_until("every result stored", Duration::from_secs(60), || {
        let mut client = client.clone();
        let webhooks = &webhooks;
        async move {
            let mut n = 0;
            for id in webhooks {
                n += list_all(&mut client, id).await?.len();
            }
            if n == EVENTS {
                return Ok(Some(Instant::now()));
            }
            anyhow::bail!("{n} results stored")
        }
    })
    .await?;
    wait_drained(&js, Duration::from_secs(60)).await?;
    arrivals.update(&receiver)?;
    let history = check_history(&mut client, &webhooks, &arrivals, Duration::from_secs(30)).await?;
    // When the dispatcher gave up on the dead replica, from its log line's time stamp.
    let log = std::fs::read_to_string(cluster.dispatchers[0].log_path())?;
    let moved = log
        .lines()
        .find(|l| l.contains("moving to the next replica"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| (t.with_timezone(&chrono::Utc) - killed_wall).num_milliseconds());
    println!(
        "the dispatcher moved to the live control plane {} ms after the kill; all {EVENTS} \
         results stored {:.1} s after it; deliveries paused {:.1} s at most; {} HTTP calls in \
         all; test took {:.1} s",
        moved.unwrap_or(-1),
        secs(all_stored_at - killed_at),
        secs(arrivals.longest_gap(killed_at, killed_at + Duration::from_secs(10))),
        receiver.count(),
        secs(test_started.elapsed())
    );
    assert!(moved.is_some(), "the dispatcher did not say it moved to the live control plane");
    assert_eq!(published.acked.len(), EVENTS, "{} unacknowledged", published.unacked.len());
    assert_eq!(history.deliveries, EVENTS);
    assert_eq!(arrivals.extra_copies(), 0, "HTTP calls repeated because of the kill");
    assert!(history.repeated_numbers.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_made_while_postgres_restarts_wait_and_are_all_stored() -> anyhow::Result<()> {
    let _alone = ALONE.lock().await;
    const EVENTS: usize = 2000;
    /// How long Postgres stays down: the scenario.
    const DOWN: Duration = Duration::from_secs(3);
    let test_started = Instant::now();
    // A server of this test's own, since it restarts it; dropped after the cluster.
    let postgres = hookd_testpg::PgServer::start()?;
    let cluster = Cluster::builder()
        .postgres_url(postgres.create_database()?)
        .dispatchers(1)
        .dispatcher_extra(DISPATCHER)
        .start()?;
    let receiver = Receiver::ok()?;
    let event_types = types("pg", 2);
    let webhooks = webhooks_per_type(&cluster, &receiver, &event_types).await?;
    let js = jetstream::new(cluster.nats.client().await?);
    let load = SteadyLoad {
        prefix: "evt-pg".into(),
        count: EVENTS,
        event_types,
        rate: 200.0,
        in_flight: 64,
        give_up_after: Duration::from_secs(30),
    };
    let producer = tokio::spawn(publish_steadily(js.clone(), load));
    receiver.wait_for(400, Duration::from_secs(60)).await?;
    let stopped_at = Instant::now();
    let at_stop = receiver.count();
    tokio::task::block_in_place(|| postgres.restart(DOWN))?;
    let back_at = Instant::now();
    let during = receiver.count() - at_stop;
    println!(
        "Postgres stopped after {at_stop} deliveries and back {:.1} s later; {during} deliveries \
         made meanwhile",
        secs(back_at - stopped_at)
    );

    let published = producer.await.context("producer task")?;
    let mut arrivals = wait_arrived(&receiver, &published, Duration::from_secs(60)).await?;
    let mut client = deliveries_at(&cluster.control).await?;
    let history = check_history(&mut client, &webhooks, &arrivals, Duration::from_secs(60)).await?;
    let stored_at = Instant::now();
    wait_drained(&js, Duration::from_secs(60)).await?;
    arrivals.update(&receiver)?;
    println!(
        "all {EVENTS} results stored {:.1} s after Postgres was back; test took {:.1} s",
        secs(stored_at - back_at),
        secs(test_started.elapsed())
    );
    assert!(
        during > 0,
        "no delivery was made while Postgres was down: the scenario proved nothing"
    );
    assert_eq!(published.acked.len(), EVENTS, "{} unacknowledged", published.unacked.len());
    assert_eq!(history.deliveries, EVENTS);
    assert_eq!(arrivals.extra_copies(), 0, "HTTP calls repeated because of the restart");
    assert!(history.repeated_numbers.is_empty());
    Ok(())
}

// ---------------------------------------------------------------------------------------------

/// How a test makes the streams run out of room.
#[derive(Debug, Clone, Copy)]
enum Limit {
    /// `stream_max_messages` on the events and deliveries streams.
    StreamMessages(u64),
    /// nats-server's `max_file_store`: its disk, as far as JetStream is concerned.
    ServerStorage(u64),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_streams_refuse_publishes_and_delivery_resumes_once_there_is_room()
-> anyhow::Result<()> {
    let _alone = ALONE.lock().await;
    full_streams(Limit::StreamMessages(100)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_server_out_of_storage_refuses_publishes_and_delivery_resumes_once_there_is_room()
-> anyhow::Result<()> {
    let _alone = ALONE.lock().await;
    full_streams(Limit::ServerStorage(256 * 1024)).await
}

/// An endpoint slower than the producer, so the streams fill up: publishes are refused
/// (`PublishEvent` with RESOURCE_EXHAUSTED), the fan-out puts back events whose jobs were
/// refused, and once the endpoint has caught up everything acknowledged is delivered.
async fn full_streams(limit: Limit) -> anyhow::Result<()> {
    const EVENTS: usize = 600;
    let test_started = Instant::now();
    let mut builder = Cluster::builder()
        .dispatchers(1)
        // A fixed limit (it would grow while the endpoint keeps up), so it stays slower.
        .dispatcher_extra(
            "endpoint_concurrency = 4\nendpoint_concurrency_max = 4\nmetrics_refresh_secs = 1\n",
        );
    let limit_setting = match limit {
        Limit::StreamMessages(n) => n.to_string(),
        Limit::ServerStorage(_) => String::new(),
    };
    match limit {
        Limit::StreamMessages(_) => {
            builder = builder.control_env(&[("HOOKD_STREAM_MAX_MESSAGES", &limit_setting)]);
        }
        Limit::ServerStorage(bytes) => {
            builder = builder
                .nats_options(NatsOptions { max_file_store: Some(bytes), ..Default::default() });
        }
    }
    let cluster = builder.start()?;
    // About 40 deliveries a second: 4 at a time, 100 ms each.
    let receiver =
        Receiver::start(responder(|_, _| Response::ok().with_delay(Duration::from_millis(100))))?;
    let webhook = cluster.create_webhook("slow", receiver.url("/slow"), &["full"]).await?;
    let js = jetstream::new(cluster.nats.client().await?);
    let load = SteadyLoad {
        prefix: "evt-full".into(),
        count: EVENTS,
        event_types: vec!["full".into()],
        rate: 400.0,
        in_flight: 200,
        give_up_after: Duration::from_secs(90),
    };
    let producer = tokio::spawn(publish_steadily(js.clone(), load));

    // PublishEvent while the streams are full: refused, saying why.
    let mut events = cluster.events().await?;
    let accepted = std::cell::RefCell::new(Vec::new());
    let mut n = 0;
    let refused =
        wait_until("PublishEvent refused for lack of room", Duration::from_secs(30), || {
            n += 1;
            let id = format!("evt-grpc-{n:03}");
            let mut events = events.clone();
            let accepted = &accepted;
            async move {
                let request = v1::PublishEventRequest {
                    event: Some(v1::Event {
                        id: id.clone(),
                        r#type: "full".into(),
                        ..Default::default()
                    }),
                };
                match events.publish_event(request).await {
                    Ok(_) => {
                        accepted.borrow_mut().push(id);
                        Ok(None)
                    }
                    Err(status) if status.code() == tonic::Code::ResourceExhausted => {
                        Ok(Some(status))
                    }
                    Err(status) => Err(status.into()),
                }
            }
        })
        .await?;
    let accepted = accepted.into_inner();
    println!(
        "PublishEvent after {} accepted: {:?} {}",
        accepted.len(),
        refused.code(),
        refused.message()
    );
    assert!(refused.message().contains("the stream is full"), "{}", refused.message());
    assert!(refused.message().contains("retry later"), "{}", refused.message());

    let published = producer.await.context("producer task")?;
    let mut expected = published.acked.keys().cloned().collect::<Vec<_>>();
    expected.extend(accepted.iter().cloned());
    let arrivals = std::cell::RefCell::new(Arrivals::default());
    let waited = wait_until("every acknowledged event delivered", Duration::from_secs(40), || {
        let (arrivals, expected) = (&arrivals, &expected);
        let receiver = &receiver;
        async move {
            let mut arrivals = arrivals.borrow_mut();
            arrivals.update(receiver)?;
            let missing = arrivals.missing(expected.iter()).len();
            if missing == 0 {
                return Ok(Some(()));
            }
            anyhow::bail!("{missing} acknowledged events not delivered yet")
        }
    })
    .await;
    if waited.is_err() {
        // What holds the rest, for the failure report.
        for name in [EVENTS_STREAM, DELIVERIES_STREAM] {
            let info = js.get_stream(name).await?.info().await?.clone();
            println!("{name}: {} messages", info.state.messages);
        }
        let missing: Vec<String> =
            arrivals.borrow().missing(expected.iter()).into_iter().take(5).cloned().collect();
        println!("not delivered, e.g.: {missing:?}");
        waited?;
    }
    wait_drained(&js, Duration::from_secs(60)).await?;
    let mut arrivals = arrivals.into_inner();
    arrivals.update(&receiver)?;
    // Nothing is left behind either: no schedule that never fired, no stale copy of one.
    let left = wait_until("an empty deliveries stream", Duration::from_secs(20), || async {
        let info = js.get_stream(DELIVERIES_STREAM).await?.info().await?.clone();
        Ok((info.state.messages == 0).then_some(()))
    })
    .await;
    assert!(left.is_ok(), "{left:?}");

    // Room again: a publish is taken at once.
    let again = events
        .publish_event(v1::PublishEventRequest {
            event: Some(v1::Event {
                id: "evt-after".into(),
                r#type: "full".into(),
                ..Default::default()
            }),
        })
        .await;
    assert!(again.is_ok(), "refused once drained: {again:?}");
    let rearmed = std::fs::read_to_string(cluster.dispatchers[0].log_path())?
        .matches("scheduled retries the server had not fired published again")
        .count();
    let metrics = hookd_tests::scrape(&cluster.dispatchers[0].metrics_url()).await?;
    let retried = hookd_tests::sample(
        &metrics,
        "hookd_dispatcher_events_consumed_total{outcome=\"retried\"}",
    )
    .unwrap_or(0.0);
    let mut client = deliveries_at(&cluster.control).await?;
    let history = check_history(
        &mut client,
        std::slice::from_ref(&webhook.id),
        &arrivals,
        Duration::from_secs(60),
    )
    .await?;
    println!(
        "{limit:?}: {} events acknowledged by NATS after {} refused publishes ({} given up), {} \
         by PublishEvent; fan-outs put back for lack of room: {retried}; sweeps that re-armed \
         stuck scheduled retries: {rearmed}; all delivered, {} extra copies; test took {:.1} s",
        published.acked.len(),
        published.retries,
        published.unacked.len(),
        accepted.len(),
        arrivals.extra_copies(),
        secs(test_started.elapsed())
    );
    assert!(published.retries > 0, "no publish was refused: the streams never filled up");
    assert_eq!(history.deliveries, arrivals.copies.len());
    assert!(arrivals.inconsistent().is_empty());
    Ok(())
}

//! `make bench`: measures hookd against the machine's own ceiling (a bare JetStream → HTTP
//! pipeline) in the same run. The building blocks are here: a lean multi-port sink
//! ([`sink`]), an open-loop load generator ([`load`]), the ceiling pipeline ([`ceiling`]),
//! `/proc` sampling ([`procs`]), the scenarios ([`scenarios`]) and the results files
//! ([`report`]). `hookd-bench` (the binary) and `tests/bench_quick.rs` drive [`run`].

pub mod ceiling;
pub mod cluster;
pub mod load;
pub mod procs;
pub mod report;
pub mod scenarios;
pub mod sink;

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_nats::jetstream;
use hookd_proto::v1;

use crate::wait_until;
pub use cluster::BenchCluster;
pub use report::{Report, Row};

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Tiny counts and durations (seconds in all): a smoke test of the harness.
    pub quick: bool,
    /// Scenario numbers 1–11; empty means all. The ceiling always runs.
    pub scenarios: Vec<u8>,
    /// Where `results.md` and `results.json` go; `None` writes nothing.
    pub out: Option<PathBuf>,
}

impl Options {
    pub fn wants(&self, n: u8) -> bool {
        self.scenarios.is_empty() || self.scenarios.contains(&n)
    }
}

/// Wall clock in nanoseconds since the epoch: the load generator stamps events with it and the
/// sink compares on receipt (same process, same clock).
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Runs the ceiling and the chosen scenarios, prints each row as it is measured, and writes
/// the results files. A scenario that fails gives a row with its error; the others still run.
pub async fn run(options: &Options) -> anyhow::Result<Report> {
    let started = Instant::now();
    let machine = procs::Machine::describe();
    println!(
        "hookd-bench{}: {} cores, {}, {}, {}, {}",
        if options.quick { " --quick" } else { "" },
        machine.nproc,
        machine.cpu_model,
        machine.memory,
        machine.kernel,
        machine.nats_server
    );
    println!("{}", report::markdown_header());
    let mut bench = scenarios::Bench::new(options.quick);
    let mut rows = Vec::new();
    let emit = |row: Row, rows: &mut Vec<Row>| {
        println!("{}", report::markdown_line(&row));
        rows.push(row);
    };
    emit(bench.ceiling().await, &mut rows);
    for n in 1..=11u8 {
        if !options.wants(n) {
            continue;
        }
        for row in bench.scenario(n).await {
            emit(row, &mut rows);
        }
    }
    let report = Report {
        machine,
        quick: options.quick,
        rows,
        duration_secs: started.elapsed().as_secs_f64(),
    };
    if let Some(dir) = &options.out {
        report.write(dir)?;
        println!("wrote {} and results.json", dir.join("results.md").display());
    }
    Ok(report)
}

/// A JetStream context on the cluster's server.
pub async fn js_context(cluster: &BenchCluster) -> anyhow::Result<jetstream::Context> {
    Ok(jetstream::new(cluster.nats.client().await?))
}

/// Creates an active webhook; `retry` overrides the dispatcher's default schedule.
pub async fn create_webhook(
    cluster: &BenchCluster,
    name: &str,
    url: String,
    event_types: &[&str],
    retry: Option<Vec<u32>>,
) -> anyhow::Result<v1::Webhook> {
    let request = v1::CreateWebhookRequest {
        name: name.to_owned(),
        url,
        event_types: event_types.iter().map(|t| (*t).to_owned()).collect(),
        active: true,
        retry_policy: retry.map(|delay_seconds| v1::RetryPolicy { delay_seconds }),
        ..Default::default()
    };
    let response = cluster.webhooks().await?.create_webhook(request).await?;
    response.into_inner().webhook.ok_or_else(|| anyhow::anyhow!("no webhook in the answer"))
}

/// Waits until neither consumer has anything pending or awaiting ack: no event left to fan
/// out, no delivery left to make. Each message is settled only once what it led to is stored
/// (a job's attempt; an event's jobs and the first attempts the fan-out made itself), so once
/// every delivery was received and this holds, every attempt is in the database.
pub async fn wait_all_settled(js: &jetstream::Context, timeout: Duration) -> anyhow::Result<()> {
    wait_until("the fan-out and delivery consumers to settle", timeout, || async {
        for (name, stream) in
            [("hookd-fanout", "HOOKD_EVENTS"), ("hookd-delivery", "HOOKD_DELIVERIES")]
        {
            let mut consumer: jetstream::consumer::PullConsumer =
                js.get_consumer_from_stream(name, stream).await?;
            let info = consumer.info().await?;
            if info.num_pending > 0 || info.num_ack_pending > 0 {
                anyhow::bail!(
                    "{name}: {} pending, {} awaiting ack",
                    info.num_pending,
                    info.num_ack_pending
                )
            }
        }
        Ok(Some(()))
    })
    .await
}

/// Waits until hookd's delivery consumer has nothing waiting and nothing unacknowledged: every
/// delivery job's attempt is stored (first attempts made by the fan-out are not jobs; see
/// [`wait_all_settled`]).
pub async fn wait_deliveries_settled(
    js: &jetstream::Context,
    timeout: Duration,
) -> anyhow::Result<()> {
    wait_until("the delivery consumer to settle", timeout, || async {
        let mut consumer: jetstream::consumer::PullConsumer =
            js.get_consumer_from_stream("hookd-delivery", "HOOKD_DELIVERIES").await?;
        let info = consumer.info().await?;
        if info.num_pending == 0 && info.num_ack_pending == 0 {
            return Ok(Some(()));
        }
        anyhow::bail!("{} pending, {} awaiting ack", info.num_pending, info.num_ack_pending)
    })
    .await
}

/// Counts a webhook's deliveries by paging through `ListDeliveries` (500 a page), giving up
/// after `budget`; returns the count and whether it got to the end.
pub async fn count_deliveries(
    cluster: &BenchCluster,
    webhook_id: &str,
    status: Option<v1::DeliveryStatus>,
    budget: Duration,
) -> anyhow::Result<(u64, bool)> {
    let mut client = cluster.deliveries().await?;
    let deadline = Instant::now() + budget;
    let mut count = 0u64;
    let mut page_token = String::new();
    while Instant::now() < deadline {
        let request = v1::ListDeliveriesRequest {
            webhook_id: webhook_id.to_owned(),
            page_size: 500,
            page_token: page_token.clone(),
            status: status.map_or(0, |s| s as i32),
            ..Default::default()
        };
        let page = client.list_deliveries(request).await?.into_inner();
        count += page.deliveries.len() as u64;
        if page.next_page_token.is_empty() {
            return Ok((count, true));
        }
        page_token = page.next_page_token;
    }
    Ok((count, false))
}

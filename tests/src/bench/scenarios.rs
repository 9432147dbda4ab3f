//! The ceiling and the nine scenarios. Each returns table rows; an error becomes a row with
//! the error so the rest of the run goes on.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream;
use hookd_proto::v1;

use super::load::{self, Load};
use super::procs::{self, CpuSampler, CpuShare};
use super::report::{Latency, Row};
use super::sink::{Behavior, Group, LATENESS_OFFSET_US, Sink};
use super::{BenchCluster, cluster::Backend, count_deliveries, create_webhook, js_context, now_ns};
use crate::{Nats, NatsOptions};

/// Dispatcher settings for the throughput scenarios: one endpoint may take many attempts at
/// once and queue a whole in-flight window (the defaults, 32 and 64, cap one endpoint and put
/// the rest of a backlog back for a second; that is measured separately, row 1d).
pub const TUNED: &str = "endpoint_concurrency = 128\nendpoint_queue = 4096\n";
/// The ceiling consumer's HTTP concurrency, matching `TUNED`.
const CEILING_CONCURRENCY: usize = 128;

/// CPU microseconds per message of the bare pipeline at a fixed rate.
struct BareCost {
    nats_us: f64,
    /// The bench process: the consumer, the load generator and the sink together.
    bench_us: f64,
}

/// Counts and durations; `quick` shrinks all of them to seconds.
#[derive(Debug, Clone)]
struct Sizes {
    ceiling_n: u64,
    drain_n: u64,
    drain_timeout: Duration,
    sustain_secs: u64,
    latency_rates: Vec<f64>,
    latency_secs: u64,
    /// Row 2c: a moderate, steady rate.
    low_rate: f64,
    fan_webhooks: usize,
    fan_rate: f64,
    fan_secs: u64,
    retry_failing: u64,
    retry_others: u64,
    retry_rate: f64,
    park_n: u64,
    park_healthy_n: u64,
    reports_total: u64,
    report_concurrency: usize,
}

impl Sizes {
    fn new(quick: bool) -> Sizes {
        if quick {
            Sizes {
                ceiling_n: 2000,
                drain_n: 1000,
                drain_timeout: Duration::from_secs(30),
                sustain_secs: 2,
                latency_rates: vec![100.0],
                latency_secs: 2,
                low_rate: 50.0,
                fan_webhooks: 10,
                fan_rate: 20.0,
                fan_secs: 2,
                retry_failing: 50,
                retry_others: 100,
                retry_rate: 100.0,
                park_n: 300,
                park_healthy_n: 300,
                reports_total: 2000,
                report_concurrency: 4,
            }
        } else {
            Sizes {
                ceiling_n: 100_000,
                drain_n: 50_000,
                drain_timeout: Duration::from_secs(240),
                sustain_secs: 20,
                latency_rates: vec![1000.0, 5000.0],
                latency_secs: 60,
                low_rate: 500.0,
                fan_webhooks: 100,
                fan_rate: 100.0,
                fan_secs: 30,
                retry_failing: 10_000,
                retry_others: 100_000,
                retry_rate: 1000.0,
                park_n: 100_000,
                park_healthy_n: 30_000,
                reports_total: 200_000,
                report_concurrency: 8,
            }
        }
    }
}

/// The webhooks a backlog is drained to, and their delivery controls.
#[derive(Debug, Clone, Default)]
struct Drained {
    /// Webhooks, each on its own sink port, all subscribed to every event (0 counts as 1).
    count: usize,
    /// B6: `entity_id` for ordered delivery per key; empty for none.
    ordering_key: String,
    /// B7: a payload filter on every webhook.
    filter: Option<prost_types::Struct>,
    /// Events' entity ids cycle over this many keys; `None`: one per event.
    keys: Option<u64>,
}

/// A backlog drained by N consumers, as the sink saw it.
#[derive(Debug, Clone)]
pub struct Drain {
    pub n: u64,
    pub received: u64,
    /// Receipts per second between 5 % and 95 % of the backlog.
    pub sink_rate: f64,
    /// `n` over the time from the first receipt until every message was settled (for hookd:
    /// every attempt stored in the database).
    pub settled_rate: f64,
    pub settle_secs: f64,
    pub cpu: Vec<CpuShare>,
    /// Messages into and out of nats-server during the drain (all servers), per delivery.
    pub nats_msgs: Option<(f64, f64)>,
}

/// nats-server's message counters, summed over the servers: (into, out of).
async fn nats_msgs(nats: &crate::Nats) -> Option<(u64, u64)> {
    let mut total = (0, 0);
    for server in nats.servers() {
        let varz = server.monitor("varz").await.ok()?;
        total.0 += varz.get("in_msgs")?.as_u64()?;
        total.1 += varz.get("out_msgs")?.as_u64()?;
    }
    Some(total)
}

/// Polls `count` until it reaches `n` (or `timeout`); measures the rate between 5 % and 95 %.
async fn watch_drain(
    group: &Group,
    n: u64,
    timeout: Duration,
) -> (u64, Option<Instant>, Option<f64>) {
    let started = Instant::now();
    let (lo, hi) = ((n as f64 * 0.05) as u64, (n as f64 * 0.95) as u64);
    let (mut first, mut t_lo, mut t_hi) = (None, None, None);
    let (mut c_lo, mut c_hi) = (0, 0);
    loop {
        let c = group.requests();
        let now = Instant::now();
        if c > 0 && first.is_none() {
            first = Some(now);
        }
        if c >= lo.max(1) && t_lo.is_none() {
            (t_lo, c_lo) = (Some(now), c);
        }
        if c >= hi.max(1) && t_hi.is_none() {
            (t_hi, c_hi) = (Some(now), c);
        }
        if c >= n || started.elapsed() > timeout {
            let rate = match (t_lo, t_hi) {
                (Some(a), Some(b)) if b > a => {
                    Some((c_hi - c_lo) as f64 / b.duration_since(a).as_secs_f64())
                }
                _ => None,
            };
            return (c, first, rate);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn fmt_rate(r: f64) -> String {
    if r >= 1000.0 { format!("{:.1}k", r / 1000.0) } else { format!("{r:.0}") }
}

pub struct Bench {
    quick: bool,
    sizes: Sizes,
    ceiling: Option<f64>,
    s1: Option<Drain>,
    s3_p99: Option<f64>,
    /// The database the throughput and latency rows run on (scenario 9: Postgres).
    backend: Backend,
}

impl Bench {
    pub fn new(quick: bool) -> Bench {
        Bench {
            quick,
            sizes: Sizes::new(quick),
            ceiling: None,
            s1: None,
            s3_p99: None,
            backend: Backend::Sqlite,
        }
    }

    /// A row id, marked `p` on Postgres (`1` → `1p`).
    fn id(&self, base: &str) -> String {
        match self.backend {
            Backend::Sqlite => base.to_owned(),
            Backend::Postgres => format!("{base}p"),
        }
    }

    /// A row name, marked on Postgres.
    fn name(&self, base: &str) -> String {
        match self.backend {
            Backend::Sqlite => base.to_owned(),
            Backend::Postgres => format!("{base}, Postgres"),
        }
    }

    fn error_row(id: &str, name: &str, e: &anyhow::Error) -> Row {
        let mut row = Row::new(id, name);
        row.error = Some(format!("{e:#}"));
        row
    }

    /// The bare pipeline's throughput, with the same sink.
    pub async fn ceiling(&mut self) -> Row {
        match self.ceiling_inner().await {
            Ok(row) => row,
            Err(e) => Self::error_row("C", "ceiling: JetStream → pull → POST → ack", &e),
        }
    }

    async fn ceiling_inner(&mut self) -> anyhow::Result<Row> {
        let n = self.sizes.ceiling_n;
        let sink = Sink::single()?;
        let group = sink.group(0).clone();
        let nats = crate::NatsServer::start()?;
        let js = jetstream::new(nats.client().await?);
        super::ceiling::create_stream(&js).await?;
        let mut load = Load::events("bench-event", "ceil", None, n);
        load.subjects = vec![super::ceiling::SUBJECT.to_owned()];
        let published = load::publish(&js, &load).await?;
        anyhow::ensure!(published.acked == n, "only {} of {n} stored", published.acked);

        let procs =
            vec![("nats-server".to_owned(), nats.pid()), ("bench".to_owned(), std::process::id())];
        let cpu = CpuSampler::start(&procs);
        let consumer =
            super::ceiling::start_consumer(&js, group.urls()[0].clone(), CEILING_CONCURRENCY)
                .await?;
        let (received, first, sink_rate) = watch_drain(&group, n, self.sizes.drain_timeout).await;
        // Settled: every message acked (work-queue retention removes it).
        let mut stream = js.get_stream(super::ceiling::STREAM).await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while stream.info().await?.state.messages > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let settled = Instant::now();
        let cpu = cpu.finish();
        consumer.abort();
        anyhow::ensure!(received >= n, "the sink got {received} of {n}");
        let first = first.context("nothing received")?;
        let settle_secs = settled.duration_since(first).as_secs_f64();
        let rate = n as f64 / settle_secs;
        self.ceiling = Some(rate);

        let mut row = Row::new("C", "ceiling: JetStream → pull → POST → ack");
        row.load = format!("{n} backlog, {CEILING_CONCURRENCY} concurrent");
        row.throughput = Some(rate);
        row.notes = format!(
            "sink rate 5–95 %: {}/s; CPU {}",
            fmt_rate(sink_rate.unwrap_or(0.0)),
            procs::format_shares(&cpu)
        );
        row.metric("messages", n.into());
        row.metric("settle_secs", settle_secs.into());
        row.metric("sink_rate_5_95", sink_rate.into());
        row.metric("publish_rate", published.rate().into());
        row.metric("cpu", procs::shares_json(&cpu));
        Ok(row)
    }

    pub async fn scenario(&mut self, n: u8) -> Vec<Row> {
        let (id, name) = match n {
            1 => ("1", "throughput, 1 endpoint"),
            2 => ("2", "latency at fixed load"),
            3 => ("3", "fan-out"),
            4 => ("4", "retry accuracy"),
            5 => ("5", "pending retries at scale"),
            6 => ("6", "slow endpoint isolation"),
            7 => ("7", "result write path (ReportAttempts, SQLite)"),
            8 => ("8", "scale-out 1 → 2 dispatchers"),
            9 => ("9", "rows 1, 1s, 1d and 2b on Postgres"),
            10 => ("10", "3-node NATS cluster, R3, 3 dispatchers"),
            _ => ("11", "delivery controls: ordering per key, payload filters"),
        };
        let result = match n {
            1 => self.throughput().await,
            2 => self.latency().await,
            3 => self.fanout(false).await,
            4 => self.retry_accuracy().await,
            5 => self.pending_retries().await,
            6 => self.fanout(true).await,
            7 => self.write_path().await,
            8 => self.scale_out().await,
            9 => self.on_postgres().await,
            10 => self.replicated().await,
            _ => self.controls().await,
        };
        result.unwrap_or_else(|e| vec![Self::error_row(id, name, &e)])
    }

    /// Pre-fills `n` events with no dispatcher running, then starts `dispatchers` and times
    /// the drain until every attempt is stored. Returns the cluster (dispatchers running).
    async fn drain(
        &self,
        dispatchers: usize,
        extra: &str,
        n: u64,
    ) -> anyhow::Result<(Drain, BenchCluster, Sink, String)> {
        self.drain_on(Nats::single(NatsOptions::default())?, dispatchers, extra, n).await
    }

    /// [`Bench::drain`] on the given NATS: a cluster, or other JetStream settings.
    async fn drain_on(
        &self,
        nats: Nats,
        dispatchers: usize,
        extra: &str,
        n: u64,
    ) -> anyhow::Result<(Drain, BenchCluster, Sink, String)> {
        self.drain_to(nats, dispatchers, extra, n, &Drained::default()).await
    }

    /// [`Bench::drain_on`] to `webhooks.count` webhooks (each on its own sink port) with the
    /// given delivery controls: `n` events, `n × count` deliveries, which [`Drain::n`] counts.
    async fn drain_to(
        &self,
        nats: Nats,
        dispatchers: usize,
        extra: &str,
        n: u64,
        webhooks: &Drained,
    ) -> anyhow::Result<(Drain, BenchCluster, Sink, String)> {
        let count = webhooks.count.max(1);
        let sink = Sink::start(&[(count, Behavior::Ok)])?;
        let group = sink.group(0).clone();
        let mut cluster = BenchCluster::start_with(nats, self.backend, 0, extra)?;
        let mut first = None;
        for (i, url) in group.urls().into_iter().enumerate() {
            let request = v1::CreateWebhookRequest {
                name: format!("bench-{i}"),
                url,
                event_types: vec!["bench-event".to_owned()],
                active: true,
                ordering_key: webhooks.ordering_key.clone(),
                filter: webhooks.filter.clone(),
                ..Default::default()
            };
            let created = cluster.webhooks().await?.create_webhook(request).await?.into_inner();
            let webhook = created.webhook.context("no webhook in the answer")?;
            first.get_or_insert(webhook.id);
        }
        let webhook_id = first.context("no webhook")?;
        let js = js_context(&cluster).await?;
        // The backlog is untimed. A store ack can time out where every write is fsynced or
        // replicated on a busy machine: the same ids again, which the stream stores once.
        let mut prefill = Load::events("bench-event", "d", None, n);
        prefill.max_outstanding = 1024;
        prefill.keys = webhooks.keys;
        let mut published = load::publish(&js, &prefill).await?;
        for _ in 0..3 {
            if published.acked == n {
                break;
            }
            published = load::publish(&js, &prefill).await?;
        }
        anyhow::ensure!(published.acked == n, "only {} of {n} events stored", published.acked);
        for _ in 0..dispatchers {
            cluster.add_dispatcher()?;
        }
        let deliveries = n * count as u64;
        let msgs_before = nats_msgs(&cluster.nats).await;
        let cpu = CpuSampler::start(&cluster.procs());
        let (received, first, sink_rate) =
            watch_drain(&group, deliveries, self.sizes.drain_timeout).await;
        anyhow::ensure!(
            received >= deliveries,
            "the sink got {received} of {deliveries} within the timeout"
        );
        super::wait_all_settled(&js, Duration::from_secs(120)).await?;
        let settled = Instant::now();
        let cpu = cpu.finish();
        let nats_msgs = match (msgs_before, nats_msgs(&cluster.nats).await) {
            (Some(a), Some(b)) => {
                let per = |x: u64, y: u64| y.saturating_sub(x) as f64 / deliveries as f64;
                Some((per(a.0, b.0), per(a.1, b.1)))
            }
            _ => None,
        };
        let first = first.context("nothing received")?;
        let settle_secs = settled.duration_since(first).as_secs_f64();
        let drain = Drain {
            n: deliveries,
            received,
            sink_rate: sink_rate.unwrap_or(0.0),
            settled_rate: deliveries as f64 / settle_secs,
            settle_secs,
            cpu,
            nats_msgs,
        };
        Ok((drain, cluster, sink, webhook_id))
    }

    fn drain_row(&self, id: &str, name: &str, settings: &str, d: &Drain) -> Row {
        let mut row = Row::new(id, name);
        row.load = format!("{} backlog, {settings}", d.n);
        row.throughput = Some(d.settled_rate);
        row.ratio = self.ceiling.map(|c| d.settled_rate / c);
        row.ratio_of = "ceiling".to_owned();
        row.notes = format!(
            "all {} attempts stored in {:.1} s; sink rate 5–95 %: {}/s; CPU {}; {}",
            d.n,
            d.settle_secs,
            fmt_rate(d.sink_rate),
            procs::format_shares(&d.cpu),
            procs::format_per_delivery(&d.cpu, d.n)
        );
        row.metric("cpu_us_per_delivery", procs::per_delivery_json(&d.cpu, d.n));
        row.metric("events", d.n.into());
        row.metric("received", d.received.into());
        row.metric("settle_secs", d.settle_secs.into());
        row.metric("sink_rate_5_95", d.sink_rate.into());
        row.metric("cpu", procs::shares_json(&d.cpu));
        if let Some((into, out)) = d.nats_msgs {
            row.notes
                .push_str(&format!("; NATS messages per delivery: {into:.2} in, {out:.2} out"));
            row.metric("nats_msgs_in_per_delivery", into.into());
            row.metric("nats_msgs_out_per_delivery", out.into());
        }
        row
    }

    /// 1: highest sustained deliveries/s to one endpoint, every attempt recorded.
    async fn throughput(&mut self) -> anyhow::Result<Vec<Row>> {
        let n = self.sizes.drain_n;
        let (drain, cluster, sink, webhook_id) = self.drain(1, TUNED, n).await?;
        let mut rows = Vec::new();
        let mut row = self.drain_row(
            &self.id("1"),
            &self.name("throughput, 1 endpoint"),
            "1 dispatcher",
            &drain,
        );
        // The database agrees: page through ListDeliveries (untimed).
        let (listed, complete) =
            count_deliveries(&cluster, &webhook_id, None, Duration::from_secs(60)).await?;
        row.notes.push_str(&format!(
            "; ListDeliveries: {listed}{}",
            if complete { "" } else { " (gave up paging after 60 s)" }
        ));
        row.metric("listed_deliveries", listed.into());
        rows.push(row);

        // Sustained: open-loop at 80 % of the drain rate, does it keep up?
        let rate = (drain.settled_rate * 0.8).floor().max(10.0);
        let group = sink.group(0).clone();
        let js = js_context(&cluster).await?;
        let cpu = CpuSampler::start(&cluster.procs());
        let mut sustain = self.fixed_rate(&js, &group, "s", rate, self.sizes.sustain_secs).await?;
        let cpu = cpu.finish();
        let delivered =
            sustain.metrics.get("received").and_then(serde_json::Value::as_u64).unwrap_or(0);
        sustain.notes.push_str(&format!(
            "; CPU {}; {}",
            procs::format_shares(&cpu),
            procs::format_per_delivery(&cpu, delivered)
        ));
        sustain.metric("cpu_us_per_delivery", procs::per_delivery_json(&cpu, delivered));
        sustain.id = self.id("1s");
        sustain.name = self.name("throughput, sustained at 80 % of row 1");
        sustain.ratio = self.ceiling.and_then(|c| sustain.throughput.map(|t| t / c));
        sustain.ratio_of = "ceiling".to_owned();
        rows.push(sustain);
        drop(cluster);
        if self.backend == Backend::Sqlite {
            self.s1 = Some(drain);
        }

        // The defaults (endpoint_concurrency 32, endpoint_queue 64) for comparison.
        let n_default = (n / 2).max(500);
        match self.drain(1, "", n_default).await {
            Ok((d, _, _, _)) => rows.push(self.drain_row(
                &self.id("1d"),
                &self.name("throughput, 1 endpoint, default settings"),
                "1 dispatcher, endpoint_concurrency 32, endpoint_queue 64",
                &d,
            )),
            Err(e) => rows.push(Self::error_row(
                &self.id("1d"),
                &self.name("throughput, default settings"),
                &e,
            )),
        }
        Ok(rows)
    }

    /// Publishes open-loop at `rate` for `secs` (after a short warm-up), waits for the sink to
    /// get every event and returns a row with the latency histogram.
    async fn fixed_rate(
        &self,
        js: &jetstream::Context,
        group: &Group,
        prefix: &str,
        rate: f64,
        secs: u64,
    ) -> anyhow::Result<Row> {
        let before = group.requests();
        let warm = (rate as u64 / 2).max(20);
        load::publish(js, &Load::events("bench-event", &format!("{prefix}w"), Some(rate), warm))
            .await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while group.requests() < before + warm && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        group.reset();
        let count = (rate * secs as f64) as u64;
        let load = Load::events("bench-event", prefix, Some(rate), count)
            .with_max_duration(Duration::from_secs(secs + 5));
        let published = load::publish(js, &load).await?;
        // Everything should arrive soon after the last publish; give a backlog a bounded time.
        let (received, _, _) = watch_drain(group, published.sent, Duration::from_secs(30)).await;
        let received_by = published.elapsed.as_secs_f64();
        let latency = Latency::from_histogram(&group.latency(), 0);
        let mut row = Row::new("2", "latency at fixed load");
        row.load = format!("{} ev/s × {secs} s", fmt_rate(rate));
        row.throughput = Some(received as f64 / received_by);
        row.latency = latency;
        row.notes = format!(
            "published {} (open loop, max {} ms behind schedule), received {received}",
            published.sent,
            published.max_behind.as_millis()
        );
        if received < published.sent {
            row.notes.push_str(&format!(
                "; {} not received 30 s after the last publish: hookd did not keep up",
                published.sent - received
            ));
        }
        if received >= published.sent && latency.is_some_and(|l| l.p99_ms > 1000.0) {
            row.notes.push_str(
                "; p99 above 1 s: a backlog built up during the run, so hookd does not sustain \
                 this rate here (with the load generator on the same cores)",
            );
        }
        row.metric("rate", rate.into());
        row.metric("published", published.sent.into());
        row.metric("received", received.into());
        row.metric("max_behind_ms", (published.max_behind.as_millis() as u64).into());
        Ok(row)
    }

    /// 2: publish → receipt latency at 1 000 and 5 000 events/s.
    async fn latency(&mut self) -> anyhow::Result<Vec<Row>> {
        let rates = self.sizes.latency_rates.clone();
        let secs = self.sizes.latency_secs;
        let short = (secs / 2).max(1);
        // 2a, 2b: the issue's rates with bench settings; 2c: a platform's usual load, where
        // fixed per-message costs show; 2d: 2b with the default settings users run.
        let mut tuned: Vec<(String, f64, u64)> = rates
            .iter()
            .enumerate()
            .map(|(i, rate)| (format!("2{}", (b'a' + i as u8) as char), *rate, secs))
            .collect();
        tuned.push(("2c".to_owned(), self.sizes.low_rate, short));
        let mut rows = self.fixed_rate_rows(TUNED, &tuned).await?;
        let top = rates.last().copied().unwrap_or(self.sizes.low_rate);
        rows.extend(self.fixed_rate_rows("", &[("2d".to_owned(), top, short)]).await?);
        Ok(rows)
    }

    /// One cluster with `settings`, and a fixed-rate row for each `(id, rate, secs)`, with the
    /// CPU every process spent per delivery. Row 2c's ratio is its CPU per delivery over row
    /// 1's (how much more each message costs at a low rate than in a drain).
    async fn fixed_rate_rows(
        &mut self,
        settings: &str,
        runs: &[(String, f64, u64)],
    ) -> anyhow::Result<Vec<Row>> {
        let sink = Sink::single()?;
        let group = sink.group(0).clone();
        let cluster = BenchCluster::start_on(self.backend, 1, settings)?;
        create_webhook(&cluster, "bench", group.urls()[0].clone(), &["bench-event"], None).await?;
        let js = js_context(&cluster).await?;
        let mut rows = Vec::new();
        for (id, rate, secs) in runs {
            // A run that fell behind leaves a backlog: measure the next one without it.
            super::wait_all_settled(&js, Duration::from_secs(120)).await?;
            let cpu = CpuSampler::start(&cluster.procs());
            let mut row = self.fixed_rate(&js, &group, &format!("l{id}"), *rate, *secs).await?;
            let cpu = cpu.finish();
            row.id = self.id(id);
            if settings.is_empty() {
                row.name = self.name("latency at fixed load, default settings");
            } else {
                row.name = self.name(&row.name);
            }
            let delivered =
                row.metrics.get("received").and_then(serde_json::Value::as_u64).unwrap_or(0);
            row.notes.push_str(&format!(
                "; CPU {}; {}",
                procs::format_shares(&cpu),
                procs::format_per_delivery(&cpu, delivered)
            ));
            row.metric("cpu", procs::shares_json(&cpu));
            row.metric("cpu_us_per_delivery", procs::per_delivery_json(&cpu, delivered));
            if id == "2c"
                && let Some(s1) = &self.s1
            {
                let (_, low) = procs::per_delivery_us(&cpu, delivered);
                let (_, drained) = procs::per_delivery_us(&s1.cpu, s1.n);
                row.ratio = Some(low / drained.max(1e-9));
                row.ratio_of = "row 1's CPU per delivery".to_owned();
            }
            if id == "2c" && self.backend == Backend::Sqlite {
                match self.bare_at_rate(*rate, *secs).await {
                    Ok(bare) => {
                        row.notes.push_str(&format!(
                            "; the bare pipeline at the same rate: nats-server {:.0} µs per \
                             delivery, its consumer with load and sink (one process) {:.0} µs",
                            bare.nats_us, bare.bench_us
                        ));
                        row.metric("bare_nats_us_per_delivery", bare.nats_us.into());
                        row.metric("bare_bench_us_per_delivery", bare.bench_us.into());
                    }
                    Err(e) => row.notes.push_str(&format!("; bare pipeline not measured: {e:#}")),
                }
            }
            rows.push(row);
        }
        Ok(rows)
    }

    /// The ceiling's bare pipeline (publish → pull → POST → ack) at a fixed `rate` for `secs`:
    /// what nats-server and one consumer cost per message when messages come one by one,
    /// the floor under row 2c's figures.
    async fn bare_at_rate(&self, rate: f64, secs: u64) -> anyhow::Result<BareCost> {
        let sink = Sink::single()?;
        let group = sink.group(0).clone();
        let nats = crate::NatsServer::start()?;
        let js = jetstream::new(nats.client().await?);
        super::ceiling::create_stream(&js).await?;
        let consumer =
            super::ceiling::start_consumer(&js, group.urls()[0].clone(), CEILING_CONCURRENCY)
                .await?;
        let count = (rate * secs as f64) as u64;
        let mut load = Load::events("bench-event", "bare", Some(rate), count)
            .with_max_duration(Duration::from_secs(secs + 5));
        load.subjects = vec![super::ceiling::SUBJECT.to_owned()];
        let procs =
            vec![("nats-server".to_owned(), nats.pid()), ("bench".to_owned(), std::process::id())];
        let cpu = CpuSampler::start(&procs);
        let published = load::publish(&js, &load).await?;
        let (received, _, _) = watch_drain(&group, published.sent, Duration::from_secs(30)).await;
        let cpu = cpu.finish();
        consumer.abort();
        anyhow::ensure!(
            received >= published.sent,
            "the sink got {received} of {}",
            published.sent
        );
        let n = received.max(1) as f64;
        let us = |name: &str| {
            cpu.iter().filter(|s| s.name == name).map(|s| s.cpu_seconds).sum::<f64>() * 1e6 / n
        };
        Ok(BareCost { nats_us: us("nats-server"), bench_us: us("bench") })
    }

    /// 9: rows 1, 1s, 1d and 2b again with the control plane on Postgres (production's
    /// database); the PostgreSQL server's CPU is counted with hookd's.
    async fn on_postgres(&mut self) -> anyhow::Result<Vec<Row>> {
        self.backend = Backend::Postgres;
        let mut rows = self.throughput().await;
        if let Ok(rows) = &mut rows {
            let top = self.sizes.latency_rates.last().copied().unwrap_or(self.sizes.low_rate);
            match self
                .fixed_rate_rows(TUNED, &[("2b".to_owned(), top, self.sizes.latency_secs)])
                .await
            {
                Ok(more) => rows.extend(more),
                Err(e) => rows.push(Self::error_row("2bp", "latency, Postgres", &e)),
            }
        }
        self.backend = Backend::Sqlite;
        rows
    }

    /// 3 (and 6 with `slow`): events to many webhooks, each on its own sink port.
    async fn fanout(&mut self, slow: bool) -> anyhow::Result<Vec<Row>> {
        let w = self.sizes.fan_webhooks;
        let groups = if slow {
            vec![(w - 1, Behavior::Ok), (1, Behavior::Hang(Duration::from_secs(10)))]
        } else {
            vec![(w, Behavior::Ok)]
        };
        let sink = Sink::start(&groups)?;
        let healthy = sink.group(0).clone();
        let cluster = BenchCluster::start(1, "")?;
        let mut urls = healthy.urls();
        if slow {
            urls.extend(sink.group(1).urls());
        }
        for (i, url) in urls.into_iter().enumerate() {
            create_webhook(&cluster, &format!("fan-{i}"), url, &["bench-event"], None).await?;
        }
        let js = js_context(&cluster).await?;
        // The spec's rate, unless row 1 showed the machine cannot deliver that many: then 70 %
        // of row 1's throughput, so the scenario measures fan-out rather than a backlog.
        let mut rate = self.sizes.fan_rate;
        let mut capped = false;
        if let Some(s1) = &self.s1 {
            let affordable = (s1.settled_rate * 0.7 / w as f64).floor().max(1.0);
            if affordable < rate {
                rate = affordable;
                capped = true;
            }
        }
        let secs = self.sizes.fan_secs;
        let dispatcher = cluster.dispatchers[0].pid();
        // Warm-up: every endpoint gets a connection before sockets are counted.
        load::publish(&js, &Load::events("bench-event", "fw", Some(rate), (rate as u64).max(5)))
            .await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        healthy.reset();
        let sockets_start = procs::open_sockets(dispatcher);
        let cpu = CpuSampler::start(&cluster.procs());
        let count = (rate * secs as f64) as u64;
        let load = Load::events("bench-event", "f", Some(rate), count)
            .with_max_duration(Duration::from_secs(secs + 5));
        let sampler = {
            let max = Arc::new(AtomicU64::new(sockets_start as u64));
            let mid = Arc::new(AtomicU64::new(0));
            let (m, h) = (max.clone(), mid.clone());
            let half = Duration::from_secs_f64(secs as f64 / 2.0);
            let task = tokio::spawn(async move {
                let started = Instant::now();
                loop {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    let now = procs::open_sockets(dispatcher) as u64;
                    m.fetch_max(now, Ordering::Relaxed);
                    if started.elapsed() >= half && h.load(Ordering::Relaxed) == 0 {
                        h.store(now, Ordering::Relaxed);
                    }
                }
            });
            (max, task, mid)
        };
        let published = load::publish(&js, &load).await?;
        let expected = published.sent * healthy.ports.len() as u64;
        let (received, _, _) = watch_drain(&healthy, expected, Duration::from_secs(30)).await;
        let cpu = cpu.finish();
        let sockets_end = procs::open_sockets(dispatcher);
        sampler.1.abort();
        let sockets_max = sampler.0.load(Ordering::Relaxed);
        let sockets_mid = sampler.2.load(Ordering::Relaxed);
        let latency = Latency::from_histogram(&healthy.latency(), 0);

        let (id, name) = if slow {
            ("6", "slow endpoint isolation: 99 healthy, 1 hangs 10 s")
        } else {
            ("3", "fan-out")
        };
        let mut row = Row::new(id, name);
        row.load = format!(
            "{} ev/s × {w} webhooks × {secs} s = {} deliveries/s{}",
            fmt_rate(rate),
            fmt_rate(rate * w as f64),
            if capped { " (capped: see notes)" } else { "" }
        );
        row.throughput = Some(received as f64 / published.elapsed.as_secs_f64());
        row.latency = latency;
        let p99 = latency.map(|l| l.p99_ms);
        if slow {
            row.name = if self.quick {
                format!("slow endpoint isolation: {} healthy, 1 hangs 10 s", w - 1)
            } else {
                row.name
            };
            if let (Some(p), Some(base)) = (p99, self.s3_p99) {
                row.ratio = Some(p / base);
                row.ratio_of = "row 3 p99".to_owned();
            }
        } else {
            self.s3_p99 = p99;
        }
        row.notes = format!(
            "latency of the {} healthy endpoints; received {received} of {expected}; dispatcher \
             sockets start {sockets_start}, half-way {sockets_mid}, end {sockets_end}, max \
             {sockets_max}; CPU {}",
            healthy.ports.len(),
            procs::format_shares(&cpu)
        );
        if capped {
            row.notes.push_str(&format!(
                "; rate capped from {} ev/s to 70 % of row 1's throughput",
                self.sizes.fan_rate
            ));
        }
        if slow {
            row.notes
                .push_str(&format!("; slow endpoint got {} requests", sink.group(1).requests()));
        }
        row.metric("rate", rate.into());
        row.metric("webhooks", (w as u64).into());
        row.metric("expected", expected.into());
        row.metric("received", received.into());
        row.metric("sockets_start", (sockets_start as u64).into());
        row.metric("sockets_mid", sockets_mid.into());
        row.metric("sockets_end", (sockets_end as u64).into());
        row.metric("sockets_max", sockets_max.into());
        row.metric("cpu", procs::shares_json(&cpu));
        Ok(vec![row])
    }

    /// Parks `n` deliveries for a far retry: events of type `bench-park` go to an endpoint
    /// that always answers 500, whose webhook retries after an hour, so each delivery fails
    /// once and is stored as a JetStream message schedule. Waits until all are parked.
    async fn park(
        &self,
        cluster: &BenchCluster,
        js: &jetstream::Context,
        dead: &Group,
        n: u64,
    ) -> anyhow::Result<f64> {
        create_webhook(cluster, "park", dead.urls()[0].clone(), &["bench-park"], Some(vec![3600]))
            .await?;
        let started = Instant::now();
        load::publish(js, &Load::events("bench-park", "p", None, n)).await?;
        let (received, _, _) = watch_drain(dead, n, Duration::from_secs(600)).await;
        anyhow::ensure!(received >= n, "only {received} of {n} parked deliveries attempted");
        super::wait_all_settled(js, Duration::from_secs(120)).await?;
        Ok(n as f64 / started.elapsed().as_secs_f64())
    }

    /// 4: retries due in 5 s, while many other deliveries wait for far retries.
    async fn retry_accuracy(&mut self) -> anyhow::Result<Vec<Row>> {
        let delay = Duration::from_secs(5);
        let sink = Sink::start(&[
            (1, Behavior::FailFirst { retry_delay: delay }),
            (1, Behavior::AlwaysFail),
        ])?;
        let (failing, dead) = (sink.group(0).clone(), sink.group(1).clone());
        let extra = format!("{TUNED}retry_schedule_secs = [5]\n");
        let cluster = BenchCluster::start(1, &extra)?;
        let js = js_context(&cluster).await?;
        let others = self.sizes.retry_others;
        let park_rate = self.park(&cluster, &js, &dead, others).await?;
        create_webhook(&cluster, "fail-once", failing.urls()[0].clone(), &["bench-retry"], None)
            .await?;
        let n = self.sizes.retry_failing;
        let rate = self.sizes.retry_rate;
        let published =
            load::publish(&js, &Load::events("bench-retry", "r", Some(rate), n)).await?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while failing.retries() < published.sent && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let retries = failing.retries();
        let lateness = Latency::from_histogram(&failing.lateness(), LATENESS_OFFSET_US);
        let mut row = Row::new("4", "retry accuracy: retry − scheduled");
        row.load = format!(
            "{n} failing once (5 s retry) at {} ev/s, {others} other retries parked",
            fmt_rate(rate)
        );
        row.latency = lateness;
        row.throughput = Some(published.sent as f64 / published.elapsed.as_secs_f64());
        row.notes = format!(
            "{retries} of {} retries arrived; lateness = receipt of attempt 2 − (receipt of \
             attempt 1 + hookd's 5 s ± 5 % jitter for that delivery), so it includes the first \
             answer, the result write and the NAK; parked at {}/s",
            published.sent,
            fmt_rate(park_rate)
        );
        if !self.quick && others < 100_000 {
            row.notes.push_str("; scaled down from 100 000 others (machine time)");
        }
        row.metric("failing", n.into());
        row.metric("retries", retries.into());
        row.metric("others_parked", others.into());
        row.metric("park_rate", park_rate.into());
        Ok(vec![row])
    }

    /// 5: memory per parked retry, and healthy throughput while they wait.
    async fn pending_retries(&mut self) -> anyhow::Result<Vec<Row>> {
        let sink = Sink::start(&[(1, Behavior::AlwaysFail), (1, Behavior::Ok)])?;
        let (dead, healthy) = (sink.group(0).clone(), sink.group(1).clone());
        let mut cluster = BenchCluster::start(1, TUNED)?;
        let js = js_context(&cluster).await?;
        create_webhook(&cluster, "healthy", healthy.urls()[0].clone(), &["bench-event"], None)
            .await?;
        // Warm-up so the baseline includes the processes' working set.
        let warm = (self.sizes.park_healthy_n / 10).max(100);
        load::publish(&js, &Load::events("bench-event", "hw", None, warm)).await?;
        watch_drain(&healthy, warm, Duration::from_secs(60)).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (nats_pid, disp_pid) = (cluster.nats.pid(), cluster.dispatchers[0].pid());
        let store = cluster.nats.server(0).store_dir();
        let (nats0, disp0, disk0) =
            (procs::rss_bytes(nats_pid), procs::rss_bytes(disp_pid), procs::dir_bytes(&store));
        let n = self.sizes.park_n;
        let park_rate = self.park(&cluster, &js, &dead, n).await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (nats1, disp1, disk1) =
            (procs::rss_bytes(nats_pid), procs::rss_bytes(disp_pid), procs::dir_bytes(&store));
        let per = |a: u64, b: u64| (b as f64 - a as f64) / n as f64;

        // Healthy throughput with them parked: same drain method as row 1.
        cluster.stop_dispatchers();
        let m = self.sizes.park_healthy_n;
        load::publish(&js, &Load::events("bench-event", "hd", None, m)).await?;
        healthy.reset();
        cluster.add_dispatcher()?;
        let cpu = CpuSampler::start(&cluster.procs());
        let (received, first, sink_rate) = watch_drain(&healthy, m, self.sizes.drain_timeout).await;
        anyhow::ensure!(received >= m, "the sink got {received} of {m}");
        super::wait_all_settled(&js, Duration::from_secs(120)).await?;
        let cpu = cpu.finish();
        let rate = m as f64 / first.context("nothing received")?.elapsed().as_secs_f64();

        let mib = |b: u64| b as f64 / 1_048_576.0;
        let mut row = Row::new("5", "pending retries at scale");
        row.load = format!("{n} parked (1 h schedule), then {m} healthy backlog");
        row.throughput = Some(rate);
        row.ratio = self.s1.as_ref().map(|s| rate / s.settled_rate);
        row.ratio_of = "row 1".to_owned();
        row.notes = format!(
            "nats-server RSS {:.0} → {:.0} MiB ({:.0} B/retry), dispatcher RSS {:.0} → {:.0} MiB \
             ({:.0} B/retry), JetStream store {:.0} → {:.0} MiB ({:.0} B/retry); \
             extrapolated to 1 000 000: nats-server +{:.0} MiB RSS, +{:.0} MiB disk; parked at \
             {}/s; healthy sink rate 5–95 % {}/s; CPU {}",
            mib(nats0),
            mib(nats1),
            per(nats0, nats1),
            mib(disp0),
            mib(disp1),
            per(disp0, disp1),
            mib(disk0),
            mib(disk1),
            per(disk0, disk1),
            per(nats0, nats1) * 1e6 / 1_048_576.0,
            per(disk0, disk1) * 1e6 / 1_048_576.0,
            fmt_rate(park_rate),
            fmt_rate(sink_rate.unwrap_or(0.0)),
            procs::format_shares(&cpu)
        );
        if !self.quick && n < 1_000_000 {
            row.notes
                .push_str("; N scaled down from 1 000 000 (machine time), extrapolated linearly");
        }
        row.metric("parked", n.into());
        row.metric("nats_rss_before", nats0.into());
        row.metric("nats_rss_after", nats1.into());
        row.metric("dispatcher_rss_before", disp0.into());
        row.metric("dispatcher_rss_after", disp1.into());
        row.metric("store_bytes_before", disk0.into());
        row.metric("store_bytes_after", disk1.into());
        row.metric("nats_rss_bytes_per_retry", per(nats0, nats1).into());
        row.metric("store_bytes_per_retry", per(disk0, disk1).into());
        row.metric("park_rate", park_rate.into());
        row.metric("healthy_events", m.into());
        row.metric("cpu", procs::shares_json(&cpu));
        Ok(vec![row])
    }

    /// 7: attempt results stored per second through batched `ReportAttempts` on SQLite.
    async fn write_path(&mut self) -> anyhow::Result<Vec<Row>> {
        let cluster = BenchCluster::start(0, "")?;
        let webhook =
            create_webhook(&cluster, "reports", "http://127.0.0.1:9/".to_owned(), &["x"], None)
                .await?;
        let total = self.sizes.reports_total;
        let batch = 500u64;
        let calls = total.div_ceil(batch);
        let next = Arc::new(AtomicU64::new(0));
        let recorded = Arc::new(AtomicU64::new(0));
        let salt = now_ns();
        let cpu = CpuSampler::start(&cluster.procs());
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..self.sizes.report_concurrency {
            let mut client = cluster.dispatch().await?;
            let (next, recorded, webhook_id) = (next.clone(), recorded.clone(), webhook.id.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    let call = next.fetch_add(1, Ordering::Relaxed);
                    if call >= calls {
                        return anyhow::Ok(());
                    }
                    let reports = (call * batch..((call + 1) * batch).min(total))
                        .map(|i| report(&webhook_id, salt, i))
                        .collect();
                    let answer = client
                        .report_attempts(v1::ReportAttemptsRequest {
                            reports,
                            ..Default::default()
                        })
                        .await?
                        .into_inner();
                    recorded.fetch_add(u64::from(answer.recorded), Ordering::Relaxed);
                }
            }));
        }
        for task in tasks {
            task.await??;
        }
        let elapsed = started.elapsed().as_secs_f64();
        let cpu = cpu.finish();
        let recorded = recorded.load(Ordering::Relaxed);
        let mut row = Row::new("7", "result write path (ReportAttempts, SQLite)");
        row.load = format!(
            "{total} reports, {batch} per call, {} calls in parallel",
            self.sizes.report_concurrency
        );
        row.throughput = Some(recorded as f64 / elapsed);
        row.ratio = self.s1.as_ref().map(|s| recorded as f64 / elapsed / s.settled_rate);
        row.ratio_of = "row 1".to_owned();
        row.notes = format!(
            "{recorded} attempts recorded in {elapsed:.1} s; CPU {}",
            procs::format_shares(&cpu)
        );
        row.metric("reports", total.into());
        row.metric("recorded", recorded.into());
        row.metric("elapsed_secs", elapsed.into());
        row.metric("cpu", procs::shares_json(&cpu));
        Ok(vec![row])
    }

    /// 8: the same backlog drained by 1 and by 2 dispatchers.
    async fn scale_out(&mut self) -> anyhow::Result<Vec<Row>> {
        let n = self.sizes.drain_n;
        let one = match &self.s1 {
            Some(d) => d.clone(),
            None => self.drain(1, TUNED, n).await?.0,
        };
        let (two, ..) = self.drain(2, TUNED, n).await?;
        let mut row = self.drain_row("8", "scale-out: 2 dispatchers", "2 dispatchers", &two);
        let ratio = two.settled_rate / one.settled_rate;
        row.notes = format!(
            "{ratio:.2} × 1 dispatcher ({}/s); CPU with 1: {}; {}",
            fmt_rate(one.settled_rate),
            procs::format_shares(&one.cpu),
            row.notes
        );
        row.metric("one_dispatcher_rate", one.settled_rate.into());
        row.metric("two_over_one", ratio.into());
        Ok(vec![row])
    }
}

impl Bench {
    /// 10: what replication and fsync cost, each against row 1 (one dispatcher, one server,
    /// the default fsync interval) of the same run. 10: row 1's backlog drained by 3
    /// dispatchers on a 3-node cluster with every stream at 3 replicas. 10a: one server with
    /// `sync_interval: always`; 10b: the cluster with it (the production settings). A backlog
    /// a fifth of row 1's for these two: an fsync per write is slow on a shared disk.
    async fn replicated(&mut self) -> anyhow::Result<Vec<Row>> {
        let n = self.sizes.drain_n;
        let one = match &self.s1 {
            Some(d) => d.clone(),
            None => self.drain(1, TUNED, n).await?.0,
        };
        let fsynced = NatsOptions { sync_always: true, ..NatsOptions::default() };
        let cases = [
            ("10", "3-node NATS cluster, R3, 3 dispatchers", 3, NatsOptions::default(), n),
            ("10a", "1 server, sync_interval: always", 1, fsynced.clone(), n / 5),
            ("10b", "3-node cluster, R3, sync_interval: always", 3, fsynced, n / 5),
        ];
        let mut rows = Vec::new();
        for (id, name, servers, options, backlog) in cases {
            let fsync = if options.sync_always { "fsync on every write" } else { "default fsync" };
            let settings = match servers {
                1 => format!("1 dispatcher, 1 server, {fsync}"),
                _ => format!("3 dispatchers, streams R3, {fsync}"),
            };
            let drained = async {
                let nats = match servers {
                    1 => Nats::single(options)?,
                    _ => Nats::cluster(servers, options)?,
                };
                Ok::<_, anyhow::Error>(self.drain_on(nats, servers, TUNED, backlog).await?.0)
            };
            let drained = match drained.await {
                Ok(drained) => drained,
                Err(e) => {
                    rows.push(Self::error_row(id, name, &e));
                    continue;
                }
            };
            let mut row = self.drain_row(id, name, &settings, &drained);
            let ratio = drained.settled_rate / one.settled_rate;
            row.notes = format!(
                "{ratio:.2} × row 1 (1 dispatcher, 1 server, default fsync: {}/s); {} processes \
                 on {} cores; {}",
                fmt_rate(one.settled_rate),
                servers * 2 + 2,
                procs::nproc(),
                row.notes
            );
            row.metric("row1_rate", one.settled_rate.into());
            row.metric("over_row1", ratio.into());
            rows.push(row);
        }
        Ok(rows)
    }
}

impl Bench {
    /// 11: what the delivery controls cost, each as a ratio to the same drain without them.
    /// 11a and 11b: row 1's backlog (a 25th of it for one key) to one webhook delivering in
    /// order per `entity_id`, with 1 000 keys and with 1 (one delivery at a time), against row
    /// 1 (unordered). 11c: a backlog fanned out to `fan_webhooks` webhooks, each with a filter
    /// of five conditions that every event passes (so the deliveries are the same), against
    /// the same fan-out without filters.
    async fn controls(&mut self) -> anyhow::Result<Vec<Row>> {
        let n = self.sizes.drain_n;
        let plain = match &self.s1 {
            Some(d) => d.clone(),
            None => self.drain(1, TUNED, n).await?.0,
        };
        let mut rows = Vec::new();
        // One key is one delivery at a time: a 25th of the backlog.
        let ordered = [("11a", 1000, n), ("11b", 1, (n / 25).max(100))];
        for (id, keys, backlog) in ordered {
            let name = format!("ordered per key, {keys} key{}", if keys == 1 { "" } else { "s" });
            let spec = Drained {
                ordering_key: "entity_id".to_owned(),
                keys: Some(keys),
                ..Drained::default()
            };
            let drained = async {
                let nats = Nats::single(NatsOptions::default())?;
                anyhow::Ok(self.drain_to(nats, 1, TUNED, backlog, &spec).await?.0)
            };
            match drained.await {
                Ok(d) => {
                    let settings = format!(
                        "1 dispatcher, ordering_key entity_id, {keys} key{}",
                        if keys == 1 { "" } else { "s" }
                    );
                    let mut row = self.drain_row(id, &name, &settings, &d);
                    let ratio = d.settled_rate / plain.settled_rate;
                    row.ratio = Some(ratio);
                    row.ratio_of = "row 1 (unordered)".to_owned();
                    row.notes = format!(
                        "{ratio:.2} × row 1 ({}/s); {}",
                        fmt_rate(plain.settled_rate),
                        row.notes
                    );
                    row.metric("keys", keys.into());
                    row.metric("unordered_rate", plain.settled_rate.into());
                    rows.push(row);
                }
                Err(e) => rows.push(Self::error_row(id, &name, &e)),
            }
        }

        let w = self.sizes.fan_webhooks;
        let events = (n / w as u64).max(20);
        let filter = json_struct(serde_json::json!({"$and": [
            {"/type": "bench-event"},
            {"/data/seq": {"$gte": 0}},
            {"/entity_id": {"$exists": true}},
            {"/data/sent_at_ns": {"$gt": 0}},
            {"$not": {"/data/seq": {"$lt": 0}}},
        ]}));
        let name = format!("fan-out to {w} webhooks with payload filters");
        let fan = async {
            let mut rates = Vec::new();
            for filter in [None, filter] {
                let spec = Drained { count: w, filter, ..Drained::default() };
                let nats = Nats::single(NatsOptions::default())?;
                rates.push(self.drain_to(nats, 1, TUNED, events, &spec).await?.0);
            }
            anyhow::Ok(rates)
        };
        match fan.await {
            Ok(drains) => {
                let (unfiltered, filtered) = (&drains[0], &drains[1]);
                let settings = format!("{events} events × {w} webhooks, 1 dispatcher");
                let mut row = self.drain_row("11c", &name, &settings, filtered);
                let ratio = filtered.settled_rate / unfiltered.settled_rate;
                row.ratio = Some(ratio);
                row.ratio_of = "the same fan-out unfiltered".to_owned();
                row.notes = format!(
                    "{ratio:.2} × unfiltered ({}/s, {}); every event passes the 5 \
                     conditions; {}",
                    fmt_rate(unfiltered.settled_rate),
                    procs::format_per_delivery(&unfiltered.cpu, unfiltered.n),
                    row.notes
                );
                row.metric("unfiltered_rate", unfiltered.settled_rate.into());
                row.metric(
                    "unfiltered_cpu_us_per_delivery",
                    procs::per_delivery_json(&unfiltered.cpu, unfiltered.n),
                );
                rows.push(row);
            }
            Err(e) => rows.push(Self::error_row("11c", &name, &e)),
        }
        Ok(rows)
    }
}

/// A JSON object as a protobuf `Struct` (a webhook's filter).
fn json_struct(json: serde_json::Value) -> Option<prost_types::Struct> {
    match hookd_proto::convert::json_to_value(json).kind {
        Some(prost_types::value::Kind::StructValue(s)) => Some(s),
        _ => None,
    }
}

fn timestamp(ns: u64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: i64::try_from(ns / 1_000_000_000).unwrap_or(i64::MAX),
        nanos: i32::try_from(ns % 1_000_000_000).unwrap_or(0),
    }
}

/// A delivered first attempt, shaped like the dispatcher's reports (envelope payload, event,
/// two recorded headers, the delivery id of that event and webhook).
fn report(webhook_id: &str, salt: u64, i: u64) -> v1::AttemptReport {
    let event_id = format!("w{salt}-{i}");
    let event = load::event_body(&event_id, "bench-event", i, i);
    let payload = format!(
        r#"{{"meta":{{"webhookId":"{webhook_id}","eventId":"{event_id}","eventType":"bench-event","eventTimestamp":"2026-01-01T00:00:00.000Z","entityId":"e{i}","version":"1.0"}},"data":{{"seq":{i}}}}}"#
    );
    // The id the dispatcher would give it (ordered by the event's time, here now): a made-up
    // id shapes the database's index work, so it must be the real kind.
    let delivery_id = hookd_core::DeliveryId::for_event(
        &hookd_core::EventId::from(event_id.as_str()),
        chrono::Utc::now(),
        &hookd_core::WebhookId::from(webhook_id),
    )
    .as_str()
    .to_owned();
    v1::AttemptReport {
        delivery_id: delivery_id.clone(),
        webhook_id: webhook_id.to_owned(),
        event_id,
        event_type: "bench-event".to_owned(),
        payload,
        event,
        tenant: crate::TENANT.to_owned(),
        attempt: Some(v1::Attempt {
            number: 1,
            started_at: Some(timestamp(now_ns())),
            http_status: 200,
            latency_ms: 1,
            error: String::new(),
            response_body: String::new(),
            success: true,
            request_headers: vec![
                v1::HttpHeader { name: "webhook-id".to_owned(), value: delivery_id },
                v1::HttpHeader {
                    name: "webhook-timestamp".to_owned(),
                    value: "1767225600".to_owned(),
                },
            ],
        }),
        status: v1::DeliveryStatus::Delivered as i32,
        next_attempt_at: None,
        traceparent: String::new(),
    }
}

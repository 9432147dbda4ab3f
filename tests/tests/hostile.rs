//! End to end: hostile receivers and hostile input. Raw TCP endpoints written here answer
//! with a 1 GiB body, a gzip bomb, a response dripped one byte per second and an endless
//! header stream; each attempt must be recorded within its deadline while the dispatcher's
//! memory stays bounded. Oversized events are refused on both ingest paths.

use std::{
    io::Write as _,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context;
use hookd_proto::{convert::json_to_value, v1};
use hookd_tests::{Cluster, Receiver, wait_until};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
};
use tonic::Code;

const DEADLINE: Duration = Duration::from_secs(30);
/// The webhooks' attempt timeout.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
/// What an attempt may take beyond its timeout (scheduling on a busy 2-core machine).
const SLACK: Duration = Duration::from_millis(1500);
/// How long a hostile endpoint keeps going at most, whatever the client does.
const HOSTILE_FOR: Duration = Duration::from_secs(20);
const GIB: u64 = 1024 * 1024 * 1024;
const EXCERPT_MAX: usize = 16 * 1024;

/// How a hostile endpoint answers.
#[derive(Debug, Clone, Copy)]
enum Hostility {
    /// `content-length: 1 GiB`, streamed in 64 KiB chunks until the client disconnects.
    HugeBody,
    /// A 200 whose gzip body (a few MiB) inflates to 4 GiB of zeros.
    GzipBomb,
    /// The whole response, status line first, one byte per second.
    DripHead,
    /// The head at once, then the body one byte per second.
    DripBody,
    /// A status line and then header lines forever.
    EndlessHeaders,
}

/// A raw TCP endpoint on loopback; counts the bytes it managed to send and keeps the
/// request heads it read.
struct Hostile {
    url: String,
    sent: Arc<AtomicU64>,
    heads: Arc<std::sync::Mutex<Vec<String>>>,
}

async fn hostile(kind: Hostility, gzip_body: Arc<Vec<u8>>) -> anyhow::Result<Hostile> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    let sent = Arc::new(AtomicU64::new(0));
    let heads = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (sent_c, heads_c) = (sent.clone(), heads.clone());
    tokio::spawn(async move {
        // A few connections at most: one attempt, no retries.
        for _ in 0..4 {
            let Ok((stream, _)) = listener.accept().await else { return };
            let (sent, heads, body) = (sent_c.clone(), heads_c.clone(), gzip_body.clone());
            tokio::spawn(async move {
                let _ =
                    tokio::time::timeout(HOSTILE_FOR, answer(stream, kind, &sent, &heads, &body))
                        .await;
            });
        }
    });
    Ok(Hostile { url, sent, heads })
}

/// Reads the request (head and `content-length` body, bounded), then misbehaves. Ends when
/// a write fails: the client hung up.
async fn answer(
    mut stream: TcpStream,
    kind: Hostility,
    sent: &AtomicU64,
    heads: &std::sync::Mutex<Vec<String>>,
    gzip_body: &[u8],
) -> std::io::Result<()> {
    let mut request = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = request.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if request.len() > 64 * 1024 {
            return Ok(());
        }
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        request.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&request[..head_end]).to_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
        .min(1024 * 1024);
    let mut have = request.len() - head_end;
    while have < length {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        have += n;
    }
    heads.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(head);

    let send = |bytes: Vec<u8>| {
        sent.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        bytes
    };
    match kind {
        Hostility::HugeBody => {
            let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {GIB}\r\n\r\n");
            stream.write_all(&send(head.into_bytes())).await?;
            let chunk = vec![b'x'; 64 * 1024];
            for _ in 0..(GIB / chunk.len() as u64) {
                stream.write_all(&send(chunk.clone())).await?;
            }
        }
        Hostility::GzipBomb => {
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-encoding: gzip\r\n\
                 content-length: {}\r\n\r\n",
                gzip_body.len()
            );
            stream.write_all(&send(head.into_bytes())).await?;
            stream.write_all(&send(gzip_body.to_vec())).await?;
        }
        Hostility::DripHead | Hostility::DripBody => {
            let body = "slow".repeat(8);
            let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len());
            let dripped = if matches!(kind, Hostility::DripHead) {
                format!("{head}{body}")
            } else {
                stream.write_all(&send(head.into_bytes())).await?;
                body
            };
            for byte in dripped.bytes() {
                stream.write_all(&send(vec![byte])).await?;
                stream.flush().await?;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        Hostility::EndlessHeaders => {
            stream.write_all(&send(b"HTTP/1.1 200 OK\r\n".to_vec())).await?;
            let pad = "p".repeat(1000);
            for i in 0..1_000_000u32 {
                let line = format!("x-endless-{i}: {pad}\r\n");
                stream.write_all(&send(line.into_bytes())).await?;
            }
        }
    }
    Ok(())
}

/// Concatenated gzip members, each 16 MiB of zeros compressed: `members` × 16 MiB inflated.
/// Decoders inflate every member (RFC 1952), so this is one body of that size.
fn gzip_bomb(members: usize) -> anyhow::Result<Vec<u8>> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; 1024 * 1024];
    for _ in 0..16 {
        encoder.write_all(&zeros)?;
    }
    let member = encoder.finish()?;
    Ok(member.repeat(members))
}

/// Resident and peak resident memory of a process, in KiB, from `/proc/<pid>/status`.
fn memory_kib(pid: u32) -> anyhow::Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> anyhow::Result<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("no {name} in /proc/{pid}/status"))
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_receivers_cannot_exhaust_memory_or_time() -> anyhow::Result<()> {
    let cluster = Cluster::start(1, "retry_schedule_secs = []")?;
    let dispatcher_pid = cluster.dispatchers[0].pid();
    let bomb = Arc::new(gzip_bomb(256)?);
    anyhow::ensure!(bomb.len() < 16 * 1024 * 1024, "the bomb is {} bytes", bomb.len());

    let kinds = [
        Hostility::HugeBody,
        Hostility::GzipBomb,
        Hostility::DripHead,
        Hostility::DripBody,
        Hostility::EndlessHeaders,
    ];
    let mut endpoints = Vec::new();
    for (i, kind) in kinds.iter().enumerate() {
        let endpoint = hostile(*kind, bomb.clone()).await?;
        let webhook = cluster
            .create(v1::CreateWebhookRequest {
                name: format!("hostile-{i}"),
                url: endpoint.url.clone(),
                event_types: vec!["hostile".into()],
                active: true,
                attempt_timeout_ms: ATTEMPT_TIMEOUT.as_millis() as u32,
                ..Default::default()
            })
            .await?;
        endpoints.push((*kind, endpoint, webhook.id));
    }
    let (rss_before, _) = memory_kib(dispatcher_pid)?;
    cluster
        .events()
        .await?
        .publish_event(v1::PublishEventRequest {
            event: Some(v1::Event {
                id: "evt-hostile".into(),
                r#type: "hostile".into(),
                ..Default::default()
            }),
        })
        .await?;

    for (kind, endpoint, id) in &endpoints {
        let delivery = cluster.settled_delivery(id, DEADLINE).await?;
        assert_eq!(delivery.attempts.len(), 1, "{kind:?}");
        let attempt = &delivery.attempts[0];
        let latency = Duration::from_millis(attempt.latency_ms);
        assert!(latency <= ATTEMPT_TIMEOUT + SLACK, "{kind:?} took {latency:?}: {attempt:?}");
        assert!(attempt.response_body.len() <= EXCERPT_MAX, "{kind:?}");
        let sent = endpoint.sent.load(Ordering::Relaxed);
        match kind {
            Hostility::HugeBody => {
                // The excerpt is kept and the rest never read: the endpoint could push only
                // what fits in socket buffers before the client hung up.
                assert_eq!(attempt.http_status, 200, "{attempt:?}");
                assert_eq!(attempt.response_body.len(), EXCERPT_MAX);
                assert!(attempt.response_body.bytes().all(|b| b == b'x'));
                assert!(sent < 64 * 1024 * 1024, "{kind:?}: {sent} bytes went out");
            }
            Hostility::GzipBomb => {
                // Kept as the compressed bytes it is: the first 16 KiB sent, never inflated.
                assert_eq!(attempt.http_status, 200, "{attempt:?}");
                assert!(attempt.response_body.starts_with('\u{1f}'), "gzip magic");
                // (The control plane trims the excerpt to 16 KiB of UTF-8, which the lossy
                // decoding of binary bytes has made longer.)
                let sent_prefix = String::from_utf8_lossy(&bomb[..EXCERPT_MAX]);
                assert!(
                    attempt.response_body.len() > 1024
                        && sent_prefix.starts_with(&attempt.response_body),
                    "the excerpt is not the first bytes sent"
                );
            }
            Hostility::DripHead | Hostility::DripBody => {
                assert_eq!(attempt.error, "no answer within 2000 ms", "{kind:?}: {attempt:?}");
                assert!(latency >= ATTEMPT_TIMEOUT, "{kind:?}: {latency:?}");
            }
            Hostility::EndlessHeaders => {
                assert_eq!(attempt.http_status, 0, "{attempt:?}");
                assert!(!attempt.error.is_empty(), "{attempt:?}");
                assert!(latency < ATTEMPT_TIMEOUT, "fails on size, not time: {latency:?}");
                assert!(sent < 64 * 1024 * 1024, "{kind:?}: {sent} bytes went out");
            }
        }
        // hookd never asks for a compressed answer.
        let heads = endpoint.heads.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        assert_eq!(heads.len(), 1, "{kind:?}: one request, no retry or redirect");
        assert!(!heads[0].contains("accept-encoding"), "{kind:?}: {}", heads[0]);
    }

    let (rss_after, peak) = memory_kib(dispatcher_pid)?;
    let grown_kib = peak.max(rss_after).saturating_sub(rss_before);
    assert!(
        grown_kib < 64 * 1024,
        "dispatcher memory grew by {grown_kib} KiB (rss {rss_before} -> {rss_after}, peak {peak})"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_events_are_refused_on_both_ingest_paths() -> anyhow::Result<()> {
    const LIMIT: usize = 2048;
    let cluster = Cluster::start_with_env(
        1,
        &format!("max_event_bytes = {LIMIT}"),
        &[("HOOKD_MAX_EVENT_BYTES", "2048")],
        &[],
    )?;
    let receiver = Receiver::ok()?;
    let mut catalog = cluster.event_types().await?;
    catalog
        .create_event_type(v1::CreateEventTypeRequest {
            event_type: Some(v1::EventType { name: "big".into(), ..Default::default() }),
        })
        .await?;
    cluster.create_webhook("big", receiver.url("/big"), &["big"]).await?;
    let data = |bytes: usize| serde_json::json!({ "blob": "b".repeat(bytes) });

    // gRPC: refused, naming the field and the limit.
    let refused = cluster
        .events()
        .await?
        .publish_event(v1::PublishEventRequest {
            event: Some(v1::Event {
                id: "evt-too-big".into(),
                r#type: "big".into(),
                data: Some(json_to_value(data(LIMIT))),
                ..Default::default()
            }),
        })
        .await
        .expect_err("over the limit");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(refused.message().starts_with("invalid event: "), "{}", refused.message());
    assert!(refused.message().contains("at most 2048 bytes"), "{}", refused.message());

    // NATS, over the limit but under the stream's ceiling: dropped by the fan-out, counted.
    let js = async_nats::jetstream::new(cluster.nats.client().await?);
    let raw = |id: &str, bytes: usize| {
        serde_json::json!({"id": id, "type": "big", "data": data(bytes)}).to_string()
    };
    js.publish("hookd.events.default.big", raw("evt-nats-big", 3 * LIMIT).into()).await?.await?;
    // Far over it: nats-server refuses to store it at all.
    let stored = async {
        js.publish("hookd.events.default.big", raw("evt-nats-huge", 8 * LIMIT).into())
            .await?
            .await
            .map_err(anyhow::Error::from)
    };
    assert!(stored.await.is_err(), "the events stream refuses messages far over the limit");

    let published = cluster
        .events()
        .await?
        .publish_event(v1::PublishEventRequest {
            event: Some(v1::Event {
                id: "evt-small".into(),
                r#type: "big".into(),
                data: Some(json_to_value(data(16))),
                ..Default::default()
            }),
        })
        .await?
        .into_inner();
    assert_eq!(published.stream_sequence, 2, "only the NATS event over the limit went before");
    let got = receiver.wait_for(1, DEADLINE).await?;
    assert_eq!(got[0].json()?["meta"]["eventId"], "evt-small");
    wait_until("the oversized event is counted", DEADLINE, || {
        let mut catalog = catalog.clone();
        async move {
            let t = catalog
                .get_event_type(v1::GetEventTypeRequest { name: "big".into() })
                .await?
                .into_inner()
                .event_type;
            Ok(t.filter(|t| t.rejected == 1))
        }
    })
    .await?;
    let started = Instant::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.count(), 1, "nothing oversized delivered ({:?})", started.elapsed());
    Ok(())
}

//! End to end: what a hostile producer or API client sends at hookd's edges, and the answer
//! it gets. On NATS: an event whose body names another type than its subject, duplicate
//! top-level keys, a body id other than `Nats-Msg-Id`: each refused by the fan-out and counted
//! under its subject's type. On gRPC: data nested 10 000 deep and a 5 MiB request are
//! `INVALID_ARGUMENT` with a short message naming the limit; a schema with a 55 KB `pattern`
//! cannot make an error message that a client with a 16 KiB metadata limit fails to read;
//! webhook URLs with CR LF are refused, and an internationalised host is shown (and requested)
//! as punycode.

use std::{process::Command, time::Duration};

use anyhow::Context as _;
use bytes::{Buf as _, BufMut as _};
use hookd_proto::{
    convert::json_to_value,
    v1::{self, event_service_client::EventServiceClient},
};
use hookd_tests::{
    Cluster, OWNER_TOKEN, Receiver, authed, hookd_binary, sample, scrape, wait_until,
};
use prost::Message as _;
use tonic::{
    Code, Status,
    codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder},
    transport::Channel,
};

const DEADLINE: Duration = Duration::from_secs(30);
/// What hookd promises about every error message (hookd_core::text::MAX_MESSAGE_BYTES).
const MAX_MESSAGE_BYTES: usize = 480;

/// Publishes `body` on `subject`, with `Nats-Msg-Id` when given, and waits for the store ack.
async fn publish_raw(
    cluster: &Cluster,
    subject: &str,
    msg_id: Option<&str>,
    body: &[u8],
) -> anyhow::Result<()> {
    let js = async_nats::jetstream::new(cluster.nats.client().await?);
    let mut headers = async_nats::HeaderMap::new();
    if let Some(id) = msg_id {
        headers.insert("Nats-Msg-Id", id);
    }
    js.publish_with_headers(subject.to_owned(), headers, body.to_vec().into()).await?.await?;
    Ok(())
}

/// Catalogues event types without schemas.
async fn catalog(cluster: &Cluster, names: &[&str]) -> anyhow::Result<()> {
    let mut client = cluster.event_types().await?;
    for name in names {
        client
            .create_event_type(v1::CreateEventTypeRequest {
                event_type: Some(v1::EventType { name: (*name).into(), ..Default::default() }),
            })
            .await?;
    }
    Ok(())
}

/// Waits until the catalog counts `expected` refusals of `name`.
async fn wait_rejected(cluster: &Cluster, name: &str, expected: u64) -> anyhow::Result<()> {
    let client = cluster.event_types().await?;
    wait_until(&format!("{expected} refusals of {name} counted"), DEADLINE, || {
        let mut client = client.clone();
        async move {
            let t = client
                .get_event_type(v1::GetEventTypeRequest { name: name.into() })
                .await?
                .into_inner()
                .event_type
                .context("event type")?;
            anyhow::ensure!(t.rejected <= expected, "{name}: {} refusals", t.rejected);
            Ok((t.rejected == expected).then_some(()))
        }
    })
    .await
}

/// The dispatcher's count of events it took and refused.
async fn rejected_metric(cluster: &Cluster) -> anyhow::Result<f64> {
    let text = scrape(&cluster.dispatchers[0].metrics_url()).await?;
    sample(&text, "hookd_dispatcher_events_consumed_total{outcome=\"rejected\"}")
        .context("no rejected sample")
}

/// After the refused events, a good one is delivered, and nothing else is.
async fn only_the_good_event_arrives(
    cluster: &Cluster,
    receiver: &Receiver,
    event_type: &str,
) -> anyhow::Result<()> {
    let good = serde_json::json!({"id": "evt-good", "type": event_type, "data": {"ok": true}});
    let subject = format!("hookd.events.default.{event_type}");
    publish_raw(cluster, &subject, Some("evt-good"), good.to_string().as_bytes()).await?;
    let got = receiver.wait_for(1, DEADLINE).await?;
    assert_eq!(got[0].json()?["meta"]["eventId"], "evt-good");
    // The fan-out takes events in order: every refused one went before the good one.
    assert_eq!(receiver.count(), 1, "only the good event is delivered");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_whose_type_is_not_its_subjects_is_refused_and_counted() -> anyhow::Result<()> {
    let cluster = Cluster::start(1, "")?;
    let receiver = Receiver::ok()?;
    catalog(&cluster, &["contact-created", "order-placed"]).await?;
    cluster.create_webhook("all", receiver.url("/"), &["*"]).await?;

    // A producer allowed to publish contact-created only, claiming another type in the body.
    let forged = serde_json::json!({"id": "evt-forged", "type": "order-placed", "data": {}});
    let subject = "hookd.events.default.contact-created";
    publish_raw(&cluster, subject, Some("evt-forged"), forged.to_string().as_bytes()).await?;
    only_the_good_event_arrives(&cluster, &receiver, "contact-created").await?;
    // Counted under the subject's type, the one NATS permissions were checked against.
    wait_rejected(&cluster, "contact-created", 1).await?;
    wait_rejected(&cluster, "order-placed", 0).await?;
    assert_eq!(rejected_metric(&cluster).await?, 1.0);

    // PublishEvent cannot disagree: the subject is built from the event's type, and the
    // message id is its id.
    let nats = cluster.nats.client().await?;
    let mut seen = nats.subscribe("hookd.events.default.>").await?;
    nats.flush().await?;
    cluster.publish("order-placed", "evt-grpc").await?;
    let message = tokio::time::timeout(DEADLINE, futures::StreamExt::next(&mut seen))
        .await?
        .context("the published event")?;
    assert_eq!(message.subject.as_str(), "hookd.events.default.order-placed");
    let body: serde_json::Value = serde_json::from_slice(&message.payload)?;
    assert_eq!(
        (body["type"].as_str(), body["id"].as_str()),
        (Some("order-placed"), Some("evt-grpc"))
    );
    let msg_id = message.headers.as_ref().and_then(|h| h.get("Nats-Msg-Id")).map(|v| v.as_str());
    assert_eq!(msg_id, Some("evt-grpc"));
    receiver.wait_for(2, DEADLINE).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_keys_and_an_id_other_than_nats_msg_id_are_refused_and_counted()
-> anyhow::Result<()> {
    let cluster = Cluster::start(1, "")?;
    let receiver = Receiver::ok()?;
    catalog(&cluster, &["contact-created"]).await?;
    cluster.create_webhook("crm", receiver.url("/"), &["contact-created"]).await?;
    let subject = "hookd.events.default.contact-created";

    // JetStream dedupes on the first id, a last-wins parser would store the second.
    let two_ids = br#"{"id":"evt-a","type":"contact-created","id":"evt-b","data":{}}"#;
    publish_raw(&cluster, subject, Some("evt-a"), two_ids).await?;
    // Which data would a receiver get?
    let two_data = br#"{"id":"evt-c","type":"contact-created","data":{},"data":{"admin":true}}"#;
    publish_raw(&cluster, subject, Some("evt-c"), two_data).await?;
    // The same key once escaped is the same key.
    let escaped = br#"{"id":"evt-d","type":"contact-created","\u0074ype":"contact-created"}"#;
    publish_raw(&cluster, subject, Some("evt-d"), escaped).await?;
    // The body's id is not the one JetStream deduplicated on.
    let other_id = br#"{"id":"evt-e","type":"contact-created","data":{}}"#;
    publish_raw(&cluster, subject, Some("evt-other"), other_id).await?;

    only_the_good_event_arrives(&cluster, &receiver, "contact-created").await?;
    wait_rejected(&cluster, "contact-created", 4).await?;
    assert_eq!(rejected_metric(&cluster).await?, 4.0);
    let log = std::fs::read_to_string(cluster.dispatchers[0].log_path())?;
    for expected in [
        r#"the top-level key "id" more than once"#,
        r#"the top-level key "data" more than once"#,
        r#"the top-level key "type" more than once"#,
        r#"differs from its Nats-Msg-Id header "evt-other""#,
    ] {
        assert!(log.contains(expected), "the dispatcher log says why: {expected}");
    }
    Ok(())
}

/// Sends prebuilt protobuf bytes as a request and decodes a `PublishEventResponse`: a
/// client that builds what `prost` would refuse to encode or take long to.
#[derive(Debug, Clone, Copy, Default)]
struct RawRequest;

impl Codec for RawRequest {
    type Encode = Vec<u8>;
    type Decode = v1::PublishEventResponse;
    type Encoder = RawRequest;
    type Decoder = RawRequest;

    fn encoder(&mut self) -> Self::Encoder {
        RawRequest
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawRequest
    }
}

impl Encoder for RawRequest {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawRequest {
    type Item = v1::PublishEventResponse;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Status> {
        let bytes = src.copy_to_bytes(src.remaining());
        v1::PublishEventResponse::decode(bytes)
            .map(Some)
            .map_err(|e| Status::internal(e.to_string()))
    }
}

/// A `PublishEventRequest` whose data is `depth` objects nested in each other, encoded
/// outside in, in linear time (each level is a prefix sized by what it wraps).
fn deeply_nested_publish(depth: usize) -> Vec<u8> {
    fn key(field: u32) -> u8 {
        u8::try_from(field << 3 | 2).unwrap_or_default() // length-delimited
    }
    fn varint(mut n: usize, out: &mut Vec<u8>) {
        while n >= 0x80 {
            out.push((n as u8) | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
    }
    let varint_len = |n: usize| {
        let mut v = Vec::new();
        varint(n, &mut v);
        v.len()
    };
    // The innermost Value: number_value (field 2, fixed64) = 1.0.
    let core = vec![0x11, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f];
    let mut prefixes = Vec::with_capacity(depth);
    let mut inner = core.len();
    for _ in 0..depth {
        // Value { struct_value (5): Struct { fields (1): entry { key (1): "a", value (2) } } }
        let entry = 3 + 1 + varint_len(inner) + inner;
        let strukt = 1 + varint_len(entry) + entry;
        let mut prefix = vec![key(5)];
        varint(strukt, &mut prefix);
        prefix.push(key(1));
        varint(entry, &mut prefix);
        prefix.extend_from_slice(&[key(1), 1, b'a', key(2)]);
        varint(inner, &mut prefix);
        inner += prefix.len();
        prefixes.push(prefix);
    }
    let mut event = vec![key(2), 4];
    event.extend_from_slice(b"deep");
    event.push(key(6)); // Event.data
    varint(inner, &mut event);
    let event_len = event.len() + inner;
    let mut request = vec![key(1)]; // PublishEventRequest.event
    varint(event_len, &mut request);
    request.extend(event);
    for prefix in prefixes.iter().rev() {
        request.extend_from_slice(prefix);
    }
    request.extend(core);
    request
}

fn assert_client_mistake(status: &Status, starts: &str, names: &str) {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let message = status.message();
    assert!(message.starts_with(starts), "{message}");
    assert!(message.contains(names), "the message names the limit: {message}");
    assert!(message.len() <= MAX_MESSAGE_BYTES, "{} bytes: {message}", message.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_event_answers_deep_nesting_and_oversize_as_client_mistakes() -> anyhow::Result<()>
{
    let cluster = Cluster::start(0, "")?;
    let channel = cluster.authed(Some(OWNER_TOKEN)).await?;

    // 10 000 levels: refused while decoding, by prost's recursion limit.
    let mut raw = tonic::client::Grpc::new(channel.clone());
    raw.ready().await?;
    let path = http::uri::PathAndQuery::from_static("/hookd.v1.EventService/PublishEvent");
    let refused = raw
        .unary(tonic::Request::new(deeply_nested_publish(10_000)), path, RawRequest)
        .await
        .expect_err("10 000 levels");
    assert_client_mistake(&refused, "invalid event.data: nests more than 32 levels", "at most 32");

    // 40 levels of arrays decode (each is two protobuf levels, not three), and are refused
    // by the same limit.
    let mut events = EventServiceClient::new(channel);
    let mut lists = serde_json::json!(1);
    for _ in 0..40 {
        lists = serde_json::json!([lists]);
    }
    let publish = |data: serde_json::Value| v1::PublishEventRequest {
        event: Some(v1::Event {
            r#type: "contact-created".into(),
            data: Some(json_to_value(data)),
            ..Default::default()
        }),
    };
    let refused = events.publish_event(publish(lists)).await.expect_err("40 levels");
    assert_client_mistake(&refused, "invalid event.data: nests 40 levels deep", "at most 32");

    // 5 MiB: over the request limit (4 MiB with the default max_event_bytes), refused before
    // it is decoded.
    let big = serde_json::json!({ "blob": "b".repeat(5 * 1024 * 1024) });
    let refused = events.publish_event(publish(big)).await.expect_err("5 MiB");
    assert_client_mistake(&refused, "invalid request: is 52", "at most 4194304 bytes");
    assert!(refused.message().contains("max_event_bytes"), "{}", refused.message());

    // 300 KiB: decoded, then over max_event_bytes.
    let over = serde_json::json!({ "blob": "b".repeat(300 * 1024) });
    let refused = events.publish_event(publish(over)).await.expect_err("300 KiB");
    assert_client_mistake(&refused, "invalid event: is ", "at most 262144 bytes (max_event_bytes)");

    // And a good event still goes through on the same connection.
    events.publish_event(publish(serde_json::json!({"ok": true}))).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_messages_stay_short_enough_for_a_client_with_a_16_kib_metadata_limit()
-> anyhow::Result<()> {
    let cluster = Cluster::start(0, "")?;
    // Python's grpcio refuses response metadata over 16 KiB; so does this client.
    let strict = Channel::from_shared(cluster.control.grpc_url())?
        .http2_max_header_list_size(16 * 1024)
        .connect()
        .await?;
    let strict = authed(strict, Some(OWNER_TOKEN));

    // A 55 KB pattern: every error that quotes it would be 55 KB.
    let alternatives: Vec<String> = (0..8000).map(|i| format!("n{i:05}")).collect();
    let pattern = format!("^({})$", alternatives.join("|"));
    assert!(pattern.len() > 55_000, "{}", pattern.len());
    let schema = serde_json::json!({
        "type": "object",
        "properties": {"name": {"type": "string", "pattern": pattern}},
    });
    let prost_types::value::Kind::StructValue(schema) =
        json_to_value(schema).kind.context("schema")?
    else {
        anyhow::bail!("the schema is an object");
    };
    cluster
        .event_types()
        .await?
        .create_event_type(v1::CreateEventTypeRequest {
            event_type: Some(v1::EventType {
                name: "patterned".into(),
                schema: Some(schema),
                ..Default::default()
            }),
        })
        .await?;
    let refused = EventServiceClient::new(strict.clone())
        .publish_event(v1::PublishEventRequest {
            event: Some(v1::Event {
                r#type: "patterned".into(),
                data: Some(json_to_value(serde_json::json!({"name": "bob"}))),
                ..Default::default()
            }),
        })
        .await
        .expect_err("bob does not match");
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    let message = refused.message();
    assert!(message.len() <= MAX_MESSAGE_BYTES, "{} bytes", message.len());
    assert!(message.starts_with("invalid event.data: data does not match"), "{message}");
    assert!(message.contains(r#""bob" does not match "^(n00000|n00001|"#), "{message}");
    assert!(message.contains('…'), "the pattern is cut: {message}");

    // A webhook URL that does not parse is quoted back, cut short too.
    let long_url = format!("http://[{}]/", "1".repeat(2000));
    let refused = hookd_proto::v1::webhook_service_client::WebhookServiceClient::new(strict)
        .create_webhook(v1::CreateWebhookRequest {
            name: "long".into(),
            url: long_url,
            event_types: vec!["patterned".into()],
            ..Default::default()
        })
        .await
        .expect_err("not a URL");
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(refused.message().starts_with("invalid url: \"http://[111"), "{}", refused.message());
    assert!(refused.message().len() <= MAX_MESSAGE_BYTES, "{}", refused.message().len());
    Ok(())
}

/// `hookd <args> --server <control>` as the default tenant's owner; its stdout.
fn hookd_cli(cluster: &Cluster, args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new(hookd_binary()?)
        .args(args)
        .args(["--server", &cluster.control.grpc_url()])
        .env("HOOKD_TOKEN", OWNER_TOKEN)
        .output()?;
    anyhow::ensure!(
        output.status.success(),
        "hookd {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8(output.stdout)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_urls_with_control_characters_are_refused_and_idn_hosts_show_as_punycode()
-> anyhow::Result<()> {
    let cluster = Cluster::start(1, "")?;
    let receiver = Receiver::ok()?;
    let mut webhooks = cluster.webhooks().await?;
    let create = |name: &str, url: String| v1::CreateWebhookRequest {
        name: name.into(),
        url,
        event_types: vec!["contact-created".into()],
        active: true,
        ..Default::default()
    };

    // CR LF: refused at create, and at update, which leaves the URL as it was.
    let injected = format!("{}\r\nx-injected: 1", receiver.url("/crlf"));
    let refused = webhooks.create_webhook(create("crlf", injected)).await.expect_err("CR LF");
    assert_client_mistake(&refused, "invalid url: contains U+000D at byte ", "are not allowed");
    let hook =
        cluster.create_webhook("plain", receiver.url("/plain"), &["contact-created"]).await?;
    let refused = webhooks
        .update_webhook(v1::UpdateWebhookRequest {
            webhook: Some(v1::Webhook {
                id: hook.id.clone(),
                url: format!("{}\n", receiver.url("/lf")),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask { paths: vec!["url".into()] }),
        })
        .await
        .expect_err("LF");
    assert_client_mistake(&refused, "invalid url: contains U+000A", "are not allowed");
    let stored = webhooks
        .get_webhook(v1::GetWebhookRequest { id: hook.id.clone() })
        .await?
        .into_inner()
        .webhook
        .context("webhook")?;
    assert_eq!(stored.url, receiver.url("/plain"));

    // An internationalised host: stored as typed, shown beside its punycode, in reads and
    // in the CLI's output.
    // (Inactive: nothing is sent to it.)
    let typed = "https://bücher.example/hooks";
    let idn = v1::CreateWebhookRequest { active: false, ..create("idn", typed.into()) };
    let idn = webhooks.create_webhook(idn).await?.into_inner();
    let idn = idn.webhook.context("webhook")?;
    assert_eq!(
        (idn.url.as_str(), idn.url_ascii.as_str()),
        (typed, "https://xn--bcher-kva.example/hooks")
    );
    let shown = hookd_cli(&cluster, &["webhook", "get", &idn.id])?;
    assert!(shown.contains("requested as https://xn--bcher-kva.example/hooks"), "{shown}");
    let listed = hookd_cli(&cluster, &["webhook", "list"])?;
    assert!(
        listed.contains("https://bücher.example/hooks (https://xn--bcher-kva.example/hooks)"),
        "{listed}"
    );

    // The egress policy judges the ASCII host: full-width digits spell the metadata address.
    let metadata = "http://１６９.２５４.１６９.２５４/latest/meta-data";
    let refused =
        webhooks.create_webhook(create("metadata", metadata.into())).await.expect_err("metadata");
    assert_client_mistake(
        &refused,
        "invalid url: refused by the egress policy: 169.254.169.254",
        "allow_cidrs",
    );

    // ... and deliveries go where it points: full-width 127.0.0.1 reaches the receiver.
    let port = receiver.addr().port();
    let wide = format!("http://１２７.０.０.１:{port}/wide");
    let wide = webhooks
        .create_webhook(create("wide", wide))
        .await?
        .into_inner()
        .webhook
        .context("webhook")?;
    assert_eq!(wide.url_ascii, format!("http://127.0.0.1:{port}/wide"));
    cluster.publish("contact-created", "evt-wide").await?;
    let paths = wait_until("the event reaches /plain and /wide", DEADLINE, || async {
        let mut paths: Vec<String> = receiver.requests().into_iter().map(|r| r.path).collect();
        paths.sort();
        Ok((paths.len() >= 2).then_some(paths))
    })
    .await?;
    assert_eq!(paths, ["/plain", "/wide"]);
    Ok(())
}

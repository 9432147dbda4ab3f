//! End to end, with real processes: the delivery controls (B6 ordered delivery per key, B7
//! payload filters, B8 rate limits) over gRPC, under failures and with several dispatchers.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use anyhow::Context;
use async_nats::jetstream;
use hookd_proto::{
    convert::{json_to_value, value_to_json},
    v1,
};
use hookd_tests::{Cluster, ReceivedRequest, Receiver, Response, responder, wait_until};
use serde_json::{Value, json};

fn filter(json: Value) -> Option<prost_types::Struct> {
    match json_to_value(json).kind {
        Some(prost_types::value::Kind::StructValue(s)) => Some(s),
        _ => None,
    }
}

/// Publishes `events` to NATS in this order (each `(id, type, body)`); the stream stores them
/// in the order they were sent, which is publish order.
async fn publish_in_order(
    js: &jetstream::Context,
    events: &[(String, Value)],
) -> anyhow::Result<()> {
    let mut acks = Vec::with_capacity(events.len());
    for (id, body) in events {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", id.as_str());
        let event_type = body["type"].as_str().context("type")?;
        let subject = format!("hookd.events.{}.{event_type}", hookd_tests::TENANT);
        acks.push(js.publish_with_headers(subject, headers, body.to_string().into()).await?);
    }
    for ack in acks {
        ack.await.context("store ack")?;
    }
    Ok(())
}

/// The ordered test's endpoint, by the request's index at the receiver: a fixed
/// pseudo-random pattern in which about one request in ten fails.
fn answer(i: usize) -> u16 {
    if (i as u64).wrapping_mul(2_654_435_761) % 10 == 3 { 500 } else { 200 }
}

fn body_of(request: &ReceivedRequest) -> anyhow::Result<Value> {
    request.json()
}

/// 1 000 events over 10 keys, an endpoint answering 500 to about one request in ten, two
/// dispatchers and one of them killed (SIGKILL) half-way: every event is delivered, and for
/// each key the endpoint sees the events in publish order, one at a time (a retry, or a
/// repeat after the crash, comes before the next event of its key, never after).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_deliveries_keep_publish_order_per_key_across_failures_and_a_crash()
-> anyhow::Result<()> {
    const KEYS: usize = 10;
    const EVENTS: usize = 1000;
    let mut cluster = Cluster::start(
        2,
        "ack_wait_secs = 10\nattempt_timeout_secs = 2\nordering_stale_secs = 120",
    )?;
    let receiver = Receiver::start(responder(|_, i| Response::status(answer(i))))?;
    let webhook = cluster
        .create(v1::CreateWebhookRequest {
            name: "ordered".into(),
            url: receiver.url("/ordered"),
            event_types: vec!["order-updated".into()],
            active: true,
            ordering_key: "entity_id".into(),
            retry_policy: Some(v1::RetryPolicy { delay_seconds: vec![1; 15] }),
            ..Default::default()
        })
        .await?;
    assert_eq!(webhook.ordering_key, "entity_id");

    let events: Vec<(String, Value)> = (0..EVENTS)
        .map(|i| {
            let key = format!("key-{}", i % KEYS);
            let id = format!("ord-{i:05}");
            let body =
                json!({"id": id, "type": "order-updated", "entity_id": key, "data": {"n": i}});
            (id, body)
        })
        .collect();
    let js = jetstream::new(cluster.nats.client().await?);
    let started = Instant::now();
    publish_in_order(&js, &events).await?;

    // Half-way (by requests received), a crash.
    receiver.wait_for(EVENTS / 2, Duration::from_secs(120)).await?;
    cluster.dispatchers[1].kill()?;
    let killed_at = receiver.count();

    // Every event answered 200 at least once.
    wait_until("every event delivered", Duration::from_secs(180), || async {
        let mut delivered = std::collections::HashSet::new();
        for (i, r) in receiver.requests().iter().enumerate() {
            if answer(i) == 200 {
                delivered
                    .insert(body_of(r)?["meta"]["eventId"].as_str().unwrap_or_default().to_owned());
            }
        }
        Ok((delivered.len() == EVENTS).then_some(()))
    })
    .await?;
    let elapsed = started.elapsed();

    // Per key, in arrival order: the events' numbers, each with its answers.
    let requests = receiver.requests();
    let mut per_key: BTreeMap<String, Vec<(u64, u16)>> = BTreeMap::new();
    for (i, r) in requests.iter().enumerate() {
        let body = body_of(r)?;
        let key = body["meta"]["entityId"].as_str().context("entityId")?.to_owned();
        let n = body["data"]["n"].as_u64().context("data.n")?;
        per_key.entry(key).or_default().push((n, answer(i)));
    }
    assert_eq!(per_key.len(), KEYS);
    let mut failures = 0;
    let mut repeats = 0;
    for (key, seen) in &per_key {
        let expected: Vec<u64> =
            (0..EVENTS as u64).filter(|n| format!("key-{}", n % KEYS as u64) == *key).collect();
        let mut order = Vec::new();
        let mut delivered_current = false;
        for (n, status) in seen {
            if order.last() != Some(n) {
                assert!(
                    order.is_empty() || delivered_current,
                    "{key}: event {n} was sent before event {:?} was delivered: {seen:?}",
                    order.last()
                );
                assert!(
                    !order.contains(n),
                    "{key}: event {n} came back after a later one: {seen:?}"
                );
                order.push(*n);
                delivered_current = false;
            } else if delivered_current {
                repeats += 1;
            }
            if *status == 200 {
                delivered_current = true;
            } else {
                failures += 1;
            }
        }
        assert_eq!(order, expected, "{key}: every event once, in publish order");
    }
    assert!(failures > 50, "the endpoint failed often enough to matter: {failures}");
    eprintln!(
        "ordered: {EVENTS} events over {KEYS} keys in {:.1} s, {} requests ({failures} answered 500, {repeats} repeated after the crash at request {killed_at})",
        elapsed.as_secs_f64(),
        requests.len()
    );
    Ok(())
}

/// An ordered key's next job waits for its head's result to be stored, so that result is
/// reported at once, not after `report_linger_ms`: with a 1 s linger (the most it may be), 10
/// events of one key arrive in order well within the 9 s the linger would add up to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ordered_keys_next_job_does_not_wait_for_the_report_linger() -> anyhow::Result<()> {
    const EVENTS: usize = 10;
    let cluster = Cluster::start(1, "report_linger_ms = 1000")?;
    let receiver = Receiver::ok()?;
    cluster
        .create(v1::CreateWebhookRequest {
            name: "ordered".into(),
            url: receiver.url("/ordered"),
            event_types: vec!["order-updated".into()],
            active: true,
            ordering_key: "entity_id".into(),
            ..Default::default()
        })
        .await?;
    let events: Vec<(String, Value)> = (0..EVENTS)
        .map(|i| {
            let id = format!("lin-{i:02}");
            let body =
                json!({"id": id, "type": "order-updated", "entity_id": "one", "data": {"n": i}});
            (id, body)
        })
        .collect();
    let js = jetstream::new(cluster.nats.client().await?);
    let started = Instant::now();
    publish_in_order(&js, &events).await?;
    let requests = receiver.wait_for(EVENTS, Duration::from_secs(5)).await?;
    let elapsed = started.elapsed();
    let order = requests
        .iter()
        .map(|r| body_of(r)?["data"]["n"].as_u64().context("data.n"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    assert_eq!(order, (0..EVENTS as u64).collect::<Vec<_>>(), "in publish order");
    eprintln!("ordered with a 1 s linger: {EVENTS} events in {:.2} s", elapsed.as_secs_f64());
    Ok(())
}

/// A limit of 20 requests per second shared by three dispatchers holds within ±10 % over
/// 30 s of backlog, and the jobs that wait for it keep their attempt numbers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_holds_across_three_dispatchers() -> anyhow::Result<()> {
    let cluster = Cluster::start(3, "")?;
    let receiver = Receiver::ok()?;
    let webhook = cluster
        .create(v1::CreateWebhookRequest {
            name: "limited".into(),
            url: receiver.url("/limited"),
            event_types: vec!["tick".into()],
            active: true,
            rate_limit: Some(v1::RateLimit { per_second: 20, burst: 10 }),
            ..Default::default()
        })
        .await?;
    assert_eq!(webhook.rate_limit, Some(v1::RateLimit { per_second: 20, burst: 10 }));
    let events: Vec<(String, Value)> = (0..800)
        .map(|i| {
            let id = format!("tick-{i:04}");
            (id.clone(), json!({"id": id, "type": "tick", "data": {"n": i}}))
        })
        .collect();
    let js = jetstream::new(cluster.nats.client().await?);
    publish_in_order(&js, &events).await?;
    let first = receiver.wait_for(1, Duration::from_secs(30)).await?[0].received_at;
    // The first two seconds hold the burst; then 30 s of the steady rate.
    let from = first + Duration::from_secs(2);
    let to = from + Duration::from_secs(30);
    tokio::time::sleep_until((to + Duration::from_millis(500)).into()).await;
    let requests = receiver.requests();
    let in_window = requests.iter().filter(|r| r.received_at >= from && r.received_at < to).count();
    // The fullest second anywhere: never much over the rate plus the burst.
    let times: Vec<Instant> = requests.iter().map(|r| r.received_at).collect();
    let busiest = times
        .iter()
        .map(|t| times.iter().filter(|u| **u >= *t && **u < *t + Duration::from_secs(1)).count())
        .max()
        .unwrap_or(0);
    eprintln!(
        "rate limit 20/s, burst 10, 3 dispatchers: {in_window} requests in 30 s ({:.2}/s), busiest second {busiest}",
        in_window as f64 / 30.0
    );
    assert!((540..=660).contains(&in_window), "20/s ± 10 % over 30 s: {in_window}");
    assert!(busiest <= 35, "at most the burst plus a second's worth in any second: {busiest}");
    // Every attempt so far was a first attempt: waiting used up no attempt numbers.
    let deliveries = cluster
        .deliveries()
        .await?
        .list_deliveries(v1::ListDeliveriesRequest {
            webhook_id: webhook.id.clone(),
            page_size: 100,
            ..Default::default()
        })
        .await?
        .into_inner()
        .deliveries;
    assert!(!deliveries.is_empty());
    assert!(
        deliveries.iter().all(|d| d.attempt_count <= 1),
        "no attempt number used up by waiting"
    );
    Ok(())
}

/// Each filter operator, nested paths, missing fields and type mismatches, evaluated by the
/// fan-out: exactly the matching events reach each webhook, the others are counted as
/// filtered, test sends say whether their sample passes, and invalid filters, ordering keys
/// and rate limits are refused with INVALID_ARGUMENT naming what is wrong.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_deliver_exactly_the_matching_events_and_count_the_rest() -> anyhow::Result<()> {
    let cluster = Cluster::start(1, "")?;
    let receiver = Receiver::ok()?;
    let cases: Vec<(&str, Value)> = vec![
        ("eq", json!({"/data/currency": "EUR"})),
        ("neq", json!({"/data/currency": {"$neq": "EUR"}})),
        ("gt", json!({"/data/amount": {"$gt": 100}})),
        ("gte", json!({"/data/amount": {"$gte": 100}})),
        ("lt", json!({"/data/amount": {"$lt": 100}})),
        ("lte", json!({"/data/amount": {"$lte": 100}})),
        ("in", json!({"/data/customer/tier": {"$in": ["gold", "platinum"]}})),
        ("nin", json!({"/data/customer/tier": {"$nin": ["gold", "platinum"]}})),
        ("exists", json!({"/data/customer/vip": {"$exists": true}})),
        ("absent", json!({"/data/customer/vip": {"$exists": false}})),
        ("nested", json!({"/data/items/0/sku": "x-1", "/context/shop": "berlin"})),
        (
            "and-or-not",
            json!({"$and": [
                {"$or": [{"/type": "order-paid"}, {"/entity_id": "o-2"}]},
                {"$not": {"/data/amount": {"$lt": 50}}}
            ]}),
        ),
        ("mismatch", json!({"/data/amount": {"$gt": "100"}})),
    ];
    let mut hooks = Vec::new();
    for (name, f) in &cases {
        let w = cluster
            .create(v1::CreateWebhookRequest {
                name: (*name).into(),
                url: receiver.url(&format!("/{name}")),
                event_types: vec!["*".into()],
                active: true,
                filter: filter(f.clone()),
                ..Default::default()
            })
            .await?;
        let shown = w.filter.clone().map(|s| {
            value_to_json(prost_types::Value {
                kind: Some(prost_types::value::Kind::StructValue(s)),
            })
        });
        assert_eq!(shown.as_ref(), Some(f), "reads show the filter as given");
        hooks.push((*name, w));
    }
    // o-1: EUR 120 gold vip, nested fields; o-2: USD 100 silver, amount as a string elsewhere;
    // o-3: no customer, amount 30; o-4: amount as a string (type mismatch everywhere).
    let events = [
        (
            "o-1",
            "order-created",
            json!({"currency": "EUR", "amount": 120, "customer": {"tier": "gold", "vip": true}, "items": [{"sku": "x-1"}]}),
            json!({"shop": "berlin"}),
        ),
        (
            "o-2",
            "order-created",
            json!({"currency": "USD", "amount": 100, "customer": {"tier": "silver"}}),
            json!({}),
        ),
        ("o-3", "order-paid", json!({"currency": "EUR", "amount": 30}), json!({"shop": "paris"})),
        (
            "o-4",
            "order-paid",
            json!({"currency": "GBP", "amount": "500", "customer": {"tier": "platinum", "vip": false}}),
            json!({}),
        ),
    ];
    let mut publisher = cluster.events().await?;
    for (id, event_type, data, context) in &events {
        publisher
            .publish_event(v1::PublishEventRequest {
                event: Some(v1::Event {
                    id: (*id).into(),
                    r#type: (*event_type).into(),
                    entity_id: (*id).into(),
                    data: Some(json_to_value(data.clone())),
                    context: Some(json_to_value(context.clone())),
                    ..Default::default()
                }),
            })
            .await?;
    }
    let expected: HashMap<&str, Vec<&str>> = HashMap::from([
        ("eq", vec!["o-1", "o-3"]),
        ("neq", vec!["o-2", "o-4"]),
        ("gt", vec!["o-1"]),
        ("gte", vec!["o-1", "o-2"]),
        ("lt", vec!["o-3"]),
        ("lte", vec!["o-2", "o-3"]),
        ("in", vec!["o-1", "o-4"]),
        // A missing field is "not in" any list.
        ("nin", vec!["o-2", "o-3"]),
        ("exists", vec!["o-1", "o-4"]),
        ("absent", vec!["o-2", "o-3"]),
        ("nested", vec!["o-1"]),
        // o-4's amount is a string: not "less than 50", so $not holds.
        ("and-or-not", vec!["o-2", "o-4"]),
        // Numbers never compare with the string "100"; o-4's "500" is a string, and greater.
        ("mismatch", vec!["o-4"]),
    ]);
    let total: usize = expected.values().map(Vec::len).sum();
    receiver.wait_for(total, Duration::from_secs(30)).await?;
    let mut webhooks = cluster.webhooks().await?;
    let published = events.len() as u64;
    for (name, w) in &hooks {
        let want = &expected[name];
        let stats =
            wait_until(&format!("{name}'s filtered count"), Duration::from_secs(15), || {
                let mut webhooks = webhooks.clone();
                let id = w.id.clone();
                async move {
                    let got =
                        webhooks.get_webhook(v1::GetWebhookRequest { id }).await?.into_inner();
                    let stats = got.webhook.and_then(|w| w.stats).unwrap_or_default();
                    Ok((stats.filtered + stats.triggered == published).then_some(stats))
                }
            })
            .await?;
        assert_eq!(stats.filtered, (events.len() - want.len()) as u64, "{name}");
        let mut got: Vec<String> = receiver
            .requests()
            .iter()
            .filter(|r| r.path == format!("/{name}"))
            .map(|r| Ok(body_of(r)?["meta"]["eventId"].as_str().unwrap_or_default().to_owned()))
            .collect::<anyhow::Result<_>>()?;
        got.sort();
        assert_eq!(got, *want, "{name}");
    }
    assert_eq!(receiver.count(), total, "no other deliveries");

    // Test sends say whether the sample passes; they are made either way.
    let gt = &hooks.iter().find(|(n, _)| *n == "gt").context("gt")?.1;
    let test = |amount: i64| v1::TestWebhookRequest {
        id: gt.id.clone(),
        event_type: "order-created".into(),
        data: Some(json_to_value(json!({"amount": amount}))),
    };
    let passes = webhooks.test_webhook(test(500)).await?.into_inner();
    assert_eq!(passes.filter, Some(v1::FilterResult { passes: true, reason: String::new() }));
    let rejected = webhooks.test_webhook(test(5)).await?.into_inner();
    let result = rejected.filter.context("a filter result")?;
    assert!(!result.passes);
    assert_eq!(result.reason, "/data/amount is 5: not $gt 100");
    assert!(rejected.attempt.is_some_and(|a| a.success), "the test send was made anyway");

    // Bad input: INVALID_ARGUMENT naming the filter path, the key or the limit.
    let refused = |request: v1::CreateWebhookRequest| {
        let mut webhooks = webhooks.clone();
        async move {
            let status = webhooks.create_webhook(request).await.expect_err("refused");
            assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
            status.message().to_owned()
        }
    };
    let base = v1::CreateWebhookRequest {
        name: "bad".into(),
        url: receiver.url("/bad"),
        event_types: vec!["*".into()],
        ..Default::default()
    };
    let message = refused(v1::CreateWebhookRequest {
        filter: filter(json!({"$or": [{"/data/a": 1}, {"/data/b": {"$gt": [1]}}]})),
        ..base.clone()
    })
    .await;
    assert_eq!(
        message,
        "invalid filter: at $or[1].\"/data/b\".$gt: $gt compares with a number or a string, not an array"
    );
    let message = refused(v1::CreateWebhookRequest {
        filter: filter(json!({"/payload": 1})),
        ..base.clone()
    })
    .await;
    assert!(
        message.starts_with("invalid filter: at \"/payload\": path \"/payload\" must start with"),
        "{message}"
    );
    let message =
        refused(v1::CreateWebhookRequest { ordering_key: "order_id".into(), ..base.clone() }).await;
    assert!(message.starts_with("invalid ordering_key: \"order_id\" is not a path"), "{message}");
    let message = refused(v1::CreateWebhookRequest {
        rate_limit: Some(v1::RateLimit { per_second: 0, burst: 0 }),
        ..base.clone()
    })
    .await;
    assert_eq!(message, "invalid rate_limit: per_second must be between 1 and 10000");

    // Updates change exactly the masked controls; masked but unset removes one.
    let eq = &hooks[0].1;
    let updated = webhooks
        .update_webhook(v1::UpdateWebhookRequest {
            webhook: Some(v1::Webhook {
                id: eq.id.clone(),
                ordering_key: "/data/customer/tier".into(),
                rate_limit: Some(v1::RateLimit { per_second: 5, burst: 0 }),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["ordering_key".into(), "rate_limit".into(), "filter".into()],
            }),
        })
        .await?
        .into_inner()
        .webhook
        .context("webhook")?;
    assert_eq!(updated.ordering_key, "/data/customer/tier");
    assert_eq!(updated.rate_limit, Some(v1::RateLimit { per_second: 5, burst: 0 }));
    assert_eq!(updated.filter, None, "masked and unset: the filter is gone");
    Ok(())
}

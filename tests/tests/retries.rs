//! End to end: per-webhook retry schedules and timeouts, far retries as JetStream message
//! schedules, `Retry-After`, resends and bulk recovery, and what the history records.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use anyhow::Context;
use hookd_proto::v1;
use hookd_tests::{Cluster, Receiver, Response, responder, wait_until};

const DEADLINE: Duration = Duration::from_secs(30);

async fn webhook(
    cluster: &Cluster,
    name: &str,
    url: String,
    timeout_ms: u32,
    schedule: Option<&[u32]>,
) -> anyhow::Result<v1::Webhook> {
    cluster
        .webhooks()
        .await?
        .create_webhook(v1::CreateWebhookRequest {
            name: name.into(),
            url,
            event_types: vec![name.into()],
            active: true,
            attempt_timeout_ms: timeout_ms,
            retry_policy: schedule.map(|s| v1::RetryPolicy { delay_seconds: s.to_vec() }),
            ..Default::default()
        })
        .await?
        .into_inner()
        .webhook
        .context("no webhook")
}

/// A responder that answers `first` to the first `n` requests and 200 afterwards.
fn fail_first(n: usize, first: Response) -> hookd_tests::Responder {
    responder(move |_, index| if index < n { first.clone() } else { Response::ok() })
}

fn gaps(receiver: &Receiver) -> Vec<Duration> {
    let requests = receiver.requests();
    requests.windows(2).map(|w| w[1].received_at - w[0].received_at).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn far_retries_wait_as_message_schedules_and_fire_on_time() -> anyhow::Result<()> {
    // Every retry is "far": none may sit in the consumer's pending set.
    let cluster = Cluster::start(1, "nak_max_delay_secs = 0")?;
    let receiver = Receiver::start(fail_first(2, Response::status(500)))?;
    let hook = webhook(&cluster, "far", receiver.url("/"), 0, Some(&[2, 3])).await?;
    cluster.publish("far", "evt-far").await?;

    receiver.wait_for(1, DEADLINE).await?;
    // While the retry waits, the delivery consumer has nothing pending.
    let js = async_nats::jetstream::new(cluster.nats.client().await?);
    wait_until("the first failure is settled", DEADLINE, || async {
        let mut consumer: async_nats::jetstream::consumer::PullConsumer =
            js.get_consumer_from_stream("hookd-delivery", "HOOKD_DELIVERIES").await?;
        let info = consumer.info().await?;
        Ok((receiver.count() == 1 && info.num_ack_pending == 0 && info.num_pending == 0)
            .then_some(()))
    })
    .await?;

    receiver.wait_for(3, DEADLINE).await?;
    let delivery = cluster
        .first_delivery_when(&hook.id, "delivered on attempt 3", DEADLINE, |d| {
            d.status == v1::DeliveryStatus::Delivered as i32
        })
        .await?;
    assert_eq!(delivery.attempts.len(), 3);
    let ids: Vec<_> =
        receiver.requests().iter().map(|r| r.header("webhook-id").map(str::to_owned)).collect();
    assert!(
        ids.iter().all(|id| id.as_deref() == Some(delivery.id.as_str())),
        "same webhook-id: {ids:?}"
    );
    let gaps = gaps(&receiver);
    for (gap, planned) in gaps.iter().zip([2.0, 3.0]) {
        let error = gap.as_secs_f64() - planned;
        eprintln!("scheduled retry after {planned} s came after {:.3} s", gap.as_secs_f64());
        assert!(error.abs() < 0.5, "gap {gap:?} for a {planned} s retry");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_near_retry_of_a_first_attempt_made_by_the_fan_out_is_held_until_due()
-> anyhow::Result<()> {
    // A first event proves the webhook healthy, so the second's first attempt is made by the
    // fan-out itself; it fails, and its 3 s retry has no message to NAK.
    let cluster = Cluster::start(1, "")?;
    let receiver = Receiver::start(responder(|_, index| {
        if index == 1 { Response::status(500) } else { Response::ok() }
    }))?;
    let hook = webhook(&cluster, "held", receiver.url("/"), 0, Some(&[3])).await?;
    cluster.publish("held", "evt-warm").await?;
    receiver.wait_for(1, DEADLINE).await?;
    cluster
        .first_delivery_when(&hook.id, "the warm-up delivered", DEADLINE, |d| {
            d.status == v1::DeliveryStatus::Delivered as i32
        })
        .await?;
    cluster.publish("held", "evt-held").await?;
    receiver.wait_for(2, DEADLINE).await?;

    // The retry is a delivery job held until it is due (not a message schedule, which
    // nats-server fires up to a quarter second late): pending on the delivery consumer.
    let js = async_nats::jetstream::new(cluster.nats.client().await?);
    let subject = format!("hookd.deliveries.default.{}", hook.id);
    let job = wait_until("the retry is stored as a held job", DEADLINE, || async {
        let stream = js.get_stream("HOOKD_DELIVERIES").await?;
        Ok(stream.get_last_raw_message_by_subject(&subject).await.ok())
    })
    .await?;
    let job: serde_json::Value = serde_json::from_slice(&job.payload)?;
    assert_eq!(job["attempt"], 2, "{job}");
    assert!(job["hold_until"].is_string(), "not held: {job}");
    wait_until("the held job is pending on the delivery consumer", DEADLINE, || async {
        let mut consumer: async_nats::jetstream::consumer::PullConsumer =
            js.get_consumer_from_stream("hookd-delivery", "HOOKD_DELIVERIES").await?;
        let info = consumer.info().await?;
        Ok((info.num_ack_pending == 1 && info.num_pending == 0).then_some(()))
    })
    .await?;
    assert_eq!(receiver.count(), 2, "the retry came before it was due");

    receiver.wait_for(3, DEADLINE).await?;
    let delivery = cluster
        .first_delivery_when(&hook.id, "the held delivery delivered on its retry", DEADLINE, |d| {
            d.event_id == "evt-held" && d.status == v1::DeliveryStatus::Delivered as i32
        })
        .await?;
    let numbers: Vec<u32> = delivery.attempts.iter().map(|a| a.number).collect();
    assert_eq!(numbers, [1, 2], "its first delivery, the hold, made no attempt");
    // Never early (the hold is kept), and on time: 3 s ± 5 % jitter.
    let gap = gaps(&receiver)[1].as_secs_f64();
    eprintln!("held 3 s retry came after {gap:.3} s");
    assert!((2.85..3.5).contains(&gap), "a 3 s retry came after {gap:.3} s");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_timeout_and_schedule_override_the_dispatcher_defaults() -> anyhow::Result<()> {
    // Defaults that would make this test fail: 10 s timeout, first retry after a minute.
    let cluster = Cluster::start(1, "retry_schedule_secs = [60]\nattempt_timeout_secs = 10")?;
    let slow_once = responder(|_, index| {
        if index == 0 { Response::ok().with_delay(Duration::from_secs(3)) } else { Response::ok() }
    });
    let receiver = Receiver::start(slow_once)?;
    let hook = webhook(&cluster, "quick", receiver.url("/"), 500, Some(&[1])).await?;
    cluster.publish("quick", "evt-quick").await?;

    let delivery = cluster
        .first_delivery_when(&hook.id, "delivered on the retry", DEADLINE, |d| {
            d.status == v1::DeliveryStatus::Delivered as i32
        })
        .await?;
    let first = &delivery.attempts[0];
    assert_eq!(first.http_status, 0);
    assert!(first.error.contains("no answer within 500 ms"), "{}", first.error);
    assert!(first.latency_ms < 1500, "timed out after {} ms", first.latency_ms);
    assert_eq!(delivery.attempts.len(), 2);
    let gap = gaps(&receiver)[0];
    assert!(gap < Duration::from_secs(3), "the 1 s retry came after {gap:?}");
    // The history shows what was sent.
    let names: Vec<&str> = first.request_headers.iter().map(|h| h.name.as_str()).collect();
    for expected in ["content-type", "webhook-id", "webhook-timestamp"] {
        assert!(names.contains(&expected), "{expected} missing from {names:?}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_on_429_is_honoured_within_twice_the_schedule() -> anyhow::Result<()> {
    let cluster = Cluster::start(1, "")?;
    let receiver =
        Receiver::start(fail_first(1, Response::status(429).with_header("retry-after", "2")))?;
    let hook = webhook(&cluster, "limited", receiver.url("/"), 0, Some(&[1])).await?;
    cluster.publish("limited", "evt-limited").await?;
    receiver.wait_for(2, DEADLINE).await?;
    let gap = gaps(&receiver)[0].as_secs_f64();
    eprintln!("Retry-After: 2 on a 1 s schedule: retried after {gap:.3} s");
    assert!((1.85..2.6).contains(&gap), "retried after {gap} s");
    let delivery = cluster
        .first_delivery_when(&hook.id, "delivered", DEADLINE, |d| {
            d.status == v1::DeliveryStatus::Delivered as i32
        })
        .await?;
    assert_eq!(delivery.attempts[0].http_status, 429);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resend_and_recover_deliver_again_with_the_same_webhook_id() -> anyhow::Result<()> {
    let cluster = Cluster::start(1, "")?;
    // Fails until `healthy` is set.
    let healthy = Arc::new(AtomicUsize::new(0));
    let flag = healthy.clone();
    let receiver = Receiver::start(responder(move |_, _| {
        if flag.load(Ordering::SeqCst) == 1 { Response::ok() } else { Response::status(500) }
    }))?;
    let hook = webhook(&cluster, "fragile", receiver.url("/"), 0, Some(&[])).await?;
    for id in ["evt-r1", "evt-r2", "evt-r3"] {
        cluster.publish("fragile", id).await?;
    }
    let mut deliveries = cluster.deliveries().await?;
    let failed = wait_until("three failed deliveries", DEADLINE, || async {
        let list = deliveries
            .clone()
            .list_deliveries(v1::ListDeliveriesRequest {
                webhook_id: hook.id.clone(),
                status: v1::DeliveryStatus::Failed as i32,
                ..Default::default()
            })
            .await?
            .into_inner()
            .deliveries;
        Ok((list.len() == 3).then_some(list))
    })
    .await?;
    healthy.store(1, Ordering::SeqCst);

    // One resend: the same webhook-id, attempt 2, delivered.
    let one = &failed[0];
    deliveries.resend_delivery(v1::ResendDeliveryRequest { id: one.id.clone() }).await?;
    receiver.wait_for(4, DEADLINE).await?;
    let last = receiver.requests().pop().context("a request")?;
    assert_eq!(last.header("webhook-id"), Some(one.id.as_str()));
    wait_until("the resent delivery is delivered", DEADLINE, || async {
        let d = deliveries
            .clone()
            .get_delivery(v1::GetDeliveryRequest { id: one.id.clone() })
            .await?
            .into_inner()
            .delivery
            .context("delivery")?;
        Ok((d.status == v1::DeliveryStatus::Delivered as i32 && d.attempts.len() == 2)
            .then_some(()))
    })
    .await?;
    // A delivered delivery can be resent too, but not one that is pending.
    let since = hookd_proto::convert::timestamp(chrono::Utc::now() - chrono::Duration::hours(1));
    let recovered = deliveries
        .recover_failed_deliveries(v1::RecoverFailedDeliveriesRequest {
            webhook_id: hook.id.clone(),
            since: Some(since),
        })
        .await?
        .into_inner();
    assert_eq!(recovered.resent, 2, "the two still failed");
    receiver.wait_for(6, DEADLINE).await?;
    wait_until("nothing is failed any more", DEADLINE, || async {
        let list = deliveries
            .clone()
            .list_deliveries(v1::ListDeliveriesRequest {
                webhook_id: hook.id.clone(),
                status: v1::DeliveryStatus::Delivered as i32,
                ..Default::default()
            })
            .await?
            .into_inner()
            .deliveries;
        Ok((list.len() == 3).then_some(()))
    })
    .await?;
    let missing = deliveries
        .resend_delivery(v1::ResendDeliveryRequest { id: "dlv_missing".into() })
        .await
        .expect_err("unknown delivery");
    assert_eq!(missing.code(), tonic::Code::NotFound);
    Ok(())
}

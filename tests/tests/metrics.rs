//! End to end: both services' Prometheus endpoints pass `promtool check metrics` and count
//! what really happened: events consumed, fan-out sizes, deliveries by outcome, attempt
//! latencies, consumer state, result-write batches, deactivations and pending retries.

use std::time::Duration;

use hookd_proto::v1;
use hookd_tests::{
    Cluster, Receiver, Response, promtool_check, responder, sample, scrape, wait_until,
};

const DEADLINE: Duration = Duration::from_secs(30);

/// Waits until the scrape of `url` has `series` at `at_least` or more; the scrape.
async fn wait_for_sample(url: &str, series: &str, at_least: f64) -> anyhow::Result<String> {
    wait_until(&format!("{series} >= {at_least} at {url}"), DEADLINE, || async {
        let text = scrape(url).await?;
        Ok(sample(&text, series).filter(|v| *v >= at_least).map(|_| text))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_services_expose_valid_metrics_that_count_deliveries() -> anyhow::Result<()> {
    let cluster = Cluster::start_with_env(
        1,
        "metrics_refresh_secs = 1\n",
        &[("HOOKD_METRICS_REFRESH_SECS", "1")],
        &[],
    )?;
    let other = Receiver::ok()?;
    // Every event's first attempt fails; its retry, a second later, succeeds.
    let seen = std::sync::Mutex::new(std::collections::HashSet::new());
    let receiver = Receiver::start(responder(move |request, _| {
        let id = request.json().map(|j| j["meta"]["eventId"].to_string()).unwrap_or_default();
        let first = seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(id);
        Response::status(if first { 503 } else { 200 })
    }))?;
    cluster
        .create(v1::CreateWebhookRequest {
            name: "a".into(),
            url: receiver.url("/a"),
            event_types: vec!["order".into()],
            active: true,
            retry_policy: Some(v1::RetryPolicy { delay_seconds: vec![1] }),
            ..Default::default()
        })
        .await?;
    let b = cluster.create_webhook("b", other.url("/b"), &["order"]).await?;
    cluster.create_webhook("unrelated", receiver.url("/u"), &["other"]).await?;
    for i in 0..3 {
        cluster.publish("order", &format!("evt-{i}")).await?;
    }
    cluster.publish("nobody-listens", "evt-lonely").await?;

    let dispatcher = cluster.dispatchers[0].metrics_url();
    let text = wait_for_sample(
        &dispatcher,
        "hookd_dispatcher_deliveries_total{outcome=\"delivered\"}",
        6.0,
    )
    .await?;
    promtool_check(&text)?;
    let value = |series: &str| sample(&text, series).unwrap_or(-1.0);
    assert_eq!(value("hookd_dispatcher_events_consumed_total{outcome=\"fanned_out\"}"), 3.0);
    assert_eq!(value("hookd_dispatcher_events_consumed_total{outcome=\"unmatched\"}"), 1.0);
    assert_eq!(value("hookd_dispatcher_fanout_webhooks_sum"), 6.0, "two webhooks per event");
    assert!(value("hookd_dispatcher_deliveries_total{outcome=\"retrying\"}") >= 1.0);
    let attempts = value("hookd_dispatcher_attempt_duration_seconds_count{result=\"success\"}")
        + value("hookd_dispatcher_attempt_duration_seconds_count{result=\"failure\"}");
    assert!(attempts >= 7.0, "{attempts} attempts");
    assert!(value("hookd_dispatcher_report_batch_size_count") >= 1.0);
    // The JetStream gauges are refreshed every second.
    let text = wait_for_sample(
        &dispatcher,
        "hookd_dispatcher_stream_messages{stream=\"HOOKD_EVENTS\"}",
        0.0,
    )
    .await?;
    assert!(
        sample(&text, "hookd_dispatcher_consumer_pending_messages{consumer=\"delivery\"}")
            .is_some()
    );
    assert!(
        sample(&text, "hookd_dispatcher_consumer_ack_pending_messages{consumer=\"fanout\"}")
            .is_some()
    );

    // The control plane: results written, a user deactivation, and the database gauges.
    cluster
        .webhooks()
        .await?
        .deactivate_webhook(v1::DeactivateWebhookRequest { id: b.id.clone() })
        .await?;
    let control = cluster.control.metrics_url();
    let text =
        wait_for_sample(&control, "hookd_control_attempts_recorded_total{result=\"new\"}", 6.0)
            .await?;
    promtool_check(&text)?;
    let value = |series: &str| sample(&text, series).unwrap_or(-1.0);
    assert!(value("hookd_control_result_write_batch_size_count") >= 1.0);
    assert!(value("hookd_control_result_write_duration_seconds_count") >= 1.0);
    assert_eq!(value("hookd_control_webhooks_deactivated_total{by=\"user\"}"), 1.0);
    let text = wait_for_sample(&control, "hookd_control_webhooks{state=\"inactive\"}", 1.0).await?;
    assert_eq!(sample(&text, "hookd_control_webhooks{state=\"active\"}"), Some(2.0));
    assert_eq!(sample(&text, "hookd_control_dispatchers_connected"), Some(1.0));
    assert!(sample(&text, "hookd_control_deliveries_pending").is_some());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_retry_shows_in_the_gauge_and_a_system_deactivation_is_counted()
-> anyhow::Result<()> {
    let cluster = Cluster::start_with_env(
        1,
        "",
        &[("HOOKD_METRICS_REFRESH_SECS", "1"), ("HOOKD_HEALTH_NO_SUCCESS_SECS", "0")],
        &[],
    )?;
    let failing = Receiver::start(responder(|_, _| Response::status(500)))?;
    let gone = Receiver::start(responder(|_, _| Response::status(410)))?;
    cluster
        .create(v1::CreateWebhookRequest {
            name: "slow-retry".into(),
            url: failing.url("/"),
            event_types: vec!["order".into()],
            active: true,
            retry_policy: Some(v1::RetryPolicy { delay_seconds: vec![3600] }),
            ..Default::default()
        })
        .await?;
    cluster.create_webhook("gone", gone.url("/"), &["order"]).await?;
    cluster.publish("order", "evt-1").await?;
    let control = cluster.control.metrics_url();
    wait_for_sample(&control, "hookd_control_deliveries_pending", 1.0).await?;
    let text =
        wait_for_sample(&control, "hookd_control_webhooks_deactivated_total{by=\"system\"}", 1.0)
            .await?;
    promtool_check(&text)?;
    Ok(())
}

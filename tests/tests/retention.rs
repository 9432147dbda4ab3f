//! End to end: the retention purge removes deliveries past `history_retention_secs` from the
//! history, in batches, while new results keep being recorded.

use std::time::Duration;

use hookd_proto::v1;
use hookd_tests::{Cluster, Receiver, sample, scrape, wait_until};

const DEADLINE: Duration = Duration::from_secs(30);

async fn delivery_ids(cluster: &Cluster, webhook_id: &str) -> anyhow::Result<Vec<String>> {
    let list = cluster
        .deliveries()
        .await?
        .list_deliveries(v1::ListDeliveriesRequest {
            webhook_id: webhook_id.into(),
            page_size: 500,
            ..Default::default()
        })
        .await?
        .into_inner();
    Ok(list.deliveries.into_iter().map(|d| d.event_id).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_history_is_purged_in_batches_while_results_keep_coming() -> anyhow::Result<()> {
    let cluster = Cluster::start_with_env(
        1,
        "",
        &[
            ("HOOKD_HISTORY_RETENTION_SECS", "3"),
            ("HOOKD_HISTORY_PURGE_INTERVAL_SECS", "1"),
            // Small batches, so one run takes several.
            ("HOOKD_HISTORY_PURGE_BATCH", "7"),
        ],
        &[],
    )?;
    let receiver = Receiver::ok()?;
    let hook = cluster.create_webhook("kept", receiver.url("/"), &["order"]).await?;
    for i in 0..40 {
        cluster.publish("order", &format!("evt-old-{i}")).await?;
    }
    wait_until("40 deliveries in the history", DEADLINE, || async {
        Ok((delivery_ids(&cluster, &hook.id).await?.len() == 40).then_some(()))
    })
    .await?;

    // New results keep being recorded while the old ones age out and go.
    let mut published = 0;
    wait_until("the first 40 purged", DEADLINE, || {
        published += 1;
        let id = format!("evt-new-{published}");
        let cluster = &cluster;
        let hook_id = hook.id.clone();
        async move {
            cluster.publish("order", &id).await?;
            let ids = delivery_ids(cluster, &hook_id).await?;
            Ok((!ids.iter().any(|id| id.starts_with("evt-old-"))).then_some(()))
        }
    })
    .await?;
    assert!(receiver.count() >= 40 + published - 1, "every event was delivered");
    // The newest are still there: only what is older than the retention goes.
    let newest = format!("evt-new-{}", published - 1);
    wait_until("the newest results recorded", DEADLINE, || async {
        let ids = delivery_ids(&cluster, &hook.id).await?;
        Ok(ids.contains(&newest).then_some(()))
    })
    .await?;
    let text = scrape(&cluster.control.metrics_url()).await?;
    let count = sample(&text, "hookd_control_history_purged_deliveries_total").unwrap_or(0.0);
    assert!(count >= 40.0, "{count} purged");
    Ok(())
}

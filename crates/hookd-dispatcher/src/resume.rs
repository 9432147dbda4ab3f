//! A fan-out repeated because its event came back (its acknowledgement was lost, or the
//! dispatcher stopped before sending it). The first run may have made first attempts itself,
//! which leave no delivery job behind: their results are stored and their retries scheduled,
//! but nothing in NATS says so. Before writing jobs, the repeat asks the control plane where
//! those deliveries stand, so that no attempt is made twice under the same number (the
//! history, idempotent on (delivery, attempt number), would keep only one of the two calls)
//! and no delivery that is over is made again.

use std::{collections::HashMap, time::Duration};

use chrono::{DateTime, Utc};
use hookd_core::DeliveryId;
use hookd_nats::{DeliveryJob, NatsError, Published};
use hookd_proto::v1;

use crate::ControlClient;

/// What a repeated fan-out does for one delivery.
#[derive(Debug, Clone, PartialEq)]
pub enum Resume {
    /// No attempt is stored: the delivery starts from its first attempt, as a job.
    Start,
    /// Delivered, or failed after its last retry: nothing more to do.
    Over,
    /// Pending: `attempt` is due at `at`. The first run stored its retry (a held job or a
    /// schedule), unless it stopped in between; [`store_retry`] stores it again so that
    /// either is kept once.
    RetryAt { attempt: u32, at: DateTime<Utc> },
}

/// The control plane's answer for one delivery, as what to do.
pub fn resume_of(progress: &v1::DeliveryProgress) -> Resume {
    match progress.status() {
        v1::DeliveryStatus::Delivered | v1::DeliveryStatus::Failed => Resume::Over,
        // A status this dispatcher does not know: retrying is the safe side.
        v1::DeliveryStatus::Pending | v1::DeliveryStatus::Unspecified => {
            let at = progress
                .next_attempt_at
                .as_ref()
                .and_then(|t| DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).ok()?))
                .unwrap_or_else(Utc::now);
            Resume::RetryAt { attempt: progress.last_attempt.saturating_add(1), at }
        }
    }
}

/// Stores a resumed delivery's retry, due at `at`, as the first run did or would have: a near
/// one as a job held until then, under the attempt's message id, so that one the first run
/// stored is kept once (and a schedule it stored, when the retry was still far, is removed
/// first); a far one as a schedule, which replaces any the first run stored.
pub async fn store_retry(
    js: &async_nats::jetstream::Context,
    job: &DeliveryJob,
    at: DateTime<Utc>,
    nak_max_delay: Duration,
) -> Result<Published, NatsError> {
    let near = (at - Utc::now()).to_std().unwrap_or_default() <= nak_max_delay;
    if near {
        job.cancel_schedule(js).await?;
        job.publish_held(js, at).await
    } else {
        job.schedule(js, at).await
    }
}

/// Where each of `ids` stands; an id without an entry has no stored attempt ([`Resume::Start`]).
pub async fn progress(
    client: &ControlClient,
    tenant: &str,
    ids: &[DeliveryId],
) -> Result<HashMap<DeliveryId, Resume>, tonic::Status> {
    let mut client = client.clone();
    let mut found = HashMap::new();
    // The control plane takes at most 10 000 ids per call.
    for chunk in ids.chunks(1_000) {
        let request = v1::GetDeliveryProgressRequest {
            tenant: tenant.to_owned(),
            delivery_ids: chunk.iter().map(ToString::to_string).collect(),
        };
        let answer = client.get_delivery_progress(request).await?.into_inner();
        for progress in &answer.deliveries {
            found.insert(DeliveryId::from(progress.delivery_id.as_str()), resume_of(progress));
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(
        status: v1::DeliveryStatus,
        last: u32,
        next: Option<DateTime<Utc>>,
    ) -> v1::DeliveryProgress {
        v1::DeliveryProgress {
            delivery_id: "dlv_1".into(),
            status: status.into(),
            last_attempt: last,
            next_attempt_at: next.map(hookd_proto::convert::timestamp),
        }
    }

    #[test]
    fn a_delivery_that_is_over_is_left_alone_and_a_pending_one_continues_after_its_last_attempt() {
        assert_eq!(resume_of(&progress(v1::DeliveryStatus::Delivered, 1, None)), Resume::Over);
        assert_eq!(resume_of(&progress(v1::DeliveryStatus::Failed, 8, None)), Resume::Over);
        let due = DateTime::from_timestamp(1_900_000_000, 0).expect("valid");
        assert_eq!(
            resume_of(&progress(v1::DeliveryStatus::Pending, 1, Some(due))),
            Resume::RetryAt { attempt: 2, at: due }
        );
        let Resume::RetryAt { attempt, at } =
            resume_of(&progress(v1::DeliveryStatus::Pending, 3, None))
        else {
            panic!("a pending delivery continues");
        };
        assert_eq!(attempt, 4);
        assert!(at <= Utc::now(), "without a due time, now");
    }
}

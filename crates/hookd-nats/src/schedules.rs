//! Scheduled retries that nats-server failed to fire. When a schedule comes due, the server
//! publishes its job into the deliveries stream and then purges the schedule; if that publish
//! is refused (the stream is full, or the server out of storage), nats-server 2.12 leaves the
//! schedule marked in flight and never tries it again (until a restart or a leader change).
//! The job is not lost, it is stored, but it would wait indefinitely.
//!
//! [`Rearmer`] finds schedules well past their time and publishes each again, unchanged,
//! on its own subject: the server takes the newest message of a schedule subject as the
//! schedule, so it fires it now. Each republish is conditional on the subject's last sequence
//! still being the stuck schedule (`Nats-Expected-Last-Subject-Sequence`), so dispatchers
//! sweeping at the same time, or a schedule firing meanwhile, cannot make a job twice.
//!
//! Dispatchers sweep only after a stream refused a write for lack of room
//! ([`last_refused_for_room`]): that is when schedules get stuck, and a sweep reads scheduled
//! retries one by one, which is not free with many of them parked.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream::RawMessageErrorKind};
use chrono::{DateTime, Utc};

use crate::{DELIVERIES_STREAM, NatsError, subject};

/// A schedule this long past its time has not fired and will not by itself (the server fires
/// them within a fraction of a second).
pub const OVERDUE_AFTER: Duration = Duration::from_secs(5);
/// A sweep reads at most this many scheduled retries, from where the last one stopped.
const SWEEP_BATCH: usize = 5_000;

/// Milliseconds since `EPOCH` of the last refusal for lack of room; 0: none yet.
static LAST_REFUSED_MS: AtomicU64 = AtomicU64::new(0);
static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

/// Notes that a stream refused a write of this process for lack of room.
pub(crate) fn note_refused_for_room() {
    let epoch = *EPOCH.get_or_init(Instant::now);
    let ms = u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX).max(1);
    LAST_REFUSED_MS.store(ms, Ordering::Relaxed);
}

/// How long ago a stream last refused a write of this process for lack of room, if ever.
pub fn last_refused_for_room() -> Option<Duration> {
    let ms = LAST_REFUSED_MS.load(Ordering::Relaxed);
    let epoch = EPOCH.get()?;
    (ms > 0).then(|| epoch.elapsed().saturating_sub(Duration::from_millis(ms)))
}

/// What a sweep did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Sweep {
    /// Scheduled retries looked at.
    pub scanned: usize,
    /// Overdue ones published again, to fire now.
    pub rearmed: usize,
    /// Overdue ones left for the next sweep: the stream is still full, or another process
    /// (or the server) got there first.
    pub left: usize,
}

/// Walks the scheduled retries of the deliveries stream in batches, each sweep going on
/// from where the last one stopped and starting over at the end.
#[derive(Debug, Default)]
pub struct Rearmer {
    /// The stream sequence to read from next.
    next: u64,
}

impl Rearmer {
    /// Publishes again every scheduled retry of the next batch that is more than
    /// [`OVERDUE_AFTER`] past its time, as of `now`.
    pub async fn sweep(
        &mut self,
        js: &jetstream::Context,
        now: DateTime<Utc>,
    ) -> Result<Sweep, NatsError> {
        let err =
            |source: async_nats::Error| NatsError::Stream { stream: DELIVERIES_STREAM, source };
        let stream = js.get_stream_no_info(DELIVERIES_STREAM).await.map_err(|e| err(e.into()))?;
        let retries = format!("{}.>", subject::RETRIES_PREFIX);
        let mut sweep = Sweep::default();
        while sweep.scanned < SWEEP_BATCH {
            let next = stream
                .raw_message_builder()
                .sequence(self.next.max(1))
                .next_by_subject(retries.clone())
                .send()
                .await;
            let message = match next {
                Ok(message) => message,
                Err(e) if e.kind() == RawMessageErrorKind::NoMessageFound => {
                    self.next = 0;
                    break;
                }
                Err(e) => return Err(err(e.into())),
            };
            self.next = message.sequence + 1;
            sweep.scanned += 1;
            let due = message.headers.get("Nats-Schedule").and_then(|v| schedule_time(v.as_str()));
            if !due.is_some_and(|due| is_overdue(due, now)) {
                continue;
            }
            if rearm(js, message).await {
                sweep.rearmed += 1;
            } else {
                sweep.left += 1;
            }
        }
        Ok(sweep)
    }
}

/// Publishes a stuck schedule again on its subject, unless the subject has moved on.
async fn rearm(js: &jetstream::Context, message: jetstream::message::StreamMessage) -> bool {
    let mut headers = message.headers;
    headers.insert(
        async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
        message.sequence.to_string().as_str(),
    );
    let subject = message.subject.to_string();
    let published =
        async { js.publish_with_headers(subject.clone(), headers, message.payload).await?.await };
    match published.await {
        Ok(_) => true,
        Err(error) => {
            tracing::debug!(%error, %subject, "overdue retry left for the next sweep");
            false
        }
    }
}

/// The time of an `@at <RFC 3339>` schedule.
fn schedule_time(pattern: &str) -> Option<DateTime<Utc>> {
    let at = pattern.strip_prefix("@at ")?;
    DateTime::parse_from_rfc3339(at.trim()).ok().map(|t| t.with_timezone(&Utc))
}

fn is_overdue(due: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    chrono::Duration::from_std(OVERDUE_AFTER).is_ok_and(|grace| due + grace < now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_at_schedules_well_past_their_time_are_overdue() {
        let due = schedule_time("@at 2026-01-01T00:00:00.000Z").expect("an @at schedule");
        assert_eq!(due.to_rfc3339(), "2026-01-01T00:00:00+00:00");
        assert!(schedule_time("@every 5s").is_none());
        assert!(schedule_time("@at yesterday").is_none());
        let seconds = |s| due + chrono::Duration::seconds(s);
        assert!(!is_overdue(due, seconds(1)), "firing late is not stuck");
        assert!(!is_overdue(due, seconds(5)));
        assert!(is_overdue(due, seconds(6)));
    }

    #[test]
    fn a_refusal_is_remembered() {
        note_refused_for_room();
        let ago = last_refused_for_room().expect("noted");
        assert!(ago < Duration::from_secs(5), "{ago:?}");
    }
}

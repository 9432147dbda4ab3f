//! The delivery stage: one attempt per delivery job message, its result reported to the
//! control plane, then the message is settled as the retry decision (`hookd_core::decide`)
//! says: acknowledged when delivered, terminated after the last retry, or put back for the
//! next attempt. Near retries are NAK-delayed until the time decided (precise: the server
//! redelivers the same message to the millisecond); far ones become JetStream message
//! schedules, so they wait as stored messages and count against no consumer's
//! `max_ack_pending`. A near retry of a first attempt made by the fan-out, which has no
//! message to NAK, is stored as a job *held* until it is due (`DeliveryJob::hold_until`): its
//! first delivery here is put back with the remaining delay, which a schedule (fired up to a
//! quarter second late by nats-server) could not match.

use std::{sync::Arc, time::Duration};

use async_nats::jetstream::{self, AckKind};
use chrono::{DateTime, Utc};
use hookd_core::{
    AttemptOutcome, AttemptReport, Event, RetryDecision, RetryPath, RetrySchedule, decide,
};
use hookd_nats::DeliveryJob;
use hookd_proto::{convert::attempt_report_to_proto, v1};
use tracing::Instrument;

use crate::{
    attempt::Attempter,
    controls::{Controls, Gate},
    definitions::Definitions,
    endpoints::{Claim, Endpoints, Place},
    http::AttemptResult,
    metrics::{DeliveryOutcome, Metrics},
    reporter::{Reporter, Stored, Tallies, Urgency},
};

/// Longest wait for an unknown webhook to appear before it counts as deleted.
const DEFINITIONS_WAIT: Duration = Duration::from_secs(2);
/// How long a job for an endpoint whose line is full is put aside.
const BUSY_ENDPOINT_DELAY: Duration = Duration::from_secs(1);
/// How soon a job handed back at shutdown is due again (for another dispatcher).
const HAND_BACK_DELAY: Duration = Duration::from_millis(100);

/// What the delivery stage needs, shared by every in-flight delivery.
pub struct Deliverer {
    pub js: jetstream::Context,
    pub definitions: Definitions,
    pub attempter: Arc<Attempter>,
    pub endpoints: Endpoints,
    pub reporter: Reporter,
    /// Asked where deliveries stand when an event's fan-out is repeated (see `resume`).
    pub control: crate::ControlClient,
    /// Counts the jobs parked in buffers.
    pub tallies: Tallies,
    /// Ordering per key and rate limits (B6, B8), checked before each attempt.
    pub controls: Controls,
    pub metrics: Arc<Metrics>,
    pub default_schedule: RetrySchedule,
    pub default_timeout: Duration,
    pub nak_max_delay: Duration,
    pub ack_wait: Duration,
    /// How long a fan-out waits for room in the inline bound before it writes a job instead.
    pub inline_wait: Duration,
    /// Turns true when the dispatcher shuts down: jobs still waiting for their endpoint are
    /// handed back instead of attempted.
    pub stopping: tokio::sync::watch::Receiver<bool>,
}

/// Whether the fan-out may make a first attempt to this webhook itself (on any dispatcher,
/// whatever its `inline_attempts`): not when the webhook's controls or credential belong to
/// the delivery stage.
pub fn may_go_inline(webhook: &hookd_core::Webhook) -> bool {
    let spec = &webhook.spec;
    spec.credential_id.is_none() && spec.ordering.is_none() && spec.rate_limit.is_none()
}

/// Why a first attempt made by the fan-out cannot let its event be acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum InlineError {
    #[error("the dispatcher stopped before the result was stored")]
    Stopping,
    #[error("cannot store the retry: {0}")]
    Schedule(hookd_nats::NatsError),
}

/// A first attempt the fan-out made, its result handed to the reporter: what is left is
/// waiting, which holds no place at the endpoint and no fan-out slot.
pub struct InlineMade {
    stored: Stored,
    /// The retry's job, when it is due, and how it waits.
    retry: Option<(DeliveryJob, DateTime<Utc>, RetryPath)>,
    js: jetstream::Context,
}

impl InlineMade {
    /// Resolves once the result is stored and the retry, if any, with it; `Err` when either
    /// could not be done (the event must be fanned out again).
    pub async fn settled(self) -> Result<(), InlineError> {
        if self.stored.await.is_err() {
            return Err(InlineError::Stopping);
        }
        let Some((retry, at, path)) = self.retry else { return Ok(()) };
        // No message to NAK: a near retry is stored as a job held until it is due, a far one
        // as a schedule.
        let stored = match path {
            RetryPath::Nak => retry.publish_held(&self.js, at).await,
            RetryPath::Schedule => retry.schedule(&self.js, at).await,
        };
        stored.map(drop).map_err(InlineError::Schedule)
    }
}

/// How a message is settled after its attempt.
#[derive(Debug, PartialEq)]
enum Settle {
    Ack,
    Term,
    /// NAK-delayed until the time decided, whatever the result write took meanwhile.
    NakUntil(DateTime<Utc>),
    ScheduleAt(DateTime<Utc>),
}

impl Settle {
    /// Carries out a retry decision: delivered and failed end the message, a near retry
    /// NAKs it with its delay, a far one stores a schedule.
    fn after(decision: RetryDecision) -> Self {
        match decision {
            RetryDecision::Delivered => Self::Ack,
            RetryDecision::Failed => Self::Term,
            RetryDecision::Retry { at, path: RetryPath::Nak, .. } => Self::NakUntil(at),
            RetryDecision::Retry { at, path: RetryPath::Schedule, .. } => Self::ScheduleAt(at),
        }
    }
}

impl Deliverer {
    pub async fn deliver(self: Arc<Self>, msg: jetstream::Message) {
        self.metrics.in_flight.inc();
        let _held = InFlight(&self.metrics.in_flight);
        let Ok(info) = msg.info() else {
            tracing::warn!("message without JetStream metadata");
            return;
        };
        let delivered = info.delivered;
        let job = match DeliveryJob::from_bytes(&msg.payload) {
            Ok(job) => job,
            Err(error) => {
                tracing::error!(%error, "dropping malformed delivery job");
                return self.drop_job(&msg).await;
            }
        };
        if let Some(delay) = job.hold_for(delivered, Utc::now()) {
            // A near retry stored by the fan-out, not due yet: no attempt, no span.
            return ack(&msg, AckKind::Nak(Some(delay))).await;
        }
        let attempt = job.attempt_for(delivered);
        let span = attempt_span(&job, attempt);
        self.attempt(msg, job, attempt).instrument(span).await;
    }

    /// Attempt `attempt` of `job`: find its webhook (or park or drop the job), take a place
    /// at its endpoint, make the HTTP exchange, decide what follows ([`decide`]), report
    /// the result, and settle the message only once the result is stored.
    async fn attempt(&self, msg: jetstream::Message, job: DeliveryJob, attempt: u32) {
        let Some(webhook) = self.webhook_of(&job).await else {
            tracing::info!("webhook no longer exists; dropping its delivery");
            return self.drop_job(&msg).await;
        };
        if !webhook.spec.active {
            return self.park(&msg, &job).await;
        }
        // Delivery controls: the key's turn (B6) and a token of the rate limit (B8).
        let timeout = webhook.spec.attempt_timeout.unwrap_or(self.default_timeout);
        let pass = match self.controls.admit(&msg, &job, &webhook, timeout, &self.stopping).await {
            Gate::Go(pass) => pass,
            Gate::Later(at) => {
                return self.settle(&msg, &job, attempt, Settle::ScheduleAt(at)).await;
            }
            Gate::Done => return ack(&msg, AckKind::Ack).await,
            Gate::Stopped => {
                let at = hand_back_at();
                return self.settle(&msg, &job, attempt, Settle::ScheduleAt(at)).await;
            }
        };
        let Some(mut claim) = self.endpoints.claim(&webhook.spec.url, webhook.id.as_str()) else {
            // Too many jobs already wait for this endpoint: put this one aside, unattempted.
            return self.put_back_unattempted(&msg, &job, attempt).await;
        };
        let event = match Event::from_json(job.event.get().as_bytes(), Utc::now()) {
            Ok(event) => event,
            Err(error) => {
                tracing::error!(%error, "dropping delivery job with a malformed event");
                return self.drop_job(&msg).await;
            }
        };
        if !self.wait_for_endpoint(&msg, &job, attempt, &mut claim).await {
            return;
        }
        let made = self.make(&job, &webhook, &event, attempt, claim, Some(&msg));
        let Some((decision, report)) = made.await else { return };
        let urgency = if pass.awaits_result() { Urgency::Now } else { Urgency::Batched };
        if self.store_result(&msg, report, urgency).await {
            self.controls.finish(pass, decision).await;
            self.settle(&msg, &job, attempt + 1, Settle::after(decision)).await;
        }
    }

    /// Attempt `attempt` of `job` at its endpoint with the place `claim` holds: the HTTP
    /// exchange, the retry decision, the metrics and logs, and the report to store. `msg` (the
    /// job's message, if it has one) is kept alive with progress acks meanwhile.
    async fn make(
        &self,
        job: &DeliveryJob,
        webhook: &hookd_core::Webhook,
        event: &Event,
        attempt: u32,
        claim: Claim<'_>,
        msg: Option<&jetstream::Message>,
    ) -> Option<(RetryDecision, v1::AttemptReport)> {
        let started_at = Utc::now();
        // The endpoint and the result write both continue this attempt's trace.
        let span = tracing::Span::current();
        let traceparent = hookd_nats::trace::traceparent(&span);
        let timeout = webhook.spec.attempt_timeout.unwrap_or(self.default_timeout);
        let made = self.attempter.attempt(
            &job.tenant,
            webhook,
            event,
            job.delivery_id.as_str(),
            started_at,
            timeout,
            traceparent.as_deref(),
        );
        let made = match msg {
            // An attempt (with token requests and a repeat after a 401) can outlast the ack
            // wait, which is short so that a dead dispatcher's jobs come back soon.
            Some(msg) => with_progress(msg, self.ack_wait, made).await,
            None => made.await,
        };
        claim.finished(&made.result.outcome, made.result.latency);

        let schedule = webhook.spec.retry_schedule.as_ref().unwrap_or(&self.default_schedule);
        let decision = decide(
            &made.result.outcome,
            job.position_in_chain(attempt),
            schedule,
            job.delivery_id.as_str(),
            Utc::now(),
            self.nak_max_delay,
        );
        self.observe(&made.result, decision, &span, traceparent.is_some());
        let report = AttemptReport {
            delivery_id: job.delivery_id.clone(),
            webhook_id: job.webhook_id.clone(),
            event_id: job.event_id.clone(),
            event_type: event.event_type.to_string(),
            payload: made.prepared.payload_text(),
            event: job.event.get().to_owned(),
            attempt: made.record(attempt, started_at),
            status_after: decision.status(),
            next_attempt_at: decision.next_attempt_at(),
        };
        Some((decision, attempt_report_to_proto(job.tenant.clone(), report, traceparent)))
    }

    /// Whether the fan-out may make the first attempt of a delivery to `webhook` itself, now:
    /// its endpoint has proven healthy and has a free place (see [`Endpoints::claim_soon`]),
    /// it needs no token request (which could take long), and no delivery control applies
    /// (an ordered or rate-limited webhook's attempts wait for their turn in the delivery
    /// stage).
    /// When only the inline bound is full, it waits for room until `deadline`, if given (see
    /// [`Endpoints::claim_soon`]).
    pub async fn inline_place(
        &self,
        webhook: &hookd_core::Webhook,
        deadline: Option<tokio::time::Instant>,
    ) -> Option<Place<'_>> {
        if !may_go_inline(webhook) {
            return None;
        }
        self.endpoints.claim_soon(&webhook.spec.url, webhook.id.as_str(), deadline).await
    }

    /// The first attempt of a delivery made by the fan-out, with a place it holds at the
    /// endpoint: no delivery job is written unless a retry is needed. Returns once the attempt
    /// is made and its result handed to the reporter, giving back the place and the share of
    /// the inline bound; [`InlineMade::settled`] then waits until the result is stored and,
    /// for a retry, its job stored: only then may the event be acknowledged.
    pub async fn attempt_inline(
        &self,
        job: DeliveryJob,
        webhook: &hookd_core::Webhook,
        event: &Event,
        place: Place<'_>,
    ) -> Result<InlineMade, InlineError> {
        self.metrics.in_flight.inc();
        let _held = InFlight(&self.metrics.in_flight);
        let made = self.make(&job, webhook, event, job.attempt, place.claim, None);
        let Some((decision, report)) = made.await else { return Err(InlineError::Stopping) };
        let stored = self.reporter.submit(report, Urgency::Batched).await;
        let retry = match decision {
            RetryDecision::Retry { at, path, .. } => Some((job.next(job.attempt + 1), at, path)),
            RetryDecision::Delivered | RetryDecision::Failed => None,
        };
        Ok(InlineMade { stored, retry, js: self.js.clone() })
    }

    /// The job's webhook. The fan-out that wrote the job knew it; if this dispatcher does not
    /// know it yet, the change is on its way (or the webhook was deleted).
    async fn webhook_of(&self, job: &DeliveryJob) -> Option<Arc<hookd_core::Webhook>> {
        match self.definitions.get(&job.tenant, &job.webhook_id) {
            Some(webhook) => Some(webhook),
            None => self.definitions.wait_for(&job.tenant, &job.webhook_id, DEFINITIONS_WAIT).await,
        }
    }

    /// Terminates a job that can never be delivered.
    async fn drop_job(&self, msg: &jetstream::Message) {
        self.metrics.delivery(DeliveryOutcome::Dropped);
        ack(msg, AckKind::Term).await;
    }

    /// A place at the job's endpoint, waiting for one if need be; false when the dispatcher
    /// stopped first and the job was handed back. Waiting can take long: the message stays
    /// ours meanwhile (progress acks).
    async fn wait_for_endpoint(
        &self,
        msg: &jetstream::Message,
        job: &DeliveryJob,
        attempt: u32,
        claim: &mut Claim<'_>,
    ) -> bool {
        if claim.try_acquire() {
            return true;
        }
        let mut stopping = self.stopping.clone();
        let acquire = claim.acquire();
        tokio::pin!(acquire);
        let mut progress = tokio::time::interval(self.ack_wait / 3);
        progress.tick().await;
        loop {
            tokio::select! {
                () = &mut acquire => return true,
                true = stopped(&mut stopping) => {
                    tracing::debug!("dispatcher stopping; handing back a job that waited for its endpoint");
                    self.settle(msg, job, attempt, Settle::ScheduleAt(hand_back_at())).await;
                    return false;
                }
                _ = progress.tick() => ack(msg, AckKind::Progress).await,
            }
        }
    }

    /// Metrics, the log line and, for exported traces, the span's result fields.
    fn observe(
        &self,
        result: &AttemptResult,
        decision: RetryDecision,
        span: &tracing::Span,
        traced: bool,
    ) {
        let success = decision == RetryDecision::Delivered;
        let status = decision.status();
        self.metrics.attempt(success, result.latency);
        self.metrics.delivery(match decision {
            RetryDecision::Delivered => DeliveryOutcome::Delivered,
            RetryDecision::Retry { .. } => DeliveryOutcome::Retrying,
            RetryDecision::Failed => DeliveryOutcome::Failed,
        });
        let latency_ms = u64::try_from(result.latency.as_millis()).unwrap_or(u64::MAX);
        // Successes are the bulk at high volume: debug. Failures are what operators look for.
        match (&result.outcome, success) {
            (AttemptOutcome::Answered { status: code, .. }, true) => {
                tracing::debug!(http_status = code, latency_ms, "attempt made");
            }
            (AttemptOutcome::Answered { status: code, .. }, false) => {
                tracing::info!(
                    http_status = code,
                    latency_ms,
                    outcome = status.as_str(),
                    "attempt made"
                );
            }
            (other, _) => {
                tracing::info!(error = %other.error(), latency_ms, outcome = status.as_str(), "attempt failed");
            }
        }
        // For the exported trace only: the line above already says it in the logs, and
        // recording re-formats the span's fields for them, which untraced deliveries skip.
        if traced {
            if let Some(code) = result.outcome.http_status() {
                span.record("http_status", code);
            }
            span.record("outcome", status.as_str());
        }
    }

    /// Hands the report to the reporter and waits until the control plane stored it, keeping
    /// the message ours meanwhile however long that takes: a redelivery now would repeat the
    /// HTTP call. False when the dispatcher stopped first (the message is left to JetStream).
    async fn store_result(
        &self,
        msg: &jetstream::Message,
        report: v1::AttemptReport,
        urgency: Urgency,
    ) -> bool {
        let stored = self.reporter.submit(report, urgency).await;
        if with_progress(msg, self.ack_wait, stored).await.is_err() {
            tracing::warn!("dispatcher stopping before the result was stored");
            return false;
        }
        true
    }

    /// Settles the message. A scheduled retry is stored first and only then is this message
    /// acknowledged, so a crash in between leaves the message to be redelivered, never lost.
    async fn settle(&self, msg: &jetstream::Message, job: &DeliveryJob, next: u32, settle: Settle) {
        match settle {
            Settle::Ack => ack(msg, AckKind::Ack).await,
            Settle::Term => ack(msg, AckKind::Term).await,
            Settle::NakUntil(at) => {
                let delay = (at - Utc::now()).to_std().unwrap_or_default();
                ack(msg, AckKind::Nak(Some(delay))).await;
            }
            Settle::ScheduleAt(at) => {
                let retry = job.next(next);
                match retry.schedule(&self.js, at).await {
                    Ok(_) => ack(msg, AckKind::Term).await,
                    Err(error) => {
                        // Fall back to the longest delay a NAK may carry; the retry comes
                        // early rather than never.
                        tracing::warn!(%error, "cannot schedule the retry; NAK-delaying it instead");
                        let delay =
                            (at - Utc::now()).to_std().unwrap_or_default().min(self.nak_max_delay);
                        ack(msg, AckKind::Nak(Some(delay))).await;
                    }
                }
            }
        }
    }

    /// Keeps the job of a deactivated webhook (a retry already scheduled, or an event fanned
    /// out just before the deactivation) in the webhook's buffer, unattempted, for a replay.
    /// Stored there first, then terminated here, so a crash in between parks it twice under
    /// the same id (this message's sequence), which the buffer stores once.
    async fn park(&self, msg: &jetstream::Message, job: &DeliveryJob) {
        self.controls.leave(job).await;
        let sequence = msg.info().map(|i| i.stream_sequence).unwrap_or_default();
        let id = format!("{}.p{sequence}", job.message_id());
        match job.park(&self.js, &id).await {
            Ok(published) => {
                if !published.duplicate {
                    self.tallies.kept(&job.tenant, job.webhook_id.as_str());
                }
                self.metrics.delivery(DeliveryOutcome::Parked);
                tracing::info!("webhook is inactive; delivery parked in its buffer");
                ack(msg, AckKind::Term).await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot park the delivery; trying again later");
                ack(msg, AckKind::Nak(Some(BUSY_ENDPOINT_DELAY))).await;
            }
        }
    }

    /// Hands back a job this dispatcher received but will not start because it is shutting
    /// down: stored again, due at once, with its attempt number unchanged (a NAK would count
    /// a redelivery, i.e. an attempt that was never made), for another dispatcher to take.
    pub async fn hand_back(self: Arc<Self>, msg: jetstream::Message) {
        let delivered = msg.info().map(|i| i.delivered).unwrap_or(1);
        match DeliveryJob::from_bytes(&msg.payload) {
            Ok(job) => match job.hold_for(delivered, Utc::now()) {
                Some(delay) => ack(&msg, AckKind::Nak(Some(delay))).await,
                None => {
                    let attempt = job.attempt_for(delivered);
                    self.settle(&msg, &job, attempt, Settle::ScheduleAt(hand_back_at())).await;
                }
            },
            // Whoever takes it next terminates it; only its delivery count goes up.
            Err(_) => ack(&msg, AckKind::Nak(None)).await,
        }
    }

    /// Puts a job back without attempting it, keeping its attempt number: as a schedule a
    /// moment from now, so it frees its slot for other endpoints.
    async fn put_back_unattempted(
        &self,
        msg: &jetstream::Message,
        job: &DeliveryJob,
        attempt: u32,
    ) {
        tracing::debug!("endpoint busy; putting the job aside");
        let at = Utc::now() + chrono::Duration::from_std(BUSY_ENDPOINT_DELAY).unwrap_or_default();
        self.settle(msg, job, attempt, Settle::ScheduleAt(at)).await;
    }
}

/// The span of attempt `attempt` of `job`: a child of the fan-out that created the job (of
/// the current span, when the fan-out makes the attempt itself).
pub(crate) fn attempt_span(job: &DeliveryJob, attempt: u32) -> tracing::Span {
    let span = tracing::info_span!(
        "delivery_attempt",
        delivery_id = %job.delivery_id,
        webhook_id = %job.webhook_id,
        event_id = %job.event_id,
        attempt,
        http_status = tracing::field::Empty,
        outcome = tracing::field::Empty,
    );
    if let Some(parent) = &job.traceparent {
        hookd_nats::trace::set_parent(&span, parent);
    }
    span
}

/// Takes a delivery off the in-flight gauge however it ends.
struct InFlight<'a>(&'a hookd_metrics::IntGauge);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Resolves to true once the dispatcher stops (false if it can no longer tell).
async fn stopped(stopping: &mut tokio::sync::watch::Receiver<bool>) -> bool {
    stopping.wait_for(|s| *s).await.is_ok()
}

fn hand_back_at() -> DateTime<Utc> {
    Utc::now() + chrono::Duration::from_std(HAND_BACK_DELAY).unwrap_or_default()
}

/// Runs `work` while telling JetStream every third of `ack_wait` that the message is still
/// being worked on, so it is not redelivered meanwhile.
pub(crate) async fn with_progress<F: Future>(
    msg: &jetstream::Message,
    ack_wait: Duration,
    work: F,
) -> F::Output {
    tokio::pin!(work);
    let mut progress = tokio::time::interval(ack_wait / 3);
    progress.tick().await;
    loop {
        tokio::select! {
            output = &mut work => return output,
            _ = progress.tick() => ack(msg, AckKind::Progress).await,
        }
    }
}

/// Settles a message and, except for progress acks, waits until the server confirms: the
/// caller's slot is freed only then, so a dispatcher killed at any moment can have at most
/// its in-flight messages redelivered, never ones it had already finished.
async fn ack(msg: &jetstream::Message, kind: AckKind) {
    let result = match kind {
        AckKind::Progress => msg.ack_with(kind).await,
        kind => msg.double_ack_with(kind).await,
    };
    if let Err(error) = result {
        // The server redelivers after ack_wait; idempotency makes that harmless.
        tracing::warn!(%error, "cannot acknowledge message");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_decision_settles_its_own_way() {
        let at = Utc::now();
        let delay = Duration::from_secs(15);
        assert_eq!(Settle::after(RetryDecision::Delivered), Settle::Ack);
        assert_eq!(Settle::after(RetryDecision::Failed), Settle::Term);
        let near = RetryDecision::Retry { delay, at, path: RetryPath::Nak };
        assert_eq!(Settle::after(near), Settle::NakUntil(at));
        let far = RetryDecision::Retry { delay, at, path: RetryPath::Schedule };
        assert_eq!(Settle::after(far), Settle::ScheduleAt(at));
    }
}

//! The delivery controls that act before an attempt: a job of an ordered webhook waits for
//! its turn at its key's line (`ordering`), then a job of a rate-limited webhook for a token
//! (`rate_limit`). The delivery stage calls [`Controls::admit`] before it claims a place at
//! the endpoint and [`Controls::finish`] once the attempt's result is stored; a job that is
//! not let through now is put back, unattempted, with its attempt number unchanged.

use std::{sync::Arc, time::Duration};

use async_nats::jetstream::{self, AckKind};
use chrono::{DateTime, Utc};
use hookd_core::{RetryDecision, Webhook};
use hookd_nats::DeliveryJob;
use tokio::sync::watch;

use crate::{
    ordering::{Admission, Ordering, Turn},
    rate_limit::{Permit, RateLimits},
};

/// How soon a job is tried again when its line cannot be read (NATS trouble).
const UNREADABLE_LINE_DELAY: Duration = Duration::from_secs(1);

pub struct Controls {
    pub ordering: Arc<Ordering>,
    pub rates: RateLimits,
    pub ack_wait: Duration,
}

/// What the delivery stage does with a job.
pub enum Gate {
    /// Attempt it now; hand the pass to [`Controls::finish`] after the result is stored.
    Go(Pass),
    /// Put it back, unattempted, until then.
    Later(DateTime<Utc>),
    /// Its delivery is already over (a repeat after a crash): settle it, no attempt.
    Done,
    /// The dispatcher is stopping: hand it back.
    Stopped,
}

/// The right to attempt a job now. Dropped without [`Controls::finish`] (the job was put
/// back or handed back before its attempt), it gives the turn back and keeps the place.
pub struct Pass {
    turn: Option<(Turn, Arc<Ordering>)>,
}

impl Drop for Pass {
    fn drop(&mut self) {
        if let Some((turn, ordering)) = self.turn.take() {
            tokio::spawn(async move { ordering.finish(turn, Some(Utc::now())).await });
        }
    }
}

impl Pass {
    /// Whether another delivery waits for this one's result to be stored: the next job of an
    /// ordered key takes its turn only then.
    pub fn awaits_result(&self) -> bool {
        self.turn.is_some()
    }
}

impl Controls {
    /// Lets `job` through once its turn and its token come; or says to put it back.
    pub async fn admit(
        &self,
        msg: &jetstream::Message,
        job: &DeliveryJob,
        webhook: &Webhook,
        timeout: Duration,
        stopping: &watch::Receiver<bool>,
    ) -> Gate {
        if job.order_key.is_none()
            && webhook.spec.ordering.is_none()
            && webhook.spec.rate_limit.is_none()
        {
            return Gate::Go(Pass { turn: None });
        }
        // Waiting can take long: the message stays ours meanwhile.
        with_progress(msg, self.ack_wait, self.wait(job, webhook, timeout, stopping.clone())).await
    }

    async fn wait(
        &self,
        job: &DeliveryJob,
        webhook: &Webhook,
        timeout: Duration,
        mut stopping: watch::Receiver<bool>,
    ) -> Gate {
        let turn = match self.ordering.admit(job, webhook, timeout, &mut stopping).await {
            Ok(Admission::Unordered) => None,
            Ok(Admission::Turn(turn)) => Some(turn),
            Ok(Admission::Later(at)) => return Gate::Later(at),
            Ok(Admission::Done) => return Gate::Done,
            Ok(Admission::Stopped) => return Gate::Stopped,
            Err(error) => {
                tracing::warn!(%error, "cannot read the delivery's ordering line; putting it back");
                return Gate::Later(
                    Utc::now()
                        + chrono::Duration::from_std(UNREADABLE_LINE_DELAY).unwrap_or_default(),
                );
            }
        };
        let pass = Pass { turn: turn.map(|t| (t, self.ordering.clone())) };
        let Some(limit) = webhook.spec.rate_limit else { return Gate::Go(pass) };
        match self.rates.acquire(&job.tenant, webhook, limit, &mut stopping).await {
            Permit::Go => Gate::Go(pass),
            Permit::Later(at) => {
                // Keep the key's place; the others of the key wait until then too.
                if let Some((turn, ordering)) = forget(pass) {
                    ordering.finish(turn, Some(at)).await;
                }
                Gate::Later(at)
            }
            // Dropping the pass gives the turn back.
            Permit::Stopped => Gate::Stopped,
        }
    }

    /// After the attempt's result is stored, before the message is settled: the key's line
    /// moves on (delivered, or failed for good) or waits for the retry.
    pub async fn finish(&self, pass: Pass, decision: RetryDecision) {
        let Some((turn, ordering)) = forget(pass) else { return };
        let next = match decision {
            RetryDecision::Retry { at, .. } => Some(at),
            RetryDecision::Delivered | RetryDecision::Failed => None,
        };
        ordering.finish(turn, next).await;
    }

    /// A job parked while its webhook is deactivated leaves its key's line.
    pub async fn leave(&self, job: &DeliveryJob) {
        if job.order_key.is_some() {
            self.ordering.leave(job).await;
        }
    }
}

fn forget(mut pass: Pass) -> Option<(Turn, Arc<Ordering>)> {
    pass.turn.take()
}

/// Runs `work` while telling JetStream every third of `ack_wait` that the message is still
/// being worked on.
async fn with_progress<F: Future>(
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
            _ = progress.tick() => {
                if let Err(error) = msg.ack_with(AckKind::Progress).await {
                    tracing::debug!(%error, "cannot send a progress ack");
                }
            }
        }
    }
}

//! A pull subscription to a JetStream consumer that can be stopped without stranding messages.
//!
//! async-nats' `Consumer::stream()` keeps pull requests open on the server and hides its inbox
//! subscription, so on shutdown the messages it had already received, and the ones the server
//! still sends to the open requests, could only be dropped: each would then wait out the
//! consumer's `ack_wait` (a minute) before any other dispatcher got it. Here the subscription
//! is ours: [`Puller::stop`] drains it (unsubscribe, then a round trip to the server), which
//! ends the open requests (the server hands nothing to a reply subject without interest) and
//! yields every message already on its way, so the caller can hand each one back at once.
//!
//! The protocol is the one async-nats speaks: requests of `batch` messages that expire after
//! `EXPIRES`, a new one whenever no more than half a batch is outstanding, status messages
//! (408 expired, 409 ended early) carrying how many of a request's messages will not come,
//! and idle heartbeats whose absence means the requests were lost (a reconnect): then the
//! outstanding count is forgotten and new requests are made.

use std::time::Duration;

use async_nats::{
    Subscriber,
    jetstream::{
        self,
        consumer::{PullConsumer, pull::BatchConfig},
    },
    status::StatusCode,
};
use futures::StreamExt;
use tokio::time::Instant;

/// How long the server keeps one pull request.
const EXPIRES: Duration = Duration::from_secs(10);
/// The server's idle heartbeat while a request waits; two missed ones mean it is gone.
const HEARTBEAT: Duration = Duration::from_secs(2);
/// Longest wait for the drain round trip at stop (a server that is down never answers).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("cannot subscribe to the pull inbox: {0}")]
    Subscribe(String),
    #[error("cannot send a pull request: {0}")]
    Request(String),
    #[error("the consumer refused the pull: {status} {description}")]
    Refused { status: u16, description: String },
}

pub struct Puller {
    consumer: PullConsumer,
    context: jetstream::Context,
    inbox: async_nats::Subject,
    subscriber: Subscriber,
    batch: usize,
    /// Messages requested and neither received nor declared missing by a status message.
    outstanding: usize,
    /// When anything last came from the server (or a request went out).
    last_heard: Instant,
    heartbeat_check: tokio::time::Interval,
}

impl Puller {
    pub async fn open(
        context: &jetstream::Context,
        consumer: PullConsumer,
        batch: usize,
    ) -> Result<Self, PullError> {
        let client = context.client();
        let inbox = async_nats::Subject::from(client.new_inbox());
        let subscriber = client
            .subscribe(inbox.clone())
            .await
            .map_err(|e| PullError::Subscribe(e.to_string()))?;
        let mut heartbeat_check = tokio::time::interval(HEARTBEAT);
        heartbeat_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Ok(Self {
            consumer,
            context: context.clone(),
            inbox,
            subscriber,
            batch: batch.max(1),
            outstanding: 0,
            last_heard: Instant::now(),
            heartbeat_check,
        })
    }

    /// The next message; `None` once the connection is closed for good. An error is worth a
    /// log line and a pause: the next call asks the server again.
    ///
    /// `room` is how many messages the caller can start now (this one included): no more are
    /// ever requested, so a message never waits here unstarted, where nothing would tell
    /// JetStream it is being worked on, while the caller is busy. That is what lets `ack_wait`
    /// be short: a message is either in progress (and progress-acked) or not yet sent.
    pub async fn next(&mut self, room: usize) -> Option<Result<jetstream::Message, PullError>> {
        let room = room.clamp(1, self.batch);
        loop {
            if self.outstanding <= room / 2
                && self.outstanding < room
                && let Err(error) = self.request(room - self.outstanding).await
            {
                return Some(Err(error));
            }
            let message = tokio::select! {
                // Whatever the server sent first: a heartbeat check must not win over a
                // message that is already here.
                biased;
                message = self.subscriber.next() => message,
                _ = self.heartbeat_check.tick() => {
                    if self.last_heard.elapsed() > HEARTBEAT * 2 {
                        tracing::debug!(outstanding = self.outstanding, "pull requests lost; asking again");
                        self.outstanding = 0;
                    }
                    continue;
                }
            };
            let message = message?;
            self.last_heard = Instant::now();
            match message.status {
                None | Some(StatusCode::OK) => {
                    self.outstanding = self.outstanding.saturating_sub(1);
                    return Some(Ok(jetstream::Message { message, context: self.context.clone() }));
                }
                Some(StatusCode::IDLE_HEARTBEAT) => {}
                Some(StatusCode::TIMEOUT | StatusCode::REQUEST_TERMINATED) => {
                    let description = message.description.as_deref().unwrap_or_default();
                    if description == "Consumer Deleted" || description == "Consumer is push based"
                    {
                        self.outstanding = 0;
                        return Some(Err(PullError::Refused {
                            status: message.status.map_or(0, |s| s.as_u16()),
                            description: description.to_owned(),
                        }));
                    }
                    // The messages of that request that will not come.
                    let missing = message
                        .headers
                        .as_ref()
                        .and_then(|h| h.get("Nats-Pending-Messages"))
                        .and_then(|v| v.as_str().parse().ok())
                        .unwrap_or(self.batch);
                    self.outstanding = self.outstanding.saturating_sub(missing);
                }
                Some(status) => {
                    // No responders (JetStream unavailable) and the like: the request is void.
                    self.outstanding = 0;
                    return Some(Err(PullError::Refused {
                        status: status.as_u16(),
                        description: message.description.unwrap_or_default(),
                    }));
                }
            }
        }
    }

    async fn request(&mut self, batch: usize) -> Result<(), PullError> {
        let config = BatchConfig {
            batch,
            expires: Some(EXPIRES),
            idle_heartbeat: HEARTBEAT,
            ..BatchConfig::default()
        };
        self.consumer
            .request_batch(config, self.inbox.clone())
            .await
            .map_err(|e| PullError::Request(e.to_string()))?;
        self.outstanding += batch;
        self.last_heard = Instant::now();
        Ok(())
    }

    /// Stops pulling: ends the open requests and returns every message already received or
    /// on its way, none of them started, for the caller to hand back.
    pub async fn stop(mut self) -> Vec<jetstream::Message> {
        let mut held = Vec::new();
        if let Err(error) = self.subscriber.drain().await {
            tracing::warn!(%error, "cannot drain the pull subscription");
        }
        let context = self.context;
        let subscriber = &mut self.subscriber;
        // The drain ends the subscription once the server has answered the round trip sent
        // after the unsubscribe, so everything it sent before is in by then.
        let collect = async {
            while let Some(message) = subscriber.next().await {
                if matches!(message.status, None | Some(StatusCode::OK)) {
                    held.push(jetstream::Message { message, context: context.clone() });
                }
            }
        };
        if tokio::time::timeout(DRAIN_TIMEOUT, collect).await.is_err() {
            tracing::warn!("the pull subscription did not drain in time");
        }
        held
    }
}

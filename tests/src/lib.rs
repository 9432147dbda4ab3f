//! Local cluster runner for hookd's end-to-end tests and the `make run` demo: real processes on loopback.
//!
//! Everything here starts *real* things — a `nats-server` with JetStream ([`NatsServer`]), the
//! `hookd` binary in its `control` or `dispatcher` role ([`HookdProcess`]), an HTTP endpoint
//! that records what it receives ([`Receiver`]) and an OTLP trace collector ([`OtlpReceiver`])
//! — each on a port chosen by the kernel (port 0 / `-p -1`), so tests never race each other for
//! "free" ports. Readiness is always awaited with a deadline, logs are captured to files, and
//! every process is killed when its handle is dropped, including when a test panics (the
//! failing process' log tail is printed in that case).
//!
//! The `start` functions are synchronous: they block while waiting for readiness (on a
//! multi-threaded tokio runtime via `block_in_place`, so other tasks keep running).

mod auth;
pub mod bench;
mod cluster;
pub mod contract;
mod hookd;
mod nats;
mod otlp;
mod process;
mod producer;
mod receiver;
mod scrape;
mod steady;
mod wait;

pub use auth::{
    Authed, Bearer, DISPATCHER_TOKEN, OTHER_OWNER_TOKEN, OTHER_TENANT, OWNER_TOKEN, TENANT, authed,
};
pub use cluster::{Cluster, ClusterBuilder, Database};
pub use hookd::{
    HookdProcess, Role, TEST_ENCRYPTION_KEY, control_config, control_config_for_url,
    dispatcher_config, hookd_binary,
};
pub use nats::{Nats, NatsOptions, NatsServer, nats_server_binary};
pub use otlp::{CollectedSpan, OtlpReceiver};
pub use producer::{publish_many_to_nats, publish_to_nats};
pub use receiver::{ReceivedRequest, Receiver, Responder, Response, responder};
pub use scrape::{promtool_binary, promtool_check, sample, scrape};
pub use steady::{Arrivals, Published, SteadyLoad, publish_steadily};
pub use wait::wait_until;

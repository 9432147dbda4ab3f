//! The handles the services share, built once when the control plane starts serving: each
//! service's constructor takes what it needs from here, so adding a handle touches this file
//! and the services that use it, not every constructor call.

use std::sync::Arc;

use hookd_core::egress::EgressPolicy;
use hookd_storage::Store;

use crate::{
    Config, auth::TokenTable, catalog::Catalog, changes::Changes, lifecycle::Stopping,
    metrics::Metrics, notify::Notifier, oauth::Tokens, recorder::Recorder, replay::Replays,
};

#[derive(Clone)]
pub(crate) struct Shared {
    pub config: Arc<Config>,
    pub store: Store,
    pub jetstream: async_nats::jetstream::Context,
    /// Definition changes, to the dispatchers and the other replicas.
    pub changes: Changes,
    /// Each tenant's event-type schemas, compiled.
    pub catalog: Catalog,
    /// The API tokens, checked by the interceptors.
    pub token_table: TokenTable,
    /// OAuth2 access tokens of the credentials.
    pub access_tokens: Tokens,
    /// For the early URL check and token requests; the dispatchers' check at connect time is
    /// what holds for deliveries.
    pub egress: Arc<EgressPolicy>,
    pub recorder: Recorder,
    pub replays: Replays,
    pub notifier: Notifier,
    pub metrics: Arc<Metrics>,
    /// Ends the long-lived streams (watches) at shutdown.
    pub stopping: Stopping,
}

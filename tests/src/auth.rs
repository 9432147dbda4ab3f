//! The tokens every test cluster is configured with, and gRPC clients that send one.
//!
//! Each cluster's control plane bootstraps an owner token for two tenants, so tests can check
//! isolation without any setup, and shares [`DISPATCHER_TOKEN`] with its dispatchers. These
//! are test values, public on purpose; never use them anywhere real.

pub use hookd_proto::auth::Bearer;
use tonic::{service::interceptor::InterceptedService, transport::Channel};

/// The shared secret between the test control planes and their dispatchers.
pub const DISPATCHER_TOKEN: &str = "test-dispatcher-token-0123456789";
/// The first tenant, which the existing tests use.
pub const TENANT: &str = hookd_core::DEFAULT_TENANT;
/// The owner token of [`TENANT`].
pub const OWNER_TOKEN: &str = "hkd_test-owner-default-0123456789";
/// A second tenant, for isolation tests.
pub const OTHER_TENANT: &str = "other";
/// The owner token of [`OTHER_TENANT`].
pub const OTHER_OWNER_TOKEN: &str = "hkd_test-owner-other-0123456789";

/// What every client the runner hands out runs on: a channel that sends a token.
pub type Authed = InterceptedService<Channel, Bearer>;

/// A token that cannot be a header value is sent as nothing (and refused as missing).
pub fn authed(channel: Channel, token: Option<&str>) -> Authed {
    InterceptedService::new(channel, Bearer::new(token).unwrap_or_default())
}

//! The gRPC contract as compiled: every RPC of the public services, read from the descriptor
//! set the control plane serves for reflection, so tests that must cover each RPC (tenancy,
//! the architecture test) enumerate them from the contract rather than from a hand list.

use prost::Message as _;

/// Services only dispatchers may call (with the dispatcher token); every other service of
/// `hookd.v1` is public, behind API tokens.
pub const INTERNAL_SERVICES: &[&str] = &["DispatchService"];

/// One RPC of the contract.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rpc {
    /// `WebhookService`.
    pub service: String,
    /// `CreateWebhook`.
    pub method: String,
    /// The server streams its answer.
    pub server_streaming: bool,
}

/// Every RPC of `hookd.v1`'s services, public and internal, sorted.
pub fn all_rpcs() -> Vec<Rpc> {
    let set = prost_types::FileDescriptorSet::decode(hookd_proto::FILE_DESCRIPTOR_SET)
        .expect("hookd-proto embeds a valid descriptor set");
    let mut rpcs: Vec<Rpc> = set
        .file
        .iter()
        .filter(|f| f.package() == "hookd.v1")
        .flat_map(|f| &f.service)
        .flat_map(|s| {
            s.method.iter().map(|m| Rpc {
                service: s.name().to_owned(),
                method: m.name().to_owned(),
                server_streaming: m.server_streaming(),
            })
        })
        .collect();
    rpcs.sort();
    rpcs
}

/// Every RPC of the public services: what tokens, tenants and roles must guard.
pub fn public_rpcs() -> Vec<Rpc> {
    all_rpcs().into_iter().filter(|r| !INTERNAL_SERVICES.contains(&r.service.as_str())).collect()
}

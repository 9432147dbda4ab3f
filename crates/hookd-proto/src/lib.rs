//! The `hookd.v1` gRPC contract: code generated from `proto/hookd/v1`, the encoded file
//! descriptor set for reflection, conversions between wire and domain types, and the bearer
//! token every call carries.

pub mod auth;
pub mod convert;

/// Generated messages, clients and servers of package `hookd.v1`.
#[allow(clippy::all, clippy::pedantic, missing_docs, rust_2018_idioms)]
pub mod v1 {
    tonic::include_proto!("hookd.v1");
}

/// The encoded `FileDescriptorSet` of `hookd.v1` and its imports, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/hookd_descriptor.bin"));

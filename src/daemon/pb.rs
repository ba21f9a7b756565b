//! The generated gRPC API (`proto/spinloop/v1`, package `spinloop.v1`): messages, the
//! `Console`, `Sessions` and `Design` servers and clients, and the encoded descriptor set
//! served by reflection.

#![allow(missing_docs, clippy::all, clippy::pedantic)]

tonic::include_proto!("spinloop.v1");

/// The encoded `FileDescriptorSet` of `proto/spinloop/v1` (for server reflection).
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/spinloop_descriptor.bin"));

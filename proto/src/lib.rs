//! The `kar.v1` contract as Rust types: prost messages, tonic clients and
//! servers, and the encoded descriptor set of the whole contract.
//!
//! This crate is generated from `proto/kar/v1/*.proto` at build time and holds
//! no logic of its own; the runtime and the Rust client both depend on it.

#![allow(missing_docs, clippy::all)]

/// The `google.api` HTTP annotations the contract uses.
pub mod google {
    pub mod api {
        include!(concat!(env!("OUT_DIR"), "/google.api.rs"));
    }
}

/// The `kar.v1` package.
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/kar.v1.rs"));
}

/// The encoded `FileDescriptorSet` of the contract (with its imports), for
/// gRPC reflection and the JSON gateway.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/kar_descriptor.bin"));

/// Metadata keys that carry the invocation context on calls from handlers.
pub mod metadata {
    /// The flow the calling handler runs in.
    pub const FLOW_ID: &str = "kar-flow-id";
    /// The request id of the calling handler's invocation.
    pub const CALLER_ID: &str = "kar-caller-id";
    /// The sequence number of this call within the calling invocation (1-based).
    pub const CALL_SEQ: &str = "kar-call-seq";
    /// An idempotency key chosen by a caller outside any handler.
    pub const REQUEST_ID: &str = "kar-request-id";
}

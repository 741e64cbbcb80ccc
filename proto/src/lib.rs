//! The QuickChat gRPC API, package `quickchat.v1`.
//!
//! `AuthService` signs people in, `GroupService` manages groups and lets anyone with a
//! group's link and passcode join it, and `ChatService` carries the real-time room traffic.
//! The `.proto` files under `quickchat/v1/` are the contract; this crate is the generated
//! Rust for them, shared by the server, the CLI and the tests.

pub mod v1 {
    #![allow(clippy::all, clippy::pedantic)]
    tonic::include_proto!("quickchat.v1");
}

/// The encoded descriptor set of every file in the API (and the well-known types it imports),
/// served by gRPC server reflection so that `grpcurl` works without local `.proto` files.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("quickchat_descriptor");

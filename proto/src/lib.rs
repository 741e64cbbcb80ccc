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

/// The server side of `ChatService`, whose streams send pre-encoded frames: a room
/// message is encoded once and the same bytes go to every subscriber (the usual generated
/// server would encode it again for each). `ChatResponse` and `SubscribeResponse` are
/// wire-identical, so one [`EventFrame`] type serves both RPCs. Clients use the ordinary
/// generated `v1::ChatResponse` / `v1::SubscribeResponse` to decode them.
pub mod frames {
    use prost::bytes::{Buf, BufMut, Bytes};
    use prost::encoding::{DecodeContext, WireType};

    /// One encoded `ChatResponse` (equally, `SubscribeResponse`) message.
    #[derive(Clone, Debug, Default, PartialEq, Eq)]
    pub struct EventFrame(Bytes);

    impl EventFrame {
        /// Wraps bytes that already hold an encoded `ChatResponse`.
        pub fn from_encoded(bytes: Bytes) -> Self {
            Self(bytes)
        }

        /// Encodes `response` (a `ChatResponse` or `SubscribeResponse`).
        pub fn encode<M: prost::Message>(response: &M) -> Self {
            Self(response.encode_to_vec().into())
        }

        pub fn bytes(&self) -> &Bytes {
            &self.0
        }
    }

    impl prost::Message for EventFrame {
        fn encode_raw(&self, buf: &mut impl BufMut) {
            buf.put_slice(&self.0);
        }

        /// Frames are only sent by the server, never decoded: every field is skipped.
        fn merge_field(
            &mut self,
            tag: u32,
            wire_type: WireType,
            buf: &mut impl Buf,
            ctx: DecodeContext,
        ) -> Result<(), prost::DecodeError> {
            prost::encoding::skip_field(wire_type, tag, buf, ctx)
        }

        fn encoded_len(&self) -> usize {
            self.0.len()
        }

        fn clear(&mut self) {
            self.0 = Bytes::new();
        }
    }

    include!(concat!(env!("OUT_DIR"), "/frames/quickchat.v1.rs"));
}

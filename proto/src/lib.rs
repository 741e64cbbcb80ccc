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

/// The gRPC codec of every generated client and server: prost's encoding, except that a
/// message that fails to decode is answered `INVALID_ARGUMENT` with a fixed message. prost's
/// own codec answers `INTERNAL` with the decoder's error text, which names our message
/// types and fields to whoever sent the garbage, and blames the server for the caller's
/// bytes.
pub mod codec {
    use std::marker::PhantomData;

    use tonic::Status;
    use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
    use tonic_prost::ProstEncoder;

    #[derive(Debug, Clone)]
    pub struct ProtoCodec<T, U>(PhantomData<(T, U)>);

    impl<T, U> Default for ProtoCodec<T, U> {
        fn default() -> Self {
            Self(PhantomData)
        }
    }

    impl<T, U> Codec for ProtoCodec<T, U>
    where
        T: prost::Message + Send + 'static,
        U: prost::Message + Default + Send + 'static,
    {
        type Encode = T;
        type Decode = U;
        type Encoder = ProstEncoder<T>;
        type Decoder = ProtoDecoder<U>;

        fn encoder(&mut self) -> Self::Encoder {
            ProstEncoder::new(buffer_settings())
        }

        fn decoder(&mut self) -> Self::Decoder {
            ProtoDecoder(PhantomData)
        }
    }

    /// What a stream's encoder and decoder start with: 1 KiB each instead of tonic's 8 KiB.
    /// Every open stream holds both for as long as it is open, and an idle chat stream
    /// carries a few small events; a buffer grows when a larger message or a burst needs it.
    /// The yield threshold (how much a busy stream encodes before handing it to HTTP/2)
    /// stays tonic's default, 32 KiB.
    pub fn buffer_settings() -> BufferSettings {
        BufferSettings::new(1024, 32 * 1024)
    }

    /// Decodes `U`; malformed bytes are `INVALID_ARGUMENT`.
    #[derive(Debug, Clone)]
    pub struct ProtoDecoder<U>(PhantomData<U>);

    impl<U: prost::Message + Default> Decoder for ProtoDecoder<U> {
        type Item = U;
        type Error = Status;

        fn buffer_settings(&self) -> BufferSettings {
            buffer_settings()
        }

        fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
            U::decode(buf)
                .map(Some)
                .map_err(|_| Status::invalid_argument("the message is not valid protobuf"))
        }
    }
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

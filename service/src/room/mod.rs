//! What flows through a room: messages (durable, with an offset) and ephemeral events
//! (typing, presence, the room closing). Shared by the relay, the log and the chat hub.

mod proto;

pub use proto::BadField;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// A chat message as stored and delivered. The server sets every field; `offset` is the
/// message's position in its room (1, 2, 3, …), assigned by the relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    pub id: Uuid,
    pub group_id: Uuid,
    pub offset: u64,
    pub sender_id: Uuid,
    pub sender_name: String,
    pub body: String,
    /// The sender's idempotency key.
    pub client_message_id: String,
    pub created_at: DateTime<Utc>,
    /// The message as an encoded room event, made on first delivery and then shared by
    /// every stream (see `quickchat_proto::frames`).
    pub wire: WireCache,
}

/// A lazily filled encoding of a message. Not part of the message's identity: two messages
/// are equal whether or not either has been encoded yet.
#[derive(Clone, Default)]
pub struct WireCache(std::sync::OnceLock<prost::bytes::Bytes>);

impl WireCache {
    /// The encoding, made by `encode` the first time.
    pub fn get_or_init(&self, encode: impl FnOnce() -> prost::bytes::Bytes) -> prost::bytes::Bytes {
        self.0.get_or_init(encode).clone()
    }
}

impl PartialEq for WireCache {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for WireCache {}

impl std::fmt::Debug for WireCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "WireCache(encoded)"
        } else {
            "WireCache(empty)"
        })
    }
}

/// A message before the relay has placed it in its room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageDraft {
    pub id: Uuid,
    pub group_id: Uuid,
    pub sender_id: Uuid,
    pub sender_name: String,
    pub body: String,
    pub client_message_id: String,
    pub created_at: DateTime<Utc>,
}

impl MessageDraft {
    pub fn place(self, offset: u64) -> ChatMessage {
        ChatMessage {
            id: self.id,
            group_id: self.group_id,
            offset,
            sender_id: self.sender_id,
            sender_name: self.sender_name,
            body: self.body,
            client_message_id: self.client_message_id,
            created_at: self.created_at,
            wire: Default::default(),
        }
    }
}

/// Someone in a room: a member id, or the owner's user id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Participant {
    pub id: Uuid,
    pub name: String,
}

/// One event on a room's live feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomEvent {
    Message(Arc<ChatMessage>),
    Typing(Participant),
    MemberJoined(Participant),
    MemberLeft(Participant),
    /// Someone is no longer a member: they left (`left`) or the owner removed them. Their
    /// streams end; everyone else is told.
    MemberRemoved {
        who: Participant,
        left: bool,
    },
    /// Every member token of the group was revoked: members' streams end (the owner's
    /// stay open).
    MembersRevoked,
    /// The group was deleted: every stream of the room ends.
    Closed,
    /// The relay lost the room's state and started a new epoch: offsets before and after
    /// are not comparable, so every stream ends and clients rejoin (and learn that
    /// recovery is impossible) instead of silently missing messages.
    Reset,
}

/// A change to who may use a group, which every node hears whether or not it has streams
/// of the room (see `RoomRelay::membership_changes`): nodes drop what they cached about
/// those members.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MembershipChange {
    /// The member left or was removed.
    Removed { group_id: Uuid, member_id: Uuid },
    /// Every member token of the group was revoked.
    Revoked { group_id: Uuid },
}

impl MembershipChange {
    /// The change `event` makes in `group_id`, if it is one.
    pub fn of(group_id: Uuid, event: &RoomEvent) -> Option<Self> {
        match event {
            RoomEvent::MemberRemoved { who, .. } => Some(Self::Removed {
                group_id,
                member_id: who.id,
            }),
            RoomEvent::MembersRevoked => Some(Self::Revoked { group_id }),
            _ => None,
        }
    }
}

/// Where a client is in a room's sequence: offsets are only comparable within one epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub epoch: String,
    pub offset: u64,
}

//! The room relay: how a message sent on one connection reaches every subscriber of its
//! room, and how a reconnecting client catches up.
//!
//! Two traits, each with a conformance suite every backend passes:
//! - [`RoomRelay`] assigns each room's offsets (strictly +1 per message, atomically,
//!   whichever node publishes), keeps a bounded replay window of recent messages and fans
//!   events out to subscribers ([`conformance`]);
//! - [`Presence`] tracks who is online in a room, per participant rather than per stream
//!   ([`presence_conformance`]).
//!
//! [`memory`] is the embedded default (both in this process); [`redis`] is distributed mode
//! (Redis Streams, and presence shared by every node). What a backend does the same way on
//! its own node either way lives in [`local`].

pub mod local;
pub mod memory;
pub mod redis;
pub mod room_feed;

#[cfg(test)]
pub(crate) mod conformance;
#[cfg(test)]
pub(crate) mod presence_conformance;

use std::sync::Arc;

use async_trait::async_trait;
use uuid::Uuid;

use crate::room::{ChatMessage, MembershipChange, MessageDraft, Participant, RoomEvent};

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The relay cannot be reached right now; the caller may retry.
    #[error("room relay unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// The result of [`RoomRelay::publish`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Published {
    /// A new message, now at the returned offset and on its way to subscribers.
    New(Arc<ChatMessage>),
    /// The sender already sent a message with this `client_message_id` (still inside the
    /// replay window): that original message, unchanged, and nothing was published.
    Duplicate(Arc<ChatMessage>),
}

impl Published {
    pub fn message(&self) -> &Arc<ChatMessage> {
        match self {
            Published::New(m) | Published::Duplicate(m) => m,
        }
    }
}

/// A live feed of one room, opened by [`RoomRelay::subscribe`].
pub struct Subscription {
    /// The room's current epoch.
    pub epoch: String,
    /// Offset of the newest message when the subscription started; every message after it
    /// arrives on `events`, in offset order.
    pub head: u64,
    /// Live events. An `Err` means this subscriber fell too far behind and lost events.
    pub events: room_feed::FeedReceiver,
}

/// The subscriber read too slowly and the relay dropped events for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("subscriber lagged behind the room")]
pub struct Lagged;

/// Messages of a room between two offsets, as far as the replay window still holds them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replay {
    /// Every message in the requested range, in offset order.
    Complete(Vec<Arc<ChatMessage>>),
    /// The window starts after the requested start: the messages it holds (in order) and
    /// the first offset it holds. Offsets before that must come from the store.
    Partial {
        first_available: u64,
        messages: Vec<Arc<ChatMessage>>,
    },
    /// The epoch differs from the relay's: offsets are not comparable.
    EpochChanged,
}

#[async_trait]
pub trait RoomRelay: Send + Sync + 'static {
    /// Short description for the startup line, e.g. `in-process`.
    fn describe(&self) -> String;

    /// Places `draft` at the room's next offset and delivers it to subscribers, unless the
    /// same sender already used the same non-empty `client_message_id` in this room.
    async fn publish(&self, draft: MessageDraft) -> Result<Published, RelayError>;

    /// Delivers an ephemeral event (typing, presence, removals, closing) to the room's
    /// subscribers on every node; it is not kept in the replay window. A membership event
    /// ([`RoomEvent::MemberRemoved`], [`RoomEvent::MembersRevoked`]) also reaches every
    /// node's [`RoomRelay::membership_changes`], subscribers of the room or not.
    async fn broadcast(&self, group_id: Uuid, event: RoomEvent) -> Result<(), RelayError>;

    /// Every membership change broadcast in any room, on any node, from now on.
    fn membership_changes(&self) -> tokio::sync::broadcast::Receiver<MembershipChange>;

    /// Opens a live feed of the room.
    async fn subscribe(&self, group_id: Uuid) -> Result<Subscription, RelayError>;

    /// The newest messages still in the window (at most `limit`, oldest first), whatever
    /// the epoch. History merges them with the store, whose writer may lag behind.
    async fn recent(
        &self,
        group_id: Uuid,
        limit: usize,
    ) -> Result<Vec<Arc<ChatMessage>>, RelayError>;

    /// Messages with `after < offset <= up_to`, from the replay window.
    async fn replay(
        &self,
        group_id: Uuid,
        epoch: &str,
        after: u64,
        up_to: u64,
    ) -> Result<Replay, RelayError>;

    /// Forgets the room (its group was deleted) after telling subscribers with
    /// [`RoomEvent::Closed`].
    async fn close_room(&self, group_id: Uuid) -> Result<(), RelayError>;

    /// Stops background work (readers, heartbeats) at shutdown. Nothing to do by default.
    async fn close(&self) {}
}

/// Who is online in each room. Presence is per participant, not per stream: someone with
/// two tabs open is online once, and goes offline when the last one closes.
#[async_trait]
pub trait Presence: Send + Sync + 'static {
    /// Marks one more stream of `who` in the room; true if it is their first (they came
    /// online).
    async fn join(&self, group_id: Uuid, who: &Participant) -> Result<bool, RelayError>;

    /// Marks one stream of `who` closed; true if it was their last (they went offline).
    async fn leave(&self, group_id: Uuid, who: &Participant) -> Result<bool, RelayError>;

    /// Who is online in the room, by name (see [`local::sort_online`]).
    async fn online(&self, group_id: Uuid) -> Result<Vec<Participant>, RelayError>;

    /// Forgets everyone in the room (its group was deleted).
    async fn forget_room(&self, group_id: Uuid) -> Result<(), RelayError>;
}

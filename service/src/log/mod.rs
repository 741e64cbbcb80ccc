//! The message log: where a message becomes durable before its sender is acknowledged, and
//! from which the [`persister`] writes messages to the store in batches.
//!
//! [`memory::InProcessLog`] is the embedded default: an in-process queue whose `append`
//! resolves once the persister has committed the message to the store. The Kafka log of
//! distributed mode implements the same [`MessageLog`] (append = produce with `acks=all`)
//! and feeds the same persister loop through [`persister::LogSource`].

pub mod kafka;
pub mod memory;
pub mod persister;

#[cfg(test)]
pub(crate) mod conformance;

use std::sync::Arc;

use async_trait::async_trait;
use uuid::Uuid;

use crate::room::ChatMessage;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The log cannot take messages now (closed, or its broker is down).
    #[error("message log unavailable: {0}")]
    Unavailable(String),
    /// The store refused the message for good: its group is gone, or the database cannot
    /// hold it (it is in the dead-letter table). Retrying cannot help.
    #[error("message not stored (group deleted: {group_gone})")]
    NotStored { group_gone: bool },
    /// The sender's earlier message with the same idempotency key is already stored; this
    /// resend was not.
    #[error("a message with this client_message_id is already stored")]
    AlreadySent,
}

#[async_trait]
pub trait MessageLog: Send + Sync + 'static {
    /// Short description for the startup line.
    fn describe(&self) -> String;

    /// Appends `message`; resolves once it is durable. Appending a message (same id) again
    /// is harmless: the persister keeps one row.
    async fn append(&self, message: Arc<ChatMessage>) -> Result<(), LogError>;

    /// Stops taking new messages; what was appended before is still persisted.
    async fn close(&self);
}

/// The newest offset the message log holds for a room, counting what the persister has not
/// stored yet. A relay that lost a room's state must start the room's new epoch past it, or
/// a new message would take the offset of an acked one still on its way to the store.
#[async_trait]
pub trait LogTail: Send + Sync + 'static {
    /// 0 when the log holds nothing unstored for the room.
    async fn last_offset(&self, group_id: Uuid) -> anyhow::Result<u64>;
}

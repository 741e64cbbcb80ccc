//! A message on the wire: the one conversion between [`ChatMessage`] and `v1::Message`,
//! used by the API (what clients receive) and by the Kafka log (its records are the same
//! protobuf).

use chrono::{DateTime, Utc};
use quickchat_proto::v1;
use uuid::Uuid;

use super::ChatMessage;

impl From<&ChatMessage> for v1::Message {
    fn from(m: &ChatMessage) -> Self {
        v1::Message {
            id: m.id.to_string(),
            group_id: m.group_id.to_string(),
            offset: m.offset,
            sender_name: m.sender_name.clone(),
            sender_id: m.sender_id.to_string(),
            body: m.body.clone(),
            created_at: Some(prost_types::Timestamp {
                seconds: m.created_at.timestamp(),
                nanos: m.created_at.timestamp_subsec_nanos() as i32,
            }),
            client_message_id: m.client_message_id.clone(),
        }
    }
}

/// The field of a `v1::Message` that is missing or not what a message holds.
#[derive(Debug, thiserror::Error)]
#[error("invalid or missing field {0}")]
pub struct BadField(pub &'static str);

impl TryFrom<v1::Message> for ChatMessage {
    type Error = BadField;

    fn try_from(m: v1::Message) -> Result<Self, BadField> {
        let uuid = |field, raw: &str| Uuid::parse_str(raw).map_err(|_| BadField(field));
        let created_at = m
            .created_at
            .and_then(|t| DateTime::<Utc>::from_timestamp(t.seconds, u32::try_from(t.nanos).ok()?))
            .ok_or(BadField("created_at"))?;
        Ok(ChatMessage {
            id: uuid("id", &m.id)?,
            group_id: uuid("group_id", &m.group_id)?,
            offset: m.offset,
            sender_id: uuid("sender_id", &m.sender_id)?,
            sender_name: m.sender_name,
            body: m.body,
            client_message_id: m.client_message_id,
            created_at,
            wire: Default::default(),
        })
    }
}

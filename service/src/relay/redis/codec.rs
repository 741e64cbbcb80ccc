//! The wire formats: stream entries (messages), Pub/Sub payloads (messages and ephemeral
//! events), and the shapes of Redis replies.

use super::*;

/// What travels on a room's Pub/Sub channels.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(super) enum WireEvent {
    /// A message, as the publish script stored it: the fields of its stream entry
    /// ([`encode_message`]). Published by the script itself, so a room's messages are heard
    /// in offset order; the payload starts with [`MESSAGE_PAYLOAD_START`].
    Message {
        epoch: String,
        offset: u64,
        fields: HashMap<String, String>,
    },
    Typing {
        id: Uuid,
        name: String,
    },
    MemberJoined {
        id: Uuid,
        name: String,
    },
    MemberLeft {
        id: Uuid,
        name: String,
    },
    MemberRemoved {
        id: Uuid,
        name: String,
        left: bool,
    },
    MembersRevoked,
    Closed,
    Reset,
}

impl WireEvent {
    pub(super) fn from_event(event: &RoomEvent) -> Option<Self> {
        let p = |p: &Participant| (p.id, p.name.clone());
        Some(match event {
            RoomEvent::Typing(who) => {
                let (id, name) = p(who);
                WireEvent::Typing { id, name }
            }
            RoomEvent::MemberJoined(who) => {
                let (id, name) = p(who);
                WireEvent::MemberJoined { id, name }
            }
            RoomEvent::MemberLeft(who) => {
                let (id, name) = p(who);
                WireEvent::MemberLeft { id, name }
            }
            RoomEvent::MemberRemoved { who, left } => {
                let (id, name) = p(who);
                WireEvent::MemberRemoved {
                    id,
                    name,
                    left: *left,
                }
            }
            RoomEvent::MembersRevoked => WireEvent::MembersRevoked,
            RoomEvent::Closed => WireEvent::Closed,
            RoomEvent::Reset => WireEvent::Reset,
            RoomEvent::Message(_) => return None,
        })
    }

    /// The ephemeral event; `None` for a message (see [`Inner::on_event`]).
    pub(super) fn into_event(self) -> Option<RoomEvent> {
        Some(match self {
            WireEvent::Message { .. } => return None,
            WireEvent::Typing { id, name } => RoomEvent::Typing(Participant { id, name }),
            WireEvent::MemberJoined { id, name } => {
                RoomEvent::MemberJoined(Participant { id, name })
            }
            WireEvent::MemberLeft { id, name } => RoomEvent::MemberLeft(Participant { id, name }),
            WireEvent::MemberRemoved { id, name, left } => RoomEvent::MemberRemoved {
                who: Participant { id, name },
                left,
            },
            WireEvent::MembersRevoked => RoomEvent::MembersRevoked,
            WireEvent::Closed => RoomEvent::Closed,
            WireEvent::Reset => RoomEvent::Reset,
        })
    }
}

/// How the publish script starts a message's payload (`publish.lua`), so that messages of
/// rooms nobody reads on this node are dropped before they are parsed.
pub(super) const MESSAGE_PAYLOAD_START: &str = r#"{"kind":"message","#;

/// The `N` elements of an array reply.
pub(super) fn array<const N: usize>(value: Value) -> Option<[Value; N]> {
    match value {
        Value::Array(values) => values.try_into().ok(),
        _ => None,
    }
}

/// The offset of a stream entry id `<offset>-<seq>`.
pub(super) fn offset_of(id: &str) -> Option<u64> {
    id.split_once('-').map_or(id, |(ms, _)| ms).parse().ok()
}

/// A stream entry `[id, [field, value, …]]` as its offset and fields.
pub(super) fn parse_entry(entry: Value) -> Option<(u64, HashMap<String, String>)> {
    let [id, fields] = array::<2>(entry)?;
    let offset = offset_of(&id.as_string()?)?;
    let pairs = match fields {
        Value::Array(values) => values,
        Value::Map(map) => map
            .inner()
            .into_iter()
            .flat_map(|(k, v)| [k.as_str().map(Value::from).unwrap_or(Value::Null), v])
            .collect(),
        _ => return None,
    };
    let mut fields = HashMap::with_capacity(pairs.len() / 2);
    let mut pairs = pairs.into_iter();
    while let (Some(k), Some(v)) = (pairs.next(), pairs.next()) {
        fields.insert(k.as_string()?, v.as_string()?);
    }
    Some((offset, fields))
}

/// The publish script's arguments for a message after the window and the dedupe member:
/// its fields as one JSON object (for the Pub/Sub payload, beside the epoch and offset),
/// then as the stream entry's field/value pairs (the script adds the epoch).
pub(super) fn encode_message(draft: &MessageDraft) -> Vec<String> {
    let pairs = message_fields(draft);
    let json: serde_json::Map<String, serde_json::Value> = pairs
        .chunks(2)
        .map(|pair| (pair[0].clone(), serde_json::Value::String(pair[1].clone())))
        .collect();
    let mut args = Vec::with_capacity(pairs.len() + 1);
    args.push(serde_json::Value::Object(json).to_string());
    args.extend(pairs);
    args
}

/// A message's stream entry fields (the epoch is added by the publish script).
fn message_fields(draft: &MessageDraft) -> Vec<String> {
    vec![
        "id".into(),
        draft.id.to_string(),
        "sender".into(),
        draft.sender_id.to_string(),
        "name".into(),
        draft.sender_name.clone(),
        "body".into(),
        draft.body.clone(),
        "cmid".into(),
        draft.client_message_id.clone(),
        "at".into(),
        draft.created_at.timestamp_micros().to_string(),
    ]
}

pub(super) fn decode_message(
    group_id: Uuid,
    offset: u64,
    fields: &HashMap<String, String>,
) -> Option<ChatMessage> {
    let field = |name: &str| fields.get(name);
    Some(ChatMessage {
        id: Uuid::parse_str(field("id")?).ok()?,
        group_id,
        offset,
        sender_id: Uuid::parse_str(field("sender")?).ok()?,
        sender_name: field("name")?.clone(),
        body: field("body")?.clone(),
        client_message_id: field("cmid")?.clone(),
        created_at: DateTime::<Utc>::from_timestamp_micros(field("at")?.parse().ok()?)?,
        wire: Default::default(),
    })
}

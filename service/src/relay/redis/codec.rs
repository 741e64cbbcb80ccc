//! The wire formats: stream entries (messages), Pub/Sub payloads (ephemeral events), and
//! the shapes of Redis replies.

use super::*;

/// Ephemeral events as they travel over Pub/Sub.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(super) enum WireEvent {
    Typing { id: Uuid, name: String },
    MemberJoined { id: Uuid, name: String },
    MemberLeft { id: Uuid, name: String },
    MemberRemoved { id: Uuid, name: String, left: bool },
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

    pub(super) fn into_event(self) -> RoomEvent {
        match self {
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
        }
    }
}

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

pub(super) fn entry_id(entry: &Value) -> Option<String> {
    match entry {
        Value::Array(parts) => parts.first().and_then(Value::as_string),
        _ => None,
    }
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

/// The streams of an `XREAD` reply (RESP2 array or RESP3 map), each with its entries.
pub(super) fn xread_streams(reply: Value) -> Vec<(String, Vec<Value>)> {
    let pairs: Vec<(Value, Value)> = match reply {
        Value::Array(streams) => streams
            .into_iter()
            .filter_map(|stream| array::<2>(stream).map(|[k, v]| (k, v)))
            .collect(),
        Value::Map(map) => map
            .inner()
            .into_iter()
            .filter_map(|(k, v)| Some((Value::String(k.as_str()?.into()), v)))
            .collect(),
        _ => Vec::new(),
    };
    pairs
        .into_iter()
        .filter_map(|(key, entries)| match entries {
            Value::Array(entries) => Some((key.as_string()?, entries)),
            _ => None,
        })
        .collect()
}

/// The stream entry fields of a message (the epoch is added by the publish script).
pub(super) fn encode_message(draft: &MessageDraft) -> Vec<String> {
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

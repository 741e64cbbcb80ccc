//! Where the relay keeps what in Redis (see the [module documentation](super)).

use super::*;

pub(super) struct Keys {
    pub(super) prefix: String,
}

impl Keys {
    pub(super) fn room(&self, group_id: Uuid, part: &str) -> String {
        format!("{}:room:{group_id}:{part}", self.prefix)
    }

    pub(super) fn meta(&self, group_id: Uuid) -> String {
        self.room(group_id, "meta")
    }

    pub(super) fn stream(&self, group_id: Uuid) -> String {
        self.room(group_id, "stream")
    }

    pub(super) fn dedupe(&self, group_id: Uuid) -> String {
        self.room(group_id, "dedupe")
    }

    pub(super) fn events(&self, group_id: Uuid) -> String {
        self.room(group_id, "events")
    }

    pub(super) fn messages(&self, group_id: Uuid) -> String {
        self.room(group_id, "messages")
    }

    pub(super) fn online(&self, group_id: Uuid) -> String {
        self.room(group_id, "online")
    }

    pub(super) fn names(&self, group_id: Uuid) -> String {
        self.room(group_id, "names")
    }

    /// Prefix of the per-participant presence keys, completed with the participant id.
    pub(super) fn presence_prefix(&self, group_id: Uuid) -> String {
        self.room(group_id, "presence:")
    }

    pub(super) fn presence(&self, group_id: Uuid, participant: Uuid) -> String {
        format!("{}{participant}", self.presence_prefix(group_id))
    }

    /// The pattern matching every room's `part` channel (`events`, `messages`), with glob
    /// characters of the prefix escaped.
    pub(super) fn pattern(&self, part: &str) -> String {
        let mut escaped = String::with_capacity(self.prefix.len());
        for c in self.prefix.chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                escaped.push('\\');
            }
            escaped.push(c);
        }
        format!("{escaped}:room:*:{part}")
    }

    /// The room of an events or messages channel.
    pub(super) fn group_of_channel(&self, channel: &str) -> Option<Uuid> {
        let rest = channel.strip_prefix(&self.prefix)?.strip_prefix(":room:")?;
        let id = rest
            .strip_suffix(":events")
            .or_else(|| rest.strip_suffix(":messages"))?;
        Uuid::parse_str(id).ok()
    }
}

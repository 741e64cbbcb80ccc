//! What commands print: a human line, or with `--json` one JSON object per line.
//!
//! The `*View` types are the JSON shapes (stable field names, RFC 3339 times); the `human`
//! helpers format the same data for a terminal, in local time.

use chrono::{DateTime, Local, Utc};
use quickchat_proto::v1;
use serde::Serialize;

use crate::client::to_datetime;

/// Where data goes: human text or JSON lines on stdout.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    json: bool,
    /// `--fields`: the keys each JSON record keeps (all when empty). Set once per process,
    /// so kept for its life (`Output` is `Copy`).
    fields: &'static [String],
}

impl Output {
    pub fn new(json: bool) -> Self {
        Self { json, fields: &[] }
    }

    /// Keeps only `fields` of each record, as JSON; no fields changes nothing.
    pub fn with_fields(mut self, fields: Vec<String>) -> Self {
        let fields: Vec<String> = fields
            .into_iter()
            .map(|f| f.trim().to_owned())
            .filter(|f| !f.is_empty())
            .collect();
        self.fields = Box::leak(fields.into_boxed_slice());
        self.json |= !self.fields.is_empty();
        self
    }

    pub fn is_json(&self) -> bool {
        self.json
    }

    /// Prints `value` as one JSON line, or `human()` as text.
    pub fn emit<T: Serialize>(&self, value: &T, human: impl FnOnce() -> String) {
        if self.json && !self.fields.is_empty() {
            println!("{}", self.selected(value));
        } else if self.json {
            println!("{}", json_line(value));
        } else {
            let text = human();
            if !text.is_empty() {
                println!("{text}");
            }
        }
    }

    /// `value` with only the `--fields` keys. A field the record does not
    /// have is a usage error (exit 1) naming the ones it has.
    fn selected<T: Serialize>(&self, value: &T) -> String {
        let record = match serde_json::to_value(value) {
            Ok(serde_json::Value::Object(record)) => record,
            _ => return json_line(value),
        };
        let mut picked = serde_json::Map::new();
        for field in self.fields {
            match record.get(field) {
                Some(v) => {
                    picked.insert(field.clone(), v.clone());
                }
                None => {
                    let known: Vec<&str> = record.keys().map(String::as_str).collect();
                    let err = crate::error::CliError::usage(format!(
                        "unknown field {field:?} for --fields; these records have: {}",
                        known.join(", ")
                    ));
                    eprintln!("{}", err.json());
                    std::process::exit(err.exit_code());
                }
            }
        }
        serde_json::Value::Object(picked).to_string()
    }

    /// A remark for a person (progress, hints): stderr, never in the JSON stream.
    pub fn note(&self, text: impl AsRef<str>) {
        eprintln!("{}", text.as_ref());
    }
}

pub fn json_line<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|err| format!(r#"{{"error":"{err}"}}"#))
}

#[derive(Debug, Serialize)]
pub struct UserView {
    pub id: String,
    pub name: String,
    pub email: String,
    pub provider: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<DateTime<Utc>>,
}

impl From<v1::User> for UserView {
    fn from(u: v1::User) -> Self {
        Self {
            created_at: to_datetime(u.created_at.as_ref()),
            id: u.id,
            name: u.name,
            email: u.email,
            provider: u.provider,
        }
    }
}

impl UserView {
    pub fn human(&self) -> String {
        let email = if self.email.is_empty() {
            String::new()
        } else {
            format!(" <{}>", self.email)
        };
        format!("{}{email} (user {}, {})", self.name, self.id, self.provider)
    }
}

#[derive(Debug, Serialize)]
pub struct GroupView {
    pub id: String,
    pub title: String,
    pub owner_name: String,
    pub created_at: Option<DateTime<Utc>>,
    pub share_link: String,
    /// Your role in the group (`owner` or `member`), where the server says it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
}

/// `owner`, `member`, or nothing for an unspecified role.
pub fn role_name(role: i32) -> Option<&'static str> {
    match v1::MemberRole::try_from(role) {
        Ok(v1::MemberRole::Owner) => Some("owner"),
        Ok(v1::MemberRole::Member) => Some("member"),
        _ => None,
    }
}

impl GroupView {
    pub fn new(group: v1::Group, share_link: String) -> Self {
        Self {
            created_at: to_datetime(group.created_at.as_ref()),
            role: role_name(group.role),
            id: group.id,
            title: group.title,
            owner_name: group.owner_name,
            share_link,
        }
    }

    /// One line for a list.
    pub fn row(&self) -> String {
        let role = self.role.map(|r| format!("{r:<6}  ")).unwrap_or_default();
        format!(
            "{}  {role}{}  (created {})",
            self.id,
            self.title,
            human_time(self.created_at)
        )
    }

    /// A card for `group show`.
    pub fn card(&self) -> String {
        format!(
            "{}\n  id:         {}\n  owner:      {}\n  created:    {}\n  share link: {}",
            self.title,
            self.id,
            self.owner_name,
            human_time(self.created_at),
            self.share_link
        )
    }
}

#[derive(Debug, Serialize)]
pub struct MemberView {
    pub id: String,
    pub group_id: String,
    pub name: String,
    pub role: &'static str,
    pub joined_at: Option<DateTime<Utc>>,
    /// A room of the group is open for them now (on any server node).
    pub online: bool,
}

impl From<v1::Member> for MemberView {
    fn from(m: v1::Member) -> Self {
        Self {
            joined_at: to_datetime(m.joined_at.as_ref()),
            role: role_name(m.role).unwrap_or("unknown"),
            id: m.id,
            group_id: m.group_id,
            name: m.name,
            online: m.online,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct BanView {
    pub id: String,
    pub group_id: String,
    pub name: String,
    /// They had joined signed in: their account is banned too.
    pub account_banned: bool,
    pub banned_at: Option<DateTime<Utc>>,
}

impl From<v1::Ban> for BanView {
    fn from(b: v1::Ban) -> Self {
        Self {
            banned_at: to_datetime(b.banned_at.as_ref()),
            id: b.id,
            group_id: b.group_id,
            name: b.name,
            account_banned: b.account_banned,
        }
    }
}

impl BanView {
    /// One line for a list.
    pub fn row(&self) -> String {
        format!(
            "{:<24} {}  banned {}{}",
            self.name,
            self.id,
            human_time(self.banned_at),
            if self.account_banned {
                " (name and account)"
            } else {
                ""
            }
        )
    }
}

impl MemberView {
    pub fn row(&self) -> String {
        format!(
            "{:<24} {:<6}  {:<7}  joined {}",
            self.name,
            self.role,
            if self.online { "online" } else { "offline" },
            human_time(self.joined_at)
        )
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct MessageView {
    pub offset: u64,
    pub id: String,
    pub group_id: String,
    pub sender_name: String,
    pub sender_id: String,
    pub body: String,
    /// The sender's idempotency key for this message.
    pub client_message_id: String,
    pub created_at: Option<DateTime<Utc>>,
}

impl From<v1::Message> for MessageView {
    fn from(m: v1::Message) -> Self {
        Self {
            created_at: to_datetime(m.created_at.as_ref()),
            client_message_id: m.client_message_id,
            offset: m.offset,
            id: m.id,
            group_id: m.group_id,
            sender_name: m.sender_name,
            sender_id: m.sender_id,
            body: m.body,
        }
    }
}

impl MessageView {
    /// `#12 [14:03:22] alice: hello` (history, tail).
    pub fn row(&self) -> String {
        format!("#{} {}", self.offset, self.chat_line())
    }

    /// `[14:03:22] alice: hello` (the chat room).
    pub fn chat_line(&self) -> String {
        format!(
            "[{}] {}: {}",
            human_time(self.created_at),
            self.sender_name,
            self.body
        )
    }
}

/// Local time: `14:03:22` for today, `2024-05-01 14:03` otherwise.
pub fn human_time(at: Option<DateTime<Utc>>) -> String {
    let Some(at) = at else {
        return "?".to_owned();
    };
    let local = at.with_timezone(&Local);
    if local.date_naive() == Local::now().date_naive() {
        local.format("%H:%M:%S").to_string()
    } else {
        local.format("%Y-%m-%d %H:%M").to_string()
    }
}

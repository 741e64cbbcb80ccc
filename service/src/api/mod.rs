//! gRPC handlers. Each service struct holds an `Arc<AppState>`; each handler parses its
//! request into domain types, authenticates, calls the store, and converts the result back
//! into proto messages (the conversions live here).

mod admin_service;
mod auth_service;
mod chat_service;
pub mod client_addr;
mod group_service;
mod limits;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use quickchat_proto::v1;
use uuid::Uuid;

pub use admin_service::{AdminApi, REPORT_EVERY, REPORT_STALE};
pub use auth_service::AuthApi;
pub use chat_service::ChatApi;
pub use group_service::GroupApi;
pub use limits::Limits;

use crate::auth::Authenticator;
use crate::auth::oidc::Oidc;
use crate::auth::password::Hasher;
use crate::chat::{ChatHub, ChatSettings};
use crate::domain::FieldViolation;
use crate::error::ApiError;
use crate::rate_limit::{AttemptGuard, TokenBuckets};
use crate::store::{GroupWithOwner, Store, group_bans, group_members, users};
pub use client_addr::ClientAddr;

/// What every handler shares.
pub struct AppState {
    pub store: Store,
    pub auth: Authenticator,
    pub oidc: Option<Oidc>,
    /// Every password and passcode hash goes through it (bounded concurrency and queue).
    pub hasher: Hasher,
    pub guards: Guards,
    pub limits: Limits,
    pub refresh_token_ttl: Duration,
    pub chat: Arc<ChatHub>,
    pub chat_settings: ChatSettings,
    /// Header naming the client's address when a trusted proxy is in front.
    pub client_ip_header: Option<String>,
}

pub type SharedState = Arc<AppState>;

/// The lock-outs and rates that bound what one caller can try.
pub struct Guards {
    /// Wrong passcodes per (group, client).
    pub passcode: Arc<dyn AttemptGuard>,
    /// Failed sign-ins per account (email).
    pub sign_in_account: Arc<dyn AttemptGuard>,
    /// Failed sign-ins per client, whichever accounts it tries.
    pub sign_in_client: Arc<dyn AttemptGuard>,
    /// Joins per client (successful or not).
    pub joins: TokenBuckets<ClientAddr>,
    /// Registrations per client (each costs a password hash).
    pub registrations: TokenBuckets<ClientAddr>,
}

/// `RESOURCE_EXHAUSTED` for a lock-out, saying how long it lasts.
pub(crate) fn locked_out(what: &str, wait: Duration) -> ApiError {
    ApiError::ResourceExhausted(format!(
        "{what} Try again in {} seconds.",
        wait.as_secs().max(1)
    ))
}

pub(crate) fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

/// Parses an id field; a malformed id is `INVALID_ARGUMENT` on that field.
pub(crate) fn parse_id(field: &'static str, raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw.trim()).map_err(|_| {
        ApiError::invalid(FieldViolation::new(
            field,
            format!("{field} must be a UUID."),
        ))
    })
}

pub(crate) fn user_to_proto(user: &users::Model) -> v1::User {
    v1::User {
        id: user.id.to_string(),
        name: user.name.clone(),
        email: user.email.clone().unwrap_or_default(),
        provider: user.provider.clone(),
        image_url: user.image_url.clone().unwrap_or_default(),
        created_at: Some(timestamp(user.created_at)),
    }
}

pub(crate) fn group_to_proto(g: &GroupWithOwner) -> v1::Group {
    v1::Group {
        id: g.group.id.to_string(),
        title: g.group.title.clone(),
        owner_name: g.owner_name.clone(),
        created_at: Some(timestamp(g.group.created_at)),
        role: v1::MemberRole::Unspecified as i32,
    }
}

pub(crate) fn member_to_proto(m: &group_members::Model) -> v1::Member {
    v1::Member {
        id: m.id.to_string(),
        group_id: m.group_id.to_string(),
        name: m.name.clone(),
        joined_at: Some(timestamp(m.created_at)),
        role: v1::MemberRole::Member as i32,
        online: false,
    }
}

pub(crate) fn ban_to_proto(b: &group_bans::Model) -> v1::Ban {
    v1::Ban {
        id: b.id.to_string(),
        group_id: b.group_id.to_string(),
        name: b.name.clone(),
        account_banned: b.user_id.is_some(),
        banned_at: Some(timestamp(b.created_at)),
    }
}

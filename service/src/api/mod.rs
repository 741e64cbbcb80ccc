//! gRPC handlers. Each service struct holds an `Arc<AppState>`; each handler parses its
//! request into domain types, authenticates, calls the store, and converts the result back
//! into proto messages (the conversions live here).

mod auth_service;
mod chat_service;
mod group_service;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use quickchat_proto::v1;
use uuid::Uuid;

pub use auth_service::AuthApi;
pub use chat_service::ChatApi;
pub use group_service::GroupApi;

use crate::auth::Authenticator;
use crate::auth::oidc::OidcVerifier;
use crate::chat::{ChatHub, ChatSettings};
use crate::domain::FieldViolation;
use crate::error::ApiError;
use crate::rate_limit::PasscodeGuard;
use crate::store::{GroupWithOwner, Store, group_members, users};

/// What every handler shares.
pub struct AppState {
    pub store: Store,
    pub auth: Authenticator,
    pub oidc: Option<OidcVerifier>,
    pub passcode_limiter: Arc<dyn PasscodeGuard>,
    pub refresh_token_ttl: Duration,
    /// Verified against when a login names an unknown email (see `password::dummy_hash`).
    pub dummy_password_hash: String,
    pub chat: Arc<ChatHub>,
    pub chat_settings: ChatSettings,
    /// Header naming the client's address when a trusted proxy is in front.
    pub client_ip_header: Option<String>,
}

pub type SharedState = Arc<AppState>;

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

/// The client's address, for per-client limits.
///
/// Behind a load balancer the connection comes from the balancer, so with
/// `--client-ip-header` set (e.g. `x-forwarded-for`) the client is the last address in that
/// header — the one the balancer itself appended; earlier entries are client-supplied and
/// not trusted.
pub(crate) fn peer_ip<T>(request: &tonic::Request<T>, client_ip_header: Option<&str>) -> IpAddr {
    let forwarded = client_ip_header
        .and_then(|name| request.metadata().get(name))
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.rsplit(',').next())
        .and_then(|last| last.trim().parse::<IpAddr>().ok());
    forwarded
        .or_else(|| request.remote_addr().map(|a| a.ip()))
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
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
    }
}

pub(crate) fn member_to_proto(m: &group_members::Model) -> v1::Member {
    v1::Member {
        id: m.id.to_string(),
        group_id: m.group_id.to_string(),
        name: m.name.clone(),
        joined_at: Some(timestamp(m.created_at)),
        role: v1::MemberRole::Member as i32,
    }
}

//! The connection to a server and the credentials that go with each call.
//!
//! [`Client`] owns the gRPC channel and the [`TokenStore`]. Calls for the signed-in user go
//! through [`Client::as_user`], calls about one group through [`Client::as_group`]: both put
//! the right `authorization: Bearer …` on the request, and when the server answers
//! `UNAUTHENTICATED` to an access token they trade the refresh token for a new session once,
//! save it, and retry.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use quickchat_proto::v1::{
    self, auth_service_client::AuthServiceClient, chat_service_client::ChatServiceClient,
    group_service_client::GroupServiceClient,
};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Request, Status};

use crate::config::{Membership, StoredSession, TokenStore};
use crate::error::CliError;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Refresh a little before the access token expires, so a call never races its expiry.
const EXPIRY_SLACK: chrono::TimeDelta = chrono::TimeDelta::seconds(30);

/// Which credential a group call used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity {
    Member,
    User,
}

pub struct Client {
    server: String,
    ca_cert: Option<Certificate>,
    channel: Channel,
    store: TokenStore,
}

/// The server URL as given, with a scheme and without a trailing slash.
pub fn normalize_server(raw: &str) -> Result<String, CliError> {
    let raw = raw.trim().trim_end_matches('/');
    if raw.is_empty() {
        return Err(CliError::usage("--server must not be empty"));
    }
    let with_scheme = if raw.contains("://") {
        raw.to_owned()
    } else {
        format!("http://{raw}")
    };
    let url = url::Url::parse(&with_scheme)
        .map_err(|err| CliError::usage(format!("--server {raw:?} is not a URL: {err}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(CliError::usage(format!(
            "--server must be an http:// or https:// URL, not {raw:?}"
        )));
    }
    Ok(with_scheme)
}

/// Converts a protobuf timestamp.
pub fn to_datetime(ts: Option<&prost_types::Timestamp>) -> Option<DateTime<Utc>> {
    ts.and_then(|t| DateTime::from_timestamp(t.seconds, t.nanos.clamp(0, 999_999_999) as u32))
}

/// Puts a bearer token on a request.
pub fn with_token<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    if let Ok(value) = format!("Bearer {token}").parse() {
        request.metadata_mut().insert("authorization", value);
    }
    request
}

impl Client {
    /// Connects to `server` (failing fast with exit code 4 when it is down), trusting
    /// `ca_cert` too when it is an https:// server.
    pub async fn connect(
        server: &str,
        ca_cert: Option<Certificate>,
        store: TokenStore,
    ) -> Result<Self, CliError> {
        let channel = open_channel(server, ca_cert.as_ref()).await?;
        Ok(Self {
            server: server.to_owned(),
            ca_cert,
            channel,
            store,
        })
    }

    /// Opens a fresh connection (after the server went away).
    pub async fn reconnect(&mut self) -> Result<(), CliError> {
        self.channel = open_channel(&self.server, self.ca_cert.as_ref()).await?;
        Ok(())
    }

    pub fn server(&self) -> &str {
        &self.server
    }

    pub fn store(&self) -> &TokenStore {
        &self.store
    }

    pub fn store_mut(&mut self) -> &mut TokenStore {
        &mut self.store
    }

    pub fn auth(&self) -> AuthServiceClient<Channel> {
        AuthServiceClient::new(self.channel.clone())
    }

    pub fn groups(&self) -> GroupServiceClient<Channel> {
        GroupServiceClient::new(self.channel.clone())
    }

    pub fn chat(&self) -> ChatServiceClient<Channel> {
        ChatServiceClient::new(self.channel.clone())
    }

    /// The share link of a group on this server.
    pub fn share_link(&self, group_id: &str) -> String {
        format!("{}/join/{group_id}", self.server)
    }

    /// Saves a session returned by a sign-in or refresh.
    pub fn save_session(&mut self, session: v1::Session) -> Result<StoredSession, CliError> {
        let user = session.user.unwrap_or_default();
        let stored = StoredSession {
            access_token: session.access_token,
            access_expires_at: to_datetime(session.access_expires_at.as_ref()),
            refresh_token: session.refresh_token,
            refresh_expires_at: to_datetime(session.refresh_expires_at.as_ref()),
            user_id: user.id,
            name: user.name,
            email: user.email,
        };
        let saved = stored.clone();
        self.store.update(|c| c.session = Some(stored))?;
        Ok(saved)
    }

    fn not_logged_in() -> CliError {
        CliError::auth(
            "not logged in: run `quickchat login --email you@example.com` (or `quickchat register`) first",
        )
    }

    fn session_expired(&self) -> CliError {
        let hint = self
            .store
            .session()
            .map(|s| format!("quickchat login --email {}", s.email))
            .unwrap_or_else(|| "quickchat login --email you@example.com".to_owned());
        CliError::auth(format!(
            "your session has expired or was ended: log in again with `{hint}`"
        ))
    }

    /// Trades the refresh token for a new session. On failure the stored session is dropped.
    async fn refresh(&mut self) -> Result<(), CliError> {
        let Some(refresh_token) = self.store.session().map(|s| s.refresh_token.clone()) else {
            return Err(Self::not_logged_in());
        };
        let result = self
            .auth()
            .refresh_session(v1::RefreshSessionRequest { refresh_token })
            .await;
        match result {
            Ok(response) => {
                let session = response
                    .into_inner()
                    .session
                    .ok_or_else(|| CliError::Server("the server sent an empty session".into()))?;
                self.save_session(session)?;
                Ok(())
            }
            Err(status) if status.code() == Code::Unauthenticated => {
                let err = self.session_expired();
                self.store.update(|c| c.session = None)?;
                Err(err)
            }
            Err(status) => Err(status.into()),
        }
    }

    /// A usable access token, refreshed first when it is about to expire.
    pub async fn access_token(&mut self) -> Result<String, CliError> {
        let session = self.store.session().ok_or_else(Self::not_logged_in)?;
        let expiring = session
            .access_expires_at
            .is_some_and(|at| at - EXPIRY_SLACK <= Utc::now());
        if expiring {
            self.refresh().await?;
        }
        Ok(self
            .store
            .session()
            .ok_or_else(Self::not_logged_in)?
            .access_token
            .clone())
    }

    /// Runs a call with the signed-in user's access token, refreshing once on
    /// `UNAUTHENTICATED`.
    pub async fn as_user<T, F, Fut>(&mut self, mut call: F) -> Result<T, CliError>
    where
        F: FnMut(String) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let token = self.access_token().await?;
        match call(token).await {
            Err(status) if status.code() == Code::Unauthenticated => {
                self.refresh().await?;
                let token = self.access_token().await?;
                match call(token).await {
                    Err(status) if status.code() == Code::Unauthenticated => {
                        Err(self.session_expired())
                    }
                    other => other.map_err(CliError::from),
                }
            }
            other => other.map_err(CliError::from),
        }
    }

    /// Which credential opens `group_id`: its member token if we joined it, otherwise the
    /// signed-in user's access token (owners use theirs).
    pub fn identity_for(&self, group_id: &str) -> Result<Identity, CliError> {
        if self.store.membership(group_id).is_some() {
            Ok(Identity::Member)
        } else if self.store.session().is_some() {
            Ok(Identity::User)
        } else {
            Err(CliError::auth(format!(
                "not a member of group {group_id}: join it with `quickchat join {group_id} --name YOUR_NAME`, \
                 or log in as its owner"
            )))
        }
    }

    /// Our id in `group_id`'s room (member id, or the owner's user id).
    pub fn my_id(&self, group_id: &str) -> Option<String> {
        match self.store.membership(group_id) {
            Some(m) => Some(m.member_id.clone()),
            None => self.store.session().map(|s| s.user_id.clone()),
        }
    }

    /// Runs a call about one group with the member token or the access token.
    pub async fn as_group<T, F, Fut>(&mut self, group_id: &str, mut call: F) -> Result<T, CliError>
    where
        F: FnMut(String) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        match self.identity_for(group_id)? {
            Identity::User => self.as_user(call).await,
            Identity::Member => {
                let membership = self
                    .store
                    .membership(group_id)
                    .cloned()
                    .expect("identity_for checked the membership");
                match call(membership.token.clone()).await {
                    Err(status) if status.code() == Code::Unauthenticated => {
                        Err(member_token_rejected(group_id, &membership))
                    }
                    other => other.map_err(CliError::from),
                }
            }
        }
    }
}

fn member_token_rejected(group_id: &str, membership: &Membership) -> CliError {
    CliError::auth(format!(
        "your member token for group {group_id} is no longer valid: join again with \
         `quickchat join {group_id} --name {}`",
        shell_word(&membership.name)
    ))
}

/// Quotes a value for a command line shown to the user, when it needs quoting.
pub fn shell_word(value: &str) -> String {
    if !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@/:".contains(c))
    {
        value.to_owned()
    } else {
        format!("'{}'", value.replace('\'', r"'\''"))
    }
}

/// The CA certificate of `--ca-cert`, checked to be PEM.
pub fn load_ca_cert(path: &Path) -> Result<Certificate, CliError> {
    let pem = std::fs::read(path).map_err(|err| {
        CliError::local(format!("cannot read --ca-cert {}: {err}", path.display()))
    })?;
    if !pem
        .windows(CERTIFICATE_PEM.len())
        .any(|w| w == CERTIFICATE_PEM)
    {
        return Err(CliError::usage(format!(
            "--ca-cert {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        )));
    }
    Ok(Certificate::from_pem(pem))
}

const CERTIFICATE_PEM: &[u8] = b"-----BEGIN CERTIFICATE-----";

/// Connects to `server`; exit code 4 when it is down or, over https://, not trusted. An
/// https:// server must have a certificate from a public CA or from `ca_cert`.
pub async fn open_channel(
    server: &str,
    ca_cert: Option<&Certificate>,
) -> Result<Channel, CliError> {
    let mut endpoint = Endpoint::from_shared(server.to_owned())
        .map_err(|err| CliError::usage(format!("--server {server:?} is not usable: {err}")))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true);
    if server.starts_with("https://") {
        let mut tls = ClientTlsConfig::new().with_webpki_roots();
        if let Some(ca_cert) = ca_cert {
            tls = tls.ca_certificate(ca_cert.clone());
        }
        endpoint = endpoint.tls_config(tls).map_err(|err| {
            CliError::usage(format!("--server {server:?}: cannot set up TLS: {err}"))
        })?;
    }
    endpoint
        .connect()
        .await
        .map_err(|err| CliError::from(err).with_server(server))
}

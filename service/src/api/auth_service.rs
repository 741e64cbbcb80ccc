//! `AuthService`: registration, password sign-in, OpenID Connect sign-in (an ID token, or an
//! authorization code the server trades at the provider), refresh-token rotation.

use quickchat_proto::v1::{self, auth_service_server::AuthService};
use tonic::{Request, Response, Status};
use tracing::instrument;
use uuid::Uuid;

use super::{ClientAddr, SharedState, locked_out, timestamp, user_to_proto};
use crate::auth::oidc::{IdentityClaims, Oidc};
use crate::auth::refresh;
use crate::domain::{CodeGrant, DisplayName, Email, Password, Violations, text};
use crate::error::ApiError;
use crate::rate_limit;
use crate::store::{self, NewUser, Rotation, StoreError, users};

/// A profile picture URL worth keeping: http(s), at most 2048 characters, no control
/// characters. Anything else from an identity provider is dropped rather than stored.
fn is_image_url(raw: &str) -> bool {
    raw.len() <= 2048
        && text::check_label(raw).is_ok()
        && url::Url::parse(raw).is_ok_and(|u| matches!(u.scheme(), "http" | "https"))
}

pub struct AuthApi {
    state: SharedState,
}

impl AuthApi {
    pub fn new(state: SharedState) -> Self {
        Self { state }
    }

    fn refresh_expiry(&self) -> Result<chrono::DateTime<chrono::Utc>, ApiError> {
        Ok(store::now()
            + chrono::Duration::from_std(self.state.refresh_token_ttl)
                .map_err(anyhow::Error::from)?)
    }

    /// Issues a fresh sign-in for `user`: a new access token and a refresh token in a new
    /// family.
    async fn session(&self, user: &users::Model) -> Result<v1::Session, ApiError> {
        let (refresh_token, hash) = refresh::generate();
        let refresh_expires_at = self.refresh_expiry()?;
        self.state
            .store
            .insert_refresh_token(user.id, Uuid::new_v4(), hash, refresh_expires_at)
            .await?;
        self.session_with(user, refresh_token, refresh_expires_at)
    }

    /// The session answer: a new access token beside a refresh token already stored.
    fn session_with(
        &self,
        user: &users::Model,
        refresh_token: String,
        refresh_expires_at: chrono::DateTime<chrono::Utc>,
    ) -> Result<v1::Session, ApiError> {
        let (access_token, access_expires_at) =
            self.state.auth.tokens().issue_access(user.id, &user.name)?;
        Ok(v1::Session {
            access_token,
            access_expires_at: Some(timestamp(access_expires_at)),
            refresh_token,
            refresh_expires_at: Some(timestamp(refresh_expires_at)),
            user: Some(user_to_proto(user)),
        })
    }

    async fn register(
        &self,
        client: ClientAddr,
        req: v1::RegisterRequest,
    ) -> Result<v1::Session, ApiError> {
        let mut violations = Violations::new();
        let email = violations.check(Email::parse(&req.email));
        let password = violations.check(Password::parse(&req.password));
        let name = violations.check(DisplayName::parse(&req.name));
        violations.finish()?;
        let (email, password, name) = (email.unwrap(), password.unwrap(), name.unwrap());

        // Each registration costs a password hash: bounded per client, and a taken email
        // is refused before hashing (the answer says it is taken either way).
        if !self.state.guards.registrations.try_acquire(&client) {
            tracing::warn!(%client, "registration refused: too many from this client");
            return Err(ApiError::ResourceExhausted(
                "Too many new accounts from your address; try again in a minute.".into(),
            ));
        }
        let taken = || ApiError::AlreadyExists("An account with this email already exists.".into());
        if self
            .state
            .store
            .user_by_email(email.as_str())
            .await?
            .is_some()
        {
            return Err(taken());
        }
        let password_hash = self.state.hasher.hash(password.secret()).await?;
        let user = self
            .state
            .store
            .create_user(NewUser {
                name: name.as_str(),
                email: Some(email.as_str()),
                provider: "local",
                subject: None,
                password_hash: Some(password_hash),
                image_url: None,
            })
            .await
            .map_err(|err| match err {
                StoreError::Conflict => taken(),
                StoreError::Db(db) => db.into(),
            })?;
        tracing::info!(user_id = %user.id, "user registered");
        self.session(&user).await
    }

    /// Password sign-in. Each attempt is reserved against two lock-outs before the password
    /// is checked — per account (slow guessing of one password) and per client (one client
    /// trying many accounts) — and given back when it succeeds.
    async fn login(
        &self,
        client: ClientAddr,
        req: v1::LoginRequest,
    ) -> Result<v1::Session, ApiError> {
        let wrong = || ApiError::unauthenticated("Email or password is incorrect.");
        // Malformed input cannot match an account; answer like any other wrong login.
        let (Ok(email), Ok(password)) = (Email::parse(&req.email), Password::parse(&req.password))
        else {
            tracing::info!(%client, "failed sign-in: malformed email or password");
            return Err(wrong());
        };
        let guards = &self.state.guards;
        let client_attempt =
            match rate_limit::begin(&guards.sign_in_client, &client.to_string()).await {
                Ok(attempt) => attempt,
                Err(wait) => {
                    tracing::warn!(%client, "sign-in refused: too many failures from this client");
                    return Err(locked_out(
                        "Too many failed sign-ins from your address.",
                        wait,
                    ));
                }
            };
        let account_attempt = match rate_limit::begin(&guards.sign_in_account, email.as_str()).await
        {
            Ok(attempt) => attempt,
            Err(wait) => {
                // Not this client's failure: the account is under attack.
                client_attempt.succeeded().await;
                tracing::warn!(%client, "sign-in refused: too many failures for this account");
                return Err(locked_out(
                    "Too many failed sign-ins for this account.",
                    wait,
                ));
            }
        };
        let checked = async {
            let user = self.state.store.user_by_email(email.as_str()).await?;
            let stored_hash = user.as_ref().and_then(|u| u.password_hash.clone());
            let matches = self
                .state
                .hasher
                .verify(password.secret(), stored_hash.as_deref())
                .await?;
            Ok::<_, ApiError>((user, matches))
        }
        .await;
        // The password was never checked (busy, or the database failed): no attempt spent.
        let (user, matches) = match checked {
            Ok(checked) => checked,
            Err(err) => {
                client_attempt.succeeded().await;
                account_attempt.succeeded().await;
                return Err(err);
            }
        };
        match user {
            Some(user) if matches => {
                client_attempt.succeeded().await;
                account_attempt.succeeded().await;
                tracing::info!(user_id = %user.id, %client, "user signed in");
                self.session(&user).await
            }
            user => {
                client_attempt.failed().await;
                account_attempt.failed().await;
                tracing::info!(user_id = ?user.map(|u| u.id), %client, "failed sign-in: wrong email or password");
                Err(wrong())
            }
        }
    }

    /// The configured OpenID Connect provider, `FAILED_PRECONDITION` without one.
    fn oidc(&self) -> Result<&Oidc, ApiError> {
        self.state.oidc.as_ref().ok_or_else(|| {
            ApiError::FailedPrecondition(
                "Sign-in with an identity provider is not configured on this server.".into(),
            )
        })
    }

    async fn login_with_id_token(
        &self,
        req: v1::LoginWithIdTokenRequest,
    ) -> Result<v1::Session, ApiError> {
        let oidc = self.oidc()?;
        let claims = oidc.verify(req.id_token.trim()).await?;
        self.sign_in_with(oidc, claims).await
    }

    /// A code sign-in. Each one makes the server call the provider, so failures count
    /// against the client's sign-in allowance like wrong passwords do; a provider that
    /// cannot be reached is nobody's failure.
    async fn login_with_authorization_code(
        &self,
        client: ClientAddr,
        req: v1::LoginWithAuthorizationCodeRequest,
    ) -> Result<v1::Session, ApiError> {
        let oidc = self.oidc()?;
        let grant = CodeGrant::parse(&req.code, &req.code_verifier, &req.redirect_uri, &req.nonce)?;
        let attempt = match rate_limit::begin(
            &self.state.guards.sign_in_client,
            &client.to_string(),
        )
        .await
        {
            Ok(attempt) => attempt,
            Err(wait) => {
                tracing::warn!(%client, "code sign-in refused: too many failures from this client");
                return Err(locked_out(
                    "Too many failed sign-ins from your address.",
                    wait,
                ));
            }
        };
        match oidc.exchange(&grant).await {
            Ok(claims) => {
                attempt.succeeded().await;
                self.sign_in_with(oidc, claims).await
            }
            Err(err @ ApiError::Unauthenticated(_)) => {
                attempt.failed().await;
                tracing::info!(%client, "failed code sign-in");
                Err(err)
            }
            Err(err) => {
                attempt.succeeded().await;
                Err(err)
            }
        }
    }

    /// Signs in the user the provider vouched for with `claims`, creating them on their
    /// first sign-in and updating their profile on later ones.
    async fn sign_in_with(
        &self,
        oidc: &Oidc,
        claims: IdentityClaims,
    ) -> Result<v1::Session, ApiError> {
        let provider = oidc.provider();
        // The subject is the account's key: anything a database could choke on is refused.
        if claims.sub.is_empty()
            || claims.sub.chars().count() > 255
            || text::check_label(&claims.sub).is_err()
        {
            tracing::info!(provider, "id token with an unusable subject");
            return Err(ApiError::unauthenticated("The ID token is not valid."));
        }
        // Only an address the provider explicitly vouches for is recorded: a token without
        // `email_verified: true` could name anyone's address.
        let email = match (&claims.email, claims.email_verified) {
            (Some(e), Some(true)) => Email::parse(e).ok(),
            _ => None,
        };
        let picture = claims.picture.as_deref().filter(|p| is_image_url(p));
        let name = claims
            .name
            .as_deref()
            .and_then(|n| DisplayName::parse(n).ok())
            .or_else(|| {
                email
                    .as_ref()
                    .and_then(|e| DisplayName::parse(e.as_str().split('@').next()?).ok())
            })
            .unwrap_or_else(|| DisplayName::parse("User").expect("literal name is valid"));
        let email_taken = || {
            ApiError::AlreadyExists(
                "This email is already registered with another sign-in method.".into(),
            )
        };
        let store = &self.state.store;
        let user = match store.user_by_subject(provider, &claims.sub).await? {
            Some(existing) => store
                .update_profile(
                    existing,
                    name.as_str(),
                    email.as_ref().map(Email::as_str),
                    picture,
                )
                .await
                .map_err(|err| match err {
                    StoreError::Conflict => email_taken(),
                    StoreError::Db(db) => db.into(),
                })?,
            None => store
                .create_user(NewUser {
                    name: name.as_str(),
                    email: email.as_ref().map(Email::as_str),
                    provider,
                    subject: Some(&claims.sub),
                    password_hash: None,
                    image_url: picture,
                })
                .await
                .map_err(|err| match err {
                    StoreError::Conflict => email_taken(),
                    StoreError::Db(db) => db.into(),
                })?,
        };
        tracing::info!(user_id = %user.id, provider, "user signed in with an identity provider");
        self.session(&user).await
    }

    async fn refresh(&self, req: v1::RefreshSessionRequest) -> Result<v1::Session, ApiError> {
        let invalid = || ApiError::unauthenticated("Refresh token is not valid; sign in again.");
        let store = &self.state.store;
        let record = store
            .refresh_token_by_hash(&refresh::hash(req.refresh_token.trim()))
            .await?
            .ok_or_else(invalid)?;
        if record.revoked_at.is_some() {
            return Err(invalid());
        }
        if record.expires_at <= store::now() {
            return Err(ApiError::unauthenticated(
                "Refresh token has expired; sign in again.",
            ));
        }
        let user = store
            .user_by_id(record.user_id)
            .await?
            .ok_or_else(invalid)?;
        let (refresh_token, hash) = refresh::generate();
        let refresh_expires_at = self.refresh_expiry()?;
        match store
            .rotate_refresh_token(&record, hash, refresh_expires_at)
            .await?
        {
            Rotation::Rotated => {}
            Rotation::FamilyRevoked => return Err(invalid()),
            Rotation::AlreadyUsed => {
                // A rotated token came back: whoever holds the family may have stolen it.
                tracing::warn!(user_id = %record.user_id, family_id = %record.family_id, "refresh token reuse; revoking the session");
                store.revoke_refresh_family(record.family_id).await?;
                return Err(ApiError::unauthenticated(
                    "Refresh token was already used; the session has been revoked. Sign in again.",
                ));
            }
        }
        self.session_with(&user, refresh_token, refresh_expires_at)
    }

    async fn logout(&self, req: v1::LogoutRequest) -> Result<(), ApiError> {
        let store = &self.state.store;
        if let Some(record) = store
            .refresh_token_by_hash(&refresh::hash(req.refresh_token.trim()))
            .await?
        {
            store.revoke_refresh_family(record.family_id).await?;
            tracing::info!(user_id = %record.user_id, "user signed out");
        }
        Ok(())
    }

    async fn me<T>(&self, request: &Request<T>) -> Result<v1::User, ApiError> {
        let caller = self.state.auth.user(request.metadata())?;
        let user = self
            .state
            .store
            .user_by_id(caller.user_id)
            .await?
            .ok_or_else(|| ApiError::unauthenticated("This account no longer exists."))?;
        Ok(user_to_proto(&user))
    }
}

#[tonic::async_trait]
impl AuthService for AuthApi {
    #[instrument(skip_all)]
    async fn register(
        &self,
        request: Request<v1::RegisterRequest>,
    ) -> Result<Response<v1::RegisterResponse>, Status> {
        let client = ClientAddr::of(&request, self.state.client_ip_header.as_deref());
        let session = self.register(client, request.into_inner()).await?;
        Ok(Response::new(v1::RegisterResponse {
            session: Some(session),
        }))
    }

    #[instrument(skip_all)]
    async fn login(
        &self,
        request: Request<v1::LoginRequest>,
    ) -> Result<Response<v1::LoginResponse>, Status> {
        let client = ClientAddr::of(&request, self.state.client_ip_header.as_deref());
        let session = self.login(client, request.into_inner()).await?;
        Ok(Response::new(v1::LoginResponse {
            session: Some(session),
        }))
    }

    #[instrument(skip_all)]
    async fn login_with_id_token(
        &self,
        request: Request<v1::LoginWithIdTokenRequest>,
    ) -> Result<Response<v1::LoginWithIdTokenResponse>, Status> {
        let session = self.login_with_id_token(request.into_inner()).await?;
        Ok(Response::new(v1::LoginWithIdTokenResponse {
            session: Some(session),
        }))
    }

    #[instrument(skip_all)]
    async fn get_sign_in_options(
        &self,
        _request: Request<v1::GetSignInOptionsRequest>,
    ) -> Result<Response<v1::GetSignInOptionsResponse>, Status> {
        let oidc = match &self.state.oidc {
            Some(oidc) => Some(v1::OidcProvider {
                issuer: oidc.issuer().to_owned(),
                client_id: oidc.client_id().to_owned(),
                display_name: oidc.display_name().to_owned(),
                authorization_endpoint: oidc.authorization_endpoint().await.unwrap_or_default(),
            }),
            None => None,
        };
        Ok(Response::new(v1::GetSignInOptionsResponse { oidc }))
    }

    #[instrument(skip_all)]
    async fn login_with_authorization_code(
        &self,
        request: Request<v1::LoginWithAuthorizationCodeRequest>,
    ) -> Result<Response<v1::LoginWithAuthorizationCodeResponse>, Status> {
        let client = ClientAddr::of(&request, self.state.client_ip_header.as_deref());
        let session = self
            .login_with_authorization_code(client, request.into_inner())
            .await?;
        Ok(Response::new(v1::LoginWithAuthorizationCodeResponse {
            session: Some(session),
        }))
    }

    #[instrument(skip_all)]
    async fn refresh_session(
        &self,
        request: Request<v1::RefreshSessionRequest>,
    ) -> Result<Response<v1::RefreshSessionResponse>, Status> {
        let session = self.refresh(request.into_inner()).await?;
        Ok(Response::new(v1::RefreshSessionResponse {
            session: Some(session),
        }))
    }

    #[instrument(skip_all)]
    async fn logout(
        &self,
        request: Request<v1::LogoutRequest>,
    ) -> Result<Response<v1::LogoutResponse>, Status> {
        self.logout(request.into_inner()).await?;
        Ok(Response::new(v1::LogoutResponse {}))
    }

    #[instrument(skip_all)]
    async fn get_me(
        &self,
        request: Request<v1::GetMeRequest>,
    ) -> Result<Response<v1::GetMeResponse>, Status> {
        let user = self.me(&request).await?;
        Ok(Response::new(v1::GetMeResponse { user: Some(user) }))
    }
}

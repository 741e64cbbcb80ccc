//! `AuthService`: registration, password and ID-token sign-in, refresh-token rotation.

use quickchat_proto::v1::{self, auth_service_server::AuthService};
use tonic::{Request, Response, Status};
use tracing::instrument;
use uuid::Uuid;

use super::{SharedState, timestamp, user_to_proto};
use crate::auth::{password, refresh};
use crate::domain::{DisplayName, Email, Password, Violations};
use crate::error::ApiError;
use crate::store::{self, NewUser, StoreError, users};

pub struct AuthApi {
    state: SharedState,
}

impl AuthApi {
    pub fn new(state: SharedState) -> Self {
        Self { state }
    }

    /// Issues a session for `user`: a new access token and a refresh token in `family_id`
    /// (a new family for a fresh sign-in, the old one for a rotation).
    async fn session(&self, user: &users::Model, family_id: Uuid) -> Result<v1::Session, ApiError> {
        let (access_token, access_expires_at) =
            self.state.auth.tokens().issue_access(user.id, &user.name)?;
        let (refresh_token, hash) = refresh::generate();
        let refresh_expires_at = store::now()
            + chrono::Duration::from_std(self.state.refresh_token_ttl)
                .map_err(anyhow::Error::from)?;
        self.state
            .store
            .insert_refresh_token(user.id, family_id, hash, refresh_expires_at)
            .await?;
        Ok(v1::Session {
            access_token,
            access_expires_at: Some(timestamp(access_expires_at)),
            refresh_token,
            refresh_expires_at: Some(timestamp(refresh_expires_at)),
            user: Some(user_to_proto(user)),
        })
    }

    async fn register(&self, req: v1::RegisterRequest) -> Result<v1::Session, ApiError> {
        let mut violations = Violations::new();
        let email = violations.check(Email::parse(&req.email));
        let password = violations.check(Password::parse(&req.password));
        let name = violations.check(DisplayName::parse(&req.name));
        violations.finish()?;
        let (email, password, name) = (email.unwrap(), password.unwrap(), name.unwrap());

        let password_hash = password::hash(password.secret()).await?;
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
                StoreError::Conflict => {
                    ApiError::AlreadyExists("An account with this email already exists.".into())
                }
                StoreError::Db(db) => db.into(),
            })?;
        tracing::info!(user_id = %user.id, "user registered");
        self.session(&user, Uuid::new_v4()).await
    }

    async fn login(&self, req: v1::LoginRequest) -> Result<v1::Session, ApiError> {
        let wrong = || ApiError::unauthenticated("Email or password is incorrect.");
        // Malformed input cannot match an account; answer like any other wrong login.
        let (Ok(email), Ok(password)) = (Email::parse(&req.email), Password::parse(&req.password))
        else {
            return Err(wrong());
        };
        let user = self.state.store.user_by_email(email.as_str()).await?;
        let stored_hash = user.as_ref().and_then(|u| u.password_hash.clone());
        let matches = password::verify(
            password.secret(),
            stored_hash
                .as_deref()
                .unwrap_or(&self.state.dummy_password_hash),
        )
        .await?;
        match user {
            Some(user) if matches && stored_hash.is_some() => {
                tracing::info!(user_id = %user.id, "user signed in");
                self.session(&user, Uuid::new_v4()).await
            }
            _ => Err(wrong()),
        }
    }

    async fn login_with_id_token(
        &self,
        req: v1::LoginWithIdTokenRequest,
    ) -> Result<v1::Session, ApiError> {
        let verifier = self.state.oidc.as_ref().ok_or_else(|| {
            ApiError::FailedPrecondition(
                "Sign-in with an ID token is not configured on this server.".into(),
            )
        })?;
        let claims = verifier.verify(req.id_token.trim()).await?;
        let provider = verifier.provider();
        // Only an address the provider vouches for is recorded.
        let email = match (&claims.email, claims.email_verified) {
            (Some(e), Some(true) | None) => Email::parse(e).ok(),
            _ => None,
        };
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
                    claims.picture.as_deref(),
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
                    image_url: claims.picture.as_deref(),
                })
                .await
                .map_err(|err| match err {
                    StoreError::Conflict => email_taken(),
                    StoreError::Db(db) => db.into(),
                })?,
        };
        tracing::info!(user_id = %user.id, provider, "user signed in with an ID token");
        self.session(&user, Uuid::new_v4()).await
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
        if record.used_at.is_some() || !store.claim_refresh_token(record.id).await? {
            // A rotated token came back: whoever holds the family may have stolen it.
            tracing::warn!(user_id = %record.user_id, family_id = %record.family_id, "refresh token reuse; revoking the session");
            store.revoke_refresh_family(record.family_id).await?;
            return Err(ApiError::unauthenticated(
                "Refresh token was already used; the session has been revoked. Sign in again.",
            ));
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
        self.session(&user, record.family_id).await
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
        let session = self.register(request.into_inner()).await?;
        Ok(Response::new(v1::RegisterResponse {
            session: Some(session),
        }))
    }

    #[instrument(skip_all)]
    async fn login(
        &self,
        request: Request<v1::LoginRequest>,
    ) -> Result<Response<v1::LoginResponse>, Status> {
        let session = self.login(request.into_inner()).await?;
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

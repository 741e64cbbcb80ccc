//! Who is calling: JWT access and member tokens ([`tokens`]), password and passcode hashing
//! ([`password`]), refresh-token material ([`refresh`]), OpenID Connect ID-token
//! verification ([`oidc`]), and whether a member token still stands ([`members`]).
//!
//! Credentials arrive as `authorization: Bearer <token>` metadata; [`Authenticator`] turns
//! them into a [`Principal`] or an `UNAUTHENTICATED` error (`PERMISSION_DENIED` for the
//! token of a member who left or was removed).

pub mod members;
pub mod oidc;
pub mod password;
pub mod refresh;
pub mod tokens;

use std::sync::Arc;

use tonic::metadata::MetadataMap;
use uuid::Uuid;

use crate::error::ApiError;
pub use tokens::{Principal, TokenIssuer};

/// Extracts and verifies the bearer token of a request.
#[derive(Clone)]
pub struct Authenticator {
    tokens: TokenIssuer,
    members: Arc<members::MemberCheck>,
}

impl Authenticator {
    pub fn new(tokens: TokenIssuer, members: Arc<members::MemberCheck>) -> Self {
        Self { tokens, members }
    }

    pub fn tokens(&self) -> &TokenIssuer {
        &self.tokens
    }

    pub fn members(&self) -> &Arc<members::MemberCheck> {
        &self.members
    }

    /// The caller, whichever kind of token they hold; a member token only while its member
    /// is in the group and the token was not revoked.
    pub async fn principal(&self, metadata: &MetadataMap) -> Result<Principal, ApiError> {
        let principal = self.claimed(metadata)?;
        if let Principal::Member(member) = &principal {
            self.members.check(member).await?;
        }
        Ok(principal)
    }

    /// Whoever the token names, by its signature alone: a revoked member token still says
    /// who its member is (to rejoin as them), but opens nothing.
    pub fn claimed(&self, metadata: &MetadataMap) -> Result<Principal, ApiError> {
        let header = metadata
            .get("authorization")
            .ok_or_else(|| ApiError::unauthenticated("missing authorization: Bearer <token>"))?;
        let value = header
            .to_str()
            .map_err(|_| ApiError::unauthenticated("authorization header is not valid text"))?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or_else(|| ApiError::unauthenticated("authorization must be: Bearer <token>"))?;
        self.tokens.verify(token.trim())
    }

    /// The signed-in user; member tokens are not enough.
    pub fn user(&self, metadata: &MetadataMap) -> Result<UserPrincipal, ApiError> {
        match self.claimed(metadata)? {
            Principal::User(user) => Ok(user),
            Principal::Member(_) => Err(ApiError::unauthenticated(
                "this needs a signed-in user; a member token only opens its group",
            )),
        }
    }
}

/// A signed-in user, from an access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserPrincipal {
    pub user_id: Uuid,
    pub name: String,
}

/// Someone who joined one group with its passcode, from a member token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberPrincipal {
    pub member_id: Uuid,
    pub group_id: Uuid,
    pub name: String,
    /// The token's version (see [`members`]).
    pub version: i64,
}

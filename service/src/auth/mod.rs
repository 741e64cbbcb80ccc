//! Who is calling: JWT access and member tokens ([`tokens`]), password and passcode hashing
//! ([`password`]), refresh-token material ([`refresh`]), and OpenID Connect ID-token
//! verification ([`oidc`]).
//!
//! Credentials arrive as `authorization: Bearer <token>` metadata; [`Authenticator`] turns
//! them into a [`Principal`] or an `UNAUTHENTICATED` error.

pub mod oidc;
pub mod password;
pub mod refresh;
pub mod tokens;

use tonic::metadata::MetadataMap;
use uuid::Uuid;

use crate::error::ApiError;
pub use tokens::{Principal, TokenIssuer};

/// Extracts and verifies the bearer token of a request.
#[derive(Clone)]
pub struct Authenticator {
    tokens: TokenIssuer,
}

impl Authenticator {
    pub fn new(tokens: TokenIssuer) -> Self {
        Self { tokens }
    }

    pub fn tokens(&self) -> &TokenIssuer {
        &self.tokens
    }

    /// The caller, whichever kind of token they hold.
    pub fn principal(&self, metadata: &MetadataMap) -> Result<Principal, ApiError> {
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
        match self.principal(metadata)? {
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
}

//! Access tokens (a signed-in user) and member tokens (one group, no account): HS256 JWTs
//! signed with the server's secret.

use std::time::Duration;

use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{MemberPrincipal, UserPrincipal};
use crate::error::ApiError;

const ISSUER: &str = "quickchat";
/// Clock skew tolerated when checking `exp`.
const LEEWAY_SECS: u64 = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum TokenKind {
    Access,
    Member,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    sub: Uuid,
    typ: TokenKind,
    name: String,
    /// The group a member token opens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    grp: Option<Uuid>,
    iat: i64,
    exp: i64,
}

/// Whoever a valid token names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    User(UserPrincipal),
    Member(MemberPrincipal),
}

impl Principal {
    /// The id messages are attributed to: the member id, or the user id for an owner.
    pub fn id(&self) -> Uuid {
        match self {
            Principal::User(u) => u.user_id,
            Principal::Member(m) => m.member_id,
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Principal::User(u) => &u.name,
            Principal::Member(m) => &m.name,
        }
    }
}

/// Signs and verifies QuickChat's own tokens.
#[derive(Clone)]
pub struct TokenIssuer {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    access_ttl: Duration,
    member_ttl: Duration,
}

impl TokenIssuer {
    pub fn new(secret: &SecretString, access_ttl: Duration, member_ttl: Duration) -> Self {
        let key = secret.expose_secret().as_bytes();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        validation.leeway = LEEWAY_SECS;
        Self {
            encoding: EncodingKey::from_secret(key),
            decoding: DecodingKey::from_secret(key),
            validation,
            access_ttl,
            member_ttl,
        }
    }

    /// A short-lived token for a signed-in user, and when it expires.
    pub fn issue_access(
        &self,
        user_id: Uuid,
        name: &str,
    ) -> anyhow::Result<(String, DateTime<Utc>)> {
        self.issue(TokenKind::Access, user_id, name, None, self.access_ttl)
    }

    /// A token that opens `group_id` (and nothing else) for a member, and when it expires.
    pub fn issue_member(
        &self,
        member_id: Uuid,
        group_id: Uuid,
        name: &str,
    ) -> anyhow::Result<(String, DateTime<Utc>)> {
        self.issue(
            TokenKind::Member,
            member_id,
            name,
            Some(group_id),
            self.member_ttl,
        )
    }

    fn issue(
        &self,
        typ: TokenKind,
        sub: Uuid,
        name: &str,
        grp: Option<Uuid>,
        ttl: Duration,
    ) -> anyhow::Result<(String, DateTime<Utc>)> {
        let now = Utc::now();
        let expires_at = now + chrono::Duration::from_std(ttl)?;
        let claims = Claims {
            iss: ISSUER.to_owned(),
            sub,
            typ,
            name: name.to_owned(),
            grp,
            iat: now.timestamp(),
            exp: expires_at.timestamp(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)?;
        Ok((
            token,
            DateTime::from_timestamp(claims.exp, 0).unwrap_or(expires_at),
        ))
    }

    /// The principal a token names, or `UNAUTHENTICATED` saying why not.
    pub fn verify(&self, token: &str) -> Result<Principal, ApiError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|err| match err.kind() {
                ErrorKind::ExpiredSignature => ApiError::unauthenticated("token has expired"),
                _ => ApiError::unauthenticated("token is not valid"),
            })?;
        let claims = data.claims;
        match (claims.typ, claims.grp) {
            (TokenKind::Access, None) => Ok(Principal::User(UserPrincipal {
                user_id: claims.sub,
                name: claims.name,
            })),
            (TokenKind::Member, Some(group_id)) => Ok(Principal::Member(MemberPrincipal {
                member_id: claims.sub,
                group_id,
                name: claims.name,
            })),
            _ => Err(ApiError::unauthenticated("token is not valid")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issuer() -> TokenIssuer {
        TokenIssuer::new(
            &SecretString::from("a test secret that is long enough".to_owned()),
            Duration::from_secs(900),
            Duration::from_secs(3600),
        )
    }

    #[test]
    fn access_and_member_tokens_round_trip() {
        let issuer = issuer();
        let user = Uuid::new_v4();
        let (token, _) = issuer.issue_access(user, "Ann").unwrap();
        assert_eq!(
            issuer.verify(&token).unwrap(),
            Principal::User(UserPrincipal {
                user_id: user,
                name: "Ann".into()
            })
        );
        let (member, group) = (Uuid::new_v4(), Uuid::new_v4());
        let (token, _) = issuer.issue_member(member, group, "Bob").unwrap();
        assert_eq!(
            issuer.verify(&token).unwrap(),
            Principal::Member(MemberPrincipal {
                member_id: member,
                group_id: group,
                name: "Bob".into()
            })
        );
    }

    #[test]
    fn a_token_signed_with_another_secret_is_rejected() {
        let other = TokenIssuer::new(
            &SecretString::from("another secret, also long enough".to_owned()),
            Duration::from_secs(900),
            Duration::from_secs(900),
        );
        let (token, _) = other.issue_access(Uuid::new_v4(), "Eve").unwrap();
        assert!(issuer().verify(&token).is_err());
    }
}

//! Access tokens (a signed-in user) and member tokens (one group, no account): HS256 JWTs
//! signed with the server's secret.
//!
//! # Keys and rotation
//!
//! A server has one signing key (`--jwt-secret`) and any number of verification-only keys
//! (`--jwt-previous-secret`, repeatable; `QUICKCHAT_JWT_PREVIOUS_SECRETS`, comma-separated).
//! Every token names its key in the `kid` header: the first 8 bytes, hex, of
//! SHA-256(`"quickchat-jwt-kid:"` ‖ secret). Every node derives the same id from the same
//! secret, so a cluster needs no extra configuration, and the id reveals nothing usable
//! about the secret. A token is checked against the key its `kid` names; an unknown `kid`
//! is `UNAUTHENTICATED`. A token without `kid` (issued before key ids existed) is checked
//! against the signing key only.
//!
//! To rotate (e.g. after a leak, or on a schedule):
//! 1. Generate a new secret (≥ 32 bytes, e.g. `openssl rand -base64 48`).
//! 2. Restart every node with `--jwt-secret NEW --jwt-previous-secret OLD`. Tokens signed
//!    with OLD keep working; new ones are signed with NEW. (During the rolling restart,
//!    nodes still on OLD alone refuse tokens signed with NEW: clients refresh and retry.)
//! 3. After the longest token lifetime has passed (`--member-token-ttl-secs`, default 30
//!    days; access tokens last `--access-token-ttl-secs`), restart without
//!    `--jwt-previous-secret OLD`. Tokens signed with OLD are refused from then on.
//!
//! After a leak, skip the wait: restart with NEW only. Access tokens signed with OLD are
//! refused; signed-in clients get new ones with their refresh token (opaque, stored hashed,
//! not signed with the secret), so their sessions survive. Member tokens cannot be
//! refreshed: members join their groups again.
//!
//! On the embedded default the generated secret is the file `jwt-secret` in `--data-dir`:
//! pass its contents as `--jwt-previous-secret` and the new secret as `--jwt-secret`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
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
    /// A member token's version: valid while it is the member's `token_version` (tokens
    /// issued before versions existed have none, which is version 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ver: Option<i64>,
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

/// One HS256 secret and the id tokens name it by.
#[derive(Clone)]
struct VerifyingKey {
    kid: String,
    decoding: DecodingKey,
}

impl VerifyingKey {
    fn new(secret: &SecretString) -> Self {
        Self {
            kid: key_id(secret),
            decoding: DecodingKey::from_secret(secret.expose_secret().as_bytes()),
        }
    }
}

/// The `kid` of tokens signed with `secret`: the same on every node that has the secret.
fn key_id(secret: &SecretString) -> String {
    let digest = Sha256::new()
        .chain_update(b"quickchat-jwt-kid:")
        .chain_update(secret.expose_secret().as_bytes())
        .finalize();
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// Signs and verifies QuickChat's own tokens.
#[derive(Clone)]
pub struct TokenIssuer {
    encoding: EncodingKey,
    /// The signing key's, then the previous keys'.
    keys: Vec<VerifyingKey>,
    validation: Validation,
    access_ttl: Duration,
    member_ttl: Duration,
}

impl TokenIssuer {
    /// Signs with `secret`; verifies tokens signed with it or with any of `previous`.
    pub fn new(
        secret: &SecretString,
        previous: &[SecretString],
        access_ttl: Duration,
        member_ttl: Duration,
    ) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        validation.leeway = LEEWAY_SECS;
        Self {
            encoding: EncodingKey::from_secret(secret.expose_secret().as_bytes()),
            keys: std::iter::once(secret)
                .chain(previous)
                .map(VerifyingKey::new)
                .collect(),
            validation,
            access_ttl,
            member_ttl,
        }
    }

    /// The `kid` of the tokens this issuer signs.
    pub fn signing_key_id(&self) -> &str {
        &self.keys[0].kid
    }

    /// A short-lived token for a signed-in user, and when it expires.
    pub fn issue_access(
        &self,
        user_id: Uuid,
        name: &str,
    ) -> anyhow::Result<(String, DateTime<Utc>)> {
        self.issue(TokenKind::Access, user_id, name, None, self.access_ttl)
    }

    /// A token that opens `group_id` (and nothing else) for a member, valid while the
    /// member's token version is `version`, and when it expires.
    pub fn issue_member(
        &self,
        member_id: Uuid,
        group_id: Uuid,
        name: &str,
        version: i64,
    ) -> anyhow::Result<(String, DateTime<Utc>)> {
        self.issue(
            TokenKind::Member,
            member_id,
            name,
            Some((group_id, version)),
            self.member_ttl,
        )
    }

    fn issue(
        &self,
        typ: TokenKind,
        sub: Uuid,
        name: &str,
        member_of: Option<(Uuid, i64)>,
        ttl: Duration,
    ) -> anyhow::Result<(String, DateTime<Utc>)> {
        let now = Utc::now();
        let expires_at = now + chrono::Duration::from_std(ttl)?;
        let claims = Claims {
            iss: ISSUER.to_owned(),
            sub,
            typ,
            name: name.to_owned(),
            grp: member_of.map(|(group, _)| group),
            ver: member_of.map(|(_, version)| version),
            iat: now.timestamp(),
            exp: expires_at.timestamp(),
        };
        let header = Header {
            kid: Some(self.signing_key_id().to_owned()),
            ..Header::new(Algorithm::HS256)
        };
        let token = jsonwebtoken::encode(&header, &claims, &self.encoding)?;
        Ok((
            token,
            DateTime::from_timestamp(claims.exp, 0).unwrap_or(expires_at),
        ))
    }

    /// The principal a token names, or `UNAUTHENTICATED` saying why not.
    pub fn verify(&self, token: &str) -> Result<Principal, ApiError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| ApiError::unauthenticated("token is not valid"))?;
        // No kid: issued before key ids existed, so by the signing key (if by any).
        let key = match header.kid.as_deref() {
            None => &self.keys[0],
            Some(kid) => self.keys.iter().find(|k| k.kid == kid).ok_or_else(|| {
                ApiError::unauthenticated(
                    "token was signed with a key this server no longer accepts",
                )
            })?,
        };
        let data = jsonwebtoken::decode::<Claims>(token, &key.decoding, &self.validation).map_err(
            |err| match err.kind() {
                ErrorKind::ExpiredSignature => ApiError::unauthenticated("token has expired"),
                _ => ApiError::unauthenticated("token is not valid"),
            },
        )?;
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
                version: claims.ver.unwrap_or(0),
            })),
            _ => Err(ApiError::unauthenticated("token is not valid")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(text: &str) -> SecretString {
        SecretString::from(text.to_owned())
    }

    fn issuer_with(signing: &str, previous: &[&str]) -> TokenIssuer {
        let previous: Vec<SecretString> = previous.iter().map(|p| secret(p)).collect();
        TokenIssuer::new(
            &secret(signing),
            &previous,
            Duration::from_secs(900),
            Duration::from_secs(3600),
        )
    }

    fn issuer() -> TokenIssuer {
        issuer_with("a test secret that is long enough", &[])
    }

    /// A token like those issued before key ids existed: no `kid` header.
    fn token_without_kid(signing: &str) -> String {
        let now = Utc::now().timestamp();
        let claims = Claims {
            iss: ISSUER.to_owned(),
            sub: Uuid::new_v4(),
            typ: TokenKind::Access,
            name: "Old".into(),
            grp: None,
            ver: None,
            iat: now,
            exp: now + 600,
        };
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(signing.as_bytes()),
        )
        .unwrap()
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
        let (token, _) = issuer.issue_member(member, group, "Bob", 3).unwrap();
        assert_eq!(
            issuer.verify(&token).unwrap(),
            Principal::Member(MemberPrincipal {
                member_id: member,
                group_id: group,
                name: "Bob".into(),
                version: 3,
            })
        );
    }

    #[test]
    fn a_token_signed_with_another_secret_is_rejected() {
        let other = issuer_with("another secret, also long enough", &[]);
        let (token, _) = other.issue_access(Uuid::new_v4(), "Eve").unwrap();
        assert!(issuer().verify(&token).is_err());
    }

    #[test]
    fn tokens_name_their_key_and_every_node_derives_the_same_id() {
        let a = issuer_with("the first secret, long enough too", &[]);
        let b = issuer_with("the first secret, long enough too", &["an old one"]);
        let (token, _) = a.issue_access(Uuid::new_v4(), "Ann").unwrap();
        let kid = jsonwebtoken::decode_header(&token).unwrap().kid;
        assert_eq!(kid.as_deref(), Some(a.signing_key_id()));
        assert_eq!(a.signing_key_id(), b.signing_key_id());
        assert_eq!(a.signing_key_id().len(), 16);
        assert_ne!(a.signing_key_id(), issuer().signing_key_id());
    }

    #[test]
    fn previous_keys_verify_but_never_sign() {
        let old = issuer_with("the old secret, long enough to use", &[]);
        let rotated = issuer_with(
            "the new secret, long enough to use",
            &["the old secret, long enough to use"],
        );
        let (token, _) = old.issue_access(Uuid::new_v4(), "Ann").unwrap();
        assert!(rotated.verify(&token).is_ok());
        let (token, _) = rotated.issue_access(Uuid::new_v4(), "Ann").unwrap();
        assert!(old.verify(&token).is_err(), "signed with the new key");
    }

    #[test]
    fn a_token_without_kid_verifies_against_the_signing_key_only() {
        let rotated = issuer_with(
            "the new secret, long enough to use",
            &["the old secret, long enough to use"],
        );
        assert!(
            rotated
                .verify(&token_without_kid("the new secret, long enough to use"))
                .is_ok()
        );
        assert!(
            rotated
                .verify(&token_without_kid("the old secret, long enough to use"))
                .is_err()
        );
    }
}

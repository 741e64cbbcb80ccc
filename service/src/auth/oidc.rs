//! Sign-in with an OpenID Connect ID token (Google-compatible): the token must be RS256,
//! signed by one of the issuer's published keys (JWKS, fetched and cached), with our
//! `iss`, our client id as `aud`, and an unexpired `exp`.

use std::collections::HashMap;
use std::time::Duration;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::error::ApiError;
use crate::settings::OidcSettings;

/// Keys are refetched after this long, so a rotation is picked up.
const KEYS_TTL: Duration = Duration::from_secs(10 * 60);
/// An unknown `kid` triggers a refetch at most this often, so bad tokens cannot make us
/// hammer the issuer.
const MIN_REFETCH_INTERVAL: Duration = Duration::from_secs(30);
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// What the server takes from a verified ID token.
#[derive(Debug, Clone, Deserialize)]
pub struct IdentityClaims {
    pub sub: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub email_verified: Option<bool>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub picture: Option<String>,
}

#[derive(Default)]
struct KeyCache {
    /// Keys by `kid` ("" for a key published without one).
    keys: HashMap<String, DecodingKey>,
    fetched_at: Option<Instant>,
}

pub struct OidcVerifier {
    settings: OidcSettings,
    http: reqwest::Client,
    validation: Validation,
    cache: Mutex<KeyCache>,
}

#[derive(Deserialize)]
struct Discovery {
    jwks_uri: String,
}

impl OidcVerifier {
    pub fn new(settings: OidcSettings) -> anyhow::Result<Self> {
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[settings.issuer.as_str()]);
        validation.set_audience(&[settings.client_id.as_str()]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 30;
        let http = reqwest::Client::builder().timeout(HTTP_TIMEOUT).build()?;
        Ok(Self {
            settings,
            http,
            validation,
            cache: Mutex::new(KeyCache::default()),
        })
    }

    pub fn provider(&self) -> &str {
        &self.settings.provider
    }

    /// The claims of a valid ID token, `UNAUTHENTICATED` for an invalid one, `UNAVAILABLE`
    /// when the issuer's keys cannot be fetched.
    pub async fn verify(&self, id_token: &str) -> Result<IdentityClaims, ApiError> {
        let header = jsonwebtoken::decode_header(id_token)
            .map_err(|_| ApiError::unauthenticated("ID token is not a valid JWT"))?;
        if header.alg != Algorithm::RS256 {
            return Err(ApiError::unauthenticated(
                "ID token must be signed with RS256",
            ));
        }
        let kid = header.kid.unwrap_or_default();
        let key = self.key(&kid).await?;
        let data = jsonwebtoken::decode::<IdentityClaims>(id_token, &key, &self.validation)
            .map_err(|err| {
                let reason = match err.kind() {
                    ErrorKind::ExpiredSignature => "ID token has expired",
                    ErrorKind::InvalidIssuer => "ID token was issued by another issuer",
                    ErrorKind::InvalidAudience => "ID token was issued for another client",
                    _ => "ID token is not valid",
                };
                ApiError::unauthenticated(reason)
            })?;
        Ok(data.claims)
    }

    async fn key(&self, kid: &str) -> Result<DecodingKey, ApiError> {
        let mut cache = self.cache.lock().await;
        let age = cache.fetched_at.map(|t| t.elapsed());
        let stale = age.is_none_or(|a| a >= KEYS_TTL);
        let unknown = !cache.keys.contains_key(kid);
        if stale || (unknown && age.is_some_and(|a| a >= MIN_REFETCH_INTERVAL)) {
            match self.fetch_keys().await {
                Ok(keys) => {
                    cache.keys = keys;
                    cache.fetched_at = Some(Instant::now());
                }
                Err(err) if cache.keys.is_empty() => {
                    tracing::warn!(error = %err, "could not fetch the identity provider's keys");
                    return Err(ApiError::Unavailable(
                        "the identity provider's keys could not be fetched; try again later".into(),
                    ));
                }
                // Keep serving the keys we have; the next request retries.
                Err(err) => {
                    tracing::warn!(error = %err, "could not refresh the identity provider's keys")
                }
            }
        }
        cache
            .keys
            .get(kid)
            .cloned()
            .ok_or_else(|| ApiError::unauthenticated("ID token is signed with an unknown key"))
    }

    async fn fetch_keys(&self) -> anyhow::Result<HashMap<String, DecodingKey>> {
        let jwks_url = match &self.settings.jwks_url {
            Some(url) => url.clone(),
            None => {
                let discovery = format!(
                    "{}/.well-known/openid-configuration",
                    self.settings.issuer.trim_end_matches('/')
                );
                let doc: Discovery = self
                    .http
                    .get(&discovery)
                    .send()
                    .await?
                    .error_for_status()?
                    .json()
                    .await?;
                doc.jwks_uri
            }
        };
        let set: JwkSet = self
            .http
            .get(&jwks_url)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            // Skip keys we cannot use (other key types or algorithms) rather than failing.
            if let Ok(key) = DecodingKey::from_jwk(jwk) {
                keys.insert(jwk.common.key_id.clone().unwrap_or_default(), key);
            }
        }
        anyhow::ensure!(!keys.is_empty(), "the JWKS at {jwks_url} has no usable key");
        Ok(keys)
    }
}

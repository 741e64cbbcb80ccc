//! The issuer's signing keys (JWKS), fetched and cached: refetched after [`KEYS_TTL`] so a
//! rotation is picked up, and when a token names a key we do not know — at most every
//! [`MIN_REFETCH_INTERVAL`], so bad tokens cannot make us hammer the issuer.

use std::collections::HashMap;
use std::time::Duration;

use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::JwkSet;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::error::ApiError;

const KEYS_TTL: Duration = Duration::from_secs(10 * 60);
const MIN_REFETCH_INTERVAL: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Cached {
    /// Keys by `kid` ("" for a key published without one).
    keys: HashMap<String, DecodingKey>,
    fetched_at: Option<Instant>,
}

#[derive(Default)]
pub struct Keys {
    cached: Mutex<Cached>,
}

impl Keys {
    /// The key named `kid`. `fetch` gives the current key set when the cache needs it.
    /// `UNAUTHENTICATED` for a key the issuer does not publish, `UNAVAILABLE` when there are
    /// no keys at all because they cannot be fetched.
    pub async fn get<F, Fut>(&self, kid: &str, fetch: F) -> Result<DecodingKey, ApiError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = anyhow::Result<JwkSet>>,
    {
        let mut cache = self.cached.lock().await;
        let age = cache.fetched_at.map(|t| t.elapsed());
        let stale = age.is_none_or(|a| a >= KEYS_TTL);
        let unknown = !cache.keys.contains_key(kid);
        if stale || (unknown && age.is_some_and(|a| a >= MIN_REFETCH_INTERVAL)) {
            match fetch().await.and_then(usable) {
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
}

/// The keys of `set` we can verify with, by `kid`; other key types and algorithms are
/// skipped rather than failing the whole set.
fn usable(set: JwkSet) -> anyhow::Result<HashMap<String, DecodingKey>> {
    let mut keys = HashMap::new();
    for jwk in &set.keys {
        if let Ok(key) = DecodingKey::from_jwk(jwk) {
            keys.insert(jwk.common.key_id.clone().unwrap_or_default(), key);
        }
    }
    anyhow::ensure!(!keys.is_empty(), "the JWKS has no usable key");
    Ok(keys)
}

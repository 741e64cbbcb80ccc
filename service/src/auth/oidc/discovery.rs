//! The issuer's OpenID discovery document (`{issuer}/.well-known/openid-configuration`):
//! where its keys, its authorization endpoint and its token endpoint are. Fetched when first
//! needed and kept for [`TTL`]; after a failed fetch nothing is fetched again for
//! [`RETRY_AFTER`], so anonymous callers cannot make the server hammer a provider that is
//! down (or wait on it one after another).

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// The document is refetched after this long, so a provider's changes are picked up.
const TTL: Duration = Duration::from_secs(10 * 60);
/// After a failed fetch, the next one waits this long.
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// The fields of a discovery document the server uses.
#[derive(Debug, Deserialize)]
pub struct Document {
    pub jwks_uri: String,
    #[serde(default)]
    pub authorization_endpoint: Option<String>,
    #[serde(default)]
    pub token_endpoint: Option<String>,
    /// How the token endpoint wants a confidential client to authenticate; absent means
    /// `client_secret_basic` (OpenID Connect Discovery 1.0, section 3).
    #[serde(default)]
    pub token_endpoint_auth_methods_supported: Option<Vec<String>>,
}

#[derive(Default)]
struct Cached {
    document: Option<(Arc<Document>, Instant)>,
    failed_at: Option<Instant>,
}

pub struct Discovery {
    url: String,
    cached: Mutex<Cached>,
}

impl Discovery {
    pub fn new(issuer: &str) -> Self {
        Self {
            url: format!(
                "{}/.well-known/openid-configuration",
                issuer.trim_end_matches('/')
            ),
            cached: Mutex::new(Cached::default()),
        }
    }

    /// The document: the cached one while it is fresh, else a fetched one; a stale one when
    /// the fetch fails. `Err` (logged here) when there is none to give.
    pub async fn get(&self, http: &reqwest::Client) -> anyhow::Result<Arc<Document>> {
        let mut cached = self.cached.lock().await;
        if let Some((doc, at)) = &cached.document
            && at.elapsed() < TTL
        {
            return Ok(doc.clone());
        }
        if let Some(failed_at) = cached.failed_at
            && failed_at.elapsed() < RETRY_AFTER
        {
            return match &cached.document {
                Some((doc, _)) => Ok(doc.clone()),
                None => Err(anyhow::anyhow!(
                    "the discovery document could not be fetched moments ago"
                )),
            };
        }
        match self.fetch(http).await {
            Ok(doc) => {
                let doc = Arc::new(doc);
                cached.document = Some((doc.clone(), Instant::now()));
                cached.failed_at = None;
                Ok(doc)
            }
            Err(err) => {
                cached.failed_at = Some(Instant::now());
                tracing::warn!(error = %err, url = %self.url, "could not fetch the identity provider's discovery document");
                match &cached.document {
                    // Keep serving what we had; the provider's endpoints rarely move.
                    Some((doc, _)) => Ok(doc.clone()),
                    None => Err(err),
                }
            }
        }
    }

    async fn fetch(&self, http: &reqwest::Client) -> anyhow::Result<Document> {
        Ok(http
            .get(&self.url)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }
}

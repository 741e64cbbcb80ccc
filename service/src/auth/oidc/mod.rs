//! Sign-in with OpenID Connect (Google-compatible), two ways in with one check:
//!
//! - an ID token the client got by itself (`LoginWithIdToken`);
//! - an authorization code with PKCE (`LoginWithAuthorizationCode`): the browser sends the
//!   person to the provider's authorization endpoint and brings back a code, which the server
//!   trades at the provider's token endpoint ([`token`]) for an ID token.
//!
//! Either way the ID token must be RS256, signed by one of the issuer's published keys
//! ([`keys`], found through the discovery document, [`discovery`]), with our `iss`, our
//! client id as `aud` and an unexpired `exp`; a code sign-in also needs the nonce its browser
//! chose.

mod discovery;
mod keys;
mod token;

use std::time::Duration;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, Validation, errors::ErrorKind};
use secrecy::SecretString;
use serde::Deserialize;
use url::Url;

use crate::error::ApiError;
use discovery::Discovery;
use keys::Keys;

#[derive(Debug, Clone)]
pub struct OidcSettings {
    /// The `iss` every ID token must carry, e.g. `https://accounts.google.com`.
    pub issuer: String,
    /// Our OAuth client id: the `aud` every ID token must carry.
    pub client_id: String,
    /// Where to fetch the issuer's signing keys; `None` means OpenID discovery
    /// (`{issuer}/.well-known/openid-configuration`).
    pub jwks_url: Option<String>,
    /// Stored as the user's `provider`, e.g. `google`.
    pub provider: String,
    /// The provider's name for people, on the browser app's "Sign in with …" button.
    pub display_name: String,
    /// The secret of our OAuth client, sent to the token endpoint when the server trades an
    /// authorization code (Google's web-application clients need it even with PKCE); `None`
    /// for a public client, where PKCE alone is enough.
    pub client_secret: Option<SecretString>,
    /// The redirect URIs an authorization code may have been sent to (those registered at
    /// the provider). Empty means `/auth/callback` on each origin whose pages may call the
    /// API (the server's own, or the `--cors-origin` list).
    pub redirect_uris: Vec<String>,
}

impl OidcSettings {
    /// The display name when none is configured: the provider name, capitalised
    /// (`google` → `Google`).
    pub fn display_name_for(provider: &str) -> String {
        let mut chars = provider.chars();
        match chars.next() {
            Some(first) => first.to_uppercase().chain(chars).collect(),
            None => "OpenID Connect".to_owned(),
        }
    }
}

const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// Where the browser app receives the code (its `/auth/callback` page).
pub const CALLBACK_PATH: &str = "/auth/callback";

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
    /// The nonce of the authorization request that led to this token, if any.
    #[serde(default)]
    pub nonce: Option<String>,
}

/// The configured OpenID Connect provider: verifies its ID tokens and trades its
/// authorization codes.
pub struct Oidc {
    settings: OidcSettings,
    http: reqwest::Client,
    validation: Validation,
    discovery: Discovery,
    keys: Keys,
    /// The redirect URIs a code may have been sent to.
    redirect_uris: Vec<Url>,
}

impl Oidc {
    /// `browser_origins` are the origins whose pages may call the API (CORS): without
    /// `--oidc-redirect-uri`, their `/auth/callback` pages are the redirect URIs allowed.
    pub fn new(settings: OidcSettings, browser_origins: &[String]) -> anyhow::Result<Self> {
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[settings.issuer.as_str()]);
        validation.set_audience(&[settings.client_id.as_str()]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 30;
        let http = reqwest::Client::builder().timeout(HTTP_TIMEOUT).build()?;
        let redirect_uris = if settings.redirect_uris.is_empty() {
            browser_origins
                .iter()
                .map(|origin| Url::parse(&format!("{origin}{CALLBACK_PATH}")))
                .collect::<Result<Vec<_>, _>>()?
        } else {
            settings
                .redirect_uris
                .iter()
                .map(|raw| {
                    let uri = Url::parse(raw.trim()).map_err(|err| {
                        anyhow::anyhow!("--oidc-redirect-uri {raw:?} is not a URL: {err}")
                    })?;
                    anyhow::ensure!(
                        matches!(uri.scheme(), "http" | "https") && uri.fragment().is_none(),
                        "--oidc-redirect-uri {raw:?} must be an http(s) URL without a fragment"
                    );
                    Ok(uri)
                })
                .collect::<anyhow::Result<Vec<_>>>()?
        };
        if redirect_uris.is_empty() {
            tracing::warn!(
                "sign-in with an authorization code is off: with --cors-origin '*' list the \
                 callback URLs registered at the provider with --oidc-redirect-uri"
            );
        }
        Ok(Self {
            discovery: Discovery::new(&settings.issuer),
            settings,
            http,
            validation,
            keys: Keys::default(),
            redirect_uris,
        })
    }

    /// Stored as the `provider` of the users who sign in here.
    pub fn provider(&self) -> &str {
        &self.settings.provider
    }

    pub fn issuer(&self) -> &str {
        &self.settings.issuer
    }

    pub fn client_id(&self) -> &str {
        &self.settings.client_id
    }

    /// The provider's name for people, e.g. "Google".
    pub fn display_name(&self) -> &str {
        &self.settings.display_name
    }

    /// Where a browser starts a sign-in; `None` while the provider cannot be reached.
    pub async fn authorization_endpoint(&self) -> Option<String> {
        let discovery = self.discovery.get(&self.http).await.ok()?;
        if discovery.authorization_endpoint.is_none() {
            tracing::warn!(
                "the identity provider's discovery document names no authorization_endpoint"
            );
        }
        discovery.authorization_endpoint.clone()
    }

    /// Whether a code sent to `redirect_uri` may be traded here (compared as parsed URLs, so
    /// spelling differences such as an explicit default port do not matter).
    fn allows_redirect(&self, redirect_uri: &str) -> bool {
        Url::parse(redirect_uri).is_ok_and(|uri| self.redirect_uris.contains(&uri))
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
        let key = self.keys.get(&kid, || self.fetch_keys()).await?;
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

    async fn fetch_keys(&self) -> anyhow::Result<JwkSet> {
        let jwks_url = match &self.settings.jwks_url {
            Some(url) => url.clone(),
            None => self.discovery.get(&self.http).await?.jwks_uri.clone(),
        };
        Ok(self
            .http
            .get(&jwks_url)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }
}

//! The authorization-code exchange (OAuth 2.0, RFC 6749 section 4.1.3, with PKCE, RFC 7636):
//! the browser brought back a code; the server trades it at the provider's token endpoint for
//! an ID token. The server does it, not the browser, because providers such as Google give
//! their web clients a secret that the token endpoint requires even with PKCE, and a secret
//! cannot live in a page. For a public client (no `--oidc-client-secret`) PKCE alone proves
//! that the caller is the browser that started the sign-in.

use reqwest::header::ACCEPT;
use secrecy::ExposeSecret;
use serde::Deserialize;

use super::{IdentityClaims, Oidc};
use crate::domain::{CodeGrant, FieldViolation};
use crate::error::ApiError;

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    id_token: Option<String>,
}

#[derive(Deserialize)]
struct TokenError {
    #[serde(default)]
    error: String,
}

fn unavailable() -> ApiError {
    ApiError::Unavailable("The identity provider cannot be reached; try again later.".into())
}

/// A client credential in HTTP Basic authentication is form-urlencoded first (RFC 6749
/// section 2.3.1).
fn form_encoded(raw: &str) -> String {
    url::form_urlencoded::byte_serialize(raw.as_bytes()).collect()
}

impl Oidc {
    /// The identity of the person who signed in at the provider and came back with
    /// `grant`. `INVALID_ARGUMENT` for a redirect URI this server does not allow (so it
    /// cannot be used to trade codes meant for someone else's page), `UNAUTHENTICATED` when
    /// the provider refuses the code or the ID token is invalid or for another sign-in (its
    /// nonce), `UNAVAILABLE` when the provider cannot be reached.
    pub async fn exchange(&self, grant: &CodeGrant) -> Result<IdentityClaims, ApiError> {
        if !self.allows_redirect(grant.redirect_uri()) {
            tracing::info!(
                redirect_uri = grant.redirect_uri(),
                "code sign-in refused: redirect uri not allowed"
            );
            return Err(ApiError::invalid(FieldViolation::new(
                "redirect_uri",
                "This redirect URI is not allowed on this server.",
            )));
        }
        let discovery = self
            .discovery
            .get(&self.http)
            .await
            .map_err(|_| unavailable())?;
        let endpoint = discovery.token_endpoint.as_deref().ok_or_else(|| {
            anyhow::anyhow!("the identity provider's discovery document names no token_endpoint")
        })?;
        let client_id = self.settings.client_id.as_str();
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", grant.code()),
            ("redirect_uri", grant.redirect_uri()),
            ("code_verifier", grant.code_verifier()),
        ];
        let mut request = self.http.post(endpoint).header(ACCEPT, "application/json");
        match &self.settings.client_secret {
            None => form.push(("client_id", client_id)),
            Some(secret) => {
                // The spec's default is HTTP Basic; a provider that lists only
                // client_secret_post gets the secret in the form.
                let post_only = discovery
                    .token_endpoint_auth_methods_supported
                    .as_ref()
                    .is_some_and(|methods| {
                        !methods.iter().any(|m| m == "client_secret_basic")
                            && methods.iter().any(|m| m == "client_secret_post")
                    });
                if post_only {
                    form.push(("client_id", client_id));
                    form.push(("client_secret", secret.expose_secret()));
                } else {
                    request = request.basic_auth(
                        form_encoded(client_id),
                        Some(form_encoded(secret.expose_secret())),
                    );
                }
            }
        }
        let response = request.form(&form).send().await.map_err(|err| {
            tracing::warn!(error = %err, "could not reach the identity provider's token endpoint");
            unavailable()
        })?;
        let status = response.status();
        if status.is_client_error() {
            let error = response
                .json::<TokenError>()
                .await
                .map(|e| e.error)
                .unwrap_or_default();
            if matches!(error.as_str(), "invalid_client" | "unauthorized_client") {
                return Err(anyhow::anyhow!(
                    "the identity provider refused this server's client credentials ({error}); \
                     check --oidc-client-id and --oidc-client-secret"
                )
                .into());
            }
            tracing::info!(%status, error, "the identity provider refused an authorization code");
            return Err(ApiError::unauthenticated(
                "The sign-in code was not accepted (it may have expired or been used already). \
                 Sign in again.",
            ));
        }
        if !status.is_success() {
            tracing::warn!(%status, "the identity provider's token endpoint failed");
            return Err(unavailable());
        }
        let answer: TokenResponse = response.json().await.map_err(|err| {
            tracing::warn!(error = %err, "the identity provider's token answer is not readable");
            unavailable()
        })?;
        let id_token = answer.id_token.ok_or_else(|| {
            tracing::info!("the identity provider's token answer holds no id token");
            ApiError::unauthenticated("The identity provider returned no ID token. Sign in again.")
        })?;
        let claims = self.verify(&id_token).await?;
        if claims.nonce.as_deref() != Some(grant.nonce()) {
            tracing::info!("code sign-in refused: the id token's nonce does not match");
            return Err(ApiError::unauthenticated(
                "The ID token was issued for another sign-in (its nonce does not match). Sign in \
                 again.",
            ));
        }
        Ok(claims)
    }
}

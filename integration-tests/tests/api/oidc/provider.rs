//! A local OpenID Connect provider for the tests: discovery, JWKS (the test's RSA key) and a
//! token endpoint that trades authorization codes as a real provider does (one use, the
//! redirect URI of the authorization request, the PKCE S256 verifier, the client's
//! credentials). The test plays the person at the authorization endpoint: [`Provider::approve`]
//! hands out the code the provider would have appended to the redirect URI.
//!
//! It is reached through a [`CuttableProxy`], so a test can take it off the network.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use quickchat_integration_tests::proxy::CuttableProxy;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{CLIENT_ID, KID, id_token, keys};

/// How the token endpoint wants our server to prove it is the client.
#[derive(Clone, Copy, Debug)]
pub enum ClientAuth {
    /// A public client: `client_id` in the form and no secret (PKCE alone).
    Public,
    /// A confidential client, secret in HTTP Basic (the spec's default, and Google's).
    SecretBasic(&'static str),
    /// A confidential client, `client_id` and `client_secret` in the form; discovery lists
    /// only this method.
    SecretPost(&'static str),
}

/// What the person approved at the authorization endpoint.
struct Approval {
    redirect_uri: String,
    code_challenge: String,
    claims: Value,
}

struct Shared {
    issuer: String,
    client_auth: ClientAuth,
    approvals: Mutex<HashMap<String, Approval>>,
    token_requests: AtomicUsize,
    token_endpoint_broken: AtomicBool,
}

pub struct Provider {
    pub issuer: String,
    shared: Arc<Shared>,
    proxy: CuttableProxy,
}

/// A PKCE pair: a code verifier and its S256 challenge.
pub fn pkce() -> (String, String) {
    let verifier = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

impl Provider {
    pub async fn start(client_auth: ClientAuth) -> Provider {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = CuttableProxy::start(listener.local_addr().unwrap()).await;
        let issuer = format!("http://{}", proxy.addr);
        let shared = Arc::new(Shared {
            issuer: issuer.clone(),
            client_auth,
            approvals: Mutex::new(HashMap::new()),
            token_requests: AtomicUsize::new(0),
            token_endpoint_broken: AtomicBool::new(false),
        });
        let router = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route(
                "/jwks",
                get(|| async { Json(json!({ "keys": [keys().0.jwk] })) }),
            )
            .route("/token", post(token))
            .with_state(shared.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
        Provider {
            issuer,
            shared,
            proxy,
        }
    }

    /// The person signs in at the provider as `claims` (the provider adds `iss`, `aud`,
    /// times and `nonce`) for an authorization request with these parameters; returns the
    /// code the provider appends to `redirect_uri`.
    pub fn approve(
        &self,
        redirect_uri: &str,
        code_challenge: &str,
        nonce: &str,
        mut claims: Value,
    ) -> String {
        let now = chrono::Utc::now().timestamp();
        for (k, v) in [
            ("iss", json!(self.issuer)),
            ("aud", json!(CLIENT_ID)),
            ("iat", json!(now)),
            ("exp", json!(now + 600)),
            ("nonce", json!(nonce)),
        ] {
            claims[k] = v;
        }
        let code = format!("4/{}", URL_SAFE_NO_PAD.encode(rand::random::<[u8; 24]>()));
        self.shared.approvals.lock().unwrap().insert(
            code.clone(),
            Approval {
                redirect_uri: redirect_uri.to_owned(),
                code_challenge: code_challenge.to_owned(),
                claims,
            },
        );
        code
    }

    /// Calls the token endpoint has had.
    pub fn token_requests(&self) -> usize {
        self.shared.token_requests.load(Ordering::SeqCst)
    }

    /// The token endpoint fails with a 503 whose body holds internal details.
    pub fn break_token_endpoint(&self) {
        self.shared
            .token_endpoint_broken
            .store(true, Ordering::SeqCst);
    }

    /// Takes the provider off the network: connections are closed and refused.
    pub fn cut(&self) {
        self.proxy.cut();
    }
}

async fn discovery(State(shared): State<Arc<Shared>>) -> Json<Value> {
    let issuer = &shared.issuer;
    let methods = match shared.client_auth {
        ClientAuth::SecretPost(_) => json!(["client_secret_post"]),
        _ => json!(["client_secret_basic", "client_secret_post"]),
    };
    Json(json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "jwks_uri": format!("{issuer}/jwks"),
        "token_endpoint_auth_methods_supported": methods,
        "code_challenge_methods_supported": ["S256"],
    }))
}

fn oauth_error(status: StatusCode, error: &str) -> Response {
    (status, Json(json!({ "error": error }))).into_response()
}

async fn token(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: String) -> Response {
    shared.token_requests.fetch_add(1, Ordering::SeqCst);
    if shared.token_endpoint_broken.load(Ordering::SeqCst) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "token-db.internal:5432 refused the connection\n  at TokenStore::load (store.rs:88)",
        )
            .into_response();
    }
    let form: HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let field = |name: &str| form.get(name).map(String::as_str);
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|v| STANDARD.decode(v).ok())
        .and_then(|v| String::from_utf8(v).ok());
    let client_ok = match shared.client_auth {
        ClientAuth::Public => {
            field("client_id") == Some(CLIENT_ID)
                && field("client_secret").is_none()
                && basic.is_none()
        }
        ClientAuth::SecretBasic(secret) => basic.as_deref().is_some_and(|creds| {
            creds.split_once(':').is_some_and(|(id, s)| {
                let decode = |v: &str| -> String {
                    url::form_urlencoded::parse(format!("v={v}").as_bytes())
                        .next()
                        .map(|(_, v)| v.into_owned())
                        .unwrap_or_default()
                };
                decode(id) == CLIENT_ID && decode(s) == secret
            })
        }),
        ClientAuth::SecretPost(secret) => {
            field("client_id") == Some(CLIENT_ID) && field("client_secret") == Some(secret)
        }
    };
    if !client_ok {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    if field("grant_type") != Some("authorization_code") {
        return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type");
    }
    // A code works once, whatever happens next.
    let Some(approval) = field("code").and_then(|c| shared.approvals.lock().unwrap().remove(c))
    else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    };
    let challenge =
        field("code_verifier").map(|v| URL_SAFE_NO_PAD.encode(Sha256::digest(v.as_bytes())));
    if field("redirect_uri") != Some(approval.redirect_uri.as_str())
        || challenge.as_deref() != Some(approval.code_challenge.as_str())
    {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    }
    Json(json!({
        "access_token": "opaque-access-token",
        "token_type": "Bearer",
        "expires_in": 3600,
        "id_token": id_token(&keys().0, KID, approval.claims),
    }))
    .into_response()
}

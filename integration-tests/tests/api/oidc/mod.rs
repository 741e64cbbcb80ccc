//! Sign-in with OpenID Connect against a local provider ([`provider`]): discovery, a JWKS
//! serving an RSA key the test generated, and a token endpoint. Here an ID token the client
//! brings; in [`code`] an authorization code the server trades.

mod code;
mod provider;

use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use quickchat_proto::v1;
use quickchat_service::Settings;
use quickchat_service::auth::oidc::OidcSettings;
use rsa::pkcs1::{EncodeRsaPrivateKey, LineEnding};
use rsa::traits::PublicKeyParts;
use secrecy::SecretString;
use serde_json::{Value, json};
use tonic::Code;

use provider::{ClientAuth, Provider};

use crate::helpers::{TestApp, expect_code, spawn_app, spawn_app_with};

const CLIENT_ID: &str = "quickchat-test-client";
const KID: &str = "test-key-1";

struct TestKey {
    encoding: EncodingKey,
    jwk: Value,
    /// The public key as an attacker would find it: PEM (SPKI) text.
    public_pem: String,
}

fn generate_key(kid: &str) -> TestKey {
    let private = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).expect("generate RSA key");
    let pem = private.to_pkcs1_pem(LineEnding::LF).expect("PEM");
    let public = private.to_public_key();
    let public_pem = rsa::pkcs8::EncodePublicKey::to_public_key_pem(&public, LineEnding::LF)
        .expect("public PEM");
    TestKey {
        public_pem,
        encoding: EncodingKey::from_rsa_pem(pem.as_bytes()).expect("encoding key"),
        jwk: json!({
            "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
            "n": URL_SAFE_NO_PAD.encode(public.n().to_bytes_be()),
            "e": URL_SAFE_NO_PAD.encode(public.e().to_bytes_be()),
        }),
    }
}

/// The issuer's key, and a key nobody published.
fn keys() -> &'static (TestKey, TestKey) {
    static KEYS: OnceLock<(TestKey, TestKey)> = OnceLock::new();
    KEYS.get_or_init(|| (generate_key(KID), generate_key(KID)))
}

/// A server signing in with a fresh local provider that authenticates clients as
/// `client_auth`; the server holds `client_secret`. `configure` is applied last.
async fn app_with(
    client_auth: ClientAuth,
    client_secret: Option<&str>,
    configure: impl FnOnce(&mut Settings),
) -> (TestApp, Provider) {
    let provider = Provider::start(client_auth).await;
    let issuer = provider.issuer.clone();
    let client_secret = client_secret.map(|s| SecretString::from(s.to_owned()));
    let app = spawn_app_with(move |s| {
        s.oidc = Some(OidcSettings {
            issuer,
            client_id: CLIENT_ID.into(),
            jwks_url: None,
            provider: "google".into(),
            display_name: "Google".into(),
            client_secret,
            redirect_uris: Vec::new(),
        });
        configure(s);
    })
    .await;
    (app, provider)
}

async fn app_with_issuer() -> (TestApp, String) {
    let (app, provider) = app_with(ClientAuth::Public, None, |_| {}).await;
    (app, provider.issuer)
}

fn id_token(key: &TestKey, kid: &str, claims: Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.into());
    jsonwebtoken::encode(&header, &claims, &key.encoding).unwrap()
}

fn claims(issuer: &str, sub: &str, name: &str) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({
        "iss": issuer, "aud": CLIENT_ID, "sub": sub, "iat": now, "exp": now + 600,
        "email": format!("{sub}@gmail.example"), "email_verified": true,
        "name": name, "picture": "https://example.com/me.png",
    })
}

async fn sign_in(app: &TestApp, token: String) -> Result<v1::Session, tonic::Status> {
    app.auth()
        .login_with_id_token(v1::LoginWithIdTokenRequest { id_token: token })
        .await
        .map(|r| r.into_inner().session.unwrap())
}

#[tokio::test]
async fn first_sign_in_creates_the_user_and_later_ones_find_it() {
    let (app, issuer) = app_with_issuer().await;
    let key = &keys().0;

    let first = sign_in(
        &app,
        id_token(key, KID, claims(&issuer, "1001", "Grace Hopper")),
    )
    .await
    .unwrap();
    let user = first.user.clone().unwrap();
    assert_eq!(
        (
            user.name.as_str(),
            user.email.as_str(),
            user.provider.as_str(),
            user.image_url.as_str()
        ),
        (
            "Grace Hopper",
            "1001@gmail.example",
            "google",
            "https://example.com/me.png"
        )
    );
    app.auth()
        .get_me(crate::helpers::authed(
            v1::GetMeRequest {},
            &first.access_token,
        ))
        .await
        .unwrap();

    let again = sign_in(
        &app,
        id_token(key, KID, claims(&issuer, "1001", "Grace B. Hopper")),
    )
    .await
    .unwrap();
    let again_user = again.user.unwrap();
    assert_eq!(again_user.id, user.id, "same subject, same user");
    assert_eq!(
        again_user.name, "Grace B. Hopper",
        "profile follows the provider"
    );
}

#[tokio::test]
async fn invalid_id_tokens_are_unauthenticated() {
    let (app, issuer) = app_with_issuer().await;
    let (key, unpublished) = keys();
    let now = chrono::Utc::now().timestamp();

    let mut wrong_audience = claims(&issuer, "2002", "Ann");
    wrong_audience["aud"] = json!("someone-elses-client");
    let mut wrong_issuer = claims(&issuer, "2002", "Ann");
    wrong_issuer["iss"] = json!("https://evil.example");
    let mut expired = claims(&issuer, "2002", "Ann");
    expired["exp"] = json!(now - 3600);

    let cases = [
        (
            "wrong audience",
            id_token(key, KID, wrong_audience),
            "another client",
        ),
        (
            "wrong issuer",
            id_token(key, KID, wrong_issuer),
            "another issuer",
        ),
        ("expired", id_token(key, KID, expired), "expired"),
        (
            "signed by an unpublished key",
            id_token(unpublished, KID, claims(&issuer, "2002", "Ann")),
            "not valid",
        ),
        (
            "unknown key id",
            id_token(key, "nope", claims(&issuer, "2002", "Ann")),
            "unknown key",
        ),
        ("not a JWT", "garbage".to_owned(), "not a valid JWT"),
    ];
    for (case, token, reason) in cases {
        let status = expect_code(sign_in(&app, token).await, Code::Unauthenticated);
        assert!(
            status.message().contains(reason),
            "{case}: {}",
            status.message()
        );
    }

    // The classic algorithm confusion: HS256 "signed" with the issuer's public key as the
    // secret, naming the issuer's real key id, so that only the algorithm check can refuse
    // it. And the same claims with `alg: none` and that key id.
    let mut hs_header = Header::new(Algorithm::HS256);
    hs_header.kid = Some(KID.into());
    let confused = jsonwebtoken::encode(
        &hs_header,
        &claims(&issuer, "2002", "Ann"),
        &EncodingKey::from_secret(key.public_pem.as_bytes()),
    )
    .unwrap();
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(json!({"alg": "none", "typ": "JWT", "kid": KID}).to_string()),
        URL_SAFE_NO_PAD.encode(claims(&issuer, "2002", "Ann").to_string()),
    );
    for (case, token, reason) in [
        (
            "HS256 with the public key",
            confused,
            "must be signed with RS256",
        ),
        ("alg none", none, "not a valid JWT"),
    ] {
        let status = expect_code(sign_in(&app, token).await, Code::Unauthenticated);
        assert!(
            status.message().contains(reason),
            "{case} must be refused for its algorithm, not its key id: {}",
            status.message()
        );
    }
    // Nobody was signed in as subject 2002 by any of these.
    let ok = sign_in(&app, id_token(key, KID, claims(&issuer, "2002", "Ann")))
        .await
        .unwrap();
    assert_eq!(ok.user.unwrap().name, "Ann");
}

#[tokio::test]
async fn an_email_owned_by_a_local_account_is_not_taken_over() {
    let (app, issuer) = app_with_issuer().await;
    app.auth()
        .register(v1::RegisterRequest {
            email: "3003@gmail.example".into(),
            password: "correct horse".into(),
            name: "Local".into(),
        })
        .await
        .unwrap();
    let status = expect_code(
        sign_in(
            &app,
            id_token(&keys().0, KID, claims(&issuer, "3003", "Intruder")),
        )
        .await,
        Code::AlreadyExists,
    );
    assert!(
        status.message().contains("another sign-in method"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn without_an_issuer_configured_id_token_sign_in_is_off() {
    let app = spawn_app().await;
    let status = expect_code(
        sign_in(&app, "anything".into()).await,
        Code::FailedPrecondition,
    );
    assert!(
        status.message().contains("not configured"),
        "{}",
        status.message()
    );
}

/// An ID token that does not say `email_verified: true` cannot attach an address to the
/// account (it could name anyone's), and a picture that is not an http(s) URL is dropped.
#[tokio::test]
async fn only_verified_emails_and_web_pictures_are_kept() {
    let (app, issuer) = app_with_issuer().await;
    let key = &keys().0;
    for (sub, verified) in [("2001", None), ("2002", Some(false))] {
        let mut claims = claims(&issuer, sub, "Eve");
        match verified {
            None => claims.as_object_mut().unwrap().remove("email_verified"),
            Some(v) => claims
                .as_object_mut()
                .unwrap()
                .insert("email_verified".into(), v.into()),
        };
        claims["picture"] = "javascript:alert(1)".into();
        let user = sign_in(&app, id_token(key, KID, claims))
            .await
            .unwrap()
            .user
            .unwrap();
        assert_eq!(user.email, "", "email_verified = {verified:?}");
        assert_eq!(user.image_url, "");
    }
}

/// A subject that a database could choke on is refused, not passed to a query.
#[tokio::test]
async fn a_subject_with_control_characters_is_refused() {
    let (app, issuer) = app_with_issuer().await;
    let key = &keys().0;
    let status = sign_in(
        &app,
        id_token(key, KID, claims(&issuer, "30\u{0}01", "Eve")),
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
}

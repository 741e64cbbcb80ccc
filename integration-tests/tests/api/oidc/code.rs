//! Sign-in with an authorization code, the browser app's "Sign in with Google": the browser
//! learns the provider from `GetSignInOptions`, sends the person there with PKCE and a nonce,
//! and hands the code that comes back to `LoginWithAuthorizationCode`; the server trades it
//! at the provider's token endpoint and signs in whom the ID token names.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use quickchat_proto::v1;
use serde_json::json;
use tonic::{Code, Status};

use super::provider::{ClientAuth, Provider, pkce};
use super::{CLIENT_ID, app_with};
use crate::helpers::{TestApp, authed, expect_code, field_violations, spawn_app};

/// A secret with characters HTTP Basic needs form-encoded.
const SECRET: &str = "s3cret/with+odd=chars:";
const UNREACHABLE: &str = "The identity provider cannot be reached; try again later.";

/// The browser app's callback page on the server's own origin.
fn callback(app: &TestApp) -> String {
    format!("http://{}/auth/callback", app.addr)
}

/// What the browser does: a PKCE pair and a nonce, the person signs in at the provider as
/// `sub`, and the code comes back to `redirect_uri`.
fn at_provider(
    provider: &Provider,
    redirect_uri: &str,
    sub: &str,
) -> v1::LoginWithAuthorizationCodeRequest {
    let (code_verifier, challenge) = pkce();
    let nonce = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>());
    let code = provider.approve(
        redirect_uri,
        &challenge,
        &nonce,
        json!({
            "sub": sub, "name": "Grace Hopper",
            "email": format!("{sub}@gmail.example"), "email_verified": true,
        }),
    );
    v1::LoginWithAuthorizationCodeRequest {
        code,
        code_verifier,
        redirect_uri: redirect_uri.to_owned(),
        nonce,
    }
}

async fn exchange(
    app: &TestApp,
    request: v1::LoginWithAuthorizationCodeRequest,
) -> Result<v1::Session, Status> {
    app.auth()
        .login_with_authorization_code(request)
        .await
        .map(|r| r.into_inner().session.unwrap())
}

async fn options(app: &TestApp) -> Option<v1::OidcProvider> {
    app.auth()
        .get_sign_in_options(v1::GetSignInOptionsRequest {})
        .await
        .unwrap()
        .into_inner()
        .oidc
}

#[tokio::test]
async fn the_browser_learns_the_provider_and_signs_in_with_a_code_however_the_provider_authenticates_clients()
 {
    for (client_auth, secret) in [
        (ClientAuth::SecretBasic(SECRET), Some(SECRET)),
        (ClientAuth::SecretPost(SECRET), Some(SECRET)),
        (ClientAuth::Public, None),
    ] {
        let (app, provider) = app_with(client_auth, secret, |_| {}).await;
        // What the sign-in page needs, and nothing secret.
        assert_eq!(
            options(&app).await,
            Some(v1::OidcProvider {
                issuer: provider.issuer.clone(),
                client_id: CLIENT_ID.into(),
                display_name: "Google".into(),
                authorization_endpoint: format!("{}/authorize", provider.issuer),
            }),
            "{client_auth:?}"
        );

        let session = exchange(&app, at_provider(&provider, &callback(&app), "5005"))
            .await
            .unwrap_or_else(|status| panic!("{client_auth:?}: {status:?}"));
        let user = session.user.clone().unwrap();
        assert_eq!(
            (
                user.name.as_str(),
                user.email.as_str(),
                user.provider.as_str()
            ),
            ("Grace Hopper", "5005@gmail.example", "google"),
            "{client_auth:?}"
        );
        let me = app
            .auth()
            .get_me(authed(v1::GetMeRequest {}, &session.access_token))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(me.user.unwrap().id, user.id);

        // The next sign-in through the provider finds the same account.
        let again = exchange(&app, at_provider(&provider, &callback(&app), "5005"))
            .await
            .unwrap();
        assert_eq!(again.user.unwrap().id, user.id, "{client_auth:?}");
    }
}

#[tokio::test]
async fn without_a_provider_only_passwords_are_offered() {
    let app = spawn_app().await;
    assert_eq!(options(&app).await, None);
    let status = expect_code(
        exchange(
            &app,
            v1::LoginWithAuthorizationCodeRequest {
                code: "4/anything".into(),
                code_verifier: "a".repeat(43),
                redirect_uri: callback(&app),
                nonce: "n".into(),
            },
        )
        .await,
        Code::FailedPrecondition,
    );
    assert!(
        status.message().contains("not configured"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn a_wrong_or_used_code_or_a_verifier_of_another_sign_in_is_unauthenticated() {
    let (app, provider) = app_with(ClientAuth::SecretBasic(SECRET), Some(SECRET), |_| {}).await;
    let redirect = callback(&app);

    let mut wrong_code = at_provider(&provider, &redirect, "6006");
    wrong_code.code = "4/not-a-code-the-provider-gave".into();
    let mut wrong_verifier = at_provider(&provider, &redirect, "6006");
    wrong_verifier.code_verifier = pkce().0;
    let used = at_provider(&provider, &redirect, "6006");
    exchange(&app, used.clone()).await.unwrap();

    for (case, request) in [
        ("a code the provider never gave", wrong_code),
        ("the verifier of another sign-in", wrong_verifier),
        ("a code already used", used),
    ] {
        let status = expect_code(exchange(&app, request).await, Code::Unauthenticated);
        assert_eq!(
            status.message(),
            "The sign-in code was not accepted (it may have expired or been used already). Sign \
             in again.",
            "{case}"
        );
    }
}

#[tokio::test]
async fn an_id_token_issued_for_another_sign_in_is_refused() {
    let (app, provider) = app_with(ClientAuth::SecretBasic(SECRET), Some(SECRET), |_| {}).await;
    // The code is good, but the browser started this sign-in with another nonce: the token
    // was obtained for someone else's sign-in.
    let mut request = at_provider(&provider, &callback(&app), "7007");
    request.nonce = "the-nonce-this-browser-chose".into();
    let status = expect_code(exchange(&app, request).await, Code::Unauthenticated);
    assert!(
        status.message().contains("nonce does not match"),
        "{}",
        status.message()
    );
    assert_eq!(provider.token_requests(), 1);
}

#[tokio::test]
async fn codes_sent_to_a_redirect_uri_the_server_does_not_allow_are_not_traded() {
    let (app, provider) = app_with(ClientAuth::SecretBasic(SECRET), Some(SECRET), |_| {}).await;
    for redirect in [
        "https://evil.example/auth/callback".to_owned(),
        format!("http://{}/somewhere-else", app.addr),
    ] {
        let status = expect_code(
            exchange(&app, at_provider(&provider, &redirect, "8008")).await,
            Code::InvalidArgument,
        );
        assert_eq!(
            field_violations(&status),
            [(
                "redirect_uri".to_owned(),
                "This redirect URI is not allowed on this server.".to_owned()
            )],
            "{redirect}"
        );
    }
    assert_eq!(provider.token_requests(), 0, "the provider was never asked");

    // Malformed fields are named, all at once.
    let status = expect_code(
        exchange(
            &app,
            v1::LoginWithAuthorizationCodeRequest {
                code: String::new(),
                code_verifier: "too-short".into(),
                redirect_uri: "javascript:alert(1)".into(),
                nonce: String::new(),
            },
        )
        .await,
        Code::InvalidArgument,
    );
    let fields: Vec<String> = field_violations(&status)
        .into_iter()
        .map(|(f, _)| f)
        .collect();
    assert_eq!(fields, ["code", "code_verifier", "redirect_uri", "nonce"]);

    // With --oidc-redirect-uri the operator's list replaces the default.
    let registered = "https://chat.example.com/auth/callback";
    let (app, provider) = app_with(ClientAuth::SecretBasic(SECRET), Some(SECRET), |s| {
        s.oidc.as_mut().unwrap().redirect_uris = vec![registered.into()];
    })
    .await;
    expect_code(
        exchange(&app, at_provider(&provider, &callback(&app), "8008")).await,
        Code::InvalidArgument,
    );
    exchange(&app, at_provider(&provider, registered, "8008"))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_provider_that_is_down_is_unavailable_and_the_answer_names_nothing_internal() {
    let (app, provider) = app_with(ClientAuth::SecretBasic(SECRET), Some(SECRET), |_| {}).await;
    let port = provider.issuer.rsplit(':').next().unwrap().to_owned();
    let leaks = |status: &Status| {
        let message = status.message();
        message.contains("5432")
            || message.contains("token-db")
            || message.contains(&port)
            || message.contains("error")
    };

    provider.break_token_endpoint();
    let status = expect_code(
        exchange(&app, at_provider(&provider, &callback(&app), "9009")).await,
        Code::Unavailable,
    );
    assert_eq!(status.message(), UNREACHABLE);
    assert!(!leaks(&status), "{status:?}");

    provider.cut();
    let status = expect_code(
        exchange(&app, at_provider(&provider, &callback(&app), "9009")).await,
        Code::Unavailable,
    );
    assert_eq!(status.message(), UNREACHABLE);
    assert!(!leaks(&status), "{status:?}");
    // The sign-in page still offers the provider (its endpoints were learnt before).
    assert!(
        !options(&app)
            .await
            .unwrap()
            .authorization_endpoint
            .is_empty()
    );

    // A server that has never reached its provider: the page learns the provider but not
    // where to send people, and a code cannot be traded.
    let (app, provider) = app_with(ClientAuth::SecretBasic(SECRET), Some(SECRET), |_| {}).await;
    provider.cut();
    let offered = options(&app).await.unwrap();
    assert_eq!(offered.display_name, "Google");
    assert_eq!(offered.authorization_endpoint, "");
    let status = expect_code(
        exchange(&app, at_provider(&provider, &callback(&app), "9009")).await,
        Code::Unavailable,
    );
    assert_eq!(status.message(), UNREACHABLE);
}

#[tokio::test]
async fn a_server_with_the_wrong_client_secret_fails_without_telling_the_caller_why() {
    let (app, provider) = app_with(
        ClientAuth::SecretBasic(SECRET),
        Some("not-the-secret"),
        |_| {},
    )
    .await;
    let status = expect_code(
        exchange(&app, at_provider(&provider, &callback(&app), "1010")).await,
        Code::Internal,
    );
    assert_eq!(
        status.message(),
        "internal error; the server log has the details"
    );
}

#[tokio::test]
async fn failed_code_sign_ins_count_against_the_clients_allowance() {
    let (app, provider) = app_with(ClientAuth::SecretBasic(SECRET), Some(SECRET), |s| {
        s.limits.sign_in_max_failures_per_client = 2;
    })
    .await;
    for _ in 0..2 {
        let mut request = at_provider(&provider, &callback(&app), "1111");
        request.code = "4/guessed".into();
        expect_code(exchange(&app, request).await, Code::Unauthenticated);
    }
    let status = expect_code(
        exchange(&app, at_provider(&provider, &callback(&app), "1111")).await,
        Code::ResourceExhausted,
    );
    assert!(
        status.message().contains("Too many failed sign-ins"),
        "{}",
        status.message()
    );
    assert_eq!(
        provider.token_requests(),
        2,
        "the locked-out call cost nothing"
    );
}

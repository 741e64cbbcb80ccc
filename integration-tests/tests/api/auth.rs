//! AuthService over a real connection: registration, login, refresh rotation, logout, and
//! every way a token can be bad.

use quickchat_proto::v1;
use serde::Serialize;
use tonic::Code;
use uuid::Uuid;

use crate::helpers::{JWT_SECRET, authed, expect_code, field_violations, spawn_app};

fn register_request(email: &str) -> v1::RegisterRequest {
    v1::RegisterRequest {
        email: email.into(),
        password: "correct horse".into(),
        name: "Ann".into(),
    }
}

#[tokio::test]
async fn register_signs_in_and_get_me_returns_the_user() {
    let app = spawn_app().await;
    let session = app
        .auth()
        .register(register_request("Ann@Example.com"))
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    let user = session.user.clone().unwrap();
    assert_eq!(
        user.email, "ann@example.com",
        "email is normalised to lower case"
    );
    assert_eq!(user.provider, "local");
    assert!(!session.access_token.is_empty() && !session.refresh_token.is_empty());
    let expires = session.access_expires_at.unwrap().seconds - chrono::Utc::now().timestamp();
    assert!(
        (14 * 60..=15 * 60).contains(&expires),
        "access token lives 15 minutes, got {expires}s"
    );

    let me = app
        .auth()
        .get_me(authed(v1::GetMeRequest {}, &session.access_token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(me.user.unwrap(), user);
}

#[tokio::test]
async fn register_reports_every_bad_field() {
    let app = spawn_app().await;
    let status = expect_code(
        app.auth()
            .register(v1::RegisterRequest {
                email: "not-an-email".into(),
                password: "short".into(),
                name: "  ".into(),
            })
            .await,
        Code::InvalidArgument,
    );
    let fields: Vec<String> = field_violations(&status)
        .into_iter()
        .map(|(f, _)| f)
        .collect();
    assert_eq!(fields, ["email", "password", "name"]);
    assert!(
        status
            .message()
            .contains("Email must be a valid email address."),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn a_taken_email_is_already_exists_whatever_its_case() {
    let app = spawn_app().await;
    app.auth()
        .register(register_request("bob@example.com"))
        .await
        .unwrap();
    let status = expect_code(
        app.auth()
            .register(register_request("BOB@example.com"))
            .await,
        Code::AlreadyExists,
    );
    assert_eq!(
        status.message(),
        "An account with this email already exists."
    );
}

#[tokio::test]
async fn login_checks_the_password_without_saying_which_part_was_wrong() {
    let app = spawn_app().await;
    app.auth()
        .register(register_request("cat@example.com"))
        .await
        .unwrap();

    let ok = app
        .auth()
        .login(v1::LoginRequest {
            email: "CAT@example.com".into(),
            password: "correct horse".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    assert_eq!(ok.user.unwrap().email, "cat@example.com");

    let wrong_password = expect_code(
        app.auth()
            .login(v1::LoginRequest {
                email: "cat@example.com".into(),
                password: "wrong horse".into(),
            })
            .await,
        Code::Unauthenticated,
    );
    let unknown_email = expect_code(
        app.auth()
            .login(v1::LoginRequest {
                email: "nobody@example.com".into(),
                password: "correct horse".into(),
            })
            .await,
        Code::Unauthenticated,
    );
    assert_eq!(wrong_password.message(), unknown_email.message());
}

#[tokio::test]
async fn refresh_rotates_the_token_and_reuse_revokes_the_session() {
    let app = spawn_app().await;
    let first = app.register("Dan").await;

    let second = app
        .auth()
        .refresh_session(v1::RefreshSessionRequest {
            refresh_token: first.refresh_token.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    assert_ne!(second.refresh_token, first.refresh_token);
    assert_eq!(
        second.user.as_ref().unwrap().id,
        first.user.as_ref().unwrap().id
    );
    app.auth()
        .get_me(authed(v1::GetMeRequest {}, &second.access_token))
        .await
        .unwrap();

    // The rotated-away token comes back: treated as theft, the whole family is revoked.
    let reused = expect_code(
        app.auth()
            .refresh_session(v1::RefreshSessionRequest {
                refresh_token: first.refresh_token,
            })
            .await,
        Code::Unauthenticated,
    );
    assert!(
        reused.message().contains("already used"),
        "{}",
        reused.message()
    );
    expect_code(
        app.auth()
            .refresh_session(v1::RefreshSessionRequest {
                refresh_token: second.refresh_token,
            })
            .await,
        Code::Unauthenticated,
    );
}

#[tokio::test]
async fn logout_revokes_the_refresh_token_and_is_idempotent() {
    let app = spawn_app().await;
    let session = app.register("Eve").await;
    let other_session = app
        .auth()
        .login(v1::LoginRequest {
            email: session.user.clone().unwrap().email,
            password: "correct horse".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();

    app.auth()
        .logout(v1::LogoutRequest {
            refresh_token: session.refresh_token.clone(),
        })
        .await
        .unwrap();
    app.auth()
        .logout(v1::LogoutRequest {
            refresh_token: session.refresh_token.clone(),
        })
        .await
        .unwrap();
    expect_code(
        app.auth()
            .refresh_session(v1::RefreshSessionRequest {
                refresh_token: session.refresh_token,
            })
            .await,
        Code::Unauthenticated,
    );
    // Another sign-in of the same user is a separate session and keeps working.
    app.auth()
        .refresh_session(v1::RefreshSessionRequest {
            refresh_token: other_session.refresh_token,
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn unknown_refresh_token_is_unauthenticated() {
    let app = spawn_app().await;
    expect_code(
        app.auth()
            .refresh_session(v1::RefreshSessionRequest {
                refresh_token: "made-up".into(),
            })
            .await,
        Code::Unauthenticated,
    );
}

#[derive(Serialize)]
struct ForgedClaims<'a> {
    iss: &'a str,
    sub: Uuid,
    typ: &'a str,
    name: &'a str,
    iat: i64,
    exp: i64,
}

fn forge(secret: &str, exp: i64, sub: Uuid) -> String {
    let claims = ForgedClaims {
        iss: "quickchat",
        sub,
        typ: "access",
        name: "Mallory",
        iat: exp - 900,
        exp,
    };
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

#[tokio::test]
async fn missing_expired_tampered_and_foreign_tokens_are_unauthenticated() {
    let app = spawn_app().await;
    let session = app.register("Fay").await;
    let user_id: Uuid = session.user.unwrap().id.parse().unwrap();

    let missing = expect_code(
        app.auth().get_me(v1::GetMeRequest {}).await,
        Code::Unauthenticated,
    );
    assert!(
        missing.message().contains("authorization"),
        "{}",
        missing.message()
    );

    let expired = forge(JWT_SECRET, chrono::Utc::now().timestamp() - 120, user_id);
    let status = expect_code(
        app.auth()
            .get_me(authed(v1::GetMeRequest {}, &expired))
            .await,
        Code::Unauthenticated,
    );
    assert_eq!(status.message(), "token has expired");

    // Same claims, signed with a key the server does not know.
    let foreign = forge(
        "some-other-secret-0123456789abcdefgh",
        chrono::Utc::now().timestamp() + 600,
        user_id,
    );
    expect_code(
        app.auth()
            .get_me(authed(v1::GetMeRequest {}, &foreign))
            .await,
        Code::Unauthenticated,
    );

    // A valid token with one character of its payload changed.
    let mut tampered: Vec<char> = session.access_token.chars().collect();
    let i = session.access_token.find('.').unwrap() + 5;
    tampered[i] = if tampered[i] == 'A' { 'B' } else { 'A' };
    let tampered: String = tampered.into_iter().collect();
    expect_code(
        app.auth()
            .get_me(authed(v1::GetMeRequest {}, &tampered))
            .await,
        Code::Unauthenticated,
    );

    expect_code(
        app.auth()
            .get_me(authed(v1::GetMeRequest {}, "not.a.jwt"))
            .await,
        Code::Unauthenticated,
    );
}

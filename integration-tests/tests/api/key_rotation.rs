//! Rotating the JWT secret: tokens name their key (`kid`); after a rotation the previous
//! key's tokens keep working until the operator drops it, and a key the server does not
//! know opens nothing.

use base64::Engine;
use quickchat_proto::v1;
use secrecy::SecretString;
use tonic::Code;

use crate::helpers::{TestApp, authed, expect_code, spawn_app_with};

const OLD_SECRET: &str = "the secret before the rotation, 0123456789";
const NEW_SECRET: &str = "the secret after the rotation, 9876543210";

fn secret(text: &str) -> SecretString {
    SecretString::from(text.to_owned())
}

/// The `kid` header of a token.
fn kid(token: &str) -> Option<String> {
    jsonwebtoken::decode_header(token).expect("a JWT").kid
}

/// The claims of `token`, signed again with `secret` under `kid`.
fn resign(token: &str, secret: &str, kid: Option<&str>) -> String {
    let payload = token.split('.').nth(1).expect("a JWT");
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    let header = jsonwebtoken::Header {
        kid: kid.map(str::to_owned),
        ..jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256)
    };
    jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

async fn get_me(app: &TestApp, token: &str) -> Result<v1::GetMeResponse, tonic::Status> {
    app.auth()
        .get_me(authed(v1::GetMeRequest {}, token))
        .await
        .map(|r| r.into_inner())
}

async fn list_members(
    app: &TestApp,
    token: &str,
    group_id: &str,
) -> Result<v1::ListMembersResponse, tonic::Status> {
    app.groups()
        .list_members(authed(
            v1::ListMembersRequest {
                group_id: group_id.into(),
            },
            token,
        ))
        .await
        .map(|r| r.into_inner())
}

async fn login(app: &TestApp, email: &str) -> String {
    app.auth()
        .login(v1::LoginRequest {
            email: email.into(),
            password: "correct horse".into(),
        })
        .await
        .expect("login")
        .into_inner()
        .session
        .expect("session")
        .access_token
}

#[tokio::test]
async fn tokens_of_the_previous_key_work_until_the_operator_drops_it() {
    let app = spawn_app_with(|s| s.jwt_secret = Some(secret(OLD_SECRET))).await;
    let session = app.register("Ann").await;
    let email = session.user.clone().unwrap().email;
    let old_token = session.access_token;
    let group = app.create_group(&old_token, "Rotation").await;
    let member_token = app.join(&group.id, "Bob").await.member_token;
    let old_kid = kid(&old_token).expect("every token names its key");
    assert_eq!(kid(&member_token).as_deref(), Some(old_kid.as_str()));

    // Rotated: the new secret signs, the old one still verifies.
    let app = app
        .restart_with(|s| {
            s.jwt_secret = Some(secret(NEW_SECRET));
            s.jwt_previous_secrets = vec![secret(OLD_SECRET)];
        })
        .await;
    get_me(&app, &old_token)
        .await
        .expect("an access token of the previous key still works");
    list_members(&app, &member_token, &group.id)
        .await
        .expect("a member token of the previous key still works");
    let new_token = login(&app, &email).await;
    let new_kid = kid(&new_token).expect("every token names its key");
    assert_ne!(new_kid, old_kid, "new tokens are signed with the new key");
    // Issued before key ids existed: checked against the signing key only.
    get_me(&app, &resign(&old_token, NEW_SECRET, None))
        .await
        .expect("a token without kid signed with the signing key");
    expect_code(
        get_me(&app, &resign(&old_token, OLD_SECRET, None)).await,
        Code::Unauthenticated,
    );

    // The old key dropped: its tokens are refused, the new key's keep working.
    let app = app.restart_with(|s| s.jwt_previous_secrets.clear()).await;
    expect_code(get_me(&app, &old_token).await, Code::Unauthenticated);
    expect_code(
        list_members(&app, &member_token, &group.id).await,
        Code::Unauthenticated,
    );
    get_me(&app, &new_token)
        .await
        .expect("the new key's tokens still work");
    // Every node with the same secret names its key the same way.
    assert_eq!(kid(&login(&app, &email).await), Some(new_kid));
}

#[tokio::test]
async fn a_token_naming_a_key_the_server_does_not_know_is_unauthenticated() {
    let app = spawn_app_with(|s| s.jwt_secret = Some(secret(OLD_SECRET))).await;
    let token = app.register("Ann").await.access_token;
    let own_kid = kid(&token).unwrap();
    get_me(&app, &resign(&token, OLD_SECRET, Some(&own_kid)))
        .await
        .expect("the same claims and key under its own kid");

    // Signed with the server's own secret, but naming another key.
    let status = expect_code(
        get_me(&app, &resign(&token, OLD_SECRET, Some("0123456789abcdef"))).await,
        Code::Unauthenticated,
    );
    assert!(status.message().contains("key"), "{}", status.message());
}

//! The authorization matrix: every RPC of `quickchat.v1`, read from the server's own
//! descriptors (so a new RPC cannot be forgotten: it fails here until it is given an access
//! class), called with every kind of bad credential. Each must be refused with the right
//! code, and nothing may change.

use std::collections::BTreeMap;

use prost::Message as _;
use prost::bytes::{Buf, BufMut};
use prost_types::{DescriptorProto, FileDescriptorSet};
use quickchat_proto::v1;
use serde::Serialize;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::metadata::MetadataValue;
use tonic::{Code, Request, Status};
use uuid::Uuid;

use crate::helpers::{JWT_SECRET, authed, spawn_app};

/// Who may call an RPC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Anyone (sign-in, the public group card, joining by passcode).
    Public,
    /// A signed-in user, about their own account or groups.
    User,
    /// Anyone with a valid credential (access or member token), about themselves only.
    Caller,
    /// The group's owner.
    Owner,
    /// The group's owner or one of its members.
    Room,
    /// An operator: an account `--admin-email` lists (this server lists none).
    Operator,
}

fn access_classes() -> BTreeMap<&'static str, Access> {
    use Access::*;
    BTreeMap::from([
        ("quickchat.v1.AuthService/Register", Public),
        ("quickchat.v1.AuthService/Login", Public),
        ("quickchat.v1.AuthService/LoginWithIdToken", Public),
        ("quickchat.v1.AuthService/GetSignInOptions", Public),
        (
            "quickchat.v1.AuthService/LoginWithAuthorizationCode",
            Public,
        ),
        ("quickchat.v1.AuthService/RefreshSession", Public),
        ("quickchat.v1.AuthService/Logout", Public),
        ("quickchat.v1.AuthService/GetMe", User),
        ("quickchat.v1.GroupService/CreateGroup", User),
        ("quickchat.v1.GroupService/ListGroups", Caller),
        ("quickchat.v1.GroupService/GetGroup", Public),
        ("quickchat.v1.GroupService/UpdateGroup", Owner),
        ("quickchat.v1.GroupService/DeleteGroup", Owner),
        ("quickchat.v1.GroupService/JoinGroup", Public),
        ("quickchat.v1.GroupService/ListMembers", Room),
        ("quickchat.v1.GroupService/LeaveGroup", Room),
        ("quickchat.v1.GroupService/RemoveMember", Owner),
        ("quickchat.v1.GroupService/UnbanMember", Owner),
        ("quickchat.v1.GroupService/ListBans", Owner),
        ("quickchat.v1.ChatService/Chat", Room),
        ("quickchat.v1.ChatService/Subscribe", Room),
        ("quickchat.v1.ChatService/SendMessage", Room),
        ("quickchat.v1.ChatService/SendTyping", Room),
        ("quickchat.v1.ChatService/ListMessages", Room),
        ("quickchat.v1.AdminService/GetOverview", Operator),
    ])
}

/// Raw bytes in, raw bytes out: the matrix builds requests from descriptors.
#[derive(Default, Clone)]
struct RawCodec;

struct RawEncoder;
struct RawDecoder;

impl Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

struct Method {
    path: String,
    input: DescriptorProto,
    client_streaming: bool,
    server_streaming: bool,
}

fn methods() -> Vec<Method> {
    let set = FileDescriptorSet::decode(quickchat_proto::FILE_DESCRIPTOR_SET).unwrap();
    let messages: BTreeMap<String, DescriptorProto> = set
        .file
        .iter()
        .flat_map(|f| {
            let package = f.package().to_owned();
            f.message_type
                .iter()
                .map(move |m| (format!(".{package}.{}", m.name()), m.clone()))
        })
        .collect();
    set.file
        .iter()
        .filter(|f| f.package() == "quickchat.v1")
        .flat_map(|f| {
            f.service
                .iter()
                .flat_map(move |s| s.method.iter().map(move |m| (f.package(), s.name(), m)))
        })
        .map(|(package, service, m)| Method {
            path: format!("{package}.{service}/{}", m.name()),
            input: messages[m.input_type()].clone(),
            client_streaming: m.client_streaming(),
            server_streaming: m.server_streaming(),
        })
        .collect()
}

/// A plausible request: every string field a handler reads gets a valid-looking value,
/// `group_id` the target group, so that a refusal is about the credential, not the input.
fn request_bytes(method: &Method, group_id: &str) -> Vec<u8> {
    if method.path.ends_with("ChatService/Chat") {
        return v1::ChatRequest {
            kind: Some(v1::chat_request::Kind::Join(v1::chat_request::Join {
                group_id: group_id.into(),
                since: None,
            })),
        }
        .encode_to_vec();
    }
    let mut buf = Vec::new();
    for field in &method.input.field {
        let value = match field.name() {
            "group_id" => group_id,
            "title" => "Renamed by an attacker",
            "passcode" => "1234",
            "name" => "Mallory",
            "body" => "hello from nowhere",
            "client_message_id" => "matrix-1",
            "email" => "mallory@example.com",
            "password" => "correct horse",
            _ => continue,
        };
        if field.r#type() == prost_types::field_descriptor_proto::Type::String {
            prost::encoding::string::encode(field.number() as u32, &value.to_owned(), &mut buf);
        }
    }
    buf
}

fn with_token<T>(token: Option<&str>, mut request: Request<T>) -> Request<T> {
    if let Some(token) = token {
        request.metadata_mut().insert(
            "authorization",
            MetadataValue::try_from(format!("Bearer {token}")).unwrap(),
        );
    }
    request
}

async fn call(
    channel: &tonic::transport::Channel,
    method: &Method,
    body: Vec<u8>,
    token: Option<&str>,
) -> Result<(), Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready()
        .await
        .map_err(|e| Status::unknown(e.to_string()))?;
    let path: http::uri::PathAndQuery = format!("/{}", method.path).parse().unwrap();
    match (method.client_streaming, method.server_streaming) {
        (false, false) => grpc
            .unary(with_token(token, Request::new(body)), path, RawCodec)
            .await
            .map(|_| ()),
        (false, true) => grpc
            .server_streaming(with_token(token, Request::new(body)), path, RawCodec)
            .await
            .map(|_| ()),
        _ => grpc
            .streaming(
                with_token(token, Request::new(futures::stream::iter(vec![body]))),
                path,
                RawCodec,
            )
            .await
            .map(|_| ()),
    }
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: Uuid,
    typ: &'a str,
    name: &'a str,
    iat: i64,
    exp: i64,
}

fn sign(secret: &str, sub: Uuid, exp: i64) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &Claims {
            iss: "quickchat",
            sub,
            typ: "access",
            name: "Olga",
            iat: exp - 900,
            exp,
        },
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn unsigned(sub: Uuid) -> String {
    use base64::Engine;
    let b64 = |v: serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let now = chrono::Utc::now().timestamp();
    format!(
        "{}.{}.",
        b64(serde_json::json!({"alg": "none", "typ": "JWT"})),
        b64(
            serde_json::json!({"iss": "quickchat", "sub": sub, "typ": "access",
            "name": "Olga", "iat": now, "exp": now + 600})
        ),
    )
}

#[tokio::test]
async fn every_rpc_refuses_every_bad_credential_and_changes_nothing() {
    let app = spawn_app().await;
    let owner = app.register("Olga").await;
    let owner_id: Uuid = owner.user.clone().unwrap().id.parse().unwrap();
    let group = app.create_group(&owner.access_token, "The target").await;
    let stranger = app.register("Sam").await;
    let elsewhere = app.create_group(&owner.access_token, "Elsewhere").await;
    let member_elsewhere = app.join(&elsewhere.id, "Max").await;
    let now = chrono::Utc::now().timestamp();

    // Credentials that prove nothing: each must be UNAUTHENTICATED wherever one is needed.
    let invalid: Vec<(&str, Option<String>)> = vec![
        ("no token", None),
        ("malformed", Some("not.a.jwt".into())),
        ("expired", Some(sign(JWT_SECRET, owner_id, now - 120))),
        (
            "another key",
            Some(sign(
                "another-secret-0123456789abcdefghijkl",
                owner_id,
                now + 600,
            )),
        ),
        ("alg none", Some(unsigned(owner_id))),
        ("refresh token", Some(owner.refresh_token.clone())),
    ];

    let classes = access_classes();
    let methods = methods();
    let found: Vec<&str> = methods.iter().map(|m| m.path.as_str()).collect();
    for path in &found {
        assert!(
            classes.contains_key(path),
            "{path} has no access class in this matrix: decide who may call it"
        );
    }
    for path in classes.keys() {
        assert!(
            found.contains(path),
            "{path} is in the matrix but not served"
        );
    }

    for method in &methods {
        let access = classes[method.path.as_str()];
        if access == Access::Public {
            continue;
        }
        let body = request_bytes(method, &group.id);
        for (what, token) in &invalid {
            let result = call(&app.channel, method, body.clone(), token.as_deref()).await;
            let code = result.as_ref().err().map(Status::code);
            assert_eq!(
                code,
                Some(Code::Unauthenticated),
                "{} with {what}: {result:?}",
                method.path
            );
        }
        // Valid credentials of the wrong person.
        let wrong_people: Vec<(&str, &str, Code)> = match access {
            Access::User => vec![(
                "member token",
                &member_elsewhere.member_token,
                Code::Unauthenticated,
            )],
            // Answers about the caller, never the target: nobody is the wrong person.
            Access::Caller => vec![],
            Access::Owner | Access::Room => vec![
                (
                    "another user",
                    &stranger.access_token,
                    Code::PermissionDenied,
                ),
                (
                    "member of another group",
                    &member_elsewhere.member_token,
                    Code::PermissionDenied,
                ),
            ],
            Access::Operator => vec![
                (
                    "member token",
                    &member_elsewhere.member_token,
                    Code::Unauthenticated,
                ),
                (
                    "another user",
                    &stranger.access_token,
                    Code::PermissionDenied,
                ),
            ],
            Access::Public => unreachable!(),
        };
        for (who, token, expected) in wrong_people {
            let result = call(&app.channel, method, body.clone(), Some(token)).await;
            assert_eq!(
                result.as_ref().err().map(Status::code),
                Some(expected),
                "{} as {who}: {result:?}",
                method.path
            );
        }
    }

    // Nothing changed: the group is there with its title, and no message was posted.
    let card = app
        .groups()
        .get_group(v1::GetGroupRequest {
            group_id: group.id.clone(),
        })
        .await
        .expect("the group survived")
        .into_inner()
        .group
        .unwrap();
    assert_eq!(card.title, "The target");
    let history =
        quickchat_proto::v1::chat_service_client::ChatServiceClient::new(app.channel.clone())
            .list_messages(authed(
                v1::ListMessagesRequest {
                    group_id: group.id.clone(),
                    ..Default::default()
                },
                &owner.access_token,
            ))
            .await
            .unwrap()
            .into_inner();
    assert!(history.messages.is_empty(), "{:?}", history.messages);
}

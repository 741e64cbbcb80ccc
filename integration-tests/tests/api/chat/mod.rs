//! ChatService on the embedded default: rooms over the `Chat` stream with real tonic
//! clients — delivery, ordering, idempotency, recovery, presence, typing, limits, isolation,
//! deletion and shutdown.

mod access;
mod delivery;
mod grpc_web;
mod history;
mod limits;
mod presence;
mod recovery;

use std::collections::HashMap;
use std::time::Duration;

use quickchat_proto::v1::{self, chat_response::Event, chat_service_client::ChatServiceClient};
use tonic::Code;
use uuid::Uuid;

use crate::chat_client::ChatClient;
use crate::helpers::{TestApp, authed, expect_code, spawn_app, spawn_app_with};

/// A group with its owner and two members, Ann and Bob.
pub struct Room {
    pub owner: v1::Session,
    pub group: v1::Group,
    pub ann: String,
    pub bob: String,
}

/// The newest page of the room's stored history, as `token` sees it.
pub async fn history(app: &TestApp, group_id: &str, token: &str) -> v1::ListMessagesResponse {
    ChatServiceClient::new(app.channel.clone())
        .list_messages(authed(
            v1::ListMessagesRequest {
                group_id: group_id.to_owned(),
                ..Default::default()
            },
            token,
        ))
        .await
        .unwrap()
        .into_inner()
}

pub async fn room(app: &TestApp) -> Room {
    let owner = app.register("Olga").await;
    let group = app.create_group(&owner.access_token, "Rustaceans").await;
    let ann = app.join(&group.id, "Ann").await.member_token;
    let bob = app.join(&group.id, "Bob").await.member_token;
    Room {
        owner,
        group,
        ann,
        bob,
    }
}

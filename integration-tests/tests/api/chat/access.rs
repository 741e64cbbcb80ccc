//! Who may open a room, and what ends one: credentials, joins, isolation between groups,
//! deletion.

use super::*;

#[tokio::test]
async fn a_member_of_one_group_never_sees_another_groups_room() {
    let app = spawn_app().await;
    let a = room(&app).await;
    let b = room(&app).await;
    let mut ann_a = ChatClient::open(&app, &a.ann, &a.group.id, None)
        .await
        .unwrap();

    let status = ChatClient::open(&app, &a.ann, &b.group.id, None)
        .await
        .err()
        .expect("refused");
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = ChatClient::open(&app, &b.owner.access_token, &a.group.id, None)
        .await
        .err()
        .expect("refused");
    assert_eq!(
        status.code(),
        Code::PermissionDenied,
        "owning another group opens nothing here"
    );

    let mut bob_b = ChatClient::open(&app, &b.bob, &b.group.id, None)
        .await
        .unwrap();
    bob_b.send_and_ack("b", "secret of B").await;
    let mut mine = ChatClient::open(&app, &a.bob, &a.group.id, None)
        .await
        .unwrap();
    let in_a = mine.send_and_ack("a", "for A").await;
    assert_eq!(
        ann_a.next_message().await,
        in_a,
        "A's room carries only A's messages"
    );

    let mut chat = ChatServiceClient::new(app.channel.clone());
    expect_code(
        chat.list_messages(authed(
            v1::ListMessagesRequest {
                group_id: b.group.id.clone(),
                ..Default::default()
            },
            &a.ann,
        ))
        .await,
        Code::PermissionDenied,
    );
    expect_code(
        chat.send_message(authed(
            v1::SendMessageRequest {
                group_id: b.group.id.clone(),
                client_message_id: String::new(),
                body: "sneak".into(),
            },
            &a.ann,
        ))
        .await,
        Code::PermissionDenied,
    );
}

#[tokio::test]
async fn opening_a_room_needs_credentials_and_a_join_first() {
    let app = spawn_app().await;
    let room = room(&app).await;
    let status = ChatClient::open(&app, "not-a-token", &room.group.id, None)
        .await
        .err()
        .expect("refused");
    assert_eq!(status.code(), Code::Unauthenticated);
    let status = ChatClient::open(&app, &room.ann, &Uuid::new_v4().to_string(), None)
        .await
        .err()
        .expect("refused");
    assert_eq!(status.code(), Code::NotFound);

    // A stream whose first request is not a join is refused.
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(v1::ChatRequest {
        kind: Some(v1::chat_request::Kind::Send(v1::chat_request::Send {
            client_message_id: "x".into(),
            body: "hi".into(),
        })),
    })
    .await
    .unwrap();
    let status = ChatServiceClient::new(app.channel.clone())
        .chat(authed(
            tokio_stream::wrappers::ReceiverStream::new(rx),
            &room.ann,
        ))
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::FailedPrecondition);
}

#[tokio::test]
async fn deleting_the_group_ends_its_streams_with_not_found() {
    let app = spawn_app().await;
    let room = room(&app).await;
    let mut ann = ChatClient::open(&app, &room.ann, &room.group.id, None)
        .await
        .unwrap();
    app.groups()
        .delete_group(authed(
            v1::DeleteGroupRequest {
                group_id: room.group.id.clone(),
            },
            &room.owner.access_token,
        ))
        .await
        .unwrap();
    let status = ann.end_status().await;
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    let status = ChatClient::open(&app, &room.ann, &room.group.id, None)
        .await
        .err()
        .expect("refused");
    assert_eq!(status.code(), Code::NotFound);
}

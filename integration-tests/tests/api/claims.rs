//! Promises of the README's "Rooms: what a client can rely on" that no other test pinned
//! down: the sender of every message is whoever's token sent it, no ack before the store
//! has the message, typing is never stored, the send limit is per person and room, and a
//! gap too large to replay is refused plainly.

use std::time::Duration;

use quickchat_proto::v1::{self, chat_response::Event, chat_service_client::ChatServiceClient};
use tonic::Code;

use crate::chat::history;
use crate::chat_client::ChatClient;
use crate::helpers::{TestApp, authed, spawn_app, spawn_app_with};

/// A unary send with `token`, returning the message as stored or the refusal.
async fn send_unary(
    app: &TestApp,
    token: &str,
    group_id: &str,
    client_message_id: &str,
    body: &str,
) -> Result<v1::Message, tonic::Status> {
    ChatServiceClient::new(app.channel.clone())
        .send_message(authed(
            v1::SendMessageRequest {
                group_id: group_id.to_owned(),
                client_message_id: client_message_id.to_owned(),
                body: body.to_owned(),
            },
            token,
        ))
        .await
        .map(|r| r.into_inner().message.expect("the message"))
}

/// "Nobody can post as someone else": a message names the member whose token sent it (id
/// and name, as `JoinGroup` gave them), on the `Chat` stream and through `SendMessage`
/// alike, for the others live and in the stored history.
#[tokio::test]
async fn every_message_names_the_member_whose_token_sent_it() {
    let app = spawn_app().await;
    let owner = app.register("Olga").await;
    let group = app.create_group(&owner.access_token, "Rustaceans").await;
    let ann = app.join(&group.id, "Ann").await;
    let bob = app.join(&group.id, "Bob").await;
    let ann_id = ann.member.as_ref().unwrap().id.clone();
    let bob_id = bob.member.as_ref().unwrap().id.clone();
    assert_ne!(ann_id, bob_id);
    let mut olga = ChatClient::open(&app, &owner.access_token, &group.id, None)
        .await
        .unwrap();
    let mut ann_stream = ChatClient::open(&app, &ann.member_token, &group.id, None)
        .await
        .unwrap();

    let from_ann = ann_stream.send_and_ack("a1", "this is Ann").await;
    let from_bob = send_unary(&app, &bob.member_token, &group.id, "b1", "this is Bob")
        .await
        .unwrap();
    let sender = |m: &v1::Message| (m.sender_id.clone(), m.sender_name.clone(), m.body.clone());
    assert_eq!(
        sender(&from_ann),
        (ann_id.clone(), "Ann".into(), "this is Ann".into())
    );
    assert_eq!(
        sender(&from_bob),
        (bob_id.clone(), "Bob".into(), "this is Bob".into())
    );

    assert_eq!(olga.next_message().await, from_ann);
    assert_eq!(olga.next_message().await, from_bob);
    assert_eq!(ann_stream.next_message().await, from_bob);
    let stored = history(&app, &group.id, &owner.access_token).await;
    assert_eq!(
        stored.messages.iter().map(sender).collect::<Vec<_>>(),
        [sender(&from_bob), sender(&from_ann)]
    );
}

/// "Typing … is never stored": typing takes no offset and leaves nothing in the history.
#[tokio::test]
async fn typing_takes_no_offset_and_leaves_no_history() {
    let app = spawn_app().await;
    let room = crate::chat::room(&app).await;
    let mut ann = ChatClient::open(&app, &room.ann, &room.group.id, None)
        .await
        .unwrap();
    let mut bob = ChatClient::open(&app, &room.bob, &room.group.id, None)
        .await
        .unwrap();
    ann.typing().await;
    let typing = bob.next_where(|e| match e {
        Event::Typing(t) => t.member,
        _ => None,
    });
    assert_eq!(typing.await.name, "Ann");

    let first = ann.send_and_ack("a1", "the first message").await;
    assert_eq!(first.offset, 1, "typing took no offset");
    let stored = history(&app, &room.group.id, &room.bob).await;
    assert_eq!(
        stored
            .messages
            .iter()
            .map(|m| m.body.as_str())
            .collect::<Vec<_>>(),
        ["the first message"]
    );
}

/// "Sends are limited … per person and room": one person over their limit in one room
/// slows neither the others in that room nor that person in another room.
#[tokio::test]
async fn the_send_limit_is_per_person_and_room() {
    let app = spawn_app_with(|s| {
        // Practically no refill during the test: the burst is all anyone gets.
        s.chat.send_rate = 0.01;
        s.chat.send_burst = 2;
    })
    .await;
    let owner = app.register("Olga").await;
    let first = app.create_group(&owner.access_token, "First room").await;
    let second = app.create_group(&owner.access_token, "Second room").await;
    let ann = app.join(&first.id, "Ann").await.member_token;
    let olga = &owner.access_token;

    for i in 0..2 {
        send_unary(&app, olga, &first.id, &format!("o{i}"), "within the burst")
            .await
            .unwrap();
    }
    let status = send_unary(&app, olga, &first.id, "o-over", "over the limit")
        .await
        .expect_err("over the limit");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");

    let from_ann = send_unary(&app, &ann, &first.id, "a1", "someone else, same room")
        .await
        .expect("another person in the room is not limited");
    assert_eq!(from_ann.offset, 3);
    send_unary(
        &app,
        olga,
        &second.id,
        "o-elsewhere",
        "same person, other room",
    )
    .await
    .expect("the same person in another room is not limited");
}

/// "Up to 1000 messages … or the gap is too large: `recovered = false`": a client that
/// missed more than the server will replay is told so and sent none of them, then gets
/// live messages; within the limit it recovers everything.
#[tokio::test]
async fn a_gap_larger_than_the_recovery_limit_is_refused_plainly() {
    let app = spawn_app_with(|s| s.chat.max_recovery = 3).await;
    let room = crate::chat::room(&app).await;
    let mut bob = ChatClient::open(&app, &room.bob, &room.group.id, None)
        .await
        .unwrap();
    let mut ann = ChatClient::open(&app, &room.ann, &room.group.id, None)
        .await
        .unwrap();
    let seen = bob.send_and_ack("b0", "seen").await;
    assert_eq!(ann.next_message().await, seen);

    // Three missed: within the limit, all recovered.
    let position = ann.position(seen.offset);
    drop(ann.leave());
    let mut missed = Vec::new();
    for i in 1..=3 {
        missed.push(bob.send_and_ack(&format!("b{i}"), "missed").await);
    }
    let mut ann = ChatClient::open(&app, &room.ann, &room.group.id, Some(position))
        .await
        .unwrap();
    assert!(ann.joined.recovered);
    for expected in &missed {
        assert_eq!(&ann.next_message().await, expected);
    }

    // Four missed: beyond the limit, refused plainly.
    let position = ann.position(missed[2].offset);
    drop(ann.leave());
    for i in 4..=7 {
        bob.send_and_ack(&format!("b{i}"), "missed").await;
    }
    let mut ann = ChatClient::open(&app, &room.ann, &room.group.id, Some(position))
        .await
        .unwrap();
    assert!(
        !ann.joined.recovered,
        "the client must refetch with ListMessages"
    );
    assert_eq!(ann.joined.offset, 8, "it learns where the room stands");
    ann.assert_no_message_within(Duration::from_millis(200))
        .await;
    let live = bob.send_and_ack("b8", "live").await;
    assert_eq!(ann.next_message().await, live);
}

/// "The sender gets an `ack` once the message is durable": while the store cannot take a
/// message, its sender gets no ack but, once the log gives up, `UNAVAILABLE` — on the
/// `Chat` stream and through `SendMessage`.
#[tokio::test]
async fn no_ack_before_the_message_is_stored() {
    let app = spawn_app_with(|s| {
        s.chat.append_timeout = Duration::from_secs(1);
        s.persister_drain_timeout = Duration::from_secs(1);
    })
    .await;
    let room = crate::chat::room(&app).await;
    let mut ann = ChatClient::open(&app, &room.ann, &room.group.id, None)
        .await
        .unwrap();
    ann.send_and_ack("a1", "stored").await;

    app.break_message_storage().await;
    ann.send("a2", "cannot be stored").await;
    let rejected = ann
        .next_answer()
        .await
        .expect_err("no ack for a message the store does not have");
    assert_eq!(rejected.code, Code::Unavailable as i32, "{rejected:?}");
    let status = send_unary(&app, &room.bob, &room.group.id, "b1", "nor this one")
        .await
        .expect_err("no answer but an error");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
}

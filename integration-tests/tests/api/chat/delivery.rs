//! Messages between members: both directions, one gapless order under concurrent senders,
//! acks in room order, and idempotent resends.

use super::*;

#[tokio::test]
async fn owner_and_members_chat_in_both_directions() {
    let app = spawn_app().await;
    let room = room(&app).await;
    let mut olga = ChatClient::open(&app, &room.owner.access_token, &room.group.id, None)
        .await
        .unwrap();
    let mut ann = ChatClient::open(&app, &room.ann, &room.group.id, None)
        .await
        .unwrap();
    let mut bob = ChatClient::open(&app, &room.bob, &room.group.id, None)
        .await
        .unwrap();

    let sent = ann.send_and_ack("a1", "hi from Ann").await;
    assert_eq!(
        (sent.offset, sent.sender_name.as_str(), sent.body.as_str()),
        (1, "Ann", "hi from Ann")
    );
    assert_eq!(
        Uuid::parse_str(&sent.id).unwrap().get_version_num(),
        7,
        "ids are UUIDv7"
    );
    assert!(sent.created_at.is_some());
    assert_eq!(bob.next_message().await, sent);
    assert_eq!(olga.next_message().await, sent);

    let reply = olga.send_and_ack("o1", "welcome, Ann").await;
    assert_eq!((reply.offset, reply.sender_name.as_str()), (2, "Olga"));
    assert_eq!(reply.sender_id, room.owner.user.as_ref().unwrap().id);
    assert_eq!(ann.next_message().await, reply);
    assert_eq!(bob.next_message().await, reply);

    let from_bob = bob.send_and_ack("b1", "hello both").await;
    assert_eq!(ann.next_message().await, from_bob);
    assert_eq!(olga.next_message().await, from_bob);

    // A sender is acked, not echoed: Ann's next message is Olga's, never her own.
    ann.assert_no_message_within(Duration::from_millis(200))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_concurrent_senders_are_seen_in_one_gapless_order() {
    let app = spawn_app().await;
    let owner = app.register("Olga").await;
    let group = app.create_group(&owner.access_token, "Busy room").await;
    let mut watcher = ChatClient::open(&app, &owner.access_token, &group.id, None)
        .await
        .unwrap();

    let mut senders = Vec::new();
    for i in 0..10 {
        let token = app
            .join(&group.id, &format!("Sender {i}"))
            .await
            .member_token;
        senders.push(
            ChatClient::open(&app, &token, &group.id, None)
                .await
                .unwrap(),
        );
    }
    let tasks: Vec<_> = senders
        .into_iter()
        .enumerate()
        .map(|(i, mut client)| {
            tokio::spawn(async move {
                for n in 0..20 {
                    client.send(&format!("{i}-{n}"), &format!("{i}:{n}")).await;
                }
                let mut acked = 0;
                while acked < 20 {
                    client.next_answer().await.expect("accepted");
                    acked += 1;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }

    let mut next_per_sender: HashMap<String, u32> = HashMap::new();
    for expected_offset in 1..=200u64 {
        let m = watcher.next_message().await;
        assert_eq!(
            m.offset, expected_offset,
            "offsets arrive in order with no gap"
        );
        let (sender, n) = m.body.split_once(':').unwrap();
        let next = next_per_sender.entry(sender.to_owned()).or_default();
        assert_eq!(
            n.parse::<u32>().unwrap(),
            *next,
            "each sender's messages keep their order"
        );
        *next += 1;
    }
}

#[tokio::test]
async fn a_senders_acks_arrive_in_room_order_among_the_others_messages() {
    let app = spawn_app().await;
    let room = room(&app).await;
    let mut clients = Vec::new();
    for token in [&room.ann, &room.bob, &room.owner.access_token] {
        clients.push(
            ChatClient::open(&app, token, &room.group.id, None)
                .await
                .unwrap(),
        );
    }
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, mut client)| {
            tokio::spawn(async move {
                for n in 0..15 {
                    client.send(&format!("{i}-{n}"), "interleaved").await;
                }
                // Everyone, senders included, sees offsets 1..=45 in order: their own
                // messages as acks, the others' as messages.
                let mut seen = Vec::new();
                while seen.len() < 45 {
                    match client.next().await {
                        Event::Ack(ack) => seen.push(ack.message.unwrap().offset),
                        Event::Message(m) => seen.push(m.offset),
                        Event::SendRejected(r) => panic!("rejected: {r:?}"),
                        _ => {}
                    }
                }
                seen
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), (1..=45).collect::<Vec<u64>>());
    }
}

/// `joined` is the first response whatever the client sends at once with its join: here a
/// burst of second joins, each refused on the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joined_comes_first_even_when_refusals_are_ready_before_it() {
    use quickchat_proto::v1::chat_request::{Join, Kind};
    let app = spawn_app().await;
    let room = room(&app).await;
    for _ in 0..5 {
        let (requests, rx) = tokio::sync::mpsc::channel(64);
        for _ in 0..40 {
            let join = Join {
                group_id: room.group.id.clone(),
                since: None,
            };
            requests
                .send(v1::ChatRequest {
                    kind: Some(Kind::Join(join)),
                })
                .await
                .unwrap();
        }
        let mut responses = ChatServiceClient::new(app.channel.clone())
            .chat(authed(
                tokio_stream::wrappers::ReceiverStream::new(rx),
                &room.ann,
            ))
            .await
            .unwrap()
            .into_inner();
        let first = responses.message().await.unwrap().and_then(|r| r.event);
        assert!(
            matches!(first, Some(Event::Joined(_))),
            "the first response: {first:?}"
        );
        let mut refused = 0;
        while refused < 39 {
            match responses.message().await.unwrap().and_then(|r| r.event) {
                Some(Event::SendRejected(r)) => {
                    assert_eq!(r.code, Code::FailedPrecondition as i32, "{r:?}");
                    refused += 1;
                }
                Some(Event::MemberJoined(_) | Event::MemberLeft(_)) => {}
                other => panic!("expected the second joins refused, got {other:?}"),
            }
        }
    }
}

/// A client that sends and closes its side at once (a script, a tab being closed) is still
/// answered every send, in order, before its stream ends normally.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_right_after_sending_gets_every_answer_first() {
    let app = spawn_app().await;
    let room = room(&app).await;
    let ann = ChatClient::open(&app, &room.ann, &room.group.id, None)
        .await
        .unwrap();
    for n in 0..20 {
        ann.send(&format!("a{n}"), "and off I go").await;
    }
    let mut responses = ann.leave();
    let mut acked = Vec::new();
    let end = loop {
        match tokio::time::timeout(Duration::from_secs(5), responses.message())
            .await
            .expect("the stream ends")
        {
            Ok(Some(v1::ChatResponse {
                event: Some(Event::Ack(ack)),
            })) => acked.push(ack.message.unwrap().offset),
            Ok(Some(other)) => panic!("expected only acks, got {other:?}"),
            Ok(None) => break Code::Ok,
            Err(status) => break status.code(),
        }
    };
    assert_eq!(acked, (1..=20).collect::<Vec<u64>>());
    assert_eq!(end, Code::Ok);
}

/// A resend that comes after the relay window has moved past the original is not stored a
/// second time and not dead-lettered: the sender is told it was already sent.
#[tokio::test]
async fn a_resend_past_the_relay_window_is_recognised_by_the_store() {
    let app = spawn_app_with(|s| s.relay_window = 2).await;
    let room = room(&app).await;
    let mut ann = ChatClient::open(&app, &room.ann, &room.group.id, None)
        .await
        .unwrap();
    let original = ann.send_and_ack("dup", "said once").await;
    for i in 0..4 {
        ann.send_and_ack(&format!("later-{i}"), "later").await;
    }
    ann.send("dup", "said once").await;
    let rejected = ann
        .next_answer()
        .await
        .expect_err("the store already has it");
    assert_eq!(rejected.code, Code::AlreadyExists as i32, "{rejected:?}");
    // (The store itself: the relay's window, which history also merges, still shows the
    // resend live subscribers saw, until it moves on.)
    let (stored, _) = app
        .store()
        .await
        .list_messages(room.group.id.parse().unwrap(), None, None, 100)
        .await
        .unwrap();
    let copies: Vec<_> = stored
        .iter()
        .filter(|m| m.client_message_id == "dup")
        .collect();
    assert_eq!(copies.len(), 1, "{stored:?}");
    assert_eq!(copies[0].id.to_string(), original.id);
    assert!(
        app.store().await.dead_letters(10).await.unwrap().is_empty(),
        "a resend is not a dead letter"
    );
}

#[tokio::test]
async fn a_retried_send_returns_the_original_message() {
    let app = spawn_app().await;
    let room = room(&app).await;
    let mut ann = ChatClient::open(&app, &room.ann, &room.group.id, None)
        .await
        .unwrap();
    let mut bob = ChatClient::open(&app, &room.bob, &room.group.id, None)
        .await
        .unwrap();

    let first = ann.send_and_ack("same-id", "only once").await;
    let retry = ann.send_and_ack("same-id", "only once").await;
    assert_eq!(retry, first);

    // The unary path honours the same key.
    let mut chat = ChatServiceClient::new(app.channel.clone());
    let unary = chat
        .send_message(authed(
            v1::SendMessageRequest {
                group_id: room.group.id.clone(),
                client_message_id: "same-id".into(),
                body: "only once".into(),
            },
            &room.ann,
        ))
        .await
        .unwrap()
        .into_inner()
        .message
        .unwrap();
    assert_eq!(unary, first);

    assert_eq!(bob.next_message().await, first);
    let next = ann.send_and_ack("other-id", "second").await;
    assert_eq!(next.offset, 2, "the retries took no offset");
    assert_eq!(bob.next_message().await, next);

    let history = history(&app, &room.group.id, &room.bob).await;
    assert_eq!(
        history
            .messages
            .iter()
            .map(|m| m.offset)
            .collect::<Vec<_>>(),
        [2, 1]
    );
}

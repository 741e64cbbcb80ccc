//! ChatService on the embedded default: rooms over the `Chat` stream with real tonic
//! clients — delivery, ordering, idempotency, recovery, presence, typing, limits, isolation,
//! deletion and shutdown.

use std::collections::HashMap;
use std::time::Duration;

use quickchat_proto::v1::{self, chat_response::Event, chat_service_client::ChatServiceClient};
use tonic::Code;
use uuid::Uuid;

use crate::chat_client::ChatClient;
use crate::helpers::{TestApp, authed, expect_code, spawn_app, spawn_app_with};

/// A group with its owner and two members, Ann and Bob.
struct Room {
    owner: v1::Session,
    group: v1::Group,
    ann: String,
    bob: String,
}

/// The newest page of the room's stored history, as `token` sees it.
async fn history(app: &TestApp, group_id: &str, token: &str) -> v1::ListMessagesResponse {
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

async fn room(app: &TestApp) -> Room {
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

/// Ann sees one message from Bob, disconnects, and Bob sends `count` more. Returns Bob's
/// client, Ann's last position and the messages she missed.
async fn ann_misses(
    app: &TestApp,
    room: &Room,
    count: usize,
) -> (ChatClient, v1::StreamPosition, Vec<v1::Message>) {
    let mut bob = ChatClient::open(app, &room.bob, &room.group.id, None)
        .await
        .unwrap();
    let ann = ChatClient::open(app, &room.ann, &room.group.id, None)
        .await
        .unwrap();
    let first = bob.send_and_ack("b0", "seen").await;
    let position = ann.position(first.offset);
    drop(ann.leave());
    let mut missed = Vec::new();
    for i in 1..=count {
        missed.push(
            bob.send_and_ack(&format!("b{i}"), &format!("missed {i}"))
                .await,
        );
    }
    (bob, position, missed)
}

#[tokio::test]
async fn a_reconnecting_client_recovers_everything_it_missed() {
    let app = spawn_app().await;
    let room = room(&app).await;
    let (mut bob, position, missed) = ann_misses(&app, &room, 3).await;

    let mut ann = ChatClient::open(&app, &room.ann, &room.group.id, Some(position))
        .await
        .unwrap();
    assert!(ann.joined.recovered);
    assert_eq!(ann.joined.offset, 4);
    for expected in &missed {
        assert_eq!(&ann.next_message().await, expected);
    }
    let live = bob.send_and_ack("b4", "live").await;
    assert_eq!(ann.next_message().await, live);
}

#[tokio::test]
async fn recovery_falls_back_to_stored_history_when_the_relay_window_is_trimmed() {
    let app = spawn_app_with(|s| s.relay_window = 2).await;
    let room = room(&app).await;
    let (mut bob, position, missed) = ann_misses(&app, &room, 6).await;

    let mut ann = ChatClient::open(&app, &room.ann, &room.group.id, Some(position))
        .await
        .unwrap();
    assert!(ann.joined.recovered, "the store fills what the window lost");
    for expected in &missed {
        assert_eq!(&ann.next_message().await, expected);
    }
    // Then live, with nothing of the backlog repeated before it.
    let live = bob.send_and_ack("b-live", "live").await;
    assert_eq!(ann.next_message().await, live);
}

#[tokio::test]
async fn recovery_from_another_epoch_is_refused_plainly() {
    let app = spawn_app().await;
    let room = room(&app).await;
    let mut bob = ChatClient::open(&app, &room.bob, &room.group.id, None)
        .await
        .unwrap();
    bob.send_and_ack("b0", "one").await;
    bob.send_and_ack("b1", "two").await;

    let stale = v1::StreamPosition {
        offset: 1,
        epoch: "an-epoch-this-server-never-had".into(),
    };
    let mut ann = ChatClient::open(&app, &room.ann, &room.group.id, Some(stale))
        .await
        .unwrap();
    assert!(!ann.joined.recovered, "the client must refetch history");
    assert_eq!(ann.joined.offset, 2);
    ann.assert_no_message_within(Duration::from_millis(200))
        .await;
}

#[tokio::test]
async fn presence_follows_first_and_last_stream_of_each_member() {
    let app = spawn_app().await;
    let room = room(&app).await;
    let mut olga = ChatClient::open(&app, &room.owner.access_token, &room.group.id, None)
        .await
        .unwrap();

    let ann = ChatClient::open(&app, &room.ann, &room.group.id, None)
        .await
        .unwrap();
    let mut online: Vec<String> = ann.joined.online.iter().map(|m| m.name.clone()).collect();
    online.sort();
    assert_eq!(online, ["Ann", "Olga"]);
    let joined = olga.next_where(|e| match e {
        Event::MemberJoined(p) => p.member,
        _ => None,
    });
    assert_eq!(joined.await.name, "Ann");

    // A second stream of Ann (another device) changes nothing; closing one of two neither.
    let ann_again = ChatClient::open(&app, &room.ann, &room.group.id, None)
        .await
        .unwrap();
    drop(ann_again.leave());
    // Give the server time to see that stream close: a wrong "left" would come now.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let bob = ChatClient::open(&app, &room.bob, &room.group.id, None)
        .await
        .unwrap();
    let mut online: Vec<String> = bob.joined.online.iter().map(|m| m.name.clone()).collect();
    online.sort();
    assert_eq!(online, ["Ann", "Bob", "Olga"], "Ann is still online");
    let next = olga.next_where(|e| match e {
        Event::MemberJoined(p) | Event::MemberLeft(p) => Some(e_name(p.member)),
        _ => None,
    });
    assert_eq!(
        next.await,
        "joined? Bob",
        "no presence change for Ann's second stream"
    );
    let late = tokio::time::timeout(
        Duration::from_millis(300),
        olga.next_where(|e| match e {
            Event::MemberJoined(p) | Event::MemberLeft(p) => Some(e_name(p.member)),
            _ => None,
        }),
    )
    .await;
    assert!(late.is_err(), "no late presence event either: {late:?}");

    drop(ann.leave());
    let left = olga.next_where(|e| match e {
        Event::MemberLeft(p) => p.member,
        _ => None,
    });
    assert_eq!(left.await.name, "Ann");
    drop(bob);
}

fn e_name(member: Option<v1::OnlineMember>) -> String {
    format!("joined? {}", member.map(|m| m.name).unwrap_or_default())
}

#[tokio::test]
async fn typing_reaches_the_others_at_most_once_a_second() {
    let app = spawn_app().await;
    let room = room(&app).await;
    let mut ann = ChatClient::open(&app, &room.ann, &room.group.id, None)
        .await
        .unwrap();
    let mut bob = ChatClient::open(&app, &room.bob, &room.group.id, None)
        .await
        .unwrap();
    ann.next_where(|e| matches!(e, Event::MemberJoined(_)).then_some(()))
        .await;

    ann.typing().await;
    ann.typing().await;
    ann.typing().await;
    let marker = ann.send_and_ack("a1", "done typing").await;

    let mut typing = Vec::new();
    loop {
        match bob.next().await {
            Event::Typing(t) => typing.push(t.member.unwrap().name),
            Event::Message(m) => {
                assert_eq!(m, marker);
                break;
            }
            _ => {}
        }
    }
    assert_eq!(
        typing,
        ["Ann"],
        "one typing event per second; repeats are dropped"
    );
    // Typing is for the others: Ann never hears her own.
    bob.typing().await;
    let heard = ann.next_where(|e| match e {
        Event::Typing(t) => t.member,
        _ => None,
    });
    assert_eq!(heard.await.name, "Bob");
}

#[tokio::test]
async fn bad_and_too_fast_sends_are_rejected_and_the_stream_stays_open() {
    let app = spawn_app_with(|s| {
        s.chat.send_rate = 1.0;
        s.chat.send_burst = 3;
    })
    .await;
    let room = room(&app).await;
    let mut ann = ChatClient::open(&app, &room.ann, &room.group.id, None)
        .await
        .unwrap();

    ann.send("too-long", &"x".repeat(4001)).await;
    let rejected = ann.next_answer().await.unwrap_err();
    assert_eq!(
        (rejected.client_message_id.as_str(), rejected.code),
        ("too-long", Code::InvalidArgument as i32)
    );
    assert_eq!(
        rejected.message,
        "Message must be at most 4000 characters long."
    );
    ann.send("blank", "   ").await;
    assert_eq!(
        ann.next_answer().await.unwrap_err().message,
        "Message must not be blank."
    );

    for i in 0..3 {
        ann.send_and_ack(&format!("ok-{i}"), "within the burst")
            .await;
    }
    ann.send("over", "over the limit").await;
    let limited = ann.next_answer().await.unwrap_err();
    assert_eq!(limited.code, Code::ResourceExhausted as i32, "{limited:?}");

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let after = ann.send_and_ack("later", "a second later").await;
    assert_eq!(after.offset, 4, "rejected sends took no offset");

    // The unary path maps the same rules to status codes.
    let mut chat = ChatServiceClient::new(app.channel.clone());
    let status = expect_code(
        chat.send_message(authed(
            v1::SendMessageRequest {
                group_id: room.group.id.clone(),
                client_message_id: String::new(),
                body: String::new(),
            },
            &room.ann,
        ))
        .await,
        Code::InvalidArgument,
    );
    assert_eq!(status.message(), "Message must not be blank.");
}

/// A stream that falls further behind its room's feed than the feed holds is ended with
/// `RESOURCE_EXHAUSTED`, never left with a silent gap. Here Ann's stream waits for the
/// answer to her own send (the store is broken, so it comes only after the append
/// timeout) while Bob's sends pile into a four-event feed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stream_that_falls_behind_its_room_feed_is_ended_not_left_with_a_gap() {
    let app = spawn_app_with(|s| {
        s.room_feed_capacity = 4;
        s.chat.append_timeout = Duration::from_secs(2);
        s.persister_drain_timeout = Duration::from_secs(1);
    })
    .await;
    let room = room(&app).await;
    let mut ann = ChatClient::open(&app, &room.ann, &room.group.id, None)
        .await
        .unwrap();
    app.break_message_storage().await;
    ann.send("a1", "waiting for my ack").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sends = (0..10).map(|i| {
        let mut chat = ChatServiceClient::new(app.channel.clone());
        let request = authed(
            v1::SendMessageRequest {
                group_id: room.group.id.clone(),
                body: format!("flood {i}"),
                client_message_id: format!("b{i}"),
            },
            &room.bob,
        );
        tokio::spawn(async move { chat.send_message(request).await })
    });
    futures::future::join_all(sends).await;
    let status = ann.end_status().await;
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("fell too far behind"),
        "{status:?}"
    );
}

#[tokio::test]
async fn a_client_that_does_not_read_is_disconnected_as_a_slow_consumer() {
    let app = spawn_app_with(|s| {
        s.chat.outbound_capacity = 16;
        s.chat.send_rate = 10_000.0;
        s.chat.send_burst = 10_000;
    })
    .await;
    let room = room(&app).await;
    // The slow client has its own connection with HTTP/2's minimum windows, so its
    // transport buffers fill after a few messages, as a stalled phone's would.
    let slow_connection = tonic::transport::Endpoint::from_shared(format!("http://{}", app.addr))
        .unwrap()
        .initial_stream_window_size(65_535)
        .initial_connection_window_size(65_535)
        .connect()
        .await
        .unwrap();
    let mut slow = ChatClient::open_on(slow_connection, &room.ann, &room.group.id, None)
        .await
        .unwrap();
    let mut fast = ChatClient::open(&app, &room.owner.access_token, &room.group.id, None)
        .await
        .unwrap();

    // Big messages fill the transport's window quickly; then the server-side queue of 16.
    let body = "y".repeat(3900);
    let total = 400u64;
    let sender = tokio::spawn({
        let channel = app.channel.clone();
        let (group_id, token) = (room.group.id.clone(), room.bob.clone());
        async move {
            let mut chat = ChatServiceClient::new(channel);
            for i in 0..total {
                chat.send_message(authed(
                    v1::SendMessageRequest {
                        group_id: group_id.clone(),
                        client_message_id: format!("m{i}"),
                        body: body.clone(),
                    },
                    &token,
                ))
                .await
                .unwrap();
            }
        }
    });
    // The fast reader gets every message while the slow one reads nothing.
    for offset in 1..=total {
        assert_eq!(fast.next_message().await.offset, offset);
    }
    sender.await.unwrap();

    let mut received = 0u64;
    let status = loop {
        match tokio::time::timeout(Duration::from_secs(5), slow_next(&mut slow))
            .await
            .expect("slow stream ends")
        {
            Ok(()) => received += 1,
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("slow consumer"),
        "{}",
        status.message()
    );
    assert!(
        received < total,
        "the slow client was cut off, not buffered without bound"
    );
}

async fn slow_next(client: &mut ChatClient) -> Result<(), tonic::Status> {
    client.end_or_event().await
}

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

#[tokio::test]
async fn history_pages_newest_first_and_holds_acked_messages_at_once() {
    let app = spawn_app().await;
    let room = room(&app).await;
    let mut ann = ChatClient::open(&app, &room.ann, &room.group.id, None)
        .await
        .unwrap();
    // Acked means stored: each message is in the database itself (not only in the relay's
    // window, which ListMessages also merges) the moment its ack arrives.
    let store = app.store().await;
    let group_id: uuid::Uuid = room.group.id.parse().unwrap();
    for i in 1..=5u64 {
        ann.send_and_ack(&format!("m{i}"), &format!("message {i}"))
            .await;
        let stored = store.messages_between(group_id, i - 1, i).await.unwrap();
        assert_eq!(
            stored.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(),
            [format!("message {i}")],
            "message {i} is in the store when its ack arrives"
        );
    }
    let mut chat = ChatServiceClient::new(app.channel.clone());
    let list = |before: Option<u64>, after: Option<u64>, page_size: i32| {
        authed(
            v1::ListMessagesRequest {
                group_id: room.group.id.clone(),
                page_size,
                before_offset: before,
                after_offset: after,
            },
            &room.bob,
        )
    };
    let offsets =
        |r: &v1::ListMessagesResponse| r.messages.iter().map(|m| m.offset).collect::<Vec<_>>();

    // Acked means stored: no waiting.
    let newest = chat
        .list_messages(list(None, None, 2))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((offsets(&newest), newest.has_more), (vec![5, 4], true));
    let older = chat
        .list_messages(list(Some(4), None, 2))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((offsets(&older), older.has_more), (vec![3, 2], true));
    let oldest = chat
        .list_messages(list(Some(2), None, 2))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((offsets(&oldest), oldest.has_more), (vec![1], false));
    let catch_up = chat
        .list_messages(list(None, Some(1), 2))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((offsets(&catch_up), catch_up.has_more), (vec![3, 2], true));
    assert_eq!(newest.messages[0].body, "message 5");
    assert_eq!(newest.messages[0].sender_name, "Ann");

    let capped = chat
        .list_messages(list(None, None, 1000))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        capped.messages.len(),
        5,
        "page size is capped at 100, not refused"
    );
    expect_code(
        chat.list_messages(list(None, None, -1)).await,
        Code::InvalidArgument,
    );
}

#[tokio::test]
async fn shutdown_ends_streams_with_unavailable_and_acked_messages_survive() {
    let app = spawn_app().await;
    let room = room(&app).await;
    let mut ann = ChatClient::open(&app, &room.ann, &room.group.id, None)
        .await
        .unwrap();
    let mut bob = ChatClient::open(&app, &room.bob, &room.group.id, None)
        .await
        .unwrap();
    let acked = ann.send_and_ack("a1", "before the restart").await;
    assert_eq!(bob.next_message().await, acked);
    let position = bob.position(acked.offset);

    let stopping = tokio::spawn(async move { app.restart().await });
    let status = bob.end_status().await;
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains("shutting down"),
        "{}",
        status.message()
    );
    assert_eq!(ann.end_status().await.code(), Code::Unavailable);
    let app = stopping.await.unwrap();

    // A new process: offsets continue, history kept; the relay's epoch is new, so the old
    // position cannot be trusted and the client is told so.
    let mut bob = ChatClient::open(&app, &room.bob, &room.group.id, Some(position))
        .await
        .unwrap();
    assert!(!bob.joined.recovered);
    assert_eq!(bob.joined.offset, acked.offset);
    let mut ann = ChatClient::open(&app, &room.ann, &room.group.id, None)
        .await
        .unwrap();
    let next = ann.send_and_ack("a2", "after the restart").await;
    assert_eq!(next.offset, acked.offset + 1);
    assert_eq!(bob.next_message().await, next);
    let history = history(&app, &room.group.id, &room.bob).await;
    assert_eq!(
        history
            .messages
            .iter()
            .map(|m| m.body.as_str())
            .collect::<Vec<_>>(),
        ["after the restart", "before the restart"]
    );
}

/// Reads gRPC-web frames from an HTTP/1.1 response body as they arrive.
struct GrpcWebFrames {
    response: reqwest::Response,
    buffer: Vec<u8>,
}

enum Frame {
    Data(Vec<u8>),
    Trailers(String),
}

impl GrpcWebFrames {
    async fn next(&mut self) -> Frame {
        loop {
            if self.buffer.len() >= 5 {
                let len = u32::from_be_bytes(self.buffer[1..5].try_into().unwrap()) as usize;
                if self.buffer.len() >= 5 + len {
                    let flag = self.buffer[0];
                    let payload: Vec<u8> = self.buffer.drain(..5 + len).skip(5).collect();
                    return if flag & 0x80 != 0 {
                        Frame::Trailers(String::from_utf8_lossy(&payload).into_owned())
                    } else {
                        Frame::Data(payload)
                    };
                }
            }
            let chunk = tokio::time::timeout(Duration::from_secs(5), self.response.chunk())
                .await
                .expect("a chunk within 5 s")
                .expect("body readable")
                .expect("body not finished");
            self.buffer.extend_from_slice(&chunk);
        }
    }

    async fn next_event(&mut self) -> v1::subscribe_response::Event {
        use prost::Message;
        match self.next().await {
            Frame::Data(payload) => v1::SubscribeResponse::decode(payload.as_slice())
                .unwrap()
                .event
                .unwrap(),
            Frame::Trailers(t) => panic!("stream ended: {t}"),
        }
    }
}

fn grpc_web_request<M: prost::Message>(
    http: &reqwest::Client,
    app: &TestApp,
    method: &str,
    token: &str,
    msg: &M,
) -> reqwest::RequestBuilder {
    let payload = msg.encode_to_vec();
    let mut body = vec![0u8];
    body.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    body.extend_from_slice(&payload);
    http.post(format!(
        "http://{}/quickchat.v1.ChatService/{method}",
        app.addr
    ))
    .header("content-type", "application/grpc-web+proto")
    .header("x-grpc-web", "1")
    .header("authorization", format!("Bearer {token}"))
    .body(body)
}

#[tokio::test]
async fn a_browser_subscribes_and_sends_over_grpc_web_on_http1() {
    use prost::Message;
    use v1::subscribe_response::Event as WebEvent;

    let app = spawn_app().await;
    let room = room(&app).await;
    let http = reqwest::Client::builder().http1_only().build().unwrap();
    let mut bob = ChatClient::open(&app, &room.bob, &room.group.id, None)
        .await
        .unwrap();

    let response = grpc_web_request(
        &http,
        &app,
        "Subscribe",
        &room.ann,
        &v1::SubscribeRequest {
            group_id: room.group.id.clone(),
            since: None,
        },
    )
    .send()
    .await
    .unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_11);
    assert_eq!(
        response.headers()["content-type"],
        "application/grpc-web+proto"
    );
    let mut frames = GrpcWebFrames {
        response,
        buffer: Vec::new(),
    };
    let WebEvent::Joined(joined) = frames.next_event().await else {
        panic!("joined comes first")
    };
    assert!(joined.online.iter().any(|m| m.name == "Ann"));

    // Bob (native) writes; the browser sees it live.
    let from_bob = bob.send_and_ack("b1", "hello browser").await;
    let message = loop {
        if let WebEvent::Message(m) = frames.next_event().await {
            break m;
        }
    };
    assert_eq!(message, from_bob);

    // The browser sends with a unary gRPC-web call; Bob sees it and so does Ann's own
    // subscription (a browser tab shows its messages from the feed).
    let sent = grpc_web_request(
        &http,
        &app,
        "SendMessage",
        &room.ann,
        &v1::SendMessageRequest {
            group_id: room.group.id.clone(),
            client_message_id: "web-1".into(),
            body: "hi from the web".into(),
        },
    )
    .send()
    .await
    .unwrap();
    let mut answer = GrpcWebFrames {
        response: sent,
        buffer: Vec::new(),
    };
    let Frame::Data(payload) = answer.next().await else {
        panic!("a response message")
    };
    let sent = v1::SendMessageResponse::decode(payload.as_slice())
        .unwrap()
        .message
        .unwrap();
    assert!(matches!(answer.next().await, Frame::Trailers(t) if t.contains("grpc-status:0")));
    assert_eq!((sent.sender_name.as_str(), sent.offset), ("Ann", 2));
    assert_eq!(bob.next_message().await, sent);
    let echoed = loop {
        if let WebEvent::Message(m) = frames.next_event().await {
            break m;
        }
    };
    assert_eq!(echoed, sent);

    // Typing over unary reaches the native client.
    let typing = grpc_web_request(
        &http,
        &app,
        "SendTyping",
        &room.ann,
        &v1::SendTypingRequest {
            group_id: room.group.id.clone(),
        },
    )
    .send()
    .await
    .unwrap();
    assert!(typing.status().is_success());
    let who = bob.next_where(|e| match e {
        Event::Typing(t) => t.member,
        _ => None,
    });
    assert_eq!(who.await.name, "Ann");
}

#[tokio::test]
async fn an_oversized_request_is_refused_before_it_is_decoded() {
    let app = spawn_app().await;
    let room = room(&app).await;
    let mut chat = ChatServiceClient::new(app.channel.clone());
    let send = |body: String| {
        authed(
            v1::SendMessageRequest {
                group_id: room.group.id.clone(),
                client_message_id: String::new(),
                body,
            },
            &room.ann,
        )
    };
    // The longest valid body, in 4-byte characters, is accepted ...
    let longest = "𝄞".repeat(4000);
    let sent = chat
        .send_message(send(longest.clone()))
        .await
        .unwrap()
        .into_inner()
        .message
        .unwrap();
    assert_eq!(sent.body, longest);
    // ... a megabyte is refused at the door, and the server carries on.
    let status = expect_code(
        chat.send_message(send("x".repeat(1 << 20))).await,
        Code::OutOfRange,
    );
    assert!(
        status.message().contains("too large"),
        "{}",
        status.message()
    );
    chat.send_message(send("still here".into())).await.unwrap();
}

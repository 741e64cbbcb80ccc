//! Behaviour every [`RoomRelay`] must have. Each check is a generic `async fn` taking a
//! factory `make(window) -> relay`; [`relay_conformance_suite!`] instantiates all of them as
//! tests for one implementation.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use uuid::Uuid;

use super::{Published, Replay, RoomRelay, Subscription};
use crate::room::{MembershipChange, MessageDraft, Participant, RoomEvent};

const WAIT: Duration = Duration::from_secs(5);

pub fn draft(group_id: Uuid, sender_id: Uuid, client_message_id: &str, body: &str) -> MessageDraft {
    MessageDraft {
        id: Uuid::now_v7(),
        group_id,
        sender_id,
        sender_name: "Tester".into(),
        body: body.into(),
        client_message_id: client_message_id.into(),
        created_at: Utc::now(),
    }
}

async fn next_event(sub: &mut Subscription) -> RoomEvent {
    tokio::time::timeout(WAIT, sub.events.next())
        .await
        .expect("event within 5 s")
        .expect("feed open")
        .expect("not lagged")
}

async fn next_offset(sub: &mut Subscription) -> u64 {
    match next_event(sub).await {
        RoomEvent::Message(m) => m.offset,
        other => panic!("expected a message, got {other:?}"),
    }
}

pub async fn offsets_start_at_one_and_increase_by_one<R: RoomRelay, F: Future<Output = R>>(
    make: impl Fn(usize) -> F,
) {
    let relay = make(100).await;
    let group = Uuid::new_v4();
    for expected in 1..=5u64 {
        let published = relay
            .publish(draft(group, Uuid::new_v4(), "", "hi"))
            .await
            .unwrap();
        assert!(matches!(published, Published::New(_)));
        assert_eq!(published.message().offset, expected);
    }
    // Another room has its own sequence.
    let other = relay
        .publish(draft(Uuid::new_v4(), Uuid::new_v4(), "", "hi"))
        .await
        .unwrap();
    assert_eq!(other.message().offset, 1);
}

pub async fn concurrent_publishers_get_gapless_distinct_offsets<
    R: RoomRelay,
    F: Future<Output = R>,
>(
    make: impl Fn(usize) -> F,
) {
    let relay = Arc::new(make(1000).await);
    let group = Uuid::new_v4();
    let mut sub = relay.subscribe(group).await.unwrap();
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let relay = relay.clone();
            tokio::spawn(async move {
                let sender = Uuid::new_v4();
                let mut offsets = Vec::new();
                for i in 0..20 {
                    let p = relay
                        .publish(draft(group, sender, &format!("m{i}"), "hi"))
                        .await
                        .unwrap();
                    offsets.push(p.message().offset);
                }
                offsets
            })
        })
        .collect();
    let mut all = HashSet::new();
    for task in tasks {
        for offset in task.await.unwrap() {
            assert!(all.insert(offset), "offset {offset} assigned twice");
        }
    }
    assert_eq!(all, (1..=200).collect::<HashSet<u64>>());
    // A subscriber sees them in offset order.
    for expected in 1..=200 {
        assert_eq!(next_offset(&mut sub).await, expected);
    }
}

pub async fn subscribers_get_what_follows_their_head_in_order<
    R: RoomRelay,
    F: Future<Output = R>,
>(
    make: impl Fn(usize) -> F,
) {
    let relay = make(100).await;
    let group = Uuid::new_v4();
    relay
        .publish(draft(group, Uuid::new_v4(), "", "before"))
        .await
        .unwrap();
    let mut sub = relay.subscribe(group).await.unwrap();
    assert_eq!(sub.head, 1);
    for _ in 0..3 {
        relay
            .publish(draft(group, Uuid::new_v4(), "", "after"))
            .await
            .unwrap();
    }
    assert_eq!(next_offset(&mut sub).await, 2);
    assert_eq!(next_offset(&mut sub).await, 3);
    assert_eq!(next_offset(&mut sub).await, 4);
}

pub async fn a_repeated_client_message_id_returns_the_original<
    R: RoomRelay,
    F: Future<Output = R>,
>(
    make: impl Fn(usize) -> F,
) {
    let relay = make(100).await;
    let group = Uuid::new_v4();
    let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
    let first = relay
        .publish(draft(group, alice, "abc", "hello"))
        .await
        .unwrap();
    let retry = relay
        .publish(draft(group, alice, "abc", "hello"))
        .await
        .unwrap();
    assert_eq!(retry, Published::Duplicate(first.message().clone()));
    // Same key from someone else, or no key at all, is a new message.
    let bobs = relay
        .publish(draft(group, bob, "abc", "hello"))
        .await
        .unwrap();
    assert!(matches!(bobs, Published::New(ref m) if m.offset == 2));
    relay.publish(draft(group, alice, "", "x")).await.unwrap();
    let again = relay.publish(draft(group, alice, "", "x")).await.unwrap();
    assert_eq!(again.message().offset, 4);
}

pub async fn replay_serves_the_window_and_says_what_it_lacks<
    R: RoomRelay,
    F: Future<Output = R>,
>(
    make: impl Fn(usize) -> F,
) {
    let relay = make(3).await;
    let group = Uuid::new_v4();
    let epoch = relay.subscribe(group).await.unwrap().epoch;
    for _ in 0..5 {
        relay
            .publish(draft(group, Uuid::new_v4(), "", "hi"))
            .await
            .unwrap();
    }
    let offsets =
        |ms: &[Arc<crate::room::ChatMessage>]| ms.iter().map(|m| m.offset).collect::<Vec<_>>();
    match relay.replay(group, &epoch, 2, 5).await.unwrap() {
        Replay::Complete(ms) => assert_eq!(offsets(&ms), [3, 4, 5]),
        other => panic!("expected complete, got {other:?}"),
    }
    match relay.replay(group, &epoch, 3, 4).await.unwrap() {
        Replay::Complete(ms) => assert_eq!(offsets(&ms), [4]),
        other => panic!("expected complete, got {other:?}"),
    }
    match relay.replay(group, &epoch, 0, 5).await.unwrap() {
        Replay::Partial {
            first_available,
            messages,
        } => {
            assert_eq!(first_available, 3);
            assert_eq!(offsets(&messages), [3, 4, 5]);
        }
        other => panic!("expected partial, got {other:?}"),
    }
    assert_eq!(
        relay.replay(group, "another-epoch", 2, 5).await.unwrap(),
        Replay::EpochChanged
    );
}

pub async fn recent_returns_the_newest_messages_oldest_first<
    R: RoomRelay,
    F: Future<Output = R>,
>(
    make: impl Fn(usize) -> F,
) {
    let relay = make(3).await;
    let group = Uuid::new_v4();
    assert!(relay.recent(group, 10).await.unwrap().is_empty());
    for _ in 0..5 {
        relay
            .publish(draft(group, Uuid::new_v4(), "", "hi"))
            .await
            .unwrap();
    }
    let offsets =
        |ms: Vec<Arc<crate::room::ChatMessage>>| ms.iter().map(|m| m.offset).collect::<Vec<_>>();
    assert_eq!(offsets(relay.recent(group, 2).await.unwrap()), [4, 5]);
    let all = offsets(relay.recent(group, 100).await.unwrap());
    assert!(
        all.ends_with(&[3, 4, 5]) && all.windows(2).all(|w| w[1] == w[0] + 1),
        "{all:?}"
    );
}

pub async fn ephemeral_events_reach_subscribers_but_are_not_replayed<
    R: RoomRelay,
    F: Future<Output = R>,
>(
    make: impl Fn(usize) -> F,
) {
    let relay = make(100).await;
    let group = Uuid::new_v4();
    let mut sub = relay.subscribe(group).await.unwrap();
    let ann = Participant {
        id: Uuid::new_v4(),
        name: "Ann".into(),
    };
    // Typing between two messages: live, everyone sees all three in order...
    relay
        .publish(draft(group, ann.id, "", "before"))
        .await
        .unwrap();
    relay
        .broadcast(group, RoomEvent::Typing(ann.clone()))
        .await
        .unwrap();
    relay
        .publish(draft(group, ann.id, "", "after"))
        .await
        .unwrap();
    // (Messages and ephemeral events may travel separate paths, e.g. a Redis stream and
    // Pub/Sub, so the typing event's place among the messages is not fixed.)
    let mut offsets = Vec::new();
    let mut typing = Vec::new();
    for _ in 0..3 {
        match next_event(&mut sub).await {
            RoomEvent::Message(m) => offsets.push(m.offset),
            RoomEvent::Typing(p) => typing.push(p),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(offsets, [1, 2], "typing takes no offset");
    assert_eq!(typing, [ann]);
    // ...but a replay of the room holds only the messages.
    let late = relay.subscribe(group).await.unwrap();
    assert_eq!(late.head, 2);
    match relay
        .replay(group, &late.epoch, 0, late.head)
        .await
        .unwrap()
    {
        Replay::Complete(ms) => {
            let bodies: Vec<_> = ms.iter().map(|m| m.body.as_str()).collect();
            assert_eq!(bodies, ["before", "after"]);
        }
        other => panic!("expected the two messages, got {other:?}"),
    }
}

pub async fn rooms_are_isolated<R: RoomRelay, F: Future<Output = R>>(make: impl Fn(usize) -> F) {
    let relay = make(100).await;
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let mut sub_a = relay.subscribe(a).await.unwrap();
    relay
        .publish(draft(b, Uuid::new_v4(), "", "for b"))
        .await
        .unwrap();
    relay
        .broadcast(
            b,
            RoomEvent::Typing(Participant {
                id: Uuid::new_v4(),
                name: "B".into(),
            }),
        )
        .await
        .unwrap();
    relay
        .publish(draft(a, Uuid::new_v4(), "", "for a"))
        .await
        .unwrap();
    match next_event(&mut sub_a).await {
        RoomEvent::Message(m) => assert_eq!((m.group_id, m.body.as_str()), (a, "for a")),
        other => panic!("room A saw {other:?}"),
    }
}

pub async fn closing_a_room_tells_its_subscribers<R: RoomRelay, F: Future<Output = R>>(
    make: impl Fn(usize) -> F,
) {
    let relay = make(100).await;
    let group = Uuid::new_v4();
    let mut sub = relay.subscribe(group).await.unwrap();
    relay.close_room(group).await.unwrap();
    assert_eq!(next_event(&mut sub).await, RoomEvent::Closed);
}

pub async fn membership_changes_reach_listeners_without_subscribers_of_the_room<
    R: RoomRelay,
    F: Future<Output = R>,
>(
    make: impl Fn(usize) -> F,
) {
    let relay = make(100).await;
    let mut changes = relay.membership_changes();
    let (group, other) = (Uuid::new_v4(), Uuid::new_v4());
    let mut sub = relay.subscribe(group).await.unwrap();
    let who = Participant {
        id: Uuid::new_v4(),
        name: "Mallory".into(),
    };
    let removed = RoomEvent::MemberRemoved {
        who: who.clone(),
        left: false,
    };
    relay.broadcast(group, removed.clone()).await.unwrap();
    // Nobody reads `other`: its change still reaches the listener.
    relay
        .broadcast(other, RoomEvent::MembersRevoked)
        .await
        .unwrap();
    // Other events are not membership changes.
    relay
        .broadcast(other, RoomEvent::Typing(who.clone()))
        .await
        .unwrap();
    let mut next = async || {
        tokio::time::timeout(WAIT, changes.recv())
            .await
            .expect("a change within 5 s")
            .expect("listening")
    };
    assert_eq!(
        next().await,
        MembershipChange::Removed {
            group_id: group,
            member_id: who.id
        }
    );
    assert_eq!(next().await, MembershipChange::Revoked { group_id: other });
    assert_eq!(next_event(&mut sub).await, removed, "the room hears it too");
}

/// Instantiates every conformance check as a `#[tokio::test]` for the relay that
/// `$make(window)` builds, on a multi-threaded runtime so that the concurrency checks
/// really run in parallel.
#[macro_export]
macro_rules! relay_conformance_suite {
    ($make:path) => {
        $crate::relay_conformance_suite!(@tests $make;
            offsets_start_at_one_and_increase_by_one,
            concurrent_publishers_get_gapless_distinct_offsets,
            subscribers_get_what_follows_their_head_in_order,
            a_repeated_client_message_id_returns_the_original,
            replay_serves_the_window_and_says_what_it_lacks,
            recent_returns_the_newest_messages_oldest_first,
            ephemeral_events_reach_subscribers_but_are_not_replayed,
            rooms_are_isolated,
            closing_a_room_tells_its_subscribers,
            membership_changes_reach_listeners_without_subscribers_of_the_room,
        );
    };
    (@tests $make:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                $crate::relay::conformance::$name($make).await;
            }
        )*
    };
}

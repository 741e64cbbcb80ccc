//! Reconnecting with `since`: everything missed, from the relay window or the store, or a
//! plain refusal across epochs.

use super::*;

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

//! Stored history: pages, acked messages at once, and what survives a shutdown.

use super::*;

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

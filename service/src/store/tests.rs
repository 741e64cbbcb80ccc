//! The message batch insert, on both backends: replays keep one row per message, and every
//! row the database refuses is classified — its group gone, a resend, or dead-lettered with
//! the reason — without holding up the rows around it.

use std::sync::Arc;

use uuid::Uuid;

use super::{Fate, Store, test_group, test_postgres};
use crate::room::ChatMessage;

async fn sqlite() -> Store {
    Store::connect("sqlite::memory:")
        .await
        .expect("in-memory store")
}

fn message(group_id: Uuid, offset: u64, body: &str) -> Arc<ChatMessage> {
    let mut message = (*crate::log::conformance::message(group_id, offset)).clone();
    message.body = body.into();
    message.client_message_id = format!("c-{offset}");
    Arc::new(message)
}

async fn stored_bodies(store: &Store, group_id: Uuid) -> Vec<String> {
    let (rows, _) = store
        .list_messages(group_id, None, None, 10_000)
        .await
        .unwrap();
    rows.into_iter().rev().map(|m| m.body).collect()
}

async fn a_replayed_batch_keeps_one_row_per_message(store: Store) {
    let group_id = test_group(&store).await;
    let batch: Vec<_> = (1..=1200)
        .map(|n| message(group_id, n, &format!("m{n}")))
        .collect();
    assert!(store.insert_messages(&batch).await.unwrap().is_empty());
    // Replayed whole, and a message twice within one batch.
    assert!(store.insert_messages(&batch).await.unwrap().is_empty());
    let twice = [batch[0].clone(), batch[0].clone()];
    assert!(store.insert_messages(&twice).await.unwrap().is_empty());

    let bodies = stored_bodies(&store, group_id).await;
    assert_eq!(bodies.len(), 1200);
    assert_eq!(bodies[0], "m1");
    assert_eq!(bodies[1199], "m1200");
    let first = store
        .messages_between(group_id, 0, 1)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(first.id, batch[0].id);
    assert_eq!(first.sender_id, batch[0].sender_id);
    assert_eq!(first.client_message_id, "c-1");
    assert_eq!(first.created_at, batch[0].created_at);
    assert!(store.dead_letters(10).await.unwrap().is_empty());
}

/// Every kind of refusal in one batch, between rows that must be stored.
async fn refused_rows_are_classified_and_the_rest_stored(store: Store, nul_refused: bool) {
    let group_id = test_group(&store).await;
    let original = message(group_id, 1, "original");
    let holder = message(group_id, 2, "holder of offset 2");
    store
        .insert_messages(&[original.clone(), holder])
        .await
        .unwrap();

    let gone_group = test_group(&store).await;
    assert!(store.delete_group(gone_group).await.unwrap());
    let orphan = message(gone_group, 1, "its group is gone");
    let taken = message(group_id, 2, "offset taken");
    let mut resend = (*message(group_id, 3, "a resend")).clone();
    resend.sender_id = original.sender_id;
    resend.client_message_id = original.client_message_id.clone();
    let resend = Arc::new(resend);
    let nul = message(group_id, 4, "nul\u{0}");
    let without_client_id = Arc::new(ChatMessage {
        client_message_id: String::new(),
        ..(*message(group_id, 6, "no client id")).clone()
    });
    let batch = vec![
        message(group_id, 5, "before"),
        orphan.clone(),
        taken.clone(),
        resend.clone(),
        nul.clone(),
        without_client_id,
        message(group_id, 7, "after"),
    ];
    let unstored = store.insert_messages(&batch).await.unwrap();

    let fate = |id: Uuid| {
        unstored
            .iter()
            .find(|u| u.message_id == id)
            .map(|u| &u.fate)
    };
    assert_eq!(fate(orphan.id), Some(&Fate::GroupGone), "{unstored:?}");
    assert_eq!(fate(resend.id), Some(&Fate::Resent), "{unstored:?}");
    assert!(
        matches!(fate(taken.id), Some(Fate::DeadLettered(reason)) if !reason.is_empty()),
        "{unstored:?}"
    );
    assert_eq!(
        matches!(fate(nul.id), Some(Fate::DeadLettered(_))),
        nul_refused,
        "{unstored:?}"
    );
    assert_eq!(unstored.len(), if nul_refused { 4 } else { 3 });

    let bodies = stored_bodies(&store, group_id).await;
    for body in [
        "original",
        "holder of offset 2",
        "before",
        "no client id",
        "after",
    ] {
        assert!(bodies.iter().any(|b| b == body), "{body}: {bodies:?}");
    }
    assert!(
        !bodies
            .iter()
            .any(|b| b == "offset taken" || b == "a resend")
    );

    let mut dead: Vec<Uuid> = store
        .dead_letters(10)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    dead.sort();
    let mut expected = vec![taken.id];
    if nul_refused {
        expected.push(nul.id);
    }
    expected.sort();
    assert_eq!(dead, expected);

    // Replaying the batch (a persister restarted before committing it) changes nothing.
    let again = store.insert_messages(&batch).await.unwrap();
    assert_eq!(again, unstored);
    assert_eq!(stored_bodies(&store, group_id).await, bodies);
    assert_eq!(store.dead_letters(10).await.unwrap().len(), expected.len());
}

#[tokio::test]
async fn a_replayed_batch_keeps_one_row_per_message_on_sqlite() {
    a_replayed_batch_keeps_one_row_per_message(sqlite().await).await;
}

#[tokio::test]
async fn a_replayed_batch_keeps_one_row_per_message_on_postgres() {
    a_replayed_batch_keeps_one_row_per_message(test_postgres().await).await;
}

#[tokio::test]
async fn refused_rows_are_classified_and_the_rest_stored_on_sqlite() {
    // SQLite stores NUL in text.
    refused_rows_are_classified_and_the_rest_stored(sqlite().await, false).await;
}

#[tokio::test]
async fn refused_rows_are_classified_and_the_rest_stored_on_postgres() {
    refused_rows_are_classified_and_the_rest_stored(test_postgres().await, true).await;
}

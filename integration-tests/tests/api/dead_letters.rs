//! A row the database refuses must not jam storage: the persister keeps it in
//! `dead_letters` with the reason and moves on, and its sender is not told it is durable.
//! (Before: a body with NUL was retried forever on PostgreSQL, and every later send in every
//! room failed with `UNAVAILABLE`.)
//!
//! The text rules keep NUL out at the API, so these tests hand rows to the log directly, as
//! a future bug or a client of an older version could.

use std::sync::Arc;
use std::time::Duration;

use quickchat_service::log::memory::InProcessLog;
use quickchat_service::log::{LogError, MessageLog, persister};
use quickchat_service::room::ChatMessage;
use quickchat_service::store::{NewUser, Store};
use uuid::Uuid;

use crate::helpers::fresh_postgres_database;

async fn store_with_group(url: &str) -> (Store, Uuid) {
    let store = Store::connect(url).await.expect("store");
    let owner = store
        .create_user(NewUser {
            name: "Owner",
            email: Some(&format!("{}@example.com", Uuid::new_v4())),
            provider: "local",
            subject: None,
            password_hash: None,
            image_url: None,
        })
        .await
        .expect("user");
    let group = store
        .create_group(owner.id, "Dead letters", "hash".into())
        .await
        .expect("group");
    (store, group.id)
}

pub(crate) fn message(group_id: Uuid, offset: u64, body: &str) -> Arc<ChatMessage> {
    Arc::new(ChatMessage {
        id: Uuid::now_v7(),
        group_id,
        offset,
        sender_id: Uuid::new_v4(),
        sender_name: "Ann".into(),
        body: body.into(),
        client_message_id: String::new(),
        created_at: quickchat_service::store::now(),
        wire: Default::default(),
    })
}

/// Appends each message concurrently (so they share a batch) and returns each outcome.
async fn append_all(
    log: &Arc<InProcessLog>,
    messages: &[Arc<ChatMessage>],
) -> Vec<Result<(), LogError>> {
    let appends = messages.iter().map(|m| {
        let log = log.clone();
        let m = m.clone();
        async move { log.append(m).await }
    });
    tokio::time::timeout(Duration::from_secs(10), futures::future::join_all(appends))
        .await
        .expect("the log answers every append")
}

async fn check_poison_is_dead_lettered(store: Store, group_id: Uuid, poison: Arc<ChatMessage>) {
    let (log, source) = InProcessLog::new(64);
    let log = Arc::new(log);
    let persister = tokio::spawn(persister::run(source, store.clone(), 100));

    let before = message(group_id, 1, "before");
    let after = message(group_id, 3, "after");
    let outcomes = append_all(&log, &[before.clone(), poison.clone(), after.clone()]).await;
    assert!(outcomes[0].is_ok(), "{outcomes:?}");
    assert!(
        matches!(outcomes[1], Err(LogError::NotStored { group_gone: false })),
        "the poison's sender is not told it is durable: {outcomes:?}"
    );
    assert!(outcomes[2].is_ok(), "{outcomes:?}");

    // Later messages are not held up either.
    let later = message(group_id, 4, "later");
    assert!(append_all(&log, &[later]).await[0].is_ok());

    let (stored, _) = store
        .list_messages(group_id, None, None, 100)
        .await
        .unwrap();
    let bodies: Vec<_> = stored.iter().rev().map(|m| m.body.as_str()).collect();
    for body in ["before", "after", "later"] {
        assert!(bodies.contains(&body), "{body} stored: {bodies:?}");
    }
    assert!(!bodies.contains(&poison.body.as_str()), "{bodies:?}");

    let dead = store.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].id, poison.id);
    assert_eq!(dead[0].room_offset, poison.offset as i64);
    assert!(!dead[0].reason.is_empty());
    let payload: serde_json::Value = serde_json::from_str(&dead[0].payload).unwrap();
    assert_eq!(
        payload["body"],
        poison.body.as_str(),
        "the message is kept whole"
    );

    log.close().await;
    tokio::time::timeout(Duration::from_secs(5), persister)
        .await
        .expect("the persister drains and stops")
        .unwrap();
}

/// PostgreSQL cannot store NUL in text: the row is dead-lettered, the others are stored.
#[tokio::test]
async fn a_nul_body_is_dead_lettered_not_retried_forever_on_postgres() {
    let url = fresh_postgres_database().await;
    let (store, group_id) = store_with_group(&url).await;
    let poison = message(group_id, 2, "poison\u{0}");
    check_poison_is_dead_lettered(store, group_id, poison).await;
}

/// A row whose offset another message already holds can never be stored either; on every
/// backend it is dead-lettered rather than dropped in silence.
#[tokio::test]
async fn a_message_whose_offset_is_taken_is_dead_lettered() {
    let url = match std::env::var("QUICKCHAT_TEST_STORE").as_deref() {
        Ok("postgres") => fresh_postgres_database().await,
        _ => format!(
            "sqlite://{}/dead.db?mode=rwc",
            tempfile::tempdir().unwrap().keep().display()
        ),
    };
    let (store, group_id) = store_with_group(&url).await;
    let holder = message(group_id, 2, "first at offset 2");
    store.insert_messages(&[holder]).await.unwrap();
    let poison = message(group_id, 2, "second at offset 2");
    check_poison_is_dead_lettered(store, group_id, poison).await;
}

/// End to end on the embedded default: a message whose row the store refuses (its offset
/// was taken behind the server's back) is not acknowledged — the sender hears it failed —
/// and an operator sees it in `dead_letters` and in the metrics. (Before, the persister
/// dropped it with a warning and the sender was acked for a message that was never stored.)
#[tokio::test]
async fn a_refused_message_is_not_acked_and_is_counted() {
    let app =
        crate::helpers::spawn_app_with(|s| s.metrics_listen = Some("127.0.0.1:0".parse().unwrap()))
            .await;
    let owner = app.register("Olga").await;
    let group = app.create_group(&owner.access_token, "Refused").await;
    let group_id: Uuid = group.id.parse().unwrap();
    let mut olga = crate::chat_client::ChatClient::open(&app, &owner.access_token, &group.id, None)
        .await
        .unwrap();
    olga.send_and_ack("m1", "stored").await;

    let store = app.store().await;
    store
        .insert_messages(&[message(group_id, 2, "an intruder at offset 2")])
        .await
        .unwrap();
    olga.send("m2", "refused by the store").await;
    let rejected = olga
        .next_answer()
        .await
        .expect_err("not durable, so not acked");
    assert_eq!(rejected.code, tonic::Code::Internal as i32, "{rejected:?}");

    let dead = store.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].room_offset, 2);
    assert!(dead[0].payload.contains("refused by the store"));
    let scrape = reqwest::get(format!(
        "http://{}/metrics",
        app.metrics_addr.expect("metrics are on")
    ))
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    assert!(
        scrape
            .lines()
            .any(|l| l == "quickchat_persister_dead_letters_total 1"),
        "{scrape}"
    );
}

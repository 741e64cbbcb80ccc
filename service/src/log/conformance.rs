//! Behaviour every [`MessageLog`] (with its persister running) must have. The factory
//! returns the log and the store its persister writes to.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::SubsecRound;
use uuid::Uuid;

use super::MessageLog;
use crate::room::ChatMessage;
use crate::store::Store;

async fn group(store: &Store) -> Uuid {
    crate::store::test_group(store).await
}

pub(crate) fn message(group_id: Uuid, offset: u64) -> Arc<ChatMessage> {
    Arc::new(ChatMessage {
        id: Uuid::now_v7(),
        group_id,
        offset,
        sender_id: Uuid::new_v4(),
        sender_name: "Ann".into(),
        body: format!("message {offset}"),
        client_message_id: String::new(),
        created_at: chrono::Utc::now().trunc_subsecs(6),
        wire: Default::default(),
    })
}

/// Waits (bounded) until the store holds `count` messages of `group_id`.
async fn stored(store: &Store, group_id: Uuid, count: usize) -> Vec<ChatMessage> {
    for _ in 0..100 {
        let (messages, _) = store
            .list_messages(group_id, None, None, 1000)
            .await
            .unwrap();
        if messages.len() >= count {
            return messages;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the store did not get {count} messages within 5 s");
}

pub async fn appended_messages_reach_the_store<
    L: MessageLog + ?Sized,
    F: Future<Output = (Arc<L>, Store)>,
>(
    make: impl Fn() -> F,
) {
    let (log, store) = make().await;
    let group_id = group(&store).await;
    let m = message(group_id, 1);
    log.append(m.clone()).await.unwrap();
    let stored = stored(&store, group_id, 1).await;
    assert_eq!(stored, [(*m).clone()]);
}

pub async fn appending_twice_keeps_one_row<
    L: MessageLog + ?Sized,
    F: Future<Output = (Arc<L>, Store)>,
>(
    make: impl Fn() -> F,
) {
    let (log, store) = make().await;
    let group_id = group(&store).await;
    let m = message(group_id, 1);
    log.append(m.clone()).await.unwrap();
    log.append(m.clone()).await.unwrap();
    log.append(message(group_id, 2)).await.unwrap();
    let stored = stored(&store, group_id, 2).await;
    assert_eq!(stored.iter().map(|m| m.offset).collect::<Vec<_>>(), [2, 1]);
}

pub async fn concurrent_appends_are_all_persisted<
    L: MessageLog + ?Sized,
    F: Future<Output = (Arc<L>, Store)>,
>(
    make: impl Fn() -> F,
) {
    let (log, store) = make().await;
    let group_id = group(&store).await;
    let appends: Vec<_> = (1..=300)
        .map(|offset| {
            let log = log.clone();
            tokio::spawn(async move { log.append(message(group_id, offset)).await })
        })
        .collect();
    for append in appends {
        append.await.unwrap().unwrap();
    }
    let stored = stored(&store, group_id, 300).await;
    assert_eq!(stored.len(), 300);
}

pub async fn a_closed_log_refuses_appends<
    L: MessageLog + ?Sized,
    F: Future<Output = (Arc<L>, Store)>,
>(
    make: impl Fn() -> F,
) {
    let (log, store) = make().await;
    let group_id = group(&store).await;
    log.close().await;
    assert!(log.append(message(group_id, 1)).await.is_err());
}

/// Instantiates every log conformance check as a `#[tokio::test]` for the log (and store)
/// that `$make()` builds.
#[macro_export]
macro_rules! log_conformance_suite {
    ($make:path) => {
        $crate::log_conformance_suite!(@tests $make;
            appended_messages_reach_the_store,
            appending_twice_keeps_one_row,
            concurrent_appends_are_all_persisted,
            a_closed_log_refuses_appends,
        );
    };
    (@tests $make:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                $crate::log::conformance::$name($make).await;
            }
        )*
    };
}

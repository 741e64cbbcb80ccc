//! Processes killed with SIGKILL at a moment the test chooses.

use std::time::Duration;

use sea_orm::{ConnectionTrait, TransactionTrait};

use crate::chat_client::ChatClient;
use crate::helpers::{create_group_on, register_on};
use crate::nodes::{ClusterEnv, Node};
use crate::private::{PrivateBroker, free_address};
use crate::process::ServerProcess;
use crate::proxy::CuttableProxy;

/// Polls `check` every 100 ms until it holds (at most `within`).
async fn eventually<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A persister process killed after writing a batch to PostgreSQL and before Kafka heard
/// its commit: the consumer group's committed offsets prove the batch was uncommitted, the
/// next persister replays exactly that batch (its own metrics count it), and every acked
/// message ends up stored once.
///
/// The moment is made, not hoped for: the test holds a lock on `messages` so the persister
/// blocks inside its insert with the batch in hand, cuts its network to Kafka (a proxy the
/// broker advertises), releases the lock so the rows are written, and kills the process
/// as soon as they are visible — its commit never left the cut network.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_persister_killed_between_writing_and_committing_is_replayed_by_the_next() {
    let broker_address = free_address();
    let proxy = CuttableProxy::start(broker_address.parse().unwrap()).await;
    let _broker = PrivateBroker::start_at(broker_address, &proxy.addr.to_string()).await;
    let mut env = ClusterEnv::new().await;
    env.kafka_brokers = proxy.addr.to_string();
    env.kafka.partitions = 1;

    // The node only relays and produces; the persister is a process of its own.
    let sender = Node::start(quickchat_service::Settings {
        persister_enabled: false,
        ..env.settings()
    })
    .await;
    let mut first = ServerProcess::start(&persister_args(&env));
    let owner = register_on(&sender.channel, "Olga").await;
    let group = create_group_on(&sender.channel, &owner.access_token, "Persist me").await;
    let mut olga =
        ChatClient::open_on(sender.channel.clone(), &owner.access_token, &group.id, None)
            .await
            .unwrap();
    let store = env.store().await;
    let rows = || {
        let store = store.clone();
        let group_id = group.id.parse().unwrap();
        async move {
            store
                .list_messages(group_id, None, None, 1000)
                .await
                .unwrap()
                .0
                .len()
        }
    };

    for i in 0..20 {
        olga.send_and_ack(&format!("m{i}"), &format!("message {i}"))
            .await;
    }
    eventually("20 rows stored", Duration::from_secs(60), || async {
        rows().await == 20
    })
    .await;
    eventually("20 records committed", Duration::from_secs(30), || async {
        env.committed_records() == 20
    })
    .await;

    // The persister will block inside its next insert.
    let db = store.connection();
    let lock = db.begin().await.unwrap();
    lock.execute_unprepared("LOCK TABLE messages IN SHARE ROW EXCLUSIVE MODE")
        .await
        .unwrap();
    for i in 20..30 {
        olga.send_and_ack(&format!("m{i}"), &format!("message {i}"))
            .await;
    }
    eventually(
        "the persister waits inside its insert",
        Duration::from_secs(30),
        || async {
            let waiting = db
                .query_one_raw(sea_orm::Statement::from_string(
                    db.get_database_backend(),
                    "SELECT count(*) AS n FROM pg_stat_activity
                 WHERE datname = current_database() AND wait_event_type = 'Lock'
                   AND query ILIKE 'INSERT INTO%messages%'",
                ))
                .await
                .unwrap()
                .and_then(|row| row.try_get::<i64>("", "n").ok())
                .unwrap_or(0);
            waiting > 0
        },
    )
    .await;

    proxy.cut();
    lock.commit().await.unwrap();
    // The batch in hand is written (and whatever else the consumer had prefetched before
    // the cut); nothing more can arrive, and no commit can leave.
    eventually("the batch written", Duration::from_secs(30), || async {
        rows().await > 20
    })
    .await;
    let mut written = rows().await;
    loop {
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        let now = rows().await;
        if now == written {
            break;
        }
        written = now;
    }
    assert_eq!(
        first.metric("quickchat_persisted_messages").await,
        written as f64,
        "the first persister wrote every stored row"
    );
    first.kill();
    proxy.restore();
    assert_eq!(
        env.committed_records(),
        20,
        "the killed persister had written {written} rows but committed 20"
    );

    // The next persister (after the dead one's session lapses) reads the batch again.
    tokio::time::sleep(Duration::from_millis(
        u64::from(env.kafka.session_timeout_ms) + 1_000,
    ))
    .await;
    let mut second = ServerProcess::start(&persister_args(&env));
    eventually("30 records committed", Duration::from_secs(60), || async {
        env.committed_records() == 30
    })
    .await;
    // Everything after the committed offset: the rows the first one wrote but never
    // committed (written again, harmlessly) and the rest.
    assert_eq!(
        second.metric("quickchat_persisted_messages").await,
        10.0,
        "the new persister replayed the {} uncommitted rows and stored the rest",
        written - 20
    );
    let stored = store
        .list_messages(group.id.parse().unwrap(), None, None, 1000)
        .await
        .unwrap()
        .0;
    let mut offsets: Vec<u64> = stored.iter().map(|m| m.offset).collect();
    offsets.sort();
    assert_eq!(
        offsets,
        (1..=30).collect::<Vec<_>>(),
        "every acked message, once"
    );
    second.stop();
}

fn persister_args(env: &ClusterEnv) -> Vec<String> {
    let mut args = env.args();
    args.push("persister".to_owned());
    args
}

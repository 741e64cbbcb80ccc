//! The Kafka log against a real Kafka-protocol broker (`QUICKCHAT_TEST_KAFKA_BROKERS`).

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::SubsecRound;

use chrono::Utc;
use uuid::Uuid;

use super::*;
use crate::log::persister;
use crate::store::Store;

/// Generous bound for anything that involves a consumer group (joining takes seconds).
const PATIENCE: Duration = Duration::from_secs(90);

fn brokers() -> String {
    std::env::var("QUICKCHAT_TEST_KAFKA_BROKERS").expect(
        "QUICKCHAT_TEST_KAFKA_BROKERS is not set: these tests need a Kafka broker; run \
         scripts/test.sh, or `export QUICKCHAT_TEST_KAFKA_BROKERS=$(scripts/kafka.sh)`",
    )
}

/// A fresh topic and consumer group, with consumer timeouts short enough for tests.
fn settings(partitions: i32) -> KafkaSettings {
    let id = Uuid::new_v4();
    KafkaSettings {
        topic: format!("quickchat-test-{id}"),
        partitions,
        consumer_group: format!("quickchat-test-{id}"),
        session_timeout_ms: 6_000,
        heartbeat_interval_ms: 500,
        produce_timeout_ms: 10_000,
    }
}

/// The Kafka log feeds PostgreSQL in production, so its tests persist there too.
async fn store() -> Store {
    crate::store::test_postgres().await
}

async fn factory() -> (Arc<dyn MessageLog>, Store) {
    let brokers = brokers();
    let settings = settings(3);
    let store = store().await;
    let log = KafkaLog::connect(&brokers, &settings)
        .await
        .expect("kafka log");
    let source = KafkaSource::connect(&brokers, &settings, CancellationToken::new())
        .await
        .expect("kafka source");
    tokio::spawn(persister::run(source, store.clone(), 256));
    (Arc::new(log), store)
}

crate::log_conformance_suite!(factory);

async fn group(store: &Store) -> Uuid {
    crate::store::test_group(store).await
}

fn message(group_id: Uuid, offset: u64) -> Arc<ChatMessage> {
    Arc::new(ChatMessage {
        id: Uuid::now_v7(),
        group_id,
        offset,
        sender_id: Uuid::new_v4(),
        sender_name: "Ann".into(),
        body: format!("message {offset}"),
        client_message_id: format!("client-{offset}"),
        created_at: Utc::now().trunc_subsecs(6),
        wire: Default::default(),
    })
}

/// Every message of `group_id` in the store, oldest first.
async fn stored(store: &Store, group_id: Uuid) -> Vec<ChatMessage> {
    let (mut messages, _) = store
        .list_messages(group_id, None, None, 10_000)
        .await
        .unwrap();
    messages.reverse();
    messages
}

/// Waits (bounded) until the store holds at least `count` messages of `group_id`.
async fn wait_stored(store: &Store, group_id: Uuid, count: usize) -> Vec<ChatMessage> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let messages = stored(store, group_id).await;
        if messages.len() >= count {
            return messages;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the store got {} of {count} messages",
            messages.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn next_batch(source: &mut KafkaSource, max: usize) -> (Vec<Arc<ChatMessage>>, KafkaReceipt) {
    tokio::time::timeout(PATIENCE, source.next_batch(max))
        .await
        .expect("no kafka records in time")
        .expect("the source stopped")
}

/// A persister that cannot reach the database does not take partitions over when the
/// watchdog asks (it could not store them either); one that can, does.
#[tokio::test(flavor = "multi_thread")]
async fn a_takeover_happens_only_when_the_store_answers() {
    let brokers = brokers();
    let settings = settings(1);
    let log = KafkaLog::connect(&brokers, &settings).await.unwrap();
    let room = Uuid::new_v4();
    for (store_up, offset) in [(false, 1), (true, 2)] {
        let store = Store::connect("sqlite::memory:").await.unwrap();
        if !store_up {
            store.connection().close_by_ref().await.unwrap();
        }
        let metrics = Arc::new(Metrics::new());
        let mut source = KafkaSource::connect(&brokers, &settings, CancellationToken::new())
            .await
            .unwrap()
            .storing_into(store);
        source.observe(&metrics);
        source.rejoin.notify_one();
        log.append(message(room, offset)).await.unwrap();
        let (read, _) = next_batch(&mut source, 100).await;
        assert!(!read.is_empty());
        let rejoins = metrics
            .render()
            .lines()
            .find(|l| l.starts_with("quickchat_persister_takeover_rejoins_total"))
            .and_then(|l| l.rsplit_once(' '))
            .map(|(_, n)| n.to_owned());
        // With the store up, the watchdog may ask once more on its own when the group's
        // join takes longer than the takeover bound (a loaded machine): at least the one.
        let rejoins: u64 = rejoins.expect("the rejoin counter").parse().unwrap();
        if store_up {
            assert!(rejoins >= 1, "store up: no rejoin");
        } else {
            assert_eq!(rejoins, 0, "store down: rejoined anyway");
        }
    }
}

/// Ordering in Kafka is per room: every record of a room carries the room's id as its
/// key, so all of them land in one partition, in the order they were appended. Read
/// back raw from the topic (not through the store, which sorts by offset).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_rooms_records_share_one_partition_in_append_order() {
    use rdkafka::consumer::{Consumer as _, StreamConsumer};
    let brokers = brokers();
    let settings = settings(6);
    let log = Arc::new(KafkaLog::connect(&brokers, &settings).await.unwrap());
    let rooms: Vec<Uuid> = (0..8).map(|_| Uuid::new_v4()).collect();
    let per_room = 15u64;
    // Rooms append concurrently; within a room, one after the other (as the relay
    // orders them).
    let appends = rooms.iter().map(|&room| {
        let log = log.clone();
        tokio::spawn(async move {
            for offset in 1..=per_room {
                log.append(message(room, offset)).await.unwrap();
            }
        })
    });
    for append in futures::future::join_all(appends).await {
        append.unwrap();
    }

    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", format!("{}-reader", settings.consumer_group))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[&settings.topic]).unwrap();
    let mut seen: HashMap<Uuid, Vec<(i32, String, u64)>> = HashMap::new();
    let total = rooms.len() * per_room as usize;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while seen.values().map(Vec::len).sum::<usize>() < total {
        let record = tokio::time::timeout_at(deadline, consumer.recv())
            .await
            .expect("every record is read back in time")
            .unwrap();
        let m = decode(record.payload().unwrap()).unwrap();
        let key = String::from_utf8(record.key().unwrap().to_vec()).unwrap();
        seen.entry(m.group_id)
            .or_default()
            .push((record.partition(), key, m.offset));
    }
    let mut partitions_used = HashSet::new();
    for room in &rooms {
        let records = &seen[room];
        let partitions: HashSet<i32> = records.iter().map(|(p, _, _)| *p).collect();
        assert_eq!(
            partitions.len(),
            1,
            "room {room} spans partitions {partitions:?}"
        );
        partitions_used.extend(partitions);
        assert!(records.iter().all(|(_, key, _)| *key == room.to_string()));
        let order: Vec<u64> = records.iter().map(|(_, _, offset)| *offset).collect();
        assert_eq!(
            order,
            (1..=per_room).collect::<Vec<_>>(),
            "room {room} in append order"
        );
    }
    assert!(
        partitions_used.len() > 1,
        "rooms are spread over the partitions"
    );
}

#[test]
fn a_message_survives_encoding_exactly() {
    let m = message(Uuid::new_v4(), 7);
    assert_eq!(decode(&encode(&m)).unwrap(), *m);
    assert!(decode(b"\xff not protobuf").is_err());
}

/// The persister drops a `next_batch` call halfway whenever the batch before it is stored
/// first (it commits that one, then calls again): what the dropped call had consumed must
/// come with the next call. Reads are dropped every few milliseconds while records arrive
/// one at a time, so most drops happen while a batch is being gathered.
#[tokio::test(flavor = "multi_thread")]
async fn a_read_dropped_halfway_loses_no_record() {
    const COUNT: u64 = 150;
    let brokers = brokers();
    let settings = settings(1);
    let log = KafkaLog::connect(&brokers, &settings).await.unwrap();
    let mut source = KafkaSource::connect(&brokers, &settings, CancellationToken::new())
        .await
        .unwrap();
    let room = Uuid::new_v4();
    let appending = tokio::spawn(async move {
        for offset in 1..=COUNT {
            log.append(message(room, offset)).await.unwrap();
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
    let mut read = Vec::new();
    let (mut dropped, mut batches) = (0, 0);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while (read.len() as u64) < COUNT && tokio::time::Instant::now() < deadline {
        tokio::select! {
            batch = source.next_batch(1_000) => {
                batches += 1;
                read.extend(batch.expect("the source stopped").0.iter().map(|m| m.offset));
            }
            () = tokio::time::sleep(Duration::from_millis(3)) => dropped += 1,
        }
    }
    appending.await.unwrap();
    assert!(
        batches > 1 && dropped > 1,
        "{batches} batches, {dropped} dropped reads"
    );
    assert_eq!(
        read,
        (1..=COUNT).collect::<Vec<_>>(),
        "every record once, in order, across {dropped} dropped reads"
    );
}

#[tokio::test]
async fn a_persister_stopped_before_committing_leaves_its_batch_to_the_next() {
    let brokers = brokers();
    let settings = settings(2);
    let store = store().await;
    let group_id = group(&store).await;
    let log = KafkaLog::connect(&brokers, &settings).await.unwrap();
    let sent: Vec<_> = (1..=5).map(|offset| message(group_id, offset)).collect();
    for m in &sent {
        log.append(m.clone()).await.unwrap();
    }

    // The first persister writes a batch to the store and dies before committing it.
    let mut first = KafkaSource::connect(&brokers, &settings, CancellationToken::new())
        .await
        .unwrap();
    let (batch, _receipt) = next_batch(&mut first, 100).await;
    assert!(!batch.is_empty());
    store.insert_messages(&batch).await.unwrap();
    drop(first);

    // Its successor in the same group reads that batch again.
    let mut second = KafkaSource::connect(&brokers, &settings, CancellationToken::new())
        .await
        .unwrap();
    let mut seen = HashSet::new();
    while seen.len() < sent.len() {
        let (messages, receipt) = next_batch(&mut second, 100).await;
        store.insert_messages(&messages).await.unwrap();
        second.commit(receipt, &[]).await;
        seen.extend(messages.iter().map(|m| m.id));
    }
    assert!(batch.iter().all(|m| seen.contains(&m.id)));

    let expected: Vec<_> = sent.iter().map(|m| (**m).clone()).collect();
    assert_eq!(stored(&store, group_id).await, expected);
}

#[tokio::test]
async fn a_stopped_source_ends_the_persister() {
    let brokers = brokers();
    let settings = settings(1);
    let store = store().await;
    let group_id = group(&store).await;
    let log = KafkaLog::connect(&brokers, &settings).await.unwrap();
    let stop = CancellationToken::new();
    let source = KafkaSource::connect(&brokers, &settings, stop.clone())
        .await
        .unwrap();
    let persister = tokio::spawn(persister::run(source, store.clone(), 100));
    log.append(message(group_id, 1)).await.unwrap();
    wait_stored(&store, group_id, 1).await;

    stop.cancel();
    tokio::time::timeout(PATIENCE, persister)
        .await
        .expect("the persister did not stop")
        .unwrap();
}

/// A broker that accepts connections and never answers: the worst kind of outage.
fn hung_broker() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    addr.to_string()
}

/// A port nothing listens on.
fn refused_broker() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("127.0.0.1:{port}")
}

/// `--kafka-produce-timeout-ms` is the bound a sender waits, whether the broker refuses
/// connections or accepts them and never answers.
#[tokio::test]
async fn an_unreachable_or_hung_broker_fails_appends_within_the_produce_timeout() {
    let timeout = Duration::from_millis(1_000);
    // librdkafka checks message timeouts about every 100 ms; the rest is scheduling.
    let tolerance = Duration::from_millis(700);
    for (case, brokers) in [("refused", refused_broker()), ("hung", hung_broker())] {
        let settings = KafkaSettings {
            produce_timeout_ms: timeout.as_millis() as u32,
            ..settings(1)
        };
        let log = KafkaLog::new(&brokers, &settings).unwrap();
        let started = tokio::time::Instant::now();
        let appended =
            tokio::time::timeout(timeout + tolerance, log.append(message(Uuid::new_v4(), 1)))
                .await
                .unwrap_or_else(|_| panic!("{case}: append outlived the produce timeout"));
        assert!(
            matches!(appended, Err(LogError::Unavailable(_))),
            "{case}: {appended:?}"
        );
        assert!(
            started.elapsed() >= timeout - Duration::from_millis(100),
            "{case}: gave up after {:?}, before the timeout",
            started.elapsed()
        );

        let connected = tokio::time::timeout(PATIENCE, KafkaLog::connect(&brokers, &settings))
            .await
            .unwrap_or_else(|_| panic!("{case}: connect hung"));
        assert!(connected.is_err(), "{case}");
    }
}

/// Raises a fatal error on the log's current producer, the way librdkafka does when the
/// broker rejects the idempotent producer's sequence (after a long outage, say).
fn raise_fatal_error(log: &KafkaLog) {
    use rdkafka::bindings::rd_kafka_test_fatal_error;
    use rdkafka::types::RDKafkaRespErr;
    let producer = log
        .producer
        .lock()
        .unwrap()
        .clone()
        .expect("the log is open");
    let reason = std::ffi::CString::new("raised by a test").unwrap();
    // SAFETY: the client pointer is valid while `producer` lives, and `reason` is a
    // NUL-terminated string that librdkafka copies.
    let raised = unsafe {
        rd_kafka_test_fatal_error(
            producer.client().native_ptr(),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
            reason.as_ptr(),
        )
    };
    assert_eq!(raised, RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR);
}

/// Every record of partition 0 of the topic, decoded, oldest first.
async fn partition_zero(brokers: &str, settings: &KafkaSettings) -> Vec<ChatMessage> {
    use rdkafka::consumer::{Consumer as _, StreamConsumer};
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("{}-reader", settings.consumer_group))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(&settings.topic, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&assignment).unwrap();
    let topic = settings.topic.clone();
    let (consumer, (low, high)) = tokio::task::spawn_blocking(move || {
        let watermarks = consumer.fetch_watermarks(&topic, 0, PATIENCE);
        (consumer, watermarks.unwrap())
    })
    .await
    .unwrap();
    let mut records = Vec::new();
    for _ in low..high {
        let record = tokio::time::timeout(PATIENCE, consumer.recv())
            .await
            .expect("every record is read back in time")
            .unwrap();
        records.push(decode(record.payload().unwrap()).unwrap());
    }
    tokio::task::spawn_blocking(move || drop(consumer))
        .await
        .unwrap();
    records
}

/// After a fatal error (librdkafka raises one when the broker rejects the idempotent
/// producer's sequence or epoch) a producer refuses every send for good. The append that
/// meets it fails, and nothing of it reaches the topic; the log replaces the producer, so
/// the next append goes through without a restart.
#[tokio::test]
async fn a_producer_broken_by_a_fatal_error_is_replaced() {
    let brokers = brokers();
    let settings = settings(1);
    let log = KafkaLog::connect(&brokers, &settings).await.unwrap();
    let group_id = Uuid::new_v4();
    let [before, refused, after] = [1, 2, 3].map(|offset| message(group_id, offset));
    log.append(before.clone()).await.unwrap();

    raise_fatal_error(&log);
    let appended = tokio::time::timeout(PATIENCE, log.append(refused.clone()))
        .await
        .expect("the append that met the broken producer returns");
    assert!(
        matches!(appended, Err(LogError::Unavailable(_))),
        "{appended:?}"
    );
    tokio::time::timeout(PATIENCE, log.append(after.clone()))
        .await
        .expect("the append after returns")
        .expect("a new producer takes the next append");

    let topic = partition_zero(&brokers, &settings).await;
    assert_eq!(topic, [(*before).clone(), (*after).clone()]);
    log.close().await;
}

/// How soon the lag metric follows what happens in Kafka: it is measured every second.
const LAG_SHOWN_WITHIN: Duration = Duration::from_secs(5);

/// The consumer lag per partition, as the metrics endpoint shows it.
fn shown_lags(metrics: &Metrics) -> BTreeMap<i32, i64> {
    metrics
        .render()
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("quickchat_persister_consumer_lag{partition=\"")?;
            let (partition, value) = rest.split_once("\"} ")?;
            Some((partition.parse().unwrap(), value.parse().unwrap()))
        })
        .collect()
}

/// Waits until `metrics` show exactly `expected` as the consumer lag per partition.
async fn wait_for_lags(metrics: &Metrics, expected: &[(i32, i64)], within: Duration) {
    let expected: BTreeMap<i32, i64> = expected.iter().copied().collect();
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let shown = shown_lags(metrics);
        if shown == expected {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "after {within:?} the lag metric shows {shown:?}, not {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An operator sees how far the database is behind Kafka: per partition the persister
/// reads, the records its group has not committed (acked to their senders, not yet known
/// to be stored). Read but uncommitted records count; once committed they do not. A
/// persister that stops takes its partitions off the metric.
#[tokio::test]
async fn the_consumer_lag_counts_the_records_not_committed_yet() {
    let brokers = brokers();
    let settings = settings(2);
    let log = KafkaLog::connect(&brokers, &settings).await.unwrap();
    let metrics = Arc::new(Metrics::new());
    let stop = CancellationToken::new();
    let mut source = KafkaSource::connect(&brokers, &settings, stop.clone())
        .await
        .unwrap();
    source.observe(&metrics);
    let group_id = Uuid::new_v4();
    let sent = 5;
    for offset in 1..=sent {
        log.append(message(group_id, offset)).await.unwrap();
    }

    // The consumer (its group joined) reads them all and commits nothing yet.
    let mut read = 0;
    let mut receipt = KafkaReceipt::default();
    while read < sent {
        let (messages, batch) = next_batch(&mut source, 100).await;
        read += messages.len() as u64;
        for (partition, next) in batch.next_offsets {
            let merged = receipt.next_offsets.entry(partition).or_default();
            *merged = (*merged).max(next);
        }
    }
    let partitions: Vec<i32> = receipt.next_offsets.keys().copied().collect();
    let [room] = partitions[..] else {
        panic!("one room's records span partitions {partitions:?}");
    };
    let other = 1 - room;
    wait_for_lags(
        &metrics,
        &[(room, sent as i64), (other, 0)],
        LAG_SHOWN_WITHIN,
    )
    .await;

    source.commit(receipt, &[]).await;
    wait_for_lags(&metrics, &[(room, 0), (other, 0)], LAG_SHOWN_WITHIN).await;

    stop.cancel();
    assert!(source.next_batch(100).await.is_none());
    assert_eq!(shown_lags(&metrics), BTreeMap::new());
}

/// The tail (see `tail`) is what the persisters have not committed: a room's newest
/// offset there until it is committed, and nothing of other rooms'.
#[tokio::test(flavor = "multi_thread")]
async fn the_tail_holds_a_rooms_newest_offset_until_the_persisters_commit_it() {
    use crate::log::LogTail as _;
    let brokers = brokers();
    let settings = settings(2);
    let log = KafkaLog::connect(&brokers, &settings).await.unwrap();
    let tail = tail::KafkaTail::new(&brokers, &settings);
    let (room, other) = (Uuid::new_v4(), Uuid::new_v4());
    assert_eq!(tail.last_offset(room).await.unwrap(), 0, "an empty log");
    for offset in 1..=5 {
        log.append(message(room, offset)).await.unwrap();
    }
    log.append(message(other, 40)).await.unwrap();
    assert_eq!(tail.last_offset(room).await.unwrap(), 5);
    assert_eq!(tail.last_offset(other).await.unwrap(), 40);

    let stop = CancellationToken::new();
    let mut source = KafkaSource::connect(&brokers, &settings, stop.clone())
        .await
        .unwrap();
    let mut read = 0;
    let mut receipt = KafkaReceipt::default();
    while read < 6 {
        let (messages, batch) = next_batch(&mut source, 100).await;
        read += messages.len();
        for (partition, next) in batch.next_offsets {
            let merged = receipt.next_offsets.entry(partition).or_default();
            *merged = (*merged).max(next);
        }
    }
    assert_eq!(
        tail.last_offset(room).await.unwrap(),
        5,
        "consumed is not stored: only a commit says so"
    );
    source.commit(receipt, &[]).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tail.last_offset(room).await.unwrap() != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the commit empties the tail"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(tail.last_offset(other).await.unwrap(), 0);
    stop.cancel();
    assert!(source.next_batch(100).await.is_none());
}

/// When a second persister joins the group and takes partitions over, the first one stops
/// reporting them: between the two, each partition's lag is shown once.
#[tokio::test]
async fn a_partition_handed_to_another_persister_leaves_the_first_ones_lag_metric() {
    let brokers = brokers();
    let settings = settings(2);
    let store = store().await;
    let persister = |metrics: Arc<Metrics>| {
        let (brokers, settings, store) = (brokers.clone(), settings.clone(), store.clone());
        async move {
            let source = KafkaSource::connect(&brokers, &settings, CancellationToken::new())
                .await
                .unwrap();
            tokio::spawn(persister::run_observed(source, store, 50, Some(metrics)));
        }
    };
    let first = Arc::new(Metrics::new());
    persister(first.clone()).await;
    wait_for_lags(&first, &[(0, 0), (1, 0)], PATIENCE).await;

    let second = Arc::new(Metrics::new());
    persister(second.clone()).await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let (a, b) = (shown_lags(&first), shown_lags(&second));
        let split = a.len() == 1 && b.len() == 1 && a.keys().ne(b.keys());
        if split {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the persisters show the lag of partitions {:?} and {:?}",
            a.keys(),
            b.keys()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A source that records which persister consumed which message, and how many each
/// committed.
struct Tally {
    source: KafkaSource,
    persister: usize,
    seen: Arc<Mutex<HashMap<usize, usize>>>,
    consumed: Arc<Mutex<Vec<(usize, Uuid)>>>,
}

#[async_trait]
impl LogSource for Tally {
    type Receipt = (usize, KafkaReceipt);

    async fn next_batch(&mut self, max: usize) -> Option<(Vec<Arc<ChatMessage>>, Self::Receipt)> {
        let (messages, receipt) = self.source.next_batch(max).await?;
        self.consumed
            .lock()
            .unwrap()
            .extend(messages.iter().map(|m| (self.persister, m.id)));
        Some((messages.clone(), (messages.len(), receipt)))
    }

    async fn commit(&mut self, (count, receipt): Self::Receipt, unstored: &[Unstored]) {
        self.source.commit(receipt, unstored).await;
        *self.seen.lock().unwrap().entry(self.persister).or_default() += count;
    }
}

#[tokio::test]
async fn two_persisters_in_a_group_store_every_message_once() {
    let brokers = brokers();
    let settings = settings(4);
    let store = store().await;
    let log = Arc::new(KafkaLog::connect(&brokers, &settings).await.unwrap());
    let seen = Arc::new(Mutex::new(HashMap::new()));
    let consumed = Arc::new(Mutex::new(Vec::new()));
    for persister in 0..2 {
        let source = KafkaSource::connect(&brokers, &settings, CancellationToken::new())
            .await
            .unwrap();
        let tally = Tally {
            source,
            persister,
            seen: seen.clone(),
            consumed: consumed.clone(),
        };
        tokio::spawn(persister::run(tally, store.clone(), 50));
    }

    // Rounds of messages to new rooms, until both persisters have stored some (the
    // second one to join gets its partitions after a rebalance).
    let mut sent: Vec<(Uuid, Vec<Arc<ChatMessage>>)> = Vec::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while seen.lock().unwrap().len() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "one persister did all the work: {:?}",
            seen.lock().unwrap()
        );
        for _ in 0..4 {
            let group_id = group(&store).await;
            let messages: Vec<_> = (1..=10).map(|offset| message(group_id, offset)).collect();
            let appends: Vec<_> = messages
                .iter()
                .map(|m| {
                    let (log, m) = (log.clone(), m.clone());
                    tokio::spawn(async move { log.append(m).await })
                })
                .collect();
            for append in appends {
                append.await.unwrap().unwrap();
            }
            sent.push((group_id, messages));
        }
        for (group_id, messages) in &sent {
            wait_stored(&store, *group_id, messages.len()).await;
        }
    }

    for (group_id, messages) in &sent {
        let mut stored = stored(&store, *group_id).await;
        let mut expected: Vec<_> = messages.iter().map(|m| (**m).clone()).collect();
        stored.sort_by_key(|m| m.offset);
        expected.sort_by_key(|m| m.offset);
        assert_eq!(stored, expected);
    }
    // And each was consumed once, by one persister: the group split the partitions,
    // neither read the other's (the store's idempotent insert would hide that).
    let consumed = consumed.lock().unwrap().clone();
    let mut times: HashMap<Uuid, Vec<usize>> = HashMap::new();
    for (persister, id) in consumed {
        times.entry(id).or_default().push(persister);
    }
    for (_, messages) in &sent {
        for m in messages {
            assert_eq!(
                times.get(&m.id).map(Vec::len),
                Some(1),
                "message {} consumed by {:?}",
                m.id,
                times.get(&m.id)
            );
        }
    }
}

/// The tail holds every acked message, also those that share a produce batch with others
/// (appends keep coming, and two persisters join the group meanwhile, never committing).
/// Before the tail read to the partition's end as fetched, a read stopped at the first
/// record of the batch the broker wrote last, and missed acked ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_tail_holds_every_acked_message_while_appends_continue() {
    use crate::log::LogTail as _;
    use std::sync::atomic::{AtomicU64, Ordering};
    let brokers = brokers();
    let settings = settings(3);
    let log = Arc::new(KafkaLog::connect(&brokers, &settings).await.unwrap());
    let tail = tail::KafkaTail::new(&brokers, &settings);
    let room = Uuid::new_v4();
    let acked = Arc::new(AtomicU64::new(0));
    let appender = {
        let (log, acked) = (log.clone(), acked.clone());
        tokio::spawn(async move {
            let next = AtomicU64::new(1);
            let mut tasks = tokio::task::JoinSet::new();
            loop {
                for _ in 0..4 {
                    let o = next.fetch_add(1, Ordering::SeqCst);
                    let (log, acked) = (log.clone(), acked.clone());
                    tasks.spawn(async move {
                        log.append(message(room, o)).await.unwrap();
                        acked.fetch_max(o, Ordering::SeqCst);
                    });
                }
                while tasks.len() > 16 {
                    tasks.join_next().await;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    // Two persisters joining the group while the tail is read (they never commit).
    let stop = CancellationToken::new();
    let mut sources = Vec::new();
    for _ in 0..2 {
        let mut s = KafkaSource::connect(&brokers, &settings, stop.clone())
            .await
            .unwrap();
        sources.push(tokio::spawn(async move {
            while s.next_batch(100).await.is_some() {}
        }));
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let mut reads = 0;
    while tokio::time::Instant::now() < deadline {
        // Offsets below `before` may still be in flight; only ones acked count.
        let before = acked.load(Ordering::SeqCst);
        let seen = tail.last_offset(room).await.unwrap();
        reads += 1;
        assert!(
            seen >= before,
            "read {reads}: the tail's newest is {seen}, but {before} was acked before the read"
        );
    }
    assert!(reads > 5, "only {reads} reads of the tail");
    appender.abort();
    stop.cancel();
}

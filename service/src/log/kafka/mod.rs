//! The Kafka message log of distributed mode.
//!
//! [`KafkaLog`] is the [`MessageLog`] the nodes append to: every message is produced to one
//! topic (`KafkaSettings::topic`), keyed by its group id so a room's messages stay in
//! one partition and in order, encoded as protobuf `quickchat.v1.Message`. The producer is
//! idempotent with `acks=all`, and `append` resolves only once Kafka has confirmed the record;
//! when Kafka cannot confirm it within `KafkaSettings::produce_timeout_ms`, `append` fails with
//! [`LogError::Unavailable`].
//!
//! [`KafkaSource`] is the persister's end: a consumer in the group
//! `KafkaSettings::consumer_group` that hands batches to [`persister::run`] and commits
//! their offsets only once the batch is in the store. A persister that dies in between makes
//! its successor read the batch again, and the idempotent insert keeps one row per message.
//! More persisters in the same group share the topic's partitions. With metrics, each reports
//! the consumer lag of the partitions it reads ([`lag`]). A persister that dies without
//! leaving the group leaves its partitions to the broker to reassign; where the broker does
//! not, the [`takeover`] watchdog of the survivors notices and has them rejoin the group.
//!
//! [`persister::run`]: super::persister::run

mod lag;
mod settings;
pub mod tail;
mod takeover;

pub use settings::KafkaSettings;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use prost::Message as _;
use quickchat_proto::v1;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message as _};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use self::lag::{MetricsSlot, Monitor};
use super::persister::LogSource;
use super::{LogError, MessageLog};
use crate::metrics::Metrics;
use crate::room::ChatMessage;
use crate::store::Unstored;

/// How long a batch waits for more records once its first one has arrived.
const BATCH_LINGER: Duration = Duration::from_millis(5);

/// Pause after a consumer error before polling again.
const CONSUME_ERROR_BACKOFF: Duration = Duration::from_millis(200);

/// Longest the topic check at startup may take.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The message log on a Kafka topic; see the [module documentation](self).
pub struct KafkaLog {
    /// `None` once the log is closed.
    producer: Mutex<Option<Arc<FutureProducer<KafkaContext>>>>,
    topic: String,
    brokers: String,
    produce_timeout: Duration,
}

impl KafkaLog {
    /// Makes sure the topic exists (see [`ensure_topic`]), then builds the producer.
    pub async fn connect(brokers: &str, settings: &KafkaSettings) -> anyhow::Result<Self> {
        ensure_topic(brokers, settings).await?;
        Self::new(brokers, settings)
    }

    /// Builds the producer without contacting Kafka: the connection is made in the
    /// background, and an `append` that Kafka does not confirm in time fails.
    pub fn new(brokers: &str, settings: &KafkaSettings) -> anyhow::Result<Self> {
        let produce_timeout = Duration::from_millis(settings.produce_timeout_ms.into());
        let producer = build_producer(brokers, produce_timeout)?;
        Ok(Self {
            producer: Mutex::new(Some(Arc::new(producer))),
            topic: settings.topic.clone(),
            brokers: brokers.to_owned(),
            produce_timeout,
        })
    }

    /// Replaces `failed` with a new producer if it can no longer produce: an idempotent
    /// producer whose messages timed out may be fenced by the broker or hit a fatal error,
    /// after which every later send fails. A new producer (new producer id) starts clean, so
    /// the log recovers by itself once Kafka is reachable again.
    fn renew_if_broken(&self, failed: &Arc<FutureProducer<KafkaContext>>, err: &KafkaError) {
        let fenced = matches!(
            err.rdkafka_error_code(),
            Some(
                RDKafkaErrorCode::ProducerFenced
                    | RDKafkaErrorCode::InvalidProducerEpoch
                    | RDKafkaErrorCode::UnknownProducerId
                    | RDKafkaErrorCode::OutOfOrderSequenceNumber
                    | RDKafkaErrorCode::Fatal
            )
        );
        if !fenced && failed.client().fatal_error().is_none() {
            return;
        }
        let mut slot = self.producer.lock().expect("kafka log lock poisoned");
        let Some(current) = slot.as_ref() else {
            return;
        };
        if !Arc::ptr_eq(current, failed) {
            return; // another append already renewed it
        }
        match build_producer(&self.brokers, self.produce_timeout) {
            Ok(fresh) => {
                tracing::warn!(error = %err, "kafka producer unusable; starting a new one");
                let old = slot.replace(Arc::new(fresh));
                // Destroying a producer blocks: keep it off the async workers.
                tokio::task::spawn_blocking(move || drop(old));
            }
            Err(err) => tracing::error!(error = %err, "could not start a new kafka producer"),
        }
    }
}

/// The idempotent producer: `acks=all`, and `message.timeout.ms` bounds how long a send may
/// wait for Kafka.
fn build_producer(
    brokers: &str,
    produce_timeout: Duration,
) -> anyhow::Result<FutureProducer<KafkaContext>> {
    client_config(brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set(
            "message.timeout.ms",
            produce_timeout.as_millis().to_string(),
        )
        .create_with_context(KafkaContext)
        .context("creating the kafka producer")
}

#[async_trait]
impl MessageLog for KafkaLog {
    fn describe(&self) -> String {
        format!("Kafka topic {} at {}", self.topic, self.brokers)
    }

    async fn append(&self, message: Arc<ChatMessage>) -> Result<(), LogError> {
        let producer = self
            .producer
            .lock()
            .expect("kafka log lock poisoned")
            .clone()
            .ok_or_else(|| LogError::Unavailable("the server is shutting down".into()))?;
        let key = message.group_id.to_string();
        let payload = encode(&message);
        let record = FutureRecord::to(&self.topic)
            .key(&key)
            .payload(&payload)
            .timestamp(message.created_at.timestamp_millis());
        // librdkafka bounds both phases (a full local queue, then `message.timeout.ms`), but
        // a message still waiting for its topic's metadata is only expired by a once-a-second
        // scan: without the outer bound a send to an unreachable broker took up to twice the
        // produce timeout. The sender is promised an answer within it. (If librdkafka still
        // delivers the message later, a resend with the same id finds it: see the README.)
        let send = producer.send(record, self.produce_timeout);
        match tokio::time::timeout(self.produce_timeout, send).await {
            Ok(Ok(_delivery)) => Ok(()),
            Ok(Err((err, _))) => {
                tracing::warn!(
                    error = %err,
                    message_id = %message.id,
                    group_id = %message.group_id,
                    "kafka did not take the message"
                );
                self.renew_if_broken(&producer, &err);
                Err(LogError::Unavailable(
                    "the message log did not confirm the message".into(),
                ))
            }
            Err(_) => {
                tracing::warn!(
                    message_id = %message.id,
                    group_id = %message.group_id,
                    "kafka confirmation timed out"
                );
                Err(LogError::Unavailable(
                    "the message log did not confirm the message in time".into(),
                ))
            }
        }
    }

    async fn close(&self) {
        let producer = self
            .producer
            .lock()
            .expect("kafka log lock poisoned")
            .take();
        let Some(producer) = producer else {
            return;
        };
        let timeout = self.produce_timeout;
        // Flushing and destroying the producer block: keep them off the async workers.
        let flushed = tokio::task::spawn_blocking(move || producer.flush(timeout)).await;
        match flushed {
            Ok(Ok(())) => tracing::debug!("kafka producer flushed"),
            Ok(Err(err)) => tracing::warn!(error = %err, "flushing the kafka producer failed"),
            Err(err) => tracing::warn!(error = %err, "flushing the kafka producer panicked"),
        }
    }
}

/// The persister's end of the Kafka log: a consumer in the persisters' group. See the
/// [module documentation](self).
pub struct KafkaSource {
    /// `None` once stopped.
    consumer: Option<Arc<StreamConsumer<KafkaContext>>>,
    topic: String,
    stop: CancellationToken,
    /// Measures the partitions (lag, takeover watchdog); `None` once stopped.
    monitor: Option<Monitor>,
    /// Where the monitor reports once the source is observed.
    metrics: MetricsSlot,
    /// Notified by the takeover watchdog: leave the group and join it again.
    rejoin: Arc<Notify>,
    /// The store this source's batches go to: a takeover is only worth it when this
    /// persister can reach it (see [`KafkaSource::storing_into`]).
    store: Option<crate::store::Store>,
}

/// How long a takeover waits for the store to answer before holding it unreachable.
const STORE_CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// What [`KafkaSource::commit`] commits for a batch: per partition, the offset after the
/// batch's last record there.
#[derive(Debug, Default)]
pub struct KafkaReceipt {
    next_offsets: BTreeMap<i32, i64>,
}

impl KafkaSource {
    /// Makes sure the topic exists (see [`ensure_topic`]), joins the persisters' consumer
    /// group and starts watching its partitions (see [`takeover`]). [`LogSource::next_batch`]
    /// returns `None` once `stop` is cancelled, which ends the persister loop; the consumer
    /// then leaves the group.
    pub async fn connect(
        brokers: &str,
        settings: &KafkaSettings,
        stop: CancellationToken,
    ) -> anyhow::Result<Self> {
        ensure_topic(brokers, settings).await?;
        // A dynamic member (no `group.instance.id`): a static one's partitions would wait for
        // it through its whole session timeout even after a clean stop. What bounds a dead
        // member's partitions is the session timeout, the broker reassigning them, and
        // failing that the takeover watchdog; not `max.poll.interval.ms` (sent as the
        // rebalance timeout), which only bounds how long a rebalance waits for a live member
        // that does not poll (see the README, "A node that dies for good").
        let consumer: StreamConsumer<KafkaContext> = client_config(brokers)
            .set("group.id", &settings.consumer_group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set(
                "session.timeout.ms",
                settings.session_timeout_ms.to_string(),
            )
            .set(
                "heartbeat.interval.ms",
                settings.heartbeat_interval_ms.to_string(),
            )
            .create_with_context(KafkaContext)
            .context("creating the kafka consumer")?;
        consumer
            .subscribe(&[&settings.topic])
            .with_context(|| format!("subscribing to kafka topic {}", settings.topic))?;
        tracing::info!(
            topic = %settings.topic,
            group = %settings.consumer_group,
            takeover_bound_secs = settings.takeover_bound().as_secs_f64(),
            "kafka persister consumer started"
        );
        let consumer = Arc::new(consumer);
        let metrics: MetricsSlot = Arc::new(OnceLock::new());
        let rejoin = Arc::new(Notify::new());
        let monitor = Monitor::start(
            Arc::downgrade(&consumer),
            settings.topic.clone(),
            settings.takeover_bound(),
            rejoin.clone(),
            metrics.clone(),
        );
        Ok(Self {
            consumer: Some(consumer),
            topic: settings.topic.clone(),
            stop,
            monitor: Some(monitor),
            metrics,
            rejoin,
            store: None,
        })
    }

    /// Takes over partitions (see [`takeover`]) only while `store` answers. A partition
    /// stalls when its persister died, but also when the database is unreachable: then
    /// every persister is stalled alike (one whose own partitions happen to have no traffic
    /// does not see it), taking the partitions over cannot store them either, and the
    /// rebalance only moves them in the middle of the outage.
    pub fn storing_into(mut self, store: crate::store::Store) -> Self {
        self.store = Some(store);
        self
    }

    /// Whether a takeover could store what it takes over.
    async fn can_store(&self) -> bool {
        let Some(store) = &self.store else {
            return true;
        };
        match tokio::time::timeout(STORE_CHECK_TIMEOUT, store.ping()).await {
            Ok(Ok(())) => true,
            Ok(Err(err)) => {
                tracing::warn!(error = %err, "not taking over kafka partitions: the database is unreachable from here too");
                false
            }
            Err(_) => {
                tracing::warn!(
                    "not taking over kafka partitions: the database does not answer from here either"
                );
                false
            }
        }
    }

    /// Leaves the consumer group and joins it again as a new member, as the takeover
    /// watchdog asks. Leaving starts a new generation of the group on any broker, whose
    /// leader assigns every partition among the live members, this one included. The
    /// partitions are revoked and the group left once this consumer is next polled; the new
    /// subscription waits for that.
    fn rejoin_group(&self, consumer: &StreamConsumer<KafkaContext>) {
        consumer.unsubscribe();
        match consumer.subscribe(&[&self.topic]) {
            Ok(()) => tracing::info!(topic = %self.topic, "rejoining the kafka consumer group"),
            // The watchdog asks again while partitions stay unowned.
            Err(err) => tracing::error!(
                error = %err,
                topic = %self.topic,
                "subscribing to the kafka topic again failed"
            ),
        }
    }

    /// Leaves the consumer group (waiting for commits in flight) and drops the consumer.
    async fn shut_down(&mut self) {
        if let Some(monitor) = self.monitor.take() {
            monitor.stop().await;
        }
        if let Some(consumer) = self.consumer.take() {
            // Closing blocks until the group is left: keep it off the async workers.
            if let Err(err) = tokio::task::spawn_blocking(move || drop(consumer)).await {
                tracing::warn!(error = %err, "closing the kafka consumer panicked");
            }
            tracing::info!(topic = %self.topic, "kafka persister consumer stopped");
        }
    }
}

impl Drop for KafkaSource {
    fn drop(&mut self) {
        if let Some(consumer) = self.consumer.take() {
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => drop(runtime.spawn_blocking(move || drop(consumer))),
                Err(_) => drop(consumer),
            }
        }
    }
}

#[async_trait]
impl LogSource for KafkaSource {
    type Receipt = KafkaReceipt;

    async fn next_batch(&mut self, max: usize) -> Option<(Vec<Arc<ChatMessage>>, KafkaReceipt)> {
        let consumer = self.consumer.clone()?;
        let mut messages = Vec::new();
        let mut receipt = KafkaReceipt::default();
        loop {
            let received = tokio::select! {
                biased;
                () = self.stop.cancelled() => None,
                () = self.rejoin.notified() => {
                    if self.can_store().await {
                        if let Some(metrics) = self.metrics.get() {
                            metrics.takeover_rejoin();
                        }
                        self.rejoin_group(&consumer);
                    }
                    continue;
                }
                received = consumer.recv() => Some(received),
            };
            match received {
                None => {
                    drop(consumer);
                    self.shut_down().await;
                    return None;
                }
                Some(Ok(record)) => {
                    take(&record, &mut messages, &mut receipt);
                    break;
                }
                Some(Err(err)) => {
                    tracing::warn!(error = %err, topic = %self.topic, "kafka consume failed; retrying");
                    tokio::select! {
                        () = self.stop.cancelled() => {}
                        () = tokio::time::sleep(CONSUME_ERROR_BACKOFF) => {}
                    }
                }
            }
        }
        let deadline = tokio::time::Instant::now() + BATCH_LINGER;
        let mut records = 1;
        while records < max {
            match tokio::time::timeout_at(deadline, consumer.recv()).await {
                Ok(Ok(record)) => {
                    take(&record, &mut messages, &mut receipt);
                    records += 1;
                }
                Ok(Err(err)) => {
                    tracing::warn!(error = %err, topic = %self.topic, "kafka consume failed");
                    break;
                }
                Err(_) => break,
            }
        }
        Some((messages, receipt))
    }

    /// Rows the store refused are already in the dead-letter table (or their group is
    /// gone): the offsets move past them like any other.
    async fn commit(&mut self, receipt: KafkaReceipt, _unstored: &[Unstored]) {
        if receipt.next_offsets.is_empty() {
            return;
        }
        let Some(consumer) = &self.consumer else {
            tracing::warn!("kafka consumer stopped before its batch was committed");
            return;
        };
        let mut offsets = TopicPartitionList::new();
        for (&partition, &next) in &receipt.next_offsets {
            if let Err(err) =
                offsets.add_partition_offset(&self.topic, partition, Offset::Offset(next))
            {
                tracing::warn!(error = %err, partition, "invalid kafka offset to commit");
            }
        }
        // Asynchronous commits are sent in order on the group coordinator's connection, and
        // leaving the group waits for them; failures arrive in `commit_callback`.
        if let Err(err) = consumer.commit(&offsets, CommitMode::Async) {
            tracing::warn!(
                error = %err,
                "committing kafka offsets failed; the batch will be read again"
            );
        }
    }

    fn observe(&mut self, metrics: &Arc<Metrics>) {
        // Only the first one counts.
        let _ = self.metrics.set(metrics.clone());
    }
}

/// Creates the topic with `partitions` partitions (the broker's default replication
/// factor) unless it exists. Fails when Kafka does not answer in time.
pub async fn ensure_topic(brokers: &str, settings: &KafkaSettings) -> anyhow::Result<()> {
    let admin: AdminClient<KafkaContext> = client_config(brokers)
        .create_with_context(KafkaContext)
        .context("creating the kafka admin client")?;
    let topic = NewTopic::new(
        &settings.topic,
        settings.partitions,
        TopicReplication::Fixed(-1),
    );
    let options = AdminOptions::new()
        .request_timeout(Some(ADMIN_TIMEOUT))
        .operation_timeout(Some(ADMIN_TIMEOUT));
    let created = tokio::time::timeout(
        ADMIN_TIMEOUT + Duration::from_secs(5),
        admin.create_topics([&topic], &options),
    )
    .await
    .with_context(|| format!("kafka at {brokers} did not answer"))?
    .with_context(|| format!("creating kafka topic {}", settings.topic))?;
    // The admin client's Drop joins its polling thread.
    tokio::task::spawn_blocking(move || drop(admin)).await?;
    for result in created {
        match result {
            Ok(name) => tracing::info!(
                topic = %name,
                partitions = settings.partitions,
                "kafka topic created"
            ),
            Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => {
                tracing::debug!(topic = %name, "kafka topic exists");
            }
            Err((name, code)) => anyhow::bail!("creating kafka topic {name} failed: {code}"),
        }
    }
    Ok(())
}

fn client_config(brokers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("client.id", "quickchat")
        // Back within a second of a broker's return, not librdkafka's default 10 s.
        .set("reconnect.backoff.max.ms", "1000");
    config
}

/// Adds a consumed record to a batch; a record that is not a message is skipped (and its
/// offset still committed), so it cannot stop the persister.
fn take(
    record: &BorrowedMessage<'_>,
    messages: &mut Vec<Arc<ChatMessage>>,
    receipt: &mut KafkaReceipt,
) {
    let partition = record.partition();
    let offset = record.offset();
    match decode(record.payload().unwrap_or_default()) {
        Ok(message) => messages.push(Arc::new(message)),
        Err(err) => tracing::warn!(
            error = %err,
            topic = record.topic(),
            partition,
            offset,
            "skipping a kafka record that is not a message"
        ),
    }
    let next = receipt.next_offsets.entry(partition).or_default();
    *next = (*next).max(offset + 1);
}

fn encode(m: &ChatMessage) -> Vec<u8> {
    v1::Message::from(m).encode_to_vec()
}

/// Why a record could not be read as a message.
#[derive(Debug, thiserror::Error)]
enum RecordError {
    #[error("not a protobuf message: {0}")]
    Protobuf(#[from] prost::DecodeError),
    #[error(transparent)]
    Field(#[from] crate::room::BadField),
}

fn decode(payload: &[u8]) -> Result<ChatMessage, RecordError> {
    Ok(ChatMessage::try_from(v1::Message::decode(payload)?)?)
}

/// Sends librdkafka's logs to `tracing` and reports the consumer's rebalances and commits.
struct KafkaContext;

impl ClientContext for KafkaContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, detail: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error
            | RDKafkaLogLevel::Warning => tracing::warn!(facility, detail, "librdkafka"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(facility, detail, "librdkafka")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(facility, detail, "librdkafka"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(error = %error, reason, "kafka client error");
    }
}

impl ConsumerContext for KafkaContext {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let partitions = |list: &TopicPartitionList| {
            list.elements()
                .iter()
                .map(|e| e.partition())
                .collect::<Vec<_>>()
        };
        match rebalance {
            Rebalance::Assign(list) => {
                tracing::info!(partitions = ?partitions(list), "kafka partitions assigned")
            }
            Rebalance::Revoke(list) => {
                tracing::info!(partitions = ?partitions(list), "kafka partitions revoked")
            }
            Rebalance::Error(err) => tracing::warn!(error = %err, "kafka rebalance failed"),
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        match result {
            Ok(()) => tracing::debug!(offsets = offsets.count(), "kafka offsets committed"),
            Err(err) => tracing::warn!(
                error = %err,
                "committing kafka offsets failed; those messages will be read again"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
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

    async fn next_batch(
        source: &mut KafkaSource,
        max: usize,
    ) -> (Vec<Arc<ChatMessage>>, KafkaReceipt) {
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
            assert_eq!(
                rejoins.as_deref(),
                Some(if store_up { "1" } else { "0" }),
                "store up: {store_up}"
            );
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

        async fn next_batch(
            &mut self,
            max: usize,
        ) -> Option<(Vec<Arc<ChatMessage>>, Self::Receipt)> {
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
}

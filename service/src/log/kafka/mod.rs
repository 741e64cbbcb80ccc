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
use super::persister::{LogSource, MAX_BATCH_BYTES, batch_bytes};
use super::{LogError, MessageLog};
use crate::metrics::Metrics;
use crate::room::ChatMessage;
use crate::store::Unstored;

/// How long a batch waits for more records once its first one has arrived.
const BATCH_LINGER: Duration = Duration::from_millis(5);

/// librdkafka `fetch.wait.max.ms` of the persister's consumer, instead of 500 ms. A broker
/// answers a fetch at once when it has records; tansu 0.6 sleeps half the wait after every
/// fetch (`tansu-storage` `service/fetch.rs`), which held a consumer at ~57k records/s with
/// the default against ~200k/s with 50 ms (BENCHMARKS.md). Idle, it costs 20 empty fetches a
/// second per broker.
const FETCH_WAIT: Duration = Duration::from_millis(50);

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
/// wait for Kafka. A message goes out at once (`linger.ms` 0 instead of librdkafka's 5 ms,
/// which was most of a send's latency): under load the records that queue up while the
/// requests in flight are answered still leave together, one request per partition leader,
/// so batching comes from the load itself rather than from a wait.
fn build_producer(
    brokers: &str,
    produce_timeout: Duration,
) -> anyhow::Result<FutureProducer<KafkaContext>> {
    client_config(brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "0")
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
    /// When this persister last found the store unreachable (a failed write or check).
    store_failed_at: Option<tokio::time::Instant>,
    /// See [`KafkaSettings::takeover_bound`].
    takeover_bound: Duration,
    /// The batch being gathered.
    gathering: Gathering,
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
            .set("fetch.wait.max.ms", FETCH_WAIT.as_millis().to_string())
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
            store_failed_at: None,
            takeover_bound: settings.takeover_bound(),
            gathering: Gathering::default(),
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

    /// Whether a takeover could store what it takes over: the store answers, and did not
    /// fail this persister within the last two takeover bounds (the partitions' owners,
    /// stalled by the same outage and retrying with backoff, get that long to catch up and
    /// commit once it is over).
    async fn can_store(&mut self) -> bool {
        let Some(store) = &self.store else {
            return true;
        };
        let reachable = match tokio::time::timeout(STORE_CHECK_TIMEOUT, store.ping()).await {
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
        };
        if !reachable {
            self.store_failed_at = Some(tokio::time::Instant::now());
            return false;
        }
        match self.store_failed_at {
            Some(at) if at.elapsed() < 2 * self.takeover_bound => {
                tracing::info!(
                    ago_secs = at.elapsed().as_secs_f64(),
                    "not taking over kafka partitions yet: the database was unreachable moments ago, \
                     and their owners are catching up"
                );
                false
            }
            _ => true,
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

    /// Cancel-safe: a batch being gathered stays in the source (see [`Gathering`]) and the
    /// next call goes on with it.
    async fn next_batch(&mut self, max: usize) -> Option<(Vec<Arc<ChatMessage>>, KafkaReceipt)> {
        let consumer = self.consumer.clone()?;
        while self.gathering.records == 0 {
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
                Some(Ok(record)) => self.gathering.take(&record),
                Some(Err(err)) => {
                    tracing::warn!(error = %err, topic = %self.topic, "kafka consume failed; retrying");
                    tokio::select! {
                        () = self.stop.cancelled() => {}
                        () = tokio::time::sleep(CONSUME_ERROR_BACKOFF) => {}
                    }
                }
            }
        }
        while self.gathering.records < max && self.gathering.bytes < MAX_BATCH_BYTES {
            match tokio::time::timeout_at(self.gathering.deadline, consumer.recv()).await {
                Ok(Ok(record)) => self.gathering.take(&record),
                Ok(Err(err)) => {
                    tracing::warn!(error = %err, topic = %self.topic, "kafka consume failed");
                    break;
                }
                Err(_) => break,
            }
        }
        Some(std::mem::take(&mut self.gathering).into_batch())
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

    fn store_unreachable(&mut self) {
        self.store_failed_at = Some(tokio::time::Instant::now());
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
        .set("reconnect.backoff.max.ms", "1000")
        // Small requests (a produce of one record, its ack) leave at once instead of waiting
        // for the previous segment's ACK (Nagle's algorithm, on by default in librdkafka).
        .set("socket.nagle.disable", "true");
    config
}

/// The batch [`KafkaSource::next_batch`] is gathering: kept in the source, so a call that is
/// dropped halfway (the persister stops waiting for it to commit the batch before) loses
/// none of the records it had consumed.
#[derive(Debug)]
struct Gathering {
    messages: Vec<Arc<ChatMessage>>,
    receipt: KafkaReceipt,
    /// Records taken, messages or not.
    records: usize,
    /// What the messages count towards [`MAX_BATCH_BYTES`].
    bytes: usize,
    /// When the batch is handed out even if it is not full: [`BATCH_LINGER`] after its first
    /// record.
    deadline: tokio::time::Instant,
}

impl Default for Gathering {
    fn default() -> Self {
        Self {
            messages: Vec::new(),
            receipt: KafkaReceipt::default(),
            records: 0,
            bytes: 0,
            deadline: tokio::time::Instant::now(),
        }
    }
}

impl Gathering {
    /// Adds a consumed record; a record that is not a message is skipped (and its offset
    /// still committed), so it cannot stop the persister.
    fn take(&mut self, record: &BorrowedMessage<'_>) {
        if self.records == 0 {
            self.deadline = tokio::time::Instant::now() + BATCH_LINGER;
        }
        self.records += 1;
        let partition = record.partition();
        let offset = record.offset();
        match decode(record.payload().unwrap_or_default()) {
            Ok(message) => {
                self.bytes += batch_bytes(&message);
                self.messages.push(Arc::new(message));
            }
            Err(err) => tracing::warn!(
                error = %err,
                topic = record.topic(),
                partition,
                offset,
                "skipping a kafka record that is not a message"
            ),
        }
        let next = self.receipt.next_offsets.entry(partition).or_default();
        *next = (*next).max(offset + 1);
    }

    fn into_batch(self) -> (Vec<Arc<ChatMessage>>, KafkaReceipt) {
        (self.messages, self.receipt)
    }
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
mod tests;

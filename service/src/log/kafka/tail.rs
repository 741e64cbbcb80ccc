//! The unstored tail of the Kafka log: what the persisters' consumer group has not committed
//! yet, read back to find a room's newest offset there (see [`LogTail`]).
//!
//! Everything before the group's committed offsets is in the store (offsets are committed
//! only after the database commit), so the store's newest offset and this tail together
//! cover every message Kafka confirmed. The tail is normally a few records; after a long
//! persister outage it can be long, and the read is bounded by [`SCAN_TIMEOUT`].

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_trait::async_trait;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message as _;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use uuid::Uuid;

use super::KafkaSettings;
use super::{client_config, decode};
use crate::log::LogTail;

/// Longest a tail read may take; past it the read fails (and the send that needed it
/// fails with `UNAVAILABLE`) rather than guess.
const SCAN_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a read goes on past the partitions' ends (see [`scan`]): records keep coming
/// there while rooms are busy, and only the rest of the last batch was acked before.
const QUIET: Duration = Duration::from_millis(200);

/// Past the ends, a poll that waits this long for a record finds the read done.
const PAST_END_WAIT: Duration = Duration::from_millis(20);

pub struct KafkaTail {
    brokers: String,
    topic: String,
    consumer_group: String,
}

impl KafkaTail {
    /// The tail of the topic in `settings`, relative to the persisters' consumer group.
    /// Contacts Kafka only when read.
    pub fn new(brokers: &str, settings: &KafkaSettings) -> Self {
        Self {
            brokers: brokers.to_owned(),
            topic: settings.topic.clone(),
            consumer_group: settings.consumer_group.clone(),
        }
    }
}

#[async_trait]
impl LogTail for KafkaTail {
    async fn last_offset(&self, group_id: Uuid) -> anyhow::Result<u64> {
        let (brokers, topic, consumer_group) = (
            self.brokers.clone(),
            self.topic.clone(),
            self.consumer_group.clone(),
        );
        // librdkafka's calls block: keep them off the async workers.
        tokio::task::spawn_blocking(move || scan(&brokers, &topic, &consumer_group, group_id))
            .await
            .context("reading the kafka log's tail panicked")?
    }
}

/// Reads every partition from the group's committed offset to its end and returns the
/// highest room offset among `group_id`'s records (0 if none).
///
/// The end `ListOffsets` answers is only where reading may stop at the earliest: tansu
/// answers it with the first offset of the batch it wrote last, so the records further into
/// that batch, acked already, lie past it (seen: 7 acked messages missing from the tail under
/// load; a room re-seeded short of them would hand their offsets out again). So the read
/// goes on past that end while records come at once (the rest of the batch arrives with
/// its first record), for at most [`QUIET`].
fn scan(brokers: &str, topic: &str, consumer_group: &str, group_id: Uuid) -> anyhow::Result<u64> {
    let deadline = Instant::now() + SCAN_TIMEOUT;
    // In the persisters' group only to read its committed offsets: assigned partitions,
    // no subscription, so it never joins the group or commits.
    let consumer: BaseConsumer = client_config(brokers)
        .set("group.id", consumer_group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        // A committed offset the broker no longer holds: read what it does hold.
        .set("auto.offset.reset", "earliest")
        .create()
        .context("creating a kafka consumer to read the log's tail")?;
    let metadata = consumer
        .fetch_metadata(Some(topic), SCAN_TIMEOUT)
        .context("reading the kafka topic's partitions")?;
    let mut partitions = TopicPartitionList::new();
    for p in metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions())
    {
        partitions.add_partition(topic, p.id());
    }
    let committed = consumer
        .committed_offsets(partitions, SCAN_TIMEOUT)
        .context("reading the persisters' committed offsets")?;
    let mut start = TopicPartitionList::new();
    // Partition → the end `ListOffsets` gave, for the partitions not read that far yet.
    let mut short_of = HashMap::new();
    for entry in committed.elements() {
        let partition = entry.partition();
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, SCAN_TIMEOUT)
            .context("reading a kafka partition's end")?;
        let from = match entry.offset() {
            Offset::Offset(n) => n.max(low),
            _ => low,
        };
        start.add_partition_offset(topic, partition, Offset::Offset(from))?;
        if from < high {
            short_of.insert(partition, high);
        }
    }
    let key = group_id.to_string();
    let mut last = 0;
    if start.count() == 0 {
        return Ok(last);
    }
    consumer.assign(&start)?;
    // Once every partition is read to its end: when the reading past it began.
    let mut at_ends = short_of.is_empty().then(Instant::now);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        anyhow::ensure!(!left.is_zero(), "reading the kafka log's tail timed out");
        let wait = match at_ends {
            // The rest of a batch is already here: it comes at once.
            Some(since) if since.elapsed() >= QUIET => return Ok(last),
            Some(_) => PAST_END_WAIT,
            None => left.min(Duration::from_millis(100)),
        };
        let Some(record) = consumer.poll(wait) else {
            // Past the ends, a poll that found nothing waited `PAST_END_WAIT`: done.
            if at_ends.is_some() {
                return Ok(last);
            }
            continue;
        };
        let record = record.context("reading the kafka log's tail")?;
        if record.key() == Some(key.as_bytes())
            && let Ok(message) = decode(record.payload().unwrap_or_default())
        {
            last = last.max(message.offset);
        }
        let partition = record.partition();
        if short_of
            .get(&partition)
            .is_some_and(|end| record.offset() + 1 >= *end)
        {
            short_of.remove(&partition);
            if short_of.is_empty() {
                at_ends = Some(Instant::now());
            }
        }
    }
}

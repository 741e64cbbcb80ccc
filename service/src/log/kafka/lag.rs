//! The persister's consumer lag, per partition: how many records Kafka holds beyond the
//! group's committed offset, that is messages acknowledged to their senders and not yet known
//! to be in the database. [`LagReporter`] measures it every [`LAG_INTERVAL`] for the partitions
//! this consumer is assigned, as `quickchat_persister_consumer_lag{partition}`; a partition it
//! no longer reads leaves the metric (whoever reads it now reports it).
//!
//! librdkafka's statistics have a `consumer_lag` too, but it is -1 in a partition where the
//! group has committed nothing yet (a new group's whole backlog would not show), and their
//! `consumer_lag_stored` counts from the offsets stored as records are read, before they are
//! in the database (0 with uncommitted records). So the lag is measured here, from the high
//! watermark and the committed offset, both asked of Kafka.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaResult;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::KafkaContext;
use crate::metrics::Metrics;

/// How often the lag is measured.
const LAG_INTERVAL: Duration = Duration::from_secs(1);

/// Longest one measurement waits for Kafka. A partition not measured in time keeps its last
/// value.
const MEASURE_TIMEOUT: Duration = Duration::from_secs(1);

/// Per assigned partition, its lag, or `None` where Kafka did not answer in time.
type Lags = BTreeMap<i32, Option<i64>>;

/// Measures the consumer lag in the background until stopped or dropped; see the
/// [module documentation](self).
pub(super) struct LagReporter {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl LagReporter {
    /// Holds the consumer weakly: the reporter never keeps a consumer open that its source
    /// has closed.
    pub(super) fn start(
        consumer: Weak<StreamConsumer<KafkaContext>>,
        topic: String,
        metrics: Arc<Metrics>,
    ) -> Self {
        let stop = CancellationToken::new();
        let task = tokio::spawn(report(consumer, topic, metrics, stop.clone()));
        Self { stop, task }
    }

    /// Stops reporting, and waits for a measurement in progress (bounded by
    /// [`MEASURE_TIMEOUT`]) so that the source holds the consumer's last reference.
    pub(super) async fn stop(mut self) {
        self.stop.cancel();
        if let Err(err) = (&mut self.task).await {
            tracing::warn!(error = %err, "the kafka lag reporter panicked");
        }
    }
}

impl Drop for LagReporter {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn report(
    consumer: Weak<StreamConsumer<KafkaContext>>,
    topic: String,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    // The partitions whose lag the metric shows.
    let mut reported = BTreeSet::new();
    let mut ticks = tokio::time::interval(LAG_INTERVAL);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => break,
            _ = ticks.tick() => {}
        }
        let Some(consumer) = consumer.upgrade() else {
            break;
        };
        let topic = topic.clone();
        // The queries block: keep them off the async workers.
        let lags = match tokio::task::spawn_blocking(move || measure(&consumer, &topic)).await {
            Ok(Ok(lags)) => lags,
            Ok(Err(err)) => {
                tracing::debug!(error = %err, "kafka consumer lag not measured");
                continue;
            }
            Err(err) => {
                tracing::warn!(error = %err, "measuring the kafka consumer lag panicked");
                continue;
            }
        };
        reported.retain(|partition| {
            let assigned = lags.contains_key(partition);
            if !assigned {
                metrics.partition_revoked(*partition);
            }
            assigned
        });
        for (&partition, &lag) in &lags {
            if let Some(lag) = lag {
                metrics.set_consumer_lag(partition, lag);
                reported.insert(partition);
            }
        }
    }
    for partition in reported {
        metrics.partition_revoked(partition);
    }
}

/// The lag of each partition of `topic` assigned to `consumer`: its high watermark minus the
/// group's committed offset there (minus its low watermark while the group has committed
/// nothing there, as the group then reads from the start).
///
/// The watermarks are asked in one ListOffsets request for all partitions (timestamp -1 is
/// the latest offset, -2 the earliest): it shares the broker connection with the consumer's
/// fetches, each of which the broker may hold for `fetch.wait.max.ms`, and a request per
/// partition (`fetch_watermarks`) often did not fit in [`MEASURE_TIMEOUT`].
fn measure(consumer: &StreamConsumer<KafkaContext>, topic: &str) -> KafkaResult<Lags> {
    let deadline = Instant::now() + MEASURE_TIMEOUT;
    let left = || deadline.saturating_duration_since(Instant::now());
    let partitions: Vec<i32> = consumer
        .assignment()?
        .elements_for_topic(topic)
        .iter()
        .map(|element| element.partition())
        .collect();
    let mut lags: Lags = partitions.iter().map(|&p| (p, None)).collect();
    if partitions.is_empty() {
        return Ok(lags);
    }
    let query = |partitions: &mut dyn Iterator<Item = i32>, at: Offset| {
        let mut list = TopicPartitionList::new();
        for partition in partitions {
            list.add_partition_offset(topic, partition, at)?;
        }
        KafkaResult::Ok(list)
    };
    let all = || partitions.iter().copied();
    let committed = match consumer.committed_offsets(query(&mut all(), Offset::Invalid)?, left()) {
        Ok(committed) => offsets_of(&committed, topic),
        Err(err) => {
            tracing::debug!(error = %err, "kafka committed offsets not fetched");
            return Ok(lags);
        }
    };
    let ends = match consumer.offsets_for_times(query(&mut all(), Offset::End)?, left()) {
        Ok(ends) => offsets_of(&ends, topic),
        Err(err) => {
            tracing::debug!(error = %err, "kafka partition ends not fetched");
            return Ok(lags);
        }
    };
    let mut never_committed = all().filter(|p| !committed.contains_key(p)).peekable();
    let starts = match never_committed.peek() {
        None => BTreeMap::new(),
        Some(_) => {
            let starts = query(&mut never_committed, Offset::Beginning)?;
            match consumer.offsets_for_times(starts, left()) {
                Ok(starts) => offsets_of(&starts, topic),
                Err(err) => {
                    tracing::debug!(error = %err, "kafka partition starts not fetched");
                    BTreeMap::new()
                }
            }
        }
    };
    for (partition, lag) in &mut lags {
        let from = committed.get(partition).or_else(|| starts.get(partition));
        if let (Some(from), Some(end)) = (from, ends.get(partition)) {
            *lag = Some((end - from).max(0));
        }
    }
    Ok(lags)
}

/// The offsets of `topic`'s partitions in `list`, leaving out the partitions with an error
/// or no offset.
fn offsets_of(list: &TopicPartitionList, topic: &str) -> BTreeMap<i32, i64> {
    list.elements_for_topic(topic)
        .iter()
        .filter(|element| element.error().is_ok())
        .filter_map(|element| match element.offset() {
            Offset::Offset(offset) => Some((element.partition(), offset)),
            _ => None,
        })
        .collect()
}

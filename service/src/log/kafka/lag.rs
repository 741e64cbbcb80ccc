//! The persisters' consumer lag, per partition: how many records Kafka holds beyond the
//! group's committed offset, that is messages acknowledged to their senders and not yet known
//! to be in the database. [`Monitor`] measures it every [`LAG_INTERVAL`] for every partition
//! of the topic. The partitions this consumer is assigned are shown as
//! `quickchat_persister_consumer_lag{partition}` once the source is observed; a partition it
//! no longer reads leaves the metric (whoever reads it now reports it). Every measurement also
//! goes to the takeover [`Watchdog`], which finds partitions nobody reads.
//!
//! librdkafka's statistics have a `consumer_lag` too, but it is -1 in a partition where the
//! group has committed nothing yet (a new group's whole backlog would not show), and their
//! `consumer_lag_stored` counts from the offsets stored as records are read, before they are
//! in the database (0 with uncommitted records). So the lag is measured here, from the high
//! watermark and the committed offset, both asked of Kafka.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaResult;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::KafkaContext;
use super::takeover::{Stalled, Verdict, Watchdog};
use crate::metrics::Metrics;

/// How often the lag is measured.
const LAG_INTERVAL: Duration = Duration::from_secs(1);

/// Longest one measurement waits for Kafka. A partition not measured in time keeps its last
/// value.
const MEASURE_TIMEOUT: Duration = Duration::from_secs(1);

/// How often the topic's partitions are listed again (a topic can gain partitions).
const PARTITIONS_REFRESH: Duration = Duration::from_secs(30);

/// One measurement: every partition of the topic.
pub(super) type Measurement = BTreeMap<i32, Measured>;

#[derive(Debug, Clone, Copy)]
pub(super) struct Measured {
    /// Whether this consumer reads the partition now.
    pub assigned: bool,
    /// `None` where Kafka did not answer in time.
    pub offsets: Option<Offsets>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Offsets {
    /// The group's committed offset; the partition's start while the group has committed
    /// nothing there (it then reads from the start).
    pub committed: i64,
    /// The high watermark: the offset the next record will take.
    pub end: i64,
}

impl Offsets {
    pub(super) fn lag(self) -> i64 {
        (self.end - self.committed).max(0)
    }
}

/// Where the monitor reports, once the source is observed.
pub(super) type MetricsSlot = Arc<OnceLock<Arc<Metrics>>>;

/// Measures the partitions in the background until stopped or dropped; see the
/// [module documentation](self).
pub(super) struct Monitor {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Monitor {
    /// Holds the consumer weakly: the monitor never keeps a consumer open that its source
    /// has closed. `rejoin` is notified when the watchdog asks the consumer to rejoin its
    /// group (after `takeover_bound`, see [`Watchdog`]).
    pub(super) fn start(
        consumer: Weak<StreamConsumer<KafkaContext>>,
        topic: String,
        takeover_bound: Duration,
        rejoin: Arc<Notify>,
        metrics: MetricsSlot,
    ) -> Self {
        let stop = CancellationToken::new();
        let watchdog = Watchdog::new(takeover_bound);
        let sinks = Sinks {
            metrics,
            rejoin,
            reported: BTreeSet::new(),
            unowned: Vec::new(),
        };
        let task = tokio::spawn(watch(consumer, topic, watchdog, sinks, stop.clone()));
        Self { stop, task }
    }

    /// Stops measuring, and waits for a measurement in progress (bounded by
    /// [`MEASURE_TIMEOUT`]) so that the source holds the consumer's last reference.
    pub(super) async fn stop(mut self) {
        self.stop.cancel();
        if let Err(err) = (&mut self.task).await {
            tracing::warn!(error = %err, "the kafka partition monitor panicked");
        }
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Where measurements go.
struct Sinks {
    metrics: MetricsSlot,
    rejoin: Arc<Notify>,
    /// The partitions whose lag the metric shows.
    reported: BTreeSet<i32>,
    /// The unowned partitions last logged.
    unowned: Vec<i32>,
}

impl Sinks {
    fn lags(&mut self, measurement: &Measurement) {
        let Some(metrics) = self.metrics.get() else {
            return;
        };
        self.reported.retain(|partition| {
            let assigned = measurement.get(partition).is_some_and(|m| m.assigned);
            if !assigned {
                metrics.partition_revoked(*partition);
            }
            assigned
        });
        for (&partition, measured) in measurement {
            if let (true, Some(offsets)) = (measured.assigned, measured.offsets) {
                metrics.set_consumer_lag(partition, offsets.lag());
                self.reported.insert(partition);
            }
        }
    }

    fn verdict(&mut self, verdict: &Verdict, bound: Duration) {
        let unowned: Vec<i32> = verdict.unowned.iter().map(|s| s.partition).collect();
        if let Some(metrics) = self.metrics.get() {
            metrics.set_unowned_partitions(unowned.len());
        }
        if verdict.rejoin {
            // Counted by the consumer, if it rejoins (it first checks it can store).
            tracing::warn!(
                partitions = ?unowned,
                records = records(&verdict.unowned),
                bound_secs = bound.as_secs_f64(),
                "kafka partitions have had no owner for longer than the takeover bound; \
                 asking to rejoin the persisters' consumer group to take them over"
            );
            self.rejoin.notify_one();
        } else if !unowned.is_empty() && unowned != self.unowned {
            tracing::warn!(
                partitions = ?unowned,
                records = records(&verdict.unowned),
                stuck_here = ?verdict.stuck_here.iter().map(|s| s.partition).collect::<Vec<_>>(),
                bound_secs = bound.as_secs_f64(),
                "kafka partitions have had no owner for longer than the takeover bound"
            );
        } else if unowned.is_empty() && !self.unowned.is_empty() {
            tracing::info!(partitions = ?self.unowned, "kafka partitions have an owner again");
        }
        self.unowned = unowned;
    }

    fn stopped(&mut self) {
        if let Some(metrics) = self.metrics.get() {
            for &partition in &self.reported {
                metrics.partition_revoked(partition);
            }
            metrics.set_unowned_partitions(0);
        }
        self.reported.clear();
    }
}

/// Records waiting in `stalled` partitions.
fn records(stalled: &[Stalled]) -> i64 {
    stalled.iter().map(|s| s.lag).sum()
}

async fn watch(
    consumer: Weak<StreamConsumer<KafkaContext>>,
    topic: String,
    mut watchdog: Watchdog,
    mut sinks: Sinks,
    stop: CancellationToken,
) {
    let bound = watchdog.bound();
    let mut partitions: Vec<i32> = Vec::new();
    let mut listed_at: Option<Instant> = None;
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
        let relist =
            partitions.is_empty() || listed_at.is_none_or(|at| at.elapsed() > PARTITIONS_REFRESH);
        let (topic_name, known) = (topic.clone(), partitions.clone());
        // The queries block: keep them off the async workers.
        let measured = tokio::task::spawn_blocking(move || {
            let partitions = match relist {
                true => topic_partitions(&consumer, &topic_name)?,
                false => known,
            };
            let measurement = measure(&consumer, &topic_name, &partitions)?;
            KafkaResult::Ok((partitions, measurement))
        })
        .await;
        let measurement = match measured {
            Ok(Ok((listed, measurement))) => {
                if relist {
                    partitions = listed;
                    listed_at = Some(Instant::now());
                }
                measurement
            }
            Ok(Err(err)) => {
                tracing::debug!(error = %err, "kafka partitions not measured");
                continue;
            }
            Err(err) => {
                tracing::warn!(error = %err, "measuring the kafka partitions panicked");
                continue;
            }
        };
        sinks.lags(&measurement);
        let verdict = watchdog.observe(tokio::time::Instant::now(), &measurement);
        sinks.verdict(&verdict, bound);
    }
    sinks.stopped();
}

/// The partitions of `topic`, as the cluster's metadata lists them.
fn topic_partitions(consumer: &StreamConsumer<KafkaContext>, topic: &str) -> KafkaResult<Vec<i32>> {
    let metadata = consumer.fetch_metadata(Some(topic), MEASURE_TIMEOUT)?;
    Ok(metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions())
        .map(|p| p.id())
        .collect())
}

/// Every one of `partitions` of `topic`: whether `consumer` is assigned it, and the group's
/// committed offset (the partition's start while the group has committed nothing there) and
/// the high watermark.
///
/// The watermarks are asked in one ListOffsets request for all partitions (timestamp -1 is
/// the latest offset, -2 the earliest): it shares the broker connection with the consumer's
/// fetches, each of which the broker may hold for `fetch.wait.max.ms`, and a request per
/// partition (`fetch_watermarks`) often did not fit in [`MEASURE_TIMEOUT`].
fn measure(
    consumer: &StreamConsumer<KafkaContext>,
    topic: &str,
    partitions: &[i32],
) -> KafkaResult<Measurement> {
    let deadline = Instant::now() + MEASURE_TIMEOUT;
    let left = || deadline.saturating_duration_since(Instant::now());
    let assigned: BTreeSet<i32> = consumer
        .assignment()?
        .elements_for_topic(topic)
        .iter()
        .map(|element| element.partition())
        .collect();
    let mut measurement: Measurement = partitions
        .iter()
        .map(|&partition| {
            let assigned = assigned.contains(&partition);
            let offsets = None;
            (partition, Measured { assigned, offsets })
        })
        .collect();
    if partitions.is_empty() {
        return Ok(measurement);
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
            return Ok(measurement);
        }
    };
    let ends = match consumer.offsets_for_times(query(&mut all(), Offset::End)?, left()) {
        Ok(ends) => offsets_of(&ends, topic),
        Err(err) => {
            tracing::debug!(error = %err, "kafka partition ends not fetched");
            return Ok(measurement);
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
    for (partition, measured) in &mut measurement {
        let from = committed.get(partition).or_else(|| starts.get(partition));
        if let (Some(&committed), Some(&end)) = (from, ends.get(partition)) {
            measured.offsets = Some(Offsets { committed, end });
        }
    }
    Ok(measurement)
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

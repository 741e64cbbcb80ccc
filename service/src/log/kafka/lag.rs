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
use rdkafka::topic_partition_list::Offset;
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
fn measure(consumer: &StreamConsumer<KafkaContext>, topic: &str) -> KafkaResult<Lags> {
    let deadline = Instant::now() + MEASURE_TIMEOUT;
    let left = || deadline.saturating_duration_since(Instant::now());
    let assigned = consumer.assignment()?;
    let mut lags: Lags = assigned
        .elements_for_topic(topic)
        .iter()
        .map(|element| (element.partition(), None))
        .collect();
    if lags.is_empty() {
        return Ok(lags);
    }
    let committed = match consumer.committed_offsets(assigned, left()) {
        Ok(committed) => committed,
        Err(err) => {
            tracing::debug!(error = %err, "kafka committed offsets not fetched");
            return Ok(lags);
        }
    };
    for element in committed.elements_for_topic(topic) {
        let partition = element.partition();
        match consumer.fetch_watermarks(topic, partition, left()) {
            Ok((low, high)) => {
                let from = match element.offset() {
                    Offset::Offset(committed) => committed,
                    _ => low,
                };
                lags.insert(partition, Some((high - from).max(0)));
            }
            Err(err) => {
                tracing::debug!(error = %err, partition, "kafka watermarks not fetched");
            }
        }
    }
    Ok(lags)
}

//! How the Kafka message log and its persisters use the cluster's Kafka.

use std::time::Duration;

/// The Kafka log's settings (the brokers are given apart: they say whether there is a Kafka
/// log at all).
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    /// Topic every message is produced to, keyed by group id.
    pub topic: String,
    /// Partitions of the topic when the server creates it.
    pub partitions: i32,
    /// Consumer group of the persisters.
    pub consumer_group: String,
    /// librdkafka `session.timeout.ms` of the persister's consumer.
    pub session_timeout_ms: u32,
    /// librdkafka `heartbeat.interval.ms` of the persister's consumer.
    pub heartbeat_interval_ms: u32,
    /// Longest a send waits for Kafka to confirm (librdkafka `message.timeout.ms`).
    pub produce_timeout_ms: u32,
}

/// What [`KafkaSettings::takeover_bound`] allows for a rebalance itself, beyond noticing a
/// dead member.
const TAKEOVER_MARGIN: Duration = Duration::from_secs(3);

impl KafkaSettings {
    /// How long a partition may hold records the persisters have not committed, with no
    /// commit at all, before the takeover watchdog (`log::kafka::takeover`) holds that no
    /// live persister reads it: a session timeout (the broker expires a dead member), two
    /// heartbeat intervals (the survivors hear of the rebalance) and three seconds for the
    /// rebalance. 10 s with the tests' settings, 54 s with the defaults.
    pub fn takeover_bound(&self) -> Duration {
        Duration::from_millis(
            u64::from(self.session_timeout_ms) + 2 * u64::from(self.heartbeat_interval_ms),
        ) + TAKEOVER_MARGIN
    }
}

impl Default for KafkaSettings {
    fn default() -> Self {
        Self {
            topic: "quickchat.messages".into(),
            partitions: 6,
            consumer_group: "quickchat-persister".into(),
            session_timeout_ms: 45_000,
            heartbeat_interval_ms: 3_000,
            produce_timeout_ms: 5_000,
        }
    }
}

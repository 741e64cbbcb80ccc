//! Prometheus metrics: what an operator watches (the admin view of the original's Socket.IO
//! admin UI, with health checks and reflection). Served as text on `--metrics-listen`
//! (`GET /metrics`); off unless that flag is given.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Why a send was refused, as the `reason` label.
#[derive(Debug, Clone, Copy)]
pub enum Rejection {
    Invalid,
    RateLimited,
    Unavailable,
}

impl Rejection {
    fn label(self) -> &'static str {
        match self {
            Rejection::Invalid => "invalid",
            Rejection::RateLimited => "rate_limited",
            Rejection::Unavailable => "unavailable",
        }
    }
}

type Labels = Vec<(&'static str, &'static str)>;

/// A Kafka partition, as the `partition` label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartitionLabel {
    partition: i32,
}

/// Counter readings at one moment (see [`Metrics::snapshot`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsSnapshot {
    pub open_streams: u64,
    pub messages_sent: u64,
    pub messages_delivered: u64,
    pub messages_persisted: u64,
}

pub struct Metrics {
    registry: Registry,
    messages_sent: Counter,
    sends_rejected: Family<Labels, Counter>,
    send_duration: Histogram,
    deliveries: Counter,
    room_streams: Gauge,
    slow_consumers: Counter,
    persisted_messages: Counter,
    persist_batches: Counter,
    persist_failures: Counter,
    dead_letters: Counter,
    dropped_group_gone: Counter,
    consumer_lag: Family<PartitionLabel, Gauge>,
    unowned_partitions: Gauge,
    takeover_rejoins: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("quickchat");
        let messages_sent = Counter::default();
        registry.register(
            "messages_sent",
            "Messages accepted into a room (retries not counted)",
            messages_sent.clone(),
        );
        let sends_rejected = Family::<Labels, Counter>::default();
        registry.register(
            "sends_rejected",
            "Sends refused, by reason",
            sends_rejected.clone(),
        );
        let send_duration = Histogram::new(exponential_buckets(0.000_25, 2.0, 16));
        registry.register(
            "send_duration_seconds",
            "From accepting a send to its message being durable (the ack)",
            send_duration.clone(),
        );
        let deliveries = Counter::default();
        registry.register(
            "deliveries",
            "Messages queued to room streams (one per subscriber)",
            deliveries.clone(),
        );
        let room_streams = Gauge::default();
        registry.register(
            "room_streams",
            "Open room streams (Chat and Subscribe)",
            room_streams.clone(),
        );
        let slow_consumers = Counter::default();
        registry.register(
            "slow_consumer_disconnects",
            "Room streams ended because the client did not read fast enough",
            slow_consumers.clone(),
        );
        let persisted_messages = Counter::default();
        registry.register(
            "persisted_messages",
            "Messages the persister wrote to the database (replays included)",
            persisted_messages.clone(),
        );
        let persist_batches = Counter::default();
        registry.register(
            "persist_batches",
            "Batches the persister committed",
            persist_batches.clone(),
        );
        let persist_failures = Counter::default();
        registry.register(
            "persist_failures",
            "Batch writes the database refused (each is retried)",
            persist_failures.clone(),
        );
        let dead_letters = Counter::default();
        registry.register(
            "persister_dead_letters",
            "Messages the database refused, kept in the dead_letters table instead",
            dead_letters.clone(),
        );
        let dropped_group_gone = Counter::default();
        registry.register(
            "messages_dropped_group_deleted",
            "Messages not stored because their group was deleted first",
            dropped_group_gone.clone(),
        );
        let consumer_lag = Family::<PartitionLabel, Gauge>::default();
        registry.register(
            "persister_consumer_lag",
            "Records in a Kafka partition assigned to this persister that its group has not \
             committed yet, i.e. not yet known to be in the database",
            consumer_lag.clone(),
        );
        let unowned_partitions = Gauge::default();
        registry.register(
            "persister_unowned_partitions",
            "Kafka partitions this persister does not read whose uncommitted records have had \
             no commit for longer than the takeover bound: no live persister stores them",
            unowned_partitions.clone(),
        );
        let takeover_rejoins = Counter::default();
        registry.register(
            "persister_takeover_rejoins",
            "Times this persister rejoined its consumer group to take over unowned partitions",
            takeover_rejoins.clone(),
        );
        Self {
            registry,
            dead_letters,
            unowned_partitions,
            takeover_rejoins,
            dropped_group_gone,
            consumer_lag,
            messages_sent,
            sends_rejected,
            send_duration,
            deliveries,
            room_streams,
            slow_consumers,
            persisted_messages,
            persist_batches,
            persist_failures,
        }
    }

    /// The counters an operator's overview shows.
    pub fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            open_streams: self.room_streams.get().max(0) as u64,
            messages_sent: self.messages_sent.get(),
            messages_delivered: self.deliveries.get(),
            messages_persisted: self.persisted_messages.get(),
        }
    }

    pub fn message_sent(&self, took: Duration) {
        self.messages_sent.inc();
        self.send_duration.observe(took.as_secs_f64());
    }

    pub fn send_rejected(&self, why: Rejection) {
        self.sends_rejected
            .get_or_create(&vec![("reason", why.label())])
            .inc();
    }

    pub fn delivered(&self) {
        self.deliveries.inc();
    }

    pub fn stream_opened(&self) {
        self.room_streams.inc();
    }

    pub fn stream_closed(&self) {
        self.room_streams.dec();
    }

    pub fn slow_consumer(&self) {
        self.slow_consumers.inc();
    }

    pub fn batch_persisted(&self, messages: usize) {
        self.persist_batches.inc();
        self.persisted_messages.inc_by(messages as u64);
    }

    pub fn persist_failed(&self) {
        self.persist_failures.inc();
    }

    pub fn dead_lettered(&self) {
        self.dead_letters.inc();
    }

    pub fn dropped_group_gone(&self) {
        self.dropped_group_gone.inc();
    }

    /// `records` of Kafka `partition` are not committed by the persisters' group yet.
    pub fn set_consumer_lag(&self, partition: i32, records: i64) {
        self.consumer_lag
            .get_or_create(&PartitionLabel { partition })
            .set(records);
    }

    /// This persister no longer reads `partition`: another one reports its lag now.
    pub fn partition_revoked(&self, partition: i32) {
        self.consumer_lag.remove(&PartitionLabel { partition });
    }

    /// `partitions` have had no owner for longer than the takeover bound, as this persister
    /// sees them.
    pub fn set_unowned_partitions(&self, partitions: usize) {
        self.unowned_partitions.set(partitions as i64);
    }

    /// This persister rejoined its consumer group to take over unowned partitions.
    pub fn takeover_rejoin(&self) {
        self.takeover_rejoins.inc();
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

/// Serves `GET /metrics` on `addr` until `stop` is cancelled. Returns the bound address.
pub async fn serve(
    metrics: Arc<Metrics>,
    addr: SocketAddr,
    stop: CancellationToken,
) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for metrics on {addr}"))?;
    let local = listener.local_addr()?;
    let router = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let metrics = metrics.clone();
            async move {
                (
                    [(
                        http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    metrics.render(),
                )
            }
        }),
    );
    tokio::spawn(async move {
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        if let Err(err) = served {
            tracing::warn!(error = %err, "metrics endpoint stopped");
        }
    });
    Ok(local)
}

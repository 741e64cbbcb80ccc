//! A cluster of server nodes for tests. Each node runs on its own tokio runtime so that
//! [`Node::kill`] can make it vanish the way a crashed process does: every task, connection
//! and client of that node dropped at once, nothing shut down gracefully.

use std::time::Duration;

use quickchat_service::settings::{KafkaSettings, PresenceTiming, RedisSettings};
use quickchat_service::store::Store;
use quickchat_service::{Application, Settings};
use secrecy::SecretString;
use tokio::sync::oneshot;
use tonic::transport::Channel;
use uuid::Uuid;

use crate::helpers::{JWT_SECRET, fresh_postgres_database};
use crate::services;

/// The shared infrastructure of one test's cluster.
pub struct ClusterEnv {
    pub database_url: String,
    pub redis_url: String,
    pub kafka_brokers: String,
    pub redis: RedisSettings,
    pub kafka: KafkaSettings,
    data_dir: tempfile::TempDir,
}

impl ClusterEnv {
    /// A fresh database, Redis key prefix, Kafka topic and consumer group.
    pub async fn new() -> Self {
        quickchat_service::telemetry::init();
        let kafka_brokers = services::kafka_brokers().await;
        let redis_url = services::redis_url().await;
        let id = Uuid::new_v4().simple().to_string();
        Self {
            database_url: fresh_postgres_database().await,
            redis_url,
            kafka_brokers,
            redis: RedisSettings {
                key_prefix: format!("qc-test-{id}"),
                presence: PresenceTiming {
                    refresh: Duration::from_millis(500),
                    ttl: Duration::from_secs(3),
                },
            },
            kafka: KafkaSettings {
                topic: format!("quickchat.test.{id}"),
                partitions: 3,
                consumer_group: format!("quickchat-persister-{id}"),
                session_timeout_ms: 6_000,
                heartbeat_interval_ms: 500,
                produce_timeout_ms: 5_000,
            },
            data_dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// Settings of a node of this cluster.
    pub fn settings(&self) -> Settings {
        Settings {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: self.data_dir.path().to_path_buf(),
            database_url: Some(self.database_url.clone()),
            redis_url: Some(self.redis_url.clone()),
            kafka_brokers: Some(self.kafka_brokers.clone()),
            jwt_secret: Some(SecretString::from(JWT_SECRET.to_owned())),
            redis: self.redis.clone(),
            kafka: self.kafka.clone(),
            ..Settings::default()
        }
    }

    /// Command-line flags of a node or persister process of this cluster (see
    /// `support::process`): the same settings as [`ClusterEnv::settings`].
    pub fn args(&self) -> Vec<String> {
        let (redis, kafka) = (&self.redis, &self.kafka);
        [
            ("--listen", "127.0.0.1:0".to_owned()),
            ("--data-dir", self.data_dir.path().display().to_string()),
            ("--database-url", self.database_url.clone()),
            ("--redis-url", self.redis_url.clone()),
            ("--kafka-brokers", self.kafka_brokers.clone()),
            ("--jwt-secret", JWT_SECRET.to_owned()),
            ("--redis-key-prefix", redis.key_prefix.clone()),
            ("--kafka-topic", kafka.topic.clone()),
            ("--kafka-partitions", kafka.partitions.to_string()),
            ("--kafka-consumer-group", kafka.consumer_group.clone()),
            (
                "--kafka-session-timeout-ms",
                kafka.session_timeout_ms.to_string(),
            ),
            (
                "--kafka-heartbeat-interval-ms",
                kafka.heartbeat_interval_ms.to_string(),
            ),
            (
                "--kafka-produce-timeout-ms",
                kafka.produce_timeout_ms.to_string(),
            ),
            ("--metrics-listen", "127.0.0.1:0".to_owned()),
        ]
        .into_iter()
        .flat_map(|(flag, value)| [flag.to_owned(), value])
        .collect()
    }

    /// The consumer group's committed offsets, summed over the topic's partitions: how
    /// many records the persisters have declared stored.
    pub fn committed_records(&self) -> i64 {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
        let consumer: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &self.kafka_brokers)
            .set("group.id", &self.kafka.consumer_group)
            .set("enable.auto.commit", "false")
            .create()
            .expect("a consumer to read committed offsets");
        let mut partitions = TopicPartitionList::new();
        for p in 0..self.kafka.partitions {
            partitions.add_partition(&self.kafka.topic, p);
        }
        let committed = consumer
            .committed_offsets(partitions, Duration::from_secs(10))
            .expect("committed offsets");
        committed
            .elements()
            .iter()
            .map(|e| match e.offset() {
                Offset::Offset(n) => n,
                _ => 0,
            })
            .sum()
    }

    pub async fn store(&self) -> Store {
        Store::connect(&self.database_url)
            .await
            .expect("store connects")
    }

    /// Starts `n` nodes.
    pub async fn nodes(&self, n: usize) -> Vec<Node> {
        let mut nodes = Vec::new();
        for _ in 0..n {
            nodes.push(Node::start(self.settings()).await);
        }
        nodes
    }
}

pub struct Node {
    pub channel: Channel,
    runtime: Option<tokio::runtime::Runtime>,
    shutdown: Option<oneshot::Sender<()>>,
    stopped: Option<oneshot::Receiver<Result<(), String>>>,
}

impl Node {
    pub async fn start(settings: Settings) -> Node {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("node runtime");
        let (addr_tx, addr_rx) = oneshot::channel();
        let (shutdown, shutdown_rx) = oneshot::channel::<()>();
        let (stopped_tx, stopped) = oneshot::channel();
        runtime.spawn(async move {
            let app = match Application::build(settings).await {
                Ok(app) => app,
                Err(err) => {
                    let _ = addr_tx.send(Err(format!("{err:#}")));
                    return;
                }
            };
            let _ = addr_tx.send(Ok(app.local_addr()));
            let result = app
                .run_until_stopped(async {
                    let _ = shutdown_rx.await;
                })
                .await
                .map_err(|err| format!("{err:#}"));
            let _ = stopped_tx.send(result);
        });
        let addr = tokio::time::timeout(Duration::from_secs(60), addr_rx)
            .await
            .expect("node builds within 60 s")
            .expect("node task")
            .unwrap_or_else(|err| panic!("node failed to build: {err}"));
        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .expect("client connects");
        Node {
            channel,
            runtime: Some(runtime),
            shutdown: Some(shutdown),
            stopped: Some(stopped),
        }
    }

    /// Stops the node gracefully and waits until it has.
    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(stopped) = self.stopped.take() {
            tokio::time::timeout(Duration::from_secs(30), stopped)
                .await
                .expect("node stops within 30 s")
                .expect("node task ended")
                .unwrap_or_else(|err| panic!("node stopped with an error: {err}"));
        }
    }

    /// Makes the node vanish at once, like a crashed process.
    pub fn kill(mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

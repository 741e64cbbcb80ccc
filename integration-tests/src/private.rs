//! Services of one test's own, for the fault suite to break: a Redis it restarts empty and a
//! Kafka-protocol broker it freezes. Each is a local process when the shared service of its
//! kind is given in the environment (Debian's `redis-server`, the `tansu` binary), and
//! otherwise a container of the images in [`Images`], which the test stops, restarts and
//! pauses through the engine — as an operator's failures really look (see
//! [`services`](crate::services) for the choice).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage};
use testcontainers_modules::redis::Redis;

use crate::services::{self, Images, Source, free_port};

/// A free loopback address (nothing listens on it once this returns).
pub fn free_address() -> String {
    format!("127.0.0.1:{}", free_port())
}

/// A Redis server of one test's own (nothing kept on disk), which the test can kill and
/// start again on the same port: empty, as after a crash without persistence.
pub struct PrivateRedis {
    pub url: String,
    port: u16,
    server: RedisServer,
}

enum RedisServer {
    Process(Child),
    Container(Box<ContainerAsync<Redis>>),
}

impl PrivateRedis {
    pub async fn start() -> PrivateRedis {
        let port = free_port();
        let server = match Source::of("QUICKCHAT_TEST_REDIS_URL", "Redis") {
            Source::Local => RedisServer::Process(spawn_redis(port)),
            Source::Container => RedisServer::Container(Box::new(
                services::redis(&Images::from_env().redis, Some(port))
                    .start()
                    .await
                    .unwrap_or_else(|e| panic!("a Redis container did not start: {e}")),
            )),
        };
        services::wait_for_redis(port).await;
        PrivateRedis {
            url: format!("redis://127.0.0.1:{port}"),
            port,
            server,
        }
    }

    /// Kills the server (SIGKILL: nothing saved) and starts a new, empty one on the same
    /// port: for a container, the same container stopped and started again.
    pub async fn restart_empty(&mut self) {
        match &mut self.server {
            RedisServer::Process(child) => {
                let _ = child.kill();
                let _ = child.wait();
                *child = spawn_redis(self.port);
            }
            RedisServer::Container(container) => {
                container
                    .stop_with_timeout(Some(0))
                    .await
                    .expect("the Redis container stops");
                container.start().await.expect("the Redis container starts");
            }
        }
        services::wait_for_redis(self.port).await;
    }
}

fn spawn_redis(port: u16) -> Child {
    Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server starts (Debian's redis-server package)")
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        if let RedisServer::Process(child) = &mut self.server {
            let _ = child.kill();
            let _ = child.wait();
        }
        // A container is removed when it drops.
    }
}

/// A Kafka-protocol broker (tansu, in memory) of one test's own, which the test can freeze
/// (it stops answering, as a broker behind a dead network does) and thaw: SIGSTOP and
/// SIGCONT for a process, pause and unpause for a container.
pub struct PrivateBroker {
    pub address: String,
    broker: Broker,
}

enum Broker {
    Process(Child),
    Container(Box<ContainerAsync<GenericImage>>),
}

impl PrivateBroker {
    pub async fn start() -> PrivateBroker {
        let address = free_address();
        Self::start_at(address.clone(), &address).await
    }

    /// A broker on `address` that tells clients to reach it at `advertised` (e.g. through
    /// a proxy the test controls).
    pub async fn start_at(address: String, advertised: &str) -> PrivateBroker {
        let broker = match Source::of("QUICKCHAT_TEST_KAFKA_BROKERS", "Kafka-protocol broker") {
            Source::Local => Broker::Process(spawn_tansu(&address, advertised).await),
            Source::Container => {
                let port = address
                    .rsplit_once(':')
                    .and_then(|(_, port)| port.parse().ok())
                    .expect("address is host:port");
                Broker::Container(Box::new(
                    services::kafka_broker(&Images::from_env().kafka, port, advertised)
                        .start()
                        .await
                        .unwrap_or_else(|e| panic!("a broker container did not start: {e}")),
                ))
            }
        };
        // Through the advertised address, so a test's proxy is in place too.
        services::wait_for_kafka(advertised).await;
        PrivateBroker { address, broker }
    }

    pub async fn freeze(&self) {
        match &self.broker {
            Broker::Process(child) => signal(child, "-STOP"),
            Broker::Container(container) => container
                .pause()
                .await
                .expect("the broker container pauses"),
        }
    }

    pub async fn thaw(&self) {
        match &self.broker {
            Broker::Process(child) => signal(child, "-CONT"),
            Broker::Container(container) => container
                .unpause()
                .await
                .expect("the broker container resumes"),
        }
    }
}

fn signal(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
}

async fn spawn_tansu(address: &str, advertised: &str) -> Child {
    let tansu = which_tansu();
    let mut child = Command::new(&tansu)
        .args(["broker", "--cluster-id", "quickchat-private"])
        .args(["--listener-url", &format!("tcp://{address}")])
        .args(["--advertised-listener-url", &format!("tcp://{advertised}")])
        .args(["--storage-engine", "memory://tansu/"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {tansu}: {e}"));
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(address).await.is_ok() {
            return child;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("tansu did not listen on {address}");
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        if let Broker::Process(child) = &mut self.broker {
            signal(child, "-CONT");
            let _ = child.kill();
            let _ = child.wait();
        }
        // A container is removed when it drops, paused or not.
    }
}

/// The tansu binary scripts/kafka.sh installs.
fn which_tansu() -> String {
    let on_path = Command::new("sh")
        .args(["-c", "command -v tansu"])
        .output()
        .ok();
    match on_path.filter(|o| o.status.success()) {
        Some(output) => String::from_utf8(output.stdout).unwrap().trim().to_owned(),
        None => format!(
            "{}/.cargo/bin/tansu",
            std::env::var("HOME").unwrap_or_default()
        ),
    }
}

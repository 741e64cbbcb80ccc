//! Where the suites' PostgreSQL, Redis and Kafka-protocol broker come from: the one place
//! that decides it, for the API suite (on PostgreSQL), the cluster suite and its fault suite.
//! (The CLI suite runs its servers on the embedded default and needs none of them.)
//!
//! For each service, in this order:
//! 1. its endpoint in the environment — `QUICKCHAT_TEST_DATABASE_URL` (a server's admin URL),
//!    `QUICKCHAT_TEST_REDIS_URL`, `QUICKCHAT_TEST_KAFKA_BROKERS` — is used as it is (what
//!    `scripts/services.sh` and `scripts/kafka.sh` print for the local services);
//! 2. else, when a Docker-compatible engine answers (`DOCKER_HOST`, or
//!    `/var/run/docker.sock`), the service runs in a container that `testcontainers` starts
//!    from [`Images`] (`testcontainers-modules`' PostgreSQL and Redis; the broker is
//!    [`kafka_broker`]). One container per service serves every test of a run — every test
//!    process of one `cargo nextest run` finds the same one (see [`run_key`]) — and tests stay
//!    isolated as with local services: each has its own database, Redis key prefix, Kafka
//!    topic and consumer group;
//! 3. else the test fails with one message that names both ways.
//!
//! The containers of a run outlive it (a test process cannot know it is the last one):
//! `scripts/test.sh` removes its run's containers when it ends, and `scripts/containers.sh`
//! removes any older than three hours.

use std::borrow::Cow;
use std::io::{Read, Write};
use std::time::Duration;

use testcontainers::core::ContainerPort;
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, ContainerRequest, GenericImage, Image, ImageExt};
use testcontainers_modules::postgres::Postgres;
use testcontainers_modules::redis::Redis;
use tokio::sync::OnceCell;

/// The port each service listens on inside its container.
pub const POSTGRES_PORT: ContainerPort = ContainerPort::Tcp(5432);
pub const REDIS_PORT: ContainerPort = ContainerPort::Tcp(6379);
pub const KAFKA_PORT: ContainerPort = ContainerPort::Tcp(9092);

/// The label every test container carries: the run it belongs to (see [`run_key`]).
pub const RUN_LABEL: &str = "quickchat.test.run";

/// The admin URL of the PostgreSQL server the tests create their databases on.
pub async fn postgres_url() -> String {
    static URL: OnceCell<String> = OnceCell::const_new();
    URL.get_or_init(|| async {
        match given("QUICKCHAT_TEST_DATABASE_URL") {
            Some(url) => url,
            None => shared_postgres().await,
        }
    })
    .await
    .clone()
}

/// The URL of the Redis server the tests share (each test under its own key prefix).
pub async fn redis_url() -> String {
    static URL: OnceCell<String> = OnceCell::const_new();
    URL.get_or_init(|| async {
        match given("QUICKCHAT_TEST_REDIS_URL") {
            Some(url) => url,
            None => shared_redis().await,
        }
    })
    .await
    .clone()
}

/// The bootstrap address of the Kafka-protocol broker the tests share (each test with its
/// own topic and consumer group).
pub async fn kafka_brokers() -> String {
    static BROKERS: OnceCell<String> = OnceCell::const_new();
    BROKERS
        .get_or_init(|| async {
            match given("QUICKCHAT_TEST_KAFKA_BROKERS") {
                Some(brokers) => brokers,
                None => shared_kafka().await,
            }
        })
        .await
        .clone()
}

/// Where a service of one test's own comes from (see `private`): a local process when the
/// shared service of its kind is given in the environment (`variable`), else a container.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Local,
    Container,
}

impl Source {
    /// The source for services of the kind whose shared endpoint is `variable`; fails with
    /// the message naming both ways when there is neither.
    pub fn of(variable: &str, what: &str) -> Source {
        if given(variable).is_some() {
            Source::Local
        } else {
            require_engine(variable, what);
            Source::Container
        }
    }
}

/// The value of `variable`, unless unset or empty.
fn given(variable: &str) -> Option<String> {
    std::env::var(variable)
        .ok()
        .filter(|v| !v.trim().is_empty())
}

/// Fails the test, naming both ways to provide `what`, unless an engine answers.
fn require_engine(variable: &str, what: &str) {
    if let Err(why) = engine() {
        let local = if variable == "QUICKCHAT_TEST_KAFKA_BROKERS" {
            "`export QUICKCHAT_TEST_KAFKA_BROKERS=$(scripts/kafka.sh)` starts a local broker"
        } else {
            "`eval \"$(scripts/services.sh)\"` sets it to the local server"
        };
        panic!(
            "no {what} for the tests. Either give one: set {variable} ({local}); or let the \
             tests start one in a container: make a Docker-compatible engine answer at \
             DOCKER_HOST or /var/run/docker.sock (`eval \"$(scripts/containers.sh)\"` installs \
             podman, builds the images and sets DOCKER_HOST). Here {why}."
        );
    }
}

/// Whether a Docker-compatible engine answers, where testcontainers looks for it:
/// `DOCKER_HOST` (`unix://` or `tcp://`), else `/var/run/docker.sock`.
pub fn engine() -> Result<String, String> {
    let host = given("DOCKER_HOST").unwrap_or_else(|| "unix:///var/run/docker.sock".into());
    let request = b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n";
    let timeout = Some(Duration::from_secs(5));
    let answer = if let Some(path) = host.strip_prefix("unix://") {
        std::os::unix::net::UnixStream::connect(path).and_then(|mut s| {
            s.set_read_timeout(timeout)?;
            s.write_all(request)?;
            let mut answer = String::new();
            s.read_to_string(&mut answer).map(|_| answer)
        })
    } else if let Some(address) = host.strip_prefix("tcp://") {
        std::net::TcpStream::connect(address.trim_end_matches('/')).and_then(|mut s| {
            s.set_read_timeout(timeout)?;
            s.write_all(request)?;
            let mut answer = String::new();
            s.read_to_string(&mut answer).map(|_| answer)
        })
    } else {
        return Err(format!("DOCKER_HOST={host} is neither unix:// nor tcp://"));
    };
    match answer {
        Ok(answer) if answer.starts_with("HTTP/1.") && answer.contains(" 200 ") => Ok(host),
        Ok(answer) => Err(format!(
            "no container engine answered at {host} ({:?})",
            answer.lines().next().unwrap_or_default()
        )),
        Err(err) => Err(format!("no container engine answered at {host} ({err})")),
    }
}

/// The images the containers run: `QUICKCHAT_TEST_POSTGRES_IMAGE`, `_REDIS_IMAGE` and
/// `_KAFKA_IMAGE`, by default the ones `scripts/containers.sh` builds from Debian's
/// packages. On a machine with a registry the official ones work too: `postgres:16`,
/// `redis:7`, `apache/kafka:3.9.0` (see [`kafka_broker`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Images {
    pub postgres: ImageRef,
    pub redis: ImageRef,
    pub kafka: ImageRef,
}

impl Images {
    pub fn from_env() -> Images {
        let image = |variable: &str, default: &str| {
            let reference = given(variable).unwrap_or_else(|| default.to_owned());
            ImageRef::parse(&reference)
                .unwrap_or_else(|| panic!("{variable}={reference:?} is not name:tag"))
        };
        Images {
            postgres: image("QUICKCHAT_TEST_POSTGRES_IMAGE", "localhost/postgres:15"),
            redis: image("QUICKCHAT_TEST_REDIS_IMAGE", "localhost/redis:7"),
            kafka: image("QUICKCHAT_TEST_KAFKA_IMAGE", "localhost/tansu:0.6"),
        }
    }
}

/// An image's name (with its registry, if any) and tag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRef {
    pub name: String,
    pub tag: String,
}

impl ImageRef {
    /// `name:tag`, the name with or without a registry (`localhost:5000/redis:7` too);
    /// without a tag, `latest`.
    pub fn parse(reference: &str) -> Option<ImageRef> {
        let reference = reference.trim();
        let last_part = reference.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match reference[last_part..].rfind(':') {
            Some(i) => (&reference[..last_part + i], &reference[last_part + i + 1..]),
            None => (reference, "latest"),
        };
        let valid = |s: &str| !s.is_empty() && !s.contains(char::is_whitespace);
        (valid(name) && valid(tag)).then(|| ImageRef {
            name: name.to_owned(),
            tag: tag.to_owned(),
        })
    }
}

impl std::fmt::Display for ImageRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.name, self.tag)
    }
}

/// `request` with the container's `port` published on 127.0.0.1: on `host_port`, or on one
/// the engine picks. Loopback only, and said so: given no host address, podman reports the
/// binding with an empty one, and testcontainers then cannot tell the mapped port.
pub fn on_loopback<I: Image>(
    request: impl Into<ContainerRequest<I>>,
    port: ContainerPort,
    host_port: Option<u16>,
) -> ContainerRequest<I> {
    use testcontainers::bollard::models::PortBinding;
    let binding = (
        port.to_string(),
        Some(vec![PortBinding {
            host_ip: Some("127.0.0.1".into()),
            host_port: Some(host_port.map(|p| p.to_string()).unwrap_or_default()),
        }]),
    );
    request.into().with_host_config_modifier(move |config| {
        config.publish_all_ports = Some(false);
        config.port_bindings = Some([binding.clone()].into_iter().collect());
    })
}

/// PostgreSQL from `image` (trust authentication, user `postgres`, fsync off): the
/// `testcontainers-modules` image under another name.
pub fn postgres(image: &ImageRef, host_port: Option<u16>) -> ContainerRequest<Postgres> {
    on_loopback(
        Postgres::default().with_host_auth(),
        POSTGRES_PORT,
        host_port,
    )
    .with_name(&image.name)
    .with_tag(&image.tag)
    .with_label(RUN_LABEL, run_key())
    .with_startup_timeout(Duration::from_secs(120))
}

/// Redis from `image`, nothing kept on disk: the `testcontainers-modules` image under
/// another name.
pub fn redis(image: &ImageRef, host_port: Option<u16>) -> ContainerRequest<Redis> {
    on_loopback(Redis::default(), REDIS_PORT, host_port)
        .with_name(&image.name)
        .with_tag(&image.tag)
        // Reachable through the engine's port mapping (not loopback, so protected mode must
        // be off, as the official image's entrypoint does), nothing kept on disk.
        .with_cmd([
            "redis-server",
            "--bind",
            "0.0.0.0",
            "--protected-mode",
            "no",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .with_label(RUN_LABEL, run_key())
        .with_startup_timeout(Duration::from_secs(60))
}

/// A Kafka-protocol broker from `image`, listening on host port `host_port` and telling
/// clients to reach it at `advertised` (`host:port`; the host port itself, or a proxy in
/// front of it).
///
/// Kafka clients connect to the address the broker advertises, so it must be known before
/// the broker starts: hence a fixed host port rather than one the engine picks. One set of
/// environment variables serves both images: tansu's entrypoint
/// (`scripts/containers/kafka`) reads `ADVERTISED_LISTENER_URL`; the official
/// `apache/kafka` image reads the KRaft settings `testcontainers-modules`' Kafka module gives
/// it, its advertised listener set the same way.
pub fn kafka_broker(
    image: &ImageRef,
    host_port: u16,
    advertised: &str,
) -> ContainerRequest<GenericImage> {
    let mut request = on_loopback(
        GenericImage::new(&image.name, &image.tag).with_exposed_port(KAFKA_PORT),
        KAFKA_PORT,
        Some(host_port),
    )
    .with_env_var("ADVERTISED_LISTENER_URL", format!("tcp://{advertised}"));
    let module = testcontainers_modules::kafka::apache::Kafka::default();
    for (key, value) in module.env_vars() {
        let (key, value): (Cow<str>, Cow<str>) = (key.into(), value.into());
        request = request.with_env_var(key.into_owned(), value.into_owned());
    }
    request
        .with_env_var(
            "KAFKA_ADVERTISED_LISTENERS",
            format!("PLAINTEXT://{advertised},BROKER://localhost:9093"),
        )
        .with_label(RUN_LABEL, run_key())
}

/// What ties the containers of one run together: `QUICKCHAT_TEST_RUN` (scripts/test.sh sets
/// it, and removes the run's containers at its end), else the run id nextest gives every
/// test process of one `cargo nextest run`, else this process (`cargo test`).
pub fn run_key() -> String {
    given("QUICKCHAT_TEST_RUN")
        .or_else(|| given("NEXTEST_RUN_ID"))
        .unwrap_or_else(|| format!("pid-{}", std::process::id()))
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// Holds every test process of this run off while one of them starts a shared container
/// (they would all start one otherwise); released on drop.
struct RunLock(#[allow(dead_code)] std::fs::File);

impl RunLock {
    fn take() -> RunLock {
        let path = std::env::temp_dir().join(format!("quickchat-test-{}.lock", run_key()));
        let file = std::fs::File::create(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        file.lock()
            .unwrap_or_else(|e| panic!("cannot lock {}: {e}", path.display()));
        RunLock(file)
    }
}

/// The run's container named `quickchat-test-<service>-<run>`: the one another test process
/// of this run started, or a new one (while holding the [`RunLock`]).
async fn shared<I: Image>(service: &str, request: ContainerRequest<I>) -> ContainerAsync<I> {
    let image = request.descriptor();
    let _lock = tokio::task::spawn_blocking(RunLock::take)
        .await
        .expect("lock task");
    request
        .with_container_name(format!("quickchat-test-{service}-{}", run_key()))
        .with_reuse(testcontainers::ReuseDirective::Always)
        .start()
        .await
        .unwrap_or_else(|e| panic!("{service} container from {image} did not start: {e}"))
}

async fn shared_postgres() -> String {
    require_engine("QUICKCHAT_TEST_DATABASE_URL", "PostgreSQL");
    let container = shared("postgres", postgres(&Images::from_env().postgres, None)).await;
    let port = host_port(&container, POSTGRES_PORT).await;
    let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    wait_for_postgres(&url).await;
    url
}

async fn shared_redis() -> String {
    require_engine("QUICKCHAT_TEST_REDIS_URL", "Redis");
    let container = shared("redis", redis(&Images::from_env().redis, None)).await;
    let port = host_port(&container, REDIS_PORT).await;
    wait_for_redis(port).await;
    format!("redis://127.0.0.1:{port}")
}

async fn shared_kafka() -> String {
    require_engine("QUICKCHAT_TEST_KAFKA_BROKERS", "Kafka-protocol broker");
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let container = shared(
        "kafka",
        kafka_broker(&Images::from_env().kafka, port, &address),
    )
    .await;
    // Another test process may have started it, on its own port.
    let port = host_port(&container, KAFKA_PORT).await;
    let address = format!("127.0.0.1:{port}");
    wait_for_kafka(&address).await;
    address
}

/// The host port (IPv4: what the engine publishes on) of a container's `port`.
pub async fn host_port<I: Image>(container: &ContainerAsync<I>, port: ContainerPort) -> u16 {
    container
        .get_host_port_ipv4(port)
        .await
        .unwrap_or_else(|e| panic!("the container's port {port:?} is not published: {e}"))
}

/// A loopback port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Waits (at most 60 s) until PostgreSQL at `url` runs a query.
pub async fn wait_for_postgres(url: &str) {
    use sea_orm::{ConnectionTrait, Database};
    let mut last = String::new();
    for _ in 0..300 {
        match Database::connect(url).await {
            Ok(db) => match db.execute_unprepared("SELECT 1").await {
                Ok(_) => {
                    db.close().await.ok();
                    return;
                }
                Err(e) => last = e.to_string(),
            },
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("PostgreSQL at {url} did not answer within 60 s: {last}");
}

/// Waits (at most 30 s) until Redis on loopback `port` answers PING.
pub async fn wait_for_redis(port: u16) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    for _ in 0..300 {
        if let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            let mut answer = [0u8; 7];
            let ponged = stream.write_all(b"PING\r\n").await.is_ok()
                && tokio::time::timeout(Duration::from_secs(1), stream.read_exact(&mut answer))
                    .await
                    .is_ok_and(|r| r.is_ok())
                && &answer == b"+PONG\r\n";
            if ponged {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("Redis on 127.0.0.1:{port} did not answer PING within 30 s");
}

/// Waits (at most 60 s) until the broker at `address` answers a metadata request.
pub async fn wait_for_kafka(address: &str) {
    let address = address.to_owned();
    tokio::task::spawn_blocking(move || {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let client: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &address)
            .set("log_level", "0")
            .create()
            .expect("a Kafka client");
        let mut last = None;
        for _ in 0..30 {
            match client.fetch_metadata(None, Duration::from_secs(2)) {
                Ok(metadata) if !metadata.brokers().is_empty() => return,
                Ok(_) => last = Some("no broker in the metadata".to_owned()),
                Err(e) => last = Some(e.to_string()),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the broker at {address} did not answer within 60 s: {last:?}");
    })
    .await
    .expect("the wait for Kafka");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(reference: &str) -> (String, String) {
        let image = ImageRef::parse(reference).unwrap();
        (image.name, image.tag)
    }

    #[test]
    fn image_names_parse_with_or_without_a_registry() {
        let pair = |n: &str, t: &str| (n.to_owned(), t.to_owned());
        assert_eq!(
            image("localhost/postgres:15"),
            pair("localhost/postgres", "15")
        );
        assert_eq!(image("postgres:16"), pair("postgres", "16"));
        assert_eq!(image("apache/kafka:3.9.0"), pair("apache/kafka", "3.9.0"));
        assert_eq!(
            image("localhost:5000/redis:7"),
            pair("localhost:5000/redis", "7")
        );
        assert_eq!(image("redis"), pair("redis", "latest"));
        assert_eq!(ImageRef::parse("redis:"), None);
        assert_eq!(ImageRef::parse(""), None);
    }

    /// The official image and tansu's get the advertised address each in its own terms.
    #[test]
    fn the_broker_is_told_its_advertised_address_in_both_images_terms() {
        for reference in ["localhost/tansu:0.6", "apache/kafka:3.9.0"] {
            let request =
                kafka_broker(&ImageRef::parse(reference).unwrap(), 4242, "127.0.0.1:4343");
            assert_eq!(request.descriptor(), reference);
            let env: std::collections::HashMap<String, String> = request
                .env_vars()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            assert_eq!(env["ADVERTISED_LISTENER_URL"], "tcp://127.0.0.1:4343");
            assert_eq!(
                env["KAFKA_ADVERTISED_LISTENERS"],
                "PLAINTEXT://127.0.0.1:4343,BROKER://localhost:9093"
            );
            assert_eq!(env["KAFKA_PROCESS_ROLES"], "broker,controller");
        }
    }
}

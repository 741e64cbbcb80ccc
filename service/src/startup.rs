//! Builds the server from [`Settings`] and runs it until a shutdown signal.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use base64::Engine;
use quickchat_proto::frames::chat_service_server::ChatServiceServer;
use quickchat_proto::v1::admin_service_server::AdminServiceServer;
use quickchat_proto::v1::auth_service_server::AuthServiceServer;
use quickchat_proto::v1::group_service_server::GroupServiceServer;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic_web::GrpcWebLayer;
use tower_http::cors::CorsLayer;

use crate::api::{AdminApi, AppState, AuthApi, ChatApi, GroupApi, Guards, SharedState};
use crate::auth::members::MemberCheck;
use crate::auth::oidc::Oidc;
use crate::auth::password::Hasher;
use crate::auth::{Authenticator, TokenIssuer};
use crate::chat::ChatHub;
use crate::cors::AllowedOrigins;
use crate::log::MessageLog;
use crate::log::kafka::{KafkaLog, KafkaSource};
use crate::log::memory::InProcessLog;
use crate::log::persister;
use crate::metrics::{self, Metrics};
use crate::rate_limit::{
    AttemptGuard, AttemptLimit, AttemptLimiter, RedisAttemptLimiter, TokenBuckets,
};
use crate::relay::memory::{InProcessPresence, InProcessRelay};
use crate::relay::redis::RedisRelay;
use crate::relay::{Presence, RoomRelay};
use crate::settings::{ServerCli, ServerCommand, Settings};
use crate::store::Store;
use crate::tls;
use crate::web::{self, WebApp, WebAppLayer};

const JWT_SECRET_FILE: &str = "jwt-secret";
/// Largest request message accepted (tonic's default is 4 MiB). The largest valid request,
/// a 4000-character message body, is at most 16 KiB of UTF-8; anything far beyond that is
/// refused before it is decoded into memory.
const MAX_REQUEST_BYTES: usize = 64 * 1024;

const MIN_SECRET_BYTES: usize = 32;

/// A built server: the listener is bound (so [`Application::port`] is known, even for port
/// 0) and the database is migrated; nothing is served until [`Application::run_until_stopped`].
pub struct Application {
    listener: TcpListener,
    local_addr: SocketAddr,
    /// `None`: plaintext.
    tls: Option<tokio_rustls::TlsAcceptor>,
    cors: CorsLayer,
    web: WebApp,
    admin_emails: Vec<String>,
    state: SharedState,
    persister: Option<tokio::task::JoinHandle<()>>,
    stop_persister: CancellationToken,
    persister_drain_timeout: Duration,
    /// HTTP/2 ping interval and timeout (see `Settings::keepalive_interval`).
    keepalive: (Duration, Duration),
    metrics_addr: Option<SocketAddr>,
    stop_metrics: CancellationToken,
    description: String,
    /// The embedded default's exclusive lock on its data directory.
    _data_dir_lock: Option<std::fs::File>,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        anyhow::ensure!(
            settings.redis_url.is_none() || settings.jwt_secret.is_some(),
            "--redis-url runs this node as part of a cluster: give every node the same --jwt-secret \
             (or QUICKCHAT_JWT_SECRET), or tokens issued by one node fail on the others"
        );
        anyhow::ensure!(
            settings.persister_enabled || settings.kafka_brokers.is_some(),
            "--persister=false needs --kafka-brokers: without Kafka a node persists its own messages"
        );

        // Held while this server runs: a second server on the same embedded database would
        // assign the same offsets and have its messages refused by the store after acking
        // them.
        let mut data_dir_lock = None;
        let (database_url, store_description) = match &settings.database_url {
            Some(url) => (url.clone(), format!("database {}", redact_url(url))),
            None => {
                create_private_dir(&settings.data_dir).await?;
                data_dir_lock = Some(lock_data_dir(&settings.data_dir)?);
                let path = settings.data_dir.join("quickchat.db");
                create_private_file(&path).await?;
                (
                    format!("sqlite://{}?mode=rwc", path.display()),
                    format!("SQLite at {}", path.display()),
                )
            }
        };
        let store = Store::connect(&database_url)
            .await
            .with_context(|| format!("cannot open the {store_description}"))?;

        let secret = match &settings.jwt_secret {
            Some(secret) => {
                anyhow::ensure!(
                    secret.expose_secret().len() >= MIN_SECRET_BYTES,
                    "the JWT secret must be at least {MIN_SECRET_BYTES} bytes long"
                );
                secret.clone()
            }
            None => load_or_create_secret(&settings.data_dir).await?,
        };
        anyhow::ensure!(
            settings
                .jwt_previous_secrets
                .iter()
                .all(|s| s.expose_secret().len() >= MIN_SECRET_BYTES),
            "every --jwt-previous-secret must be at least {MIN_SECRET_BYTES} bytes long, as it was \
             when it signed tokens"
        );
        let tokens = TokenIssuer::new(
            &secret,
            &settings.jwt_previous_secrets,
            settings.access_token_ttl,
            settings.member_token_ttl,
        );

        // A stream reads its events from its room's feed when its client can take them: a
        // client that falls `--stream-queue` events behind there is a slow consumer.
        let feed_capacity = settings
            .room_feed_capacity
            .min(settings.chat.outbound_capacity);
        let (relay, presence): (Arc<dyn RoomRelay>, Arc<dyn Presence>) = match &settings.redis_url {
            Some(url) => {
                let relay = RedisRelay::connect(
                    url,
                    &settings.redis.key_prefix,
                    settings.relay_window,
                    feed_capacity,
                    store.clone(),
                    settings.redis.presence,
                )
                .await
                .context("cannot start the Redis relay")?
                .with_tail_of(settings.kafka_brokers.as_deref(), &settings.kafka);
                let presence = Arc::new(relay.presence());
                (Arc::new(relay), presence)
            }
            None => (
                Arc::new(InProcessRelay::new(
                    store.clone(),
                    settings.relay_window,
                    feed_capacity,
                )),
                Arc::new(InProcessPresence::default()),
            ),
        };
        let metrics = Arc::new(Metrics::new());
        let stop_persister = CancellationToken::new();
        let (log, persister): (Arc<dyn MessageLog>, _) = match &settings.kafka_brokers {
            Some(brokers) => {
                let log = KafkaLog::connect(brokers, &settings.kafka)
                    .await
                    .context("cannot start the Kafka message log")?;
                let persister = match settings.persister_enabled {
                    true => {
                        let source =
                            KafkaSource::connect(brokers, &settings.kafka, stop_persister.clone())
                                .await
                                .context("cannot start the persister's Kafka consumer")?
                                .storing_into(store.clone());
                        Some(tokio::spawn(persister::run_observed(
                            source,
                            store.clone(),
                            settings.persist_batch,
                            Some(metrics.clone()),
                        )))
                    }
                    false => None,
                };
                (Arc::new(log), persister)
            }
            None => {
                let (log, source) = InProcessLog::new(settings.log_capacity);
                let persister = tokio::spawn(persister::run_observed(
                    source,
                    store.clone(),
                    settings.persist_batch,
                    Some(metrics.clone()),
                ));
                (Arc::new(log), Some(persister))
            }
        };
        let rooms_description = format!(
            "relay: {} · log: {} · persister: {}",
            relay.describe(),
            log.describe(),
            if persister.is_some() {
                "in this process"
            } else {
                "elsewhere"
            }
        );
        let stop_metrics = CancellationToken::new();
        let metrics_addr = match settings.metrics_listen {
            Some(addr) => Some(metrics::serve(metrics.clone(), addr, stop_metrics.clone()).await?),
            None => None,
        };
        let members = Arc::new(MemberCheck::new(store.clone()));
        let chat = Arc::new(ChatHub::new(
            store.clone(),
            relay,
            presence,
            log,
            settings.chat.clone(),
            metrics,
            members.clone(),
        ));

        let limits = settings.limits.clone();
        let guards = Guards {
            passcode: attempt_guard(
                &settings,
                "passcode-failures",
                AttemptLimit {
                    max_failures: limits.passcode_max_failures,
                    window: limits.passcode_window,
                },
            )
            .await?,
            sign_in_account: attempt_guard(
                &settings,
                "sign-in-failures:account",
                AttemptLimit {
                    max_failures: limits.sign_in_max_failures_per_account,
                    window: limits.sign_in_window,
                },
            )
            .await?,
            sign_in_client: attempt_guard(
                &settings,
                "sign-in-failures:client",
                AttemptLimit {
                    max_failures: limits.sign_in_max_failures_per_client,
                    window: limits.sign_in_window,
                },
            )
            .await?,
            joins: TokenBuckets::new(
                f64::from(limits.joins_per_client_per_minute) / 60.0,
                limits.joins_per_client_per_minute,
            ),
            registrations: TokenBuckets::new(
                f64::from(limits.registrations_per_client_per_minute) / 60.0,
                limits.registrations_per_client_per_minute,
            ),
        };
        let hasher = match limits.hash_concurrency {
            0 => Hasher::new(Hasher::cores(), limits.hash_queue)?,
            n => Hasher::new(n, limits.hash_queue)?,
        };

        let tls = match &settings.tls {
            Some(tls_settings) => Some(tls::acceptor(tls_settings).await?),
            None => None,
        };
        let listener = TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("cannot listen on {}", settings.listen))?;
        let local_addr = listener.local_addr()?;
        let origins = AllowedOrigins::parse(&settings.cors_origins, local_addr, tls.is_some())?;
        let cors = origins.layer();
        // The allowed redirect URIs default to the app's callback on these origins, which are
        // known once the port is.
        let browser_origins = match &origins {
            AllowedOrigins::List(list) => list.as_slice(),
            AllowedOrigins::Any => &[],
        };
        let oidc = settings
            .oidc
            .clone()
            .map(|o| Oidc::new(o, browser_origins))
            .transpose()?;
        let state = Arc::new(AppState {
            store,
            auth: Authenticator::new(tokens, members),
            oidc,
            hasher,
            guards,
            limits,
            refresh_token_ttl: settings.refresh_token_ttl,
            chat,
            chat_settings: settings.chat.clone(),
            client_ip_header: settings.client_ip_header.clone(),
        });
        let scheme = if tls.is_some() { "https" } else { "http" };
        let web = WebApp::new(settings.web_dir.clone());
        let description = format!(
            "quickchat-server {} listening on {scheme}://{local_addr} (gRPC and gRPC-web) · store: {store_description} · {rooms_description} · sign-in: {}",
            env!("CARGO_PKG_VERSION"),
            match &settings.oidc {
                Some(o) => format!("password + OpenID Connect ({})", o.issuer),
                None => "password".to_owned(),
            }
        ) + &metrics_addr
            .map(|addr| format!(" · metrics: http://{addr}/metrics"))
            .unwrap_or_default()
            + " · "
            + &web::describe(&web, &format!("{scheme}://{local_addr}/"));
        Ok(Self {
            listener,
            local_addr,
            tls,
            cors,
            web,
            admin_emails: settings.admin_emails.clone(),
            state,
            persister,
            stop_persister,
            persister_drain_timeout: settings.persister_drain_timeout,
            keepalive: (settings.keepalive_interval, settings.keepalive_timeout),
            metrics_addr,
            stop_metrics,
            description,
            _data_dir_lock: data_dir_lock,
        })
    }

    pub fn port(&self) -> u16 {
        self.local_addr.port()
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Where Prometheus metrics are served, if they are.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// One line saying where the server listens and what it uses.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// Serves until `shutdown` completes; then ends every room stream with `UNAVAILABLE`,
    /// stops accepting connections, lets in-flight calls finish, persists every message the
    /// log still holds and closes the database.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (health_reporter, health_service) = tonic_health::server::health_reporter();
        health_reporter
            .set_serving::<AuthServiceServer<AuthApi>>()
            .await;
        health_reporter
            .set_serving::<GroupServiceServer<GroupApi>>()
            .await;
        health_reporter
            .set_serving::<ChatServiceServer<ChatApi>>()
            .await;
        health_reporter
            .set_serving::<AdminServiceServer<AdminApi>>()
            .await;

        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(quickchat_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()?;

        let state = self.state.clone();
        let admin = AdminApi::new(state.clone(), &self.admin_emails, self.description.clone());
        admin.spawn_reporter();
        let hub = state.chat.clone();
        let shutdown = async move {
            shutdown.await;
            tracing::info!("shutting down: closing room streams");
            hub.shut_down();
        };
        let router = Server::builder()
            // A client that vanished without closing its connection (a phone losing its
            // network) is noticed within interval + timeout (40 s by default): its streams
            // end, its presence goes away.
            .http2_keepalive_interval(Some(self.keepalive.0))
            .http2_keepalive_timeout(Some(self.keepalive.1))
            // One connection cannot open streams without bound (each costs a task and
            // buffers); per-user caps on room streams sit on top of this.
            .max_concurrent_streams(Some(state.limits.max_concurrent_streams_per_connection))
            .accept_http1(true)
            .layer(self.cors)
            // Pages and assets of the browser app; gRPC and gRPC-web go on (by content-type).
            .layer(WebAppLayer::new(self.web))
            .layer(GrpcWebLayer::new())
            .add_service(health_service)
            .add_service(reflection)
            .add_service(
                AuthServiceServer::new(AuthApi::new(state.clone()))
                    .max_decoding_message_size(MAX_REQUEST_BYTES),
            )
            .add_service(
                GroupServiceServer::new(GroupApi::new(state.clone()))
                    .max_decoding_message_size(MAX_REQUEST_BYTES),
            )
            .add_service(
                ChatServiceServer::new(ChatApi::new(state.clone()))
                    .max_decoding_message_size(MAX_REQUEST_BYTES),
            )
            .add_service(
                AdminServiceServer::new(admin).max_decoding_message_size(MAX_REQUEST_BYTES),
            );
        let incoming = TcpIncoming::from(self.listener)
            // Small frames (acks, chat messages) must not wait for Nagle's algorithm.
            .with_nodelay(Some(true))
            .with_keepalive(Some(Duration::from_secs(60)));
        match self.tls {
            Some(acceptor) => {
                router
                    .serve_with_incoming_shutdown(tls::accept(incoming, acceptor), shutdown)
                    .await
            }
            None => {
                router
                    .serve_with_incoming_shutdown(incoming, shutdown)
                    .await
            }
        }
        .context("server error")?;

        tracing::info!("server stopped; persisting what the log holds");
        state.chat.log().close().await;
        // The in-process log's persister ends once it has drained the closed log; a Kafka
        // consumer is told to stop (what it has not committed is read again by the group).
        self.stop_persister.cancel();
        // Bounded: a persister retrying against a database that is down must not keep the
        // process alive. What it has not written was never acknowledged (in-process log) or
        // is read again from Kafka by the consumer group.
        if let Some(persister) = self.persister {
            match tokio::time::timeout(self.persister_drain_timeout, persister).await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => tracing::error!(error = %err, "the persister failed"),
                Err(_) => tracing::error!(
                    timeout_secs = self.persister_drain_timeout.as_secs(),
                    "the persister did not drain in time; stopping without it"
                ),
            }
        }
        state.chat.relay().close().await;
        self.stop_metrics.cancel();
        drop(self.state);
        if let Ok(state) = Arc::try_unwrap(state) {
            state.store.close().await?;
        }
        Ok(())
    }
}

/// A failed-attempt lock-out named `name`: shared through Redis by the whole cluster when
/// there is one, else in this process.
async fn attempt_guard(
    settings: &Settings,
    name: &str,
    limit: AttemptLimit,
) -> anyhow::Result<Arc<dyn AttemptGuard>> {
    Ok(match &settings.redis_url {
        Some(url) => Arc::new(
            RedisAttemptLimiter::connect(url, &settings.redis.key_prefix, name, limit).await?,
        ),
        None => Arc::new(AttemptLimiter::new(limit)),
    })
}

/// Hides the password of a database URL for logs and the startup line.
fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("****"));
            url.to_string()
        }
        _ => raw.to_owned(),
    }
}

/// The JWT secret kept in `data_dir`, generated (256 random bits, file mode 0600) on first
/// run so that tokens stay valid across restarts.
async fn load_or_create_secret(data_dir: &Path) -> anyhow::Result<SecretString> {
    create_private_dir(data_dir).await?;
    let path = data_dir.join(JWT_SECRET_FILE);
    match tokio::fs::read_to_string(&path).await {
        Ok(existing) => {
            let secret = existing.trim().to_owned();
            anyhow::ensure!(
                secret.len() >= MIN_SECRET_BYTES,
                "{} is shorter than {MIN_SECRET_BYTES} bytes; delete it to generate a new one",
                path.display()
            );
            Ok(SecretString::from(secret))
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            let mut bytes = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut bytes);
            let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
            write_private(&path, &secret).await?;
            tracing::info!(path = %path.display(), "generated a new JWT secret");
            Ok(SecretString::from(secret))
        }
        Err(err) => Err(err).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Takes the exclusive lock on `data_dir` (a `lock` file in it), or says who holds it.
/// The operating system releases it when the process exits, however it exits.
fn lock_data_dir(data_dir: &Path) -> anyhow::Result<std::fs::File> {
    let path = data_dir.join("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another quickchat-server is already using the data directory {}; stop it, or \
             give this one its own --data-dir",
            data_dir.display()
        ),
        Err(std::fs::TryLockError::Error(err)) => {
            Err(err).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

/// Creates `dir` readable by this user only (0700), or tightens an existing one that other
/// users could read: it holds the database and the token secret.
async fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    tokio::fs::create_dir_all(dir)
        .await
        .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tokio::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .await
            .with_context(|| format!("cannot restrict access to {}", dir.display()))?;
    }
    Ok(())
}

/// Creates the SQLite file (and tightens an existing one) readable by this user only, before
/// SQLite opens it with the process umask. Its `-wal` and `-shm` companions take the same
/// mode from it.
async fn create_private_file(path: &Path) -> anyhow::Result<()> {
    let mut options = tokio::fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    options.mode(0o600);
    options
        .open(path)
        .await
        .with_context(|| format!("cannot create {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tokio::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .await
            .with_context(|| format!("cannot restrict access to {}", path.display()))?;
    }
    Ok(())
}

async fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut options = tokio::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options
        .open(path)
        .await
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(contents.as_bytes()).await?;
    file.sync_all().await?;
    Ok(())
}

/// `quickchat-server persister`: only the persister, draining the Kafka topic into the
/// database until `shutdown` completes. Run several to spread the topic's partitions. With
/// `--metrics-listen` it serves its own metrics (persisted messages, batches, dead letters).
pub async fn run_persister(
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let brokers = settings
        .kafka_brokers
        .as_deref()
        .context("the persister needs --kafka-brokers")?;
    let database_url = settings
        .database_url
        .as_deref()
        .context("the persister needs --database-url")?;
    let store = Store::connect(database_url)
        .await
        .with_context(|| format!("cannot open the database {}", redact_url(database_url)))?;
    let stop = CancellationToken::new();
    let source = KafkaSource::connect(brokers, &settings.kafka, stop.clone())
        .await
        .context("cannot start the persister's Kafka consumer")?
        .storing_into(store.clone());
    let metrics = Arc::new(Metrics::new());
    let stop_metrics = CancellationToken::new();
    let metrics_addr = match settings.metrics_listen {
        Some(addr) => Some(metrics::serve(metrics.clone(), addr, stop_metrics.clone()).await?),
        None => None,
    };
    println!(
        "quickchat-server {} persister: topic {} at {brokers} (group {}) into {}{}",
        env!("CARGO_PKG_VERSION"),
        settings.kafka.topic,
        settings.kafka.consumer_group,
        redact_url(database_url),
        metrics_addr
            .map(|addr| format!(" · metrics: http://{addr}/metrics"))
            .unwrap_or_default(),
    );
    let persister = tokio::spawn(persister::run_observed(
        source,
        store.clone(),
        settings.persist_batch,
        Some(metrics),
    ));
    shutdown.await;
    tracing::info!("stopping the persister");
    stop.cancel();
    persister.await.context("the persister failed")?;
    stop_metrics.cancel();
    store.close().await?;
    Ok(())
}

/// The whole `quickchat-server` program after its flags are parsed: the server (or, with
/// `persister`, only the persister) until SIGINT or SIGTERM. Exit code 2 when it cannot
/// start, 1 when it fails while running.
pub async fn main(cli: ServerCli) -> std::process::ExitCode {
    use std::process::ExitCode;
    crate::telemetry::init();
    let shutdown = shutdown_signal();
    let settings = Settings::from(cli.server);
    let result = match cli.command {
        Some(ServerCommand::Persister) => run_persister(settings, shutdown).await,
        None => match Application::build(settings).await {
            Ok(app) => {
                println!("{}", app.description());
                app.run_until_stopped(shutdown).await
            }
            Err(err) => {
                eprintln!("quickchat-server: {err:#}");
                return ExitCode::from(2);
            }
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("quickchat-server: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Waits for one signal (forever without a handler).
#[cfg(unix)]
async fn received(signal: Option<&mut tokio::signal::unix::Signal>) {
    match signal {
        Some(signal) => {
            signal.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
}

/// Completes on the first SIGINT (Ctrl-C) or SIGTERM received from the moment it is called:
/// the handlers are installed at once, so a signal that arrives while the server is still
/// starting is kept (the server stops cleanly as soon as it runs) instead of killing it
/// half-started.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let (mut terminate, mut interrupt) = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::terminate()).ok(),
            signal(SignalKind::interrupt()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = received(terminate.as_mut()) => {},
                _ = received(interrupt.as_mut()) => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("shutdown signal received; draining");
    }
}

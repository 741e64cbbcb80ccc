//! Typed configuration, assembled: each component's settings live beside it (`ChatSettings`
//! in `chat`, `KafkaSettings` in `log::kafka`, `RedisSettings` in `relay::redis`,
//! `OidcSettings` in `auth::oidc`, `TlsSettings` in `tls`, `Limits` in `api`), and
//! [`Settings`] holds one of each. Every field has a default that runs with zero setup; the
//! binary fills it from flags and `QUICKCHAT_*` environment variables ([`ServerArgs`]),
//! tests build it directly.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;

pub use crate::api::Limits;
pub use crate::auth::oidc::OidcSettings;
pub use crate::chat::ChatSettings;
pub use crate::log::kafka::KafkaSettings;
pub use crate::relay::redis::{PresenceTiming, RedisSettings};
pub use crate::tls::TlsSettings;

#[derive(Debug, Clone)]
pub struct Settings {
    /// Address to listen on for gRPC and gRPC-web; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Where the embedded default keeps its SQLite database and generated JWT secret.
    pub data_dir: PathBuf,
    /// A database URL (`postgres://…` or `sqlite://…`); `None` means SQLite in `data_dir`.
    pub database_url: Option<String>,
    /// Redis URL for the cluster room relay; `None` means the in-process relay.
    pub redis_url: Option<String>,
    /// Kafka bootstrap servers for the cluster message log; `None` means the in-process log.
    pub kafka_brokers: Option<String>,
    /// HS256 key that signs access and member tokens; `None` means a key generated once and
    /// kept in `data_dir/jwt-secret` (mode 0600).
    pub jwt_secret: Option<SecretString>,
    /// Keys that signed tokens before the last rotation: their tokens still verify until they
    /// expire, nothing new is signed with them (see `auth::tokens`).
    pub jwt_previous_secrets: Vec<SecretString>,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    pub member_token_ttl: Duration,
    /// OpenID Connect sign-in; `None` turns `LoginWithIdToken` and
    /// `LoginWithAuthorizationCode` off.
    pub oidc: Option<OidcSettings>,
    /// What one caller may do: lock-outs, stream and member caps, hashing concurrency.
    pub limits: Limits,
    /// Rooms: per-client queues, recovery limit, send rate limit.
    pub chat: ChatSettings,
    /// Messages the in-process relay keeps per room for reconnecting clients.
    pub relay_window: usize,
    /// Events a stream may fall behind its room's live feed before it is dropped.
    pub room_feed_capacity: usize,
    /// Messages the in-process log holds before sends wait for the persister.
    pub log_capacity: usize,
    /// Most messages the persister writes in one statement.
    pub persist_batch: usize,
    /// The Redis relay's key prefix and presence timing, when `redis_url` is set.
    pub redis: RedisSettings,
    /// The Kafka log's topic, consumer group and timeouts, when `kafka_brokers` is set.
    pub kafka: KafkaSettings,
    /// Run the persister in this process (with Kafka it can also run alone, as
    /// `quickchat-server persister`).
    pub persister_enabled: bool,
    /// Where to serve Prometheus metrics (`GET /metrics`); `None` turns them off.
    pub metrics_listen: Option<SocketAddr>,
    /// Longest shutdown waits for the persister to write what the log still holds.
    pub persister_drain_timeout: Duration,
    /// Behind a trusted load balancer: the request header holding the client's address
    /// (its last entry), used for per-client limits. `None`: the connection's address.
    pub client_ip_header: Option<String>,
    /// How often an idle HTTP/2 connection is pinged, and how long the ping may go unanswered
    /// before the connection is closed: a client that vanished without closing (a phone
    /// losing its network, a half-open TCP connection) loses its streams and presence within
    /// their sum.
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
    /// Serve gRPC and gRPC-web over TLS with this certificate; `None` means plaintext.
    pub tls: Option<TlsSettings>,
    /// Origins whose pages may call the API from a browser (CORS), e.g.
    /// `https://chat.example.com`; `["*"]` allows any (without credentials). Empty means only
    /// the server's own origin.
    pub cors_origins: Vec<String>,
    /// The built browser app (`web/dist`) served on the API's port; `None`, or a directory
    /// without `index.html`, serves a page saying how to build it.
    pub web_dir: Option<PathBuf>,
    /// Emails of the accounts that may call AdminService (the app's /admin page).
    pub admin_emails: Vec<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            data_dir: PathBuf::from("quickchat-data"),
            database_url: None,
            redis_url: None,
            kafka_brokers: None,
            jwt_secret: None,
            jwt_previous_secrets: Vec::new(),
            access_token_ttl: Duration::from_secs(15 * 60),
            refresh_token_ttl: Duration::from_secs(30 * 24 * 3600),
            member_token_ttl: Duration::from_secs(30 * 24 * 3600),
            oidc: None,
            limits: Limits::default(),
            chat: ChatSettings::default(),
            relay_window: 1000,
            room_feed_capacity: 4096,
            log_capacity: 10_000,
            persist_batch: 5000,
            redis: RedisSettings::default(),
            kafka: KafkaSettings::default(),
            persister_enabled: true,
            metrics_listen: None,
            persister_drain_timeout: Duration::from_secs(30),
            client_ip_header: None,
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(10),
            tls: None,
            cors_origins: Vec::new(),
            web_dir: None,
            admin_emails: Vec::new(),
        }
    }
}

/// The `quickchat-server` command line. With no flags it runs on its own: SQLite under
/// ./quickchat-data and gRPC + gRPC-web on 127.0.0.1:50051.
#[derive(Debug, clap::Parser)]
#[command(name = "quickchat-server", version, about)]
pub struct ServerCli {
    #[command(subcommand)]
    pub command: Option<ServerCommand>,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, clap::Subcommand)]
pub enum ServerCommand {
    /// Run only the persister: drain the Kafka topic into the database, in batches, in the
    /// consumer group (run several to spread the partitions). Needs --kafka-brokers and
    /// --database-url.
    Persister,
}

/// Command-line flags of `quickchat-server`; each also reads a `QUICKCHAT_*` variable.
#[derive(Debug, clap::Args)]
pub struct ServerArgs {
    /// Address for gRPC and gRPC-web (same port).
    #[arg(
        help_heading = "Listening",
        long,
        env = "QUICKCHAT_LISTEN",
        default_value = "127.0.0.1:50051"
    )]
    pub listen: SocketAddr,
    /// Directory for the embedded SQLite database and the generated JWT secret.
    #[arg(
        help_heading = "Storage",
        long,
        env = "QUICKCHAT_DATA_DIR",
        default_value = "quickchat-data"
    )]
    pub data_dir: PathBuf,
    /// Database URL, e.g. postgres://user@host/db (default: SQLite in --data-dir).
    #[arg(help_heading = "Storage", long, env = "QUICKCHAT_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Redis URL for the cluster room relay, e.g. redis://127.0.0.1:6379.
    #[arg(
        help_heading = "Cluster relay (Redis)",
        long,
        env = "QUICKCHAT_REDIS_URL"
    )]
    pub redis_url: Option<String>,
    /// Kafka bootstrap servers for the message log, e.g. 127.0.0.1:9092.
    #[arg(
        help_heading = "Message log (Kafka) and persister",
        long,
        env = "QUICKCHAT_KAFKA_BROKERS"
    )]
    pub kafka_brokers: Option<String>,
    /// Secret for signing tokens (default: generated once into --data-dir). Every node of a
    /// cluster needs the same one.
    #[arg(
        help_heading = "Auth",
        long,
        env = "QUICKCHAT_JWT_SECRET",
        hide_env_values = true
    )]
    pub jwt_secret: Option<String>,
    /// A secret that signed tokens before the last rotation: its tokens are accepted until
    /// they expire, none are signed with it. Repeat the flag for several (the variable is
    /// comma-separated).
    #[arg(
        help_heading = "Auth",
        long = "jwt-previous-secret",
        env = "QUICKCHAT_JWT_PREVIOUS_SECRETS",
        value_name = "SECRET",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub jwt_previous_secrets: Vec<String>,
    /// Lifetime of access tokens, in seconds.
    #[arg(help_heading = "Auth", long, env = "QUICKCHAT_ACCESS_TOKEN_TTL_SECS", default_value_t = 15 * 60)]
    pub access_token_ttl_secs: u64,
    /// Lifetime of refresh tokens, in seconds.
    #[arg(help_heading = "Auth", long, env = "QUICKCHAT_REFRESH_TOKEN_TTL_SECS", default_value_t = 30 * 24 * 3600)]
    pub refresh_token_ttl_secs: u64,
    /// Lifetime of member tokens (from JoinGroup), in seconds.
    #[arg(help_heading = "Auth", long, env = "QUICKCHAT_MEMBER_TOKEN_TTL_SECS", default_value_t = 30 * 24 * 3600)]
    pub member_token_ttl_secs: u64,
    /// OpenID Connect issuer for LoginWithIdToken, e.g. https://accounts.google.com.
    #[arg(
        help_heading = "Auth",
        long,
        env = "QUICKCHAT_OIDC_ISSUER",
        requires = "oidc_client_id"
    )]
    pub oidc_issuer: Option<String>,
    /// OAuth client id that ID tokens must be issued for (their `aud`).
    #[arg(
        help_heading = "Auth",
        long,
        env = "QUICKCHAT_OIDC_CLIENT_ID",
        requires = "oidc_issuer"
    )]
    pub oidc_client_id: Option<String>,
    /// JWKS URL of the issuer (default: found by OpenID discovery).
    #[arg(help_heading = "Auth", long, env = "QUICKCHAT_OIDC_JWKS_URL")]
    pub oidc_jwks_url: Option<String>,
    /// Provider name stored on users who sign in with an ID token.
    #[arg(
        help_heading = "Auth",
        long,
        env = "QUICKCHAT_OIDC_PROVIDER",
        default_value = "google"
    )]
    pub oidc_provider: String,
    /// The provider's name on the web app's "Sign in with …" button (default: --oidc-provider,
    /// capitalised).
    #[arg(help_heading = "Auth", long, env = "QUICKCHAT_OIDC_DISPLAY_NAME")]
    pub oidc_display_name: Option<String>,
    /// The OAuth client secret, for trading the web app's authorization codes at the
    /// provider's token endpoint (Google's web-application clients need one even with PKCE);
    /// leave it out for a public client.
    #[arg(
        help_heading = "Auth",
        long,
        env = "QUICKCHAT_OIDC_CLIENT_SECRET",
        hide_env_values = true
    )]
    pub oidc_client_secret: Option<String>,
    /// A redirect URI registered at the provider for the web app's sign-in, e.g.
    /// https://chat.example.com/auth/callback; repeat for several (the variable is
    /// comma-separated). Codes sent anywhere else are not traded. Default: /auth/callback on
    /// the server's own origin, or on each --cors-origin.
    #[arg(
        help_heading = "Auth",
        long = "oidc-redirect-uri",
        env = "QUICKCHAT_OIDC_REDIRECT_URIS",
        value_name = "URI",
        value_delimiter = ','
    )]
    pub oidc_redirect_uris: Vec<String>,
    /// Messages kept per room for reconnecting clients (in-process relay window; Redis
    /// stream MAXLEN ~).
    #[arg(
        help_heading = "Cluster relay (Redis)",
        long,
        env = "QUICKCHAT_RELAY_WINDOW",
        default_value_t = 1000
    )]
    pub relay_window: usize,
    /// Prefix of every Redis key this deployment uses.
    #[arg(
        help_heading = "Cluster relay (Redis)",
        long,
        env = "QUICKCHAT_REDIS_KEY_PREFIX",
        default_value = "quickchat"
    )]
    pub redis_key_prefix: String,
    /// Kafka topic for messages (created at startup if missing).
    #[arg(
        help_heading = "Message log (Kafka) and persister",
        long,
        env = "QUICKCHAT_KAFKA_TOPIC",
        default_value = "quickchat.messages"
    )]
    pub kafka_topic: String,
    /// Partitions of the Kafka topic when it is created.
    #[arg(
        help_heading = "Message log (Kafka) and persister",
        long,
        env = "QUICKCHAT_KAFKA_PARTITIONS",
        default_value_t = 6
    )]
    pub kafka_partitions: i32,
    /// Consumer group of the persisters.
    #[arg(
        help_heading = "Message log (Kafka) and persister",
        long,
        env = "QUICKCHAT_KAFKA_CONSUMER_GROUP",
        default_value = "quickchat-persister"
    )]
    pub kafka_consumer_group: String,
    /// Persister consumer session timeout (librdkafka session.timeout.ms).
    #[arg(
        help_heading = "Message log (Kafka) and persister",
        long,
        env = "QUICKCHAT_KAFKA_SESSION_TIMEOUT_MS",
        default_value_t = 45_000
    )]
    pub kafka_session_timeout_ms: u32,
    /// Persister consumer heartbeat interval (librdkafka heartbeat.interval.ms).
    #[arg(
        help_heading = "Message log (Kafka) and persister",
        long,
        env = "QUICKCHAT_KAFKA_HEARTBEAT_INTERVAL_MS",
        default_value_t = 3_000
    )]
    pub kafka_heartbeat_interval_ms: u32,
    /// Longest a send waits for Kafka's confirmation before failing with UNAVAILABLE.
    #[arg(
        help_heading = "Message log (Kafka) and persister",
        long,
        env = "QUICKCHAT_KAFKA_PRODUCE_TIMEOUT_MS",
        default_value_t = 5_000
    )]
    pub kafka_produce_timeout_ms: u32,
    /// Seconds between a node's presence heartbeats in Redis.
    #[arg(
        help_heading = "Cluster relay (Redis)",
        long,
        env = "QUICKCHAT_REDIS_HEARTBEAT_SECS",
        default_value_t = 10
    )]
    pub redis_heartbeat_secs: u64,
    /// Seconds a dead node's members stay listed as online.
    #[arg(
        help_heading = "Cluster relay (Redis)",
        long,
        env = "QUICKCHAT_REDIS_PRESENCE_TTL_SECS",
        default_value_t = 30
    )]
    pub redis_presence_ttl_secs: u64,
    /// Behind a trusted load balancer, the header carrying the client's address, e.g.
    /// x-forwarded-for (its last entry is used). Only set this when every request comes
    /// through the balancer: clients could otherwise choose their own address.
    #[arg(help_heading = "Listening", long, env = "QUICKCHAT_CLIENT_IP_HEADER")]
    pub client_ip_header: Option<String>,
    /// Seconds between HTTP/2 pings on a connection (a vanished client is noticed within
    /// this plus --keepalive-timeout-secs).
    #[arg(
        help_heading = "Listening",
        long,
        env = "QUICKCHAT_KEEPALIVE_INTERVAL_SECS",
        default_value_t = 30
    )]
    pub keepalive_interval_secs: u64,
    /// Seconds an HTTP/2 ping may go unanswered before the connection is closed.
    #[arg(
        help_heading = "Listening",
        long,
        env = "QUICKCHAT_KEEPALIVE_TIMEOUT_SECS",
        default_value_t = 10
    )]
    pub keepalive_timeout_secs: u64,
    /// Wrong passcodes allowed per group and client address before a lock-out.
    #[arg(
        help_heading = "Limits",
        long,
        env = "QUICKCHAT_PASSCODE_MAX_FAILURES",
        default_value_t = 5
    )]
    pub passcode_max_failures: u32,
    /// Failed sign-ins allowed per account within --sign-in-window-secs.
    #[arg(
        help_heading = "Limits",
        long,
        env = "QUICKCHAT_SIGN_IN_MAX_FAILURES_PER_ACCOUNT",
        default_value_t = 10
    )]
    pub sign_in_max_failures_per_account: u32,
    /// Failed sign-ins allowed per client address (any account) within --sign-in-window-secs.
    #[arg(
        help_heading = "Limits",
        long,
        env = "QUICKCHAT_SIGN_IN_MAX_FAILURES_PER_CLIENT",
        default_value_t = 50
    )]
    pub sign_in_max_failures_per_client: u32,
    /// Window of the sign-in lock-outs, in seconds.
    #[arg(help_heading = "Limits", long, env = "QUICKCHAT_SIGN_IN_WINDOW_SECS", default_value_t = 15 * 60)]
    pub sign_in_window_secs: u64,
    /// Group joins allowed per client address per minute.
    #[arg(
        help_heading = "Limits",
        long,
        env = "QUICKCHAT_JOINS_PER_CLIENT_PER_MINUTE",
        default_value_t = 30
    )]
    pub joins_per_client_per_minute: u32,
    /// Accounts created per client address per minute.
    #[arg(
        help_heading = "Limits",
        long,
        env = "QUICKCHAT_REGISTRATIONS_PER_CLIENT_PER_MINUTE",
        default_value_t = 10
    )]
    pub registrations_per_client_per_minute: u32,
    /// Most members a group can have.
    #[arg(
        help_heading = "Limits",
        long,
        env = "QUICKCHAT_MAX_MEMBERS_PER_GROUP",
        default_value_t = 10_000
    )]
    pub max_members_per_group: u64,
    /// Room streams one user or member may hold open at once.
    #[arg(
        help_heading = "Limits",
        long,
        env = "QUICKCHAT_MAX_STREAMS_PER_PRINCIPAL",
        default_value_t = 32
    )]
    pub max_streams_per_principal: usize,
    /// Room streams one client address may hold open at once (whoever holds them).
    #[arg(
        help_heading = "Limits",
        long,
        env = "QUICKCHAT_MAX_STREAMS_PER_CLIENT",
        default_value_t = 1024
    )]
    pub max_streams_per_client: usize,
    /// Concurrent HTTP/2 streams per connection.
    #[arg(
        help_heading = "Limits",
        long,
        env = "QUICKCHAT_MAX_CONCURRENT_STREAMS",
        default_value_t = 128
    )]
    pub max_concurrent_streams: u32,
    /// Seconds a Chat stream may wait for its join request.
    #[arg(
        help_heading = "Limits",
        long,
        env = "QUICKCHAT_JOIN_DEADLINE_SECS",
        default_value_t = 10
    )]
    pub join_deadline_secs: u64,
    /// Password hashes computed at once (0: one per core).
    #[arg(
        help_heading = "Limits",
        long,
        env = "QUICKCHAT_HASH_CONCURRENCY",
        default_value_t = 0
    )]
    pub hash_concurrency: usize,
    /// Sign-ins allowed to wait for a hashing slot before more are refused.
    #[arg(
        help_heading = "Limits",
        long,
        env = "QUICKCHAT_HASH_QUEUE",
        default_value_t = 64
    )]
    pub hash_queue: usize,
    /// Sustained sends per second per person and room; a send over it is rejected and the
    /// stream stays open.
    #[arg(
        help_heading = "Limits",
        long,
        env = "QUICKCHAT_SEND_RATE",
        value_parser = positive_rate,
        default_value_t = 20.0
    )]
    pub send_rate: f64,
    /// Sends one person may make in a burst above --send-rate, per room.
    #[arg(
        help_heading = "Limits",
        long,
        env = "QUICKCHAT_SEND_BURST",
        value_parser = clap::value_parser!(u32).range(1..),
        default_value_t = 40
    )]
    pub send_burst: u32,
    /// Events waiting for one stream (in its room's feed, or queued answers) before its
    /// client counts as a slow consumer and its stream is ended with RESOURCE_EXHAUSTED.
    #[arg(
        help_heading = "Limits",
        long,
        env = "QUICKCHAT_STREAM_QUEUE",
        value_parser = at_least_one,
        default_value_t = 1024
    )]
    pub stream_queue: usize,
    /// Events a room's live feed on this node keeps for its slowest stream; a stream further
    /// behind is ended the same way as a slow consumer. At most --stream-queue is used.
    #[arg(
        help_heading = "Limits",
        long,
        env = "QUICKCHAT_ROOM_FEED_CAPACITY",
        value_parser = at_least_one,
        default_value_t = 4096
    )]
    pub room_feed_capacity: usize,
    /// Most messages a reconnecting client is replayed; beyond, it is told recovery failed
    /// and pages through history.
    #[arg(
        help_heading = "Limits",
        long,
        env = "QUICKCHAT_MAX_RECOVERY",
        default_value_t = 1000
    )]
    pub max_recovery: u64,
    /// Messages the in-process log holds before sends wait for the persister (without
    /// Kafka).
    #[arg(
        help_heading = "Message log (Kafka) and persister",
        long,
        env = "QUICKCHAT_LOG_CAPACITY",
        value_parser = at_least_one,
        default_value_t = 10_000
    )]
    pub log_capacity: usize,
    /// Most messages the persister writes in one statement.
    #[arg(
        help_heading = "Message log (Kafka) and persister",
        long,
        env = "QUICKCHAT_PERSIST_BATCH",
        value_parser = at_least_one,
        default_value_t = 5000
    )]
    pub persist_batch: usize,
    /// Serve Prometheus metrics at http://ADDR/metrics (off unless given).
    #[arg(help_heading = "Operations", long, env = "QUICKCHAT_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Run the persister in this process (`--persister=false` when it runs elsewhere).
    #[arg(help_heading = "Message log (Kafka) and persister", long, env = "QUICKCHAT_PERSISTER", default_value_t = true, action = clap::ArgAction::Set)]
    pub persister: bool,
    /// Serve gRPC and gRPC-web over TLS with this certificate chain (PEM; needs --tls-key).
    #[arg(
        help_heading = "Listening",
        long,
        env = "QUICKCHAT_TLS_CERT",
        value_name = "PATH",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(
        help_heading = "Listening",
        long,
        env = "QUICKCHAT_TLS_KEY",
        value_name = "PATH",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,
    /// An origin whose web pages may call the API (CORS), e.g. https://chat.example.com;
    /// repeat for several (the variable is comma-separated), or '*' for any. Default: only
    /// the server's own origin.
    #[arg(
        help_heading = "Listening",
        long = "cors-origin",
        env = "QUICKCHAT_CORS_ORIGINS",
        value_name = "ORIGIN",
        value_delimiter = ','
    )]
    pub cors_origins: Vec<String>,
    /// The built browser app to serve on the same port (`scripts/run.sh` builds it into
    /// web/dist); unknown paths fall back to its index.html.
    #[arg(
        help_heading = "Listening",
        long,
        env = "QUICKCHAT_WEB_DIR",
        value_name = "DIR",
        default_value = "web/dist"
    )]
    pub web_dir: PathBuf,
    /// The email of an account that may see the operators' overview (AdminService, the web
    /// app's /admin page); repeat for several (the variable is comma-separated). Register
    /// the account before listing it: anyone may register an address nobody holds yet.
    #[arg(
        help_heading = "Auth",
        long = "admin-email",
        env = "QUICKCHAT_ADMIN_EMAILS",
        value_name = "EMAIL",
        value_delimiter = ','
    )]
    pub admin_emails: Vec<String>,
}

/// A count that must be at least 1 (a queue or batch of 0 could never hold anything).
fn at_least_one(value: &str) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        Ok(_) => Err("must be at least 1".into()),
        Err(err) => Err(err.to_string()),
    }
}

/// A rate per second: a finite number above 0.
fn positive_rate(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        Ok(_) => Err("must be a number above 0".into()),
        Err(err) => Err(err.to_string()),
    }
}

impl From<ServerArgs> for Settings {
    fn from(args: ServerArgs) -> Self {
        let oidc = match (args.oidc_issuer, args.oidc_client_id) {
            (Some(issuer), Some(client_id)) => Some(OidcSettings {
                issuer,
                client_id,
                jwks_url: args.oidc_jwks_url,
                display_name: args
                    .oidc_display_name
                    .filter(|n| !n.trim().is_empty())
                    .unwrap_or_else(|| OidcSettings::display_name_for(&args.oidc_provider)),
                provider: args.oidc_provider,
                client_secret: args
                    .oidc_client_secret
                    .filter(|s| !s.is_empty())
                    .map(SecretString::from),
                redirect_uris: args
                    .oidc_redirect_uris
                    .into_iter()
                    .filter(|u| !u.trim().is_empty())
                    .collect(),
            }),
            _ => None,
        };
        let tls = match (args.tls_cert, args.tls_key) {
            (Some(cert), Some(key)) => Some(TlsSettings { cert, key }),
            _ => None,
        };
        Self {
            listen: args.listen,
            data_dir: args.data_dir,
            database_url: args.database_url,
            redis_url: args.redis_url,
            kafka_brokers: args.kafka_brokers,
            jwt_secret: args.jwt_secret.map(SecretString::from),
            jwt_previous_secrets: args
                .jwt_previous_secrets
                .into_iter()
                .filter(|s| !s.is_empty())
                .map(SecretString::from)
                .collect(),
            access_token_ttl: Duration::from_secs(args.access_token_ttl_secs),
            refresh_token_ttl: Duration::from_secs(args.refresh_token_ttl_secs),
            member_token_ttl: Duration::from_secs(args.member_token_ttl_secs),
            oidc,
            relay_window: args.relay_window,
            redis: RedisSettings {
                key_prefix: args.redis_key_prefix,
                presence: PresenceTiming {
                    refresh: Duration::from_secs(args.redis_heartbeat_secs),
                    ttl: Duration::from_secs(args.redis_presence_ttl_secs),
                },
            },
            kafka: KafkaSettings {
                topic: args.kafka_topic,
                partitions: args.kafka_partitions,
                consumer_group: args.kafka_consumer_group,
                session_timeout_ms: args.kafka_session_timeout_ms,
                heartbeat_interval_ms: args.kafka_heartbeat_interval_ms,
                produce_timeout_ms: args.kafka_produce_timeout_ms,
            },
            limits: Limits {
                passcode_max_failures: args.passcode_max_failures,
                sign_in_max_failures_per_account: args.sign_in_max_failures_per_account,
                sign_in_max_failures_per_client: args.sign_in_max_failures_per_client,
                sign_in_window: Duration::from_secs(args.sign_in_window_secs),
                joins_per_client_per_minute: args.joins_per_client_per_minute,
                registrations_per_client_per_minute: args.registrations_per_client_per_minute,
                max_members_per_group: args.max_members_per_group,
                max_concurrent_streams_per_connection: args.max_concurrent_streams,
                hash_concurrency: args.hash_concurrency,
                hash_queue: args.hash_queue,
                ..Limits::default()
            },
            room_feed_capacity: args.room_feed_capacity,
            log_capacity: args.log_capacity,
            persist_batch: args.persist_batch,
            chat: ChatSettings {
                outbound_capacity: args.stream_queue,
                max_recovery: args.max_recovery,
                send_rate: args.send_rate,
                send_burst: args.send_burst,
                max_streams_per_participant: args.max_streams_per_principal,
                max_streams_per_client: args.max_streams_per_client,
                join_deadline: Duration::from_secs(args.join_deadline_secs),
                ..ChatSettings::default()
            },
            persister_enabled: args.persister,
            metrics_listen: args.metrics_listen,
            client_ip_header: args.client_ip_header.map(|h| h.to_ascii_lowercase()),
            keepalive_interval: Duration::from_secs(args.keepalive_interval_secs.max(1)),
            keepalive_timeout: Duration::from_secs(args.keepalive_timeout_secs.max(1)),
            tls,
            cors_origins: args.cors_origins,
            web_dir: Some(args.web_dir),
            admin_emails: args.admin_emails,
            ..Settings::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    /// A server started without flags has the limits a `Settings::default()` has: the flags
    /// change nothing unless given.
    #[test]
    fn without_flags_the_limits_are_the_defaults() {
        let settings = Settings::from(
            ServerCli::try_parse_from(["quickchat-server"])
                .unwrap()
                .server,
        );
        let defaults = Settings::default();
        let chat = ChatSettings::default();
        assert_eq!(
            (
                settings.chat.send_rate,
                settings.chat.send_burst,
                settings.chat.outbound_capacity,
                settings.chat.max_recovery,
            ),
            (
                chat.send_rate,
                chat.send_burst,
                chat.outbound_capacity,
                chat.max_recovery
            )
        );
        assert_eq!(
            (
                settings.room_feed_capacity,
                settings.log_capacity,
                settings.persist_batch
            ),
            (
                defaults.room_feed_capacity,
                defaults.log_capacity,
                defaults.persist_batch
            )
        );
    }
}

//! `spawn_app`: a real QuickChat server on port 0 with its own database, and helpers to call
//! it through real tonic clients.

use std::time::Duration;

use quickchat_proto::v1::{
    self, auth_service_client::AuthServiceClient, group_service_client::GroupServiceClient,
};
use quickchat_service::store::Store;
use quickchat_service::{Application, Settings};
use sea_orm::{ConnectionTrait, Database};
use secrecy::SecretString;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use tonic_types::StatusExt;
use uuid::Uuid;

/// The secret every test server signs tokens with, so tests can forge expired or foreign
/// tokens on purpose.
pub const JWT_SECRET: &str = "integration-test-secret-0123456789abcdef";

pub struct TestApp {
    pub addr: std::net::SocketAddr,
    /// Where Prometheus metrics are served, when the settings ask for them.
    pub metrics_addr: Option<std::net::SocketAddr>,
    pub channel: Channel,
    pub database_url: String,
    settings: Settings,
    _data_dir: std::sync::Arc<tempfile::TempDir>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
}

/// A server with default settings.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// A server with settings adjusted by `configure` (listen address, database and JWT secret
/// are set by the helper).
pub async fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    quickchat_service::telemetry::init();
    let data_dir = tempfile::tempdir().expect("temp dir");
    let database_url = test_database_url(&data_dir).await;
    let mut settings = Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: data_dir.path().to_path_buf(),
        database_url: Some(database_url.clone()),
        jwt_secret: Some(SecretString::from(JWT_SECRET.to_owned())),
        ..Settings::default()
    };
    configure(&mut settings);
    start(settings, database_url, std::sync::Arc::new(data_dir)).await
}

async fn start(
    settings: Settings,
    database_url: String,
    data_dir: std::sync::Arc<tempfile::TempDir>,
) -> TestApp {
    let app = Application::build(settings.clone())
        .await
        .expect("server builds");
    let addr = app.local_addr();
    let metrics_addr = app.metrics_addr();
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = rx.await;
    }));
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .expect("client connects");
    TestApp {
        addr,
        metrics_addr,
        channel,
        database_url,
        settings,
        _data_dir: data_dir,
        shutdown: Some(tx),
        server: Some(server),
    }
}

/// SQLite in `dir`, or, when `QUICKCHAT_TEST_STORE=postgres`, a new PostgreSQL database.
async fn test_database_url(dir: &tempfile::TempDir) -> String {
    match std::env::var("QUICKCHAT_TEST_STORE").as_deref() {
        Ok("postgres") => fresh_postgres_database().await,
        Ok("sqlite") | Ok("") | Err(_) => {
            format!("sqlite://{}?mode=rwc", dir.path().join("test.db").display())
        }
        Ok(other) => panic!("QUICKCHAT_TEST_STORE must be sqlite or postgres, not {other:?}"),
    }
}

/// A new, empty PostgreSQL database on the tests' server (see [`crate::services`]), and its
/// URL.
pub async fn fresh_postgres_database() -> String {
    let admin_url = crate::services::postgres_url().await;
    let name = format!("quickchat_test_{}", Uuid::new_v4().simple());
    let admin = Database::connect(&admin_url)
        .await
        .expect("connect to PostgreSQL");
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create test database");
    admin.close().await.ok();
    let mut url = url::Url::parse(&admin_url).expect("the PostgreSQL URL is a URL");
    url.set_path(&name);
    url.to_string()
}

impl TestApp {
    pub fn auth(&self) -> AuthServiceClient<Channel> {
        AuthServiceClient::new(self.channel.clone())
    }

    pub fn groups(&self) -> GroupServiceClient<Channel> {
        GroupServiceClient::new(self.channel.clone())
    }

    /// A second connection to the server's database, to check what was stored.
    pub async fn store(&self) -> Store {
        Store::connect(&self.database_url)
            .await
            .expect("store connects")
    }

    /// Drops the `messages` table behind the server's back: from then on no message can be
    /// stored (the persister retries, sends time out), while the server keeps running.
    pub async fn break_message_storage(&self) {
        use sea_orm::ConnectionTrait;
        self.store()
            .await
            .connection()
            .execute_unprepared("DROP TABLE messages")
            .await
            .expect("drop the messages table");
    }

    /// Registers a new account with a unique email and returns its session.
    pub async fn register(&self, name: &str) -> v1::Session {
        register_on(&self.channel, name).await
    }

    /// Creates a group owned by the holder of `token` with passcode `1234`.
    pub async fn create_group(&self, token: &str, title: &str) -> v1::Group {
        create_group_on(&self.channel, token, title).await
    }

    /// Joins `group_id` with passcode `1234` and returns the response.
    pub async fn join(&self, group_id: &str, name: &str) -> v1::JoinGroupResponse {
        join_on(&self.channel, group_id, name).await
    }

    /// Stops the server gracefully and starts a new one (on a new port) on the same database
    /// and secret: a restart.
    pub async fn restart(self) -> TestApp {
        self.restart_with(|_| {}).await
    }

    /// A restart on the same database with settings changed by `configure` (as an operator
    /// changes flags between runs).
    pub async fn restart_with(mut self, configure: impl FnOnce(&mut Settings)) -> TestApp {
        self.shutdown_and_wait().await;
        let (mut settings, database_url, data_dir) = (
            self.settings.clone(),
            self.database_url.clone(),
            self._data_dir.clone(),
        );
        configure(&mut settings);
        start(settings, database_url, data_dir).await
    }

    /// Stops the server gracefully and waits until it has.
    pub async fn stop(mut self) {
        self.shutdown_and_wait().await;
    }

    async fn shutdown_and_wait(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            tokio::time::timeout(Duration::from_secs(10), server)
                .await
                .expect("server stops within 10 s")
                .expect("server task")
                .expect("server exits cleanly");
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Registers a new account with a unique email and returns its session.
pub async fn register_on(channel: &Channel, name: &str) -> v1::Session {
    let email = format!(
        "{}-{}@example.com",
        name.to_lowercase(),
        Uuid::new_v4().simple()
    );
    AuthServiceClient::new(channel.clone())
        .register(v1::RegisterRequest {
            email,
            password: "correct horse".into(),
            name: name.into(),
        })
        .await
        .expect("register")
        .into_inner()
        .session
        .expect("session")
}

/// Creates a group owned by the holder of `token` with passcode `1234`.
pub async fn create_group_on(channel: &Channel, token: &str, title: &str) -> v1::Group {
    GroupServiceClient::new(channel.clone())
        .create_group(authed(
            v1::CreateGroupRequest {
                title: title.into(),
                passcode: "1234".into(),
            },
            token,
        ))
        .await
        .expect("create group")
        .into_inner()
        .group
        .expect("group")
}

/// Joins `group_id` with passcode `1234` and returns the response.
pub async fn join_on(channel: &Channel, group_id: &str, name: &str) -> v1::JoinGroupResponse {
    GroupServiceClient::new(channel.clone())
        .join_group(v1::JoinGroupRequest {
            group_id: group_id.into(),
            name: name.into(),
            passcode: "1234".into(),
        })
        .await
        .expect("join group")
        .into_inner()
}

/// A join request for `group_id` as `name` with `passcode`.
pub fn join_request(group_id: &str, name: &str, passcode: &str) -> v1::JoinGroupRequest {
    v1::JoinGroupRequest {
        group_id: group_id.into(),
        name: name.into(),
        passcode: passcode.into(),
    }
}

/// This process's resident memory in MiB (the server under test runs in it).
pub fn rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
        / 1024
}

/// `msg` with `authorization: Bearer <token>`.
pub fn authed<T>(msg: T, token: &str) -> Request<T> {
    let mut request = Request::new(msg);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii token"),
    );
    request
}

/// Asserts `result` failed with `code` and returns the status.
#[track_caller]
pub fn expect_code<T: std::fmt::Debug>(result: Result<T, Status>, code: Code) -> Status {
    match result {
        Ok(value) => panic!("expected {code:?}, got Ok({value:?})"),
        Err(status) => {
            assert_eq!(status.code(), code, "unexpected status: {status:?}");
            status
        }
    }
}

/// The `google.rpc.BadRequest` field violations of an `INVALID_ARGUMENT` status, as
/// (field, description) pairs.
pub fn field_violations(status: &Status) -> Vec<(String, String)> {
    status
        .get_details_bad_request()
        .map(|b| {
            b.field_violations
                .into_iter()
                .map(|v| (v.field, v.description))
                .collect()
        })
        .unwrap_or_default()
}

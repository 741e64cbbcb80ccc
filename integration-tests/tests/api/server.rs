//! The server as an operator and a browser see it: health, reflection, gRPC-web over
//! HTTP/1.1, the generated JWT secret, errors that do not leak, and graceful shutdown.

use prost::Message;
use quickchat_proto::v1;
use quickchat_service::{Application, Settings};
use sea_orm::ConnectionTrait;
use tonic::Code;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tonic_reflection::pb::v1::{
    ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
    server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
};

use crate::helpers::{authed, expect_code, spawn_app, spawn_app_with};

#[tokio::test]
async fn health_reports_serving_for_every_service() {
    let app = spawn_app().await;
    let mut health = HealthClient::new(app.channel.clone());
    for service in ["", "quickchat.v1.AuthService", "quickchat.v1.GroupService"] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap_or_else(|e| panic!("{service:?}: {e}"))
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "{service:?}");
    }
}

#[tokio::test]
async fn reflection_lists_the_api_so_grpcurl_needs_no_proto_files() {
    let app = spawn_app().await;
    let mut client = ServerReflectionClient::new(app.channel.clone());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.message().await.unwrap().expect("one response");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection response: {response:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for expected in [
        "quickchat.v1.AuthService",
        "quickchat.v1.GroupService",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }
}

/// One gRPC-web frame: flag byte, big-endian length, payload.
fn grpc_web_frame(payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

#[tokio::test]
async fn a_browser_can_call_over_grpc_web_on_http1_with_cors() {
    let app = spawn_app_with(|s| s.cors_origins = vec!["http://localhost:3000".into()]).await;
    let owner = app.register("Olga").await;
    let group = app.create_group(&owner.access_token, "Rustaceans").await;

    let http = reqwest::Client::builder().http1_only().build().unwrap();
    let url = format!("http://{}/quickchat.v1.GroupService/GetGroup", app.addr);

    let preflight = http
        .request(reqwest::Method::OPTIONS, &url)
        .header("origin", "http://localhost:3000")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type,x-grpc-web,authorization",
        )
        .send()
        .await
        .unwrap();
    assert!(
        preflight.status().is_success(),
        "preflight: {}",
        preflight.status()
    );
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        "http://localhost:3000"
    );

    let body = grpc_web_frame(
        &v1::GetGroupRequest {
            group_id: group.id.clone(),
        }
        .encode_to_vec(),
    );
    let response = http
        .post(&url)
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .header("origin", "http://localhost:3000")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_11);
    assert_eq!(
        response.headers()["content-type"],
        "application/grpc-web+proto"
    );
    assert!(
        response
            .headers()
            .contains_key("access-control-expose-headers")
    );
    let bytes = response.bytes().await.unwrap();
    assert_eq!(bytes[0], 0, "first frame is data");
    let len = u32::from_be_bytes(bytes[1..5].try_into().unwrap()) as usize;
    let decoded = v1::GetGroupResponse::decode(&bytes[5..5 + len]).unwrap();
    assert_eq!(decoded.group.unwrap(), group);
    let trailers = String::from_utf8_lossy(&bytes[5 + len + 5..]);
    assert!(trailers.contains("grpc-status:0"), "trailers: {trailers}");
}

#[tokio::test]
async fn internal_errors_reach_the_log_not_the_client() {
    let app = spawn_app().await;
    let owner = app.register("Olga").await;
    let group = app.create_group(&owner.access_token, "Rustaceans").await;
    let store = app.store().await;
    store
        .connection()
        .execute_unprepared("DROP TABLE group_members")
        .await
        .unwrap();

    let status = expect_code(
        app.groups()
            .list_members(authed(
                v1::ListMembersRequest { group_id: group.id },
                &owner.access_token,
            ))
            .await,
        Code::Internal,
    );
    let message = status.message().to_lowercase();
    assert!(
        !message.contains("group_members")
            && !message.contains("table")
            && !message.contains("sql"),
        "{message}"
    );
}

#[tokio::test]
async fn the_embedded_default_keeps_its_secret_so_tokens_survive_a_restart() {
    let data_dir = tempfile::tempdir().unwrap();
    let settings = || Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: data_dir.path().join("data"),
        ..Settings::default()
    };

    let app = Application::build(settings()).await.unwrap();
    assert!(
        app.description().contains("SQLite"),
        "{}",
        app.description()
    );
    let addr = app.local_addr();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = rx.await;
    }));
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let session = quickchat_proto::v1::auth_service_client::AuthServiceClient::new(channel)
        .register(v1::RegisterRequest {
            email: "kim@example.com".into(),
            password: "correct horse".into(),
            name: "Kim".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    tx.send(()).unwrap();
    server.await.unwrap().unwrap();

    let secret_file = data_dir.path().join("data/jwt-secret");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&secret_file)
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "the JWT secret is private to its owner");
        let mode_of = |p: &str| {
            std::fs::metadata(data_dir.path().join(p))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode_of("data"), 0o700, "the data directory is private");
        assert_eq!(
            mode_of("data/quickchat.db"),
            0o600,
            "the database is private"
        );
        for companion in ["data/quickchat.db-wal", "data/quickchat.db-shm"] {
            if data_dir.path().join(companion).exists() {
                assert_eq!(mode_of(companion), 0o600, "{companion} is private");
            }
        }
    }
    assert!(data_dir.path().join("data/quickchat.db").exists());

    // Restarted on the same data directory: the account and the old token still work.
    let app = Application::build(settings()).await.unwrap();
    let addr = app.local_addr();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = rx.await;
    }));
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let me = quickchat_proto::v1::auth_service_client::AuthServiceClient::new(channel)
        .get_me(authed(v1::GetMeRequest {}, &session.access_token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(me.user.unwrap().email, "kim@example.com");
    tx.send(()).unwrap();
    server.await.unwrap().unwrap();
}

/// The error `Application::build` gives for default settings changed by `configure`.
async fn build_error(configure: impl FnOnce(&mut Settings)) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().into(),
        ..Settings::default()
    };
    configure(&mut settings);
    Application::build(settings)
        .await
        .err()
        .expect("build fails")
        .to_string()
}

#[tokio::test]
async fn inconsistent_cluster_flags_are_refused_at_startup() {
    let err = build_error(|s| s.redis_url = Some("redis://127.0.0.1:6379".into())).await;
    assert!(
        err.contains("--jwt-secret"),
        "a cluster needs one shared secret: {err}"
    );
    let err = build_error(|s| s.persister_enabled = false).await;
    assert!(
        err.contains("--persister=false needs --kafka-brokers"),
        "{err}"
    );
}

#[tokio::test]
async fn shutdown_stops_the_server_and_frees_the_port() {
    let app = spawn_app_with(|_| {}).await;
    let addr = app.addr;
    app.stop().await;
    let reconnect = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await;
    assert!(reconnect.is_err(), "nothing listens after shutdown");
}

/// The value of the sample `name` (with its labels, as printed) in a Prometheus scrape.
fn sample(scrape: &str, name: &str) -> f64 {
    scrape
        .lines()
        .find_map(|line| {
            line.strip_prefix(name)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no sample {name} in:\n{scrape}"))
}

#[tokio::test]
async fn an_operator_can_scrape_prometheus_metrics() {
    let app = spawn_app_with(|s| s.metrics_listen = Some("127.0.0.1:0".parse().unwrap())).await;
    let metrics_url = format!(
        "http://{}/metrics",
        app.metrics_addr.expect("metrics are on")
    );
    let owner = app.register("Olga").await;
    let group = app.create_group(&owner.access_token, "Observed").await;
    let ann = app.join(&group.id, "Ann").await.member_token;
    let mut olga = crate::chat_client::ChatClient::open(&app, &owner.access_token, &group.id, None)
        .await
        .unwrap();
    let mut ann = crate::chat_client::ChatClient::open(&app, &ann, &group.id, None)
        .await
        .unwrap();
    for i in 0..3 {
        let sent = olga.send_and_ack(&format!("m{i}"), "observed").await;
        assert_eq!(ann.next_message().await, sent);
    }
    olga.send("bad", " ").await;
    olga.next_answer()
        .await
        .expect_err("a blank message is refused");

    let scrape = reqwest::get(&metrics_url)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(sample(&scrape, "quickchat_messages_sent_total"), 3.0);
    assert_eq!(sample(&scrape, "quickchat_room_streams"), 2.0);
    assert_eq!(
        sample(&scrape, "quickchat_deliveries_total"),
        6.0,
        "3 messages, 2 streams"
    );
    assert_eq!(
        sample(
            &scrape,
            "quickchat_sends_rejected_total{reason=\"invalid\"}"
        ),
        1.0
    );
    assert_eq!(
        sample(&scrape, "quickchat_send_duration_seconds_count"),
        3.0
    );
    // Acked means persisted on the embedded default: the persister has written all three.
    assert_eq!(sample(&scrape, "quickchat_persisted_messages_total"), 3.0);
    assert!(sample(&scrape, "quickchat_persist_batches_total") >= 1.0);
    assert_eq!(sample(&scrape, "quickchat_persist_failures_total"), 0.0);

    // Without the flag nothing listens.
    assert!(spawn_app().await.metrics_addr.is_none());
}

#[tokio::test]
async fn a_server_whose_database_broke_still_shuts_down() {
    use std::time::Duration;
    let app = spawn_app_with(|s| {
        s.chat.append_timeout = Duration::from_millis(500);
        s.persister_drain_timeout = Duration::from_secs(1);
    })
    .await;
    let owner = app.register("Olga").await;
    let group = app.create_group(&owner.access_token, "Doomed").await;
    let mut olga = crate::chat_client::ChatClient::open(&app, &owner.access_token, &group.id, None)
        .await
        .unwrap();
    app.break_message_storage().await;

    // The message cannot be stored: the sender is told, not acked.
    olga.send("m1", "into the void").await;
    let rejected = olga
        .next_answer()
        .await
        .expect_err("not durable, not acked");
    assert_eq!(rejected.code, Code::Unavailable as i32, "{rejected:?}");
    // The persister keeps retrying; shutdown gives up on it after the drain timeout.
    app.stop().await;
}

/// Two embedded servers on one data directory would hand out the same offsets and lose
/// acked messages; the second is refused at startup, with a message saying why, and the
/// directory is free again once the first has stopped.
#[tokio::test]
async fn a_second_server_on_the_same_data_directory_is_refused() {
    let data_dir = tempfile::tempdir().unwrap();
    let settings = || Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: data_dir.path().join("data"),
        ..Settings::default()
    };
    let first = Application::build(settings()).await.unwrap();
    let err = match Application::build(settings()).await {
        Ok(_) => panic!("a second server started on the same data directory"),
        Err(err) => format!("{err:#}"),
    };
    assert!(
        err.contains("another quickchat-server is already using the data directory"),
        "{err}"
    );
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(first.run_until_stopped(async {
        let _ = rx.await;
    }));
    tx.send(()).unwrap();
    server.await.unwrap().unwrap();
    Application::build(settings())
        .await
        .expect("the directory is free once the first server stopped");
}

/// `quickchat-server --help` groups its flags by component and shows every default.
#[test]
fn the_servers_help_groups_flags_by_component_and_shows_defaults() {
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_qc-node"))
        .arg("--help")
        .output()
        .expect("qc-node runs");
    assert!(help.status.success());
    let help = String::from_utf8(help.stdout).unwrap();
    let headings = [
        "Listening:",
        "Storage:",
        "Cluster relay (Redis):",
        "Message log (Kafka) and persister:",
        "Limits:",
        "Operations:",
        "Auth:",
    ];
    for heading in headings {
        assert!(
            help.lines().any(|l| l == heading),
            "no {heading:?} in\n{help}"
        );
    }
    let flag = |name: &str| -> String {
        let start = help
            .find(&format!("--{name} "))
            .unwrap_or_else(|| panic!("--{name}"));
        let rest = &help[start + 2..];
        rest[..rest.find("\n      --").unwrap_or(rest.len())].to_owned()
    };
    assert!(
        flag("relay-window").contains("[default: 1000]"),
        "{}",
        flag("relay-window")
    );
    // Listed once, under its own component.
    let listening = &help[help.find("Listening:").unwrap()..help.find("Storage:").unwrap()];
    assert!(
        listening.contains("--keepalive-interval-secs"),
        "{listening}"
    );
}

/// SIGTERM while the server is still starting (here: during its migrations) is not lost
/// and does not kill it half-started: it stops cleanly, exit code 0.
#[test]
fn sigterm_during_startup_stops_the_server_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("stderr.log");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_qc-node"))
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("qc-node starts");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("migration")
    {
        assert!(std::time::Instant::now() < deadline, "no migration logged");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "stopped by {status}; its log:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}

//! The server over TLS (`--tls-cert`/`--tls-key`): gRPC and gRPC-web on one port, for
//! clients that trust the CA that signed its certificate, and for nobody else. The CA and
//! the certificate are made fresh by each test.

use std::net::SocketAddr;
use std::time::Duration;

use prost::Message;
use quickchat_proto::v1;
use quickchat_service::tls::TlsSettings;
use quickchat_service::{Application, Settings};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use tokio::sync::oneshot;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

use crate::chat_client::ChatClient;
use crate::helpers::{create_group_on, register_on};

/// A private CA and a certificate it signed for `127.0.0.1` and `localhost`, as PEM files.
struct TestPki {
    dir: tempfile::TempDir,
    ca_pem: String,
}

impl TestPki {
    fn new() -> Self {
        let (ca_pem, ca) = certificate_authority("QuickChat test CA");
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "quickchat-server");
        let cert = params.signed_by(&key, &ca).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("server.pem"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("server.key"), key.serialize_pem()).unwrap();
        Self { dir, ca_pem }
    }

    fn settings(&self) -> TlsSettings {
        TlsSettings {
            cert: self.dir.path().join("server.pem"),
            key: self.dir.path().join("server.key"),
        }
    }
}

/// A self-signed CA: its certificate (PEM) and what signs with it.
fn certificate_authority(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let pem = params.self_signed(&key).unwrap().pem();
    (pem, Issuer::new(params, key))
}

/// A real server with TLS on, on port 0, SQLite in a temporary directory.
struct TlsServer {
    addr: SocketAddr,
    description: String,
    _data_dir: tempfile::TempDir,
    _stop: oneshot::Sender<()>,
}

async fn spawn_tls_server(pki: &TestPki) -> TlsServer {
    quickchat_service::telemetry::init();
    let data_dir = tempfile::tempdir().unwrap();
    let app = Application::build(Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: data_dir.path().to_path_buf(),
        tls: Some(pki.settings()),
        ..Settings::default()
    })
    .await
    .expect("server builds");
    let (addr, description) = (app.local_addr(), app.description().to_owned());
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    TlsServer {
        addr,
        description,
        _data_dir: data_dir,
        _stop: stop,
    }
}

/// A gRPC connection over TLS that trusts `ca_pem` alone.
async fn connect_trusting(
    addr: SocketAddr,
    ca_pem: &str,
) -> Result<Channel, tonic::transport::Error> {
    Channel::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca_pem)))?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
}

#[tokio::test]
async fn a_client_trusting_the_ca_signs_in_and_chats_over_tls() {
    let pki = TestPki::new();
    let server = spawn_tls_server(&pki).await;
    assert!(
        server
            .description
            .contains(&format!("listening on https://{}", server.addr)),
        "{}",
        server.description
    );

    let channel = connect_trusting(server.addr, &pki.ca_pem)
        .await
        .expect("TLS connection");
    let session = register_on(&channel, "Tess").await;
    let login = quickchat_proto::v1::auth_service_client::AuthServiceClient::new(channel.clone())
        .login(v1::LoginRequest {
            email: session.user.unwrap().email,
            password: "correct horse".into(),
        })
        .await
        .expect("login over TLS")
        .into_inner()
        .session
        .unwrap();
    let group = create_group_on(&channel, &login.access_token, "Encrypted").await;
    let mut chat = ChatClient::open_on(channel, &login.access_token, &group.id, None)
        .await
        .expect("a room stream over TLS");
    chat.send_and_ack("m1", "only we can read this").await;
}

#[tokio::test]
async fn plaintext_clients_and_clients_that_do_not_trust_the_ca_are_refused() {
    let pki = TestPki::new();
    let server = spawn_tls_server(&pki).await;

    let plaintext = async {
        let channel = Channel::from_shared(format!("http://{}", server.addr))
            .unwrap()
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await?;
        v1::auth_service_client::AuthServiceClient::new(channel)
            .login(v1::LoginRequest {
                email: "nobody@example.com".into(),
                password: "correct horse".into(),
            })
            .await
            .map(drop)
            .map_err(anyhow::Error::from)
    };
    let refused = tokio::time::timeout(Duration::from_secs(10), plaintext)
        .await
        .expect("a plaintext client is refused, not left hanging");
    assert!(refused.is_err(), "a plaintext client got an answer");

    let (other_ca, _) = certificate_authority("Some other CA");
    let err = connect_trusting(server.addr, &other_ca)
        .await
        .expect_err("a client that does not trust the CA refuses the server");
    let mut chain = String::new();
    let mut source: Option<&dyn std::error::Error> = Some(&err);
    while let Some(inner) = source {
        chain += &format!("{inner}; ");
        source = inner.source();
    }
    assert!(chain.contains("certificate"), "{chain}");
}

/// One gRPC-web frame: flag byte, big-endian length, payload.
fn grpc_web_frame(payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

#[tokio::test]
async fn a_browser_calls_over_grpc_web_on_https_with_http1() {
    let pki = TestPki::new();
    let server = spawn_tls_server(&pki).await;
    let channel = connect_trusting(server.addr, &pki.ca_pem).await.unwrap();
    let owner = register_on(&channel, "Olga").await;
    let group = create_group_on(&channel, &owner.access_token, "Web chat").await;

    // An HTTP/1.1-only client offers only `http/1.1` in ALPN: the server must accept it.
    let http = reqwest::Client::builder()
        .http1_only()
        .add_root_certificate(reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let response = http
        .post(format!(
            "https://localhost:{}/quickchat.v1.GroupService/GetGroup",
            server.addr.port()
        ))
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .body(grpc_web_frame(
            &v1::GetGroupRequest {
                group_id: group.id.clone(),
            }
            .encode_to_vec(),
        ))
        .send()
        .await
        .expect("gRPC-web over HTTPS");
    assert_eq!(response.version(), reqwest::Version::HTTP_11);
    assert_eq!(
        response.headers()["content-type"],
        "application/grpc-web+proto"
    );
    let bytes = response.bytes().await.unwrap();
    assert_eq!(bytes[0], 0, "first frame is data");
    let len = u32::from_be_bytes(bytes[1..5].try_into().unwrap()) as usize;
    let decoded = v1::GetGroupResponse::decode(&bytes[5..5 + len]).unwrap();
    assert_eq!(decoded.group.unwrap(), group);

    // The same request in plaintext gets no answer.
    let plaintext = reqwest::Client::new()
        .post(format!(
            "http://127.0.0.1:{}/quickchat.v1.GroupService/GetGroup",
            server.addr.port()
        ))
        .header("content-type", "application/grpc-web+proto")
        .body(grpc_web_frame(&[]))
        .timeout(Duration::from_secs(10))
        .send()
        .await;
    assert!(plaintext.is_err(), "{plaintext:?}");
}

#[tokio::test]
async fn a_missing_or_mismatched_key_stops_the_server_at_startup() {
    let pki = TestPki::new();
    let other = TestPki::new();
    let data_dir = tempfile::tempdir().unwrap();
    let build = |tls: TlsSettings| {
        Application::build(Settings {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: data_dir.path().to_path_buf(),
            tls: Some(tls),
            ..Settings::default()
        })
    };
    let missing = TlsSettings {
        key: pki.dir.path().join("nothing-here.key"),
        ..pki.settings()
    };
    let err = format!("{:#}", build(missing).await.err().expect("build fails"));
    assert!(err.contains("--tls-key"), "{err}");
    let mismatched = TlsSettings {
        key: other.settings().key,
        ..pki.settings()
    };
    let err = format!("{:#}", build(mismatched).await.err().expect("build fails"));
    assert!(err.contains("--tls-key"), "{err}");
}

/// Connections from one host that never start their handshake cannot take the handshake
/// slots everyone shares: another client still gets in at once, not after the idle ones
/// time out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_from_one_host_do_not_keep_other_clients_out() {
    let pki = TestPki::new();
    let server = spawn_tls_server(&pki).await;
    // The idle host is 127.0.0.2 (all of 127/8 is loopback); the real client 127.0.0.1.
    let mut idle = Vec::new();
    for _ in 0..1_100 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        // Generous: the server may be slow to accept on a busy machine. Without the
        // per-client cap it stops accepting at 1024 and the listen backlog fills.
        match tokio::time::timeout(Duration::from_secs(5), socket.connect(server.addr)).await {
            Ok(Ok(stream)) => idle.push(stream),
            _ => break, // the backlog is full: the server takes no more
        }
    }
    assert!(idle.len() > 1_024, "only {} idle connections", idle.len());

    let started = tokio::time::Instant::now();
    let channel = connect_trusting(server.addr, &pki.ca_pem)
        .await
        .expect("a TLS connection while another host idles");
    register_on(&channel, "Patient").await;
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(3),
        "the client got in after {waited:?} (the handshake timeout is 10 s)"
    );
    drop(idle);
}

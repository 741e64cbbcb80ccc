//! A real server process in the background and a `quickchat` user with their own config
//! directory.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use quickchat_integration_tests::process::ServerProcess;
use serde_json::Value;

/// Long enough for a slow CI machine, short enough that a hang fails the test.
pub const WAIT: Duration = Duration::from_secs(30);

pub const PASSWORD: &str = "correct horse battery";

/// A QuickChat server process (the embedded default: SQLite in a temporary data directory),
/// as a user would run it.
pub struct TestServer {
    port: u16,
    data_dir: PathBuf,
    /// Set when the server speaks TLS: its certificate and key.
    tls: Option<(PathBuf, PathBuf)>,
    _data: Vec<tempfile::TempDir>,
    process: Option<ServerProcess>,
}

impl TestServer {
    /// A fresh server on a free port with an empty data directory.
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// A fresh server that speaks only TLS, with a certificate for 127.0.0.1 and localhost
    /// signed by a CA made for it (see [`TestServer::ca_cert`]).
    pub fn start_tls() -> Self {
        let pki = tempfile::tempdir().expect("temp dir");
        let ca = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "QuickChat test CA");
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let ca_cert = ca_params.self_signed(&ca).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        let path = |name: &str| pki.path().join(name);
        std::fs::write(path("ca.pem"), ca_cert.pem()).unwrap();
        std::fs::write(path("server.pem"), cert.pem()).unwrap();
        std::fs::write(path("server.key"), key.serialize_pem()).unwrap();
        Self::start_with(Some((path("server.pem"), path("server.key")))).keeping(pki)
    }

    fn start_with(tls: Option<(PathBuf, PathBuf)>) -> Self {
        let data = tempfile::tempdir().expect("temp dir");
        let mut server = Self {
            port: 0,
            data_dir: data.path().to_path_buf(),
            tls,
            _data: vec![data],
            process: None,
        };
        server.run();
        server
    }

    /// Starts the server process on `self.port` (0: a free one). The port of a stopped
    /// server can take a moment to be free again: retried until [`WAIT`].
    fn run(&mut self) {
        let mut args = vec![
            "--listen".to_owned(),
            format!("127.0.0.1:{}", self.port),
            "--data-dir".to_owned(),
            self.data_dir.display().to_string(),
        ];
        if let Some((cert, key)) = &self.tls {
            args.extend([
                "--tls-cert".to_owned(),
                cert.display().to_string(),
                "--tls-key".to_owned(),
                key.display().to_string(),
            ]);
        }
        let deadline = Instant::now() + WAIT;
        let process = loop {
            match ServerProcess::try_start(&args) {
                Ok(process) => break process,
                Err(log) if Instant::now() < deadline => {
                    let _ = log;
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(log) => panic!("the server does not start; its log:\n{log}"),
            }
        };
        self.port = process.addr.expect("a server address").port();
        self.process = Some(process);
    }

    /// Keeps `dir` until the server is dropped.
    fn keeping(mut self, dir: tempfile::TempDir) -> Self {
        self._data.push(dir);
        self
    }

    /// The CA certificate (PEM file) that signed a TLS server's certificate.
    pub fn ca_cert(&self) -> Option<PathBuf> {
        self.tls
            .as_ref()
            .map(|(cert, _)| cert.with_file_name("ca.pem"))
    }

    /// The server's data directory (its SQLite database and generated JWT secret).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Stops the server as an operator would (SIGTERM: open streams end) and waits until it
    /// is gone.
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.stop();
        }
    }

    /// Starts the server again on the same port with the same data.
    pub fn restart(&mut self) {
        self.stop();
        let port = self.port;
        self.run();
        assert_eq!(self.port, port);
    }
}

/// A TCP proxy in front of a server, so that a test can break a client's connection while
/// the server keeps running (a restart would change the room's epoch).
pub struct Proxy {
    port: u16,
    links: Arc<Mutex<Vec<Link>>>,
}

/// One proxied connection.
struct Link {
    client: TcpStream,
    server: TcpStream,
    state: Arc<AtomicU8>,
}

const FLOWING: u8 = 0;
/// Bytes from the server are held back (the client hears nothing more).
const HELD: u8 = 1;
const CUT: u8 = 2;

impl Proxy {
    /// A proxy on a free port that forwards every connection to `server`.
    pub fn start(server: &TestServer) -> Self {
        let target = format!("127.0.0.1:{}", server.port);
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy binds");
        let port = listener.local_addr().unwrap().port();
        let links: Arc<Mutex<Vec<Link>>> = Arc::default();
        let accepted = links.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let state = Arc::new(AtomicU8::new(FLOWING));
                let (Ok(client_reader), Ok(client_writer), Ok(server_reader), Ok(server_writer)) = (
                    client.try_clone(),
                    client.try_clone(),
                    server.try_clone(),
                    server.try_clone(),
                ) else {
                    continue;
                };
                std::thread::spawn(move || forward(client_reader, server_writer, None));
                let held = state.clone();
                std::thread::spawn(move || forward(server_reader, client_writer, Some(held)));
                accepted.lock().unwrap().push(Link {
                    client,
                    server,
                    state,
                });
            }
        });
        Self { port, links }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// From now on, nothing the server sends on the open connections reaches their clients
    /// (what clients send still reaches the server).
    pub fn hold_replies(&self) {
        for link in self.links.lock().unwrap().iter() {
            link.state.store(HELD, Ordering::SeqCst);
        }
    }

    /// Breaks every open connection, dropping whatever was held back; new connections are
    /// forwarded as before.
    pub fn cut(&self) {
        for link in self.links.lock().unwrap().drain(..) {
            link.state.store(CUT, Ordering::SeqCst);
            let _ = link.client.shutdown(Shutdown::Both);
            let _ = link.server.shutdown(Shutdown::Both);
        }
    }
}

/// Copies `from` to `to` until either side closes; with `held`, waits (keeping what it
/// read) while the link is held, and drops it when the link is cut.
fn forward(mut from: TcpStream, mut to: TcpStream, held: Option<Arc<AtomicU8>>) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(state) = &held {
            while state.load(Ordering::SeqCst) == HELD {
                std::thread::sleep(Duration::from_millis(10));
            }
            if state.load(Ordering::SeqCst) == CUT {
                break;
            }
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// Someone at a terminal: the `quickchat` binary with their own config directory.
pub struct User {
    server: String,
    config: tempfile::TempDir,
}

/// What a finished command printed.
#[derive(Debug)]
pub struct Outcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    /// The stdout lines parsed as JSON (each must parse).
    pub fn json(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|err| panic!("not a JSON line ({err}): {line:?}"))
            })
            .collect()
    }
}

impl User {
    pub fn new(server: &TestServer) -> Self {
        Self::with_url(&server.url())
    }

    pub fn with_url(url: &str) -> Self {
        Self {
            server: url.to_owned(),
            config: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn config_dir(&self) -> &Path {
        self.config.path()
    }

    pub fn server_url(&self) -> &str {
        &self.server
    }

    /// The binary with this user's config directory but no --server: what a user who saved
    /// a server (`quickchat config set server`) types.
    pub fn command_without_server(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_qc-cli"));
        command
            .arg("--config-dir")
            .arg(self.config.path())
            .env_remove("QUICKCHAT_SERVER")
            .env_remove("QUICKCHAT_CONFIG_DIR")
            .env_remove("QUICKCHAT_CA_CERT");
        command
    }

    pub fn command(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_qc-cli"));
        command
            .arg("--server")
            .arg(&self.server)
            .arg("--config-dir")
            .arg(self.config.path())
            .env_remove("QUICKCHAT_SERVER")
            .env_remove("QUICKCHAT_CONFIG_DIR")
            .env_remove("QUICKCHAT_CA_CERT");
        command
    }

    /// Runs `quickchat ARGS` with `stdin` and waits for it.
    pub fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Outcome {
        let output = assert_cmd::Command::from_std(self.command())
            .args(args)
            .write_stdin(stdin.to_owned())
            .timeout(WAIT)
            .output()
            .expect("quickchat runs");
        Outcome {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    pub fn run(&self, args: &[&str]) -> Outcome {
        self.run_with_stdin(args, "")
    }

    /// Runs a command that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        self.ok_with_stdin(args, "")
    }

    pub fn ok_with_stdin(&self, args: &[&str], stdin: &str) -> String {
        let outcome = self.run_with_stdin(args, stdin);
        assert_eq!(
            outcome.code,
            0,
            "`quickchat {}` failed: {outcome:#?}",
            args.join(" ")
        );
        outcome.stdout
    }

    /// Runs a command with `--json` that must succeed; returns its JSON lines.
    pub fn json(&self, args: &[&str]) -> Vec<Value> {
        let mut with_json = vec!["--json"];
        with_json.extend_from_slice(args);
        let outcome = self.run(&with_json);
        assert_eq!(
            outcome.code,
            0,
            "`quickchat {}` failed: {outcome:#?}",
            with_json.join(" ")
        );
        outcome.json()
    }

    pub fn json_with_stdin(&self, args: &[&str], stdin: &str) -> Vec<Value> {
        let mut with_json = vec!["--json"];
        with_json.extend_from_slice(args);
        let outcome = self.run_with_stdin(&with_json, stdin);
        assert_eq!(
            outcome.code,
            0,
            "`quickchat {}` failed: {outcome:#?}",
            with_json.join(" ")
        );
        outcome.json()
    }

    /// Runs a command that must fail with `code`; returns its stderr.
    pub fn fails(&self, args: &[&str], code: i32) -> String {
        let outcome = self.run(args);
        assert_eq!(
            outcome.code,
            code,
            "`quickchat {}` should exit {code}: {outcome:#?}",
            args.join(" ")
        );
        assert!(
            (outcome.stderr.starts_with("error: ") || outcome.stderr.starts_with("{\"error\":"))
                && outcome.stderr.trim_end().lines().count() == 1,
            "errors are one line on stderr: {:?}",
            outcome.stderr
        );
        assert!(
            !outcome.stderr.contains("Status {") && !outcome.stderr.contains("code:"),
            "no status dumps: {:?}",
            outcome.stderr
        );
        outcome.stderr
    }

    pub fn register(&self, email: &str, name: &str) {
        self.ok_with_stdin(
            &[
                "register",
                "--email",
                email,
                "--name",
                name,
                "--password-stdin",
            ],
            &format!("{PASSWORD}\n"),
        );
    }

    /// Creates a group (must be signed in); returns its id and share link.
    pub fn create_group(&self, title: &str, passcode: &str) -> (String, String) {
        let out = self.json(&["group", "create", "--title", title, "--passcode", passcode]);
        let id = out[0]["id"].as_str().unwrap().to_owned();
        let link = out[0]["share_link"].as_str().unwrap().to_owned();
        (id, link)
    }

    pub fn join(&self, group: &str, name: &str, passcode: &str) {
        self.ok_with_stdin(
            &["join", group, "--name", name, "--passcode-stdin"],
            &format!("{passcode}\n"),
        );
    }

    /// Starts a long-running command (`chat`, `tail --follow`) with piped stdio.
    pub fn spawn(&self, args: &[&str]) -> Running {
        let mut child = self
            .command()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("quickchat starts");
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let out_tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = out_tx.send(Line::Out(line));
            }
        });
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(Line::Err(line));
            }
        });
        Running {
            stdin: child.stdin.take(),
            child,
            lines: rx,
            stdout: Vec::new(),
            stderr: Vec::new(),
            read_upto: 0,
        }
    }
}

enum Line {
    Out(String),
    Err(String),
}

/// A running `quickchat` process whose output is read line by line.
pub struct Running {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<Line>,
    /// Every stdout line so far.
    pub stdout: Vec<String>,
    /// Every stderr line so far.
    pub stderr: Vec<String>,
    /// stdout lines before this index were already matched by `expect`.
    read_upto: usize,
}

impl Running {
    fn pump(&mut self, until: Instant) -> bool {
        let left = until.saturating_duration_since(Instant::now());
        match self.lines.recv_timeout(left) {
            Ok(Line::Out(line)) => {
                self.stdout.push(line);
                true
            }
            Ok(Line::Err(line)) => {
                self.stderr.push(line);
                true
            }
            Err(_) => false,
        }
    }

    /// Waits for the next stdout line (after the last matched one) that contains `text`.
    pub fn expect(&mut self, text: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(i) = self.stdout[self.read_upto..]
                .iter()
                .position(|l| l.contains(text))
            {
                let index = self.read_upto + i;
                self.read_upto = index + 1;
                return self.stdout[index].clone();
            }
            if !self.pump(deadline) {
                panic!(
                    "no stdout line containing {text:?} within {WAIT:?}\nstdout: {:#?}\nstderr: {:#?}",
                    self.stdout, self.stderr
                );
            }
        }
    }

    /// Waits until each of `texts` appeared on stdout (after the last matched line), in any
    /// order.
    pub fn expect_unordered(&mut self, texts: &[&str]) {
        let start = self.read_upto;
        let mut last = start;
        for text in texts {
            self.read_upto = start;
            self.expect(text);
            last = last.max(self.read_upto);
        }
        self.read_upto = last;
    }

    pub fn write_line(&mut self, text: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{text}").expect("write to quickchat");
        stdin.flush().unwrap();
    }

    /// Closes stdin (Ctrl-D) and waits for the process to end; returns its status.
    /// Waits (stdin left open) for the process to end by itself; returns its status.
    pub fn exits_by_itself(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                while self.pump(Instant::now() + Duration::from_millis(200)) {}
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "quickchat did not exit by itself\nstdout: {:#?}\nstderr: {:#?}",
                    self.stdout, self.stderr
                );
            }
            self.pump(Instant::now() + Duration::from_millis(50));
        }
    }

    pub fn finish(&mut self) -> ExitStatus {
        self.stdin.take();
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                // Collect the last lines.
                while self.pump(Instant::now() + Duration::from_millis(200)) {}
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "quickchat did not exit after stdin closed\nstdout: {:#?}\nstderr: {:#?}",
                    self.stdout, self.stderr
                );
            }
            self.pump(Instant::now() + Duration::from_millis(50));
        }
    }

    /// Every stdout line containing `text`.
    pub fn count(&self, text: &str) -> usize {
        self.stdout.iter().filter(|l| l.contains(text)).count()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

//! Server nodes and persisters as real processes (the `qc-node` binary of this crate, the
//! same program as `quickchat-server`), so that a test can kill one with SIGKILL at a moment
//! it chooses — no graceful anything, as when a machine dies — or stop it with SIGTERM as
//! an operator would. Each process's output goes to a file kept for the test's report.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// One running `quickchat-server` (or `quickchat-server persister`) process.
pub struct ServerProcess {
    child: Child,
    /// Where a node serves gRPC (`None` for a persister).
    pub addr: Option<SocketAddr>,
    /// Where it serves Prometheus metrics, when started with `--metrics-listen`.
    pub metrics_addr: Option<SocketAddr>,
    /// Its stderr (the log).
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

impl ServerProcess {
    /// Starts the program with `args` and waits for its startup line (at most 60 s).
    pub fn start(args: &[String]) -> ServerProcess {
        Self::try_start(args).unwrap_or_else(|log| {
            panic!("qc-node {args:?} printed no startup line; its log:\n{log}")
        })
    }

    /// [`ServerProcess::start`], or the log of a process that exited (or said nothing for
    /// 60 s) before its startup line.
    pub fn try_start(args: &[String]) -> Result<ServerProcess, String> {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("stderr.log");
        let mut child = Command::new(program())
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("qc-node starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (line_tx, line_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(first)) = lines.next() {
                let _ = line_tx.send(first);
            }
            // Keep draining so the process never blocks on a full pipe.
            for _ in lines {}
        });
        let Ok(line) = line_rx.recv_timeout(Duration::from_secs(60)) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(std::fs::read_to_string(&log).unwrap_or_default());
        };
        Ok(ServerProcess {
            child,
            addr: address_after(&line, "listening on http://")
                .or_else(|| address_after(&line, "listening on https://")),
            metrics_addr: address_after(&line, "metrics: http://"),
            log,
            _dir: dir,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: the process vanishes mid-whatever, nothing flushed, nothing committed.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits (at most 60 s) for a clean exit; panics on any other exit.
    pub fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                assert!(
                    status.success(),
                    "qc-node exited with {status}; its log:\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
                return;
            }
            assert!(std::time::Instant::now() < deadline, "qc-node did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The value of a Prometheus counter or gauge (`quickchat_` prefix included), summed
    /// over its labels (e.g. every partition's lag); 0 if it has no sample yet.
    pub async fn metric(&self, name: &str) -> f64 {
        let addr = self.metrics_addr.expect("started with --metrics-listen");
        let text = reqwest::get(format!("http://{addr}/metrics"))
            .await
            .expect("metrics answer")
            .text()
            .await
            .expect("metrics body");
        let total = format!("{name}_total");
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (key, value) = l.rsplit_once(' ')?;
                let family = key.split_once('{').map_or(key, |(family, _)| family);
                (family == name || family == total).then(|| value.parse::<f64>().ok())?
            })
            .sum()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A failing test shows what its processes logged last (the log dies with the
        // temporary directory).
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            // Backtrace frames crowd out the lines that say what happened.
            let lines: Vec<&str> = log
                .lines()
                .filter(|l| {
                    let t = l.trim_start();
                    let frame = t.split_once(": ").is_some_and(|(n, symbol)| {
                        n.parse::<u32>().is_ok()
                            && (symbol.contains("::") || symbol.starts_with('_'))
                    });
                    !(t.starts_with("at ") || frame)
                })
                .collect();
            let tail = lines[lines.len().saturating_sub(40)..].join("\n");
            eprintln!(
                "--- last lines of qc-node {} (pid {}):\n{tail}",
                self.addr
                    .map(|a| a.to_string())
                    .unwrap_or_else(|| "persister".into()),
                self.pid()
            );
        }
    }
}

/// The server program: this crate's `qc-node`, which cargo builds beside the test
/// executables (`target/<profile>/qc-node`, the tests being in `target/<profile>/deps`).
fn program() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let program = exe
        .parent()
        .and_then(std::path::Path::parent)
        .expect("a test executable under target/<profile>/deps")
        .join("qc-node");
    assert!(
        program.exists(),
        "{} is missing: `cargo build -p quickchat-integration-tests --bin qc-node`",
        program.display()
    );
    program
}

/// The `host:port` that follows `marker` in a startup line.
fn address_after(line: &str, marker: &str) -> Option<SocketAddr> {
    let rest = &line[line.find(marker)? + marker.len()..];
    let end = rest.find([' ', '/']).unwrap_or(rest.len());
    rest[..end].parse().ok()
}

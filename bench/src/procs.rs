//! The processes a benchmark runs: QuickChat nodes and persisters, the peer's servers,
//! consumers and load-generator workers. Each one's stderr goes to a log file in the run's
//! directory (named in errors), and its stdout is read for the startup line.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub struct Proc {
    pub name: String,
    child: Child,
    pub log: PathBuf,
    /// The first stdout line that held the marker given to [`Proc::start`].
    pub startup_line: String,
}

impl Proc {
    /// Starts `program` and waits (at most `timeout`) for a stdout line containing
    /// `marker`; the rest of stdout is drained in the background.
    pub async fn start(
        name: &str,
        mut command: Command,
        logs: &Path,
        marker: &str,
        timeout: Duration,
    ) -> anyhow::Result<Proc> {
        let log = logs.join(format!("{name}.log"));
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log)?)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        let found = tokio::time::timeout(timeout, async {
            while let Some(line) = lines.next_line().await? {
                if line.contains(marker) {
                    return Ok::<_, std::io::Error>(Some(line));
                }
            }
            Ok(None)
        })
        .await;
        let startup_line = match found {
            Ok(Ok(Some(line))) => line,
            _ => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                bail!(
                    "{name} did not start (no {marker:?} on stdout); its log {}:\n{}",
                    log.display(),
                    tail(&log)
                );
            }
        };
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Proc {
            name: name.to_owned(),
            child,
            log,
            startup_line,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    /// Resident memory in bytes, from /proc.
    pub fn rss_bytes(&self) -> anyhow::Result<u64> {
        rss_bytes(self.pid())
    }

    /// Fails if the process has exited (with its log).
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "{} exited ({status}); its log {}:\n{}",
                self.name,
                self.log.display(),
                tail(&self.log)
            );
        }
        Ok(())
    }

    /// SIGTERM, then SIGKILL if it has not exited within `grace`.
    pub async fn stop(mut self, grace: Duration) {
        if let Some(pid) = self.child.id() {
            // SAFETY: signalling a child of ours by its id.
            unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        }
        if tokio::time::timeout(grace, self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// Resident memory of `pid` in bytes (VmRSS).
pub fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .context("no VmRSS")?;
    Ok(kb * 1024)
}

/// The last lines of a log, for error messages.
pub fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// The `host:port` after `marker` in a startup line (`listening on http://127.0.0.1:PORT`).
pub fn address_after(line: &str, marker: &str) -> Option<String> {
    let rest = &line[line.find(marker)? + marker.len()..];
    let end = rest.find([' ', '/', ',']).unwrap_or(rest.len());
    Some(rest[..end].to_owned())
}

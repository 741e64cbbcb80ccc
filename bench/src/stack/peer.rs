//! The peer: the original design's stack, from `bench/peer/` — Socket.IO servers on the
//! Redis Streams adapter (`server.js`), kafkajs producing each message and a consumer
//! inserting one row per message with pg (`consumer.js`) when the layout has Kafka, and
//! socket.io-client load generators (`loadgen.js`) in several worker processes, driven
//! through JSON lines on their stdin and stdout.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use sea_orm::sqlx;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use uuid::Uuid;

use super::{ClientSpec, Clients, Layout, Member, Room, Stack};
use crate::env::Env;
use crate::procs::{Proc, address_after};
use crate::stats::{self, Counts, Stats};

const STARTUP: Duration = Duration::from_secs(60);

pub struct Peer {
    env: Arc<Env>,
    workers: usize,
    layout: Layout,
    nodes: Vec<Proc>,
    consumer: Option<Proc>,
    urls: Vec<String>,
    tag: String,
    starts: u32,
    schema_ready: bool,
}

impl Peer {
    /// `workers`: load-generator processes (each one Node.js event loop).
    pub fn new(env: Arc<Env>, workers: usize) -> Self {
        Self {
            env,
            workers: workers.max(1),
            layout: Layout {
                nodes: 0,
                kafka: false,
                persister: true,
            },
            nodes: Vec::new(),
            consumer: None,
            urls: Vec::new(),
            tag: String::new(),
            starts: 0,
            schema_ready: false,
        }
    }

    fn node(&self, script: &str) -> Command {
        let mut command = Command::new(&self.env.node_bin);
        command
            .arg(self.env.peer_dir.join(script))
            .current_dir(&self.env.peer_dir)
            .env("REDIS_URL", &self.env.redis_url)
            .env("STREAM_NAME", &self.tag)
            .env("KAFKA_TOPIC", &self.tag)
            .env("KAFKA_GROUP", &self.tag)
            .env("DATABASE_URL", &self.env.database_url);
        command
    }
}

#[async_trait::async_trait]
impl Stack for Peer {
    fn name(&self) -> &'static str {
        "peer"
    }

    async fn start(&mut self, layout: Layout) -> anyhow::Result<()> {
        self.layout = layout;
        self.starts += 1;
        self.tag = format!("peerbench-{}-{}", self.env.run_id, self.starts);
        for i in 0..layout.nodes {
            let mut command = self.node("server.js");
            command.env("PORT", "0");
            if layout.kafka {
                let brokers = self
                    .env
                    .kafka_brokers
                    .as_deref()
                    .context("this scenario needs Kafka (--kafka-brokers)")?;
                command.env("KAFKA_BROKERS", brokers);
            }
            let name = format!("{}-node{i}", self.tag);
            let node = Proc::start(
                &name,
                command,
                &self.env.logs,
                "listening on http://",
                STARTUP,
            )
            .await?;
            let addr = address_after(&node.startup_line, "listening on http://")
                .with_context(|| format!("no address in {:?}", node.startup_line))?;
            self.urls.push(format!("http://{addr}"));
            self.nodes.push(node);
        }
        if layout.kafka && layout.persister {
            self.start_persister().await?;
        }
        Ok(())
    }

    async fn stop(&mut self) {
        for p in self.nodes.drain(..).chain(self.consumer.take()) {
            p.stop(Duration::from_secs(5)).await;
        }
        self.urls.clear();
    }

    fn server_pids(&self) -> Vec<u32> {
        self.nodes.iter().map(Proc::pid).collect()
    }

    async fn rooms(&mut self, count: usize, members: usize) -> anyhow::Result<Vec<Room>> {
        if !self.schema_ready {
            let schema = std::fs::read_to_string(self.env.peer_dir.join("schema.sql"))?;
            sqlx::raw_sql(sqlx::AssertSqlSafe(schema))
                .execute(&self.env.pool)
                .await?;
            self.schema_ready = true;
        }
        let rooms: Vec<Room> = (0..count)
            .map(|_| Room {
                id: Uuid::new_v4().to_string(),
                members: (0..members)
                    .map(|m| Member {
                        name: format!("member {m}"),
                        token: String::new(),
                    })
                    .collect(),
            })
            .collect();
        // The original's groups table holds every room (its chats reference it).
        let ids: Vec<Uuid> = rooms
            .iter()
            .map(|r| r.id.parse())
            .collect::<Result<_, _>>()?;
        sqlx::query(
            "INSERT INTO peer.chat_group (id, title, passcode) \
             SELECT id, 'bench room', 'bench-passcode' FROM unnest($1::uuid[]) AS id",
        )
        .bind(&ids)
        .execute(&self.env.pool)
        .await?;
        Ok(rooms)
    }

    fn clients(&self) -> Box<dyn Clients> {
        Box::new(PeerClients {
            env: self.env.clone(),
            urls: self.urls.clone(),
            wanted: self.workers,
            workers: Vec::new(),
            placement: Vec::new(),
        })
    }

    async fn start_persister(&mut self) -> anyhow::Result<()> {
        let mut command = self.node("consumer.js");
        let brokers = self
            .env
            .kafka_brokers
            .as_deref()
            .context("this scenario needs Kafka (--kafka-brokers)")?;
        command.env("KAFKA_BROKERS", brokers);
        let name = format!("{}-consumer", self.tag);
        self.consumer =
            Some(Proc::start(&name, command, &self.env.logs, "consuming", STARTUP).await?);
        Ok(())
    }

    async fn stored(&self, rooms: &[Room]) -> anyhow::Result<u64> {
        super::stored_in(&self.env, self.message_table().0, rooms).await
    }

    fn message_table(&self) -> (&'static str, &'static str) {
        (
            "peer.chats",
            "id, group_id, message, name, file, created_at",
        )
    }

    fn env(&self) -> &Env {
        &self.env
    }
}

/// One `loadgen.js` process.
struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    log: std::path::PathBuf,
}

impl Worker {
    async fn start(env: &Env, index: usize) -> anyhow::Result<Worker> {
        let log = env.logs.join(format!(
            "peer-loadgen-{}-{index}.log",
            crate::env::rand_u32()
        ));
        let mut child = Command::new(&env.node_bin)
            .arg(env.peer_dir.join("loadgen.js"))
            .current_dir(&env.peer_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log)?)
            .kill_on_drop(true)
            .spawn()
            .context("cannot start node (the peer's load generator)")?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = BufReader::new(child.stdout.take().expect("piped")).lines();
        Ok(Worker {
            child,
            stdin,
            stdout,
            log,
        })
    }

    async fn ask(&mut self, command: Value) -> anyhow::Result<Value> {
        self.stdin
            .write_all(format!("{command}\n").as_bytes())
            .await?;
        self.stdin.flush().await?;
        let Some(line) = self.stdout.next_line().await? else {
            bail!(
                "the peer's load generator exited; its log {}:\n{}",
                self.log.display(),
                crate::procs::tail(&self.log)
            );
        };
        let answer: Value = serde_json::from_str(&line)?;
        if let Some(error) = answer.get("error") {
            bail!("the peer's load generator: {error}");
        }
        Ok(answer)
    }
}

struct PeerClients {
    env: Arc<Env>,
    urls: Vec<String>,
    wanted: usize,
    workers: Vec<Worker>,
    /// Client number → (worker, its index there).
    placement: Vec<(usize, usize)>,
}

impl PeerClients {
    /// Asks every worker at once; the answers in worker order.
    async fn ask_all(&mut self, commands: Vec<Value>) -> anyhow::Result<Vec<Value>> {
        futures::future::try_join_all(self.workers.iter_mut().zip(commands).map(|(w, c)| w.ask(c)))
            .await
    }
}

fn counts_of(v: &Value) -> Counts {
    let n = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
    Counts {
        delivered: n("delivered"),
        acked: n("acked"),
        failed: n("failed"),
        sent: n("sent"),
        disconnects: n("disconnects"),
    }
}

fn pairs(v: &Value) -> Vec<(u64, u64)> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| Some((p.get(0)?.as_f64()? as u64, p.get(1)?.as_u64()?)))
                .collect()
        })
        .unwrap_or_default()
}

#[async_trait::async_trait]
impl Clients for PeerClients {
    async fn connect(
        &mut self,
        specs: &[ClientSpec],
        rooms: &[Room],
        concurrency: usize,
    ) -> anyhow::Result<()> {
        while self.workers.len() < self.wanted {
            let w = Worker::start(&self.env, self.workers.len()).await?;
            self.workers.push(w);
        }
        let n = self.workers.len();
        let mut per_worker: Vec<Vec<Value>> = vec![Vec::new(); n];
        let mut held: Vec<usize> = (0..n)
            .map(|w| self.placement.iter().filter(|(pw, _)| *pw == w).count())
            .collect();
        for (i, spec) in specs.iter().enumerate() {
            let w = (self.placement.len() + i) % n;
            let room = &rooms[spec.room];
            per_worker[w].push(json!({
                "url": self.urls[spec.node],
                "room": room.id,
                "name": room.members[spec.member].name,
            }));
            self.placement.push((w, held[w]));
            held[w] += 1;
        }
        let commands = per_worker
            .into_iter()
            .map(|clients| json!({"op": "connect", "clients": clients, "concurrency": concurrency.div_ceil(n)}))
            .collect();
        self.ask_all(commands).await?;
        Ok(())
    }

    async fn send(
        &mut self,
        senders: &[usize],
        rate: f64,
        secs: f64,
        ack: bool,
    ) -> anyhow::Result<u64> {
        let n = self.workers.len();
        let mut local: Vec<Vec<usize>> = vec![Vec::new(); n];
        for &s in senders {
            let (w, i) = self.placement[s];
            local[w].push(i);
        }
        let total = senders.len().max(1) as f64;
        let commands = local
            .into_iter()
            .map(|senders| {
                let share = rate * senders.len() as f64 / total;
                json!({"op": "send", "senders": senders, "rate": share, "secs": secs, "ack": ack})
            })
            .collect();
        let answers = self.ask_all(commands).await?;
        Ok(answers
            .iter()
            .map(|a| a.get("sent").and_then(Value::as_u64).unwrap_or(0))
            .sum())
    }

    async fn counts(&mut self) -> anyhow::Result<Counts> {
        let commands = vec![json!({"op": "counts"}); self.workers.len()];
        let mut all = Counts::default();
        for answer in self.ask_all(commands).await? {
            all += counts_of(&answer);
        }
        Ok(all)
    }

    async fn take_stats(&mut self) -> anyhow::Result<Stats> {
        let commands = vec![json!({"op": "stats"}); self.workers.len()];
        let mut counts = Counts::default();
        let mut latency = stats::histogram();
        let mut ack_latency = stats::histogram();
        for answer in self.ask_all(commands).await? {
            counts += counts_of(&answer);
            stats::record_pairs(&mut latency, &pairs(&answer["latency"]));
            stats::record_pairs(&mut ack_latency, &pairs(&answer["ack_latency"]));
        }
        Ok(Stats {
            counts,
            latency,
            ack_latency,
        })
    }

    async fn close(&mut self) -> anyhow::Result<()> {
        let commands = vec![json!({"op": "close"}); self.workers.len()];
        self.ask_all(commands).await?;
        for mut w in self.workers.drain(..) {
            drop(w.stdin);
            if tokio::time::timeout(Duration::from_secs(5), w.child.wait())
                .await
                .is_err()
            {
                let _ = w.child.kill().await;
            }
        }
        self.placement.clear();
        Ok(())
    }
}

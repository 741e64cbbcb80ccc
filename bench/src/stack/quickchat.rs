//! QuickChat: release `quickchat-server` nodes on PostgreSQL and Redis (with Kafka when the
//! layout asks for it), and native clients — each its own HTTP/2 connection with one `Chat`
//! stream — in this process.
//!
//! Setup goes straight to the store with the server's own code: the rooms' owner, the
//! groups and their members are inserted with [`Store`], and member tokens are signed with
//! the nodes' secret by [`TokenIssuer`], as `JoinGroup` would after checking the passcode
//! (10 000 joins would otherwise spend minutes in argon2 before anything is measured).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use futures::{StreamExt, TryStreamExt};
use quickchat_proto::v1::{
    self, chat_request, chat_response::Event, chat_service_client::ChatServiceClient,
};
use quickchat_service::auth::password::Hasher;
use quickchat_service::auth::tokens::TokenIssuer;
use quickchat_service::domain::MemberName;
use quickchat_service::store::{NewUser, Store};
use secrecy::SecretString;
use tokio::process::Command;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use uuid::Uuid;

use super::{ClientSpec, Clients, Layout, Member, Room, Stack};
use crate::clock::{body, now_us, sent_at};
use crate::env::Env;
use crate::procs::{Proc, address_after};
use crate::stats::{Counters, Counts, Sharded, Stats};

const STARTUP: Duration = Duration::from_secs(120);

pub struct QuickChat {
    env: Arc<Env>,
    /// Extra flags for every node and persister (`--qc-arg`).
    extra_args: Vec<String>,
    layout: Layout,
    nodes: Vec<Proc>,
    persister: Option<Proc>,
    urls: Vec<String>,
    /// Names this scenario's Redis keys, Kafka topic and consumer group.
    tag: String,
    starts: u32,
    secret: String,
    issuer: TokenIssuer,
    store: Option<Store>,
    owner: Option<Uuid>,
    passcode_hash: Option<String>,
}

impl QuickChat {
    pub fn new(env: Arc<Env>, extra_args: Vec<String>) -> Self {
        let secret = format!(
            "quickchat-bench-{}-{:08x}{:08x}{:08x}",
            env.run_id,
            crate::env::rand_u32(),
            crate::env::rand_u32(),
            crate::env::rand_u32()
        );
        let issuer = TokenIssuer::new(
            &SecretString::from(secret.clone()),
            &[],
            Duration::from_secs(3600),
            Duration::from_secs(24 * 3600),
        );
        Self {
            env,
            extra_args,
            layout: Layout {
                nodes: 0,
                kafka: false,
                persister: true,
            },
            nodes: Vec::new(),
            persister: None,
            urls: Vec::new(),
            tag: String::new(),
            starts: 0,
            secret,
            issuer,
            store: None,
            owner: None,
            passcode_hash: None,
        }
    }

    /// Flags for the process called `name` (its data directory is its own).
    fn args(&self, name: &str) -> anyhow::Result<Vec<String>> {
        let env = &self.env;
        let data_dir: PathBuf = env.logs.join(format!("{}-{name}", self.tag));
        let mut args: Vec<String> = [
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            &data_dir.display().to_string(),
            "--database-url",
            &env.database_url,
            "--redis-url",
            &env.redis_url,
            "--redis-key-prefix",
            &self.tag,
            "--jwt-secret",
            &self.secret,
            // The harness sets the limits instead of bypassing them: one client address
            // holds every stream, and a few senders carry a whole room's rate.
            "--send-rate",
            "1000000",
            "--send-burst",
            "1000000",
            "--max-streams-per-client",
            "1000000",
            "--max-members-per-group",
            "1000000",
            "--web-dir",
            &env.logs.join("no-web-app").display().to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if self.layout.kafka {
            let brokers = env
                .kafka_brokers
                .as_deref()
                .context("this scenario needs Kafka (--kafka-brokers)")?;
            args.extend(
                [
                    "--kafka-brokers",
                    brokers,
                    "--kafka-topic",
                    &self.tag,
                    "--kafka-consumer-group",
                    &self.tag,
                    "--kafka-session-timeout-ms",
                    "6000",
                    "--kafka-heartbeat-interval-ms",
                    "500",
                ]
                .iter()
                .map(|s| s.to_string()),
            );
        }
        args.extend(self.extra_args.iter().cloned());
        Ok(args)
    }

    async fn store(&mut self) -> anyhow::Result<&Store> {
        if self.store.is_none() {
            self.store = Some(Store::connect(&self.env.database_url).await?);
        }
        Ok(self.store.as_ref().expect("just set"))
    }
}

#[async_trait::async_trait]
impl Stack for QuickChat {
    fn name(&self) -> &'static str {
        "QuickChat"
    }

    async fn start(&mut self, layout: Layout) -> anyhow::Result<()> {
        self.layout = layout;
        self.starts += 1;
        self.tag = format!("qcbench-{}-{}", self.env.run_id, self.starts);
        for i in 0..layout.nodes {
            let mut args = self.args(&format!("node{i}"))?;
            if layout.kafka && !layout.persister {
                args.push("--persister=false".into());
            }
            let mut command = Command::new(&self.env.server_bin);
            command.args(&args).env("RUST_LOG", "warn");
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
        Ok(())
    }

    async fn stop(&mut self) {
        let grace = Duration::from_secs(5);
        for p in self.nodes.drain(..).chain(self.persister.take()) {
            p.stop(grace).await;
        }
        self.urls.clear();
    }

    fn server_pids(&self) -> Vec<u32> {
        self.nodes.iter().map(Proc::pid).collect()
    }

    async fn rooms(&mut self, count: usize, members: usize) -> anyhow::Result<Vec<Room>> {
        if self.passcode_hash.is_none() {
            let hasher = Hasher::new(1, 1)?;
            self.passcode_hash = Some(
                hasher
                    .hash(&SecretString::from("bench-passcode".to_owned()))
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?,
            );
        }
        let hash = self.passcode_hash.clone().expect("just set");
        let run_id = self.env.run_id.clone();
        let owner = match self.owner {
            Some(owner) => owner,
            None => {
                let email = format!("bench-owner-{run_id}@example.com");
                let user = self
                    .store()
                    .await?
                    .create_user(NewUser {
                        name: "Bench owner",
                        email: Some(&email),
                        provider: "local",
                        subject: None,
                        password_hash: None,
                        image_url: None,
                    })
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot create the rooms' owner: {e}"))?;
                self.owner = Some(user.id);
                user.id
            }
        };
        let store = self.store().await?.clone();
        let issuer = self.issuer.clone();
        futures::stream::iter(0..count)
            .map(|i| {
                let (store, issuer, hash) = (store.clone(), issuer.clone(), hash.clone());
                async move {
                    let group = store
                        .create_group(owner, &format!("bench room {i}"), hash)
                        .await?;
                    let mut room = Room {
                        id: group.id.to_string(),
                        members: Vec::with_capacity(members),
                    };
                    for m in 0..members {
                        let name = MemberName::parse(&format!("member {m}"))
                            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
                        let member = store
                            .add_member(
                                quickchat_service::store::NewMember {
                                    group_id: group.id,
                                    name: &name,
                                    user_id: None,
                                },
                                u64::MAX,
                            )
                            .await
                            .map_err(|e| anyhow::anyhow!("cannot add a member: {e}"))?;
                        let (token, _) = issuer.issue_member(
                            member.id,
                            group.id,
                            &member.name,
                            member.token_version,
                        )?;
                        room.members.push(Member {
                            name: member.name,
                            token,
                        });
                    }
                    anyhow::Ok(room)
                }
            })
            .buffered(8)
            .try_collect()
            .await
    }

    fn clients(&self) -> Box<dyn Clients> {
        Box::new(QcClients {
            urls: self.urls.clone(),
            clients: Vec::new(),
            shared: Arc::new(Shared {
                counters: Counters::default(),
                latency: Sharded::new(32),
                ack_latency: Sharded::new(32),
                closing: AtomicBool::new(false),
                next_id: AtomicU64::new(0),
            }),
        })
    }

    async fn start_persister(&mut self) -> anyhow::Result<()> {
        let mut args = self.args("persister")?;
        args.push("persister".into());
        let mut command = Command::new(&self.env.server_bin);
        command.args(&args).env("RUST_LOG", "warn");
        let name = format!("{}-persister", self.tag);
        self.persister =
            Some(Proc::start(&name, command, &self.env.logs, "persister: topic", STARTUP).await?);
        Ok(())
    }

    async fn stored(&self, rooms: &[Room]) -> anyhow::Result<u64> {
        super::stored_in(&self.env, self.message_table().0, rooms).await
    }

    fn message_table(&self) -> (&'static str, &'static str) {
        ("messages", MESSAGE_COLUMNS)
    }

    fn env(&self) -> &Env {
        &self.env
    }
}

/// Every column of `messages`.
const MESSAGE_COLUMNS: &str =
    "id, group_id, room_offset, sender_id, sender_name, body, client_message_id, created_at";

struct Shared {
    counters: Counters,
    latency: Sharded,
    ack_latency: Sharded,
    closing: AtomicBool,
    /// Numbers every send's client_message_id (unique for the run).
    next_id: AtomicU64,
}

struct QcClient {
    requests: mpsc::Sender<v1::ChatRequest>,
    reader: tokio::task::JoinHandle<()>,
}

struct QcClients {
    urls: Vec<String>,
    clients: Vec<QcClient>,
    shared: Arc<Shared>,
}

/// Opens one client: its own connection, a `Chat` stream, `join`, and a task that reads
/// every event until the stream ends.
async fn open(
    url: String,
    token: String,
    group_id: String,
    number: usize,
    shared: Arc<Shared>,
) -> anyhow::Result<QcClient> {
    let channel = tonic::transport::Endpoint::from_shared(url.clone())?
        .connect_timeout(Duration::from_secs(30))
        .connect()
        .await
        .with_context(|| format!("cannot connect to {url}"))?;
    let (requests, rx) = mpsc::channel(4096);
    requests
        .send(v1::ChatRequest {
            kind: Some(chat_request::Kind::Join(chat_request::Join {
                group_id,
                since: None,
            })),
        })
        .await
        .expect("the stream is open");
    let mut request = tonic::Request::new(ReceiverStream::new(rx));
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    let mut responses = ChatServiceClient::new(channel)
        .max_decoding_message_size(usize::MAX)
        .chat(request)
        .await?
        .into_inner();
    match responses.message().await? {
        Some(v1::ChatResponse {
            event: Some(Event::Joined(_)),
        }) => {}
        other => bail!("expected joined, got {other:?}"),
    }
    let reader = tokio::spawn(async move {
        let c = &shared.counters;
        while let Ok(Some(response)) = responses.message().await {
            match response.event {
                Some(Event::Message(m)) => {
                    c.delivered.fetch_add(1, Ordering::Relaxed);
                    if let Some(t) = sent_at(&m.body) {
                        shared.latency.record(number, now_us().saturating_sub(t));
                    }
                }
                Some(Event::Ack(ack)) => {
                    c.acked.fetch_add(1, Ordering::Relaxed);
                    if let Some(t) = ack.message.as_ref().and_then(|m| sent_at(&m.body)) {
                        shared
                            .ack_latency
                            .record(number, now_us().saturating_sub(t));
                    }
                }
                Some(Event::SendRejected(_)) => {
                    c.failed.fetch_add(1, Ordering::Relaxed);
                }
                _ => {}
            }
        }
        if !shared.closing.load(Ordering::Relaxed) {
            c.disconnects.fetch_add(1, Ordering::Relaxed);
        }
    });
    Ok(QcClient { requests, reader })
}

#[async_trait::async_trait]
impl Clients for QcClients {
    async fn connect(
        &mut self,
        specs: &[ClientSpec],
        rooms: &[Room],
        concurrency: usize,
    ) -> anyhow::Result<()> {
        self.shared.closing.store(false, Ordering::Relaxed);
        let first = self.clients.len();
        let jobs: Vec<_> = specs
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                let room = &rooms[spec.room];
                (
                    self.urls[spec.node].clone(),
                    room.members[spec.member].token.clone(),
                    room.id.clone(),
                    first + i,
                )
            })
            .collect();
        let shared = self.shared.clone();
        let opened: Vec<QcClient> = futures::stream::iter(jobs)
            .map(|(url, token, room, number)| open(url, token, room, number, shared.clone()))
            .buffered(concurrency.max(1))
            .try_collect()
            .await?;
        self.clients.extend(opened);
        Ok(())
    }

    async fn send(
        &mut self,
        senders: &[usize],
        rate: f64,
        secs: f64,
        _ack: bool,
    ) -> anyhow::Result<u64> {
        if senders.is_empty() || rate <= 0.0 {
            return Ok(0);
        }
        let start = now_us();
        let end = start + (secs * 1e6) as u64;
        let mut sent = 0u64;
        let mut turn = 0usize;
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tick.tick().await;
            let t = now_us().min(end);
            let due = (((t - start) as f64 / 1e6) * rate) as u64;
            while sent < due {
                let client = &self.clients[senders[turn % senders.len()]];
                turn += 1;
                sent += 1;
                self.shared.counters.sent.fetch_add(1, Ordering::Relaxed);
                let request = v1::ChatRequest {
                    kind: Some(chat_request::Kind::Send(chat_request::Send {
                        client_message_id: format!(
                            "b{}",
                            self.shared.next_id.fetch_add(1, Ordering::Relaxed)
                        ),
                        body: body(now_us()),
                    })),
                };
                if client.requests.try_send(request).is_err() {
                    self.shared.counters.failed.fetch_add(1, Ordering::Relaxed);
                }
            }
            if t >= end {
                return Ok(sent);
            }
        }
    }

    async fn counts(&mut self) -> anyhow::Result<Counts> {
        Ok(self.shared.counters.get())
    }

    async fn take_stats(&mut self) -> anyhow::Result<Stats> {
        let counts = self.shared.counters.get();
        self.shared.counters.reset();
        Ok(Stats {
            counts,
            latency: self.shared.latency.take(),
            ack_latency: self.shared.ack_latency.take(),
        })
    }

    async fn close(&mut self) -> anyhow::Result<()> {
        self.shared.closing.store(true, Ordering::Relaxed);
        for client in self.clients.drain(..) {
            drop(client.requests);
            client.reader.abort();
        }
        Ok(())
    }
}

//! The Redis Streams relay of distributed mode: several server nodes share one Redis, each
//! with its own [`RedisRelay`].
//!
//! Keys (every one under the configurable prefix `P`, per room `G`):
//! - `P:room:G:meta`: hash with the room's `epoch` (a random string) and `offset` (the
//!   counter of the last offset handed out).
//! - `P:room:G:stream`: the room's messages, entry id `<offset>-0` (so stream ids *are*
//!   offsets), trimmed with `MAXLEN ~ window`; each entry carries its epoch.
//! - `P:room:G:dedupe`: sorted set `sender:client_message_id` → offset, trimmed to the window.
//! - `P:room:G:online` (participant → deadline), `P:room:G:names` (participant → name) and
//!   `P:room:G:presence:<participant>` (node → deadline): cluster-wide presence.
//! - `P:room:G:events`: the Pub/Sub channel of the room's ephemeral events.
//! - `P:node:<node>:wake`: a tiny per-node stream that interrupts the node's blocked reader.
//!
//! Publishing is one Lua script: dedupe check, `HINCRBY` of the counter, `XADD` with the
//! explicit id, trimming. A room without a counter (new, deleted, or lost by a Redis restart)
//! is initialised by another script, atomically with respect to other nodes: a new epoch is
//! drawn, so clients holding the old epoch are told their offsets no longer compare
//! (`Replay::EpochChanged`), and the counter is seeded past every offset the old epoch may
//! have handed out: the newest in the store or in the log's unstored tail ([`LogTail`]), plus
//! [`EPOCH_GAP`] for messages that were still on their way to the log.
//!
//! Each node runs three background tasks: one reader doing a blocking `XREAD` over every room
//! that has local subscribers (fanning entries out through a per-room broadcast channel), one
//! Pub/Sub listener for ephemeral events, and one heartbeat that refreshes this node's presence
//! entries and checks that every locally-read room still has the epoch its subscribers were
//! given (when it does not, they get [`RoomEvent::Reset`] and their feeds end).
//!
//! It needs one Redis server (standalone, or failed over by Sentinel), not a Redis Cluster:
//! one `XREAD` spans the streams of many rooms, and `close_room`'s script deletes presence
//! keys it derives from the room's. Redis may lose its state (no persistence): rooms are
//! re-seeded from the store with a new epoch, presence is re-written by the next heartbeat.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use chrono::{DateTime, SubsecRound, Utc};
use fred::prelude::{
    Builder, Client, ClientLike, Config, EventInterface, HashesInterface, LuaInterface,
    PubsubInterface, ReconnectPolicy, StreamsInterface, Value,
};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::BroadcastStream;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{Lagged, Published, RelayError, Replay, RoomRelay, Subscription};
use crate::log::LogTail;
use crate::room::{ChatMessage, MessageDraft, Participant, RoomEvent};
use crate::store::Store;

/// Longest a command on the shared connection may take before the caller gets
/// [`RelayError::Unavailable`] (e.g. while Redis is unreachable and the client reconnects).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest the reader blocks in one `XREAD` when nothing arrives. New rooms interrupt it
/// through the wake stream; this only bounds how late a room nobody reads any more is dropped.
const READ_BLOCK: Duration = Duration::from_secs(5);

/// Entries read per room and `XREAD` call.
const READ_COUNT: u64 = 512;

/// Pauses of the reader and the Pub/Sub listener after a failure, doubling up to the maximum.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// How long an unused wake stream stays in Redis.
const WAKE_TTL_MS: u64 = 600_000;

/// Stripes of the presence write locks (see `Inner::presence_writes`).
const PRESENCE_STRIPES: usize = 64;

/// How far past the newest stored or logged offset a room restarts after Redis lost its
/// state: room for the old epoch's messages that were between the relay and the log when it
/// happened (a send waits for the log at most the produce timeout, at most 20 a second per
/// sender). Offsets skip at an epoch change; clients holding the old epoch are told to
/// reload, and history pages by offset ranges, which a skip does not disturb.
pub const EPOCH_GAP: u64 = 1_000;

/// Presence commands run concurrently by one heartbeat.
const HEARTBEAT_CONCURRENCY: usize = 32;

/// How a node keeps its presence entries alive: it refreshes them every `refresh`, and
/// entries not refreshed for `ttl` (the node died without cleaning up) disappear.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresenceTiming {
    /// Interval of the heartbeat that refreshes this node's entries (and re-checks the epochs
    /// of the rooms it reads).
    pub refresh: Duration,
    /// Lifetime of an entry that is not refreshed; should be a few `refresh` intervals.
    pub ttl: Duration,
}

impl Default for PresenceTiming {
    fn default() -> Self {
        Self {
            refresh: Duration::from_secs(10),
            ttl: Duration::from_secs(30),
        }
    }
}

/// The cluster room relay on Redis Streams; see the [module documentation](self).
pub struct RedisRelay {
    inner: Arc<Inner>,
    shutdown: CancellationToken,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

struct Inner {
    /// Commands and scripts (pipelined by fred).
    client: Client,
    /// Dedicated to the blocking `XREAD`.
    reader: Client,
    /// Dedicated to the Pub/Sub pattern subscription.
    pubsub: Client,
    keys: Keys,
    /// This node's id in presence entries and its wake stream.
    node_id: String,
    window: usize,
    feed_capacity: usize,
    store: Store,
    /// The message log's unstored tail, when the log is not the store itself.
    log_tail: std::sync::OnceLock<Arc<dyn LogTail>>,
    presence: PresenceTiming,
    scripts: Scripts,
    /// What `describe` shows: the URL without its password.
    display_url: String,
    /// Rooms with subscribers on this node.
    rooms: Mutex<HashMap<Uuid, LocalRoom>>,
    /// Open streams of each participant on this node, per room.
    local_presence: Mutex<HashMap<(Uuid, Uuid), (Participant, usize)>>,
    /// Held (the stripe of one participant in one room) while this node writes that
    /// participant's presence to Redis, so that a heartbeat's refresh can never land after
    /// a leave it did not see and put them back online (a ghost until the ttl; found when
    /// the conformance suite ran multi-threaded). Striped so that one slow write holds up
    /// only its stripe, and the heartbeat still refreshes many entries at once.
    presence_writes: Vec<tokio::sync::Mutex<()>>,
}

/// A room read by this node.
struct LocalRoom {
    /// The epoch its subscribers were given.
    epoch: String,
    /// Offset of the last message sent on `feed` (or the head when the room was opened).
    cursor: u64,
    feed: broadcast::Sender<RoomEvent>,
}

struct Keys {
    prefix: String,
}

impl Keys {
    fn room(&self, group_id: Uuid, part: &str) -> String {
        format!("{}:room:{group_id}:{part}", self.prefix)
    }

    fn meta(&self, group_id: Uuid) -> String {
        self.room(group_id, "meta")
    }

    fn stream(&self, group_id: Uuid) -> String {
        self.room(group_id, "stream")
    }

    fn dedupe(&self, group_id: Uuid) -> String {
        self.room(group_id, "dedupe")
    }

    fn events(&self, group_id: Uuid) -> String {
        self.room(group_id, "events")
    }

    fn online(&self, group_id: Uuid) -> String {
        self.room(group_id, "online")
    }

    fn names(&self, group_id: Uuid) -> String {
        self.room(group_id, "names")
    }

    /// Prefix of the per-participant presence keys, completed with the participant id.
    fn presence_prefix(&self, group_id: Uuid) -> String {
        self.room(group_id, "presence:")
    }

    fn presence(&self, group_id: Uuid, participant: Uuid) -> String {
        format!("{}{participant}", self.presence_prefix(group_id))
    }

    fn wake(&self, node_id: &str) -> String {
        format!("{}:node:{node_id}:wake", self.prefix)
    }

    /// The pattern matching every room's events channel, with glob characters of the prefix
    /// escaped.
    fn events_pattern(&self) -> String {
        let mut escaped = String::with_capacity(self.prefix.len());
        for c in self.prefix.chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                escaped.push('\\');
            }
            escaped.push(c);
        }
        format!("{escaped}:room:*:events")
    }

    /// The room of an events channel.
    fn group_of_channel(&self, channel: &str) -> Option<Uuid> {
        let rest = channel.strip_prefix(&self.prefix)?.strip_prefix(":room:")?;
        Uuid::parse_str(rest.strip_suffix(":events")?).ok()
    }
}

/// A Lua script and the SHA1 digest Redis knows it by.
struct Script {
    body: String,
    sha: String,
}

struct Scripts {
    publish: Script,
    init: Script,
    replay: Script,
    touch: Script,
    leave: Script,
    online: Script,
    close: Script,
    wake: Script,
}

/// Milliseconds of the Redis clock, so every node expires presence by the same clock.
const NOW_MS: &str = r#"
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
"#;

/// KEYS: meta, stream, dedupe. ARGV: window, dedupe member ('' for none), then the entry's
/// field/value pairs. Returns {'uninit'}, {'dup', epoch, entry} or {'new', epoch, offset}.
const PUBLISH: &str = r#"
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then return {'uninit'} end
local window = tonumber(ARGV[1])
if ARGV[2] ~= '' then
  local previous = redis.call('ZSCORE', KEYS[3], ARGV[2])
  if previous then
    local id = string.format('%d-0', tonumber(previous))
    local found = redis.call('XRANGE', KEYS[2], id, id)
    if #found > 0 then return {'dup', epoch, found[1]} end
  end
end
local offset = redis.call('HINCRBY', KEYS[1], 'offset', 1)
redis.call('XADD', KEYS[2], 'MAXLEN', '~', window, string.format('%d-0', offset),
  'epoch', epoch, unpack(ARGV, 3))
if ARGV[2] ~= '' then redis.call('ZADD', KEYS[3], offset, ARGV[2]) end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', offset - window)
return {'new', epoch, offset}
"#;

/// KEYS: meta, stream, dedupe. ARGV: seed offset, new epoch. Initialises the room unless
/// another node already has; returns {epoch, offset, 1 if this call initialised it}.
const INIT: &str = r#"
local existing = redis.call('HMGET', KEYS[1], 'epoch', 'offset')
if existing[1] then return {existing[1], existing[2], 0} end
redis.call('DEL', KEYS[2], KEYS[3])
redis.call('HSET', KEYS[1], 'epoch', ARGV[2], 'offset', ARGV[1])
return {ARGV[2], ARGV[1], 1}
"#;

/// KEYS: meta, stream. ARGV: epoch, after, up_to, window. Returns false when the epoch
/// differs, else {first offset held, entries with after < offset <= up_to}.
const REPLAY: &str = r#"
local meta = redis.call('HMGET', KEYS[1], 'epoch', 'offset')
if meta[1] ~= ARGV[1] then return false end
local last = tonumber(meta[2])
local first = last + 1
local oldest = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)
if #oldest > 0 then first = tonumber(string.match(oldest[1][1], '^(%d+)')) end
local floor = last - tonumber(ARGV[4]) + 1
if floor > first then first = floor end
local from = tonumber(ARGV[2]) + 1
if first > from then from = first end
local to = tonumber(ARGV[3])
local entries = {}
if from <= to then
  entries = redis.call('XRANGE', KEYS[2], string.format('%d-0', from), string.format('%d-0', to))
end
return {first, entries}
"#;

/// KEYS: presence(participant), online, names. ARGV: participant, node, ttl ms, name.
/// Marks the participant online on this node until now + ttl; returns 1 when no other node
/// has them online.
const TOUCH: &str = r#"
local ttl = tonumber(ARGV[3])
local deadline = now + ttl
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local others = redis.call('ZCARD', KEYS[1])
if redis.call('ZSCORE', KEYS[1], ARGV[2]) then others = others - 1 end
redis.call('ZADD', KEYS[1], deadline, ARGV[2])
redis.call('ZADD', KEYS[2], 'GT', deadline, ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[4])
for _, key in ipairs(KEYS) do
  if redis.call('PTTL', key) < ttl then redis.call('PEXPIRE', key, ttl) end
end
if others == 0 then return 1 end
return 0
"#;

/// KEYS: presence(participant), online, names. ARGV: participant, node. Returns 1 when the
/// participant is no longer online on any node.
const LEAVE: &str = r#"
redis.call('ZREM', KEYS[1], ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) > 0 then return 0 end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
return 1
"#;

/// KEYS: online, names. Drops expired participants; returns {id, name, id, name, …}.
const ONLINE: &str = r#"
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
for i = 1, #gone, 500 do
  redis.call('HDEL', KEYS[2], unpack(gone, i, math.min(i + 499, #gone)))
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local ids = redis.call('ZRANGE', KEYS[1], 0, -1)
local out = {}
for i = 1, #ids, 500 do
  local last = math.min(i + 499, #ids)
  local names = redis.call('HMGET', KEYS[2], unpack(ids, i, last))
  for j = i, last do
    out[#out + 1] = ids[j]
    out[#out + 1] = names[j - i + 1] or ''
  end
end
return out
"#;

/// KEYS: meta, stream, dedupe, online, names. ARGV: prefix of the per-participant presence
/// keys. Forgets the room.
const CLOSE: &str = r#"
local ids = redis.call('ZRANGE', KEYS[4], 0, -1)
for _, id in ipairs(ids) do redis.call('DEL', ARGV[1] .. id) end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5])
return 1
"#;

/// KEYS: wake stream. ARGV: ttl ms. Interrupts the node's blocked `XREAD`.
const WAKE: &str = r#"
redis.call('XADD', KEYS[1], 'MAXLEN', '1', '*', 'wake', '1')
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
"#;

/// Ephemeral events as they travel over Pub/Sub.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum WireEvent {
    Typing { id: Uuid, name: String },
    MemberJoined { id: Uuid, name: String },
    MemberLeft { id: Uuid, name: String },
    Closed,
    Reset,
}

impl WireEvent {
    fn from_event(event: &RoomEvent) -> Option<Self> {
        let p = |p: &Participant| (p.id, p.name.clone());
        Some(match event {
            RoomEvent::Typing(who) => {
                let (id, name) = p(who);
                WireEvent::Typing { id, name }
            }
            RoomEvent::MemberJoined(who) => {
                let (id, name) = p(who);
                WireEvent::MemberJoined { id, name }
            }
            RoomEvent::MemberLeft(who) => {
                let (id, name) = p(who);
                WireEvent::MemberLeft { id, name }
            }
            RoomEvent::Closed => WireEvent::Closed,
            RoomEvent::Reset => WireEvent::Reset,
            RoomEvent::Message(_) => return None,
        })
    }

    fn into_event(self) -> RoomEvent {
        match self {
            WireEvent::Typing { id, name } => RoomEvent::Typing(Participant { id, name }),
            WireEvent::MemberJoined { id, name } => {
                RoomEvent::MemberJoined(Participant { id, name })
            }
            WireEvent::MemberLeft { id, name } => RoomEvent::MemberLeft(Participant { id, name }),
            WireEvent::Closed => RoomEvent::Closed,
            WireEvent::Reset => RoomEvent::Reset,
        }
    }
}

fn unavailable(err: fred::error::Error) -> RelayError {
    RelayError::Unavailable(err.to_string())
}

fn malformed(what: &str) -> RelayError {
    RelayError::Internal(anyhow::anyhow!("unexpected reply from redis: {what}"))
}

/// `url` without its password, for logs and `describe`.
fn display_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(None);
            }
            parsed.to_string().trim_end_matches('/').to_owned()
        }
        Err(_) => "redis (unparsable url)".to_owned(),
    }
}

/// A fred client with this relay's policies: reconnect forever with exponential backoff,
/// never re-send a command after a connection loss (a publish script must not run twice),
/// name the connections after the client (visible in `CLIENT LIST`).
fn build_client(
    config: &Config,
    command_timeout: Duration,
    events: usize,
) -> anyhow::Result<Client> {
    let mut builder = Builder::from_config(config.clone());
    builder
        .set_policy(ReconnectPolicy::new_exponential(0, 100, 5_000, 2))
        .with_connection_config(|connection| {
            connection.max_command_attempts = 1;
            connection.auto_client_setname = true;
            connection.connection_timeout = Duration::from_secs(5);
            connection.internal_command_timeout = Duration::from_secs(5);
        })
        .with_performance_config(|performance| {
            performance.default_command_timeout = command_timeout;
            performance.broadcast_channel_capacity = events;
        });
    builder.build().context("building the redis client")
}

impl RedisRelay {
    /// Seeds rooms that lost their state past `tail` too (see [`EPOCH_GAP`]); without it,
    /// past the store's newest offset.
    pub fn with_log_tail(self, tail: Arc<dyn LogTail>) -> Self {
        let _ = self.inner.log_tail.set(tail);
        self
    }

    /// [`RedisRelay::with_log_tail`] with the Kafka log at `brokers`, if there is one.
    pub fn with_tail_of(
        self,
        brokers: Option<&str>,
        cluster: &crate::settings::ClusterSettings,
    ) -> Self {
        match brokers {
            Some(brokers) => self.with_log_tail(Arc::new(crate::log::kafka::tail::KafkaTail::new(
                brokers, cluster,
            ))),
            None => self,
        }
    }

    /// Connects to Redis at `url` and starts this node's background tasks.
    ///
    /// `key_prefix` starts every key; `window`: messages kept per room for replay (older
    /// ranges come from `store`, which also seeds a room's counter when Redis has none);
    /// `feed_capacity`: events a local subscriber may fall behind before it is dropped as
    /// lagging; `presence`: heartbeat timing of this node's presence entries.
    pub async fn connect(
        url: &str,
        key_prefix: &str,
        window: usize,
        feed_capacity: usize,
        store: Store,
        presence: PresenceTiming,
    ) -> anyhow::Result<Self> {
        anyhow::ensure!(
            presence.refresh > Duration::ZERO && presence.ttl > presence.refresh,
            "the presence ttl must be longer than its refresh interval"
        );
        let config = Config::from_url(url).context("parsing the redis url")?;
        let feed_capacity = feed_capacity.max(1);
        let client = build_client(&config, COMMAND_TIMEOUT, 32)?;
        let reader = build_client(&config, READ_BLOCK + COMMAND_TIMEOUT, 32)?;
        let pubsub = build_client(&config, COMMAND_TIMEOUT, feed_capacity.max(256))?;
        for c in [&client, &reader, &pubsub] {
            c.init()
                .await
                .with_context(|| format!("connecting to redis at {}", display_url(url)))?;
        }
        let load = |body: String| {
            let client = client.clone();
            async move {
                let sha: String = client
                    .script_load(body.as_str())
                    .await
                    .context("loading a relay script into redis")?;
                anyhow::Ok(Script { body, sha })
            }
        };
        let scripts = Scripts {
            publish: load(PUBLISH.to_owned()).await?,
            init: load(INIT.to_owned()).await?,
            replay: load(REPLAY.to_owned()).await?,
            touch: load(format!("{NOW_MS}{TOUCH}")).await?,
            leave: load(format!("{NOW_MS}{LEAVE}")).await?,
            online: load(format!("{NOW_MS}{ONLINE}")).await?,
            close: load(CLOSE.to_owned()).await?,
            wake: load(WAKE.to_owned()).await?,
        };
        let inner = Arc::new(Inner {
            client,
            reader,
            pubsub,
            keys: Keys {
                prefix: key_prefix.to_owned(),
            },
            node_id: Uuid::new_v4().simple().to_string(),
            window: window.max(1),
            feed_capacity,
            store,
            log_tail: std::sync::OnceLock::new(),
            presence,
            scripts,
            display_url: display_url(url),
            rooms: Mutex::new(HashMap::new()),
            local_presence: Mutex::new(HashMap::new()),
            presence_writes: (0..PRESENCE_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
        });
        // Subscribed before `connect` returns, so that no event published after a
        // subscription opens can be missed.
        inner
            .pubsub
            .psubscribe(inner.keys.events_pattern())
            .await
            .context("subscribing to the rooms' events")?;
        let shutdown = CancellationToken::new();
        let tasks = vec![
            tokio::spawn(run_reader(inner.clone(), shutdown.clone())),
            tokio::spawn(run_listener(inner.clone(), shutdown.clone())),
            tokio::spawn(run_heartbeat(inner.clone(), shutdown.clone())),
        ];
        tracing::info!(url = %inner.display_url, prefix = %key_prefix, node = %inner.node_id, "redis relay connected");
        Ok(Self {
            inner,
            shutdown,
            tasks: Mutex::new(tasks),
        })
    }

    /// Stops the background tasks and closes the connections. Local feeds end; this node's
    /// presence entries are left to expire (the streams that own them leave on their own).
    pub async fn close(&self) {
        self.shutdown.cancel();
        let tasks = std::mem::take(&mut *self.tasks.lock().expect("relay tasks lock poisoned"));
        for task in tasks {
            let _ = task.await;
        }
        self.inner
            .rooms
            .lock()
            .expect("relay lock poisoned")
            .clear();
        self.inner.quit().await;
    }
}

impl Drop for RedisRelay {
    fn drop(&mut self) {
        self.shutdown.cancel();
        let clients = [
            self.inner.client.clone(),
            self.inner.reader.clone(),
            self.inner.pubsub.clone(),
        ];
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                for client in clients {
                    let _ = tokio::time::timeout(Duration::from_secs(1), client.quit()).await;
                }
            });
        }
    }
}

impl Inner {
    async fn quit(&self) {
        for client in [&self.client, &self.reader, &self.pubsub] {
            // The reader may still be blocked in an `XREAD`: do not wait for it.
            let _ = tokio::time::timeout(Duration::from_secs(1), client.quit()).await;
        }
    }

    /// Runs `script`, loading it again if Redis lost its script cache (a restart).
    async fn eval(
        &self,
        script: &Script,
        keys: Vec<String>,
        args: Vec<String>,
    ) -> Result<Value, fred::error::Error> {
        match self
            .client
            .evalsha::<Value, _, _, _>(script.sha.as_str(), keys.clone(), args.clone())
            .await
        {
            Err(err) if err.details().starts_with("NOSCRIPT") => {
                self.client.eval(script.body.as_str(), keys, args).await
            }
            other => other,
        }
    }

    /// The room's epoch and last offset, initialising the room if Redis has no state for it.
    async fn room_state(&self, group_id: Uuid) -> Result<(String, u64), RelayError> {
        let meta: Vec<Option<String>> = self
            .client
            .hmget(self.keys.meta(group_id), vec!["epoch", "offset"])
            .await
            .map_err(unavailable)?;
        match meta.as_slice() {
            [Some(epoch), Some(offset)] => Ok((
                epoch.clone(),
                offset.parse().map_err(|_| malformed("room offset"))?,
            )),
            _ => self.init_room(group_id).await,
        }
    }

    /// Creates the room's counter and a new epoch, unless another node just did: then the
    /// winner's state is returned. A room that has messages (Redis lost its state) starts
    /// [`EPOCH_GAP`] past the newest one in the store or the log: messages of the old epoch
    /// can still be on their way to the log, and a new message must never take the offset of
    /// one that will be acked.
    async fn init_room(&self, group_id: Uuid) -> Result<(String, u64), RelayError> {
        let stored = self
            .store
            .last_offset(group_id)
            .await
            .map_err(anyhow::Error::from)?;
        let logged = match self.log_tail.get() {
            Some(tail) => tail.last_offset(group_id).await.map_err(|err| {
                RelayError::Unavailable(format!("cannot read the message log's tail: {err:#}"))
            })?,
            None => 0,
        };
        let newest = stored.max(logged);
        let seed = if newest == 0 { 0 } else { newest + EPOCH_GAP };
        let epoch = Uuid::new_v4().simple().to_string();
        let reply = self
            .eval(
                &self.scripts.init,
                vec![
                    self.keys.meta(group_id),
                    self.keys.stream(group_id),
                    self.keys.dedupe(group_id),
                ],
                vec![seed.to_string(), epoch],
            )
            .await
            .map_err(unavailable)?;
        let [epoch, offset, created] = array::<3>(reply).ok_or_else(|| malformed("room init"))?;
        let epoch = epoch.as_string().ok_or_else(|| malformed("room epoch"))?;
        let offset = offset.as_u64().ok_or_else(|| malformed("room offset"))?;
        if created.as_u64() == Some(1) {
            tracing::info!(%group_id, %epoch, offset, "room state initialised");
        }
        Ok((epoch, offset))
    }

    /// Ends the local feeds of `group_id` if they were given an epoch other than `epoch`.
    fn forget_stale_room(&self, group_id: Uuid, epoch: Option<&str>) {
        let mut rooms = self.rooms.lock().expect("relay lock poisoned");
        if let Some(room) = rooms.get(&group_id)
            && Some(room.epoch.as_str()) != epoch
        {
            tracing::info!(%group_id, old_epoch = %room.epoch, new_epoch = ?epoch, "room epoch changed; ending local feeds");
            reset_room(&mut rooms, group_id);
        }
    }

    /// Interrupts the reader's blocked `XREAD` so it picks up a new room.
    async fn wake_reader(&self) -> Result<(), fred::error::Error> {
        self.eval(
            &self.scripts.wake,
            vec![self.keys.wake(&self.node_id)],
            vec![WAKE_TTL_MS.to_string()],
        )
        .await
        .map(drop)
    }

    /// What the reader reads next: each locally-subscribed room's stream from its cursor, and
    /// the wake stream. Rooms without subscribers left are dropped here.
    fn read_set(&self, wake_cursor: &str) -> (Vec<String>, Vec<String>, HashMap<String, Uuid>) {
        let mut rooms = self.rooms.lock().expect("relay lock poisoned");
        rooms.retain(|group_id, room| {
            let keep = room.feed.receiver_count() > 0;
            if !keep {
                tracing::debug!(%group_id, "last local subscriber left; no longer reading the room");
            }
            keep
        });
        let mut keys = Vec::with_capacity(rooms.len() + 1);
        let mut ids = Vec::with_capacity(rooms.len() + 1);
        let mut streams = HashMap::with_capacity(rooms.len());
        for (group_id, room) in rooms.iter() {
            let key = self.keys.stream(*group_id);
            keys.push(key.clone());
            ids.push(format!("{}-0", room.cursor));
            streams.insert(key, *group_id);
        }
        keys.push(self.keys.wake(&self.node_id));
        ids.push(wake_cursor.to_owned());
        (keys, ids, streams)
    }

    /// Fans the entries of one `XREAD` reply out to the local feeds; returns the new wake
    /// cursor if the wake stream had entries.
    fn deliver(&self, reply: Value, streams: &HashMap<String, Uuid>) -> Option<String> {
        let mut wake_cursor = None;
        let mut rooms = self.rooms.lock().expect("relay lock poisoned");
        for (key, entries) in xread_streams(reply) {
            let Some(&group_id) = streams.get(&key) else {
                if let Some(last) = entries.last().and_then(entry_id) {
                    wake_cursor = Some(last);
                }
                continue;
            };
            let Some(room) = rooms.get_mut(&group_id) else {
                continue;
            };
            for entry in entries {
                let Some((offset, fields)) = parse_entry(entry) else {
                    tracing::warn!(%group_id, "skipping a malformed stream entry");
                    continue;
                };
                if offset <= room.cursor {
                    continue;
                }
                if fields.get("epoch").map(String::as_str) != Some(room.epoch.as_str()) {
                    tracing::info!(%group_id, old_epoch = %room.epoch, "room epoch changed; ending local feeds");
                    reset_room(&mut rooms, group_id);
                    break;
                }
                if offset != room.cursor + 1 {
                    // Trimmed before this node read it: the hub fills the gap or ends the
                    // stream.
                    tracing::warn!(%group_id, after = room.cursor, offset, "room feed skipped offsets");
                }
                room.cursor = offset;
                match decode_message(group_id, offset, &fields) {
                    Some(message) => {
                        let _ = room.feed.send(RoomEvent::Message(Arc::new(message)));
                    }
                    None => tracing::warn!(%group_id, offset, "skipping an undecodable message"),
                }
            }
        }
        wake_cursor
    }

    /// Delivers one Pub/Sub event to the room's local subscribers.
    fn on_event(&self, channel: &str, payload: Option<String>) {
        let Some(group_id) = self.keys.group_of_channel(channel) else {
            return;
        };
        let event = match payload.as_deref().map(serde_json::from_str::<WireEvent>) {
            Some(Ok(event)) => event.into_event(),
            _ => {
                tracing::warn!(%group_id, "ignoring a malformed room event");
                return;
            }
        };
        let mut rooms = self.rooms.lock().expect("relay lock poisoned");
        if let Some(room) = rooms.get(&group_id) {
            let _ = room.feed.send(event.clone());
            if event == RoomEvent::Closed {
                rooms.remove(&group_id);
            }
        }
    }

    async fn touch(&self, group_id: Uuid, who: &Participant) -> Result<bool, fred::error::Error> {
        let reply = self
            .eval(
                &self.scripts.touch,
                vec![
                    self.keys.presence(group_id, who.id),
                    self.keys.online(group_id),
                    self.keys.names(group_id),
                ],
                vec![
                    who.id.to_string(),
                    self.node_id.clone(),
                    self.presence.ttl.as_millis().to_string(),
                    who.name.clone(),
                ],
            )
            .await?;
        Ok(reply.as_u64() == Some(1))
    }

    /// The lock for writing `who`'s presence in `group_id`.
    fn presence_lock(&self, group_id: Uuid, who: Uuid) -> &tokio::sync::Mutex<()> {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (group_id, who).hash(&mut hasher);
        &self.presence_writes[hasher.finish() as usize % self.presence_writes.len()]
    }

    /// Refreshes this node's presence entries. Each is re-checked under its lock: one that
    /// left since the list was taken is not written back.
    async fn heartbeat(&self) {
        let entries: Vec<(Uuid, Participant)> = self
            .local_presence
            .lock()
            .expect("presence lock poisoned")
            .iter()
            .map(|((group_id, _), (who, _))| (*group_id, who.clone()))
            .collect();
        let failures = futures::stream::iter(entries)
            .map(|(group_id, who)| async move {
                let _write = self.presence_lock(group_id, who.id).lock().await;
                let still_here = self
                    .local_presence
                    .lock()
                    .expect("presence lock poisoned")
                    .contains_key(&(group_id, who.id));
                if !still_here {
                    return None;
                }
                self.touch(group_id, &who).await.err()
            })
            .buffer_unordered(HEARTBEAT_CONCURRENCY)
            .filter_map(|failed| async move { failed })
            .collect::<Vec<_>>()
            .await;
        if let Some(err) = failures.first() {
            tracing::warn!(error = %err, failed = failures.len(), "presence heartbeat failed");
        }
    }

    /// Ends the local feeds of every room whose epoch in Redis is not the one its subscribers
    /// were given (Redis lost the room, or it was re-initialised meanwhile).
    async fn verify_epochs(&self) {
        let rooms: Vec<(Uuid, String)> = self
            .rooms
            .lock()
            .expect("relay lock poisoned")
            .iter()
            .map(|(group_id, room)| (*group_id, room.epoch.clone()))
            .collect();
        let checks = futures::stream::iter(rooms)
            .map(|(group_id, epoch)| async move {
                let current = self
                    .client
                    .hget::<Option<String>, _, _>(self.keys.meta(group_id), "epoch")
                    .await;
                (group_id, epoch, current)
            })
            .buffer_unordered(HEARTBEAT_CONCURRENCY)
            .collect::<Vec<_>>()
            .await;
        let mut failed = 0usize;
        for (group_id, epoch, current) in checks {
            match current {
                Ok(current) if current.as_deref() != Some(epoch.as_str()) => {
                    let mut rooms = self.rooms.lock().expect("relay lock poisoned");
                    if rooms.get(&group_id).is_some_and(|room| room.epoch == epoch) {
                        tracing::info!(%group_id, old_epoch = %epoch, new_epoch = ?current, "room epoch changed; ending local feeds");
                        reset_room(&mut rooms, group_id);
                    }
                }
                Ok(_) => {}
                Err(err) => {
                    failed += 1;
                    if failed == 1 {
                        tracing::warn!(%group_id, error = %err, "could not check a room's epoch");
                    }
                }
            }
        }
        if failed > 1 {
            tracing::warn!(failed, "could not check the epochs of several rooms");
        }
    }
}

/// Ends the local feeds of a room whose epoch changed: its subscribers get
/// [`RoomEvent::Reset`], then the end of the feed.
fn reset_room(rooms: &mut HashMap<Uuid, LocalRoom>, group_id: Uuid) {
    if let Some(room) = rooms.remove(&group_id) {
        let _ = room.feed.send(RoomEvent::Reset);
    }
}

/// The background reader: one blocking `XREAD` at a time over every room with local
/// subscribers (plus the wake stream), re-issued whenever it returns.
async fn run_reader(inner: Arc<Inner>, shutdown: CancellationToken) {
    let mut wake_cursor = "0-0".to_owned();
    let mut backoff = MIN_BACKOFF;
    loop {
        let (keys, ids, streams) = inner.read_set(&wake_cursor);
        let read = inner.reader.xread::<Value, _, _>(
            Some(READ_COUNT),
            Some(READ_BLOCK.as_millis() as u64),
            keys,
            ids,
        );
        let reply = tokio::select! {
            _ = shutdown.cancelled() => return,
            reply = read => reply,
        };
        match reply {
            Ok(reply) => {
                backoff = MIN_BACKOFF;
                if let Some(cursor) = inner.deliver(reply, &streams) {
                    wake_cursor = cursor;
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, retry_in_ms = backoff.as_millis() as u64, "room reader failed; retrying");
                if !back_off(&mut backoff, &shutdown).await {
                    return;
                }
            }
        }
    }
}

/// Waits `backoff` (doubled for next time, up to [`MAX_BACKOFF`]); false if shutdown came
/// first.
async fn back_off(backoff: &mut Duration, shutdown: &CancellationToken) -> bool {
    let wait = *backoff;
    *backoff = (wait * 2).min(MAX_BACKOFF);
    tokio::select! {
        _ = shutdown.cancelled() => false,
        _ = tokio::time::sleep(wait) => true,
    }
}

/// The Pub/Sub listener.
///
/// It holds one pattern subscription (`P:room:*:events`) for the node's whole life and drops
/// events of rooms without local subscribers, rather than one channel per locally-read room:
/// ephemeral events are small and rate-limited, a subscription that never changes cannot
/// race with a room being opened and dropped at the same time (an `UNSUBSCRIBE` for the old
/// feed overtaking the `SUBSCRIBE` for the new one), opening a feed costs no round trip, and
/// after a reconnect there is exactly one thing to re-subscribe.
async fn run_listener(inner: Arc<Inner>, shutdown: CancellationToken) {
    let mut messages = inner.pubsub.message_rx();
    let mut reconnects = inner.pubsub.reconnect_rx();
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            message = messages.recv() => match message {
                Ok(message) => inner.on_event(&message.channel, message.value.as_string()),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "room events listener lagged; ephemeral events lost");
                }
                Err(broadcast::error::RecvError::Closed) => {
                    // The client was shut down: wait for the shutdown signal, or for a
                    // new stream.
                    tokio::time::sleep(MIN_BACKOFF).await;
                    messages = inner.pubsub.message_rx();
                }
            },
            reconnected = reconnects.recv() => {
                if let Err(broadcast::error::RecvError::Closed) = reconnected {
                    tokio::time::sleep(MIN_BACKOFF).await;
                    reconnects = inner.pubsub.reconnect_rx();
                    continue;
                }
                resubscribe(&inner, &shutdown).await;
            }
        }
    }
}

/// Subscribes the pattern again after the Pub/Sub connection came back, until it succeeds.
async fn resubscribe(inner: &Inner, shutdown: &CancellationToken) {
    let mut backoff = MIN_BACKOFF;
    loop {
        match inner.pubsub.psubscribe(inner.keys.events_pattern()).await {
            Ok(()) => {
                tracing::info!("room events subscription restored");
                return;
            }
            Err(err) => {
                tracing::warn!(error = %err, retry_in_ms = backoff.as_millis() as u64, "could not restore the room events subscription; retrying");
                if !back_off(&mut backoff, shutdown).await {
                    return;
                }
            }
        }
    }
}

/// The heartbeat: refreshes this node's presence entries and re-checks room epochs.
async fn run_heartbeat(inner: Arc<Inner>, shutdown: CancellationToken) {
    let mut ticks = tokio::time::interval(inner.presence.refresh);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        inner.heartbeat().await;
        inner.verify_epochs().await;
    }
}

/// The `N` elements of an array reply.
fn array<const N: usize>(value: Value) -> Option<[Value; N]> {
    match value {
        Value::Array(values) => values.try_into().ok(),
        _ => None,
    }
}

/// The offset of a stream entry id `<offset>-<seq>`.
fn offset_of(id: &str) -> Option<u64> {
    id.split_once('-').map_or(id, |(ms, _)| ms).parse().ok()
}

fn entry_id(entry: &Value) -> Option<String> {
    match entry {
        Value::Array(parts) => parts.first().and_then(Value::as_string),
        _ => None,
    }
}

/// A stream entry `[id, [field, value, …]]` as its offset and fields.
fn parse_entry(entry: Value) -> Option<(u64, HashMap<String, String>)> {
    let [id, fields] = array::<2>(entry)?;
    let offset = offset_of(&id.as_string()?)?;
    let pairs = match fields {
        Value::Array(values) => values,
        Value::Map(map) => map
            .inner()
            .into_iter()
            .flat_map(|(k, v)| [k.as_str().map(Value::from).unwrap_or(Value::Null), v])
            .collect(),
        _ => return None,
    };
    let mut fields = HashMap::with_capacity(pairs.len() / 2);
    let mut pairs = pairs.into_iter();
    while let (Some(k), Some(v)) = (pairs.next(), pairs.next()) {
        fields.insert(k.as_string()?, v.as_string()?);
    }
    Some((offset, fields))
}

/// The streams of an `XREAD` reply (RESP2 array or RESP3 map), each with its entries.
fn xread_streams(reply: Value) -> Vec<(String, Vec<Value>)> {
    let pairs: Vec<(Value, Value)> = match reply {
        Value::Array(streams) => streams
            .into_iter()
            .filter_map(|stream| array::<2>(stream).map(|[k, v]| (k, v)))
            .collect(),
        Value::Map(map) => map
            .inner()
            .into_iter()
            .filter_map(|(k, v)| Some((Value::String(k.as_str()?.into()), v)))
            .collect(),
        _ => Vec::new(),
    };
    pairs
        .into_iter()
        .filter_map(|(key, entries)| match entries {
            Value::Array(entries) => Some((key.as_string()?, entries)),
            _ => None,
        })
        .collect()
}

/// The stream entry fields of a message (the epoch is added by the publish script).
fn encode_message(draft: &MessageDraft) -> Vec<String> {
    vec![
        "id".into(),
        draft.id.to_string(),
        "sender".into(),
        draft.sender_id.to_string(),
        "name".into(),
        draft.sender_name.clone(),
        "body".into(),
        draft.body.clone(),
        "cmid".into(),
        draft.client_message_id.clone(),
        "at".into(),
        draft.created_at.timestamp_micros().to_string(),
    ]
}

fn decode_message(
    group_id: Uuid,
    offset: u64,
    fields: &HashMap<String, String>,
) -> Option<ChatMessage> {
    let field = |name: &str| fields.get(name);
    Some(ChatMessage {
        id: Uuid::parse_str(field("id")?).ok()?,
        group_id,
        offset,
        sender_id: Uuid::parse_str(field("sender")?).ok()?,
        sender_name: field("name")?.clone(),
        body: field("body")?.clone(),
        client_message_id: field("cmid")?.clone(),
        created_at: DateTime::<Utc>::from_timestamp_micros(field("at")?.parse().ok()?)?,
        wire: Default::default(),
    })
}

#[async_trait]
impl RoomRelay for RedisRelay {
    async fn close(&self) {
        RedisRelay::close(self).await
    }

    fn describe(&self) -> String {
        format!(
            "Redis Streams at {} (window {} per room)",
            self.inner.display_url, self.inner.window
        )
    }

    async fn publish(&self, mut draft: MessageDraft) -> Result<Published, RelayError> {
        let inner = &self.inner;
        let group_id = draft.group_id;
        // What the stream keeps, so that the returned message equals the replayed one.
        draft.created_at = draft.created_at.trunc_subsecs(6);
        let dedupe = if draft.client_message_id.is_empty() {
            String::new()
        } else {
            format!("{}:{}", draft.sender_id, draft.client_message_id)
        };
        let keys = vec![
            inner.keys.meta(group_id),
            inner.keys.stream(group_id),
            inner.keys.dedupe(group_id),
        ];
        let mut args = vec![inner.window.to_string(), dedupe];
        args.extend(encode_message(&draft));
        // A room lost between initialising it and publishing is initialised again; three
        // losses in a row mean Redis is not keeping anything.
        for _ in 0..3 {
            let reply = inner
                .eval(&inner.scripts.publish, keys.clone(), args.clone())
                .await
                .map_err(unavailable)?;
            let Value::Array(mut parts) = reply else {
                return Err(malformed("publish"));
            };
            let outcome = parts.first().and_then(Value::as_string);
            match outcome.as_deref() {
                Some("uninit") => {
                    inner.init_room(group_id).await?;
                }
                Some("new") if parts.len() == 3 => {
                    let offset = parts[2].as_u64().ok_or_else(|| malformed("offset"))?;
                    let epoch = parts[1].as_string();
                    inner.forget_stale_room(group_id, epoch.as_deref());
                    return Ok(Published::New(Arc::new(draft.place(offset))));
                }
                Some("dup") if parts.len() == 3 => {
                    let entry = parts.pop().expect("three parts");
                    let original = parse_entry(entry)
                        .and_then(|(offset, fields)| decode_message(group_id, offset, &fields))
                        .ok_or_else(|| malformed("duplicate message"))?;
                    return Ok(Published::Duplicate(Arc::new(original)));
                }
                _ => return Err(malformed("publish")),
            }
        }
        Err(RelayError::Unavailable(
            "redis keeps losing the room's state".into(),
        ))
    }

    async fn broadcast(&self, group_id: Uuid, event: RoomEvent) -> Result<(), RelayError> {
        let wire = WireEvent::from_event(&event).ok_or_else(|| {
            RelayError::Internal(anyhow::anyhow!("messages are published, not broadcast"))
        })?;
        let payload = serde_json::to_string(&wire).map_err(anyhow::Error::from)?;
        self.inner
            .client
            .publish::<(), _, _>(self.inner.keys.events(group_id), payload)
            .await
            .map_err(unavailable)
    }

    async fn subscribe(&self, group_id: Uuid) -> Result<Subscription, RelayError> {
        let inner = &self.inner;
        let (epoch, offset) = inner.room_state(group_id).await?;
        let (receiver, head, opened) = {
            let mut rooms = inner.rooms.lock().expect("relay lock poisoned");
            match rooms.get(&group_id) {
                Some(room) if room.epoch == epoch => (room.feed.subscribe(), room.cursor, false),
                // Not read yet, or read with a stale epoch (replacing it ends the old feeds):
                // the reader starts right after the offset just read, so nothing published
                // after it is missed.
                _ => {
                    reset_room(&mut rooms, group_id);
                    let (feed, receiver) = broadcast::channel(inner.feed_capacity);
                    rooms.insert(
                        group_id,
                        LocalRoom {
                            epoch: epoch.clone(),
                            cursor: offset,
                            feed,
                        },
                    );
                    (receiver, offset, true)
                }
            }
        };
        if opened {
            inner.wake_reader().await.map_err(unavailable)?;
        }
        let events = BroadcastStream::new(receiver).map(|item| item.map_err(|_| Lagged));
        Ok(Subscription {
            epoch,
            head,
            events: events.boxed(),
        })
    }

    async fn replay(
        &self,
        group_id: Uuid,
        epoch: &str,
        after: u64,
        up_to: u64,
    ) -> Result<Replay, RelayError> {
        let inner = &self.inner;
        let reply = inner
            .eval(
                &inner.scripts.replay,
                vec![inner.keys.meta(group_id), inner.keys.stream(group_id)],
                vec![
                    epoch.to_owned(),
                    after.to_string(),
                    up_to.to_string(),
                    inner.window.to_string(),
                ],
            )
            .await
            .map_err(unavailable)?;
        if reply.is_null() {
            return Ok(Replay::EpochChanged);
        }
        let [first, entries] = array::<2>(reply).ok_or_else(|| malformed("replay"))?;
        let first_available = first.as_u64().ok_or_else(|| malformed("replay start"))?;
        let entries = match entries {
            Value::Array(entries) => entries,
            Value::Null => Vec::new(),
            _ => return Err(malformed("replay entries")),
        };
        let messages = entries
            .into_iter()
            .map(|entry| {
                parse_entry(entry)
                    .and_then(|(offset, fields)| decode_message(group_id, offset, &fields))
                    .map(Arc::new)
                    .ok_or_else(|| malformed("replayed message"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if after + 1 >= first_available || after >= up_to {
            Ok(Replay::Complete(messages))
        } else {
            Ok(Replay::Partial {
                first_available,
                messages,
            })
        }
    }

    async fn presence_join(&self, group_id: Uuid, who: &Participant) -> Result<bool, RelayError> {
        let inner = &self.inner;
        let _write = inner.presence_lock(group_id, who.id).lock().await;
        let first_here = {
            let mut presence = inner.local_presence.lock().expect("presence lock poisoned");
            let entry = presence
                .entry((group_id, who.id))
                .or_insert_with(|| (who.clone(), 0));
            entry.1 += 1;
            entry.1 == 1
        };
        if !first_here {
            return Ok(false);
        }
        match inner.touch(group_id, who).await {
            Ok(first_anywhere) => Ok(first_anywhere),
            Err(err) => {
                let mut presence = inner.local_presence.lock().expect("presence lock poisoned");
                if let Some(entry) = presence.get_mut(&(group_id, who.id)) {
                    entry.1 -= 1;
                    if entry.1 == 0 {
                        presence.remove(&(group_id, who.id));
                    }
                }
                Err(unavailable(err))
            }
        }
    }

    async fn presence_leave(&self, group_id: Uuid, who: &Participant) -> Result<bool, RelayError> {
        let inner = &self.inner;
        let _write = inner.presence_lock(group_id, who.id).lock().await;
        {
            let mut presence = inner.local_presence.lock().expect("presence lock poisoned");
            match presence.get_mut(&(group_id, who.id)) {
                Some(entry) if entry.1 > 1 => {
                    entry.1 -= 1;
                    return Ok(false);
                }
                Some(_) => {
                    presence.remove(&(group_id, who.id));
                }
                None => return Ok(false),
            }
        }
        // If this fails the entry is no longer refreshed and expires after the ttl.
        let reply = inner
            .eval(
                &inner.scripts.leave,
                vec![
                    inner.keys.presence(group_id, who.id),
                    inner.keys.online(group_id),
                    inner.keys.names(group_id),
                ],
                vec![who.id.to_string(), inner.node_id.clone()],
            )
            .await
            .map_err(unavailable)?;
        Ok(reply.as_u64() == Some(1))
    }

    async fn recent(
        &self,
        group_id: Uuid,
        limit: usize,
    ) -> Result<Vec<Arc<ChatMessage>>, RelayError> {
        let inner = &self.inner;
        let reply: Value = inner
            .client
            .xrevrange(inner.keys.stream(group_id), "+", "-", Some(limit as u64))
            .await
            .map_err(unavailable)?;
        let entries = match reply {
            Value::Array(entries) => entries,
            Value::Null => Vec::new(),
            _ => return Err(malformed("recent entries")),
        };
        let mut messages = entries
            .into_iter()
            .map(|entry| {
                parse_entry(entry)
                    .and_then(|(offset, fields)| decode_message(group_id, offset, &fields))
                    .map(Arc::new)
                    .ok_or_else(|| malformed("recent message"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        messages.reverse();
        Ok(messages)
    }

    async fn online(&self, group_id: Uuid) -> Result<Vec<Participant>, RelayError> {
        let inner = &self.inner;
        let reply = inner
            .eval(
                &inner.scripts.online,
                vec![inner.keys.online(group_id), inner.keys.names(group_id)],
                Vec::new(),
            )
            .await
            .map_err(unavailable)?;
        let values = match reply {
            Value::Array(values) => values,
            Value::Null => Vec::new(),
            _ => return Err(malformed("online")),
        };
        let mut online = Vec::with_capacity(values.len() / 2);
        let mut values = values.into_iter();
        while let (Some(id), Some(name)) = (values.next(), values.next()) {
            let id = id
                .as_string()
                .and_then(|id| Uuid::parse_str(&id).ok())
                .ok_or_else(|| malformed("participant id"))?;
            online.push(Participant {
                id,
                name: name.as_string().unwrap_or_default(),
            });
        }
        online.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        Ok(online)
    }

    async fn close_room(&self, group_id: Uuid) -> Result<(), RelayError> {
        let inner = &self.inner;
        // Every node's subscribers (this one's included) hear it through Pub/Sub.
        self.broadcast(group_id, RoomEvent::Closed).await?;
        inner
            .eval(
                &inner.scripts.close,
                vec![
                    inner.keys.meta(group_id),
                    inner.keys.stream(group_id),
                    inner.keys.dedupe(group_id),
                    inner.keys.online(group_id),
                    inner.keys.names(group_id),
                ],
                vec![inner.keys.presence_prefix(group_id)],
            )
            .await
            .map_err(unavailable)?;
        inner
            .local_presence
            .lock()
            .expect("presence lock poisoned")
            .retain(|(room, _), _| *room != group_id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use fred::prelude::KeysInterface;

    use super::*;
    use crate::relay::conformance::draft;

    const WAIT: Duration = Duration::from_secs(20);

    /// Short enough that expiry tests finish quickly.
    const FAST: PresenceTiming = PresenceTiming {
        refresh: Duration::from_millis(200),
        ttl: Duration::from_millis(1_000),
    };

    fn redis_url() -> String {
        std::env::var("QUICKCHAT_TEST_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
    }

    fn random_prefix() -> String {
        format!("quickchat-test:{}", Uuid::new_v4().simple())
    }

    async fn store() -> Store {
        Store::connect("sqlite::memory:")
            .await
            .expect("in-memory store")
    }

    async fn node(prefix: &str, window: usize, store: Store) -> RedisRelay {
        RedisRelay::connect(&redis_url(), prefix, window, 1024, store, FAST)
            .await
            .expect("redis at QUICKCHAT_TEST_REDIS_URL")
    }

    async fn relay(window: usize) -> RedisRelay {
        node(&random_prefix(), window, store().await).await
    }

    crate::relay_conformance_suite!(relay);

    /// A plain client for what the tests do behind the relays' backs.
    async fn raw_client() -> Client {
        let client = Builder::from_config(Config::from_url(&redis_url()).unwrap())
            .build()
            .unwrap();
        client.init().await.unwrap();
        client
    }

    async fn next_event(sub: &mut Subscription) -> Option<RoomEvent> {
        tokio::time::timeout(WAIT, sub.events.next())
            .await
            .expect("an event within the timeout")
            .map(|event| event.expect("not lagged"))
    }

    async fn next_message(sub: &mut Subscription) -> Arc<ChatMessage> {
        loop {
            match next_event(sub).await.expect("feed open") {
                RoomEvent::Message(m) => return m,
                _ => continue,
            }
        }
    }

    fn ann() -> Participant {
        Participant {
            id: Uuid::new_v4(),
            name: "Ann".into(),
        }
    }

    fn bob() -> Participant {
        Participant {
            id: Uuid::new_v4(),
            name: "Bob".into(),
        }
    }

    #[tokio::test]
    async fn a_message_published_on_one_node_reaches_subscribers_on_another() {
        let prefix = random_prefix();
        let store = store().await;
        let a = node(&prefix, 100, store.clone()).await;
        let b = node(&prefix, 100, store).await;
        let group = Uuid::new_v4();
        let mut on_b = b.subscribe(group).await.unwrap();
        assert_eq!(on_b.head, 0);

        let sent = a
            .publish(draft(group, Uuid::new_v4(), "k1", "hello from A"))
            .await
            .unwrap();
        let received = next_message(&mut on_b).await;
        assert_eq!(
            &received,
            sent.message(),
            "B receives the message unchanged"
        );

        // A retry through the other node is recognised as the same message.
        let retry = b
            .publish(draft(group, sent.message().sender_id, "k1", "hello again"))
            .await
            .unwrap();
        assert_eq!(retry, Published::Duplicate(sent.message().clone()));

        // Both nodes share the epoch and the replay window.
        let on_a = a.subscribe(group).await.unwrap();
        assert_eq!((on_a.epoch.as_str(), on_a.head), (on_b.epoch.as_str(), 1));
        assert_eq!(
            b.replay(group, &on_a.epoch, 0, 1).await.unwrap(),
            Replay::Complete(vec![sent.message().clone()])
        );
    }

    #[tokio::test]
    async fn concurrent_publishers_on_two_nodes_get_gapless_offsets_seen_in_order_everywhere() {
        let prefix = random_prefix();
        let store = store().await;
        let a = Arc::new(node(&prefix, 1000, store.clone()).await);
        let b = Arc::new(node(&prefix, 1000, store).await);
        let group = Uuid::new_v4();
        let mut on_a = a.subscribe(group).await.unwrap();
        let mut on_b = b.subscribe(group).await.unwrap();
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let relay = if i % 2 == 0 { a.clone() } else { b.clone() };
                tokio::spawn(async move {
                    let sender = Uuid::new_v4();
                    let mut offsets = Vec::new();
                    for n in 0..25 {
                        let p = relay
                            .publish(draft(group, sender, &format!("m{n}"), "hi"))
                            .await
                            .unwrap();
                        offsets.push(p.message().offset);
                    }
                    offsets
                })
            })
            .collect();
        let mut all = HashSet::new();
        for task in tasks {
            for offset in task.await.unwrap() {
                assert!(all.insert(offset), "offset {offset} assigned twice");
            }
        }
        assert_eq!(all, (1..=200).collect::<HashSet<u64>>());
        for expected in 1..=200 {
            assert_eq!(next_message(&mut on_a).await.offset, expected);
            assert_eq!(next_message(&mut on_b).await.offset, expected);
        }
    }

    #[tokio::test]
    async fn presence_is_cluster_wide() {
        let prefix = random_prefix();
        let store = store().await;
        let a = node(&prefix, 100, store.clone()).await;
        let b = node(&prefix, 100, store).await;
        let group = Uuid::new_v4();
        let (ann, bob) = (ann(), bob());

        assert!(
            a.presence_join(group, &ann).await.unwrap(),
            "first stream anywhere"
        );
        assert!(
            !b.presence_join(group, &ann).await.unwrap(),
            "already online through node A"
        );
        assert!(b.presence_join(group, &bob).await.unwrap());
        let both = vec![ann.clone(), bob.clone()];
        assert_eq!(a.online(group).await.unwrap(), both);
        assert_eq!(b.online(group).await.unwrap(), both);

        assert!(
            !a.presence_leave(group, &ann).await.unwrap(),
            "still online through node B"
        );
        assert_eq!(a.online(group).await.unwrap(), both);
        assert!(
            b.presence_leave(group, &ann).await.unwrap(),
            "last stream anywhere"
        );
        assert_eq!(a.online(group).await.unwrap(), [bob]);
    }

    #[tokio::test]
    async fn participants_of_a_node_that_stops_heartbeating_go_offline_after_the_ttl() {
        let prefix = random_prefix();
        let store = store().await;
        let a = node(&prefix, 100, store.clone()).await;
        let b = node(&prefix, 100, store).await;
        let group = Uuid::new_v4();
        let (ann, bob) = (ann(), bob());
        assert!(a.presence_join(group, &ann).await.unwrap());
        assert!(b.presence_join(group, &bob).await.unwrap());
        assert_eq!(b.online(group).await.unwrap(), [ann.clone(), bob.clone()]);

        // Node A dies without its streams leaving. Its entries were last refreshed at most
        // one heartbeat ago; they lapse within the ttl of the moment it died, as the README
        // promises (a little tolerance for scheduling, not a multiple of it).
        a.close().await;
        let died = tokio::time::Instant::now();
        drop(a);
        let deadline = died + FAST.ttl + Duration::from_millis(300);
        while b.online(group).await.unwrap() != [bob.clone()] {
            assert!(
                tokio::time::Instant::now() < deadline,
                "Ann still online {:?} after node A stopped (ttl {:?})",
                died.elapsed(),
                FAST.ttl
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Node B keeps heartbeating: Bob outlives several ttls.
        tokio::time::sleep(FAST.ttl * 3).await;
        assert_eq!(b.online(group).await.unwrap(), std::slice::from_ref(&bob));
        // Ann coming back on node B is news again.
        assert!(b.presence_join(group, &ann).await.unwrap());
    }

    /// A heartbeat refreshing presence while a participant leaves must not put them back
    /// online: with a heartbeat every millisecond, the race shows within a few rounds
    /// unless presence writes are serialised.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_heartbeat_never_brings_back_someone_who_left() {
        let relay = RedisRelay::connect(
            &redis_url(),
            &random_prefix(),
            100,
            1024,
            store().await,
            PresenceTiming {
                refresh: Duration::from_millis(1),
                ttl: Duration::from_secs(5),
            },
        )
        .await
        .unwrap();
        let group = Uuid::new_v4();
        let ann = ann();
        for round in 0..200 {
            assert!(relay.presence_join(group, &ann).await.unwrap());
            assert!(relay.presence_leave(group, &ann).await.unwrap());
            tokio::time::sleep(Duration::from_millis(2)).await;
            assert!(
                relay.online(group).await.unwrap().is_empty(),
                "round {round}: Ann is online again after leaving"
            );
        }
    }

    async fn group_with_messages(store: &Store, count: u64) -> Uuid {
        let group = crate::store::test_group(store).await;
        let stored: Vec<_> = (1..=count)
            .map(|offset| Arc::new(draft(group, Uuid::new_v4(), "", "stored").place(offset)))
            .collect();
        store.insert_messages(&stored).await.unwrap();
        group
    }

    async fn delete_prefix(prefix: &str) {
        let raw = raw_client().await;
        let keys: Vec<String> = raw
            .custom(
                fred::types::CustomCommand::new("KEYS", fred::types::ClusterHash::Random, false),
                vec![format!("{prefix}:*")],
            )
            .await
            .unwrap();
        if !keys.is_empty() {
            raw.del::<(), _>(keys).await.unwrap();
        }
        let _ = raw.quit().await;
    }

    #[tokio::test]
    async fn losing_redis_state_reseeds_from_the_store_with_a_new_epoch() {
        let prefix = random_prefix();
        let store = store().await;
        let group = group_with_messages(&store, 3).await;
        let a = node(&prefix, 100, store.clone()).await;
        let b = node(&prefix, 100, store).await;
        // A room with messages but no Redis state starts clear of the newest stored one.
        let seed = 3 + EPOCH_GAP;

        let first = a
            .publish(draft(group, Uuid::new_v4(), "", "after the stored ones"))
            .await
            .unwrap();
        assert_eq!(
            first.message().offset,
            seed + 1,
            "the counter starts past the store"
        );
        let mut old = b.subscribe(group).await.unwrap();
        assert_eq!(old.head, seed + 1);

        // Redis loses everything (the new message never reached the store or a log).
        delete_prefix(&prefix).await;

        let again = a
            .publish(draft(group, Uuid::new_v4(), "", "after the loss"))
            .await
            .unwrap();
        assert_eq!(again.message().offset, seed + 1, "re-seeded from the store");
        let new = a.subscribe(group).await.unwrap();
        assert_ne!(new.epoch, old.epoch, "a new epoch");
        assert_eq!(new.head, seed + 1);
        assert_eq!(
            a.replay(group, &old.epoch, seed, seed + 1).await.unwrap(),
            Replay::EpochChanged
        );
        assert_eq!(
            b.replay(group, &new.epoch, seed, seed + 1).await.unwrap(),
            Replay::Complete(vec![again.message().clone()])
        );
        // The subscriber holding the old epoch is not fed the new epoch's offsets: it is told
        // the room was reset and its feed ends, so its client rejoins and reloads history.
        loop {
            match next_event(&mut old).await {
                Some(RoomEvent::Reset) => break,
                Some(RoomEvent::Message(m)) => panic!("old-epoch feed delivered {m:?}"),
                Some(_) => {}
                None => panic!("the old feed ended without a reset"),
            }
        }
        assert_eq!(next_event(&mut old).await, None);
    }

    /// Kills every connection of `relay` (as a network blip would); returns how many.
    async fn kill_connections(relay: &RedisRelay) -> usize {
        let names: HashSet<String> = [
            &relay.inner.client,
            &relay.inner.reader,
            &relay.inner.pubsub,
        ]
        .iter()
        .map(|c| c.id().to_owned())
        .collect();
        let raw = raw_client().await;
        let list: String = raw
            .custom(
                fred::types::CustomCommand::new("CLIENT", fred::types::ClusterHash::Random, false),
                vec!["LIST"],
            )
            .await
            .unwrap();
        let mut killed = 0;
        for line in list.lines() {
            let field = |name: &str| {
                line.split(' ')
                    .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            };
            if let (Some(id), Some(name)) = (field("id"), field("name"))
                && names.contains(name)
            {
                let n: i64 = raw
                    .custom(
                        fred::types::CustomCommand::new(
                            "CLIENT",
                            fred::types::ClusterHash::Random,
                            false,
                        ),
                        vec!["KILL", "ID", id],
                    )
                    .await
                    .unwrap();
                killed += n as usize;
            }
        }
        let _ = raw.quit().await;
        killed
    }

    #[tokio::test]
    async fn subscribers_keep_receiving_after_a_connection_blip() {
        let prefix = random_prefix();
        let store = store().await;
        let a = node(&prefix, 100, store.clone()).await;
        let b = node(&prefix, 100, store).await;
        let group = Uuid::new_v4();
        let mut on_a = a.subscribe(group).await.unwrap();
        b.publish(draft(group, Uuid::new_v4(), "", "before"))
            .await
            .unwrap();
        assert_eq!(next_message(&mut on_a).await.offset, 1);

        assert!(
            kill_connections(&a).await >= 3,
            "every connection of node A killed"
        );

        // Messages published elsewhere after the blip still arrive.
        b.publish(draft(group, Uuid::new_v4(), "", "after"))
            .await
            .unwrap();
        let after = next_message(&mut on_a).await;
        assert_eq!((after.offset, after.body.as_str()), (2, "after"));

        // Node A itself publishes again once reconnected (a client would retry).
        let deadline = tokio::time::Instant::now() + WAIT;
        let own = loop {
            match a.publish(draft(group, Uuid::new_v4(), "", "mine")).await {
                Ok(p) => break p,
                Err(RelayError::Unavailable(_)) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Err(err) => panic!("node A cannot publish after the blip: {err}"),
            }
        };
        assert_eq!(next_message(&mut on_a).await, *own.message());

        // Ephemeral events flow again too (typing is repeated, as clients do).
        let ann = ann();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            b.broadcast(group, RoomEvent::Typing(ann.clone()))
                .await
                .unwrap();
            match tokio::time::timeout(Duration::from_millis(250), on_a.events.next()).await {
                Ok(Some(Ok(RoomEvent::Typing(who)))) if who == ann => break,
                Ok(Some(Ok(_))) | Err(_) => {}
                Ok(other) => panic!("feed broke: {other:?}"),
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "typing never arrived after the blip"
            );
        }
    }

    #[tokio::test]
    async fn the_last_subscriber_leaving_stops_the_reading() {
        let relay = relay(100).await;
        let group = Uuid::new_v4();
        let sub = relay.subscribe(group).await.unwrap();
        let second = relay.subscribe(group).await.unwrap();
        assert_eq!(
            relay.inner.read_set("0-0").0.len(),
            2,
            "room and wake streams"
        );
        drop(sub);
        assert_eq!(
            relay.inner.read_set("0-0").0.len(),
            2,
            "one subscriber left"
        );
        drop(second);
        assert_eq!(
            relay.inner.read_set("0-0").0,
            [relay.inner.keys.wake(&relay.inner.node_id)]
        );
    }

    #[test]
    fn describe_hides_the_password() {
        assert_eq!(
            display_url("redis://user:secret@cache.internal:6380/2"),
            "redis://user@cache.internal:6380/2"
        );
        assert_eq!(
            display_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
    }

    #[test]
    fn event_channels_map_back_to_their_room() {
        let keys = Keys {
            prefix: "qc*test".into(),
        };
        let group = Uuid::new_v4();
        assert_eq!(keys.group_of_channel(&keys.events(group)), Some(group));
        assert_eq!(keys.group_of_channel("other:room:x:events"), None);
        assert_eq!(keys.events_pattern(), "qc\\*test:room:*:events");
    }
}

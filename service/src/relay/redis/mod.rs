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
//! - `P:room:G:messages`: the Pub/Sub channel of the room's messages, and `P:room:G:events`
//!   the one of its ephemeral events (typing, presence, removals, closing).
//!
//! Publishing is one Lua script: dedupe check, `HINCRBY` of the counter, `XADD` with the
//! explicit id, trimming, and a `PUBLISH` of the message on the room's messages channel. A room
//! without a counter (new, deleted, or lost by a Redis restart) is initialised by another
//! script, atomically with respect to other nodes: a new epoch is drawn, so clients holding
//! the old epoch are told their offsets no longer compare (`Replay::EpochChanged`), and the
//! counter is seeded past every offset the old epoch may have handed out: the newest in the
//! store or in the log's unstored tail ([`LogTail`]), plus [`EPOCH_GAP`] for messages that
//! were still on their way to the log.
//!
//! Each node runs three background tasks: two Pub/Sub listeners, each on its own connection
//! with one pattern subscription for the node's whole life (every room's messages; every
//! room's events), that hand what they hear to the feeds of the rooms with local subscribers
//! (membership events to the node's member checks too), and one heartbeat that refreshes this
//! node's presence
//! entries and checks that every locally-read room still has the epoch its subscribers were
//! given (when it does not, they get [`RoomEvent::Reset`] and their feeds end).
//!
//! The streams are for replay and for catching up, not for delivery. Redis runs scripts one
//! at a time, so every node hears a room's messages in offset order; a message this node
//! published reaches its own subscribers from the publish reply already, and whichever path
//! brings an offset first, every feed carries each offset once, in order (one that
//! overtook an earlier offset waits for it). What Pub/Sub can lose — messages published
//! while the subscription was down or the listener fell behind, or just before a room was
//! opened here — a room reads from its stream (`XRANGE` from its cursor,
//! `Inner::catch_up`): when it is opened, when an offset is heard after a gap, after the
//! subscription comes back, and when a heartbeat finds the room's counter ahead of what the
//! node has heard.
//! (Before, each node blocked in one `XREAD` over the streams of every room it read, which
//! Redis re-registered on every publish: with 1 000 rooms that cost Redis and the node
//! more than the messages did.)
//!
//! It needs one Redis server (standalone, or failed over by Sentinel), not a Redis Cluster:
//! a room's keys carry no hash tag, the listeners' pattern subscriptions are not sharded, and
//! `close_room`'s script deletes presence keys it derives from the room's. Redis may lose its
//! state (no persistence): rooms are re-seeded from the store with a new epoch, presence is
//! re-written by the next heartbeat.

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
use fred::types::Key;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::local::{self, StreamCounts};
use super::room_feed::RoomFeed;
use super::{Presence, Published, RelayError, Replay, RoomRelay, Subscription};
use crate::log::LogTail;
use crate::room::{ChatMessage, MessageDraft, Participant, RoomEvent};
use crate::store::Store;

mod codec;
mod feed;
mod keys;
mod presence;
mod rooms;
mod scripts;
#[cfg(test)]
mod tests;

use codec::*;
use feed::*;
use keys::Keys;
pub use presence::RedisPresence;
use presence::*;
use scripts::*;

/// Longest a command on the shared connection may take before the caller gets
/// [`RelayError::Unavailable`] (e.g. while Redis is unreachable and the client reconnects).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

/// Entries read per `XRANGE` of a room catching up.
const READ_COUNT: u64 = 512;

/// Pub/Sub messages each listener buffers before it counts as lagging and drops some: every
/// room's messages on one connection (the rooms then catch up from their streams), every
/// room's ephemeral events on the other (kept apart, so that a burst of messages cannot
/// crowd out a removal or a revocation).
const PUBSUB_BUFFER: usize = 4096;

/// Messages a room holds while an earlier offset is still on its way (see
/// `LocalRoom::early`). Past it they are left to the catch-up, which reads them from the
/// stream.
const MAX_EARLY: usize = 1024;

/// Pauses of the Pub/Sub listener after a failure, doubling up to the maximum.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

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

/// How a node uses the cluster's Redis (the URL is given apart: it says whether there is a
/// Redis relay at all).
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// Prefix of every Redis key, so several deployments (or tests) can share one Redis.
    pub key_prefix: String,
    /// How often this node refreshes its presence entries (and re-checks the epochs of the
    /// rooms it reads), and how long the entries of a node that stopped doing so last.
    pub presence: PresenceTiming,
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            key_prefix: "quickchat".into(),
            presence: PresenceTiming::default(),
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
    /// Dedicated to the Pub/Sub pattern subscription to every room's events.
    pubsub: Client,
    /// Dedicated to the Pub/Sub pattern subscription to every room's messages.
    messages: Client,
    keys: Keys,
    /// This node's id in presence entries.
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
    /// Open streams of each participant on this node, per room: the presence entries this
    /// node writes and refreshes.
    local_presence: StreamCounts,
    /// Held (the stripe of one participant in one room) while this node writes that
    /// participant's presence to Redis, so that a heartbeat's refresh can never land after
    /// a leave it did not see and put them back online (a ghost until the ttl; found when
    /// the conformance suite ran multi-threaded). Striped so that one slow write holds up
    /// only its stripe, and the heartbeat still refreshes many entries at once.
    presence_writes: Vec<tokio::sync::Mutex<()>>,
    /// Membership changes heard on the Pub/Sub pattern, from every room.
    membership: local::MembershipFeed,
}

/// A room read by this node.
struct LocalRoom {
    /// The epoch its subscribers were given.
    epoch: String,
    /// Offset of the last message sent on `feed` (or the head when the room was opened).
    cursor: u64,
    feed: RoomFeed,
    /// The room's stream key (read when catching up).
    key: Key,
    /// Messages that arrived before an earlier offset was sent on `feed` (a publish reply
    /// overtaking the channel, or an offset heard after a gap): sent as soon as the offsets
    /// before them are (see [`LocalRoom::offer`]).
    early: std::collections::BTreeMap<u64, Arc<ChatMessage>>,
    /// A catch-up is running ([`Inner::catch_up`]), and whether another was asked for
    /// meanwhile (it then reads once more).
    catching_up: bool,
    catch_up_again: bool,
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
    /// This node's side of cluster-wide presence, kept alive by this relay's heartbeat.
    pub fn presence(&self) -> RedisPresence {
        RedisPresence {
            inner: self.inner.clone(),
        }
    }

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
        kafka: &crate::log::kafka::KafkaSettings,
    ) -> Self {
        match brokers {
            Some(brokers) => self.with_log_tail(Arc::new(crate::log::kafka::tail::KafkaTail::new(
                brokers, kafka,
            ))),
            None => self,
        }
    }

    /// Connects to Redis at `url` and starts this node's background tasks.
    ///
    /// `key_prefix` starts every key; `window`: messages kept per room for replay (older
    /// ranges come from `store`, which also seeds a room's counter when Redis has none);
    /// `feed_capacity`: events a local subscriber may fall behind before it is dropped as
    /// lagging (a room's feed keeps no more); `presence`: heartbeat timing of this node's presence entries.
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
        let pubsub = build_client(&config, COMMAND_TIMEOUT, PUBSUB_BUFFER)?;
        let messages = build_client(&config, COMMAND_TIMEOUT, PUBSUB_BUFFER)?;
        for c in [&client, &pubsub, &messages] {
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
            forget: load(FORGET.to_owned()).await?,
        };
        let inner = Arc::new(Inner {
            client,
            pubsub,
            messages,
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
            local_presence: StreamCounts::default(),
            presence_writes: (0..PRESENCE_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            membership: local::MembershipFeed::default(),
        });
        // Subscribed before `connect` returns, so that no message or event published after
        // a subscription opens can be missed.
        for channels in [Channels::Events, Channels::Messages] {
            channels
                .client(&inner)
                .psubscribe(channels.pattern(&inner))
                .await
                .with_context(|| format!("subscribing to the rooms' {}", channels.name()))?;
        }
        let shutdown = CancellationToken::new();
        let tasks = vec![
            tokio::spawn(run_listener(
                inner.clone(),
                Channels::Events,
                shutdown.clone(),
            )),
            tokio::spawn(run_listener(
                inner.clone(),
                Channels::Messages,
                shutdown.clone(),
            )),
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
            self.inner.pubsub.clone(),
            self.inner.messages.clone(),
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
            inner.keys.messages(group_id),
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
                    let message = Arc::new(draft.place(offset));
                    if let Some(epoch) = epoch {
                        inner.deliver_published(&epoch, message.clone());
                    }
                    return Ok(Published::New(message));
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

    fn membership_changes(
        &self,
    ) -> tokio::sync::broadcast::Receiver<crate::room::MembershipChange> {
        self.inner.membership.subscribe()
    }

    async fn subscribe(&self, group_id: Uuid) -> Result<Subscription, RelayError> {
        let inner = &self.inner;
        let (epoch, offset) = inner.room_state(group_id).await?;
        let (receiver, head, opened) = {
            let mut rooms = inner.rooms.lock().expect("relay lock poisoned");
            match rooms.get(&group_id) {
                Some(room) if room.epoch == epoch => (room.feed.subscribe(), room.cursor, false),
                // Not read yet, or read with a stale epoch (replacing it ends the old feeds):
                // the room starts right after the offset just read, and catches up with what
                // was published before the listener knew it.
                _ => {
                    reset_room(&mut rooms, group_id);
                    let feed = RoomFeed::new(inner.feed_capacity);
                    let receiver = feed.subscribe();
                    rooms.insert(
                        group_id,
                        LocalRoom::new(epoch.clone(), offset, feed, inner.keys.stream(group_id)),
                    );
                    (receiver, offset, true)
                }
            }
        };
        if opened {
            inner.request_catch_up(group_id);
        }
        Ok(Subscription {
            epoch,
            head,
            events: receiver,
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
        Ok(local::replay_outcome(
            after,
            up_to,
            first_available,
            messages,
        ))
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
                ],
                Vec::new(),
            )
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

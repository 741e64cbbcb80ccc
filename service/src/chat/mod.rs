//! The chat hub: rooms as clients see them. It authorises callers for a room, sends
//! messages (rate limit → relay assigns the offset and fans out → log makes it durable →
//! ack), relays typing, serves history, and opens room streams ([`stream`]: the reader that
//! turns the relay's feed into one client's events, and the commands a `Chat` client sends),
//! each stream's events handed to the API edge by [`outbound`].

pub mod outbound;
pub mod stream;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::auth::Principal;
use crate::auth::members::MemberCheck;
use crate::domain::{ClientMessageId, MessageBody};
use crate::error::ApiError;
use crate::log::{LogError, MessageLog};
use crate::metrics::{Metrics, Rejection};
use crate::rate_limit::TokenBuckets;
use crate::relay::{Presence, Published, RelayError, Replay, RoomRelay};
use crate::room::{ChatMessage, MessageDraft, Participant, RoomEvent};
use crate::store::{self, Store};
use stream::StreamOwner;

#[derive(Debug, Clone)]
pub struct ChatSettings {
    /// Events queued for one client before it counts as a slow consumer.
    pub outbound_capacity: usize,
    /// Most messages a reconnecting client is sent to recover; beyond that it is told
    /// recovery failed and pages through history instead.
    pub max_recovery: u64,
    /// Sustained sends per second per participant and room, and the burst above it.
    pub send_rate: f64,
    pub send_burst: u32,
    /// Longest a send waits for the log before failing with `UNAVAILABLE`.
    pub append_timeout: Duration,
    /// Room streams (`Chat` and `Subscribe`) one participant may hold open at once on this
    /// node, over all their connections and rooms.
    pub max_streams_per_participant: usize,
    /// Room streams one client address may hold open at once on this node, whoever holds
    /// them.
    pub max_streams_per_client: usize,
    /// How long a `Chat` stream may stay open before its `join` request arrives.
    pub join_deadline: Duration,
}

impl Default for ChatSettings {
    fn default() -> Self {
        Self {
            outbound_capacity: 1024,
            max_recovery: 1000,
            send_rate: 20.0,
            send_burst: 40,
            append_timeout: Duration::from_secs(10),
            max_streams_per_participant: 32,
            max_streams_per_client: 1024,
            join_deadline: Duration::from_secs(10),
        }
    }
}

/// A send that failed, and whether its message had already reached the room (only its
/// durability failed) — then the failure is reported where the message stands in order.
#[derive(Debug)]
pub struct SendFailure {
    pub error: ApiError,
    pub published: bool,
}

/// A send whose message has its place in the room (or that was refused before it got one):
/// what [`ChatHub::make_durable`] finishes.
pub(crate) struct Placed {
    started: std::time::Instant,
    published: Result<Published, SendFailure>,
}

impl From<ApiError> for SendFailure {
    fn from(error: ApiError) -> Self {
        Self {
            error,
            published: false,
        }
    }
}

impl From<SendFailure> for ApiError {
    fn from(failure: SendFailure) -> Self {
        failure.error
    }
}

pub struct ChatHub {
    store: Store,
    relay: Arc<dyn RoomRelay>,
    presence: Arc<dyn Presence>,
    log: Arc<dyn MessageLog>,
    settings: ChatSettings,
    send_limits: TokenBuckets<(Uuid, Uuid)>,
    typing_limits: TokenBuckets<(Uuid, Uuid)>,
    shutdown: CancellationToken,
    /// Set just before `shutdown` is cancelled: a stream checks it on every read, which
    /// costs less than polling the token.
    stopping: AtomicBool,
    metrics: Arc<Metrics>,
    open_streams: Arc<Mutex<HashMap<StreamOwner, usize>>>,
    /// Streams open on this node per room, for the operators' overview.
    room_streams: Arc<Mutex<HashMap<Uuid, usize>>>,
    /// Whether member tokens still stand (shared with the authenticator).
    members: Arc<MemberCheck>,
}

fn relay_error(err: RelayError) -> ApiError {
    match err {
        RelayError::Unavailable(reason) => {
            tracing::warn!(%reason, "room relay unavailable");
            ApiError::Unavailable("The chat relay is unavailable; try again shortly.".into())
        }
        RelayError::Internal(err) => ApiError::Internal(err),
    }
}

impl ChatHub {
    pub fn new(
        store: Store,
        relay: Arc<dyn RoomRelay>,
        presence: Arc<dyn Presence>,
        log: Arc<dyn MessageLog>,
        settings: ChatSettings,
        metrics: Arc<Metrics>,
        members: Arc<MemberCheck>,
    ) -> Self {
        let shutdown = CancellationToken::new();
        // Every node drops its cached answers about members as soon as a removal or
        // revocation is broadcast, in any room.
        let follower = members.clone();
        let changes = relay.membership_changes();
        let stop = shutdown.clone();
        tokio::spawn(async move { follower.follow(changes, stop).await });
        Self {
            members,
            metrics,
            store,
            relay,
            presence,
            log,
            send_limits: TokenBuckets::new(settings.send_rate, settings.send_burst),
            typing_limits: TokenBuckets::new(1.0, 1),
            settings,
            shutdown,
            stopping: AtomicBool::new(false),
            open_streams: Arc::default(),
            room_streams: Arc::default(),
        }
    }

    pub fn relay(&self) -> &Arc<dyn RoomRelay> {
        &self.relay
    }

    pub fn presence(&self) -> &Arc<dyn Presence> {
        &self.presence
    }

    pub fn log(&self) -> &Arc<dyn MessageLog> {
        &self.log
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Rooms with streams open on this node, and how many.
    pub fn local_rooms(&self) -> Vec<(Uuid, usize)> {
        let rooms = self
            .room_streams
            .lock()
            .expect("room stream count lock poisoned");
        rooms.iter().map(|(id, n)| (*id, *n)).collect()
    }

    /// Ends every open stream with `UNAVAILABLE` so clients reconnect elsewhere.
    pub fn shut_down(&self) {
        self.stopping.store(true, Ordering::Release);
        self.shutdown.cancel();
    }

    /// Whether [`ChatHub::shut_down`] has run.
    fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Completes once the hub is shut down.
    pub async fn stopped(&self) {
        self.shutdown.cancelled().await
    }

    /// Who `principal` is in `group_id`'s room: its owner (access token) or one of its
    /// members (member token of that group, checked by the authenticator). `NOT_FOUND` for a
    /// missing group.
    pub async fn authorize(
        &self,
        principal: &Principal,
        group_id: Uuid,
    ) -> Result<Participant, ApiError> {
        let group = self
            .store
            .group(group_id)
            .await?
            .ok_or_else(|| ApiError::not_found("Group not found."))?;
        let allowed = match principal {
            Principal::User(user) => user.user_id == group.owner_id,
            Principal::Member(member) => member.group_id == group_id,
        };
        if !allowed {
            return Err(ApiError::permission_denied(
                "Only the group's owner and its members can open this room.",
            ));
        }
        Ok(Participant {
            id: principal.id(),
            name: principal.name().to_owned(),
        })
    }

    /// Sends a message and returns it once it is durable, with `true` if it is new. A send
    /// repeating an earlier `client_message_id` of the same sender returns the original
    /// message (and `false`).
    pub async fn send(
        &self,
        who: &Participant,
        group_id: Uuid,
        client_message_id: &str,
        body: &str,
    ) -> Result<(Arc<ChatMessage>, bool), SendFailure> {
        let placed = self.place(who, group_id, client_message_id, body).await;
        self.make_durable(placed).await
    }

    /// The first half of [`ChatHub::send`]: checks the send and gives its message its place
    /// in the room (the relay assigns the offset and fans it out). A stream places its sends
    /// one after another, in the order the client sent them.
    async fn place(
        &self,
        who: &Participant,
        group_id: Uuid,
        client_message_id: &str,
        body: &str,
    ) -> Placed {
        let started = std::time::Instant::now();
        let published = self.publish(who, group_id, client_message_id, body).await;
        Placed { started, published }
    }

    /// The second half of [`ChatHub::send`]: waits until the log holds the placed message.
    /// A stream may wait for several of its sends at once.
    async fn make_durable(&self, placed: Placed) -> Result<(Arc<ChatMessage>, bool), SendFailure> {
        let result = match placed.published {
            Ok(published) => self.persist(published).await,
            Err(failure) => Err(failure),
        };
        match &result {
            Ok((_, true)) => self.metrics.message_sent(placed.started.elapsed()),
            Ok((_, false)) => {}
            Err(failure) => self.metrics.send_rejected(match failure.error {
                ApiError::InvalidArgument(_) => Rejection::Invalid,
                ApiError::ResourceExhausted(_) => Rejection::RateLimited,
                _ => Rejection::Unavailable,
            }),
        }
        result
    }

    async fn publish(
        &self,
        who: &Participant,
        group_id: Uuid,
        client_message_id: &str,
        body: &str,
    ) -> Result<Published, SendFailure> {
        let client_message_id =
            ClientMessageId::parse(client_message_id).map_err(ApiError::invalid)?;
        let body = MessageBody::parse(body).map_err(ApiError::invalid)?;
        if !self.send_limits.try_acquire(&(group_id, who.id)) {
            return Err(SendFailure::from(ApiError::ResourceExhausted(format!(
                "Sending too fast: at most {} messages per second.",
                self.settings.send_rate
            ))));
        }
        let draft = MessageDraft {
            id: Uuid::now_v7(),
            group_id,
            sender_id: who.id,
            sender_name: who.name.clone(),
            body: body.as_str().to_owned(),
            client_message_id: client_message_id.as_str().to_owned(),
            created_at: store::now(),
        };
        Ok(self.relay.publish(draft).await.map_err(relay_error)?)
    }

    async fn persist(&self, published: Published) -> Result<(Arc<ChatMessage>, bool), SendFailure> {
        let is_new = matches!(published, Published::New(_));
        let message = published.message().clone();
        // A duplicate is appended again (idempotently) so that its ack, too, means durable.
        match tokio::time::timeout(
            self.settings.append_timeout,
            self.log.append(message.clone()),
        )
        .await
        {
            Ok(Ok(())) => Ok((message, is_new)),
            Ok(Err(LogError::AlreadySent)) => Err(SendFailure {
                error: ApiError::AlreadyExists(
                    "A message with this client_message_id was already sent; it is in the \
                     room's history."
                        .into(),
                ),
                published: is_new,
            }),
            Ok(Err(LogError::NotStored { group_gone })) => Err(SendFailure {
                error: if group_gone {
                    ApiError::not_found("Group not found.")
                } else {
                    ApiError::Internal(anyhow::anyhow!(
                        "message {} was refused by the store (see dead_letters)",
                        message.id
                    ))
                },
                published: is_new,
            }),
            Ok(Err(err)) => {
                tracing::warn!(error = %err, message_id = %message.id, "message not durable");
                Err(SendFailure {
                    error: ApiError::Unavailable(
                        "The message could not be stored; send it again.".into(),
                    ),
                    published: is_new,
                })
            }
            Err(_) => {
                tracing::warn!(message_id = %message.id, "message log timed out");
                Err(SendFailure {
                    error: ApiError::Unavailable(
                        "The message could not be stored in time; send it again.".into(),
                    ),
                    published: is_new,
                })
            }
        }
    }

    /// are dropped silently: typing is only a hint).
    pub async fn typing(&self, who: &Participant, group_id: Uuid) -> Result<(), ApiError> {
        if self.typing_limits.try_acquire(&(group_id, who.id)) {
            self.relay
                .broadcast(group_id, RoomEvent::Typing(who.clone()))
                .await
                .map_err(relay_error)?;
        }
        Ok(())
    }

    /// A page of the room's history, newest first (see `Store::list_messages`), and whether
    /// more lies beyond it. The newest messages come from the relay as well as the store:
    /// in distributed mode the persister writes asynchronously, and a message every
    /// subscriber has seen must not be missing from history meanwhile.
    pub async fn history(
        &self,
        group_id: Uuid,
        before: Option<u64>,
        after: Option<u64>,
        limit: u64,
    ) -> Result<(Vec<ChatMessage>, bool), ApiError> {
        let (stored, more) = self
            .store
            .list_messages(group_id, before, after, limit)
            .await?;
        let recent = self
            .relay
            .recent(group_id, limit as usize)
            .await
            .map_err(relay_error)?;
        let in_range = |m: &&Arc<ChatMessage>| {
            before.is_none_or(|b| m.offset < b) && after.is_none_or(|a| m.offset > a)
        };
        let mut by_offset: std::collections::BTreeMap<u64, ChatMessage> =
            stored.into_iter().map(|m| (m.offset, m)).collect();
        for m in recent.iter().filter(in_range) {
            by_offset.entry(m.offset).or_insert_with(|| (**m).clone());
        }
        let catch_up = after.is_some() && before.is_none();
        let mut page: Vec<ChatMessage> = by_offset.into_values().collect();
        let more = more || page.len() as u64 > limit;
        if catch_up {
            page.truncate(limit as usize);
            page.reverse();
        } else {
            page.reverse();
            page.truncate(limit as usize);
        }
        Ok((page, more))
    }

    /// Who is online in the room now, on any node.
    pub async fn online(&self, group_id: Uuid) -> Result<Vec<Participant>, ApiError> {
        self.presence.online(group_id).await.map_err(relay_error)
    }

    /// `who` is no longer a member (`left`, or removed by the owner): this node forgets
    /// them at once, and the event ends their streams and tells the room, on every node.
    pub async fn member_removed(
        &self,
        group_id: Uuid,
        who: Participant,
        left: bool,
    ) -> Result<(), ApiError> {
        self.members.forget(crate::room::MembershipChange::Removed {
            group_id,
            member_id: who.id,
        });
        self.relay
            .broadcast(group_id, RoomEvent::MemberRemoved { who, left })
            .await
            .map_err(relay_error)
    }

    /// Every member token of the group was revoked: as [`ChatHub::member_removed`], for
    /// every member at once (the owner's streams stay open).
    pub async fn members_revoked(&self, group_id: Uuid) -> Result<(), ApiError> {
        self.members
            .forget(crate::room::MembershipChange::Revoked { group_id });
        self.relay
            .broadcast(group_id, RoomEvent::MembersRevoked)
            .await
            .map_err(relay_error)
    }

    /// The group is gone: end its streams with `NOT_FOUND`.
    pub async fn close_room(&self, group_id: Uuid) {
        if let Err(err) = self.relay.close_room(group_id).await {
            tracing::warn!(%group_id, error = %err, "could not close the room's streams");
        }
        if let Err(err) = self.presence.forget_room(group_id).await {
            tracing::warn!(%group_id, error = %err, "could not forget who was online in the room");
        }
    }

    /// The messages with `after < offset <= up_to`, from the relay's window and, for what
    /// it no longer holds, the store. `None` if they cannot all be found (or are too many).
    async fn fill(
        &self,
        group_id: Uuid,
        epoch: &str,
        after: u64,
        up_to: u64,
    ) -> Result<Option<Vec<Arc<ChatMessage>>>, ApiError> {
        if up_to - after > self.settings.max_recovery {
            return Ok(None);
        }
        let messages = match self
            .relay
            .replay(group_id, epoch, after, up_to)
            .await
            .map_err(relay_error)?
        {
            Replay::Complete(messages) => messages,
            Replay::EpochChanged => return Ok(None),
            Replay::Partial {
                first_available,
                messages,
            } => {
                let older = self
                    .store
                    .messages_between(
                        group_id,
                        after,
                        first_available.saturating_sub(1).min(up_to),
                    )
                    .await?;
                older.into_iter().map(Arc::new).chain(messages).collect()
            }
        };
        let contiguous = messages
            .iter()
            .zip(after + 1..)
            .all(|(m, expected)| m.offset == expected)
            && messages.len() as u64 == up_to - after;
        Ok(contiguous.then_some(messages))
    }
}

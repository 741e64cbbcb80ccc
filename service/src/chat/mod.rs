//! The chat hub: rooms as clients see them. It authorises callers for a room, sends
//! messages (rate limit → relay assigns the offset and fans out → log makes it durable →
//! ack), relays typing, and runs one pump task per open stream that turns the relay's feed
//! into that client's events: recovery backlog first, then live events in offset order,
//! with presence kept per participant.

pub mod outbound;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tonic::Status;
use uuid::Uuid;

use crate::auth::Principal;
use crate::domain::{ClientMessageId, MessageBody};
use crate::error::ApiError;
use crate::log::{LogError, MessageLog};
use crate::metrics::{Metrics, Rejection};
use crate::rate_limit::TokenBuckets;
use crate::relay::{RelayError, Replay, RoomRelay, Subscription};
use crate::room::{ChatMessage, MessageDraft, Participant, Position, RoomEvent};
use crate::store::{self, Store};
use outbound::{Gone, Outbound, Outgoing};

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

/// Sends on one `Chat` stream that have been published but not yet answered. The sender
/// gets an `ack` (or `send_rejected`) instead of the `message` event, at the place the
/// message holds in the room's order: when the pump reaches such a message it waits for the
/// send's answer and delivers that instead.
#[derive(Clone, Default)]
pub struct PendingSends(Arc<Mutex<HashMap<String, oneshot::Receiver<Outgoing>>>>);

impl PendingSends {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, oneshot::Receiver<Outgoing>>> {
        self.0.lock().expect("pending sends lock poisoned")
    }

    /// Registers a send; `None` if one with this id is already pending.
    fn register(&self, client_message_id: &str) -> Option<oneshot::Sender<Outgoing>> {
        let mut map = self.map();
        if map.contains_key(client_message_id) {
            return None;
        }
        let (answer, rx) = oneshot::channel();
        map.insert(client_message_id.to_owned(), rx);
        Some(answer)
    }

    fn take(&self, client_message_id: &str) -> Option<oneshot::Receiver<Outgoing>> {
        self.map().remove(client_message_id)
    }
}

/// A send that failed, and whether its message had already reached the room (only its
/// durability failed) — then the failure is reported where the message stands in order.
#[derive(Debug)]
pub struct SendFailure {
    pub error: ApiError,
    pub published: bool,
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
    log: Arc<dyn MessageLog>,
    settings: ChatSettings,
    send_limits: TokenBuckets<(Uuid, Uuid)>,
    typing_limits: TokenBuckets<(Uuid, Uuid)>,
    shutdown: CancellationToken,
    metrics: Arc<Metrics>,
    open_streams: Arc<Mutex<HashMap<StreamOwner, usize>>>,
    /// Streams open on this node per room, for the operators' overview.
    room_streams: Arc<Mutex<HashMap<Uuid, usize>>>,
}

/// One open stream of a room on this node, counted until dropped.
struct RoomStreamCount {
    rooms: Arc<Mutex<HashMap<Uuid, usize>>>,
    group_id: Uuid,
}

impl RoomStreamCount {
    fn open(rooms: &Arc<Mutex<HashMap<Uuid, usize>>>, group_id: Uuid) -> Self {
        *rooms
            .lock()
            .expect("room stream count lock poisoned")
            .entry(group_id)
            .or_default() += 1;
        Self {
            rooms: rooms.clone(),
            group_id,
        }
    }
}

impl Drop for RoomStreamCount {
    fn drop(&mut self) {
        let mut rooms = self.rooms.lock().expect("room stream count lock poisoned");
        if let Some(n) = rooms.get_mut(&self.group_id) {
            *n -= 1;
            if *n == 0 {
                rooms.remove(&self.group_id);
            }
        }
    }
}

/// A stream's place in its room's presence: [`PresenceGuard::leave`] gives it up (and
/// announces the member leaving if it was their last stream); dropped without that, it
/// leaves in a task of its own.
struct PresenceGuard {
    hub: Option<Arc<ChatHub>>,
    group_id: Uuid,
    who: Participant,
}

impl PresenceGuard {
    async fn leave(mut self) {
        if let Some(hub) = self.hub.take() {
            leave_presence(hub, self.group_id, self.who.clone()).await;
        }
    }
}

impl Drop for PresenceGuard {
    fn drop(&mut self) {
        if let Some(hub) = self.hub.take() {
            let (group_id, who) = (self.group_id, self.who.clone());
            tokio::spawn(leave_presence(hub, group_id, who));
        }
    }
}

async fn leave_presence(hub: Arc<ChatHub>, group_id: Uuid, who: Participant) {
    let left = hub.relay.presence_leave(group_id, &who).await;
    if matches!(left, Ok(true))
        && let Err(err) = hub
            .relay
            .broadcast(group_id, RoomEvent::MemberLeft(who))
            .await
    {
        tracing::debug!(error = %err, "could not announce a member leaving");
    }
}

/// One open room stream of a participant, counted until dropped.
struct StreamSlot {
    open_streams: Arc<Mutex<HashMap<StreamOwner, usize>>>,
    owners: [StreamOwner; 2],
}

/// Who a room stream is counted against: the person, and the address it came from (one
/// address could otherwise join under many names and hold a share for each).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum StreamOwner {
    Participant(Uuid),
    Client(String),
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self
            .open_streams
            .lock()
            .expect("stream count lock poisoned");
        for owner in &self.owners {
            if let Some(n) = open.get_mut(owner) {
                *n -= 1;
                if *n == 0 {
                    open.remove(owner);
                }
            }
        }
    }
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
        log: Arc<dyn MessageLog>,
        settings: ChatSettings,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            metrics,
            store,
            relay,
            log,
            send_limits: TokenBuckets::new(settings.send_rate, settings.send_burst),
            typing_limits: TokenBuckets::new(1.0, 1),
            settings,
            shutdown: CancellationToken::new(),
            open_streams: Arc::default(),
            room_streams: Arc::default(),
        }
    }

    pub fn relay(&self) -> &Arc<dyn RoomRelay> {
        &self.relay
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
        self.shutdown.cancel();
    }

    /// Who `principal` is in `group_id`'s room: its owner (access token) or one of its
    /// members (member token of that group). `NOT_FOUND` for a missing group.
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
        let started = std::time::Instant::now();
        let result = self
            .place_and_persist(who, group_id, client_message_id, body)
            .await;
        match &result {
            Ok((_, true)) => self.metrics.message_sent(started.elapsed()),
            Ok((_, false)) => {}
            Err(failure) => self.metrics.send_rejected(match failure.error {
                ApiError::InvalidArgument(_) => Rejection::Invalid,
                ApiError::ResourceExhausted(_) => Rejection::RateLimited,
                _ => Rejection::Unavailable,
            }),
        }
        result
    }

    async fn place_and_persist(
        &self,
        who: &Participant,
        group_id: Uuid,
        client_message_id: &str,
        body: &str,
    ) -> Result<(Arc<ChatMessage>, bool), SendFailure> {
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
        let published = self.relay.publish(draft).await.map_err(relay_error)?;
        let is_new = matches!(published, crate::relay::Published::New(_));
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

    /// Sends on a `Chat` stream: the answer (ack or rejection) goes to `out`, in the room's
    /// order when the message was published (see [`PendingSends`]). Without a client id the
    /// server picks one, so that the pump can recognise the message.
    pub async fn send_on_stream(
        &self,
        who: &Participant,
        group_id: Uuid,
        client_message_id: String,
        body: &str,
        pending: &PendingSends,
        out: &Outbound,
    ) -> Result<(), Gone> {
        let client_message_id = if client_message_id.is_empty() {
            Uuid::new_v4().to_string()
        } else {
            client_message_id
        };
        let answer = pending.register(&client_message_id);
        let result = self.send(who, group_id, &client_message_id, body).await;
        let (event, in_order) = match result {
            Ok((message, is_new)) => (
                Outgoing::Ack {
                    client_message_id: client_message_id.clone(),
                    message,
                },
                is_new,
            ),
            Err(failure) => (
                Outgoing::SendRejected {
                    client_message_id: client_message_id.clone(),
                    status: failure.error.into(),
                },
                failure.published,
            ),
        };
        match answer {
            Some(answer) if in_order => {
                // The pump delivers it when it reaches the message (or has already taken it).
                let _ = answer.send(event);
                Ok(())
            }
            // No new message will come for it (a duplicate, or refused before it reached
            // the room): answer now — unless the pump already took this send's slot because
            // the original message (sent earlier with the same id, e.g. before a reconnect)
            // reached it; then the pump answers in its place.
            Some(answer) => match pending.take(&client_message_id) {
                Some(_) => out.push(event),
                None => {
                    let _ = answer.send(event);
                    Ok(())
                }
            },
            None => out.push(event),
        }
    }

    /// Tells the room `who` is typing; at most once a second per participant (extra calls
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

    /// The group is gone: end its streams with `NOT_FOUND`.
    pub async fn close_room(&self, group_id: Uuid) {
        if let Err(err) = self.relay.close_room(group_id).await {
            tracing::warn!(%group_id, error = %err, "could not close the room's streams");
        }
    }

    /// Opens `who`'s stream of the room: sends `joined`, the recovery backlog after `since`,
    /// then live events until the client leaves, the group is deleted, the client reads too
    /// slowly, or the server shuts down. Returns once the stream is set up; a task pumps it.
    /// `client` is the caller's address as per-client limits count it.
    pub async fn open(
        self: &Arc<Self>,
        who: Participant,
        client: &str,
        group_id: Uuid,
        since: Option<Position>,
        out: Outbound,
        pending: Option<PendingSends>,
    ) -> Result<(), ApiError> {
        let slot = self.take_stream_slot(who.id, client)?;
        let subscription = self.relay.subscribe(group_id).await.map_err(relay_error)?;
        // After the backlog the client has everything up to the subscription's head; live
        // events continue from there.
        let last = subscription.head;
        let (recovered, backlog) = match since {
            Some(pos) if pos.epoch == subscription.epoch && pos.offset <= subscription.head => {
                match self
                    .fill(group_id, &subscription.epoch, pos.offset, subscription.head)
                    .await?
                {
                    Some(backlog) => (true, backlog),
                    None => (false, Vec::new()),
                }
            }
            _ => (false, Vec::new()),
        };
        let came_online = self
            .relay
            .presence_join(group_id, &who)
            .await
            .map_err(relay_error)?;
        // From here on, however this ends (an error below, the client resetting the call
        // while it runs, or the stream's end), the stream leaves the room's presence.
        let presence = PresenceGuard {
            hub: Some(self.clone()),
            group_id,
            who: who.clone(),
        };
        if came_online {
            self.relay
                .broadcast(group_id, RoomEvent::MemberJoined(who.clone()))
                .await
                .map_err(relay_error)?;
        }
        let online = self.relay.online(group_id).await.map_err(relay_error)?;
        tracing::info!(%group_id, participant = %who.id, recovered, backlog = backlog.len(), "room stream opened");

        let hub = self.clone();
        let joined = Outgoing::Joined {
            epoch: subscription.epoch.clone(),
            offset: subscription.head,
            recovered,
            online,
        };
        let counted = RoomStreamCount::open(&self.room_streams, group_id);
        tokio::spawn(async move {
            let _slot = slot;
            let _counted = counted;
            let pump = Pump {
                hub: hub.clone(),
                group_id,
                who: who.clone(),
                out,
                pending,
                last,
            };
            hub.metrics.stream_opened();
            pump.run(joined, backlog, subscription).await;
            hub.metrics.stream_closed();
            presence.leave().await;
            tracing::info!(%group_id, participant = %who.id, "room stream closed");
        });
        Ok(())
    }

    /// Counts a new stream of `participant` from `client`, or refuses it when either
    /// already holds its share (`max_streams_per_participant`, `max_streams_per_client`).
    fn take_stream_slot(&self, participant: Uuid, client: &str) -> Result<StreamSlot, ApiError> {
        let mut open = self
            .open_streams
            .lock()
            .expect("stream count lock poisoned");
        let owners = [
            StreamOwner::Participant(participant),
            StreamOwner::Client(client.to_owned()),
        ];
        let held = |owner: &StreamOwner| open.get(owner).copied().unwrap_or(0);
        if held(&owners[0]) >= self.settings.max_streams_per_participant {
            tracing::warn!(%participant, "room stream refused: too many open");
            return Err(ApiError::ResourceExhausted(format!(
                "Too many open room streams: at most {} at once; close one first.",
                self.settings.max_streams_per_participant
            )));
        }
        if held(&owners[1]) >= self.settings.max_streams_per_client {
            tracing::warn!(%participant, client, "room stream refused: too many from this address");
            return Err(ApiError::ResourceExhausted(format!(
                "Too many open room streams from your address: at most {} at once.",
                self.settings.max_streams_per_client
            )));
        }
        for owner in &owners {
            *open.entry(owner.clone()).or_insert(0) += 1;
        }
        Ok(StreamSlot {
            open_streams: self.open_streams.clone(),
            owners,
        })
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

/// Feeds one client from the room.
struct Pump {
    hub: Arc<ChatHub>,
    group_id: Uuid,
    who: Participant,
    out: Outbound,
    pending: Option<PendingSends>,
    /// Offset of the last message this client has (or was told it has).
    last: u64,
}

impl Pump {
    async fn run(
        mut self,
        joined: Outgoing,
        backlog: Vec<Arc<ChatMessage>>,
        mut subscription: Subscription,
    ) {
        if self.out.push_wait(joined).await.is_err() {
            return;
        }
        for message in backlog {
            if self
                .out
                .push_wait(Outgoing::Message(message))
                .await
                .is_err()
            {
                return;
            }
        }
        let shutdown = self.hub.shutdown.clone();
        loop {
            let event = tokio::select! {
                biased;
                _ = shutdown.cancelled() => {
                    self.out.end(Status::unavailable("server shutting down; reconnect and resume from your last offset"));
                    return;
                }
                _ = self.out.closed() => return,
                event = subscription.events.next() => event,
            };
            let result = match event {
                None => {
                    self.out.end(Status::unavailable(
                        "the room feed ended; reconnect and resume from your last offset",
                    ));
                    return;
                }
                Some(Err(_lagged)) => {
                    self.hub.metrics.slow_consumer();
                    self.out.end(Status::resource_exhausted(
                        "slow consumer: the client fell too far behind the room",
                    ));
                    return;
                }
                Some(Ok(RoomEvent::Reset)) => {
                    self.out.end(Status::aborted(
                        "the room was reset; rejoin and reload history",
                    ));
                    return;
                }
                Some(Ok(RoomEvent::Closed)) => {
                    self.out.end(Status::not_found("The group was deleted."));
                    return;
                }
                Some(Ok(RoomEvent::Message(message))) => {
                    self.deliver(message, &subscription.epoch).await
                }
                Some(Ok(RoomEvent::Typing(p))) if p.id != self.who.id => {
                    self.out.push(Outgoing::Typing(p))
                }
                Some(Ok(RoomEvent::MemberJoined(p))) if p.id != self.who.id => {
                    self.out.push(Outgoing::MemberJoined(p))
                }
                Some(Ok(RoomEvent::MemberLeft(p))) if p.id != self.who.id => {
                    self.out.push(Outgoing::MemberLeft(p))
                }
                Some(Ok(_about_me)) => Ok(()),
            };
            if result == Err(Gone::SlowConsumer) {
                self.hub.metrics.slow_consumer();
            }
            if result.is_err() {
                return;
            }
        }
    }

    /// Delivers `message` in offset order: skips what the client has, fills a gap from the
    /// relay or store, and ends the stream if a gap cannot be filled (never a silent gap).
    async fn deliver(&mut self, message: Arc<ChatMessage>, epoch: &str) -> Result<(), Gone> {
        if message.offset <= self.last {
            return Ok(());
        }
        if message.offset > self.last + 1 {
            match self
                .hub
                .fill(self.group_id, epoch, self.last, message.offset - 1)
                .await
            {
                Ok(Some(missing)) => {
                    for m in missing {
                        self.forward(m).await?;
                    }
                }
                _ => {
                    self.out.end(Status::aborted(
                        "messages were missed; rejoin from your last offset",
                    ));
                    return Err(Gone::Closed);
                }
            }
        }
        self.forward(message).await
    }

    /// Delivers the next message in order. A message this stream sent is answered with its
    /// ack (or rejection) instead, once the send has its answer.
    async fn forward(&mut self, message: Arc<ChatMessage>) -> Result<(), Gone> {
        self.last = message.offset;
        let answer = match &self.pending {
            Some(pending) if message.sender_id == self.who.id => {
                pending.take(&message.client_message_id)
            }
            _ => None,
        };
        self.hub.metrics.delivered();
        let Some(answer) = answer else {
            return self.out.push(Outgoing::Message(message));
        };
        tokio::select! {
            answer = answer => match answer {
                Ok(event) => self.out.push(event),
                // No answer will come (the request handler is gone): show the message as is.
                Err(_) => self.out.push(Outgoing::Message(message)),
            },
            _ = self.out.closed() => Err(Gone::Closed),
            // The run loop ends the stream.
            _ = self.hub.shutdown.cancelled() => Ok(()),
        }
    }
}

//! A room stream, both halves, as `Chat` and `Subscribe` open it: [`ChatHub::open_chat`]
//! and [`ChatHub::open_subscription`] check the caller's share of streams, subscribe to the
//! room, work out the recovery backlog, mark the caller present, and hand back the
//! [`EventStream`] the API edge sends.
//!
//! - Server to client, one [`Pump`] task per stream: `joined`, the backlog, then the room's
//!   live events in offset order (gaps filled from the relay or the store, never skipped),
//!   until the client leaves, the group is deleted, the member is removed (or leaves, or
//!   the group's member tokens are revoked), the client reads too slowly or the server
//!   shuts down ([`StreamEnd`] says which).
//! - Client to server, on `Chat` only, one [`run_commands`] task: sends (answered in the
//!   room's order, see [`PendingSends`]) and typing. It is a task of its own rather than a
//!   branch of the pump's `select!` because a send waits for durability (up to the append
//!   timeout) while the pump keeps delivering, and the pump itself waits for a send's answer
//!   when it reaches that send's message.
//!
//! Both end together: the pump's end closes the queue, which stops `run_commands`; the
//! client leaving ends the queue after what it holds.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::{Stream, StreamExt};
use tokio::sync::oneshot;
use tokio::task::JoinSet;
use uuid::Uuid;

use super::outbound::{self, EventStream, Gone, Outbound, Outgoing, StreamEnd};
use super::{ChatHub, Placed, relay_error};
use crate::auth::MemberPrincipal;
use crate::error::ApiError;
use crate::relay::Subscription;
use crate::room::{ChatMessage, Participant, Position, RoomEvent};

/// What a client asks for on its `Chat` stream after joining.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// A second join: refused, the stream stays in its room.
    Join,
    Send {
        client_message_id: String,
        body: String,
    },
    Typing,
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
    let left = hub.presence.leave(group_id, &who).await;
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
pub(super) enum StreamOwner {
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

impl ChatHub {
    /// Opens `who`'s `Chat` stream of the room: the events of [`ChatHub::open`], and
    /// `commands` (what the client sends after its join) are carried out until it ends.
    pub async fn open_chat(
        self: &Arc<Self>,
        who: Participant,
        member: Option<MemberPrincipal>,
        client: &str,
        group_id: Uuid,
        since: Option<Position>,
        commands: impl Stream<Item = Command> + Send + Unpin + 'static,
    ) -> Result<EventStream, ApiError> {
        let (out, events) = outbound::channel(self.settings.outbound_capacity);
        let pending = PendingSends::default();
        self.open(
            who.clone(),
            member,
            client,
            group_id,
            since,
            out.clone(),
            Some(pending.clone()),
        )
        .await?;
        tokio::spawn(run_commands(
            self.clone(),
            who,
            group_id,
            commands,
            out,
            pending,
        ));
        Ok(events)
    }

    /// Opens `who`'s read-only stream of the room (`Subscribe`, for gRPC-web clients that
    /// send with unary calls).
    pub async fn open_subscription(
        self: &Arc<Self>,
        who: Participant,
        member: Option<MemberPrincipal>,
        client: &str,
        group_id: Uuid,
        since: Option<Position>,
    ) -> Result<EventStream, ApiError> {
        let (out, events) = outbound::channel(self.settings.outbound_capacity);
        self.open(who, member, client, group_id, since, out, None)
            .await?;
        Ok(events)
    }

    /// Opens `who`'s stream of the room: sends `joined`, the recovery backlog after `since`,
    /// then live events until the client leaves, the group is deleted, the client reads too
    /// slowly, or the server shuts down. Returns once the stream is set up; a task pumps it.
    /// `client` is the caller's address as per-client limits count it; `member` is the
    /// member token the stream was opened with (`None` for the owner).
    #[allow(clippy::too_many_arguments)]
    async fn open(
        self: &Arc<Self>,
        who: Participant,
        member: Option<MemberPrincipal>,
        client: &str,
        group_id: Uuid,
        since: Option<Position>,
        out: Outbound,
        pending: Option<PendingSends>,
    ) -> Result<(), ApiError> {
        let slot = self.take_stream_slot(who.id, client)?;
        let subscription = self.relay.subscribe(group_id).await.map_err(relay_error)?;
        // Checked again now that the stream hears the room, from the store: a removal or
        // revocation committed before this read is seen here, and one after it arrives as
        // an event, so no stream outlives its member.
        if let Some(member) = &member {
            self.members.check_fresh(member).await?;
        }
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
            .presence
            .join(group_id, &who)
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
        let online = self.presence.online(group_id).await.map_err(relay_error)?;
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
                is_member: member.is_some(),
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

    /// The first half of a send on a `Chat` stream: registers it to be answered in the
    /// room's order (see [`PendingSends`]) and places its message in the room. Without a
    /// client id the server picks one, so that the pump can recognise the message.
    async fn place_on_stream(
        &self,
        who: &Participant,
        group_id: Uuid,
        client_message_id: String,
        body: &str,
        pending: &PendingSends,
    ) -> PlacedSend {
        let client_message_id = if client_message_id.is_empty() {
            Uuid::new_v4().to_string()
        } else {
            client_message_id
        };
        let answer = pending.register(&client_message_id);
        let placed = self.place(who, group_id, &client_message_id, body).await;
        PlacedSend {
            client_message_id,
            answer,
            placed,
        }
    }

    /// The second half: once the message is durable (or the send failed), the answer (ack
    /// or rejection) goes to `out`, in the room's order when the message was published.
    async fn answer_on_stream(
        &self,
        send: PlacedSend,
        pending: &PendingSends,
        out: &Outbound,
    ) -> Result<(), Gone> {
        let PlacedSend {
            client_message_id,
            answer,
            placed,
        } = send;
        let (event, in_order) = match self.make_durable(placed).await {
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
                    error: failure.error,
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
}

/// A send on a `Chat` stream whose message has its place in the room, waiting to be made
/// durable and answered.
struct PlacedSend {
    client_message_id: String,
    /// `None` when a send with the same id was already pending on this stream.
    answer: Option<oneshot::Sender<Outgoing>>,
    placed: Placed,
}

/// Most sends of one `Chat` stream waiting for durability at once. A stream's sends are
/// placed in the room one after another, in the order the client sent them, but each waits
/// for the log on its own: a client streaming sends is not held to one log round trip per
/// message. Past this many the stream reads no more commands until one is answered.
const SENDS_IN_FLIGHT: usize = 64;

/// Carries out a `Chat` stream's commands after the join: each send is answered with an ack
/// or a rejection on the same stream (the stream stays open); typing is relayed. Sends wait
/// for durability concurrently (at most [`SENDS_IN_FLIGHT`]); their answers keep the room's
/// order (see [`PendingSends`]). Ends when the client is done (its commands end: half-close
/// or a broken connection; the stream then ends after what is queued, the sends still in
/// flight answered first), or the stream ended.
pub async fn run_commands(
    hub: Arc<ChatHub>,
    who: Participant,
    group_id: Uuid,
    mut commands: impl Stream<Item = Command> + Send + Unpin,
    out: Outbound,
    pending: PendingSends,
) {
    let mut in_flight = JoinSet::new();
    let left = loop {
        let command = tokio::select! {
            _ = out.closed() => break false,
            Some(answered) = in_flight.join_next() => {
                if !matches!(answered, Ok(Ok(()))) {
                    break false;
                }
                continue;
            }
            command = commands.next(), if in_flight.len() < SENDS_IN_FLIGHT => command,
        };
        let Some(command) = command else {
            break true;
        };
        let pushed = match command {
            Command::Join => out.push(Outgoing::SendRejected {
                client_message_id: String::new(),
                error: ApiError::FailedPrecondition(
                    "already joined; open another stream for another room".into(),
                ),
            }),
            Command::Typing => match hub.typing(&who, group_id).await {
                Ok(()) => Ok(()),
                Err(err) => {
                    tracing::debug!(error = %err, "typing not relayed");
                    Ok(())
                }
            },
            Command::Send {
                client_message_id,
                body,
            } => {
                // Boxed: this task lives as long as the stream, a send's future only while
                // it runs.
                let send = Box::pin(hub.place_on_stream(
                    &who,
                    group_id,
                    client_message_id,
                    &body,
                    &pending,
                ))
                .await;
                let (hub, pending, out) = (hub.clone(), pending.clone(), out.clone());
                in_flight.spawn(async move { hub.answer_on_stream(send, &pending, &out).await });
                Ok(())
            }
        };
        if pushed.is_err() {
            break false;
        }
    };
    // Every send placed in the room gets its answer (or, if the client is gone, at least its
    // wait for durability) before the stream ends.
    while in_flight.join_next().await.is_some() {}
    if left {
        out.end(StreamEnd::Left);
    }
}

/// Feeds one client from the room.
struct Pump {
    hub: Arc<ChatHub>,
    group_id: Uuid,
    /// Opened with a member token (not the owner's access token): ends when the group's
    /// member tokens are revoked.
    is_member: bool,
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
                    self.out.end(StreamEnd::ShuttingDown);
                    return;
                }
                _ = self.out.closed() => return,
                event = subscription.events.next() => event,
            };
            let result = match event {
                None => {
                    self.out.end(StreamEnd::FeedEnded);
                    return;
                }
                Some(Err(_lagged)) => {
                    self.hub.metrics.slow_consumer();
                    self.out.end(StreamEnd::Lagged);
                    return;
                }
                Some(Ok(RoomEvent::Reset)) => {
                    self.out.end(StreamEnd::Reset);
                    return;
                }
                Some(Ok(RoomEvent::Closed)) => {
                    self.out.end(StreamEnd::GroupDeleted);
                    return;
                }
                Some(Ok(RoomEvent::MemberRemoved { who, left })) if who.id == self.who.id => {
                    self.out.end(if left {
                        StreamEnd::LeftGroup
                    } else {
                        StreamEnd::Removed
                    });
                    return;
                }
                Some(Ok(RoomEvent::MemberRemoved { who, left })) => {
                    self.out.push(Outgoing::MemberRemoved { who, left })
                }
                Some(Ok(RoomEvent::MembersRevoked)) if self.is_member => {
                    self.out.end(StreamEnd::Revoked);
                    return;
                }
                Some(Ok(RoomEvent::MembersRevoked)) => Ok(()),
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
            // Boxed: a gap is rare, and its future (a store query) would otherwise be part of
            // every stream's task for as long as the stream is open.
            let fill = Box::pin(
                self.hub
                    .fill(self.group_id, epoch, self.last, message.offset - 1),
            );
            match fill.await {
                Ok(Some(missing)) => {
                    for m in missing {
                        self.forward(m).await?;
                    }
                }
                _ => {
                    self.out.end(StreamEnd::Missed);
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

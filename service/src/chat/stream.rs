//! A room stream, both halves, as `Chat` and `Subscribe` open it: [`ChatHub::open_chat`]
//! and [`ChatHub::open_subscription`] check the caller's share of streams, subscribe to the
//! room, work out the recovery backlog, mark the caller present, and hand back the
//! [`EventStream`] the API edge sends.
//!
//! - Server to client, a [`RoomReader`] read by the [`EventStream`] itself, in the task
//!   that writes the response: `joined`, the backlog, then the room's live events in
//!   offset order (gaps filled from the relay or the store, never skipped), until the
//!   client leaves, the group is deleted, the member is removed (or leaves, or the group's
//!   member tokens are revoked), the client reads too slowly or the server shuts down
//!   ([`StreamEnd`] says which). An event costs a subscriber one wake of that task: no
//!   task or queue of its own in between.
//! - Client to server, on `Chat` only, one [`run_commands`] task: sends (answered in the
//!   room's order, see [`PendingSends`]) and typing. A send waits for durability (up to
//!   the append timeout) while the reader keeps delivering, and the reader waits for a
//!   send's answer when it reaches that send's message.
//!
//! Both end together: the stream's end stops `run_commands`; the client leaving ends the
//! stream once its sends are answered.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker, ready};

use futures::future::BoxFuture;
use futures::{Stream, StreamExt};
use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tokio_util::sync::WaitForCancellationFutureOwned;
use uuid::Uuid;

use super::outbound::{self, EventStream, Gone, Outbound, Outgoing, StreamEnd};
use super::{ChatHub, Placed, relay_error};
use crate::auth::MemberPrincipal;
use crate::error::ApiError;
use crate::relay::Lagged;
use crate::relay::room_feed::FeedReceiver;
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
/// message holds in the room's order: when the reader reaches such a message it waits for the
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

/// A stream's place in its room's presence: dropped, it gives it up (and announces the
/// member leaving if it was their last stream) in a task of its own.
struct PresenceGuard {
    hub: Option<Arc<ChatHub>>,
    group_id: Uuid,
    who: Participant,
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
        let pending = PendingSends::default();
        let reader = self
            .open(
                who.clone(),
                member,
                client,
                group_id,
                since,
                Some(pending.clone()),
            )
            .await?;
        let (out, events) = outbound::channel(self.settings.outbound_capacity, reader);
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
        let reader = self
            .open(who, member, client, group_id, since, None)
            .await?;
        let (_, events) = outbound::channel(self.settings.outbound_capacity, reader);
        Ok(events)
    }

    /// Opens `who`'s stream of the room: its reader yields `joined`, the recovery backlog
    /// after `since`, then live events until the group is deleted, the client reads too
    /// slowly, or the server shuts down. Returns once the stream is set up.
    /// `client` is the caller's address as per-client limits count it; `member` is the
    /// member token the stream was opened with (`None` for the owner).
    async fn open(
        self: &Arc<Self>,
        who: Participant,
        member: Option<MemberPrincipal>,
        client: &str,
        group_id: Uuid,
        since: Option<Position>,
        pending: Option<PendingSends>,
    ) -> Result<RoomReader, ApiError> {
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

        let mut first = VecDeque::with_capacity(1 + backlog.len());
        first.push_back(Outgoing::Joined {
            epoch: subscription.epoch.clone(),
            offset: subscription.head,
            recovered,
            online,
        });
        first.extend(backlog.into_iter().map(Outgoing::Message));
        self.metrics.stream_opened();
        Ok(RoomReader {
            hub: self.clone(),
            group_id,
            is_member: member.is_some(),
            who,
            pending,
            last,
            epoch: subscription.epoch,
            events: subscription.events,
            first,
            forwarding: VecDeque::new(),
            waiting: None,
            shutdown: Box::pin(self.shutdown.clone().cancelled_owned()),
            shutdown_waker: None,
            _slot: slot,
            _counted: RoomStreamCount::open(&self.room_streams, group_id),
            _presence: presence,
        })
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
    /// client id the server picks one, so that the reader can recognise the message.
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
                // The reader delivers it when it reaches the message (or has already taken it).
                let _ = answer.send(event);
                Ok(())
            }
            // No new message will come for it (a duplicate, or refused before it reached
            // the room): answer now — unless the reader already took this send's slot because
            // the original message (sent earlier with the same id, e.g. before a reconnect)
            // reached it; then the reader answers in its place.
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

/// One client's events from the room, read by its [`EventStream`] whenever the API edge
/// asks for more (no task or queue in between): `joined` and the backlog first, then the
/// room's live events in offset order (gaps filled from the relay or the store, never
/// skipped), this stream's own sends answered in their messages' places. Dropped, it gives
/// up the stream's place in the room (its slot, its count, its presence).
pub struct RoomReader {
    hub: Arc<ChatHub>,
    group_id: Uuid,
    /// Opened with a member token (not the owner's access token): ends when the group's
    /// member tokens are revoked.
    is_member: bool,
    who: Participant,
    pending: Option<PendingSends>,
    /// Offset of the last message this client has (or was told it has).
    last: u64,
    epoch: String,
    events: FeedReceiver,
    /// Delivered before anything from the feed: `joined`, then the backlog.
    first: VecDeque<Outgoing>,
    /// Messages to deliver, in order, before reading the feed again (a filled gap).
    forwarding: VecDeque<Arc<ChatMessage>>,
    waiting: Option<Waiting>,
    /// Wakes the reader when the server shuts down; polled again only for a new task.
    shutdown: Pin<Box<WaitForCancellationFutureOwned>>,
    shutdown_waker: Option<Waker>,
    _slot: StreamSlot,
    _counted: RoomStreamCount,
    _presence: PresenceGuard,
}

/// What a reader waits for before it reads on.
enum Waiting {
    /// The missing messages before `then`, from the relay's window or the store.
    Fill {
        fill: BoxFuture<'static, Result<Option<Vec<Arc<ChatMessage>>>, ApiError>>,
        then: Arc<ChatMessage>,
    },
    /// The answer to this stream's own send of `message`, delivered in its place.
    Answer {
        answer: oneshot::Receiver<Outgoing>,
        message: Arc<ChatMessage>,
    },
}

/// What one event from the feed comes to.
enum Step {
    Deliver(Outgoing),
    End(StreamEnd),
    Skip,
}

impl RoomReader {
    /// The next event for the client, or why the stream ends.
    pub(super) fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Result<Outgoing, StreamEnd>> {
        if let Some(event) = self.take_first() {
            return Poll::Ready(Ok(event));
        }
        if self.hub.is_stopping() {
            return Poll::Ready(Err(StreamEnd::ShuttingDown));
        }
        if !self
            .shutdown_waker
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            if self.shutdown.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(StreamEnd::ShuttingDown));
            }
            self.shutdown_waker = Some(cx.waker().clone());
        }
        loop {
            match &mut self.waiting {
                Some(Waiting::Answer { answer, message }) => {
                    let event = match ready!(Pin::new(answer).poll(cx)) {
                        Ok(event) => event,
                        // No answer will come (the request handler is gone): show the
                        // message as is.
                        Err(_) => Outgoing::Message(message.clone()),
                    };
                    self.waiting = None;
                    return Poll::Ready(Ok(event));
                }
                Some(Waiting::Fill { fill, then }) => {
                    let filled = ready!(fill.as_mut().poll(cx));
                    let then = then.clone();
                    self.waiting = None;
                    let Ok(Some(missing)) = filled else {
                        return Poll::Ready(Err(StreamEnd::Missed));
                    };
                    self.forwarding.extend(missing);
                    self.forwarding.push_back(then);
                }
                None => {}
            }
            if let Some(message) = self.forwarding.pop_front() {
                if let Some(event) = self.forward(message) {
                    return Poll::Ready(Ok(event));
                }
                continue;
            }
            let event = ready!(self.events.poll_recv(cx));
            match self.step(event) {
                Step::Deliver(event) => return Poll::Ready(Ok(event)),
                Step::End(why) => return Poll::Ready(Err(why)),
                Step::Skip => {}
            }
        }
    }

    /// `joined` or the next message of the backlog, while they last.
    pub(super) fn take_first(&mut self) -> Option<Outgoing> {
        self.first.pop_front()
    }

    /// Whether sends of this stream still wait for their answers to be delivered.
    pub(super) fn owes_answers(&self) -> bool {
        !self.forwarding.is_empty()
            || self.waiting.is_some()
            || self.pending.as_ref().is_some_and(|p| !p.map().is_empty())
    }

    fn step(&mut self, event: Option<Result<RoomEvent, Lagged>>) -> Step {
        match event {
            None => Step::End(StreamEnd::FeedEnded),
            Some(Err(Lagged)) => {
                self.hub.metrics.slow_consumer();
                Step::End(StreamEnd::Lagged)
            }
            Some(Ok(RoomEvent::Reset)) => Step::End(StreamEnd::Reset),
            Some(Ok(RoomEvent::Closed)) => Step::End(StreamEnd::GroupDeleted),
            Some(Ok(RoomEvent::MemberRemoved { who, left })) if who.id == self.who.id => {
                Step::End(if left {
                    StreamEnd::LeftGroup
                } else {
                    StreamEnd::Removed
                })
            }
            Some(Ok(RoomEvent::MemberRemoved { who, left })) => {
                Step::Deliver(Outgoing::MemberRemoved { who, left })
            }
            Some(Ok(RoomEvent::MembersRevoked)) if self.is_member => Step::End(StreamEnd::Revoked),
            Some(Ok(RoomEvent::MembersRevoked)) => Step::Skip,
            Some(Ok(RoomEvent::Message(message))) => self.deliver(message),
            Some(Ok(RoomEvent::Typing(p))) if p.id != self.who.id => {
                Step::Deliver(Outgoing::Typing(p))
            }
            Some(Ok(RoomEvent::MemberJoined(p))) if p.id != self.who.id => {
                Step::Deliver(Outgoing::MemberJoined(p))
            }
            Some(Ok(RoomEvent::MemberLeft(p))) if p.id != self.who.id => {
                Step::Deliver(Outgoing::MemberLeft(p))
            }
            Some(Ok(_about_me)) => Step::Skip,
        }
    }

    /// Delivers `message` in offset order: skips what the client has, fills a gap from the
    /// relay or store first (the stream ends if it cannot: never a silent gap).
    fn deliver(&mut self, message: Arc<ChatMessage>) -> Step {
        if message.offset <= self.last {
            return Step::Skip;
        }
        if message.offset > self.last + 1 {
            let (hub, group_id, epoch, after) = (
                self.hub.clone(),
                self.group_id,
                self.epoch.clone(),
                self.last,
            );
            let up_to = message.offset - 1;
            self.waiting = Some(Waiting::Fill {
                fill: Box::pin(async move { hub.fill(group_id, &epoch, after, up_to).await }),
                then: message,
            });
            return Step::Skip;
        }
        match self.forward(message) {
            Some(event) => Step::Deliver(event),
            None => Step::Skip,
        }
    }

    /// The next message in order, or `None` when it is this stream's own send: its answer
    /// (ack or rejection) is then awaited and delivered instead.
    fn forward(&mut self, message: Arc<ChatMessage>) -> Option<Outgoing> {
        self.last = message.offset;
        self.hub.metrics.delivered();
        let answer = match &self.pending {
            Some(pending) if message.sender_id == self.who.id => {
                pending.take(&message.client_message_id)
            }
            _ => None,
        };
        match answer {
            Some(answer) => {
                self.waiting = Some(Waiting::Answer { answer, message });
                None
            }
            None => Some(Outgoing::Message(message)),
        }
    }
}

impl Drop for RoomReader {
    fn drop(&mut self) {
        self.hub.metrics.stream_closed();
        tracing::info!(group_id = %self.group_id, participant = %self.who.id, "room stream closed");
    }
}

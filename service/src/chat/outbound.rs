//! What a room stream sends, as the API edge reads it: [`EventStream`] yields the room's
//! events, read from the room by its [`RoomReader`] when the edge asks for the next one, and
//! what the `Chat` commands handler pushes into a bounded queue through [`Outbound`]
//! (answers that do not wait for a place in the room, refusals). A full queue means the
//! client is not reading: the stream is ended ([`StreamEnd::SlowReader`]) instead of letting
//! memory grow. An ending the commands handler gives (other than [`StreamEnd::Left`])
//! overtakes whatever is still queued; the reader's endings (deleted group, shutdown,
//! lagging) come after it.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;

use super::stream::RoomReader;
use crate::error::ApiError;
use crate::room::{ChatMessage, Participant};

/// One event for one client.
#[derive(Debug)]
pub enum Outgoing {
    Joined {
        epoch: String,
        offset: u64,
        recovered: bool,
        online: Vec<Participant>,
    },
    Message(Arc<ChatMessage>),
    Ack {
        client_message_id: String,
        message: Arc<ChatMessage>,
    },
    Typing(Participant),
    MemberJoined(Participant),
    MemberLeft(Participant),
    MemberRemoved {
        who: Participant,
        left: bool,
    },
    SendRejected {
        client_message_id: String,
        error: ApiError,
    },
}

/// Why a room stream ended. The API edge turns it into the call's final status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEnd {
    /// The client left (closed its side): the stream ends normally once its sends are
    /// answered.
    Left,
    /// The server is shutting down; the client reconnects and resumes.
    ShuttingDown,
    /// The relay's feed of the room ended; the client reconnects and resumes.
    FeedEnded,
    /// The client did not read its stream fast enough: its queue filled up.
    SlowReader,
    /// The client fell so far behind the room that the relay dropped events for it.
    Lagged,
    /// The room lost its state (a new epoch): rejoin and reload history.
    Reset,
    /// Messages were missed and could not be filled in: rejoin from the last offset.
    Missed,
    /// The group was deleted.
    GroupDeleted,
    /// The owner removed this member from the group.
    Removed,
    /// This member left the group (from another stream or device).
    LeftGroup,
    /// The group's member tokens were revoked: join again with the new passcode.
    Revoked,
}

/// Why a push failed: the stream is over either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gone {
    /// The client went away.
    Closed,
    /// The queue was full; the stream has been ended with `RESOURCE_EXHAUSTED`.
    SlowConsumer,
}

/// The producing side, shared by the tasks that write to one client.
///
/// The queue carries boxed events: it allocates its first block of slots when it is created,
/// in every stream, and most streams never queue anything (their events come from the room),
/// so the slots are kept pointer-sized (8 bytes each instead of the event's 64).
#[derive(Clone)]
pub struct Outbound {
    queue: mpsc::Sender<Box<Outgoing>>,
    end: Arc<Mutex<Option<oneshot::Sender<StreamEnd>>>>,
    ended: CancellationToken,
}

/// A connected pair for the stream `room` reads: push into the [`Outbound`], hand the
/// [`EventStream`] to the edge.
pub(super) fn channel(capacity: usize, room: RoomReader) -> (Outbound, EventStream) {
    let (queue, rx) = mpsc::channel(capacity.max(1));
    let (end, end_rx) = oneshot::channel();
    let ended = CancellationToken::new();
    (
        Outbound {
            queue,
            end: Arc::new(Mutex::new(Some(end))),
            ended: ended.clone(),
        },
        EventStream {
            queue: Some(rx),
            end: Some(end_rx),
            room: Some(Box::new(room)),
            ended,
            draining: None,
        },
    )
}

impl Outbound {
    /// Queues `event` without waiting.
    pub fn push(&self, event: Outgoing) -> Result<(), Gone> {
        match self.queue.try_send(Box::new(event)) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(Gone::Closed),
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.end(StreamEnd::SlowReader);
                Err(Gone::SlowConsumer)
            }
        }
    }

    /// Ends the stream (the first call wins). Any ending but [`StreamEnd::Left`] overtakes
    /// the queued events; `Left` ends the stream after what is already queued.
    pub fn end(&self, why: StreamEnd) {
        if let Some(end) = self.end.lock().expect("outbound lock poisoned").take() {
            let _ = end.send(why);
        }
        self.ended.cancel();
    }

    /// Completes when the stream is over: the client went away or [`Outbound::end`] ran.
    pub async fn closed(&self) {
        tokio::select! {
            _ = self.queue.closed() => {}
            _ = self.ended.cancelled() => {}
        }
    }
}

/// Longest a stream whose client has left waits for the answers still owed to it to come
/// round the room (they normally take milliseconds: the sends are durable by then).
const DRAIN_WAIT: Duration = Duration::from_secs(5);

/// What the API edge sends: `joined` and the backlog, then the room's events and the queued
/// ones, then the ending unless the client left.
pub struct EventStream {
    /// `None` once every [`Outbound`] is gone.
    queue: Option<mpsc::Receiver<Box<Outgoing>>>,
    end: Option<oneshot::Receiver<StreamEnd>>,
    /// `None` once the stream has ended (which lets the room go).
    room: Option<Box<RoomReader>>,
    /// Tells the producers the stream is over.
    ended: CancellationToken,
    /// The client left: send what is owed, then finish (at the latest when this fires).
    draining: Option<Pin<Box<Sleep>>>,
}

impl EventStream {
    fn finish(&mut self) {
        self.room = None;
        self.ended.cancel();
    }

    fn poll_queue(&mut self, cx: &mut Context<'_>) -> Poll<Option<Outgoing>> {
        let Some(queue) = self.queue.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = queue.poll_recv(cx).map(|event| event.map(|event| *event));
        if let Poll::Ready(None) = polled {
            self.queue = None;
        }
        polled
    }
}

impl Stream for EventStream {
    type Item = Result<Outgoing, StreamEnd>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let Some(room) = this.room.as_mut() else {
            return Poll::Ready(None);
        };
        // `joined` first, then the backlog, before anything else.
        if let Some(event) = room.take_first() {
            return Poll::Ready(Some(Ok(event)));
        }
        if let Some(end) = this.end.as_mut() {
            match Pin::new(end).poll(cx) {
                Poll::Ready(Ok(StreamEnd::Left)) => {
                    this.end = None;
                    this.draining = Some(Box::pin(tokio::time::sleep(DRAIN_WAIT)));
                }
                Poll::Ready(Ok(why)) => {
                    this.finish();
                    return Poll::Ready(Some(Err(why)));
                }
                // Every producer is gone without a verdict.
                Poll::Ready(Err(_)) => this.end = None,
                Poll::Pending => {}
            }
        }
        if let Poll::Ready(Some(event)) = this.poll_queue(cx) {
            return Poll::Ready(Some(Ok(event)));
        }
        // Checked, not polled: a poll may find nothing only because the task's budget ran out.
        let queued = this.queue.as_ref().is_some_and(|q| !q.is_empty());
        let room = this.room.as_mut().expect("the stream has not ended");
        // Once the client has left, only what it is owed: the answers to its sends, for as
        // long as they take to come round the room (at most `DRAIN_WAIT`).
        if let Some(deadline) = this.draining.as_mut()
            && !queued
            && (!room.owes_answers() || deadline.as_mut().poll(cx).is_ready())
        {
            this.finish();
            return Poll::Ready(None);
        }
        match room.poll_next(cx) {
            Poll::Ready(Ok(event)) => Poll::Ready(Some(Ok(event))),
            Poll::Ready(Err(why)) => {
                this.finish();
                Poll::Ready(Some(Err(why)))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

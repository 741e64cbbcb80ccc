//! The queue between a room stream's producers (the pump and, on `Chat`, the commands
//! handler) and the API edge. Producers push [`Outgoing`] events into a bounded queue;
//! [`EventStream`] yields them to the edge, which encodes them. A full queue means the
//! client is not reading: the stream is ended ([`StreamEnd::SlowReader`]) instead of letting
//! memory grow. An ending other than [`StreamEnd::Left`] (deleted group, shutdown, slow
//! consumer) overtakes whatever is still queued.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures::Stream;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

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
    /// The client left (closed its side): the stream ends normally after what is queued.
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
#[derive(Clone)]
pub struct Outbound {
    queue: mpsc::Sender<Outgoing>,
    end: Arc<Mutex<Option<oneshot::Sender<StreamEnd>>>>,
    ended: CancellationToken,
}

/// A connected pair: push into the [`Outbound`], hand the [`EventStream`] to the edge.
pub fn channel(capacity: usize) -> (Outbound, EventStream) {
    let (queue, rx) = mpsc::channel(capacity.max(1));
    let (end, end_rx) = oneshot::channel();
    (
        Outbound {
            queue,
            end: Arc::new(Mutex::new(Some(end))),
            ended: CancellationToken::new(),
        },
        EventStream {
            queue: rx,
            end: Some(end_rx),
            draining: false,
            finished: false,
        },
    )
}

impl Outbound {
    /// Queues `event` without waiting.
    pub fn push(&self, event: Outgoing) -> Result<(), Gone> {
        match self.queue.try_send(event) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(Gone::Closed),
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.end(StreamEnd::SlowReader);
                Err(Gone::SlowConsumer)
            }
        }
    }

    /// Queues `event`, waiting for room (for backlogs larger than the queue).
    pub async fn push_wait(&self, event: Outgoing) -> Result<(), Gone> {
        self.queue.send(event).await.map_err(|_| Gone::Closed)
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

/// What the API edge sends: the queued events, then the ending unless the client left.
pub struct EventStream {
    queue: mpsc::Receiver<Outgoing>,
    end: Option<oneshot::Receiver<StreamEnd>>,
    /// The client left: send what is queued, then finish.
    draining: bool,
    finished: bool,
}

impl Stream for EventStream {
    type Item = Result<Outgoing, StreamEnd>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.finished {
            return Poll::Ready(None);
        }
        if let Some(end) = self.end.as_mut() {
            match Pin::new(end).poll(cx) {
                Poll::Ready(Ok(StreamEnd::Left)) => {
                    self.end = None;
                    self.draining = true;
                }
                Poll::Ready(Ok(why)) => {
                    self.finished = true;
                    return Poll::Ready(Some(Err(why)));
                }
                // Every producer is gone without a verdict: drain the queue, then end.
                Poll::Ready(Err(_)) => self.end = None,
                Poll::Pending => {}
            }
        }
        match self.queue.poll_recv(cx) {
            Poll::Ready(Some(event)) => Poll::Ready(Some(Ok(event))),
            Poll::Ready(None) => {
                self.finished = true;
                Poll::Ready(None)
            }
            Poll::Pending if self.draining => {
                self.finished = true;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

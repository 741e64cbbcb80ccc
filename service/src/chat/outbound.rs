//! The server-to-client half of a room stream. Producers (the room pump and, on `Chat`, the
//! request handler) push [`Outgoing`] events into a bounded queue; [`EventStream`] is what
//! tonic sends. A full queue means the client is not reading: the stream is ended with
//! `RESOURCE_EXHAUSTED` instead of letting memory grow. A terminal status (deleted group,
//! shutdown, slow consumer) overtakes whatever is still queued.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures::Stream;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tonic::{Code, Status};

use crate::room::{ChatMessage, Participant};

/// One event for one client.
#[derive(Debug, Clone)]
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
    SendRejected {
        client_message_id: String,
        status: Status,
    },
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
    end: Arc<Mutex<Option<oneshot::Sender<Status>>>>,
    ended: CancellationToken,
}

/// A connected pair: push into the [`Outbound`], hand the [`EventStream`] to tonic.
pub fn channel<T>(capacity: usize) -> (Outbound, EventStream<T>) {
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
            _into: std::marker::PhantomData,
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
                self.end(Status::resource_exhausted(
                    "slow consumer: the client did not read its stream fast enough",
                ));
                Err(Gone::SlowConsumer)
            }
        }
    }

    /// Queues `event`, waiting for room (for backlogs larger than the queue).
    pub async fn push_wait(&self, event: Outgoing) -> Result<(), Gone> {
        self.queue.send(event).await.map_err(|_| Gone::Closed)
    }

    /// Ends the stream with `status` (the first call wins). An error status overtakes the
    /// queued events; `OK` ends the stream after what is already queued.
    pub fn end(&self, status: Status) {
        if let Some(end) = self.end.lock().expect("outbound lock poisoned").take() {
            let _ = end.send(status);
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

/// The stream tonic sends: queued events converted to the RPC's response type, or the
/// terminal status.
pub struct EventStream<T> {
    queue: mpsc::Receiver<Outgoing>,
    end: Option<oneshot::Receiver<Status>>,
    /// Ended with `OK`: send what is queued, then finish.
    draining: bool,
    finished: bool,
    _into: std::marker::PhantomData<fn() -> T>,
}

impl<T: From<Outgoing>> Stream for EventStream<T> {
    type Item = Result<T, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.finished {
            return Poll::Ready(None);
        }
        if let Some(end) = self.end.as_mut() {
            match Pin::new(end).poll(cx) {
                Poll::Ready(Ok(status)) if status.code() == Code::Ok => {
                    self.end = None;
                    self.draining = true;
                }
                Poll::Ready(Ok(status)) => {
                    self.finished = true;
                    return Poll::Ready(Some(Err(status)));
                }
                // Every producer is gone without a verdict: drain the queue, then end.
                Poll::Ready(Err(_)) => self.end = None,
                Poll::Pending => {}
            }
        }
        match self.queue.poll_recv(cx) {
            Poll::Ready(Some(event)) => Poll::Ready(Some(Ok(T::from(event)))),
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

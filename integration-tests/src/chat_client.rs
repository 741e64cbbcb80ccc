//! A test client for `ChatService.Chat`: one bidi stream, helpers to send and to wait for
//! the next event of a kind (always with a timeout, so a missing event fails, not hangs).

use std::time::Duration;

use quickchat_proto::v1::{
    self, chat_request, chat_response::Event, chat_service_client::ChatServiceClient,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

use crate::app::{TestApp, authed};

pub const WAIT: Duration = Duration::from_secs(5);

pub struct ChatClient {
    requests: mpsc::Sender<v1::ChatRequest>,
    responses: Streaming<v1::ChatResponse>,
    pub joined: v1::Joined,
}

impl ChatClient {
    /// Opens the room of `group_id` with `token`, resuming after `since` if given.
    pub async fn open(
        app: &TestApp,
        token: &str,
        group_id: &str,
        since: Option<v1::StreamPosition>,
    ) -> Result<Self, Status> {
        Self::open_on(app.channel.clone(), token, group_id, since).await
    }

    /// Like [`ChatClient::open`], on a connection of the caller's choosing.
    pub async fn open_on(
        channel: tonic::transport::Channel,
        token: &str,
        group_id: &str,
        since: Option<v1::StreamPosition>,
    ) -> Result<Self, Status> {
        let (requests, rx) = mpsc::channel(64);
        requests
            .send(v1::ChatRequest {
                kind: Some(chat_request::Kind::Join(chat_request::Join {
                    group_id: group_id.into(),
                    since,
                })),
            })
            .await
            .unwrap();
        let mut responses = ChatServiceClient::new(channel)
            .chat(authed(ReceiverStream::new(rx), token))
            .await?
            .into_inner();
        let first = tokio::time::timeout(WAIT, responses.message())
            .await
            .expect("joined within 5 s")?;
        match first.and_then(|r| r.event) {
            Some(Event::Joined(joined)) => Ok(Self {
                requests,
                responses,
                joined,
            }),
            other => panic!("expected joined first, got {other:?}"),
        }
    }

    pub fn position(&self, offset: u64) -> v1::StreamPosition {
        v1::StreamPosition {
            offset,
            epoch: self.joined.epoch.clone(),
        }
    }

    pub async fn send(&self, client_message_id: &str, body: &str) {
        self.requests
            .send(v1::ChatRequest {
                kind: Some(chat_request::Kind::Send(chat_request::Send {
                    client_message_id: client_message_id.into(),
                    body: body.into(),
                })),
            })
            .await
            .expect("stream open");
    }

    pub async fn typing(&self) {
        self.requests
            .send(v1::ChatRequest {
                kind: Some(chat_request::Kind::Typing(chat_request::Typing {})),
            })
            .await
            .expect("stream open");
    }

    /// Closes our side: leaving the room.
    pub fn leave(self) -> Streaming<v1::ChatResponse> {
        drop(self.requests);
        self.responses
    }

    /// The next event, whatever it is.
    pub async fn next(&mut self) -> Event {
        let response = tokio::time::timeout(WAIT, self.responses.message())
            .await
            .expect("an event within 5 s")
            .expect("stream still open")
            .expect("stream not finished");
        response.event.expect("event set")
    }

    /// The next event for which `pick` returns something, skipping the others.
    pub async fn next_where<T>(&mut self, mut pick: impl FnMut(Event) -> Option<T>) -> T {
        loop {
            if let Some(found) = pick(self.next().await) {
                return found;
            }
        }
    }

    pub async fn next_message(&mut self) -> v1::Message {
        self.next_where(|e| match e {
            Event::Message(m) => Some(m),
            _ => None,
        })
        .await
    }

    /// The ack or rejection of our next send (other events are skipped).
    pub async fn next_answer(&mut self) -> Result<v1::Ack, v1::SendRejected> {
        self.next_where(|e| match e {
            Event::Ack(ack) => Some(Ok(ack)),
            Event::SendRejected(r) => Some(Err(r)),
            _ => None,
        })
        .await
    }

    pub async fn send_and_ack(&mut self, client_message_id: &str, body: &str) -> v1::Message {
        self.send(client_message_id, body).await;
        let ack = self
            .next_answer()
            .await
            .unwrap_or_else(|r| panic!("send rejected: {r:?}"));
        assert_eq!(ack.client_message_id, client_message_id);
        ack.message.expect("ack carries the message")
    }

    /// Waits for the stream to end and returns its final status.
    pub async fn end_status(&mut self) -> Status {
        loop {
            match tokio::time::timeout(WAIT, self.responses.message())
                .await
                .expect("stream ends within 5 s")
            {
                Ok(Some(_)) => continue,
                Ok(None) => return Status::ok(""),
                Err(status) => return status,
            }
        }
    }

    /// Nothing but (optionally) typing/presence arrives within `window`.
    pub async fn assert_no_message_within(&mut self, window: Duration) {
        let deadline = tokio::time::Instant::now() + window;
        loop {
            match tokio::time::timeout_at(deadline, self.responses.message()).await {
                Err(_) => return,
                Ok(Ok(Some(v1::ChatResponse {
                    event: Some(Event::Message(m)),
                }))) => {
                    panic!("unexpected message {m:?}")
                }
                Ok(Ok(Some(_))) => continue,
                Ok(other) => panic!("stream ended: {other:?}"),
            }
        }
    }

    /// The next event (`Ok`), or the status the stream ended with (`Err`).
    pub async fn end_or_event(&mut self) -> Result<(), Status> {
        match self.responses.message().await {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(Status::ok("")),
            Err(status) => Err(status),
        }
    }
}

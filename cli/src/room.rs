//! What `chat` and `tail --follow` share: opening a room (the bidirectional `Chat` stream or
//! the receive-only `Subscribe`), loading history, de-duplicating messages by offset, and
//! resuming after a reconnect.
//!
//! A room is opened without `since` the first time: the `joined` answer gives the room's
//! epoch and newest offset, history up to that offset comes from `ListMessages`, and live
//! messages follow on the stream. After a disconnect the room is reopened with
//! `since = {last offset seen, epoch}`. If the server says `recovered`, the stream replays
//! what was missed; if not, the missed messages are reloaded from history (still in order,
//! still without duplicates) and the user is told.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use quickchat_proto::v1::{
    self, ChatRequest, ChatResponse, chat_request, chat_response, subscribe_response,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status};

use crate::client::{Client, with_token};
use crate::error::CliError;

/// Largest page ListMessages serves.
const MAX_PAGE: u32 = 100;
/// How many sends may wait in the outgoing queue of a Chat stream.
const OUTGOING_QUEUE: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The bidirectional Chat stream (can send).
    Chat,
    /// The receive-only Subscribe stream.
    Subscribe,
}

/// An open room.
pub struct Connection {
    pub joined: v1::Joined,
    /// Room events after `joined`.
    pub events: BoxStream<'static, Result<ChatResponse, Status>>,
    /// Where to write sends and typing (Chat mode only).
    pub sender: Option<mpsc::Sender<ChatRequest>>,
}

/// Opens `group_id`'s room and waits for `joined`.
pub async fn open(
    client: &mut Client,
    group_id: &str,
    mode: Mode,
    since: Option<v1::StreamPosition>,
) -> Result<Connection, CliError> {
    let (sender, mut events): (Option<_>, BoxStream<'static, Result<ChatResponse, Status>>) =
        match mode {
            Mode::Chat => {
                let chat = client.chat();
                let (sender, stream) = client
                    .as_group(group_id, |token| {
                        let mut chat = chat.clone();
                        let (tx, rx) = mpsc::channel(OUTGOING_QUEUE);
                        let join = ChatRequest {
                            kind: Some(chat_request::Kind::Join(chat_request::Join {
                                group_id: group_id.to_owned(),
                                since: since.clone(),
                            })),
                        };
                        async move {
                            tx.send(join)
                                .await
                                .map_err(|_| Status::internal("the outgoing queue closed"))?;
                            let response = chat
                                .chat(with_token(ReceiverStream::new(rx), &token))
                                .await?;
                            Ok((tx, response.into_inner()))
                        }
                    })
                    .await?;
                (Some(sender), stream.boxed())
            }
            Mode::Subscribe => {
                let chat = client.chat();
                let stream = client
                    .as_group(group_id, |token| {
                        let mut chat = chat.clone();
                        let request = v1::SubscribeRequest {
                            group_id: group_id.to_owned(),
                            since: since.clone(),
                        };
                        async move {
                            chat.subscribe(with_token(request, &token))
                                .await
                                .map(|r| r.into_inner())
                        }
                    })
                    .await?;
                (None, stream.map(|r| r.map(from_subscribe)).boxed())
            }
        };
    match events.next().await {
        Some(Ok(ChatResponse {
            event: Some(chat_response::Event::Joined(joined)),
        })) => Ok(Connection {
            joined,
            events,
            sender,
        }),
        Some(Ok(_)) => Err(CliError::Server(
            "the server did not open the room (no `joined` event)".into(),
        )),
        Some(Err(status)) => Err(status.into()),
        None => Err(CliError::Unreachable {
            server: None,
            detail: "the room stream closed before it opened".into(),
        }),
    }
}

/// Subscribe events have the same shape as Chat events.
fn from_subscribe(response: v1::SubscribeResponse) -> ChatResponse {
    use subscribe_response::Event as S;
    let event = response.event.map(|event| match event {
        S::Joined(e) => chat_response::Event::Joined(e),
        S::Message(e) => chat_response::Event::Message(e),
        S::Ack(e) => chat_response::Event::Ack(e),
        S::Typing(e) => chat_response::Event::Typing(e),
        S::MemberJoined(e) => chat_response::Event::MemberJoined(e),
        S::MemberLeft(e) => chat_response::Event::MemberLeft(e),
        S::SendRejected(e) => chat_response::Event::SendRejected(e),
        S::MemberRemoved(e) => chat_response::Event::MemberRemoved(e),
    });
    ChatResponse { event }
}

/// What to do when a room stream fails: `None` means reconnect, `Some` is final (the group
/// is gone, the token no longer opens it, …).
pub fn stream_failure(status: Status) -> Option<CliError> {
    match status.code() {
        Code::NotFound
        | Code::Unauthenticated
        | Code::PermissionDenied
        | Code::InvalidArgument
        | Code::Unimplemented
        | Code::FailedPrecondition => Some(status.into()),
        _ => None,
    }
}

/// One page of messages, oldest first: the newest `limit` (older than `before` when given).
/// Returns whether older messages exist.
pub async fn recent(
    client: &mut Client,
    group_id: &str,
    limit: u32,
    before: Option<u64>,
) -> Result<(Vec<v1::Message>, bool), CliError> {
    let chat = client.chat();
    let mut collected = Vec::new();
    let mut before = before;
    let mut has_more = true;
    while (collected.len() as u32) < limit && has_more {
        let page_size = (limit - collected.len() as u32).min(MAX_PAGE);
        let response = client
            .as_group(group_id, |token| {
                let mut chat = chat.clone();
                let request = v1::ListMessagesRequest {
                    group_id: group_id.to_owned(),
                    page_size: page_size as i32,
                    before_offset: before,
                    after_offset: None,
                };
                async move { chat.list_messages(with_token(request, &token)).await }
            })
            .await?
            .into_inner();
        has_more = response.has_more;
        let Some(oldest) = response.messages.iter().map(|m| m.offset).min() else {
            has_more = false;
            break;
        };
        before = Some(oldest);
        collected.extend(response.messages);
    }
    collected.sort_by_key(|m| m.offset);
    Ok((collected, has_more))
}

/// Every stored message with an offset above `after`, oldest first.
pub async fn after(
    client: &mut Client,
    group_id: &str,
    after: u64,
) -> Result<Vec<v1::Message>, CliError> {
    let chat = client.chat();
    let mut collected = Vec::new();
    let mut after = after;
    loop {
        let response = client
            .as_group(group_id, |token| {
                let mut chat = chat.clone();
                let request = v1::ListMessagesRequest {
                    group_id: group_id.to_owned(),
                    page_size: MAX_PAGE as i32,
                    before_offset: None,
                    after_offset: Some(after),
                };
                async move { chat.list_messages(with_token(request, &token)).await }
            })
            .await?
            .into_inner();
        let mut page = response.messages;
        page.sort_by_key(|m| m.offset);
        let Some(newest) = page.last().map(|m| m.offset) else {
            break;
        };
        if newest <= after {
            break;
        }
        after = newest;
        collected.extend(page);
        if !response.has_more {
            break;
        }
    }
    Ok(collected)
}

/// Which messages were shown, so that nothing is shown twice, and where to resume.
#[derive(Debug, Default)]
pub struct Tracker {
    epoch: String,
    last_offset: u64,
    seen: BTreeSet<u64>,
    /// Offsets at or below this were forgotten from `seen` (and count as seen).
    floor: u64,
}

const SEEN_WINDOW: usize = 10_000;

impl Tracker {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set_epoch(&mut self, epoch: &str) {
        self.epoch = epoch.to_owned();
    }

    pub fn last_offset(&self) -> u64 {
        self.last_offset
    }

    /// True the first time an offset is offered.
    pub fn accept(&mut self, offset: u64) -> bool {
        if offset <= self.floor || !self.seen.insert(offset) {
            return false;
        }
        self.last_offset = self.last_offset.max(offset);
        while self.seen.len() > SEEN_WINDOW {
            if let Some(oldest) = self.seen.pop_first() {
                self.floor = oldest;
            }
        }
        true
    }

    /// Forget everything (the server's offsets started over).
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    /// Where to resume, for `since`.
    pub fn position(&self) -> Option<v1::StreamPosition> {
        Some(v1::StreamPosition {
            offset: self.last_offset,
            epoch: self.epoch.clone(),
        })
    }
}

/// How a reopened room caught up.
pub enum Resume {
    /// The stream replays whatever was missed.
    Recovered,
    /// The server could not resume; these missed messages came from history.
    Reloaded(Vec<v1::Message>),
    /// The room's offsets started over; this is its recent history.
    Restarted(Vec<v1::Message>),
}

/// Catches up after reopening a room with `since = tracker.position()`.
pub async fn resume(
    client: &mut Client,
    group_id: &str,
    tracker: &mut Tracker,
    joined: &v1::Joined,
    recent_limit: u32,
) -> Result<Resume, CliError> {
    tracker.set_epoch(&joined.epoch);
    if joined.recovered {
        return Ok(Resume::Recovered);
    }
    if joined.offset < tracker.last_offset() {
        tracker.reset();
        tracker.set_epoch(&joined.epoch);
        let (messages, _) = recent(client, group_id, recent_limit, Some(joined.offset + 1)).await?;
        return Ok(Resume::Restarted(messages));
    }
    let missed = after(client, group_id, tracker.last_offset()).await?;
    Ok(Resume::Reloaded(missed))
}

/// Errors worth another reconnect attempt.
pub fn retryable(err: &CliError) -> bool {
    matches!(err, CliError::Unreachable { .. } | CliError::Server(_))
}

/// Opens the room again from where `tracker` stopped, and catches up.
pub async fn reopen_and_resume(
    client: &mut Client,
    group_id: &str,
    tracker: &mut Tracker,
    recent_limit: u32,
    mode: Mode,
) -> Result<(Connection, Resume), CliError> {
    client.reconnect().await?;
    let connection = open(client, group_id, mode, tracker.position()).await?;
    let resume = resume(client, group_id, tracker, &connection.joined, recent_limit).await?;
    Ok((connection, resume))
}

/// Exponential backoff between reconnect attempts: 250 ms doubling up to 8 s.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
}

const BACKOFF_START: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(8);

impl Default for Backoff {
    fn default() -> Self {
        Self {
            next: BACKOFF_START,
        }
    }
}

impl Backoff {
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        delay
    }

    pub fn reset(&mut self) {
        self.next = BACKOFF_START;
    }
}

//! `ChatService`: the `Chat` stream, `Subscribe` + unary sends for gRPC-web, and history.

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use prost::Message as _;
use quickchat_proto::frames::{EventFrame, chat_service_server::ChatService};
use quickchat_proto::v1;
use tonic::{Request, Response, Status, Streaming};
use tracing::instrument;
use uuid::Uuid;

use super::{ClientAddr, SharedState, parse_id};
use crate::auth::{MemberPrincipal, Principal};
use crate::chat::ChatHub;
use crate::chat::outbound::{EventStream, Outgoing, StreamEnd};
use crate::chat::stream::Command;
use crate::domain::FieldViolation;
use crate::error::ApiError;
use crate::room::{ChatMessage, Participant, Position};

const DEFAULT_HISTORY_PAGE: u64 = 50;
const MAX_HISTORY_PAGE: u64 = 100;

pub struct ChatApi {
    state: SharedState,
}

impl ChatApi {
    pub fn new(state: SharedState) -> Self {
        Self { state }
    }

    fn hub(&self) -> &Arc<ChatHub> {
        &self.state.chat
    }

    /// Authenticates and authorises the caller of a request about `raw_group_id`.
    async fn participant<T>(
        &self,
        request: &Request<T>,
        raw_group_id: &str,
    ) -> Result<(Participant, Uuid), ApiError> {
        let (who, group_id, _) = self.caller(request, raw_group_id).await?;
        Ok((who, group_id))
    }

    /// As [`ChatApi::participant`], with the member token the caller holds (`None` for
    /// the owner).
    async fn caller<T>(
        &self,
        request: &Request<T>,
        raw_group_id: &str,
    ) -> Result<(Participant, Uuid, Option<MemberPrincipal>), ApiError> {
        let principal = self.state.auth.principal(request.metadata()).await?;
        let group_id = parse_id("group_id", raw_group_id)?;
        let who = self.hub().authorize(&principal, group_id).await?;
        Ok((who, group_id, member_of(principal)))
    }
}

fn member_of(principal: Principal) -> Option<MemberPrincipal> {
    match principal {
        Principal::Member(member) => Some(member),
        Principal::User(_) => None,
    }
}

pub(crate) fn message_to_proto(m: &ChatMessage) -> v1::Message {
    v1::Message::from(m)
}

fn participant_to_proto(p: &Participant) -> v1::OnlineMember {
    v1::OnlineMember {
        id: p.id.to_string(),
        name: p.name.clone(),
    }
}

fn since(position: Option<v1::StreamPosition>) -> Option<Position> {
    position.filter(|p| !p.epoch.is_empty()).map(|p| Position {
        epoch: p.epoch,
        offset: p.offset,
    })
}

/// A room event as sent on `Chat` and `Subscribe` (their responses are wire-identical). A
/// message is encoded once, on its first delivery, and every other stream gets the same
/// bytes; the other events are for one stream and encoded for it.
impl From<Outgoing> for EventFrame {
    fn from(event: Outgoing) -> Self {
        use v1::chat_response::Event;
        let event = match event {
            Outgoing::Message(m) => {
                return EventFrame::from_encoded(m.wire.get_or_init(|| {
                    let response = v1::ChatResponse {
                        event: Some(Event::Message(message_to_proto(&m))),
                    };
                    response.encode_to_vec().into()
                }));
            }
            Outgoing::Joined {
                epoch,
                offset,
                recovered,
                online,
            } => Event::Joined(v1::Joined {
                epoch,
                offset,
                recovered,
                online: online.iter().map(participant_to_proto).collect(),
            }),
            Outgoing::Ack {
                client_message_id,
                message,
            } => Event::Ack(v1::Ack {
                client_message_id,
                message: Some(message_to_proto(&message)),
            }),
            Outgoing::Typing(p) => Event::Typing(v1::TypingEvent {
                member: Some(participant_to_proto(&p)),
            }),
            Outgoing::MemberJoined(p) => Event::MemberJoined(v1::PresenceEvent {
                member: Some(participant_to_proto(&p)),
            }),
            Outgoing::MemberLeft(p) => Event::MemberLeft(v1::PresenceEvent {
                member: Some(participant_to_proto(&p)),
            }),
            Outgoing::MemberRemoved { who, left } => Event::MemberRemoved(v1::MemberRemovedEvent {
                member: Some(participant_to_proto(&who)),
                left,
            }),
            Outgoing::SendRejected {
                client_message_id,
                error,
            } => {
                let status = Status::from(error);
                Event::SendRejected(v1::SendRejected {
                    client_message_id,
                    code: status.code() as i32,
                    message: status.message().to_owned(),
                })
            }
        };
        EventFrame::encode(&v1::ChatResponse { event: Some(event) })
    }
}

/// How a room stream's end reaches the client.
impl From<StreamEnd> for Status {
    fn from(why: StreamEnd) -> Self {
        match why {
            StreamEnd::Left => Status::ok("left the room"),
            StreamEnd::ShuttingDown => Status::unavailable(
                "server shutting down; reconnect and resume from your last offset",
            ),
            StreamEnd::FeedEnded => Status::unavailable(
                "the room feed ended; reconnect and resume from your last offset",
            ),
            StreamEnd::SlowReader => Status::resource_exhausted(
                "slow consumer: the client did not read its stream fast enough",
            ),
            StreamEnd::Lagged => {
                Status::resource_exhausted("slow consumer: the client fell too far behind the room")
            }
            StreamEnd::Reset => Status::aborted("the room was reset; rejoin and reload history"),
            StreamEnd::Missed => {
                Status::aborted("messages were missed; rejoin from your last offset")
            }
            StreamEnd::GroupDeleted => Status::not_found("The group was deleted."),
            StreamEnd::Removed => Status::permission_denied("removed from the group"),
            StreamEnd::LeftGroup => Status::permission_denied("you left the group"),
            StreamEnd::Revoked => Status::unauthenticated(
                "the group's member tokens were revoked; join again with the new passcode",
            ),
        }
    }
}

/// A room stream as the RPC's response stream.
fn frames(events: EventStream) -> ResponseStream<EventFrame> {
    Box::pin(events.map(|event| event.map(EventFrame::from).map_err(Status::from)))
}

/// What the client asks for on its `Chat` stream, until it half-closes or the connection
/// breaks; requests with no kind are skipped.
fn commands(
    requests: Streaming<v1::ChatRequest>,
) -> impl Stream<Item = Command> + Send + Unpin + 'static {
    use v1::chat_request::Kind;
    requests
        .take_while(|request| futures::future::ready(request.is_ok()))
        .filter_map(|request| {
            futures::future::ready(request.ok().and_then(|r| r.kind).map(|kind| match kind {
                Kind::Join(_) => Command::Join,
                Kind::Typing(_) => Command::Typing,
                Kind::Send(send) => Command::Send {
                    client_message_id: send.client_message_id,
                    body: send.body,
                },
            }))
        })
        .boxed()
}

/// An offset a client sent: offsets are stored as signed 64-bit integers, so anything
/// beyond `i64::MAX` (which no room will reach) is refused rather than wrapped around.
fn offset_field(field: &'static str, raw: Option<u64>) -> Result<Option<u64>, ApiError> {
    match raw {
        Some(offset) if offset > i64::MAX as u64 => Err(ApiError::invalid(FieldViolation::new(
            field,
            format!("{field} must be at most {}.", i64::MAX),
        ))),
        other => Ok(other),
    }
}

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl ChatService for ChatApi {
    type ChatStream = ResponseStream<EventFrame>;
    type SubscribeStream = ResponseStream<EventFrame>;

    #[instrument(skip_all)]
    async fn chat(
        &self,
        request: Request<Streaming<v1::ChatRequest>>,
    ) -> Result<Response<Self::ChatStream>, Status> {
        let principal = self.state.auth.principal(request.metadata()).await?;
        let client = ClientAddr::of(&request, self.state.client_ip_header.as_deref()).to_string();
        let mut requests = request.into_inner();
        // A stream that never says which room it wants holds a slot for nothing.
        let first =
            tokio::time::timeout(self.state.chat_settings.join_deadline, requests.message())
                .await
                .map_err(|_| {
                    Status::deadline_exceeded("no join request arrived in time; send join first")
                })?;
        let join = match first? {
            Some(v1::ChatRequest {
                kind: Some(v1::chat_request::Kind::Join(join)),
            }) => join,
            Some(_) => {
                return Err(Status::failed_precondition(
                    "the first request on a Chat stream must be join",
                ));
            }
            None => {
                return Err(Status::cancelled(
                    "the client closed the stream before joining",
                ));
            }
        };
        let group_id = parse_id("group_id", &join.group_id)?;
        let hub = self.hub();
        let who = hub.authorize(&principal, group_id).await?;
        let events = hub
            .open_chat(
                who,
                member_of(principal),
                &client,
                group_id,
                since(join.since),
                commands(requests),
            )
            .await?;
        Ok(Response::new(frames(events)))
    }

    #[instrument(skip_all, fields(group_id = %request.get_ref().group_id))]
    async fn subscribe(
        &self,
        request: Request<v1::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let (who, group_id, member) = self.caller(&request, &request.get_ref().group_id).await?;
        let client = ClientAddr::of(&request, self.state.client_ip_header.as_deref()).to_string();
        let events = self
            .hub()
            .open_subscription(
                who,
                member,
                &client,
                group_id,
                since(request.into_inner().since),
            )
            .await?;
        Ok(Response::new(frames(events)))
    }

    #[instrument(skip_all, fields(group_id = %request.get_ref().group_id))]
    async fn send_message(
        &self,
        request: Request<v1::SendMessageRequest>,
    ) -> Result<Response<v1::SendMessageResponse>, Status> {
        let (who, group_id) = self
            .participant(&request, &request.get_ref().group_id)
            .await?;
        let req = request.into_inner();
        let (message, _) = self
            .hub()
            .send(&who, group_id, &req.client_message_id, &req.body)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(v1::SendMessageResponse {
            message: Some(message_to_proto(&message)),
        }))
    }

    #[instrument(skip_all, fields(group_id = %request.get_ref().group_id))]
    async fn send_typing(
        &self,
        request: Request<v1::SendTypingRequest>,
    ) -> Result<Response<v1::SendTypingResponse>, Status> {
        let (who, group_id) = self
            .participant(&request, &request.get_ref().group_id)
            .await?;
        self.hub().typing(&who, group_id).await?;
        Ok(Response::new(v1::SendTypingResponse {}))
    }

    #[instrument(skip_all, fields(group_id = %request.get_ref().group_id))]
    async fn list_messages(
        &self,
        request: Request<v1::ListMessagesRequest>,
    ) -> Result<Response<v1::ListMessagesResponse>, Status> {
        let (_, group_id) = self
            .participant(&request, &request.get_ref().group_id)
            .await?;
        let req = request.into_inner();
        let page_size = match req.page_size {
            0 => DEFAULT_HISTORY_PAGE,
            n if n < 0 => {
                return Err(ApiError::invalid(FieldViolation::new(
                    "page_size",
                    "page_size must not be negative.",
                ))
                .into());
            }
            n => (n as u64).min(MAX_HISTORY_PAGE),
        };
        let before = offset_field("before_offset", req.before_offset)?;
        let after = offset_field("after_offset", req.after_offset)?;
        let (messages, has_more) = self
            .hub()
            .history(group_id, before, after, page_size)
            .await?;
        Ok(Response::new(v1::ListMessagesResponse {
            messages: messages.iter().map(message_to_proto).collect(),
            has_more,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_is_encoded_once_for_every_stream_and_decodes_as_either_response() {
        let message = Arc::new(crate::room::ChatMessage {
            id: Uuid::now_v7(),
            group_id: Uuid::new_v4(),
            offset: 7,
            sender_id: Uuid::new_v4(),
            sender_name: "Ann".into(),
            body: "hello everyone".into(),
            client_message_id: "c-7".into(),
            created_at: crate::store::now(),
            wire: Default::default(),
        });
        let first = EventFrame::from(Outgoing::Message(message.clone()));
        let second = EventFrame::from(Outgoing::Message(message.clone()));
        assert_eq!(
            first.bytes().as_ptr(),
            second.bytes().as_ptr(),
            "the same bytes, not a new encoding"
        );

        let expected = message_to_proto(&message);
        let as_chat = v1::ChatResponse::decode(first.bytes().clone()).unwrap();
        assert_eq!(
            as_chat.event,
            Some(v1::chat_response::Event::Message(expected.clone()))
        );
        let as_subscribe = v1::SubscribeResponse::decode(second.bytes().clone()).unwrap();
        assert_eq!(
            as_subscribe.event,
            Some(v1::subscribe_response::Event::Message(expected))
        );
    }
}

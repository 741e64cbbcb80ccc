//! `chat`: the interactive room.
//!
//! Two halves run side by side. The input half reads lines: from a line editor when stdin
//! and stdout are a terminal (room events are printed above the prompt, and key presses
//! become typing signals), or plainly from stdin otherwise (pipes, scripts, tests). The room
//! half holds the `Chat` stream: it prints history, presence, typing and messages, sends
//! each line with an idempotency key, and when the stream breaks it reconnects with backoff,
//! resumes from the last offset seen, and resends whatever was not acknowledged yet.
//!
//! The stream brings the room's messages in offset order: others' messages as `message`
//! events, and each of our own sends answered by its `ack` (or `send_rejected`, if it reached
//! the room but could not be stored) at the place the message holds in that order. So a
//! message is printed as soon as it arrives. What can arrive twice is a message we already
//! have when catching up after a reconnect: reloaded history overlapping the new stream, or
//! a resent line whose first send was stored, which comes back both replayed and as the ack
//! of the resend (answered at once, as the message is not new). Messages are therefore shown
//! at most once per offset.

mod screen;

use std::collections::HashMap;
use std::pin::pin;
use std::time::{Duration, Instant};

use futures::StreamExt;
use quickchat_proto::v1::{self, ChatRequest, chat_request, chat_response};
use serde::Serialize;
use tokio::sync::mpsc;

use super::parse_group_ref;
use crate::client::{Client, Identity};
use crate::error::CliError;
use crate::output::{MessageView, Output};
use crate::room::{self, Backoff, Mode, Resume, Tracker};
use screen::{Screen, start_input, typing_line};

/// Messages shown when the room opens (and by `/history` without a count).
const HISTORY: u32 = 20;
/// Most messages `/history N` shows.
const MAX_HISTORY: u32 = 200;
/// At most one typing signal per this interval.
const TYPING_SEND_INTERVAL: Duration = Duration::from_secs(2);
/// Someone's typing notice is shown at most once per this interval (as lines, away from a
/// terminal).
const TYPING_SHOW_INTERVAL: Duration = Duration::from_secs(5);
/// At a terminal, someone counts as typing until this long after their last signal (they
/// signal every couple of seconds while they type).
const TYPING_LASTS: Duration = Duration::from_secs(4);
/// How long leaving waits for sends to be acknowledged.
const LEAVE_GRACE: Duration = Duration::from_secs(5);

/// What the input half reports.
enum Input {
    Line(String),
    Typing,
    Leave,
}

/// A room event, as `--json` prints it.
#[derive(Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
enum ChatEvent {
    Joined {
        group_id: String,
        title: String,
        you: String,
        online: Vec<Person>,
    },
    Message(MessageView),
    Typing(Person),
    MemberJoined(Person),
    MemberLeft(Person),
    /// Someone left the group or the owner removed them.
    MemberRemoved {
        member: Person,
        left: bool,
    },
    Rejected {
        body: String,
        code: i32,
        reason: String,
    },
    Disconnected {
        reason: String,
    },
    Reconnected {
        recovered: bool,
        reloaded: usize,
    },
    Left {
        unsent: usize,
    },
    /// `/who`: who is online now.
    Who {
        online: Vec<Person>,
    },
    /// `/history N`: the room's newest messages, oldest first.
    History {
        messages: Vec<MessageView>,
    },
    /// `/help`, or a command that does not exist.
    Help {
        commands: Vec<&'static str>,
    },
    UnknownCommand {
        command: String,
    },
}

/// The room's commands, as `/help` lists them.
const COMMANDS: [&str; 5] = [
    "/who           who is online",
    "/history [N]   the last N messages (default 20)",
    "/help          this list",
    "/quit          leave the room (as Ctrl-D)",
    "//text         send a message that starts with a slash",
];

/// What a line typed in the room asks for.
#[derive(Debug, PartialEq, Eq)]
enum Typed {
    /// A message to send.
    Say(String),
    Who,
    History(u32),
    Help,
    Quit,
    Unknown(String),
    /// A blank line.
    Nothing,
}

impl Typed {
    fn of(line: &str) -> Typed {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            return Typed::Nothing;
        }
        if let Some(literal) = trimmed.strip_prefix("//") {
            return Typed::Say(format!("/{literal}"));
        }
        let Some(command) = trimmed.strip_prefix('/') else {
            return Typed::Say(line.to_owned());
        };
        let mut words = command.split_whitespace();
        let typed = match (words.next().unwrap_or_default(), words.next()) {
            ("who", None) => Typed::Who,
            ("help" | "?", None) => Typed::Help,
            ("quit" | "exit" | "leave", None) => Typed::Quit,
            ("history", None) => Typed::History(HISTORY),
            ("history", Some(n)) => match n.parse() {
                Ok(n) if (1..=MAX_HISTORY).contains(&n) => Typed::History(n),
                _ => Typed::Unknown(trimmed.to_owned()),
            },
            _ => Typed::Unknown(trimmed.to_owned()),
        };
        if words.next().is_some() {
            return Typed::Unknown(trimmed.to_owned());
        }
        typed
    }
}

#[derive(Serialize)]
struct Person {
    id: String,
    name: String,
}

impl From<v1::OnlineMember> for Person {
    fn from(m: v1::OnlineMember) -> Self {
        Self {
            id: m.id,
            name: m.name,
        }
    }
}

/// The room half's state.
struct Room {
    group_id: String,
    me: Option<String>,
    tracker: Tracker,
    /// Sends not acknowledged yet, oldest first: (client message id, body).
    pending: Vec<(String, String)>,
    typing_shown: HashMap<String, Instant>,
    /// At a terminal, who is typing now: (id, name, last signal), in the order they started.
    typing: Vec<(String, String, Instant)>,
    /// Who is online now (id → name), for `/who`.
    online: std::collections::BTreeMap<String, String>,
    screen: Screen,
}

impl Room {
    /// Shows a message unless its offset was shown already. Our own message confirms the
    /// send with its client message id however it arrives (ack, replay or reloaded history
    /// after a reconnect), so that line is not resent.
    fn show_message(&mut self, message: v1::Message) {
        self.pending.retain(|(id, _)| {
            message.client_message_id.is_empty() || *id != message.client_message_id
        });
        self.stopped_typing(&message.sender_id);
        if self.tracker.accept(message.offset) {
            let view = MessageView::from(message);
            let line = view.chat_line();
            self.screen.show(ChatEvent::Message(view), line);
        }
    }

    /// Answers a command that needs nothing but the room's state.
    fn command(&mut self, typed: Typed) {
        match typed {
            Typed::Who => {
                let names: Vec<String> = self
                    .online
                    .iter()
                    .map(|(id, name)| {
                        if self.is_me(id) {
                            format!("{name} (you)")
                        } else {
                            name.clone()
                        }
                    })
                    .collect();
                let online = self
                    .online
                    .iter()
                    .map(|(id, name)| Person {
                        id: id.clone(),
                        name: name.clone(),
                    })
                    .collect();
                self.notice(
                    ChatEvent::Who { online },
                    format!("online: {}", names.join(", ")),
                );
            }
            Typed::Help => {
                let text = format!("commands:\n  {}", COMMANDS.join("\n  "));
                self.notice(
                    ChatEvent::Help {
                        commands: COMMANDS.to_vec(),
                    },
                    text,
                );
            }
            Typed::Unknown(command) => {
                let text = format!("unknown command {command} (not sent); /help lists them");
                self.notice(ChatEvent::UnknownCommand { command }, text);
            }
            Typed::Say(_) | Typed::History(_) | Typed::Quit | Typed::Nothing => {}
        }
    }

    /// `/history`: the messages again, whether or not they were shown before.
    fn show_history(&mut self, messages: Vec<v1::Message>) {
        let views: Vec<MessageView> = messages.into_iter().map(MessageView::from).collect();
        let text = if views.is_empty() {
            "no messages yet".to_owned()
        } else {
            let lines: Vec<String> = views.iter().map(MessageView::chat_line).collect();
            format!("the last {} message(s):\n{}", views.len(), lines.join("\n"))
        };
        self.notice(ChatEvent::History { messages: views }, text);
    }

    fn is_me(&self, id: &str) -> bool {
        self.me.as_deref() == Some(id)
    }

    fn notice(&mut self, event: ChatEvent, text: String) {
        self.screen.show(event, format!("* {text}"));
    }

    fn handle(&mut self, event: chat_response::Event) {
        use chat_response::Event as E;
        match event {
            E::Message(message) => self.show_message(message),
            E::Ack(ack) => {
                self.pending.retain(|(id, _)| *id != ack.client_message_id);
                if let Some(message) = ack.message {
                    self.show_message(message);
                }
            }
            E::SendRejected(rejected) => {
                let body = self
                    .pending
                    .iter()
                    .find(|(id, _)| *id == rejected.client_message_id)
                    .map(|(_, body)| body.clone())
                    .unwrap_or_default();
                self.pending
                    .retain(|(id, _)| *id != rejected.client_message_id);
                let text = format!("not sent ({}): {body}", rejected.message);
                self.notice(
                    ChatEvent::Rejected {
                        body,
                        code: rejected.code,
                        reason: rejected.message,
                    },
                    text,
                );
            }
            E::Typing(typing) => {
                let Some(member) = typing.member else { return };
                if self.is_me(&member.id) {
                    return;
                }
                let now = Instant::now();
                if self.screen.is_terminal() {
                    match self.typing.iter_mut().find(|(id, ..)| *id == member.id) {
                        Some(entry) => entry.2 = now,
                        None => self.typing.push((member.id, member.name, now)),
                    }
                    self.show_typing();
                    return;
                }
                let recent = self
                    .typing_shown
                    .get(&member.id)
                    .is_some_and(|at| now.duration_since(*at) < TYPING_SHOW_INTERVAL);
                if !recent {
                    self.typing_shown.insert(member.id.clone(), now);
                    let text = format!("{} is typing…", member.name);
                    self.screen
                        .show(ChatEvent::Typing(member.into()), format!("  {text}"));
                }
            }
            E::MemberJoined(presence) => {
                if let Some(member) = &presence.member {
                    self.online.insert(member.id.clone(), member.name.clone());
                }
                if let Some(member) = presence.member.filter(|m| !self.is_me(&m.id)) {
                    let text = format!("{} is online", member.name);
                    self.notice(ChatEvent::MemberJoined(member.into()), text);
                }
            }
            E::MemberLeft(presence) => {
                if let Some(member) = &presence.member {
                    self.online.remove(&member.id);
                }
                if let Some(member) = presence.member.filter(|m| !self.is_me(&m.id)) {
                    self.typing_shown.remove(&member.id);
                    self.stopped_typing(&member.id);
                    let text = format!("{} went offline", member.name);
                    self.notice(ChatEvent::MemberLeft(member.into()), text);
                }
            }
            E::MemberRemoved(removed) => {
                let Some(member) = removed.member else { return };
                self.online.remove(&member.id);
                let text = if removed.left {
                    format!("{} left the group", member.name)
                } else {
                    format!("{} was removed from the group", member.name)
                };
                self.notice(
                    ChatEvent::MemberRemoved {
                        member: member.into(),
                        left: removed.left,
                    },
                    text,
                );
            }
            E::Joined(_) => {}
        }
    }

    /// `id` sent a message or left: no longer typing.
    fn stopped_typing(&mut self, id: &str) {
        if self.typing.iter().any(|(typist, ..)| typist == id) {
            self.typing.retain(|(typist, ..)| typist != id);
            self.show_typing();
        }
    }

    /// Forgets whoever has not signalled for a while.
    fn expire_typing(&mut self) {
        let before = self.typing.len();
        self.typing.retain(|(.., at)| at.elapsed() < TYPING_LASTS);
        if self.typing.len() != before {
            self.show_typing();
        }
    }

    fn show_typing(&mut self) {
        let names: Vec<&str> = self
            .typing
            .iter()
            .map(|(_, name, _)| name.as_str())
            .collect();
        let line = typing_line(&names);
        self.screen.set_status(line);
    }

    fn show_resume(&mut self, resume: Resume) {
        match resume {
            Resume::Recovered => self.notice(
                ChatEvent::Reconnected {
                    recovered: true,
                    reloaded: 0,
                },
                "reconnected; nothing was missed".into(),
            ),
            Resume::Reloaded(missed) | Resume::Restarted(missed) => {
                self.notice(
                    ChatEvent::Reconnected {
                        recovered: false,
                        reloaded: missed.len(),
                    },
                    format!(
                        "reconnected; the server could not resume the stream, so history was reloaded ({} missed message(s))",
                        missed.len()
                    ),
                );
                for message in missed {
                    self.show_message(message);
                }
            }
        }
    }
}

fn send_request(id: &str, body: &str) -> ChatRequest {
    ChatRequest {
        kind: Some(chat_request::Kind::Send(chat_request::Send {
            client_message_id: id.to_owned(),
            body: body.to_owned(),
        })),
    }
}

/// How the connected phase ended.
enum Phase {
    Leave,
    Disconnected(String),
    Fatal(CliError),
}

pub async fn run(client: &mut Client, group: &str, output: Output) -> Result<(), CliError> {
    // Listening from the start: a Ctrl-C while the room opens leaves it like any later one
    // (until the first poll of `tokio::signal::ctrl_c()`, SIGINT still killed the process).
    let mut interrupt =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
            .map_err(|err| CliError::local(format!("cannot listen for Ctrl-C: {err}")))?;
    let group_id = parse_group_ref(group)?;
    let title = client
        .groups()
        .get_group(v1::GetGroupRequest {
            group_id: group_id.clone(),
        })
        .await?
        .into_inner()
        .group
        .map(|g| g.title)
        .unwrap_or_default();
    let my_name = match client.identity_for(&group_id)? {
        Identity::Member => client.store().membership(&group_id).map(|m| m.name.clone()),
        Identity::User => client.store().session().map(|s| s.name.clone()),
    }
    .unwrap_or_default();

    let mut connection = room::open(client, &group_id, Mode::Chat, None).await?;
    let (input_tx, mut input_rx) = mpsc::channel(64);
    let screen = start_input(input_tx, output.is_json());
    let mut room = Room {
        group_id: group_id.clone(),
        me: client.my_id(&group_id),
        tracker: Tracker::new(),
        pending: Vec::new(),
        typing_shown: HashMap::new(),
        typing: Vec::new(),
        online: connection
            .joined
            .online
            .iter()
            .map(|m| (m.id.clone(), m.name.clone()))
            .collect(),
        screen,
    };
    room.tracker.set_epoch(&connection.joined.epoch);

    let online: Vec<String> = connection
        .joined
        .online
        .iter()
        .map(|m| {
            if room.is_me(&m.id) {
                format!("{} (you)", m.name)
            } else {
                m.name.clone()
            }
        })
        .collect();
    let header = format!(
        "── {title} ── you are {my_name}; type a message and press Enter, /help for commands, Ctrl-D to leave\n* online: {}",
        if online.is_empty() {
            "nobody else".to_owned()
        } else {
            online.join(", ")
        }
    );
    room.screen.show(
        ChatEvent::Joined {
            group_id: group_id.clone(),
            title: title.clone(),
            you: my_name.clone(),
            online: connection
                .joined
                .online
                .drain(..)
                .map(Person::from)
                .collect(),
        },
        header,
    );
    let (history, _) = room::recent(
        client,
        &group_id,
        HISTORY,
        Some(connection.joined.offset + 1),
    )
    .await?;
    for message in history {
        room.show_message(message);
    }

    let mut typing_expiry = tokio::time::interval(Duration::from_millis(500));
    let mut last_typing: Option<Instant> = None;
    let mut leave_deadline: Option<tokio::time::Instant> = None;
    let mut backoff = Backoff::default();

    let outcome: Result<(), CliError> = 'session: loop {
        // Connected: resend what was not acknowledged, then relay both ways.
        let sender = connection
            .sender
            .clone()
            .expect("a Chat connection can send");
        for (id, body) in room.pending.clone() {
            let _ = sender.send(send_request(&id, &body)).await;
        }
        let phase = loop {
            if leave_deadline.is_some() && room.pending.is_empty() {
                break Phase::Leave;
            }
            tokio::select! {
                event = connection.events.next() => match event {
                    Some(Ok(v1::ChatResponse { event: Some(event) })) => room.handle(event),
                    Some(Ok(_)) => {}
                    Some(Err(status)) => {
                        let reason = status.message().to_owned();
                        match room::stream_failure(status) {
                            Some(fatal) => break Phase::Fatal(fatal),
                            None => break Phase::Disconnected(reason),
                        }
                    }
                    None => break Phase::Disconnected("the server closed the stream".into()),
                },
                input = input_rx.recv(), if leave_deadline.is_none() => match input {
                    Some(Input::Line(line)) => match Typed::of(&line) {
                        Typed::Say(body) => {
                            // The others stop showing us as typing when the message
                            // arrives: typing again right after is news again.
                            last_typing = None;
                            let id = uuid::Uuid::new_v4().to_string();
                            room.pending.push((id.clone(), body.clone()));
                            if sender.send(send_request(&id, &body)).await.is_err() {
                                break Phase::Disconnected("the stream closed".into());
                            }
                        }
                        Typed::Quit => {
                            leave_deadline = Some(tokio::time::Instant::now() + LEAVE_GRACE);
                        }
                        Typed::History(count) => {
                            match room::recent(client, &group_id, count, None).await {
                                Ok((messages, _)) => room.show_history(messages),
                                Err(err) => room.notice(
                                    ChatEvent::Disconnected { reason: err.to_string() },
                                    format!("history unavailable: {err}"),
                                ),
                            }
                        }
                        other => room.command(other),
                    },
                    Some(Input::Typing) => {
                        if last_typing.is_none_or(|at| at.elapsed() >= TYPING_SEND_INTERVAL) {
                            last_typing = Some(Instant::now());
                            let _ = sender.try_send(ChatRequest {
                                kind: Some(chat_request::Kind::Typing(chat_request::Typing {})),
                            });
                        }
                    }
                    Some(Input::Leave) | None => {
                        leave_deadline = Some(tokio::time::Instant::now() + LEAVE_GRACE);
                    }
                },
                _ = tokio::time::sleep_until(leave_deadline.unwrap_or_else(tokio::time::Instant::now)), if leave_deadline.is_some() => {
                    break Phase::Leave;
                }
                _ = typing_expiry.tick(), if room.screen.is_terminal() => room.expire_typing(),
                _ = interrupt.recv() => break Phase::Leave,
            }
        };
        drop(sender);

        let reason = match phase {
            Phase::Leave => break 'session Ok(()),
            Phase::Fatal(err) => break 'session Err(err),
            Phase::Disconnected(reason) => reason,
        };
        if leave_deadline.is_some() {
            break 'session Ok(());
        }
        room.typing.clear();
        room.show_typing();
        room.notice(
            ChatEvent::Disconnected {
                reason: reason.clone(),
            },
            "connection lost; reconnecting…".into(),
        );

        // Disconnected: keep reading input (lines wait in `pending`) while retrying.
        connection = loop {
            let mut pause = pin!(tokio::time::sleep(backoff.next_delay()));
            loop {
                tokio::select! {
                    _ = &mut pause => break,
                    input = input_rx.recv() => match input {
                        Some(Input::Line(line)) => match Typed::of(&line) {
                            Typed::Say(body) => {
                                room.pending.push((uuid::Uuid::new_v4().to_string(), body));
                            }
                            Typed::Quit => break 'session Ok(()),
                            // Not connected: history waits for the connection.
                            Typed::History(_) => room.notice(
                                ChatEvent::Disconnected { reason: "reconnecting".into() },
                                "not connected; try /history again once reconnected".into(),
                            ),
                            other => room.command(other),
                        },
                        Some(Input::Typing) => {}
                        Some(Input::Leave) | None => break 'session Ok(()),
                    },
                    _ = interrupt.recv() => break 'session Ok(()),
                }
            }
            let group_id = room.group_id.clone();
            match room::reopen_and_resume(client, &group_id, &mut room.tracker, HISTORY, Mode::Chat)
                .await
            {
                Ok((connection, resume)) => {
                    backoff.reset();
                    room.online = connection
                        .joined
                        .online
                        .iter()
                        .map(|m| (m.id.clone(), m.name.clone()))
                        .collect();
                    room.show_resume(resume);
                    break connection;
                }
                Err(err) if room::retryable(&err) => continue,
                Err(err) => break 'session Err(err),
            }
        };
    };

    let unsent = room.pending.len();
    let text = if unsent == 0 {
        "you left the room".to_owned()
    } else {
        format!("you left the room; {unsent} message(s) were not confirmed by the server")
    };
    // Back to normal first; the error (e.g. the group was deleted) is printed by `main`.
    room.screen.restore();
    if outcome.is_ok() {
        room.notice(ChatEvent::Left { unsent }, text);
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::Typed;

    #[test]
    fn lines_are_messages_unless_they_are_commands() {
        assert_eq!(Typed::of("hello"), Typed::Say("hello".into()));
        assert_eq!(Typed::of("   "), Typed::Nothing);
        assert_eq!(Typed::of("  //shrug "), Typed::Say("/shrug".into()));
        assert_eq!(Typed::of("/who"), Typed::Who);
        assert_eq!(Typed::of("/history"), Typed::History(20));
        assert_eq!(Typed::of("/history 5"), Typed::History(5));
        assert_eq!(Typed::of("/quit"), Typed::Quit);
        for unknown in [
            "/history 0",
            "/history 9999",
            "/history five",
            "/who am i",
            "/nope",
        ] {
            assert_eq!(
                Typed::of(unknown),
                Typed::Unknown(unknown.into()),
                "{unknown}"
            );
        }
        assert_eq!(
            Typed::of("a /slash inside"),
            Typed::Say("a /slash inside".into())
        );
    }
}

//! The scriptable room commands: `send`, `tail [--follow]` and `history`.

use std::io::BufRead;

use futures::StreamExt;
use quickchat_proto::v1::{self, chat_response};

use super::parse_group_ref;
use crate::args::{HistoryArgs, SendArgs, TailArgs};
use crate::client::{Client, with_token};
use crate::error::CliError;
use crate::output::{MessageView, Output};
use crate::room::{self, Backoff, Mode, Resume, Tracker};

/// How often a send is retried when the server cannot be reached (same idempotency key).
const SEND_ATTEMPTS: u32 = 3;

pub async fn send(client: &mut Client, args: SendArgs, output: Output) -> Result<(), CliError> {
    let group_id = parse_group_ref(&args.group)?;
    let bodies = match args.text {
        Some(text) => vec![text],
        None => {
            let mut bodies = Vec::new();
            for line in std::io::stdin().lock().lines() {
                let line =
                    line.map_err(|err| CliError::local(format!("cannot read stdin: {err}")))?;
                if !line.trim().is_empty() {
                    bodies.push(line);
                }
            }
            if bodies.is_empty() {
                return Err(CliError::usage(
                    "nothing to send: give the text as an argument or on stdin",
                ));
            }
            bodies
        }
    };
    for body in bodies {
        let message = send_one(client, &group_id, body).await?;
        let view = MessageView::from(message);
        output.emit(&view, || format!("Sent message #{}.", view.offset));
    }
    Ok(())
}

async fn send_one(
    client: &mut Client,
    group_id: &str,
    body: String,
) -> Result<v1::Message, CliError> {
    let client_message_id = uuid::Uuid::new_v4().to_string();
    let chat = client.chat();
    let mut backoff = Backoff::default();
    let mut attempt = 1;
    loop {
        let result = client
            .as_group(group_id, |token| {
                let mut chat = chat.clone();
                let request = v1::SendMessageRequest {
                    group_id: group_id.to_owned(),
                    client_message_id: client_message_id.clone(),
                    body: body.clone(),
                };
                async move { chat.send_message(with_token(request, &token)).await }
            })
            .await;
        match result {
            Ok(response) => {
                return response
                    .into_inner()
                    .message
                    .ok_or_else(|| CliError::Server("the server sent no message".into()));
            }
            // Retrying is safe: the same client_message_id never sends twice.
            Err(err) if err.is_unreachable() && attempt < SEND_ATTEMPTS => {
                attempt += 1;
                tokio::time::sleep(backoff.next_delay()).await;
            }
            Err(err) => return Err(err),
        }
    }
}

pub async fn history(
    client: &mut Client,
    args: HistoryArgs,
    output: Output,
) -> Result<(), CliError> {
    let group_id = parse_group_ref(&args.group)?;
    if args.limit == 0 {
        return Err(CliError::usage("--limit must be at least 1"));
    }
    let (messages, has_more) = room::recent(client, &group_id, args.limit, args.before).await?;
    if messages.is_empty() && !output.is_json() {
        output.note("No messages.");
    }
    let oldest = messages.first().map(|m| m.offset);
    for message in messages {
        let view = MessageView::from(message);
        output.emit(&view, || view.row());
    }
    if let (true, Some(oldest), false) = (has_more, oldest, output.is_json()) {
        output.note(format!(
            "Older messages: quickchat history {group_id} --before {oldest}"
        ));
    }
    Ok(())
}

pub async fn tail(client: &mut Client, args: TailArgs, output: Output) -> Result<(), CliError> {
    let group_id = parse_group_ref(&args.group)?;
    let mut tracker = Tracker::new();
    let print = |message: v1::Message, tracker: &mut Tracker| {
        if tracker.accept(message.offset) {
            let view = MessageView::from(message);
            output.emit(&view, || view.row());
        }
    };

    if !args.follow {
        let messages = match args.since {
            Some(since) => room::after(client, &group_id, since).await?,
            None => room::recent(client, &group_id, args.lines, None).await?.0,
        };
        for message in messages {
            print(message, &mut tracker);
        }
        return Ok(());
    }

    let mut connection = room::open(client, &group_id, Mode::Subscribe, None).await?;
    tracker.set_epoch(&connection.joined.epoch);
    let first = match args.since {
        Some(since) => room::after(client, &group_id, since).await?,
        None if args.lines == 0 => Vec::new(),
        None => {
            room::recent(
                client,
                &group_id,
                args.lines,
                Some(connection.joined.offset + 1),
            )
            .await?
            .0
        }
    };
    for message in first {
        print(message, &mut tracker);
    }

    let mut backoff = Backoff::default();
    loop {
        while let Some(event) = connection.events.next().await {
            match event {
                Ok(v1::ChatResponse {
                    event: Some(chat_response::Event::Message(message)),
                }) => print(message, &mut tracker),
                Ok(_) => {}
                Err(status) => {
                    if let Some(fatal) = room::stream_failure(status) {
                        return Err(fatal);
                    }
                    break;
                }
            }
        }
        output.note("connection lost; reconnecting…");
        connection = loop {
            tokio::time::sleep(backoff.next_delay()).await;
            match room::reopen_and_resume(
                client,
                &group_id,
                &mut tracker,
                args.lines,
                Mode::Subscribe,
            )
            .await
            {
                Ok((connection, resume)) => {
                    backoff.reset();
                    match resume {
                        Resume::Recovered => output.note("reconnected; nothing was missed"),
                        Resume::Reloaded(missed) => {
                            output.note(format!(
                                "reconnected; the server could not resume the stream, so {} missed message(s) were reloaded from history",
                                missed.len()
                            ));
                            for message in missed {
                                print(message, &mut tracker);
                            }
                        }
                        Resume::Restarted(recent) => {
                            output
                                .note("reconnected; the room's history started over, reloaded it");
                            for message in recent {
                                print(message, &mut tracker);
                            }
                        }
                    }
                    break connection;
                }
                Err(err) if room::retryable(&err) => continue,
                Err(err) => return Err(err),
            }
        };
    }
}

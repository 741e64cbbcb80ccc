//! One module per family of commands, and the helpers they share: reading secrets and
//! turning a share link into a group id.

pub mod auth;
pub mod chat;
pub mod config;
pub mod group;
pub mod messages;

use std::io::{BufRead, IsTerminal};

use clap_complete::Shell;

use crate::args::Command;
use crate::client::Client;
use crate::error::CliError;
use crate::output::Output;

/// Runs every command that talks to the server.
pub async fn dispatch(
    client: &mut Client,
    command: Command,
    output: Output,
) -> Result<(), CliError> {
    match command {
        Command::Register(args) => auth::register(client, args, output).await,
        Command::Login(args) => auth::login(client, args, output).await,
        Command::Whoami => auth::whoami(client, output).await,
        Command::Group(cmd) => group::run(client, cmd, output).await,
        Command::Join(args) => group::join(client, args, output).await,
        Command::Chat(args) => chat::run(client, &args.group, output).await,
        Command::Send(args) => messages::send(client, args, output).await,
        Command::Tail(args) => messages::tail(client, args, output).await,
        Command::History(args) => messages::history(client, args, output).await,
        Command::Logout(_) | Command::Completions { .. } | Command::Config(_) => {
            unreachable!("handled before connecting")
        }
    }
}

/// Prints the completion registration script for `shell`.
pub fn completions(shell: Shell) -> Result<(), CliError> {
    crate::complete::print_registration(shell)
        .map_err(|err| CliError::local(format!("cannot print the completion script: {err}")))
}

/// The group id in a bare UUID, a share link (`<server>/join/<id>`), or any URL whose last
/// path segment is the id.
pub fn parse_group_ref(raw: &str) -> Result<String, CliError> {
    let raw = raw.trim();
    let bad = || {
        CliError::usage(format!(
            "{raw:?} is not a group id or share link (expected a UUID, or a link such as \
             http://127.0.0.1:50051/join/<group-id>)"
        ))
    };
    if let Ok(id) = uuid::Uuid::parse_str(raw) {
        return Ok(id.hyphenated().to_string());
    }
    let url = url::Url::parse(raw).map_err(|_| bad())?;
    let last = url
        .path_segments()
        .and_then(|mut segments| segments.rfind(|s| !s.is_empty()))
        .or_else(|| url.host_str())
        .ok_or_else(bad)?;
    uuid::Uuid::parse_str(last)
        .map(|id| id.hyphenated().to_string())
        .map_err(|_| bad())
}

/// A secret from the first line of stdin (`--password-stdin`, `--passcode-stdin`).
pub fn read_secret_from_stdin(what: &str) -> Result<String, CliError> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|err| CliError::local(format!("cannot read the {what} from stdin: {err}")))?;
    let secret = line.trim_end_matches(['\n', '\r']).to_owned();
    if secret.is_empty() {
        return Err(CliError::usage(format!("no {what} on stdin")));
    }
    Ok(secret)
}

/// A secret typed at the terminal without echo.
pub fn prompt_secret(prompt: &str, what: &str, stdin_flag: &str) -> Result<String, CliError> {
    if !std::io::stdin().is_terminal() {
        return Err(CliError::usage(format!(
            "cannot prompt for the {what} without a terminal: pass it with {stdin_flag}"
        )));
    }
    rpassword::prompt_password(prompt).map_err(|err| {
        CliError::usage(format!(
            "cannot prompt for the {what} ({err}): pass it with {stdin_flag}"
        ))
    })
}

/// Asks a yes/no question on the terminal; `false` unless the answer starts with y.
pub fn confirm(question: &str) -> Result<bool, CliError> {
    eprint!("{question} [y/N] ");
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|err| CliError::local(format!("cannot read the answer: {err}")))?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "Yes" | "YES"))
}

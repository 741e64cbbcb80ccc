//! `quickchat`, the QuickChat command-line client.
//!
//! [`args`] parses the command line. [`run`] opens the [`config::TokenStore`] (tokens per
//! server, in the user's config directory) and a [`client::Client`] (the gRPC channel, which
//! puts the right bearer token on each call and refreshes an expired session), then hands
//! both to one of the [`commands`]. Commands print through [`output`] (a human line, or one
//! JSON object per line with `--json`). The room commands (`chat`, `tail --follow`) share
//! [`room`]: join, history catch-up, de-duplication by offset, and reconnects with backoff.
//! Every failure is a [`error::CliError`], which `main` prints as one line and turns into
//! the exit code.

pub mod args;
pub mod client;
pub mod commands;
pub mod complete;
pub mod config;
pub mod error;
pub mod output;
pub mod room;

use args::{Cli, Command};
use client::{Client, load_ca_cert, normalize_server};
use config::TokenStore;
use error::CliError;
use output::Output;

/// Runs one parsed command line.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    let output = Output::new(cli.json).with_fields(cli.fields.clone());
    if let Command::Completions { shell } = cli.command {
        return commands::completions(shell);
    }
    let config_dir = config::config_dir_or_default(cli.config_dir.as_deref())?;
    let (server, _) = effective_server(cli.server.as_deref(), &config_dir)?;
    if let Command::Config(command) = cli.command {
        return commands::config::run(command, cli.server.as_deref(), &config_dir, output);
    }
    let server = normalize_server(&server)?;
    let ca_cert = cli.ca_cert.as_deref().map(load_ca_cert).transpose()?;
    let store = TokenStore::open(cli.config_dir.as_deref(), &server)?;
    if let Command::Logout(args) = &cli.command {
        // Logging out must work with the server down: the local tokens go regardless.
        return commands::auth::logout(&server, ca_cert.as_ref(), store, args, output).await;
    }
    let mut client = Client::connect(&server, ca_cert, store).await?;
    let result = commands::dispatch(&mut client, cli.command, output).await;
    result.map_err(|err| err.with_server(&server))
}

/// Where the effective value of a setting comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Flag,
    Env,
    ConfigFile,
    Default,
}

/// The server to talk to, and where that choice comes from: `--server`, then
/// `QUICKCHAT_SERVER`, then `quickchat config set server`, then the default.
pub fn effective_server(
    given: Option<&str>,
    config_dir: &std::path::Path,
) -> Result<(String, Source), CliError> {
    if let Some(server) = given {
        let on_command_line =
            std::env::args().any(|arg| arg == "--server" || arg.starts_with("--server="));
        let source = if on_command_line {
            Source::Flag
        } else {
            Source::Env
        };
        return Ok((server.to_owned(), source));
    }
    Ok(match config::SavedSettings::load(config_dir)?.server {
        Some(server) => (server, Source::ConfigFile),
        None => (args::DEFAULT_SERVER.to_owned(), Source::Default),
    })
}

/// The `quickchat` program: parse the command line, run it, print any error as one line
/// and exit with its code (see [`error`]).
pub fn main() {
    complete::answer_if_asked();
    let cli = match <Cli as clap::Parser>::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            // --help and --version print to stdout and succeed; usage errors exit 1 (as one
            // JSON object when the command line asked for --json).
            if err.use_stderr() && std::env::args().any(|arg| arg == "--json") {
                let rendered = err.to_string();
                let first = rendered.lines().next().unwrap_or_default();
                let message = first.strip_prefix("error: ").unwrap_or(first);
                eprintln!("{}", CliError::usage(message).json());
            } else {
                let _ = err.print();
            }
            std::process::exit(if err.use_stderr() { 1 } else { 0 });
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            std::process::exit(1);
        }
    };
    let json = cli.json || !cli.fields.is_empty();
    let code = match runtime.block_on(run(cli)) {
        Ok(()) => 0,
        Err(err) => {
            // With --json, scripts get the error as JSON too (still on stderr).
            if json {
                eprintln!("{}", err.json());
            } else {
                eprintln!("error: {err}");
            }
            err.exit_code()
        }
    };
    // Exit without waiting for a thread blocked reading the terminal.
    std::process::exit(code);
}

//! `quickchat-server`: parse flags, then run the server (or, with `persister`, only the
//! persister) until SIGINT or SIGTERM. Everything after parsing is in the library
//! ([`quickchat_service::startup::main`]), so tests run the same program as a process.

use std::process::ExitCode;

use clap::Parser;
use quickchat_service::settings::ServerCli;

#[tokio::main]
async fn main() -> ExitCode {
    quickchat_service::startup::main(ServerCli::parse()).await
}

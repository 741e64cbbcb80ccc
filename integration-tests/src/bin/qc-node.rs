//! `quickchat-server` built inside this crate, so that its tests can start real server and
//! persister processes (`env!("CARGO_BIN_EXE_qc-node")`) and kill them like a crash would.
//! The same program as the server's own binary: both call `startup::main`.

use std::process::ExitCode;

use clap::Parser;
use quickchat_service::settings::ServerCli;

#[tokio::main]
async fn main() -> ExitCode {
    quickchat_service::startup::main(ServerCli::parse()).await
}

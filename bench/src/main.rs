//! `quickchat-bench`: see `bench/run.sh` for the one command, and the library for the rest.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let config = quickchat_bench::config::Config::parse();
    match quickchat_bench::run(config).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("quickchat-bench: {err:#}");
            ExitCode::from(2)
        }
    }
}

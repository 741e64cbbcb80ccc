//! `quickchat-server`: parse flags, set up logging, build the server (or, with `persister`,
//! only the persister), run it until SIGINT or SIGTERM.

use std::process::ExitCode;

use clap::Parser;
use quickchat_service::settings::{ServerCli, ServerCommand};
use quickchat_service::startup::run_persister;
use quickchat_service::{Application, Settings, telemetry};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = ServerCli::parse();
    telemetry::init();
    let settings = Settings::from(cli.server);
    let result = match cli.command {
        Some(ServerCommand::Persister) => run_persister(settings, shutdown_signal()).await,
        None => match Application::build(settings).await {
            Ok(app) => {
                println!("{}", app.description());
                app.run_until_stopped(shutdown_signal()).await
            }
            Err(err) => {
                eprintln!("quickchat-server: {err:#}");
                return ExitCode::from(2);
            }
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("quickchat-server: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Completes on the first SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sigterm) => {
                sigterm.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutdown signal received; draining");
}

//! `quickchat-server`: parse flags, set up logging, build the server, run it until SIGINT or
//! SIGTERM.

use std::process::ExitCode;

use clap::Parser;
use quickchat_service::settings::ServerArgs;
use quickchat_service::{Application, Settings, telemetry};

/// The QuickChat server. With no flags it runs on its own: SQLite under ./quickchat-data and
/// gRPC + gRPC-web on 127.0.0.1:50051.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    server: ServerArgs,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init();
    let app = match Application::build(Settings::from(cli.server)).await {
        Ok(app) => app,
        Err(err) => {
            eprintln!("quickchat-server: {err:#}");
            return ExitCode::from(2);
        }
    };
    println!("{}", app.description());
    match app.run_until_stopped(shutdown_signal()).await {
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

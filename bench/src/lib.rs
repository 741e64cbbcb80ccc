//! The benchmark harness: QuickChat against the original Node.js stack, side by side.
//!
//! [`config`] is the command line. [`env`] prepares a run (a fresh database on the local
//! PostgreSQL, the shared Redis, a Kafka-protocol broker, the programs) and [`procs`] runs
//! every server as a real process. [`stack`] puts both stacks behind one interface — servers
//! ([`stack::Stack`]) and the clients that load them ([`stack::Clients`]): QuickChat's native
//! clients live in this process, the peer's socket.io-client workers are Node.js processes
//! driven over their stdin. Each [`scenario`] is written once against that interface; send
//! times travel in the message bodies ([`clock`]) and latencies land in HdrHistograms
//! ([`stats`]). [`progress`] shows where a run is, [`report`] prints the side-by-side table.

pub mod clock;
pub mod config;
pub mod env;
pub mod procs;
pub mod progress;
pub mod report;
pub mod scenario;
pub mod stack;
pub mod stats;

use std::sync::Arc;

use config::{Config, Stacks};
use env::{Env, EnvConfig};
use progress::Progress;
use report::Metric;
use stack::Stack;

/// Runs the scenarios `config` asks for on the stacks it asks for, prints the table, and
/// returns whether every scenario ran.
pub async fn run(mut config: Config) -> anyhow::Result<bool> {
    if config.smoke {
        config.shrink();
    }
    let env = Arc::new(
        Env::create(EnvConfig {
            postgres_url: config.database_url.clone(),
            redis_url: config.redis_url.clone(),
            kafka_brokers: config.kafka_brokers.clone().filter(|b| !b.is_empty()),
            server_bin: config.server_bin.clone(),
            node_bin: config.node.clone(),
            peer_dir: config.peer_dir.clone(),
            logs_root: config.logs.clone(),
        })
        .await?,
    );
    eprintln!("{}", machine(&env).await);
    eprintln!("run {}: logs in {}", env.run_id, env.logs.display());

    let mut stacks: Vec<Box<dyn Stack>> = Vec::new();
    if config.stack != Stacks::Peer {
        stacks.push(Box::new(stack::quickchat::QuickChat::new(
            env.clone(),
            config.qc_args.clone(),
        )));
    }
    if config.stack != Stacks::Quickchat {
        stacks.push(Box::new(stack::peer::Peer::new(
            env.clone(),
            config.peer_workers,
        )));
    }
    let scenarios = config.scenarios();
    let steps: u64 = scenarios.iter().map(|s| s.steps(&config)).sum::<u64>() * stacks.len() as u64;
    let progress = Progress::new(steps);
    let mut results: Vec<Vec<Metric>> = vec![Vec::new(); stacks.len()];
    let mut failures = Vec::new();
    let mut position = 0;
    for scenario in scenarios {
        for (i, stack) in stacks.iter_mut().enumerate() {
            let label = format!("{} · {}", scenario.name(), stack.name());
            if scenario.needs_kafka() && env.kafka_brokers.is_none() {
                failures.push(format!(
                    "{label}: needs a Kafka broker (--kafka-brokers or QUICKCHAT_TEST_KAFKA_BROKERS)"
                ));
            } else {
                match scenario.run(stack.as_mut(), &config, &progress).await {
                    Ok(metrics) => results[i].extend(metrics),
                    Err(err) => {
                        progress.note(&format!("{label} failed: {err:#}"));
                        failures.push(format!("{label}: {err:#}"));
                    }
                }
            }
            position += scenario.steps(&config);
            progress.reach(position);
        }
    }
    progress.finish();

    let (qc, peer) = match config.stack {
        Stacks::Both => (results[0].as_slice(), results[1].as_slice()),
        Stacks::Quickchat => (results[0].as_slice(), &[][..]),
        Stacks::Peer => (&[][..], results[0].as_slice()),
    };
    let rows = report::rows(qc, peer);
    if config.smoke {
        println!("smoke run (tiny sizes: the numbers mean nothing)\n");
    }
    println!("{}", report::table(&rows, &failures));
    if let Some(path) = &config.json {
        std::fs::write(
            path,
            serde_json::to_string_pretty(&serde_json::json!({
                "run": env.run_id,
                "machine": machine(&env).await,
                "rows": rows,
                "failures": failures,
            }))?,
        )?;
    }
    drop(stacks);
    cleanup_redis(&env);
    match Arc::try_unwrap(env) {
        Ok(env) => env.destroy().await?,
        Err(_) => eprintln!("warning: the run's database was not dropped"),
    }
    Ok(failures.is_empty())
}

/// The machine and the versions a result depends on.
async fn machine(env: &Env) -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let output = |program: &str, args: &[&str]| {
        std::process::Command::new(program)
            .args(args)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    let postgres: String = sea_orm::sqlx::query_scalar("SHOW server_version")
        .fetch_one(&env.pool)
        .await
        .unwrap_or_default();
    let redis = output("redis-cli", &["-u", &env.redis_url, "INFO", "server"])
        .lines()
        .find_map(|l| l.strip_prefix("redis_version:").map(str::to_owned))
        .unwrap_or_default();
    format!(
        "machine: {cpu}, {cores} cores, Linux {} · {} · Node.js {} · PostgreSQL {postgres} · Redis {redis} · Kafka: {}",
        output("uname", &["-r"]),
        output(&env.server_bin.display().to_string(), &["--version"]),
        output(&env.node_bin, &["--version"]),
        env.kafka_brokers.as_deref().unwrap_or("none"),
    )
}

/// Removes the run's keys from Redis (both stacks prefix them with the run id).
fn cleanup_redis(env: &Env) {
    for pattern in [
        format!("qcbench-{}-*", env.run_id),
        format!("peerbench-{}-*", env.run_id),
    ] {
        let keys = std::process::Command::new("redis-cli")
            .args(["-u", &env.redis_url, "--scan", "--pattern", &pattern])
            .output();
        let Ok(keys) = keys else { return };
        let keys: Vec<String> = String::from_utf8_lossy(&keys.stdout)
            .lines()
            .map(str::to_owned)
            .collect();
        for chunk in keys.chunks(500) {
            let _ = std::process::Command::new("redis-cli")
                .args(["-u", &env.redis_url, "unlink"])
                .args(chunk)
                .output();
        }
    }
}

//! connections: C idle clients on one node, each on its own connection and in a room (of
//! `--room-members`): the server's resident memory per client, and the time to connect them
//! all.

use std::time::{Duration, Instant};

use crate::config::Config;
use crate::procs::rss_bytes;
use crate::progress::Progress;
use crate::report::{Better, Metric};
use crate::stack::{ClientSpec, Layout, Stack};

const NAME: &str = "connections";

pub async fn run(
    stack: &mut dyn Stack,
    config: &Config,
    progress: &Progress,
) -> anyhow::Result<Vec<Metric>> {
    let label = format!("{NAME} · {}", stack.name());
    let total = config.connections;
    let members = config.room_members.max(1);
    progress.step(&format!("{label}: starting"));
    stack
        .start(Layout {
            nodes: 1,
            kafka: false,
            persister: true,
        })
        .await?;
    let rooms = stack.rooms(total.div_ceil(members), members).await?;
    let specs: Vec<ClientSpec> = (0..total)
        .map(|i| ClientSpec {
            node: 0,
            room: i / members,
            member: i % members,
        })
        .collect();
    let pid = stack.server_pids()[0];

    // A few clients first, so that what every server allocates once (pools, the first
    // connection's buffers, lazily built tables) is in the baseline.
    let mut clients = stack.clients();
    let warm = total.min(members);
    clients
        .connect(&specs[..warm], &rooms, config.connect_concurrency)
        .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = rss_bytes(pid)?;

    progress.step(&format!("{label}: connecting {} clients", total - warm));
    let start = Instant::now();
    clients
        .connect(&specs[warm..], &rooms, config.connect_concurrency)
        .await?;
    let connect_time = start.elapsed();
    progress.step(&format!("{label}: settling"));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = rss_bytes(pid)?;
    let counts = clients.counts().await?;
    anyhow::ensure!(
        counts.disconnects == 0,
        "{label}: {} clients were disconnected while idle",
        counts.disconnects
    );
    clients.close().await?;

    let added = (total - warm).max(1) as f64;
    let per_client_kib = after.saturating_sub(before) as f64 / added / 1024.0;
    Ok(vec![
        Metric::new(
            NAME,
            format!("{total} idle clients: server RSS per client"),
            Some(per_client_kib),
            "KiB",
            Better::Lower,
        ),
        Metric::new(
            NAME,
            format!("{total} idle clients: server RSS"),
            Some(after as f64 / (1024.0 * 1024.0)),
            "MiB",
            Better::Lower,
        ),
        Metric::new(
            NAME,
            format!("time to connect {total} clients"),
            Some(connect_time.as_secs_f64()),
            "s",
            Better::Lower,
        ),
    ])
}

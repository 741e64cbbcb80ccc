//! rooms: many small rooms on one node (1 000 × 10 by default), every member on its own
//! connection, sending at a low rate: deliveries/s and send → receive latency.

use super::fanout::lost;
use super::{check_phase, latency_metrics, run_phase};
use crate::config::Config;
use crate::progress::Progress;
use crate::report::{Better, Metric};
use crate::stack::{ClientSpec, Layout, Stack};

const NAME: &str = "rooms";

pub async fn run(
    stack: &mut dyn Stack,
    config: &Config,
    progress: &Progress,
) -> anyhow::Result<Vec<Metric>> {
    let label = format!("{NAME} · {}", stack.name());
    let (count, members) = (config.rooms, config.room_members.max(2));
    progress.step(&format!(
        "{label}: starting, {count} rooms × {members} members"
    ));
    stack
        .start(Layout {
            nodes: 1,
            kafka: false,
            persister: true,
        })
        .await?;
    let rooms = stack.rooms(count, members).await?;
    let specs: Vec<ClientSpec> = (0..count)
        .flat_map(|room| {
            (0..members).map(move |member| ClientSpec {
                node: 0,
                room,
                member,
            })
        })
        .collect();
    let mut clients = stack.clients();
    progress.step(&format!("{label}: connecting {} clients", specs.len()));
    clients
        .connect(&specs, &rooms, config.connect_concurrency)
        .await?;
    let senders: Vec<usize> = (0..specs.len()).collect();
    let rate = config.room_rate * count as f64;
    progress.step(&format!("{label}: {rate} msgs/s for {} s", config.secs));
    let phase = run_phase(
        clients.as_mut(),
        &senders,
        (members - 1) as u64,
        rate,
        config.secs,
        false,
    )
    .await?;
    check_phase(&label, &phase)?;
    clients.close().await?;
    let what = format!("{count} rooms × {members}, {rate} msgs/s:");
    let mut metrics = vec![Metric::new(
        NAME,
        format!("{what} deliveries/s"),
        Some(phase.deliveries_per_sec()),
        "/s",
        Better::Higher,
    )];
    metrics.extend(latency_metrics(
        NAME,
        &format!("{what} latency"),
        &phase.latency,
    ));
    metrics.push(lost(NAME, &what, phase.delivered, phase.expected));
    Ok(metrics)
}

//! send-ack: senders on one node, each alone in its room (no fan-out), every message
//! produced to Kafka with acks=all before the sender's ack: ack latency at fixed rates, then
//! the highest rate whose ack p99 stays under the bound.

use super::{Load, check_phase, latency_metrics, run_phase, specs, sweep};
use crate::config::Config;
use crate::progress::Progress;
use crate::report::{Better, Metric};
use crate::stack::{ClientSpec, Layout, Stack};

const NAME: &str = "send-ack";

pub async fn run(
    stack: &mut dyn Stack,
    config: &Config,
    progress: &Progress,
) -> anyhow::Result<Vec<Metric>> {
    let label = format!("{NAME} · {}", stack.name());
    let senders_n = config.send_ack_senders.max(1);
    progress.step(&format!("{label}: starting, {senders_n} senders"));
    stack
        .start(Layout {
            nodes: 1,
            kafka: true,
            persister: true,
        })
        .await?;
    let rooms = stack.rooms(senders_n, 1).await?;
    let specs: Vec<ClientSpec> = (0..senders_n)
        .flat_map(|room| specs(0, room, 0..1))
        .collect();
    let mut clients = stack.clients();
    clients
        .connect(&specs, &rooms, config.connect_concurrency)
        .await?;
    let senders: Vec<usize> = (0..senders_n).collect();
    // The first sends wait for the topic's partitions and the producer's connections.
    run_phase(clients.as_mut(), &senders, 0, 50.0, 1.0, true).await?;

    let mut metrics = Vec::new();
    for &rate in &config.send_ack_rates {
        progress.step(&format!("{label}: {rate} sends/s for {} s", config.secs));
        let phase = run_phase(clients.as_mut(), &senders, 0, rate, config.secs, true).await?;
        check_phase(&label, &phase)?;
        let what = format!("{rate} sends/s:");
        metrics.push(Metric::new(
            NAME,
            format!("{what} acks/s"),
            Some(phase.acks_per_sec()),
            "/s",
            Better::Higher,
        ));
        metrics.extend(latency_metrics(
            NAME,
            &format!("{what} ack latency"),
            &phase.ack_latency,
        ));
    }
    let swept = sweep(
        clients.as_mut(),
        Load {
            senders: &senders,
            fanout: 0,
            acks: true,
        },
        config.send_ack_sweep_start,
        config,
        progress,
        &label,
    )
    .await?;
    metrics.push(Metric::new(
        NAME,
        format!("sweep: most acks/s with ack p99 ≤ {} ms", config.bound_ms),
        swept.best.as_ref().map(|b| b.acks_per_sec()),
        "/s",
        Better::Higher,
    ));
    metrics.push(Metric::new(
        NAME,
        "sweep: flat out, acks/s".to_owned(),
        Some(swept.flat_out),
        "/s",
        Better::Higher,
    ));
    clients.close().await?;
    Ok(metrics)
}

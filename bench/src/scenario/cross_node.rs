//! cross-node: two (or three) nodes on one Redis; publishers on the first node, subscribers
//! on the last. Latency at a low fixed load (100 subscribers × 100 msgs/s by default), then
//! the rate sweep with the full set of subscribers.

use super::fanout::{lost, sweep_metrics};
use super::{Load, check_phase, latency_metrics, run_phase, specs, sweep};
use crate::config::Config;
use crate::progress::Progress;
use crate::report::{Better, Metric};
use crate::stack::{Layout, Stack};

const NAME: &str = "cross-node";

pub async fn run(
    stack: &mut dyn Stack,
    config: &Config,
    progress: &Progress,
) -> anyhow::Result<Vec<Metric>> {
    let label = format!("{NAME} · {}", stack.name());
    let nodes = config.cross_nodes.max(2);
    let (low, all, publishers) = (
        config.cross_low_subscribers,
        config.cross_subscribers.max(config.cross_low_subscribers),
        config.publishers,
    );
    progress.step(&format!(
        "{label}: starting {nodes} nodes, {low} subscribers"
    ));
    stack
        .start(Layout {
            nodes,
            kafka: false,
            persister: true,
        })
        .await?;
    // Members 0..all subscribe (on the last node), all..all+publishers publish (first node).
    let rooms = stack.rooms(1, all + publishers).await?;
    let mut clients = stack.clients();
    let last = nodes - 1;
    clients
        .connect(&specs(last, 0, 0..low), &rooms, config.connect_concurrency)
        .await?;
    clients
        .connect(
            &specs(0, 0, all..all + publishers),
            &rooms,
            config.connect_concurrency,
        )
        .await?;
    let senders: Vec<usize> = (low..low + publishers).collect();

    let rate = config.cross_low_rate;
    progress.step(&format!("{label}: {low} subscribers × {rate} msgs/s"));
    let fanout = (low + publishers - 1) as u64;
    let phase = run_phase(clients.as_mut(), &senders, fanout, rate, config.secs, false).await?;
    check_phase(&label, &phase)?;
    let what = format!("{low} subs × {rate} msgs/s:");
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

    progress.step(&format!("{label}: {} more subscribers", all - low));
    clients
        .connect(
            &specs(last, 0, low..all),
            &rooms,
            config.connect_concurrency,
        )
        .await?;
    let fanout = (all + publishers - 1) as u64;
    let swept = sweep(
        clients.as_mut(),
        Load {
            senders: &senders,
            fanout,
            acks: false,
        },
        config.sweep_start,
        config,
        progress,
        &format!("{label} ({all} subs)"),
    )
    .await?;
    metrics.extend(sweep_metrics(NAME, config, &swept));
    clients.close().await?;
    Ok(metrics)
}

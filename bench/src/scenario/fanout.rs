//! fanout: one room on one node, N subscribers and a few publishers, each on its own
//! connection. A phase at a fixed rate (deliveries/s, send → receive latency), then the
//! rate sweep.

use super::{Load, check_phase, latency_metrics, run_phase, specs, sweep};
use crate::config::Config;
use crate::progress::Progress;
use crate::report::{Better, Metric};
use crate::stack::{Layout, Stack};

const NAME: &str = "fanout";

pub async fn run(
    stack: &mut dyn Stack,
    config: &Config,
    progress: &Progress,
) -> anyhow::Result<Vec<Metric>> {
    let label = format!("{NAME} · {}", stack.name());
    let (subscribers, publishers) = (config.fanout_subscribers, config.publishers);
    progress.step(&format!(
        "{label}: starting, {subscribers} subscribers connecting"
    ));
    stack
        .start(Layout {
            nodes: 1,
            kafka: false,
            persister: true,
        })
        .await?;
    let rooms = stack.rooms(1, subscribers + publishers).await?;
    let mut clients = stack.clients();
    clients
        .connect(
            &specs(0, 0, 0..subscribers + publishers),
            &rooms,
            config.connect_concurrency,
        )
        .await?;
    let senders: Vec<usize> = (subscribers..subscribers + publishers).collect();
    let fanout = (subscribers + publishers - 1) as u64;

    let rate = config.fanout_rate;
    progress.step(&format!("{label}: {rate} msgs/s for {} s", config.secs));
    let fixed = run_phase(clients.as_mut(), &senders, fanout, rate, config.secs, false).await?;
    check_phase(&label, &fixed)?;
    let what = format!("{subscribers} subs, {rate} msgs/s:");
    let mut metrics = vec![Metric::new(
        NAME,
        format!("{what} deliveries/s"),
        Some(fixed.deliveries_per_sec()),
        "/s",
        Better::Higher,
    )];
    metrics.extend(latency_metrics(
        NAME,
        &format!("{what} latency"),
        &fixed.latency,
    ));
    metrics.push(lost(NAME, &what, fixed.delivered, fixed.expected));

    let mut swept = sweep(
        clients.as_mut(),
        Load {
            senders: &senders,
            fanout,
            acks: false,
        },
        config.sweep_start,
        config,
        progress,
        &label,
    )
    .await?;
    swept.consider(&fixed);
    metrics.extend(sweep_metrics(NAME, config, &swept));
    clients.close().await?;
    Ok(metrics)
}

/// Deliveries that never arrived, in percent of those owed.
pub fn lost(scenario: &'static str, what: &str, delivered: u64, expected: u64) -> Metric {
    let lost = expected.saturating_sub(delivered) as f64 * 100.0 / expected.max(1) as f64;
    Metric::new(
        scenario,
        format!("{what} deliveries lost"),
        Some(lost),
        "%",
        Better::Lower,
    )
}

/// The sweep's rows: the best rate under the bound, and flat out.
pub fn sweep_metrics(scenario: &'static str, config: &Config, swept: &super::Sweep) -> Vec<Metric> {
    let bound = config.bound_ms;
    vec![
        Metric::new(
            scenario,
            format!("sweep: most deliveries/s with p99 ≤ {bound} ms"),
            swept.best.as_ref().map(|b| b.deliveries_per_sec()),
            "/s",
            Better::Higher,
        ),
        Metric::new(
            scenario,
            "flat out (any phase), deliveries/s".to_owned(),
            Some(swept.flat_out),
            "/s",
            Better::Higher,
        ),
        Metric::new(
            scenario,
            "flat out (any phase), latency p50".to_owned(),
            Some(swept.flat_out_p50),
            "ms",
            Better::Lower,
        ),
    ]
}

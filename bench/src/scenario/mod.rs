//! The scenarios, each written once against [`Stack`] and [`Clients`], and the two ways
//! they load a stack: a phase at a fixed rate ([`run_phase`]) and a rate sweep
//! ([`sweep`]) that finds the highest rate whose p99 stays under a bound.

pub mod connections;
pub mod cross_node;
pub mod fanout;
pub mod persist;
pub mod rooms;
pub mod send_ack;

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::config::Config;
use crate::progress::Progress;
use crate::report::{Better, Metric};
use crate::stack::{ClientSpec, Clients, Stack};
use crate::stats::percentiles_ms;

/// A scenario's name on the command line and in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    Fanout,
    Rooms,
    CrossNode,
    Persist,
    Connections,
    SendAck,
}

impl Scenario {
    pub const ALL: [Scenario; 6] = [
        Scenario::Fanout,
        Scenario::Rooms,
        Scenario::CrossNode,
        Scenario::Persist,
        Scenario::Connections,
        Scenario::SendAck,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Fanout => "fanout",
            Scenario::Rooms => "rooms",
            Scenario::CrossNode => "cross-node",
            Scenario::Persist => "persist",
            Scenario::Connections => "connections",
            Scenario::SendAck => "send-ack",
        }
    }

    /// Whether it needs a Kafka broker.
    pub fn needs_kafka(self) -> bool {
        matches!(self, Scenario::Persist | Scenario::SendAck)
    }

    /// Progress steps it takes at most (for the progress bar).
    pub fn steps(self, config: &Config) -> u64 {
        let sweep = (config.sweep_steps + config.sweep_refine) as u64;
        match self {
            Scenario::Fanout => 3 + sweep,
            Scenario::Rooms => 3,
            Scenario::CrossNode => 4 + sweep,
            Scenario::Persist => 5,
            Scenario::Connections => 3,
            Scenario::SendAck => 2 + config.send_ack_rates.len() as u64 + sweep,
        }
    }

    pub async fn run(
        self,
        stack: &mut dyn Stack,
        config: &Config,
        progress: &Progress,
    ) -> anyhow::Result<Vec<Metric>> {
        let result = match self {
            Scenario::Fanout => fanout::run(stack, config, progress).await,
            Scenario::Rooms => rooms::run(stack, config, progress).await,
            Scenario::CrossNode => cross_node::run(stack, config, progress).await,
            Scenario::Persist => persist::run(stack, config, progress).await,
            Scenario::Connections => connections::run(stack, config, progress).await,
            Scenario::SendAck => send_ack::run(stack, config, progress).await,
        };
        stack.stop().await;
        result
    }
}

/// What one phase at a fixed rate did.
pub struct PhaseResult {
    /// Messages per second asked for.
    pub rate: f64,
    pub sent: u64,
    pub delivered: u64,
    pub expected: u64,
    pub acked: u64,
    pub failed: u64,
    pub disconnects: u64,
    /// From the first send until everything expected arrived (or the drain gave up).
    pub elapsed: Duration,
    pub latency: Histogram<u64>,
    pub ack_latency: Histogram<u64>,
}

impl PhaseResult {
    pub fn deliveries_per_sec(&self) -> f64 {
        self.delivered as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn acks_per_sec(&self) -> f64 {
        self.acked as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Every expected delivery (and ack, when asked for) arrived, and no stream was cut.
    pub fn complete(&self, acks: bool) -> bool {
        self.delivered >= self.expected
            && (!acks || self.acked >= self.sent)
            && self.failed == 0
            && self.disconnects == 0
    }

    pub fn p99_ms(&self, acks: bool) -> f64 {
        let h = if acks {
            &self.ack_latency
        } else {
            &self.latency
        };
        percentiles_ms(h).map_or(f64::INFINITY, |(_, p99, _)| p99)
    }
}

/// How long a phase may wait for its last deliveries: `DRAIN_MAX` in all, and at most
/// `DRAIN_STALL` without any progress.
const DRAIN_MAX: Duration = Duration::from_secs(20);
const DRAIN_STALL: Duration = Duration::from_secs(3);

/// Sends at `rate` for `secs` from `senders`, each message owed to `fanout` receivers, then
/// waits for the deliveries (and the acks when `acks`).
pub async fn run_phase(
    clients: &mut dyn Clients,
    senders: &[usize],
    fanout: u64,
    rate: f64,
    secs: f64,
    acks: bool,
) -> anyhow::Result<PhaseResult> {
    clients.take_stats().await?;
    let start = Instant::now();
    let sent = clients.send(senders, rate, secs, acks).await?;
    let expected = sent * fanout;
    let mut last = clients.counts().await?;
    let mut last_change = Instant::now();
    let drain_start = Instant::now();
    loop {
        let c = clients.counts().await?;
        let done = c.delivered >= expected && (!acks || c.acked + c.failed >= sent);
        if done {
            break;
        }
        if c != last {
            last = c;
            last_change = Instant::now();
        }
        if last_change.elapsed() > DRAIN_STALL || drain_start.elapsed() > DRAIN_MAX {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let elapsed = start.elapsed();
    let stats = clients.take_stats().await?;
    Ok(PhaseResult {
        rate,
        sent,
        delivered: stats.counts.delivered,
        expected,
        acked: stats.counts.acked,
        failed: stats.counts.failed,
        disconnects: stats.counts.disconnects,
        elapsed,
        latency: stats.latency,
        ack_latency: stats.ack_latency,
    })
}

/// A rate sweep's outcome.
pub struct Sweep {
    /// The highest step whose p99 stayed within the bound with nothing lost.
    pub best: Option<PhaseResult>,
    /// The most deliveries (or acks) per second any step reached, whatever its latency.
    pub flat_out: f64,
    /// p50 (ms) of the step that reached `flat_out`.
    pub flat_out_p50: f64,
}

impl Sweep {
    /// Counts a phase run outside the sweep (at a fixed rate) towards flat out.
    pub fn consider(&mut self, phase: &PhaseResult) {
        if phase.deliveries_per_sec() > self.flat_out {
            self.flat_out = phase.deliveries_per_sec();
            self.flat_out_p50 = percentiles_ms(&phase.latency).map_or(0.0, |(p50, _, _)| p50);
        }
    }
}

/// Who sends in a sweep, how many receivers each message is owed to, and whether the
/// sweep is about acks (their latency and rate) instead of deliveries.
pub struct Load<'a> {
    pub senders: &'a [usize],
    pub fanout: u64,
    pub acks: bool,
}

/// Rates `start`, `start × factor`, … for up to `config.sweep_steps` steps, until two steps
/// in a row are over the bound (p99 of delivery latency, or of ack latency with `acks`) or
/// one loses messages; then `config.sweep_refine` steps between the best step within the
/// bound and the first step above it (at their geometric mean, narrowing the gap each
/// time). The best step is the highest within the bound.
pub async fn sweep(
    clients: &mut dyn Clients,
    load: Load<'_>,
    start: f64,
    config: &Config,
    progress: &Progress,
    label: &str,
) -> anyhow::Result<Sweep> {
    let mut result = Sweep {
        best: None,
        flat_out: 0.0,
        flat_out_p50: 0.0,
    };
    let mut rate = start;
    let mut over = 0;
    // The lowest rate seen over the bound above the best one.
    let mut above: Option<f64> = None;
    for step in 0..config.sweep_steps {
        let within = sweep_step(clients, &load, rate, config, progress, label, &mut result).await?;
        // One step over the bound may be a hiccup of a shared machine; a second in a row,
        // or a step that lost messages or could not drain, ends the sweep.
        match within {
            Some(true) => {
                over = 0;
                above = None;
            }
            _ => {
                over += 1;
                above.get_or_insert(rate);
            }
        }
        if within.is_none() || over >= 2 {
            progress.skip(config.sweep_steps as u64 - step as u64 - 1);
            break;
        }
        rate *= config.sweep_factor;
    }
    for step in 0..config.sweep_refine {
        let (Some(best), Some(high)) = (result.best.as_ref().map(|b| b.rate), above) else {
            progress.skip((config.sweep_refine - step) as u64);
            break;
        };
        let rate = (best * high).sqrt();
        if sweep_step(clients, &load, rate, config, progress, label, &mut result).await?
            != Some(true)
        {
            above = Some(rate);
        }
    }
    Ok(result)
}

/// One step of a sweep at `rate`: `Some(true)` when its p99 stayed within the bound (it is
/// then the best step if none faster was), `Some(false)` when over it, `None` when it lost
/// messages or could not drain.
async fn sweep_step(
    clients: &mut dyn Clients,
    load: &Load<'_>,
    rate: f64,
    config: &Config,
    progress: &Progress,
    label: &str,
    result: &mut Sweep,
) -> anyhow::Result<Option<bool>> {
    let acks = load.acks;
    progress.step(&format!("{label}: sweep at {rate:.0} msgs/s"));
    let phase = run_phase(clients, load.senders, load.fanout, rate, config.secs, acks).await?;
    let throughput = if acks {
        phase.acks_per_sec()
    } else {
        phase.deliveries_per_sec()
    };
    let h = if acks {
        &phase.ack_latency
    } else {
        &phase.latency
    };
    if throughput > result.flat_out {
        result.flat_out = throughput;
        result.flat_out_p50 = percentiles_ms(h).map_or(0.0, |(p50, _, _)| p50);
    }
    let complete = phase.complete(acks);
    let within = complete && phase.p99_ms(acks) <= config.bound_ms;
    progress.note(&format!(
        "{label}: {rate:.0} msgs/s → {throughput:.0}/s, p99 {:.1} ms, {}",
        phase.p99_ms(acks),
        if within {
            "within the bound"
        } else {
            "over the bound"
        }
    ));
    if within && result.best.as_ref().is_none_or(|b| b.rate < rate) {
        result.best = Some(phase);
    }
    Ok(complete.then_some(within))
}

/// Latency rows (p50, p99, p99.9 in ms) for a phase.
pub fn latency_metrics(scenario: &'static str, what: &str, h: &Histogram<u64>) -> Vec<Metric> {
    let (p50, p99, p999) =
        percentiles_ms(h).map_or((None, None, None), |(a, b, c)| (Some(a), Some(b), Some(c)));
    vec![
        Metric::new(scenario, format!("{what} p50"), p50, "ms", Better::Lower),
        Metric::new(scenario, format!("{what} p99"), p99, "ms", Better::Lower),
        Metric::new(scenario, format!("{what} p99.9"), p999, "ms", Better::Lower),
    ]
}

/// Specs for members `members` of room `room`, all on `node`.
pub fn specs(node: usize, room: usize, members: std::ops::Range<usize>) -> Vec<ClientSpec> {
    members
        .map(|member| ClientSpec { node, room, member })
        .collect()
}

/// Fails the scenario if a phase lost streams: its numbers would mean nothing.
pub fn check_phase(what: &str, phase: &PhaseResult) -> anyhow::Result<()> {
    anyhow::ensure!(
        phase.sent > 0,
        "{what}: nothing was sent (is the rate too low for the phase length?)"
    );
    Ok(())
}

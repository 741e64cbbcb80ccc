//! A node that dies for good: its in-process persister's partitions must be taken over by the
//! survivors, so that the messages it acked reach PostgreSQL without it ever coming back.
//!
//! Nodes run as real processes (killed with SIGKILL: the consumer never leaves its group).
//! The bound is the one the README states: the takeover bound
//! (`KafkaSettings::takeover_bound`, 10 s with the tests' session timeout of 6 s)
//! plus [`CATCH_UP`].

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::{Instant, sleep};

use crate::nodes::ClusterEnv;
use crate::process::ServerProcess;
use crate::traffic::{Balancer, Traffic, Verdict, address, rooms_on};

/// Rooms and members of the steady traffic, and how often each member sends: enough rooms
/// that both nodes' partitions carry some.
const ROOMS: usize = 6;
const MEMBERS_PER_ROOM: usize = 2;
const SEND_EVERY: Duration = Duration::from_millis(100);

/// How long the clients get to have their last sends acked.
const DRAIN: Duration = Duration::from_secs(30);

/// Beyond the takeover bound: the watchdog's next measurement, the rejoin, and reading and
/// storing the backlog.
const CATCH_UP: Duration = Duration::from_secs(5);

/// The consumer lag `node`'s persister shows, per partition it reads.
async fn lags(node: &ServerProcess) -> BTreeMap<i32, i64> {
    let addr = node.metrics_addr.expect("started with --metrics-listen");
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .expect("metrics answer")
        .text()
        .await
        .expect("metrics body");
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("quickchat_persister_consumer_lag{partition=\"")?;
            let (partition, value) = rest.split_once("\"} ")?;
            Some((partition.parse().ok()?, value.parse().ok()?))
        })
        .collect()
}

/// Every partition's lag over `nodes` (a partition shown by none is missing).
async fn lags_over(nodes: &[ServerProcess]) -> BTreeMap<i32, i64> {
    let mut all = BTreeMap::new();
    for node in nodes {
        for (partition, lag) in lags(node).await {
            *all.entry(partition).or_default() += lag;
        }
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_killed_for_good_has_its_acked_messages_stored_by_the_survivor_within_the_bound() {
    let env = ClusterEnv::new().await;
    let partitions: Vec<i32> = (0..env.kafka.partitions).collect();
    let bound = env.kafka.takeover_bound() + CATCH_UP;
    let mut nodes: Vec<ServerProcess> = (0..2).map(|_| ServerProcess::start(&env.args())).collect();

    // Both persisters hold partitions before the traffic starts.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (a, b) = (lags(&nodes[0]).await, lags(&nodes[1]).await);
        let covered: Vec<i32> = a.keys().chain(b.keys()).copied().collect();
        if !a.is_empty() && !b.is_empty() && covered.len() == partitions.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the group split the partitions: {a:?} and {b:?}"
        );
        sleep(Duration::from_millis(250)).await;
    }
    let balancer = Balancer::over(&nodes);
    let members = rooms_on(&nodes[0], ROOMS, MEMBERS_PER_ROOM).await;
    let traffic = Traffic::start(&members, &balancer, SEND_EVERY);
    sleep(Duration::from_secs(3)).await;

    // The victim: the node whose persister has stored the most, so its partitions carry
    // traffic that keeps coming after it is gone.
    let mut stored = Vec::new();
    for node in &nodes {
        stored.push(node.metric("quickchat_persisted_messages").await);
    }
    let victim = if stored[0] >= stored[1] { 0 } else { 1 };
    assert!(stored[victim] > 0.0, "the victim's persister was busy");
    let mut victim = nodes.remove(victim);
    let orphaned = lags(&victim).await.into_keys().collect::<Vec<_>>();
    balancer.remove(&address(&victim));
    victim.kill();
    let killed_at = Instant::now();
    // Messages keep being acked, some into the dead node's partitions.
    sleep(Duration::from_secs(4)).await;
    let logs = traffic.finish(DRAIN).await;

    let verdict = Verdict::of(
        "node killed for good",
        &logs,
        env.store().await.connection(),
        killed_at,
        (killed_at + bound).saturating_duration_since(Instant::now()),
    )
    .await;
    let all_stored_after = killed_at.elapsed();
    verdict.assert_survived(Duration::from_secs(5));

    // The survivor reads every partition, the dead node's too, and has committed all.
    let survivor = &nodes[0];
    loop {
        let lags = lags_over(&nodes).await;
        if lags.keys().eq(partitions.iter()) && lags.values().all(|lag| *lag == 0) {
            break;
        }
        assert!(
            killed_at.elapsed() < bound,
            "{:?} after the kill the live persister shows the lags {lags:?}, not 0 in all of \
             partitions {partitions:?} (the dead node read {orphaned:?})",
            killed_at.elapsed()
        );
        sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        survivor
            .metric("quickchat_persister_unowned_partitions")
            .await,
        0.0
    );
    println!(
        "fault report | {:<28} | acked {:>5} | all stored {:.1} s after the kill (bound {:.0} s) | \
         dead node's partitions {orphaned:?} | watchdog rejoins {}",
        "node killed for good",
        verdict.acked,
        all_stored_after.as_secs_f64(),
        bound.as_secs_f64(),
        survivor
            .metric("quickchat_persister_takeover_rejoins")
            .await,
    );
}

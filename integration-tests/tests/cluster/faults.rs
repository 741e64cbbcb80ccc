//! The fault suite: steady traffic from several clients on several nodes, a fault, and the
//! verdict (see `traffic`): every acked message in PostgreSQL exactly once, every client
//! shown its room complete and in order or told `recovered = false`, and service back within
//! a stated time. Each test prints its line of the fault report:
//!
//! ```text
//! cargo nextest run -p quickchat-integration-tests -E 'test(/faults::/)' --no-capture 2>&1 | grep 'fault report'
//! ```
//!
//! Nodes and persisters run as real processes (killed with SIGKILL); the services a test
//! stops are its own (a private Redis, a broker or PostgreSQL behind a proxy it cuts).

use std::time::Duration;

use tokio::time::{Instant, sleep};
use tonic::transport::Channel;

use crate::nodes::ClusterEnv;
use crate::private::{PrivateBroker, PrivateRedis, free_address};
use crate::process::ServerProcess;
use crate::proxy::CuttableProxy;
use crate::traffic::{Balancer, ClientLog, Traffic, Verdict, address, channel_to, rooms_on};

/// Rooms and members of the steady traffic, and how often each member sends.
const ROOMS: usize = 2;
const MEMBERS_PER_ROOM: usize = 3;
const SEND_EVERY: Duration = Duration::from_millis(100);

/// How long the clients get to have their last sends acked, and the store to hold them.
const DRAIN: Duration = Duration::from_secs(60);

fn with(mut args: Vec<String>, extra: &[&str]) -> Vec<String> {
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_killed_under_load_loses_no_acked_message() {
    let env = ClusterEnv::new().await;
    let mut nodes: Vec<ServerProcess> = (0..3).map(|_| ServerProcess::start(&env.args())).collect();
    let balancer = Balancer::over(&nodes);
    let members = rooms_on(&nodes[1], ROOMS, MEMBERS_PER_ROOM).await;
    let traffic = Traffic::start(&members, &balancer, SEND_EVERY);
    sleep(Duration::from_secs(3)).await;

    let mut victim = nodes.remove(0);
    balancer.remove(&address(&victim));
    victim.kill();
    let killed_at = Instant::now();
    // The node stays dead: the survivors' persisters take its partitions over (see
    // `takeover.rs`), which the verdict waits for.
    sleep(Duration::from_secs(5)).await;

    let (_, verdict) = judge(
        "node SIGKILLed",
        traffic,
        env.store().await.connection(),
        killed_at,
    )
    .await;
    verdict.assert_survived(Duration::from_secs(5));
    assert!(
        verdict.resumed > 0,
        "clients of the dead node resumed elsewhere"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_persister_killed_mid_batch_and_restarted_loses_nothing() {
    let env = ClusterEnv::new().await;
    let node_args = with(env.args(), &["--persister=false"]);
    let nodes: Vec<ServerProcess> = (0..2).map(|_| ServerProcess::start(&node_args)).collect();
    let persister_args = with(env.args(), &["persister"]);
    let mut persister = ServerProcess::start(&persister_args);
    let balancer = Balancer::over(&nodes);
    let members = rooms_on(&nodes[0], ROOMS, MEMBERS_PER_ROOM).await;
    let traffic = Traffic::start(&members, &balancer, SEND_EVERY);
    sleep(Duration::from_secs(3)).await;

    assert!(
        persister.metric("quickchat_persisted_messages").await > 0.0,
        "the persister was busy when it died"
    );
    persister.kill();
    let killed_at = Instant::now();
    sleep(Duration::from_secs(2)).await;
    let _restarted = ServerProcess::start(&persister_args);
    sleep(Duration::from_secs(3)).await;

    let (_, verdict) = judge(
        "persister SIGKILLed",
        traffic,
        env.store().await.connection(),
        killed_at,
    )
    .await;
    // Sends never depended on the persister.
    verdict.assert_survived(Duration::from_secs(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_restarted_empty_is_survived_and_clients_are_told() {
    let mut redis = PrivateRedis::start().await;
    let mut env = ClusterEnv::new().await;
    env.redis_url = redis.url.clone();
    let nodes: Vec<ServerProcess> = (0..2).map(|_| ServerProcess::start(&env.args())).collect();
    let balancer = Balancer::over(&nodes);
    let members = rooms_on(&nodes[0], ROOMS, MEMBERS_PER_ROOM).await;
    let traffic = Traffic::start(&members, &balancer, SEND_EVERY);
    sleep(Duration::from_secs(3)).await;

    redis.restart_empty().await;
    let restarted_at = Instant::now();
    sleep(Duration::from_secs(6)).await;

    let (_, verdict) = judge(
        "Redis restarted empty",
        traffic,
        env.store().await.connection(),
        restarted_at,
    )
    .await;
    verdict.assert_survived(Duration::from_secs(5));
    assert!(verdict.told > 0, "clients were told their position is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kafka_stopped_for_ten_seconds_fails_sends_fast_and_loses_nothing() {
    let broker_address = free_address();
    let proxy = CuttableProxy::start(broker_address.parse().unwrap()).await;
    let _broker = PrivateBroker::start_at(broker_address, &proxy.addr.to_string()).await;
    let mut env = ClusterEnv::new().await;
    env.kafka_brokers = proxy.addr.to_string();
    env.kafka.produce_timeout_ms = 2_000;
    let nodes: Vec<ServerProcess> = (0..2).map(|_| ServerProcess::start(&env.args())).collect();
    let balancer = Balancer::over(&nodes);
    let members = rooms_on(&nodes[0], ROOMS, MEMBERS_PER_ROOM).await;
    let traffic = Traffic::start(&members, &balancer, SEND_EVERY);
    sleep(Duration::from_secs(3)).await;

    proxy.cut();
    let cut_at = Instant::now();
    sleep(Duration::from_secs(10)).await;
    proxy.restore();
    let restored_at = Instant::now();
    sleep(Duration::from_secs(5)).await;

    let (logs, verdict) = judge(
        "Kafka unreachable 10 s",
        traffic,
        env.store().await.connection(),
        restored_at,
    )
    .await;
    // Nothing is acked that Kafka did not confirm: once sends in flight at the cut have
    // had their produce timeout, no ack until the broker is back.
    let quiet_from = cut_at + Duration::from_millis(2_500);
    let acked_while_down = logs
        .iter()
        .flat_map(|l| &l.ack_times)
        .filter(|t| **t > quiet_from && **t < restored_at)
        .count();
    assert_eq!(acked_while_down, 0, "acks while Kafka was unreachable");
    let slowest = logs.iter().map(|l| l.slowest_rejection).max().unwrap();
    assert!(
        slowest < Duration::from_millis(2_700),
        "a refused send waited {slowest:?} (produce timeout 2 s)"
    );
    assert!(verdict.rejected > 0, "sends during the outage were refused");
    verdict.assert_survived(Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_unreachable_past_the_takeover_bound_delays_storage_and_loses_nothing() {
    let mut env = ClusterEnv::new().await;
    let direct = env.store().await;
    let mut url = url::Url::parse(&env.database_url).unwrap();
    let target = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(5432));
    let target = tokio::net::lookup_host(target)
        .await
        .unwrap()
        .next()
        .unwrap();
    let proxy = CuttableProxy::start(target).await;
    url.set_ip_host(proxy.addr.ip()).unwrap();
    url.set_port(Some(proxy.addr.port())).unwrap();
    env.database_url = url.to_string();
    let nodes: Vec<ServerProcess> = (0..2).map(|_| ServerProcess::start(&env.args())).collect();
    let balancer = Balancer::over(&nodes);
    let members = rooms_on(&nodes[0], ROOMS, MEMBERS_PER_ROOM).await;
    let traffic = Traffic::start(&members, &balancer, SEND_EVERY);
    sleep(Duration::from_secs(3)).await;

    proxy.cut();
    let cut_at = Instant::now();
    // Reads fail fast with UNAVAILABLE, never hang.
    let channel = channel_to(&nodes[1]).await;
    let asked = Instant::now();
    let read = tokio::time::timeout(
        Duration::from_secs(10),
        quickchat_proto::v1::chat_service_client::ChatServiceClient::new(channel).list_messages(
            crate::helpers::authed(
                quickchat_proto::v1::ListMessagesRequest {
                    group_id: members[0].group_id.clone(),
                    ..Default::default()
                },
                &members[0].token,
            ),
        ),
    )
    .await
    .expect("a read answers while the database is unreachable");
    let status = read.expect_err("history cannot be read");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "answered in {:?}",
        asked.elapsed()
    );
    sleep(Duration::from_secs(8).saturating_sub(cut_at.elapsed())).await;
    // The persisters hold their batches and retry; Kafka keeps what they cannot store.
    assert!(
        lag(&nodes).await > 0.0,
        "the consumer lag shows the unstored messages"
    );
    // Longer than the takeover bound: every persister is stalled, and none takes the
    // others' partitions (that cannot store them either).
    let outage = env.kafka.takeover_bound() + Duration::from_secs(5);
    sleep(outage.saturating_sub(cut_at.elapsed())).await;
    proxy.restore();
    let restored_at = Instant::now();
    sleep(Duration::from_secs(3)).await;
    let mut rejoins = 0.0;
    for node in &nodes {
        rejoins += node.metric("quickchat_persister_takeover_rejoins").await;
    }
    assert_eq!(
        rejoins, 0.0,
        "a database outage is not a dead persister: no partition changed hands"
    );

    let (_, verdict) = judge(
        "PostgreSQL unreachable 15 s",
        traffic,
        direct.connection(),
        restored_at,
    )
    .await;
    // Sends never waited for PostgreSQL: clients were acked throughout.
    verdict.assert_survived(Duration::from_secs(1));
    let deadline = Instant::now() + Duration::from_secs(15);
    while lag(&nodes).await > 0.0 {
        assert!(
            Instant::now() < deadline,
            "the persisters caught up: lag back to 0"
        );
        sleep(Duration::from_millis(250)).await;
    }
}

/// Ends the traffic (every client's last send acked) and judges it against `db`: see
/// [`Verdict::of`].
async fn judge(
    fault: &str,
    traffic: Traffic,
    db: &sea_orm::DatabaseConnection,
    recovered_after: Instant,
) -> (Vec<ClientLog>, Verdict) {
    let logs = traffic.finish(DRAIN).await;
    let verdict = Verdict::of(fault, &logs, db, recovered_after, DRAIN).await;
    (logs, verdict)
}

/// The persisters' consumer lag over every node (records in Kafka not yet committed as
/// stored).
async fn lag(nodes: &[ServerProcess]) -> f64 {
    let mut total = 0.0;
    for node in nodes {
        total += node.metric("quickchat_persister_consumer_lag").await;
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_half_open_client_loses_its_streams_and_presence_within_the_keepalive_bound() {
    use crate::chat_client::ChatClient;
    use quickchat_proto::v1::chat_response::Event;

    let env = ClusterEnv::new().await;
    // Pinged every second, closed after a second without an answer.
    let args = with(
        env.args(),
        &[
            "--keepalive-interval-secs",
            "1",
            "--keepalive-timeout-secs",
            "1",
        ],
    );
    let node = ServerProcess::start(&args);
    let members = rooms_on(&node, ROOMS, MEMBERS_PER_ROOM).await;
    let (ann, olga) = (&members[0], &members[1]);
    let proxy = CuttableProxy::start(node.addr.unwrap()).await;
    let through_proxy = Channel::from_shared(format!("http://{}", proxy.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut olga_stream =
        ChatClient::open_on(channel_to(&node).await, &olga.token, &olga.group_id, None)
            .await
            .unwrap();
    let _ann_stream = ChatClient::open_on(through_proxy, &ann.token, &ann.group_id, None)
        .await
        .unwrap();
    let joined = olga_stream
        .next_where(|e| match e {
            Event::MemberJoined(p) => p.member,
            _ => None,
        })
        .await;
    assert_eq!(joined.name, ann.name);

    // Ann's network goes away without a FIN or RST: the connection is half-open.
    proxy.freeze();
    let frozen_at = Instant::now();
    let left = olga_stream
        .next_where(|e| match e {
            Event::MemberLeft(p) => p.member,
            _ => None,
        })
        .await;
    let after = frozen_at.elapsed();
    assert_eq!(left.name, ann.name);
    println!(
        "fault report | {:<28} | presence gone in {:.1} s (keepalive 1 s + 1 s)",
        "half-open client",
        after.as_secs_f64()
    );
    assert!(
        after < Duration::from_millis(3_500),
        "Ann was shown online {after:?} after her connection went silent"
    );
}

/// How long the soak runs: `QUICKCHAT_SOAK_SECS` (CI: the default 20 s; the full run is an
/// hour: `QUICKCHAT_SOAK_SECS=3600`).
fn soak_length() -> Duration {
    Duration::from_secs(
        std::env::var("QUICKCHAT_SOAK_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(20),
    )
}

/// Resident memory (KiB) and open file descriptors of a process.
fn footprint(pid: u32) -> (u64, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    (rss, fds)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_soak_at_moderate_load_keeps_memory_and_descriptors_flat_and_logs_no_error() {
    let env = ClusterEnv::new().await;
    let nodes: Vec<ServerProcess> = (0..2).map(|_| ServerProcess::start(&env.args())).collect();
    let balancer = Balancer::over(&nodes);
    let members = rooms_on(&nodes[0], ROOMS, MEMBERS_PER_ROOM).await;
    let traffic = Traffic::start(&members, &balancer, SEND_EVERY);
    let length = soak_length();
    let warm_up = Duration::from_secs(5).min(length / 4);
    sleep(warm_up).await;
    let before: Vec<(u64, usize)> = nodes.iter().map(|n| footprint(n.pid())).collect();
    sleep(length - warm_up).await;
    let after: Vec<(u64, usize)> = nodes.iter().map(|n| footprint(n.pid())).collect();

    let (_, verdict) = judge(
        "soak",
        traffic,
        env.store().await.connection(),
        Instant::now() - length,
    )
    .await;
    verdict.assert_survived(length);
    for (i, ((rss_before, fds_before), (rss_after, fds_after))) in
        before.iter().zip(&after).enumerate()
    {
        println!(
            "fault report | soak node {i} over {:>4} s          | RSS {} → {} KiB | open fds {} → {}",
            length.as_secs(),
            rss_before,
            rss_after,
            fds_before,
            fds_after
        );
        assert!(
            *rss_after <= rss_before + 32 * 1024,
            "node {i} grew from {rss_before} KiB to {rss_after} KiB"
        );
        assert!(
            *fds_after <= fds_before + 16,
            "node {i} went from {fds_before} to {fds_after} open descriptors"
        );
    }
    for node in &nodes {
        let log = std::fs::read_to_string(&node.log).unwrap();
        let errors: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).collect();
        assert!(errors.is_empty(), "errors in a node's log: {errors:#?}");
    }
}

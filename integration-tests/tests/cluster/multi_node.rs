//! Three nodes behind an imaginary load balancer: members on different nodes chat, order
//! holds across nodes, a client whose node dies recovers on another, and every acked
//! message ends up in PostgreSQL exactly once.

use std::collections::HashSet;
use std::time::Duration;

use quickchat_service::store::Store;
use uuid::Uuid;

use crate::chat_client::ChatClient;
use crate::helpers::{create_group_on, join_on, register_on};
use crate::nodes::{ClusterEnv, Node};

/// Waits until the store holds `expected` messages of the group (the persister is
/// asynchronous in distributed mode), then returns them oldest first.
async fn stored_messages(
    store: &Store,
    group_id: &str,
    expected: usize,
) -> Vec<quickchat_service::room::ChatMessage> {
    let group_id: Uuid = group_id.parse().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (mut messages, _) = store
            .list_messages(group_id, None, None, 10_000)
            .await
            .unwrap();
        if messages.len() >= expected || tokio::time::Instant::now() > deadline {
            messages.reverse();
            return messages;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn members_on_different_nodes_chat_with_each_other() {
    let env = ClusterEnv::new().await;
    let nodes = env.nodes(3).await;
    let owner = register_on(&nodes[0].channel, "Olga").await;
    let group = create_group_on(&nodes[0].channel, &owner.access_token, "Across nodes").await;
    let ann = join_on(&nodes[1].channel, &group.id, "Ann")
        .await
        .member_token;
    let bob = join_on(&nodes[2].channel, &group.id, "Bob")
        .await
        .member_token;

    let mut ann = ChatClient::open_on(nodes[0].channel.clone(), &ann, &group.id, None)
        .await
        .unwrap();
    let mut bob = ChatClient::open_on(nodes[1].channel.clone(), &bob, &group.id, None)
        .await
        .unwrap();
    let mut olga = ChatClient::open_on(
        nodes[2].channel.clone(),
        &owner.access_token,
        &group.id,
        None,
    )
    .await
    .unwrap();

    let from_ann = ann.send_and_ack("a1", "hello from node 0").await;
    assert_eq!(bob.next_message().await, from_ann);
    assert_eq!(olga.next_message().await, from_ann);
    let from_bob = bob.send_and_ack("b1", "hello from node 1").await;
    assert_eq!(ann.next_message().await, from_bob);
    assert_eq!(olga.next_message().await, from_bob);
    let from_olga = olga.send_and_ack("o1", "hello from node 2").await;
    assert_eq!(ann.next_message().await, from_olga);
    assert_eq!(bob.next_message().await, from_olga);
    assert_eq!(
        (from_ann.offset, from_bob.offset, from_olga.offset),
        (1, 2, 3)
    );

    // Presence is cluster-wide: Olga, on node 2, was told about Ann and Bob.
    let online: HashSet<String> = olga.joined.online.iter().map(|m| m.name.clone()).collect();
    assert!(
        online.contains("Ann") && online.contains("Bob") && online.contains("Olga"),
        "{online:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_senders_on_every_node_share_one_order_and_each_acked_message_is_stored_once() {
    let env = ClusterEnv::new().await;
    let nodes = env.nodes(3).await;
    let owner = register_on(&nodes[0].channel, "Olga").await;
    let group = create_group_on(&nodes[0].channel, &owner.access_token, "Busy cluster").await;

    let mut watchers = Vec::new();
    for node in &nodes {
        watchers.push(
            ChatClient::open_on(node.channel.clone(), &owner.access_token, &group.id, None)
                .await
                .unwrap(),
        );
    }
    let mut senders = Vec::new();
    for i in 0..6 {
        let node = &nodes[i % 3];
        let token = join_on(&node.channel, &group.id, &format!("Sender {i}"))
            .await
            .member_token;
        senders.push(
            ChatClient::open_on(node.channel.clone(), &token, &group.id, None)
                .await
                .unwrap(),
        );
    }
    let tasks: Vec<_> = senders
        .into_iter()
        .enumerate()
        .map(|(i, mut client)| {
            tokio::spawn(async move {
                for n in 0..10 {
                    client.send(&format!("{i}-{n}"), &format!("{i}:{n}")).await;
                }
                let mut acked = Vec::new();
                while acked.len() < 10 {
                    acked.push(
                        client
                            .next_answer()
                            .await
                            .expect("accepted")
                            .message
                            .unwrap()
                            .id,
                    );
                }
                acked
            })
        })
        .collect();
    let mut acked = HashSet::new();
    for task in tasks {
        acked.extend(task.await.unwrap());
    }
    assert_eq!(acked.len(), 60);

    let mut sequences = Vec::new();
    for watcher in &mut watchers {
        let mut ids = Vec::new();
        for offset in 1..=60u64 {
            let m = watcher.next_message().await;
            assert_eq!(
                m.offset, offset,
                "every node delivers offsets in order, without gaps"
            );
            ids.push(m.id);
        }
        sequences.push(ids);
    }
    assert!(
        sequences.windows(2).all(|w| w[0] == w[1]),
        "all nodes deliver the same sequence"
    );

    let stored = stored_messages(&env.store().await, &group.id, 60).await;
    let stored_ids: Vec<String> = stored.iter().map(|m| m.id.to_string()).collect();
    assert_eq!(
        stored_ids.len(),
        60,
        "exactly the acked messages are stored"
    );
    assert_eq!(
        stored_ids.iter().cloned().collect::<HashSet<_>>(),
        acked,
        "each acked message stored once"
    );
    assert_eq!(
        stored.iter().map(|m| m.offset).collect::<Vec<_>>(),
        (1..=60).collect::<Vec<u64>>()
    );
}

#[tokio::test]
async fn a_client_whose_node_dies_recovers_on_another_node_without_gap_or_duplicate() {
    let env = ClusterEnv::new().await;
    let mut nodes = env.nodes(3).await;
    let owner = register_on(&nodes[1].channel, "Olga").await;
    let group = create_group_on(&nodes[1].channel, &owner.access_token, "Failover").await;
    let ann_token = join_on(&nodes[1].channel, &group.id, "Ann")
        .await
        .member_token;
    let bob_token = join_on(&nodes[1].channel, &group.id, "Bob")
        .await
        .member_token;

    let mut ann = ChatClient::open_on(nodes[0].channel.clone(), &ann_token, &group.id, None)
        .await
        .unwrap();
    let mut bob = ChatClient::open_on(nodes[1].channel.clone(), &bob_token, &group.id, None)
        .await
        .unwrap();
    let mut seen = Vec::new();
    for i in 0..2 {
        let m = bob
            .send_and_ack(&format!("before-{i}"), "before the crash")
            .await;
        assert_eq!(ann.next_message().await, m);
        seen.push(m.offset);
    }
    let position = ann.position(*seen.last().unwrap());

    // Node 0 dies with Ann's stream on it.
    let dead = nodes.remove(0);
    dead.kill();
    let status = ann.end_status().await;
    assert_ne!(
        status.code(),
        tonic::Code::Ok,
        "the stream broke: {status:?}"
    );

    let mut missed = Vec::new();
    for i in 0..3 {
        missed.push(
            bob.send_and_ack(&format!("during-{i}"), "while Ann reconnects")
                .await,
        );
    }
    // Ann's client reconnects through the load balancer and lands on another node.
    let mut ann = ChatClient::open_on(
        nodes[1].channel.clone(),
        &ann_token,
        &group.id,
        Some(position),
    )
    .await
    .unwrap();
    assert!(ann.joined.recovered, "another node can resume the stream");
    for expected in &missed {
        assert_eq!(&ann.next_message().await, expected);
    }
    let live = bob.send_and_ack("after", "live again").await;
    assert_eq!(ann.next_message().await, live, "no duplicate, no gap");
}

#[tokio::test]
async fn a_node_shutting_down_sends_its_clients_to_another_node_to_resume() {
    let env = ClusterEnv::new().await;
    let mut nodes = env.nodes(2).await;
    let owner = register_on(&nodes[1].channel, "Olga").await;
    let group = create_group_on(&nodes[1].channel, &owner.access_token, "Rolling restart").await;
    let ann_token = join_on(&nodes[1].channel, &group.id, "Ann")
        .await
        .member_token;
    let mut ann = ChatClient::open_on(nodes[0].channel.clone(), &ann_token, &group.id, None)
        .await
        .unwrap();
    let mut olga = ChatClient::open_on(
        nodes[1].channel.clone(),
        &owner.access_token,
        &group.id,
        None,
    )
    .await
    .unwrap();
    let first = olga.send_and_ack("o1", "before the restart").await;
    assert_eq!(ann.next_message().await, first);

    let stopping = tokio::spawn(nodes.remove(0).stop());
    let status = ann.end_status().await;
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    stopping.await.unwrap();

    let missed = olga.send_and_ack("o2", "during the restart").await;
    let mut ann = ChatClient::open_on(
        nodes[0].channel.clone(),
        &ann_token,
        &group.id,
        Some(ann.position(first.offset)),
    )
    .await
    .unwrap();
    assert!(ann.joined.recovered);
    assert_eq!(ann.next_message().await, missed);
}

#[tokio::test]
async fn the_persister_can_run_alone_as_its_own_process() {
    let env = ClusterEnv::new().await;
    let node = Node::start(quickchat_service::Settings {
        persister_enabled: false,
        ..env.settings()
    })
    .await;
    let owner = register_on(&node.channel, "Olga").await;
    let group = create_group_on(&node.channel, &owner.access_token, "Separate persister").await;
    let mut olga = ChatClient::open_on(node.channel.clone(), &owner.access_token, &group.id, None)
        .await
        .unwrap();
    for i in 0..5 {
        olga.send_and_ack(&format!("m{i}"), &format!("message {i}"))
            .await;
    }

    // `quickchat-server persister`, with the same flags as the nodes.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let persister = tokio::spawn(quickchat_service::startup::run_persister(
        env.settings(),
        async {
            let _ = stopped.await;
        },
    ));
    let stored = stored_messages(&env.store().await, &group.id, 5).await;
    assert_eq!(
        stored.iter().map(|m| m.body.as_str()).collect::<Vec<_>>()[..],
        [
            "message 0",
            "message 1",
            "message 2",
            "message 3",
            "message 4"
        ]
    );
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(30), persister)
        .await
        .expect("the persister stops on its shutdown signal")
        .unwrap()
        .expect("clean exit");
}

/// Deletes every Redis key of this cluster, as a Redis restart without persistence does.
fn wipe_redis(env: &ClusterEnv) {
    let pattern = format!("{}:*", env.redis.key_prefix);
    let keys = std::process::Command::new("redis-cli")
        .args(["-u", &env.redis_url, "--scan", "--pattern", &pattern])
        .output()
        .expect("redis-cli runs");
    let keys = String::from_utf8(keys.stdout).unwrap();
    let keys: Vec<&str> = keys.lines().filter(|k| !k.is_empty()).collect();
    assert!(!keys.is_empty(), "the cluster has state in Redis");
    let status = std::process::Command::new("redis-cli")
        .args(["-u", &env.redis_url, "DEL"])
        .args(&keys)
        .output()
        .expect("redis-cli runs");
    assert!(status.status.success());
}

#[tokio::test]
async fn when_redis_loses_its_state_streams_end_and_clients_learn_recovery_is_impossible() {
    let env = ClusterEnv::new().await;
    let nodes = env.nodes(2).await;
    let owner = register_on(&nodes[0].channel, "Olga").await;
    let group = create_group_on(&nodes[0].channel, &owner.access_token, "Amnesia").await;
    let ann_token = join_on(&nodes[0].channel, &group.id, "Ann")
        .await
        .member_token;
    let mut ann = ChatClient::open_on(nodes[1].channel.clone(), &ann_token, &group.id, None)
        .await
        .unwrap();
    let mut olga = ChatClient::open_on(
        nodes[0].channel.clone(),
        &owner.access_token,
        &group.id,
        None,
    )
    .await
    .unwrap();
    for i in 0..3 {
        let m = olga.send_and_ack(&format!("o{i}"), "before").await;
        assert_eq!(ann.next_message().await, m);
    }
    let old_position = ann.position(3);
    // Everything acked is persisted before Redis forgets.
    stored_messages(&env.store().await, &group.id, 3).await;

    wipe_redis(&env);
    // Live streams are told (never a silent gap) ...
    let status = ann.end_status().await;
    assert_eq!(status.code(), tonic::Code::Aborted, "{status:?}");
    // ... the room carries on from the stored offsets under a new epoch ...
    let mut olga = ChatClient::open_on(
        nodes[0].channel.clone(),
        &owner.access_token,
        &group.id,
        None,
    )
    .await
    .unwrap();
    assert_ne!(olga.joined.epoch, old_position.epoch);
    let after = olga.send_and_ack("o3", "after").await;
    // Clear of anything the old epoch handed out (see the Redis relay's EPOCH_GAP).
    let seed = 3 + quickchat_service::relay::redis::EPOCH_GAP;
    assert_eq!(after.offset, seed + 1);
    // ... and a client resuming with the old epoch hears that it must reload history.
    let ann = ChatClient::open_on(
        nodes[1].channel.clone(),
        &ann_token,
        &group.id,
        Some(old_position),
    )
    .await
    .unwrap();
    assert!(!ann.joined.recovered);
    assert_eq!(ann.joined.offset, seed + 1);
}

#[tokio::test]
async fn while_kafka_is_unreachable_sends_fail_with_unavailable_and_a_retry_later_lands_once() {
    let broker = crate::private::PrivateBroker::start().await;
    let mut env = ClusterEnv::new().await;
    env.kafka_brokers = broker.address.clone();
    env.kafka.produce_timeout_ms = 1_000;
    let node = Node::start(env.settings()).await;
    let owner = register_on(&node.channel, "Olga").await;
    let group = create_group_on(&node.channel, &owner.access_token, "Outage").await;
    let ann_token = join_on(&node.channel, &group.id, "Ann").await.member_token;
    let mut ann = ChatClient::open_on(node.channel.clone(), &ann_token, &group.id, None)
        .await
        .unwrap();
    let mut olga = ChatClient::open_on(node.channel.clone(), &owner.access_token, &group.id, None)
        .await
        .unwrap();
    let first = olga.send_and_ack("m1", "before the outage").await;
    assert_eq!(ann.next_message().await, first);

    broker.freeze().await;
    let sent_at = tokio::time::Instant::now();
    olga.send("m2", "during the outage").await;
    let rejected = olga
        .next_answer()
        .await
        .expect_err("not acked: Kafka never confirmed it");
    // Within the produce timeout (1 s), give or take librdkafka's 100 ms timer and
    // scheduling: not a multiple of it.
    let waited = sent_at.elapsed();
    assert!(
        waited < Duration::from_millis(1_700),
        "the sender waited {waited:?} for a 1 s produce timeout"
    );
    assert_eq!(
        rejected.code,
        tonic::Code::Unavailable as i32,
        "{rejected:?}"
    );
    // The relay had already delivered it live (see the README's guarantees): subscribers
    // saw the message, the sender knows it is not durable yet.
    let seen = ann.next_message().await;
    assert_eq!((seen.offset, seen.body.as_str()), (2, "during the outage"));

    broker.thaw().await;
    // The client retries with the same id: the same message, now durable.
    let mut retried = None;
    for _ in 0..20 {
        olga.send("m2", "during the outage").await;
        match olga.next_answer().await {
            Ok(ack) => {
                retried = ack.message;
                break;
            }
            Err(r) => {
                assert_eq!(r.code, tonic::Code::Unavailable as i32, "{r:?}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    let retried = retried.expect("acked once Kafka is back");
    assert_eq!(
        retried, seen,
        "the retry is the message subscribers already saw"
    );

    let stored = stored_messages(&env.store().await, &group.id, 2).await;
    assert_eq!(
        stored.iter().map(|m| m.offset).collect::<Vec<_>>(),
        [1, 2],
        "stored once each"
    );
}

#[tokio::test]
async fn spreading_wrong_passcodes_over_nodes_gains_nothing() {
    use quickchat_proto::v1::{self, group_service_client::GroupServiceClient};
    let env = ClusterEnv::new().await;
    let nodes = env.nodes(2).await;
    let owner = register_on(&nodes[0].channel, "Olga").await;
    let group = create_group_on(&nodes[0].channel, &owner.access_token, "Guarded").await;
    let join = |node: &Node, passcode: &str| {
        let mut client = GroupServiceClient::new(node.channel.clone());
        let request = v1::JoinGroupRequest {
            group_id: group.id.clone(),
            name: "Mallory".into(),
            passcode: passcode.into(),
        };
        async move { client.join_group(request).await }
    };
    for i in 0..5 {
        let status = join(&nodes[i % 2], "0000")
            .await
            .expect_err("wrong passcode");
        assert_eq!(status.code(), tonic::Code::PermissionDenied);
    }
    // Five failures across the cluster lock the group for this client on every node.
    for node in &nodes {
        let status = join(node, "1234").await.expect_err("locked out");
        assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    }
}

/// Takes offset `N+1` of a room away behind the relays' backs, as an entry lost between
/// the counter and the stream would: the next message gets `N+2`.
fn lose_next_offset(env: &ClusterEnv, group_id: &str) {
    let meta = format!("{}:room:{group_id}:meta", env.redis.key_prefix);
    let status = std::process::Command::new("redis-cli")
        .args(["-u", &env.redis_url, "HINCRBY", &meta, "offset", "1"])
        .output()
        .expect("redis-cli runs");
    assert!(status.status.success());
}

/// A live stream that sees an offset jump fills the gap — from the relay's window, or for
/// what that no longer holds, from the store — and delivers in order; when the gap cannot
/// be filled it ends with `ABORTED`, never a silent gap.
#[tokio::test]
async fn a_gap_in_a_live_stream_is_filled_from_the_store_or_the_stream_is_aborted() {
    use quickchat_proto::v1::{self, chat_service_client::ChatServiceClient};
    let env = ClusterEnv::new().await;
    // A window of one message: a gap's filling has to come from the store.
    let node = Node::start(quickchat_service::Settings {
        relay_window: 1,
        ..env.settings()
    })
    .await;
    let owner = register_on(&node.channel, "Olga").await;
    let group = create_group_on(&node.channel, &owner.access_token, "Gaps").await;
    let ann_token = join_on(&node.channel, &group.id, "Ann").await.member_token;
    let mut ann = ChatClient::open_on(node.channel.clone(), &ann_token, &group.id, None)
        .await
        .unwrap();
    let send = |body: &'static str| {
        let mut chat = ChatServiceClient::new(node.channel.clone());
        let request = crate::helpers::authed(
            v1::SendMessageRequest {
                group_id: group.id.clone(),
                body: body.into(),
                client_message_id: String::new(),
            },
            &owner.access_token,
        );
        async move { chat.send_message(request).await.unwrap().into_inner() }
    };
    let one = send("one").await.message.unwrap();
    assert_eq!(ann.next_message().await, one);

    // Offset 2 is lost to the relay but the store has it: filled from there.
    lose_next_offset(&env, &group.id);
    let group_id: Uuid = group.id.parse().unwrap();
    let stored = quickchat_service::room::MessageDraft {
        id: Uuid::now_v7(),
        group_id,
        sender_id: Uuid::new_v4(),
        sender_name: "Archive".into(),
        body: "only in the store".into(),
        client_message_id: String::new(),
        created_at: quickchat_service::store::now(),
    }
    .place(2);
    env.store()
        .await
        .insert_messages(&[std::sync::Arc::new(stored)])
        .await
        .unwrap();
    let three = send("three").await.message.unwrap();
    assert_eq!(three.offset, 3);
    let filled = ann.next_message().await;
    assert_eq!(
        (filled.offset, filled.body.as_str()),
        (2, "only in the store")
    );
    assert_eq!(ann.next_message().await, three);

    // Offset 4 is lost everywhere: the stream says so and ends.
    lose_next_offset(&env, &group.id);
    send("five").await;
    let status = ann.end_status().await;
    assert_eq!(status.code(), tonic::Code::Aborted, "{status:?}");
    assert!(status.message().contains("missed"), "{status:?}");
}

/// Nodes started at the same moment on an empty database all come up: migrations take
/// turns under a PostgreSQL advisory lock. (Before, one of three died with a duplicate key
/// in `pg_type` on the first `docker compose up`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_started_at_once_on_an_empty_database_all_come_up() {
    for _ in 0..3 {
        let env = ClusterEnv::new().await;
        let builds = (0..4).map(|_| {
            let settings = env.settings();
            tokio::spawn(async move {
                quickchat_service::Application::build(settings)
                    .await
                    .map(|_| ())
                    .map_err(|e| format!("{e:#}"))
            })
        });
        for built in futures::future::join_all(builds).await {
            built.unwrap().expect("every node builds");
        }
    }
}

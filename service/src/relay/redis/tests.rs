use std::collections::HashSet;

use fred::prelude::KeysInterface;

use super::*;
use crate::relay::conformance::draft;

const WAIT: Duration = Duration::from_secs(20);

/// Short enough that expiry tests finish quickly.
const FAST: PresenceTiming = PresenceTiming {
    refresh: Duration::from_millis(200),
    ttl: Duration::from_millis(1_000),
};

fn redis_url() -> String {
    std::env::var("QUICKCHAT_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

fn random_prefix() -> String {
    format!("quickchat-test:{}", Uuid::new_v4().simple())
}

async fn store() -> Store {
    Store::connect("sqlite::memory:")
        .await
        .expect("in-memory store")
}

async fn node(prefix: &str, window: usize, store: Store) -> RedisRelay {
    RedisRelay::connect(&redis_url(), prefix, window, 1024, store, FAST)
        .await
        .expect("redis at QUICKCHAT_TEST_REDIS_URL")
}

async fn relay(window: usize) -> RedisRelay {
    node(&random_prefix(), window, store().await).await
}

crate::relay_conformance_suite!(relay);

/// A node's presence, with the node kept running (dropping the relay stops its heartbeat
/// and connections).
struct NodePresence {
    presence: RedisPresence,
    _node: RedisRelay,
}

#[async_trait]
impl Presence for NodePresence {
    async fn join(&self, group_id: Uuid, who: &Participant) -> Result<bool, RelayError> {
        self.presence.join(group_id, who).await
    }
    async fn leave(&self, group_id: Uuid, who: &Participant) -> Result<bool, RelayError> {
        self.presence.leave(group_id, who).await
    }
    async fn online(&self, group_id: Uuid) -> Result<Vec<Participant>, RelayError> {
        self.presence.online(group_id).await
    }
    async fn forget_room(&self, group_id: Uuid) -> Result<(), RelayError> {
        self.presence.forget_room(group_id).await
    }
}

async fn presence() -> NodePresence {
    let node = relay(100).await;
    NodePresence {
        presence: node.presence(),
        _node: node,
    }
}

crate::presence_conformance_suite!(presence);

/// A plain client for what the tests do behind the relays' backs.
async fn raw_client() -> Client {
    let client = Builder::from_config(Config::from_url(&redis_url()).unwrap())
        .build()
        .unwrap();
    client.init().await.unwrap();
    client
}

async fn next_event(sub: &mut Subscription) -> Option<RoomEvent> {
    tokio::time::timeout(WAIT, sub.events.next())
        .await
        .expect("an event within the timeout")
        .map(|event| event.expect("not lagged"))
}

async fn next_message(sub: &mut Subscription) -> Arc<ChatMessage> {
    loop {
        match next_event(sub).await.expect("feed open") {
            RoomEvent::Message(m) => return m,
            _ => continue,
        }
    }
}

fn ann() -> Participant {
    Participant {
        id: Uuid::new_v4(),
        name: "Ann".into(),
    }
}

fn bob() -> Participant {
    Participant {
        id: Uuid::new_v4(),
        name: "Bob".into(),
    }
}

#[tokio::test]
async fn a_message_published_on_one_node_reaches_subscribers_on_another() {
    let prefix = random_prefix();
    let store = store().await;
    let a = node(&prefix, 100, store.clone()).await;
    let b = node(&prefix, 100, store).await;
    let group = Uuid::new_v4();
    let mut on_b = b.subscribe(group).await.unwrap();
    assert_eq!(on_b.head, 0);

    let sent = a
        .publish(draft(group, Uuid::new_v4(), "k1", "hello from A"))
        .await
        .unwrap();
    let received = next_message(&mut on_b).await;
    assert_eq!(
        &received,
        sent.message(),
        "B receives the message unchanged"
    );

    // A retry through the other node is recognised as the same message.
    let retry = b
        .publish(draft(group, sent.message().sender_id, "k1", "hello again"))
        .await
        .unwrap();
    assert_eq!(retry, Published::Duplicate(sent.message().clone()));

    // Both nodes share the epoch and the replay window.
    let on_a = a.subscribe(group).await.unwrap();
    assert_eq!((on_a.epoch.as_str(), on_a.head), (on_b.epoch.as_str(), 1));
    assert_eq!(
        b.replay(group, &on_a.epoch, 0, 1).await.unwrap(),
        Replay::Complete(vec![sent.message().clone()])
    );
}

/// A message published on this node reaches the local feed straight from the publish reply
/// (`offer`), and again from the room's channel or a catch-up of its stream (`read`);
/// whatever the interleaving, the feed carries each offset once, in order, and a message
/// that overtook an earlier offset waits for it.
#[test]
fn a_room_feed_carries_each_offset_once_in_order_whichever_path_brings_it() {
    let group = Uuid::new_v4();
    use futures::FutureExt as _;
    let feed = crate::relay::room_feed::RoomFeed::new(64);
    let mut receiver = feed.subscribe();
    let mut room = LocalRoom::new("e".into(), 0, feed, "k".into());
    let message = |offset| Arc::new(draft(group, Uuid::new_v4(), "", "hi").place(offset));
    room.offer(message(3));
    room.offer(message(2));
    assert!(
        receiver.recv().now_or_never().is_none(),
        "2 and 3 wait for 1"
    );
    room.read(1, Some(message(1)));
    room.read(2, Some(message(2)));
    room.read(3, Some(message(3)));
    room.offer(message(4));
    room.offer(message(6));
    room.read(5, Some(message(5)));
    room.read(6, Some(message(6)));
    room.offer(message(1));
    // 7 and 8 were trimmed before a catch-up got to them: the hub fills that gap.
    room.offer(message(9));
    room.read(10, None);
    room.offer(message(11));
    let mut seen = Vec::new();
    while let Some(Some(Ok(RoomEvent::Message(m)))) = receiver.recv().now_or_never() {
        seen.push(m.offset);
    }
    assert_eq!(seen, [1, 2, 3, 4, 5, 6, 9, 11]);
    assert_eq!(room.cursor, 11);
    assert!(room.early.is_empty());
}

#[tokio::test]
async fn concurrent_publishers_on_two_nodes_get_gapless_offsets_seen_in_order_everywhere() {
    let prefix = random_prefix();
    let store = store().await;
    let a = Arc::new(node(&prefix, 1000, store.clone()).await);
    let b = Arc::new(node(&prefix, 1000, store).await);
    let group = Uuid::new_v4();
    let mut on_a = a.subscribe(group).await.unwrap();
    let mut on_b = b.subscribe(group).await.unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let relay = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move {
                let sender = Uuid::new_v4();
                let mut offsets = Vec::new();
                for n in 0..25 {
                    let p = relay
                        .publish(draft(group, sender, &format!("m{n}"), "hi"))
                        .await
                        .unwrap();
                    offsets.push(p.message().offset);
                }
                offsets
            })
        })
        .collect();
    let mut all = HashSet::new();
    for task in tasks {
        for offset in task.await.unwrap() {
            assert!(all.insert(offset), "offset {offset} assigned twice");
        }
    }
    assert_eq!(all, (1..=200).collect::<HashSet<u64>>());
    for expected in 1..=200 {
        assert_eq!(next_message(&mut on_a).await.offset, expected);
        assert_eq!(next_message(&mut on_b).await.offset, expected);
    }
}

#[tokio::test]
async fn presence_is_cluster_wide() {
    let prefix = random_prefix();
    let store = store().await;
    let a = node(&prefix, 100, store.clone()).await;
    let b = node(&prefix, 100, store).await;
    let group = Uuid::new_v4();
    let (ann, bob) = (ann(), bob());

    assert!(
        a.presence().join(group, &ann).await.unwrap(),
        "first stream anywhere"
    );
    assert!(
        !b.presence().join(group, &ann).await.unwrap(),
        "already online through node A"
    );
    assert!(b.presence().join(group, &bob).await.unwrap());
    let both = vec![ann.clone(), bob.clone()];
    assert_eq!(a.presence().online(group).await.unwrap(), both);
    assert_eq!(b.presence().online(group).await.unwrap(), both);

    assert!(
        !a.presence().leave(group, &ann).await.unwrap(),
        "still online through node B"
    );
    assert_eq!(a.presence().online(group).await.unwrap(), both);
    assert!(
        b.presence().leave(group, &ann).await.unwrap(),
        "last stream anywhere"
    );
    assert_eq!(a.presence().online(group).await.unwrap(), [bob]);
}

#[tokio::test]
async fn participants_of_a_node_that_stops_heartbeating_go_offline_after_the_ttl() {
    let prefix = random_prefix();
    let store = store().await;
    let a = node(&prefix, 100, store.clone()).await;
    let b = node(&prefix, 100, store).await;
    let group = Uuid::new_v4();
    let (ann, bob) = (ann(), bob());
    assert!(a.presence().join(group, &ann).await.unwrap());
    assert!(b.presence().join(group, &bob).await.unwrap());
    assert_eq!(
        b.presence().online(group).await.unwrap(),
        [ann.clone(), bob.clone()]
    );

    // Node A dies without its streams leaving. Its entries were last refreshed at most
    // one heartbeat ago; they lapse within the ttl of the moment it died, as the README
    // promises (a little tolerance for scheduling, not a multiple of it).
    a.close().await;
    let died = tokio::time::Instant::now();
    drop(a);
    let deadline = died + FAST.ttl + Duration::from_millis(300);
    while b.presence().online(group).await.unwrap() != [bob.clone()] {
        assert!(
            tokio::time::Instant::now() < deadline,
            "Ann still online {:?} after node A stopped (ttl {:?})",
            died.elapsed(),
            FAST.ttl
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Node B keeps heartbeating: Bob outlives several ttls.
    tokio::time::sleep(FAST.ttl * 3).await;
    assert_eq!(
        b.presence().online(group).await.unwrap(),
        std::slice::from_ref(&bob)
    );
    // Ann coming back on node B is news again.
    assert!(b.presence().join(group, &ann).await.unwrap());
}

/// A heartbeat refreshing presence while a participant leaves must not put them back
/// online: with a heartbeat every millisecond, the race shows within a few rounds
/// unless presence writes are serialised.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_heartbeat_never_brings_back_someone_who_left() {
    let relay = RedisRelay::connect(
        &redis_url(),
        &random_prefix(),
        100,
        1024,
        store().await,
        PresenceTiming {
            refresh: Duration::from_millis(1),
            ttl: Duration::from_secs(5),
        },
    )
    .await
    .unwrap();
    let group = Uuid::new_v4();
    let ann = ann();
    for round in 0..200 {
        assert!(relay.presence().join(group, &ann).await.unwrap());
        assert!(relay.presence().leave(group, &ann).await.unwrap());
        tokio::time::sleep(Duration::from_millis(2)).await;
        assert!(
            relay.presence().online(group).await.unwrap().is_empty(),
            "round {round}: Ann is online again after leaving"
        );
    }
}

async fn group_with_messages(store: &Store, count: u64) -> Uuid {
    let group = crate::store::test_group(store).await;
    let stored: Vec<_> = (1..=count)
        .map(|offset| Arc::new(draft(group, Uuid::new_v4(), "", "stored").place(offset)))
        .collect();
    store.insert_messages(&stored).await.unwrap();
    group
}

async fn delete_prefix(prefix: &str) {
    let raw = raw_client().await;
    let keys: Vec<String> = raw
        .custom(
            fred::types::CustomCommand::new("KEYS", fred::types::ClusterHash::Random, false),
            vec![format!("{prefix}:*")],
        )
        .await
        .unwrap();
    if !keys.is_empty() {
        raw.del::<(), _>(keys).await.unwrap();
    }
    let _ = raw.quit().await;
}

#[tokio::test]
async fn losing_redis_state_reseeds_from_the_store_with_a_new_epoch() {
    let prefix = random_prefix();
    let store = store().await;
    let group = group_with_messages(&store, 3).await;
    let a = node(&prefix, 100, store.clone()).await;
    let b = node(&prefix, 100, store).await;
    // A room with messages but no Redis state starts clear of the newest stored one.
    let seed = 3 + EPOCH_GAP;

    let first = a
        .publish(draft(group, Uuid::new_v4(), "", "after the stored ones"))
        .await
        .unwrap();
    assert_eq!(
        first.message().offset,
        seed + 1,
        "the counter starts past the store"
    );
    let mut old = b.subscribe(group).await.unwrap();
    assert_eq!(old.head, seed + 1);

    // Redis loses everything (the new message never reached the store or a log).
    delete_prefix(&prefix).await;

    let again = a
        .publish(draft(group, Uuid::new_v4(), "", "after the loss"))
        .await
        .unwrap();
    assert_eq!(again.message().offset, seed + 1, "re-seeded from the store");
    let new = a.subscribe(group).await.unwrap();
    assert_ne!(new.epoch, old.epoch, "a new epoch");
    assert_eq!(new.head, seed + 1);
    assert_eq!(
        a.replay(group, &old.epoch, seed, seed + 1).await.unwrap(),
        Replay::EpochChanged
    );
    assert_eq!(
        b.replay(group, &new.epoch, seed, seed + 1).await.unwrap(),
        Replay::Complete(vec![again.message().clone()])
    );
    // The subscriber holding the old epoch is not fed the new epoch's offsets: it is told
    // the room was reset and its feed ends, so its client rejoins and reloads history.
    loop {
        match next_event(&mut old).await {
            Some(RoomEvent::Reset) => break,
            Some(RoomEvent::Message(m)) => panic!("old-epoch feed delivered {m:?}"),
            Some(_) => {}
            None => panic!("the old feed ended without a reset"),
        }
    }
    assert_eq!(next_event(&mut old).await, None);
}

/// Kills every connection of `relay` (as a network blip would); returns how many.
async fn kill_connections(relay: &RedisRelay) -> usize {
    kill(&[
        &relay.inner.client,
        &relay.inner.pubsub,
        &relay.inner.messages,
    ])
    .await
}

/// Kills the connections of `clients`; returns how many.
async fn kill(clients: &[&Client]) -> usize {
    let names: HashSet<String> = clients.iter().map(|c| c.id().to_owned()).collect();
    let raw = raw_client().await;
    let list: String = raw
        .custom(
            fred::types::CustomCommand::new("CLIENT", fred::types::ClusterHash::Random, false),
            vec!["LIST"],
        )
        .await
        .unwrap();
    let mut killed = 0;
    for line in list.lines() {
        let field = |name: &str| {
            line.split(' ')
                .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
        };
        if let (Some(id), Some(name)) = (field("id"), field("name"))
            && names.contains(name)
        {
            let n: i64 = raw
                .custom(
                    fred::types::CustomCommand::new(
                        "CLIENT",
                        fred::types::ClusterHash::Random,
                        false,
                    ),
                    vec!["KILL", "ID", id],
                )
                .await
                .unwrap();
            killed += n as usize;
        }
    }
    let _ = raw.quit().await;
    killed
}

#[tokio::test]
async fn subscribers_keep_receiving_after_a_connection_blip() {
    let prefix = random_prefix();
    let store = store().await;
    let a = node(&prefix, 100, store.clone()).await;
    let b = node(&prefix, 100, store).await;
    let group = Uuid::new_v4();
    let mut on_a = a.subscribe(group).await.unwrap();
    b.publish(draft(group, Uuid::new_v4(), "", "before"))
        .await
        .unwrap();
    assert_eq!(next_message(&mut on_a).await.offset, 1);

    assert!(
        kill_connections(&a).await >= 3,
        "every connection of node A killed"
    );

    // Messages published elsewhere after the blip still arrive.
    b.publish(draft(group, Uuid::new_v4(), "", "after"))
        .await
        .unwrap();
    let after = next_message(&mut on_a).await;
    assert_eq!((after.offset, after.body.as_str()), (2, "after"));

    // Node A itself publishes again once reconnected (a client would retry).
    let deadline = tokio::time::Instant::now() + WAIT;
    let own = loop {
        match a.publish(draft(group, Uuid::new_v4(), "", "mine")).await {
            Ok(p) => break p,
            Err(RelayError::Unavailable(_)) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(err) => panic!("node A cannot publish after the blip: {err}"),
        }
    };
    assert_eq!(next_message(&mut on_a).await, *own.message());

    // Ephemeral events flow again too (typing is repeated, as clients do).
    let ann = ann();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        b.broadcast(group, RoomEvent::Typing(ann.clone()))
            .await
            .unwrap();
        match tokio::time::timeout(Duration::from_millis(250), on_a.events.next()).await {
            Ok(Some(Ok(RoomEvent::Typing(who)))) if who == ann => break,
            Ok(Some(Ok(_))) | Err(_) => {}
            Ok(other) => panic!("feed broke: {other:?}"),
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "typing never arrived after the blip"
        );
    }
}

#[tokio::test]
async fn the_last_subscriber_leaving_stops_the_reading() {
    let relay = relay(100).await;
    let group = Uuid::new_v4();
    let sub = relay.subscribe(group).await.unwrap();
    let second = relay.subscribe(group).await.unwrap();
    let reads = |relay: &RedisRelay| relay.inner.rooms.lock().unwrap().contains_key(&group);
    drop(sub);
    relay.inner.verify_epochs().await;
    assert!(reads(&relay), "one subscriber left");
    drop(second);
    relay.inner.verify_epochs().await;
    assert!(!reads(&relay), "nobody reads the room here any more");
}

/// A node whose heartbeat (and so its check of each room's counter) does not come round
/// during a test.
async fn node_without_heartbeat(prefix: &str, store: Store) -> RedisRelay {
    let slow = PresenceTiming {
        refresh: Duration::from_secs(3600),
        ttl: Duration::from_secs(7200),
    };
    RedisRelay::connect(&redis_url(), prefix, 100, 1024, store, slow)
        .await
        .expect("redis at QUICKCHAT_TEST_REDIS_URL")
}

/// Waits until the catch-up of a room that was just opened has read its stream, so that
/// what is published next is not caught up by it.
async fn opened(relay: &RedisRelay, group: Uuid) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while relay.inner.rooms.lock().unwrap()[&group].catching_up {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the catch-up never ended"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Publishes a message as the publish script does, but on a channel nobody hears: a
/// message the listener missed (its connection dropped, or it fell behind). Returns its
/// offset.
async fn publish_unheard(relay: &RedisRelay, group: Uuid, body: &str) -> u64 {
    let inner = &relay.inner;
    let mut message = draft(group, Uuid::new_v4(), "", body);
    message.created_at = message.created_at.trunc_subsecs(6);
    let mut args = vec![inner.window.to_string(), String::new()];
    args.extend(encode_message(&message));
    let keys = vec![
        inner.keys.meta(group),
        inner.keys.stream(group),
        inner.keys.dedupe(group),
        format!("{}:nobody-listens", inner.keys.prefix),
    ];
    let reply = inner
        .eval(&inner.scripts.publish, keys, args)
        .await
        .unwrap();
    let [outcome, _, offset] = array::<3>(reply).expect("{'new', epoch, offset}");
    assert_eq!(outcome.as_string().as_deref(), Some("new"));
    offset.as_u64().unwrap()
}

/// Two nodes of one cluster without heartbeats ([`node_without_heartbeat`]), and a room
/// subscribed on the first.
async fn two_nodes_without_heartbeat() -> (RedisRelay, RedisRelay, Uuid, Subscription) {
    let prefix = random_prefix();
    let store = store().await;
    let a = node_without_heartbeat(&prefix, store.clone()).await;
    let b = node_without_heartbeat(&prefix, store).await;
    let group = Uuid::new_v4();
    let on_a = a.subscribe(group).await.unwrap();
    (a, b, group, on_a)
}

#[tokio::test]
async fn a_message_the_listener_missed_arrives_in_order_once_a_later_one_is_heard() {
    let (a, b, group, mut on_a) = two_nodes_without_heartbeat().await;
    opened(&a, group).await;
    assert_eq!(publish_unheard(&b, group, "missed").await, 1);
    b.publish(draft(group, Uuid::new_v4(), "", "heard"))
        .await
        .unwrap();
    let first = next_message(&mut on_a).await;
    assert_eq!((first.offset, first.body.as_str()), (1, "missed"));
    let second = next_message(&mut on_a).await;
    assert_eq!((second.offset, second.body.as_str()), (2, "heard"));
}

/// Bodies with what JSON has to escape, and more, cross nodes on the messages channel as
/// they were sent (neither node's heartbeat comes round: the channel is the only way).
#[tokio::test]
async fn any_body_crosses_nodes_on_the_messages_channel_unchanged() {
    let (_a, b, group, mut on_a) = two_nodes_without_heartbeat().await;
    let bodies = [
        "\"quoted\" \\ back\\slash / slash",
        "line\nbreak\ttab\r\u{1}\u{1f}",
        "\u{202e}right-to-left\u{2066} 😀 𝄞 ünïcödé",
        "{\"kind\":\"message\",\"offset\":99}",
    ];
    for body in bodies {
        b.publish(draft(group, Uuid::new_v4(), "", body))
            .await
            .unwrap();
    }
    for (i, body) in bodies.iter().enumerate() {
        let message = next_message(&mut on_a).await;
        assert_eq!(
            (message.offset, message.body.as_str()),
            (i as u64 + 1, *body)
        );
    }
}

#[tokio::test]
async fn a_quiet_room_gets_a_message_the_listener_missed_at_the_next_heartbeat() {
    let relay = relay(100).await;
    let group = Uuid::new_v4();
    let mut sub = relay.subscribe(group).await.unwrap();
    opened(&relay, group).await;
    publish_unheard(&relay, group, "missed").await;
    let message = next_message(&mut sub).await;
    assert_eq!((message.offset, message.body.as_str()), (1, "missed"));
}

#[tokio::test]
async fn after_the_messages_subscription_comes_back_a_room_reads_what_its_listener_missed() {
    let relay = node_without_heartbeat(&random_prefix(), store().await).await;
    let group = Uuid::new_v4();
    let mut sub = relay.subscribe(group).await.unwrap();
    opened(&relay, group).await;
    publish_unheard(&relay, group, "while down").await;
    assert_eq!(kill(&[&relay.inner.messages]).await, 1);
    let message = next_message(&mut sub).await;
    assert_eq!((message.offset, message.body.as_str()), (1, "while down"));
}

#[test]
fn describe_hides_the_password() {
    assert_eq!(
        display_url("redis://user:secret@cache.internal:6380/2"),
        "redis://user@cache.internal:6380/2"
    );
    assert_eq!(
        display_url("redis://127.0.0.1:6379"),
        "redis://127.0.0.1:6379"
    );
}

#[test]
fn event_channels_map_back_to_their_room() {
    let keys = Keys {
        prefix: "qc*test".into(),
    };
    let group = Uuid::new_v4();
    assert_eq!(keys.group_of_channel(&keys.events(group)), Some(group));
    assert_eq!(keys.group_of_channel("other:room:x:events"), None);
    assert_eq!(keys.group_of_channel(&keys.messages(group)), Some(group));
    assert_eq!(keys.pattern("events"), "qc\\*test:room:*:events");
}

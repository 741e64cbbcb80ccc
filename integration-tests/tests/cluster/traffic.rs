//! Steady chat traffic for the fault suite, and the verdict on it.
//!
//! Each member of each room runs a client as a careful application would: one `Chat`
//! stream, a message every few tens of milliseconds, each with its own `client_message_id`,
//! one send in flight at a time, a send that was refused or whose stream broke retried with
//! the same id until it is acked; a broken stream reopened (on the next node the
//! [`Balancer`] offers) with `since` its last position. Everything it sees is recorded.
//!
//! [`Verdict::of`] then checks what the fault suite promises: every acked message is in
//! PostgreSQL exactly once, and every client either saw every message of its room in order
//! with no duplicate, or was told `recovered = false`.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quickchat_proto::v1::{
    self, chat_request, chat_response::Event, chat_service_client::ChatServiceClient,
};
use sea_orm::ConnectionTrait;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Endpoint;

use crate::helpers::{authed, create_group_on, join_on, register_on};
use crate::process::ServerProcess;

/// Longest a send may go unanswered before its stream is considered broken.
const ANSWER_DEADLINE: Duration = Duration::from_secs(15);

/// The load balancer in front of the nodes: the addresses clients may connect to now. A
/// test removes a node it kills and adds the ones it starts.
#[derive(Clone, Default)]
pub struct Balancer(Arc<Mutex<Vec<String>>>);

impl Balancer {
    /// A balancer in front of `nodes`.
    pub fn over(nodes: &[ServerProcess]) -> Self {
        Self::new(nodes.iter().map(address))
    }

    pub fn new(addresses: impl IntoIterator<Item = String>) -> Self {
        let balancer = Self::default();
        balancer.set(addresses);
        balancer
    }

    pub fn set(&self, addresses: impl IntoIterator<Item = String>) {
        *self.0.lock().unwrap() = addresses.into_iter().collect();
    }

    pub fn remove(&self, address: &str) {
        self.0.lock().unwrap().retain(|a| a != address);
    }

    fn pick(&self, n: usize) -> Option<String> {
        let addresses = self.0.lock().unwrap();
        (!addresses.is_empty()).then(|| addresses[n % addresses.len()].clone())
    }
}

/// Where `node` serves gRPC, as `host:port`.
pub fn address(node: &ServerProcess) -> String {
    node.addr.expect("a node").to_string()
}

/// A connection to `node`.
pub async fn channel_to(node: &ServerProcess) -> tonic::transport::Channel {
    tonic::transport::Channel::from_shared(format!("http://{}", address(node)))
        .unwrap()
        .connect()
        .await
        .expect("node reachable")
}

/// `rooms` rooms, each with an owner and `members_per_room` joined members, made through
/// `node`: the members the traffic runs on.
pub async fn rooms_on(node: &ServerProcess, rooms: usize, members_per_room: usize) -> Vec<Member> {
    let channel = channel_to(node).await;
    let mut members = Vec::new();
    for r in 0..rooms {
        let owner = register_on(&channel, &format!("Owner{r}")).await;
        let group = create_group_on(&channel, &owner.access_token, &format!("Room {r}")).await;
        for m in 0..members_per_room {
            let name = format!("Member{r}x{m}");
            let token = join_on(&channel, &group.id, &name).await.member_token;
            members.push(Member {
                group_id: group.id.clone(),
                name,
                token,
            });
        }
    }
    members
}

/// One member of a room, with its credential.
#[derive(Clone, Debug)]
pub struct Member {
    pub group_id: String,
    pub name: String,
    pub token: String,
}

/// What one client did and saw.
#[derive(Debug, Default)]
pub struct ClientLog {
    pub name: String,
    /// Acked sends: client_message_id → the message as acked.
    pub acked: HashMap<String, v1::Message>,
    /// When each ack arrived.
    pub ack_times: Vec<Instant>,
    /// Sends answered with `send_rejected`, by status code, and the longest wait for one.
    pub rejected: HashMap<i32, u64>,
    pub slowest_rejection: Duration,
    /// Streams opened; of the reopened ones, how many resumed (`recovered = true`) and how
    /// many were told to reload (`recovered = false`).
    pub sessions: u32,
    pub resumed: u32,
    pub told: u32,
    /// How streams ended (status codes), and how often a node could not be reached.
    pub stream_ends: HashMap<String, u32>,
    /// Offsets delivered twice, or out of order, within one run of continuous delivery.
    pub duplicates: Vec<u64>,
    pub out_of_order: Vec<(u64, u64)>,
    /// Offsets missing from a run of continuous delivery beyond what refused sends explain.
    pub gaps: Vec<u64>,
}

/// Messages seen since the stream last (re)started without recovery: within it delivery
/// must be complete and in order.
#[derive(Default)]
struct Run {
    /// The room's head when the run began: delivery is owed from the next offset on.
    start: u64,
    seen: BTreeSet<u64>,
    last_message: u64,
    /// Our own sends answered with `send_rejected`: each leaves a hole for us (its ack would
    /// have taken its place) until a retry is acked.
    refused: usize,
}

impl Run {
    fn starting_at(start: u64) -> Self {
        Self {
            start,
            last_message: start,
            ..Self::default()
        }
    }

    fn top(&self) -> u64 {
        self.seen
            .last()
            .copied()
            .unwrap_or(self.start)
            .max(self.start)
    }

    /// Closes the run: offsets between its start and its top that never arrived.
    fn close(&self, log: &mut ClientLog) {
        let missing: Vec<u64> = (self.start + 1..=self.top())
            .filter(|o| !self.seen.contains(o))
            .collect();
        if missing.len() > self.refused {
            log.gaps.extend(missing);
        }
    }
}

/// Clients running on every member given; see the [module documentation](self).
pub struct Traffic {
    stop: watch::Sender<bool>,
    clients: Vec<JoinHandle<ClientLog>>,
}

impl Traffic {
    /// Starts a client per member, member `i` first connecting to the balancer's node `i`,
    /// each sending a message every `interval`.
    pub fn start(members: &[Member], balancer: &Balancer, interval: Duration) -> Self {
        let (stop, stopped) = watch::channel(false);
        let clients = members
            .iter()
            .enumerate()
            .map(|(i, member)| {
                tokio::spawn(run_client(
                    member.clone(),
                    balancer.clone(),
                    i,
                    interval,
                    stopped.clone(),
                ))
            })
            .collect();
        Self { stop, clients }
    }

    /// Stops sending new messages, lets every client get its last send acked (at most
    /// `drain`), and returns what each did.
    pub async fn finish(self, drain: Duration) -> Vec<ClientLog> {
        self.stop.send_replace(true);
        let mut logs = Vec::new();
        for client in self.clients {
            let log = tokio::time::timeout(drain, client)
                .await
                .expect("every client's last send acked within the drain time")
                .expect("client task");
            logs.push(log);
        }
        logs
    }
}

async fn run_client(
    member: Member,
    balancer: Balancer,
    index: usize,
    interval: Duration,
    stopped: watch::Receiver<bool>,
) -> ClientLog {
    let mut log = ClientLog {
        name: member.name.clone(),
        ..ClientLog::default()
    };
    let mut client = Client {
        member,
        interval,
        stopped,
        position: None,
        run: Run::default(),
        next_seq: 0,
        unacked: None,
    };
    let mut attempt = index;
    loop {
        if *client.stopped.borrow() && client.unacked.is_none() && log.sessions > 0 {
            break;
        }
        let Some(address) = balancer.pick(attempt) else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let end = client.session(&address, &mut log).await;
        *log.stream_ends.entry(end.clone()).or_default() += 1;
        if end == "finished" {
            break;
        }
        // A new node next time (the load balancer's choice), after a short pause.
        attempt += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    client.run.close(&mut log);
    log
}

struct Client {
    member: Member,
    interval: Duration,
    stopped: watch::Receiver<bool>,
    /// Where a reopened stream resumes.
    position: Option<v1::StreamPosition>,
    run: Run,
    next_seq: u64,
    /// The send waiting for its ack (sent, refused, or lost with a stream).
    unacked: Option<String>,
}

impl Client {
    /// One stream, until it breaks (the reason is returned) or the client is done.
    async fn session(&mut self, address: &str, log: &mut ClientLog) -> String {
        let channel = match Endpoint::from_shared(format!("http://{address}"))
            .unwrap()
            .connect_timeout(Duration::from_secs(1))
            .connect()
            .await
        {
            Ok(channel) => channel,
            Err(_) => return "node unreachable".into(),
        };
        let (requests, rx) = mpsc::channel(16);
        let join = v1::ChatRequest {
            kind: Some(chat_request::Kind::Join(chat_request::Join {
                group_id: self.member.group_id.clone(),
                since: self.position.clone(),
            })),
        };
        requests.send(join).await.unwrap();
        let opened = tokio::time::timeout(
            Duration::from_secs(10),
            ChatServiceClient::new(channel)
                .chat(authed(ReceiverStream::new(rx), &self.member.token)),
        )
        .await;
        let mut responses = match opened {
            Ok(Ok(r)) => r.into_inner(),
            Ok(Err(status)) => return format!("open: {:?}", status.code()),
            Err(_) => return "open: timed out".into(),
        };
        let joined = match tokio::time::timeout(Duration::from_secs(10), responses.message()).await
        {
            Ok(Ok(Some(v1::ChatResponse {
                event: Some(Event::Joined(joined)),
            }))) => joined,
            Ok(Err(status)) => return format!("join: {:?}", status.code()),
            other => return format!("join: {other:?}"),
        };
        log.sessions += 1;
        match (&self.position, joined.recovered) {
            (Some(_), true) => log.resumed += 1,
            (Some(_), false) | (None, _) => {
                if self.position.is_some() {
                    log.told += 1;
                }
                self.run.close(log);
                self.run = Run::starting_at(joined.offset);
            }
        }
        self.position = Some(v1::StreamPosition {
            offset: self.run.top(),
            epoch: joined.epoch.clone(),
        });

        let mut in_flight: Option<Instant> = None;
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if *self.stopped.borrow() && self.unacked.is_none() {
                return "finished".into();
            }
            if in_flight.is_some_and(|sent| sent.elapsed() > ANSWER_DEADLINE) {
                return "send unanswered".into();
            }
            tokio::select! {
                _ = tick.tick() => {
                    if in_flight.is_some() {
                        continue;
                    }
                    let client_message_id = match &self.unacked {
                        Some(retry) => retry.clone(),
                        None if *self.stopped.borrow() => continue,
                        None => {
                            self.next_seq += 1;
                            format!("{}-{}", self.member.name, self.next_seq)
                        }
                    };
                    let send = v1::ChatRequest {
                        kind: Some(chat_request::Kind::Send(chat_request::Send {
                            body: format!("{client_message_id} says hello"),
                            client_message_id: client_message_id.clone(),
                        })),
                    };
                    if requests.send(send).await.is_err() {
                        return "request stream closed".into();
                    }
                    self.unacked = Some(client_message_id);
                    in_flight = Some(Instant::now());
                }
                response = responses.message() => {
                    let event = match response {
                        Ok(Some(v1::ChatResponse { event: Some(event) })) => event,
                        Ok(Some(_)) => continue,
                        Ok(None) => return "ended: Ok".into(),
                        Err(status) => return format!("ended: {:?}", status.code()),
                    };
                    match event {
                        Event::Message(m) => self.delivered(m.offset, log),
                        Event::Ack(ack) => {
                            let message = ack.message.expect("an ack carries its message");
                            if !self.run.seen.contains(&message.offset) {
                                // A first answer takes its message's place in the order.
                                self.run.seen.insert(message.offset);
                            }
                            log.ack_times.push(Instant::now());
                            log.acked.insert(ack.client_message_id.clone(), message);
                            if self.unacked.as_deref() == Some(&ack.client_message_id) {
                                self.unacked = None;
                                in_flight = None;
                            }
                        }
                        Event::SendRejected(rejected) => {
                            *log.rejected.entry(rejected.code).or_default() += 1;
                            if let Some(sent) = in_flight {
                                log.slowest_rejection = log.slowest_rejection.max(sent.elapsed());
                            }
                            self.run.refused += 1;
                            in_flight = None;
                        }
                        _ => {}
                    }
                    if let Some(position) = &mut self.position {
                        position.offset = self.run.top();
                    }
                }
            }
        }
    }

    fn delivered(&mut self, offset: u64, log: &mut ClientLog) {
        if self.run.seen.contains(&offset) || offset <= self.run.start {
            log.duplicates.push(offset);
            return;
        }
        if offset < self.run.last_message {
            log.out_of_order.push((self.run.last_message, offset));
        }
        self.run.last_message = offset;
        self.run.seen.insert(offset);
    }
}

/// What a fault did to the traffic, checked against PostgreSQL.
#[derive(Debug)]
pub struct Verdict {
    pub fault: String,
    pub acked: usize,
    /// Acked messages missing from PostgreSQL.
    pub lost: Vec<String>,
    /// Acked messages stored more than once (or under another id than acked).
    pub duplicated: Vec<String>,
    pub dead_letters: i64,
    pub rejected: u64,
    pub resumed: u32,
    pub told: u32,
    /// Clients with a gap, a duplicate or a message out of order in what they were shown.
    pub broken_deliveries: Vec<String>,
    /// From the fault's end to every client's first ack after it.
    pub seconds_to_recover: f64,
}

impl Verdict {
    /// Waits (at most `within`) until every acked message is in PostgreSQL, then judges.
    pub async fn of(
        fault: &str,
        logs: &[ClientLog],
        db: &sea_orm::DatabaseConnection,
        recovered_after: Instant,
        within: Duration,
    ) -> Verdict {
        let acked: Vec<(&String, &v1::Message)> =
            logs.iter().flat_map(|log| log.acked.iter()).collect();
        let deadline = Instant::now() + within;
        let rows = loop {
            let rows = stored_rows(db).await;
            let all_in = acked.iter().all(|(cmid, _)| rows.contains_key(*cmid));
            if all_in || Instant::now() > deadline {
                break rows;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        let mut lost = Vec::new();
        let mut duplicated = Vec::new();
        for (cmid, message) in &acked {
            match rows.get(*cmid).map(Vec::as_slice) {
                None | Some([]) => lost.push((*cmid).clone()),
                Some([(id, offset)]) if *id == message.id && *offset == message.offset => {}
                Some(stored) => duplicated.push(format!(
                    "{cmid}: acked {}@{} stored {stored:?}",
                    message.id, message.offset
                )),
            }
        }
        let dead_letters = db
            .query_one_raw(sea_orm::Statement::from_string(
                db.get_database_backend(),
                "SELECT count(*) AS n FROM dead_letters",
            ))
            .await
            .unwrap()
            .and_then(|row| row.try_get::<i64>("", "n").ok())
            .unwrap_or(0);
        let broken_deliveries = logs
            .iter()
            .filter(|l| {
                !l.gaps.is_empty() || !l.duplicates.is_empty() || !l.out_of_order.is_empty()
            })
            .map(|l| {
                format!(
                    "{}: gaps {:?} duplicates {:?} out of order {:?}",
                    l.name, l.gaps, l.duplicates, l.out_of_order
                )
            })
            .collect();
        let seconds_to_recover = logs
            .iter()
            .map(|l| {
                l.ack_times
                    .iter()
                    .find(|t| **t >= recovered_after)
                    .map_or(f64::INFINITY, |t| (*t - recovered_after).as_secs_f64())
            })
            .fold(0.0, f64::max);
        Verdict {
            fault: fault.to_owned(),
            acked: acked.len(),
            lost,
            duplicated,
            dead_letters,
            rejected: logs.iter().flat_map(|l| l.rejected.values()).sum(),
            resumed: logs.iter().map(|l| l.resumed).sum(),
            told: logs.iter().map(|l| l.told).sum(),
            broken_deliveries,
            seconds_to_recover,
        }
    }

    /// Prints the fault's line of the report and fails the test on any loss, duplicate,
    /// dead letter or broken delivery, or a recovery slower than `recover_within`.
    pub fn assert_survived(&self, recover_within: Duration) {
        println!(
            "fault report | {:<28} | acked {:>5} | lost {} | duplicated {} | refused sends {:>4} | streams resumed {:>3} / told to reload {:>3} | recovered in {:.1} s",
            self.fault,
            self.acked,
            self.lost.len(),
            self.duplicated.len(),
            self.rejected,
            self.resumed,
            self.told,
            self.seconds_to_recover,
        );
        assert!(self.acked > 0, "{}: no traffic", self.fault);
        assert!(
            self.lost.is_empty(),
            "{}: acked and lost ({} dead letters): {:?}",
            self.fault,
            self.dead_letters,
            self.lost
        );
        assert!(
            self.duplicated.is_empty(),
            "{}: stored twice or not as acked: {:?}",
            self.fault,
            self.duplicated
        );
        assert_eq!(self.dead_letters, 0, "{}: dead letters", self.fault);
        assert!(
            self.broken_deliveries.is_empty(),
            "{}: {:?}",
            self.fault,
            self.broken_deliveries
        );
        assert!(
            self.seconds_to_recover <= recover_within.as_secs_f64(),
            "{}: recovered in {:.1} s, promised {:?}",
            self.fault,
            self.seconds_to_recover,
            recover_within
        );
    }
}

/// The stored messages: client_message_id → (id, offset) of each row carrying it.
async fn stored_rows(db: &sea_orm::DatabaseConnection) -> HashMap<String, Vec<(String, u64)>> {
    let rows = db
        .query_all_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SELECT id::text AS id, client_message_id AS cmid, room_offset AS o FROM messages",
        ))
        .await
        .expect("messages readable");
    let mut stored: HashMap<String, Vec<(String, u64)>> = HashMap::new();
    for row in rows {
        let cmid: Option<String> = row.try_get("", "cmid").unwrap();
        let id: String = row.try_get("", "id").unwrap();
        let offset: i64 = row.try_get("", "o").unwrap();
        if let Some(cmid) = cmid {
            stored.entry(cmid).or_default().push((id, offset as u64));
        }
    }
    stored
}

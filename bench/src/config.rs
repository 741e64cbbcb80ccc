//! The command line: which scenarios and stacks, every size and rate, and where the
//! services and programs are. `--smoke` shrinks everything to prove the harness works
//! (CI runs it; its numbers mean nothing).

use std::path::PathBuf;

use crate::scenario::Scenario;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Stacks {
    Both,
    Quickchat,
    Peer,
}

/// QuickChat against the original Node.js stack (Socket.IO + Redis Streams adapter +
/// kafkajs + pg), side by side on this machine.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "quickchat-bench", version)]
pub struct Config {
    /// Scenarios to run (default: all, in this order).
    #[arg(value_enum)]
    pub scenarios: Vec<Scenario>,
    /// Which stacks to run.
    #[arg(long, value_enum, default_value = "both")]
    pub stack: Stacks,
    /// Tiny sizes and one-second phases: proves every scenario runs, measures nothing.
    #[arg(long)]
    pub smoke: bool,

    /// Seconds each measured phase sends for.
    #[arg(long, default_value_t = 5.0)]
    pub secs: f64,
    /// The sweeps look for the highest rate whose p99 stays at or under this (ms).
    #[arg(long, default_value_t = 100.0)]
    pub bound_ms: f64,
    /// Most steps of a sweep.
    #[arg(long, default_value_t = 7)]
    pub sweep_steps: usize,
    /// Each sweep step's rate is the previous one's times this.
    #[arg(long, default_value_t = 1.6)]
    pub sweep_factor: f64,
    /// Steps after the sweep that halve (geometrically) the gap between the best step
    /// within the bound and the first one above it, so the result is not off by up to a
    /// whole sweep factor.
    #[arg(long, default_value_t = 2)]
    pub sweep_refine: usize,
    /// The fan-out sweeps' first rate (messages per second into the room).
    #[arg(long, default_value_t = 50.0)]
    pub sweep_start: f64,
    /// Clients connecting at once.
    #[arg(long, default_value_t = 200)]
    pub connect_concurrency: usize,
    /// Publishers in the fan-out rooms (each on its own connection, also receiving).
    #[arg(long, default_value_t = 4)]
    pub publishers: usize,

    /// fanout: subscribers in the room.
    #[arg(long, default_value_t = 1000)]
    pub fanout_subscribers: usize,
    /// fanout: messages per second into the room in the fixed-rate phase.
    #[arg(long, default_value_t = 100.0)]
    pub fanout_rate: f64,

    /// rooms: how many rooms.
    #[arg(long, default_value_t = 1000)]
    pub rooms: usize,
    /// rooms and connections: members per room.
    #[arg(long, default_value_t = 10)]
    pub room_members: usize,
    /// rooms: messages per second per room.
    #[arg(long, default_value_t = 1.0)]
    pub room_rate: f64,

    /// cross-node: nodes on the one Redis (publishers on the first, subscribers on the
    /// last).
    #[arg(long, default_value_t = 2)]
    pub cross_nodes: usize,
    /// cross-node: subscribers in the low-load phase.
    #[arg(long, default_value_t = 100)]
    pub cross_low_subscribers: usize,
    /// cross-node: messages per second in the low-load phase.
    #[arg(long, default_value_t = 100.0)]
    pub cross_low_rate: f64,
    /// cross-node: subscribers in the sweep.
    #[arg(long, default_value_t = 1000)]
    pub cross_subscribers: usize,

    /// persist: messages produced to Kafka, then drained into PostgreSQL.
    #[arg(long, default_value_t = 100_000)]
    pub persist_messages: u64,
    /// persist: rooms they are sent to (one sender each).
    #[arg(long, default_value_t = 10)]
    pub persist_rooms: usize,
    /// persist: sends per second while producing them.
    #[arg(long, default_value_t = 4000.0)]
    pub persist_send_rate: f64,
    /// persist: sends per second in the phase with the persister running.
    #[arg(long, default_value_t = 1000.0)]
    pub persist_live_rate: f64,

    /// connections: idle clients.
    #[arg(long, default_value_t = 10_000)]
    pub connections: usize,

    /// send-ack: senders, each alone in its room.
    #[arg(long, default_value_t = 16)]
    pub send_ack_senders: usize,
    /// send-ack: the fixed rates measured (sends per second in all).
    #[arg(long, value_delimiter = ',', default_value = "1000,4000")]
    pub send_ack_rates: Vec<f64>,
    /// send-ack: the sweep's first rate.
    #[arg(long, default_value_t = 1000.0)]
    pub send_ack_sweep_start: f64,

    /// Load-generator processes for the peer (each is one Node.js event loop).
    #[arg(long, default_value_t = 2)]
    pub peer_workers: usize,
    /// An extra flag for every QuickChat node and persister (repeatable), e.g.
    /// --qc-arg=--stream-queue=4096.
    #[arg(long = "qc-arg", allow_hyphen_values = true)]
    pub qc_args: Vec<String>,

    /// PostgreSQL to create the run's database on.
    #[arg(
        long,
        env = "QUICKCHAT_TEST_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pub database_url: String,
    /// Redis for both stacks (keys are prefixed per run).
    #[arg(
        long,
        env = "QUICKCHAT_TEST_REDIS_URL",
        default_value = "redis://127.0.0.1:6379"
    )]
    pub redis_url: String,
    /// A Kafka-protocol broker (scripts/kafka.sh starts one); persist and send-ack need it.
    #[arg(long, env = "QUICKCHAT_TEST_KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,
    /// The quickchat-server to run.
    #[arg(long, default_value = "target/release/quickchat-server")]
    pub server_bin: PathBuf,
    /// Node.js.
    #[arg(long, default_value = "node")]
    pub node: String,
    /// The peer's directory (with its node_modules).
    #[arg(long, default_value = "bench/peer")]
    pub peer_dir: PathBuf,
    /// Where each run keeps its processes' logs (a directory per run).
    #[arg(long, default_value = "target/bench")]
    pub logs: PathBuf,
    /// Also write the results as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

impl Config {
    /// The scenarios asked for, or all.
    pub fn scenarios(&self) -> Vec<Scenario> {
        if self.scenarios.is_empty() {
            Scenario::ALL.to_vec()
        } else {
            self.scenarios.clone()
        }
    }

    /// Tiny sizes for `--smoke`.
    pub fn shrink(&mut self) {
        self.secs = 1.0;
        self.sweep_steps = 2;
        self.sweep_refine = 1;
        self.sweep_start = 20.0;
        self.publishers = 2;
        self.fanout_subscribers = 10;
        self.fanout_rate = 20.0;
        self.rooms = 5;
        self.room_members = 3;
        self.room_rate = 5.0;
        self.cross_low_subscribers = 5;
        self.cross_low_rate = 20.0;
        self.cross_subscribers = 10;
        self.persist_messages = 200;
        self.persist_rooms = 2;
        self.persist_send_rate = 200.0;
        self.persist_live_rate = 100.0;
        self.connections = 30;
        self.send_ack_senders = 2;
        self.send_ack_rates = vec![50.0];
        self.send_ack_sweep_start = 50.0;
        self.peer_workers = 1;
    }
}

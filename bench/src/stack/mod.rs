//! The two stacks behind one interface, so that every scenario is written once: servers
//! ([`Stack`]) and the clients that load them ([`Clients`]).

pub mod peer;
pub mod quickchat;

use crate::stats::{Counts, Stats};

/// What a scenario runs: how many server nodes, and whether messages go through Kafka
/// into PostgreSQL (with the consumer or persister started separately when `persister` is
/// false).
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    pub nodes: usize,
    pub kafka: bool,
    pub persister: bool,
}

/// A room (a QuickChat group, a Socket.IO room named after a group id) and who may join it.
#[derive(Debug, Clone)]
pub struct Room {
    pub id: String,
    pub members: Vec<Member>,
}

#[derive(Debug, Clone)]
pub struct Member {
    pub name: String,
    /// QuickChat's member token (the peer has no authentication).
    pub token: String,
}

/// One client: which node it connects to, and as which member of which room.
#[derive(Debug, Clone, Copy)]
pub struct ClientSpec {
    pub node: usize,
    pub room: usize,
    pub member: usize,
}

#[async_trait::async_trait]
pub trait Stack: Send {
    fn name(&self) -> &'static str;
    /// Starts the servers.
    async fn start(&mut self, layout: Layout) -> anyhow::Result<()>;
    /// Stops every process started for the scenario.
    async fn stop(&mut self);
    /// The server nodes' process ids (for their memory).
    fn server_pids(&self) -> Vec<u32>;
    /// Creates `count` rooms with `members` members each.
    async fn rooms(&mut self, count: usize, members: usize) -> anyhow::Result<Vec<Room>>;
    /// A new, empty set of clients for the running nodes.
    fn clients(&self) -> Box<dyn Clients>;
    /// Starts the process that drains Kafka into PostgreSQL (layouts with `persister: false`).
    async fn start_persister(&mut self) -> anyhow::Result<()>;
    /// Messages of `rooms` stored in PostgreSQL.
    async fn stored(&self, rooms: &[Room]) -> anyhow::Result<u64>;
    /// The table messages are stored in, and its columns (for `COPY`).
    fn message_table(&self) -> (&'static str, &'static str);
    fn env(&self) -> &crate::env::Env;
}

#[async_trait::async_trait]
pub trait Clients: Send {
    /// Connects one client per spec (each on its own connection), at most `concurrency`
    /// connecting at once; returns once every one is in its room. Clients are numbered in
    /// the order of every `connect` call so far.
    async fn connect(
        &mut self,
        specs: &[ClientSpec],
        rooms: &[Room],
        concurrency: usize,
    ) -> anyhow::Result<()>;
    /// Sends `rate` messages per second in all, taking turns over `senders` (client
    /// numbers), for `secs`; returns the number sent. With `ack`, the peer's clients ask for
    /// an acknowledgement (QuickChat always acknowledges).
    async fn send(
        &mut self,
        senders: &[usize],
        rate: f64,
        secs: f64,
        ack: bool,
    ) -> anyhow::Result<u64>;
    async fn counts(&mut self) -> anyhow::Result<Counts>;
    /// Counts and latencies since the last call.
    async fn take_stats(&mut self) -> anyhow::Result<Stats>;
    /// Disconnects every client.
    async fn close(&mut self) -> anyhow::Result<()>;
}

/// Messages of `rooms` stored in `table` (each stack's [`Stack::stored`]).
pub async fn stored_in(env: &crate::env::Env, table: &str, rooms: &[Room]) -> anyhow::Result<u64> {
    let ids: Vec<uuid::Uuid> = rooms
        .iter()
        .map(|r| r.id.parse())
        .collect::<Result<_, _>>()?;
    let query = format!("SELECT count(*) FROM {table} WHERE group_id = ANY($1)");
    // The table is one of the stacks' own constants, never input.
    let n: i64 = sea_orm::sqlx::query_scalar(sea_orm::sqlx::AssertSqlSafe(query))
        .bind(&ids)
        .fetch_one(&env.pool)
        .await?;
    Ok(n as u64)
}

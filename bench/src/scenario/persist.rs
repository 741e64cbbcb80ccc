//! persist: N messages through Kafka into PostgreSQL. The messages are sent (and acked:
//! in Kafka) with the persister — or the peer's consumer — stopped; then it is started and
//! timed until every row is stored (rows/s). Then, with it running, a phase at a fixed
//! rate: how long after the last ack the last row is stored (the end-to-end lag). Last,
//! the same rows are loaded again with PostgreSQL's `COPY` into the same table after
//! deleting them: the practical limit on this machine.

use std::time::{Duration, Instant};

use anyhow::Context;
use futures::TryStreamExt;
use sea_orm::sqlx::{self, postgres::PgPoolCopyExt};

use super::{run_phase, specs};
use crate::config::Config;
use crate::env::Env;
use crate::progress::Progress;
use crate::report::{Better, Metric};
use crate::stack::{ClientSpec, Layout, Room, Stack};

const NAME: &str = "persist";
/// Longest the drain may go without a new row before the scenario gives up.
const STALL: Duration = Duration::from_secs(60);
/// Shortest pause between two counts of the stored rows.
const POLL: Duration = Duration::from_millis(20);

pub async fn run(
    stack: &mut dyn Stack,
    config: &Config,
    progress: &Progress,
) -> anyhow::Result<Vec<Metric>> {
    let label = format!("{NAME} · {}", stack.name());
    let n = config.persist_messages;
    progress.step(&format!("{label}: starting"));
    stack
        .start(Layout {
            nodes: 1,
            kafka: true,
            persister: false,
        })
        .await?;
    let rooms = stack.rooms(config.persist_rooms.max(1), 1).await?;
    let specs: Vec<ClientSpec> = (0..rooms.len())
        .flat_map(|room| specs(0, room, 0..1))
        .collect();
    let mut clients = stack.clients();
    clients
        .connect(&specs, &rooms, config.connect_concurrency)
        .await?;
    let senders: Vec<usize> = (0..specs.len()).collect();

    let rate = config.persist_send_rate;
    progress.step(&format!(
        "{label}: producing {n} messages at {rate}/s, nothing stored yet"
    ));
    let secs = n as f64 / rate;
    let phase = run_phase(clients.as_mut(), &senders, 0, rate, secs, true).await?;
    anyhow::ensure!(
        phase.acked > 0 && phase.failed == 0,
        "{label}: {} of {} sends acked, {} failed",
        phase.acked,
        phase.sent,
        phase.failed
    );
    let produced = phase.sent;

    progress.step(&format!(
        "{label}: draining {produced} messages into PostgreSQL"
    ));
    let started = Instant::now();
    stack.start_persister().await?;
    let (rows_per_sec, drain_time) = drain(stack, &rooms, produced, started).await?;

    let live_rate = config.persist_live_rate;
    progress.step(&format!(
        "{label}: {live_rate} msgs/s with the persister running"
    ));
    let live = run_phase(clients.as_mut(), &senders, 0, live_rate, config.secs, true).await?;
    let acked_at = Instant::now();
    let total = produced + live.sent;
    drain(stack, &rooms, total, acked_at).await?;
    let lag = acked_at.elapsed();
    clients.close().await?;

    progress.step(&format!("{label}: COPY of the same rows"));
    let copy = copy_same_rows(stack.message_table(), &rooms, stack.env()).await?;

    Ok(vec![
        Metric::new(
            NAME,
            format!("{produced} messages: persister rows/s"),
            Some(rows_per_sec),
            "/s",
            Better::Higher,
        ),
        Metric::new(
            NAME,
            format!("{produced} messages: drained in"),
            Some(drain_time.as_secs_f64()),
            "s",
            Better::Lower,
        ),
        Metric::new(
            NAME,
            format!("{} rows: COPY into the same table, rows/s", copy.0),
            Some(copy.1),
            "/s",
            Better::Higher,
        ),
        Metric::new(
            NAME,
            "persister as % of COPY".to_owned(),
            Some(rows_per_sec * 100.0 / copy.1.max(1e-9)),
            "%",
            Better::Higher,
        ),
        Metric::new(
            NAME,
            format!("{live_rate} msgs/s live: last row stored after the last ack"),
            Some(lag.as_secs_f64() * 1000.0),
            "ms",
            Better::Lower,
        ),
    ])
}

/// Waits until `target` rows of `rooms` are stored; returns rows per second (measured from
/// the first row seen, so the consumer's start-up does not count) and the time since
/// `since`.
async fn drain(
    stack: &dyn Stack,
    rooms: &[Room],
    target: u64,
    since: Instant,
) -> anyhow::Result<(f64, Duration)> {
    let mut first: Option<(Instant, u64)> = None;
    let mut last = (Instant::now(), 0u64);
    loop {
        let asked = Instant::now();
        let stored = stack.stored(rooms).await?;
        let now = Instant::now();
        // The count is a query on the table being written: asking again at once would take
        // a good part of the database from the writer being measured. Waiting four times
        // as long as it took keeps it under a fifth of one backend.
        let pause = POLL.max((now - asked) * 4);
        if stored > 0 && first.is_none() {
            first = Some((now, stored));
        }
        if stored >= target {
            let (t0, n0) = first.expect("rows were seen");
            let rate = if target - n0 >= target / 2 && now > t0 {
                (target - n0) as f64 / (now - t0).as_secs_f64()
            } else {
                target as f64 / since.elapsed().as_secs_f64()
            };
            return Ok((rate, since.elapsed()));
        }
        if stored != last.1 {
            last = (now, stored);
        }
        anyhow::ensure!(
            last.0.elapsed() < STALL,
            "{} rows of {target} stored, none for {} s",
            last.1,
            STALL.as_secs()
        );
        tokio::time::sleep(pause).await;
    }
}

/// Copies the rows of `rooms` out of `table`, deletes them, vacuums, and times loading
/// them back with `COPY`: (rows, rows per second).
async fn copy_same_rows(
    (table, columns): (&str, &str),
    rooms: &[Room],
    env: &Env,
) -> anyhow::Result<(u64, f64)> {
    let ids = rooms
        .iter()
        .map(|r| format!("'{}'", r.id.replace('\'', "")))
        .collect::<Vec<_>>()
        .join(",");
    let filter = format!("group_id IN ({ids})");
    let data: Vec<u8> = env
        .pool
        .copy_out_raw(&format!(
            "COPY (SELECT {columns} FROM {table} WHERE {filter}) TO STDOUT"
        ))
        .await?
        .try_fold(Vec::new(), |mut all, chunk| async move {
            all.extend_from_slice(&chunk);
            Ok(all)
        })
        .await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DELETE FROM {table} WHERE {filter}"
    )))
    .execute(&env.pool)
    .await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("VACUUM {table}")))
        .execute(&env.pool)
        .await?;
    let start = Instant::now();
    let mut copy = env
        .pool
        .copy_in_raw(&format!("COPY {table} ({columns}) FROM STDIN"))
        .await?;
    copy.send(data).await?;
    let rows = copy.finish().await.context("COPY")?;
    let elapsed = start.elapsed().as_secs_f64();
    Ok((rows, rows as f64 / elapsed.max(1e-9)))
}

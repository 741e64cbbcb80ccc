//! The persister: drains a message log into the store in batches. One loop serves every log
//! implementation: a [`LogSource`] hands out batches and is told when a batch is committed
//! (the in-process log wakes the senders; Kafka commits consumer offsets). Writes are
//! idempotent (`ON CONFLICT (id) DO NOTHING`), so a batch replayed after a crash never
//! duplicates a row.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sea_orm::DbErr;
use tokio::task::{JoinError, JoinHandle};

use crate::metrics::Metrics;
use crate::room::ChatMessage;
use crate::store::{Fate, Store, Unstored};

const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Most text a batch gathers, whatever `--persist-batch` allows: 5 000 messages at the
/// longest body would make one statement of about 80 MB, and three batches can be alive at
/// once (two written, one gathered). Ordinary traffic stays far below it (5 000 messages
/// of 100 bytes are about 1 MB).
pub const MAX_BATCH_BYTES: usize = 4 << 20;

/// What a message counts towards [`MAX_BATCH_BYTES`]: its text.
pub fn batch_bytes(m: &ChatMessage) -> usize {
    m.body.len() + m.sender_name.len() + m.client_message_id.len()
}

#[async_trait]
pub trait LogSource: Send + 'static {
    /// What [`LogSource::commit`] needs to acknowledge a batch.
    type Receipt: Send;

    /// Waits for the next batch of at most `max` messages, which stops growing once it
    /// holds [`MAX_BATCH_BYTES`] (see [`batch_bytes`]); `None` once the log is closed and
    /// drained. Must be cancel-safe: the persister gathers the next batch while the last
    /// one is written, and drops the call to commit that one as soon as it is stored; no
    /// message taken from the log may be lost with the dropped call.
    async fn next_batch(&mut self, max: usize) -> Option<(Vec<Arc<ChatMessage>>, Self::Receipt)>;

    /// The batch is done with: committed to the store, except `unstored` (dead-lettered, or
    /// their group is gone), which the source must not report as durable to anyone waiting.
    async fn commit(&mut self, receipt: Self::Receipt, unstored: &[Unstored]);

    /// The store could not be reached for a batch (it is retried). Nothing by default.
    fn store_unreachable(&mut self) {}

    /// Starts reporting to `metrics` what only this source can measure (Kafka: the consumer
    /// lag of each partition it reads), until it stops. Nothing by default.
    fn observe(&mut self, _metrics: &Arc<Metrics>) {}
}

/// Runs until the source is closed and drained. A batch that cannot reach the store is
/// retried with backoff (the store may be restarting) and never skipped; a row the database
/// refuses goes to the dead-letter table (see `Store::insert_messages`) so the rows after it
/// are not held up.
pub async fn run<S: LogSource>(source: S, store: Store, max_batch: usize) {
    run_observed(source, store, max_batch, None).await
}

/// [`run`], counting batches, messages and failures in `metrics`, where the source reports
/// what it measures too (see [`LogSource::observe`]).
///
/// Batches are committed in the order they were read, each as soon as it and the ones
/// before it are stored. On PostgreSQL up to two are written at once while the next one is
/// gathered (see [`writes_at_once`]), so reading the log, one batch's work in the database
/// and another's wait for its commit to reach the disk overlap instead of taking turns; on
/// SQLite a batch is read, written and committed in turn.
pub async fn run_observed<S: LogSource>(
    mut source: S,
    store: Store,
    max_batch: usize,
    metrics: Option<Arc<Metrics>>,
) {
    if let Some(metrics) = &metrics {
        source.observe(metrics);
    }
    let max_batch = max_batch.max(1);
    let at_once = writes_at_once(&store);
    let mut writing: VecDeque<Writing<S::Receipt>> = VecDeque::with_capacity(at_once);
    loop {
        let room = writing.len() < at_once;
        let next = match writing.front_mut() {
            None => source.next_batch(max_batch).await,
            Some(oldest) if room => {
                tokio::select! {
                    biased;
                    written = &mut oldest.task => {
                        let w = writing.pop_front().expect("a batch is being written");
                        finish(&mut source, &store, w, written, &metrics).await;
                        continue;
                    }
                    next = source.next_batch(max_batch) => next,
                }
            }
            Some(_) => {
                finish_oldest(&mut writing, &mut source, &store, &metrics).await;
                continue;
            }
        };
        let Some((batch, receipt)) = next else {
            break;
        };
        let batch = Arc::new(batch);
        let task = tokio::spawn({
            let (store, batch) = (store.clone(), batch.clone());
            async move { store.insert_messages(&batch).await }
        });
        writing.push_back(Writing {
            batch,
            receipt,
            task,
        });
    }
    while !writing.is_empty() {
        finish_oldest(&mut writing, &mut source, &store, &metrics).await;
    }
    tracing::debug!("persister drained");
}

/// How many batches are written at once: two on PostgreSQL (while one waits for its commit
/// to be flushed, the other is inserted), one on SQLite, which takes one writer at a time.
fn writes_at_once(store: &Store) -> usize {
    if store.backend() == "postgres" { 2 } else { 1 }
}

/// A batch whose first write is under way.
struct Writing<R> {
    batch: Arc<Vec<Arc<ChatMessage>>>,
    receipt: R,
    task: JoinHandle<Result<Vec<Unstored>, DbErr>>,
}

/// Waits for the first write of the oldest batch being written, then [`finish`]es it.
async fn finish_oldest<S: LogSource>(
    writing: &mut VecDeque<Writing<S::Receipt>>,
    source: &mut S,
    store: &Store,
    metrics: &Option<Arc<Metrics>>,
) {
    if let Some(mut w) = writing.pop_front() {
        let written = (&mut w.task).await;
        finish(source, store, w, written, metrics).await;
    }
}

/// Completes a batch once its first write has ended: retries it until the store takes it,
/// then reports what was not stored and commits it.
async fn finish<S: LogSource>(
    source: &mut S,
    store: &Store,
    w: Writing<S::Receipt>,
    first: Result<Result<Vec<Unstored>, DbErr>, JoinError>,
    metrics: &Option<Arc<Metrics>>,
) {
    let batch = w.batch;
    let mut attempt =
        first.unwrap_or_else(|err| Err(DbErr::Custom(format!("the batch write panicked: {err}"))));
    let mut backoff = Duration::from_millis(50);
    let unstored = loop {
        match attempt {
            Ok(unstored) => {
                if let Some(metrics) = metrics {
                    metrics.batch_persisted(batch.len() - unstored.len());
                }
                break unstored;
            }
            Err(err) => {
                if let Some(metrics) = metrics {
                    metrics.persist_failed();
                }
                source.store_unreachable();
                tracing::warn!(error = %err, batch = batch.len(), "persisting messages failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                attempt = store.insert_messages(&batch).await;
            }
        }
    };
    for u in &unstored {
        match &u.fate {
            Fate::GroupGone => {
                if let Some(metrics) = metrics {
                    metrics.dropped_group_gone();
                }
                tracing::info!(message_id = %u.message_id, group_id = %u.group_id, offset = u.offset, "message not stored: its group was deleted");
            }
            Fate::Resent => {
                tracing::info!(message_id = %u.message_id, group_id = %u.group_id, offset = u.offset, "message not stored: a resend of one already stored");
            }
            Fate::DeadLettered(reason) => {
                if let Some(metrics) = metrics {
                    metrics.dead_lettered();
                }
                tracing::error!(message_id = %u.message_id, group_id = %u.group_id, offset = u.offset, %reason, "the database refused a message; kept in dead_letters");
            }
        }
    }
    source.commit(w.receipt, &unstored).await;
}

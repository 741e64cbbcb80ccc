//! The persister: drains a message log into the store in batches. One loop serves every log
//! implementation: a [`LogSource`] hands out batches and is told when a batch is committed
//! (the in-process log wakes the senders; Kafka commits consumer offsets). Writes are
//! idempotent (`ON CONFLICT (id) DO NOTHING`), so a batch replayed after a crash never
//! duplicates a row.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::metrics::Metrics;
use crate::room::ChatMessage;
use crate::store::{Fate, Store, Unstored};

const MAX_BACKOFF: Duration = Duration::from_secs(5);

#[async_trait]
pub trait LogSource: Send + 'static {
    /// What [`LogSource::commit`] needs to acknowledge a batch.
    type Receipt: Send;

    /// Waits for the next batch of at most `max` messages; `None` once the log is closed and
    /// drained.
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
pub async fn run_observed<S: LogSource>(
    mut source: S,
    store: Store,
    max_batch: usize,
    metrics: Option<Arc<Metrics>>,
) {
    if let Some(metrics) = &metrics {
        source.observe(metrics);
    }
    while let Some((batch, receipt)) = source.next_batch(max_batch.max(1)).await {
        let mut backoff = Duration::from_millis(50);
        let unstored = loop {
            match store.insert_messages(&batch).await {
                Ok(unstored) => {
                    if let Some(metrics) = &metrics {
                        metrics.batch_persisted(batch.len() - unstored.len());
                    }
                    break unstored;
                }
                Err(err) => {
                    if let Some(metrics) = &metrics {
                        metrics.persist_failed();
                    }
                    source.store_unreachable();
                    tracing::warn!(error = %err, batch = batch.len(), "persisting messages failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        };
        for u in &unstored {
            match &u.fate {
                Fate::GroupGone => {
                    if let Some(metrics) = &metrics {
                        metrics.dropped_group_gone();
                    }
                    tracing::info!(message_id = %u.message_id, group_id = %u.group_id, offset = u.offset, "message not stored: its group was deleted");
                }
                Fate::Resent => {
                    tracing::info!(message_id = %u.message_id, group_id = %u.group_id, offset = u.offset, "message not stored: a resend of one already stored");
                }
                Fate::DeadLettered(reason) => {
                    if let Some(metrics) = &metrics {
                        metrics.dead_lettered();
                    }
                    tracing::error!(message_id = %u.message_id, group_id = %u.group_id, offset = u.offset, %reason, "the database refused a message; kept in dead_letters");
                }
            }
        }
        source.commit(receipt, &unstored).await;
    }
    tracing::debug!("persister drained");
}

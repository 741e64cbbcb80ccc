//! The embedded log: a bounded in-process queue. `append` waits until the persister has
//! committed the message, so an acknowledged message is in the store.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};

use super::persister::{LogSource, MAX_BATCH_BYTES, batch_bytes};
use super::{LogError, MessageLog};
use crate::room::ChatMessage;
use crate::store::{Fate, Unstored};
use uuid::Uuid;

struct Entry {
    message: Arc<ChatMessage>,
    persisted: oneshot::Sender<Result<(), LogError>>,
}

pub struct InProcessLog {
    queue: Mutex<Option<mpsc::Sender<Entry>>>,
}

/// The persister's end of an [`InProcessLog`].
pub struct InProcessSource {
    queue: mpsc::Receiver<Entry>,
}

impl InProcessLog {
    /// A log holding at most `capacity` messages not yet persisted (appends wait beyond).
    pub fn new(capacity: usize) -> (Self, InProcessSource) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (
            Self {
                queue: Mutex::new(Some(tx)),
            },
            InProcessSource { queue: rx },
        )
    }
}

#[async_trait]
impl MessageLog for InProcessLog {
    fn describe(&self) -> String {
        "in-process, persisted to the store before each ack".to_owned()
    }

    async fn append(&self, message: Arc<ChatMessage>) -> Result<(), LogError> {
        let closed = || LogError::Unavailable("the server is shutting down".into());
        let queue = self
            .queue
            .lock()
            .expect("log lock poisoned")
            .clone()
            .ok_or_else(closed)?;
        let (persisted, done) = oneshot::channel();
        queue
            .send(Entry { message, persisted })
            .await
            .map_err(|_| closed())?;
        done.await.map_err(|_| closed())?
    }

    async fn close(&self) {
        self.queue.lock().expect("log lock poisoned").take();
    }
}

#[async_trait]
impl LogSource for InProcessSource {
    type Receipt = Vec<(Uuid, oneshot::Sender<Result<(), LogError>>)>;

    async fn next_batch(&mut self, max: usize) -> Option<(Vec<Arc<ChatMessage>>, Self::Receipt)> {
        let first = self.queue.recv().await?;
        let mut bytes = batch_bytes(&first.message);
        let mut receipt = vec![(first.message.id, first.persisted)];
        let mut messages = vec![first.message];
        while messages.len() < max && bytes < MAX_BATCH_BYTES {
            match self.queue.try_recv() {
                Ok(entry) => {
                    bytes += batch_bytes(&entry.message);
                    receipt.push((entry.message.id, entry.persisted));
                    messages.push(entry.message);
                }
                Err(_) => break,
            }
        }
        Some((messages, receipt))
    }

    async fn commit(&mut self, receipt: Self::Receipt, unstored: &[Unstored]) {
        for (id, persisted) in receipt {
            let outcome = match unstored.iter().find(|u| u.message_id == id) {
                None => Ok(()),
                Some(u) if u.fate == Fate::Resent => Err(LogError::AlreadySent),
                Some(u) => Err(LogError::NotStored {
                    group_gone: u.fate == Fate::GroupGone,
                }),
            };
            let _ = persisted.send(outcome);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    async fn log() -> (Arc<dyn MessageLog>, Store) {
        let store = Store::connect("sqlite::memory:")
            .await
            .expect("in-memory store");
        let (log, source) = InProcessLog::new(1024);
        tokio::spawn(super::super::persister::run(source, store.clone(), 256));
        (Arc::new(log), store)
    }

    crate::log_conformance_suite!(log);

    /// A backlog of the longest messages is handed out in batches of about
    /// [`MAX_BATCH_BYTES`], not of `--persist-batch` messages, and in order.
    #[tokio::test]
    async fn a_batch_of_long_messages_stops_at_the_byte_bound() {
        const COUNT: usize = 2_000;
        let (log, mut source) = InProcessLog::new(COUNT);
        let log = Arc::new(log);
        let group_id = Uuid::new_v4();
        let long = "x".repeat(crate::domain::MessageBody::MAX_CHARS);
        for offset in 1..=COUNT as u64 {
            let mut m = (*crate::log::conformance::message(group_id, offset)).clone();
            m.body = long.clone();
            let log = log.clone();
            tokio::spawn(async move { log.append(Arc::new(m)).await });
        }
        while source.queue.len() < COUNT {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let mut offsets = Vec::new();
        while offsets.len() < COUNT {
            let (batch, _) = source.next_batch(5_000).await.unwrap();
            let bytes: usize = batch.iter().map(|m| batch_bytes(m)).sum();
            let last = batch_bytes(batch.last().unwrap());
            assert!(
                bytes - last < MAX_BATCH_BYTES,
                "a batch of {} messages holds {bytes} bytes",
                batch.len()
            );
            offsets.extend(batch.iter().map(|m| m.offset));
        }
        assert_eq!(offsets, (1..=COUNT as u64).collect::<Vec<_>>());
    }
}

//! Cluster-wide presence: this node's entries, written under striped locks and kept alive
//! by the heartbeat.

use super::*;

impl Inner {
    pub(super) async fn touch(
        &self,
        group_id: Uuid,
        who: &Participant,
    ) -> Result<bool, fred::error::Error> {
        let reply = self
            .eval(
                &self.scripts.touch,
                vec![
                    self.keys.presence(group_id, who.id),
                    self.keys.online(group_id),
                    self.keys.names(group_id),
                ],
                vec![
                    who.id.to_string(),
                    self.node_id.clone(),
                    self.presence.ttl.as_millis().to_string(),
                    who.name.clone(),
                ],
            )
            .await?;
        Ok(reply.as_u64() == Some(1))
    }

    /// The lock for writing `who`'s presence in `group_id`.
    pub(super) fn presence_lock(&self, group_id: Uuid, who: Uuid) -> &tokio::sync::Mutex<()> {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (group_id, who).hash(&mut hasher);
        &self.presence_writes[hasher.finish() as usize % self.presence_writes.len()]
    }

    /// Refreshes this node's presence entries. Each is re-checked under its lock: one that
    /// left since the list was taken is not written back.
    pub(super) async fn heartbeat(&self) {
        let entries: Vec<(Uuid, Participant)> = self
            .local_presence
            .lock()
            .expect("presence lock poisoned")
            .iter()
            .map(|((group_id, _), (who, _))| (*group_id, who.clone()))
            .collect();
        let failures = futures::stream::iter(entries)
            .map(|(group_id, who)| async move {
                let _write = self.presence_lock(group_id, who.id).lock().await;
                let still_here = self
                    .local_presence
                    .lock()
                    .expect("presence lock poisoned")
                    .contains_key(&(group_id, who.id));
                if !still_here {
                    return None;
                }
                self.touch(group_id, &who).await.err()
            })
            .buffer_unordered(HEARTBEAT_CONCURRENCY)
            .filter_map(|failed| async move { failed })
            .collect::<Vec<_>>()
            .await;
        if let Some(err) = failures.first() {
            tracing::warn!(error = %err, failed = failures.len(), "presence heartbeat failed");
        }
    }
}

/// The heartbeat: refreshes this node's presence entries and re-checks room epochs.
pub(super) async fn run_heartbeat(inner: Arc<Inner>, shutdown: CancellationToken) {
    let mut ticks = tokio::time::interval(inner.presence.refresh);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        inner.heartbeat().await;
        inner.verify_epochs().await;
    }
}

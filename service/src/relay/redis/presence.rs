//! Cluster-wide presence: each node writes an entry per participant with streams on it
//! (under striped locks) and keeps it alive with the heartbeat; entries of a node that died
//! expire after the ttl.

use super::*;

/// [`Presence`] shared by every node on the Redis; made by [`RedisRelay::presence`], whose
/// heartbeat refreshes this node's entries.
#[derive(Clone)]
pub struct RedisPresence {
    pub(super) inner: Arc<Inner>,
}

#[async_trait]
impl Presence for RedisPresence {
    async fn join(&self, group_id: Uuid, who: &Participant) -> Result<bool, RelayError> {
        let inner = &self.inner;
        let _write = inner.presence_lock(group_id, who.id).lock().await;
        if !inner.local_presence.open(group_id, who) {
            return Ok(false);
        }
        match inner.touch(group_id, who).await {
            Ok(first_anywhere) => Ok(first_anywhere),
            Err(err) => {
                inner.local_presence.close(group_id, who);
                Err(unavailable(err))
            }
        }
    }

    async fn leave(&self, group_id: Uuid, who: &Participant) -> Result<bool, RelayError> {
        let inner = &self.inner;
        let _write = inner.presence_lock(group_id, who.id).lock().await;
        if !inner.local_presence.close(group_id, who) {
            return Ok(false);
        }
        // If this fails the entry is no longer refreshed and expires after the ttl.
        let reply = inner
            .eval(
                &inner.scripts.leave,
                vec![
                    inner.keys.presence(group_id, who.id),
                    inner.keys.online(group_id),
                    inner.keys.names(group_id),
                ],
                vec![who.id.to_string(), inner.node_id.clone()],
            )
            .await
            .map_err(unavailable)?;
        Ok(reply.as_u64() == Some(1))
    }

    async fn online(&self, group_id: Uuid) -> Result<Vec<Participant>, RelayError> {
        let inner = &self.inner;
        let reply = inner
            .eval(
                &inner.scripts.online,
                vec![inner.keys.online(group_id), inner.keys.names(group_id)],
                Vec::new(),
            )
            .await
            .map_err(unavailable)?;
        let values = match reply {
            Value::Array(values) => values,
            Value::Null => Vec::new(),
            _ => return Err(malformed("online")),
        };
        let mut online = Vec::with_capacity(values.len() / 2);
        let mut values = values.into_iter();
        while let (Some(id), Some(name)) = (values.next(), values.next()) {
            let id = id
                .as_string()
                .and_then(|id| Uuid::parse_str(&id).ok())
                .ok_or_else(|| malformed("participant id"))?;
            online.push(Participant {
                id,
                name: name.as_string().unwrap_or_default(),
            });
        }
        local::sort_online(&mut online);
        Ok(online)
    }

    async fn forget_room(&self, group_id: Uuid) -> Result<(), RelayError> {
        let inner = &self.inner;
        inner.local_presence.forget_room(group_id);
        inner
            .eval(
                &inner.scripts.forget,
                vec![inner.keys.online(group_id), inner.keys.names(group_id)],
                vec![inner.keys.presence_prefix(group_id)],
            )
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

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
        let entries = self.local_presence.entries();
        let failures = futures::stream::iter(entries)
            .map(|(group_id, who)| async move {
                let _write = self.presence_lock(group_id, who.id).lock().await;
                if !self.local_presence.contains(group_id, who.id) {
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

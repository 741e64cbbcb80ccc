//! A room's state in Redis: its epoch and counter, initialised (or re-initialised after
//! Redis lost it) clear of every offset handed out before.

use super::*;

impl Inner {
    pub(super) async fn quit(&self) {
        for client in [&self.client, &self.pubsub, &self.messages] {
            let _ = tokio::time::timeout(Duration::from_secs(1), client.quit()).await;
        }
    }

    /// Runs `script`, loading it again if Redis lost its script cache (a restart).
    pub(super) async fn eval(
        &self,
        script: &Script,
        keys: Vec<String>,
        args: Vec<String>,
    ) -> Result<Value, fred::error::Error> {
        match self
            .client
            .evalsha::<Value, _, _, _>(script.sha.as_str(), keys.clone(), args.clone())
            .await
        {
            Err(err) if err.details().starts_with("NOSCRIPT") => {
                self.client.eval(script.body.as_str(), keys, args).await
            }
            other => other,
        }
    }

    /// The room's epoch and last offset, initialising the room if Redis has no state for it.
    pub(super) async fn room_state(&self, group_id: Uuid) -> Result<(String, u64), RelayError> {
        let meta: Vec<Option<String>> = self
            .client
            .hmget(self.keys.meta(group_id), vec!["epoch", "offset"])
            .await
            .map_err(unavailable)?;
        match meta.as_slice() {
            [Some(epoch), Some(offset)] => Ok((
                epoch.clone(),
                offset.parse().map_err(|_| malformed("room offset"))?,
            )),
            _ => self.init_room(group_id).await,
        }
    }

    /// Creates the room's counter and a new epoch, unless another node just did: then the
    /// winner's state is returned. A room that has messages (Redis lost its state) starts
    /// [`EPOCH_GAP`] past the newest one in the store or the log: messages of the old epoch
    /// can still be on their way to the log, and a new message must never take the offset of
    /// one that will be acked.
    pub(super) async fn init_room(&self, group_id: Uuid) -> Result<(String, u64), RelayError> {
        let stored = self
            .store
            .last_offset(group_id)
            .await
            .map_err(anyhow::Error::from)?;
        let logged = match self.log_tail.get() {
            Some(tail) => tail.last_offset(group_id).await.map_err(|err| {
                RelayError::Unavailable(format!("cannot read the message log's tail: {err:#}"))
            })?,
            None => 0,
        };
        let newest = stored.max(logged);
        let seed = if newest == 0 { 0 } else { newest + EPOCH_GAP };
        let epoch = Uuid::new_v4().simple().to_string();
        let reply = self
            .eval(
                &self.scripts.init,
                vec![
                    self.keys.meta(group_id),
                    self.keys.stream(group_id),
                    self.keys.dedupe(group_id),
                ],
                vec![seed.to_string(), epoch],
            )
            .await
            .map_err(unavailable)?;
        let [epoch, offset, created] = array::<3>(reply).ok_or_else(|| malformed("room init"))?;
        let epoch = epoch.as_string().ok_or_else(|| malformed("room epoch"))?;
        let offset = offset.as_u64().ok_or_else(|| malformed("room offset"))?;
        if created.as_u64() == Some(1) {
            tracing::info!(%group_id, %epoch, offset, "room state initialised");
        }
        Ok((epoch, offset))
    }

    /// Ends the local feeds of `group_id` if they were given an epoch other than `epoch`.
    pub(super) fn forget_stale_room(&self, group_id: Uuid, epoch: Option<&str>) {
        let mut rooms = self.rooms.lock().expect("relay lock poisoned");
        if let Some(room) = rooms.get(&group_id)
            && Some(room.epoch.as_str()) != epoch
        {
            tracing::info!(%group_id, old_epoch = %room.epoch, new_epoch = ?epoch, "room epoch changed; ending local feeds");
            reset_room(&mut rooms, group_id);
        }
    }
}

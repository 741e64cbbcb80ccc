//! The node's feeds: the background reader (one blocking `XREAD` over every room read
//! here), the Pub/Sub listener for ephemeral events, and the epoch checks that end the
//! feeds of a room whose state Redis lost.

use super::*;

impl Inner {
    /// What the reader reads next: each locally-subscribed room's stream from its cursor, and
    /// the wake stream. Rooms without subscribers left are dropped here.
    pub(super) fn read_set(&self, wake_cursor: &str) -> (Vec<Key>, Vec<XID>) {
        let mut rooms = self.rooms.lock().expect("relay lock poisoned");
        rooms.retain(|group_id, room| {
            let keep = room.feed.receiver_count() > 0;
            if !keep {
                tracing::debug!(%group_id, "last local subscriber left; no longer reading the room");
            }
            keep
        });
        let mut keys = Vec::with_capacity(rooms.len() + 1);
        let mut ids = Vec::with_capacity(rooms.len() + 1);
        for room in rooms.values() {
            keys.push(room.key.clone());
            ids.push(XID::Manual(room.read_from.clone()));
        }
        keys.push(self.keys.wake(&self.node_id).into());
        ids.push(XID::Manual(wake_cursor.into()));
        (keys, ids)
    }

    /// Fans the entries of one `XREAD` reply out to the local feeds; returns the new wake
    /// cursor if the wake stream had entries.
    pub(super) fn deliver(&self, reply: Value) -> Option<String> {
        let mut wake_cursor = None;
        let mut rooms = self.rooms.lock().expect("relay lock poisoned");
        for (key, entries) in xread_streams(reply) {
            let Some(group_id) = self.keys.group_of_stream(&key) else {
                if let Some(last) = entries.last().and_then(entry_id) {
                    wake_cursor = Some(last);
                }
                continue;
            };
            let Some(room) = rooms.get_mut(&group_id) else {
                continue;
            };
            for entry in entries {
                // Most entries of a busy room were published here and are on the feed
                // already: skip them before parsing their fields.
                if entry_id(&entry)
                    .and_then(|id| offset_of(&id))
                    .is_some_and(|offset| offset <= room.cursor)
                {
                    continue;
                }
                let Some((offset, fields)) = parse_entry(entry) else {
                    tracing::warn!(%group_id, "skipping a malformed stream entry");
                    continue;
                };
                if fields.get("epoch").map(String::as_str) != Some(room.epoch.as_str()) {
                    tracing::info!(%group_id, old_epoch = %room.epoch, "room epoch changed; ending local feeds");
                    reset_room(&mut rooms, group_id);
                    break;
                }
                let message = decode_message(group_id, offset, &fields).map(Arc::new);
                if message.is_none() {
                    tracing::warn!(%group_id, offset, "skipping an undecodable message");
                }
                room.read(offset, message);
            }
        }
        wake_cursor
    }

    /// Hands a message this node just published to the room's local feed, if the room is
    /// read here under the same epoch (see [`LocalRoom::offer`]).
    pub(super) fn deliver_published(&self, epoch: &str, message: Arc<ChatMessage>) {
        let mut rooms = self.rooms.lock().expect("relay lock poisoned");
        if let Some(room) = rooms.get_mut(&message.group_id)
            && room.epoch == epoch
        {
            room.offer(message);
        }
    }

    /// Delivers one Pub/Sub event to the room's local subscribers.
    pub(super) fn on_event(&self, channel: &str, payload: Option<String>) {
        let Some(group_id) = self.keys.group_of_channel(channel) else {
            return;
        };
        let event = match payload.as_deref().map(serde_json::from_str::<WireEvent>) {
            Some(Ok(event)) => event.into_event(),
            _ => {
                tracing::warn!(%group_id, "ignoring a malformed room event");
                return;
            }
        };
        // Every node hears membership changes, whether or not it reads the room.
        self.membership.note(group_id, &event);
        let mut rooms = self.rooms.lock().expect("relay lock poisoned");
        if let Some(room) = rooms.get(&group_id) {
            room.feed.send(event.clone());
            if event == RoomEvent::Closed {
                rooms.remove(&group_id);
            }
        }
    }

    /// Ends the local feeds of every room whose epoch in Redis is not the one its subscribers
    /// were given (Redis lost the room, or it was re-initialised meanwhile).
    pub(super) async fn verify_epochs(&self) {
        let rooms: Vec<(Uuid, String)> = self
            .rooms
            .lock()
            .expect("relay lock poisoned")
            .iter()
            .map(|(group_id, room)| (*group_id, room.epoch.clone()))
            .collect();
        let checks = futures::stream::iter(rooms)
            .map(|(group_id, epoch)| async move {
                let current = self
                    .client
                    .hget::<Option<String>, _, _>(self.keys.meta(group_id), "epoch")
                    .await;
                (group_id, epoch, current)
            })
            .buffer_unordered(HEARTBEAT_CONCURRENCY)
            .collect::<Vec<_>>()
            .await;
        let mut failed = 0usize;
        for (group_id, epoch, current) in checks {
            match current {
                Ok(current) if current.as_deref() != Some(epoch.as_str()) => {
                    let mut rooms = self.rooms.lock().expect("relay lock poisoned");
                    if rooms.get(&group_id).is_some_and(|room| room.epoch == epoch) {
                        tracing::info!(%group_id, old_epoch = %epoch, new_epoch = ?current, "room epoch changed; ending local feeds");
                        reset_room(&mut rooms, group_id);
                    }
                }
                Ok(_) => {}
                Err(err) => {
                    failed += 1;
                    if failed == 1 {
                        tracing::warn!(%group_id, error = %err, "could not check a room's epoch");
                    }
                }
            }
        }
        if failed > 1 {
            tracing::warn!(failed, "could not check the epochs of several rooms");
        }
    }
}

impl LocalRoom {
    pub(super) fn new(epoch: String, cursor: u64, feed: RoomFeed, key: String) -> Self {
        let mut room = Self {
            epoch,
            cursor: 0,
            feed,
            key: key.into(),
            read_from: Str::default(),
            early: Default::default(),
        };
        room.advance(cursor);
        room
    }

    /// A message published on this node: sent on the feed if it is the next offset, held if
    /// an earlier one has not been sent yet, dropped if the reader already sent it.
    pub(super) fn offer(&mut self, message: Arc<ChatMessage>) {
        if message.offset <= self.cursor {
            return;
        }
        if message.offset == self.cursor + 1 {
            self.send(message);
            self.release();
        } else if self.early.len() < MAX_EARLY {
            self.early.insert(message.offset, message);
        }
    }

    /// The next entry the reader found in the stream after the cursor (`None`: it could not
    /// be decoded and is skipped). Held messages before it go first; a gap before it means
    /// the stream was trimmed before this node read it (the hub fills the gap from the
    /// store or ends the stream).
    pub(super) fn read(&mut self, offset: u64, message: Option<Arc<ChatMessage>>) {
        while let Some(held) = self.early.first_entry() {
            if *held.key() >= offset {
                break;
            }
            let held = held.remove();
            if held.offset > self.cursor {
                self.send(held);
            }
        }
        if offset <= self.cursor {
            return;
        }
        if offset != self.cursor + 1 {
            tracing::warn!(after = self.cursor, offset, "room feed skipped offsets");
        }
        match message {
            Some(message) => self.send(message),
            None => self.advance(offset),
        }
        self.release();
    }

    fn send(&mut self, message: Arc<ChatMessage>) {
        self.advance(message.offset);
        self.feed.send(RoomEvent::Message(message));
    }

    fn advance(&mut self, cursor: u64) {
        self.cursor = cursor;
        self.read_from = format!("{cursor}-0").into();
    }

    /// Sends the held messages that now follow the cursor, and forgets those it passed.
    fn release(&mut self) {
        while let Some(held) = self.early.first_entry() {
            if *held.key() <= self.cursor {
                held.remove();
            } else if *held.key() == self.cursor + 1 {
                let message = held.remove();
                self.send(message);
            } else {
                break;
            }
        }
    }
}

/// Ends the local feeds of a room whose epoch changed: its subscribers get
/// [`RoomEvent::Reset`], then the end of the feed.
pub(super) fn reset_room(rooms: &mut HashMap<Uuid, LocalRoom>, group_id: Uuid) {
    if let Some(room) = rooms.remove(&group_id) {
        room.feed.send(RoomEvent::Reset);
    }
}

/// The background reader: one blocking `XREAD` at a time over every room with local
/// subscribers (plus the wake stream), re-issued whenever it returns.
pub(super) async fn run_reader(inner: Arc<Inner>, shutdown: CancellationToken) {
    let mut wake_cursor = "0-0".to_owned();
    let mut backoff = MIN_BACKOFF;
    loop {
        let (keys, ids) = inner.read_set(&wake_cursor);
        let read = inner.reader.xread::<Value, _, _>(
            Some(READ_COUNT),
            Some(READ_BLOCK.as_millis() as u64),
            keys,
            ids,
        );
        let reply = tokio::select! {
            _ = shutdown.cancelled() => return,
            reply = read => reply,
        };
        match reply {
            Ok(reply) => {
                backoff = MIN_BACKOFF;
                if let Some(cursor) = inner.deliver(reply) {
                    wake_cursor = cursor;
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, retry_in_ms = backoff.as_millis() as u64, "room reader failed; retrying");
                if !back_off(&mut backoff, &shutdown).await {
                    return;
                }
            }
        }
    }
}

/// Waits `backoff` (doubled for next time, up to [`MAX_BACKOFF`]); false if shutdown came
/// first.
pub(super) async fn back_off(backoff: &mut Duration, shutdown: &CancellationToken) -> bool {
    let wait = *backoff;
    *backoff = (wait * 2).min(MAX_BACKOFF);
    tokio::select! {
        _ = shutdown.cancelled() => false,
        _ = tokio::time::sleep(wait) => true,
    }
}

/// The Pub/Sub listener.
///
/// It holds one pattern subscription (`P:room:*:events`) for the node's whole life and drops
/// events of rooms without local subscribers, rather than one channel per locally-read room:
/// ephemeral events are small and rate-limited, a subscription that never changes cannot
/// race with a room being opened and dropped at the same time (an `UNSUBSCRIBE` for the old
/// feed overtaking the `SUBSCRIBE` for the new one), opening a feed costs no round trip, and
/// after a reconnect there is exactly one thing to re-subscribe.
pub(super) async fn run_listener(inner: Arc<Inner>, shutdown: CancellationToken) {
    let mut messages = inner.pubsub.message_rx();
    let mut reconnects = inner.pubsub.reconnect_rx();
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            message = messages.recv() => match message {
                Ok(message) => inner.on_event(&message.channel, message.value.as_string()),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "room events listener lagged; ephemeral events lost");
                }
                Err(broadcast::error::RecvError::Closed) => {
                    // The client was shut down: wait for the shutdown signal, or for a
                    // new stream.
                    tokio::time::sleep(MIN_BACKOFF).await;
                    messages = inner.pubsub.message_rx();
                }
            },
            reconnected = reconnects.recv() => {
                if let Err(broadcast::error::RecvError::Closed) = reconnected {
                    tokio::time::sleep(MIN_BACKOFF).await;
                    reconnects = inner.pubsub.reconnect_rx();
                    continue;
                }
                resubscribe(&inner, &shutdown).await;
            }
        }
    }
}

/// Subscribes the pattern again after the Pub/Sub connection came back, until it succeeds.
pub(super) async fn resubscribe(inner: &Inner, shutdown: &CancellationToken) {
    let mut backoff = MIN_BACKOFF;
    loop {
        match inner.pubsub.psubscribe(inner.keys.events_pattern()).await {
            Ok(()) => {
                tracing::info!("room events subscription restored");
                return;
            }
            Err(err) => {
                tracing::warn!(error = %err, retry_in_ms = backoff.as_millis() as u64, "could not restore the room events subscription; retrying");
                if !back_off(&mut backoff, shutdown).await {
                    return;
                }
            }
        }
    }
}

//! The node's feeds: the Pub/Sub listener (messages and ephemeral events of every room),
//! the catch-up that reads from a room's stream what the listener did not hear, and the
//! epoch checks that end the feeds of a room whose state Redis lost.

use super::*;

impl Inner {
    /// Reads from the room's stream what its feed has not carried yet (see the [module
    /// documentation](super)), unless a catch-up is already running: then that one reads
    /// once more when it is done.
    pub(super) fn request_catch_up(self: &Arc<Self>, group_id: Uuid) {
        let mut rooms = self.rooms.lock().expect("relay lock poisoned");
        let Some(room) = rooms.get_mut(&group_id) else {
            return;
        };
        if room.catching_up {
            room.catch_up_again = true;
            return;
        }
        room.catching_up = true;
        drop(rooms);
        tokio::spawn(self.clone().catch_up(group_id));
    }

    /// Every room read here catches up (the listener may have missed anything).
    pub(super) fn catch_up_all(self: &Arc<Self>) {
        let rooms: Vec<Uuid> = self
            .rooms
            .lock()
            .expect("relay lock poisoned")
            .keys()
            .copied()
            .collect();
        for group_id in rooms {
            self.request_catch_up(group_id);
        }
    }

    /// `XRANGE`s the room's stream from its cursor to the end, handing the entries to its
    /// feed in order. A failure is retried (backing off) for as long as the room is read
    /// here under the same epoch.
    pub(super) async fn catch_up(self: Arc<Self>, group_id: Uuid) {
        let mut backoff = MIN_BACKOFF;
        loop {
            let Some((key, epoch, cursor)) = self
                .rooms
                .lock()
                .expect("relay lock poisoned")
                .get(&group_id)
                .map(|room| (room.key.clone(), room.epoch.clone(), room.cursor))
            else {
                return;
            };
            let read = self
                .client
                .xrange::<Value, _, _, _>(key, format!("{}-0", cursor + 1), "+", Some(READ_COUNT))
                .await;
            let entries = match read {
                Ok(Value::Array(entries)) => entries,
                Ok(_) => Vec::new(),
                Err(err) => {
                    tracing::warn!(%group_id, error = %err, retry_in_ms = backoff.as_millis() as u64, "could not catch up with a room's stream; retrying");
                    let wait = backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    tokio::time::sleep(wait).await;
                    continue;
                }
            };
            let mut rooms = self.rooms.lock().expect("relay lock poisoned");
            let Some(room) = rooms.get_mut(&group_id).filter(|room| room.epoch == epoch) else {
                return;
            };
            backoff = MIN_BACKOFF;
            let more = entries.len() as u64 >= READ_COUNT;
            for entry in entries {
                let Some((offset, fields)) = parse_entry(entry) else {
                    tracing::warn!(%group_id, "skipping a malformed stream entry");
                    continue;
                };
                if fields.get("epoch").map(String::as_str) != Some(epoch.as_str()) {
                    tracing::info!(%group_id, old_epoch = %epoch, "room epoch changed; ending local feeds");
                    reset_room(&mut rooms, group_id);
                    return;
                }
                let message = decode_message(group_id, offset, &fields).map(Arc::new);
                if message.is_none() {
                    tracing::warn!(%group_id, offset, "skipping an undecodable message");
                }
                room.read(offset, message);
            }
            // Done when the stream is read to its end and nobody asked again meanwhile.
            if !more && !std::mem::take(&mut room.catch_up_again) {
                room.catching_up = false;
                return;
            }
        }
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

    /// Hands one Pub/Sub message (a room's message or ephemeral event) to the room's local
    /// subscribers.
    pub(super) fn on_event(self: &Arc<Self>, channel: &str, payload: Option<String>) {
        let Some(group_id) = self.keys.group_of_channel(channel) else {
            return;
        };
        // Most messages a busy cluster publishes are for rooms nobody reads on this node.
        if payload
            .as_deref()
            .is_some_and(|p| p.starts_with(MESSAGE_PAYLOAD_START))
            && !self
                .rooms
                .lock()
                .expect("relay lock poisoned")
                .contains_key(&group_id)
        {
            return;
        }
        let wire = match payload.as_deref().map(serde_json::from_str::<WireEvent>) {
            Some(Ok(wire)) => wire,
            _ => {
                tracing::warn!(%group_id, "ignoring a malformed room event");
                return;
            }
        };
        let event = match wire {
            WireEvent::Message {
                epoch,
                offset,
                fields,
            } => return self.heard(group_id, &epoch, offset, &fields),
            wire => wire.into_event().expect("not a message"),
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

    /// A message heard on the room's channel: on to the feed in offset order. An offset
    /// heard after a gap means the listener missed the ones before it: the room catches up.
    fn heard(
        self: &Arc<Self>,
        group_id: Uuid,
        epoch: &str,
        offset: u64,
        fields: &HashMap<String, String>,
    ) {
        let mut rooms = self.rooms.lock().expect("relay lock poisoned");
        let Some(room) = rooms.get_mut(&group_id) else {
            return;
        };
        if room.feed.receiver_count() == 0 {
            tracing::debug!(%group_id, "last local subscriber left; no longer reading the room");
            rooms.remove(&group_id);
            return;
        }
        if room.epoch != epoch {
            tracing::info!(%group_id, old_epoch = %room.epoch, "room epoch changed; ending local feeds");
            reset_room(&mut rooms, group_id);
            return;
        }
        if offset <= room.cursor {
            return;
        }
        match decode_message(group_id, offset, fields) {
            Some(message) => room.offer(Arc::new(message)),
            None => tracing::warn!(%group_id, offset, "heard an undecodable message"),
        }
        if room.cursor < offset {
            drop(rooms);
            self.request_catch_up(group_id);
        }
    }

    /// Ends the local feeds of every room whose epoch in Redis is not the one its subscribers
    /// were given (Redis lost the room, or it was re-initialised meanwhile); a room whose
    /// counter is past what its feed carried catches up (a message the listener missed in a
    /// room that has been quiet since); rooms without local subscribers are dropped.
    pub(super) async fn verify_epochs(self: &Arc<Self>) {
        let rooms: Vec<(Uuid, String, u64)> = {
            let mut rooms = self.rooms.lock().expect("relay lock poisoned");
            rooms.retain(|_, room| room.feed.receiver_count() > 0);
            rooms
                .iter()
                .map(|(group_id, room)| (*group_id, room.epoch.clone(), room.cursor))
                .collect()
        };
        let checks = futures::stream::iter(rooms)
            .map(|(group_id, epoch, cursor)| async move {
                let current = self
                    .client
                    .hmget::<Vec<Option<String>>, _, _>(
                        self.keys.meta(group_id),
                        vec!["epoch", "offset"],
                    )
                    .await
                    .map(|meta| {
                        let mut meta = meta.into_iter();
                        let epoch = meta.next().flatten();
                        let behind = meta
                            .next()
                            .flatten()
                            .and_then(|offset| offset.parse::<u64>().ok())
                            .is_some_and(|offset| offset > cursor);
                        (epoch, behind)
                    });
                (group_id, epoch, current)
            })
            .buffer_unordered(HEARTBEAT_CONCURRENCY)
            .collect::<Vec<_>>()
            .await;
        let mut failed = 0usize;
        for (group_id, epoch, current) in checks {
            match current {
                Ok((current, _)) if current.as_deref() != Some(epoch.as_str()) => {
                    let mut rooms = self.rooms.lock().expect("relay lock poisoned");
                    if rooms.get(&group_id).is_some_and(|room| room.epoch == epoch) {
                        tracing::info!(%group_id, old_epoch = %epoch, new_epoch = ?current, "room epoch changed; ending local feeds");
                        reset_room(&mut rooms, group_id);
                    }
                }
                Ok((_, true)) => self.request_catch_up(group_id),
                Ok((_, false)) => {}
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
        Self {
            epoch,
            cursor,
            feed,
            key: key.into(),
            early: Default::default(),
            catching_up: false,
            catch_up_again: false,
        }
    }

    /// A message published on this node, or heard on the room's channel: sent on the feed
    /// if it is the next offset, held if an earlier one has not been sent yet, dropped if it
    /// was sent already.
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

    /// The next entry a catch-up found in the stream after the cursor (`None`: it could not
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
            None => self.cursor = offset,
        }
        self.release();
    }

    fn send(&mut self, message: Arc<ChatMessage>) {
        self.cursor = message.offset;
        self.feed.send(RoomEvent::Message(message));
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

/// The two Pub/Sub subscriptions of a node, each on its own connection.
#[derive(Clone, Copy)]
pub(super) enum Channels {
    /// Every room's ephemeral events (typing, presence, removals, closing).
    Events,
    /// Every room's messages: what the listener misses, rooms read from their streams.
    Messages,
}

impl Channels {
    pub(super) fn client(self, inner: &Inner) -> &Client {
        match self {
            Channels::Events => &inner.pubsub,
            Channels::Messages => &inner.messages,
        }
    }

    pub(super) fn pattern(self, inner: &Inner) -> String {
        inner.keys.pattern(self.name())
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Channels::Events => "events",
            Channels::Messages => "messages",
        }
    }
}

/// A Pub/Sub listener.
///
/// It holds one pattern subscription (`P:room:*:events` or `P:room:*:messages`) for the
/// node's whole life and drops what it hears for rooms without local subscribers, rather
/// than one channel per locally-read room: a subscription that never changes cannot race
/// with a room being opened and dropped at the same time (an `UNSUBSCRIBE` for the old feed
/// overtaking the `SUBSCRIBE` for the new one), opening a feed costs no round trip, and after
/// a reconnect there is exactly one thing to re-subscribe. Messages it missed (it lagged, or
/// its connection was down) every room reads from its stream.
pub(super) async fn run_listener(
    inner: Arc<Inner>,
    channels: Channels,
    shutdown: CancellationToken,
) {
    let client = channels.client(&inner).clone();
    let mut messages = client.message_rx();
    let mut reconnects = client.reconnect_rx();
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            message = messages.recv() => match message {
                Ok(message) => inner.on_event(&message.channel, message.value.as_string()),
                Err(broadcast::error::RecvError::Lagged(missed)) => match channels {
                    Channels::Events => {
                        tracing::warn!(missed, "room events listener lagged; ephemeral events lost");
                    }
                    Channels::Messages => {
                        tracing::warn!(missed, "room messages listener lagged; rooms catch up from their streams");
                        inner.catch_up_all();
                    }
                },
                Err(broadcast::error::RecvError::Closed) => {
                    // The client was shut down: wait for the shutdown signal, or for a
                    // new stream.
                    tokio::time::sleep(MIN_BACKOFF).await;
                    messages = client.message_rx();
                }
            },
            reconnected = reconnects.recv() => {
                if let Err(broadcast::error::RecvError::Closed) = reconnected {
                    tokio::time::sleep(MIN_BACKOFF).await;
                    reconnects = client.reconnect_rx();
                    continue;
                }
                resubscribe(&inner, channels, &shutdown).await;
                if let Channels::Messages = channels {
                    // What was published while the subscription was down.
                    inner.catch_up_all();
                }
            }
        }
    }
}

/// Subscribes the pattern again after the Pub/Sub connection came back, until it succeeds.
pub(super) async fn resubscribe(inner: &Inner, channels: Channels, shutdown: &CancellationToken) {
    let mut backoff = MIN_BACKOFF;
    let what = channels.name();
    loop {
        match channels
            .client(inner)
            .psubscribe(channels.pattern(inner))
            .await
        {
            Ok(()) => {
                tracing::info!(what, "room subscription restored");
                return;
            }
            Err(err) => {
                tracing::warn!(what, error = %err, retry_in_ms = backoff.as_millis() as u64, "could not restore a room subscription; retrying");
                if !back_off(&mut backoff, shutdown).await {
                    return;
                }
            }
        }
    }
}

//! The embedded relay and presence: rooms live in this process. Each room has a live feed
//! ([`RoomFeed`]), a bounded replay window and the dedupe keys of the messages in
//! that window; presence is this process's stream counts ([`InProcessPresence`]). A room's first offset continues from the newest stored message, so
//! offsets stay unique across restarts; the epoch is new for every process, because a
//! message published just before a crash may never have been stored.
//!
//! Memory stays bounded by the rooms in use: a room nobody subscribes to and nobody
//! published to for a while is forgotten (its messages are in the store). If it
//! is used again it starts over from the store under a new epoch, so a client that still
//! holds a position from before is told recovery is impossible rather than trusting offsets
//! that may have been reassigned.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{OnceCell, broadcast};
use tokio::time::Instant;
use uuid::Uuid;

use super::local::{self, StreamCounts};
use super::room_feed::RoomFeed;
use super::{Presence, Published, RelayError, Replay, RoomRelay, Subscription};
use crate::room::{ChatMessage, MessageDraft, Participant, RoomEvent};
use crate::store::Store;

/// How long an unused room stays in memory by default.
const DEFAULT_IDLE: Duration = Duration::from_secs(10 * 60);

pub struct InProcessRelay {
    /// This process's part of every room epoch.
    process: String,
    /// Makes the epoch of each room (re)created in this process unique.
    generation: AtomicU64,
    store: Store,
    window: usize,
    feed_capacity: usize,
    idle: Duration,
    rooms: Mutex<Rooms>,
    membership: local::MembershipFeed,
}

struct Rooms {
    by_id: HashMap<Uuid, Arc<Room>>,
    last_sweep: Instant,
}

struct Room {
    epoch: String,
    seeded: OnceCell<()>,
    state: Mutex<RoomState>,
    feed: RoomFeed,
}

#[derive(Default)]
struct RoomState {
    last_offset: u64,
    window: VecDeque<Arc<ChatMessage>>,
    /// (sender, client_message_id) of the messages in `window`.
    dedupe: HashMap<(Uuid, String), Arc<ChatMessage>>,
    /// Last publish, subscribe or join.
    last_used: Option<Instant>,
}

impl InProcessRelay {
    /// `window`: messages kept per room for replay; `feed_capacity`: events a subscriber may
    /// fall behind the room before it is dropped as lagging.
    pub fn new(store: Store, window: usize, feed_capacity: usize) -> Self {
        Self {
            process: Uuid::new_v4().simple().to_string(),
            generation: AtomicU64::new(0),
            store,
            window: window.max(1),
            feed_capacity: feed_capacity.max(1),
            idle: DEFAULT_IDLE,
            rooms: Mutex::new(Rooms {
                by_id: HashMap::new(),
                last_sweep: Instant::now(),
            }),
            membership: local::MembershipFeed::default(),
        }
    }

    /// Forget unused rooms after `idle` instead of the default ten minutes.
    pub fn with_idle_eviction(mut self, idle: Duration) -> Self {
        self.idle = idle;
        self
    }

    async fn room(&self, group_id: Uuid) -> Result<Arc<Room>, RelayError> {
        let room = {
            let mut rooms = self.rooms.lock().expect("relay lock poisoned");
            if rooms.last_sweep.elapsed() >= self.idle.min(Duration::from_secs(60)) {
                rooms.last_sweep = Instant::now();
                let idle = self.idle;
                rooms.by_id.retain(|_, room| room.in_use(idle));
            }
            rooms
                .by_id
                .entry(group_id)
                .or_insert_with(|| {
                    let generation = self.generation.fetch_add(1, Ordering::Relaxed);
                    Arc::new(Room {
                        epoch: format!("{}-{generation}", self.process),
                        seeded: OnceCell::new(),
                        state: Mutex::new(RoomState::default()),
                        feed: RoomFeed::new(self.feed_capacity),
                    })
                })
                .clone()
        };
        room.seeded
            .get_or_try_init(|| async {
                let last = self
                    .store
                    .last_offset(group_id)
                    .await
                    .map_err(anyhow::Error::from)?;
                room.state.lock().expect("room lock poisoned").last_offset = last;
                Ok::<(), RelayError>(())
            })
            .await?;
        Ok(room)
    }
}

impl Room {
    fn state(&self) -> std::sync::MutexGuard<'_, RoomState> {
        self.state.lock().expect("room lock poisoned")
    }

    /// Whether forgetting the room now could lose anything: someone holds it (an operation
    /// in flight) or subscribes to it (every present participant does), or it was used
    /// within `idle` (long enough for any append of its messages to have finished).
    fn in_use(self: &Arc<Self>, idle: Duration) -> bool {
        if Arc::strong_count(self) > 1 || self.feed.receiver_count() > 0 {
            return true;
        }
        self.state().last_used.is_some_and(|t| t.elapsed() < idle)
    }
}

#[async_trait]
impl RoomRelay for InProcessRelay {
    fn describe(&self) -> String {
        format!(
            "in-process (replay window {} messages per room)",
            self.window
        )
    }

    async fn publish(&self, draft: MessageDraft) -> Result<Published, RelayError> {
        let room = self.room(draft.group_id).await?;
        let mut state = room.state();
        let key = (draft.sender_id, draft.client_message_id.clone());
        if !key.1.is_empty()
            && let Some(original) = state.dedupe.get(&key)
        {
            return Ok(Published::Duplicate(original.clone()));
        }
        state.last_used = Some(Instant::now());
        state.last_offset += 1;
        let message = Arc::new(draft.place(state.last_offset));
        state.window.push_back(message.clone());
        if !key.1.is_empty() {
            state.dedupe.insert(key, message.clone());
        }
        while state.window.len() > self.window {
            if let Some(old) = state.window.pop_front() {
                state
                    .dedupe
                    .remove(&(old.sender_id, old.client_message_id.clone()));
            }
        }
        // Sent under the room lock, so subscribers see offsets in order.
        room.feed.send(RoomEvent::Message(message.clone()));
        Ok(Published::New(message))
    }

    async fn broadcast(&self, group_id: Uuid, event: RoomEvent) -> Result<(), RelayError> {
        self.membership.note(group_id, &event);
        let room = self.room(group_id).await?;
        let _state = room.state();
        room.feed.send(event);
        Ok(())
    }

    fn membership_changes(&self) -> broadcast::Receiver<crate::room::MembershipChange> {
        self.membership.subscribe()
    }

    async fn subscribe(&self, group_id: Uuid) -> Result<Subscription, RelayError> {
        let room = self.room(group_id).await?;
        let mut state = room.state();
        state.last_used = Some(Instant::now());
        Ok(Subscription {
            epoch: room.epoch.clone(),
            head: state.last_offset,
            events: room.feed.subscribe(),
        })
    }

    async fn replay(
        &self,
        group_id: Uuid,
        epoch: &str,
        after: u64,
        up_to: u64,
    ) -> Result<Replay, RelayError> {
        let room = self.room(group_id).await?;
        if epoch != room.epoch {
            return Ok(Replay::EpochChanged);
        }
        let state = room.state();
        let in_range = |m: &&Arc<ChatMessage>| m.offset > after && m.offset <= up_to;
        let messages: Vec<_> = state.window.iter().filter(in_range).cloned().collect();
        let first_available = state
            .window
            .front()
            .map(|m| m.offset)
            .unwrap_or(state.last_offset + 1);
        Ok(local::replay_outcome(
            after,
            up_to,
            first_available,
            messages,
        ))
    }

    async fn recent(
        &self,
        group_id: Uuid,
        limit: usize,
    ) -> Result<Vec<Arc<ChatMessage>>, RelayError> {
        let room = self.room(group_id).await?;
        let state = room.state();
        let skip = state.window.len().saturating_sub(limit);
        Ok(state.window.iter().skip(skip).cloned().collect())
    }

    async fn close_room(&self, group_id: Uuid) -> Result<(), RelayError> {
        let room = self
            .rooms
            .lock()
            .expect("relay lock poisoned")
            .by_id
            .remove(&group_id);
        if let Some(room) = room {
            room.feed.send(RoomEvent::Closed);
        }
        Ok(())
    }
}

/// Presence of the embedded default: this process's streams are everyone's.
#[derive(Default)]
pub struct InProcessPresence {
    streams: StreamCounts,
}

#[async_trait]
impl Presence for InProcessPresence {
    async fn join(&self, group_id: Uuid, who: &Participant) -> Result<bool, RelayError> {
        Ok(self.streams.open(group_id, who))
    }

    async fn leave(&self, group_id: Uuid, who: &Participant) -> Result<bool, RelayError> {
        Ok(self.streams.close(group_id, who))
    }

    async fn online(&self, group_id: Uuid) -> Result<Vec<Participant>, RelayError> {
        Ok(self.streams.online(group_id))
    }

    async fn forget_room(&self, group_id: Uuid) -> Result<(), RelayError> {
        self.streams.forget_room(group_id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn relay(window: usize) -> InProcessRelay {
        let store = Store::connect("sqlite::memory:")
            .await
            .expect("in-memory store");
        InProcessRelay::new(store, window, 1024)
    }

    crate::relay_conformance_suite!(relay);

    async fn presence() -> InProcessPresence {
        InProcessPresence::default()
    }

    crate::presence_conformance_suite!(presence);

    #[tokio::test]
    async fn unused_rooms_are_forgotten_and_restart_from_the_store_under_a_new_epoch() {
        let store = Store::connect("sqlite::memory:").await.unwrap();
        let relay = InProcessRelay::new(store.clone(), 100, 64)
            .with_idle_eviction(Duration::from_millis(100));
        let (quiet, busy) = (crate::store::test_group(&store).await, Uuid::new_v4());
        let mut published = Vec::new();
        for _ in 0..3 {
            let draft = crate::relay::conformance::draft(quiet, Uuid::new_v4(), "", "hi");
            published.push(relay.publish(draft).await.unwrap().message().clone());
        }
        store.insert_messages(&published).await.unwrap();
        let old_epoch = relay.subscribe(quiet).await.unwrap().epoch; // dropped at once
        let held = relay.subscribe(busy).await.unwrap();

        tokio::time::sleep(Duration::from_millis(250)).await;
        let again = relay.subscribe(quiet).await.unwrap();
        assert_ne!(
            again.epoch, old_epoch,
            "a forgotten room comes back under a new epoch"
        );
        assert_eq!(again.head, 3, "its offsets continue from the store");
        assert_eq!(
            relay.replay(quiet, &old_epoch, 1, 3).await.unwrap(),
            Replay::EpochChanged
        );
        let next = crate::relay::conformance::draft(quiet, Uuid::new_v4(), "", "hi");
        assert_eq!(relay.publish(next).await.unwrap().message().offset, 4);
        // A room with a subscriber is kept, whatever its age.
        assert_eq!(relay.subscribe(busy).await.unwrap().epoch, held.epoch);
    }
}

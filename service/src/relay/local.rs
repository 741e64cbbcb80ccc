//! What every relay backend does the same way on its own node, whatever carries the room
//! between nodes: the feed of membership changes it heard, the complete-or-partial decision
//! of a replay, the order `online` lists people in, and the count of each participant's open
//! streams that turns streams into presence. (Each room's live feed is
//! [`super::room_feed::RoomFeed`].)

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;
use uuid::Uuid;

use super::Replay;
use crate::room::{ChatMessage, MembershipChange, Participant, RoomEvent};

/// Membership changes this node heard, from any room (see
/// `RoomRelay::membership_changes`); a backend hands every event it delivers to
/// [`MembershipFeed::note`].
pub struct MembershipFeed(broadcast::Sender<MembershipChange>);

impl Default for MembershipFeed {
    fn default() -> Self {
        // Removals are rare; a listener that still lags drops its whole cache.
        Self(broadcast::channel(1024).0)
    }
}

impl MembershipFeed {
    pub fn note(&self, group_id: Uuid, event: &RoomEvent) {
        if let Some(change) = MembershipChange::of(group_id, event) {
            let _ = self.0.send(change);
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<MembershipChange> {
        self.0.subscribe()
    }
}

/// The answer to a replay of `after < offset <= up_to` from a window whose oldest message is
/// `first_available`: complete when the window reaches back far enough (or the range is
/// empty), otherwise partial, and the store has to supply what lies before it.
pub fn replay_outcome(
    after: u64,
    up_to: u64,
    first_available: u64,
    messages: Vec<Arc<ChatMessage>>,
) -> Replay {
    if after + 1 >= first_available || after >= up_to {
        Replay::Complete(messages)
    } else {
        Replay::Partial {
            first_available,
            messages,
        }
    }
}

/// The order every backend lists who is online in: by name, then id.
pub fn sort_online(online: &mut [Participant]) {
    online.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
}

/// Open streams per participant and room on this node. A participant is present here from
/// their first stream to their last; a backend that shares presence between nodes writes
/// only those two transitions (and refreshes [`StreamCounts::entries`]).
#[derive(Default)]
pub struct StreamCounts {
    by_room: Mutex<HashMap<(Uuid, Uuid), (Participant, usize)>>,
}

impl StreamCounts {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<(Uuid, Uuid), (Participant, usize)>> {
        self.by_room.lock().expect("presence lock poisoned")
    }

    /// Counts one more stream of `who`; true if it is their first here.
    pub fn open(&self, group_id: Uuid, who: &Participant) -> bool {
        let mut map = self.map();
        let entry = map
            .entry((group_id, who.id))
            .or_insert_with(|| (who.clone(), 0));
        entry.1 += 1;
        entry.1 == 1
    }

    /// Counts one stream of `who` closed; true if it was their last here.
    pub fn close(&self, group_id: Uuid, who: &Participant) -> bool {
        let mut map = self.map();
        match map.get_mut(&(group_id, who.id)) {
            Some(entry) if entry.1 > 1 => {
                entry.1 -= 1;
                false
            }
            Some(_) => {
                map.remove(&(group_id, who.id));
                true
            }
            None => false,
        }
    }

    /// Whether `who` has a stream of the room here.
    pub fn contains(&self, group_id: Uuid, who: Uuid) -> bool {
        self.map().contains_key(&(group_id, who))
    }

    /// Who has streams of the room here, sorted as `online` lists them.
    pub fn online(&self, group_id: Uuid) -> Vec<Participant> {
        let mut online: Vec<Participant> = self
            .map()
            .iter()
            .filter(|((room, _), _)| *room == group_id)
            .map(|(_, (who, _))| who.clone())
            .collect();
        sort_online(&mut online);
        online
    }

    /// Every (room, participant) with streams here.
    pub fn entries(&self) -> Vec<(Uuid, Participant)> {
        self.map()
            .iter()
            .map(|((group_id, _), (who, _))| (*group_id, who.clone()))
            .collect()
    }

    /// Forgets the room's entries (its group was deleted).
    pub fn forget_room(&self, group_id: Uuid) {
        self.map().retain(|(room, _), _| *room != group_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(name: &str) -> Participant {
        Participant {
            id: Uuid::new_v4(),
            name: name.into(),
        }
    }

    #[test]
    fn a_participant_is_present_from_their_first_stream_to_their_last() {
        let counts = StreamCounts::default();
        let (room, other_room) = (Uuid::new_v4(), Uuid::new_v4());
        let ann = person("Ann");
        assert!(counts.open(room, &ann));
        assert!(!counts.open(room, &ann));
        assert!(counts.open(other_room, &ann), "rooms count apart");
        assert!(!counts.close(room, &ann));
        assert!(counts.contains(room, ann.id));
        assert!(counts.close(room, &ann));
        assert!(!counts.contains(room, ann.id));
        assert!(!counts.close(room, &ann), "closing more than opened");
        assert_eq!(counts.entries(), [(other_room, ann)]);
        counts.forget_room(other_room);
        assert!(counts.entries().is_empty());
    }

    #[test]
    fn a_replay_is_partial_only_when_the_window_starts_after_the_range() {
        assert_eq!(
            replay_outcome(4, 9, 5, Vec::new()),
            Replay::Complete(Vec::new())
        );
        assert_eq!(
            replay_outcome(9, 9, 50, Vec::new()),
            Replay::Complete(Vec::new())
        );
        assert_eq!(
            replay_outcome(3, 9, 5, Vec::new()),
            Replay::Partial {
                first_available: 5,
                messages: Vec::new()
            }
        );
    }
}

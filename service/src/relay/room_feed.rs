//! A room's live feed on this node: what the relay hands the room's local subscribers, in
//! the order it was sent, each event to every subscriber.
//!
//! A broadcast channel whose buffer holds only what some subscriber has not read yet and
//! grows with it, up to the capacity, instead of a ring of `capacity` slots allocated when
//! the room opens (`tokio::sync::broadcast`): an idle room costs a few hundred bytes
//! however large the capacity, where the ring cost ~150 KB per room at the default 4096.
//! A subscriber that falls more than `capacity` events behind has lost the oldest ones: it
//! is told once ([`Lagged`]) and goes on from the oldest event still kept.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::sync::Notify;

use super::Lagged;
use crate::room::RoomEvent;

/// The sending side. Dropping it ends the feed: subscribers read what is left, then the end.
pub struct RoomFeed {
    shared: Arc<Shared>,
}

/// One subscriber: reads every event sent after it subscribed.
pub struct FeedReceiver {
    shared: Arc<Shared>,
    /// Position of the next event this subscriber reads.
    next: u64,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the subscribers waiting for an event (or the end).
    sent: Notify,
    capacity: usize,
}

struct State {
    /// Events some subscriber has not read, oldest first.
    buffer: VecDeque<Entry>,
    /// Position of `buffer[0]`; the next event sent gets `first + buffer.len()`.
    first: u64,
    receivers: usize,
    closed: bool,
}

struct Entry {
    event: RoomEvent,
    /// Subscribers that have not read it yet.
    unread: usize,
}

/// Below this the buffer is not shrunk (a busy room would reallocate all the time).
const KEEP_CAPACITY: usize = 16;

impl State {
    fn end(&self) -> u64 {
        self.first + self.buffer.len() as u64
    }

    /// Drops the events every subscriber has read, and a buffer far larger than what is
    /// left after a burst.
    fn release_read(&mut self) {
        while self.buffer.front().is_some_and(|e| e.unread == 0) {
            self.buffer.pop_front();
            self.first += 1;
        }
        let (len, cap) = (self.buffer.len(), self.buffer.capacity());
        if cap > KEEP_CAPACITY && len * 4 < cap {
            self.buffer.shrink_to((len * 2).max(KEEP_CAPACITY));
        }
    }
}

impl RoomFeed {
    /// A feed that keeps up to `capacity` (at least 1) events a subscriber has not read.
    pub fn new(capacity: usize) -> Self {
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    buffer: VecDeque::new(),
                    first: 0,
                    receivers: 0,
                    closed: false,
                }),
                sent: Notify::new(),
                capacity: capacity.max(1),
            }),
        }
    }

    /// Sends `event` to every current subscriber; without subscribers it goes nowhere. When
    /// the buffer is full the oldest event goes, lost to whoever has not read it.
    pub fn send(&self, event: RoomEvent) {
        let mut state = self.shared.lock();
        if state.receivers == 0 {
            return;
        }
        if state.buffer.len() == self.shared.capacity {
            state.buffer.pop_front();
            state.first += 1;
        }
        let unread = state.receivers;
        state.buffer.push_back(Entry { event, unread });
        drop(state);
        self.shared.sent.notify_waiters();
    }

    /// A subscriber that reads every event sent from now on.
    pub fn subscribe(&self) -> FeedReceiver {
        let mut state = self.shared.lock();
        state.receivers += 1;
        FeedReceiver {
            shared: self.shared.clone(),
            next: state.end(),
        }
    }

    pub fn receiver_count(&self) -> usize {
        self.shared.lock().receivers
    }
}

impl Drop for RoomFeed {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.sent.notify_waiters();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("room feed lock poisoned")
    }
}

/// What a subscriber finds when it looks.
enum Next {
    Event(Result<RoomEvent, Lagged>),
    Nothing,
    End,
}

impl Shared {
    /// The event at `next` for a subscriber there, moving it on.
    fn try_next(&self, next: &mut u64) -> Next {
        let mut state = self.lock();
        if *next < state.first {
            *next = state.first;
            return Next::Event(Err(Lagged));
        }
        let index = (*next - state.first) as usize;
        let Some(entry) = state.buffer.get_mut(index) else {
            return if state.closed {
                Next::End
            } else {
                Next::Nothing
            };
        };
        entry.unread -= 1;
        let event = entry.event.clone();
        *next += 1;
        if index == 0 && entry.unread == 0 {
            state.release_read();
        }
        Next::Event(Ok(event))
    }
}

impl FeedReceiver {
    /// The next event, [`Lagged`] once after events were lost for this subscriber, or
    /// `None` when the feed has ended and everything sent has been read.
    pub async fn recv(&mut self) -> Option<Result<RoomEvent, Lagged>> {
        loop {
            match self.shared.try_next(&mut self.next) {
                Next::Event(event) => return Some(event),
                Next::End => return None,
                Next::Nothing => {}
            }
            // Registered before looking again, so that an event sent in between wakes it.
            let sent = self.shared.sent.notified();
            tokio::pin!(sent);
            sent.as_mut().enable();
            match self.shared.try_next(&mut self.next) {
                Next::Event(event) => return Some(event),
                Next::End => return None,
                Next::Nothing => sent.await,
            }
        }
    }

    /// The subscriber as a stream of events, ending with the feed.
    pub fn into_stream(self) -> BoxStream<'static, Result<RoomEvent, Lagged>> {
        futures::stream::unfold(self, |mut receiver| async move {
            let event = receiver.recv().await?;
            Some((event, receiver))
        })
        .boxed()
    }
}

impl Drop for FeedReceiver {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.receivers -= 1;
        let from = self.next.saturating_sub(state.first) as usize;
        for entry in state.buffer.iter_mut().skip(from) {
            entry.unread -= 1;
        }
        state.release_read();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use uuid::Uuid;

    use super::*;
    use crate::room::Participant;

    fn joined(name: &str) -> RoomEvent {
        RoomEvent::MemberJoined(Participant {
            id: Uuid::new_v4(),
            name: name.into(),
        })
    }

    fn name(event: Option<Result<RoomEvent, Lagged>>) -> String {
        match event {
            Some(Ok(RoomEvent::MemberJoined(p))) => p.name,
            other => panic!("expected a member joining, got {other:?}"),
        }
    }

    fn held(feed: &RoomFeed) -> usize {
        feed.shared.lock().buffer.len()
    }

    #[tokio::test]
    async fn every_subscriber_reads_every_event_sent_after_it_subscribed_in_order() {
        let feed = RoomFeed::new(8);
        feed.send(joined("before anyone"));
        let mut ann = feed.subscribe();
        feed.send(joined("a"));
        let mut bob = feed.subscribe();
        feed.send(joined("b"));
        assert_eq!(name(ann.recv().await), "a");
        assert_eq!(name(ann.recv().await), "b");
        assert_eq!(name(bob.recv().await), "b");
        assert_eq!(held(&feed), 0, "what everyone has read is let go");
    }

    #[tokio::test]
    async fn a_waiting_subscriber_wakes_for_the_next_event() {
        let feed = RoomFeed::new(8);
        let mut ann = feed.subscribe();
        let reader = tokio::spawn(async move { name(ann.recv().await) });
        tokio::time::sleep(Duration::from_millis(20)).await;
        feed.send(joined("a"));
        let got = tokio::time::timeout(Duration::from_secs(5), reader).await;
        assert_eq!(got.expect("woken").unwrap(), "a");
    }

    #[tokio::test]
    async fn a_subscriber_behind_by_more_than_the_capacity_is_told_once_and_goes_on() {
        let feed = RoomFeed::new(2);
        let mut slow = feed.subscribe();
        let mut fast = feed.subscribe();
        for n in ["1", "2", "3", "4"] {
            feed.send(joined(n));
            assert_eq!(name(fast.recv().await), n);
        }
        assert_eq!(held(&feed), 2, "never more than the capacity");
        assert_eq!(slow.recv().await, Some(Err(Lagged)));
        assert_eq!(name(slow.recv().await), "3");
        assert_eq!(name(slow.recv().await), "4");
    }

    #[tokio::test]
    async fn the_feed_ends_after_what_was_sent_before_the_sender_went() {
        let feed = RoomFeed::new(8);
        let mut ann = feed.subscribe();
        feed.send(joined("last"));
        drop(feed);
        assert_eq!(name(ann.recv().await), "last");
        assert_eq!(ann.recv().await, None);
    }

    #[tokio::test]
    async fn a_subscriber_that_leaves_releases_what_it_had_not_read() {
        let feed = RoomFeed::new(64);
        let mut ann = feed.subscribe();
        let bob = feed.subscribe();
        for n in 0..40 {
            feed.send(joined(&n.to_string()));
        }
        for _ in 0..40 {
            ann.recv().await;
        }
        assert_eq!(
            held(&feed),
            40,
            "kept for the subscriber that has not read them"
        );
        drop(bob);
        assert_eq!(held(&feed), 0);
        assert_eq!(feed.receiver_count(), 1);
        assert!(
            feed.shared.lock().buffer.capacity() <= KEEP_CAPACITY,
            "the buffer shrinks back after a burst"
        );
    }
}

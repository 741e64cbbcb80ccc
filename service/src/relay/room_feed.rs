//! A room's live feed on this node: what the relay hands the room's local subscribers, in
//! the order it was sent, each event to every subscriber.
//!
//! A broadcast channel whose buffer holds only what some subscriber has not read yet and
//! grows with it, up to the capacity, instead of a ring of `capacity` slots allocated when
//! the room opens (`tokio::sync::broadcast`): an idle room costs a few hundred bytes
//! however large the capacity, where the ring cost ~150 KB per room at the default 4096.
//! A subscriber that falls more than `capacity` events behind has lost the oldest ones: it
//! is told once ([`Lagged`]) and goes on from the oldest event still kept.
//!
//! Subscribers are polled ([`FeedReceiver::poll_recv`]) by whatever sends their events on:
//! a waiting subscriber leaves its waker with the feed, and a send wakes them all, so an
//! event costs each subscriber one wake of the task that reads it and nothing else.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use futures::Stream;

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
    /// Tells this subscriber's waker apart in the feed's list of waiting ones.
    id: u64,
    /// The feed's wake round in which this subscriber's waker was left: it is still in the
    /// feed's list while that round lasts.
    waiting_in: Option<u64>,
    /// The waker it left.
    waker: Option<Waker>,
}

struct Shared {
    state: Mutex<State>,
    capacity: usize,
    receiver_ids: AtomicU64,
}

struct State {
    /// Events some subscriber has not read, oldest first.
    buffer: VecDeque<Entry>,
    /// Position of `buffer[0]`; the next event sent gets `first + buffer.len()`.
    first: u64,
    receivers: usize,
    closed: bool,
    /// The subscribers waiting for the next event (or the end), by receiver id.
    waiting: Vec<(u64, Waker)>,
    /// Counts the times `waiting` was emptied to wake them.
    wake_round: u64,
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

    /// Takes every waiting subscriber's waker, to be woken once the lock is released.
    fn take_waiting(&mut self) -> Vec<(u64, Waker)> {
        if self.waiting.is_empty() {
            return Vec::new();
        }
        self.wake_round += 1;
        let waiting = Vec::with_capacity(self.waiting.len());
        std::mem::replace(&mut self.waiting, waiting)
    }
}

fn wake_all(waiting: Vec<(u64, Waker)>) {
    for (_, waker) in waiting {
        waker.wake();
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
                    waiting: Vec::new(),
                    wake_round: 0,
                }),
                capacity: capacity.max(1),
                receiver_ids: AtomicU64::new(0),
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
        let waiting = state.take_waiting();
        drop(state);
        wake_all(waiting);
    }

    /// A subscriber that reads every event sent from now on.
    pub fn subscribe(&self) -> FeedReceiver {
        let mut state = self.shared.lock();
        state.receivers += 1;
        FeedReceiver {
            shared: self.shared.clone(),
            next: state.end(),
            id: self.shared.receiver_ids.fetch_add(1, Ordering::Relaxed),
            waiting_in: None,
            waker: None,
        }
    }

    pub fn receiver_count(&self) -> usize {
        self.shared.lock().receivers
    }
}

impl Drop for RoomFeed {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.closed = true;
        let waiting = state.take_waiting();
        drop(state);
        wake_all(waiting);
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("room feed lock poisoned")
    }
}

impl FeedReceiver {
    /// The next event, [`Lagged`] once after events were lost for this subscriber, or
    /// `None` when the feed has ended and everything sent has been read. When there is
    /// nothing yet, the feed wakes `cx` on the next event.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<RoomEvent, Lagged>>> {
        let mut state = self.shared.lock();
        if self.next < state.first {
            self.next = state.first;
            return Poll::Ready(Some(Err(Lagged)));
        }
        let index = (self.next - state.first) as usize;
        let Some(entry) = state.buffer.get_mut(index) else {
            if state.closed {
                return Poll::Ready(None);
            }
            // Left once per wake round (a send takes them all); again only for a new task.
            let round = state.wake_round;
            let left = self.waiting_in == Some(round);
            if left && self.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                return Poll::Pending;
            }
            if left {
                state.waiting.retain(|(id, _)| *id != self.id);
            }
            let waker = cx.waker().clone();
            state.waiting.push((self.id, waker.clone()));
            self.waker = Some(waker);
            self.waiting_in = Some(round);
            return Poll::Pending;
        };
        entry.unread -= 1;
        let event = entry.event.clone();
        self.next += 1;
        if index == 0 && entry.unread == 0 {
            state.release_read();
        }
        Poll::Ready(Some(Ok(event)))
    }

    /// The next event (see [`FeedReceiver::poll_recv`]).
    pub async fn recv(&mut self) -> Option<Result<RoomEvent, Lagged>> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }
}

impl Stream for FeedReceiver {
    type Item = Result<RoomEvent, Lagged>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_recv(cx)
    }
}

impl Drop for FeedReceiver {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.receivers -= 1;
        if self.waiting_in == Some(state.wake_round) {
            state.waiting.retain(|(id, _)| *id != self.id);
        }
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

    fn waiting(feed: &RoomFeed) -> usize {
        feed.shared.lock().waiting.len()
    }

    #[test]
    fn a_waiting_subscriber_is_woken_once_however_often_it_looks() {
        let feed = RoomFeed::new(8);
        let mut ann = feed.subscribe();
        let (waker, woken) = counting_waker();
        let mut cx = Context::from_waker(&waker);
        for _ in 0..100 {
            assert!(ann.poll_recv(&mut cx).is_pending());
        }
        assert_eq!(waiting(&feed), 1, "its waker is left once");
        feed.send(joined("a"));
        assert_eq!(woken.load(Ordering::SeqCst), 1);
        assert!(matches!(ann.poll_recv(&mut cx), Poll::Ready(Some(Ok(_)))));
    }

    #[test]
    fn subscribers_that_come_and_go_in_a_quiet_room_leave_nothing_behind() {
        let feed = RoomFeed::new(8);
        let (waker, _) = counting_waker();
        let mut cx = Context::from_waker(&waker);
        for _ in 0..100 {
            let mut visitor = feed.subscribe();
            assert!(visitor.poll_recv(&mut cx).is_pending());
        }
        assert_eq!(waiting(&feed), 0);
        assert_eq!(feed.receiver_count(), 0);
    }

    fn counting_waker() -> (Waker, Arc<AtomicU64>) {
        struct Count(Arc<AtomicU64>);
        impl std::task::Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let woken = Arc::new(AtomicU64::new(0));
        (Waker::from(Arc::new(Count(woken.clone()))), woken)
    }
}

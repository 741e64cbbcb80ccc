//! Lock-out for wrong group passcodes: after `max_failures` wrong passcodes for one group
//! from one client address, further attempts are refused until `window` has passed since
//! the first of them. Memory stays bounded: expired entries are swept as new ones arrive.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;
use uuid::Uuid;

/// Sweep expired entries once the table holds this many.
const SWEEP_AT: usize = 10_000;

type Key = (Uuid, IpAddr);

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
}

#[derive(Debug)]
pub struct PasscodeLimiter {
    max_failures: u32,
    window: Duration,
    entries: Mutex<HashMap<Key, Window>>,
}

impl PasscodeLimiter {
    pub fn new(max_failures: u32, window: Duration) -> Self {
        Self {
            max_failures,
            window,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(wait)` while `peer` is locked out of `group_id`, with the time left.
    pub fn check(&self, group_id: Uuid, peer: IpAddr) -> Result<(), Duration> {
        let now = Instant::now();
        let mut entries = self.entries.lock().expect("limiter lock poisoned");
        match entries.get(&(group_id, peer)).copied() {
            Some(w) if now >= w.started + self.window => {
                entries.remove(&(group_id, peer));
                Ok(())
            }
            Some(w) if w.failures >= self.max_failures => Err(w.started + self.window - now),
            _ => Ok(()),
        }
    }

    /// Counts one wrong passcode.
    pub fn record_failure(&self, group_id: Uuid, peer: IpAddr) {
        let now = Instant::now();
        let mut entries = self.entries.lock().expect("limiter lock poisoned");
        if entries.len() >= SWEEP_AT {
            let window = self.window;
            entries.retain(|_, w| now < w.started + window);
        }
        let entry = entries.entry((group_id, peer)).or_insert(Window {
            started: now,
            failures: 0,
        });
        if now >= entry.started + self.window {
            *entry = Window {
                started: now,
                failures: 0,
            };
        }
        entry.failures += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const PEER: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
    const OTHER_PEER: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));

    #[tokio::test(start_paused = true)]
    async fn locks_out_after_max_failures_until_the_window_passes() {
        let limiter = PasscodeLimiter::new(5, Duration::from_secs(300));
        let group = Uuid::new_v4();
        for _ in 0..5 {
            assert!(limiter.check(group, PEER).is_ok());
            limiter.record_failure(group, PEER);
        }
        let wait = limiter.check(group, PEER).unwrap_err();
        assert!(wait <= Duration::from_secs(300));

        // Other groups and other peers are unaffected.
        assert!(limiter.check(Uuid::new_v4(), PEER).is_ok());
        assert!(limiter.check(group, OTHER_PEER).is_ok());

        tokio::time::advance(Duration::from_secs(299)).await;
        assert!(limiter.check(group, PEER).is_err());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(limiter.check(group, PEER).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn failures_spread_over_more_than_a_window_do_not_lock_out() {
        let limiter = PasscodeLimiter::new(5, Duration::from_secs(300));
        let group = Uuid::new_v4();
        for _ in 0..4 {
            limiter.record_failure(group, PEER);
        }
        tokio::time::advance(Duration::from_secs(301)).await;
        limiter.record_failure(group, PEER);
        assert!(limiter.check(group, PEER).is_ok());
    }
}

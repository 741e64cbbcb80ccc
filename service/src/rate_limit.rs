//! Rate limits. [`PasscodeGuard`] locks a client out of a group after too many wrong
//! passcodes: in memory on one node ([`PasscodeLimiter`], memory bounded by sweeping idle
//! entries) or shared by a cluster through Redis ([`RedisPasscodeLimiter`]), so that spreading
//! guesses over the nodes gains nothing. [`TokenBuckets`] limits how often each key (e.g. a
//! member in a room) may act on one node.

use std::collections::HashMap;
use std::hash::Hash;
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

/// The wrong-passcode lock-out, wherever its counts live.
#[async_trait::async_trait]
pub trait PasscodeGuard: Send + Sync + 'static {
    /// `Err(wait)` while `peer` is locked out of `group_id`, with the time left.
    async fn check(&self, group_id: Uuid, peer: IpAddr) -> Result<(), Duration>;

    /// Counts one wrong passcode.
    async fn record_failure(&self, group_id: Uuid, peer: IpAddr);
}

#[async_trait::async_trait]
impl PasscodeGuard for PasscodeLimiter {
    async fn check(&self, group_id: Uuid, peer: IpAddr) -> Result<(), Duration> {
        PasscodeLimiter::check(self, group_id, peer)
    }

    async fn record_failure(&self, group_id: Uuid, peer: IpAddr) {
        PasscodeLimiter::record_failure(self, group_id, peer)
    }
}

/// The lock-out shared by every node through Redis: one counter per (group, client) that
/// expires `window` after the first failure. If Redis cannot be reached the check lets the
/// attempt through (and says so in the log) rather than locking everyone out.
pub struct RedisPasscodeLimiter {
    client: fred::prelude::Client,
    prefix: String,
    max_failures: u32,
    window: Duration,
}

/// Counts a failure, starting the window on the first one.
const RECORD_FAILURE: &str = r#"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n
"#;

impl RedisPasscodeLimiter {
    pub async fn connect(
        url: &str,
        prefix: &str,
        max_failures: u32,
        window: Duration,
    ) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        use fred::prelude::{Builder, ClientLike, Config};
        let config = Config::from_url(url).context("parsing the redis url")?;
        let client = Builder::from_config(config)
            .with_performance_config(|p| p.default_command_timeout = Duration::from_secs(2))
            .build()
            .context("building the redis client")?;
        client
            .init()
            .await
            .context("connecting to redis for the passcode lock-out")?;
        Ok(Self {
            client,
            prefix: prefix.to_owned(),
            max_failures,
            window,
        })
    }

    fn key(&self, group_id: Uuid, peer: IpAddr) -> String {
        format!("{}:passcode-failures:{group_id}:{peer}", self.prefix)
    }
}

#[async_trait::async_trait]
impl PasscodeGuard for RedisPasscodeLimiter {
    async fn check(&self, group_id: Uuid, peer: IpAddr) -> Result<(), Duration> {
        use fred::prelude::KeysInterface;
        let key = self.key(group_id, peer);
        let failures: Option<u64> = match self.client.get(&key).await {
            Ok(failures) => failures,
            Err(err) => {
                tracing::warn!(error = %err, "passcode lock-out unavailable; allowing the attempt");
                return Ok(());
            }
        };
        if failures.unwrap_or(0) < u64::from(self.max_failures) {
            return Ok(());
        }
        match self.client.pttl::<i64, _>(&key).await {
            Ok(ms) if ms > 0 => Err(Duration::from_millis(ms as u64)),
            _ => Ok(()),
        }
    }

    async fn record_failure(&self, group_id: Uuid, peer: IpAddr) {
        use fred::prelude::LuaInterface;
        let recorded: Result<u64, _> = self
            .client
            .eval(
                RECORD_FAILURE,
                vec![self.key(group_id, peer)],
                vec![self.window.as_millis().to_string()],
            )
            .await;
        if let Err(err) = recorded {
            tracing::warn!(error = %err, "could not count a wrong passcode");
        }
    }
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

/// Token buckets per key: each key may act `burst` times at once and `rate` times per
/// second sustained.
#[derive(Debug)]
pub struct TokenBuckets<K> {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<K, (f64, Instant)>>,
}

impl<K: Eq + Hash + Clone> TokenBuckets<K> {
    pub fn new(rate_per_sec: f64, burst: u32) -> Self {
        Self {
            rate: rate_per_sec.max(f64::MIN_POSITIVE),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `key`; false when the key is over its limit.
    pub fn try_acquire(&self, key: &K) -> bool {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().expect("limiter lock poisoned");
        if buckets.len() >= SWEEP_AT {
            // A bucket idle long enough to be full again carries no state worth keeping.
            let refill = Duration::from_secs_f64(self.burst / self.rate);
            buckets.retain(|_, (_, at)| now.duration_since(*at) < refill);
        }
        let (tokens, at) = buckets.entry(key.clone()).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
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

    #[tokio::test(start_paused = true)]
    async fn token_buckets_allow_a_burst_then_the_sustained_rate() {
        let limiter = TokenBuckets::new(20.0, 40);
        let key = "ann";
        assert_eq!((0..50).filter(|_| limiter.try_acquire(&key)).count(), 40);
        assert!(
            limiter.try_acquire(&"bob"),
            "other keys have their own bucket"
        );
        tokio::time::advance(Duration::from_millis(500)).await;
        assert_eq!((0..50).filter(|_| limiter.try_acquire(&key)).count(), 10);
    }
}

//! Rate limits. An [`AttemptGuard`] counts failed attempts per key (a passcode guess per
//! group and client, a sign-in per account and per client) and locks the key out once it has
//! `max_failures` within a window: in memory on one node ([`AttemptLimiter`], memory bounded
//! by sweeping idle entries) or shared by a cluster through Redis ([`RedisAttemptLimiter`]),
//! so that spreading guesses over the nodes gains nothing.
//!
//! Check-then-act is closed by counting attempts *in flight* as well as failures: an attempt
//! is admitted only while `failures + in_flight < max_failures`, so however many arrive at
//! once, no more than the limit can ever be checked. An attempt that would exceed it while
//! others are still being checked waits for them (a right passcode costs no allowance, so a
//! class joining at once from one address is only slowed, never refused); once the failures
//! alone reach the limit, the key is locked out. [`TokenBuckets`] limits how often each key
//! (e.g. a member in a room) may act on one node.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// Sweep expired entries once the table holds this many.
const SWEEP_AT: usize = 10_000;
/// How long an attempt waits for others on its key to finish before it is refused.
const MAX_WAIT: Duration = Duration::from_secs(5);
/// How soon a waiting attempt first looks again, and the longest it waits between looks.
const POLL: Duration = Duration::from_millis(10);
const MAX_POLL: Duration = Duration::from_millis(200);

/// What [`AttemptGuard::try_begin`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// The attempt is in flight: check the secret, then finish it.
    Admitted,
    /// Attempts in flight could still use up the allowance: look again shortly.
    Wait,
    /// The failures alone reached the limit; it lifts after this long.
    LockedOut(Duration),
}

/// A failed-attempt lock-out, wherever its counts live.
#[async_trait::async_trait]
pub trait AttemptGuard: Send + Sync + 'static {
    /// Admits one attempt on `key` if failures and attempts in flight leave room, in one
    /// atomic step.
    async fn try_begin(&self, key: &str) -> Admission;

    /// The attempt admitted on `key` is over; `failed` counts it against the key.
    async fn finish(&self, key: &str, failed: bool);
}

/// Begins an attempt on `key`, waiting (up to a few seconds) while attempts in flight could
/// still use up the allowance. `Err(wait)` while the key is locked out (or stays contended).
/// The attempt counts as failed unless [`Attempt::succeeded`] is called — also when the
/// caller gives up half-way (the client cancelled the request).
pub async fn begin(guard: &Arc<dyn AttemptGuard>, key: &str) -> Result<Attempt, Duration> {
    let deadline = Instant::now() + MAX_WAIT;
    let mut poll = POLL;
    loop {
        match guard.try_begin(key).await {
            Admission::Admitted => {
                return Ok(Attempt {
                    guard: guard.clone(),
                    key: key.to_owned(),
                    done: false,
                });
            }
            Admission::LockedOut(wait) => return Err(wait),
            Admission::Wait if Instant::now() >= deadline => return Err(MAX_WAIT),
            Admission::Wait => {
                // Backing off: many waiting callers must not hammer a shared Redis.
                tokio::time::sleep(poll).await;
                poll = (poll * 2).min(MAX_POLL);
            }
        }
    }
}

/// An attempt in flight. Dropped without [`Attempt::succeeded`], it counts as a failure.
pub struct Attempt {
    guard: Arc<dyn AttemptGuard>,
    key: String,
    done: bool,
}

impl Attempt {
    /// The secret was right: the attempt costs nothing.
    pub async fn succeeded(mut self) {
        self.done = true;
        self.guard.finish(&self.key, false).await;
    }

    /// The secret was wrong.
    pub async fn failed(mut self) {
        self.done = true;
        self.guard.finish(&self.key, true).await;
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if !self.done {
            let (guard, key) = (self.guard.clone(), std::mem::take(&mut self.key));
            tokio::spawn(async move { guard.finish(&key, true).await });
        }
    }
}

/// One kind of attempt with its own limit, e.g. passcode guesses.
pub struct AttemptLimit {
    pub max_failures: u32,
    pub window: Duration,
}

/// The lock-out shared by every node through Redis: per key, a failure counter that expires
/// `window` after the first failure, and an in-flight counter. If Redis cannot be reached
/// the attempt is let through (and the log says so) rather than locking everyone out.
pub struct RedisAttemptLimiter {
    client: fred::prelude::Client,
    prefix: String,
    max_failures: u32,
    window: Duration,
}

/// KEYS: failures, in flight. ARGV: max failures, in-flight expiry (ms). Returns 1 when
/// admitted, 0 to wait, or minus the lock-out's time left (ms).
const TRY_BEGIN: &str = include_str!("rate_limit/try_begin.lua");

/// KEYS: failures, in flight. ARGV: 1 if the attempt failed, window (ms).
const FINISH: &str = include_str!("rate_limit/finish.lua");

/// An in-flight entry left by a node that died mid-attempt lapses after this long.
const IN_FLIGHT_TTL: Duration = Duration::from_secs(30);

impl RedisAttemptLimiter {
    /// `name` tells this limiter's keys from the others' (e.g. `passcode-failures`).
    pub async fn connect(
        url: &str,
        prefix: &str,
        name: &str,
        limit: AttemptLimit,
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
            .with_context(|| format!("connecting to redis for the {name} lock-out"))?;
        Ok(Self {
            client,
            prefix: format!("{prefix}:{name}"),
            max_failures: limit.max_failures,
            window: limit.window,
        })
    }

    /// The failure counter and the in-flight counter of `key`, under distinct prefixes so
    /// that no client-chosen key (an email) can name another key's counter.
    fn keys(&self, key: &str) -> Vec<String> {
        vec![
            format!("{}:failures:{key}", self.prefix),
            format!("{}:in-flight:{key}", self.prefix),
        ]
    }
}

#[async_trait::async_trait]
impl AttemptGuard for RedisAttemptLimiter {
    async fn try_begin(&self, key: &str) -> Admission {
        use fred::prelude::LuaInterface;
        let admitted: Result<i64, _> = self
            .client
            .eval(
                TRY_BEGIN,
                self.keys(key),
                vec![
                    self.max_failures.to_string(),
                    IN_FLIGHT_TTL.as_millis().to_string(),
                ],
            )
            .await;
        match admitted {
            Ok(1) => Admission::Admitted,
            Ok(n) if n < 0 => Admission::LockedOut(Duration::from_millis(n.unsigned_abs())),
            Ok(_) => Admission::Wait,
            Err(err) => {
                tracing::warn!(error = %err, "attempt lock-out unavailable; allowing the attempt");
                Admission::Admitted
            }
        }
    }

    async fn finish(&self, key: &str, failed: bool) {
        use fred::prelude::LuaInterface;
        let finished: Result<i64, _> = self
            .client
            .eval(
                FINISH,
                self.keys(key),
                vec![
                    u8::from(failed).to_string(),
                    self.window.as_millis().to_string(),
                ],
            )
            .await;
        if let Err(err) = finished {
            tracing::warn!(error = %err, "could not record the end of an attempt");
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
    in_flight: u32,
}

/// The lock-out on one node.
#[derive(Debug)]
pub struct AttemptLimiter {
    max_failures: u32,
    window: Duration,
    entries: Mutex<HashMap<String, Window>>,
}

impl AttemptLimiter {
    pub fn new(limit: AttemptLimit) -> Self {
        Self {
            max_failures: limit.max_failures,
            window: limit.window,
            entries: Mutex::new(HashMap::new()),
        }
    }
}

#[async_trait::async_trait]
impl AttemptGuard for AttemptLimiter {
    async fn try_begin(&self, key: &str) -> Admission {
        let now = Instant::now();
        let mut entries = self.entries.lock().expect("limiter lock poisoned");
        if entries.len() >= SWEEP_AT {
            let window = self.window;
            entries.retain(|_, w| w.in_flight > 0 || (w.failures > 0 && now < w.started + window));
        }
        let entry = entries.entry(key.to_owned()).or_insert(Window {
            started: now,
            failures: 0,
            in_flight: 0,
        });
        if now >= entry.started + self.window {
            entry.started = now;
            entry.failures = 0;
        }
        if entry.failures >= self.max_failures {
            return Admission::LockedOut(entry.started + self.window - now);
        }
        if entry.failures + entry.in_flight >= self.max_failures {
            return Admission::Wait;
        }
        entry.in_flight += 1;
        Admission::Admitted
    }

    async fn finish(&self, key: &str, failed: bool) {
        let now = Instant::now();
        let mut entries = self.entries.lock().expect("limiter lock poisoned");
        if let Some(entry) = entries.get_mut(key) {
            entry.in_flight = entry.in_flight.saturating_sub(1);
            if failed {
                if entry.failures == 0 {
                    entry.started = now;
                }
                entry.failures += 1;
            }
            // Nothing to remember: keys chosen by clients (emails) must not pile up.
            if entry.failures == 0 && entry.in_flight == 0 {
                entries.remove(key);
            }
        }
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

    fn limiter() -> Arc<dyn AttemptGuard> {
        Arc::new(AttemptLimiter::new(AttemptLimit {
            max_failures: 5,
            window: Duration::from_secs(300),
        }))
    }

    async fn fail(guard: &Arc<dyn AttemptGuard>, key: &str) {
        begin(guard, key).await.unwrap().failed().await;
    }

    #[tokio::test(start_paused = true)]
    async fn locks_out_after_max_failures_until_the_window_passes() {
        let guard = limiter();
        for _ in 0..5 {
            fail(&guard, "g:peer").await;
        }
        let wait = begin(&guard, "g:peer").await.err().unwrap();
        assert!(wait <= Duration::from_secs(300));

        // Other keys are unaffected.
        assert!(begin(&guard, "g:other-peer").await.is_ok());
        assert!(begin(&guard, "other-group:peer").await.is_ok());

        tokio::time::advance(Duration::from_secs(299)).await;
        assert!(begin(&guard, "g:peer").await.is_err());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(begin(&guard, "g:peer").await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn no_more_attempts_than_the_limit_are_ever_in_flight() {
        let guard = limiter();
        let mut held = Vec::new();
        for _ in 0..5 {
            held.push(begin(&guard, "g:peer").await.unwrap());
        }
        assert_eq!(guard.try_begin("g:peer").await, Admission::Wait);
        // A right answer frees its place for the next attempt.
        held.pop().unwrap().succeeded().await;
        assert_eq!(guard.try_begin("g:peer").await, Admission::Admitted);
        // Wrong answers use the allowance up; then the key is locked out.
        for attempt in held {
            attempt.failed().await;
        }
        guard.finish("g:peer", true).await;
        assert!(matches!(
            guard.try_begin("g:peer").await,
            Admission::LockedOut(_)
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn an_abandoned_attempt_counts_as_failed() {
        let guard = limiter();
        for _ in 0..5 {
            drop(begin(&guard, "g:peer").await.unwrap());
            tokio::task::yield_now().await;
        }
        assert!(begin(&guard, "g:peer").await.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn right_answers_never_lock_out() {
        let guard = limiter();
        for _ in 0..20 {
            begin(&guard, "g:peer").await.unwrap().succeeded().await;
        }
        assert!(begin(&guard, "g:peer").await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn failures_spread_over_more_than_a_window_do_not_lock_out() {
        let guard = limiter();
        for _ in 0..4 {
            fail(&guard, "g:peer").await;
        }
        tokio::time::advance(Duration::from_secs(301)).await;
        fail(&guard, "g:peer").await;
        assert!(begin(&guard, "g:peer").await.is_ok());
    }

    /// The behaviours both guards share, against real concurrency (not paused time).
    mod conformance {
        use super::*;

        pub async fn concurrent_attempts_never_exceed_the_limit(guard: Arc<dyn AttemptGuard>) {
            let key = format!("race:{}", uuid::Uuid::new_v4());
            let attempts = (0..40).map(|_| {
                let (guard, key) = (guard.clone(), key.clone());
                tokio::spawn(async move {
                    match begin(&guard, &key).await {
                        Ok(attempt) => {
                            // The secret is being checked (argon2 takes a while).
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            attempt.failed().await;
                            true
                        }
                        Err(_) => false,
                    }
                })
            });
            let checked = futures::future::join_all(attempts)
                .await
                .into_iter()
                .filter(|r| *r.as_ref().unwrap())
                .count();
            assert_eq!(checked, 5, "exactly the limit is ever checked");
        }

        pub async fn right_answers_in_a_crowd_all_get_through(guard: Arc<dyn AttemptGuard>) {
            let key = format!("crowd:{}", uuid::Uuid::new_v4());
            let attempts = (0..30).map(|_| {
                let (guard, key) = (guard.clone(), key.clone());
                tokio::spawn(async move {
                    let attempt = begin(&guard, &key).await.ok()?;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    attempt.succeeded().await;
                    Some(())
                })
            });
            let admitted = futures::future::join_all(attempts)
                .await
                .into_iter()
                .filter(|r| r.as_ref().unwrap().is_some())
                .count();
            assert_eq!(
                admitted, 30,
                "right answers wait their turn, none is refused"
            );
        }
    }

    macro_rules! attempt_guard_suite {
        ($module:ident, $make:expr) => {
            mod $module {
                use super::*;

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn concurrent_attempts_never_exceed_the_limit() {
                    conformance::concurrent_attempts_never_exceed_the_limit($make.await).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn right_answers_in_a_crowd_all_get_through() {
                    conformance::right_answers_in_a_crowd_all_get_through($make.await).await;
                }
            }
        };
    }

    fn five_in_five_minutes() -> AttemptLimit {
        AttemptLimit {
            max_failures: 5,
            window: Duration::from_secs(300),
        }
    }

    attempt_guard_suite!(in_memory, async {
        Arc::new(AttemptLimiter::new(five_in_five_minutes())) as Arc<dyn AttemptGuard>
    });

    attempt_guard_suite!(redis, async {
        let url = std::env::var("QUICKCHAT_TEST_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
        let prefix = format!("quickchat-test:{}", uuid::Uuid::new_v4().simple());
        Arc::new(
            RedisAttemptLimiter::connect(&url, &prefix, "attempts", five_in_five_minutes())
                .await
                .expect("redis at QUICKCHAT_TEST_REDIS_URL"),
        ) as Arc<dyn AttemptGuard>
    });

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

//! The takeover watchdog: notices partitions that no live persister reads, and makes this
//! persister's consumer rejoin the group so that they are assigned again.
//!
//! When a persister dies without leaving the group (SIGKILL, a lost machine), the broker
//! expires it after the session timeout and the survivors rebalance. Apache Kafka then hands
//! its partitions to them. tansu 0.6, the broker of the tests, does not: it drops the dead
//! member in a heartbeat but keeps the group's generation and stored assignment, so the
//! survivors' JoinGroup/SyncGroup give each its old partitions back and the dead member's
//! stay with nobody (see the README, "A node that dies for good"). Its records are acked and
//! in Kafka, and would reach the database only once another persister joins.
//!
//! So every second the [`Watchdog`] is shown, for each partition of the topic, the group's
//! committed offset, the partition's end and whether this consumer reads it. A partition with
//! uncommitted records whose committed offset has not moved for longer than
//! [`KafkaSettings::takeover_bound`] has no working owner. If this consumer does not
//! read it and its own partitions are not stuck too (a database outage stalls every
//! persister alike, and no rebalance helps), the watchdog asks for a rejoin: leaving the
//! group starts a new generation on any broker, in which the leader's assignment of the live
//! members is the one stored. Rejoins back off (the bound, doubling up to
//! [`MAX_BACKOFF_FACTOR`] times it) while the partitions stay unowned.
//!
//! On a broker that reassigns a dead member's partitions by itself the partitions move
//! within the bound, and the watchdog never acts.
//!
//! [`KafkaSettings::takeover_bound`]: super::KafkaSettings::takeover_bound

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use super::lag::{Measured, Measurement};

/// The longest wait between rejoins, in takeover bounds.
const MAX_BACKOFF_FACTOR: u32 = 8;

/// See the [module documentation](self).
#[derive(Debug)]
pub(super) struct Watchdog {
    bound: Duration,
    progress: BTreeMap<i32, Progress>,
    last_rejoin: Option<Instant>,
    /// How long after the last rejoin the next one may come.
    backoff: Duration,
}

/// What the watchdog knows of one partition.
#[derive(Debug)]
struct Progress {
    committed: i64,
    lag: i64,
    assigned: bool,
    /// Since when the partition has made no progress: its committed offset last moved, or
    /// it was last caught up.
    stuck_since: Instant,
}

/// A partition whose uncommitted records have waited longer than the bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Stalled {
    pub partition: i32,
    pub lag: i64,
    pub stuck_for: Duration,
}

/// What the watchdog concludes from a measurement.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Verdict {
    /// Stalled partitions this consumer does not read: nobody does.
    pub unowned: Vec<Stalled>,
    /// Stalled partitions this consumer reads: it cannot store them either.
    pub stuck_here: Vec<Stalled>,
    /// Rejoin the group now.
    pub rejoin: bool,
}

impl Watchdog {
    pub(super) fn new(bound: Duration) -> Self {
        Self {
            bound,
            progress: BTreeMap::new(),
            last_rejoin: None,
            backoff: bound,
        }
    }

    /// How long a partition may go without progress before it counts as stalled.
    pub(super) fn bound(&self) -> Duration {
        self.bound
    }

    /// Takes in the partitions as measured at `now`. A partition Kafka did not answer for
    /// keeps what was known of it (its assignment updated).
    pub(super) fn observe(&mut self, now: Instant, measurement: &Measurement) -> Verdict {
        self.progress
            .retain(|partition, _| measurement.contains_key(partition));
        for (&partition, &Measured { assigned, offsets }) in measurement {
            let known = self.progress.get_mut(&partition);
            match (known, offsets) {
                (Some(known), Some(offsets)) => {
                    if offsets.committed != known.committed || offsets.lag() == 0 {
                        known.stuck_since = now;
                    }
                    known.committed = offsets.committed;
                    known.lag = offsets.lag();
                    known.assigned = assigned;
                }
                (Some(known), None) => known.assigned = assigned,
                (None, Some(offsets)) => {
                    self.progress.insert(
                        partition,
                        Progress {
                            committed: offsets.committed,
                            lag: offsets.lag(),
                            assigned,
                            stuck_since: now,
                        },
                    );
                }
                (None, None) => {}
            }
        }

        let mut verdict = Verdict::default();
        for (&partition, known) in &self.progress {
            let stuck_for = now.saturating_duration_since(known.stuck_since);
            if known.lag == 0 || stuck_for <= self.bound {
                continue;
            }
            let stalled = Stalled {
                partition,
                lag: known.lag,
                stuck_for,
            };
            match known.assigned {
                true => verdict.stuck_here.push(stalled),
                false => verdict.unowned.push(stalled),
            }
        }
        if verdict.unowned.is_empty() {
            self.backoff = self.bound;
            return verdict;
        }
        let due = self
            .last_rejoin
            .is_none_or(|last| now.saturating_duration_since(last) >= self.backoff);
        if due && verdict.stuck_here.is_empty() {
            verdict.rejoin = true;
            if self.last_rejoin.is_some() {
                self.backoff = (self.backoff * 2).min(self.bound * MAX_BACKOFF_FACTOR);
            }
            self.last_rejoin = Some(now);
        }
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::super::lag::Offsets;
    use super::*;

    const BOUND: Duration = Duration::from_secs(10);

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    /// Partitions as `(partition, assigned here, committed, end)`.
    fn measured(partitions: &[(i32, bool, i64, i64)]) -> Measurement {
        partitions
            .iter()
            .map(|&(partition, assigned, committed, end)| {
                let offsets = Some(Offsets { committed, end });
                (partition, Measured { assigned, offsets })
            })
            .collect()
    }

    fn unowned(verdict: &Verdict) -> Vec<i32> {
        verdict.unowned.iter().map(|s| s.partition).collect()
    }

    #[test]
    fn a_partition_nobody_commits_while_records_wait_is_taken_over_after_the_bound() {
        let mut watchdog = Watchdog::new(BOUND);
        let start = Instant::now();
        // Partition 1 is someone else's; its owner died with 5 records uncommitted.
        let stuck = measured(&[(0, true, 10, 10), (1, false, 4, 9)]);
        for s in 0..=10 {
            let verdict = watchdog.observe(start + secs(s), &stuck);
            assert_eq!(verdict, Verdict::default(), "after {s} s");
        }
        let verdict = watchdog.observe(start + secs(11), &stuck);
        assert_eq!(unowned(&verdict), [1]);
        assert_eq!(verdict.unowned[0].lag, 5);
        assert!(verdict.rejoin);
        assert!(verdict.stuck_here.is_empty());
    }

    #[test]
    fn partitions_that_commit_or_are_caught_up_are_never_stalled() {
        let mut watchdog = Watchdog::new(BOUND);
        let start = Instant::now();
        for s in 0..60 {
            let committed = 100 + s as i64;
            // Partition 0 always has records waiting, but commits every second; partition
            // 1 has nothing waiting.
            let now = measured(&[(0, false, committed, committed + 20), (1, false, 7, 7)]);
            assert_eq!(watchdog.observe(start + secs(s), &now), Verdict::default());
        }
    }

    #[test]
    fn a_stall_of_this_consumers_own_partitions_too_is_not_helped_by_a_rejoin() {
        let mut watchdog = Watchdog::new(BOUND);
        let start = Instant::now();
        // The database is down: nobody commits, here or there.
        let outage = measured(&[(0, true, 10, 30), (1, false, 4, 9)]);
        watchdog.observe(start, &outage);
        let verdict = watchdog.observe(start + secs(11), &outage);
        assert_eq!(unowned(&verdict), [1]);
        assert_eq!(verdict.stuck_here.len(), 1);
        assert!(!verdict.rejoin);
    }

    #[test]
    fn rejoins_back_off_while_the_partitions_stay_unowned_and_start_over_once_owned() {
        let mut watchdog = Watchdog::new(BOUND);
        let start = Instant::now();
        let stuck = measured(&[(1, false, 4, 9)]);
        let rejoins = |watchdog: &mut Watchdog, from: u64, to: u64| -> Vec<u64> {
            (from..to)
                .filter(|&s| watchdog.observe(start + secs(s), &stuck).rejoin)
                .collect()
        };
        // After the bound; then a bound later; then two, four, eight bounds; then every
        // eight.
        assert_eq!(
            rejoins(&mut watchdog, 0, 400),
            [11, 21, 41, 81, 161, 241, 321]
        );

        // Taken over and caught up: a later stall is met after one bound again.
        let caught_up = measured(&[(1, true, 9, 9)]);
        watchdog.observe(start + secs(400), &caught_up);
        let stuck_again = measured(&[(1, false, 9, 12)]);
        let later: Vec<u64> = (401..430)
            .filter(|&s| watchdog.observe(start + secs(s), &stuck_again).rejoin)
            .collect();
        assert_eq!(later, [411]);
    }

    #[test]
    fn a_partition_kafka_did_not_answer_for_keeps_its_stall_and_its_new_assignment() {
        let mut watchdog = Watchdog::new(BOUND);
        let start = Instant::now();
        watchdog.observe(start, &measured(&[(1, false, 4, 9)]));
        let unanswered: Measurement = [(
            1,
            Measured {
                assigned: false,
                offsets: None,
            },
        )]
        .into();
        let verdict = watchdog.observe(start + secs(11), &unanswered);
        assert_eq!(unowned(&verdict), [1]);

        // Assigned here now (the rejoin worked): stalled, but ours to store.
        let ours: Measurement = [(
            1,
            Measured {
                assigned: true,
                offsets: None,
            },
        )]
        .into();
        let verdict = watchdog.observe(start + secs(12), &ours);
        assert!(verdict.unowned.is_empty());
        assert_eq!(verdict.stuck_here.len(), 1);
    }
}

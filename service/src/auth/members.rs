//! Whether a member token still stands: its member exists (did not leave, was not removed)
//! and its version is the member's `token_version` (the group's member tokens were not
//! revoked since it was issued).
//!
//! Every call with a member token asks [`MemberCheck::check`], which answers from a short
//! cache (at most [`CACHE_TTL`] old) so that a busy room does not read the store on every
//! send. A change reaches every node's cache at once through the relay
//! (`RoomRelay::membership_changes`, followed by [`MemberCheck::follow`]); the ttl only
//! bounds how long a change whose event was lost (a relay outage) goes unseen. Opening a
//! room stream asks [`MemberCheck::check_fresh`] after subscribing to the room, so a
//! removal either is seen by that read or reaches the new stream as an event.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::broadcast::{self, error::RecvError};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::MemberPrincipal;
use crate::error::ApiError;
use crate::room::MembershipChange;
use crate::store::Store;

/// Longest a cached answer is used.
pub const CACHE_TTL: Duration = Duration::from_secs(1);
/// Entries kept before expired ones are swept out.
const SWEEP_AT: usize = 10_000;

#[derive(Clone, Copy)]
struct Cached {
    group_id: Uuid,
    standing: Standing,
    at: Instant,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Standing {
    /// A member, whose tokens of this version stand.
    Version(i64),
    /// No such member: they left or were removed (for good: member ids are never reused).
    Gone,
    /// The group itself was deleted.
    GroupGone,
}

pub struct MemberCheck {
    store: Store,
    cache: Mutex<HashMap<Uuid, Cached>>,
}

/// The error for a member token that no longer stands.
pub fn gone() -> ApiError {
    ApiError::permission_denied(
        "You are no longer a member of this group: you left or were removed.",
    )
}

pub fn revoked() -> ApiError {
    ApiError::unauthenticated(
        "This member token was revoked; join the group again with its passcode.",
    )
}

impl MemberCheck {
    pub fn new(store: Store) -> Self {
        Self {
            store,
            cache: Mutex::default(),
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Cached>> {
        self.cache.lock().expect("member cache lock poisoned")
    }

    /// Whether `member`'s token stands, from the cache when it is fresh.
    pub async fn check(&self, member: &MemberPrincipal) -> Result<(), ApiError> {
        let cached = self.cache().get(&member.member_id).copied();
        match cached {
            Some(entry) if entry.at.elapsed() < CACHE_TTL => match verdict(member, entry) {
                // A token newer than the cached version: the member rejoined after a
                // revocation this node has not read yet.
                Err(_) if matches!(entry.standing, Standing::Version(v) if member.version > v) => {
                    self.check_fresh(member).await
                }
                verdict => verdict,
            },
            _ => self.check_fresh(member).await,
        }
    }

    /// Whether `member`'s token stands, read from the store.
    pub async fn check_fresh(&self, member: &MemberPrincipal) -> Result<(), ApiError> {
        let row = self.store.member(member.member_id).await?;
        let standing = match &row {
            Some(m) => Standing::Version(m.token_version),
            None if self.store.group(member.group_id).await?.is_none() => Standing::GroupGone,
            None => Standing::Gone,
        };
        let entry = Cached {
            group_id: row.as_ref().map_or(member.group_id, |m| m.group_id),
            standing,
            at: Instant::now(),
        };
        let mut cache = self.cache();
        if cache.len() >= SWEEP_AT {
            cache.retain(|_, e| e.at.elapsed() < CACHE_TTL);
        }
        cache.insert(member.member_id, entry);
        drop(cache);
        verdict(member, entry)
    }

    /// Forgets what this node cached about the members a change concerns.
    pub fn forget(&self, change: MembershipChange) {
        match change {
            MembershipChange::Removed { member_id, .. } => {
                self.cache().remove(&member_id);
            }
            MembershipChange::Revoked { group_id } => {
                self.cache().retain(|_, e| e.group_id != group_id);
            }
        }
    }

    /// Applies every membership change the relay hears until `shutdown`.
    pub async fn follow(
        &self,
        mut changes: broadcast::Receiver<MembershipChange>,
        shutdown: CancellationToken,
    ) {
        loop {
            let change = tokio::select! {
                _ = shutdown.cancelled() => return,
                change = changes.recv() => change,
            };
            match change {
                Ok(change) => self.forget(change),
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "membership changes missed; member cache cleared");
                    self.cache().clear();
                }
                Err(RecvError::Closed) => return,
            }
        }
    }
}

fn verdict(member: &MemberPrincipal, entry: Cached) -> Result<(), ApiError> {
    match entry.standing {
        _ if entry.group_id != member.group_id => Err(gone()),
        Standing::Version(version) if version == member.version => Ok(()),
        Standing::Version(_) => Err(revoked()),
        Standing::Gone => Err(gone()),
        Standing::GroupGone => Err(ApiError::not_found("Group not found.")),
    }
}

//! Bounds on what one caller can make the server do, enforced at the API edge.

use std::time::Duration;

/// Bounds on what one caller can make the server do. Every one has a flag; the defaults
/// are safe for a public server (SECURITY.md says what each protects).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Wrong passcodes allowed per group and client address within `passcode_window`.
    pub passcode_max_failures: u32,
    pub passcode_window: Duration,
    /// Failed sign-ins allowed per account within `sign_in_window`.
    pub sign_in_max_failures_per_account: u32,
    /// Failed sign-ins allowed per client address (any account) within `sign_in_window`.
    pub sign_in_max_failures_per_client: u32,
    pub sign_in_window: Duration,
    /// Group joins per client address per minute (sustained; the same number as a burst).
    pub joins_per_client_per_minute: u32,
    /// Accounts created per client address per minute (each costs a password hash).
    pub registrations_per_client_per_minute: u32,
    /// Members a group can have (its owner not counted).
    pub max_members_per_group: u64,
    /// Concurrent HTTP/2 streams (calls) per connection.
    pub max_concurrent_streams_per_connection: u32,
    /// Password hashes computed at once (argon2 takes ~19 MiB each); `0` means one per core.
    pub hash_concurrency: usize,
    /// Callers allowed to wait for a hashing slot before more are refused with
    /// `RESOURCE_EXHAUSTED`.
    pub hash_queue: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            passcode_max_failures: 5,
            passcode_window: Duration::from_secs(5 * 60),
            sign_in_max_failures_per_account: 10,
            sign_in_max_failures_per_client: 50,
            sign_in_window: Duration::from_secs(15 * 60),
            joins_per_client_per_minute: 30,
            registrations_per_client_per_minute: 10,
            max_members_per_group: 10_000,
            max_concurrent_streams_per_connection: 128,
            hash_concurrency: 0,
            hash_queue: 64,
        }
    }
}

//! argon2 hashing for passwords and group passcodes, off the async runtime and behind a gate.
//!
//! Each argon2 computation takes ~19 MiB and tens of milliseconds of one core. Without a
//! bound, anyone could send hundreds of sign-ins at once and drive the server out of memory
//! (each on its own blocking thread, whose allocator arena then keeps the memory). [`Hasher`]
//! runs them on a fixed set of `concurrency` threads of its own (one per core by default),
//! so the memory they use is bounded and reused; up to `queue` more wait their turn, and
//! callers beyond that are turned away with [`HashError::Busy`] at once, holding nothing.

use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};

use argon2::Argon2;
use argon2::password_hash::{
    PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng,
};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::oneshot;

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// Every thread is busy and the queue is full: try again shortly.
    #[error("password hashing is saturated")]
    Busy,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<HashError> for crate::error::ApiError {
    fn from(err: HashError) -> Self {
        match err {
            HashError::Busy => crate::error::ApiError::ResourceExhausted(
                "The server is busy; try again in a moment.".into(),
            ),
            HashError::Internal(err) => crate::error::ApiError::Internal(err),
        }
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// The gate every password and passcode hash goes through.
pub struct Hasher {
    jobs: SyncSender<Job>,
    /// A hash of a random secret, compared against when an account does not exist so that
    /// a failed login takes as long whether or not the email is registered.
    dummy: String,
}

impl Hasher {
    /// `concurrency` hashing threads, and at most `queue` hashes waiting for one.
    pub fn new(concurrency: usize, queue: usize) -> anyhow::Result<Self> {
        let (jobs, inbox) = sync_channel::<Job>(queue);
        let inbox = Arc::new(Mutex::new(inbox));
        for i in 0..concurrency.max(1) {
            let inbox = inbox.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || work(&inbox))?;
        }
        Ok(Self {
            jobs,
            dummy: hash_now(&SecretString::from("not a real password".to_owned()))?,
        })
    }

    /// One hashing thread per core: the default concurrency.
    pub fn cores() -> usize {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    }

    /// Hashes a secret into a PHC string (algorithm, parameters and salt included).
    pub async fn hash(&self, secret: &SecretString) -> Result<String, HashError> {
        let secret = secret.clone();
        self.run(move || hash_now(&secret)).await
    }

    /// True when `secret` matches `phc`; `None` compares against a dummy hash (and is never
    /// a match) so that unknown accounts cost the same as known ones. A malformed stored
    /// hash is an error, not a mismatch.
    pub async fn verify(
        &self,
        secret: &SecretString,
        phc: Option<&str>,
    ) -> Result<bool, HashError> {
        let secret = secret.clone();
        let (phc, real) = match phc {
            Some(phc) => (phc.to_owned(), true),
            None => (self.dummy.clone(), false),
        };
        let matches = self
            .run(move || {
                let parsed = PasswordHash::new(&phc)
                    .map_err(|e| anyhow::anyhow!("stored hash is malformed: {e}"))?;
                Ok(Argon2::default()
                    .verify_password(secret.expose_secret().as_bytes(), &parsed)
                    .is_ok())
            })
            .await?;
        Ok(matches && real)
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
    ) -> Result<T, HashError> {
        let (done, result) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = done.send(work());
        });
        match self.jobs.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(HashError::Busy),
            Err(TrySendError::Disconnected(_)) => {
                return Err(HashError::Internal(anyhow::anyhow!(
                    "hashing threads stopped"
                )));
            }
        }
        let result = result
            .await
            .map_err(|_| HashError::Internal(anyhow::anyhow!("a hashing thread failed")))?;
        Ok(result?)
    }
}

/// A hashing thread: runs jobs until the [`Hasher`] is dropped.
fn work(inbox: &Mutex<Receiver<Job>>) {
    loop {
        let job = match inbox.lock() {
            Ok(inbox) => inbox.recv(),
            Err(_) => return,
        };
        match job {
            Ok(job) => job(),
            Err(_) => return,
        }
    }
}

fn hash_now(secret: &SecretString) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(secret.expose_secret().as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("hashing failed: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn hashes_verify_and_unknown_accounts_never_match() {
        let hasher = Hasher::new(1, 4).unwrap();
        let secret = SecretString::from("correct horse".to_owned());
        let phc = hasher.hash(&secret).await.unwrap();
        assert!(hasher.verify(&secret, Some(&phc)).await.unwrap());
        let wrong = SecretString::from("wrong horse".to_owned());
        assert!(!hasher.verify(&wrong, Some(&phc)).await.unwrap());
        let dummy = SecretString::from("not a real password".to_owned());
        assert!(!hasher.verify(&dummy, None).await.unwrap());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn callers_beyond_the_slots_and_queue_are_turned_away_at_once() {
        let hasher = Arc::new(Hasher::new(1, 2).unwrap());
        let secret = SecretString::from("correct horse".to_owned());
        let calls = (0..12).map(|_| {
            let (hasher, secret) = (hasher.clone(), secret.clone());
            tokio::spawn(async move { hasher.hash(&secret).await })
        });
        let results = futures::future::join_all(calls).await;
        let done = results.iter().filter(|r| matches!(r, Ok(Ok(_)))).count();
        let busy = results
            .iter()
            .filter(|r| matches!(r, Ok(Err(HashError::Busy))))
            .count();
        assert!(
            (1..=3).contains(&done),
            "one running and two queued at most, got {done}"
        );
        assert_eq!(done + busy, 12);
        // Once the burst is over the gate admits again.
        assert!(hasher.hash(&secret).await.is_ok());
    }
}

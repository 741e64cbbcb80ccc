//! argon2 hashing for passwords and group passcodes, run off the async runtime.

use argon2::Argon2;
use argon2::password_hash::{
    PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng,
};
use secrecy::{ExposeSecret, SecretString};

/// Hashes a secret into a PHC string (algorithm, parameters and salt included).
pub async fn hash(secret: &SecretString) -> anyhow::Result<String> {
    let secret = secret.clone();
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(secret.expose_secret().as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| anyhow::anyhow!("hashing failed: {e}"))
    })
    .await?
}

/// True when `secret` matches `phc`. A malformed stored hash is an error, not a mismatch.
pub async fn verify(secret: &SecretString, phc: &str) -> anyhow::Result<bool> {
    let secret = secret.clone();
    let phc = phc.to_owned();
    tokio::task::spawn_blocking(move || {
        let parsed = PasswordHash::new(&phc)
            .map_err(|e| anyhow::anyhow!("stored hash is malformed: {e}"))?;
        Ok(Argon2::default()
            .verify_password(secret.expose_secret().as_bytes(), &parsed)
            .is_ok())
    })
    .await?
}

/// A hash of a random secret, compared against when an account does not exist so that a
/// failed login takes as long whether or not the email is registered.
pub async fn dummy_hash() -> anyhow::Result<String> {
    hash(&SecretString::from("not a real password".to_owned())).await
}

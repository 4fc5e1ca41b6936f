//! argon2id password hashing, run on the blocking thread pool.

use argon2::password_hash::{
    PasswordHash as PhcString, PasswordHasher as _, PasswordVerifier as _, SaltString,
};
use argon2::{Algorithm, Argon2, Params, Version};
use async_trait::async_trait;
use domain::account::{Password, PasswordHash};
use domain::ports::{PasswordHasher, StoreError};
use rand::RngCore;

use crate::config::PasswordHashingSettings;

/// At most this many hashes run at once (each takes `memory_kib` of RAM); the rest wait.
const MAX_CONCURRENT_HASHES: usize = 4;

#[derive(Debug, Clone)]
pub struct Argon2Hasher {
    params: Params,
    permits: std::sync::Arc<tokio::sync::Semaphore>,
}

impl Argon2Hasher {
    pub fn new(settings: &PasswordHashingSettings) -> Result<Self, argon2::Error> {
        Ok(Self {
            permits: std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_HASHES)),
            params: Params::new(
                settings.memory_kib,
                settings.iterations,
                settings.parallelism,
                None,
            )?,
        })
    }

    fn hash_blocking(params: Params, password: &Password) -> Result<PasswordHash, StoreError> {
        let mut salt = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut salt);
        let salt =
            SaltString::encode_b64(&salt).map_err(|e| StoreError::Backend(format!("salt: {e}")))?;
        let phc = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password(password.expose().as_bytes(), &salt)
            .map_err(|e| StoreError::Backend(format!("argon2: {e}")))?;
        Ok(PasswordHash(phc.to_string()))
    }

    /// A hash of a random password, used so unknown accounts cost a real verification.
    pub fn dummy_hash(&self) -> Result<PasswordHash, StoreError> {
        let mut random = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut random);
        let password = Password::for_login(hex::encode(random))
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        Self::hash_blocking(self.params.clone(), &password)
    }
}

#[async_trait]
impl PasswordHasher for Argon2Hasher {
    async fn hash(&self, password: Password) -> Result<PasswordHash, StoreError> {
        let params = self.params.clone();
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| StoreError::Backend(format!("hashing: {e}")))?;
        tokio::task::spawn_blocking(move || Self::hash_blocking(params, &password))
            .await
            .map_err(|e| StoreError::Backend(format!("hashing task: {e}")))?
    }

    async fn verify(&self, password: Password, hash: PasswordHash) -> bool {
        let Ok(_permit) = self.permits.acquire().await else {
            return false;
        };
        tokio::task::spawn_blocking(move || {
            // Parameters come from the stored PHC string, so older hashes keep verifying.
            PhcString::new(&hash.0)
                .map(|phc| {
                    Argon2::default()
                        .verify_password(password.expose().as_bytes(), &phc)
                        .is_ok()
                })
                .unwrap_or(false)
        })
        .await
        .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast() -> Argon2Hasher {
        Argon2Hasher::new(&PasswordHashingSettings {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
        })
        .expect("params")
    }

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let hasher = fast();
        let password = Password::parse("correct horse battery".into()).expect("valid");
        let hash = hasher.hash(password.clone()).await.expect("hash");
        assert!(hash.0.starts_with("$argon2id$"));
        assert!(hasher.verify(password, hash.clone()).await);
        let wrong = Password::parse("correct horse battery!".into()).expect("valid");
        assert!(!hasher.verify(wrong, hash).await);
    }

    #[tokio::test]
    async fn a_malformed_hash_never_matches() {
        let hasher = fast();
        let password = Password::parse("correct horse battery".into()).expect("valid");
        assert!(
            !hasher
                .verify(password, PasswordHash("not a hash".into()))
                .await
        );
    }
}

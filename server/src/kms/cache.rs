//! Data-key caching in front of a KMS: an unwrapped data key is kept in memory for a short
//! time, so a burst of orders signed with one exchange key costs one remote Decrypt, not one
//! each (the AWS Encryption SDK's caching materials manager does the same).
//!
//! Only `decrypt_data_key` is cached, keyed by the wrapping key id, the wrapped blob and the
//! whole encryption context, so a cached key is only ever handed back for the exact request
//! the KMS already answered. Entries expire after the TTL (a disabled KMS key stops working
//! at most that long after), are capped in number, and are zeroised when dropped (`DataKey`):
//! a sweeper drops expired entries even when no decrypt comes to push them out.
//! Concurrent misses for one key share one remote call. Errors are never cached.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use domain::vault::{
    DataKey, EncryptionContext, Kms, KmsBackend, KmsError, RotationRecord, WrappedKey,
    encode_context,
};
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

/// The most data keys held at once; beyond it the oldest entry goes.
const MAX_ENTRIES: usize = 1024;

type CacheKey = [u8; 32];

#[derive(Debug, Default)]
struct Slot {
    key: OnceCell<(DataKey, Instant)>,
}

#[derive(Debug)]
pub struct CachingKms {
    inner: Arc<dyn Kms>,
    ttl: Duration,
    slots: Mutex<HashMap<CacheKey, Arc<Slot>>>,
    decrypts: AtomicU64,
    remote_decrypts: AtomicU64,
}

/// Decrypts asked of the cache and how many of them went to the KMS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    pub decrypts: u64,
    pub remote_decrypts: u64,
}

impl CachingKms {
    pub fn new(inner: Arc<dyn Kms>, ttl: Duration) -> Self {
        Self {
            inner,
            ttl,
            slots: Mutex::new(HashMap::new()),
            decrypts: AtomicU64::new(0),
            remote_decrypts: AtomicU64::new(0),
        }
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            decrypts: self.decrypts.load(Ordering::Relaxed),
            remote_decrypts: self.remote_decrypts.load(Ordering::Relaxed),
        }
    }

    fn cache_key(wrapped: &WrappedKey, context: &EncryptionContext) -> CacheKey {
        let mut hash = Sha256::new();
        for part in [wrapped.kms_key_id.as_bytes(), &wrapped.blob] {
            hash.update((part.len() as u64).to_be_bytes());
            hash.update(part);
        }
        hash.update(encode_context(context));
        hash.finalize().into()
    }

    /// The slot for `key`: the live one, or a fresh one in place of an expired one.
    fn slot(&self, key: CacheKey) -> Arc<Slot> {
        let mut slots = self
            .slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = Instant::now();
        let expired = |slot: &Slot| matches!(slot.key.get(), Some((_, at)) if now.duration_since(*at) >= self.ttl);
        if let Some(slot) = slots.get(&key)
            && !expired(slot)
        {
            return slot.clone();
        }
        slots.retain(|_, slot| !expired(slot));
        if slots.len() >= MAX_ENTRIES
            && let Some(oldest) = slots
                .iter()
                .filter_map(|(k, slot)| slot.key.get().map(|(_, at)| (*k, *at)))
                .min_by_key(|(_, at)| *at)
                .map(|(k, _)| k)
        {
            slots.remove(&oldest);
        }
        let slot = Arc::new(Slot::default());
        slots.insert(key, slot.clone());
        slot
    }

    /// Drops every expired entry (its `DataKey` is zeroised as it goes); returns how many.
    pub fn sweep_expired(&self) -> usize {
        let mut slots = self
            .slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = Instant::now();
        let before = slots.len();
        slots.retain(|_, slot| !matches!(slot.key.get(), Some((_, at)) if now.duration_since(*at) >= self.ttl));
        before - slots.len()
    }

    /// Sweeps expired keys a few times per TTL for as long as the cache lives, so an unwrapped
    /// key (a revoked one's too) is gone from memory soon after its TTL, busy or idle.
    pub fn start_sweeper(cache: &Arc<Self>) {
        if cache.ttl.is_zero() {
            return;
        }
        let period = (cache.ttl / 4).max(Duration::from_millis(10));
        let cache = Arc::downgrade(cache);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(cache) = cache.upgrade() else { break };
                cache.sweep_expired();
            }
        });
    }

    fn forget_all(&self) {
        self.slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clear();
    }
}

#[async_trait]
impl Kms for CachingKms {
    async fn generate_data_key(
        &self,
        context: &EncryptionContext,
    ) -> Result<(DataKey, WrappedKey), KmsError> {
        self.inner.generate_data_key(context).await
    }

    async fn decrypt_data_key(
        &self,
        wrapped: &WrappedKey,
        context: &EncryptionContext,
    ) -> Result<DataKey, KmsError> {
        self.decrypts.fetch_add(1, Ordering::Relaxed);
        if self.ttl.is_zero() {
            self.remote_decrypts.fetch_add(1, Ordering::Relaxed);
            return self.inner.decrypt_data_key(wrapped, context).await;
        }
        let slot = self.slot(Self::cache_key(wrapped, context));
        let (key, _) = slot
            .key
            .get_or_try_init(|| async {
                self.remote_decrypts.fetch_add(1, Ordering::Relaxed);
                let key = self.inner.decrypt_data_key(wrapped, context).await?;
                Ok::<_, KmsError>((key, Instant::now()))
            })
            .await?;
        Ok(key.clone())
    }

    async fn rewrap(
        &self,
        wrapped: &WrappedKey,
        context: &EncryptionContext,
    ) -> Result<WrappedKey, KmsError> {
        self.inner.rewrap(wrapped, context).await
    }

    fn current_key_id(&self) -> String {
        self.inner.current_key_id()
    }

    async fn refresh(&self) {
        self.inner.refresh().await
    }

    fn backend(&self) -> KmsBackend {
        self.inner.backend()
    }

    async fn add_version(&self, record: &dyn RotationRecord) -> Result<String, KmsError> {
        // A rotation is a moment to drop every key held in memory.
        self.forget_all();
        self.inner.add_version(record).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kms::{FaultMode, FaultyKms, FileKms};

    fn context(record: &str) -> EncryptionContext {
        EncryptionContext::from([("record".to_owned(), record.to_owned())])
    }

    fn local() -> Arc<dyn Kms> {
        Arc::new(FileKms::from_env_value(&hex::encode([7u8; 32])).expect("test master key"))
    }

    #[tokio::test]
    async fn a_burst_of_decrypts_of_one_key_costs_one_remote_call() {
        let kms = Arc::new(CachingKms::new(local(), Duration::from_secs(60)));
        let (key, wrapped) = kms
            .generate_data_key(&context("a"))
            .await
            .expect("generate");
        let decrypts: Vec<_> = (0..200)
            .map(|_| {
                let (kms, wrapped) = (kms.clone(), wrapped.clone());
                tokio::spawn(async move { kms.decrypt_data_key(&wrapped, &context("a")).await })
            })
            .collect();
        for decrypt in decrypts {
            let got = decrypt.await.expect("task").expect("decrypt");
            assert_eq!(got.expose(), key.expose());
        }
        assert_eq!(
            kms.stats(),
            CacheStats {
                decrypts: 200,
                remote_decrypts: 1
            }
        );
    }

    #[tokio::test]
    async fn a_cached_key_is_only_returned_for_the_same_context_and_blob() {
        let kms = CachingKms::new(local(), Duration::from_secs(60));
        let (_, wrapped) = kms
            .generate_data_key(&context("a"))
            .await
            .expect("generate");
        kms.decrypt_data_key(&wrapped, &context("a"))
            .await
            .expect("decrypt");
        // Another record's context is asked of the KMS, which refuses it.
        assert!(matches!(
            kms.decrypt_data_key(&wrapped, &context("b")).await,
            Err(KmsError::InvalidCiphertext)
        ));
        let mut altered = wrapped.clone();
        if let Some(last) = altered.blob.last_mut() {
            *last ^= 1;
        }
        assert!(kms.decrypt_data_key(&altered, &context("a")).await.is_err());
        assert_eq!(kms.stats().remote_decrypts, 3);
    }

    #[tokio::test]
    async fn errors_are_not_cached_and_keys_expire() {
        let faulty = Arc::new(FaultyKms::new(local()));
        let kms = CachingKms::new(faulty.clone(), Duration::from_millis(50));
        let (_, wrapped) = kms
            .generate_data_key(&context("a"))
            .await
            .expect("generate");
        faulty.set_mode(FaultMode::Unavailable);
        assert!(matches!(
            kms.decrypt_data_key(&wrapped, &context("a")).await,
            Err(KmsError::Unavailable(_))
        ));
        faulty.set_mode(FaultMode::Healthy);
        kms.decrypt_data_key(&wrapped, &context("a"))
            .await
            .expect("the KMS is back");
        kms.decrypt_data_key(&wrapped, &context("a"))
            .await
            .expect("cached");
        assert_eq!(kms.stats().remote_decrypts, 2);
        tokio::time::sleep(Duration::from_millis(80)).await;
        // Expired: asked again, so a KMS that is down (or a disabled key) shows after the TTL.
        faulty.set_mode(FaultMode::Unavailable);
        assert!(kms.decrypt_data_key(&wrapped, &context("a")).await.is_err());
    }

    #[tokio::test]
    async fn the_sweeper_drops_expired_keys_while_no_decrypt_comes() {
        let kms = Arc::new(CachingKms::new(local(), Duration::from_millis(40)));
        let (_, wrapped) = kms
            .generate_data_key(&context("a"))
            .await
            .expect("generate");
        kms.decrypt_data_key(&wrapped, &context("a"))
            .await
            .expect("decrypt");
        assert_eq!(kms.slots.lock().expect("lock").len(), 1);
        CachingKms::start_sweeper(&kms);
        // Nothing else touches the cache: only the sweeper can empty it.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(kms.slots.lock().expect("lock").len(), 0);
        assert_eq!(kms.sweep_expired(), 0);
    }

    #[tokio::test]
    async fn a_zero_ttl_turns_caching_off() {
        let kms = CachingKms::new(local(), Duration::ZERO);
        let (_, wrapped) = kms
            .generate_data_key(&context("a"))
            .await
            .expect("generate");
        for _ in 0..3 {
            kms.decrypt_data_key(&wrapped, &context("a"))
                .await
                .expect("decrypt");
        }
        assert_eq!(kms.stats().remote_decrypts, 3);
    }
}

//! Signed checkpoints of the chain head, and the report key that signs them (and reports).
//!
//! The hash chain alone cannot tell a chain cut at its end from a shorter one, nor a chain a
//! database writer recomputed from some seq on. A checkpoint, `(seq, hash, time)` signed with
//! the server's Ed25519 report key, kept in the database *and* in an append-only file outside
//! it (and optionally sent to a webhook), lets `audit verify` catch both without a head kept by
//! hand: the chain must still hold the latest checkpoint's event, unchanged.

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;
use zeroize::Zeroizing;

use super::AuditDraft;
use super::signing::{ReportKey, ReportPublicKey, SignedCheckpoint};
use crate::ids::UserId;
use crate::store_error::StoreError;
use crate::vault::{self, Kms, SealedSecret, SecretBinding, VaultError};

/// Why no checkpoint was signed.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The chain has no events: there is no head to vouch for.
    #[error("the audit chain is empty")]
    EmptyChain,
    /// The stored chain no longer extends the latest checkpoint (cut or rewritten since):
    /// signing its head would bless the tampering.
    #[error("the audit chain no longer extends the latest checkpoint: {0}")]
    ChainBroken(super::ChainBreak),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What made a checkpoint: the periodic job or a reviewer's request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointTrigger {
    Schedule,
    Manual,
}

impl CheckpointTrigger {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckpointTrigger::Schedule => "schedule",
            CheckpointTrigger::Manual => "manual",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "schedule" => Some(CheckpointTrigger::Schedule),
            "manual" => Some(CheckpointTrigger::Manual),
            _ => None,
        }
    }
}

/// A checkpoint as the database holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    pub checkpoint: SignedCheckpoint,
    pub trigger: CheckpointTrigger,
}

/// A checkpoint as reviewers see it: `valid` says whether its signature verifies under this
/// server's report key (a forged row is listed, and flagged, rather than hidden).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointView {
    pub checkpoint: SignedCheckpoint,
    pub trigger: CheckpointTrigger,
    pub valid: bool,
}

/// Checkpoints in the database.
#[async_trait]
pub trait CheckpointStore: Send + Sync + std::fmt::Debug {
    /// Stores the checkpoint and appends `draft` (its audit event) in one transaction.
    async fn save(
        &self,
        checkpoint: &SignedCheckpoint,
        trigger: CheckpointTrigger,
        draft: AuditDraft,
    ) -> Result<(), StoreError>;
    /// The checkpoint with the highest seq (newest on a tie), signature unchecked.
    async fn latest(&self) -> Result<Option<StoredCheckpoint>, StoreError>;
    /// The newest checkpoints first.
    async fn list(&self, limit: u64) -> Result<Vec<StoredCheckpoint>, StoreError>;
}

/// The append-only copy of the checkpoints outside the database.
#[async_trait]
pub trait CheckpointJournal: Send + Sync + std::fmt::Debug {
    /// Appends one checkpoint durably (the call returns after the write is synced).
    async fn append(&self, checkpoint: &SignedCheckpoint) -> Result<(), StoreError>;
    /// The journal's checkpoints judged under `key`. Lines that do not parse (a write cut
    /// short by a crash) are skipped.
    async fn check(&self, key: &ReportPublicKey) -> Result<JournalCheck, StoreError>;
}

/// What the journal holds, judged under the report key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JournalCheck {
    /// The highest-seq checkpoint whose signature verifies.
    pub latest: Option<SignedCheckpoint>,
    /// The highest-seq checkpoint that does not verify: written by someone without the report
    /// key, or signed by a report key that has since been replaced (someone with database
    /// access deleted it, so that a new one would sign a rewritten chain). Either is a finding.
    pub unverified: Option<SignedCheckpoint>,
}

impl JournalCheck {
    pub fn of(
        checkpoints: impl IntoIterator<Item = SignedCheckpoint>,
        key: &ReportPublicKey,
    ) -> Self {
        let (valid, invalid): (Vec<_>, Vec<_>) =
            checkpoints.into_iter().partition(|c| c.verify(Some(key)));
        JournalCheck {
            latest: valid.into_iter().max_by_key(|c| c.seq),
            unverified: invalid.into_iter().max_by_key(|c| c.seq),
        }
    }
}

/// The report key as stored: its public half in clear, its secret sealed through the KMS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedReportKey {
    /// The row's id; the sealed secret is bound to it.
    pub id: Uuid,
    pub public_key: ReportPublicKey,
    pub sealed: SealedSecret,
}

/// Where the sealed report key is kept.
#[async_trait]
pub trait ReportKeyStore: Send + Sync + std::fmt::Debug {
    async fn load(&self) -> Result<Option<SealedReportKey>, StoreError>;
    /// Stores the key unless one is stored already (`StoreError::Conflict` then).
    async fn save(&self, key: &SealedReportKey) -> Result<(), StoreError>;
}

#[derive(Debug, thiserror::Error)]
pub enum ReportKeyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the report key cannot be opened: {0}")]
    Vault(#[from] VaultError),
    #[error("the stored report key does not match its recorded public key")]
    Mismatch,
}

/// The vault's binding fields name an owner, exchange and environment; for the report key
/// they name the system and the key's purpose instead, so its ciphertext cannot be moved to
/// (or from) a user's exchange key or TOTP secret, nor to another report-key row.
pub fn report_key_binding(id: Uuid) -> SecretBinding {
    SecretBinding {
        owner: UserId(Uuid::nil()),
        record_id: id,
        exchange: "audit-report-key".into(),
        environment: "report-signing".into(),
    }
}

/// Opens the stored report key, or makes, seals and stores one on first start. Two servers
/// starting at once both try to store theirs; the loser's insert conflicts and it opens the
/// winner's, so both end up with the one key.
pub async fn load_or_create_report_key(
    store: &dyn ReportKeyStore,
    kms: &dyn Kms,
) -> Result<ReportKey, ReportKeyError> {
    if let Some(stored) = store.load().await? {
        return open_report_key(kms, &stored).await;
    }
    let key = ReportKey::generate();
    let id = Uuid::new_v4();
    let secret = SecretString::from(hex::encode(*key.secret_bytes()));
    let sealed = vault::seal(kms, &report_key_binding(id), &secret).await?;
    let record = SealedReportKey {
        id,
        public_key: key.public_key(),
        sealed,
    };
    match store.save(&record).await {
        Ok(()) => Ok(key),
        Err(StoreError::Conflict) => {
            let stored = store.load().await?.ok_or(StoreError::NotFound)?;
            open_report_key(kms, &stored).await
        }
        Err(e) => Err(e.into()),
    }
}

async fn open_report_key(
    kms: &dyn Kms,
    stored: &SealedReportKey,
) -> Result<ReportKey, ReportKeyError> {
    let secret = vault::open(kms, &report_key_binding(stored.id), &stored.sealed).await?;
    let bytes = Zeroizing::new(
        hex::decode(secret.expose_secret().as_bytes()).map_err(|_| VaultError::Tampered)?,
    );
    let array: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| VaultError::Tampered)?;
    let key = ReportKey::from_secret_bytes(array);
    // A row whose public key was swapped would have reports verified against the wrong key.
    if key.public_key() != stored.public_key {
        return Err(ReportKeyError::Mismatch);
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::vault::DataKey;
    use crate::vault::local::LocalKms;

    #[derive(Debug, Default)]
    struct MemoryKeys(Mutex<Option<SealedReportKey>>);

    #[async_trait]
    impl ReportKeyStore for MemoryKeys {
        async fn load(&self) -> Result<Option<SealedReportKey>, StoreError> {
            Ok(self.0.lock().expect("lock").clone())
        }
        async fn save(&self, key: &SealedReportKey) -> Result<(), StoreError> {
            let mut slot = self.0.lock().expect("lock");
            if slot.is_some() {
                return Err(StoreError::Conflict);
            }
            *slot = Some(key.clone());
            Ok(())
        }
    }

    fn kms() -> LocalKms {
        LocalKms::new([(1, DataKey::generate())].into()).expect("kms")
    }

    #[tokio::test]
    async fn the_key_is_made_once_then_reopened() {
        let (store, kms) = (MemoryKeys::default(), kms());
        let first = load_or_create_report_key(&store, &kms).await.expect("made");
        let again = load_or_create_report_key(&store, &kms)
            .await
            .expect("opened");
        assert_eq!(first.public_key(), again.public_key());
        let stored = store.load().await.expect("load").expect("stored");
        let secret_hex = hex::encode(*first.secret_bytes());
        assert!(
            !hex::encode(&stored.sealed.ciphertext).contains(&secret_hex),
            "the secret is sealed, not stored in clear"
        );
    }

    /// Another server stores its key between our load and our save.
    #[derive(Debug)]
    struct Raced {
        theirs: SealedReportKey,
        stored: Mutex<Option<SealedReportKey>>,
    }

    #[async_trait]
    impl ReportKeyStore for Raced {
        async fn load(&self) -> Result<Option<SealedReportKey>, StoreError> {
            Ok(self.stored.lock().expect("lock").clone())
        }
        async fn save(&self, _key: &SealedReportKey) -> Result<(), StoreError> {
            *self.stored.lock().expect("lock") = Some(self.theirs.clone());
            Err(StoreError::Conflict)
        }
    }

    #[tokio::test]
    async fn the_loser_of_a_startup_race_uses_the_winners_key() {
        let kms = kms();
        let winner = MemoryKeys::default();
        let theirs = load_or_create_report_key(&winner, &kms)
            .await
            .expect("made");
        let raced = Raced {
            theirs: winner.load().await.expect("load").expect("stored"),
            stored: Mutex::new(None),
        };
        let ours = load_or_create_report_key(&raced, &kms)
            .await
            .expect("opened");
        assert_eq!(ours.public_key(), theirs.public_key());
    }

    #[tokio::test]
    async fn a_moved_or_swapped_key_row_is_refused() {
        let (store, kms) = (MemoryKeys::default(), kms());
        load_or_create_report_key(&store, &kms).await.expect("made");
        let stored = store.load().await.expect("load").expect("stored");

        let moved = SealedReportKey {
            id: Uuid::new_v4(),
            ..stored.clone()
        };
        assert!(matches!(
            open_report_key(&kms, &moved).await,
            Err(ReportKeyError::Vault(VaultError::Tampered))
        ));

        let other = ReportKey::generate().public_key();
        let swapped = SealedReportKey {
            public_key: other,
            ..stored
        };
        assert!(matches!(
            open_report_key(&kms, &swapped).await,
            Err(ReportKeyError::Mismatch)
        ));
    }
}

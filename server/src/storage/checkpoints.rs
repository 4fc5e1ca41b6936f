//! Checkpoints of the audit chain head: the table (`audit_checkpoints`), the append-only
//! journal file outside the database (with an optional webhook copy), and the sealed report
//! key (`report_keys`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use domain::audit::AuditDraft;
use domain::audit::canonical_time;
use domain::audit::checkpoints::{
    CheckpointJournal, CheckpointStore, CheckpointTrigger, JournalCheck, ReportKeyStore,
    SealedReportKey, StoredCheckpoint,
};
use domain::audit::signing::{ReportPublicKey, SignedCheckpoint};
use domain::ports::{Clock, StoreError};
use domain::vault::{SealedSecret, WrappedKey};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use uuid::Uuid;

use super::audit::AuditChain;
use super::entities::{audit_checkpoint, report_key};
use super::{DbResult, converted};

/// The name of the journal file in the data directory.
pub const JOURNAL_FILE: &str = "audit-checkpoints.jsonl";

/// The `report_keys.purpose` of the audit report key (unique: one per deployment).
const REPORT_KEY_PURPOSE: &str = "audit-report";

#[derive(Debug, Clone)]
pub struct SqlCheckpointStore {
    db: DatabaseConnection,
    chain: AuditChain,
    clock: Arc<dyn Clock>,
}

impl SqlCheckpointStore {
    pub fn new(chain: impl Into<AuditChain>, clock: Arc<dyn Clock>) -> Self {
        let chain = chain.into();
        Self {
            db: chain.db().clone(),
            chain,
            clock,
        }
    }
}

fn to_checkpoint(row: audit_checkpoint::Model) -> DbResult<StoredCheckpoint> {
    let corrupt =
        |what: &str| StoreError::Backend(format!("checkpoint {} has an invalid {what}", row.id));
    Ok(StoredCheckpoint {
        trigger: CheckpointTrigger::parse(&row.trigger).ok_or_else(|| corrupt("trigger"))?,
        checkpoint: SignedCheckpoint {
            public_key: ReportPublicKey::parse(&row.public_key)
                .ok_or_else(|| corrupt("public key"))?,
            seq: row.seq,
            hash: row.hash,
            signed_at: row.signed_at,
            signature: row.signature,
        },
    })
}

#[async_trait]
impl CheckpointStore for SqlCheckpointStore {
    async fn save(
        &self,
        checkpoint: &SignedCheckpoint,
        trigger: CheckpointTrigger,
        draft: AuditDraft,
    ) -> Result<(), StoreError> {
        converted(async {
            let txn = self.chain.begin().await?;
            // The chain lock serialises writers, so max + 1 cannot collide.
            let last = audit_checkpoint::Entity::find()
                .order_by_desc(audit_checkpoint::Column::Id)
                .one(txn.conn())
                .await?;
            let now = self.clock.now();
            audit_checkpoint::Entity::insert(audit_checkpoint::ActiveModel {
                id: Set(last.map_or(1, |row| row.id + 1)),
                seq: Set(checkpoint.seq),
                hash: Set(checkpoint.hash.clone()),
                signed_at: Set(checkpoint.signed_at.clone()),
                public_key: Set(checkpoint.public_key.as_str().to_owned()),
                signature: Set(checkpoint.signature.clone()),
                trigger: Set(trigger.as_str().to_owned()),
                created_at: Set(canonical_time(now)),
            })
            .exec_without_returning(txn.conn())
            .await?;
            txn.commit_with(draft, now).await?;
            Ok(())
        })
        .await
    }

    async fn latest(&self) -> Result<Option<StoredCheckpoint>, StoreError> {
        converted(async {
            let row = audit_checkpoint::Entity::find()
                .order_by_desc(audit_checkpoint::Column::Seq)
                .order_by_desc(audit_checkpoint::Column::Id)
                .one(&self.db)
                .await?;
            row.map(to_checkpoint).transpose()
        })
        .await
    }

    async fn list(&self, limit: u64) -> Result<Vec<StoredCheckpoint>, StoreError> {
        converted(async {
            let rows = audit_checkpoint::Entity::find()
                .order_by_desc(audit_checkpoint::Column::Id)
                .limit(limit)
                .all(&self.db)
                .await?;
            rows.into_iter().map(to_checkpoint).collect()
        })
        .await
    }
}

#[derive(Debug, Clone)]
pub struct SqlReportKeyStore {
    db: DatabaseConnection,
    clock: Arc<dyn Clock>,
}

impl SqlReportKeyStore {
    pub fn new(db: DatabaseConnection, clock: Arc<dyn Clock>) -> Self {
        Self { db, clock }
    }
}

fn to_sealed_key(row: report_key::Model) -> DbResult<SealedReportKey> {
    let corrupt =
        |what: &str| StoreError::Backend(format!("report key {} has an invalid {what}", row.id));
    let decode = |text: &str, what: &str| B64.decode(text).map_err(|_| corrupt(what));
    let nonce: [u8; 12] = decode(&row.nonce, "nonce")?
        .try_into()
        .map_err(|_| corrupt("nonce"))?;
    Ok(SealedReportKey {
        id: Uuid::parse_str(&row.id).map_err(|_| corrupt("id"))?,
        public_key: ReportPublicKey::parse(&row.public_key).ok_or_else(|| corrupt("public key"))?,
        sealed: SealedSecret {
            wrapped_key: WrappedKey {
                kms_key_id: row.kms_key_id.clone(),
                blob: decode(&row.wrapped_key, "wrapped key")?,
            },
            nonce,
            ciphertext: decode(&row.ciphertext, "ciphertext")?,
        },
    })
}

#[async_trait]
impl ReportKeyStore for SqlReportKeyStore {
    async fn load(&self) -> Result<Option<SealedReportKey>, StoreError> {
        converted(async {
            let row = report_key::Entity::find()
                .filter(report_key::Column::Purpose.eq(REPORT_KEY_PURPOSE))
                .one(&self.db)
                .await?;
            row.map(to_sealed_key).transpose()
        })
        .await
    }

    async fn save(&self, key: &SealedReportKey) -> Result<(), StoreError> {
        converted(async {
            report_key::Entity::insert(report_key::ActiveModel {
                id: Set(key.id.to_string()),
                purpose: Set(REPORT_KEY_PURPOSE.to_owned()),
                public_key: Set(key.public_key.as_str().to_owned()),
                wrapped_key: Set(B64.encode(&key.sealed.wrapped_key.blob)),
                nonce: Set(B64.encode(key.sealed.nonce)),
                ciphertext: Set(B64.encode(&key.sealed.ciphertext)),
                kms_key_id: Set(key.sealed.wrapped_key.kms_key_id.clone()),
                created_at: Set(canonical_time(self.clock.now())),
            })
            .exec_without_returning(&self.db)
            .await?;
            Ok(())
        })
        .await
    }
}

/// The checkpoints as JSON lines in a file outside the database (`<data_dir>/audit-checkpoints.jsonl`),
/// each also POSTed to a webhook when one is configured.
#[derive(Debug, Clone)]
pub struct FileCheckpointJournal {
    path: PathBuf,
    /// One appender at a time within this process; `O_APPEND` keeps whole lines across processes.
    lock: Arc<tokio::sync::Mutex<()>>,
    webhook: Option<CheckpointWebhook>,
}

impl FileCheckpointJournal {
    pub fn new(data_dir: &Path, webhook_url: Option<String>) -> Self {
        Self {
            path: data_dir.join(JOURNAL_FILE),
            lock: Arc::default(),
            webhook: webhook_url
                .filter(|url| !url.trim().is_empty())
                .map(CheckpointWebhook::new),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn io_error(path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Backend(format!("checkpoint journal {}: {e}", path.display()))
}

fn append_line(path: &Path, line: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(path)?;
    // One write per line: with O_APPEND a line is never interleaved with another writer's.
    file.write_all(line)?;
    file.sync_all()
}

/// The checkpoints in `text`, judged under `key`.
fn check_lines(text: &str, key: &ReportPublicKey) -> JournalCheck {
    JournalCheck::of(
        text.lines()
            .filter_map(|line| serde_json::from_str::<SignedCheckpoint>(line).ok()),
        key,
    )
}

#[async_trait]
impl CheckpointJournal for FileCheckpointJournal {
    async fn append(&self, checkpoint: &SignedCheckpoint) -> Result<(), StoreError> {
        let mut line = serde_json::to_vec(checkpoint)
            .map_err(|e| StoreError::Backend(format!("checkpoint as JSON: {e}")))?;
        line.push(b'\n');
        let _guard = self.lock.lock().await;
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || append_line(&path, &line))
            .await
            .map_err(|e| StoreError::Backend(format!("checkpoint journal task: {e}")))?
            .map_err(|e| io_error(&self.path, e))?;
        if let Some(webhook) = &self.webhook {
            webhook.publish(checkpoint.clone());
        }
        Ok(())
    }

    async fn check(&self, key: &ReportPublicKey) -> Result<JournalCheck, StoreError> {
        let path = self.path.clone();
        let text = tokio::task::spawn_blocking(move || match std::fs::read_to_string(&path) {
            Ok(text) => Ok(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
            Err(e) => Err(e),
        })
        .await
        .map_err(|e| StoreError::Backend(format!("checkpoint journal task: {e}")))?
        .map_err(|e| io_error(&self.path, e))?;
        Ok(check_lines(&text, key))
    }
}

/// Best-effort copy of each checkpoint to a webhook: sent on its own task with a timeout, a
/// failure logged, never holding up the append (the file and the table are the records).
#[derive(Debug, Clone)]
struct CheckpointWebhook {
    client: reqwest::Client,
    url: String,
}

impl CheckpointWebhook {
    fn new(url: String) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Self { client, url }
    }

    fn publish(&self, checkpoint: SignedCheckpoint) {
        let (client, url) = (self.client.clone(), self.url.clone());
        tokio::spawn(async move {
            let body = serde_json::json!({
                "type": "cryptopulse.audit_checkpoint",
                "checkpoint": checkpoint,
            });
            match client.post(&url).json(&body).send().await {
                Ok(response) if response.status().is_success() => {}
                Ok(response) => {
                    tracing::warn!(status = %response.status(), seq = checkpoint.seq, "checkpoint webhook refused")
                }
                Err(e) => {
                    tracing::warn!(error = %e, seq = checkpoint.seq, "checkpoint webhook failed")
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use domain::audit::signing::ReportKey;
    use domain::audit::{ChainHash, ChainHead};

    use super::*;

    fn checkpoint(key: &ReportKey, seq: i64) -> SignedCheckpoint {
        let head = ChainHead {
            seq,
            hash: ChainHash([seq as u8; 32]),
        };
        SignedCheckpoint::sign(head, time::OffsetDateTime::now_utc(), key)
    }

    #[tokio::test]
    async fn the_journal_appends_lines_and_tells_the_newest_that_verifies_from_the_newest_that_does_not()
     {
        let dir = tempfile::tempdir().expect("temp dir");
        let journal = FileCheckpointJournal::new(&dir.path().join("data"), None);
        let (key, other) = (ReportKey::generate(), ReportKey::generate());
        let check = |key: ReportPublicKey| {
            let journal = journal.clone();
            async move { journal.check(&key).await.expect("read") }
        };
        assert_eq!(check(key.public_key()).await, JournalCheck::default());
        for seq in [3, 9, 5] {
            journal
                .append(&checkpoint(&key, seq))
                .await
                .expect("append");
        }
        assert_eq!(check(key.public_key()).await.unverified, None);
        // A forger's line (another key) and an altered line do not verify and are reported;
        // garbage (a write cut short) is skipped.
        journal
            .append(&checkpoint(&other, 50))
            .await
            .expect("append");
        let mut altered = checkpoint(&key, 40);
        altered.seq = 41;
        journal.append(&altered).await.expect("append");
        append_line(journal.path(), b"not json\n").expect("garbage");

        let text = std::fs::read_to_string(journal.path()).expect("read");
        assert_eq!(text.lines().count(), 6);
        let found = check(key.public_key()).await;
        assert_eq!(found.latest.map(|c| c.seq), Some(9));
        assert_eq!(found.unverified.map(|c| c.seq), Some(50));
        // Under the other key, every line of the first one is a finding.
        let found = check(other.public_key()).await;
        assert_eq!(found.latest.map(|c| c.seq), Some(50));
        assert_eq!(found.unverified.map(|c| c.seq), Some(41));
    }
}

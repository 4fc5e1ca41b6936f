//! The report key (sealed through the KMS) and signed checkpoints of the audit chain head.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

const COMMON: &str = r#"
-- The Ed25519 key that signs reports and checkpoints. Its secret is sealed like an exchange
-- secret (a KMS-wrapped data key, AES-256-GCM; base64 columns); only the public key is in
-- clear. `purpose` is unique, so two servers starting at once cannot both store a key: the
-- second insert fails and that server opens the first one's key.
CREATE TABLE report_keys (
    id          TEXT PRIMARY KEY,
    purpose     TEXT NOT NULL UNIQUE,
    public_key  TEXT NOT NULL,
    wrapped_key TEXT NOT NULL,
    nonce       TEXT NOT NULL,
    ciphertext  TEXT NOT NULL,
    kms_key_id  TEXT NOT NULL,
    created_at  TEXT NOT NULL
);

CREATE TABLE audit_checkpoints (
    id         BIGINT PRIMARY KEY,
    seq        BIGINT NOT NULL,
    hash       TEXT NOT NULL,
    signed_at  TEXT NOT NULL,
    public_key TEXT NOT NULL,
    signature  TEXT NOT NULL,
    "trigger"  TEXT NOT NULL CHECK ("trigger" IN ('schedule', 'manual')),
    created_at TEXT NOT NULL
);
CREATE INDEX audit_checkpoints_seq ON audit_checkpoints (seq);
"#;

// The checkpoint id is assigned by the store (max + 1, under the audit chain lock the same
// transaction takes for the checkpoint's audit event), so both databases share one schema.

const SQLITE_APPEND_ONLY: &str = r#"
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit_checkpoints is append-only'); END;
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit_checkpoints is append-only'); END;
"#;

const POSTGRES_APPEND_ONLY: &str = r#"
CREATE FUNCTION audit_checkpoints_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_checkpoints is append-only';
END;
$$;
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE OR DELETE ON audit_checkpoints
FOR EACH ROW EXECUTE FUNCTION audit_checkpoints_append_only();
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
FOR EACH STATEMENT EXECUTE FUNCTION audit_checkpoints_append_only();
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let append_only = match manager.get_database_backend() {
            DbBackend::Sqlite => SQLITE_APPEND_ONLY,
            DbBackend::Postgres => POSTGRES_APPEND_ONLY,
            other => {
                return Err(DbErr::Migration(format!(
                    "unsupported database backend {other:?}"
                )));
            }
        };
        db.execute_unprepared(COMMON).await?;
        db.execute_unprepared(append_only).await?;
        Ok(())
    }
}

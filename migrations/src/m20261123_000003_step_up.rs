//! Step-up authentication: TOTP factors (sealed), recovery code hashes, security keys and
//! order-bound approvals.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::ConnectionTrait;

#[derive(DeriveMigrationName)]
pub struct Migration;

// Same conventions as the key vault: ids and times are TEXT (canonical UTC), sealed parts are
// base64 TEXT. `order_approvals.expires_at` is unix seconds instead, because canonical times
// drop trailing fractional zeros and so do not compare correctly as text; the expiry check is
// made in SQL, inside the conditional UPDATE that spends the approval.
const SCHEMA: &str = r#"
-- One factor per user. A row with confirmed_at NULL is an enrolment in progress.
CREATE TABLE totp_factors (
    user_id      TEXT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    kms_key_id   TEXT NOT NULL,
    wrapped_key  TEXT NOT NULL,
    nonce        TEXT NOT NULL,
    ciphertext   TEXT NOT NULL,
    confirmed_at TEXT,
    last_step    BIGINT,
    failures     INTEGER NOT NULL DEFAULT 0 CHECK (failures >= 0),
    locked_until TEXT,
    created_at   TEXT NOT NULL
);

-- Only hashes are stored; the codes themselves are shown once.
CREATE TABLE recovery_codes (
    id         TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash  TEXT NOT NULL,
    created_at TEXT NOT NULL,
    used_at    TEXT,
    UNIQUE (user_id, code_hash)
);

-- credential_id is unique across accounts: one authenticator credential, one owner.
CREATE TABLE security_keys (
    id            TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    credential_id TEXT NOT NULL UNIQUE,
    credential    TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    last_used_at  TEXT,
    flagged_at    TEXT
);
CREATE INDEX security_keys_user ON security_keys (user_id, created_at);

-- The digest commits to the order and a server nonce, so it identifies the approval.
CREATE TABLE order_approvals (
    digest      TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    method      TEXT NOT NULL CHECK (method IN ('totp', 'recovery-code', 'security-key')),
    approved_at TEXT NOT NULL,
    expires_at  BIGINT NOT NULL,
    consumed_at TEXT
);
CREATE INDEX order_approvals_user ON order_approvals (user_id);
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared(SCHEMA).await?;
        Ok(())
    }
}

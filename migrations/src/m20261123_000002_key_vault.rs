//! Exchange keys (sealed), decoy markers, security alerts, and an index for key receipts.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::ConnectionTrait;

#[derive(DeriveMigrationName)]
pub struct Migration;

// Sealed parts are base64 text so one schema serves SQLite and PostgreSQL. A revoked key keeps
// its row (for the receipts) but none of its ciphertext: the CHECK makes that a schema rule.
const SCHEMA: &str = r#"
CREATE TABLE exchange_keys (
    id              TEXT PRIMARY KEY,
    owner_id        TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    exchange        TEXT NOT NULL CHECK (exchange IN ('paper', 'binance')),
    environment     TEXT NOT NULL CHECK (environment IN ('testnet', 'paper', 'live')),
    scope           TEXT NOT NULL CHECK (scope IN ('read-only', 'trade')),
    label           TEXT NOT NULL,
    mask            TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('active', 'suspended', 'revoked')),
    status_reason   TEXT,
    permissions     TEXT NOT NULL,
    kms_key_id      TEXT,
    wrapped_key     TEXT,
    nonce           TEXT,
    ciphertext      TEXT,
    created_at      TEXT NOT NULL,
    last_used_at    TEXT,
    last_checked_at TEXT,
    revoked_at      TEXT,
    CHECK (
        (status = 'revoked' AND kms_key_id IS NULL AND wrapped_key IS NULL AND nonce IS NULL
            AND ciphertext IS NULL AND revoked_at IS NOT NULL)
        OR (status <> 'revoked' AND kms_key_id IS NOT NULL AND wrapped_key IS NOT NULL
            AND nonce IS NOT NULL AND ciphertext IS NOT NULL)
    )
);
CREATE INDEX exchange_keys_owner ON exchange_keys (owner_id, created_at);

-- Decoys are marked here, not in exchange_keys, so a decoy row looks like any other key.
CREATE TABLE vault_canaries (
    key_id     TEXT PRIMARY KEY REFERENCES exchange_keys (id) ON DELETE CASCADE,
    planted_at TEXT NOT NULL
);

CREATE TABLE security_alerts (
    id              TEXT PRIMARY KEY,
    kind            TEXT NOT NULL,
    message         TEXT NOT NULL,
    resource        TEXT,
    actor           TEXT,
    raised_at       TEXT NOT NULL,
    acknowledged_at TEXT
);
CREATE INDEX security_alerts_raised_at ON security_alerts (raised_at);

CREATE INDEX audit_events_resource ON audit_events (resource, seq);
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

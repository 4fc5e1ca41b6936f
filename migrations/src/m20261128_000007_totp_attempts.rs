//! TOTP attempts are reserved in SQL before a code is checked: the lock end as unix
//! microseconds (`locked_until_us`, compared in the conditional UPDATE that reserves an attempt)
//! and when the current count of wrong codes began (`failures_since_us`, so the count is
//! forgotten with time, never by a success).

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::ConnectionTrait;

#[derive(DeriveMigrationName)]
pub struct Migration;

// `locked_until` (canonical text) stays, written from the same instant, for people reading the
// table. A lock set before this migration has no `locked_until_us` and so ends with it: at
// most 15 minutes of one account's lock, which the count of failures (kept) soon restores.
// One statement per ALTER: SQLite adds one column at a time.
const SCHEMA: [&str; 2] = [
    "ALTER TABLE totp_factors ADD COLUMN locked_until_us BIGINT",
    "ALTER TABLE totp_factors ADD COLUMN failures_since_us BIGINT",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for statement in SCHEMA {
            db.execute_unprepared(statement).await?;
        }
        Ok(())
    }
}

//! Agent tokens expire: `expires_at` (canonical text) and the same instant as unix
//! microseconds (`expires_at_us`), for SQL that filters or sorts by it.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::ConnectionTrait;

#[derive(DeriveMigrationName)]
pub struct Migration;

// Tokens created before this migration have no stored expiry: the store reads them as
// expiring the default lifetime (90 days) after they were created, so none lives forever.
// One statement per ALTER: SQLite adds one column at a time.
const SCHEMA: [&str; 2] = [
    "ALTER TABLE agent_tokens ADD COLUMN expires_at TEXT",
    "ALTER TABLE agent_tokens ADD COLUMN expires_at_us BIGINT",
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

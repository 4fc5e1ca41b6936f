//! Browsers that signed in to an account before (OWASP's device cookies): their failed
//! sign-ins are counted per browser, so strangers' failures cannot lock the owner out.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::ConnectionTrait;

#[derive(DeriveMigrationName)]
pub struct Migration;

const SCHEMA: [&str; 2] = [
    "CREATE TABLE trusted_devices (
        token_hash    TEXT PRIMARY KEY,
        user_id       TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        created_at_us BIGINT NOT NULL
    )",
    "CREATE INDEX trusted_devices_user ON trusted_devices (user_id, created_at_us)",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for statement in SCHEMA {
            manager
                .get_connection()
                .execute_unprepared(statement)
                .await?;
        }
        Ok(())
    }
}

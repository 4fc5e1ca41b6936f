//! The challenge a security key last answered (a SHA-256 of the ceremony state). A use is
//! saved only if the key still holds the challenge it was read with, and an answer to the
//! challenge it holds is refused: two requests carrying one assertion at once (a key whose
//! counter stays 0 passes the counter check twice) open one window, not two.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::ConnectionTrait;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("ALTER TABLE security_keys ADD COLUMN last_challenge TEXT")
            .await?;
        Ok(())
    }
}

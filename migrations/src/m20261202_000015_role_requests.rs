//! Four eyes on the admin role: an admin's request to grant or remove it waits here until a
//! second admin makes the same change.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::ConnectionTrait;

#[derive(DeriveMigrationName)]
pub struct Migration;

const SCHEMA: &str = "CREATE TABLE role_requests (
    target_id       TEXT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    from_role       TEXT NOT NULL,
    role            TEXT NOT NULL,
    requested_by    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    requested_at_us BIGINT NOT NULL
)";

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
